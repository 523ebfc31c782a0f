//! API load benchmark: the release `kato serve` on SQLite, seeded through the API with a
//! component carrying 5 plug-ins, loaded by `wrk` (64 connections) on the same machine.
//! Prints requests/s and latency percentiles for `GET` of a plug-in and of manifests, and the
//! server's idle RSS.
//!
//!   cargo bench -p kato --bench api            (needs `wrk` and `docker-registry`)
//!   KATO_BENCH_SECONDS=30 cargo bench -p kato --bench api

use std::process::Stdio;
use std::time::Duration;

use kato_testkit::TestRegistry;
use serde_json::{Value, json};

struct ServerProcess(tokio::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn call(http: &reqwest::Client, token: &str, method: reqwest::Method, url: &str, body: Value) -> Value {
    let res = http
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

fn wrk(url: &str, token: &str, seconds: u64) -> (f64, String, String) {
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    (rps, pct("50%"), pct("99%"))
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("KATO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let registry = TestRegistry::start().await;
    let image = registry.push_image("bench/plugin", "1").await.image.to_string();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("KATO_DATA_DIR", dir.path())
        .env("KATO_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let _server = ServerProcess(child);
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_fresh = rss_kib(pid);
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let api = format!("{base}/api/v1");
    use reqwest::Method;
    call(
        &http,
        &token,
        Method::POST,
        &format!("{api}/teams"),
        json!({"name": "bench"}),
    )
    .await;
    let kinds = ["inbound-net", "outbound-net", "perf-analysis", "init", "general"];
    for (i, kind) in kinds.iter().enumerate() {
        let spec = json!({"name": format!("p{i}"), "kind": kind, "source": {"image": image}, "memory_mib": 64,
            "config_groups": [{"name": "env", "items": [{"name": "LEVEL", "default": "info"}, {"name": "TARGET", "default": "${HOST:localhost}:9000"}]}]});
        call(&http, &token, Method::POST, &format!("{api}/teams/bench/plugins"), spec).await;
        call(
            &http,
            &token,
            Method::POST,
            &format!("{api}/teams/bench/plugins/p{i}/versions"),
            json!(null),
        )
        .await;
    }
    call(
        &http,
        &token,
        Method::POST,
        &format!("{api}/teams/bench/components"),
        json!({"name": "db", "image": "postgres", "ports": [{"port": 5432, "protocol": "tcp"}]}),
    )
    .await;
    let web = json!({"name": "web", "image": "nginx:1.27", "ports": [{"port": 80, "protocol": "http"}, {"port": 443, "protocol": "https"}],
        "env": [{"name": "HOST", "value": "web"}, {"name": "MODE", "value": "prod"}], "volumes": [{"name": "logs", "path": "/var/log"}], "depends_on": ["db"]});
    call(
        &http,
        &token,
        Method::POST,
        &format!("{api}/teams/bench/components"),
        web,
    )
    .await;
    for i in 0..kinds.len() {
        call(
            &http,
            &token,
            Method::PUT,
            &format!("{api}/teams/bench/components/web/plugins/p{i}"),
            json!({"values": {"base": {"LEVEL": "debug"}}}),
        )
        .await;
    }
    let idle_seeded = rss_kib(pid);

    println!("load: wrk -t2 -c64 -d{seconds}s on the same 2-core machine, SQLite store");
    let plugin = wrk(&format!("{api}/teams/bench/plugins/p4"), &token, seconds);
    let manifests = wrk(&format!("{api}/teams/bench/components/web/manifests"), &token, seconds);
    println!("| request | req/s | p50 | p99 |");
    println!("|---|---|---|---|");
    println!("| GET plug-in | {:.0} | {} | {} |", plugin.0, plugin.1, plugin.2);
    println!(
        "| GET manifests (5 plug-ins) | {:.0} | {} | {} |",
        manifests.0, manifests.1, manifests.2
    );
    println!(
        "idle RSS: {:.1} MiB fresh, {:.1} MiB after seeding; {:.1} MiB after the load",
        idle_fresh as f64 / 1024.0,
        idle_seeded as f64 / 1024.0,
        rss_kib(pid) as f64 / 1024.0
    );
}
