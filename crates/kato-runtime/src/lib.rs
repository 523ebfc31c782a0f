//! Kato's targets (DESIGN §9): where rendered components run.
//!
//! A [`Runtime`] takes the objects [`kato_render::render`] produced for its target and makes the
//! engine run them: `podman kube play` on one machine, server-side apply on Kubernetes, or nothing
//! at all (`none`, render only). Everything a target reports is in the types of this module, so the
//! server and the CLI never see engine specifics.
#![forbid(unsafe_code)]

mod kubernetes;
mod none;
mod podman;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use kato_render::Rendered;
use serde::Serialize;

pub use kubernetes::KubernetesRuntime;
pub use none::NoneRuntime;
pub use podman::{CONTAINERS_CONF, KUBE_NETWORK, PodmanConfig, PodmanRuntime, kube_network_gateway, podman_on_path};

/// Which engine a server drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Podman,
    Kubernetes,
    None,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Podman => "podman",
            Self::Kubernetes => "kubernetes",
            Self::None => "none",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which component a call is about.
#[derive(Debug, Clone, Copy)]
pub struct ComponentRef<'a> {
    pub team: &'a str,
    pub component: &'a str,
}

/// The state of a whole component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    /// Every pod runs with every container ready.
    Running,
    /// Pods are being created, pulled or initialised.
    Starting,
    /// A container cannot run: init failure, image pull failure, crash loop.
    Failed,
    /// Nothing runs (never deployed, or stopped).
    Stopped,
}

/// What a container is to the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRole {
    /// The component's own container (named after the component).
    App,
    /// A `plugin-<name>` container, init or sidecar.
    Plugin,
}

/// The state of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Waiting,
    Running,
    /// Exited; `exit_code` and `reason` say how.
    Terminated,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    /// The container's name in the rendered pod: the component's name or `plugin-<name>`.
    pub name: String,
    pub role: ContainerRole,
    /// True for `initContainers` (init plug-ins, and native sidecars on Kubernetes).
    pub init: bool,
    pub state: ContainerState,
    pub ready: bool,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    /// A short machine word: `OOMKilled`, `ImagePullBackOff`, `ErrImagePull`, `CrashLoopBackOff`,
    /// `InitFailed`, `Completed`, `Error`…
    pub reason: Option<String>,
    /// The engine's own words, for people.
    pub message: Option<String>,
    /// The image the engine runs, as rendered (digest-pinned for plug-ins).
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodStatus {
    pub name: String,
    /// Kubernetes' pod phase words: Pending, Running, Succeeded, Failed, Unknown.
    pub phase: String,
    /// Annotations of the running pod (plug-in versions and config revisions, DESIGN §5.8).
    pub annotations: std::collections::BTreeMap<String, String>,
    pub containers: Vec<ContainerStatus>,
    /// The pod's address: on podman its address on the pod network, on Kubernetes the pod IP.
    /// What reaches a port of the pod from the server (a plug-in's own port, e.g. kato-perf's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentStatus {
    pub state: ComponentState,
    /// Why the component is `failed` or `starting`, for people; `None` when running or stopped.
    pub message: Option<String>,
    pub pods: Vec<PodStatus>,
}

impl ComponentStatus {
    pub fn stopped() -> Self {
        Self {
            state: ComponentState::Stopped,
            message: None,
            pods: Vec::new(),
        }
    }
}

/// Which log lines to return.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    /// A container name (`web`, `plugin-logtail`); `None` means the app container.
    pub container: Option<String>,
    /// The last N lines only.
    pub tail: Option<u32>,
    /// Keep streaming new lines until the container stops or the caller hangs up.
    pub follow: bool,
}

/// Log bytes as the engine gives them, line by line.
pub type LogStream = BoxStream<'static, Result<Bytes, RuntimeError>>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The target runs nothing (`--target none`).
    #[error(
        "this server renders only (--target none): start it with --target podman or --target kubernetes to run components"
    )]
    NotSupported,
    /// The component has no running pod (never deployed, or stopped).
    #[error("component `{0}` is not running: deploy it first")]
    NotRunning(String),
    #[error("component has no container `{name}`: its containers are {known}")]
    NoSuchContainer { name: String, known: String },
    /// The engine rejected the objects or failed; the message is the engine's, cleaned up.
    #[error("{engine} failed: {message}")]
    Engine { engine: &'static str, message: String },
    /// The engine did not answer in time.
    #[error("{engine} did not answer within {seconds} s")]
    Timeout { engine: &'static str, seconds: u64 },
}

/// A target that runs rendered components. Implementations are cheap to share (`Arc<dyn Runtime>`).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    fn kind(&self) -> TargetKind;

    /// Makes the engine run exactly `rendered` for the component (the objects rendered for this
    /// target): creates or updates them, and removes what a previous deploy created that
    /// `rendered` no longer holds. Idempotent.
    async fn deploy(&self, component: ComponentRef<'_>, rendered: &Rendered) -> Result<(), RuntimeError>;

    /// Removes everything the component runs. Stopping a stopped component is not an error.
    async fn stop(&self, component: ComponentRef<'_>) -> Result<(), RuntimeError>;

    async fn status(&self, component: ComponentRef<'_>) -> Result<ComponentStatus, RuntimeError>;

    async fn logs(&self, component: ComponentRef<'_>, request: LogsRequest) -> Result<LogStream, RuntimeError>;
}
