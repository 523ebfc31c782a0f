//! Discovery delivery benchmark: the release `kato serve` on SQLite, one installation watched
//! by 10,000 plug-in pods on the same machine.
//!
//! 1. Long-poll: 10,000 connections wait with `?revision=N&wait=300`; the server's RSS and CPU
//!    are read while they idle; then one value change through the API, and the delay until each
//!    watcher has the new document.
//! 2. Rainbond style: 10,000 clients poll every 5 s (spread evenly, keep-alive); the same
//!    change, the delay until each sees it, and the request rate they impose.
//!
//!   cargo bench -p kato --bench discovery                 (needs `docker-registry`)
//!   KATO_BENCH_WATCHERS=2000 cargo bench -p kato --bench discovery
//!   KATO_BENCH_AFTER=repoll|keep|close   what a long-poll client does once it has the document
//!                                        (default keep: hold the connection, send nothing more,
//!                                        so that the delivery is measured and not the clients'
//!                                        next requests, which real plug-ins send from their own
//!                                        machines)
//!   KATO_BENCH_POLLING=0                 skips the polling phase

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

const POLL_INTERVAL: Duration = Duration::from_secs(5);

struct ServerProcess(tokio::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn proc_field(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
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

/// Reads one HTTP/1.1 response; returns its status and `x-kato-revision`. Lean on purpose: the
/// clients share the server's two cores, and their CPU is taken from the server's.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, u64)> {
    buf.clear();
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(end) = res.parse(buf).map_err(std::io::Error::other)? else {
            continue;
        };
        let header = |name: &str| {
            res.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (len, revision) = (header("content-length") as usize, header("x-kato-revision"));
        let status = res.code.unwrap_or(0);
        while buf.len() < end + len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok((status, revision));
    }
}

fn request(path: &str, token: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: kato\r\nAuthorization: Bearer {token}\r\n\r\n")
}

async fn connect(addr: SocketAddr, gate: &Semaphore) -> TcpStream {
    let _permit = gate.acquire().await.unwrap();
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn percentiles(mut ms: Vec<f64>) -> String {
    if ms.is_empty() {
        return "no deliveries".into();
    }
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    format!(
        "n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        ms[ms.len() - 1]
    )
}

struct Target {
    addr: SocketAddr,
    path: String,
    token: String,
    admin: String,
    pid: u32,
    http: reqwest::Client,
}

impl Target {
    /// Makes one value change; the clients' clock starts just before it is sent, so that no
    /// client can see the new revision before the start is known.
    async fn change(&self, level: &str, start: &watch::Sender<Option<Instant>>) -> Instant {
        let at = Instant::now();
        start.send_replace(Some(at));
        call(
            &self.http,
            &self.admin,
            reqwest::Method::PUT,
            &format!("http://{}/api/v1/teams/bench/components/web/plugins/mesh", self.addr),
            json!({"values": {"base": {"LEVEL": level}}}),
        )
        .await;
        at
    }
}

/// What a long-poll client does once it has the new document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// Asks again at once on the same connection, with the new revision (as the discovery
    /// client's watch loop does).
    Repoll,
    /// Keeps the connection open and sends nothing.
    Keep,
    /// Closes the connection.
    Close,
}

impl After {
    fn from_env() -> After {
        match std::env::var("KATO_BENCH_AFTER").as_deref() {
            Ok("keep") | Err(_) => After::Keep,
            Ok("close") => After::Close,
            Ok("repoll") => After::Repoll,
            Ok(other) => panic!("KATO_BENCH_AFTER={other}: use repoll, keep or close"),
        }
    }
}

async fn long_poll(t: &Target, n: usize, revision: u64, after: After) {
    let gate = Arc::new(Semaphore::new(256));
    let waiting = Arc::new(AtomicUsize::new(0));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (gate, waiting, mut start) = (gate.clone(), waiting.clone(), start_rx.clone());
        let req = request(&format!("{}?revision={revision}&wait=300", t.path), &t.token);
        let (addr, path, token) = (t.addr, t.path.clone(), t.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr, &gate).await;
            s.write_all(req.as_bytes()).await.unwrap();
            waiting.fetch_add(1, Ordering::Relaxed);
            let mut buf = Vec::new();
            let (status, rev) = read_response(&mut s, &mut buf).await.unwrap();
            let got = Instant::now();
            match after {
                After::Repoll => {
                    let next = request(&format!("{path}?revision={rev}&wait=300"), &token);
                    s.write_all(next.as_bytes()).await.unwrap();
                }
                After::Keep => {}
                After::Close => drop(s.shutdown().await),
            }
            let t0 = start.wait_for(Option::is_some).await.unwrap().unwrap();
            assert_eq!(status, 200);
            assert!(rev > revision);
            (got.duration_since(t0).as_secs_f64() * 1000.0, s)
        }));
    }
    while waiting.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last requests reach their handlers, then measure the server idling.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, ticks) = (proc_field(t.pid, "VmRSS:"), cpu_ticks(t.pid));
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let cpu = (cpu_ticks(t.pid) - ticks) as f64 / idle.as_secs_f64();
    println!(
        "long-poll: {n} watchers idle: server RSS {:.1} MiB, CPU {cpu:.1}% of one core over {}s",
        rss as f64 / 1024.0,
        idle.as_secs()
    );
    let (server0, clients0) = (cpu_ticks(t.pid), cpu_ticks(std::process::id()));
    let t0 = t.change("warn", &start_tx).await;
    let mut ms = Vec::with_capacity(n);
    // The connections stay open until every client is measured (closed ones already sent FIN).
    let mut open = Vec::with_capacity(n);
    for task in tasks {
        let (delay, s) = task.await.unwrap();
        ms.push(delay);
        open.push(s);
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "long-poll: one change to {n} watchers, then each {after:?}: {} (requests: {n}, one per watcher)",
        percentiles(ms)
    );
    // Where the delivery's time went: both processes share the machine's two cores.
    println!(
        "long-poll: delivery CPU: server {:.0} ms, clients {:.0} ms, over {:.0} ms",
        (cpu_ticks(t.pid) - server0) as f64 * 10.0,
        (cpu_ticks(std::process::id()) - clients0) as f64 * 10.0,
        wall * 1000.0
    );
    drop(open);
}

async fn polling(t: &Target, n: usize, revision: u64) {
    let gate = Arc::new(Semaphore::new(256));
    let requests = Arc::new(AtomicU64::new(0));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let begin = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (gate, requests, start) = (gate.clone(), requests.clone(), start_rx.clone());
        let req = request(&t.path, &t.token);
        let addr = t.addr;
        let offset = POLL_INTERVAL.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr, &gate).await;
            let mut next = begin + offset;
            let mut buf = Vec::new();
            loop {
                tokio::time::sleep_until(next.into()).await;
                next += POLL_INTERVAL;
                s.write_all(req.as_bytes()).await.unwrap();
                let (status, rev) = read_response(&mut s, &mut buf).await.unwrap();
                requests.fetch_add(1, Ordering::Relaxed);
                assert_eq!(status, 200);
                if rev > revision {
                    let got = Instant::now();
                    let t0 = start.borrow().expect("a new revision only after the change");
                    return got.duration_since(t0).as_secs_f64() * 1000.0;
                }
            }
        }));
    }
    // Two full rounds to settle, then count a round of requests before the change.
    tokio::time::sleep(POLL_INTERVAL * 2).await;
    let (r0, at0) = (requests.load(Ordering::Relaxed), Instant::now());
    let ticks = cpu_ticks(t.pid);
    tokio::time::sleep(POLL_INTERVAL * 2).await;
    let rate = (requests.load(Ordering::Relaxed) - r0) as f64 / at0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(t.pid) - ticks) as f64 / at0.elapsed().as_secs_f64();
    println!(
        "polling every {}s: {n} clients: {rate:.0} requests/s, server CPU {cpu:.1}% of one core, RSS {:.1} MiB",
        POLL_INTERVAL.as_secs(),
        proc_field(t.pid, "VmRSS:") as f64 / 1024.0
    );
    t.change("error", &start_tx).await;
    let mut ms = Vec::with_capacity(n);
    for task in tasks {
        ms.push(task.await.unwrap());
    }
    println!(
        "polling every {}s: one change to {n} clients: {}",
        POLL_INTERVAL.as_secs(),
        percentiles(ms)
    );
}

async fn start_server(dir: &std::path::Path) -> (ServerProcess, SocketAddr, u32) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["serve", "--listen", &addr.to_string()])
        .env("KATO_DATA_DIR", dir)
        .env("KATO_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http.get(format!("http://{addr}/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ServerProcess(child), addr, pid)
}

/// The installation's discovery token, derived as the server renders it.
async fn discovery_token(dir: &std::path::Path) -> String {
    let key = kato_server::discovery::TokenKey::load_or_create(&dir.join("discovery.key")).unwrap();
    let (keys, _) = kato_server::secret_key::keyring(&Default::default(), dir).unwrap();
    let store = kato_store::Store::open(&kato_server::sqlite_url(dir), keys)
        .await
        .unwrap();
    let k = kato_store::InstallationKey {
        team: "bench".parse().unwrap(),
        component: "web".parse().unwrap(),
        plugin: "mesh".parse().unwrap(),
    };
    let record = store
        .get_installation(&k.team, &k.component, &k.plugin)
        .await
        .unwrap()
        .unwrap();
    let token = key.token(&k, &record.discovery.nonce);
    store.close().await;
    token
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("KATO_BENCH_WATCHERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    // Each watcher is a socket here and one in the server (its own process).
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
    assert!(
        hard as usize > n + 100,
        "RLIMIT_NOFILE's hard limit {hard} is too low for {n} watchers"
    );

    let registry = TestRegistry::start().await;
    let image = registry.push_image("bench/mesh", "1").await.image.to_string();
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, pid) = start_server(dir.path()).await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    let api = format!("http://{addr}/api/v1");
    use reqwest::Method;
    call(
        &http,
        &admin,
        Method::POST,
        &format!("{api}/teams"),
        json!({"name": "bench"}),
    )
    .await;
    let spec = json!({"name": "mesh", "kind": "general", "source": {"image": image}, "config_groups": [
        {"name": "base", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]},
        {"name": "ports", "meta": "component-port", "injection": "discovery", "items": [{"name": "TIMEOUT", "default": "5s"}]}]});
    call(&http, &admin, Method::POST, &format!("{api}/teams/bench/plugins"), spec).await;
    call(
        &http,
        &admin,
        Method::POST,
        &format!("{api}/teams/bench/plugins/mesh/versions"),
        json!(null),
    )
    .await;
    let web = json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}, {"port": 443, "protocol": "https"}]});
    call(
        &http,
        &admin,
        Method::POST,
        &format!("{api}/teams/bench/components"),
        web,
    )
    .await;
    let i = call(
        &http,
        &admin,
        Method::PUT,
        &format!("{api}/teams/bench/components/web/plugins/mesh"),
        json!({}),
    )
    .await;
    let revision = i["revision"].as_u64().unwrap();
    let target = Target {
        addr,
        path: "/discovery/v1/bench/web/mesh".into(),
        token: discovery_token(dir.path()).await,
        admin,
        pid,
        http,
    };
    println!(
        "{n} clients on the same 2-core machine as the server (SQLite); server RSS before: {:.1} MiB",
        proc_field(pid, "VmRSS:") as f64 / 1024.0
    );
    long_poll(&target, n, revision, After::from_env()).await;
    if std::env::var("KATO_BENCH_POLLING").as_deref() != Ok("0") {
        polling(&target, n, revision + 1).await;
    }
}
