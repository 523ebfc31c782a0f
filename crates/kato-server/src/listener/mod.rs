//! The listeners `kato serve` accepts on. Plain discovery GETs, which thousands of plug-ins hold
//! open as long-polls, are answered here without hyper: a waiting long-poll then holds its socket
//! and a small task, not hyper's two per-connection buffers and a boxed handler (together about
//! twice the whole budget per waiter). Any other request, and any discovery request this path
//! does not take as is, is handed to hyper and axum's router with the bytes already read, so that
//! its answers are axum's own; a connection handed over stays there ([`serve`]).
//!
//! Every connection counts against [`Limits::max_connections`]; one over it is answered 503 and
//! closed. A request head must arrive whole within [`Limits::header_timeout`] (counted from the
//! connection's start for the first, from its first byte for later ones), and a connection may
//! wait at most [`Limits::idle_timeout`] for its next request; a long-poll's own wait is not idle.

mod limits;
mod serve;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::api::discovery::{self, Answer, PollQuery};
use crate::state::AppState;

pub use limits::{Connections, Limits};
pub(crate) use limits::{Slot, metrics};
pub use serve::{Conn, serve};
pub(crate) use wire::document_head;
use wire::{DocumentGet, Head, write_document, write_response};

/// A request head larger than this is not a discovery GET: axum gets it.
const MAX_HEAD: usize = 4096;

/// Connections for axum: accepted here, possibly after answering discovery GETs on them.
pub struct Lean {
    handoff: mpsc::Receiver<(Conn, SocketAddr)>,
    limits: Limits,
}

impl Lean {
    /// The next connection handed over; `None` once the accept loop ended.
    async fn next(&mut self) -> Option<(Conn, SocketAddr)> {
        self.handoff.recv().await
    }
}

/// Starts accepting on `tcp`. `open` is held by every connection this path serves, so that
/// `open.closed()` tells when the last one ended; `connections` counts them against the cap.
pub fn lean(tcp: TcpListener, state: Arc<AppState>, connections: Arc<Connections>, open: watch::Receiver<()>) -> Lean {
    let (tx, rx) = mpsc::channel(256);
    let limits = connections.limits();
    tokio::spawn(accept_loop(tcp, state, connections, tx, open));
    Lean { handoff: rx, limits }
}

/// Accepts until the `Lean` is dropped (the server's graceful shutdown began).
async fn accept_loop(
    tcp: TcpListener,
    state: Arc<AppState>,
    connections: Arc<Connections>,
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
                let Some(slot) = connections.take() else {
                    refuse(&stream);
                    continue;
                };
                let (state, handoff, open) = (state.clone(), handoff.clone(), open.clone());
                tokio::spawn(async move {
                    connection(stream, addr, &state, &handoff, slot).await;
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

/// Tells a client over the cap why it is closed, if its socket takes the answer at once.
fn refuse(stream: &TcpStream) {
    const BODY: &str = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server holds as many \
                        connections as --max-connections allows: try again later\"}}";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One client connection: discovery GETs answered here, one after the other (keep-alive),
/// until the client closes, sends something else (which goes to axum), or takes too long.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    state: &AppState,
    handoff: &mpsc::Sender<(Conn, SocketAddr)>,
    slot: Slot,
) {
    let mut closing = state.discovery.hub.closing();
    // Bytes read and not answered yet: empty while the connection idles or a long-poll waits.
    let mut pending = Vec::new();
    let mut first = true;
    loop {
        if *closing.borrow() {
            return;
        }
        // When the head being read is due: the header timeout from the connection's start or the
        // head's first byte, the idle timeout while the connection waits for its next request.
        let mut due: Option<Instant> = None;
        let request = loop {
            if let Some(next) = ready_head(&stream, &mut pending) {
                match next {
                    Next::Ours(request, len) => {
                        pending.drain(..len);
                        if pending.is_empty() {
                            // A waiting long-poll keeps no buffer.
                            pending = Vec::new();
                        }
                        break request;
                    }
                    Next::Axum => {
                        let _ = handoff.send((Conn::new(stream, pending, slot), addr)).await;
                        return;
                    }
                    Next::Gone => return,
                }
            }
            let limits = slot.limits();
            let begun = first || !pending.is_empty();
            let at = *due.get_or_insert_with(|| {
                Instant::now()
                    + if begun {
                        limits.header_timeout
                    } else {
                        limits.idle_timeout
                    }
            });
            // Boxed: its timer must not size the task of every waiting long-poll.
            match Box::pin(wait_for_bytes(&stream, &mut pending, at, &mut closing)).await {
                Waited::Read if !begun => due = Some(Instant::now() + limits.header_timeout),
                Waited::Read => {}
                Waited::TimedOut => {
                    slot.timed_out(begun);
                    return;
                }
                Waited::Gone => return,
            }
        };
        first = false;
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

/// What came next on a connection.
enum Next {
    /// A discovery GET this path answers, with the length of its head in `pending`.
    Ours(DocumentGet, usize),
    /// Something for axum, whose bytes so far are in `pending`.
    Axum,
    /// The client closed.
    Gone,
}

/// The next request when its head is there (the usual case: no timer, no wait); `None` while
/// it is not whole yet.
fn ready_head(stream: &TcpStream, pending: &mut Vec<u8>) -> Option<Next> {
    if pending.is_empty() {
        match read_more(stream, pending) {
            Ok((0, _)) => return Some(Next::Gone),
            Ok((_, Some(request))) => return Some(Next::Ours(request, 0)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(_) => return Some(Next::Gone),
        }
    }
    match wire::head(pending) {
        Head::Ours(request, len) => Some(Next::Ours(request, len)),
        Head::Axum => Some(Next::Axum),
        Head::Partial if pending.len() >= MAX_HEAD => Some(Next::Axum),
        Head::Partial => None,
    }
}

/// How a wait for more of a request ended.
enum Waited {
    /// Bytes came, appended to `pending`.
    Read,
    /// Nothing whole by the deadline.
    TimedOut,
    /// The client closed, or the server is shutting down.
    Gone,
}

/// Waits until the socket has bytes, and appends them to `pending`; or until `due`.
async fn wait_for_bytes(
    stream: &TcpStream,
    pending: &mut Vec<u8>,
    due: Instant,
    closing: &mut watch::Receiver<bool>,
) -> Waited {
    let deadline = tokio::time::sleep_until(due);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ready = stream.readable() => if ready.is_err() { return Waited::Gone },
            _ = closing.wait_for(|c| *c) => return Waited::Gone,
            () = &mut deadline => return Waited::TimedOut,
        }
        match read_some(stream, pending) {
            Ok(0) => return Waited::Gone,
            Ok(_) => return Waited::Read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Waited::Gone,
        }
    }
}

/// Reads what the socket has. With nothing pending, into a buffer on the stack (a plain
/// function, so that the buffer is never part of a task): a discovery GET that comes whole in
/// one read is answered from there, costing no heap buffer, with what follows it left in
/// `pending`. Anything else is appended to `pending`.
fn read_more(stream: &TcpStream, pending: &mut Vec<u8>) -> io::Result<(usize, Option<DocumentGet>)> {
    if !pending.is_empty() {
        return read_some(stream, pending).map(|n| (n, None));
    }
    let mut buf = [0u8; MAX_HEAD];
    let n = stream.try_read(&mut buf)?;
    if let Some((request, len)) = wire::parse(&buf[..n]) {
        pending.extend_from_slice(&buf[len..n]);
        return Ok((n, Some(request)));
    }
    pending.extend_from_slice(&buf[..n]);
    Ok((n, None))
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
/// the stack and never part of a waiting task). At most [`MAX_HEAD`] bytes are held.
fn read_some(stream: &TcpStream, pending: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; MAX_HEAD];
    let room = MAX_HEAD.saturating_sub(pending.len()).max(1);
    let n = stream.try_read(&mut chunk[..room])?;
    pending.extend_from_slice(&chunk[..n]);
    Ok(n)
}
