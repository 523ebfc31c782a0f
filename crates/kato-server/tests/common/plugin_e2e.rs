//! What the default plug-ins' podman tests share (crates/kato-mesh/tests/podman.rs,
//! crates/kato-perf/tests/podman.rs, included there by path): the podman command line, the
//! team's pods removed afterwards, the defaults repo staged by `scripts/defaults` with the
//! binaries under test, a busybox image with extra files pushed to a test registry, and a
//! server on a real port targeting podman with calls that wait for builds, pods and acks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kato_server::catalog::DefaultsRepo;
use kato_server::{AppState, Config, TargetKind};
use kato_testkit::TestRegistry;
use serde_json::Value;
use tokio::sync::oneshot;

pub const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/containers.conf");

pub fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", CONF)
        .output()
        .expect("podman runs")
}

/// Runs podman and answers its stdout; fails the test with podman's stderr when it fails.
pub fn checked(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the team's pods when dropped, whether the test passed or not (unless
/// `KATO_E2E_KEEP` is set, to look at them after a failure).
pub struct Cleanup(pub &'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::env::var_os("KATO_E2E_KEEP").is_some() {
            return;
        }
        let label = format!("label=kato/team={}", self.0);
        let pods = podman(&["pod", "ls", "--filter", &label, "--format", "{{.Name}}"]);
        for pod in String::from_utf8_lossy(&pods.stdout).lines() {
            podman(&["pod", "rm", "--force", "--time", "0", pod]);
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `scripts/defaults` into `dir`, with these binaries as kato-mesh and kato-perf (`/bin/true`
/// stands in for one a test does not run).
pub fn stage_defaults(dir: &Path, mesh: &str, perf: &str) -> DefaultsRepo {
    let repo = dir.join("defaults-repo");
    let out = Command::new(repo_root().join("scripts/defaults"))
        .env("KATO_DEFAULTS_DIR", &repo)
        .env("KATO_MESH_BIN", mesh)
        .env("KATO_PERF_BIN", perf)
        .output()
        .expect("scripts/defaults runs");
    assert!(
        out.status.success(),
        "scripts/defaults: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    DefaultsRepo {
        repo: repo.to_str().unwrap().to_owned(),
        git_ref: Some("main".into()),
    }
}

/// busybox-static with every applet, plus `extra` files (with the libraries `ldd` lists for
/// each), as an image with PATH=/bin pushed to `registry` as `kato-e2e/{name}:1`.
pub fn busybox_image(registry: &TestRegistry, name: &str, extra: &[(&Path, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "tmp", "www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    for (from, to) in extra {
        std::fs::copy(from, root.join(to.trim_start_matches('/'))).unwrap();
        let ldd = Command::new("ldd").arg(from).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = path.filter(|p| p.starts_with('/')) {
                let to = root.join(lib.trim_start_matches('/'));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(lib, to).unwrap();
            }
        }
    }
    let tar = dir.path().join("image.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let local = format!("localhost/kato-e2e/{name}:1");
    checked(&[
        "import",
        "--quiet",
        "--change",
        "ENV PATH=/bin",
        tar.to_str().unwrap(),
        &local,
    ]);
    let remote = format!("{}/kato-e2e/{name}:1", registry.host());
    checked(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        &local,
        &format!("docker://{remote}"),
    ]);
    remote
}

/// A server on a real port of all interfaces, targeting podman (plug-ins reach it at
/// `host.containers.internal`), building into `registry`, with the defaults repo set; its
/// calls work in `team`.
pub struct Live {
    state: Arc<AppState>,
    base: String,
    admin: String,
    team: &'static str,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Live {
    pub async fn start(dir: &Path, registry: &TestRegistry, defaults: DefaultsRepo, team: &'static str) -> Live {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = Config {
            data_dir: dir.to_owned(),
            listen: listener.local_addr().unwrap(),
            database_url: None,
            public_url: Some(format!("http://host.containers.internal:{port}")),
            target: Some(TargetKind::Podman),
            kubeconfig: None,
            builds: Default::default(),
            secret_key: Default::default(),
        };
        config.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
        config.builds.defaults = Some(defaults);
        let (state, token_path) = kato_server::prepare(&config).await.unwrap();
        let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn({
            let state = state.clone();
            async move {
                kato_server::serve_on(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        let live = Live {
            state,
            base: format!("http://127.0.0.1:{port}/api/v1"),
            admin,
            team,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            stop,
            done,
        };
        live.call(reqwest::Method::POST, "/teams", Some(serde_json::json!({"name": team})))
            .await;
        live
    }

    pub async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.done.await.unwrap();
        self.state.store.close().await;
    }

    /// `/api/v1{path}` as the admin: the status and the body (JSON, else the text as a string).
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `/api/v1{path}` as the admin; fails the test unless it succeeds.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path} answered {status}: {v}");
        v
    }

    /// `/api/v1/teams/{team}{path}`: the status and the body.
    pub async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api(method, &format!("/teams/{}{path}", self.team), body).await
    }

    /// `/api/v1/teams/{team}{path}`; fails the test unless it succeeds.
    pub async fn team(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/teams/{}{path}", self.team), body).await
    }

    /// Waits until version 1 of `plugin` is built; fails the test unless it succeeded.
    pub async fn built(&self, plugin: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let v = self
                .team(reqwest::Method::GET, &format!("/plugins/{plugin}/versions/1"), None)
                .await;
            if !matches!(v["status"].as_str(), Some("queued" | "building")) {
                assert_eq!(v["status"], "succeeded", "version 1 of {plugin}: {v:#}");
                return v;
            }
            assert!(Instant::now() < deadline, "version 1 of {plugin} is still {v}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deploys and waits until every container of the component's pod runs: the pod's name.
    pub async fn deploy(&self, component: &str) -> String {
        self.team(reqwest::Method::POST, &format!("/components/{component}/deploy"), None)
            .await;
        self.running(component).await
    }

    /// Waits until every container of the component's one pod runs; answers the pod's name.
    pub async fn running(&self, component: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let st = self
                .team(reqwest::Method::GET, &format!("/components/{component}/status"), None)
                .await;
            let running = st["state"] == "running"
                && st["pods"].as_array().is_some_and(|p| p.len() == 1)
                && st["pods"][0]["containers"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["state"] == "running"));
            if running {
                return st["pods"][0]["name"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "{component} never ran: {st:#}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Installs (or updates) `plugin` on `component` with `body`; answers the new revision.
    pub async fn install(&self, component: &str, plugin: &str, body: Value) -> u64 {
        let v = self
            .team(
                reqwest::Method::PUT,
                &format!("/components/{component}/plugins/{plugin}"),
                Some(body),
            )
            .await;
        v["revision"].as_u64().unwrap()
    }

    pub async fn installation(&self, component: &str, plugin: &str) -> Value {
        self.team(
            reqwest::Method::GET,
            &format!("/components/{component}/plugins/{plugin}"),
            None,
        )
        .await
    }

    /// Waits until the pod acks `revision` (applied) or rejects it; answers the pod's report.
    pub async fn acked(&self, component: &str, plugin: &str, revision: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.installation(component, plugin).await;
            if let Some(pod) = v["pods"].as_array().and_then(|p| p.first()).cloned() {
                let applied = pod["applied_revision"].as_u64() == Some(revision);
                let rejected = pod["rejected"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x["revision"].as_u64() == Some(revision)));
                if applied || rejected {
                    return pod;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{component}/{plugin} never acked revision {revision}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
