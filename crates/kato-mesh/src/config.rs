//! The proxy's configuration, read from a discovery document: every option parsed with
//! Rainbond's names and defaults, and the whole document checked before anything changes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hyper::header::HeaderName;
use kato_discovery_client::Document;
use serde_json::{Map, Value};

use crate::options::{BadOption, Options};
use crate::route::{Domain, Match};

/// Why a document was not applied. The message names the place, the option and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{place}: {option} `{value}` {problem}")]
    BadOption {
        place: String,
        option: &'static str,
        value: String,
        problem: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the document cannot be read: {0}")]
    Document(String),
    #[error("{place}: cannot listen on {addr}: {source}; free the port or choose another")]
    Bind {
        place: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl Rejection {
    fn at(place: &str) -> impl FnOnce(BadOption) -> Rejection + '_ {
        move |b| Rejection::BadOption {
            place: place.to_owned(),
            option: b.option,
            value: b.value,
            problem: b.problem,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// How a port's traffic is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1 proxying (protocol `http`).
    Http,
    /// Byte passthrough (tcp, mysql, grpc, https and every other protocol).
    Tcp,
    /// Not proxied (protocol `udp`).
    Skip,
}

impl Mode {
    fn of(protocol: &str) -> Mode {
        match protocol.to_ascii_lowercase().as_str() {
            "http" => Mode::Http,
            "udp" => Mode::Skip,
            _ => Mode::Tcp,
        }
    }
}

/// The `general` group.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    /// `METRICS_PORT`; 0 picks a free port (tests).
    pub metrics_port: u16,
    pub log_level: LogLevel,
    pub drain: Duration,
}

/// Circuit-breaking limits of one listener or downstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_pending_requests: usize,
    pub max_requests: usize,
    pub max_requests_per_connection: Option<u64>,
    pub max_active_retries: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// `None`: no limit.
    pub request: Option<Duration>,
    pub tcp_idle: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub domain: String,
    pub rps: u32,
}

/// One inbound listener: `0.0.0.0:<listen_port>` → `127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub port: u16,
    pub listen_port: u16,
    pub protocol: String,
    pub mode: Mode,
    pub rate_limit: Option<RateLimit>,
    pub limits: Limits,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outlier {
    pub interval: Duration,
    pub consecutive_errors: u32,
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `None`: no checks (`HealthCheckInterval` "0").
    pub interval: Option<Duration>,
    pub timeout: Duration,
}

/// One outbound entry: `127.0.0.1:<port>` → `{component}.{team}:<port>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub component: String,
    pub port: u16,
    pub protocol: String,
    pub mode: Mode,
    /// The DNS name the downstream is reached at.
    pub host: String,
    pub route: Match,
    pub limits: Limits,
    pub outlier: Outlier,
    pub health: HealthCheck,
    /// `PROXY`: NO means no listener for this entry.
    pub proxy: bool,
    /// `GrpcHealthServiceName`: accepted and kept, not used.
    pub grpc_health_service_name: String,
    pub timeouts: Timeouts,
}

impl Outbound {
    /// `db:8080`, as messages name it.
    pub fn name(&self) -> String {
        format!("{}:{}", self.component, self.port)
    }
}

/// A validated document.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub revision: u64,
    pub base: Base,
    pub inbound: Vec<Inbound>,
    /// Sorted by (port, component).
    pub outbound: Vec<Outbound>,
}

impl Config {
    /// Reads a document in its JSON form.
    pub fn from_value(doc: &Value, team: &str) -> Result<Config, Rejection> {
        let doc: Document = serde_json::from_value(doc.clone()).map_err(|e| Rejection::Document(e.to_string()))?;
        Config::from_document(&doc, team)
    }

    /// Parses and checks every option; `team` makes the downstream host names.
    pub fn from_document(doc: &Document, team: &str) -> Result<Config, Rejection> {
        let base = parse_base(&doc.base).map_err(Rejection::at("base"))?;
        let mut inbound = Vec::new();
        for p in &doc.ports {
            let Some(listen_port) = p.listen_port else { continue };
            let place = format!("inbound {}", p.port);
            inbound.push(parse_inbound(p.port, listen_port, &p.protocol, &p.options).map_err(Rejection::at(&place))?);
        }
        let mut outbound = Vec::new();
        for d in &doc.downstream {
            let place = format!("outbound {}:{}", d.component, d.port);
            let host = format!("{}.{}", d.component, team);
            outbound.push(parse_outbound(d, host, &d.options).map_err(Rejection::at(&place))?);
        }
        outbound.sort_by(|a, b| (a.port, &a.component).cmp(&(b.port, &b.component)));
        let config = Config {
            revision: doc.revision,
            base,
            inbound,
            outbound,
        };
        config.check_ports()?;
        Ok(config)
    }

    /// Two listeners on one port cannot both bind.
    fn check_ports(&self) -> Result<(), Rejection> {
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        let mut claim = |port: u16, who: String| -> Result<(), Rejection> {
            if port == 0 {
                return Ok(());
            }
            match taken.get(&port) {
                Some(other) if *other != who => Err(Rejection::Conflict(format!(
                    "{who} and {other} both want port {port}; give one of them another port"
                ))),
                _ => {
                    taken.insert(port, who);
                    Ok(())
                }
            }
        };
        claim(self.base.metrics_port, "base METRICS_PORT".into())?;
        for i in self.inbound.iter().filter(|i| i.mode != Mode::Skip) {
            claim(i.listen_port, format!("inbound {} (listen_port)", i.port))?;
        }
        for o in self.outbound.iter().filter(|o| o.proxy && o.mode != Mode::Skip) {
            // Entries sharing a port share its listener.
            claim(o.port, format!("outbound port {}", o.port))?;
        }
        Ok(())
    }
}

fn parse_base(base: &Map<String, Value>) -> Result<Base, BadOption> {
    let o = Options(base);
    let level = match o
        .choice("LOG_LEVEL", "info", &["error", "warn", "info", "debug"])?
        .as_str()
    {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "debug" => LogLevel::Debug,
        _ => LogLevel::Info,
    };
    Ok(Base {
        metrics_port: o.whole("METRICS_PORT", 65533, 0, 65535)? as u16,
        log_level: level,
        drain: Duration::from_secs(o.whole("DRAIN_SECONDS", 5, 0, 3600)?),
    })
}

const MAX: u64 = 1_000_000;

fn parse_limits(o: &Options, max_requests: u64) -> Result<Limits, BadOption> {
    Ok(Limits {
        max_connections: o.whole("MaxConnections", 10240, 1, MAX)? as usize,
        max_pending_requests: o.whole("MaxPendingRequests", 1024, 0, MAX)? as usize,
        max_requests: o.whole("MaxRequests", max_requests, 1, MAX)? as usize,
        max_requests_per_connection: o.optional_whole("MaxRequestsPerConnection", 1, u64::MAX)?,
        max_active_retries: o.whole("MaxActiveRetries", 5, 0, MAX)? as usize,
    })
}

fn parse_timeouts(o: &Options) -> Result<Timeouts, BadOption> {
    let request = o.whole("RequestTimeout", 15, 0, 86_400)?;
    Ok(Timeouts {
        connect: Duration::from_millis(o.whole("ConnectionTimeout", 250, 1, 600_000)?),
        request: (request > 0).then(|| Duration::from_secs(request)),
        tcp_idle: Duration::from_secs(o.whole("TCPIdleTimeout", 7200, 1, 604_800)?),
    })
}

fn parse_inbound(
    port: u16,
    listen_port: u16,
    protocol: &str,
    options: &Map<String, Value>,
) -> Result<Inbound, BadOption> {
    let o = Options(options);
    let rate_limit = if o.yes_no("OPEN_LIMIT", false)? {
        Some(RateLimit {
            domain: o.string("LIMIT_DOMAIN", "limit.common")?,
            rps: o.whole("LIMIT_RPS", 100, 1, MAX)? as u32,
        })
    } else {
        // Still checked, so a typo is caught before the limit is switched on.
        o.whole("LIMIT_RPS", 100, 1, MAX)?;
        None
    };
    Ok(Inbound {
        port,
        listen_port,
        protocol: protocol.to_owned(),
        mode: Mode::of(protocol),
        rate_limit,
        limits: parse_limits(&o, 1024)?,
        timeouts: parse_timeouts(&o)?,
    })
}

fn parse_outbound(
    d: &kato_discovery_client::Downstream,
    host: String,
    options: &Map<String, Value>,
) -> Result<Outbound, BadOption> {
    let o = Options(options);
    let health_timeout = o.whole("HealthCheckTimeout", 5, 1, 3600)?;
    let health_interval = o.whole("HealthCheckInterval", 4, 0, 3600)?;
    Ok(Outbound {
        component: d.component.clone(),
        port: d.port,
        protocol: d.protocol.clone(),
        mode: Mode::of(&d.protocol),
        host,
        route: parse_match(&o)?,
        limits: parse_limits(&o, 10240)?,
        outlier: Outlier {
            interval: Duration::from_millis(o.whole("IntervalMS", 10, 1, 3_600_000)?),
            consecutive_errors: o.whole("ConsecutiveErrors", 5, 1, 10_000)? as u32,
            base_ejection: Duration::from_millis(o.whole("BaseEjectionTimeMS", 30_000, 1, 86_400_000)?),
            max_ejection_percent: o.whole("MaxEjectionPercent", 20, 0, 100)? as u32,
        },
        health: HealthCheck {
            interval: (health_interval > 0).then(|| Duration::from_secs(health_interval)),
            timeout: Duration::from_secs(health_timeout),
        },
        proxy: o.yes_no("PROXY", true)?,
        grpc_health_service_name: o.string("GrpcHealthServiceName", "")?,
        timeouts: parse_timeouts(&o)?,
    })
}

fn parse_match(o: &Options) -> Result<Match, BadOption> {
    let domains_text = o.string("Domains", "*")?;
    let mut domains = Vec::new();
    for d in domains_text.split(',').filter(|d| !d.trim().is_empty()) {
        domains.push(Domain::parse(d).ok_or_else(|| {
            Options::bad(
                "Domains",
                &domains_text,
                format!(
                    "has `{}`, which is not a host name; give host names separated by commas, or *",
                    d.trim()
                ),
            )
        })?);
    }
    if domains.is_empty() {
        domains.push(Domain::Any);
    }
    let prefix = o.string("Prefix", "/")?;
    if !prefix.starts_with('/') {
        return Err(Options::bad(
            "Prefix",
            &prefix,
            "does not start with /; give a path such as /api",
        ));
    }
    let headers_text = o.string("Headers", "")?;
    let mut headers = Vec::new();
    for pair in headers_text.split(';').filter(|p| !p.trim().is_empty()) {
        let parsed = pair
            .split_once(':')
            .and_then(|(k, v)| Some((HeaderName::from_bytes(k.trim().as_bytes()).ok()?, v.trim().to_owned())));
        headers.push(parsed.ok_or_else(|| {
            Options::bad(
                "Headers",
                &headers_text,
                format!(
                    "has `{}`, which is not name:value; give pairs like x-env:canary;x-user:me",
                    pair.trim()
                ),
            )
        })?);
    }
    Ok(Match {
        domains,
        prefix,
        headers,
        weight: o.whole("Weight", 100, 0, MAX)? as u32,
    })
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
            Mode::Skip => "skipped",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(ports: Value, downstream: Value, base: Value) -> Value {
        json!({"revision": 3, "plugin": "mesh", "version": 1, "base": base, "ports": ports, "downstream": downstream})
    }

    fn reject(d: Value) -> String {
        Config::from_value(&d, "team").unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_rainbonds() {
        let d = doc(
            json!([{"port": 8080, "protocol": "http", "listen_port": 65301, "options": {}},
                   {"port": 9000, "protocol": "http", "options": {}}]),
            json!([{"component": "db", "port": 5432, "protocol": "postgresql", "options": {}}]),
            json!({}),
        );
        let c = Config::from_value(&d, "team").unwrap();
        assert_eq!(c.revision, 3);
        assert_eq!(c.base.metrics_port, 65533);
        assert_eq!(c.base.log_level, LogLevel::Info);
        assert_eq!(c.base.drain, Duration::from_secs(5));
        assert_eq!(c.inbound.len(), 1, "a port without listen_port is not inbound");
        let i = &c.inbound[0];
        assert_eq!((i.port, i.listen_port, i.mode), (8080, 65301, Mode::Http));
        assert_eq!(i.rate_limit, None);
        assert_eq!(
            i.limits,
            Limits {
                max_connections: 10240,
                max_pending_requests: 1024,
                max_requests: 1024,
                max_requests_per_connection: None,
                max_active_retries: 5
            }
        );
        assert_eq!(
            i.timeouts,
            Timeouts {
                connect: Duration::from_millis(250),
                request: Some(Duration::from_secs(15)),
                tcp_idle: Duration::from_secs(7200)
            }
        );
        let o = &c.outbound[0];
        assert_eq!(o.host, "db.team");
        assert_eq!(o.mode, Mode::Tcp);
        assert_eq!(o.limits.max_requests, 10240);
        assert_eq!(o.route.domains, vec![Domain::Any]);
        assert_eq!(o.route.prefix, "/");
        assert_eq!(o.route.weight, 100);
        assert!(o.proxy);
        assert_eq!(
            o.outlier,
            Outlier {
                interval: Duration::from_millis(10),
                consecutive_errors: 5,
                base_ejection: Duration::from_secs(30),
                max_ejection_percent: 20
            }
        );
        assert_eq!(o.health.interval, Some(Duration::from_secs(4)));
        assert_eq!(o.health.timeout, Duration::from_secs(5));
    }

    #[test]
    fn values_are_read() {
        let d = doc(
            json!([{"port": 8080, "protocol": "http", "listen_port": 65301, "options": {
                "OPEN_LIMIT": "YES", "LIMIT_DOMAIN": "shared", "LIMIT_RPS": "7",
                "MaxRequestsPerConnection": "3", "RequestTimeout": "0"}}]),
            json!([{"component": "api", "port": 80, "protocol": "http", "options": {
                "Domains": "a.com, *.b.com", "Prefix": "/v1", "Headers": "x-a:1;x-b:2", "Weight": "30",
                "PROXY": "NO", "HealthCheckInterval": "0"}}]),
            json!({"METRICS_PORT": "9100", "LOG_LEVEL": "DEBUG", "DRAIN_SECONDS": "0"}),
        );
        let c = Config::from_value(&d, "t").unwrap();
        assert_eq!(c.base.metrics_port, 9100);
        assert_eq!(c.base.log_level, LogLevel::Debug);
        let i = &c.inbound[0];
        assert_eq!(
            i.rate_limit,
            Some(RateLimit {
                domain: "shared".into(),
                rps: 7
            })
        );
        assert_eq!(i.limits.max_requests_per_connection, Some(3));
        assert_eq!(i.timeouts.request, None);
        let o = &c.outbound[0];
        assert_eq!(
            o.route.domains,
            vec![Domain::Exact("a.com".into()), Domain::Suffix(".b.com".into())]
        );
        assert_eq!(o.route.prefix, "/v1");
        assert_eq!(o.route.headers.len(), 2);
        assert_eq!(o.route.weight, 30);
        assert!(!o.proxy);
        assert_eq!(o.health.interval, None);
    }

    #[test]
    fn bad_values_name_place_option_and_fix() {
        let out = |opts: Value| {
            reject(doc(
                json!([]),
                json!([{"component": "db", "port": 8080, "protocol": "http", "options": opts}]),
                json!({}),
            ))
        };
        assert_eq!(
            out(json!({"MaxConnections": "abc"})),
            "outbound db:8080: MaxConnections `abc` is not a whole number; give a number from 1 to 1000000"
        );
        for option in [
            "MaxPendingRequests",
            "MaxRequests",
            "MaxActiveRetries",
            "IntervalMS",
            "ConsecutiveErrors",
            "BaseEjectionTimeMS",
            "MaxEjectionPercent",
            "HealthCheckInterval",
            "HealthCheckTimeout",
            "ConnectionTimeout",
            "RequestTimeout",
            "TCPIdleTimeout",
            "Weight",
            "MaxRequestsPerConnection",
        ] {
            let msg = out(json!({option: "x1"}));
            assert!(msg.starts_with(&format!("outbound db:8080: {option} `x1` ")), "{msg}");
        }
        assert!(out(json!({"PROXY": "maybe"})).contains("PROXY `maybe` is neither YES nor NO"));
        assert!(out(json!({"Prefix": "api"})).contains("Prefix `api` does not start with /"));
        assert!(out(json!({"Domains": "a.com,b c"})).contains("Domains `a.com,b c` has `b c`"));
        assert!(out(json!({"Headers": "novalue"})).contains("Headers `novalue` has `novalue`"));
        assert!(out(json!({"MaxEjectionPercent": "101"})).contains("is out of range"));

        let inb = |opts: Value| {
            reject(doc(
                json!([{"port": 8080, "protocol": "http", "listen_port": 65301, "options": opts}]),
                json!([]),
                json!({}),
            ))
        };
        assert!(inb(json!({"OPEN_LIMIT": "on"})).starts_with("inbound 8080: OPEN_LIMIT `on`"));
        assert!(inb(json!({"LIMIT_RPS": "0"})).starts_with("inbound 8080: LIMIT_RPS `0` is out of range"));
        assert!(inb(json!({"MaxRequests": "-1"})).starts_with("inbound 8080: MaxRequests `-1`"));

        let base = |b: Value| reject(doc(json!([]), json!([]), b));
        assert!(base(json!({"METRICS_PORT": "70000"})).starts_with("base: METRICS_PORT `70000` is out of range"));
        assert!(base(json!({"LOG_LEVEL": "loud"})).starts_with("base: LOG_LEVEL `loud` is not one of the choices"));
        assert!(base(json!({"DRAIN_SECONDS": "soon"})).starts_with("base: DRAIN_SECONDS `soon`"));
    }

    #[test]
    fn port_conflicts_are_rejected() {
        let msg = reject(doc(
            json!([{"port": 8080, "protocol": "http", "listen_port": 65301, "options": {}},
                   {"port": 8081, "protocol": "tcp", "listen_port": 65301, "options": {}}]),
            json!([]),
            json!({}),
        ));
        assert!(msg.contains("both want port 65301"), "{msg}");
        let msg = reject(doc(
            json!([]),
            json!([{"component": "db", "port": 65533, "protocol": "tcp", "options": {}}]),
            json!({}),
        ));
        assert!(msg.contains("both want port 65533"), "{msg}");
        // Outbound entries on one port share a listener: no conflict.
        let ok = doc(
            json!([]),
            json!([{"component": "a", "port": 80, "protocol": "http", "options": {}},
                   {"component": "b", "port": 80, "protocol": "http", "options": {}}]),
            json!({}),
        );
        assert!(Config::from_value(&ok, "t").is_ok());
    }

    #[test]
    fn malformed_document_is_rejected() {
        assert!(reject(json!({"revision": "x"})).starts_with("the document cannot be read"));
    }
}
