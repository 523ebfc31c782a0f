//! `apply`: the docs' log-collection example, idempotence, and all-or-nothing batches.

mod common;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::{Value, json};

/// The example's plug-in and components (examples/log-collector/plugin.yaml, then
/// examples/log-collector.yaml), with their images pushed to the test registry. The plug-in is
/// built from a Dockerfile there; here it comes from an image instead, so that no build runs
/// (crates/kato-server/tests/log_collector_podman.rs builds and runs it).
async fn example(s: &Server) -> Vec<Value> {
    let read = |path: &str| {
        let text = std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_yaml::Deserializer::from_str(&text.replace("127.0.0.1:5000", s.registry.host()))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect::<Vec<Value>>()
    };
    for repo in ["kato-examples/logtail", "kato-examples/log-demo"] {
        s.registry.push_image(repo, "1").await;
    }
    let mut docs = read("examples/log-collector/plugin.yaml");
    assert!(docs[0]["spec"]["source"]["dockerfile"].is_object(), "{}", docs[0]);
    docs[0]["spec"]["source"] = json!({"image": format!("{}/kato-examples/logtail:1", s.registry.host())});
    docs.extend(read("examples/log-collector.yaml"));
    docs
}

fn actions(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {} {}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap(),
                o["action"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn the_log_collection_example_applies_and_renders() {
    let s = Server::start().await;
    s.team("demo").await;
    let docs = example(&s).await;
    let first = s
        .ok(
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": docs})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        actions(&first),
        [
            "Plugin logtail created",
            "Plugin logtail versioned 1",
            "Component nginx-log-demo created",
            "Component log-sink created",
            "Installation nginx-log-demo/logtail installed"
        ]
    );
    let again = s
        .ok(
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": docs})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        actions(&again),
        [
            "Plugin logtail unchanged",
            "Component nginx-log-demo unchanged",
            "Component log-sink unchanged",
            "Installation nginx-log-demo/logtail unchanged"
        ],
        "applying again changes nothing"
    );

    let (_, yaml) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/components/nginx-log-demo/manifests",
            Some(&s.admin),
            None,
        )
        .await;
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let pod = &docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let app = &pod["containers"][0];
    let plugin = &pod["initContainers"][0];
    assert_eq!(plugin["name"], "plugin-logtail");
    let mount = json!([{"mountPath": "/var/log/nginx", "name": "nginx-log"}]);
    assert_eq!(app["volumeMounts"], mount);
    assert_eq!(
        plugin["volumeMounts"], mount,
        "the plug-in reads the app's log through the shared volume"
    );
    let env: Vec<(String, String)> = plugin["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or("<from>").to_owned(),
            )
        })
        .collect();
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("ALIYUN_LOGTAIL_USER_ID"), Some("1234567890"));
    assert_eq!(get("ALIYUN_LOGTAIL_USER_DEFINED_ID"), Some("nginx-log-demo"));
    assert_eq!(
        get("ALIYUN_LOGTAIL_CONFIG"),
        Some("/etc/ilogtail/conf/cn-hangzhou/ilogtail_config.json"),
        "${{VAR:default}} expands against the app's env"
    );
    assert_eq!(
        get("ALIYUN_LOG_ENV_TAGS"),
        Some("_pod_name_|_pod_ip_|_namespace_|_node_name_|_node_ip_")
    );
    assert_eq!(get("LOGTAIL_FILES"), Some("/var/log/nginx/*.log"));
    assert_eq!(get("SINK"), None, "the sink is served by the discovery API");
    assert_eq!(
        get("ALIYUN_REGION"),
        Some("cn-hangzhou"),
        "the app's env is shared with the plug-in"
    );
    assert!(
        !app.to_string().contains("ALIYUN_LOGTAIL"),
        "the app has none of the plug-in's variables"
    );
    assert_eq!(plugin["resources"]["limits"]["memory"], "64Mi");
}

#[tokio::test]
async fn a_rejected_apply_changes_nothing() {
    let s = Server::start().await;
    s.team("demo").await;
    let mut docs = example(&s).await;
    s.ok(
        Method::POST,
        "/teams/demo/apply",
        Some(json!({"documents": docs.clone()})),
        StatusCode::OK,
    )
    .await;
    let before = s.snapshot("demo").await;

    // A batch that changes the plug-in (a new version), the component, and then breaks a rule
    // in its last installation must leave everything as it was.
    docs[0]["spec"]["memory_mib"] = json!(96);
    docs[1]["spec"]["replicas"] = json!(3);
    docs[1]["spec"]["plugins"][0]["memory_mib"] = json!(16);
    let (status, e) = s
        .call(Method::POST, "/teams/demo/apply", Some(json!({"documents": docs})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "documents[1].spec.plugins[0].memory_mib");
    assert_eq!(s.snapshot("demo").await, before);

    // An unknown kind or a bad field is named by its document.
    let (status, e) = s
        .call(
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": [{"kind": "Secret", "metadata": {"name": "x"}}]})),
        )
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("documents[0].kind"))
    );
    let dup = json!({"kind": "Component", "metadata": {"name": "w"}, "spec": {"image": "x", "plugins": [{"plugin": "logtail"}, {"plugin": "logtail"}]}});
    let (status, e) = s
        .call(Method::POST, "/teams/demo/apply", Some(json!({"documents": [dup]})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the same plug-in twice: {e}");
    assert_eq!(s.snapshot("demo").await, before);
}

#[tokio::test]
async fn an_unresolvable_image_rejects_the_whole_apply() {
    let s = Server::start().await;
    s.team("demo").await;
    let doc = json!({"kind": "Plugin", "metadata": {"name": "p"}, "spec": {"kind": "general", "source": {"image": format!("{}/demo/nope:1", s.registry.host())}}});
    let comp = json!({"kind": "Component", "metadata": {"name": "web"}, "spec": {"image": "nginx"}});
    let (status, e) = s
        .call(
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": [comp, doc]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["code"], "image_not_found", "{e}");
    assert_eq!(
        s.snapshot("demo").await,
        json!({"plugins": [], "versions": {}, "components": [], "installations": {}})
    );
}

#[tokio::test]
async fn components_apply_in_dependency_order_and_listed_plugins_are_the_full_set() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/p").await;
    let plugin =
        json!({"kind": "Plugin", "metadata": {"name": "p"}, "spec": {"kind": "general", "source": {"image": image}}});
    let web = json!({"kind": "Component", "metadata": {"name": "web"}, "spec": {"image": "nginx", "depends_on": ["db"], "plugins": [{"plugin": "p"}]}});
    let db = json!({"kind": "Component", "metadata": {"name": "db"}, "spec": {"image": "postgres"}});
    s.ok(
        Method::POST,
        "/teams/demo/apply",
        Some(json!({"documents": [plugin.clone(), web.clone(), db.clone()]})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        s.ok(Method::GET, "/teams/demo/components/web/plugins", None, StatusCode::OK)
            .await[0]["plugin"],
        "p"
    );
    let mut bare = web.clone();
    bare["spec"]["plugins"] = json!([]);
    let v = s
        .ok(
            Method::POST,
            "/teams/demo/apply",
            Some(json!({"documents": [bare]})),
            StatusCode::OK,
        )
        .await;
    assert!(
        actions(&v).contains(&"Installation web/p uninstalled".to_owned()),
        "{v}"
    );
}

/// A version that `apply` cuts is made as `POST …/versions` makes one: the image is read with
/// the team's credentials, copied into the platform registry, pinned there by digest, with its
/// provenance and its log; an image it cannot read rejects the apply with nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_applied_image_version_is_pinned_in_the_platform_registry_like_a_built_one() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let password = "vendor-pass-789";
    let vendor = kato_testkit::TestRegistry::start_with_auth("puller", password).await;
    let pushed = vendor.push_image("vendor/agent", "2").await;
    let doc = json!({"kind": "Plugin", "metadata": {"name": "agent"}, "spec": {"kind": "general", "source": {"image": pushed.image.as_str()}}});
    let apply = json!({"documents": [doc]});

    let (status, e) = s.call(Method::POST, "/teams/demo/apply", Some(apply.clone())).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("registry_unauthorized")),
        "{e}"
    );
    assert_eq!(
        s.snapshot("demo").await,
        json!({"plugins": [], "versions": {}, "components": [], "installations": {}})
    );

    s.ok(
        Method::POST,
        "/teams/demo/credentials",
        Some(json!({"host": vendor.host(), "username": "puller", "password": password})),
        StatusCode::CREATED,
    )
    .await;
    let out = s
        .ok(Method::POST, "/teams/demo/apply", Some(apply), StatusCode::OK)
        .await;
    assert_eq!(actions(&out), ["Plugin agent created", "Plugin agent versioned 1"]);
    let applied = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/agent/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(applied["status"], "succeeded", "{applied}");
    let copy = format!("{}/platform/demo/agent@{}", s.registry.host(), pushed.digest);
    assert_eq!(applied["image"], copy);
    assert_eq!(
        applied["provenance"],
        json!({"source_image": pushed.pinned(), "digest": pushed.digest})
    );
    assert_eq!(
        s.registry.registry_digest("platform/demo/agent", "v1").await.as_deref(),
        Some(pushed.digest.as_str()),
        "the copy is tagged with its version number, as a built version's is"
    );

    // The same draft through the API: the same kind of version, apart from its number and times.
    let built = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/agent/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    let strip = |v: &Value| {
        let mut v = v.clone();
        for k in ["number", "created_at", "finished_at"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(strip(&applied), strip(&built));
    assert_eq!(
        s.registry.registry_digest("platform/demo/agent", "v2").await.as_deref(),
        Some(pushed.digest.as_str())
    );
    for n in [1, 2] {
        let path = format!("/api/v1/teams/demo/plugins/agent/versions/{n}/log");
        let (status, log) = s.raw(Method::GET, &path, Some(&s.admin), None).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        assert!(log.contains(&format!("platform/demo/agent:v{n}")), "{log}");
        assert!(log.contains(&format!("succeeded: {copy}")), "{log}");
        assert!(!log.contains(password), "{log}");
    }
}
