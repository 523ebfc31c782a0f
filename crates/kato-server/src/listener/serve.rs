//! The connections the lean path hands over, served by hyper with axum's router as
//! `axum::serve` does, with a time limit on request heads and a bound on each connection's read
//! buffer, which `axum::serve` does not set.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Lean, Limits, Slot};

/// hyper's read buffer per connection (its default is about 400 KiB): a request head must fit.
const MAX_BUF: usize = 16 * 1024;

/// Serves the connections `lean` hands over with `router` until `shutdown` resolves; then stops
/// accepting, lets each connection finish the request it serves, and returns once all ended.
pub async fn serve(mut lean: Lean, router: Router, shutdown: impl Future<Output = ()>) {
    let limits = lean.limits;
    // Receivers dropped: the connections shut down gracefully. Held by each connection's task:
    // `closed` once the last one ended.
    let (stop_tx, stop_rx) = watch::channel(());
    let (ended_tx, ended_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = lean.next() => match c {
                Some((conn, _addr)) => conn,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let (router, stop, ended) = (router.clone(), stop_tx.clone(), ended_rx.clone());
        tokio::spawn(async move {
            serve_one(conn, router, limits, stop).await;
            drop(ended);
        });
    }
    drop(lean);
    drop(stop_rx);
    drop(ended_rx);
    ended_tx.closed().await;
}

async fn serve_one(mut conn: Conn, router: Router, limits: Limits, stop: watch::Sender<()>) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper counts the wait for a request and its head together, from the end of the last
    // answer (or the hand-over): the connection was given its idle time on the lean path.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF);
    // Held until the connection ended.
    let slot = conn.slot.take();
    let mut served = pin!(builder.serve_connection(TokioIo::new(conn), TowerToHyperService::new(router)));
    let result = tokio::select! {
        r = served.as_mut() => r,
        () = stop.closed() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        if let Some(slot) = slot.as_ref().filter(|_| e.is_timeout()) {
            slot.timed_out(true);
        }
        tracing::trace!(error = %e, "connection ended");
    }
}

/// A connection handed to axum: the bytes read from it already, then the socket.
pub struct Conn {
    read: Vec<u8>,
    at: usize,
    stream: TcpStream,
    /// Its place among the open connections, taken by whoever serves it.
    slot: Option<Slot>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, read: Vec<u8>, slot: Slot) -> Conn {
        Conn {
            read,
            at: 0,
            stream,
            slot: Some(slot),
        }
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
