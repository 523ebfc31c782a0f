//! What every handler shares: the store, the image resolver, the cache, rendering defaults and
//! discovery.

use std::sync::Arc;

use kato_build::Resolver;
use kato_runtime::Runtime;
use kato_store::{Store, Tx};

use crate::cache::Cache;
use crate::discovery::Discovery;
use crate::error::ApiResult;
use crate::reconcile::Reconciler;

pub struct AppState {
    pub store: Store,
    pub resolver: Resolver,
    pub cache: Cache,
    /// The base URL plug-ins use to reach the discovery API.
    pub discovery_base_url: String,
    /// Where components run (`--target`).
    pub runtime: Arc<dyn Runtime>,
    /// Redeploys running components when what they render changes.
    pub reconciler: Reconciler,
    /// The build queue.
    pub builds: std::sync::Arc<crate::builds::Builds>,
    /// Discovery tokens and the live documents.
    pub discovery: Arc<Discovery>,
}

impl AppState {
    pub async fn begin(&self) -> ApiResult<Tx> {
        Ok(self.store.begin().await?)
    }

    /// Commits, drops every cached read the write may have changed, brings the discovery
    /// documents it touched up to date (waking their long-polls, on every replica), and wakes the
    /// reconciler so deployed components pick the change up.
    pub async fn commit(&self, mut tx: Tx) -> ApiResult<()> {
        let touched = tx.touched().to_vec();
        tx.notify_discovery().await?;
        tx.commit().await?;
        self.cache.invalidate();
        self.discovery.hub.refresh(&self.store, &touched).await;
        if !touched.is_empty() {
            self.discovery.announce();
        }
        self.reconciler.wake();
        Ok(())
    }
}
