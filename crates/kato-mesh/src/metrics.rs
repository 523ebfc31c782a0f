//! Prometheus metrics per listener and route. Handles are looked up once when a listener or
//! route is built, so counting a request costs no label lookup and no allocation.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    listener: String,
    route: String,
    class: String,
}

type Constructor = fn() -> Histogram;

/// Every metric family the proxy exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<ClassLabels, Counter>,
    errors: Family<ClassLabels, Counter>,
    latency: Family<RouteLabels, Histogram, Constructor>,
    ejections: Family<RouteLabels, Counter>,
    overflow: Family<RouteLabels, Counter>,
    connections: Family<ListenerLabels, Gauge>,
    connections_total: Family<ListenerLabels, Counter>,
    rate_limited: Family<ListenerLabels, Counter>,
    pub revision: Gauge,
    pub rejections: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kato_mesh");
        let m = Metrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as Constructor),
            ejections: Family::default(),
            overflow: Family::default(),
            connections: Family::default(),
            connections_total: Family::default(),
            rate_limited: Family::default(),
            revision: Gauge::default(),
            rejections: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "HTTP requests answered, by status class (1xx…5xx)",
            m.requests.clone(),
        );
        registry.register(
            "errors",
            "Requests that failed at the proxy, by class: connect, timeout, upstream, no_route, unavailable",
            m.errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request to the response headers",
            m.latency.clone(),
        );
        registry.register(
            "ejections",
            "Endpoints ejected by outlier detection",
            m.ejections.clone(),
        );
        registry.register(
            "overflow",
            "Requests or connections refused by circuit breaking (x-kato-mesh: overflow)",
            m.overflow.clone(),
        );
        registry.register("active_connections", "Open client connections", m.connections.clone());
        registry.register(
            "connections",
            "Client connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests answered 429 by the rate limit",
            m.rate_limited.clone(),
        );
        registry.register("config_revision", "The applied document revision", m.revision.clone());
        registry.register("config_rejections", "Revisions rejected", m.rejections.clone());
        Metrics { registry, ..m }
    }

    /// The metrics of one listener.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let l = ListenerLabels {
            listener: listener.to_owned(),
        };
        ListenerMetrics {
            active: self.connections.get_or_create_owned(&l),
            accepted: self.connections_total.get_or_create_owned(&l),
            rate_limited: self.rate_limited.get_or_create_owned(&l),
        }
    }

    /// The metrics of one route of a listener.
    pub fn route(&self, listener: &str, route: &str) -> RouteMetrics {
        let r = RouteLabels {
            listener: listener.to_owned(),
            route: route.to_owned(),
        };
        let class = |family: &Family<ClassLabels, Counter>, class: &str| {
            family.get_or_create_owned(&ClassLabels {
                listener: listener.to_owned(),
                route: route.to_owned(),
                class: class.to_owned(),
            })
        };
        RouteMetrics {
            status: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| class(&self.requests, c)),
            connect_errors: class(&self.errors, "connect"),
            timeouts: class(&self.errors, "timeout"),
            upstream_errors: class(&self.errors, "upstream"),
            unavailable: class(&self.errors, "unavailable"),
            latency: self.latency.get_or_create_owned(&r),
            ejections: self.ejections.get_or_create_owned(&r),
            overflow: self.overflow.get_or_create_owned(&r),
        }
    }

    /// Counts a request that matched no route.
    pub fn no_route(&self, listener: &str) {
        self.errors
            .get_or_create(&ClassLabels {
                listener: listener.to_owned(),
                route: String::new(),
                class: "no_route".into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    pub active: Gauge,
    pub accepted: Counter,
    pub rate_limited: Counter,
}

#[derive(Clone, Debug)]
pub struct RouteMetrics {
    status: [Counter; 5],
    pub connect_errors: Counter,
    pub timeouts: Counter,
    pub upstream_errors: Counter,
    pub unavailable: Counter,
    pub latency: Histogram,
    pub ejections: Counter,
    pub overflow: Counter,
}

impl RouteMetrics {
    pub fn status(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.status[i].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_listener_and_route() {
        let m = Metrics::new();
        let r = m.route("outbound:80", "api:80");
        r.status(200);
        r.status(503);
        r.latency.observe(0.001);
        m.listener("outbound:80").rate_limited.inc();
        let text = m.encode();
        assert!(
            text.contains(r#"kato_mesh_requests_total{listener="outbound:80",route="api:80",class="2xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"class="5xx"} 1"#));
        assert!(text.contains("kato_mesh_request_duration_seconds_count"));
        assert!(text.contains(r#"kato_mesh_rate_limited_total{listener="outbound:80"} 1"#));
    }
}
