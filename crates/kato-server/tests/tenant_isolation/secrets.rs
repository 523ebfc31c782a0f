//! A secret item's `default` is never answered, as secret values are not: plug-in and version
//! reads leave it out and name it in `secret_defaults_set`; rendering still uses it, and an
//! edit of what a read showed keeps it.

use axum::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{Value, json};

use crate::common::Server;

const SECRET: &str = "s3cr3t-default-4711";

fn groups(level: &str) -> Value {
    json!([{"name": "agent", "meta": "none", "injection": "env", "items": [
        {"name": "API_TOKEN", "secret": true, "default": SECRET},
        {"name": "LEVEL", "default": level},
    ]}])
}

fn hidden(what: &str, v: &Value) {
    let text = v.to_string();
    assert!(!text.contains(SECRET), "{what} shows the secret default: {text}");
}

#[tokio::test]
async fn secret_defaults_never_leave_the_api_but_still_render() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/agent").await;
    let spec = json!({"name": "agent", "kind": "general", "source": {"image": image}, "config_groups": groups("info")});
    let (status, created) = s.call(Method::POST, "/teams/demo/plugins", Some(spec.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    hidden("the created plug-in", &created);
    assert_eq!(created["secret_defaults_set"], json!(["agent.API_TOKEN"]), "{created}");
    let item = &created["config_groups"][0]["items"][0];
    assert_eq!(
        (item["name"].as_str(), item["secret"].as_bool()),
        (Some("API_TOKEN"), Some(true))
    );
    assert!(item.get("default").is_none(), "{item}");
    assert_eq!(created["config_groups"][0]["items"][1]["default"], "info");
    let version = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/agent/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    hidden("the new version", &version);
    assert_eq!(version["plugin"]["secret_defaults_set"], json!(["agent.API_TOKEN"]));

    for path in [
        "/teams/demo/plugins",
        "/teams/demo/plugins/agent",
        "/teams/demo/plugins/agent/versions",
        "/teams/demo/plugins/agent/versions/1",
    ] {
        // Twice: the second read of a plug-in is answered from the cache.
        for _ in 0..2 {
            hidden(path, &s.ok(Method::GET, path, None, StatusCode::OK).await);
        }
    }

    // Rendering uses it: on Kubernetes the secret item travels in a Secret.
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx"})),
        StatusCode::CREATED,
    )
    .await;
    let installed = s
        .ok(
            Method::PUT,
            "/teams/demo/components/web/plugins/agent",
            Some(json!({})),
            StatusCode::CREATED,
        )
        .await;
    hidden("the installation", &installed);
    assert!(rendered(&s).await.contains(&encoded()), "the default is rendered");
}

fn encoded() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

/// What `web` runs on Kubernetes, secrets in (the manifests endpoint redacts them).
async fn rendered(s: &Server) -> String {
    let (team, web) = ("demo".parse().unwrap(), "web".parse().unwrap());
    let ctx = kato_server::ops::component_context(&mut &s.state.store, &team, &web)
        .await
        .unwrap();
    kato_server::api::render_objects(&s.state, &team, &ctx, kato_render::Target::Kubernetes, None, false)
        .unwrap()
        .to_yaml()
}

#[tokio::test]
async fn sending_back_what_a_read_showed_keeps_the_secret_default() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/agent").await;
    let spec = json!({"name": "agent", "kind": "general", "source": {"image": image}, "config_groups": groups("info")});
    s.ok(Method::POST, "/teams/demo/plugins", Some(spec), StatusCode::CREATED)
        .await;

    // PATCH with the groups as a GET showed them, one other default changed.
    let shown = s
        .ok(Method::GET, "/teams/demo/plugins/agent", None, StatusCode::OK)
        .await;
    let mut edited = shown["config_groups"].clone();
    edited[0]["items"][1]["default"] = json!("debug");
    let patched = s
        .ok(
            Method::PATCH,
            "/teams/demo/plugins/agent",
            Some(json!({"config_groups": edited})),
            StatusCode::OK,
        )
        .await;
    hidden("the patched plug-in", &patched);
    assert_eq!(patched["secret_defaults_set"], json!(["agent.API_TOKEN"]), "{patched}");

    // Apply a document made from that read: the stored secret default stays.
    let mut doc_spec = s
        .ok(Method::GET, "/teams/demo/plugins/agent", None, StatusCode::OK)
        .await;
    let obj = doc_spec.as_object_mut().unwrap();
    for k in ["name", "created_at", "updated_at", "secret_defaults_set"] {
        obj.remove(k);
    }
    let doc = json!({"kind": "Plugin", "metadata": {"name": "agent"}, "spec": doc_spec});
    let out = s
        .ok(
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": [doc]})),
            StatusCode::OK,
        )
        .await;
    hidden("the apply's answer", &out);
    let v = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/agent/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["plugin"]["secret_defaults_set"], json!(["agent.API_TOKEN"]), "{v}");
    assert_eq!(v["plugin"]["config_groups"][0]["items"][1]["default"], "debug");

    // And the version made from it renders the default.
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx"})),
        StatusCode::CREATED,
    )
    .await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/agent",
        Some(json!({})),
        StatusCode::CREATED,
    )
    .await;
    assert!(rendered(&s).await.contains(&encoded()), "the default is rendered");
}
