//! A sidecar plug-in's `ready` check as its probes: the startup probe holds back the containers
//! after a native sidecar (the app) until it passes; the readiness probe keeps watching after.

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kato_model::Ready;

/// How often a probe runs and how many failures in a row fail it, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub period_seconds: i32,
    pub failure_threshold: i32,
    pub timeout_seconds: i32,
}

/// Checked every second, so the app starts about as soon as the sidecar is up; two minutes of
/// failures restart the sidecar (a proxy that has not listened by then is stuck).
pub(crate) const STARTUP: Timing = Timing {
    period_seconds: 1,
    failure_threshold: 120,
    timeout_seconds: 1,
};

/// Once started, 15 s of failures take the pod out of its Service's endpoints.
pub(crate) const READINESS: Timing = Timing {
    period_seconds: 5,
    failure_threshold: 3,
    timeout_seconds: 1,
};

/// The probe of `ready` with these timings.
pub(crate) fn probe(ready: &Ready, t: Timing) -> Probe {
    let mut p = Probe {
        failure_threshold: Some(t.failure_threshold),
        period_seconds: Some(t.period_seconds),
        timeout_seconds: Some(t.timeout_seconds),
        ..Default::default()
    };
    match ready {
        Ready::Http(h) => {
            p.http_get = Some(HTTPGetAction {
                path: Some(h.path.clone()),
                port: IntOrString::Int(i32::from(h.port)),
                ..Default::default()
            });
        }
        Ready::Tcp(t) => {
            p.tcp_socket = Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(t.port)),
                ..Default::default()
            });
        }
        Ready::Exec(argv) => {
            p.exec = Some(ExecAction {
                command: Some(argv.clone()),
            });
        }
    }
    p
}
