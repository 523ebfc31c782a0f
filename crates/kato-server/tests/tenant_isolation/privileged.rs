//! A privileged container is root on the host of a rootful engine: only the admin token may
//! make an installation privileged, or move a privileged one to another version.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{refused, team_token};
use crate::common::Server;

const INSTALL: &str = "/teams/demo/components/web/plugins/setup";

async fn setup() -> (Server, String) {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/setup").await;
    s.plugin(
        "demo",
        json!({"name": "setup", "kind": "init", "source": {"image": image}, "memory_mib": 64}),
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx"})),
        StatusCode::CREATED,
    )
    .await;
    let team = team_token(&s, "demo").await;
    (s, team)
}

#[tokio::test]
async fn a_team_token_cannot_make_an_installation_privileged() {
    let (s, team) = setup().await;
    let before = s.snapshot("demo").await;
    let (status, body) = s
        .call_as(&team, Method::PUT, INSTALL, Some(json!({"privileged": true})))
        .await;
    refused(status, &body, StatusCode::FORBIDDEN, "privileged");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the admin token"),
        "{body}"
    );
    // Installed unprivileged first, then switched on: refused too.
    let (status, body) = s.call_as(&team, Method::PUT, INSTALL, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let installed = s.snapshot("demo").await;
    let (status, body) = s
        .call_as(&team, Method::PUT, INSTALL, Some(json!({"privileged": true})))
        .await;
    refused(status, &body, StatusCode::FORBIDDEN, "privileged");
    assert_eq!(s.snapshot("demo").await, installed, "a refused request changes nothing");
    // Through apply too.
    let doc = json!({"kind": "Component", "metadata": {"name": "web"},
        "spec": {"image": "nginx", "plugins": [{"plugin": "setup", "privileged": true}]}});
    let (status, body) = s
        .call_as(
            &team,
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": [doc]})),
        )
        .await;
    refused(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "documents[0].spec.plugins[0].privileged",
    );
    assert_eq!(s.snapshot("demo").await, installed);
    s.ok(Method::DELETE, INSTALL, None, StatusCode::NO_CONTENT).await;
    assert_eq!(s.snapshot("demo").await, before);

    // The admin may, by the API and by apply.
    let v = s
        .ok(
            Method::PUT,
            INSTALL,
            Some(json!({"privileged": true})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["privileged"], true, "{v}");
    let (status, body) = s
        .call_as(
            &s.admin,
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": [doc]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_team_keeps_what_the_admin_made_privileged_but_cannot_change_what_it_runs() {
    let (s, team) = setup().await;
    s.ok(
        Method::PUT,
        INSTALL,
        Some(json!({"privileged": true})),
        StatusCode::CREATED,
    )
    .await;
    // Other fields stay the team's to change; the privilege stays as the admin set it.
    let (status, body) = s
        .call_as(
            &team,
            Method::PUT,
            INSTALL,
            Some(json!({"enabled": false, "memory_mib": 96})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["privileged"].as_bool(), body["enabled"].as_bool()),
        (Some(true), Some(false))
    );
    let (status, body) = s
        .call_as(
            &team,
            Method::PUT,
            INSTALL,
            Some(json!({"privileged": true, "enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "already privileged, same version: {body}");

    // A new version the team built would run as root: moving to it needs the admin.
    s.ok(
        Method::PATCH,
        "/teams/demo/plugins/setup",
        Some(json!({"memory_mib": 80})),
        StatusCode::OK,
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins/setup/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    let before = s.snapshot("demo").await;
    let (status, body) = s
        .call_as(&team, Method::PUT, INSTALL, Some(json!({"version": 2})))
        .await;
    refused(status, &body, StatusCode::FORBIDDEN, "privileged");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("moving it to version 2 needs the admin token"),
        "{body}"
    );
    assert_eq!(s.snapshot("demo").await, before, "a refused request changes nothing");
    // Switching it off is always allowed; then the upgrade is the team's.
    let (status, body) = s
        .call_as(
            &team,
            Method::PUT,
            INSTALL,
            Some(json!({"privileged": false, "version": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["privileged"].as_bool(), body["version"].as_u64()),
        (Some(false), Some(2))
    );
}
