//! The mock API server's side: expectations on the driver's requests, answers, fixtures, and the
//! check that every request is one `deploy/rbac.yaml` grants.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use kato_runtime::{ComponentRef, KubernetesRuntime};
use kube::client::Body;
use serde_json::{Value, json};

/// What the mock API server answers with: any body, streamed or whole.
pub type ResponseBody = BoxBody<bytes::Bytes, std::io::Error>;
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<ResponseBody>>;

pub const WEB: ComponentRef<'static> = ComponentRef {
    team: "shop",
    component: "web",
};
pub const OWNED: &str = "app.kubernetes.io/managed-by=kato,kato/team=shop,kato/component=web";
pub const PODS: &str = "kato/team=shop,kato/component=web";
pub const TIMEOUT: Duration = Duration::from_secs(7);

pub fn runtime() -> (KubernetesRuntime, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
    let client = kube::Client::new(service, "default");
    (
        KubernetesRuntime::from_client(client).with_timeout(TIMEOUT),
        ApiServer(handle),
    )
}

/// The API server's side of the conversation.
pub struct ApiServer(pub Handle);

/// One request the driver made.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    pub respond: tower_test::mock::SendResponse<Response<ResponseBody>>,
}

impl ApiServer {
    pub async fn next(&mut self) -> Call {
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
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
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
    pub async fn expect_apply(&mut self, path: &str) -> Value {
        let call = self.expect(Method::PATCH, path).await;
        assert_eq!(call.query.get("fieldManager").map(String::as_str), Some("kato"));
        assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(call.content_type.as_deref(), Some("application/apply-patch+yaml"));
        let body = call.body.clone().expect("an apply has a body");
        call.reply(200, body.clone());
        body
    }

    /// A label-selected metadata list of the component's objects; answers with `names`.
    pub async fn expect_owned_list(&mut self, path: &str, names: &[&str]) {
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

    pub async fn expect_delete(&mut self, path: &str, code: u16) {
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

    pub async fn expect_pod_list(&mut self, pods: Vec<Value>) {
        self.expect_pod_list_at("1", pods).await;
    }

    pub async fn expect_pod_list_at(&mut self, version: &str, pods: Vec<Value>) {
        let call = self.expect(Method::GET, "/api/v1/namespaces/shop/pods").await;
        assert_eq!(call.query.get("labelSelector").map(String::as_str), Some(PODS));
        assert_eq!(call.query.get("watch"), None);
        call.reply(
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version}, "items": pods}),
        );
    }

    /// The client is gone and asked nothing more.
    pub async fn expect_no_more(mut self) {
        if let Some((req, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

impl Call {
    pub fn reply(self, code: u16, body: Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(whole(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.respond.send_response(response);
    }
    pub fn reply_text(self, text: &str) {
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
pub fn assert_granted(method: &Method, path: &str, query: &str) {
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
    // Public to every client (the `system:public-info-viewer` role).
    if path == "/version" {
        assert_eq!(method, Method::GET);
        return;
    }
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

pub fn whole(bytes: Vec<u8>) -> ResponseBody {
    Full::new(bytes::Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    let status = if code < 400 { "Success" } else { "Failure" };
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": status, "code": code, "reason": reason, "message": message})
}

/// Runs the driver's call and the API server's script together; returns the call's result.
pub async fn scenario<T, F, S>(server: ApiServer, call: F, script: impl FnOnce(ApiServer) -> S) -> T
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

pub fn container(name: &str, image: &str) -> Value {
    json!({"name": name, "image": image})
}

pub fn pod(
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

pub fn cstatus(name: &str, ready: bool, restarts: i32, state: Value, last: Value) -> Value {
    json!({"name": name, "ready": ready, "restartCount": restarts, "image": "x", "imageID": "", "state": state, "lastState": last})
}

pub fn deployment(annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop", "annotations": annotations,
                        "labels": {"app.kubernetes.io/managed-by": "kato", "kato/team": "shop", "kato/component": "web"}},
           "spec": {"selector": {"matchLabels": {"kato/team": "shop"}}, "template": {}}})
}

/// The team's namespace as Kato created it.
pub fn kato_namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "shop", "labels": {"app.kubernetes.io/managed-by": "kato"}}})
}
