//! The build queue: Dockerfile versions are queued in the store and run by a worker in every
//! server, with bounded concurrency, a per-build timeout, cancel, and leases so that a server
//! that dies mid-build never leaves a version `building` for ever.

pub mod local_registry;
mod log;
pub mod pin;
mod platform;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kato_build::{BuildLog, Builder, CancellationToken};
use kato_store::VersionKey;
use tokio::sync::Notify;

pub use platform::{PlatformRegistry, RegistryParseError};
pub use worker::{fail_interrupted_builds, run_worker};

/// How builds run; `kato serve` flags.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// Builds running at once in this server.
    pub concurrency: usize,
    /// A build still running after this is stopped and fails.
    pub timeout: Duration,
    /// How long a claim on a build holds without renewal (renewed every third of it).
    pub lease: Duration,
    /// Where built images are pushed and image sources copied; Dockerfile builds need one.
    pub registry: Option<PlatformRegistry>,
    /// The builder program.
    pub builder: String,
    /// With no `registry`, run `docker-registry` on this loopback address as the platform
    /// registry (when it is installed).
    pub local_registry: Option<std::net::SocketAddr>,
    /// Whether team tokens may build from directories on the server and `file://` repos
    /// (`--allow-local-repos`); the admin token always may.
    pub allow_local_repos: bool,
    /// The repo the default plug-in catalog is built from (`--defaults-repo`, `--defaults-ref`);
    /// without one, installing the defaults is refused.
    pub defaults: Option<crate::catalog::DefaultsRepo>,
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            concurrency: 2,
            timeout: Duration::from_secs(15 * 60),
            lease: Duration::from_secs(30),
            registry: None,
            builder: "podman".into(),
            local_registry: None,
            allow_local_repos: false,
            defaults: None,
        }
    }
}

/// Why a running build's token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancelled,
    Shutdown,
}

struct Running {
    token: CancellationToken,
    reason: Option<StopReason>,
}

/// The build queue's shared half: what handlers use to wake the worker and cancel builds.
pub struct Builds {
    pub settings: BuildSettings,
    builder: Builder,
    /// Each team's part of the platform registry.
    scope: Option<kato_build::PlatformScope>,
    /// Names this server in the leases it holds.
    owner: String,
    wake: Notify,
    running: Mutex<HashMap<VersionKey, Running>>,
    /// Secrets that must never reach a stored log line.
    secrets: Vec<String>,
    /// Builds started since the server started (for metrics and tests).
    pub peak_running: std::sync::atomic::AtomicUsize,
    /// Cancelled when the server begins to shut down: followed logs end then, instead of holding
    /// the shutdown until their builds end.
    pub stopping: CancellationToken,
    /// Bumped whenever this server stored build log lines or a build's outcome: followed logs
    /// look again at once instead of at their next poll.
    progress: tokio::sync::watch::Sender<u64>,
}

impl Builds {
    pub fn new(
        settings: BuildSettings,
        data_dir: &std::path::Path,
        containers_conf: Option<PathBuf>,
        platform: kato_build::Resolver,
    ) -> Self {
        let authfile = settings
            .registry
            .as_ref()
            .and_then(|r| r.write_authfile(data_dir).ok().flatten());
        let secrets = settings
            .registry
            .as_ref()
            .and_then(|r| r.password.clone())
            .into_iter()
            .collect();
        let scope = settings.registry.as_ref().map(PlatformRegistry::scope);
        let mut builder = Builder::new(kato_build::BuilderConfig {
            work_dir: data_dir.join("builds"),
            containers_conf,
            authfile,
            program: settings.builder.clone(),
            retry: kato_build::RetryPolicy::default(),
            registry: platform,
        });
        if let Some(scope) = &scope {
            builder = builder.confined_to(scope.clone());
        }
        Self {
            settings,
            builder,
            scope,
            owner: format!(
                "{}-{}",
                std::process::id(),
                crate::auth::new_token().get(..12).unwrap_or("x")
            ),
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            secrets,
            peak_running: Default::default(),
            stopping: CancellationToken::new(),
            progress: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Build log lines or a build's outcome were stored.
    pub(crate) fn progressed(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Sees every later [`Builds::progressed`].
    pub(crate) fn progress(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// A version was queued: let the worker look.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the build if this server runs it; true if it did.
    pub fn cancel_local(&self, key: &VersionKey) -> bool {
        self.stop(key, StopReason::Cancelled)
    }

    fn stop(&self, key: &VersionKey, reason: StopReason) -> bool {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get_mut(key) {
            Some(r) => {
                r.reason.get_or_insert(reason);
                r.token.cancel();
                true
            }
            None => false,
        }
    }

    /// How many builds this server runs now.
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Refuses an image in another team's part of the platform registry (see [`PlatformRegistry::scope`]).
    pub fn check_image(
        &self,
        team: &kato_model::TeamName,
        image: &kato_model::ImageRef,
    ) -> Result<(), kato_build::Trespass> {
        match &self.scope {
            Some(scope) => scope.check(team.as_str(), image.as_str()),
            None => Ok(()),
        }
    }

    /// `registry[/namespace]/team/plugin:vN`: where a version's image is pushed.
    pub fn target(&self, key: &VersionKey) -> Option<String> {
        let r = self.settings.registry.as_ref()?;
        let (team, plugin, n) = key;
        Some(format!("{}/{team}/{plugin}:v{n}", r.prefix()))
    }

    /// Why a version's pinned image is gone from the platform registry, if it is (images
    /// elsewhere are not checked: their registries may be slow or far).
    pub async fn image_gone(&self, resolver: &kato_build::Resolver, image: Option<&str>) -> Option<String> {
        let prefix = format!("{}/", self.settings.registry.as_ref()?.prefix());
        let image = image.filter(|i| i.starts_with(&prefix))?;
        let parsed: kato_model::ImageRef = image.parse().ok()?;
        match resolver.resolve(&parsed).await {
            Err(kato_build::ResolveError::NotFound { .. }) => Some(format!(
                "image `{image}` is no longer in the platform registry: create a new version of the plug-in"
            )),
            _ => None,
        }
    }

    /// The team's credentials and the platform registry's, for a build or a copy.
    pub async fn credentials_for(
        &self,
        store: &kato_store::Store,
        team: &kato_model::TeamName,
    ) -> Result<Vec<kato_build::RegistryCredential>, kato_store::StoreError> {
        let mut out: Vec<kato_build::RegistryCredential> = store
            .credential_secrets(team)
            .await?
            .into_iter()
            // A credential holding only an SSH key is for ssh repos (see `ssh_keys_for`).
            .filter(|s| !s.password.is_empty())
            .map(|s| kato_build::RegistryCredential {
                registry: s.host,
                username: s.username,
                password: s.password,
            })
            .collect();
        if let Some(r) = &self.settings.registry
            && let (Some(u), Some(p)) = (&r.username, &r.password)
        {
            out.retain(|c| c.registry != r.host);
            out.push(kato_build::RegistryCredential {
                registry: r.host.clone(),
                username: u.clone(),
                password: p.clone(),
            });
        }
        Ok(out)
    }

    /// The team's SSH keys for git hosts, each with the known_hosts that vouch for its host.
    pub async fn ssh_keys_for(
        &self,
        store: &kato_store::Store,
        team: &kato_model::TeamName,
    ) -> Result<Vec<kato_build::SshKey>, kato_store::StoreError> {
        Ok(store
            .credential_secrets(team)
            .await?
            .into_iter()
            .filter_map(|s| {
                let ssh = s.ssh?;
                Some(kato_build::SshKey {
                    host: s.host,
                    username: s.username,
                    private_key: ssh.private_key,
                    known_hosts: ssh.known_hosts,
                })
            })
            .collect())
    }

    /// A log for the version, stored line by line with the platform's and `secrets` scrubbed.
    /// The writer ends once every clone of the log is dropped.
    pub(crate) fn version_log(
        self: &Arc<Self>,
        store: &kato_store::Store,
        key: &VersionKey,
        secrets: Vec<String>,
    ) -> (BuildLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (me, stored) = (self.clone(), self.clone());
        let writer = tokio::spawn(log::write_log(
            store.clone(),
            key.clone(),
            move |l| scrub(&me.redact(l), &secrets),
            move || stored.progressed(),
            rx,
        ));
        (BuildLog::new(tx), writer)
    }

    /// A log for a version not written yet: its lines, stamped as they come and scrubbed as
    /// [`Builds::version_log`] scrubs them, are answered once every clone of the log is dropped,
    /// for the transaction that writes the version to store with them.
    pub(crate) fn held_log(
        self: &Arc<Self>,
        secrets: Vec<String>,
    ) -> (BuildLog, tokio::task::JoinHandle<Vec<(String, String)>>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let me = self.clone();
        let collector = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                lines.push((kato_store::now(), scrub(&me.redact(&line), &secrets)));
            }
            lines
        });
        (BuildLog::new(tx), collector)
    }

    fn redact(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "********");
            }
        }
        out
    }
}

pub type SharedBuilds = Arc<Builds>;

/// The forms a password may take in tool output: as given, and inside a basic-auth token.
pub(crate) fn secret_forms(credentials: &[kato_build::RegistryCredential]) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    for c in credentials {
        if c.password.is_empty() {
            continue;
        }
        out.push(c.password.clone());
        out.push(base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password)));
    }
    out
}

/// `line` with every secret replaced.
pub(crate) fn scrub(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_owned();
    for s in secrets {
        out = out.replace(s.as_str(), "********");
    }
    out
}
