//! The podman target on the real engine: deploy, redeploy, status, logs and stop.
//!
//! Images are made without any network pull: busybox-static imported into podman.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kato_render::{Object, Rendered};
use kato_runtime::{
    ComponentRef, ComponentState, ComponentStatus, ContainerState, LogsRequest, PodmanConfig, PodmanRuntime, Runtime,
};
use serde_json::json;

const IMAGE: &str = "localhost/kato-runtime-test/busybox:1";

fn podman(args: &[&str]) -> std::process::Output {
    std::process::Command::new("podman")
        .args(args)
        .env(
            "CONTAINERS_CONF",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/containers.conf"),
        )
        .output()
        .expect("podman runs")
}

/// Imports busybox-static as a local image, once per machine.
fn busybox_image() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if podman(&["image", "exists", IMAGE]).status.success() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat", "tail", "head", "true", "false"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
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
        let out = podman(&["import", "--quiet", tar.to_str().unwrap(), IMAGE]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
}

/// A command that stops at once on SIGTERM.
const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

fn container(name: &str, script: &str) -> serde_json::Value {
    json!({ "name": name, "image": IMAGE, "command": ["/bin/sh", "-c", script] })
}

fn rendered(team: &str, component: &str, containers: Vec<serde_json::Value>, init: Vec<serde_json::Value>) -> Rendered {
    let labels = json!({ "kato/team": team, "kato/component": component, "app.kubernetes.io/managed-by": "kato" });
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": { "name": format!("{component}-plugin-side"), "labels": labels },
        "data": { "TOKEN": "czNjcjN0" },
        "type": "Opaque",
    }))
    .unwrap();
    let mut spec = json!({
        "containers": containers,
        "restartPolicy": if init.is_empty() { "Always" } else { "OnFailure" },
    });
    if !init.is_empty() {
        spec["initContainers"] = json!(init);
    }
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {
            "name": format!("{team}-{component}"),
            "labels": labels,
            "annotations": { "version.plugin.kato/side": "2", "revision.plugin.kato/side": "5" },
        },
        "spec": spec,
    }))
    .unwrap();
    Rendered {
        objects: vec![Object::Secret(secret), Object::Pod(pod)],
    }
}

fn runtime(dir: &std::path::Path) -> PodmanRuntime {
    let mut config = PodmanConfig::new(dir);
    config.status_ttl = Duration::ZERO;
    config.play_timeout = Duration::from_secs(60);
    PodmanRuntime::new(config).unwrap()
}

/// Polls status until `done` holds, for at most 60 s.
async fn wait_for(
    rt: &PodmanRuntime,
    c: ComponentRef<'_>,
    what: &str,
    done: impl Fn(&ComponentStatus) -> bool,
) -> ComponentStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = rt.status(c).await.unwrap();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn logs(rt: &PodmanRuntime, c: ComponentRef<'_>, container: &str) -> String {
    let mut stream = rt
        .logs(
            c,
            LogsRequest {
                container: Some(container.to_owned()),
                tail: None,
                follow: false,
            },
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

/// The component's pods (by its labels) and podman secrets (by the names Kato gives them, and
/// gave them before).
fn leftovers(team: &str, component: &str) -> (String, String) {
    let pods = podman(&[
        "pod",
        "ls",
        "--filter",
        &format!("label=kato/team={team}"),
        "--filter",
        &format!("label=kato/component={component}"),
        "--format",
        "{{.Name}}",
    ]);
    let hash = kato_render::names::component_hash(team, component);
    let secrets = podman(&["secret", "ls", "--format", "{{.Name}}"]);
    let secrets = String::from_utf8_lossy(&secrets.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{hash}_")) || l.starts_with(&format!("{team}-{component}-")))
        .collect::<Vec<_>>()
        .join(",");
    (String::from_utf8_lossy(&pods.stdout).trim().to_owned(), secrets)
}

/// Removes a team's pods when dropped, whether the test passed or not.
struct Cleanup(&'static [&'static str]);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for team in self.0 {
            let label = format!("label=kato/team={team}");
            let pods = podman(&["pod", "ls", "--filter", &label, "--format", "{{.Name}}"]);
            for pod in String::from_utf8_lossy(&pods.stdout).lines() {
                podman(&["pod", "rm", "--force", "--time", "0", pod]);
            }
        }
    }
}

#[tokio::test]
async fn deploy_redeploy_status_logs_and_stop() {
    busybox_image();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let c = ComponentRef {
        team: "rtt1",
        component: "web",
    };
    let side = json!({
        "name": "plugin-side",
        "image": IMAGE,
        "command": ["/bin/sh", "-c", format!("echo token=$TOKEN url=$URL; {IDLE}")],
        "env": [
            { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "web-plugin-side", "key": "TOKEN" } } },
            { "name": "HOST", "value": "x" },
            // Kato expands plain references as the kubelet would, never a secret into a plain
            // value (the renderer puts such a value in the Secret).
            { "name": "URL", "value": "http://$(HOST)/?t=$(TOKEN)" },
        ],
    });
    let first = rendered(
        c.team,
        c.component,
        vec![container("web", &format!("echo app up; {IDLE}")), side],
        vec![],
    );
    rt.deploy(c, &first).await.unwrap();
    let s = wait_for(&rt, c, "running", |s| s.state == ComponentState::Running).await;
    assert_eq!(s.pods.len(), 1);
    let pod = &s.pods[0];
    // Its address on podman's pod network: what reaches a plug-in's own port (kato-perf's).
    assert!(pod.ip.is_some_and(|ip| !ip.is_loopback()), "{pod:#?}");
    assert_eq!(
        pod.annotations.get("version.plugin.kato/side").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        pod.annotations.get("revision.plugin.kato/side").map(String::as_str),
        Some("5")
    );
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "plugin-side"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = logs(&rt, c, "plugin-side").await;
        if text.contains("token=s3cr3t url=http://x/?t=$(TOKEN)") {
            break;
        }
        assert!(Instant::now() < deadline, "plug-in logs: {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Following streams the lines as they come; dropping the stream ends `podman logs -f`.
    let mut follow = rt
        .logs(
            c,
            LogsRequest {
                container: None,
                tail: Some(1),
                follow: true,
            },
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), follow.next())
        .await
        .expect("a first line in time")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"app up\n");
    drop(follow);

    let err = rt
        .logs(
            c,
            LogsRequest {
                container: Some("plugin-nope".into()),
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("plugin-side"), "{err}");

    // Redeploy without the plug-in: its container and secret go away.
    let mut second = rendered(c.team, c.component, vec![container("web", IDLE)], vec![]);
    second.objects.remove(0);
    rt.deploy(c, &second).await.unwrap();
    let s = wait_for(&rt, c, "running without the plug-in", |s| {
        s.state == ComponentState::Running && s.pods.iter().all(|p| p.containers.len() == 1)
    })
    .await;
    assert_eq!(s.pods[0].containers[0].name, "web");
    assert_eq!(leftovers(c.team, c.component).1, "");

    rt.stop(c).await.unwrap();
    assert_eq!(rt.status(c).await.unwrap().state, ComponentState::Stopped);
    assert_eq!(leftovers(c.team, c.component), (String::new(), String::new()));
    rt.stop(c).await.unwrap();
}

/// The next line of a followed log, waiting at most 60 s.
async fn next_line(stream: &mut kato_runtime::LogStream) -> Option<String> {
    let next = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the followed log moves on in time")?;
    Some(String::from_utf8(next.unwrap().to_vec()).unwrap())
}

#[tokio::test]
async fn a_followed_log_gets_lines_written_later_and_ends_when_the_container_stops() {
    busybox_image();
    let _cleanup = Cleanup(&["rtt6"]);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let c = ComponentRef {
        team: "rtt6",
        component: "web",
    };
    let script =
        "echo first; echo oops >&2; printf 'half '; echo line; trap 'echo bye; exit 0' TERM; sleep 100000 & wait";
    let app = rendered(c.team, c.component, vec![container("web", script)], vec![]);
    rt.deploy(c, &app).await.unwrap();
    wait_for(&rt, c, "running", |s| s.state == ComponentState::Running).await;
    let follow = |tail| {
        rt.logs(
            c,
            LogsRequest {
                container: None,
                tail,
                follow: true,
            },
        )
    };

    // stdout and stderr both (conmon reads their pipes in either order), a line written in
    // two pieces whole.
    let mut all = follow(None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next_line(&mut all).await.expect("the log goes on"));
    }
    let stdout: Vec<&String> = seen.iter().filter(|l| *l != "oops\n").collect();
    assert_eq!(stdout, ["first\n", "half line\n"], "{seen:?}");

    // A line written after following began arrives.
    let ctr = format!("{}-web", kato_render::names::podman_pod_name(c.team, c.component));
    let ctr = ctr.as_str();
    let out = podman(&["exec", ctr, "/bin/sh", "-c", "echo later > /proc/1/fd/1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(next_line(&mut all).await.as_deref(), Some("later\n"));

    // The last lines, then what comes.
    let mut last = follow(Some(2)).await.unwrap();
    let before = next_line(&mut last).await;
    assert_eq!(before.as_ref(), seen.last(), "the line before the last");
    assert_eq!(next_line(&mut last).await.as_deref(), Some("later\n"));
    drop(last);

    // The container stops: what it wrote on the way out arrives, then the stream ends.
    let out = podman(&["stop", "--time", "10", ctr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(next_line(&mut all).await.as_deref(), Some("bye\n"));
    assert_eq!(next_line(&mut all).await, None, "the stream ends with the container");
    rt.stop(c).await.unwrap();
}

#[tokio::test]
async fn a_failing_init_container_keeps_the_app_from_starting() {
    busybox_image();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let c = ComponentRef {
        team: "rtt2",
        component: "web",
    };
    let r = rendered(
        c.team,
        c.component,
        vec![container("web", IDLE)],
        vec![container("plugin-migrate", "echo migration failed; exit 3")],
    );
    rt.deploy(c, &r).await.unwrap();
    let s = wait_for(&rt, c, "failed", |s| s.state == ComponentState::Failed).await;
    let init = s.pods[0]
        .containers
        .iter()
        .find(|c| c.name == "plugin-migrate")
        .unwrap();
    assert!(init.init);
    assert_eq!(init.exit_code, Some(3));
    assert_eq!(init.reason.as_deref(), Some("InitFailed"));
    let app = s.pods[0].containers.iter().find(|c| c.name == "web").unwrap();
    assert_ne!(app.state, ContainerState::Running);
    assert!(s.message.unwrap().contains("plugin-migrate"));
    assert!(logs(&rt, c, "plugin-migrate").await.contains("migration failed"));

    // A passing init container runs first and is reported as completed.
    let r = rendered(
        c.team,
        c.component,
        vec![container("web", IDLE)],
        vec![container("plugin-migrate", "echo ok")],
    );
    rt.deploy(c, &r).await.unwrap();
    let s = wait_for(&rt, c, "running", |s| s.state == ComponentState::Running).await;
    let init = s.pods[0]
        .containers
        .iter()
        .find(|c| c.name == "plugin-migrate")
        .unwrap();
    assert_eq!(
        (init.state, init.reason.as_deref()),
        (ContainerState::Terminated, Some("Completed"))
    );
    rt.stop(c).await.unwrap();
    assert_eq!(leftovers(c.team, c.component), (String::new(), String::new()));
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_clearly() {
    busybox_image();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let c = ComponentRef {
        team: "rtt3",
        component: "web",
    };
    let mut bad = container("plugin-gone", IDLE);
    // A loopback port nothing listens on.
    bad["image"] =
        json!("127.0.0.1:9/kato/gone@sha256:0000000000000000000000000000000000000000000000000000000000000000");
    let r = rendered(c.team, c.component, vec![container("web", IDLE), bad], vec![]);
    let err = rt.deploy(c, &r).await.unwrap_err();
    assert!(err.to_string().contains("plugin-gone"), "{err}");
    let s = rt.status(c).await.unwrap();
    assert_eq!(s.state, ComponentState::Failed);
    let gone = s.pods[0].containers.iter().find(|c| c.name == "plugin-gone").unwrap();
    assert_eq!(gone.reason.as_deref(), Some("ErrImagePull"));
    rt.stop(c).await.unwrap();
    assert_eq!(rt.status(c).await.unwrap().state, ComponentState::Stopped);
    assert_eq!(leftovers(c.team, c.component), (String::new(), String::new()));
}

/// A component whose app says who it is and what it found in its volume, and whose plug-in
/// prints its secret: `who` tells them apart.
fn telling(team: &str, component: &str, who: &str) -> Rendered {
    let side = json!({
        "name": "plugin-side",
        "image": IMAGE,
        "command": ["/bin/sh", "-c", format!("echo side of {who} token=$TOKEN; {IDLE}")],
        "env": [{ "name": "TOKEN",
                  "valueFrom": { "secretKeyRef": { "name": format!("{component}-plugin-side"), "key": "TOKEN" } } }],
        "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
    });
    let mut app = container(
        component,
        &format!("echo app {who} found [$(cat /data/who)]; echo {who} > /data/who; {IDLE}"),
    );
    app["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut r = rendered(team, component, vec![app, side], vec![]);
    for o in &mut r.objects {
        match o {
            Object::Secret(s) => {
                let token = k8s_openapi::ByteString(format!("token-of-{who}").into_bytes());
                s.data = Some([("TOKEN".to_owned(), token)].into());
            }
            Object::Pod(p) => {
                let spec = p.spec.as_mut().unwrap();
                spec.volumes = Some(vec![
                    serde_json::from_value(json!({"name": "data", "emptyDir": {}})).unwrap(),
                ]);
            }
            _ => {}
        }
    }
    r
}

/// Team `a` / component `b-c` and team `a-b` / component `c` were both the pod `a-b-c`, with the
/// secret `a-b-c-plugin-side` and the volume `a-b-c-data`: the second deploy replaced the first
/// team's pod. Here both run side by side, each sees only its own, and stopping one leaves the
/// other running.
#[tokio::test]
async fn components_of_teams_whose_names_joined_alike_stay_apart() {
    busybox_image();
    let _cleanup = Cleanup(&["rtiso", "rtiso-b"]);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let a = ComponentRef {
        team: "rtiso",
        component: "b-c",
    };
    let b = ComponentRef {
        team: "rtiso-b",
        component: "c",
    };
    rt.deploy(a, &telling(a.team, a.component, "A")).await.unwrap();
    rt.deploy(b, &telling(b.team, b.component, "B")).await.unwrap();

    let running = |s: &ComponentStatus| s.state == ComponentState::Running;
    let sa = wait_for(&rt, a, "team a's component running", running).await;
    let sb = wait_for(&rt, b, "team a-b's component running", running).await;
    assert_eq!((sa.pods.len(), sb.pods.len()), (1, 1), "{sa:#?}\n{sb:#?}");
    assert_ne!(sa.pods[0].name, sb.pods[0].name);
    let names = |s: &ComponentStatus| s.pods[0].containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&sa), ["b-c", "plugin-side"]);
    assert_eq!(names(&sb), ["c", "plugin-side"]);

    // Each reads its own logs: its app, its own volume (found empty), its own secret.
    for (c, me, other) in [(a, "A", "B"), (b, "B", "A")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let app = logs(&rt, c, c.component).await;
            let side = logs(&rt, c, "plugin-side").await;
            assert!(
                !app.contains(other) && !side.contains(other),
                "{me} read {other}'s: {app} {side}"
            );
            if app.contains(&format!("app {me} found []"))
                && side.contains(&format!("side of {me} token=token-of-{me}"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "{me}'s logs: {app:?} {side:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Stopping one leaves the other running, in the same pod.
    rt.stop(b).await.unwrap();
    assert_eq!(rt.status(b).await.unwrap().state, ComponentState::Stopped);
    let sa2 = rt.status(a).await.unwrap();
    assert_eq!(sa2.state, ComponentState::Running, "{sa2:#?}");
    assert_eq!(sa2.pods[0].name, sa.pods[0].name);
    assert!(logs(&rt, a, "b-c").await.contains("app A found []"));
    let err = rt.logs(b, LogsRequest::default()).await.err().unwrap();
    assert!(err.to_string().contains("not running"), "{err}");

    rt.stop(a).await.unwrap();
    assert_eq!(leftovers(a.team, a.component), (String::new(), String::new()));
    assert_eq!(leftovers(b.team, b.component), (String::new(), String::new()));
}

/// A pod that holds the component's name but not its labels is someone else's: it is neither
/// read nor replaced. One named the old way (`{team}-{component}`) with the component's labels
/// is the component's, and a redeploy removes it with its secrets.
#[tokio::test]
async fn pods_are_told_apart_by_labels_not_names() {
    busybox_image();
    let _cleanup = Cleanup(&["rtiso2", "intruder"]);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let c = ComponentRef {
        team: "rtiso2",
        component: "web",
    };
    let yaml = |name: &str, team: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    kato/team: {team}\n    \
             kato/component: web\nspec:\n  containers:\n  - name: web\n    image: {IMAGE}\n    \
             command: [/bin/sh, -c, \"echo I am {team}; {IDLE}\"]\n"
        )
    };
    let play = |text: String| {
        let file = dir.path().join("by-hand.yaml");
        std::fs::write(&file, text).unwrap();
        let out = podman(&["kube", "play", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // Another team's pod under this component's name.
    let name = kato_render::names::podman_pod_name(c.team, c.component);
    play(yaml(&name, "intruder"));
    assert_eq!(rt.status(c).await.unwrap().state, ComponentState::Stopped);
    let err = rt.logs(c, LogsRequest::default()).await.err().unwrap();
    assert!(err.to_string().contains("not running"), "{err}");
    let web = rendered(c.team, c.component, vec![container("web", IDLE)], vec![]);
    let err = rt.deploy(c, &web).await.unwrap_err().to_string();
    assert!(err.contains("not rtiso2/web's"), "{err}");
    let labels = podman(&["pod", "inspect", "--format", "{{index .Labels \"kato/team\"}}", &name]);
    assert_eq!(
        String::from_utf8_lossy(&labels.stdout).trim(),
        "intruder",
        "the other's pod was replaced"
    );
    podman(&["pod", "rm", "--force", "--time", "0", &name]);

    // This component's pod and secret, named by an older Kato.
    play(yaml("rtiso2-web", "rtiso2"));
    let label = ["--label", "kato/team=rtiso2", "--label", "kato/component=web"];
    let mut create = vec!["secret", "create"];
    create.extend(label);
    let data = dir.path().join("old-secret");
    std::fs::write(&data, "{}").unwrap();
    create.extend(["rtiso2-web-plugin-old", data.to_str().unwrap()]);
    let out = podman(&create);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rt.status(c).await.unwrap().pods[0].name, "rtiso2-web");
    rt.deploy(c, &rendered(c.team, c.component, vec![container("web", IDLE)], vec![]))
        .await
        .unwrap();
    let s = wait_for(&rt, c, "running in the new pod", |s| s.state == ComponentState::Running).await;
    assert_eq!(
        s.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        [name.as_str()]
    );
    rt.stop(c).await.unwrap();
    assert_eq!(leftovers(c.team, c.component), (String::new(), String::new()));
}

/// The longest names the model allows (team and component of 63 characters, plug-in of 56,
/// volume of 63) still make names podman takes: a pod name that is a hostname, secret names of
/// at most 64 characters.
#[tokio::test]
async fn the_longest_names_still_run() {
    busybox_image();
    let team: &'static str = Box::leak(format!("rtlong-{}", "t".repeat(56)).into_boxed_str());
    let _cleanup = Cleanup(Box::leak(Box::new([team])));
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let component = "c".repeat(63);
    let c = ComponentRef {
        team,
        component: &component,
    };
    let plugin = format!("plugin-{}", "p".repeat(56));
    let secret = format!("{component}.{plugin}");
    let volume = "v".repeat(63);
    let mut side = container(&plugin, &format!("echo token=$TOKEN; {IDLE}"));
    side["env"] = json!([{ "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": secret, "key": "TOKEN" } } }]);
    side["volumeMounts"] = json!([{ "name": volume, "mountPath": "/data" }]);
    let mut r = rendered(team, &component, vec![container(&component, IDLE), side], vec![]);
    for o in &mut r.objects {
        match o {
            Object::Secret(s) => s.metadata.name = Some(secret.clone()),
            Object::Pod(p) => {
                let volumes = json!([{ "name": volume, "emptyDir": {} }]);
                p.spec.as_mut().unwrap().volumes = Some(serde_json::from_value(volumes).unwrap());
            }
            _ => {}
        }
    }
    rt.deploy(c, &r).await.unwrap();
    wait_for(&rt, c, "running", |s| s.state == ComponentState::Running).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs(&rt, c, &plugin).await.contains("token=s3cr3t") {
        assert!(Instant::now() < deadline, "the plug-in read its secret");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.stop(c).await.unwrap();
    assert_eq!(leftovers(c.team, c.component), (String::new(), String::new()));
}

/// podman 4 publishes a container's ports on the host's ports of the same numbers: two
/// components with one port, of two teams, would not both run. Kato publishes none (pods reach
/// each other on podman's network), so both run.
#[tokio::test]
async fn components_with_the_same_port_run_side_by_side() {
    busybox_image();
    let _cleanup = Cleanup(&["rtport", "rtport-b"]);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let refs = [
        ComponentRef {
            team: "rtport",
            component: "web",
        },
        ComponentRef {
            team: "rtport-b",
            component: "web",
        },
    ];
    for c in refs {
        let mut app = container(c.component, IDLE);
        app["ports"] = json!([{ "containerPort": 18631, "protocol": "TCP" }]);
        rt.deploy(c, &rendered(c.team, c.component, vec![app], vec![]))
            .await
            .unwrap();
    }
    let running = |s: &ComponentStatus| s.state == ComponentState::Running;
    for c in refs {
        wait_for(&rt, c, &format!("{}'s web running", c.team), running).await;
    }
    for c in refs {
        rt.stop(c).await.unwrap();
    }
}
