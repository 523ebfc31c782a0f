//! `--target podman`: the local engine (DESIGN §9).
//!
//! A deploy pulls the pod's images (plain HTTP for loopback registries only), writes the
//! component's Secrets as podman secrets (`{hash}_{hash of the Secret's name}`), removes the component's running pods
//! and plays the rendered Pod with `podman kube play`. The pod's name is unique to the (team,
//! component) pair ([`kato_render::names::podman_pod_name`]), and every pod, secret and volume is
//! also checked to carry the component's `kato/team` and `kato/component` labels before Kato reads
//! or removes it; another component's pod is never replaced. Every podman call runs with the
//! project's containers.conf (written into the data dir) and a bounded timeout.
//!
//! Secrets stay in podman secrets: the pod YAML refers to them and copies none (see
//! [`plan::prepare_container`]); it is written 0600 and removed once played.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kato_render::{Object, Rendered};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::{
    ComponentRef, ComponentState, ComponentStatus, ContainerRole, ContainerState, ContainerStatus, LogStream,
    LogsRequest, PodStatus, Runtime, RuntimeError, TargetKind,
};

/// The settings podman needs on hosts like Kato's (cgroup v1 hybrid mode, no systemd).
pub const CONTAINERS_CONF: &str = include_str!("../../../config/containers.conf");

mod cri;
mod files;
mod follow;
mod logs;
mod network;
mod plan;
mod resources;
mod status;

pub use network::{KUBE_NETWORK, kube_network_gateway};

use plan::*;
use status::*;

/// The pod annotations (`….0`, `….1`, …) naming the init containers a deploy played; podman
/// removes an init container once it succeeded, so status needs them to report it.
const INIT_ANNOTATION: &str = "podman.kato/init-containers";
/// The pod annotations naming the other containers in pod order (podman lists them in any
/// order). One name each: podman 4 refuses annotation values over 63 characters.
const CONTAINERS_ANNOTATION: &str = "podman.kato/containers";
const ENGINE: &str = "podman";
const TEAM_LABEL: &str = kato_render::LABEL_TEAM;
const COMPONENT_LABEL: &str = kato_render::LABEL_COMPONENT;
/// The label naming the rendered Secret a podman secret holds (its name is a hash).
const SECRET_LABEL: &str = "kato/secret";

/// How the podman target runs.
#[derive(Debug, Clone)]
pub struct PodmanConfig {
    /// Where `containers.conf` and the played YAML files are written.
    pub data_dir: PathBuf,
    /// The podman binary.
    pub program: PathBuf,
    /// Bound on quick calls (inspect, secrets, rm).
    pub call_timeout: Duration,
    /// Bound on one image pull and on one `kube play` (which waits for init containers).
    pub play_timeout: Duration,
    /// Seconds a container gets to stop on SIGTERM before it is killed.
    pub stop_grace: u32,
    /// How long a status answer is reused (deploy and stop drop it).
    pub status_ttl: Duration,
}

impl PodmanConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            program: PathBuf::from("podman"),
            call_timeout: Duration::from_secs(30),
            play_timeout: Duration::from_secs(180),
            stop_grace: 5,
            status_ttl: Duration::from_millis(500),
        }
    }
}

/// Runs components on the local podman engine.
pub struct PodmanRuntime {
    config: PodmanConfig,
    conf_path: PathBuf,
    /// The failure of a component's last deploy, until the next deploy or stop.
    failures: Mutex<HashMap<String, ComponentStatus>>,
    cache: Mutex<HashMap<String, (Instant, ComponentStatus)>>,
    /// One deploy or stop at a time per component.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How many deploys and stops began, per component: a status read while one began may show
    /// half-removed containers.
    begun: Mutex<HashMap<String, u64>>,
    /// True once [`KUBE_NETWORK`] is known to exist (pods are played onto it by name).
    network_ready: AtomicBool,
}

impl std::fmt::Debug for PodmanRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodmanRuntime").field("config", &self.config).finish()
    }
}

/// True when `podman` is on `PATH`.
pub fn podman_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join("podman");
            p.is_file()
        })
    })
}

impl PodmanRuntime {
    /// Writes the project's containers.conf into the data dir and prepares the target.
    pub fn new(config: PodmanConfig) -> std::io::Result<Self> {
        // Absolute: podman and its helpers read CONTAINERS_CONF from other working directories.
        let dir = std::path::absolute(config.data_dir.join("podman"))?;
        files::create_private_dir(&dir)?;
        let conf_path = dir.join("containers.conf");
        // Rewritten only when it changed: podman processes of a running server may be reading it.
        if std::fs::read_to_string(&conf_path).ok().as_deref() != Some(CONTAINERS_CONF) {
            files::write_private(&conf_path, CONTAINERS_CONF.as_bytes())?;
        }
        files::remove_played_yaml(&dir.join("pods"));
        Ok(Self {
            config,
            conf_path,
            failures: Mutex::default(),
            cache: Mutex::default(),
            locks: Mutex::default(),
            begun: Mutex::default(),
            network_ready: AtomicBool::new(false),
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.config.program);
        // conmon, which podman starts, writes files (`oom`) into its working directory.
        let dir = self.conf_path.parent().unwrap_or(&self.config.data_dir);
        c.current_dir(dir)
            .env("CONTAINERS_CONF", &self.conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs podman to completion within `limit`; a non-zero exit is an `Engine` error with podman's
    /// cleaned-up stderr.
    async fn run(&self, args: &[OsString], stdin: Option<&[u8]>, limit: Duration) -> Result<String, RuntimeError> {
        let out = self.output(args, stdin, limit).await?;
        if out.0 { Ok(out.1) } else { Err(engine(out.2)) }
    }

    /// Runs podman; `(success, stdout, cleaned stderr)`.
    async fn output(
        &self,
        args: &[OsString],
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<(bool, String, String), RuntimeError> {
        let mut cmd = self.command();
        cmd.args(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let work = async {
            let mut child = cmd.spawn().map_err(|e| RuntimeError::Engine {
                engine: ENGINE,
                message: format!("cannot run {}: {e}", self.config.program.display()),
            })?;
            if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(data).await.map_err(io_error)?;
                drop(pipe);
            }
            child.wait_with_output().await.map_err(io_error)
        };
        let out = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| RuntimeError::Timeout {
                engine: ENGINE,
                seconds: limit.as_secs(),
            })??;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            clean_stderr(&String::from_utf8_lossy(&out.stderr)),
        ))
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    fn forget(&self, key: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// True when every image is in local storage.
    async fn all_present(&self, images: &[&str]) -> Result<bool, RuntimeError> {
        if images.is_empty() || images.iter().any(|i| floating_tag(i)) {
            return Ok(images.is_empty());
        }
        let mut a = args(["image", "inspect", "--format", "{{.Id}}"]);
        a.extend(images.iter().map(OsString::from));
        Ok(self.output(&a, None, self.config.call_timeout).await?.0)
    }

    /// Pulls `image` unless it is already present.
    async fn pull(&self, image: &str) -> Result<(), String> {
        let (present, _, _) = self
            .output(&args(["image", "exists", image]), None, self.config.call_timeout)
            .await
            .map_err(|e| e.to_string())?;
        if present && !floating_tag(image) {
            return Ok(());
        }
        let tls = format!("--tls-verify={}", !is_loopback_image(image));
        let (ok, _, err) = self
            .output(&args(["pull", "--quiet", &tls, image]), None, self.config.play_timeout)
            .await
            .map_err(|e| e.to_string())?;
        if ok { Ok(()) } else { Err(err) }
    }
}

fn key(c: ComponentRef<'_>) -> String {
    format!("{}/{}", c.team, c.component)
}

fn args<const N: usize>(a: [&str; N]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn io_error(e: std::io::Error) -> RuntimeError {
    RuntimeError::Engine {
        engine: ENGINE,
        message: e.to_string(),
    }
}

fn engine(message: String) -> RuntimeError {
    let message = if message.is_empty() {
        "podman exited with an error and said nothing".to_owned()
    } else {
        message
    };
    RuntimeError::Engine {
        engine: ENGINE,
        message,
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, RuntimeError> {
    serde_json::from_str(text).map_err(|e| RuntimeError::Engine {
        engine: ENGINE,
        message: format!("unexpected output from podman ({e})"),
    })
}

/// podman's stderr for people: without the harmless syslog warning and logrus decorations.
pub(crate) fn clean_stderr(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("failed to connect to syslog"))
        .filter(|l| !l.contains("level=warning"))
        .map(|l| l.strip_prefix("Error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An image whose tag may move: `latest` or none.
fn floating_tag(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

/// True when the image's registry is on loopback (reached over plain HTTP, like kato-build does).
pub(crate) fn is_loopback_image(image: &str) -> bool {
    let Some((first, _)) = image.split_once('/') else {
        return false;
    };
    if !(first.contains('.') || first.contains(':') || first == "localhost") {
        return false;
    }
    let host = if let Some(rest) = first.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        first.split(':').next().unwrap_or(first)
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[async_trait]
impl Runtime for PodmanRuntime {
    fn kind(&self) -> TargetKind {
        TargetKind::Podman
    }

    async fn deploy(&self, c: ComponentRef<'_>, rendered: &Rendered) -> Result<(), RuntimeError> {
        let k = key(c);
        let lock = self.lock(&k);
        let _guard = lock.lock().await;
        self.begin(&k);
        // The status cache stays: while the deploy runs, status answers from it rather than
        // queue behind the deploy on podman's lock.
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
        let plan = plan(c, rendered)?;
        let pod_name = plan.pod.metadata.name.clone().unwrap_or_default();

        // Images first: a pull failure leaves what runs untouched and says which container.
        let spec = plan.pod.spec.as_ref();
        let all: Vec<&Container> = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
            .collect();
        // One call when every image is present (the usual redeploy); pulls otherwise.
        let images: Vec<&str> = all.iter().filter_map(|c| c.image.as_deref()).collect();
        if !self.all_present(&images).await? {
            for ctr in &all {
                let Some(image) = ctr.image.as_deref() else { continue };
                if let Err(why) = self.pull(image).await {
                    let status = pull_failure(&pod_name, &all, &ctr.name, image, &why);
                    let message = status.message.clone().unwrap_or_default();
                    self.failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(k.clone(), status);
                    return Err(RuntimeError::Engine {
                        engine: ENGINE,
                        message,
                    });
                }
            }
        }

        // Secrets (replace this component's, remove the ones no longer rendered) while the old
        // pod stops within its grace period.
        let secrets = async {
            let existing = self.secrets(c).await?;
            self.remove_secrets(&existing).await?;
            for (name, rendered, data) in &plan.secrets {
                let a = args([
                    "secret",
                    "create",
                    "--label",
                    &format!("{TEAM_LABEL}={}", c.team),
                    "--label",
                    &format!("{COMPONENT_LABEL}={}", c.component),
                    "--label",
                    &format!("{SECRET_LABEL}={rendered}"),
                    name,
                    "-",
                ]);
                self.run(&a, Some(data), self.config.call_timeout).await?;
            }
            Ok::<(), RuntimeError>(())
        };
        // The component's pods, found by labels: also one named by an older Kato.
        let old_pod = async {
            let old = self.pods(c).await?;
            self.remove_pods(&old).await?;
            let mut stale = self.recorded_volumes(&pod_name).await;
            stale.extend(plan.volumes.iter().cloned());
            for pod in old.iter().filter(|p| **p != pod_name) {
                stale.extend(self.recorded_volumes(pod).await);
                let _ = tokio::fs::remove_file(pod_file(&self.config.data_dir, pod)).await;
                let _ = tokio::fs::remove_file(volumes_file(&self.config.data_dir, pod)).await;
            }
            self.remove_volumes(&stale).await
        };
        let (secrets, old_pod, network) = tokio::join!(secrets, old_pod, self.ensure_network());
        secrets?;
        old_pod?;
        network?;

        // The new pod. Its YAML holds no secret (they are in podman secrets) and lives only for
        // the play; the volume record stays for the next deploy or stop.
        let record = serde_json::to_vec(&plan.volumes).unwrap_or_default();
        let dir = self.config.data_dir.join("podman").join("pods");
        files::create_private_dir(&dir).map_err(io_error)?;
        files::write_private_async(volumes_file(&self.config.data_dir, &pod_name), record)
            .await
            .map_err(io_error)?;
        let yaml = Rendered {
            objects: vec![Object::Pod(plan.pod)],
        }
        .to_yaml();
        let file = pod_file(&self.config.data_dir, &pod_name);
        files::write_private_async(file.clone(), yaml.into_bytes())
            .await
            .map_err(io_error)?;
        // No `--replace`: the component's own pods are gone, so a pod still holding the name
        // is another's, and podman refuses to play over it. Other pods reach this one at
        // `{component}.{team}`, as on Kubernetes.
        let host = kato_render::names::component_host(c.team, c.component);
        let a = vec![
            OsString::from("kube"),
            OsString::from("play"),
            OsString::from("--network"),
            OsString::from(format!("{KUBE_NETWORK}:alias={host}")),
            file.clone().into_os_string(),
        ];
        let played = self.output(&a, None, self.config.play_timeout).await;
        let _ = tokio::fs::remove_file(&file).await;
        let (ok, _, err) = played?;
        self.forget(&k);
        if ok {
            return Ok(());
        }
        if err.contains("is in use") {
            return Err(engine(format!(
                "a pod named {pod_name} exists that is not {}/{}'s: Kato does not replace it \
                 (remove it with `podman pod rm {pod_name}` if nothing needs it)",
                c.team, c.component
            )));
        }
        if err.contains("network") {
            self.network_ready.store(false, Ordering::Relaxed);
        }
        // An init container that fails is the component's state, not a failed deploy: the pod
        // exists and status says why.
        if !self.pods(c).await?.is_empty() && err.contains("init container") {
            return Ok(());
        }
        Err(engine(err))
    }

    async fn stop(&self, c: ComponentRef<'_>) -> Result<(), RuntimeError> {
        let k = key(c);
        let lock = self.lock(&k);
        let _guard = lock.lock().await;
        self.begin(&k);
        self.forget(&k);
        let pods = self.pods(c).await?;
        self.remove_pods(&pods).await?;
        let secrets = self.secrets(c).await?;
        self.remove_secrets(&secrets).await?;
        for pod in pods {
            let volumes = self.recorded_volumes(&pod).await;
            self.remove_volumes(&volumes).await?;
            let _ = tokio::fs::remove_file(pod_file(&self.config.data_dir, &pod)).await;
            let _ = tokio::fs::remove_file(volumes_file(&self.config.data_dir, &pod)).await;
        }
        self.forget(&k);
        Ok(())
    }

    async fn status(&self, c: ComponentRef<'_>) -> Result<ComponentStatus, RuntimeError> {
        self.status_cached(c).await
    }

    async fn logs(&self, c: ComponentRef<'_>, request: LogsRequest) -> Result<LogStream, RuntimeError> {
        self.log_stream(c, request).await
    }
}

fn volumes_file(data_dir: &Path, pod: &str) -> PathBuf {
    data_dir.join("podman").join("pods").join(format!("{pod}.volumes.json"))
}

fn pod_file(data_dir: &Path, pod: &str) -> PathBuf {
    data_dir.join("podman").join("pods").join(format!("{pod}.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_scripts_lose_their_leading_line_breaks_only() {
        let mut ctr = Container {
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "\n\nwhile true; do sleep 1; done\n".into(),
            ]),
            ..Default::default()
        };
        super::trim_leading_line_breaks(&mut ctr);
        assert_eq!(ctr.command.unwrap()[2], "while true; do sleep 1; done\n");

        let mut ctr = Container {
            command: Some(vec!["printf".into(), "\nx".into()]),
            ..Default::default()
        };
        super::trim_leading_line_breaks(&mut ctr);
        assert_eq!(ctr.command.unwrap()[1], "\nx", "only a shell script is changed");
    }

    #[test]
    fn syslog_warning_is_dropped() {
        let e = "failed to connect to syslog: Initialization\nError: init container x exited with code 3\n";
        assert_eq!(clean_stderr(e), "init container x exited with code 3");
    }

    #[test]
    fn dependent_variables_expand_like_kubernetes() {
        let known = HashMap::from([("TOK".to_owned(), "s3cr3t".to_owned())]);
        assert_eq!(expand_refs("u?token=$(TOK)", &known), "u?token=s3cr3t");
        assert_eq!(expand_refs("$(NOPE) $$(TOK) $", &known), "$(NOPE) $(TOK) $");
    }

    #[test]
    fn a_secret_is_never_expanded_into_a_plain_value() {
        let mut ctr: Container = serde_json::from_value(serde_json::json!({
            "name": "plugin-p",
            "env": [
                {"name": "HOST", "value": "db"},
                {"name": "TOK", "valueFrom": {"secretKeyRef": {"name": "web.plugin-p", "key": "TOK"}}},
                {"name": "URL", "value": "http://$(HOST)/?t=$(TOK)"},
            ],
        }))
        .unwrap();
        prepare_container(
            &mut ctr,
            ComponentRef {
                team: "t",
                component: "web",
            },
        );
        let env = ctr.env.unwrap();
        assert_eq!(env[2].value.as_deref(), Some("http://db/?t=$(TOK)"));
        let r = env[1].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(
            r.name,
            kato_render::names::podman_secret_name("t", "web", "web.plugin-p")
        );
    }

    #[test]
    fn loopback_registries_are_recognised() {
        assert!(is_loopback_image("127.0.0.1:5000/t/p@sha256:00"));
        assert!(is_loopback_image("localhost/kato/busybox:1"));
        assert!(!is_loopback_image("nginx:1.27"));
        assert!(!is_loopback_image("registry.example.com/t/p:1"));
        assert!(floating_tag("nginx") && floating_tag("a/b:latest") && !floating_tag("127.0.0.1:5000/a:1"));
    }
}
