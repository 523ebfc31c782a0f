//! The docs' log-collection example for real (examples/log-collector): Kato builds the `logtail`
//! plug-in from the example's Dockerfile, applies the example's components and runs them on
//! podman; the plug-in ships the app's access log, tagged, to its own output, then, switched
//! live through the discovery API and without a restart, over HTTP to a listener of this test
//! on the host, and to the example's `log-sink` component reached at `log-sink.<team>`.
//!
//! The example's files are used as they are, with the example registry's address
//! (`127.0.0.1:5000`) replaced by a test registry's and the plug-in's repo by a git repo holding
//! the example's Dockerfile and script. The server listens on a real port, on all interfaces,
//! and tells its plug-ins `host.containers.internal`. The test works in a team of its own and
//! removes its pods, even when it fails.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kato_server::{AppState, Config, TargetKind};
use kato_testkit::{GitRepo, TestRegistry};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tower::ServiceExt;

#[path = "common/podman.rs"]
mod podman_cli;

use podman_cli::{Cleanup, checked, podman};

const TEAM: &str = "e2elogs";
const EXAMPLE_REGISTRY: &str = "127.0.0.1:5000";

fn example(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// What scripts/example-registry imports as `kato-examples/busybox:1`: busybox-static with every
/// applet and PATH set, made without a network pull (once per machine).
fn busybox_image() -> &'static str {
    const NAME: &str = "localhost/kato-e2e/busybox-examples:1";
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if podman(&["image", "exists", NAME]).status.success() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["bin", "tmp", "var/log/nginx"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        let list = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
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
        checked(&[
            "import",
            "--quiet",
            "--change",
            "ENV PATH=/bin",
            tar.to_str().unwrap(),
            NAME,
        ]);
    });
    NAME
}

/// The example registry's images, in `registry` under the same names: the busybox base, the app
/// image, and the sink built from examples/log-collector/sink as scripts/example-registry does.
fn example_images(registry: &TestRegistry) {
    let base = busybox_image();
    let push = |local: &str, name: &str| {
        checked(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            local,
            &format!("docker://{}/kato-examples/{name}:1", registry.host()),
        ]);
    };
    push(base, "busybox");
    push(base, "log-demo");
    let sink = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/log-collector/sink");
    let local = "localhost/kato-e2e/log-sink:1";
    checked(&[
        "build",
        "--quiet",
        "--from",
        base,
        "-t",
        local,
        "-f",
        sink.join("Dockerfile").to_str().unwrap(),
        sink.to_str().unwrap(),
    ]);
    push(local, "log-sink");
}

/// A git repo with the plug-in's Dockerfile (its base in `registry`) and script, at the paths
/// they have in this repo.
fn plugin_repo(registry: &TestRegistry) -> GitRepo {
    let repo = GitRepo::new();
    for file in ["examples/log-collector/Dockerfile", "examples/log-collector/logtail.sh"] {
        repo.write(file, &example(file).replace(EXAMPLE_REGISTRY, registry.host()));
    }
    repo.commit("the log-collection example");
    repo
}

/// A server on a real port of all interfaces, targeting podman, building into `registry`.
struct Live {
    state: Arc<AppState>,
    admin: String,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn start(dir: &Path, registry: &TestRegistry) -> Live {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = Config {
            data_dir: dir.to_owned(),
            listen: listener.local_addr().unwrap(),
            database_url: None,
            public_url: Some(format!("http://host.containers.internal:{port}")),
            target: Some(TargetKind::Podman),
            kubeconfig: None,
            builds: Default::default(),
            secret_key: Default::default(),
        };
        config.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
        let (state, token_path) = kato_server::prepare(&config).await.unwrap();
        let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn({
            let state = state.clone();
            async move {
                kato_server::serve_on(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Live {
            state,
            admin,
            stop,
            done,
        }
    }

    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.done.await.unwrap();
        self.state.store.close().await;
    }

    /// Calls `/api/v1/teams/TEAM{path}` as the admin.
    async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
        self.api(method, &format!("/teams/{TEAM}{path}"), body).await
    }

    /// Calls `/api/v1{path}` as the admin.
    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header("authorization", format!("Bearer {}", self.admin));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = kato_server::router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Calls `/api/v1/teams/TEAM{path}`; fails the test unless it succeeds.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.raw(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn apply(&self, documents: Vec<Value>) -> Vec<String> {
        let v = self
            .ok(Method::POST, "/apply", Some(json!({"documents": documents})))
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| format!("{} {} {}", o["kind"], o["name"], o["action"]).replace('"', ""))
            .collect()
    }

    /// Polls version `n` of `plugin` until its build ends (at most 180 s).
    async fn built(&self, plugin: &str, n: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let v = self
                .ok(Method::GET, &format!("/plugins/{plugin}/versions/{n}"), None)
                .await;
            if !matches!(v["status"].as_str(), Some("queued" | "building")) {
                return v;
            }
            assert!(Instant::now() < deadline, "version {n} of {plugin} is still {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn status(&self, component: &str) -> Value {
        self.ok(Method::GET, &format!("/components/{component}/status"), None)
            .await
    }

    /// Polls the status until `done` holds, for at most 90 s.
    async fn wait(&self, component: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let st = self.status(component).await;
            if done(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {st:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deploys and waits until the component runs; answers its pod's name.
    async fn deploy(&self, component: &str) -> String {
        self.ok(Method::POST, &format!("/components/{component}/deploy"), None)
            .await;
        let st = self
            .wait(component, &format!("{component} running"), |st| {
                st["state"] == "running"
            })
            .await;
        st["pods"][0]["name"].as_str().unwrap().to_owned()
    }

    async fn logs(&self, component: &str, container: &str) -> String {
        let (status, text) = self
            .raw(
                Method::GET,
                &format!("/components/{component}/logs?container={container}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        text
    }

    /// Polls a container's logs until a line holds every one of `needles`, for at most 60 s;
    /// answers that line.
    async fn wait_line(&self, component: &str, container: &str, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.logs(component, container).await;
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{component}/{container} never logged a line with {needles:?}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the sink of logtail on nginx-log-demo (the values of its port 80), keeping every
    /// other value as it is; answers the installation's new revision.
    async fn set_sink(&self, sink: &str, url: &str) -> u64 {
        let path = "/components/nginx-log-demo/plugins/logtail";
        let mut values = self.ok(Method::GET, path, None).await["values"].clone();
        values["ports"] = json!({"80": {"SINK": sink, "SINK_URL": url}});
        let v = self.ok(Method::PUT, path, Some(json!({"values": values}))).await;
        v["revision"].as_u64().unwrap()
    }
}

/// What logtail's pod `pod` acked, as the status shows it.
fn ack(status: &Value, pod: &str) -> Value {
    status["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "logtail")
        .flat_map(|p| p["acks"].as_array().into_iter().flatten())
        .find(|a| a["pod"] == pod)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The revision logtail's pod `pod` acked as applied.
fn applied(status: &Value, pod: &str) -> Option<u64> {
    ack(status, pod)["applied_revision"].as_u64()
}

/// The container's identity as podman sees it: ID, start time, restart count.
fn identity(container: &str) -> String {
    checked(&[
        "inspect",
        "--type",
        "container",
        "--format",
        "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}",
        container,
    ])
    .trim()
    .to_owned()
}

/// An HTTP/1.0 sink on a port of all interfaces: keeps every request's line, head and body.
struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let keep = keep.clone();
                tokio::spawn(async move {
                    if let Some(request) = read_request(&mut conn).await {
                        keep.lock().unwrap().push(request);
                    }
                    let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").await;
                });
            }
        });
        Sink { port, received }
    }

    /// Polls until a request holds every one of `needles`, for at most 60 s; answers it.
    async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|r| needles.iter().all(|n| r.contains(n)))
                .cloned();
            if let Some(r) = found {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no request with {needles:?} reached the sink: {:?}",
                self.received.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one request: its head, then as many body bytes as its Content-Length says.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The example end to end: built by Kato, tagged lines on stdout, then over HTTP to the test's
/// listener and to `log-sink`, switched live with each switch acked and no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_collection_example_collects_tags_and_ships_to_a_sink_switched_live() {
    let _cleanup = Cleanup(TEAM.to_owned());
    let registry = TestRegistry::start().await;
    example_images(&registry);
    let repo = plugin_repo(&registry);
    let dir = tempfile::tempdir().unwrap();
    let s = Live::start(dir.path(), &registry).await;
    let (status, text) = s.api(Method::POST, "/teams", Some(json!({"name": TEAM}))).await;
    assert!(status.is_success(), "{text}");

    // The plug-in from its Dockerfile, through Kato's build pipeline.
    let mut plugin = yaml_documents(&example("examples/log-collector/plugin.yaml"));
    assert_eq!(plugin.len(), 1);
    assert_eq!(plugin[0]["spec"]["source"]["dockerfile"]["repo"], ".");
    plugin[0]["spec"]["source"]["dockerfile"]["repo"] = json!(repo.url());
    assert_eq!(
        s.apply(plugin).await,
        ["Plugin logtail created", "Plugin logtail versioned 1"]
    );
    let v = s.built("logtail", 1).await;
    if v["status"] != "succeeded" {
        let (_, log) = s.raw(Method::GET, "/plugins/logtail/versions/1/log", None).await;
        panic!("the build failed: {v:#}\n{log}");
    }
    assert!(
        v["image"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/platform/{TEAM}/logtail@sha256:", registry.host())),
        "{v}"
    );

    // The components, as the example has them.
    let components = yaml_documents(&example("examples/log-collector.yaml").replace(EXAMPLE_REGISTRY, registry.host()));
    assert_eq!(
        s.apply(components).await,
        [
            "Component nginx-log-demo created",
            "Component log-sink created",
            "Installation nginx-log-demo/logtail installed"
        ]
    );
    let pod = s.deploy("nginx-log-demo").await;
    let ctr = format!("{pod}-plugin-logtail");

    // Tagged app lines on the plug-in's output: pod name (HOSTNAME), pod IP and namespace (the
    // team); the node's name and IP cannot be derived on podman and are left out.
    let prefix = format!("[_pod_name_={pod} _pod_ip_=");
    let line = s
        .wait_line("nginx-log-demo", "plugin-logtail", &[&prefix, " GET / 200"])
        .await;
    let ip = line[prefix.len()..].split(' ').next().unwrap();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{line}");
    let tags = format!("{prefix}{ip} _namespace_={TEAM}] ");
    assert!(line.starts_with(&tags), "{line}");
    let before = identity(&ctr);
    let rev = s
        .ok(Method::GET, "/components/nginx-log-demo/plugins/logtail", None)
        .await["revision"]
        .as_u64()
        .unwrap();
    s.wait("nginx-log-demo", "the first revision acked", |st| {
        applied(st, &pod) == Some(rev)
    })
    .await;

    // Switched live to HTTP: a listener of the test, on the host.
    let sink = Sink::start().await;
    let url = format!("http://host.containers.internal:{}/ingest", sink.port);
    let rev = s.set_sink("http", &url).await;
    let request = sink.wait_for(&[&tags, " GET / 200\n"]).await;
    assert!(request.starts_with("POST /ingest HTTP/1.0\r\n"), "{request}");
    assert!(request.contains("Content-Type: text/plain\r\n"), "{request}");
    let body = request.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body.lines().all(|l| l.starts_with(&tags)),
        "every line shipped is tagged: {body}"
    );
    s.wait_line(
        "nginx-log-demo",
        "plugin-logtail",
        &[&format!(
            "logtail: sink now http {url} (was stdout; discovery revision {rev})"
        )],
    )
    .await;
    s.wait("nginx-log-demo", "the switch acked", |st| {
        applied(st, &pod) == Some(rev)
    })
    .await;

    // A sink it cannot use is rejected, and the one it has is kept.
    let bad = s.set_sink("http", "https://example.invalid/").await;
    let st = s
        .wait("nginx-log-demo", "the bad sink rejected", |st| {
            ack(st, &pod)["rejected"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["revision"] == bad))
        })
        .await;
    let rejected = &ack(&st, &pod)["rejected"];
    assert!(
        rejected
            .to_string()
            .contains("SINK_URL `https://example.invalid/`: this collector speaks plain http only"),
        "{rejected:#}"
    );
    assert_eq!(applied(&st, &pod), Some(rev), "{st:#}");
    let shipped = sink.received.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received.lock().unwrap().len() == shipped {
        assert!(Instant::now() < deadline, "shipping stopped after a rejected sink");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Switched live to the example's sink component, at the name pods reach it by, as the
    // README tells users: `{component}.{team}`.
    s.deploy("log-sink").await;
    let rev = s
        .set_sink("http", &format!("http://log-sink.{TEAM}:8080/cgi-bin/ingest"))
        .await;
    s.wait_line("log-sink", "log-sink", &[&tags, " GET / 200"]).await;
    s.wait("nginx-log-demo", "the switch to log-sink acked", |st| {
        applied(st, &pod) == Some(rev)
    })
    .await;
    assert_eq!(
        identity(&ctr),
        before,
        "the plug-in's container was replaced or restarted"
    );
    let st = s.status("nginx-log-demo").await;
    assert_eq!(st["state"], "running", "{st:#}");
    assert_eq!(st["pods"][0]["name"], pod.as_str(), "{st:#}");

    for component in ["nginx-log-demo", "log-sink"] {
        let v = s.ok(Method::POST, &format!("/components/{component}/stop"), None).await;
        assert_eq!(v["state"], "stopped", "{v}");
    }
    s.shutdown().await;
}
