//! What every handler shares: the store, the image resolver, the cache and rendering defaults.

use kato_build::Resolver;
use kato_store::{Store, Tx};

use crate::cache::Cache;
use crate::error::ApiResult;

pub struct AppState {
    pub store: Store,
    pub resolver: Resolver,
    pub cache: Cache,
    /// The base URL plug-ins use to reach the discovery API.
    pub discovery_base_url: String,
    /// The build queue.
    pub builds: std::sync::Arc<crate::builds::Builds>,
}

impl AppState {
    pub async fn begin(&self) -> ApiResult<Tx> {
        Ok(self.store.begin().await?)
    }

    /// Commits and drops every cached read the write may have changed.
    pub async fn commit(&self, tx: Tx) -> ApiResult<()> {
        tx.commit().await?;
        self.cache.invalidate();
        Ok(())
    }
}
