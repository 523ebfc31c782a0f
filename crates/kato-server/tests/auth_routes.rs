//! Every `/api/v1` route, sent with another team's token and with a revoked one: 403 and 401,
//! and nothing stored changes. The routes come from the OpenAPI document the server answers,
//! which must list exactly the routes the router declares: a new route without a row here
//! fails this test.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::{Value, json};

/// What each route is sent with: its method, its path as the OpenAPI document writes it, and a
/// body that would change something if the request were let through.
fn rows(image: &str, host: &str) -> Vec<(Method, &'static str, Option<Value>)> {
    let plugin = json!({"name": "intruder", "kind": "general", "source": {"image": image}});
    let component = json!({"name": "web", "image": "nginx:2"});
    let apply = json!({"documents": [{"kind": "Component", "metadata": {"name": "planted"},
                                       "spec": {"image": "nginx"}}]});
    vec![
        (Method::GET, "/teams", None),
        (Method::POST, "/teams", Some(json!({"name": "gamma"}))),
        (Method::GET, "/teams/{team}/tokens", None),
        (Method::POST, "/teams/{team}/tokens", Some(json!({"name": "mine"}))),
        (Method::DELETE, "/teams/{team}/tokens/{id}", None),
        (Method::GET, "/teams/{team}/plugins", None),
        (Method::POST, "/teams/{team}/plugins", Some(plugin)),
        (Method::GET, "/teams/{team}/plugins/{plugin}", None),
        (
            Method::PATCH,
            "/teams/{team}/plugins/{plugin}",
            Some(json!({"description": "mine now"})),
        ),
        (Method::DELETE, "/teams/{team}/plugins/{plugin}", None),
        (Method::POST, "/teams/{team}/plugins/defaults", None),
        (Method::GET, "/teams/{team}/plugins/defaults", None),
        (
            Method::PATCH,
            "/teams/{team}/plugins/defaults",
            Some(json!({"description": "mine now"})),
        ),
        (Method::DELETE, "/teams/{team}/plugins/defaults", None),
        (Method::GET, "/teams/{team}/plugins/{plugin}/versions", None),
        (Method::POST, "/teams/{team}/plugins/{plugin}/versions", None),
        (Method::GET, "/teams/{team}/plugins/{plugin}/versions/{number}", None),
        (Method::DELETE, "/teams/{team}/plugins/{plugin}/versions/{number}", None),
        (
            Method::GET,
            "/teams/{team}/plugins/{plugin}/versions/{number}/log",
            None,
        ),
        (
            Method::POST,
            "/teams/{team}/plugins/{plugin}/versions/{number}/cancel",
            None,
        ),
        (Method::GET, "/teams/{team}/components", None),
        (
            Method::POST,
            "/teams/{team}/components",
            Some(json!({"name": "api", "image": "nginx"})),
        ),
        (Method::GET, "/teams/{team}/components/{component}", None),
        (Method::PUT, "/teams/{team}/components/{component}", Some(component)),
        (Method::DELETE, "/teams/{team}/components/{component}", None),
        (Method::GET, "/teams/{team}/components/{component}/plugins", None),
        (
            Method::GET,
            "/teams/{team}/components/{component}/plugins/{plugin}",
            None,
        ),
        (
            Method::PUT,
            "/teams/{team}/components/{component}/plugins/{plugin}",
            Some(json!({"enabled": false})),
        ),
        (
            Method::DELETE,
            "/teams/{team}/components/{component}/plugins/{plugin}",
            None,
        ),
        (
            Method::POST,
            "/teams/{team}/components/{component}/plugins/{plugin}/rotate-token",
            None,
        ),
        (
            Method::GET,
            "/teams/{team}/components/{component}/plugins/{plugin}/perf",
            None,
        ),
        (Method::GET, "/teams/{team}/components/{component}/manifests", None),
        (Method::POST, "/teams/{team}/apply", Some(apply)),
        (Method::POST, "/teams/{team}/components/{component}/deploy", None),
        (Method::POST, "/teams/{team}/components/{component}/stop", None),
        (Method::GET, "/teams/{team}/components/{component}/status", None),
        (Method::GET, "/teams/{team}/components/{component}/logs", None),
        (Method::GET, "/teams/{team}/credentials", None),
        (
            Method::POST,
            "/teams/{team}/credentials",
            Some(json!({"host": host, "username": "mine", "password": "mine"})),
        ),
        (Method::DELETE, "/teams/{team}/credentials/{host}", None),
    ]
}

/// The `/api/v1` routes of the OpenAPI document the server answers (the discovery API, which
/// plug-ins call with their installation's token, is not under `/api/v1`).
async fn documented(s: &Server) -> BTreeSet<(String, String)> {
    let (status, text) = s.raw(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut routes = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/discovery/") || path.starts_with("/v1/") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The `/api/v1` routes the router declares (`.route("/teams…", get(…).post(…))` in the API's
/// modules), read from its source.
fn declared() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for call in text.split(".route(").skip(1) {
            let call = call.trim_start();
            let Some(rest) = call.strip_prefix('"') else { continue };
            let (path, rest) = rest.split_once('"').unwrap();
            // The call's arguments: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += i32::from(c == '(') - i32::from(c == ')');
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let args = &rest[..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !args.as_bytes()[i - 1].is_ascii_alphanumeric() && args.as_bytes()[i - 1] != b'_'
                });
                if called && path.starts_with("/teams") {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

/// Everything the routes could change, as the admin reads it.
async fn dump(s: &Server, teams: &[&str]) -> Value {
    let mut all = serde_json::Map::new();
    all.insert("teams".into(), s.ok(Method::GET, "/teams", None, StatusCode::OK).await);
    for team in teams {
        let get = |rest: &str| format!("/teams/{team}{rest}");
        let mut t = s.snapshot(team).await;
        t["tokens"] = s.ok(Method::GET, &get("/tokens"), None, StatusCode::OK).await;
        t["credentials"] = s.ok(Method::GET, &get("/credentials"), None, StatusCode::OK).await;
        let (_, status) = s.call(Method::GET, &get("/components/web/status"), None).await;
        t["desired"] = status["desired"].clone();
        let (name, web) = (team.parse().unwrap(), "web".parse().unwrap());
        let installs = s.state.store.list_installations(&name, &web).await.unwrap();
        let tokens: Vec<String> = installs.iter().map(|i| i.discovery.hash.clone()).collect();
        t["discovery_tokens"] = json!(tokens);
        all.insert((*team).into(), t);
    }
    Value::Object(all)
}

#[tokio::test]
async fn every_route_refuses_another_teams_token_and_a_revoked_one_and_changes_nothing() {
    let s = Server::start().await;
    let image = s.image("beta/p").await;
    let host = s.registry.host();
    for team in ["alpha", "beta"] {
        s.team(team).await;
        let p = json!({"name": "p", "kind": "general", "source": {"image": image},
                       "config_groups": [{"name": "base", "meta": "none", "injection": "discovery",
                                          "items": [{"name": "LEVEL", "default": "info"}]}]});
        s.plugin(team, p).await;
        let web = json!({"name": "web", "image": "nginx"});
        s.ok(
            Method::POST,
            &format!("/teams/{team}/components"),
            Some(web),
            StatusCode::CREATED,
        )
        .await;
        let install = format!("/teams/{team}/components/web/plugins/p");
        s.ok(Method::PUT, &install, None, StatusCode::CREATED).await;
        let cred = json!({"host": host, "username": "u", "password": "pw"});
        let (status, v) = s
            .call(Method::POST, &format!("/teams/{team}/credentials"), Some(cred))
            .await;
        assert!(status.is_success(), "{v}");
    }
    let token = |team: &str| {
        let s = &s;
        let team = team.to_owned();
        async move {
            s.ok(
                Method::POST,
                &format!("/teams/{team}/tokens"),
                None,
                StatusCode::CREATED,
            )
            .await
        }
    };
    let alpha = token("alpha").await["token"].as_str().unwrap().to_owned();
    let kept = token("beta").await;
    let revoked = token("beta").await;
    let revoked_id = &revoked["id"];
    s.ok(
        Method::DELETE,
        &format!("/teams/beta/tokens/{revoked_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let revoked = revoked["token"].as_str().unwrap().to_owned();

    let rows = rows(&image, host);
    let tabled: BTreeSet<(String, String)> = rows.iter().map(|(m, p, _)| (m.to_string(), (*p).to_owned())).collect();
    let documented = documented(&s).await;
    assert_eq!(
        tabled, documented,
        "every documented route has a row here, and only those"
    );
    assert_eq!(
        declared(),
        documented,
        "the OpenAPI document lists every route of the router"
    );

    let before = dump(&s, &["alpha", "beta"]).await;
    for (method, template, body) in &rows {
        let path = template
            .replace("{team}", "beta")
            .replace("{plugin}", "p")
            .replace("{number}", "1")
            .replace("{component}", "web")
            .replace("{id}", &kept["id"].to_string())
            .replace("{host}", host);
        let (status, v) = s.call_as(&revoked, method.clone(), &path, body.clone()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{method} {path} with a revoked token: {v}"
        );
        let (status, v) = s.call_as(&alpha, method.clone(), &path, body.clone()).await;
        if (method, *template) == (&Method::GET, "/teams") {
            // Not team-scoped: it lists the token's own team only.
            let names: Vec<&str> = v
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| t["name"].as_str())
                .collect();
            assert_eq!((status, names), (StatusCode::OK, vec!["alpha"]));
            continue;
        }
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path} with team alpha's token: {v}"
        );
    }
    assert_eq!(
        dump(&s, &["alpha", "beta"]).await,
        before,
        "a refused request changed the store"
    );
}
