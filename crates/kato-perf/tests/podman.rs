//! kato-perf on podman, end to end, as a team gets it: `scripts/defaults` stages the defaults
//! repo with this build of kato-perf, one `POST …/plugins/defaults` creates the catalog, Kato
//! builds `perf-analysis`, and it runs beside a real component, configured through discovery:
//!
//! `web` runs `perf-demo serve` (examples/perf-demo.rs): HTTP on 8080 (`/fast` 5 ms, `/slow`
//! 50 ms) and a MySQL-protocol server on 3306 (a `users` query 5 ms, an `orders` query 30 ms,
//! anything else ERR); it prints its own measure of each answer. `client`, another pod, drives
//! it over the pod network at a known rate.
//!
//! 1. Kato's `…/perf` serves the summary: counts exact, p50 per path within 10 % of the server's
//!    own measure;
//! 2. MySQL fingerprints with their latency and errors;
//! 3. bytes that are not HTTP: no panic, one undecodable flow;
//! 4. `OPEN=NO` on 8080, live: acked, the port leaves the summary, the container is not restarted.
//!
//! The test works in a team of its own and removes its pods, even when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kato_server::catalog::DefaultsRepo;
use kato_server::{AppState, Config, TargetKind};
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TEAM: &str = "e2eperf";
const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/containers.conf");

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", CONF)
        .output()
        .expect("podman runs")
}

fn checked(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the team's pods when dropped (unless `KATO_E2E_KEEP` is set).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::env::var_os("KATO_E2E_KEEP").is_some() {
            return;
        }
        let label = format!("label=kato/team={TEAM}");
        let pods = podman(&["pod", "ls", "--filter", &label, "--format", "{{.Name}}"]);
        for pod in String::from_utf8_lossy(&pods.stdout).lines() {
            podman(&["pod", "rm", "--force", "--time", "0", pod]);
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `scripts/defaults` with this build's kato-perf (the proxies are stand-ins: not used here).
fn stage_defaults(dir: &Path) -> DefaultsRepo {
    let repo = dir.join("defaults-repo");
    let out = Command::new(repo_root().join("scripts/defaults"))
        .env("KATO_DEFAULTS_DIR", &repo)
        .env("KATO_MESH_BIN", "/bin/true")
        .env("KATO_PERF_BIN", env!("CARGO_BIN_EXE_kato-perf"))
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

/// busybox and `/perf-demo` (with the libraries it loads), pushed to `registry`.
fn component_image(registry: &TestRegistry) -> String {
    let demo = Path::new(env!("CARGO_BIN_EXE_kato-perf"))
        .with_file_name("examples")
        .join("perf-demo");
    assert!(demo.exists(), "{} is built by `cargo test`", demo.display());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::copy(&demo, root.join("perf-demo")).unwrap();
    let ldd = Command::new("ldd").arg(&demo).output().unwrap();
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
    let local = "localhost/kato-e2e/perf-demo:1";
    checked(&[
        "import",
        "--quiet",
        "--change",
        "ENV PATH=/bin",
        tar.to_str().unwrap(),
        local,
    ]);
    let remote = format!("{}/kato-e2e/perf-demo:1", registry.host());
    checked(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        local,
        &format!("docker://{remote}"),
    ]);
    remote
}

/// A server on a real port of all interfaces, targeting podman, with the defaults repo set.
struct Live {
    state: Arc<AppState>,
    base: String,
    admin: String,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn start(dir: &Path, registry: &TestRegistry, defaults: DefaultsRepo) -> Live {
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
        Live {
            state,
            base: format!("http://127.0.0.1:{port}/api/v1"),
            admin,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            stop,
            done,
        }
    }

    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.done.await.unwrap();
        self.state.store.close().await;
    }

    /// `/api/v1/teams/{TEAM}{path}` as the admin: the status and the body.
    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/teams/{TEAM}{path}", self.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn team(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.raw(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path} answered {status}: {v}");
        v
    }

    async fn built(&self, plugin: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let v = self
                .team(reqwest::Method::GET, &format!("/plugins/{plugin}/versions/1"), None)
                .await;
            if !matches!(v["status"].as_str(), Some("queued" | "building")) {
                assert_eq!(v["status"], "succeeded", "version 1 of {plugin}: {v:#}");
                return;
            }
            assert!(Instant::now() < deadline, "version 1 of {plugin} is still {v}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deploys and waits until every container of the component's pod runs: the pod's name.
    async fn deploy(&self, component: &str) -> String {
        self.team(reqwest::Method::POST, &format!("/components/{component}/deploy"), None)
            .await;
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

    /// Waits until the pod acks `revision`: its report.
    async fn acked(&self, component: &str, plugin: &str, revision: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self
                .team(
                    reqwest::Method::GET,
                    &format!("/components/{component}/plugins/{plugin}"),
                    None,
                )
                .await;
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
                "{component}/{plugin} never acked {revision}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The server's own measures (`truth <kind> <what> <ms>` lines of its log): the median per what.
fn truth(container: &str, kind: &str, what: &str) -> (usize, f64) {
    let logs = checked(&["logs", container]);
    let mut v: Vec<f64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("truth {kind} {what} ")))
        .map(|ms| ms.trim().parse().unwrap())
        .collect();
    v.sort_by(f64::total_cmp);
    (v.len(), v[v.len() / 2])
}

/// The figures of `route` on `port` over the last minute.
fn route<'a>(summary: &'a Value, port: u16, route: &str) -> &'a Value {
    let port = summary["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap();
    port["windows"]["1m"]["most_frequent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no {route} in {summary:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_performance_analyser_on_podman() {
    let _cleanup = Cleanup;
    let registry = TestRegistry::start().await;
    let image = component_image(&registry);
    let dir = tempfile::tempdir().unwrap();
    let defaults = stage_defaults(dir.path());
    let s = Live::start(&dir.path().join("data"), &registry, defaults).await;
    let res = s
        .http
        .post(format!("{}/teams", s.base))
        .bearer_auth(&s.admin)
        .json(&json!({"name": TEAM}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    s.team(reqwest::Method::POST, "/plugins/defaults", None).await;
    s.built("perf-analysis").await;

    let component = |name: &str, command: Value, ports: Value| json!({"name": name, "image": image, "command": command, "ports": ports, "memory_mib": 64});
    let web = component(
        "web",
        json!(["/perf-demo", "serve"]),
        json!([{"port": 8080, "protocol": "http"}, {"port": 3306, "protocol": "mysql"}]),
    );
    let client = component("client", json!(["sleep", "1000000"]), json!([]));
    for c in [&web, &client] {
        s.team(reqwest::Method::POST, "/components", Some(c.clone())).await;
    }
    let installed = s
        .team(
            reqwest::Method::PUT,
            "/components/web/plugins/perf-analysis",
            Some(json!({"enabled": true})),
        )
        .await;
    let revision = installed["revision"].as_u64().unwrap();
    let web_pod = s.deploy("web").await;
    let client_pod = s.deploy("client").await;
    let report = s.acked("web", "perf-analysis", revision).await;
    assert_eq!(report["applied_revision"], revision, "{report:#}");
    let message = report["applied_message"].as_str().unwrap();
    assert!(
        message.starts_with("analysing 2 ports: 3306 (mysql), 8080 (http)"),
        "{message}"
    );

    // 1, 2, 3: load from the other pod, at a known rate.
    let client_app = format!("{client_pod}-client");
    let host = format!("web.{TEAM}");
    let run = |args: &[&str]| checked(&[&["exec", client_app.as_str(), "/perf-demo"][..], args].concat());
    run(&["http", &format!("{host}:8080"), "/fast", "100", "20"]);
    run(&["http", &format!("{host}:8080"), "/slow", "40", "10"]);
    run(&["mysql", &format!("{host}:3306"), "20"]);
    run(&["junk", &format!("{host}:8080")]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let answer = s
        .team(reqwest::Method::GET, "/components/web/plugins/perf-analysis/perf", None)
        .await;
    assert_eq!(answer["pod"], web_pod.as_str(), "{answer:#}");
    let summary = &answer["summary"];
    let web_app = format!("{web_pod}-web");
    for (path, n) in [("/fast", 100), ("/slow", 40)] {
        let r = route(summary, 8080, &format!("GET {path}"));
        assert_eq!(r["requests"], n, "{r:#}");
        assert_eq!(r["errors"], 0, "{r:#}");
        let (seen, want) = truth(&web_app, "http", path);
        assert_eq!(seen, n);
        let got = r["p50_ms"].as_f64().unwrap();
        eprintln!("{path}: plug-in p50 {got:.3} ms, server {want:.3} ms");
        assert!(
            (got - want).abs() / want < 0.10,
            "{path}: {got} ms vs the server's {want} ms"
        );
    }
    for (fingerprint, what, errors) in [
        ("select name from users where id = ?", "users", 0),
        ("select * from orders where id in (?+) and state = ?", "orders", 0),
        ("select * from missing", "bad", 20),
    ] {
        let r = route(summary, 3306, fingerprint);
        assert_eq!(
            (r["requests"].clone(), r["errors"].clone()),
            (json!(20), json!(errors)),
            "{r:#}"
        );
        if errors == 0 {
            let (_, want) = truth(&web_app, "mysql", what);
            let got = r["p50_ms"].as_f64().unwrap();
            eprintln!("{what}: plug-in p50 {got:.3} ms, server {want:.3} ms");
            assert!((got - want).abs() / want < 0.10, "{what}: {got} ms vs {want} ms");
        }
    }
    assert_eq!(summary["undecodable_flows"]["malformed"], 1, "{summary:#}");
    assert_eq!(summary["dropped_packets"], 0, "{summary:#}");

    // 4. OPEN=NO on 8080, live.
    let installed = s
        .team(
            reqwest::Method::PUT,
            "/components/web/plugins/perf-analysis",
            Some(json!({"values": {"ports": {"8080": {"OPEN": "NO"}}}})),
        )
        .await;
    let revision = installed["revision"].as_u64().unwrap();
    let report = s.acked("web", "perf-analysis", revision).await;
    assert_eq!(report["applied_revision"], revision, "{report:#}");
    assert!(
        report["applied_message"]
            .as_str()
            .unwrap()
            .contains("8080 (http) OPEN=NO"),
        "{report:#}"
    );
    run(&["http", &format!("{host}:8080"), "/fast", "10", "50"]);
    let answer = s
        .team(reqwest::Method::GET, "/components/web/plugins/perf-analysis/perf", None)
        .await;
    let ports: Vec<&Value> = answer["summary"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["port"])
        .collect();
    assert_eq!(ports, [&json!(3306)], "{answer:#}");
    let st = s.team(reqwest::Method::GET, "/components/web/status", None).await;
    assert_eq!(st["pods"][0]["name"], web_pod.as_str(), "the same pod");
    for c in st["pods"][0]["containers"].as_array().unwrap() {
        assert_eq!(c["restarts"], 0, "{c:#}");
    }
    s.shutdown().await;
}
