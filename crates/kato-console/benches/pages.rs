//! Console figures for BENCHMARKS.md:
//!
//! 1. server-side render time of each page (p50/p99 over `KATO_BENCH_SAMPLES`, default 300) with
//!    1,000 plug-ins (each with a succeeded version and config groups) and 1,000 components (each
//!    with a plug-in installed) in the team — the whole request, through the session check and
//!    the in-process API calls, as `kato serve` answers it; "warm" when nothing was written since
//!    the last read (the API's read cache holds its answers), "cold" with the cache emptied before
//!    each request, as after any write (and always on PostgreSQL, where the cache is off);
//! 2. each page's weight on first load: the HTML plus the stylesheet and the script it loads;
//! 3. how long a line takes from being written to reaching a page: a build's `RUN` step and a
//!    running container print `/proc/uptime` (the host's clock, to 10 ms), and the bench reads
//!    the console's event streams over a socket (needs podman, buildah and docker-registry).
//!
//! `cargo bench -p kato-console --bench pages`; under `cargo test` it runs a few samples.
//! `KATO_BENCH_SKIP_LIVE=1` skips part 3.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use kato_server::AppState;
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tower::ServiceExt;

const TEAM: &str = "bench";
const PLUGINS: usize = 1000;
const COMPONENTS: usize = 1000;

struct Bench {
    app: Router,
    state: Arc<AppState>,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(registry: &TestRegistry) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let config = kato_server::Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:7070".parse().unwrap(),
            database_url: None,
            public_url: Some("http://kato.bench:7070".into()),
            target: Some(kato_server::TargetKind::None),
            kubeconfig: None,
            builds: kato_server::builds::BuildSettings {
                concurrency: 8,
                ..Default::default()
            },
            secret_key: Default::default(),
        };
        let _ = registry;
        let (state, token) = kato_server::prepare(&config).await.unwrap();
        tokio::spawn(kato_server::builds::run_worker(
            state.clone(),
            kato_build::CancellationToken::new(),
        ));
        let app = kato_server::app(&state, Some(kato_console::pages()));
        Bench {
            app,
            state,
            admin: std::fs::read_to_string(token).unwrap().trim().to_owned(),
            _dir: dir,
        }
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.admin));
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// One page as a signed-in browser asks for it: status and body size.
    async fn page(&self, path: &str) -> (StatusCode, usize) {
        let req = Request::get(path)
            .header(header::COOKIE, format!("kato_session={}", self.admin))
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, bytes.len())
    }

    /// The team: 1,000 plug-ins from an image, each version 1 succeeded; 1,000 components, each
    /// with one of them installed.
    async fn fill(&self, image: &str) {
        self.api(Method::POST, "/teams", Some(json!({"name": TEAM}))).await;
        for i in 0..PLUGINS {
            let name = format!("p{i:04}");
            self.api(
                Method::POST,
                &format!("/teams/{TEAM}/plugins"),
                Some(json!({
                    "name": name,
                    "description": format!("plug-in number {i}"),
                    "kind": if i % 10 == 0 { "init" } else { "general" },
                    "source": {"image": image},
                    "memory_mib": 64,
                    "config_groups": [
                        {"name": "env", "meta": "none", "injection": "env",
                         "items": [{"name": "LEVEL", "type": "single", "options": ["debug", "info"], "default": "info"}]},
                        {"name": "ports", "meta": "component-port", "injection": "discovery",
                         "items": [{"name": "GREETING", "default": "hello"}]},
                    ],
                })),
            )
            .await;
            self.api(Method::POST, &format!("/teams/{TEAM}/plugins/{name}/versions"), None)
                .await;
        }
        // Every version resolved (bounded).
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let list = self.api(Method::GET, &format!("/teams/{TEAM}/plugins"), None).await;
            let done = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["latest_version"]["status"] == "succeeded")
                .count();
            if done == PLUGINS {
                break;
            }
            assert!(Instant::now() < deadline, "{done} of {PLUGINS} versions succeeded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in 0..COMPONENTS {
            let name = format!("c{i:04}");
            let depends: Vec<String> = if i > 0 { vec![format!("c{:04}", i - 1)] } else { vec![] };
            self.api(
                Method::POST,
                &format!("/teams/{TEAM}/components"),
                Some(json!({
                    "name": name,
                    "image": "registry.example/app:1",
                    "ports": [{"port": 8080, "protocol": "http"}],
                    "env": [{"name": "MODE", "value": "bench"}],
                    "memory_mib": 128,
                    "depends_on": depends,
                })),
            )
            .await;
            let plugin = format!("p{:04}", 1 + (i % (PLUGINS - 1)));
            self.api(
                Method::PUT,
                &format!("/teams/{TEAM}/components/{name}/plugins/{plugin}"),
                Some(json!({"enabled": true, "values": {"ports": {"8080": {"GREETING": format!("hi {i}")}}}})),
            )
            .await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The pages of a team this size, as a user meets them.
fn pages() -> Vec<(&'static str, String)> {
    vec![
        ("plug-in list", format!("/teams/{TEAM}/plugins")),
        (
            "plug-in list, searched",
            format!("/teams/{TEAM}/plugins?q=p05&kind=general"),
        ),
        ("new plug-in", format!("/teams/{TEAM}/plugins/new")),
        (
            "plug-in (draft, groups, versions)",
            format!("/teams/{TEAM}/plugins/p0500"),
        ),
        ("version (build log)", format!("/teams/{TEAM}/plugins/p0500/versions/1")),
        ("component list", format!("/teams/{TEAM}/components")),
        ("new component", format!("/teams/{TEAM}/components/new")),
        ("component overview", format!("/teams/{TEAM}/components/c0500")),
        ("component plug-ins", format!("/teams/{TEAM}/components/c0500/plugins")),
        (
            "component status and logs",
            format!("/teams/{TEAM}/components/c0500/status"),
        ),
        (
            "component manifests",
            format!("/teams/{TEAM}/components/c0500/manifests"),
        ),
        ("team settings", format!("/teams/{TEAM}/settings")),
        ("teams", "/teams".to_owned()),
    ]
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let samples: usize = std::env::var("KATO_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 5 } else { 300 });
    let registry = TestRegistry::start().await;
    let image = registry.push_image("bench/plugin", "1").await.image.to_string();
    let bench = Bench::start(&registry).await;
    let filled = Instant::now();
    bench.fill(&image).await;
    println!(
        "team filled: {PLUGINS} plug-ins with a succeeded version, {COMPONENTS} components with a plug-in each ({:.1} s)",
        filled.elapsed().as_secs_f64()
    );
    let css = bench.page(&kato_console::assets_urls().0).await.1;
    let js = bench.page(&kato_console::assets_urls().1).await.1;
    println!("stylesheet {css} B, script {js} B (each page loads both)");
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>11} {:>11} {:>12}",
        "page", "warm p50", "warm p99", "warm max", "cold p50", "cold p99", "weight KiB"
    );
    for (what, path) in pages() {
        let (status, size) = bench.page(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        for _ in 0..samples.min(20) {
            bench.page(&path).await;
        }
        let (mut warm, mut cold) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        for _ in 0..samples {
            let start = Instant::now();
            let (status, _) = bench.page(&path).await;
            warm.push(start.elapsed());
            assert_eq!(status, StatusCode::OK);
            bench.state.cache.invalidate();
            let start = Instant::now();
            let (status, _) = bench.page(&path).await;
            cold.push(start.elapsed());
            assert_eq!(status, StatusCode::OK);
        }
        warm.sort();
        cold.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{what:<36} {:>9.2} {:>9.2} {:>9.2} {:>11.2} {:>11.2} {:>12.1}",
            ms(percentile(&warm, 0.5)),
            ms(percentile(&warm, 0.99)),
            ms(*warm.last().unwrap()),
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 0.99)),
            (size + css + js) as f64 / 1024.0
        );
    }
    if std::env::var_os("KATO_BENCH_SKIP_LIVE").is_none() {
        live(quick).await;
    }
}

/// The host's `/proc/uptime`, the clock a container's `cat /proc/uptime` reads too.
fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Reads a console event stream over a socket: for each `line` event carrying an uptime stamp
/// (`<seconds>.<cs> <idle>`), how long after it was written the event arrived, until `count`.
async fn delays(url: &str, cookie: &str, count: usize, limit: Duration) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut res = client
        .get(url)
        .header("cookie", cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{url}: {}", res.status());
    // Lines written before the stream opened come at once: they are not counted.
    let opened = uptime();
    let deadline = Instant::now() + limit;
    let (mut buf, mut out, mut seen) = (String::new(), Vec::new(), String::new());
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, res.chunk()).await else {
            let tail: String = seen
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{url}: {} of {count} stamped lines in {limit:?}; the stream's end:\n{tail}",
                out.len()
            );
        };
        let now = uptime();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            seen.push_str(&event);
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let stamp = data
                .split_whitespace()
                .rev()
                .skip(1)
                .find_map(|w| w.parse::<f64>().ok().filter(|v| v.fract() != 0.0 || w.contains('.')));
            if let Some(written) = stamp.filter(|w| *w >= opened) {
                out.push(Duration::from_secs_f64((now - written).max(0.0)));
            }
        }
    }
    out
}

fn summary(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<36} lines {:>4}  p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms  (clock: 10 ms steps)",
        d.len(),
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99)),
        ms(*d.last().unwrap())
    );
}

/// Part 3: a build's log and a running container's log, from the line's writing to the page's
/// event stream, on a served socket with the podman target.
async fn live(quick: bool) {
    let lines = if quick { 5 } else { 50 };
    let platform = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = kato_server::Config {
        data_dir: dir.path().to_owned(),
        listen: addr,
        database_url: None,
        public_url: Some(format!("http://{addr}")),
        target: Some(kato_server::TargetKind::Podman),
        kubeconfig: None,
        builds: kato_server::builds::BuildSettings {
            registry: Some(platform.host().parse().unwrap()),
            ..Default::default()
        },
        secret_key: Default::default(),
    };
    let (state, token) = kato_server::prepare(&config).await.unwrap();
    let admin = std::fs::read_to_string(token).unwrap().trim().to_owned();
    let app = kato_server::app(&state, Some(kato_console::pages()));
    tokio::spawn(kato_server::serve_app_on(
        listener,
        state.clone(),
        app.clone(),
        std::future::pending(),
    ));
    let bench = Bench {
        app,
        state,
        admin,
        _dir: dir,
    };
    let cookie = format!("kato_session={}", bench.admin);
    let base = format!("http://{addr}");
    bench.api(Method::POST, "/teams", Some(json!({"name": TEAM}))).await;

    // A build whose RUN step prints the clock every 200 ms.
    let repo = kato_testkit::GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!(
            // The run's own mark keeps the builder from answering the step from its cache.
            "FROM {}\nRUN echo run {} && for i in $(seq 1 {}); do cat /proc/uptime; usleep 200000; done\n",
            kato_testkit::busybox_full_image(),
            uptime(),
            lines + 5
        ),
    )
    .commit("a build that prints the clock");
    bench
        .api(
            Method::POST,
            &format!("/teams/{TEAM}/plugins"),
            Some(json!({"name": "clock", "kind": "general", "source": {"dockerfile": {"repo": repo.path()}}})),
        )
        .await;
    bench
        .api(Method::POST, &format!("/teams/{TEAM}/plugins/clock/versions"), None)
        .await;
    let url = format!("{base}/teams/{TEAM}/plugins/clock/versions/1/log/events");
    summary(
        "build log → page",
        delays(&url, &cookie, lines, Duration::from_secs(300)).await,
    );

    // A running container printing the clock every 200 ms.
    bench
        .api(
            Method::POST,
            &format!("/teams/{TEAM}/components"),
            Some(json!({
                "name": "ticker",
                "image": kato_testkit::busybox_full_image(),
                "command": "trap 'exit 0' TERM; while true; do cat /proc/uptime; usleep 200000; done",
                "memory_mib": 32,
            })),
        )
        .await;
    bench
        .api(Method::POST, &format!("/teams/{TEAM}/components/ticker/deploy"), None)
        .await;
    let url = format!("{base}/teams/{TEAM}/components/ticker/logs/events?container=ticker");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = bench
            .api(Method::GET, &format!("/teams/{TEAM}/components/ticker/status"), None)
            .await;
        if status["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the ticker never ran: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    summary(
        "container log → page",
        delays(&url, &cookie, lines, Duration::from_secs(120)).await,
    );
    bench
        .api(Method::POST, &format!("/teams/{TEAM}/components/ticker/stop"), None)
        .await;
}
