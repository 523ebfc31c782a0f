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

#[cfg(test)]
mod tests {
    use kato_model::PluginSpec;
    use serde_json::{Value, json};

    fn plugin_schema() -> Value {
        let doc: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        doc["components"]["schemas"]["Plugin"].clone()
    }

    #[test]
    fn the_plugin_schema_names_every_field_of_a_plugin() {
        let spec: PluginSpec = serde_json::from_value(json!({
            "name": "p", "description": "d", "kind": "general", "source": {"image": "x"},
            "command": ["run"], "memory_mib": 64, "cpu_millis": 100,
            "ready": {"tcp": {"port": 80}}, "config_groups": [],
        }))
        .unwrap();
        let schema = plugin_schema();
        let Value::Object(fields) = serde_json::to_value(&spec).unwrap() else {
            panic!("a plug-in is a JSON object")
        };
        for key in fields.keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "openapi.json's Plugin lacks `{key}`"
            );
        }
    }

    #[test]
    fn the_ready_schema_has_one_branch_per_form() {
        let schema = plugin_schema();
        let branches = schema["properties"]["ready"]["oneOf"].as_array().unwrap();
        let keys: Vec<&str> = branches.iter().map(|b| b["required"][0].as_str().unwrap()).collect();
        assert_eq!(keys, ["http", "tcp", "exec"]);
        for (form, ready) in [
            ("http", json!({"http": {"path": "/ready", "port": 8080}})),
            ("tcp", json!({"tcp": {"port": 8080}})),
            ("exec", json!({"exec": ["check"]})),
        ] {
            let parsed: kato_model::Ready = serde_json::from_value(ready.clone()).unwrap();
            assert_eq!(
                serde_json::to_value(parsed).unwrap(),
                ready,
                "{form} answers as it is sent"
            );
            let branch = branches.iter().find(|b| b["required"][0] == form).unwrap();
            if let Some(fields) = ready[form].as_object() {
                let documented = branch["properties"][form]["required"].as_array().unwrap();
                let sent: Vec<&str> = fields.keys().map(String::as_str).collect();
                assert_eq!(documented.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>(), sent);
            }
        }
    }
}
