//! A registry in front of a real one that fails on demand: it answers chosen HTTP statuses (503,
//! 404, 401…) to the first requests, or while it is told to, and then passes every connection
//! through to the real registry. It counts the requests it saw, so tests can tell a retry from none.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answer this status to this many more requests, then pass through.
    FailFirst(u16, usize),
    /// Answer this status to every request until told otherwise.
    Fail(u16),
    Forward,
}

/// A loopback proxy to `upstream` that fails requests as told; stopped on drop.
pub struct FlakyRegistry {
    addr: SocketAddr,
    host: String,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlakyRegistry {
    /// Answers `status` to the first `count` requests (version checks, `GET /v2/`, excepted), then
    /// passes through to `upstream` (`host:port`).
    pub async fn fail_first(upstream: &str, status: u16, count: usize) -> Self {
        Self::start(upstream, Mode::FailFirst(status, count)).await
    }

    /// Answers `status` to every request until [`FlakyRegistry::recover`].
    pub async fn failing(upstream: &str, status: u16) -> Self {
        Self::start(upstream, Mode::Fail(status)).await
    }

    /// From now on, every request passes through.
    pub fn recover(&self) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = Mode::Forward;
    }

    /// `127.0.0.1:<port>`: use it as the registry part of image references.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests seen so far: each connection carries one, as the proxy closes it after the answer.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn start(upstream: &str, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_owned();
        let task = tokio::spawn({
            let (mode, requests) = (mode.clone(), requests.clone());
            async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(serve(conn, upstream.clone(), mode.clone(), requests.clone()));
                }
            }
        });
        Self {
            addr,
            host: addr.to_string(),
            mode,
            requests,
            task,
        }
    }
}

/// Reads one request head; fails it (closing the connection, so a body never has to be read) or
/// passes it through, asking the registry to close the connection after its answer.
async fn serve(mut conn: TcpStream, upstream: String, mode: Arc<Mutex<Mode>>, requests: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    // Clients take a failed version check (`GET /v2/`) to mean "no auth needed" and go on, so
    // counted failures are spent on the calls that matter.
    let ping = head.starts_with(b"GET /v2/ ") || head.starts_with(b"HEAD /v2/ ");
    let fail = {
        let mut mode = mode.lock().unwrap_or_else(PoisonError::into_inner);
        match *mode {
            Mode::FailFirst(status, left) if left > 0 && !ping => {
                *mode = if left == 1 {
                    Mode::Forward
                } else {
                    Mode::FailFirst(status, left - 1)
                };
                Some(status)
            }
            Mode::Fail(status) => Some(status),
            _ => None,
        }
    };
    if let Some(status) = fail {
        let answer = format!("HTTP/1.1 {status} Failing on purpose\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = conn.write_all(answer.as_bytes()).await;
        let _ = conn.shutdown().await;
        return;
    }
    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        return;
    };
    if up.write_all(&one_request_only(&head)).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
    }
}

/// The request head (and what followed it) with `Connection: close`, so the registry closes the
/// connection after answering and the client's next request comes through `serve` again.
fn one_request_only(read: &[u8]) -> Vec<u8> {
    let end = read.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(read.len());
    let head = String::from_utf8_lossy(&read[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(read.get(end + 2..).unwrap_or_default());
    bytes
}
