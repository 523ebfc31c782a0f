//! The plug-in's own port (`PERF_PORT`): `GET /metrics` (Prometheus text), `GET /summary`
//! (JSON), `GET /ready` (200 once a revision is applied), `GET /healthz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::capture::Capture;

/// What the port reports.
#[derive(Debug)]
pub struct Shared {
    pub capture: Capture,
    pub ready: AtomicBool,
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// The answer to one request.
pub fn answer<B>(req: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.capture.metrics(),
        ),
        "/summary" => {
            let body = serde_json::to_vec_pretty(&shared.capture.summary()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        "/ready" if shared.ready.load(Ordering::Acquire) => reply(StatusCode::OK, PLAIN, "ready\n"),
        "/ready" => reply(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready\n"),
        "/healthz" => reply(StatusCode::OK, PLAIN, "ok\n"),
        _ => reply(
            StatusCode::NOT_FOUND,
            PLAIN,
            "try /summary, /metrics, /ready or /healthz\n",
        ),
    }
}

/// Serves `listener` until `stop` turns true; open connections finish their request.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let res = answer(&req, &shared);
                async move { Ok::<_, Infallible>(res) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stop too.
    let _ = stop.wait_for(|s| *s).await;
}
