//! The listener axum serves on. Plain discovery GETs, which thousands of plug-ins hold open as
//! long-polls, are answered here without hyper: a waiting long-poll then holds its socket and
//! a small task, not hyper's two per-connection buffers and a boxed handler (together about
//! twice the whole budget per waiter). Any other request, and any discovery request this path
//! does not take as is, is handed to axum with the bytes already read, so that its answers are
//! axum's own; a connection handed over stays with axum.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::api::discovery::{self, Answer, PollQuery};
use crate::discovery::Snapshot;
use crate::state::AppState;

/// A request head larger than this is not a discovery GET: axum gets it.
const MAX_HEAD: usize = 4096;
const MAX_HEADERS: usize = 24;
const PREFIX: &str = "/discovery/v1/";

/// Connections for axum: accepted here, possibly after answering discovery GETs on them.
pub struct Lean {
    handoff: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

/// Starts accepting on `tcp`. `open` is held by every connection this path serves, so that
/// `open.closed()` tells when the last one ended.
pub fn lean(tcp: TcpListener, state: Arc<AppState>, open: watch::Receiver<()>) -> io::Result<Lean> {
    let local = tcp.local_addr()?;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(accept_loop(tcp, state, tx, open));
    Ok(Lean { handoff: rx, local })
}

impl axum::serve::Listener for Lean {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.handoff.recv().await {
            Some(c) => c,
            // The accept loop ended with its listener: nothing comes any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts until axum drops the `Lean` (its graceful shutdown began).
async fn accept_loop(
    tcp: TcpListener,
    state: Arc<AppState>,
    handoff: mpsc::Sender<(Conn, SocketAddr)>,
    open: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            () = handoff.closed() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                let (state, handoff, open) = (state.clone(), handoff.clone(), open.clone());
                tokio::spawn(async move {
                    connection(stream, addr, &state, &handoff).await;
                    drop(open);
                });
            }
            // Out of file descriptors and the like: the connection waiting is not at fault,
            // and retrying at once would spin; as axum's own listener does.
            Err(e) if !is_connection_error(&e) => {
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => {}
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One client connection: discovery GETs answered here, one after the other (keep-alive),
/// until the client closes or sends something else, which goes to axum.
async fn connection(stream: TcpStream, addr: SocketAddr, state: &AppState, handoff: &mpsc::Sender<(Conn, SocketAddr)>) {
    let mut closing = state.discovery.hub.closing();
    // Bytes read and not answered yet: empty while the connection idles or a long-poll waits.
    let mut pending = Vec::new();
    loop {
        let request = if pending.is_empty() {
            tokio::select! {
                ready = stream.readable() => if ready.is_err() { return },
                _ = closing.wait_for(|c| *c) => return,
            }
            match read_request(&stream) {
                Read::Request(request, rest) => {
                    pending = rest;
                    request
                }
                Read::Other(read) => {
                    let _ = handoff.send((Conn::new(stream, read), addr)).await;
                    return;
                }
                Read::Nothing => continue,
                Read::Closed => return,
            }
        } else {
            let Some((request, len)) = parse(&pending) else {
                let _ = handoff.send((Conn::new(stream, pending), addr)).await;
                return;
            };
            pending.drain(..len);
            request
        };
        let Some(reply) = answer(state, &request, &stream, &mut pending).await else {
            return;
        };
        let keep_alive = request.keep_alive && !*closing.borrow();
        // Boxed: a general response's state must not size every connection's task.
        let written = match reply {
            Ok(Answer::Document(snapshot)) => write_document(&stream, &snapshot, keep_alive).await,
            Ok(other) => Box::pin(write_response(&stream, other.into_response(), keep_alive)).await,
            Err(res) => Box::pin(write_response(&stream, res, keep_alive)).await,
        };
        if written.is_err() || !keep_alive {
            return;
        }
    }
}

enum Read {
    /// A discovery GET this path answers, and the bytes after its head.
    Request(DocumentGet, Vec<u8>),
    /// Something else: axum's, with these bytes.
    Other(Vec<u8>),
    /// Nothing to read after all.
    Nothing,
    Closed,
}

/// Reads what the socket has into a buffer on the stack (never part of a task), so that a
/// request that fits in one read costs no heap buffer.
fn read_request(stream: &TcpStream) -> Read {
    let mut buf = [0u8; MAX_HEAD];
    match stream.try_read(&mut buf) {
        Ok(0) => Read::Closed,
        Ok(n) => match parse(&buf[..n]) {
            Some((request, len)) => Read::Request(request, buf[len..n].to_vec()),
            None => Read::Other(buf[..n].to_vec()),
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Nothing,
        Err(_) => Read::Closed,
    }
}

/// A discovery GET this path answers itself.
#[derive(Debug, PartialEq, Eq)]
struct DocumentGet {
    path: (String, String, String),
    revision: Option<u64>,
    wait: Option<u64>,
    token: Option<String>,
    keep_alive: bool,
}

/// The request at the start of `buf` and the length of its head, if it is a complete
/// HTTP/1.1 `GET /discovery/v1/{team}/{component}/{plugin}` with at most `revision` and `wait`
/// as whole numbers, no body and nothing unusual; anything else is axum's.
fn parse(buf: &[u8]) -> Option<(DocumentGet, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    if req.method? != "GET" || req.version? != 1 {
        return None;
    }
    let (path, query) = req.path?.split_once('?').unwrap_or((req.path?, ""));
    let mut parts = path.strip_prefix(PREFIX)?.split('/');
    let mut segment = || {
        parts
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .map(str::to_owned)
    };
    let triple = (segment()?, segment()?, segment()?);
    if parts.next().is_some() {
        return None;
    }
    let (mut revision, mut wait) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=')?;
        let slot = match name {
            "revision" => &mut revision,
            "wait" => &mut wait,
            _ => return None,
        };
        if slot.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = Some(value.parse().ok()?);
    }
    let mut token = None;
    let mut keep_alive = true;
    for h in req.headers.iter() {
        // As `HeaderValue::to_str`: visible ASCII only, else axum decides.
        if !h.value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
            return None;
        }
        let value = std::str::from_utf8(h.value).ok()?;
        if h.name.eq_ignore_ascii_case("authorization") {
            if token.is_none() {
                token = Some(value.to_owned());
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if !option.eq_ignore_ascii_case("keep-alive") {
                    return None;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
        } else if ["transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
        {
            return None;
        }
    }
    let get = DocumentGet {
        path: triple,
        revision,
        wait,
        token,
        keep_alive,
    };
    Some((get, len))
}

/// The answer to a document request, the same axum gives (`Err` for an answer built as axum's
/// response); `None` when the client left while its long-poll waited. Bytes the client sends
/// meanwhile (its next request) go to `pending`.
async fn answer(
    state: &AppState,
    get: &DocumentGet,
    stream: &TcpStream,
    pending: &mut Vec<u8>,
) -> Option<Result<Answer, Response>> {
    let token = get.token.as_deref().and_then(discovery::bearer_value);
    let q = PollQuery {
        revision: get.revision,
        wait: get.wait,
    };
    // Boxed: the checks read the store, and their state must not stay in the waiting task.
    let waiter = match Box::pin(discovery::start_poll(state, token, &get.path, q)).await {
        Ok(discovery::Poll::Now(answer)) => return Some(Ok(answer)),
        Ok(discovery::Poll::Wait(w)) => w,
        Err(e) => return Some(Err(e.into_response())),
    };
    tokio::select! {
        res = waiter.finish() => Some(res.map_err(IntoResponse::into_response)),
        () = client_gone(stream, pending) => None,
    }
}

/// Resolves when the client closes the connection (or it breaks). As hyper does, a client
/// that shuts down its sending side is taken as gone. Data it sends is kept for later, and then
/// this no longer watches the socket.
async fn client_gone(stream: &TcpStream, pending: &mut Vec<u8>) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match read_some(stream, pending) {
            Ok(0) => return,
            Ok(_) => return std::future::pending().await,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// What the socket has now, appended to `pending` (a plain function, so that its buffer is on
/// the stack and never part of a waiting task).
fn read_some(stream: &TcpStream, pending: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 512];
    let n = stream.try_read(&mut chunk)?;
    pending.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// The head of a document answer up to its `date` header: the same for every answer of one
/// revision, so built once with the revision's snapshot.
pub(crate) fn document_head(revision: u64, body_len: usize) -> Bytes {
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{}: {revision}\r\ncontent-length: {body_len}\r\n",
        discovery::REVISION_HEADER
    ))
}

/// Writes a document answer: its shared head and body, and the date, in one system call. (Not
/// an `async fn`: the pieces are written, or copied, before the returned future is first
/// polled, so that they never size the connection's task.)
fn write_document<'s>(
    stream: &'s TcpStream,
    snapshot: &Snapshot,
    keep_alive: bool,
) -> impl Future<Output = io::Result<()>> + use<'s> {
    crate::api::count_response(StatusCode::OK);
    let close: &[u8] = if keep_alive { b"" } else { b"connection: close\r\n" };
    write_all(stream, [&snapshot.head, close, &date_line(), &snapshot.body])
}

/// `date: <now>` and the blank line ending a head; formatted at most once a second per thread.
fn date_line() -> [u8; DATE_LINE] {
    thread_local! {
        static NOW: std::cell::RefCell<(u64, [u8; DATE_LINE])> = const { std::cell::RefCell::new((0, [0; DATE_LINE])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, line)| {
        if *at != secs {
            let text = format!("date: {}\r\n\r\n", httpdate::fmt_http_date(now));
            line.copy_from_slice(text.as_bytes());
            *at = secs;
        }
        *line
    })
}

/// `date: ` + an IMF-fixdate (always 29 bytes) + two line ends.
const DATE_LINE: usize = 6 + 29 + 4;

/// Writes a response with a complete body (the discovery answers all have one) as HTTP/1.1.
async fn write_response(stream: &TcpStream, res: Response, keep_alive: bool) -> io::Result<()> {
    crate::api::count_response(res.status());
    let (parts, body) = res.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut head = Vec::with_capacity(160);
    let status = parts.status;
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if status != StatusCode::NOT_MODIFIED && status != StatusCode::NO_CONTENT {
        head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    }
    write_all(stream, [&head, &date_line(), &body]).await
}

/// Writes `parts` in order: at once, in one vectored write, when the socket takes them all (it
/// does for answers this size); otherwise what remains is copied and written as the socket
/// drains. The first attempt happens before the returned future is polled.
fn write_all<'s, const N: usize>(
    stream: &'s TcpStream,
    parts: [&[u8]; N],
) -> impl Future<Output = io::Result<()>> + use<'s, N> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let rest = match stream.try_write_vectored(&parts.map(io::IoSlice::new)) {
        Ok(n) if n == total => Ok(Vec::new()),
        Ok(n) => Ok(parts.concat().split_off(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(parts.concat()),
        Err(e) => Err(e),
    };
    async move {
        let rest = rest?;
        let mut written = 0;
        while written < rest.len() {
            // `&TcpStream` writes through its shared readiness, like `write_all` on `&mut`.
            stream.writable().await?;
            match stream.try_write(&rest[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A connection handed to axum: the bytes read from it already, then the socket.
pub struct Conn {
    read: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl Conn {
    fn new(stream: TcpStream, read: Vec<u8>) -> Conn {
        Conn { read, at: 0, stream }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(head: &str) -> Option<DocumentGet> {
        parse(head.as_bytes()).map(|(g, len)| {
            assert_eq!(len, head.len());
            g
        })
    }

    #[test]
    fn plain_document_gets_are_taken() {
        let g = get("GET /discovery/v1/demo/web/mesh?revision=3&wait=30 HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer kd_1\r\n\r\n")
            .unwrap();
        assert_eq!(
            g,
            DocumentGet {
                path: ("demo".into(), "web".into(), "mesh".into()),
                revision: Some(3),
                wait: Some(30),
                token: Some("Bearer kd_1".into()),
                keep_alive: true,
            }
        );
        let g = get("GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!g.keep_alive && g.token.is_none() && g.revision.is_none());
    }

    #[test]
    fn everything_else_goes_to_axum() {
        for head in [
            "GET /discovery/v1/demo/web/mesh HTTP/1.0\r\n\r\n",
            "POST /discovery/v1/demo/web/mesh/ack HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh/ack HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/w%65b/mesh HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh?revision=x HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh?revision=1&revision=2 HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh?other=1 HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nHost: k\r\n",
            "GET /api/v1/teams HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(head.as_bytes()), None, "{head}");
        }
    }
}
