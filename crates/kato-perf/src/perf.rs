//! The running plug-in: the capture, and the port serving its figures; each revision applied
//! whole or not at all.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::capture::{Capture, CaptureError};
use crate::config::{Applied, Config, Rejection};
use crate::server::{Shared, serve};
use crate::stats::DEFAULT_ROUTE_CAP;

/// How long a draining server waits for open requests.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Server {
    requested: u16,
    bound: u16,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The plug-in.
#[derive(Debug)]
pub struct Perf {
    shared: Arc<Shared>,
    server: Option<Server>,
}

impl Perf {
    /// Opens the capture (analysing nothing yet).
    pub fn start() -> Result<Perf, CaptureError> {
        let capture = Capture::start(DEFAULT_ROUTE_CAP)?;
        Ok(Perf {
            shared: Arc::new(Shared {
                capture,
                ready: false.into(),
            }),
            server: None,
        })
    }

    /// The port serving the figures, once a revision is applied.
    pub fn bound(&self) -> Option<u16> {
        self.server.as_ref().map(|s| s.bound)
    }

    pub fn note_rejection(&self) {
        self.shared
            .capture
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counters
            .rejections
            .inc();
    }

    /// Applies one revision: the ack's message, or why nothing changed.
    pub async fn apply(&mut self, revision: u64, config: &Config) -> Result<String, Rejection> {
        if self.server.as_ref().map(|s| s.requested) != Some(config.perf_port) {
            let listener = TcpListener::bind(("0.0.0.0", config.perf_port)).await.map_err(|e| {
                Rejection(format!(
                    "PERF_PORT {}: cannot listen: {e}; give a port nothing else in the pod uses",
                    config.perf_port
                ))
            })?;
            let bound = listener.local_addr().map(|a| a.port()).unwrap_or(config.perf_port);
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(serve(listener, self.shared.clone(), stopped));
            if let Some(old) = self.server.replace(Server {
                requested: config.perf_port,
                bound,
                stop,
                task,
            }) {
                let _ = old.stop.send(true);
            }
        }
        let capture = &self.shared.capture;
        capture.set_ports(config.ports.clone());
        // Applied means live: the capture takes the new filter within one tick.
        let deadline = Instant::now() + Duration::from_secs(2);
        while capture.analysed() != config.ports && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let stats = capture.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.counters.revision.set(i64::try_from(revision).unwrap_or(i64::MAX));
        }
        self.shared.ready.store(true, Ordering::Release);
        let bound = self.bound().unwrap_or(config.perf_port);
        Ok(Applied { config, bound }.to_string())
    }

    /// Stops serving (open requests finish, within 5 s) and stops the capture.
    pub async fn drain(mut self) {
        self.shared.ready.store(false, Ordering::Release);
        if let Some(s) = self.server.take() {
            let _ = s.stop.send(true);
            let _ = tokio::time::timeout(DRAIN, s.task).await;
        }
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.capture.stop()).await;
    }
}
