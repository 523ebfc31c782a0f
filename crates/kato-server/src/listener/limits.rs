//! How many connections a server holds, and how long one may go without a whole request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Limits on the connections `kato serve` holds, on both its listeners together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head must be whole within this: from the connection's start for its first
    /// request, from the first byte for a later one (`--header-timeout`).
    pub header_timeout: Duration,
    /// How long a connection may wait for its next request after an answer (`--idle-timeout`).
    /// A long-poll's own wait is not idle.
    pub idle_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed (`--max-connections`).
    pub max_connections: usize,
}

impl Limits {
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Room for the 10,000 long-poll watchers of BENCHMARKS.md, twice over.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The connections a server holds, counted against [`Limits::max_connections`].
#[derive(Debug)]
pub struct Connections {
    limits: Limits,
    open: AtomicUsize,
    refused: AtomicU64,
    timed_out: AtomicU64,
}

/// Process-wide figures for `/metrics`: open connections, refused ones, timed-out ones.
static METRICS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

impl Connections {
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at once because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed for not sending a whole request head in time, or idling too long.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// A place for one more connection, if the cap allows it.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        let max = self.limits.max_connections;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    max,
                    "as many connections open as --max-connections allows: refusing more"
                );
            }
            METRICS[1].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        METRICS[0].fetch_add(1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }
}

/// One open connection's place; freed when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Connections>);

impl Slot {
    pub(crate) fn limits(&self) -> Limits {
        self.0.limits
    }

    /// The connection is closed for taking too long: a head begun (`begun`) or an idle wait.
    pub(crate) fn timed_out(&self, begun: bool) {
        self.0.timed_out.fetch_add(1, Ordering::Relaxed);
        METRICS[2].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "closed a connection that {}",
            if begun {
                "sent no whole request head in time"
            } else {
                "idled too long"
            }
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        METRICS[0].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection figures in Prometheus' text format.
pub(crate) fn metrics() -> String {
    let [open, refused, timed_out] = METRICS.each_ref().map(|m| m.load(Ordering::Relaxed));
    format!(
        "# HELP kato_connections_open Connections the server holds open.\n\
         # TYPE kato_connections_open gauge\nkato_connections_open {open}\n\
         # HELP kato_connections_refused_total Connections closed at once: --max-connections were open.\n\
         # TYPE kato_connections_refused_total counter\nkato_connections_refused_total {refused}\n\
         # HELP kato_connections_timed_out_total Connections closed for sending no whole request head in \
         time (--header-timeout) or idling too long (--idle-timeout).\n\
         # TYPE kato_connections_timed_out_total counter\nkato_connections_timed_out_total {timed_out}\n"
    )
}
