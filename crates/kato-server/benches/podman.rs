//! The podman target under load: how long an install on a running component takes to have the
//! plug-in's container running, how fast `GET …/status` answers, and a fleet of 20 components
//! with 3 plug-ins each deployed then stopped with nothing left behind. The API is called
//! in-process (no HTTP socket); containers are real podman ones.
//!
//!   cargo bench -p kato-server --bench podman          (as root; needs podman, runc, busybox-static,
//!                                                        docker-registry)
//!   KATO_BENCH_INSTALLS=20 KATO_BENCH_FLEET=20 cargo bench -p kato-server --bench podman

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use kato_server::{AppState, Config, TargetKind};
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tower::ServiceExt;

const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/containers.conf");
const BASE: &str = "localhost/kato-bench/busybox:1";
const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";
const TEAM: &str = "kbench";

fn podman(args: &[&str]) -> String {
    let out = std::process::Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", CONF)
        .output()
        .expect("podman runs");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn base_image() {
    if std::process::Command::new("podman")
        .args(["image", "exists", BASE])
        .env("CONTAINERS_CONF", CONF)
        .status()
        .is_ok_and(|s| s.success())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.path().join("image.tar");
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    podman(&["import", "--quiet", tar.to_str().unwrap(), BASE]);
}

struct Bench {
    router: axum::Router,
    admin: String,
    _state: Arc<AppState>,
}

impl Bench {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("/api/v1{path}"))
            .header("authorization", format!("Bearer {}", self.admin));
        let req = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                req.body(Body::from(b.to_string())).unwrap()
            }
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    async fn status(&self, component: &str) -> Value {
        self.call(
            Method::GET,
            &format!("/teams/{TEAM}/components/{component}/status"),
            None,
        )
        .await
    }

    async fn wait(&self, component: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.status(component).await;
            if done(&s) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out: {s:#}");
            tokio::time::sleep(Duration::from_millis(env_number("KATO_BENCH_POLL_MS", 50) as u64)).await;
        }
    }
}

fn plugin_running(s: &Value, name: &str) -> bool {
    s["state"] == "running"
        && s["pods"].as_array().into_iter().flatten().any(|p| {
            p["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == format!("plugin-{name}") && c["state"] == "running")
        })
}

fn has_plugin(s: &Value, name: &str) -> bool {
    s["pods"].as_array().into_iter().flatten().any(|p| {
        p["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == format!("plugin-{name}"))
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn leftovers() -> String {
    let pods = podman(&[
        "pod",
        "ls",
        "--filter",
        &format!("label=kato/team={TEAM}"),
        "--format",
        "{{.Name}}",
    ]);
    let mut left: Vec<String> = pods.lines().map(str::to_owned).collect();
    for kind in ["secret", "volume"] {
        left.extend(
            podman(&[kind, "ls", "--format", "{{.Name}}"])
                .lines()
                .filter(|n| n.starts_with(&format!("{TEAM}-")))
                .map(|n| format!("{kind} {n}")),
        );
    }
    left.join(", ")
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    base_image();
    let registry = TestRegistry::start().await;
    let image = |repo: &str| {
        let target = format!("{}/{repo}:1", registry.host());
        podman(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            BASE,
            &format!("docker://{target}"),
        ]);
        target
    };
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:7070".parse().unwrap(),
        database_url: None,
        public_url: Some("http://127.0.0.1:7070".into()),
        target: Some(TargetKind::Podman),
        kubeconfig: None,
        builds: Default::default(),
        secret_key: Default::default(),
    };
    let (state, token) = kato_server::prepare(&config).await.unwrap();
    let b = Bench {
        router: kato_server::router(state.clone()),
        admin: std::fs::read_to_string(token).unwrap().trim().to_owned(),
        _state: state,
    };
    b.call(Method::POST, "/teams", Some(json!({"name": TEAM}))).await;
    let app = image("bench/app");
    for p in ["side", "p1", "p2", "p3"] {
        let img = image(&format!("bench/{p}"));
        b.call(
            Method::POST,
            &format!("/teams/{TEAM}/plugins"),
            Some(json!({"name": p, "kind": "general", "source": {"image": img}, "command": IDLE, "memory_mib": 16})),
        )
        .await;
        b.call(Method::POST, &format!("/teams/{TEAM}/plugins/{p}/versions"), None)
            .await;
    }
    let component = |name: &str| json!({"name": name, "image": app, "command": IDLE, "memory_mib": 32});

    // 1. Install on a running component → the plug-in's container running.
    b.call(
        Method::POST,
        &format!("/teams/{TEAM}/components"),
        Some(component("web")),
    )
    .await;
    b.call(Method::POST, &format!("/teams/{TEAM}/components/web/deploy"), None)
        .await;
    b.wait("web", |s| s["state"] == "running").await;
    let runs = env_number("KATO_BENCH_INSTALLS", 10);
    let mut installs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        b.call(
            Method::PUT,
            &format!("/teams/{TEAM}/components/web/plugins/side"),
            Some(json!({})),
        )
        .await;
        b.wait("web", |s| plugin_running(s, "side")).await;
        installs.push(start.elapsed());
        b.call(
            Method::DELETE,
            &format!("/teams/{TEAM}/components/web/plugins/side"),
            None,
        )
        .await;
        b.wait("web", |s| s["state"] == "running" && !has_plugin(s, "side"))
            .await;
    }
    installs.sort();
    println!(
        "install → plug-in running: p50 {:.2} s, p90 {:.2} s, max {:.2} s ({runs} runs)",
        percentile(&installs, 0.5).as_secs_f64(),
        percentile(&installs, 0.9).as_secs_f64(),
        installs.last().unwrap().as_secs_f64()
    );

    // 2. GET status of a running component.
    let n = 1000;
    let mut lat = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let start = Instant::now();
        let s = b.status("web").await;
        lat.push(start.elapsed());
        assert_eq!(s["state"], "running");
    }
    let total = all.elapsed();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "GET status (sequential, {n} calls in {:.1} s): p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        total.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
    b.call(Method::POST, &format!("/teams/{TEAM}/components/web/stop"), None)
        .await;

    // 3. A fleet: N components × 3 plug-ins, deployed, then stopped.
    let fleet = env_number("KATO_BENCH_FLEET", 20);
    let names: Vec<String> = (0..fleet).map(|i| format!("c{i:02}")).collect();
    for name in &names {
        b.call(
            Method::POST,
            &format!("/teams/{TEAM}/components"),
            Some(component(name)),
        )
        .await;
        for p in ["p1", "p2", "p3"] {
            b.call(
                Method::PUT,
                &format!("/teams/{TEAM}/components/{name}/plugins/{p}"),
                Some(json!({})),
            )
            .await;
        }
    }
    let start = Instant::now();
    for name in &names {
        b.call(Method::POST, &format!("/teams/{TEAM}/components/{name}/deploy"), None)
            .await;
    }
    for name in &names {
        b.wait(name, |s| {
            s["state"] == "running" && s["pods"][0]["containers"].as_array().map(Vec::len) == Some(4)
        })
        .await;
    }
    let deployed = start.elapsed();
    let start = Instant::now();
    for name in &names {
        let s = b
            .call(Method::POST, &format!("/teams/{TEAM}/components/{name}/stop"), None)
            .await;
        assert_eq!(s["state"], "stopped");
    }
    let stopped = start.elapsed();
    let left = leftovers();
    println!(
        "fleet of {fleet} components × 3 plug-ins: all running in {:.1} s, all stopped in {:.1} s, left behind: {}",
        deployed.as_secs_f64(),
        stopped.as_secs_f64(),
        if left.is_empty() { "nothing" } else { &left }
    );
    assert!(left.is_empty(), "left behind: {left}");
}
