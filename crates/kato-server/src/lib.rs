//! Kato's server: the REST API over the store, the renderer and the image resolver.
#![forbid(unsafe_code)]

pub mod api;
pub mod apply;
pub mod auth;
pub mod builds;
pub mod cache;
pub mod catalog;
pub mod discovery;
pub mod doctor;
pub mod error;
mod files;
pub mod listener;
pub mod ops;
mod pod_address;
pub mod policy;
pub mod reconcile;
pub mod secret_key;
pub mod state;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kato_build::{Resolver, ResolverConfig};
use kato_runtime::{KubernetesRuntime, NoneRuntime, PodmanConfig, PodmanRuntime, Runtime};
use kato_store::{Backend, Store};

pub use api::router;
pub(crate) use files::write_private;
pub use kato_runtime::TargetKind;
pub use secret_key::SecretKeySource;
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
    /// Where components run; `None` picks podman when it is on `PATH`, else render only.
    pub target: Option<TargetKind>,
    /// The kubeconfig of the `kubernetes` target; `None` reads `KUBECONFIG`, `~/.kube/config` or
    /// the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// The build queue and the platform registry.
    pub builds: builds::BuildSettings,
    /// The key secrets are sealed with in the store.
    pub secret_key: SecretKeySource,
}

/// The target `kato serve` runs with: the one asked for, else podman when it is installed.
pub fn choose_target(asked: Option<TargetKind>) -> TargetKind {
    asked.unwrap_or(if kato_runtime::podman_on_path() {
        TargetKind::Podman
    } else {
        TargetKind::None
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the database: {0}")]
    Store(#[from] kato_store::StoreError),
    #[error("secret key {origin}: {message}")]
    SecretKey { origin: String, message: String },
    #[error("cannot read or create the discovery key {path}: {source}")]
    DiscoveryKey { path: PathBuf, source: std::io::Error },
    #[error("cannot write the admin token to {path}: {source}")]
    AdminToken { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source} (pick another address with --listen)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(
        "cannot listen for plug-ins on {addr}, podman's pod network gateway: {source} (give --public-url and listen where pods reach it)"
    )]
    PodListen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot prepare the {target} target: {message}")]
    Target { target: TargetKind, message: String },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    LocalRegistry(#[from] builds::local_registry::LocalRegistryError),
    #[error("--local-registry {0}: the local registry listens on a loopback address only (or give --registry)")]
    LocalRegistryNotLoopback(SocketAddr),
}

pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("kato.db").display())
}

/// Creates the data dir (private to this user) and makes its path absolute, once, so that
/// every process Kato starts (podman, buildah's helpers, git, the registry), whatever its working
/// directory, finds the files Kato writes there.
pub fn resolve_data_dir(dir: &Path) -> Result<PathBuf, StartError> {
    let failed = |source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(failed)?;
    // Also when it existed before, with wider permissions: it holds the admin token and the keys.
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(failed)?;
    // And so does every file in it, whatever an older version or another umask left.
    files::make_private(dir).map_err(failed)?;
    dir.canonicalize().map_err(failed)
}

/// Opens the store, makes sure an admin token exists, and builds the shared state.
pub async fn prepare(config: &Config) -> Result<(Arc<AppState>, PathBuf), StartError> {
    let config = &Config {
        data_dir: resolve_data_dir(&config.data_dir)?,
        ..config.clone()
    };
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            // SQLite gives the WAL and shared-memory files the database file's mode.
            let path = config.data_dir.join("kato.db");
            files::touch_private(&path).map_err(|source| StartError::DataDir { path, source })?;
            sqlite_url(&config.data_dir)
        }
    };
    let store = secret_key::open_store(&url, &config.secret_key, &config.data_dir).await?;
    let token_path = config.data_dir.join("admin.token");
    ensure_admin_token(&store, &token_path).await?;
    let interrupted = builds::fail_interrupted_builds(&store).await?;
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
    let runtime = runtime(config).await?;
    let containers_conf = match std::env::var_os("CONTAINERS_CONF") {
        Some(c) => Some(PathBuf::from(c)),
        None => {
            let path = config.data_dir.join("containers.conf");
            files::write_private_bytes(&path, kato_runtime::CONTAINERS_CONF.as_bytes()).map_err(|source| {
                StartError::DataDir {
                    path: path.clone(),
                    source,
                }
            })?;
            Some(path)
        }
    };
    // With the platform registry's credentials: version resolution and copies, and builds
    // reading back what they pushed.
    let resolver = Resolver::new(ResolverConfig {
        credentials: config
            .builds
            .registry
            .iter()
            .filter_map(|r| {
                Some(kato_build::RegistryCredential {
                    registry: r.host.clone(),
                    username: r.username.clone()?,
                    password: r.password.clone()?,
                })
            })
            .collect(),
        ..ResolverConfig::default()
    });
    let state = AppState {
        builds: Arc::new(builds::Builds::new(
            config.builds.clone(),
            &config.data_dir,
            containers_conf,
            resolver.clone(),
        )),
        cache: cache::Cache::new(store.backend() == Backend::Sqlite),
        store,
        resolver: resolver.clone(),
        discovery_base_url: public.trim_end_matches('/').to_owned(),
        runtime,
        reconciler: reconcile::Reconciler::default(),
        discovery,
    };
    let state = Arc::new(state);
    reconcile::spawn(&state);
    Ok((state, token_path))
}

async fn runtime(config: &Config) -> Result<Arc<dyn Runtime>, StartError> {
    let target = choose_target(config.target);
    match target {
        TargetKind::None => Ok(Arc::new(NoneRuntime)),
        TargetKind::Podman => PodmanRuntime::new(PodmanConfig::new(&config.data_dir))
            .map(|r| Arc::new(r) as Arc<dyn Runtime>)
            .map_err(|e| StartError::Target {
                target,
                message: format!("cannot write its containers.conf into the data dir: {e}"),
            }),
        TargetKind::Kubernetes => {
            let failed = |e: kato_runtime::RuntimeError| StartError::Target {
                target,
                message: e.to_string(),
            };
            let kube = KubernetesRuntime::from_config(config.kubeconfig.clone())
                .await
                .map_err(failed)?;
            // Refuse to start against a cluster that does not answer, rather than fail every deploy.
            let version = kube.server_version().await.map_err(failed)?;
            tracing::info!(%version, "the cluster answers");
            Ok(Arc::new(kube))
        }
    }
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

/// Runs the server until `shutdown` resolves, with the default [`listener::Limits`].
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_with(config, listener::Limits::default(), shutdown).await
}

/// Runs the server until `shutdown` resolves, holding its connections within `limits`.
pub async fn serve_with(
    config: Config,
    limits: listener::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_app(config, limits, None, shutdown).await
}

/// Pages served beside the API on the main listener (the console), made once the state exists.
pub type Pages = Box<dyn FnOnce(Arc<AppState>) -> axum::Router + Send>;

/// Runs the server, with `pages` beside the API, until `shutdown` resolves.
pub async fn serve_app(
    mut config: Config,
    limits: listener::Limits,
    pages: Option<Pages>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    config.data_dir = resolve_data_dir(&config.data_dir)?;
    let mut _local_registry = None;
    if config.builds.registry.is_none()
        && let Some(addr) = config.builds.local_registry
    {
        if !addr.ip().is_loopback() {
            return Err(StartError::LocalRegistryNotLoopback(addr));
        }
        match builds::local_registry::start(&config.data_dir, addr).await? {
            Some(r) => {
                println!("platform registry: {addr} (local, storage in the data dir)");
                config.builds.registry = Some(builds::PlatformRegistry {
                    host: addr.to_string(),
                    namespace: None,
                    username: None,
                    password: None,
                });
                _local_registry = Some(r);
            }
            None => tracing::warn!(
                "no platform registry: Dockerfile builds are off (give --registry, or install docker-registry)"
            ),
        }
    }
    let pods = pod_address::choose(&mut config).await?;
    let (state, token_path) = prepare(&config).await?;
    // In the background: a missing part is told at start, without holding the start up.
    let needs = doctor::Needs::of(&config);
    tokio::spawn(async move {
        for failed in doctor::check(&needs).await.iter().filter(|c| !c.ok) {
            tracing::warn!(
                check = failed.name,
                fix = failed.fix.as_deref().unwrap_or(""),
                "{}",
                failed.detail
            );
        }
    });
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
    let target = state.runtime.kind();
    tracing::info!(listen = %config.listen, store = backend, %target, "kato is serving");
    println!("kato is listening on http://{} ({backend})", config.listen);
    let why = match (config.target, target) {
        (Some(_), _) => "as asked",
        (None, TargetKind::Podman) => "podman is installed",
        (None, _) => "podman is not installed: rendering only",
    };
    println!("target: {target} ({why})");
    println!("admin token: {}", token_path.display());
    if let Some(p) = &pods {
        println!(
            "plug-ins reach the discovery API at {} ({})",
            state.discovery_base_url, p.why
        );
    }
    let connections = listener::Connections::new(limits);
    let app = app(&state, pages);
    serve_routers(
        listener,
        pods.and_then(|p| p.listener),
        state,
        app,
        connections,
        shutdown,
    )
    .await
}

/// The main listener's router: the API, with the pages beside it.
pub fn app(state: &Arc<AppState>, pages: Option<Pages>) -> axum::Router {
    let pages = pages.map_or_else(axum::Router::new, |p| p(state.clone()));
    api::router_with(state.clone(), pages)
}

/// Serves the API on a listener the caller bound, with the default [`listener::Limits`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let connections = listener::Connections::new(listener::Limits::default());
    serve_listeners(listener, None, state, connections, shutdown).await
}

/// Serves `app` (see [`app`]) on a listener the caller bound, with the default [`listener::Limits`].
pub async fn serve_app_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let connections = listener::Connections::new(listener::Limits::default());
    serve_routers(listener, None, state, app, connections, shutdown).await
}

/// Serves the API on `listener`, and only the discovery API on `pods` (the address pods reach);
/// `connections` counts the connections of both against their limits.
pub async fn serve_listeners(
    listener: tokio::net::TcpListener,
    pods: Option<tokio::net::TcpListener>,
    state: Arc<AppState>,
    connections: Arc<listener::Connections>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = router(state.clone());
    serve_routers(listener, pods, state, app, connections, shutdown).await
}

async fn serve_routers(
    listener: tokio::net::TcpListener,
    pods: Option<tokio::net::TcpListener>,
    state: Arc<AppState>,
    app: axum::Router,
    connections: Arc<listener::Connections>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let stop = kato_build::CancellationToken::new();
    let worker = tokio::spawn(builds::run_worker(state.clone(), stop.clone()));
    let discovery = state.discovery.clone();
    let stopping = state.builds.stopping.clone();
    let ending = kato_build::CancellationToken::new();
    let shutdown = {
        let ending = ending.clone();
        async move {
            shutdown.await;
            // Long-polls answer at once instead of holding the shutdown for their whole wait, and
            // followed logs end (their builds are stopped only once the server has shut down).
            discovery.hub.close();
            stopping.cancel();
            ending.cancel();
        }
    };
    // Held by each connection the discovery path serves; `closed` once the last one ended.
    let (all_closed, open) = tokio::sync::watch::channel(());
    let pods = pods.map(|tcp| {
        let lean = listener::lean(tcp, state.clone(), connections.clone(), open.clone());
        let serving = listener::serve(lean, api::discovery_router(state.clone()), ending.cancelled_owned());
        tokio::spawn(serving)
    });
    let lean = listener::lean(listener, state.clone(), connections, open);
    listener::serve(lean, app, shutdown).await;
    if let Some(pods) = pods {
        let _ = pods.await;
    }
    // Their long-polls were answered when the hub closed; they end after writing it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), all_closed.closed()).await;
    stop.cancel();
    let _ = worker.await;
    Ok(())
}
