//! Tenant isolation: a team token reaches nothing outside its team. Each test tries an attack
//! through the router (and, for builds, real git, podman and a registry) and expects it refused.

#[path = "../common/mod.rs"]
mod common;
mod platform_registry;
mod privileged;
mod repos;
mod secrets;
mod sources;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::{Value, json};

/// A new token of `team`.
async fn team_token(s: &Server, team: &str) -> String {
    let v = s
        .ok(
            Method::POST,
            &format!("/teams/{team}/tokens"),
            Some(json!({"name": "ci"})),
            StatusCode::CREATED,
        )
        .await;
    v["token"].as_str().unwrap().to_owned()
}

/// Asserts a refusal: the status, and the field it names.
fn refused(status: StatusCode, body: &Value, want: StatusCode, field: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}
