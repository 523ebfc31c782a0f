//! One upstream (an inbound port's app, or a downstream component's port): its endpoints, kept
//! across revisions with their connection pools, outlier ejection and health checks, and the
//! counters that circuit breaking reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::Shared;
use crate::config::{HealthCheck, Limits, Outlier, Timeouts};
use crate::limits::{Counter, Gate};
use crate::metrics::RouteMetrics;
use crate::resolve::Resolver;

const RESOLVE_EVERY: Duration = Duration::from_secs(5);
const FIRST_RESOLVE: Duration = Duration::from_secs(2);
const MAX_IDLE_PER_ENDPOINT: usize = 256;
const MAX_POOL_IDLE: Duration = Duration::from_secs(60);
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// What a cluster does; replaced as a whole by a new revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub outlier: Option<Outlier>,
    pub health: Option<HealthCheck>,
}

/// Where the endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Fixed(SocketAddr),
    Resolve { host: String, port: u16 },
}

/// One address of an upstream.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    failures: AtomicU32,
    ejected: AtomicBool,
    state: Mutex<EjectionState>,
    unhealthy: AtomicBool,
    idle: Mutex<Vec<(SendRequest<Incoming>, Instant)>>,
}

#[derive(Debug, Default)]
struct EjectionState {
    until: Option<Instant>,
    times: u32,
    returned: Option<Instant>,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            failures: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            state: Mutex::new(EjectionState::default()),
            unhealthy: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    fn available(&self) -> bool {
        !self.is_ejected() && !self.unhealthy.load(Ordering::Acquire)
    }

    /// Returns a connection whose response is complete to the pool.
    pub fn put_back(&self, sender: SendRequest<Incoming>) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((sender, Instant::now()));
        }
    }
}

/// Why no endpoint was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The name resolved to nothing (yet).
    NoEndpoint,
    /// Every endpoint is ejected (or the rest failed health checks).
    Ejected,
    /// Every endpoint failed its health check.
    Unhealthy,
}

impl Unavailable {
    pub fn header(self) -> &'static str {
        match self {
            Unavailable::NoEndpoint => "no-endpoint",
            Unavailable::Ejected => "ejected",
            Unavailable::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("MaxConnections reached")]
    Overflow,
    #[error("connect to {addr} failed: {source}")]
    Failed { addr: SocketAddr, source: std::io::Error },
    #[error("connect to {addr} timed out")]
    TimedOut { addr: SocketAddr },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: SocketAddr, source: hyper::Error },
}

/// An upstream with its long-lived state.
pub struct Cluster {
    pub name: String,
    pub target: Target,
    settings: Shared<Settings>,
    endpoints: Shared<Vec<Arc<Endpoint>>>,
    /// Upstream connections (HTTP) or passthrough connections (TCP).
    pub conns: Arc<Counter>,
    pub requests: Gate,
    pub retries: Arc<Counter>,
    pub metrics: RouteMetrics,
    next: AtomicUsize,
    sweeping: AtomicBool,
    resolve_now: Notify,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    resolve: Option<AbortHandle>,
    health: Option<AbortHandle>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name).finish()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let t = lock(&self.tasks);
        t.resolve.iter().chain(t.health.iter()).for_each(AbortHandle::abort);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// A cluster with its endpoints resolved once (a failure leaves it empty and retried).
    pub async fn start(
        name: String,
        target: Target,
        settings: Settings,
        metrics: RouteMetrics,
        resolver: Arc<dyn Resolver>,
    ) -> Arc<Cluster> {
        let cluster = Arc::new(Cluster {
            name,
            target: target.clone(),
            settings: Shared::new(settings),
            endpoints: Shared::new(Vec::new()),
            conns: Arc::default(),
            requests: Gate::default(),
            retries: Arc::default(),
            metrics,
            next: AtomicUsize::new(0),
            sweeping: AtomicBool::new(false),
            resolve_now: Notify::new(),
            tasks: Mutex::default(),
        });
        match target {
            Target::Fixed(addr) => cluster.endpoints.store(vec![Arc::new(Endpoint::new(addr))]),
            Target::Resolve { .. } => {
                // A slow DNS must not hold the revision up: the loop below goes on trying.
                let _ = tokio::time::timeout(FIRST_RESOLVE, cluster.resolve_once(resolver.as_ref())).await;
                let weak = Arc::downgrade(&cluster);
                let handle = tokio::spawn(resolve_loop(weak, resolver)).abort_handle();
                lock(&cluster.tasks).resolve = Some(handle);
            }
        }
        cluster.restart_health();
        cluster
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load()
    }

    /// New settings for new connections and requests; what is open keeps going.
    pub fn update(self: &Arc<Self>, settings: Settings) {
        let health_changed = self.settings.load().health != settings.health;
        self.settings.store(settings);
        if health_changed {
            self.restart_health();
        }
    }

    async fn resolve_once(&self, resolver: &dyn Resolver) {
        let Target::Resolve { host, port } = &self.target else {
            return;
        };
        match resolver.resolve(host, *port).await {
            Ok(addrs) => {
                let old = self.endpoints.load();
                if addrs.len() == old.len() && addrs.iter().zip(old.iter()).all(|(a, e)| *a == e.addr) {
                    return;
                }
                let new: Vec<Arc<Endpoint>> = addrs
                    .iter()
                    .map(|a| {
                        old.iter()
                            .find(|e| e.addr == *a)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Endpoint::new(*a)))
                    })
                    .collect();
                tracing::info!(cluster = %self.name, endpoints = ?addrs, "endpoints resolved");
                self.endpoints.store(new);
            }
            // The last endpoints keep serving while the name does not resolve.
            Err(e) => tracing::warn!(cluster = %self.name, host = %host, error = %e, "cannot resolve"),
        }
    }

    /// Asks for a new resolution now (after a connect failure).
    pub fn resolve_soon(&self) {
        self.resolve_now.notify_one();
    }

    /// The next available endpoint, round robin, other than `avoid`.
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Result<Arc<Endpoint>, Unavailable> {
        let eps = self.endpoints.load();
        if eps.is_empty() {
            self.resolve_soon();
            return Err(Unavailable::NoEndpoint);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = eps.len();
        let found = (0..n)
            .map(|i| &eps[(start + i) % n])
            .find(|e| e.available() && Some(e.addr) != avoid);
        match found {
            Some(e) => Ok(e.clone()),
            None if eps.iter().any(|e| e.is_ejected()) => Err(Unavailable::Ejected),
            None if avoid.is_some() => Err(Unavailable::NoEndpoint),
            None => Err(Unavailable::Unhealthy),
        }
    }

    /// Records an outcome for outlier detection: a failure is a 5xx or a connect error.
    pub fn record(self: &Arc<Self>, ep: &Endpoint, ok: bool) {
        if ok {
            if ep.failures.load(Ordering::Relaxed) != 0 {
                ep.failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failures = ep.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let Some(outlier) = self.settings.load().outlier.clone() else {
            return;
        };
        if failures >= outlier.consecutive_errors && !ep.is_ejected() {
            self.eject(ep, &outlier);
        }
    }

    fn eject(self: &Arc<Self>, ep: &Endpoint, outlier: &Outlier) {
        let eps = self.endpoints.load();
        let ejected = eps.iter().filter(|e| e.is_ejected()).count();
        // As in Envoy, one endpoint may always be ejected whatever the percentage.
        let allowed = (eps.len() * outlier.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            return;
        }
        let now = Instant::now();
        let duration = {
            let mut s = lock(&ep.state);
            // An endpoint that stayed healthy for as long as its last ejection starts over.
            if let Some(back) = s.returned
                && now.duration_since(back) > outlier.base_ejection * s.times.max(1)
            {
                s.times = 0;
            }
            s.times += 1;
            let d = (outlier.base_ejection * s.times).min(MAX_EJECTION.max(outlier.base_ejection));
            s.until = Some(now + d);
            d
        };
        ep.ejected.store(true, Ordering::Release);
        ep.failures.store(0, Ordering::Relaxed);
        self.metrics.ejections.inc();
        tracing::warn!(cluster = %self.name, endpoint = %ep.addr, seconds = duration.as_secs_f64(), "endpoint ejected");
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self), outlier.interval));
        }
    }

    /// Brings back endpoints whose ejection time is over; true while some are still ejected.
    fn return_due(&self, now: Instant) -> bool {
        let mut still = false;
        for ep in self.endpoints.load().iter().filter(|e| e.is_ejected()) {
            let mut s = lock(&ep.state);
            if s.until.is_some_and(|u| u <= now) {
                s.until = None;
                s.returned = Some(now);
                ep.failures.store(0, Ordering::Relaxed);
                ep.ejected.store(false, Ordering::Release);
                tracing::info!(cluster = %self.name, endpoint = %ep.addr, "endpoint returned");
            } else {
                still = true;
            }
        }
        still
    }

    /// A ready HTTP/1.1 connection to `ep`: a pooled one, or a new one within MaxConnections.
    pub async fn http_connection(&self, ep: &Endpoint, s: &Settings) -> Result<SendRequest<Incoming>, ConnectError> {
        let max_idle = s.timeouts.tcp_idle.min(MAX_POOL_IDLE);
        loop {
            let popped = lock(&ep.idle).pop();
            let Some((mut sender, since)) = popped else { break };
            if sender.is_closed() || since.elapsed() > max_idle {
                continue;
            }
            // The previous response is complete; the connection is ready or closing.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let permit = self
            .conns
            .try_open(s.limits.max_connections)
            .ok_or(ConnectError::Overflow)?;
        let stream = self.connect(ep.addr, s.timeouts.connect).await?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { addr: ep.addr, source })?;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = conn.with_upgrades().await;
        });
        sender
            .ready()
            .await
            .map_err(|source| ConnectError::Handshake { addr: ep.addr, source })?;
        Ok(sender)
    }

    /// A TCP connection within ConnectionTimeout.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(source)) => Err(ConnectError::Failed { addr, source }),
            Err(_) => Err(ConnectError::TimedOut { addr }),
        }
    }

    fn restart_health(self: &Arc<Self>) {
        let mut tasks = lock(&self.tasks);
        if let Some(h) = tasks.health.take() {
            h.abort();
        }
        match self.settings.load().health.clone() {
            Some(HealthCheck {
                interval: Some(interval),
                timeout,
            }) => {
                let weak = Arc::downgrade(self);
                tasks.health = Some(tokio::spawn(health_loop(weak, interval, timeout)).abort_handle());
            }
            _ => {
                for ep in self.endpoints.load().iter() {
                    ep.unhealthy.store(false, Ordering::Release);
                }
            }
        }
    }
}

async fn resolve_loop(cluster: Weak<Cluster>, resolver: Arc<dyn Resolver>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        {
            let woken = c.resolve_now.notified();
            tokio::pin!(woken);
            drop(tokio::time::timeout(RESOLVE_EVERY, woken).await);
        }
        c.resolve_once(resolver.as_ref()).await;
        // Connect failures in a burst cause one lookup, not one each.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sweep(cluster: Weak<Cluster>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        if !c.return_due(Instant::now()) {
            c.sweeping.store(false, Ordering::Release);
            // An ejection between the look and the store would have found `sweeping` set.
            if !c.endpoints.load().iter().any(|e| e.is_ejected()) || c.sweeping.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}

async fn health_loop(cluster: Weak<Cluster>, interval: Duration, timeout: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        for ep in c.endpoints.load().iter() {
            let ep = ep.clone();
            let name = c.name.clone();
            tokio::spawn(async move {
                let ok = matches!(
                    tokio::time::timeout(timeout, TcpStream::connect(ep.addr)).await,
                    Ok(Ok(_))
                );
                if ep.unhealthy.swap(!ok, Ordering::AcqRel) == ok {
                    if ok {
                        tracing::info!(cluster = %name, endpoint = %ep.addr, "health check passes again");
                    } else {
                        tracing::warn!(cluster = %name, endpoint = %ep.addr, "health check failed: excluded");
                    }
                }
            });
        }
    }
}
