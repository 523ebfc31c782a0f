//! A sidecar plug-in's readiness check (`ready`): how Kubernetes tells that the plug-in is up,
//! so that a native sidecar holds back the app until it is (Kato's extension; Rainbond had none).

use serde::{Deserialize, Serialize};

use crate::plugin::PluginKind;
use crate::{Invalid, invalid};

/// How to tell that a sidecar plug-in is ready: `{http: {path, port}}`, `{tcp: {port}}` or
/// `{exec: [argv…]}`. Rendered as the container's startup and readiness probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReadyRepr", into = "ReadyRepr")]
pub enum Ready {
    /// An HTTP GET to `127.0.0.1:port` + `path` answers 2xx or 3xx.
    Http(HttpCheck),
    /// A TCP connection to `port` opens.
    Tcp(TcpCheck),
    /// This command, run in the plug-in's container, exits 0.
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub path: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    pub port: u16,
}

/// The wire form of [`Ready`]: a map with exactly one key, in JSON and YAML alike.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<Vec<String>>,
}

impl TryFrom<ReadyRepr> for Ready {
    type Error = &'static str;
    fn try_from(r: ReadyRepr) -> Result<Self, Self::Error> {
        match (r.http, r.tcp, r.exec) {
            (Some(h), None, None) => Ok(Ready::Http(h)),
            (None, Some(t), None) => Ok(Ready::Tcp(t)),
            (None, None, Some(e)) => Ok(Ready::Exec(e)),
            _ => Err("give exactly one of `http: {path, port}`, `tcp: {port}` or `exec: [command, args…]`"),
        }
    }
}

impl From<Ready> for ReadyRepr {
    fn from(r: Ready) -> Self {
        let mut repr = ReadyRepr {
            http: None,
            tcp: None,
            exec: None,
        };
        match r {
            Ready::Http(h) => repr.http = Some(h),
            Ready::Tcp(t) => repr.tcp = Some(t),
            Ready::Exec(e) => repr.exec = Some(e),
        }
        repr
    }
}

fn check_port(field: &str, port: u16) -> Result<(), Invalid> {
    if port == 0 {
        return Err(invalid(
            field,
            "is 0: give the port the plug-in listens on inside the pod, between 1 and 65535",
        ));
    }
    Ok(())
}

impl Ready {
    /// The rules of a readiness check; `kind` is the plug-in's, as only sidecars have one.
    pub fn check(&self, kind: PluginKind) -> Result<(), Invalid> {
        if !kind.is_sidecar() {
            return Err(invalid(
                "ready",
                "an `init` plug-in runs to completion before the app starts, so nothing waits for it to be \
                 ready: remove `ready`, or make the plug-in a sidecar kind",
            ));
        }
        match self {
            Ready::Http(h) => {
                check_port("ready.http.port", h.port)?;
                if !h.path.starts_with('/') {
                    return Err(invalid(
                        "ready.http.path",
                        format!(
                            "`{}` does not start with `/`: give an absolute path, e.g. `/ready`",
                            h.path
                        ),
                    ));
                }
                if h.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        "ready.http.path",
                        format!(
                            "`{}` holds a space or control character: percent-encode it",
                            h.path.escape_debug()
                        ),
                    ));
                }
                Ok(())
            }
            Ready::Tcp(t) => check_port("ready.tcp.port", t.port),
            Ready::Exec(argv) => {
                if argv.is_empty() {
                    return Err(invalid(
                        "ready.exec",
                        "is empty: give the command and its arguments, e.g. [\"/usr/local/bin/check\"]",
                    ));
                }
                if let Some(i) = argv.iter().position(|a| a.trim().is_empty()) {
                    return Err(invalid(
                        format!("ready.exec[{i}]"),
                        "is empty: remove it (each item is one argument, passed as is, without a shell)",
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PluginSpec;

    fn spec(yaml: &str) -> PluginSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn error(ready: &str) -> Invalid {
        spec(&format!(
            "{{name: p, kind: inbound-net, source: {{image: x}}, ready: {ready}}}"
        ))
        .validate()
        .unwrap_err()
    }

    #[test]
    fn each_form_reads_and_writes_as_a_one_key_map() {
        for (yaml, want) in [
            (
                "{http: {path: /ready, port: 15021}}",
                Ready::Http(HttpCheck {
                    path: "/ready".into(),
                    port: 15021,
                }),
            ),
            ("{tcp: {port: 5432}}", Ready::Tcp(TcpCheck { port: 5432 })),
            (
                "{exec: [/usr/local/bin/kato-mesh, ready]}",
                Ready::Exec(vec!["/usr/local/bin/kato-mesh".into(), "ready".into()]),
            ),
        ] {
            let mut p = spec(&format!(
                "{{name: p, kind: general, source: {{image: x}}, ready: {yaml}}}"
            ));
            p.validate().unwrap();
            assert_eq!(p.ready.as_ref(), Some(&want));
            let json = serde_json::to_value(&p).unwrap();
            let back: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(json["ready"], back, "{yaml}");
            let yaml_out = serde_yaml::to_string(&p).unwrap();
            assert!(!yaml_out.contains('!'), "no YAML tags: {yaml_out}");
            assert_eq!(serde_yaml::from_str::<PluginSpec>(&yaml_out).unwrap(), p);
        }
    }

    #[test]
    fn absent_is_not_written() {
        let p = spec("{name: p, kind: general, source: {image: x}}");
        assert_eq!(p.ready, None);
        assert!(serde_json::to_value(&p).unwrap().get("ready").is_none());
    }

    #[test]
    fn one_form_only() {
        for bad in [
            "{}",
            "{http: {path: /, port: 1}, tcp: {port: 1}}",
            "{grpc: {port: 1}}",
            "{http: {path: /, port: 1, host: x}}",
            "{http: {path: /, port: 70000}}",
        ] {
            let yaml = format!("{{name: p, kind: general, source: {{image: x}}, ready: {bad}}}");
            assert!(serde_yaml::from_str::<PluginSpec>(&yaml).is_err(), "{bad}");
        }
        let e =
            serde_yaml::from_str::<PluginSpec>("{name: p, kind: general, source: {image: x}, ready: {}}").unwrap_err();
        assert!(e.to_string().contains("give exactly one of `http"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = error("{http: {path: /ready, port: 0}}");
        assert_eq!(e.field, "ready.http.port");
        assert!(e.message.contains("between 1 and 65535"), "{e}");
        let e = error("{http: {path: ready, port: 80}}");
        assert_eq!(e.field, "ready.http.path");
        assert!(e.message.contains("`ready` does not start with `/`"), "{e}");
        assert_eq!(error("{http: {path: '/a b', port: 80}}").field, "ready.http.path");
        assert_eq!(error("{tcp: {port: 0}}").field, "ready.tcp.port");
        let e = error("{exec: []}");
        assert_eq!(e.field, "ready.exec");
        assert!(e.message.contains("is empty"), "{e}");
        assert_eq!(error("{exec: [check, '']}").field, "ready.exec[1]");
        assert_eq!(error("{exec: [' ']}").field, "ready.exec[0]");
    }

    #[test]
    fn init_plugins_have_no_readiness() {
        let e = spec("{name: p, kind: init, source: {image: x}, ready: {tcp: {port: 80}}}")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "ready");
        assert!(e.message.contains("remove `ready`"), "{e}");
    }
}
