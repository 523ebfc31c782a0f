//! TCP passthrough (every protocol but http and udp): MaxConnections, connect with one retry on
//! another endpoint, outlier accounting, then bytes both ways until close or TCPIdleTimeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::cluster::Cluster;
use crate::listener::{ConnSignal, Phase};
use crate::metrics::ListenerMetrics;

const BUFFER: usize = 8 * 1024;

/// What a TCP listener does at one revision.
#[derive(Debug)]
pub struct TcpService {
    pub cluster: Arc<Cluster>,
    pub metrics: ListenerMetrics,
}

/// Serves one client connection.
pub async fn serve(mut client: TcpStream, svc: Arc<TcpService>, mut signal: ConnSignal) {
    let cluster = &svc.cluster;
    let settings = cluster.settings();
    // Past MaxConnections the connection is closed at once.
    let Some(_permit) = cluster.conns.try_open(settings.limits.max_connections) else {
        cluster.metrics.overflow.inc();
        tracing::debug!(cluster = %cluster.name, "MaxConnections reached: connection closed");
        return;
    };
    let _ = client.set_nodelay(true);
    let Some(mut upstream) = connect(cluster, &settings).await else {
        return;
    };
    let idle = settings.timeouts.tcp_idle;
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut watched = Watched {
        inner: &mut client,
        start,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut watched, &mut upstream, BUFFER, BUFFER);
    tokio::pin!(copy);
    loop {
        let quiet_since = start + Duration::from_millis(last.load(Ordering::Relaxed));
        tokio::select! {
            r = copy.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(cluster = %cluster.name, error = %e, "connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until((quiet_since + idle).into()) => {
                if Instant::now().duration_since(start + Duration::from_millis(last.load(Ordering::Relaxed))) >= idle {
                    tracing::debug!(cluster = %cluster.name, "TCPIdleTimeout: connection closed");
                    return;
                }
            }
            p = signal.changed() => if p == Phase::Killed { return },
        }
    }
}

async fn connect(cluster: &Arc<Cluster>, settings: &crate::cluster::Settings) -> Option<TcpStream> {
    let mut avoid = None;
    let mut _retry = None;
    loop {
        let ep = match cluster.pick(avoid) {
            Ok(ep) => ep,
            Err(why) => {
                cluster.metrics.unavailable.inc();
                tracing::debug!(cluster = %cluster.name, why = why.header(), "no endpoint: connection closed");
                return None;
            }
        };
        match cluster.connect(ep.addr, settings.timeouts.connect).await {
            Ok(s) => {
                cluster.record(&ep, true);
                return Some(s);
            }
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, error = %e, "connect failed");
                cluster.metrics.connect_errors.inc();
                cluster.record(&ep, false);
                cluster.resolve_soon();
                if avoid.is_none()
                    && let Some(g) = cluster.retries.try_open(settings.limits.max_active_retries)
                {
                    _retry = Some(g);
                    avoid = Some(ep.addr);
                    continue;
                }
                return None;
            }
        }
    }
}

/// The client side of a passthrough, noting when bytes last moved either way.
struct Watched<'a> {
    inner: &'a mut TcpStream,
    start: Instant,
    last: &'a AtomicU64,
}

impl Watched<'_> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if r.is_ready() {
            this.touch();
        }
        r
    }
}

impl AsyncWrite for Watched<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if r.is_ready() {
            this.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}
