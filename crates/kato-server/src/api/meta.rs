//! Health, Prometheus metrics, the OpenAPI document, and the request counter behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

static REQUESTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

pub async fn count_requests(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    count_response(res.status());
    res
}

/// Counts an answer in `kato_http_requests_total`.
pub(crate) fn count_response(status: axum::http::StatusCode) {
    let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
    REQUESTS[class].fetch_add(1, Ordering::Relaxed);
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.team_exists(&"healthz".parse().expect("a valid name")).await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics() -> impl IntoResponse {
    let mut out = String::from(
        "# HELP kato_http_requests_total HTTP requests answered, by status class.\n# TYPE kato_http_requests_total counter\n",
    );
    for (i, c) in REQUESTS.iter().enumerate() {
        out.push_str(&format!(
            "kato_http_requests_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            c.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&crate::listener::metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
}
