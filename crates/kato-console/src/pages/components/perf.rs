//! The performance analyser's summary (`GET …/plugins/{p}/perf`): a section per
//! perf-analysis installation on the plug-ins tab, and a page of its own that a small script
//! refreshes every 5 s. The summary is read as JSON (kato-perf's `/summary` shape), so the
//! console does not depend on kato-perf.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use super::acks::installation_path;
use super::{page_path, with_status};
use crate::api::enc;
use crate::view::{Nav, failure, page};
use crate::{Console, Failure, Session};

pub fn routes() -> Router<Console> {
    Router::new().route("/teams/{team}/components/{c}/plugins/{p}/perf", get(perf_page))
}

/// The windows kato-perf keeps, with their names on the page.
const WINDOWS: [(&str, &str); 3] = [("1m", "1 minute"), ("5m", "5 minutes"), ("15m", "15 minutes")];
pub const DEFAULT_WINDOW: &str = "5m";

/// One row of a port's table: a route (HTTP) or a statement fingerprint (MySQL), or the port.
pub struct Row {
    pub name: String,
    pub requests: u64,
    pub errors: String,
    pub p50: String,
    pub p90: String,
    pub p99: String,
}

pub struct PortView {
    pub port: u64,
    pub protocol: String,
    /// `Route` or `Statement`.
    pub what: &'static str,
    pub all: Row,
    pub rows: Vec<Row>,
}

/// The section of one perf-analysis installation.
pub struct PerfSection {
    pub plugin: String,
    /// The section's own page.
    pub url: String,
    /// `1m`, `5m`, `15m`.
    pub window: String,
    /// The window's words: `5 minutes`.
    pub window_words: &'static str,
    /// The other windows: (name, words, link).
    pub windows: Vec<(&'static str, &'static str, String)>,
    /// Why there are no figures, in plain words (the API refused or the plug-in did not answer).
    pub message: Option<String>,
    /// The API's own words behind `message`, when they add something.
    pub detail: Option<String>,
    pub pod: String,
    pub uptime_seconds: u64,
    /// `figures may be incomplete: …`, when kato-perf says so.
    pub warning: Option<String>,
    pub ports: Vec<PortView>,
}

impl PerfSection {
    pub fn new(team: &str, c: &str, plugin: &str, window: &str) -> PerfSection {
        let (window, window_words) = WINDOWS
            .iter()
            .find(|(w, _)| *w == window)
            .copied()
            .unwrap_or(("5m", "5 minutes"));
        let url = format!("{}/{}/perf", page_path(team, c, "plugins"), enc(plugin));
        let windows = WINDOWS
            .iter()
            .map(|(w, words)| (*w, *words, format!("{url}?window={w}")))
            .collect();
        PerfSection {
            plugin: plugin.to_owned(),
            url,
            window: window.to_owned(),
            window_words,
            windows,
            message: None,
            detail: None,
            pod: String::new(),
            uptime_seconds: 0,
            warning: None,
            ports: Vec::new(),
        }
    }

    /// How long the analyser has been counting, in words.
    pub fn uptime(&self) -> String {
        match self.uptime_seconds {
            s if s < 120 => format!("{s} s"),
            s if s < 7200 => format!("{} min", s / 60),
            s => format!("{} h", s / 3600),
        }
    }

    /// The section with the figures of `answer` (the API's 200: `{pod, summary, …}`).
    pub fn with_figures(mut self, answer: &Value) -> PerfSection {
        let summary = &answer["summary"];
        self.pod = answer["pod"].as_str().unwrap_or_default().to_owned();
        self.uptime_seconds = summary["uptime_seconds"].as_u64().unwrap_or(0);
        self.warning = summary["warning"].as_str().map(str::to_owned);
        let ports = summary["ports"].as_array().map(Vec::as_slice).unwrap_or_default();
        self.ports = ports.iter().map(|p| port_view(p, &self.window)).collect();
        self
    }

    /// The section saying why there are no figures.
    pub fn with_refusal(mut self, f: &Failure) -> PerfSection {
        let m = f.message.as_str();
        let (plain, detail) = match f.status {
            StatusCode::CONFLICT if m.contains("is disabled") => (
                "The plug-in is disabled on this component. Enable it and deploy the component to see its figures.",
                false,
            ),
            StatusCode::CONFLICT if m.contains("is not running") => (
                "The component is not running. Deploy the component to see its figures.",
                false,
            ),
            StatusCode::CONFLICT if m.contains("only a perf-analysis plug-in") => (
                "This is not a performance-analysis plug-in: only a perf-analysis plug-in has figures.",
                false,
            ),
            StatusCode::BAD_GATEWAY => (
                "The performance analyser did not answer. It may still be starting; its figures show once it answers.",
                true,
            ),
            _ => ("No figures to show.", true),
        };
        self.message = Some(plain.to_owned());
        self.detail = detail.then(|| f.to_string());
        self
    }
}

/// A duration in ms as the table shows it; `—` when the window has no request.
fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x < 10.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.1}"),
        None => "—".to_owned(),
    }
}

fn row(name: &str, f: &Value) -> Row {
    let requests = f["requests"].as_u64().unwrap_or(0);
    let errors = match f["error_rate"].as_f64() {
        Some(r) if requests > 0 => format!("{:.1}", r * 100.0),
        _ => "—".to_owned(),
    };
    Row {
        name: name.to_owned(),
        requests,
        errors,
        p50: ms(&f["p50_ms"]),
        p90: ms(&f["p90_ms"]),
        p99: ms(&f["p99_ms"]),
    }
}

/// A port's table for `window`: the busiest routes, then the slowest not among them.
fn port_view(p: &Value, window: &str) -> PortView {
    let protocol = p["protocol"].as_str().unwrap_or_default().to_owned();
    let w = &p["windows"][window];
    let mut rows: Vec<Row> = Vec::new();
    for list in ["most_frequent", "slowest"] {
        for r in w[list].as_array().map(Vec::as_slice).unwrap_or_default() {
            let name = r["route"].as_str().unwrap_or_default();
            if !rows.iter().any(|x| x.name == name) {
                rows.push(row(name, r));
            }
        }
    }
    PortView {
        port: p["port"].as_u64().unwrap_or(0),
        what: if protocol == "mysql" { "Statement" } else { "Route" },
        protocol,
        all: row("All", &w["all"]),
        rows,
    }
}

/// The section of installation `plugin`: its figures, or why there are none. Refusals other
/// than 409 and 502 (not installed, not allowed) are the caller's.
pub async fn section(
    console: &Console,
    session: &Session,
    team: &str,
    c: &str,
    plugin: &str,
    window: &str,
) -> Result<PerfSection, Failure> {
    let s = PerfSection::new(team, c, plugin, window);
    let path = format!("{}/perf", installation_path(team, c, plugin));
    match console.api.get::<Value>(&session.token, &path).await {
        Ok(answer) => Ok(s.with_figures(&answer)),
        Err(f) if matches!(f.status, StatusCode::CONFLICT | StatusCode::BAD_GATEWAY) => Ok(s.with_refusal(&f)),
        Err(f) => Err(f),
    }
}

#[derive(askama::Template)]
#[template(path = "components/perf.html")]
struct PerfPage {
    nav: Nav,
    component: String,
    tab: &'static str,
    perf: PerfSection,
}

#[derive(Deserialize, Default)]
struct WindowQuery {
    window: Option<String>,
}

async fn perf_page(
    session: Session,
    State(console): State<Console>,
    Path((team, c, p)): Path<(String, String, String)>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let window = q.window.unwrap_or_else(|| DEFAULT_WINDOW.to_owned());
    let here = format!("{}/{}/perf", page_path(&team, &c, "plugins"), enc(&p));
    let nav = match Nav::of(&console, &session, &team, "components", here).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let perf = match section(&console, &session, &team, &c, &p, &window).await {
        Ok(s) => s,
        Err(f) => return failure(&f),
    };
    let not_perf = perf
        .message
        .as_deref()
        .is_some_and(|m| m.starts_with("This is not a performance-analysis"));
    let res = page(&PerfPage {
        nav,
        component: c,
        tab: "plugins",
        perf,
    });
    if not_perf {
        with_status(res, StatusCode::CONFLICT)
    } else {
        res
    }
}

#[cfg(test)]
mod tests {
    use askama::Template;
    use axum::http::StatusCode;
    use serde_json::json;

    use super::PerfSection;

    /// The section alone, as both pages include it.
    #[derive(askama::Template)]
    #[template(source = r#"{% include "components/perf_section.html" %}"#, ext = "html")]
    struct SectionOnly {
        perf: PerfSection,
    }

    fn figures(requests: u64, errors: u64, p50: Option<f64>) -> serde_json::Value {
        let rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        json!({"requests": requests, "errors": errors, "rate": requests as f64 / 300.0, "error_rate": rate,
            "p50_ms": p50, "p90_ms": p50.map(|x| x * 1.5), "p99_ms": p50.map(|x| x * 2.0)})
    }

    fn route(name: &str, f: serde_json::Value) -> serde_json::Value {
        let mut r = f;
        r["route"] = json!(name);
        r
    }

    /// A summary as kato-perf serializes its `Summary` (stats.rs): a route's figures flattened
    /// beside its name, absent percentiles `null`, the three windows by name.
    fn sample() -> serde_json::Value {
        let fast = figures(600, 3, Some(5.1));
        let slow = figures(200, 0, Some(50.6));
        let http5 = json!({"all": figures(800, 3, Some(5.3)),
            "slowest": [route("GET /slow", slow.clone()), route("GET /fast", fast.clone())],
            "most_frequent": [route("GET /fast", fast.clone()), route("GET /slow", slow.clone())]});
        let http1 = json!({"all": figures(120, 0, Some(5.0)),
            "slowest": [route("GET /fast", figures(120, 0, Some(5.0)))],
            "most_frequent": [route("GET /fast", figures(120, 0, Some(5.0)))]});
        let users = route("select * from users where id = ?", figures(50, 1, Some(5.16)));
        let mysql = json!({"all": figures(50, 1, Some(5.16)), "slowest": [users.clone()], "most_frequent": [users]});
        let idle = json!({"all": figures(0, 0, None), "slowest": [], "most_frequent": []});
        json!({"team": "alpha", "component": "web", "plugin": "perf", "pod": "web-0", "address": "10.88.0.5:65532",
            "summary": {"uptime_seconds": 960, "packets": 5210, "dropped_packets": 7, "flows": 12,
                "undecodable_flows": {"gap": 2, "malformed": 0, "midstream": 0},
                "warning": "figures may be incomplete: 7 packets dropped, 2 connections with bytes missing",
                "ports": [
                    {"port": 8080, "protocol": "http", "windows": {"1m": http1, "5m": http5, "15m": http5}},
                    {"port": 3306, "protocol": "mysql", "windows": {"1m": idle, "5m": mysql, "15m": mysql}},
                    {"port": 9090, "protocol": "http", "windows": {"1m": idle, "5m": idle, "15m": idle}}]}})
    }

    fn render(window: &str) -> String {
        let perf = PerfSection::new("alpha", "web", "perf", window).with_figures(&sample());
        SectionOnly { perf }.render().unwrap()
    }

    #[test]
    fn a_summary_renders_a_table_per_port_for_the_window() {
        let html = render("5m");
        // One table per port with requests, an accessible caption and headers with a scope.
        assert_eq!(html.matches("<table").count(), 2, "{html}");
        assert!(
            html.contains("<caption>Port 8080 (http), last 5 minutes</caption>"),
            "{html}"
        );
        assert!(
            html.contains("<caption>Port 3306 (mysql), last 5 minutes</caption>"),
            "{html}"
        );
        assert!(html.contains(r#"<th scope="col">Route</th>"#), "{html}");
        assert!(html.contains(r#"<th scope="col">Statement</th>"#), "{html}");
        assert!(
            html.contains(
                r#"<th scope="row">GET /fast</th><td>600</td><td>0.5</td><td>5.10</td><td>7.65</td><td>10.2</td>"#
            ),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<th scope="row">GET /slow</th><td>200</td><td>0.0</td><td>50.6</td><td>75.9</td><td>101.2</td>"#
            ),
            "{html}"
        );
        assert_eq!(
            html.matches("GET /slow").count(),
            1,
            "a route in both lists is one row: {html}"
        );
        assert!(
            html.contains(r#"<th scope="row">select * from users where id = ?</th><td>50</td><td>2.0</td>"#),
            "{html}"
        );
        assert!(html.contains(r#"<th scope="row">All</th><td>800</td>"#), "{html}");
        // A port without requests says so; the warning shows.
        assert!(
            html.contains("Port 9090 (http): no request in the last 5 minutes."),
            "{html}"
        );
        assert!(
            html.contains("<strong>Warning:</strong> figures may be incomplete: 7 packets dropped, 2 connections with bytes missing"),
            "{html}"
        );
        // The window links, the current one marked.
        assert!(
            html.contains(r#"href="/teams/alpha/components/web/plugins/perf/perf?window=5m" aria-current="true""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="/teams/alpha/components/web/plugins/perf/perf?window=15m""#),
            "{html}"
        );
    }

    #[test]
    fn refusals_are_said_in_plain_words() {
        let refusal = |status, message: &str| crate::Failure {
            status,
            code: "x".into(),
            message: message.into(),
            field: None,
        };
        let s = |f| PerfSection::new("alpha", "web", "perf", "5m").with_refusal(&f);
        let stopped = s(refusal(
            StatusCode::CONFLICT,
            "component `web` is not running with plug-in `perf` (it is stopped): deploy it",
        ));
        assert_eq!(
            stopped.message.as_deref(),
            Some("The component is not running. Deploy the component to see its figures.")
        );
        assert_eq!(stopped.detail, None);
        let silent = s(refusal(
            StatusCode::BAD_GATEWAY,
            "the perf plug-in `perf` of pod web-0 did not answer at 10.88.0.5:65532/summary: no connection within 3 s",
        ));
        assert!(
            silent
                .message
                .unwrap()
                .starts_with("The performance analyser did not answer.")
        );
        assert!(silent.detail.unwrap().ends_with("no connection within 3 s"));
        let html = SectionOnly {
            perf: s(refusal(
                StatusCode::CONFLICT,
                "plug-in `perf` is disabled on component `web`",
            )),
        }
        .render()
        .unwrap();
        assert!(
            html.contains("<p class=\"notice\">The plug-in is disabled on this component."),
            "{html}"
        );
        assert!(!html.contains("<table"), "{html}");
    }

    #[test]
    fn another_window_shows_its_own_figures_and_no_warning_when_none() {
        let html = render("1m");
        assert!(
            html.contains("<caption>Port 8080 (http), last 1 minute</caption>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<th scope="row">GET /fast</th><td>120</td><td>0.0</td><td>5.00</td>"#),
            "{html}"
        );
        assert!(!html.contains("GET /slow"), "{html}");
        assert!(
            html.contains("Port 3306 (mysql): no request in the last 1 minute."),
            "{html}"
        );
        let mut quiet = sample();
        quiet["summary"]["warning"] = serde_json::Value::Null;
        let perf = PerfSection::new("alpha", "web", "perf", "bogus").with_figures(&quiet);
        let html = SectionOnly { perf }.render().unwrap();
        assert!(!html.contains("incomplete"), "{html}");
        assert!(
            html.contains("last 5 minutes"),
            "an unknown window is the 5-minute one: {html}"
        );
    }
}
