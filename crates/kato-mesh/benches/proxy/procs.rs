//! The backend every path leads to, and the proxies in front of it as processes: kato-mesh
//! (configured by the bench's discovery server), nginx and HAProxy, with their CPU and RSS read
//! from /proc.

use super::*;

// ---- the backend ----

pub(crate) struct Backend {
    port: u16,
}

impl Backend {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// 1 KiB answers over HTTP/1.1 keep-alive, on its own thread and runtime.
pub(crate) async fn start_backend() -> Backend {
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
pub(crate) struct Proxy {
    child: Child,
}

impl Proxy {
    pub(crate) async fn mesh(stub: &Stub, metrics_port: u16) -> Proxy {
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

    pub(crate) async fn nginx(dir: &Path, port: u16, backend: u16) -> Proxy {
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

    pub(crate) async fn haproxy(dir: &Path, port: u16, backend: u16) -> Proxy {
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
    pub(crate) fn pids(&self) -> Vec<u32> {
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
    pub(crate) fn cpu_ticks(&self) -> u64 {
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
    pub(crate) fn rss_kib(&self) -> u64 {
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

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// The release `kato-mesh` next to this bench's own executable (cargo builds the package's
/// binaries before its benches).
pub(crate) fn mesh_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("kato-mesh")
}

/// The document the inbound role serves: one http port taken over at `listen`.
pub(crate) fn mesh_document(
    revision: u64,
    backend: u16,
    listen: u16,
    metrics: u16,
    max_connections: &str,
) -> serde_json::Value {
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

pub(crate) async fn wait_for<F, Fut>(mut ready: F)
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

pub(crate) async fn get_status(addr: SocketAddr, path: &str) -> Option<StatusCode> {
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
