//! The Kubernetes driver against a mock API server (`tower-test`), scenario by scenario: each test
//! plays the API server's side request by request, checking method, path, query and body, and
//! answers as a cluster would.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kato_runtime::{
    ComponentRef, ComponentState, ContainerRole, ContainerState, KubernetesRuntime, LogsRequest, Runtime, RuntimeError,
};
use kube::client::Body;
use serde_json::{Value, json};

/// What the mock API server answers with: any body, streamed or whole.
type ResponseBody = BoxBody<bytes::Bytes, std::io::Error>;
type Handle = tower_test::mock::Handle<Request<Body>, Response<ResponseBody>>;

const WEB: ComponentRef<'static> = ComponentRef {
    team: "shop",
    component: "web",
};
const OWNED: &str = "app.kubernetes.io/managed-by=kato,kato/team=shop,kato/component=web";
const PODS: &str = "kato/team=shop,kato/component=web";
const TIMEOUT: Duration = Duration::from_secs(7);

fn runtime() -> (KubernetesRuntime, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
    let client = kube::Client::new(service, "default");
    (
        KubernetesRuntime::from_client(client).with_timeout(TIMEOUT),
        ApiServer(handle),
    )
}

/// The API server's side of the conversation.
struct ApiServer(Handle);

/// One request the driver made.
struct Call {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Option<Value>,
    respond: tower_test::mock::SendResponse<Response<ResponseBody>>,
}

impl ApiServer {
    async fn next(&mut self) -> Call {
        let (req, respond) = tokio::time::timeout(Duration::from_secs(30), self.0.next_request())
            .await
            .expect("the driver makes another request")
            .expect("the client is still there");
        let (parts, body) = req.into_parts();
        assert_granted(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or_default());
        let bytes = body.collect_bytes().await.unwrap();
        Call {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned()),
            body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).expect("a JSON body")),
            respond,
        }
    }

    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request (query {:?})",
            call.query
        );
        call
    }

    /// Server-side apply of `path`, under the field manager `kato`, forced; answers with the body.
    async fn expect_apply(&mut self, path: &str) -> Value {
        let call = self.expect(Method::PATCH, path).await;
        assert_eq!(call.query.get("fieldManager").map(String::as_str), Some("kato"));
        assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(call.content_type.as_deref(), Some("application/apply-patch+yaml"));
        let body = call.body.clone().expect("an apply has a body");
        call.reply(200, body.clone());
        body
    }

    /// A label-selected metadata list of the component's objects; answers with `names`.
    async fn expect_owned_list(&mut self, path: &str, names: &[&str]) {
        let call = self.expect(Method::GET, path).await;
        assert_eq!(call.query.get("labelSelector").map(String::as_str), Some(OWNED));
        let items: Vec<Value> = names
            .iter()
            .map(|n| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": n, "namespace": "shop"}}))
            .collect();
        call.reply(
            200,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
        );
    }

    async fn expect_delete(&mut self, path: &str, code: u16) {
        let call = self.expect(Method::DELETE, path).await;
        assert_eq!(
            call.body.as_ref().and_then(|b| b.get("propagationPolicy")),
            Some(&json!("Background"))
        );
        if code == 200 {
            call.reply(200, status_body(200, "Success", ""));
        } else {
            call.reply(code, status_body(code, "NotFound", "not found"));
        }
    }

    async fn expect_pod_list(&mut self, pods: Vec<Value>) {
        self.expect_pod_list_at("1", pods).await;
    }

    async fn expect_pod_list_at(&mut self, version: &str, pods: Vec<Value>) {
        let call = self.expect(Method::GET, "/api/v1/namespaces/shop/pods").await;
        assert_eq!(call.query.get("labelSelector").map(String::as_str), Some(PODS));
        assert_eq!(call.query.get("watch"), None);
        call.reply(
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version}, "items": pods}),
        );
    }

    /// The client is gone and asked nothing more.
    async fn expect_no_more(mut self) {
        if let Some((req, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

impl Call {
    fn reply(self, code: u16, body: Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(whole(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.respond.send_response(response);
    }
    fn reply_text(self, text: &str) {
        let response = Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(whole(text.as_bytes().to_vec()))
            .unwrap();
        self.respond.send_response(response);
    }
}

/// Every request the driver makes is one the ClusterRole of `deploy/rbac.yaml` grants: its
/// `group/resource` (subresource included) and verb (an apply needs patch, and create for an
/// object that is not there yet).
fn assert_granted(method: &Method, path: &str, query: &str) {
    static GRANTS: std::sync::OnceLock<Vec<(String, String, String)>> = std::sync::OnceLock::new();
    let grants = GRANTS.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/rbac.yaml")).unwrap();
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            if doc["kind"] != "ClusterRole" {
                continue;
            }
            for rule in doc["rules"].as_array().unwrap() {
                let strings = |k: &str| -> Vec<String> {
                    rule[k]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect()
                };
                for g in strings("apiGroups") {
                    for r in strings("resources") {
                        for v in strings("verbs") {
                            out.push((g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
        out
    });
    // /api/v1/… or /apis/GROUP/VERSION/…, then [namespaces/NS/]RESOURCE[/NAME[/SUB]].
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts[0] {
        "api" => ("", &parts[2..]),
        "apis" => (parts[1], &parts[3..]),
        _ => panic!("not an API path: {path}"),
    };
    let rest = if rest.len() > 2 && rest[0] == "namespaces" {
        &rest[2..]
    } else {
        rest
    };
    let (resource, named) = match rest {
        [r] => (r.to_string(), false),
        [r, _] => (r.to_string(), true),
        [r, _, sub] => (format!("{r}/{sub}"), true),
        _ => panic!("unexpected API path {path}"),
    };
    let verbs: &[&str] = match (method.as_str(), named) {
        ("GET", true) => &["get"],
        ("GET", false) if query.split('&').any(|p| p == "watch=true") => &["watch"],
        ("GET", false) => &["list"],
        ("POST", false) => &["create"],
        ("PATCH", true) => &["patch", "create"],
        ("DELETE", true) => &["delete"],
        _ => panic!("unexpected request {method} {path}"),
    };
    for verb in verbs {
        assert!(
            grants.iter().any(|(g, r, v)| g == group && *r == resource && v == verb),
            "deploy/rbac.yaml does not grant `{verb}` on `{group}/{resource}`, which {method} {path} needs"
        );
    }
}

fn whole(bytes: Vec<u8>) -> ResponseBody {
    Full::new(bytes::Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    let status = if code < 400 { "Success" } else { "Failure" };
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": status, "code": code, "reason": reason, "message": message})
}

/// Runs the driver's call and the API server's script together; returns the call's result.
async fn scenario<T, F, S>(server: ApiServer, call: F, script: impl FnOnce(ApiServer) -> S) -> T
where
    F: std::future::Future<Output = T>,
    S: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let server_side = tokio::spawn(script(server));
    let out = call.await;
    let server = server_side.await.expect("the API server's script passes");
    drop(server);
    out
}

#[tokio::test]
async fn first_deploy_creates_the_namespace_and_applies_every_object() {
    let rendered = common::web(Some(64));
    let expected: Vec<Value> = rendered
        .objects
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    let (rt, server) = runtime();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    scenario(server, rt.deploy(WEB, &rendered), move |mut s| async move {
        s.expect(Method::GET, "/api/v1/namespaces/shop")
            .await
            .reply(404, status_body(404, "NotFound", "namespaces \"shop\" not found"));
        let create = s.expect(Method::POST, "/api/v1/namespaces").await;
        let ns = create.body.clone().unwrap();
        assert_eq!(ns["metadata"]["name"], "shop");
        assert_eq!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kato");
        create.reply(201, ns);
        let mut b = Vec::new();
        b.push(
            s.expect_apply("/api/v1/namespaces/shop/secrets/web-plugin-exporter")
                .await,
        );
        b.push(s.expect_apply("/api/v1/namespaces/shop/services/web").await);
        b.push(s.expect_apply("/apis/apps/v1/namespaces/shop/deployments/web").await);
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web"])
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web-plugin-exporter"])
            .await;
        *seen.lock().unwrap() = b;
        s
    })
    .await
    .expect("deploy succeeds");

    // Each body is the rendered object itself, with its kind and apiVersion.
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies, expected);
    assert_eq!(bodies[0]["kind"], "Secret");
    assert_eq!(bodies[2]["apiVersion"], "apps/v1");
    assert_eq!(bodies[2]["metadata"]["namespace"], "shop");
}

#[tokio::test]
async fn redeploy_applies_the_new_render_into_the_existing_namespace() {
    let rendered = common::web(Some(128));
    let (rt, server) = runtime();
    scenario(server, rt.deploy(WEB, &rendered), |mut s| async move {
        s.expect(Method::GET, "/api/v1/namespaces/shop").await.reply(
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        );
        s.expect_apply("/api/v1/namespaces/shop/secrets/web-plugin-exporter")
            .await;
        s.expect_apply("/api/v1/namespaces/shop/services/web").await;
        let d = s.expect_apply("/apis/apps/v1/namespaces/shop/deployments/web").await;
        let plugin = &d["spec"]["template"]["spec"]["initContainers"][0];
        assert_eq!(plugin["name"], "plugin-exporter");
        assert_eq!(plugin["resources"]["limits"]["memory"], "128Mi");
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web"])
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web-plugin-exporter"])
            .await;
        s
    })
    .await
    .expect("redeploy succeeds");
}

#[tokio::test]
async fn deploy_deletes_what_the_component_no_longer_renders() {
    // The plug-in was uninstalled: its Secret goes, and so does a leftover Deployment.
    let rendered = common::web(None);
    assert!(rendered.objects.iter().all(|o| o.kind() != "Secret"));
    let (rt, server) = runtime();
    let (result, server) = {
        let server_side = tokio::spawn(async move {
            let mut s = server;
            s.expect(Method::GET, "/api/v1/namespaces/shop").await.reply(
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            );
            s.expect_apply("/api/v1/namespaces/shop/services/web").await;
            s.expect_apply("/apis/apps/v1/namespaces/shop/deployments/web").await;
            s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web", "web-old"])
                .await;
            s.expect_delete("/apis/apps/v1/namespaces/shop/deployments/web-old", 200)
                .await;
            s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
            s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web-plugin-exporter"])
                .await;
            // Deleted meanwhile by someone else: still what we wanted.
            s.expect_delete("/api/v1/namespaces/shop/secrets/web-plugin-exporter", 404)
                .await;
            s
        });
        let result = rt.deploy(WEB, &rendered).await;
        (result, server_side.await.expect("the API server's script passes"))
    };
    result.expect("deploy succeeds");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn stop_deletes_every_object_of_the_component_by_label() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web"])
            .await;
        s.expect_delete("/apis/apps/v1/namespaces/shop/deployments/web", 200)
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
        s.expect_delete("/api/v1/namespaces/shop/services/web", 200).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web-plugin-a", "web-plugin-b"])
            .await;
        s.expect_delete("/api/v1/namespaces/shop/secrets/web-plugin-a", 200)
            .await;
        s.expect_delete("/api/v1/namespaces/shop/secrets/web-plugin-b", 200)
            .await;
        s
    });
    rt.stop(WEB).await.expect("stop succeeds");
    let server = server_side.await.expect("the API server's script passes");

    // Stopping a stopped component finds nothing and deletes nothing.
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &[])
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &[]).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &[]).await;
        s
    });
    rt.stop(WEB).await.expect("stopping again succeeds");
    let server = server_side.await.unwrap();
    drop(rt);
    server.expect_no_more().await;
}

// ---------------------------------------------------------------------------------------------
// Status

fn container(name: &str, image: &str) -> Value {
    json!({"name": name, "image": image})
}

fn pod(
    name: &str,
    phase: &str,
    init: Vec<Value>,
    containers: Vec<Value>,
    init_statuses: Vec<Value>,
    statuses: Vec<Value>,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"kato/team": "shop", "kato/component": "web"}},
        "spec": {"initContainers": init, "containers": containers},
        "status": {"phase": phase, "initContainerStatuses": init_statuses, "containerStatuses": statuses},
    })
}

fn cstatus(name: &str, ready: bool, restarts: i32, state: Value, last: Value) -> Value {
    json!({"name": name, "ready": ready, "restartCount": restarts, "image": "x", "imageID": "", "state": state, "lastState": last})
}

fn deployment(annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
           "spec": {"selector": {"matchLabels": {"kato/team": "shop"}}, "template": {}}})
}

async fn status_of(pods: Vec<Value>, deploy: Option<Value>) -> kato_runtime::ComponentStatus {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(pods).await;
        let get = s
            .expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await;
        match deploy {
            Some(d) => get.reply(200, d),
            None => get.reply(404, status_body(404, "NotFound", "deployments.apps \"web\" not found")),
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
}

// ---------------------------------------------------------------------------------------------
// Logs

fn running_pod() -> Value {
    let sidecar = json!({"name": "plugin-exporter", "image": "exporter", "restartPolicy": "Always"});
    pod(
        "web-1",
        "Running",
        vec![sidecar],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![],
    )
}

async fn collect(stream: kato_runtime::LogStream) -> Vec<String> {
    stream
        .map(|l| String::from_utf8(l.expect("a log line").to_vec()).unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn logs_tail_a_container() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(vec![running_pod()]).await;
        let call = s.expect(Method::GET, "/api/v1/namespaces/shop/pods/web-1/log").await;
        let q = call.query.clone();
        assert_eq!(q.get("container").map(String::as_str), Some("plugin-exporter"));
        assert_eq!(q.get("tailLines").map(String::as_str), Some("2"));
        assert_eq!(q.get("follow"), None);
        call.reply_text("scraped 1\nscraped 2\n");
        s
    });
    let request = LogsRequest {
        container: Some("plugin-exporter".into()),
        tail: Some(2),
        follow: false,
    };
    let lines = collect(rt.logs(WEB, request).await.expect("logs")).await;
    assert_eq!(lines, ["scraped 1\n", "scraped 2\n"]);
    server_side.await.unwrap();
}

#[tokio::test]
async fn logs_follow_streams_the_app_container() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(vec![running_pod()]).await;
        let call = s.expect(Method::GET, "/api/v1/namespaces/shop/pods/web-1/log").await;
        assert_eq!(call.query.get("container").map(String::as_str), Some("web"));
        assert_eq!(call.query.get("follow").map(String::as_str), Some("true"));
        assert_eq!(call.query.get("tailLines"), None);
        // The body streams in pieces that do not align with lines.
        let (mut tx, body) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let body = BodyExt::boxed(StreamBody::new(body.map(|r| r.map(http_body::Frame::data))));
        call.respond
            .send_response(Response::builder().status(200).body(body).unwrap());
        use futures::SinkExt;
        tx.send(Ok("GET /a\nGE".into())).await.unwrap();
        tx.send(Ok("T /b\n".into())).await.unwrap();
        drop(tx);
        s
    });
    let request = LogsRequest {
        container: None,
        tail: None,
        follow: true,
    };
    let lines = collect(rt.logs(WEB, request).await.expect("logs")).await;
    assert_eq!(lines, ["GET /a\n", "GET /b\n"]);
    server_side.await.unwrap();
}

#[tokio::test]
async fn logs_name_the_containers_when_asked_for_an_unknown_one() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(vec![running_pod()]).await;
        s.expect_pod_list(vec![]).await;
        s
    });
    let request = LogsRequest {
        container: Some("plugin-nope".into()),
        ..Default::default()
    };
    match rt.logs(WEB, request).await {
        Err(RuntimeError::NoSuchContainer { name, known }) => {
            assert_eq!(name, "plugin-nope");
            assert_eq!(known, "plugin-exporter, web");
        }
        other => panic!("expected NoSuchContainer, got {:?}", other.map(|_| ())),
    }
    match rt.logs(WEB, LogsRequest::default()).await {
        Err(RuntimeError::NotRunning(c)) => assert_eq!(c, "web"),
        other => panic!("expected NotRunning, got {:?}", other.map(|_| ())),
    }
    server_side.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// API errors and timeouts

#[tokio::test]
async fn a_forbidden_namespace_read_is_a_clear_error_and_nothing_is_applied() {
    let rendered = common::web(Some(64));
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop").await.reply(
            403,
            status_body(
                403,
                "Forbidden",
                "namespaces \"shop\" is forbidden: User \"system:serviceaccount:kato-system:kato\" cannot get resource \"namespaces\"",
            ),
        );
        s
    });
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    let server = server_side.await.unwrap();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            RuntimeError::Engine {
                engine: "kubernetes",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("read namespace shop"), "{text}");
    assert!(text.contains("cannot get resource \"namespaces\""), "{text}");
    assert!(text.contains("403 Forbidden"), "{text}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_rejected_apply_stops_the_deploy_before_any_deletion() {
    let rendered = common::web(Some(64));
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop").await.reply(
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        );
        s.expect_apply("/api/v1/namespaces/shop/secrets/web-plugin-exporter")
            .await;
        s.expect_apply("/api/v1/namespaces/shop/services/web").await;
        s.expect(Method::PATCH, "/apis/apps/v1/namespaces/shop/deployments/web").await.reply(
            422,
            status_body(
                422,
                "Invalid",
                "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].resources.limits: Invalid value",
            ),
        );
        s
    });
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    let server = server_side.await.unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with("kubernetes failed: apply Deployment shop/web: "),
        "{text}"
    );
    assert!(
        text.contains("spec.template.spec.containers[0].resources.limits"),
        "{text}"
    );
    assert!(text.contains("422 Invalid"), "{text}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_podman_render_is_refused_before_any_call() {
    let mut rendered = common::web(None);
    let kato_render::Object::Deployment(d) = rendered.objects.pop().unwrap() else {
        panic!("a Deployment last")
    };
    let pod = k8s_openapi::api::core::v1::Pod {
        metadata: d.metadata.clone(),
        ..Default::default()
    };
    rendered.objects.push(kato_render::Object::Pod(pod));
    let (rt, server) = runtime();
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    assert!(err.to_string().contains("rendered for podman"), "{err}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_does_not_answer_is_a_timeout() {
    let (rt, mut server) = runtime();
    // The server takes the request and never answers; time is paused, so the deadline passes
    // as soon as nothing else can run.
    let held = tokio::spawn(async move {
        let call = server.expect(Method::GET, "/api/v1/namespaces/shop/pods").await;
        (server, call.respond)
    });
    let err = rt.status(WEB).await.expect_err("status fails");
    assert!(
        matches!(
            err,
            RuntimeError::Timeout {
                engine: "kubernetes",
                seconds: 7
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "kubernetes did not answer within 7 s");
    drop(held.await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Status by watch

/// Answers a watch from `version` with a body the test writes events into, one JSON per line.
async fn expect_pod_watch(
    s: &mut ApiServer,
    version: &str,
) -> futures::channel::mpsc::Sender<Result<bytes::Bytes, std::io::Error>> {
    let call = s.expect(Method::GET, "/api/v1/namespaces/shop/pods").await;
    assert_eq!(call.query.get("watch").map(String::as_str), Some("true"));
    assert_eq!(call.query.get("resourceVersion").map(String::as_str), Some(version));
    assert_eq!(call.query.get("labelSelector").map(String::as_str), Some(PODS));
    let (tx, body) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = BodyExt::boxed(StreamBody::new(body.map(|r| r.map(http_body::Frame::data))));
    call.respond
        .send_response(Response::builder().status(200).body(body).unwrap());
    tx
}

async fn send_event(tx: &mut futures::channel::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>, event: Value) {
    use futures::SinkExt;
    let mut line = serde_json::to_vec(&event).unwrap();
    line.push(b'\n');
    tx.send(Ok(line.into())).await.unwrap();
}

fn with_version(mut pod: Value, version: &str) -> Value {
    pod["metadata"]["resourceVersion"] = json!(version);
    pod
}

#[tokio::test]
async fn watch_status_follows_the_pods_and_lists_again_when_the_version_is_gone() {
    let creating = pod(
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
    let running = pod(
        "web-1",
        "Running",
        vec![],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![cstatus("web", true, 0, json!({"running": {}}), json!({}))],
    );
    let (rt, server) = runtime();
    let (step_tx, mut step_rx) = tokio::sync::mpsc::channel::<()>(1);
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list_at("10", vec![with_version(creating.clone(), "9")])
            .await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(200, deployment(json!({})));
        let mut events = expect_pod_watch(&mut s, "10").await;
        // A change that changes nothing the status shows is not yielded.
        send_event(
            &mut events,
            json!({"type": "MODIFIED", "object": with_version(creating, "11")}),
        )
        .await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(200, deployment(json!({})));
        send_event(
            &mut events,
            json!({"type": "MODIFIED", "object": with_version(running.clone(), "12")}),
        )
        .await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(200, deployment(json!({})));
        step_rx.recv().await;
        // The version is too old by now: list again, and watch from the new list.
        send_event(
            &mut events,
            json!({"type": "ERROR", "object": status_body(410, "Expired", "too old resource version: 12 (30)")}),
        )
        .await;
        s.expect_pod_list_at("30", vec![]).await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(404, status_body(404, "NotFound", "deployments.apps \"web\" not found"));
        // Kept open: nothing changes any more.
        let events = expect_pod_watch(&mut s, "30").await;
        (s, events)
    });

    let mut statuses = Box::pin(rt.watch_status(WEB));
    let first = statuses.next().await.unwrap().expect("a status");
    assert_eq!(first.state, ComponentState::Starting);
    let second = statuses.next().await.unwrap().expect("a status");
    assert_eq!(second.state, ComponentState::Running);
    step_tx.send(()).await.unwrap();
    let third = statuses.next().await.unwrap().expect("a status");
    assert_eq!(third.state, ComponentState::Stopped);
    // The next poll opens the watch from the new list's version, and yields nothing while
    // nothing changes.
    let mut server_side = server_side;
    tokio::select! {
        biased;
        server = &mut server_side => drop(server.expect("the API server's script passes")),
        item = statuses.next() => panic!("no status until something changes, got {item:?}"),
    }
}

#[tokio::test]
async fn watch_status_ends_with_the_api_error() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop/pods").await.reply(
            403,
            status_body(
                403,
                "Forbidden",
                "pods is forbidden: User \"x\" cannot list resource \"pods\"",
            ),
        );
        s
    });
    let items: Vec<_> = rt.watch_status(WEB).collect().await;
    assert_eq!(items.len(), 1);
    let err = items.into_iter().next().unwrap().expect_err("an error");
    assert!(err.to_string().contains("cannot list resource"), "{err}");
    server_side.await.unwrap();
}
