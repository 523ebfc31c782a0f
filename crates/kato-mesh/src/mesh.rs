//! The running proxy: applies a validated [`Config`] live (sockets whose address is unchanged
//! are kept and swap to the new settings; new ones are bound first, so a failed bind changes
//! nothing; removed ones drain), and drains everything on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::cluster::{Cluster, Settings, Target};
use crate::config::{Config, Inbound, Mode, Outbound, Rejection};
use crate::http::HttpService;
use crate::limits::TokenBucket;
use crate::listener::{Listener, Service};
use crate::metrics::Metrics;
use crate::resolve::{Dns, Resolver};
use crate::route::Table;
use crate::tcp::TcpService;

/// Which kind of listener; with the configured port it names a listener across revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    Inbound,
    Outbound,
}

/// What a revision set up, for the ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub revision: u64,
    /// One line per proxy listener, e.g. `65301→127.0.0.1:8080 (http)`.
    pub listeners: Vec<String>,
    /// Entries skipped or shadowed, and why.
    pub notes: Vec<String>,
    pub metrics: SocketAddr,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.listeners.len();
        write!(f, "{n} listener{}", if n == 1 { "" } else { "s" })?;
        if n > 0 {
            write!(f, ": {}", self.listeners.join(", "))?;
        }
        write!(f, "; metrics on :{}", self.metrics.port())?;
        for note in &self.notes {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// One listener a revision wants.
struct Planned {
    key: (Role, u16),
    addr: SocketAddr,
    place: String,
    what: What,
}

enum What {
    Admin,
    Inbound(usize),
    /// Indexes into `config.outbound`, all on one port; HTTP routes or one TCP entry.
    Outbound(Vec<usize>, Mode),
}

/// The proxy: its listeners, upstreams and rate-limit buckets.
pub struct Mesh {
    resolver: Arc<dyn Resolver>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    admin: Arc<Admin>,
    listeners: BTreeMap<(Role, u16), Listener>,
    clusters: HashMap<String, Arc<Cluster>>,
    buckets: HashMap<String, Arc<TokenBucket>>,
    current: Option<Config>,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh").field("listeners", &self.listeners).finish()
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh::new()
    }
}

impl Mesh {
    /// A mesh resolving downstreams through DNS.
    pub fn new() -> Mesh {
        Mesh::with_resolver(Arc::new(Dns))
    }

    /// A mesh resolving downstream host names (`{component}.{team}`) with `resolver`.
    pub fn with_resolver(resolver: Arc<dyn Resolver>) -> Mesh {
        let metrics = Arc::new(Metrics::new());
        let ready = Arc::new(AtomicBool::new(false));
        Mesh {
            resolver,
            admin: Arc::new(Admin {
                metrics: metrics.clone(),
                ready: ready.clone(),
            }),
            metrics,
            ready,
            listeners: BTreeMap::new(),
            clusters: HashMap::new(),
            buckets: HashMap::new(),
            current: None,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The last applied config.
    pub fn current(&self) -> Option<&Config> {
        self.current.as_ref()
    }

    /// The bound address of a listener, by its configured port (`listen_port` for inbound, the
    /// downstream port for outbound, `METRICS_PORT` for admin).
    pub fn local_addr(&self, role: Role, port: u16) -> Option<SocketAddr> {
        self.listeners.get(&(role, port)).map(|l| l.addr)
    }

    /// The admin port's bound address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|((r, _), _)| *r == Role::Admin)
            .map(|(_, l)| l.addr)
    }

    /// Counts a rejected revision (its reason goes into the ack).
    pub fn note_rejection(&self) {
        self.metrics.rejections.inc();
    }

    /// Applies a revision: binds what is new (a failure rejects and changes nothing), swaps
    /// the settings of listeners that stay, drains the ones that go.
    pub async fn apply(&mut self, config: Config) -> Result<Summary, Rejection> {
        let (plan, notes) = plan(&config);
        let mut bound = HashMap::new();
        for p in &plan {
            if self.listeners.contains_key(&p.key) {
                continue;
            }
            let socket = match TcpListener::bind(p.addr).await {
                Ok(s) => s,
                Err(source) => {
                    self.note_rejection();
                    return Err(Rejection::Bind {
                        place: p.place.clone(),
                        addr: p.addr,
                        source,
                    });
                }
            };
            let addr = socket.local_addr().unwrap_or(p.addr);
            bound.insert(p.key, (socket, addr));
        }
        // From here on nothing fails.
        let buckets = self.buckets_for(&config);
        let mut clusters = HashMap::new();
        let mut summary = Summary {
            revision: config.revision,
            listeners: Vec::new(),
            notes,
            metrics: SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.base.metrics_port)),
        };
        for p in &plan {
            let service = self.service(&config, p, &buckets, &mut clusters, &mut summary).await;
            match (self.listeners.get(&p.key), bound.remove(&p.key)) {
                (Some(l), _) => l.swap(service),
                (None, Some((socket, addr))) => {
                    tracing::info!(listener = %p.place, %addr, "listening");
                    self.listeners.insert(p.key, Listener::start(socket, addr, service));
                }
                (None, None) => unreachable!("every new listener was bound above"),
            }
        }
        let wanted: Vec<(Role, u16)> = plan.iter().map(|p| p.key).collect();
        let drain = config.base.drain;
        let gone: Vec<(Role, u16)> = self.listeners.keys().filter(|k| !wanted.contains(k)).copied().collect();
        for key in gone {
            if let Some(l) = self.listeners.remove(&key) {
                tracing::info!(addr = %l.addr, "listener removed: draining");
                tokio::spawn(async move { l.drain(drain).await });
            }
        }
        if let Some(addr) = self.admin_addr() {
            summary.metrics = addr;
        }
        self.clusters = clusters;
        self.buckets = buckets;
        self.metrics.revision.set(config.revision as i64);
        self.current = Some(config);
        self.ready.store(true, Ordering::Release);
        Ok(summary)
    }

    /// Shutdown: `/ready` turns 503, listeners stop accepting, in-flight requests get up to
    /// `DRAIN_SECONDS`, then everything closes.
    pub async fn drain(&mut self) {
        self.ready.store(false, Ordering::Release);
        let limit = self.current.as_ref().map_or(Duration::from_secs(5), |c| c.base.drain);
        let deadline = Instant::now() + limit;
        let all = std::mem::take(&mut self.listeners);
        let (admin, proxies): (Vec<_>, Vec<_>) = all.into_iter().partition(|((r, _), _)| *r == Role::Admin);
        for (_, l) in &proxies {
            l.stop_accepting();
        }
        for (_, l) in &proxies {
            l.drain(deadline.saturating_duration_since(Instant::now())).await;
        }
        for (_, l) in &admin {
            l.drain(Duration::ZERO).await;
        }
        self.clusters.clear();
    }

    fn buckets_for(&self, config: &Config) -> HashMap<String, Arc<TokenBucket>> {
        let mut out: HashMap<String, Arc<TokenBucket>> = HashMap::new();
        for limit in config.inbound.iter().filter_map(|i| i.rate_limit.as_ref()) {
            if out.contains_key(&limit.domain) {
                continue;
            }
            let bucket = match self.buckets.get(&limit.domain) {
                Some(b) => {
                    b.set_rate(limit.rps);
                    b.clone()
                }
                None => Arc::new(TokenBucket::new(limit.rps, Instant::now())),
            };
            out.insert(limit.domain.clone(), bucket);
        }
        out
    }

    async fn cluster(
        &self,
        key: String,
        name: String,
        target: Target,
        settings: Settings,
        listener: &str,
    ) -> Arc<Cluster> {
        if let Some(c) = self.clusters.get(&key).filter(|c| c.target == target) {
            c.update(settings);
            return c.clone();
        }
        let metrics = self.metrics.route(listener, &name);
        Cluster::start(name, target, settings, metrics, self.resolver.clone()).await
    }

    async fn service(
        &self,
        config: &Config,
        p: &Planned,
        buckets: &HashMap<String, Arc<TokenBucket>>,
        clusters: &mut HashMap<String, Arc<Cluster>>,
        summary: &mut Summary,
    ) -> Service {
        let label = match p.key.0 {
            Role::Admin => "admin".to_owned(),
            Role::Inbound => format!("inbound:{}", p.key.1),
            Role::Outbound => format!("outbound:{}", p.key.1),
        };
        match &p.what {
            What::Admin => Service::Admin(self.admin.clone()),
            What::Inbound(i) => {
                let inbound = &config.inbound[*i];
                let key = format!("in {}", inbound.listen_port);
                let target = Target::Fixed(SocketAddr::from((Ipv4Addr::LOCALHOST, inbound.port)));
                let route = format!("127.0.0.1:{}", inbound.port);
                let cluster = self
                    .cluster(key.clone(), route, target, inbound_settings(inbound), &label)
                    .await;
                clusters.insert(key, cluster.clone());
                summary.listeners.push(format!(
                    "{}→127.0.0.1:{} ({})",
                    inbound.listen_port, inbound.port, inbound.mode
                ));
                let metrics = self.metrics.listener(&label);
                match inbound.mode {
                    Mode::Http => Service::Http(Arc::new(HttpService {
                        routes: Table::new(vec![(crate::route::Match::any(), cluster)]),
                        limiter: inbound
                            .rate_limit
                            .as_ref()
                            .and_then(|l| buckets.get(&l.domain).cloned()),
                        max_requests_per_connection: inbound.limits.max_requests_per_connection,
                        client_idle: inbound.timeouts.tcp_idle,
                        metrics,
                    })),
                    _ => Service::Tcp(Arc::new(TcpService { cluster, metrics })),
                }
            }
            What::Outbound(entries, mode) => {
                let mut routes = Vec::new();
                for &i in entries {
                    let o = &config.outbound[i];
                    let key = format!("out {}", o.name());
                    let target = Target::Resolve {
                        host: o.host.clone(),
                        port: o.port,
                    };
                    let cluster = self
                        .cluster(key.clone(), o.name(), target, outbound_settings(o), &label)
                        .await;
                    clusters.insert(key, cluster.clone());
                    routes.push((o.route.clone(), cluster));
                }
                let first = &config.outbound[entries[0]];
                let hosts: Vec<String> = entries.iter().map(|&i| config.outbound[i].host.clone()).collect();
                summary.listeners.push(format!(
                    "127.0.0.1:{}→{}:{} ({mode})",
                    first.port,
                    hosts.join("|"),
                    first.port
                ));
                let metrics = self.metrics.listener(&label);
                match mode {
                    Mode::Http => Service::Http(Arc::new(HttpService {
                        routes: Table::new(routes),
                        limiter: None,
                        max_requests_per_connection: first.limits.max_requests_per_connection,
                        client_idle: first.timeouts.tcp_idle,
                        metrics,
                    })),
                    _ => Service::Tcp(Arc::new(TcpService {
                        cluster: routes.remove(0).1,
                        metrics,
                    })),
                }
            }
        }
    }
}

fn inbound_settings(i: &Inbound) -> Settings {
    Settings {
        limits: i.limits.clone(),
        timeouts: i.timeouts.clone(),
        outlier: None,
        health: None,
    }
}

fn outbound_settings(o: &Outbound) -> Settings {
    Settings {
        limits: o.limits.clone(),
        timeouts: o.timeouts.clone(),
        outlier: Some(o.outlier.clone()),
        health: Some(o.health.clone()),
    }
}

/// The listeners a config wants, and notes on entries it leaves out.
fn plan(config: &Config) -> (Vec<Planned>, Vec<String>) {
    let mut plan = vec![Planned {
        key: (Role::Admin, config.base.metrics_port),
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.base.metrics_port)),
        place: "base METRICS_PORT".into(),
        what: What::Admin,
    }];
    let mut notes = Vec::new();
    for (i, inbound) in config.inbound.iter().enumerate() {
        if inbound.mode == Mode::Skip {
            notes.push(format!(
                "inbound {} ({}) skipped: udp is not proxied",
                inbound.port, inbound.protocol
            ));
            continue;
        }
        plan.push(Planned {
            key: (Role::Inbound, inbound.listen_port),
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, inbound.listen_port)),
            place: format!("inbound {}", inbound.port),
            what: What::Inbound(i),
        });
    }
    let mut by_port: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, o) in config.outbound.iter().enumerate() {
        if !o.proxy {
            notes.push(format!("outbound {} not proxied (PROXY=NO)", o.name()));
        } else if o.mode == Mode::Skip {
            notes.push(format!(
                "outbound {} ({}) skipped: udp is not proxied",
                o.name(),
                o.protocol
            ));
        } else {
            by_port.entry(o.port).or_default().push(i);
        }
    }
    for (port, entries) in by_port {
        // Entries are sorted by component: the first decides the port's protocol.
        let first = &config.outbound[entries[0]];
        let (serving, shadowed): (Vec<usize>, Vec<usize>) = match first.mode {
            Mode::Http => entries.iter().partition(|&&i| config.outbound[i].mode == Mode::Http),
            _ => (vec![entries[0]], entries[1..].to_vec()),
        };
        for i in shadowed {
            let o = &config.outbound[i];
            notes.push(format!(
                "outbound {} ({}) shadowed by {} ({}) on port {port}",
                o.name(),
                o.protocol,
                first.name(),
                first.protocol
            ));
        }
        plan.push(Planned {
            key: (Role::Outbound, port),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            place: format!("outbound {}", first.name()),
            what: What::Outbound(serving, first.mode),
        });
    }
    (plan, notes)
}
