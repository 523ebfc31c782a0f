//! Kato's server: the REST API over the store, the renderer and the image resolver.
#![forbid(unsafe_code)]

pub mod api;
pub mod apply;
pub mod auth;
pub mod cache;
pub mod discovery;
pub mod error;
pub mod ops;
pub mod state;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kato_build::{Resolver, ResolverConfig};
use kato_store::{Backend, Store};

pub use api::router;
pub use state::AppState;

/// How `kato serve` was asked to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `None`: SQLite in the data dir.
    pub database_url: Option<String>,
    /// The URL plug-in containers use to reach this server; derived from `listen` when absent.
    pub public_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the database: {0}")]
    Store(#[from] kato_store::StoreError),
    #[error("cannot read or create the discovery key {path}: {source}")]
    DiscoveryKey { path: PathBuf, source: std::io::Error },
    #[error("cannot write the admin token to {path}: {source}")]
    AdminToken { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source} (pick another address with --listen)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("kato.db").display())
}

/// Opens the store, makes sure an admin token exists, and builds the shared state.
pub async fn prepare(config: &Config) -> Result<(Arc<AppState>, PathBuf), StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| sqlite_url(&config.data_dir));
    let store = Store::open(&url).await?;
    let token_path = config.data_dir.join("admin.token");
    ensure_admin_token(&store, &token_path).await?;
    let interrupted = ops::fail_interrupted_builds(&store).await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "versions left building by a previous run were marked failed"
        );
    }
    let key_path = config.data_dir.join("discovery.key");
    let key = discovery::TokenKey::load_or_create(&key_path).map_err(|source| StartError::DiscoveryKey {
        path: key_path.clone(),
        source,
    })?;
    let hashed = discovery::backfill_hashes(&store, &key).await?;
    if hashed > 0 {
        tracing::warn!(
            hashed,
            "discovery tokens are now derived from the discovery key: redeploy running components so their plug-ins get the new tokens"
        );
    }
    let discovery = Arc::new(discovery::Discovery::new(key));
    discovery::follow_changes(&store, discovery.clone()).await?;
    let public = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let state = AppState {
        cache: cache::Cache::new(store.backend() == Backend::Sqlite),
        store,
        resolver: Resolver::new(ResolverConfig::default()),
        discovery_base_url: public.trim_end_matches('/').to_owned(),
        discovery,
    };
    Ok((Arc::new(state), token_path))
}

async fn ensure_admin_token(store: &Store, path: &Path) -> Result<(), StartError> {
    let io = |source| StartError::AdminToken {
        path: path.to_owned(),
        source,
    };
    let token = match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = auth::new_token();
            write_private(path, &t).map_err(io)?;
            t
        }
    };
    let hash = auth::hash_token(&token);
    if store.token_by_hash(&hash).await?.is_none() {
        let mut tx = store.begin().await?;
        tx.create_token(None, "admin", &hash).await?;
        tx.commit().await?;
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

/// Runs the server until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (state, token_path) = prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let backend = match state.store.backend() {
        Backend::Sqlite => "SQLite (single process)",
        Backend::Postgres => "PostgreSQL",
    };
    tracing::info!(listen = %config.listen, store = backend, "kato is serving");
    println!("kato is listening on http://{} ({backend})", config.listen);
    println!("admin token: {}", token_path.display());
    serve_on(listener, state, shutdown).await
}

/// Serves the API on a listener the caller bound.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let discovery = state.discovery.clone();
    let shutdown = async move {
        shutdown.await;
        // Long-polls answer at once instead of holding the shutdown for their whole wait.
        discovery.hub.close();
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Serve)
}
