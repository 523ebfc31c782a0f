//! Aggregation of exchanges per port and per route (HTTP path template or SQL fingerprint):
//! Prometheus metrics and windowed figures for the summary. Cardinality is capped per port:
//! at most `route_cap` routes are named, the busiest ([`crate::routes`]); the rest count as
//! `other`.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::exchange::{Exchange, Protocol};
use crate::routes::RouteSet;
use crate::window::{Figures, WINDOWS, Windowed};

/// The route label of everything past the cap.
pub const OTHER: &str = "other";
/// Routes tracked per port by default.
pub const DEFAULT_ROUTE_CAP: usize = 50;
/// Entries in each top list of the summary.
pub const TOP: usize = 10;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    port: String,
    protocol: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    port: String,
    protocol: String,
    route: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type Constructor = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Counters the capture loop updates without a lock.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    pub packets: Counter,
    pub bytes: Counter,
    /// Packets the kernel dropped before the plug-in read them (`SO_RXQ_OVFL`), and packets that
    /// did not parse.
    pub dropped: Counter,
    pub flows: Counter,
    pub untracked: Counter,
    pub revision: Gauge,
    pub rejections: Counter,
}

#[derive(Debug, Default)]
struct PortStats {
    protocol: Option<Protocol>,
    all: Windowed,
    routes: RouteSet,
    other: Windowed,
}

/// Everything measured, behind one lock owned by the capture loop and read by the server.
pub struct Stats {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    latency: Family<RouteLabels, Histogram, Constructor>,
    undecodable: Family<ReasonLabels, Counter>,
    pub counters: std::sync::Arc<CaptureCounters>,
    ports: BTreeMap<u16, PortStats>,
    route_cap: usize,
    /// When the analysis started (ns, the capture clock).
    started: u64,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stats")
    }
}

impl Stats {
    pub fn new(route_cap: usize, started: u64) -> Stats {
        let counters = std::sync::Arc::new(CaptureCounters::default());
        let mut registry = Registry::with_prefix("kato_perf");
        let requests = Family::<OutcomeLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, Constructor>::new_with_constructor(latency_histogram);
        let undecodable = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests (HTTP) or queries (MySQL) answered, by outcome (error: HTTP 5xx, MySQL ERR)",
            requests.clone(),
        );
        registry.register(
            "latency_seconds",
            "First response byte minus last request byte",
            latency.clone(),
        );
        registry.register(
            "undecodable_flows",
            "Connections that could not be decoded (gap: bytes missing; malformed: not the protocol; midstream: joined while open, mid-message)",
            undecodable.clone(),
        );
        registry.register(
            "packets",
            "Packets captured on the analysed ports",
            counters.packets.clone(),
        );
        registry.register("bytes", "Bytes captured on the analysed ports", counters.bytes.clone());
        registry.register(
            "dropped_packets",
            "Packets lost to the analysis (dropped by the kernel for lack of room, or cut)",
            counters.dropped.clone(),
        );
        registry.register(
            "flows",
            "Connections seen on the analysed ports",
            counters.flows.clone(),
        );
        registry.register(
            "untracked_flows",
            "Connections not analysed because too many were open",
            counters.untracked.clone(),
        );
        registry.register("revision", "The discovery revision applied", counters.revision.clone());
        registry.register(
            "rejections",
            "Discovery revisions rejected",
            counters.rejections.clone(),
        );
        Stats {
            registry,
            requests,
            latency,
            undecodable,
            counters,
            ports: BTreeMap::new(),
            route_cap,
            started,
        }
    }

    /// Records one exchange on `port` at `ts` (ns).
    pub fn record(&mut self, ts: u64, port: u16, protocol: Protocol, e: &Exchange) {
        let p = self.ports.entry(port).or_default();
        p.protocol = Some(protocol);
        p.all.record(ts, e.latency_ns, e.error);
        let route = match p.routes.windows(&e.route, self.route_cap) {
            Some(w) => {
                w.record(ts, e.latency_ns, e.error);
                e.route.as_str()
            }
            None => {
                p.other.record(ts, e.latency_ns, e.error);
                OTHER
            }
        };
        let labels = RouteLabels {
            port: port.to_string(),
            protocol: protocol.as_str().into(),
            route: route.into(),
        };
        self.latency.get_or_create(&labels).observe(e.latency_ns as f64 / 1e9);
        let outcome = OutcomeLabels {
            port: labels.port,
            protocol: labels.protocol,
            route: labels.route,
            outcome: if e.error { "error" } else { "ok" },
        };
        self.requests.get_or_create(&outcome).inc();
    }

    pub fn undecodable(&self, reason: &str) {
        self.undecodable
            .get_or_create(&ReasonLabels { reason: reason.into() })
            .inc();
    }

    /// Forgets ports no longer analysed, and rebalances each port's named routes (idle ones
    /// leave, busier ones come in); the metrics of a route that left go with it.
    pub fn prune(&mut self, now: u64, analysed: &[u16]) {
        self.ports.retain(|port, _| analysed.contains(port));
        for (port, p) in &mut self.ports {
            let Some(protocol) = p.protocol else { continue };
            for route in p.routes.rebalance(now, self.route_cap) {
                let labels = RouteLabels {
                    port: port.to_string(),
                    protocol: protocol.as_str().into(),
                    route,
                };
                self.latency.remove(&labels);
                for outcome in ["ok", "error"] {
                    self.requests.remove(&OutcomeLabels {
                        port: labels.port.clone(),
                        protocol: labels.protocol.clone(),
                        route: labels.route.clone(),
                        outcome,
                    });
                }
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The JSON summary at `now` (ns, the capture clock).
    pub fn summary(&self, now: u64, analysed: &BTreeMap<u16, Protocol>) -> Summary {
        let undecodable: BTreeMap<String, u64> = ["gap", "malformed", "midstream"]
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    self.undecodable
                        .get_or_create(&ReasonLabels { reason: r.to_string() })
                        .get(),
                )
            })
            .collect();
        let dropped = self.counters.dropped.get();
        let gaps = undecodable.get("gap").copied().unwrap_or(0);
        let mut lost = Vec::new();
        if dropped > 0 {
            lost.push(format!("{dropped} packets dropped"));
        }
        if gaps > 0 {
            lost.push(format!("{gaps} connections with bytes missing"));
        }
        let warning = (!lost.is_empty()).then(|| format!("figures may be incomplete: {}", lost.join(", ")));
        let ports = analysed
            .iter()
            .map(|(port, protocol)| {
                let empty = PortStats::default();
                let p = self.ports.get(port).unwrap_or(&empty);
                let windows = WINDOWS.iter().map(|m| (format!("{m}m"), window(p, now, *m))).collect();
                PortSummary {
                    port: *port,
                    protocol: *protocol,
                    windows,
                }
            })
            .collect();
        Summary {
            uptime_seconds: now.saturating_sub(self.started) / 1_000_000_000,
            packets: self.counters.packets.get(),
            dropped_packets: dropped,
            flows: self.counters.flows.get(),
            undecodable_flows: undecodable,
            warning,
            ports,
        }
    }
}

fn window(p: &PortStats, now: u64, minutes: u64) -> WindowSummary {
    let mut routes: Vec<RouteFigures> = p
        .routes
        .iter()
        .chain(std::iter::once((OTHER, &p.other)))
        .map(|(route, w)| RouteFigures {
            route: route.to_owned(),
            figures: w.figures(now, minutes),
        })
        .filter(|r| r.figures.requests > 0)
        .collect();
    routes.sort_by(|a, b| {
        b.figures
            .requests
            .cmp(&a.figures.requests)
            .then_with(|| a.route.cmp(&b.route))
    });
    let most_frequent = routes.iter().take(TOP).cloned().collect();
    routes.sort_by(|a, b| {
        b.figures
            .p50_ms
            .partial_cmp(&a.figures.p50_ms)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.route.cmp(&b.route))
    });
    let slowest = routes.into_iter().take(TOP).collect();
    WindowSummary {
        all: p.all.figures(now, minutes),
        slowest,
        most_frequent,
    }
}

/// `GET /summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub uptime_seconds: u64,
    pub packets: u64,
    pub dropped_packets: u64,
    pub flows: u64,
    pub undecodable_flows: BTreeMap<String, u64>,
    /// Set when packets were dropped: the figures undercount.
    pub warning: Option<String>,
    pub ports: Vec<PortSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortSummary {
    pub port: u16,
    pub protocol: Protocol,
    /// `1m`, `5m`, `15m`.
    pub windows: BTreeMap<String, WindowSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowSummary {
    /// The port as a whole.
    pub all: Figures,
    /// Routes by p50, slowest first.
    pub slowest: Vec<RouteFigures>,
    /// Routes by request count.
    pub most_frequent: Vec<RouteFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteFigures {
    pub route: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ex(route: &str, ms: u64, error: bool) -> Exchange {
        Exchange {
            route: route.into(),
            status: Some(if error { 500 } else { 200 }),
            error,
            latency_ns: ms * MS,
        }
    }

    #[test]
    fn routes_past_the_cap_count_as_other_and_the_summary_ranks_them() {
        let mut s = Stats::new(2, 0);
        let t = 1_000 * MS;
        for _ in 0..5 {
            s.record(t, 8080, Protocol::Http, &ex("GET /fast", 5, false));
        }
        s.record(t, 8080, Protocol::Http, &ex("GET /slow", 50, true));
        s.record(t, 8080, Protocol::Http, &ex("GET /third", 500, false));
        s.record(t, 8080, Protocol::Http, &ex("GET /fourth", 1, false));
        let analysed = BTreeMap::from([(8080, Protocol::Http)]);
        let sum = s.summary(t, &analysed);
        let w = &sum.ports[0].windows["1m"];
        assert_eq!(w.all.requests, 8);
        assert_eq!(w.all.errors, 1);
        let frequent: Vec<_> = w
            .most_frequent
            .iter()
            .map(|r| (r.route.as_str(), r.figures.requests))
            .collect();
        assert_eq!(frequent, vec![("GET /fast", 5), ("other", 2), ("GET /slow", 1)]);
        // By p50: `other` holds 500 ms and 1 ms, so its p50 is 1 ms.
        let slowest: Vec<_> = w.slowest.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(slowest, vec!["GET /slow", "GET /fast", "other"]);
        let text = s.encode();
        assert!(
            text.contains(r#"kato_perf_requests_total{port="8080",protocol="http",route="GET /fast",outcome="ok"} 5"#),
            "{text}"
        );
        assert!(text.contains(r#"route="other""#));
        assert!(!text.contains("/third"));
        assert!(sum.warning.is_none());
        s.counters.dropped.inc_by(3);
        assert_eq!(
            s.summary(t, &analysed).warning.as_deref(),
            Some("figures may be incomplete: 3 packets dropped")
        );
        s.undecodable("gap");
        assert_eq!(
            s.summary(t, &analysed).warning.as_deref(),
            Some("figures may be incomplete: 3 packets dropped, 1 connections with bytes missing")
        );
    }

    #[test]
    fn idle_routes_give_their_place_up_and_closed_ports_go() {
        let mut s = Stats::new(1, 0);
        s.record(0, 80, Protocol::Http, &ex("GET /a", 1, false));
        s.prune(16 * 60_000 * MS, &[80]);
        s.record(16 * 60_000 * MS, 80, Protocol::Http, &ex("GET /b", 1, false));
        assert!(s.encode().contains("GET /b"));
        assert!(!s.encode().contains("GET /a"));
        s.prune(16 * 60_000 * MS, &[]);
        assert!(s.summary(16 * 60_000 * MS, &BTreeMap::new()).ports.is_empty());
    }
}
