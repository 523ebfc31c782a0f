//! Auth: no or a bad token is 401; a team token never sees or touches another team.

mod common;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::json;

#[tokio::test]
async fn missing_or_unknown_tokens_are_refused() {
    let s = Server::start().await;
    let (status, body) = s.raw(Method::GET, "/api/v1/teams", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let (status, v) = s.call_as("kato_not-a-real-token", Method::GET, "/teams", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
}

#[tokio::test]
async fn team_tokens_stay_in_their_team() {
    let s = Server::start().await;
    s.team("alpha").await;
    s.team("beta").await;
    let token = s
        .ok(
            Method::POST,
            "/teams/alpha/tokens",
            Some(json!({"name": "ci"})),
            StatusCode::CREATED,
        )
        .await;
    let alpha = token["token"].as_str().unwrap().to_owned();

    let (status, teams) = s.call_as(&alpha, Method::GET, "/teams", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        teams,
        json!([{"name": "alpha", "created_at": teams[0]["created_at"]}]),
        "sees only its own team"
    );

    let (status, _) = s.call_as(&alpha, Method::GET, "/teams/alpha/plugins", None).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path) in [
        (Method::GET, "/teams/beta/plugins"),
        (Method::GET, "/teams/beta/components"),
        (Method::POST, "/teams/beta/tokens"),
        (Method::GET, "/teams/beta/components/web/manifests"),
    ] {
        let (status, v) = s.call_as(&alpha, method.clone(), path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("belongs to team `alpha`"),
            "{v}"
        );
    }
    let (status, _) = s
        .call_as(&alpha, Method::POST, "/teams", Some(json!({"name": "gamma"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the admin creates teams");

    // The admin reaches every team.
    s.ok(Method::GET, "/teams/beta/plugins", None, StatusCode::OK).await;
    let all = s.ok(Method::GET, "/teams", None, StatusCode::OK).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_revoked_token_stops_working() {
    let s = Server::start().await;
    s.team("alpha").await;
    let t = s
        .ok(Method::POST, "/teams/alpha/tokens", None, StatusCode::CREATED)
        .await;
    let token = t["token"].as_str().unwrap().to_owned();
    let listed = s.ok(Method::GET, "/teams/alpha/tokens", None, StatusCode::OK).await;
    assert!(
        !listed.to_string().contains(&token),
        "tokens are shown once, never listed"
    );
    assert_eq!(
        s.call_as(&token, Method::GET, "/teams/alpha/plugins", None).await.0,
        StatusCode::OK
    );
    s.ok(
        Method::DELETE,
        &format!("/teams/alpha/tokens/{}", t["id"]),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        s.call_as(&token, Method::GET, "/teams/alpha/plugins", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_admin_token_survives_a_restart() {
    let s = Server::start().await;
    s.team("alpha").await;
    let (again, path) = kato_server::prepare(&common::config(s.dir.path())).await.unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap().trim(), s.admin);
    let teams = again.store.list_teams().await.unwrap();
    assert_eq!(teams.len(), 1, "data survives the restart");
}
