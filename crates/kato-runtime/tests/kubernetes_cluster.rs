//! The Kubernetes driver against a real cluster: runs when `KATO_TEST_KUBECONFIG` names a
//! kubeconfig (its current context is used), and is skipped with a note otherwise.
//!
//! It deploys a rendered component with a sidecar plug-in into a fresh team namespace, waits for
//! it to run, reads its status and logs, redeploys it without the plug-in, stops it, and deletes
//! the namespace. `KATO_TEST_IMAGE` picks the image both containers run (a shell and `sleep`;
//! `busybox:1.36` by default).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kato_runtime::{
    ComponentRef, ComponentState, ComponentStatus, ContainerRole, KubernetesRuntime, LogsRequest, Runtime,
};
use kube::api::{Api, DeleteParams, ListParams};

const DEADLINE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(2);

fn kubeconfig() -> Option<PathBuf> {
    match std::env::var_os("KATO_TEST_KUBECONFIG") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"note: KATO_TEST_KUBECONFIG is not set: the Kubernetes cluster test is skipped\n",
            );
            None
        }
    }
}

fn workload(team: &str, image: &str, with_plugin: bool) -> kato_render::Rendered {
    let mut yaml = format!(
        "team: {team}
component:
  name: web
  image: {image}
  command: \"echo app-started; exec sleep 3600\"
  ports: [{{port: 8080, protocol: http}}]
  memory_mib: 64
"
    );
    if with_plugin {
        yaml.push_str(&format!(
            "plugins:
  - token: tok-echo-0001
    version:
      number: 1
      status: succeeded
      image: {image}
      spec:
        name: echo
        kind: general
        source: {{image: \"{image}\"}}
        command: [sh, -c, \"echo plugin-started; exec sleep 3600\"]
    installation:
      plugin: echo
      version: 1
      enabled: true
      memory_mib: 32
      revision: 1
"
        ));
    }
    common::render(&yaml)
}

/// Watches the component's status until `done` says so or the deadline passes.
async fn wait_for(
    rt: &KubernetesRuntime,
    c: ComponentRef<'_>,
    what: &str,
    done: impl Fn(&ComponentStatus) -> bool,
) -> ComponentStatus {
    let mut statuses = Box::pin(rt.watch_status(c));
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(status) = statuses.next().await {
            let status = status.expect("status");
            if done(&status) {
                return Some(status);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(status)) => status,
        _ => panic!("component not {what} within {DEADLINE:?}: {:#?}", rt.status(c).await),
    }
}

async fn log_text(rt: &KubernetesRuntime, c: ComponentRef<'_>, container: Option<&str>) -> String {
    let request = LogsRequest {
        container: container.map(str::to_owned),
        tail: Some(50),
        follow: false,
    };
    let lines: Vec<_> = rt.logs(c, request).await.expect("logs").collect().await;
    lines
        .into_iter()
        .map(|l| String::from_utf8(l.expect("a log line").to_vec()).unwrap())
        .collect()
}

async fn lifecycle(rt: KubernetesRuntime, client: kube::Client, team: String, image: String) {
    let c = ComponentRef {
        team: &team,
        component: "web",
    };

    let version = rt.server_version().await.expect("the cluster answers");
    assert!(version.starts_with('v'), "{version}");
    rt.deploy(c, &workload(&team, &image, true))
        .await
        .expect("first deploy");
    let status = wait_for(&rt, c, "running", |s| s.state == ComponentState::Running).await;
    let pod = &status.pods[0];
    assert_eq!(
        pod.annotations.get("version.plugin.kato/echo").map(String::as_str),
        Some("1")
    );
    let names: Vec<(&str, ContainerRole)> = pod.containers.iter().map(|c| (c.name.as_str(), c.role)).collect();
    assert!(names.contains(&("web", ContainerRole::App)), "{names:?}");
    assert!(names.contains(&("plugin-echo", ContainerRole::Plugin)), "{names:?}");

    // Logs of the app (the default) and of the plug-in.
    let start = Instant::now();
    loop {
        let (app, plugin) = (
            log_text(&rt, c, None).await,
            log_text(&rt, c, Some("plugin-echo")).await,
        );
        if app.contains("app-started") && plugin.contains("plugin-started") {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "logs never showed the start lines: {app:?} {plugin:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let request = LogsRequest {
        container: Some("plugin-echo".into()),
        tail: Some(1),
        follow: true,
    };
    let mut follow = rt.logs(c, request).await.expect("follow logs");
    let first = tokio::time::timeout(DEADLINE, follow.next())
        .await
        .expect("a followed line")
        .expect("the stream has a line")
        .expect("a log line");
    assert_eq!(&first[..], b"plugin-started\n");
    drop(follow);

    // Redeploy is idempotent; then without the plug-in its Secret goes.
    rt.deploy(c, &workload(&team, &image, true))
        .await
        .expect("same deploy again");
    rt.deploy(c, &workload(&team, &image, false))
        .await
        .expect("deploy without the plug-in");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &team);
    let left = secrets
        .list(&ListParams::default().labels(&KubernetesRuntime::owned_selector(c)))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "the plug-in's Secret is left: {:?}", left.items);
    wait_for(&rt, c, "running without the plug-in", |s| {
        s.state == ComponentState::Running
            && s.pods.len() == 1
            && s.pods[0].containers.iter().all(|c| c.role == ContainerRole::App)
    })
    .await;

    rt.stop(c).await.expect("stop");
    wait_for(&rt, c, "stopped", |s| {
        s.state == ComponentState::Stopped && s.pods.is_empty()
    })
    .await;
    rt.stop(c).await.expect("stopping a stopped component");
}

#[tokio::test]
async fn a_component_runs_reports_logs_and_stops_on_a_cluster() {
    let Some(path) = kubeconfig() else { return };
    let image = std::env::var("KATO_TEST_IMAGE").unwrap_or_else(|_| "busybox:1.36".into());
    let team = format!("kato-test-{}", std::process::id());
    let rt = KubernetesRuntime::from_config(Some(path.clone()))
        .await
        .expect("a client for the test cluster");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    let outcome = tokio::spawn(lifecycle(rt, client.clone(), team.clone(), image)).await;

    // The team's namespace goes whatever happened.
    let namespaces: Api<Namespace> = Api::all(client);
    if let Err(e) = namespaces.delete(&team, &DeleteParams::background()).await {
        eprintln!("could not delete the test namespace {team}: {e}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

#[tokio::test]
async fn a_kubeconfig_that_is_not_there_is_a_clear_error() {
    let err = KubernetesRuntime::from_config(Some("/nonexistent/kubeconfig".into()))
        .await
        .expect_err("no kubeconfig");
    let text = err.to_string();
    assert!(
        text.contains("cannot read the kubeconfig /nonexistent/kubeconfig"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_an_engine_error_naming_the_call() {
    // A kubeconfig whose server nothing listens on: the client builds, the first call fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: default}}}}]
current-context: x
"
        ),
    )
    .unwrap();
    let rt = KubernetesRuntime::from_config(Some(path)).await.expect("a client");
    let c = ComponentRef {
        team: "shop",
        component: "web",
    };
    let err = rt.status(c).await.expect_err("nothing answers");
    assert!(
        matches!(
            err,
            kato_runtime::RuntimeError::Engine {
                engine: "kubernetes",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("list pods of shop/web"), "{err}");
}
