//! The discovery API: documents, tokens, long-poll, revisions, acks and Rainbond's
//! ResourceSpec, against a real store.

mod common;

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

#[tokio::test]
async fn the_document_goes_to_its_own_token_only() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let a = get(&s, DOC, Some(&tok)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let rev = a.body["revision"].as_u64().unwrap();
    assert_eq!(a.revision, Some(rev));
    assert_eq!(
        a.body,
        json!({
            "revision": rev, "plugin": "mesh", "version": 1,
            "base": {"LEVEL": "debug", "KEY": "s3cret"},
            "ports": [{"port": 80, "protocol": "http", "options": {"TIMEOUT": "5s"}}],
            "downstream": [{"component": "db", "port": 3306, "protocol": "mysql", "options": {"RETRIES": "3"}}],
        })
    );
    // The API never shows the secret in clear.
    let i = s
        .ok(
            Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(!i.to_string().contains("s3cret"), "{i}");

    assert_eq!(get(&s, DOC, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&s, DOC, Some("kd_nope")).await.status, StatusCode::UNAUTHORIZED);
    let admin = s.admin.clone();
    assert_eq!(get(&s, DOC, Some(&admin)).await.status, StatusCode::UNAUTHORIZED);

    // Another installation's token: 403 on an existing document...
    s.ok(
        Method::PUT,
        "/teams/demo/components/db/plugins/other",
        None,
        StatusCode::CREATED,
    )
    .await;
    let other = token(&s, "db", "other").await;
    let a = get(&s, DOC, Some(&other)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(!a.body.to_string().contains("s3cret"));
    // ...and the same 404 whichever part of the path is wrong.
    let mut messages = Vec::new();
    for path in [
        "/discovery/v1/nope/web/mesh",
        "/discovery/v1/demo/nope/mesh",
        "/discovery/v1/demo/web/nope",
        "/discovery/v1/demo/web/other",
        "/discovery/v1/NOT_A_NAME/web/mesh",
    ] {
        for t in [&tok, &other] {
            let a = get(&s, path, Some(t)).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
            messages.push(a.body["error"]["message"].clone());
        }
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[tokio::test]
async fn long_poll_answers_on_change_or_after_the_wait() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let rev = revision(&s, &tok).await;

    // A different revision answers at once; a bad query is a 400.
    let a = get(&s, &format!("{DOC}?revision={}&wait=60", rev - 1), Some(&tok)).await;
    assert_eq!((a.status, a.revision), (StatusCode::OK, Some(rev)));
    let a = get(&s, &format!("{DOC}?revision=x"), Some(&tok)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    // The current one waits, and answers 304 when the wait is over.
    let a = get(&s, &format!("{DOC}?revision={rev}&wait=1"), Some(&tok)).await;
    assert_eq!((a.status, a.revision), (StatusCode::NOT_MODIFIED, Some(rev)));

    // A change through the API wakes the waiters with the new document.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let router = s.router.clone();
            let (tok, path) = (tok.clone(), format!("{DOC}?revision={rev}&wait=60"));
            tokio::spawn(async move { send(router, Method::GET, &path, Some(&tok), None).await })
        })
        .collect();
    wait_for_watchers(&s, 3).await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "warn"}}})),
        StatusCode::OK,
    )
    .await;
    for w in waiters {
        let a = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("the waiter was woken")
            .unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body["revision"].as_u64(), Some(rev + 1));
        assert_eq!(a.body["base"]["LEVEL"], "warn");
        // The secret was not sent again, and is kept.
        assert_eq!(a.body["base"]["KEY"], "s3cret");
    }
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

#[tokio::test]
async fn component_changes_bump_the_revision_and_bring_defaults() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r0 = revision(&s, &tok).await;

    // A port added: a new entry with the item's default.
    component(
        &s,
        json!({"name": "web", "image": "nginx", "depends_on": ["db"],
               "ports": [{"port": 80, "protocol": "http"}, {"port": 9090, "protocol": "grpc"}]}),
    )
    .await;
    let a = get(&s, DOC, Some(&tok)).await;
    let r1 = a.body["revision"].as_u64().unwrap();
    assert!(r1 > r0);
    assert_eq!(
        a.body["ports"][1],
        json!({"port": 9090, "protocol": "grpc", "options": {"TIMEOUT": "5s"}})
    );

    // A change that does not touch the document keeps the revision.
    component(
        &s,
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db"],
               "ports": [{"port": 80, "protocol": "http"}, {"port": 9090, "protocol": "grpc"}]}),
    )
    .await;
    assert_eq!(revision(&s, &tok).await, r1);

    // A port removed, a dependency added and removed, a dependency's port changed.
    component(
        &s,
        json!({"name": "cache", "image": "redis", "ports": [{"port": 6379, "protocol": "tcp"}]}),
    )
    .await;
    let steps = [
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db"], "ports": [{"port": 80, "protocol": "http"}]}),
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db", "cache"], "ports": [{"port": 80, "protocol": "http"}]}),
    ];
    let mut last = r1;
    for spec in steps {
        component(&s, spec).await;
        let r = revision(&s, &tok).await;
        assert!(r > last, "{r} after {last}");
        last = r;
    }
    let a = get(&s, DOC, Some(&tok)).await;
    assert_eq!(
        a.body["downstream"][1],
        json!({"component": "cache", "port": 6379, "protocol": "tcp", "options": {"RETRIES": "3"}})
    );
    component(
        &s,
        json!({"name": "db", "image": "mysql", "ports": [{"port": 3307, "protocol": "mysql"}]}),
    )
    .await;
    let r = revision(&s, &tok).await;
    assert!(r > last);
    last = r;
    component(
        &s,
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db"], "ports": [{"port": 80, "protocol": "http"}]}),
    )
    .await;
    let a = get(&s, DOC, Some(&tok)).await;
    assert!(a.body["revision"].as_u64().unwrap() > last);
    assert_eq!(a.body["downstream"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["downstream"][0]["port"], 3307);
}

#[tokio::test]
async fn uninstall_revokes_reinstall_grows_rotate_replaces() {
    let s = setup().await;
    let old = token(&s, "web", "mesh").await;
    let r = revision(&s, &old).await;
    let path = "/teams/demo/components/web/plugins/mesh";

    let rotated = s
        .ok(Method::POST, &format!("{path}/rotate-token"), None, StatusCode::OK)
        .await;
    assert_eq!(rotated["rotated"], true);
    let new = token(&s, "web", "mesh").await;
    assert_ne!(new, old);
    assert_eq!(get(&s, DOC, Some(&old)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revision(&s, &new).await, r, "rotating does not change the document");
    let (status, _) = s
        .call(
            Method::POST,
            "/teams/demo/components/db/plugins/mesh/rotate-token",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    s.ok(Method::DELETE, path, None, StatusCode::NO_CONTENT).await;
    assert_eq!(get(&s, DOC, Some(&new)).await.status, StatusCode::UNAUTHORIZED);
    let i = s.ok(Method::PUT, path, None, StatusCode::CREATED).await;
    assert!(i["revision"].as_u64().unwrap() > r, "{i}");
    let again = token(&s, "web", "mesh").await;
    assert!(again != new && again != old);
    assert!(revision(&s, &again).await > r);
}

#[tokio::test]
async fn uninstall_wakes_waiters_with_404() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r = revision(&s, &tok).await;
    let router = s.router.clone();
    let path = format!("{DOC}?revision={r}&wait=60");
    let waiter = tokio::spawn(async move { send(router, Method::GET, &path, Some(&tok), None).await });
    wait_for_watchers(&s, 1).await;
    s.ok(
        Method::DELETE,
        "/teams/demo/components/web/plugins/mesh",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let a = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
}

#[tokio::test]
async fn acks_show_per_pod_and_malformed_ones_are_refused() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r1 = revision(&s, &tok).await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "nonsense"}}})),
        StatusCode::OK,
    )
    .await;
    let r2 = revision(&s, &tok).await;
    let ack = |body: Value| {
        let (router, tok) = (s.router.clone(), tok.clone());
        async move {
            send(
                router,
                Method::POST,
                &format!("{DOC}/ack"),
                Some(&tok),
                Some(&body.to_string()),
            )
            .await
        }
    };
    for body in [
        json!({"revision": r1, "pod": "web-1", "status": "applied"}),
        json!({"revision": r2, "pod": "web-1", "status": "rejected", "message": "LEVEL nonsense is unknown"}),
        json!({"revision": r2, "pod": "web-2", "status": "applied", "message": ""}),
    ] {
        let a = ack(body).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    }
    let i = s
        .ok(
            Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(i["pods"][0]["pod"], "web-1", "{i}");
    assert_eq!(i["pods"][0]["applied_revision"], r1);
    assert_eq!(i["pods"][0]["rejected"][0]["revision"], r2);
    assert_eq!(i["pods"][0]["rejected"][0]["message"], "LEVEL nonsense is unknown");
    assert_eq!(i["pods"][1]["applied_revision"], r2);
    let list = s
        .ok(Method::GET, "/teams/demo/components/web/plugins", None, StatusCode::OK)
        .await;
    assert_eq!(list[0]["pods"], i["pods"]);

    let before = i["pods"].clone();
    for bad in [
        "not json".to_owned(),
        json!({"revision": r2, "pod": "web-1"}).to_string(),
        json!({"revision": r2, "pod": "web-1", "status": "done"}).to_string(),
        json!({"revision": r2, "pod": "", "status": "applied"}).to_string(),
        json!({"revision": "two", "pod": "web-1", "status": "applied"}).to_string(),
        json!({"revision": r2 + 1, "pod": "web-1", "status": "applied"}).to_string(),
        json!({"revision": r2, "pod": "web-1", "status": "applied", "extra": 1}).to_string(),
    ] {
        let a = send(
            s.router.clone(),
            Method::POST,
            &format!("{DOC}/ack"),
            Some(&tok),
            Some(&bad),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
        assert!(!a.body["error"]["message"].as_str().unwrap().is_empty());
    }
    let a = send(s.router.clone(), Method::POST, &format!("{DOC}/ack"), None, Some("{}")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let i = s
        .ok(
            Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(i["pods"], before, "a refused ack changes nothing");
}

#[tokio::test]
async fn rainbond_resource_spec_with_the_token_parameter() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let a = get(&s, &format!("/v1/resources/demo/web/mesh?token={tok}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["base_normal"]["options"],
        json!({"LEVEL": "debug", "KEY": "s3cret"})
    );
    assert_eq!(a.body["base_ports"][0]["port"], 80);
    assert_eq!(a.body["base_ports"][0]["service_alias"], "web");
    assert_eq!(a.body["base_ports"][0]["options"], json!({"TIMEOUT": "5s"}));
    assert_eq!(a.body["base_services"][0]["depend_service_alias"], "db");
    assert_eq!(a.body["base_services"][0]["port"], 3306);
    assert_eq!(a.body["base_services"][0]["options"], json!({"RETRIES": "3"}));
    assert_eq!(
        get(&s, "/v1/resources/demo/web/mesh", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&s, "/v1/resources/demo/web/mesh?token=kd_x", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The rendered DISCOVER_URL reaches this path with the token parameter.
    let (status, yaml) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests?target=podman",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        yaml.contains("http://kato.test:7070/v1/resources/demo/web/mesh?token=$(KATO_DISCOVERY_TOKEN)"),
        "{yaml}"
    );
}

/// A fresh PostgreSQL schema for a test, from `KATO_TEST_DATABASE_URL`; `None` when
/// `KATO_TEST_SKIP_POSTGRES=1`.
async fn postgres_schema() -> Option<(String, String)> {
    use sqlx::{Connection, Executor};
    let Ok(admin) = std::env::var("KATO_TEST_DATABASE_URL") else {
        if std::env::var("KATO_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
            return None;
        }
        panic!("set KATO_TEST_DATABASE_URL (eval \"$(scripts/pg-test-setup.sh)\"), or KATO_TEST_SKIP_POSTGRES=1");
    };
    let schema = format!(
        "kato_discovery_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some((format!("{admin}{sep}options[search_path]={schema}"), schema))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_wakes_waiters_on_another() {
    let Some((url, schema)) = postgres_schema().await else {
        return;
    };
    let a = common::Server::start_with(tempfile::tempdir().unwrap(), Some(url.clone())).await;
    // Replicas share the discovery key, as they would share a mounted Secret.
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(a.dir.path().join("discovery.key"), b_dir.path().join("discovery.key")).unwrap();
    let b = common::Server::start_with(b_dir, Some(url)).await;
    seed(&a).await;

    let tok = token(&a, "web", "mesh").await;
    assert_eq!(
        tok,
        token(&b, "web", "mesh").await,
        "both replicas render the same token"
    );
    let r = revision(&b, &tok).await;
    let router = b.router.clone();
    let (path, t) = (format!("{DOC}?revision={r}&wait=60"), tok.clone());
    let waiter = tokio::spawn(async move { send(router, Method::GET, &path, Some(&t), None).await });
    wait_for_watchers(&b, 1).await;
    a.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "warn"}}})),
        StatusCode::OK,
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("replica b's waiter was woken")
        .unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        (got.body["revision"].as_u64(), &got.body["base"]["LEVEL"]),
        (Some(r + 1), &json!("warn"))
    );

    // A rotation on a revokes the token b had cached.
    a.ok(
        Method::POST,
        "/teams/demo/components/web/plugins/mesh/rotate-token",
        None,
        StatusCode::OK,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(&b, DOC, Some(&tok)).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b still accepts the rotated token"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let new = token(&a, "web", "mesh").await;
    assert_eq!(revision(&b, &new).await, r + 1);

    a.state.store.close().await;
    b.state.store.close().await;
    use sqlx::{Connection, Executor};
    let admin = std::env::var("KATO_TEST_DATABASE_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stopping_server_answers_its_long_polls_at_once() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r = revision(&s, &tok).await;
    let router = s.router.clone();
    let path = format!("{DOC}?revision={r}&wait=300");
    let waiter = tokio::spawn(async move { send(router, Method::GET, &path, Some(&tok), None).await });
    wait_for_watchers(&s, 1).await;
    s.state.discovery.hub.close();
    let a = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the long-poll ended with the server")
        .unwrap();
    assert_eq!((a.status, a.revision), (StatusCode::NOT_MODIFIED, Some(r)));
}
