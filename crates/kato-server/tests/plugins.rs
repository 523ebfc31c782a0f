//! Plug-ins and versions through the API: digest pinning, immutability, failures, deletion.

mod common;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::json;
use sqlx::{Connection, Executor};

#[tokio::test]
async fn a_version_pins_the_image_by_digest() {
    let s = Server::start().await;
    s.team("demo").await;
    let pushed = s.registry.push_image("demo/logtail", "1").await;
    let spec =
        json!({"name": "logtail", "kind": "general", "source": {"image": pushed.image.to_string()}, "memory_mib": 64});
    let v = s.plugin("demo", spec).await;
    assert_eq!(v["number"], 1);
    let image = v["image"].as_str().unwrap();
    assert_eq!(image, format!("{}/demo/logtail@{}", s.registry.host(), pushed.digest));
    assert_eq!(v["plugin"]["memory_mib"], 64);
    let got = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/logtail/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(got["image"], image);
    // The draft may change; version 1 does not.
    s.ok(
        Method::PATCH,
        "/teams/demo/plugins/logtail",
        Some(json!({"memory_mib": 128})),
        StatusCode::OK,
    )
    .await;
    let v2 = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/logtail/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        (v2["number"].as_u64(), v2["plugin"]["memory_mib"].as_u64()),
        (Some(2), Some(128))
    );
    let v1 = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/logtail/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v1["plugin"]["memory_mib"], 64);
}

/// `(number, created_by)` of each version of a plug-in, as the API lists them.
async fn authors(s: &Server, plugin: &str) -> Vec<(u64, serde_json::Value)> {
    let list = s
        .ok(
            Method::GET,
            &format!("/teams/demo/plugins/{plugin}/versions"),
            None,
            StatusCode::OK,
        )
        .await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| (v["number"].as_u64().unwrap(), v["created_by"].clone()))
        .collect()
}

#[tokio::test]
async fn each_version_names_who_built_it_however_it_was_made() {
    let s = Server::start().await;
    s.team("demo").await;
    let ci = s
        .ok(
            Method::POST,
            "/teams/demo/tokens",
            Some(json!({"name": "ci job"})),
            StatusCode::CREATED,
        )
        .await;
    let ci = ci["token"].as_str().unwrap().to_owned();
    let image = s.image("demo/agent").await;
    let agent = json!({"name": "agent", "kind": "general", "source": {"image": image}});
    let built = json!({"name": "built", "kind": "general",
        "source": {"dockerfile": {"repo": "https://git.example.com/demo/built.git"}}});
    for spec in [&agent, &built] {
        s.ok(
            Method::POST,
            "/teams/demo/plugins",
            Some(spec.clone()),
            StatusCode::CREATED,
        )
        .await;
    }

    // POST …/versions: the admin, then the team token; an image and a Dockerfile source.
    let v1 = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/agent/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        (&v1["status"], &v1["created_by"]),
        (&json!("succeeded"), &json!("admin"))
    );
    for plugin in ["agent", "built"] {
        let (status, v) = s
            .call_as(
                &ci,
                Method::POST,
                &format!("/teams/demo/plugins/{plugin}/versions"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["created_by"], "token ci job", "{v}");
    }

    // apply: the team token with an image source, the admin with a Dockerfile source.
    let doc = |spec: &serde_json::Value| {
        let mut spec = spec.clone();
        let name = spec.as_object_mut().unwrap().remove("name").unwrap();
        spec["description"] = json!("applied");
        json!({"documents": [{"kind": "Plugin", "metadata": {"name": name}, "spec": spec}]})
    };
    let (status, out) = s
        .call_as(&ci, Method::POST, "/teams/demo/apply", Some(doc(&agent)))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out[1]["action"], "versioned 3", "{out}");
    let out = s
        .ok(Method::POST, "/teams/demo/apply", Some(doc(&built)), StatusCode::OK)
        .await;
    assert_eq!(out[1]["action"], "versioned 2", "{out}");

    assert_eq!(
        authors(&s, "agent").await,
        [
            (1, json!("admin")),
            (2, json!("token ci job")),
            (3, json!("token ci job"))
        ]
    );
    assert_eq!(
        authors(&s, "built").await,
        [(1, json!("token ci job")), (2, json!("admin"))]
    );
    let (_, one) = s
        .call_as(&ci, Method::GET, "/teams/demo/plugins/agent/versions/3", None)
        .await;
    assert_eq!(one["created_by"], "token ci job");

    // Revoking the token ends it at once; what it built still names it.
    let tokens = s.ok(Method::GET, "/teams/demo/tokens", None, StatusCode::OK).await;
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci job")
        .unwrap()["id"]
        .clone();
    s.ok(
        Method::DELETE,
        &format!("/teams/demo/tokens/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let (status, _) = s
        .call_as(&ci, Method::POST, "/teams/demo/plugins/agent/versions", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(authors(&s, "agent").await.len(), 3);
    assert_eq!(authors(&s, "agent").await[1].1, "token ci job");

    // A version from before authors were recorded has none.
    let url = format!("sqlite://{}", s.dir.path().join("kato.db").display());
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    raw.execute("UPDATE versions SET created_by = NULL WHERE plugin = 'agent' AND number = 1")
        .await
        .unwrap();
    raw.close().await.unwrap();
    let v1 = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/agent/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v1["created_by"], json!(null), "{v1}");
}

#[tokio::test]
async fn versions_cannot_be_modified() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/p").await;
    s.plugin("demo", json!({"name": "p", "kind": "init", "source": {"image": image}}))
        .await;
    let before = s.snapshot("demo").await;
    for method in [Method::PUT, Method::PATCH, Method::POST] {
        let (status, v) = s
            .call(
                method.clone(),
                "/teams/demo/plugins/p/versions/1",
                Some(json!({"image": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("immutable"), "{v}");
    }
    assert_eq!(s.snapshot("demo").await, before);
}

#[tokio::test]
async fn resolution_failures_are_distinct_and_leave_a_failed_version() {
    let s = Server::start().await;
    s.team("demo").await;
    let missing = format!("{}/demo/missing:1", s.registry.host());
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "gone", "kind": "general", "source": {"image": missing}})),
        StatusCode::CREATED,
    )
    .await;
    let v = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/gone/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["status"], "failed");
    assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");

    s.ok(Method::POST, "/teams/demo/plugins", Some(json!({"name": "built", "kind": "general", "source": {"dockerfile": {"repo": "https://git.example.com/p.git"}}})), StatusCode::CREATED).await;
    let v = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/built/versions",
            None,
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["status"], "failed");
    assert!(
        v["error"].as_str().unwrap().contains("need a platform registry")
            && v["error"].as_str().unwrap().contains("--registry"),
        "{v}"
    );

    // A failed version cannot be installed.
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx"})),
        StatusCode::CREATED,
    )
    .await;
    let (status, e) = s
        .call(
            Method::PUT,
            "/teams/demo/components/web/plugins/gone",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only a succeeded version can be installed"),
        "{e}"
    );
}

#[tokio::test]
async fn invalid_drafts_name_the_field() {
    let s = Server::start().await;
    s.team("demo").await;
    let cases = [
        (
            json!({"name": "Bad_Name", "kind": "general", "source": {"image": "x"}}),
            "invalid plug-in name `Bad_Name`",
        ),
        (
            json!({"name": "p", "kind": "sidecar", "source": {"image": "x"}}),
            "unknown variant `sidecar`",
        ),
        (
            json!({"name": "p", "kind": "general", "source": {"image": "Not A Ref"}}),
            "invalid image reference",
        ),
        (
            json!({"name": "p", "kind": "general", "source": {"image": "x"}, "config_groups": [{"name": "g", "meta": "component-port", "injection": "env"}]}),
            "set injection to `discovery`",
        ),
    ];
    for (body, expected) in cases {
        let (status, v) = s.call(Method::POST, "/teams/demo/plugins", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(expected),
            "{body}: {v}"
        );
    }
    let (status, v) = s.call(Method::POST, "/teams/demo/plugins", Some(json!({"name": "p", "kind": "general", "source": {"image": "x"}, "config_groups": [{"name": "a"}, {"name": "b"}]}))).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("config_groups[1].meta"))
    );
    for (ready, field) in [
        (json!({"http": {"path": "/ready", "port": 0}}), "ready.http.port"),
        (json!({"http": {"path": "ready", "port": 80}}), "ready.http.path"),
        (json!({"exec": ["check", ""]}), "ready.exec[1]"),
    ] {
        let body = json!({"name": "p", "kind": "inbound-net", "source": {"image": "x"}, "ready": ready});
        let (status, v) = s.call(Method::POST, "/teams/demo/plugins", Some(body)).await;
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{v}"
        );
    }
    assert_eq!(
        s.ok(Method::GET, "/teams/demo/plugins", None, StatusCode::OK).await,
        json!([])
    );
    let ready = json!({"exec": ["/usr/local/bin/kato-mesh", "ready"]});
    let body = json!({"name": "p", "kind": "inbound-net", "source": {"image": "x"}, "ready": ready});
    s.ok(Method::POST, "/teams/demo/plugins", Some(body), StatusCode::CREATED)
        .await;
    let got = s.ok(Method::GET, "/teams/demo/plugins/p", None, StatusCode::OK).await;
    assert_eq!(got["ready"], ready, "a readiness check is stored and answered as sent");
}

#[tokio::test]
async fn deleting_a_plugin_in_use_needs_force_and_uninstalls_everywhere() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/p").await;
    s.plugin(
        "demo",
        json!({"name": "p", "kind": "general", "source": {"image": image}}),
    )
    .await;
    for c in ["a", "b"] {
        s.ok(
            Method::POST,
            "/teams/demo/components",
            Some(json!({"name": c, "image": "nginx"})),
            StatusCode::CREATED,
        )
        .await;
        s.ok(
            Method::PUT,
            &format!("/teams/demo/components/{c}/plugins/p"),
            Some(json!({})),
            StatusCode::CREATED,
        )
        .await;
    }
    let before = s.snapshot("demo").await;
    let (status, v) = s.call(Method::DELETE, "/teams/demo/plugins/p", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("installed on a, b"),
        "{v}"
    );
    let (status, _) = s.call(Method::DELETE, "/teams/demo/plugins/p/versions/1", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a version in use cannot be deleted");
    assert_eq!(s.snapshot("demo").await, before);

    let v = s
        .ok(Method::DELETE, "/teams/demo/plugins/p?force=true", None, StatusCode::OK)
        .await;
    assert_eq!(v["uninstalled_from"], json!(["a", "b"]));
    for c in ["a", "b"] {
        assert_eq!(
            s.ok(
                Method::GET,
                &format!("/teams/demo/components/{c}/plugins"),
                None,
                StatusCode::OK
            )
            .await,
            json!([])
        );
    }
    s.ok(Method::GET, "/teams/demo/plugins/p", None, StatusCode::NOT_FOUND)
        .await;
}

#[tokio::test]
async fn the_list_shows_each_plugins_newest_version_and_how_many_components_install_it() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/p").await;
    s.plugin(
        "demo",
        json!({"name": "p", "kind": "general", "source": {"image": image}}),
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "draft", "kind": "init", "source": {"image": image}})),
        StatusCode::CREATED,
    )
    .await;
    for c in ["web", "api"] {
        s.ok(
            Method::POST,
            "/teams/demo/components",
            Some(json!({"name": c, "image": "nginx"})),
            StatusCode::CREATED,
        )
        .await;
        s.ok(
            Method::PUT,
            &format!("/teams/demo/components/{c}/plugins/p"),
            Some(json!({})),
            StatusCode::CREATED,
        )
        .await;
    }
    let first = s.ok(Method::GET, "/teams/demo/plugins", None, StatusCode::OK).await;
    assert_eq!(first[1]["latest_version"], json!({"number": 1, "status": "succeeded"}));
    // Version 2 fails (its image is gone): the list shows the newest, whatever its status.
    let gone = format!("{}/demo/gone:1", s.registry.host());
    s.ok(
        Method::PATCH,
        "/teams/demo/plugins/p",
        Some(json!({"source": {"image": gone}})),
        StatusCode::OK,
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins/p/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    let list = s.ok(Method::GET, "/teams/demo/plugins", None, StatusCode::OK).await;
    let shown: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].clone(), p["latest_version"].clone(), p["used_by"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!("draft"), json!(null), json!(0)),
            (json!("p"), json!({"number": 2, "status": "failed"}), json!(2)),
        ]
    );
    // The brief view: the same, with only what a list shows beside it.
    let brief = s
        .ok(Method::GET, "/teams/demo/plugins?view=brief", None, StatusCode::OK)
        .await;
    for (b, full) in brief.as_array().unwrap().iter().zip(list.as_array().unwrap()) {
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["description", "kind", "latest_version", "memory_mib", "name", "used_by"],
            "{b}"
        );
        for k in ["name", "kind", "memory_mib", "latest_version", "used_by"] {
            assert_eq!(b[k], full[k], "{k}: {b} against {full}");
        }
        assert_eq!(b["description"], full.get("description").cloned().unwrap_or(json!("")));
    }
    let refused = s
        .ok(
            Method::GET,
            "/teams/demo/plugins?view=short",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(refused["error"]["field"], "view", "{refused}");
    // Beside those, each entry is the draft as GET shows it, secret defaults left out.
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "secret", "kind": "general", "source": {"image": image},
            "config_groups": [{"name": "g", "items": [{"name": "TOKEN", "secret": true, "default": "s3cr3t"}, {"name": "LEVEL", "default": "info"}]}]})),
        StatusCode::CREATED,
    )
    .await;
    let list = s.ok(Method::GET, "/teams/demo/plugins", None, StatusCode::OK).await;
    assert!(!list.to_string().contains("s3cr3t"));
    for (n, name) in [(1, "p"), (2, "secret")] {
        let mut entry = list[n].clone();
        let one = s
            .ok(
                Method::GET,
                &format!("/teams/demo/plugins/{name}"),
                None,
                StatusCode::OK,
            )
            .await;
        entry
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k != "latest_version" && k != "used_by");
        assert_eq!(entry, one);
    }
    assert_eq!(list[2]["secret_defaults_set"], json!(["g.TOKEN"]));
}

#[tokio::test]
async fn a_dry_run_patch_answers_the_draft_it_would_make_and_saves_nothing() {
    let s = Server::start().await;
    s.team("demo").await;
    let token = s
        .ok(
            Method::POST,
            "/teams/demo/tokens",
            Some(json!({"name": "t"})),
            StatusCode::CREATED,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "p", "kind": "general", "source": {"image": "busybox:1"},
            "config_groups": [{"name": "g", "items": [{"name": "TOKEN", "secret": true, "default": "s3cr3t"}]}]})),
        StatusCode::CREATED,
    )
    .await;
    let before = s.snapshot("demo").await;
    let would = s
        .ok(
            Method::PATCH,
            "/teams/demo/plugins/p?dry_run=true",
            Some(json!({"memory_mib": 256, "config_groups": [{"name": "g", "items": [{"name": "TOKEN", "secret": true}]}]})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(would["memory_mib"], 256);
    assert_eq!(
        would["secret_defaults_set"],
        json!(["g.TOKEN"]),
        "the secret default is kept"
    );
    assert!(!would.to_string().contains("s3cr3t"));
    // The same rules as a save, each error naming its field.
    let cases = [
        (
            json!({"config_groups": [{"name": "g", "meta": "component-port", "injection": "env"}]}),
            "config_groups[0].injection",
        ),
        (
            json!({"config_groups": [{"name": "g", "items": [{"name": "bad-name"}]}]}),
            "body",
        ),
        (
            json!({"source": {"image": null, "dockerfile": {"repo": "/srv/repo"}}}),
            "source.dockerfile.repo",
        ),
    ];
    for (patch, field) in cases {
        let (status, e) = s
            .call_as(
                &token,
                Method::PATCH,
                "/teams/demo/plugins/p?dry_run=true",
                Some(patch.clone()),
            )
            .await;
        assert!(status.is_client_error(), "{patch}: {e}");
        assert_eq!(e["error"]["field"], field, "{patch}: {e}");
    }
    let (_, e) = s
        .call(
            Method::PATCH,
            "/teams/demo/plugins/p?dry_run=true",
            Some(json!({"config_groups": [{"name": "g", "items": [{"name": "bad-name"}]}]})),
        )
        .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config_groups[0].items[0].name: invalid env variable name `bad-name`"),
        "a patch's parse error names the path, as a POST's does: {e}"
    );
    assert_eq!(s.snapshot("demo").await, before, "nothing was saved");
}
