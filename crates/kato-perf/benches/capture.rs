//! What kato-perf costs, in one run on this machine: an HTTP backend on loopback (1 KiB answers)
//! driven open loop at 1,000 and 5,000 req/s (each request's latency counts from the moment it
//! was due), without the plug-in and with `kato-perf --document` analysing the port (release
//! build), two rounds of each, alternated. For each rate: the app's p50/p99 seen by the client without and with the
//! plug-in, the plug-in's CPU (% of one core) and RSS, and whether its count matches the requests
//! sent; then `wrk` at saturation (one thread, 64 connections) with the plug-in.
//!
//! ```sh
//! apt-get install wrk
//! cargo bench -p kato-perf --bench capture     # KATO_BENCH_SECONDS=N per measure (default 10)
//! ```
//!
//! Results: BENCHMARKS.md, "Performance analyser".

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: u64 = 16;
const ANSWER_BODY: usize = 1024;

fn main() {
    let seconds: u64 = std::env::var("KATO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(Duration::from_secs(seconds)));
}

async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {ANSWER_BODY}\r\n\r\n").into_bytes();
    answer.extend(std::iter::repeat_n(b'k', ANSWER_BODY));
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0;
                loop {
                    match s.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                }
            });
        }
    });
    addr
}

/// Open-loop load: `rate` req/s over `CONNECTIONS` keep-alive connections for `length`; the
/// latencies (ms) from each request's due time to its last answer byte.
async fn load(addr: SocketAddr, rate: u64, length: Duration) -> Vec<f64> {
    let per_conn = Duration::from_secs_f64(CONNECTIONS as f64 / rate as f64);
    let n = (length.as_secs_f64() * rate as f64 / CONNECTIONS as f64) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let offset = per_conn.mul_f64(c as f64 / CONNECTIONS as f64);
            let need = format!("HTTP/1.1 200 OK\r\nContent-Length: {ANSWER_BODY}\r\n\r\n").len() + ANSWER_BODY;
            let mut buf = vec![0u8; need];
            let mut out = Vec::with_capacity(n as usize);
            for i in 0..n {
                let due = start + offset + per_conn.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let req = format!("GET /items/{}?c={c} HTTP/1.1\r\nHost: b\r\n\r\n", i % 100);
                s.write_all(req.as_bytes()).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                out.push(due.elapsed().as_secs_f64() * 1000.0);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    all
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// utime + stime of `pid`, in seconds.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

struct Perf(Child, u16);

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_perf(app: u16) -> Perf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let doc = serde_json::json!({"revision": 1, "plugin": "perf", "version": 1, "base": {"PERF_PORT": port.to_string()},
        "ports": [{"port": app, "protocol": "http", "options": {"OPEN": "YES"}}], "downstream": []});
    let file = std::env::temp_dir().join(format!("kato-perf-bench-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kato-perf"))
        .args(["--document", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kato-perf starts (as root: CAP_NET_RAW)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port, "/ready").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "kato-perf never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Perf(child, port)
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

fn counted(port: u16) -> (u64, u64) {
    let (_, body) = get(port, "/summary").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let w = &v["ports"][0]["windows"]["15m"]["all"];
    (
        w["requests"].as_u64().unwrap_or(0),
        v["dropped_packets"].as_u64().unwrap_or(0),
    )
}

async fn run(length: Duration) {
    let app = backend().await;
    println!(
        "| rate | app p50 / p99 without | app p50 / p99 with kato-perf | kato-perf CPU (% of a core) | RSS | counted / sent | dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    for rate in [1_000u64, 5_000] {
        // Two rounds each, alternated, so that a slower moment of the machine hits both.
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let (mut used, mut rss, mut counted_n, mut dropped) = (0.0, 0.0f64, 0, 0);
        for _ in 0..2 {
            without.extend(load(app, rate, length).await);
            let perf = start_perf(app.port());
            let pid = perf.0.id();
            let (c0, t0) = (cpu(pid), Instant::now());
            let round = load(app, rate, length).await;
            used += (cpu(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0 / 2.0;
            rss = rss.max(rss_mb(pid));
            std::thread::sleep(Duration::from_millis(300));
            let (n, d) = counted(perf.1);
            counted_n += n;
            dropped += d;
            with.extend(round);
        }
        without.sort_by(f64::total_cmp);
        with.sort_by(f64::total_cmp);
        println!(
            "| {rate} req/s | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {used:.1} % | {rss:.1} MB | {counted_n} / {} | {dropped} |",
            pct(&without, 0.5),
            pct(&without, 0.99),
            pct(&with, 0.5),
            pct(&with, 0.99),
            with.len()
        );
    }
    // Saturation with wrk, the plug-in analysing.
    let perf = start_perf(app.port());
    let pid = perf.0.id();
    let (c0, t0) = (cpu(pid), Instant::now());
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c64",
            &format!("-d{}s", length.as_secs()),
            &format!("http://{app}/items/1"),
        ])
        .output();
    let used = (cpu(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_mb(pid);
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let rps = text
                .lines()
                .find(|l| l.starts_with("Requests/sec"))
                .unwrap_or("Requests/sec: ?");
            std::thread::sleep(Duration::from_millis(500));
            let (n, dropped) = counted(perf.1);
            let total = text
                .lines()
                .find(|l| l.contains("requests in"))
                .unwrap_or("")
                .trim()
                .to_owned();
            println!(
                "\nsaturation (wrk -t1 -c64): {rps}; {total}; kato-perf {used:.1} % of a core, RSS {rss:.1} MB, counted {n}, dropped {dropped}"
            );
        }
        Err(e) => println!("\nsaturation: wrk did not run ({e}); apt-get install wrk"),
    }
}
