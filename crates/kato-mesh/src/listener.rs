//! A bound socket and its accept loop. The socket outlives revisions: a new revision swaps the
//! service behind it; open connections keep theirs. Stopping drains, then kills, connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::Shared;
use crate::admin::Admin;
use crate::http::HttpService;
use crate::tcp::TcpService;

/// What a listener does with the connections it accepts.
#[derive(Debug, Clone)]
pub enum Service {
    Http(Arc<HttpService>),
    Tcp(Arc<TcpService>),
    Admin(Arc<Admin>),
}

/// A listener's life, as its connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Stop taking requests; finish what is in flight.
    Draining,
    /// Close now.
    Killed,
}

/// What a connection task watches: the listener's phase and current service.
#[derive(Clone)]
pub struct ConnSignal {
    phase: watch::Receiver<Phase>,
    slot: Arc<Shared<Service>>,
}

impl ConnSignal {
    /// The next phase; pends forever if the listener is gone without a word.
    pub async fn changed(&mut self) -> Phase {
        if self.phase.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.phase.borrow_and_update()
    }

    pub fn service(&self) -> Arc<Service> {
        self.slot.load()
    }
}

/// Open connections of one listener.
#[derive(Debug, Default)]
struct Tracker {
    open: AtomicUsize,
    idle: Notify,
}

struct TrackGuard {
    tracker: Arc<Tracker>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        if self.tracker.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

/// A running listener.
pub struct Listener {
    pub addr: SocketAddr,
    pub slot: Arc<Shared<Service>>,
    phase: watch::Sender<Phase>,
    tracker: Arc<Tracker>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("addr", &self.addr).finish()
    }
}

impl Listener {
    /// Starts accepting on a bound socket.
    pub fn start(socket: TcpListener, addr: SocketAddr, service: Service) -> Listener {
        let slot = Arc::new(Shared::new(service));
        let (phase, rx) = watch::channel(Phase::Serving);
        let tracker = Arc::new(Tracker::default());
        let signal = ConnSignal {
            phase: rx,
            slot: slot.clone(),
        };
        tokio::spawn(accept_loop(socket, signal, tracker.clone()));
        Listener {
            addr,
            slot,
            phase,
            tracker,
        }
    }

    /// New connections get `service`; open ones keep what they have.
    pub fn swap(&self, service: Service) {
        self.slot.store(service);
    }

    pub fn open_connections(&self) -> usize {
        self.tracker.open.load(Ordering::Acquire)
    }

    /// Stops accepting and asks connections to finish their requests.
    pub fn stop_accepting(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    /// Waits for open connections to finish, up to `limit`, then closes what is left.
    pub async fn drain(&self, limit: Duration) {
        self.stop_accepting();
        let wait = async {
            loop {
                let idle = self.tracker.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.open_connections() == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::info!(addr = %self.addr, open = self.open_connections(), "drain time is over: closing");
        }
        self.phase.send_replace(Phase::Killed);
    }
}

async fn accept_loop(socket: TcpListener, mut signal: ConnSignal, tracker: Arc<Tracker>) {
    loop {
        let accepted = tokio::select! {
            a = socket.accept() => a,
            p = signal.changed() => if p == Phase::Serving { continue } else { return },
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: breathe, then go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = signal.service();
        let gauge = match &*service {
            Service::Http(h) => h.metrics.active.clone(),
            Service::Tcp(t) => t.metrics.active.clone(),
            Service::Admin(_) => Default::default(),
        };
        match &*service {
            Service::Http(h) => h.metrics.accepted.inc(),
            Service::Tcp(t) => t.metrics.accepted.inc(),
            Service::Admin(_) => 0,
        };
        gauge.inc();
        tracker.open.fetch_add(1, Ordering::AcqRel);
        let guard = TrackGuard {
            tracker: tracker.clone(),
            gauge,
        };
        let conn_signal = signal.clone();
        let slot = signal.slot.clone();
        match (*service).clone() {
            Service::Http(h) => {
                tokio::spawn(async move {
                    let _guard = guard;
                    crate::http::serve(stream, slot, h, conn_signal).await;
                });
            }
            Service::Tcp(t) => {
                tokio::spawn(async move {
                    let _guard = guard;
                    crate::tcp::serve(stream, t, conn_signal).await;
                });
            }
            Service::Admin(a) => {
                tokio::spawn(async move {
                    let _guard = guard;
                    crate::admin::serve(stream, a, conn_signal).await;
                });
            }
        }
    }
}
