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

#[path = "proxy/load.rs"]
mod load;
#[path = "proxy/procs.rs"]
mod procs;
#[path = "proxy/stub.rs"]
mod stub;

use load::{Run, load, load_with_changes, warm, wrk};
use procs::{Proxy, mesh_document, start_backend};
use stub::Stub;

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
