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

use std::path::Path;
use std::time::Duration;

use kato_testkit::TestRegistry;
use serde_json::{Value, json};

#[path = "../../kato-server/tests/common/plugin_e2e.rs"]
mod e2e;

use e2e::{Cleanup, Live, checked};

const TEAM: &str = "e2eperf";

/// busybox and `/perf-demo` (with the libraries it loads), pushed to `registry`.
fn component_image(registry: &TestRegistry) -> String {
    let demo = Path::new(env!("CARGO_BIN_EXE_kato-perf"))
        .with_file_name("examples")
        .join("perf-demo");
    assert!(demo.exists(), "{} is built by `cargo test`", demo.display());
    e2e::busybox_image(registry, "perf-demo", &[(demo.as_path(), "/perf-demo")])
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
    let _cleanup = Cleanup(TEAM);
    let registry = TestRegistry::start().await;
    let image = component_image(&registry);
    let dir = tempfile::tempdir().unwrap();
    let defaults = e2e::stage_defaults(dir.path(), "/bin/true", env!("CARGO_BIN_EXE_kato-perf"));
    let s = Live::start(&dir.path().join("data"), &registry, defaults, TEAM).await;
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
