//! Real backends (HTTP and TCP echo) on 127.0.0.1, a small HTTP client, and document builders.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kato_mesh::{Config, HostMap, Mesh};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const TEAM: &str = "team";

/// An HTTP backend answering `{name} {path}` with a settable status; requests wait while the
/// gate is closed.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub accepts: Arc<AtomicUsize>,
    pub status: Arc<AtomicU16>,
    pub gate: watch::Sender<bool>,
}

impl Backend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
    pub fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }
}

pub async fn backend(name: &'static str) -> Backend {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let accepts = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(AtomicU16::new(200));
    let (gate, gate_rx) = watch::channel(true);
    let (h, s, a) = (hits.clone(), status.clone(), accepts.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let (h, s, g) = (h.clone(), s.clone(), gate_rx.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (h, s, mut g) = (h.clone(), s.clone(), g.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = g.wait_for(|open| *open).await;
                        let body = format!("{name} {}", req.uri().path());
                        let mut res = Response::new(Full::new(Bytes::from(body)));
                        *res.status_mut() = StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        hits,
        accepts,
        status,
        gate,
    }
}

/// A TCP server that echoes what it reads.
pub async fn echo() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = socket.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Writes `msg` and reads the echo; `None` if the connection was closed or refused.
pub async fn echo_round(stream: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
    stream.write_all(msg).await.ok()?;
    let mut buf = vec![0u8; msg.len()];
    match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(buf),
        _ => None,
    }
}

/// A response as the client saw it.
pub struct Got {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP/1.1 connection for several requests.
pub struct Conn(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn(sender))
    }

    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Got, hyper::Error> {
        let mut req = Request::get(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.0.ready().await?;
        let res = self.0.send_request(req.body(Empty::new()).unwrap()).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Got {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One request on a new connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    get_with(addr, host, path, &[]).await
}

pub async fn get_with(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut c = Conn::open(addr).await.expect("connect to the proxy");
    c.get(host, path, headers).await.expect("an HTTP answer")
}

/// Waits for `check` to hold, polling, within 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}

/// A document; `base` gets `METRICS_PORT: "0"` unless it sets one.
pub fn doc(revision: u64, mut base: Value, ports: Value, downstream: Value) -> Value {
    if base.get("METRICS_PORT").is_none() {
        base["METRICS_PORT"] = json!("0");
    }
    json!({"revision": revision, "plugin": "mesh", "version": 1, "base": base,
           "ports": ports, "downstream": downstream})
}

pub fn config(doc: &Value) -> Config {
    Config::from_value(doc, TEAM).expect("a valid document")
}

/// A mesh whose downstream `{component}.team` names resolve to the given addresses.
pub fn mesh(hosts: &[(&str, SocketAddr)]) -> Mesh {
    let mut map = HostMap::default();
    for (component, addr) in hosts {
        let host = format!("{component}.{TEAM}");
        let mut addrs = map.0.remove(&host).unwrap_or_default();
        addrs.push(*addr);
        map = map.with(&host, addrs);
    }
    Mesh::with_resolver(Arc::new(map))
}

/// A port free right now (for listeners whose number must be known up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 127.0.0.1 with the port of a (possibly 0.0.0.0) bound address.
pub fn local(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}
