//! Components with their plug-ins on the real podman engine, through the API (DESIGN §9).
//!
//! Images are busybox-static imported into podman (no network pull) and pushed to the test
//! registry. Every test works in a team of its own and removes its pods, even when it fails.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::Server;
use kato_runtime::TargetKind;
use serde_json::{Value, json};

use common::podman::{Cleanup, checked, podman};

const BASE: &str = "localhost/kato-e2e/busybox";

/// Imports busybox-static as `BASE:1` and `BASE:2` (the same files plus a marker, so another
/// digest), once per machine.
fn base_images() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for tag in ["1", "2"] {
            let image = format!("{BASE}:{tag}");
            if podman(&["image", "exists", &image]).status.success() {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            for d in ["bin", "tmp", "var/log/nginx", "data"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
            for applet in ["sh", "sleep", "echo", "cat", "tail", "head", "env", "grep", "true"] {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
            std::fs::write(root.join("version"), tag).unwrap();
            let tar = dir.path().join("image.tar");
            let ok = std::process::Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .unwrap();
            assert!(ok.success());
            checked(&["import", "--quiet", tar.to_str().unwrap(), &image]);
        }
    });
}

struct E2e {
    s: Server,
    team: String,
    _cleanup: Cleanup,
}

/// Waits without ever finishing before SIGTERM asks it to.
const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

impl E2e {
    async fn start(team: &str) -> E2e {
        // The server's deploys and stops, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("kato_server=info,kato_runtime=info")
            .with_test_writer()
            .try_init();
        base_images();
        let s = Server::start_on(TargetKind::Podman).await;
        s.team(team).await;
        E2e {
            s,
            team: team.to_owned(),
            _cleanup: Cleanup(team.to_owned()),
        }
    }

    /// Pushes `BASE:tag` to the test registry as `repo:tag`; returns the reference.
    fn push(&self, repo: &str, tag: &str) -> String {
        let target = format!("{}/{repo}:{tag}", self.s.registry.host());
        checked(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            &format!("{BASE}:{tag}"),
            &format!("docker://{target}"),
        ]);
        target
    }

    fn path(&self, rest: &str) -> String {
        format!("/teams/{}{rest}", self.team)
    }

    async fn plugin(&self, name: &str, kind: &str, command: &str, extra: Value) -> Value {
        let image = self.push(&format!("e2e/{name}"), "1");
        let mut spec =
            json!({"name": name, "kind": kind, "source": {"image": image}, "command": command, "memory_mib": 16});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        self.s.plugin(&self.team, spec).await
    }

    async fn component(&self, name: &str, command: &str, extra: Value) {
        let image = self.push("e2e/app", "1");
        let mut spec = json!({"name": name, "image": image, "command": command, "memory_mib": 64,
                              "volumes": [{"name": "data", "path": "/data"}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        self.s
            .ok(Method::POST, &self.path("/components"), Some(spec), StatusCode::CREATED)
            .await;
    }

    async fn install(&self, component: &str, plugin: &str, body: Value) -> Value {
        let (status, v) = self
            .s
            .call(
                Method::PUT,
                &self.path(&format!("/components/{component}/plugins/{plugin}")),
                Some(body),
            )
            .await;
        assert!(status.is_success(), "install answered {status}: {v}");
        v
    }

    async fn deploy(&self, component: &str) -> Value {
        self.s
            .ok(
                Method::POST,
                &self.path(&format!("/components/{component}/deploy")),
                None,
                StatusCode::OK,
            )
            .await
    }

    async fn stop(&self, component: &str) {
        let v = self
            .s
            .ok(
                Method::POST,
                &self.path(&format!("/components/{component}/stop")),
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["state"], "stopped", "{v}");
        let team = format!("label=kato/team={}", self.team);
        let label = format!("label=kato/component={component}");
        let pods = checked(&[
            "pod",
            "ls",
            "--filter",
            &team,
            "--filter",
            &label,
            "--format",
            "{{.Name}}",
        ]);
        assert!(pods.trim().is_empty(), "left behind: {pods}");
    }

    async fn status(&self, component: &str) -> Value {
        self.s
            .ok(
                Method::GET,
                &self.path(&format!("/components/{component}/status")),
                None,
                StatusCode::OK,
            )
            .await
    }

    /// Polls status until `done` holds, for at most 90 s.
    async fn wait(&self, component: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.status(component).await;
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; status: {s:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn logs(&self, component: &str, container: &str) -> String {
        let (status, text) = self
            .s
            .raw(
                Method::GET,
                &format!(
                    "/api/v1{}",
                    self.path(&format!("/components/{component}/logs?container={container}"))
                ),
                Some(&self.s.admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        text
    }

    /// Polls a container's logs until they contain `needle`, for at most 60 s.
    async fn wait_logs(&self, component: &str, container: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.logs(component, container).await;
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "{container} never logged {needle:?}: {text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn container<'v>(status: &'v Value, name: &str) -> Option<&'v Value> {
    status["pods"]
        .as_array()?
        .iter()
        .flat_map(|p| p["containers"].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
}

fn running(status: &Value) -> bool {
    status["state"] == "running"
}

/// (a) The docs' log-collection example: the plug-in reads the app's log on the shared volume.
#[tokio::test]
async fn a_log_collector_reads_the_apps_log_through_the_shared_volume() {
    let e = E2e::start("e2ea").await;
    e.plugin(
        "logtail",
        "general",
        &format!("env; tail -F /var/log/nginx/access.log & {IDLE}"),
        json!({"config_groups": [{"name": "logtail", "items": [
            {"name": "ALIYUN_LOGTAIL_USER_ID"}, {"name": "ALIYUN_LOGTAIL_USER_DEFINED_ID"},
            {"name": "ALIYUN_LOGTAIL_CONFIG", "default": "/etc/ilogtail/conf/cn-hangzhou/ilogtail_config.json"},
            {"name": "ALIYUN_LOG_ENV_TAGS", "default": "_pod_name_"}]}]}),
    )
    .await;
    e.component(
        "nginx",
        "env; trap 'exit 0' TERM; while true; do echo \"GET /index.html 200\" >> /var/log/nginx/access.log; sleep 1 & wait; done",
        json!({"env": [{"name": "APP_MODE", "value": "demo"}], "volumes": [{"name": "nginx-log", "path": "/var/log/nginx"}]}),
    )
    .await;
    e.install(
        "nginx",
        "logtail",
        json!({"values": {"base": {"ALIYUN_LOGTAIL_USER_ID": "1234567890", "ALIYUN_LOGTAIL_USER_DEFINED_ID": "nginx-log"}}}),
    )
    .await;
    e.deploy("nginx").await;
    let st = e.wait("nginx", "running", running).await;
    let plugin = container(&st, "plugin-logtail").unwrap();
    assert_eq!(
        (plugin["plugin"]["version"].as_u64(), plugin["role"].as_str()),
        (Some(1), Some("plugin"))
    );

    let logs = e.wait_logs("nginx", "plugin-logtail", "GET /index.html 200").await;
    for var in [
        "ALIYUN_LOGTAIL_USER_ID=1234567890",
        "ALIYUN_LOGTAIL_USER_DEFINED_ID=nginx-log",
        "ALIYUN_LOGTAIL_CONFIG=/etc/ilogtail/conf/cn-hangzhou/ilogtail_config.json",
        "ALIYUN_LOG_ENV_TAGS=_pod_name_",
        "APP_MODE=demo",
        "KATO_PLUGIN=logtail",
    ] {
        assert!(logs.contains(var), "the plug-in's env lacks {var}: {logs}");
    }
    let app = e.wait_logs("nginx", "nginx", "APP_MODE=demo").await;
    assert!(!app.contains("ALIYUN_") && !app.contains("KATO_PLUGIN"), "{app}");
    e.stop("nginx").await;
}

/// (b) An init plug-in runs before the app; one that fails keeps the app from starting.
#[tokio::test]
async fn init_plugins_run_first_and_their_failure_is_reported() {
    let e = E2e::start("e2eb").await;
    e.plugin("seed", "init", "echo seeded > /data/marker", json!({})).await;
    e.plugin("broken", "init", "echo cannot migrate; exit 3", json!({}))
        .await;
    e.component("web", &format!("cat /data/marker; {IDLE}"), json!({}))
        .await;
    e.install("web", "seed", json!({})).await;
    e.deploy("web").await;
    e.wait("web", "running", running).await;
    e.wait_logs("web", "web", "seeded").await;

    e.component("api", IDLE, json!({})).await;
    e.install("api", "broken", json!({})).await;
    e.deploy("api").await;
    let st = e.wait("api", "failed", |s| s["state"] == "failed").await;
    let init = container(&st, "plugin-broken").unwrap();
    assert_eq!(
        (init["exit_code"].as_i64(), init["reason"].as_str()),
        (Some(3), Some("InitFailed")),
        "{st:#}"
    );
    assert_ne!(container(&st, "api").unwrap()["state"], "running");
    assert!(st["message"].as_str().unwrap().contains("plugin-broken"), "{st:#}");
    assert!(e.logs("api", "plugin-broken").await.contains("cannot migrate"));
    e.stop("web").await;
    e.stop("api").await;
}

/// (c) A plug-in over its memory limit is OOM-killed; the app keeps running.
#[tokio::test]
async fn a_plugin_over_its_memory_is_oom_killed_alone() {
    let e = E2e::start("e2ec").await;
    e.plugin("hog", "general", "exec tail -n 1 /dev/zero", json!({})).await;
    e.component("web", IDLE, json!({})).await;
    e.install("web", "hog", json!({"memory_mib": 32})).await;
    e.deploy("web").await;
    let st = e
        .wait("web", "the plug-in OOM-killed", |s| {
            container(s, "plugin-hog").is_some_and(|c| c["reason"] == "OOMKilled")
        })
        .await;
    let app = container(&st, "web").unwrap();
    assert_eq!(app["state"], "running", "{st:#}");
    assert_ne!(app["reason"], "OOMKilled");
    e.stop("web").await;
}

/// (d) Disabling removes the plug-in's container and keeps its values; enabling brings them back.
#[tokio::test]
async fn disabling_and_enabling_a_plugin_redeploys_with_the_same_values() {
    let e = E2e::start("e2ed").await;
    e.plugin(
        "echo",
        "general",
        &format!("echo greeting=$GREETING; {IDLE}"),
        json!({"config_groups": [{"name": "env", "items": [{"name": "GREETING"}]}]}),
    )
    .await;
    e.component("web", IDLE, json!({})).await;
    e.install("web", "echo", json!({"values": {"base": {"GREETING": "hello"}}}))
        .await;
    e.deploy("web").await;
    e.wait("web", "the plug-in running", |s| {
        running(s) && container(s, "plugin-echo").is_some()
    })
    .await;
    e.wait_logs("web", "plugin-echo", "greeting=hello").await;

    let off = e.install("web", "echo", json!({"enabled": false})).await;
    assert_eq!(off["values"]["base"]["GREETING"], "hello");
    e.wait("web", "the plug-in gone", |s| {
        running(s) && container(s, "plugin-echo").is_none()
    })
    .await;

    e.install("web", "echo", json!({"enabled": true})).await;
    e.wait("web", "the plug-in back", |s| {
        running(s) && container(s, "plugin-echo").is_some()
    })
    .await;
    e.wait_logs("web", "plugin-echo", "greeting=hello").await;
    e.stop("web").await;
}

/// (e) Upgrading an installation to version 2 runs version 2's digest.
#[tokio::test]
async fn upgrading_runs_the_new_versions_digest() {
    let e = E2e::start("e2ee").await;
    let v1 = e
        .plugin("side", "general", &format!("cat /version; {IDLE}"), json!({}))
        .await;
    let image2 = e.push("e2e/side", "2");
    e.s.ok(
        Method::PATCH,
        &e.path("/plugins/side"),
        Some(json!({"source": {"image": image2}})),
        StatusCode::OK,
    )
    .await;
    let v2 =
        e.s.ok(
            Method::POST,
            &e.path("/plugins/side/versions"),
            None,
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v2["status"], "succeeded", "{v2}");
    let (d1, d2) = (v1["image"].as_str().unwrap(), v2["image"].as_str().unwrap());
    assert_ne!(d1, d2);

    e.component("web", IDLE, json!({})).await;
    e.install("web", "side", json!({"version": 1})).await;
    e.deploy("web").await;
    e.wait("web", "version 1", |s| {
        container(s, "plugin-side").is_some_and(|c| c["image"] == d1 && c["state"] == "running")
    })
    .await;
    e.install("web", "side", json!({"version": 2})).await;
    let st = e
        .wait("web", "version 2", |s| {
            container(s, "plugin-side").is_some_and(|c| c["image"] == d2 && c["state"] == "running")
        })
        .await;
    assert_eq!(container(&st, "plugin-side").unwrap()["plugin"]["version"], 2);
    e.wait_logs("web", "plugin-side", "2").await;
    e.stop("web").await;
}

/// (f) Uninstalling an init plug-in removes it on the automatic redeploy.
#[tokio::test]
async fn uninstalling_an_init_plugin_removes_it() {
    let e = E2e::start("e2ef").await;
    e.plugin("seed", "init", "echo seeded > /data/marker", json!({})).await;
    e.component(
        "web",
        &format!("if [ -f /data/marker ]; then echo has-marker; else echo no-marker; fi; {IDLE}"),
        json!({}),
    )
    .await;
    e.install("web", "seed", json!({})).await;
    e.deploy("web").await;
    e.wait("web", "running with the init plug-in", |s| {
        running(s) && container(s, "plugin-seed").is_some()
    })
    .await;
    e.wait_logs("web", "web", "has-marker").await;

    e.s.ok(
        Method::DELETE,
        &e.path("/components/web/plugins/seed"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    e.wait("web", "running without it", |s| {
        running(s) && container(s, "plugin-seed").is_none()
    })
    .await;
    e.wait_logs("web", "web", "no-marker").await;
    e.stop("web").await;
}

/// (g) Images that are gone or cannot be pulled end in a clear failed status, not a hang.
#[tokio::test]
async fn images_that_cannot_be_pulled_fail_clearly() {
    let e = E2e::start("e2eg").await;
    // An image this machine never pulled, deleted from the registry after its version pinned it.
    let pushed = e.s.registry.push_image("e2e/gone", "1").await;
    let v =
        e.s.plugin(
            &e.team,
            json!({"name": "gone", "kind": "general", "source": {"image": pushed.image.to_string()}}),
        )
        .await;
    let pinned = v["image"].as_str().unwrap().to_owned();
    let out = std::process::Command::new("skopeo")
        .args(["delete", "--tls-verify=false", &format!("docker://{pinned}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    e.component("web", IDLE, json!({})).await;
    e.install("web", "gone", json!({})).await;
    let st = e.deploy("web").await;
    assert_eq!(st["state"], "failed", "{st:#}");
    let c = container(&st, "plugin-gone").unwrap();
    assert_eq!(c["reason"], "ErrImagePull", "{st:#}");
    assert!(st["error"].as_str().unwrap().contains("plugin-gone"), "{st:#}");
    // The same answer later, from the status endpoint.
    assert_eq!(e.status("web").await["state"], "failed");

    e.s.ok(
        Method::POST,
        &e.path("/components"),
        Some(json!({"name": "api", "image": "127.0.0.1:9/e2e/nowhere:1", "command": IDLE})),
        StatusCode::CREATED,
    )
    .await;
    let st = e.deploy("api").await;
    assert_eq!(st["state"], "failed", "{st:#}");
    assert_eq!(container(&st, "api").unwrap()["reason"], "ErrImagePull", "{st:#}");
    e.stop("web").await;
    e.stop("api").await;
}

/// A server that renders only refuses to deploy, and changes nothing.
#[tokio::test]
async fn a_render_only_server_refuses_to_deploy() {
    let s = Server::start().await;
    s.team("e2en").await;
    let image = s.image("e2en/app").await;
    s.ok(
        Method::POST,
        "/teams/e2en/components",
        Some(json!({"name": "web", "image": image})),
        StatusCode::CREATED,
    )
    .await;
    let (status, v) = s.call(Method::POST, "/teams/e2en/components/web/deploy", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--target podman"),
        "{v}"
    );
    let st = s
        .ok(Method::GET, "/teams/e2en/components/web/status", None, StatusCode::OK)
        .await;
    assert_eq!((st["state"].as_str(), st["desired"].as_str()), (Some("stopped"), None));
}

/// A deploy that failed because the image was not there yet is retried on its own: once the
/// image is pushed, the component runs without anyone asking again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deploy_is_retried_until_the_image_arrives() {
    let e = E2e::start("e2e-retry").await;
    e.s.state.reconciler.set_retry_base(Duration::from_millis(200));
    let image = format!("{}/e2e/late:1", e.s.registry.host());
    let spec = json!({"name": "web", "image": image, "command": IDLE, "memory_mib": 64});
    e.s.ok(Method::POST, &e.path("/components"), Some(spec), StatusCode::CREATED)
        .await;
    e.deploy("web").await;
    let s = e
        .wait("web", "the failed deploy with its retry", |s| {
            s["state"] == "failed" && s["deploy"]["attempts"].as_u64() >= Some(1)
        })
        .await;
    let reason = s["deploy"]["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("late"), "the reason names the image: {s:#}");
    assert!(s["deploy"]["next_try_at"].is_string(), "{s:#}");

    e.push("e2e/late", "1");
    // Running, and the record says the retry succeeded (it is written just after the pod starts).
    e.wait("web", "the component running after the push, with no retry left", |s| {
        s["state"] == "running" && s["deploy"].is_null() && s["error"].is_null()
    })
    .await;
}
