//! `GET /teams/{team}/components/{c}/plugins/{p}/perf`: the refusals, each saying what to do.
//! (The summary itself, proxied from a running pod, is in kato-perf's podman test.)

mod common;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::json;

async fn setup() -> Server {
    let s = Server::start().await;
    s.team("demo").await;
    s.team("other").await;
    let image = s.image("demo/perf").await;
    s.plugin(
        "demo",
        json!({"name": "perf", "kind": "perf-analysis", "source": {"image": image}, "memory_mib": 64,
               "config_groups": [
                   {"name": "general", "meta": "none", "injection": "discovery",
                    "items": [{"name": "PERF_PORT", "default": "65532"}]},
                   {"name": "perf", "meta": "component-port", "injection": "discovery",
                    "items": [{"name": "OPEN", "type": "single", "options": ["YES", "NO"], "default": "YES",
                               "protocols": ["http", "mysql"]}]}]}),
    )
    .await;
    let image = s.image("demo/logtail").await;
    s.plugin(
        "demo",
        json!({"name": "logtail", "kind": "general", "source": {"image": image}, "memory_mib": 64}),
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}]})),
        StatusCode::CREATED,
    )
    .await;
    s
}

#[tokio::test]
async fn perf_refuses_what_has_no_summary_and_says_why() {
    let s = setup().await;
    let perf = "/teams/demo/components/web/plugins/perf/perf";

    // Not installed.
    let (status, body) = s.call(Method::GET, perf, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not installed on component `web`"),
        "{body}"
    );

    // Not a perf-analysis plug-in.
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/logtail",
        Some(json!({})),
        StatusCode::CREATED,
    )
    .await;
    let (status, body) = s
        .call(Method::GET, "/teams/demo/components/web/plugins/logtail/perf", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"]["message"],
        "plug-in `logtail` is a `general` plug-in: only a perf-analysis plug-in has a performance summary"
    );

    // Disabled.
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/perf",
        Some(json!({"enabled": false})),
        StatusCode::CREATED,
    )
    .await;
    let (status, body) = s.call(Method::GET, perf, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is disabled on component `web`"),
        "{body}"
    );

    // Installed and enabled, but the component does not run (this server has no target).
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/perf",
        Some(json!({"enabled": true})),
        StatusCode::OK,
    )
    .await;
    let (status, body) = s.call(Method::GET, perf, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("component `web` is not running with plug-in `perf` (it is stopped): deploy it"),
        "{body}"
    );

    // No such component; another team's token.
    let (status, body) = s
        .call(Method::GET, "/teams/demo/components/nope/plugins/perf/perf", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let token = s
        .ok(
            Method::POST,
            "/teams/other/tokens",
            Some(json!({"name": "them"})),
            StatusCode::CREATED,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = s.call_as(&token, Method::GET, perf, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
