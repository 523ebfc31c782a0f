//! Status: pods and their containers mapped onto the component's state.

use http::Method;
use kato_runtime::{ComponentState, ContainerRole, ContainerState, Runtime};
use serde_json::{Value, json};

use crate::server::*;

/// A status: the driver asks for the pods and the Deployment at once, in either order.
async fn status_of(pods: Vec<Value>, deploy: Option<Value>) -> kato_runtime::ComponentStatus {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        let mut pods = Some(pods);
        let mut deploy = Some(deploy);
        for _ in 0..2 {
            let call = s.next().await;
            assert_eq!(call.method, Method::GET);
            match call.path.as_str() {
                "/api/v1/namespaces/shop/pods" if pods.is_some() => {
                    assert_eq!(call.query.get("labelSelector").map(String::as_str), Some(PODS));
                    let items = pods.take().unwrap();
                    call.reply(
                        200,
                        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
                    );
                }
                "/apis/apps/v1/namespaces/shop/deployments/web" if deploy.is_some() => match deploy.take().unwrap() {
                    Some(d) => call.reply(200, d),
                    None => call.reply(404, status_body(404, "NotFound", "deployments.apps \"web\" not found")),
                },
                other => panic!("unexpected request GET {other}"),
            }
        }
        s
    });
    let status = rt.status(WEB).await.expect("status succeeds");
    server_side.await.expect("the API server's script passes");
    status
}

#[tokio::test]
async fn status_of_a_running_component_with_a_native_sidecar() {
    let sidecar = json!({"name": "plugin-exporter", "image": "registry.kato.local/shop/exporter@sha256:f6", "restartPolicy": "Always"});
    let running = json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}});
    let p = pod(
        "web-7d9-abc",
        "Running",
        vec![sidecar],
        vec![container("web", "nginx:1.27")],
        vec![cstatus("plugin-exporter", true, 0, running.clone(), json!({}))],
        vec![cstatus("web", true, 0, running, json!({}))],
    );
    let status = status_of(
        vec![p],
        Some(deployment(
            json!({"version.plugin.kato/exporter": "5", "revision.plugin.kato/exporter": "1", "other": "x"}),
        )),
    )
    .await;
    assert_eq!(status.state, ComponentState::Running, "{status:?}");
    assert_eq!(status.message, None);
    let pod = &status.pods[0];
    assert_eq!(pod.name, "web-7d9-abc");
    assert_eq!(pod.phase, "Running");
    assert_eq!(
        pod.annotations.get("version.plugin.kato/exporter").map(String::as_str),
        Some("5")
    );
    assert_eq!(
        pod.annotations.get("revision.plugin.kato/exporter").map(String::as_str),
        Some("1")
    );
    assert!(!pod.annotations.contains_key("other"));
    let names: Vec<(&str, ContainerRole, bool)> = pod
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.role, c.init))
        .collect();
    assert_eq!(
        names,
        [
            ("plugin-exporter", ContainerRole::Plugin, true),
            ("web", ContainerRole::App, false)
        ]
    );
    assert!(
        pod.containers
            .iter()
            .all(|c| c.state == ContainerState::Running && c.ready)
    );
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.kato.local/shop/exporter@sha256:f6")
    );
}

#[tokio::test]
async fn status_shows_an_oom_killed_plugin_and_the_app_still_running() {
    let sidecar = json!({"name": "plugin-hog", "image": "hog", "restartPolicy": "Always"});
    let p = pod(
        "web-1",
        "Running",
        vec![sidecar],
        vec![container("web", "nginx:1.27")],
        vec![cstatus(
            "plugin-hog",
            false,
            3,
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        )],
        vec![cstatus("web", true, 0, json!({"running": {}}), json!({}))],
    );
    let status = status_of(vec![p], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Failed);
    let message = status.message.clone().unwrap();
    assert!(
        message.contains("plugin-hog") && message.contains("OOMKilled"),
        "{message}"
    );
    let hog = &status.pods[0].containers[0];
    assert_eq!(hog.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(hog.exit_code, Some(137));
    assert_eq!(hog.restarts, 3);
    assert_eq!(hog.state, ContainerState::Waiting);
    let web = &status.pods[0].containers[1];
    assert_eq!(
        (web.state, web.ready, web.reason.as_deref()),
        (ContainerState::Running, true, None)
    );
}

#[tokio::test]
async fn status_shows_an_image_pull_failure() {
    let p = pod(
        "web-1",
        "Pending",
        vec![],
        vec![container("web", "registry.kato.local/shop/gone:1")],
        vec![],
        vec![cstatus(
            "web",
            false,
            0,
            json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"registry.kato.local/shop/gone:1\""}}),
            json!({}),
        )],
    );
    let status = status_of(vec![p], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Failed);
    let message = status.message.unwrap();
    assert!(
        message.contains("ImagePullBackOff") && message.contains("gone:1"),
        "{message}"
    );
    let web = &status.pods[0].containers[0];
    assert_eq!(web.reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(web.role, ContainerRole::App);
}

#[tokio::test]
async fn status_shows_an_init_failure_and_the_app_that_waits_for_it() {
    let p = pod(
        "web-1",
        "Pending",
        vec![container("plugin-migrate", "migrate")],
        vec![container("web", "nginx:1.27")],
        vec![cstatus(
            "plugin-migrate",
            false,
            2,
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}),
            json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
        )],
        vec![cstatus(
            "web",
            false,
            0,
            json!({"waiting": {"reason": "PodInitializing"}}),
            json!({}),
        )],
    );
    let status = status_of(vec![p], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Failed);
    let migrate = &status.pods[0].containers[0];
    assert!(migrate.init);
    assert_eq!(migrate.reason.as_deref(), Some("InitFailed"));
    assert_eq!(migrate.exit_code, Some(3));
    assert!(migrate.message.as_deref().unwrap().contains("exit code 3"));
    let web = &status.pods[0].containers[1];
    assert_eq!(
        (web.state, web.reason.as_deref()),
        (ContainerState::Waiting, Some("PodInitializing"))
    );
    assert!(status.message.unwrap().contains("plugin-migrate: InitFailed"));

    // A completed init container does not keep the component from running.
    let p = pod(
        "web-1",
        "Running",
        vec![container("plugin-migrate", "migrate")],
        vec![container("web", "nginx:1.27")],
        vec![cstatus(
            "plugin-migrate",
            false,
            0,
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            json!({}),
        )],
        vec![cstatus("web", true, 0, json!({"running": {}}), json!({}))],
    );
    let status = status_of(vec![p], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Running, "{status:?}");
    assert_eq!(status.pods[0].containers[0].reason.as_deref(), Some("Completed"));
}

#[tokio::test]
async fn status_is_starting_while_containers_are_created_and_stopped_without_a_deployment() {
    let p = pod(
        "web-1",
        "Pending",
        vec![],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![cstatus(
            "web",
            false,
            0,
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        )],
    );
    let status = status_of(vec![p], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Starting);
    assert!(status.message.unwrap().contains("web-1"));

    let status = status_of(vec![], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Starting);

    let status = status_of(vec![], None).await;
    assert_eq!(status.state, ComponentState::Stopped);
    assert!(status.pods.is_empty());

    // A Deployment under the component's name that is not Kato's for it does not count.
    let mut foreign = deployment(json!({}));
    foreign["metadata"]["labels"] = json!({"kato/team": "shop", "kato/component": "web-other"});
    let status = status_of(vec![], Some(foreign)).await;
    assert_eq!(status.state, ComponentState::Stopped);
}

fn deployment_with_condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    let mut d = deployment(json!({}));
    d["status"] = json!({"conditions": [{"type": type_, "status": status, "reason": reason, "message": message}]});
    d
}

#[tokio::test]
async fn status_is_failed_when_the_deployment_cannot_create_pods() {
    let d = deployment_with_condition(
        "ReplicaFailure",
        "True",
        "FailedCreate",
        "pods \"web-7d9-x\" is forbidden: exceeded quota: team-quota, requested: memory=256Mi",
    );
    let status = status_of(vec![], Some(d)).await;
    assert_eq!(status.state, ComponentState::Failed);
    let message = status.message.unwrap();
    assert!(message.starts_with("deployment: FailedCreate: "), "{message}");
    assert!(message.contains("exceeded quota"), "{message}");

    // A rollout past its deadline, with a pod that waits without a failing reason.
    let d = deployment_with_condition(
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        "ReplicaSet \"web-7d9\" has timed out progressing.",
    );
    let p = pod(
        "web-1",
        "Pending",
        vec![],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![cstatus(
            "web",
            false,
            0,
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        )],
    );
    let status = status_of(vec![p], Some(d)).await;
    assert_eq!(status.state, ComponentState::Failed);
    assert!(status.message.unwrap().contains("ProgressDeadlineExceeded"));

    // A rollout that still progresses is only starting.
    let d = deployment_with_condition("Progressing", "True", "ReplicaSetUpdated", "");
    let status = status_of(vec![], Some(d)).await;
    assert_eq!(status.state, ComponentState::Starting);
}

#[tokio::test]
async fn status_says_why_a_pod_is_not_scheduled() {
    let mut p = pod(
        "web-1",
        "Pending",
        vec![],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![],
    );
    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."}]);
    let status = status_of(vec![p], Some(deployment(json!({})))).await;
    assert_eq!(status.state, ComponentState::Starting);
    assert_eq!(
        status.message.as_deref(),
        Some("pod web-1 is not scheduled: 0/3 nodes are available: 3 Insufficient memory.")
    );
    let web = &status.pods[0].containers[0];
    assert_eq!((web.state, web.ready), (ContainerState::Waiting, false));
}
