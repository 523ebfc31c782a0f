//! The default plug-in catalog through the API: `POST /teams/{team}/plugins/defaults` against a
//! defaults repo staged by `scripts/defaults` itself, each version built by Kato for real (git,
//! podman `FROM scratch`, a local registry).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::{Method, StatusCode};
use common::Server;
use kato_server::catalog::DefaultsRepo;
use serde_json::{Value, json};

const CATALOG: [(&str, &str); 5] = [
    ("inbound-net", "inbound-net"),
    ("outbound-net", "outbound-net"),
    ("inout-net", "inout-net"),
    ("perf-analysis", "perf-analysis"),
    ("logtail", "general"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `scripts/defaults` into a temp dir and answers the dir and the flags it printed. The
/// kato-mesh and kato-perf binaries are stand-ins, `/bin/true` (dynamically linked, like them), so
/// that the test need not build them in release mode: their libraries go through the same `ldd` step.
fn stage() -> (tempfile::TempDir, DefaultsRepo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("defaults-repo");
    let out = Command::new(repo_root().join("scripts/defaults"))
        .env("KATO_DEFAULTS_DIR", &repo)
        .env("KATO_MESH_BIN", "/bin/true")
        .env("KATO_PERF_BIN", "/bin/true")
        .output()
        .expect("scripts/defaults runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/defaults: {stderr}");
    let flags = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = flags.split_whitespace().collect();
    let repo = repo.to_str().unwrap();
    assert_eq!(
        words,
        ["--defaults-repo", repo, "--defaults-ref", "main"],
        "stdout holds the flags alone"
    );
    (
        dir,
        DefaultsRepo {
            repo: repo.to_owned(),
            git_ref: Some("main".into()),
        },
    )
}

async fn team_token(s: &Server, team: &str, name: &str) -> String {
    let t = s
        .ok(
            Method::POST,
            &format!("/teams/{team}/tokens"),
            Some(json!({ "name": name })),
            StatusCode::CREATED,
        )
        .await;
    t["token"].as_str().unwrap().to_owned()
}

async fn install_as(s: &Server, token: &str, team: &str) -> (StatusCode, Value) {
    s.call_as(token, Method::POST, &format!("/teams/{team}/plugins/defaults"), None)
        .await
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", kato_testkit::containers_conf());
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_is_created_built_from_the_staged_repo_and_installed_again_changes_nothing() {
    let (_staged, defaults) = stage();
    let s = Server::start_building(|b| b.defaults = Some(defaults.clone())).await;
    s.team("demo").await;
    s.team("other").await;
    let other = team_token(&s, "other", "intruder").await;
    let demo = team_token(&s, "demo", "ci job").await;

    // Another team's token: refused, nothing made.
    let (status, body) = install_as(&s, &other, "demo").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        s.ok(Method::GET, "/teams/demo/plugins", None, StatusCode::OK).await,
        json!([])
    );

    // A team that does not exist.
    let (status, body) = install_as(&s, &s.admin, "nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The team's own token (a local repo chosen by the operator, not the team).
    let (status, first) = install_as(&s, &demo, "demo").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let listed = first["plugins"].as_array().unwrap();
    assert_eq!(listed.len(), CATALOG.len(), "{first}");
    for ((name, kind), p) in CATALOG.iter().zip(listed) {
        assert_eq!(p["name"], *name, "{first}");
        assert_eq!(p["kind"], *kind, "{first}");
        assert_eq!(p["state"], "created", "{first}");
        assert_eq!(p["version"], json!({"number": 1, "status": "queued"}), "{first}");
    }

    let platform = s.registry.host().to_owned();
    for (name, _) in CATALOG {
        let v = s.finished_version("demo", name, 1).await;
        assert_eq!(v["status"], "succeeded", "{name}: {v}");
        let image = v["image"].as_str().unwrap();
        let pinned = format!("{platform}/platform/demo/{name}@sha256:");
        assert!(image.starts_with(&pinned), "{name}: {image}");
        assert_eq!(v["created_by"], "token ci job", "{name}");
        assert_eq!(v["provenance"]["repo"], defaults.repo.as_str(), "{name}");
        let dockerfile = match name {
            "logtail" => "examples/log-collector/Dockerfile",
            "perf-analysis" => "crates/kato-perf/Dockerfile",
            _ => "crates/kato-mesh/Dockerfile",
        };
        assert_eq!(v["provenance"]["dockerfile"], dockerfile, "{name}");
        assert_eq!(v["plugin"]["memory_mib"], 64, "{name}");
    }

    // What was created: the proxy's groups, and the log collector's example definition.
    let groups = |p: &Value| -> Vec<(String, String)> {
        p["config_groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["name"].as_str().unwrap().into(), g["meta"].as_str().unwrap().into()))
            .collect()
    };
    let item = |p: &Value, group: &str, item: &str| -> Value {
        let g = p["config_groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == group);
        let items = g.unwrap()["items"].as_array().unwrap();
        items.iter().find(|i| i["name"] == item).unwrap().clone()
    };
    let inout = s
        .ok(Method::GET, "/teams/demo/plugins/inout-net", None, StatusCode::OK)
        .await;
    assert_eq!(
        groups(&inout),
        [
            ("general".into(), "none".into()),
            ("inbound".into(), "component-port".into()),
            ("outbound".into(), "downstream-port".into())
        ]
    );
    assert_eq!(item(&inout, "general", "METRICS_PORT")["default"], "65533");
    assert_eq!(item(&inout, "outbound", "MaxConnections")["default"], "1024");
    assert_eq!(item(&inout, "outbound", "PROXY")["changeable"], false);
    assert_eq!(item(&inout, "inbound", "OPEN_LIMIT")["protocols"], json!(["http"]));
    let outbound = s
        .ok(Method::GET, "/teams/demo/plugins/outbound-net", None, StatusCode::OK)
        .await;
    assert_eq!(item(&outbound, "outbound", "MaxRequests")["default"], "10240");
    assert_eq!(
        item(&outbound, "outbound", "GrpcHealthServiceName")["protocols"],
        json!(["grpc"])
    );
    let inbound = s
        .ok(Method::GET, "/teams/demo/plugins/inbound-net", None, StatusCode::OK)
        .await;
    assert_eq!(
        groups(&inbound),
        [
            ("general".into(), "none".into()),
            ("inbound".into(), "component-port".into())
        ]
    );
    let logtail = s
        .ok(Method::GET, "/teams/demo/plugins/logtail", None, StatusCode::OK)
        .await;
    let example: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("examples/log-collector/plugin.yaml")).unwrap())
            .unwrap();
    assert_eq!(logtail["description"], example["spec"]["description"]);
    let groups_of = |v: &Value| -> Vec<kato_model::ConfigGroup> { serde_json::from_value(v.clone()).unwrap() };
    assert_eq!(
        groups_of(&logtail["config_groups"]),
        groups_of(&example["spec"]["config_groups"]),
        "the example's groups"
    );

    // Again: nothing created, nothing queued.
    let before = s.snapshot("demo").await;
    let (status, second) = install_as(&s, &s.admin, "demo").await;
    assert_eq!(status, StatusCode::OK, "{second}");
    for ((name, _), p) in CATALOG.iter().zip(second["plugins"].as_array().unwrap()) {
        assert_eq!(p["name"], *name);
        assert_eq!(p["state"], "kept", "{second}");
        assert_eq!(p["version"], json!({"number": 1, "status": "succeeded"}), "{second}");
    }
    assert_eq!(s.snapshot("demo").await, before, "a second call changes nothing");

    // The images run: the staged proxy image's binary finds its libraries and loader (the
    // stand-in exits 0), and the collector's has busybox's applets and its script.
    let image = |v: &Value| v["image"].as_str().unwrap().to_owned();
    let mesh = image(&s.finished_version("demo", "inbound-net", 1).await);
    let out = podman()
        .args(["run", "--rm", "--tls-verify=false", &mesh])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{mesh} runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let collector = image(&s.finished_version("demo", "logtail", 1).await);
    let out = podman()
        .args([
            "run",
            "--rm",
            "--tls-verify=false",
            "--entrypoint",
            "/bin/sh",
            &collector,
        ])
        .args(["-c", "command -v nc sed tail mkfifo && test -s /logtail.sh"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{collector}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = podman().args(["rmi", "--force", &mesh, &collector]).output();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_the_team_has_under_a_catalog_name_is_kept_untouched() {
    let (_staged, defaults) = stage();
    let s = Server::start_building(|b| b.defaults = Some(defaults)).await;
    s.team("kept").await;
    let image = s.image("kept/own-logtail").await;
    let own = json!({"name": "logtail", "kind": "general", "source": {"image": image}, "memory_mib": 32});
    s.ok(Method::POST, "/teams/kept/plugins", Some(own), StatusCode::CREATED)
        .await;
    let before = s
        .ok(Method::GET, "/teams/kept/plugins/logtail", None, StatusCode::OK)
        .await;

    let (status, body) = install_as(&s, &s.admin, "kept").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let states: Vec<(&str, &str)> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("inbound-net", "created"),
            ("outbound-net", "created"),
            ("inout-net", "created"),
            ("perf-analysis", "created"),
            ("logtail", "kept")
        ]
    );
    assert_eq!(
        body["plugins"][4]["version"],
        Value::Null,
        "nothing was built for it: {body}"
    );
    let after = s
        .ok(Method::GET, "/teams/kept/plugins/logtail", None, StatusCode::OK)
        .await;
    assert_eq!(after, before, "its draft is as it was");
    let versions = s
        .ok(
            Method::GET,
            "/teams/kept/plugins/logtail/versions",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(versions, json!([]), "and it has no version");
    // The ones created are built (so that none is left building when the test ends).
    for name in ["inbound-net", "outbound-net", "inout-net", "perf-analysis"] {
        assert_eq!(
            s.finished_version("kept", name, 1).await["status"],
            "succeeded",
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_defaults_repo_the_answer_names_the_flag_and_nothing_is_created() {
    let s = Server::start().await;
    s.team("demo").await;
    let before = s.snapshot("demo").await;
    let (status, body) = install_as(&s, &s.admin, "demo").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--defaults-repo"), "{message}");
    assert!(message.contains("scripts/defaults"), "{message}");
    assert_eq!(s.snapshot("demo").await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_named_defaults_is_still_read_edited_and_deleted() {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/defaults").await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "defaults", "kind": "general", "source": {"image": image}})),
        StatusCode::CREATED,
    )
    .await;
    let got = s
        .ok(Method::GET, "/teams/demo/plugins/defaults", None, StatusCode::OK)
        .await;
    assert_eq!(got["name"], "defaults");
    let patched = s
        .ok(
            Method::PATCH,
            "/teams/demo/plugins/defaults",
            Some(json!({"description": "mine"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(patched["description"], "mine");
    s.ok(Method::DELETE, "/teams/demo/plugins/defaults", None, StatusCode::OK)
        .await;
    s.ok(Method::GET, "/teams/demo/plugins/defaults", None, StatusCode::NOT_FOUND)
        .await;
}
