//! Installing plug-ins on components: values, memory, switches, upgrades, and the rules.

mod common;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::{Value, json};

async fn setup() -> Server {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/logtail").await;
    s.plugin(
        "demo",
        json!({"name": "logtail", "kind": "general", "source": {"image": image}, "memory_mib": 64,
               "config_groups": [{"name": "env", "items": [
                   {"name": "USER_ID"}, {"name": "MODE", "type": "single", "options": ["fast", "safe"], "default": "safe"},
                   {"name": "PASSWORD", "secret": true}]}]}),
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

const WEB: &str = "/teams/demo/components/web/plugins/logtail";

#[tokio::test]
async fn install_switch_resize_upgrade_uninstall() {
    let s = setup().await;
    let i = s
        .ok(
            Method::PUT,
            WEB,
            Some(json!({"memory_mib": 96, "values": {"base": {"USER_ID": "42"}}})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        (i["version"].as_u64(), i["enabled"].as_bool(), i["memory_mib"].as_u64()),
        (Some(1), Some(true), Some(96))
    );
    assert_eq!(i["values"]["base"], json!({"USER_ID": "42"}));
    let rev = i["revision"].as_u64().unwrap();

    let off = s
        .ok(Method::PUT, WEB, Some(json!({"enabled": false})), StatusCode::OK)
        .await;
    assert_eq!(off["enabled"], false);
    assert_eq!(
        off["values"]["base"],
        json!({"USER_ID": "42"}),
        "disabling keeps the values"
    );
    assert!(off["revision"].as_u64().unwrap() > rev);
    let on = s
        .ok(Method::PUT, WEB, Some(json!({"enabled": true})), StatusCode::OK)
        .await;
    assert_eq!(
        (on["enabled"].as_bool(), on["memory_mib"].as_u64()),
        (Some(true), Some(96))
    );

    // Memory below the version's minimum is refused and changes nothing.
    let before = s.snapshot("demo").await;
    let (status, e) = s.call(Method::PUT, WEB, Some(json!({"memory_mib": 32}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["field"], "memory_mib");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("give at least 64"),
        "{e}"
    );
    assert_eq!(s.snapshot("demo").await, before);

    // Upgrade to version 2 (with a larger minimum: the memory follows).
    s.ok(
        Method::PATCH,
        "/teams/demo/plugins/logtail",
        Some(json!({"memory_mib": 128})),
        StatusCode::OK,
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins/logtail/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    let up = s
        .ok(Method::PUT, WEB, Some(json!({"version": 2})), StatusCode::OK)
        .await;
    assert_eq!(
        (up["version"].as_u64(), up["memory_mib"].as_u64()),
        (Some(2), Some(128))
    );
    assert_eq!(up["values"]["base"], json!({"USER_ID": "42"}));

    s.ok(Method::DELETE, WEB, None, StatusCode::NO_CONTENT).await;
    assert_eq!(
        s.ok(Method::GET, "/teams/demo/components/web/plugins", None, StatusCode::OK)
            .await,
        json!([])
    );
    s.ok(Method::DELETE, WEB, None, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn values_are_checked_against_the_version() {
    let s = setup().await;
    for (values, field) in [
        (json!({"base": {"MODE": "turbo"}}), "values.base.MODE"),
        (json!({"base": {"NOPE": "1"}}), "values.base.NOPE"),
        (json!({"ports": {"80": {}}}), "values.ports.80"),
    ] {
        let (status, e) = s.call(Method::PUT, WEB, Some(json!({"values": values}))).await;
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{e}"
        );
    }
    let (status, e) = s
        .call(Method::PUT, WEB, Some(json!({"values": {"base": {}}, "colour": "red"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{e}"
    );
    assert_eq!(
        s.ok(Method::GET, "/teams/demo/components/web/plugins", None, StatusCode::OK)
            .await,
        json!([])
    );
}

#[tokio::test]
async fn secret_values_are_never_returned() {
    let s = setup().await;
    let i = s
        .ok(
            Method::PUT,
            WEB,
            Some(json!({"values": {"base": {"PASSWORD": "hunter2", "USER_ID": "7"}}})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(i["secret_values_set"], json!(["base.PASSWORD"]));
    let all = [
        s.ok(Method::GET, WEB, None, StatusCode::OK).await.to_string(),
        s.ok(Method::GET, "/teams/demo/components/web/plugins", None, StatusCode::OK)
            .await
            .to_string(),
        i.to_string(),
        s.raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests",
            Some(&s.admin),
            None,
        )
        .await
        .1,
        s.raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests?target=podman",
            Some(&s.admin),
            None,
        )
        .await
        .1,
    ];
    for text in all {
        assert!(!text.contains("hunter2"), "secret leaked: {text}");
    }
    // Sending the redacted read back keeps the secret.
    let shown = s.ok(Method::GET, WEB, None, StatusCode::OK).await;
    s.ok(
        Method::PUT,
        WEB,
        Some(json!({"values": shown["values"]})),
        StatusCode::OK,
    )
    .await;
    let mut tx = s.state.store.begin().await.unwrap();
    let stored = tx
        .get_installation(
            &"demo".parse().unwrap(),
            &"web".parse().unwrap(),
            &"logtail".parse().unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.installation.values.base["PASSWORD"].to_string(), "hunter2");
}

#[tokio::test]
async fn net_plugins_exclude_each_other_in_both_directions() {
    let s = setup().await;
    for (name, kind) in [("gate", "inbound-net"), ("mesh", "inout-net"), ("out", "outbound-net")] {
        let image = s.image(&format!("demo/{name}")).await;
        s.plugin("demo", json!({"name": name, "kind": kind, "source": {"image": image}}))
            .await;
    }
    let at = |p: &str| format!("/teams/demo/components/web/plugins/{p}");
    s.ok(Method::PUT, &at("mesh"), Some(json!({})), StatusCode::CREATED)
        .await;
    for other in ["gate", "out"] {
        let (status, e) = s.call(Method::PUT, &at(other), Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other} after inout-net: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("uninstall `mesh` first"),
            "{e}"
        );
    }
    s.ok(Method::DELETE, &at("mesh"), None, StatusCode::NO_CONTENT).await;
    s.ok(Method::PUT, &at("gate"), Some(json!({})), StatusCode::CREATED)
        .await;
    let (status, e) = s.call(Method::PUT, &at("mesh"), Some(json!({}))).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inout-net after inbound-net: {e}"
    );
    s.ok(Method::PUT, &at("out"), Some(json!({})), StatusCode::CREATED)
        .await;
}

#[tokio::test]
async fn perf_analysis_and_port_groups_need_matching_ports() {
    let s = setup().await;
    let image = s.image("demo/perf").await;
    s.plugin(
        "demo",
        json!({"name": "perf", "kind": "perf-analysis", "source": {"image": image}}),
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "db", "image": "postgres", "ports": [{"port": 5432, "protocol": "tcp"}]})),
        StatusCode::CREATED,
    )
    .await;
    let (status, e) = s
        .call(Method::PUT, "/teams/demo/components/db/plugins/perf", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        e["error"]["message"],
        "plugin: perf-analysis plug-in `perf` needs a port with protocol http or mysql; component `db` has tcp:5432"
    );
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/perf",
        Some(json!({})),
        StatusCode::CREATED,
    )
    .await;
    // Removing the http port from web would break the installed perf plug-in: refused.
    let (status, e) = s
        .call(
            Method::PUT,
            "/teams/demo/components/web",
            Some(json!({"name": "web", "image": "nginx", "ports": [{"port": 22, "protocol": "tcp"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("installed plug-in `perf` would break"),
        "{e}"
    );
    let web = s
        .ok(Method::GET, "/teams/demo/components/web", None, StatusCode::OK)
        .await;
    assert_eq!(web["ports"], json!([{"port": 80, "protocol": "http"}]));
}

#[tokio::test]
async fn components_are_validated_and_dependencies_protected() {
    let s = setup().await;
    let (status, e) = s
        .call(
            Method::POST,
            "/teams/demo/components",
            Some(json!({"name": "api", "image": "x", "depends_on": ["ghost"]})),
        )
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("depends_on[0]"))
    );
    let (status, e) = s
        .call(
            Method::POST,
            "/teams/demo/components",
            Some(json!({"name": "api", "image": "x", "ports": [{"port": 70000}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (status, _) = s
        .call(
            Method::POST,
            "/teams/demo/components",
            Some(json!({"name": "web", "image": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "api", "image": "x", "depends_on": ["web"]})),
        StatusCode::CREATED,
    )
    .await;
    let (status, e) = s.call(Method::DELETE, "/teams/demo/components/web", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("dependency of `api`"),
        "{e}"
    );
}

#[tokio::test]
async fn manifests_render_the_installation() {
    let s = setup().await;
    s.ok(
        Method::PUT,
        WEB,
        Some(json!({"values": {"base": {"USER_ID": "42"}}})),
        StatusCode::CREATED,
    )
    .await;
    let (status, yaml) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "Service", "Deployment"]);
    let pod = &docs[2]["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["name"], "plugin-logtail");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert!(
        sidecar["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "USER_ID" && e["value"] == "42")
    );
    assert!(
        !pod["containers"][0].to_string().contains("USER_ID"),
        "the app never gets plug-in variables"
    );

    let (_, podman) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests?target=podman",
            Some(&s.admin),
            None,
        )
        .await;
    assert!(podman.contains("kind: Pod"), "{podman}");
    let (status, v) = s
        .call(Method::GET, "/teams/demo/components/web/manifests?target=nomad", None)
        .await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("target"))
    );

    // A change shows in the next render (the read cache is dropped on writes).
    s.ok(Method::PUT, WEB, Some(json!({"enabled": false})), StatusCode::OK)
        .await;
    let (_, after) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests",
            Some(&s.admin),
            None,
        )
        .await;
    assert!(!after.contains("plugin-logtail"), "{after}");
}
