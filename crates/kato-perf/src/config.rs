//! The plug-in's configuration, read whole from a discovery document and checked before
//! anything changes: `ports[]` (the `component-port` group: `OPEN` per port) and `base`
//! (`PERF_PORT`, the plug-in's own port).

use std::collections::BTreeMap;
use std::fmt;

use kato_discovery_client::Document;
use serde_json::Value;

use crate::exchange::Protocol;

/// The plug-in's own port when `PERF_PORT` is not set.
pub const DEFAULT_PERF_PORT: u16 = 65532;

/// What one revision asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `0.0.0.0:<perf_port>` serves `/metrics`, `/summary`, `/ready`; `0` picks a free port.
    pub perf_port: u16,
    /// The ports analysed.
    pub ports: BTreeMap<u16, Protocol>,
    /// Ports of the document not analysed, and why, for the ack.
    pub skipped: Vec<String>,
}

/// A document that cannot be applied: the message names the place, the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Bool(b) => Some(if *b { "YES" } else { "NO" }.to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Config {
    pub fn from_document(doc: &Document) -> Result<Config, Rejection> {
        let perf_port = match doc.base.get("PERF_PORT").and_then(text).filter(|s| !s.is_empty()) {
            None => DEFAULT_PERF_PORT,
            Some(s) => s.parse::<u16>().map_err(|_| {
                Rejection(format!(
                    "PERF_PORT `{s}` is not a port; give a number from 1 to 65535 (default 65532)"
                ))
            })?,
        };
        let mut ports = BTreeMap::new();
        let mut skipped = Vec::new();
        for p in &doc.ports {
            let open = match p.options.get("OPEN").and_then(text).filter(|s| !s.is_empty()) {
                None => true,
                Some(s) if s.eq_ignore_ascii_case("YES") => true,
                Some(s) if s.eq_ignore_ascii_case("NO") => false,
                Some(s) => {
                    return Err(Rejection(format!(
                        "port {} ({}): OPEN `{s}` is neither YES nor NO; give YES to analyse the port, NO to leave it",
                        p.port, p.protocol
                    )));
                }
            };
            match Protocol::parse(&p.protocol) {
                None => skipped.push(format!(
                    "{} ({}) skipped: only http and mysql are analysed",
                    p.port, p.protocol
                )),
                Some(_) if !open => skipped.push(format!("{} ({}) OPEN=NO", p.port, p.protocol)),
                Some(_) if p.port == perf_port => {
                    return Err(Rejection(format!(
                        "port {} is both a component port and PERF_PORT; give PERF_PORT another port",
                        p.port
                    )));
                }
                Some(proto) => {
                    ports.insert(p.port, proto);
                }
            }
        }
        Ok(Config {
            perf_port,
            ports,
            skipped,
        })
    }
}

/// The ack's message for an applied config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<'a> {
    pub config: &'a Config,
    /// The port actually bound (differs from `perf_port` when that is 0).
    pub bound: u16,
}

impl fmt::Display for Applied<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.config;
        let n = c.ports.len();
        write!(f, "analysing {n} port{}", if n == 1 { "" } else { "s" })?;
        for (i, (port, proto)) in c.ports.iter().enumerate() {
            write!(f, "{} {port} ({})", if i == 0 { ":" } else { "," }, proto.as_str())?;
        }
        write!(f, "; summary and metrics on :{}", self.bound)?;
        for s in &c.skipped {
            write!(f, "; {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: serde_json::Value) -> Document {
        let mut base = serde_json::json!({"revision": 3, "plugin": "perf", "version": 1, "base": {}, "ports": [], "downstream": []});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn open_ports_of_http_and_mysql_are_analysed() {
        let d = doc(serde_json::json!({
            "base": {"PERF_PORT": "9100"},
            "ports": [
                {"port": 8080, "protocol": "http", "options": {"OPEN": "YES"}},
                {"port": 3306, "protocol": "mysql", "options": {}},
                {"port": 8081, "protocol": "http", "options": {"OPEN": "NO"}},
                {"port": 9000, "protocol": "grpc", "options": {"OPEN": "YES"}}
            ]
        }));
        let c = Config::from_document(&d).unwrap();
        assert_eq!(c.perf_port, 9100);
        assert_eq!(
            c.ports,
            BTreeMap::from([(3306, Protocol::Mysql), (8080, Protocol::Http)])
        );
        assert_eq!(
            Applied {
                config: &c,
                bound: 9100
            }
            .to_string(),
            "analysing 2 ports: 3306 (mysql), 8080 (http); summary and metrics on :9100; 8081 (http) OPEN=NO; \
             9000 (grpc) skipped: only http and mysql are analysed"
        );
        assert_eq!(
            Config::from_document(&doc(serde_json::json!({}))).unwrap().perf_port,
            DEFAULT_PERF_PORT
        );
    }

    #[test]
    fn bad_values_are_rejected_with_the_fix() {
        let bad_open =
            doc(serde_json::json!({"ports": [{"port": 80, "protocol": "http", "options": {"OPEN": "maybe"}}]}));
        assert_eq!(
            Config::from_document(&bad_open).unwrap_err().0,
            "port 80 (http): OPEN `maybe` is neither YES nor NO; give YES to analyse the port, NO to leave it"
        );
        let bad_port = doc(serde_json::json!({"base": {"PERF_PORT": "http"}}));
        assert!(
            Config::from_document(&bad_port)
                .unwrap_err()
                .0
                .starts_with("PERF_PORT `http` is not a port")
        );
        let clash = doc(
            serde_json::json!({"base": {"PERF_PORT": 80}, "ports": [{"port": 80, "protocol": "http", "options": {}}]}),
        );
        assert!(Config::from_document(&clash).is_err());
    }
}
