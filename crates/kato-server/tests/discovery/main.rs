//! The discovery API: documents, tokens, long-poll, revisions, acks and Rainbond's
//! ResourceSpec, against a real store.

#[path = "../common/mod.rs"]
mod common;
mod documents;
mod long_poll;
mod replicas;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::Server;
use http_body_util::BodyExt;
use kato_store::InstallationKey;
use serde_json::{Value, json};
use tower::ServiceExt;

const DOC: &str = "/discovery/v1/demo/web/mesh";

/// Team `demo`: plug-in `mesh` with a discovery base group (one secret item), a port group and
/// a downstream group; components `db` (mysql:3306) and `web` (http:80, depends on db) with
/// `mesh` installed on `web`.
async fn setup() -> Server {
    let s = Server::start().await;
    seed(&s).await;
    s
}

async fn seed(s: &Server) {
    s.team("demo").await;
    let image = s.image("demo/mesh").await;
    s.plugin(
        "demo",
        json!({"name": "mesh", "kind": "general", "source": {"image": image}, "config_groups": [
            {"name": "base", "meta": "none", "injection": "discovery", "items": [
                {"name": "LEVEL", "default": "info"}, {"name": "KEY", "secret": true}]},
            {"name": "ports", "meta": "component-port", "injection": "discovery", "items": [{"name": "TIMEOUT", "default": "5s"}]},
            {"name": "down", "meta": "downstream-port", "injection": "discovery", "items": [{"name": "RETRIES", "default": "3"}]}]}),
    )
    .await;
    s.plugin(
        "demo",
        json!({"name": "other", "kind": "general", "source": {"image": image}}),
    )
    .await;
    component(
        s,
        json!({"name": "db", "image": "mysql", "ports": [{"port": 3306, "protocol": "mysql"}]}),
    )
    .await;
    component(
        s,
        json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}], "depends_on": ["db"]}),
    )
    .await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "debug", "KEY": "s3cret"}}})),
        StatusCode::CREATED,
    )
    .await;
}

async fn component(s: &Server, spec: Value) {
    let name = spec["name"].as_str().unwrap().to_owned();
    let (status, v) = s
        .call(Method::PUT, &format!("/teams/demo/components/{name}"), Some(spec))
        .await;
    assert!(status.is_success(), "{v}");
}

fn key(team: &str, c: &str, p: &str) -> InstallationKey {
    InstallationKey {
        team: team.parse().unwrap(),
        component: c.parse().unwrap(),
        plugin: p.parse().unwrap(),
    }
}

/// The installation's token, derived as the renderer injects it.
async fn token(s: &Server, c: &str, p: &str) -> String {
    let k = key("demo", c, p);
    let record = s
        .state
        .store
        .get_installation(&k.team, &k.component, &k.plugin)
        .await
        .unwrap()
        .expect("installed");
    s.state.discovery.token(&k.team, &k.component, &record)
}

struct Answer {
    status: StatusCode,
    revision: Option<u64>,
    body: Value,
}

async fn send(router: Router, method: Method, path: &str, token: Option<&str>, body: Option<&str>) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let revision = res
        .headers()
        .get("x-kato-revision")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, revision, body }
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> Answer {
    send(s.router.clone(), Method::GET, path, token, None).await
}

async fn revision(s: &Server, tok: &str) -> u64 {
    let a = get(s, DOC, Some(tok)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["revision"].as_u64().unwrap()
}

/// Waits (bounded) until `n` long-polls wait on the document, so that the change below wakes
/// them rather than being found when they arrive.
async fn wait_for_watchers(s: &Server, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.state.discovery.hub.waiters(&key("demo", "web", "mesh")) < n {
        assert!(tokio::time::Instant::now() < deadline, "the waiters did not subscribe");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A long-poll of the document from revision `r` for up to `wait` seconds, returned once it
/// waits on the server.
async fn waiting_long_poll(s: &Server, tok: &str, r: u64, wait: u64) -> tokio::task::JoinHandle<Answer> {
    let (router, tok) = (s.router.clone(), tok.to_owned());
    let path = format!("{DOC}?revision={r}&wait={wait}");
    let waiter = tokio::spawn(async move { send(router, Method::GET, &path, Some(&tok), None).await });
    wait_for_watchers(s, 1).await;
    waiter
}
