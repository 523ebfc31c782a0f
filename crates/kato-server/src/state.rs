//! What every handler shares: the store, the image resolver, the cache and rendering defaults.

use std::sync::Arc;

use kato_build::Resolver;
use kato_runtime::Runtime;
use kato_store::{Store, Tx};

use crate::cache::Cache;
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
}

impl AppState {
    pub async fn begin(&self) -> ApiResult<Tx> {
        Ok(self.store.begin().await?)
    }

    /// Commits, drops every cached read the write may have changed, and wakes the reconciler so
    /// deployed components pick the change up.
    pub async fn commit(&self, tx: Tx) -> ApiResult<()> {
        tx.commit().await?;
        self.cache.invalidate();
        self.reconciler.wake();
        Ok(())
    }
}
