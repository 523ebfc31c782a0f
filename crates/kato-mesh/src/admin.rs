//! The admin port (`METRICS_PORT`): `GET /metrics` (Prometheus text), `GET /ready` (200 once a
//! revision is applied with every listener bound, 503 before and while draining), `GET /healthz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::ProxyBody;
use crate::listener::{ConnSignal, Phase};
use crate::metrics::Metrics;

/// What the admin port reports.
#[derive(Debug)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::Local(Some(body.into())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn answer(req: &Request<hyper::body::Incoming>, admin: &Admin) -> Response<ProxyBody> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.metrics.encode(),
        ),
        "/ready" if admin.ready.load(Ordering::Acquire) => text(StatusCode::OK, PLAIN, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready\n"),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        _ => text(StatusCode::NOT_FOUND, PLAIN, "try /metrics, /ready or /healthz\n"),
    }
}

/// Serves one admin connection.
pub async fn serve(stream: TcpStream, admin: Arc<Admin>, mut signal: ConnSignal) {
    let svc = hyper::service::service_fn(move |req| {
        let res = answer(&req, &admin);
        async move { Ok::<_, Infallible>(res) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            p = signal.changed() => match p {
                Phase::Draining => conn.as_mut().graceful_shutdown(),
                Phase::Killed => return,
                Phase::Serving => {}
            }
        }
    }
}
