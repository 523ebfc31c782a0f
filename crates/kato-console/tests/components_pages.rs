//! The component pages: the list and the create form, a component's overview, its plug-ins
//! (install, one widget per item type, port and downstream sections, save, upgrade, the acks
//! that update live), status and logs on a render-only server, and the manifests; with
//! refusals that change nothing.

mod common;
#[path = "support/events.rs"]
mod events;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Console, Page};
use events::Events;
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tower::ServiceExt;

const TEAM: &str = "alpha";
const SECRET_DEFAULT: &str = "default-secret-4711";
const SECRET_VALUE: &str = "typed-secret-0815";

/// A console with team `alpha`: plug-in `logtail` (versions 1 and 2, succeeded; version 2
/// needs more memory) with an env group of every item type, a port group and a downstream
/// group; plug-in `broken` whose only version failed, `flaky` whose version 2 failed after 1; components `log-sink` (8080 http) and
/// `web` (80 http, 9000 tcp, depends on log-sink). Answers the team's token.
struct Fixture {
    c: Console,
    token: String,
    _registry: TestRegistry,
}

async fn fixture() -> Fixture {
    fixture_on(Console::start().await).await
}

async fn fixture_on(c: Console) -> Fixture {
    let token = c.team(TEAM).await;
    let registry = TestRegistry::start().await;
    let image = registry.push_image("alpha/logtail", "1").await.image.to_string();
    let spec = json!({"name": "logtail", "kind": "general", "source": {"image": image}, "memory_mib": 64,
        "config_groups": [
            {"name": "output", "meta": "none", "injection": "env", "items": [
                {"name": "LEVEL", "type": "single", "options": ["info", "debug"], "default": "info"},
                {"name": "TAGS", "type": "multi", "options": ["app", "audit", "trace"], "default": ["app"]},
                {"name": "FORMAT", "default": "json", "changeable": false},
                {"name": "API_KEY", "secret": true, "default": SECRET_DEFAULT},
                {"name": "NOTE", "description": "Free text."}]},
            {"name": "listen", "meta": "component-port", "injection": "discovery", "items": [
                {"name": "TIMEOUT", "default": "5s", "protocols": ["http"]}]},
            {"name": "sinks", "meta": "downstream-port", "injection": "discovery", "items": [
                {"name": "RETRIES", "default": "3"}]}]});
    api_ok(
        &c,
        &token,
        Method::POST,
        "/teams/alpha/plugins",
        Some(spec),
        StatusCode::CREATED,
    )
    .await;
    let v1 = api_ok(
        &c,
        &token,
        Method::POST,
        "/teams/alpha/plugins/logtail/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(v1["status"], "succeeded", "{v1}");
    api_ok(
        &c,
        &token,
        Method::PATCH,
        "/teams/alpha/plugins/logtail",
        Some(json!({"memory_mib": 96})),
        StatusCode::OK,
    )
    .await;
    let v2 = api_ok(
        &c,
        &token,
        Method::POST,
        "/teams/alpha/plugins/logtail/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(v2["status"], "succeeded", "{v2}");
    let broken = json!({"name": "broken", "kind": "general",
        "source": {"dockerfile": {"repo": "https://git.example.com/broken.git", "ref": "main", "path": "Dockerfile"}}});
    api_ok(
        &c,
        &token,
        Method::POST,
        "/teams/alpha/plugins",
        Some(broken),
        StatusCode::CREATED,
    )
    .await;
    let failed = api_ok(
        &c,
        &token,
        Method::POST,
        "/teams/alpha/plugins/broken/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // `flaky`: version 1 succeeded, version 2 (from a Dockerfile, without a registry) failed.
    let flaky = json!({"name": "flaky", "kind": "perf-analysis", "source": {"image": image}});
    api_ok(
        &c,
        &token,
        Method::POST,
        "/teams/alpha/plugins",
        Some(flaky),
        StatusCode::CREATED,
    )
    .await;
    for (n, patch) in [
        (1, None),
        (
            2,
            Some(json!({"source": {"image": null, "dockerfile": {"repo": "https://git.example.com/flaky.git"}}})),
        ),
    ] {
        if let Some(p) = patch {
            api_ok(
                &c,
                &token,
                Method::PATCH,
                "/teams/alpha/plugins/flaky",
                Some(p),
                StatusCode::OK,
            )
            .await;
        }
        let v = api_ok(
            &c,
            &token,
            Method::POST,
            "/teams/alpha/plugins/flaky/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(
            (v["number"].as_u64(), v["status"].as_str()),
            (Some(n), Some(if n == 1 { "succeeded" } else { "failed" }))
        );
    }
    for (name, ports, deps) in [
        ("log-sink", json!([{"port": 8080, "protocol": "http"}]), json!([])),
        (
            "web",
            json!([{"port": 80, "protocol": "http"}, {"port": 9000, "protocol": "tcp"}]),
            json!(["log-sink"]),
        ),
    ] {
        let body = json!({"name": name, "image": "nginx:1.27", "ports": ports, "depends_on": deps});
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
    Fixture {
        c,
        token,
        _registry: registry,
    }
}

async fn api_ok(c: &Console, token: &str, method: Method, path: &str, body: Option<Value>, want: StatusCode) -> Value {
    let (status, v) = c.api(token, method.clone(), path, body).await;
    assert_eq!(status, want, "{method} {path}: {v}");
    v
}

/// `logtail` version `n` installed on `web` through the page's form.
async fn install(f: &Fixture, n: u32) {
    let installed =
        f.c.post(
            &f.token,
            "/teams/alpha/components/web/plugins",
            &[("plugin_version", &format!("logtail:{n}"))],
        )
        .await;
    assert_eq!(installed.status, StatusCode::SEE_OTHER, "{}", installed.body);
    assert_eq!(
        installed.location(),
        "/teams/alpha/components/web/plugins?installed=logtail#plugin-logtail"
    );
}

/// The text of the element with this id (up to its first closing tag).
fn element<'a>(page: &'a Page, id: &str) -> &'a str {
    let at = page
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in {}", page.body));
    let rest = &page.body[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find("</").unwrap();
    &rest[start..end]
}

/// The opening tag of the first element with this attribute (`name="values.base.LEVEL"`).
fn tag<'a>(page: &'a Page, attr: &str) -> &'a str {
    let at = page
        .body
        .find(attr)
        .unwrap_or_else(|| panic!("no {attr} in {}", page.body));
    let start = page.body[..at].rfind('<').unwrap();
    let end = at + page.body[at..].find('>').unwrap();
    &page.body[start..=end]
}

/// The save form's fields of `logtail` on `web`, as a browser posts them unchanged.
fn unchanged() -> Vec<(String, String)> {
    [
        ("enabled", "true"),
        ("memory_mib", "64"),
        ("version", "1"),
        ("values.base.LEVEL", "info"),
        ("values.base.TAGS", ""),
        ("values.base.TAGS", "app"),
        ("values.base.API_KEY", ""),
        ("values.base.NOTE", ""),
        ("values.ports.80.TIMEOUT", "5s"),
        ("values.downstream.log-sink:8080.RETRIES", "3"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// `fields` with `name` set to `value` alone.
fn with(mut fields: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    fields.retain(|(k, _)| k != name);
    fields.push((name.to_owned(), value.to_owned()));
    fields
}

async fn post(f: &Fixture, token: &str, path: &str, fields: &[(String, String)]) -> Page {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    f.c.post(token, path, &pairs).await
}

const SAVE: &str = "/teams/alpha/components/web/plugins/logtail";

async fn installation(f: &Fixture) -> Value {
    api_ok(
        &f.c,
        &f.token,
        Method::GET,
        "/teams/alpha/components/web/plugins/logtail",
        None,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn creating_a_component_goes_to_its_page_and_a_refused_one_keeps_the_input() {
    let f = fixture().await;
    let before = f.c.get(&f.token, "/teams/alpha/components").await;
    assert!(before.contains(">New component</a>"));
    assert!(!before.contains("/teams/alpha/components/api\""));
    let form = f.c.get(&f.token, "/teams/alpha/components/new").await;
    assert_eq!(form.status, StatusCode::OK);
    for label in [
        ">Name</label>",
        ">Image</label>",
        ">Command</label>",
        ">Ports</label>",
        ">Environment</label>",
        ">Volumes</label>",
        ">Memory (MiB)</label>",
        ">Replicas</label>",
        ">Depends on</label>",
        ">Create component</button>",
    ] {
        assert!(form.contains(label), "{label}");
    }
    assert!(tag(&form, "name=\"depends_on\"").contains("multiple"));
    assert!(form.contains("<option value=\"log-sink\">log-sink</option>"));

    let made =
        f.c.post(
            &f.token,
            "/teams/alpha/components/new",
            &[
                ("name", "api"),
                ("image", "nginx:1.27"),
                ("command", "nginx\n-g\ndaemon off;"),
                ("ports", "8000 http\n3306 mysql"),
                ("env", "MODE=prod\nURL=http://x/?a=b"),
                ("volumes", "data:/var/lib/api"),
                ("memory_mib", "256"),
                ("replicas", "2"),
                ("depends_on", "log-sink"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(made.location(), "/teams/alpha/components/api");
    let api = api_ok(
        &f.c,
        &f.token,
        Method::GET,
        "/teams/alpha/components/api",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        api,
        json!({"name": "api", "image": "nginx:1.27", "command": ["nginx", "-g", "daemon off;"],
            "env": [{"name": "MODE", "value": "prod"}, {"name": "URL", "value": "http://x/?a=b"}],
            "ports": [{"port": 8000, "protocol": "http"}, {"port": 3306, "protocol": "mysql"}],
            "volumes": [{"name": "data", "path": "/var/lib/api"}], "memory_mib": 256, "replicas": 2,
            "depends_on": ["log-sink"]})
    );

    // The API refuses the second port's protocol: its message is next to the ports, with the
    // line it came from (the blank line counts), and everything typed is kept.
    let refused =
        f.c.post(
            &f.token,
            "/teams/alpha/components/new",
            &[
                ("name", "shop"),
                ("image", "nginx:1.27"),
                ("ports", "80 http\n\n9000 ftp"),
                ("env", "A=1"),
                ("depends_on", "log-sink"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = element(&refused, "c-ports-error");
    assert!(error.starts_with("line 3: ") && error.contains("ftp"), "{error}");
    assert!(tag(&refused, "id=\"c-ports\"").contains("aria-invalid=\"true\""));
    assert!(tag(&refused, "id=\"c-ports\"").contains("c-ports-error"));
    assert!(refused.contains("9000 ftp</textarea>") && refused.contains(">A=1</textarea>"));
    assert!(tag(&refused, "id=\"c-name\"").contains("value=\"shop\""));
    assert!(refused.contains("<option value=\"log-sink\" selected>"));
    let (status, _) =
        f.c.api(&f.token, Method::GET, "/teams/alpha/components/shop", None)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");

    // An unreadable line is refused before the API, next to its field.
    let bad =
        f.c.post(
            &f.token,
            "/teams/alpha/components/new",
            &[("name", "shop"), ("image", "nginx"), ("env", "JUSTANAME")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(element(&bad, "c-env-error").contains("line 1: write NAME=value"));

    let list = f.c.get(&f.token, "/teams/alpha/components").await;
    assert!(list.contains("<h1>Components</h1>"));
    assert!(list.contains("<a href=\"/teams/alpha/components/api\">api</a>"));
    assert!(list.contains("8000 http, 3306 mysql"));
    assert!(list.contains("class=\"table-wrap\""));
}

#[tokio::test]
async fn the_overview_edits_the_component_and_says_what_saving_does() {
    let f = fixture().await;
    let page = f.c.get(&f.token, "/teams/alpha/components/web").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("<h1>web</h1>"));
    assert!(page.contains("href=\"/teams/alpha/components/web\" aria-current=\"page\">Overview</a>"));
    for tab in ["Plug-ins", "Status and logs", "Manifests"] {
        assert!(page.contains(&format!(">{tab}</a>")), "{tab}");
    }
    assert!(
        page.contains(">Save component</button>")
            && page.contains(">Deploy</button>")
            && page.contains(">Stop</button>")
    );
    assert!(page.contains("80 http\n9000 tcp</textarea>"));
    assert!(page.contains("<option value=\"log-sink\" selected>"));
    assert!(tag(&page, "id=\"c-ports\"").contains("data-effect=\"restart\""));
    assert!(element(&page, "c-ports").contains("80 http"));
    assert!(tag(&page, "data-effect-notice").contains("data-idle="));
    assert!(
        page.contains("restarts its pod"),
        "the notice says what saving does before any script runs"
    );

    let saved =
        f.c.post(
            &f.token,
            "/teams/alpha/components/web",
            &[
                ("name", "ignored"),
                ("image", "nginx:1.28"),
                ("ports", "80 http\n8443 https"),
                ("memory_mib", "512"),
                ("replicas", "1"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/teams/alpha/components/web?saved=1");
    let api = api_ok(
        &f.c,
        &f.token,
        Method::GET,
        "/teams/alpha/components/web",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(api["image"], "nginx:1.28");
    assert_eq!(
        api["ports"],
        json!([{"port": 80, "protocol": "http"}, {"port": 8443, "protocol": "https"}])
    );
    assert_eq!(api["depends_on"], json!([]));

    let refused =
        f.c.post(
            &f.token,
            "/teams/alpha/components/web",
            &[("image", "nginx:1.28"), ("memory_mib", "1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        element(&refused, "c-memory-error").contains("1 MiB"),
        "{}",
        refused.body
    );
    assert!(tag(&refused, "id=\"c-memory\"").contains("value=\"1\""));

    // Deploy on a render-only server: the API's refusal, on the page, and nothing runs.
    let deploy = f.c.post(&f.token, "/teams/alpha/components/web/deploy", &[]).await;
    assert_eq!(deploy.status, StatusCode::CONFLICT);
    assert!(deploy.contains("class=\"notice bad\""), "{}", deploy.body);
}

#[tokio::test]
async fn install_offers_succeeded_versions_only_with_one_widget_per_item_type() {
    let f = fixture().await;
    let tab = f.c.get(&f.token, "/teams/alpha/components/web/plugins").await;
    assert_eq!(tab.status, StatusCode::OK);
    assert!(tab.contains("<label for=\"install-version\">Plug-in version</label>"));
    assert!(
        tab.contains(">logtail — version 2 (general)</option>"),
        "the newest succeeded version"
    );
    assert!(!tab.contains(">logtail — version 1"));
    assert!(
        tab.contains(">flaky — version 1 (perf-analysis)</option>"),
        "its newest succeeded version"
    );
    assert!(!tab.contains("broken"), "a plug-in whose version failed is not offered");
    assert!(tab.contains(">Install</button>"));

    // The API's refusal is next to the select, which keeps the choice.
    let refused =
        f.c.post(
            &f.token,
            "/teams/alpha/components/log-sink/plugins",
            &[("plugin_version", "logtail:2")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        element(&refused, "install-version-error").contains("has no depends_on"),
        "{}",
        refused.body
    );
    assert!(refused.contains("<option value=\"logtail:2\" selected>"));
    assert!(tag(&refused, "id=\"install-version\"").contains("aria-invalid=\"true\""));
    let (code, _) =
        f.c.api(
            &f.token,
            Method::GET,
            "/teams/alpha/components/log-sink/plugins/logtail",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "nothing was installed");

    install(&f, 1).await;
    let i = installation(&f).await;
    assert_eq!((i["version"].as_u64(), i["enabled"].as_bool()), (Some(1), Some(true)));

    let tab = f.c.get(&f.token, "/teams/alpha/components/web/plugins").await;
    assert!(
        !tab.contains(">logtail — version"),
        "an installed plug-in is not offered again"
    );
    assert!(tab.contains("<h3 id=\"plugin-logtail-title\">logtail</h3>"));
    assert!(tab.contains("general · version 1"));
    assert!(tab.contains(i["image"].as_str().unwrap()), "the pinned image");
    // single: a select of its options; multi: a multiple select; not changeable: read-only.
    let level = tag(&tab, "name=\"values.base.LEVEL\"");
    assert!(
        level.starts_with("<select") && level.contains("data-effect=\"restart\""),
        "{level}"
    );
    assert!(tab.contains("<option value=\"info\" selected>info</option><option value=\"debug\">debug</option>"));
    let tags = tag(&tab, "id=\"i-logtail-s0-TAGS\"");
    assert!(tags.starts_with("<select") && tags.contains("multiple"), "{tags}");
    assert!(tab.contains("<option value=\"app\" selected>app</option><option value=\"audit\">audit</option>"));
    let format = tag(&tab, "id=\"i-logtail-s0-FORMAT\"");
    assert!(
        format.contains("readonly") && format.contains("value=\"json\""),
        "{format}"
    );
    assert!(
        !tab.contains("name=\"values.base.FORMAT\""),
        "a value not changeable is never posted"
    );
    let key = tag(&tab, "name=\"values.base.API_KEY\"");
    assert!(key.contains("type=\"password\"") && key.contains("value=\"\""), "{key}");
    assert!(!tab.contains(SECRET_DEFAULT), "no secret in the page");
    let note = tag(&tab, "name=\"values.base.NOTE\"");
    assert!(note.starts_with("<input") && note.contains("aria-describedby=\"i-logtail-s0-NOTE-hint"));
    // One section per matching port (not tcp 9000), one per dependency port; discovery: live.
    assert!(tab.contains("<legend>Port 80 (http)</legend>"));
    assert!(!tab.contains("Port 9000"));
    assert!(tab.contains("<legend>log-sink:8080 (http)</legend>"));
    assert!(tag(&tab, "name=\"values.ports.80.TIMEOUT\"").contains("data-effect=\"live\""));
    assert!(tag(&tab, "name=\"values.downstream.log-sink:8080.RETRIES\"").contains("data-effect=\"live\""));
    assert!(tag(&tab, "name=\"enabled\"").contains("data-effect=\"restart\""));
    let memory = tag(&tab, "name=\"memory_mib\"");
    assert!(
        memory.contains("min=\"64\"") && memory.contains("data-effect=\"restart\""),
        "{memory}"
    );
    assert!(element(&tab, "i-logtail-memory-hint").contains("At least 64 MiB"));
    assert!(tag(&tab, "name=\"version\"").contains("data-effect=\"restart\""));
    assert!(
        tab.contains("<option value=\"2\">version 2</option>"),
        "the newer version to upgrade to"
    );
    assert!(tab.contains("data-effect-notice"));
    assert!(tab.contains("data-live=\"/teams/alpha/components/web/plugins/logtail/acks/events\""));
    assert!(tab.contains("Discovery revision <strong>1</strong>"));
    assert!(tab.contains(">Save</button>") && tab.contains(">Uninstall</button>"));
}

#[tokio::test]
async fn saving_sets_values_switches_and_keeps_secrets_out_of_the_page() {
    let f = fixture().await;
    install(&f, 1).await;
    let fields = with(unchanged(), "values.base.LEVEL", "debug");
    let mut fields = with(fields, "values.base.TAGS", "");
    fields.push(("values.base.TAGS".into(), "audit".into()));
    fields.push(("values.base.TAGS".into(), "trace".into()));
    let fields = with(fields, "values.base.API_KEY", SECRET_VALUE);
    let fields = with(fields, "values.ports.80.TIMEOUT", "9s");
    let fields = with(fields, "values.downstream.log-sink:8080.RETRIES", "5");
    let mut fields = with(fields, "memory_mib", "128");
    fields.retain(|(k, _)| k != "enabled");
    let saved = post(&f, &f.token, SAVE, &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let i = installation(&f).await;
    assert_eq!(i["enabled"], false, "unchecked: disabled");
    assert_eq!(i["memory_mib"], 128);
    assert_eq!(
        i["values"],
        json!({"base": {"LEVEL": "debug", "TAGS": ["audit", "trace"]}, "ports": {"80": {"TIMEOUT": "9s"}},
            "downstream": {"log-sink:8080": {"RETRIES": "5"}}}),
        "defaults left alone are not pinned"
    );
    assert_eq!(i["secret_values_set"], json!(["base.API_KEY"]));

    let tab = f.c.get(&f.token, "/teams/alpha/components/web/plugins").await;
    assert!(
        !tab.contains(SECRET_VALUE) && !tab.contains(SECRET_DEFAULT),
        "no secret in the page"
    );
    assert!(tag(&tab, "name=\"values.base.API_KEY\"").contains("placeholder=\"unchanged\""));
    assert!(!tag(&tab, "name=\"enabled\"").contains("checked"));
    assert!(
        tab.contains("<option value=\"audit\" selected>audit</option><option value=\"trace\" selected>trace</option>")
    );

    // Saved again with the secret left empty and the switch on: the secret is kept.
    let again = with(unchanged(), "memory_mib", "128");
    let saved = post(&f, &f.token, SAVE, &again).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let i = installation(&f).await;
    assert_eq!(i["enabled"], true);
    let stored =
        f.c.state
            .store
            .get_installation(
                &TEAM.parse().unwrap(),
                &"web".parse().unwrap(),
                &"logtail".parse().unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        stored.installation.values.base["API_KEY"].to_string(),
        SECRET_VALUE,
        "an empty secret input keeps the value"
    );
}

#[tokio::test]
async fn memory_below_the_minimum_is_refused_next_to_the_field_and_upgrading_works() {
    let f = fixture().await;
    install(&f, 1).await;
    let low = with(unchanged(), "memory_mib", "32");
    let refused = post(&f, &f.token, SAVE, &low).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = element(&refused, "i-logtail-memory-error");
    assert!(error.contains("32 MiB is below the 64 MiB"), "{error}");
    let memory = tag(&refused, "id=\"i-logtail-memory\"");
    assert!(
        memory.contains("value=\"32\"") && memory.contains("aria-invalid=\"true\""),
        "{memory}"
    );
    assert_eq!(installation(&f).await["memory_mib"], 64, "nothing changed");

    // A value the API refuses lands next to its input.
    let bad = with(unchanged(), "values.base.LEVEL", "loud");
    let refused = post(&f, &f.token, SAVE, &bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(element(&refused, "i-logtail-s0-LEVEL-error").contains("`loud` is not one of info, debug"));

    // Upgrade: memory left as it was rises to the new version's minimum.
    let up = with(unchanged(), "version", "2");
    let saved = post(&f, &f.token, SAVE, &up).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let i = installation(&f).await;
    assert_eq!((i["version"].as_u64(), i["memory_mib"].as_u64()), (Some(2), Some(96)));
    let tab = f.c.get(&f.token, "/teams/alpha/components/web/plugins").await;
    assert!(tab.contains("general · version 2"));
    assert!(tag(&tab, "name=\"memory_mib\"").contains("min=\"96\""));
}

async fn ack(f: &Fixture, body: Value) {
    let (team, component, plugin) = (
        TEAM.parse().unwrap(),
        "web".parse().unwrap(),
        "logtail".parse().unwrap(),
    );
    let record =
        f.c.state
            .store
            .get_installation(&team, &component, &plugin)
            .await
            .unwrap()
            .unwrap();
    let token = f.c.state.discovery.token(&team, &component, &record);
    let req = Request::post("/discovery/v1/alpha/web/logtail/ack")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = f.c.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_acks_stream_sends_the_fragment_then_each_change_promptly() {
    // The periodic look is pushed out of the test's reach: every event below comes from the
    // wake-up an ack or a saved change sends.
    let dir = tempfile::tempdir().unwrap();
    let options = kato_console::Options {
        ack_recheck: Duration::from_secs(3600),
    };
    let f = fixture_on(Console::start_with_options(common::config(dir.path()), dir, options).await).await;
    install(&f, 1).await;
    let url = "/teams/alpha/components/web/plugins/logtail/acks/events";
    let (status, mut events) = Events::open(&f.c, &f.token, url).await;
    assert_eq!(status, StatusCode::OK);
    let (event, first) = events.next(Duration::from_secs(5)).await;
    assert_eq!(event, "html");
    assert!(first.contains("Discovery revision <strong>1</strong>"), "{first}");
    assert!(first.contains("No pod has reported a revision yet."), "{first}");

    // The ack wakes the stream.
    let message = "TIMEOUT=5s";
    ack(
        &f,
        json!({"revision": 1, "pod": "web-7d9f-1", "status": "applied", "message": message}),
    )
    .await;
    let (event, applied) = events.next(Duration::from_secs(5)).await;
    assert_eq!(event, "html");
    assert!(applied.contains("web-7d9f-1"), "{applied}");
    assert!(
        applied.contains("applied revision 1</span> TIMEOUT=5s"),
        "with the plug-in's message: {applied}"
    );

    // A discovery value saved through the page: a new revision, at once.
    let fields = with(unchanged(), "values.ports.80.TIMEOUT", "7s");
    let saved = post(&f, &f.token, SAVE, &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, revised) = events.next(Duration::from_secs(5)).await;
    assert!(revised.contains("Discovery revision <strong>2</strong>"), "{revised}");
    assert!(
        revised.contains("behind revision 2"),
        "the pod has not applied revision 2: {revised}"
    );

    ack(
        &f,
        json!({"revision": 2, "pod": "web-7d9f-1", "status": "rejected", "message": "TIMEOUT 7s is too short"}),
    )
    .await;
    let (_, rejected) = events.next(Duration::from_secs(5)).await;
    assert!(
        rejected.contains("rejected revision 2</span> TIMEOUT 7s is too short"),
        "{rejected}"
    );

    // Uninstalled: the box says so and the stream ends.
    let gone =
        f.c.post(&f.token, "/teams/alpha/components/web/plugins/logtail/uninstall", &[])
            .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    let (event, data) = events.next(Duration::from_secs(5)).await;
    assert_eq!(event, "html");
    assert!(data.contains("no longer installed"), "{data}");
    assert_eq!(events.next(Duration::from_secs(5)).await.0, "end");
}

#[tokio::test]
async fn the_acks_stream_ends_when_the_server_stops() {
    let f = fixture().await;
    install(&f, 1).await;
    let url = "/teams/alpha/components/web/plugins/logtail/acks/events";
    let (_, mut events) = Events::open(&f.c, &f.token, url).await;
    assert_eq!(events.next(Duration::from_secs(5)).await.0, "html");
    f.c.state.builds.stopping.cancel();
    let (event, data) = events.next(Duration::from_secs(5)).await;
    assert_eq!((event.as_str(), data.as_str()), ("end", "the server is stopping"));
}

#[tokio::test]
async fn status_and_logs_say_plainly_that_nothing_runs_on_a_render_only_server() {
    let f = fixture().await;
    let status = f.c.get(&f.token, "/teams/alpha/components/web/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert!(status.contains("web is not running."), "{}", status.body);
    assert!(status.contains("renders manifests only (target none)"));
    assert!(status.contains("aria-current=\"page\">Status and logs</a>"));
    let (code, mut events) =
        Events::open(&f.c, &f.token, "/teams/alpha/components/web/logs/events?container=web").await;
    assert_eq!(code, StatusCode::OK);
    let (event, data) = events.next(Duration::from_secs(5)).await;
    assert_eq!(event, "end");
    assert!(!data.is_empty(), "the end says why");
}

#[tokio::test]
async fn the_manifests_tab_shows_the_rendered_yaml() {
    let f = fixture().await;
    let k8s = f.c.get(&f.token, "/teams/alpha/components/web/manifests").await;
    assert_eq!(k8s.status, StatusCode::OK);
    assert!(
        k8s.contains("<label for=\"m-target\">Target</label>")
            && k8s.contains("<label for=\"m-sidecars\">Sidecar mode</label>")
    );
    assert!(tag(&k8s, "id=\"manifest\"").contains("class=\"yaml\""));
    assert!(element(&k8s, "manifest").contains("kind: Deployment"));
    assert!(k8s.contains("data-copy=\"#manifest\"") && k8s.contains("data-copied"));
    let podman =
        f.c.get(
            &f.token,
            "/teams/alpha/components/web/manifests?target=podman&sidecars=classic",
        )
        .await;
    assert!(element(&podman, "manifest").contains("kind: Pod"));
    assert!(podman.contains("<option value=\"podman\" selected>"));
    let bad =
        f.c.get(&f.token, "/teams/alpha/components/web/manifests?target=nomad")
            .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(element(&bad, "m-error").contains("`nomad` is not a target"));
}

/// Everything the pages could change, as the API shows it.
async fn snapshot(f: &Fixture) -> Value {
    let components = api_ok(
        &f.c,
        &f.token,
        Method::GET,
        "/teams/alpha/components",
        None,
        StatusCode::OK,
    )
    .await;
    let installed = api_ok(
        &f.c,
        &f.token,
        Method::GET,
        "/teams/alpha/components/web/plugins",
        None,
        StatusCode::OK,
    )
    .await;
    json!({"components": components, "installed": installed})
}

#[tokio::test]
async fn another_teams_token_and_a_form_without_csrf_change_nothing() {
    let f = fixture().await;
    install(&f, 1).await;
    let beta = f.c.team("beta").await;
    let before = snapshot(&f).await;
    for path in [
        "/teams/alpha/components",
        "/teams/alpha/components/web",
        "/teams/alpha/components/web/plugins",
        "/teams/alpha/components/web/status",
        "/teams/alpha/components/web/manifests",
    ] {
        assert_eq!(f.c.get(&beta, path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let (code, _) = Events::open(&f.c, &beta, "/teams/alpha/components/web/plugins/logtail/acks/events").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let changes = [
        (
            "/teams/alpha/components/new",
            form(&[("name", "x"), ("image", "nginx")]),
        ),
        ("/teams/alpha/components/web", form(&[("image", "evil:1")])),
        (
            "/teams/alpha/components/web/plugins",
            form(&[("plugin_version", "logtail:2")]),
        ),
        (SAVE, with(unchanged(), "memory_mib", "200")),
        ("/teams/alpha/components/web/plugins/logtail/uninstall", Vec::new()),
        ("/teams/alpha/components/web/delete", Vec::new()),
        ("/teams/alpha/components/web/stop", Vec::new()),
    ];
    for (path, fields) in &changes {
        let other = post(&f, &beta, path, fields).await;
        assert_eq!(
            other.status,
            StatusCode::FORBIDDEN,
            "{path} with another team's token: {}",
            other.body
        );
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let no_csrf = f.c.post_raw(&f.token, path, &pairs, "same-origin").await;
        assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{path} without the CSRF value");
    }
    assert_eq!(snapshot(&f).await, before, "nothing changed");
}

#[tokio::test]
async fn uninstall_and_delete_ask_first() {
    let f = fixture().await;
    install(&f, 1).await;
    let confirm =
        f.c.get(&f.token, "/teams/alpha/components/web/plugins/logtail/uninstall")
            .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.contains(">Uninstall logtail</button>"));
    assert!(installation(&f).await["plugin"] == "logtail", "asking removed nothing");
    let done =
        f.c.post(&f.token, "/teams/alpha/components/web/plugins/logtail/uninstall", &[])
            .await;
    assert_eq!(done.location(), "/teams/alpha/components/web/plugins");
    let (code, _) =
        f.c.api(
            &f.token,
            Method::GET,
            "/teams/alpha/components/web/plugins/logtail",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let confirm = f.c.get(&f.token, "/teams/alpha/components/log-sink/delete").await;
    assert!(confirm.contains(">Delete component log-sink</button>"));
    assert!(
        confirm.contains("href=\"/teams/alpha/components/web\">web</a>"),
        "names what depends on it"
    );
    let refused = f.c.post(&f.token, "/teams/alpha/components/log-sink/delete", &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.contains("class=\"notice bad\""));
    let deleted = f.c.post(&f.token, "/teams/alpha/components/web/delete", &[]).await;
    assert_eq!(deleted.location(), "/teams/alpha/components");
    let (code, _) =
        f.c.api(&f.token, Method::GET, "/teams/alpha/components/web", None)
            .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

/// 1,000 components: shown a hundred a page, with Previous and Next, and the search finds any of
/// them (the render time is measured by `cargo bench -p kato-console --bench pages`).
#[tokio::test]
async fn a_long_component_list_is_shown_a_hundred_at_a_time_and_searched() {
    let c = Console::start().await;
    let token = c.team(TEAM).await;
    let team = TEAM.parse().unwrap();
    let mut tx = c.state.store.begin().await.unwrap();
    for n in 0..1000 {
        let spec: kato_model::ComponentSpec = serde_json::from_value(json!({"name": format!("c{n:04}"),
            "image": "registry.example.com/shop/app:1.2.3", "ports": [{"port": 80, "protocol": "http"},
            {"port": 9090, "protocol": "tcp"}], "env": [{"name": "MODE", "value": "prod"}]}))
        .unwrap();
        tx.insert_component(&team, &spec).await.unwrap();
    }
    tx.commit().await.unwrap();
    let rows = |body: &str| body.matches("<tr><td><a href=\"/teams/alpha/components/c").count();
    let first = c.get(&token, "/teams/alpha/components").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(rows(&first.body), 100);
    assert!(first.contains("1000 components: 1–100 shown"), "{}", first.body);
    assert!(
        first.contains("href=\"/teams/alpha/components?q=&#38;page=2\" rel=\"next\""),
        "{}",
        first.body
    );
    assert!(!first.contains("rel=\"prev\""));
    let last = c.get(&token, "/teams/alpha/components?page=10").await;
    assert_eq!(rows(&last.body), 100);
    assert!(last.contains("/teams/alpha/components/c0999\"") && !last.contains("/components/c0899\""));
    assert!(!last.contains("rel=\"next\"") && last.contains("rel=\"prev\""));
    let beyond = c.get(&token, "/teams/alpha/components?page=99").await;
    assert_eq!(rows(&beyond.body), 100, "a page past the end shows the last one");
    let found = c.get(&token, "/teams/alpha/components?q=c05").await;
    assert_eq!(rows(&found.body), 100);
    assert!(found.contains("100 of 1000 components"), "{}", found.body);
    assert!(found.contains("/components/c0500\"") && !found.contains("/components/c0600\""));
    let none = c.get(&token, "/teams/alpha/components?q=nothing-like-it").await;
    assert!(none.contains("No component matches."));
}
