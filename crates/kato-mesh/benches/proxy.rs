//! kato-mesh beside nginx and HAProxy, in one run on this machine: four paths to the same
//! backend (1 KiB responses over loopback) — direct, through `kato-mesh` (inbound role), through
//! nginx and through HAProxy, both Debian's, configured as plain reverse proxies with one
//! worker and upstream keep-alive.
//!
//! For each path: latency at a fixed 1,000 req/s (open loop: each request's latency counts from
//! the moment it was due, so a stall is not hidden by the requests it delays), requests/s at
//! saturation (`wrk`, one thread, 64 connections), the proxy's CPU per 1,000 requests and its
//! RSS idle and under load (summed over its processes). Then a live config change under load:
//! kato-mesh gets new revisions from a discovery server while serving 1,000 req/s, and the run
//! counts errors and compares the p99 of the second after each change with the steady one.
//!
//! ```sh
//! apt-get install wrk nginx haproxy
//! cargo bench -p kato-mesh --bench proxy      # KATO_BENCH_SECONDS=N per measure (default 10),
//!                                             # KATO_BENCH_ROUNDS=N rounds (default 3)
//! ```
//!
//! Results and how to read them: BENCHMARKS.md, "Governance proxy".

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const RATE: u64 = 1_000;
const CONNECTIONS: u64 = 16;
const BODY: [u8; 1024] = [b'k'; 1024];

fn main() {
    let seconds = std::env::var("KATO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let rounds = std::env::var("KATO_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(3usize);
    for tool in ["wrk", "nginx", "haproxy"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("the proxy bench needs `{tool}`: apt-get install wrk nginx haproxy");
            std::process::exit(2);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(Duration::from_secs(seconds), rounds));
}

async fn run(span: Duration, rounds: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = start_backend().await;
    let stub = Stub::start().await;
    let mesh_port = free_port();
    let metrics_port = free_port();
    stub.publish(mesh_document(1, backend.port(), mesh_port, metrics_port, "10240"));
    let mut paths: Vec<(&str, Option<Proxy>, u16)> = vec![("direct", None, backend.port())];
    paths.push(("kato-mesh", Some(Proxy::mesh(&stub, metrics_port).await), mesh_port));
    let nginx_port = free_port();
    paths.push((
        "nginx",
        Some(Proxy::nginx(dir.path(), nginx_port, backend.port()).await),
        nginx_port,
    ));
    let haproxy_port = free_port();
    paths.push((
        "haproxy",
        Some(Proxy::haproxy(dir.path(), haproxy_port, backend.port()).await),
        haproxy_port,
    ));

    println!(
        "{RATE} req/s open loop over {CONNECTIONS} connections and saturation (wrk -t1 -c64), \
         {}s each, {rounds} rounds taking the paths in turn (latency over all rounds, req/s the \
         median round), 1 KiB responses",
        span.as_secs()
    );
    // Rounds, each taking every path in turn: a burst of load elsewhere on the machine then
    // lands on every path alike rather than on one.
    let mut acc: Vec<Acc> = paths.iter().map(|_| Acc::default()).collect();
    for _ in 0..rounds {
        for ((_, proxy, port), acc) in paths.iter().zip(acc.iter_mut()) {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            warm(addr).await;
            if let Some(p) = proxy {
                let idle = p.rss_kib();
                acc.rss_idle = Some(acc.rss_idle.map_or(idle, |i: u64| i.min(idle)));
            }
            let cpu0 = proxy.as_ref().map(|p| p.cpu_ticks());
            let fixed = load(addr, span).await;
            if let (Some(p), Some(c0)) = (proxy, cpu0) {
                acc.cpu_ticks += p.cpu_ticks() - c0;
            }
            acc.fixed.ok += fixed.ok;
            acc.fixed.errors += fixed.errors;
            acc.fixed.samples.extend(fixed.samples);
            acc.rps.push(wrk(addr, span));
            if let Some(p) = proxy {
                let rss = p.rss_kib();
                acc.rss_load = Some(acc.rss_load.map_or(rss, |r: u64| r.max(rss)));
            }
        }
    }
    let mut rows = Vec::new();
    for ((name, proxy, _), mut acc) in paths.iter().zip(acc) {
        acc.rps.sort_by(f64::total_cmp);
        rows.push(Row {
            name,
            p50: acc.fixed.percentile(50.0),
            p99: acc.fixed.percentile(99.0),
            errors: acc.fixed.errors,
            rps: acc.rps[acc.rps.len() / 2],
            rps_all: acc.rps.clone(),
            cpu_ms_per_k: proxy
                .as_ref()
                .map(|_| acc.cpu_ticks as f64 * 1000.0 / ticks_per_second() / acc.fixed.ok as f64 * 1000.0),
            rss_idle: acc.rss_idle,
            rss_load: acc.rss_load,
        });
    }
    let direct = (rows[0].p50, rows[0].p99);
    println!(
        "{:<10} {:>9} {:>9} {:>10} {:>10} {:>7} {:>11} {:>14} {:>9} {:>9}",
        "path",
        "p50 ms",
        "p99 ms",
        "+p50 ms",
        "+p99 ms",
        "errors",
        "sat req/s",
        "CPU ms/1k req",
        "RSS idle",
        "RSS load"
    );
    for r in &rows {
        println!(
            "{:<10} {:>9.3} {:>9.3} {:>10.3} {:>10.3} {:>7} {:>11.0} {:>14} {:>9} {:>9}",
            r.name,
            ms(r.p50),
            ms(r.p99),
            ms(r.p50) - ms(direct.0),
            ms(r.p99) - ms(direct.1),
            r.errors,
            r.rps,
            r.cpu_ms_per_k.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
            r.rss_idle
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
            r.rss_load
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
        );
    }

    for r in &rows {
        let all: Vec<String> = r.rps_all.iter().map(|v| format!("{v:.0}")).collect();
        println!("{:<10} saturation by round: {}", r.name, all.join(", "));
    }

    // A live change under load: two new revisions while kato-mesh serves 1,000 req/s.
    let addr = SocketAddr::from(([127, 0, 0, 1], mesh_port));
    let third = span / 3;
    let changes = [
        (third, mesh_document(2, backend.port(), mesh_port, metrics_port, "5000")),
        (
            third * 2,
            mesh_document(3, backend.port(), mesh_port, metrics_port, "20000"),
        ),
    ];
    warm(addr).await;
    let run = load_with_changes(addr, span, &stub, &changes).await;
    let steady = run
        .steady(&changes.iter().map(|c| c.0).collect::<Vec<_>>())
        .percentile(99.0);
    let acked = stub.acks();
    for (at, _) in &changes {
        let after = run.window(*at, *at + Duration::from_secs(1)).percentile(99.0);
        println!(
            "live change at {:.1}s: p99 of the next second {:.3} ms vs the rest of the run {:.3} ms ({:.2}x)",
            at.as_secs_f64(),
            ms(after),
            ms(steady),
            ms(after) / ms(steady).max(f64::MIN_POSITIVE)
        );
    }
    println!(
        "live changes: {} requests, {} errors; acks: {}",
        run.ok + run.errors,
        run.errors,
        acked.join(", ")
    );
    for (_, proxy, _) in paths {
        if let Some(p) = proxy {
            p.stop();
        }
    }
}

/// What the rounds gathered for one path.
#[derive(Default)]
struct Acc {
    fixed: Run,
    cpu_ticks: u64,
    rps: Vec<f64>,
    rss_idle: Option<u64>,
    rss_load: Option<u64>,
}

struct Row<'a> {
    name: &'a str,
    rps_all: Vec<f64>,
    p50: Duration,
    p99: Duration,
    errors: u64,
    rps: f64,
    cpu_ms_per_k: Option<f64>,
    rss_idle: Option<u64>,
    rss_load: Option<u64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---- the backend ----

struct Backend {
    port: u16,
}

impl Backend {
    fn port(&self) -> u16 {
        self.port
    }
}

/// 1 KiB answers over HTTP/1.1 keep-alive, on its own thread and runtime.
async fn start_backend() -> Backend {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the backend");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(&BODY))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Backend { port }
}

// ---- the proxies ----

/// A proxy process (and its children, for nginx's workers).
struct Proxy {
    child: Child,
}

impl Proxy {
    async fn mesh(stub: &Stub, metrics_port: u16) -> Proxy {
        let exe = mesh_binary();
        let child = Command::new(&exe)
            .env("KATO_DISCOVERY_URL", stub.url())
            .env("KATO_DISCOVERY_TOKEN", "bench")
            .env("KATO_TEAM", "bench")
            .env("KATO_COMPONENT", "backend")
            .env("KATO_PLUGIN", "inbound-net")
            .env("HOSTNAME", "bench-pod")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let ready = SocketAddr::from(([127, 0, 0, 1], metrics_port));
        wait_for(|| async move { get_status(ready, "/ready").await == Some(StatusCode::OK) }).await;
        Proxy { child }
    }

    async fn nginx(dir: &Path, port: u16, backend: u16) -> Proxy {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\npid {pid};\nerror_log {err} warn;\ndaemon off;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n  access_log off;\n  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}\n\
                   server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://backend;\n\
                       proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
                pid = prefix.join("nginx.pid").display(),
                err = prefix.join("logs/error.log").display(),
            ),
        )
        .expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(|| async move { get_status(addr, "/").await == Some(StatusCode::OK) }).await;
        Proxy { child }
    }

    async fn haproxy(dir: &Path, port: u16, backend: u16) -> Proxy {
        let conf = dir.join("haproxy.cfg");
        std::fs::write(
            &conf,
            format!(
                "global\n  nbthread 1\n  maxconn 4096\n\
                 defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n\
                 frontend bench\n  bind 127.0.0.1:{port}\n  default_backend app\n\
                 backend app\n  server app 127.0.0.1:{backend}\n"
            ),
        )
        .expect("haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(|| async move { get_status(addr, "/").await == Some(StatusCode::OK) }).await;
        Proxy { child }
    }

    /// The process and its descendants.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        let mut i = 0;
        while i < pids.len() {
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", pids[i])).unwrap_or_default();
            pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            i += 1;
        }
        pids
    }

    /// utime + stime of every process, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| {
                // Fields after the command's closing parenthesis; utime and stime are the 14th
                // and 15th fields of the line, the 12th and 13th after it.
                let rest = &stat[stat.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .sum()
    }

    /// VmRSS of every process, in KiB.
    fn rss_kib(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// The release `kato-mesh` next to this bench's own executable (cargo builds the package's
/// binaries before its benches).
fn mesh_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("kato-mesh")
}

/// The document the inbound role serves: one http port taken over at `listen`.
fn mesh_document(revision: u64, backend: u16, listen: u16, metrics: u16, max_connections: &str) -> serde_json::Value {
    serde_json::json!({
        "revision": revision,
        "plugin": "inbound-net",
        "version": 1,
        "base": {"METRICS_PORT": metrics.to_string(), "LOG_LEVEL": "warn"},
        "ports": [{
            "port": backend,
            "protocol": "http",
            "listen_port": listen,
            "options": {"MaxConnections": max_connections},
        }],
        "downstream": [],
    })
}

async fn wait_for<F, Fut>(mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(Instant::now() < deadline, "a proxy did not come up within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_status(addr: SocketAddr, path: &str) -> Option<StatusCode> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let res = send.send_request(req).await.ok()?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    Some(status)
}

// ---- load ----

/// What an open-loop run saw: per request, when it was due (from the start) and its latency.
#[derive(Default)]
struct Run {
    samples: Vec<(Duration, Duration)>,
    ok: u64,
    errors: u64,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let mut l: Vec<Duration> = self.samples.iter().map(|s| s.1).collect();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort_unstable();
        let i = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
        l[i.min(l.len() - 1)]
    }

    /// Every sample but those of the second after each of `changes`.
    fn steady(&self, changes: &[Duration]) -> Run {
        Run {
            samples: self
                .samples
                .iter()
                .copied()
                .filter(|s| !changes.iter().any(|c| s.0 >= *c && s.0 < *c + Duration::from_secs(1)))
                .collect(),
            ok: 0,
            errors: 0,
        }
    }

    fn window(&self, from: Duration, to: Duration) -> Run {
        Run {
            samples: self
                .samples
                .iter()
                .copied()
                .filter(|s| s.0 >= from && s.0 < to)
                .collect(),
            ok: 0,
            errors: 0,
        }
    }
}

/// A few requests on fresh connections, so that pools and caches are warm.
async fn warm(addr: SocketAddr) {
    let _ = load(addr, Duration::from_millis(500)).await;
}

async fn load_with_changes(
    addr: SocketAddr,
    span: Duration,
    stub: &Stub,
    changes: &[(Duration, serde_json::Value)],
) -> Run {
    let start = Instant::now();
    let publisher = {
        let stub = stub.clone();
        let changes = changes.to_vec();
        tokio::spawn(async move {
            for (at, doc) in changes {
                tokio::time::sleep_until((start + at).into()).await;
                stub.publish(doc);
            }
        })
    };
    let run = load(addr, span).await;
    let _ = publisher.await;
    run
}

/// RATE requests a second for `span`, spread over CONNECTIONS keep-alive connections, each
/// request's latency counted from when it was due.
async fn load(addr: SocketAddr, span: Duration) -> Run {
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_nanos(1_000_000_000 * CONNECTIONS / RATE);
    let per_conn = span.as_nanos() as u64 / interval.as_nanos() as u64;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let offset = interval * c as u32 / CONNECTIONS as u32;
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            let mut sender = None;
            let mut free_since = start;
            for i in 0..per_conn {
                let due = start + offset + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                // Free before it was due: timed from the send, so the timer's own lateness
                // (tokio's timer ticks by the millisecond) is not counted. Still busy with the
                // previous request when it was due: timed from when it was due.
                let sent = if free_since <= due { Instant::now() } else { due };
                if sender.is_none() {
                    sender = connect(addr).await;
                }
                let Some(send) = sender.as_mut() else {
                    run.errors += 1;
                    continue;
                };
                let req = Request::get("/")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let ok = match send.send_request(req).await {
                    Ok(res) => {
                        let good = res.status() == StatusCode::OK;
                        good && res
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len() == BODY.len())
                            .unwrap_or(false)
                    }
                    Err(_) => false,
                };
                free_since = Instant::now();
                let latency = free_since - sent;
                if ok {
                    run.ok += 1;
                    run.samples.push((due - start, latency));
                } else {
                    run.errors += 1;
                    sender = None;
                }
            }
            run
        }));
    }
    let mut all = Run::default();
    for t in tasks {
        let r = t.await.expect("load task");
        all.samples.extend(r.samples);
        all.ok += r.ok;
        all.errors += r.errors;
    }
    all
}

async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// Requests/s at saturation: `wrk -t1 -c64`.
fn wrk(addr: SocketAddr, span: Duration) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c64",
            &format!("-d{}s", span.as_secs()),
            &format!("http://{addr}/"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk against {addr} saw errors:\n{text}");
    }
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

// ---- a discovery server for kato-mesh ----

/// Serves one document with Kato's long-poll (`?revision=N&wait=S`) and records acks.
#[derive(Clone)]
struct Stub {
    port: u16,
    doc: watch::Sender<serde_json::Value>,
    acks: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    async fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stub");
        let port = listener.local_addr().expect("address").port();
        let stub = Stub {
            port,
            doc: watch::Sender::new(serde_json::json!({"revision": 0})),
            acks: Arc::default(),
        };
        let served = stub.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let stub = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let stub = stub.clone();
                        async move { Ok::<_, Infallible>(stub.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        stub
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/discovery/v1/bench/backend/inbound-net", self.port)
    }

    fn publish(&self, doc: serde_json::Value) {
        self.doc.send_replace(doc);
    }

    fn acks(&self) -> Vec<String> {
        self.acks.lock().expect("acks").clone()
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == hyper::Method::POST {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let ack: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            self.acks.lock().expect("acks").push(format!(
                "{} {}",
                ack["revision"],
                ack["status"].as_str().unwrap_or("?")
            ));
            return Response::new(Full::new(Bytes::from_static(b"{}")));
        }
        let query = req.uri().query().unwrap_or("");
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut rx = self.doc.subscribe();
        if let (Some(known), Some(wait)) = (param("revision"), param("wait")) {
            let changed = tokio::time::timeout(
                Duration::from_secs(wait),
                rx.wait_for(|d| d["revision"].as_u64() != Some(known)),
            )
            .await;
            if changed.is_err() {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::NOT_MODIFIED;
                return res;
            }
        }
        let doc = rx.borrow().clone();
        let mut res = Response::new(Full::new(Bytes::from(doc.to_string())));
        res.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        res
    }
}
