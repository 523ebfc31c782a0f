//! The performance analyser's figures on a component's plug-ins tab and on a page of their
//! own: on a render-only server nothing runs, so the pages say in plain words what to do; a
//! plug-in that is not installed is a 404, one of another kind a 409. (The rendering of a
//! summary's tables is tested in `src/pages/components/perf.rs`.)

mod common;

use axum::http::{Method, StatusCode};
use common::Console;
use kato_testkit::TestRegistry;
use serde_json::{Value, json};

const TAB: &str = "/teams/alpha/components/web/plugins";
const PERF: &str = "/teams/alpha/components/web/plugins/perf/perf";

struct Fixture {
    c: Console,
    token: String,
    _registry: TestRegistry,
}

async fn api_ok(c: &Console, token: &str, method: Method, path: &str, body: Option<Value>, want: StatusCode) -> Value {
    let (status, v) = c.api(token, method.clone(), path, body).await;
    assert_eq!(status, want, "{method} {path}: {v}");
    v
}

/// Team `alpha`: plug-in `perf` (perf-analysis, an `OPEN` item per http or mysql port) and
/// `logtail` (general), each with a succeeded version; component `web` (80 http) with both
/// installed, and `db` (3306 mysql) with none.
async fn fixture() -> Fixture {
    let c = Console::start().await;
    let token = c.team("alpha").await;
    let registry = TestRegistry::start().await;
    let image = registry.push_image("alpha/perf", "1").await.image.to_string();
    let perf = json!({"name": "perf", "kind": "perf-analysis", "source": {"image": image}, "memory_mib": 32,
        "config_groups": [{"name": "ports", "meta": "component-port", "injection": "discovery", "items": [
            {"name": "OPEN", "type": "single", "options": ["YES", "NO"], "default": "YES", "protocols": ["http", "mysql"]}]}]});
    let logtail = json!({"name": "logtail", "kind": "general", "source": {"image": image}});
    for spec in [perf, logtail] {
        let name = spec["name"].as_str().unwrap().to_owned();
        api_ok(
            &c,
            &token,
            Method::POST,
            "/teams/alpha/plugins",
            Some(spec),
            StatusCode::CREATED,
        )
        .await;
        let v = api_ok(
            &c,
            &token,
            Method::POST,
            &format!("/teams/alpha/plugins/{name}/versions"),
            None,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    for (name, port) in [
        ("web", json!({"port": 80, "protocol": "http"})),
        ("db", json!({"port": 3306, "protocol": "mysql"})),
    ] {
        let body = json!({"name": name, "image": "nginx:1.27", "ports": [port]});
        api_ok(
            &c,
            &token,
            Method::POST,
            "/teams/alpha/components",
            Some(body),
            StatusCode::CREATED,
        )
        .await;
    }
    for p in ["perf", "logtail"] {
        let path = format!("/teams/alpha/components/web/plugins/{p}");
        api_ok(&c, &token, Method::PUT, &path, Some(json!({})), StatusCode::CREATED).await;
    }
    Fixture {
        c,
        token,
        _registry: registry,
    }
}

/// The body of the installation's `<section id="plugin-…">` on the tab.
fn install_section<'a>(body: &'a str, plugin: &str) -> &'a str {
    let at = body
        .find(&format!("<section class=\"card\" id=\"plugin-{plugin}\""))
        .unwrap_or_else(|| panic!("no section of {plugin} in {body}"));
    let rest = &body[at + 1..];
    &body[at..at + 1 + rest.find("<section class=\"card\"").unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_tab_says_to_deploy_a_component_that_does_not_run() {
    let f = fixture().await;
    let tab = f.c.get(&f.token, TAB).await;
    assert_eq!(tab.status, StatusCode::OK, "{}", tab.body);
    let perf = install_section(&tab.body, "perf");
    assert!(perf.contains(r#"<h4 id="perf-perf-title">Performance</h4>"#), "{perf}");
    assert!(
        perf.contains("The component is not running. Deploy the component to see its figures."),
        "{perf}"
    );
    assert!(
        perf.contains(&format!(r#"<a href="{PERF}">"#)),
        "the tab links to the page: {perf}"
    );
    assert!(!perf.contains("<table"), "{perf}");
    // A plug-in of another kind has no such section.
    let logtail = install_section(&tab.body, "logtail");
    assert!(!logtail.contains("Performance"), "{logtail}");

    // The page of its own: the component's tabs, the same words, refreshed by the script.
    let page = f.c.get(&f.token, PERF).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.contains(r#"aria-current="page">Plug-ins</a>"#), "{}", page.body);
    assert!(
        page.contains(r#"<h2 id="perf-title">Performance · perf</h2>"#),
        "{}",
        page.body
    );
    assert!(page.contains(r#"data-refresh="5""#), "{}", page.body);
    assert!(
        page.contains("The component is not running. Deploy the component to see its figures."),
        "{}",
        page.body
    );
    assert!(
        page.contains(r#"href="/teams/alpha/components/web/plugins#plugin-perf""#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_disabled_plugin_says_to_enable_it() {
    let f = fixture().await;
    let path = "/teams/alpha/components/web/plugins/perf";
    api_ok(
        &f.c,
        &f.token,
        Method::PUT,
        path,
        Some(json!({"enabled": false})),
        StatusCode::OK,
    )
    .await;
    let words = "The plug-in is disabled on this component. Enable it and deploy the component to see its figures.";
    let tab = f.c.get(&f.token, TAB).await;
    assert!(install_section(&tab.body, "perf").contains(words), "{}", tab.body);
    let page = f.c.get(&f.token, PERF).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains(words), "{}", page.body);
}

#[tokio::test]
async fn a_plugin_not_installed_is_not_found_and_one_of_another_kind_is_refused() {
    let f = fixture().await;
    for path in [
        "/teams/alpha/components/db/plugins/perf/perf",
        "/teams/alpha/components/web/plugins/nope/perf",
        "/teams/alpha/components/nope/plugins/perf/perf",
    ] {
        let page = f.c.get(&f.token, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert!(page.contains("Not found"), "{path}: {}", page.body);
    }
    let page =
        f.c.get(&f.token, "/teams/alpha/components/web/plugins/logtail/perf")
            .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert!(
        page.contains("This is not a performance-analysis plug-in"),
        "{}",
        page.body
    );
    // Another team's token sees nothing of alpha's figures.
    let other = f.c.team("beta").await;
    let page = f.c.get(&other, PERF).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
}
