//! Plug-ins on the real podman engine reading the discovery API of a server on a real port
//! (DESIGN §6, §9).
//!
//! The server listens on all interfaces and tells its plug-ins `host.containers.internal`, the
//! host as pods played on podman's bridge networks reach it. The plug-ins are busybox shell
//! loops speaking HTTP/1.0 through `nc`. Every test works in a team of its own and removes its
//! pods, even when it fails.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kato_server::{AppState, Config, TargetKind};
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

#[path = "common/podman.rs"]
mod podman_cli;

use podman_cli::{Cleanup, checked, podman};

const BASE: &str = "localhost/kato-test/busybox-full:1";

/// Imports busybox-static with every applet (`nc`, `sed`, `printf`…) as `BASE`, once per machine.
fn base_image() {
    assert_eq!(kato_testkit::busybox_full_image(), BASE);
}

/// A server on a real port, targeting podman.
struct Live {
    state: Arc<AppState>,
    admin: String,
    port: u16,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Live {
    /// Serves on `0.0.0.0:port` (0: any free port) with the data in `dir`.
    async fn start(dir: &Path, port: u16) -> Live {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = Config {
            data_dir: dir.to_owned(),
            listen: listener.local_addr().unwrap(),
            database_url: None,
            public_url: Some(format!("http://host.containers.internal:{port}")),
            target: Some(TargetKind::Podman),
            kubeconfig: None,
            builds: Default::default(),
            secret_key: Default::default(),
        };
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
            port,
            stop,
            done,
        }
    }

    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.done.await.unwrap();
        self.state.store.close().await;
    }

    async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
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

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.raw(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

struct E2e {
    team: String,
    registry: TestRegistry,
    _cleanup: Cleanup,
}

impl E2e {
    async fn new(team: &str) -> E2e {
        base_image();
        E2e {
            team: team.to_owned(),
            registry: TestRegistry::start().await,
            _cleanup: Cleanup(team.to_owned()),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/teams/{}{rest}", self.team)
    }

    /// Pushes `BASE` to the test registry as `repo:1`; returns the reference.
    fn push(&self, repo: &str) -> String {
        let target = format!("{}/{repo}:1", self.registry.host());
        checked(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            BASE,
            &format!("docker://{target}"),
        ]);
        target
    }

    /// Creates the team, a plug-in running `command` with `groups`, and the components.
    async fn seed(&self, s: &Live, plugin: &str, command: &str, groups: Value, components: &[Value]) {
        s.ok(Method::POST, "/teams", Some(json!({"name": self.team}))).await;
        let image = self.push(&format!("e2e/{plugin}"));
        s.ok(
            Method::POST,
            &self.path("/plugins"),
            Some(json!({"name": plugin, "kind": "general", "source": {"image": image},
                        "command": command, "memory_mib": 16, "config_groups": groups})),
        )
        .await;
        let v = s
            .ok(Method::POST, &self.path(&format!("/plugins/{plugin}/versions")), None)
            .await;
        assert_eq!(v["status"], "succeeded", "{v}");
        let app = self.push("e2e/app");
        for c in components {
            let mut c = c.clone();
            c["image"] = json!(app);
            c["command"] = json!(IDLE);
            c["memory_mib"] = json!(32);
            s.ok(Method::POST, &self.path("/components"), Some(c)).await;
        }
    }

    async fn status(&self, s: &Live, component: &str) -> Value {
        s.ok(
            Method::GET,
            &self.path(&format!("/components/{component}/status")),
            None,
        )
        .await
    }

    /// Polls status until `done` holds, for at most 90 s.
    async fn wait(&self, s: &Live, component: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let st = self.status(s, component).await;
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

    async fn logs(&self, s: &Live, component: &str, container: &str) -> String {
        let (status, text) = s
            .raw(
                Method::GET,
                &self.path(&format!("/components/{component}/logs?container={container}")),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        text
    }

    /// Polls a container's logs until they contain `needle`, for at most 60 s.
    async fn wait_logs(&self, s: &Live, component: &str, container: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.logs(s, component, container).await;
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "{container} never logged {needle:?}: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deploys and waits until the component runs; answers the plug-in container's podman name.
    async fn deploy(&self, s: &Live, component: &str, plugin: &str) -> String {
        s.ok(
            Method::POST,
            &self.path(&format!("/components/{component}/deploy")),
            None,
        )
        .await;
        let st = self.wait(s, component, "running", |st| st["state"] == "running").await;
        let pod = st["pods"][0]["name"].as_str().unwrap();
        format!("{pod}-plugin-{plugin}")
    }

    /// Stops through the API and checks nothing of the team is left on podman.
    async fn stop(&self, s: &Live, component: &str) {
        let v = s
            .ok(Method::POST, &self.path(&format!("/components/{component}/stop")), None)
            .await;
        assert_eq!(v["state"], "stopped", "{v}");
        let label = format!("label=kato/team={}", self.team);
        let pods = checked(&["pod", "ls", "--filter", &label, "--format", "{{.Name}}"]);
        assert_eq!(pods.trim(), "", "left behind");
    }
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

fn plugin_restarts(status: &Value, plugin: &str) -> Option<u64> {
    status["pods"]
        .as_array()?
        .iter()
        .flat_map(|p| p["containers"].as_array().into_iter().flatten())
        .find(|c| c["name"] == format!("plugin-{plugin}"))?["restarts"]
        .as_u64()
}

/// Waits without ever finishing before SIGTERM asks it to.
const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

// `nc` closes its sending side when its input ends, and the server drops a request whose client
// did so before the answer: so `http` keeps nc's input (a FIFO) open until nc has the answer and
// exits, then ends the writer. It takes printf's arguments and leaves the answer in /tmp/resp.
// `-w 30` (longer than the 20 s long-poll) bounds a connection that hangs, e.g. one opened while
// the server was going down, so the loop always comes round again.
const HTTP: &str = r#"trap 'exit 0' TERM
mkfifo /tmp/in
http() {
  nc -w 30 "$host" "$port" < /tmp/in > /tmp/resp 2>/tmp/err & np=$!
  { printf "$@"; exec sleep 600; } > /tmp/in & sp=$!
  wait $np; kill $sp 2>/dev/null
}
"#;

/// A plug-in on Kato's discovery API: long-polls with the revision it has, logs each document
/// (`doc {...}`), and acks it as applied for its pod.
const WATCHER: &str = r#"u=${KATO_DISCOVERY_URL#http://}; hp=${u%%/*}; path=/${u#*/}; host=${hp%:*}; port=${hp##*:}
rev=0
while true; do
  http 'GET %s?revision=%s&wait=20 HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n' "$path" "$rev" "$KATO_DISCOVERY_TOKEN"
  if head -n 1 /tmp/resp | grep -q ' 200 '; then
    sed '1,/^\r$/d' /tmp/resp > /tmp/doc
    rev=$(sed -n 's/.*"revision":\([0-9]*\).*/\1/p' /tmp/doc)
    echo "doc $(cat /tmp/doc)"
    body="{\"revision\":$rev,\"pod\":\"$HOSTNAME\",\"status\":\"applied\",\"message\":\"written\"}"
    http 'POST %s/ack HTTP/1.0\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' "$path" "$KATO_DISCOVERY_TOKEN" "${#body}" "$body"
    echo "ack $rev $(head -n 1 /tmp/resp)"
  elif ! head -n 1 /tmp/resp | grep -q ' 304 '; then
    echo "unreachable: $(head -n 1 /tmp/resp) $(cat /tmp/err)"
    sleep 1 & wait $!
  fi
done
"#;

/// A Rainbond-style plug-in: reads `$DISCOVER_URL` every second, logs the spec when it changes.
const POLLER: &str = r#"u=${DISCOVER_URL#http://}; hp=${u%%/*}; path=/${u#*/}; host=${hp%:*}; port=${hp##*:}
last=
while true; do
  http 'GET %s HTTP/1.0\r\n\r\n' "$path"
  if head -n 1 /tmp/resp | grep -q ' 200 '; then
    spec=$(sed '1,/^\r$/d' /tmp/resp)
    if [ "$spec" != "$last" ]; then echo "spec $spec"; last=$spec; fi
  fi
  sleep 1 & wait $!
done
"#;

fn level_group() -> Value {
    json!([{"name": "base", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]}])
}

/// The last `prefix`-line of a log, parsed as JSON.
fn last_json(logs: &str, prefix: &str) -> Value {
    let line = logs
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {logs}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

async fn set_level(e: &E2e, s: &Live, level: &str) {
    s.ok(
        Method::PUT,
        &e.path("/components/web/plugins/mesh"),
        Some(json!({"values": {"base": {"LEVEL": level}}})),
    )
    .await;
}

/// The revisions the plug-in acked as applied, per pod, as the status shows them.
fn acked(status: &Value, plugin: &str) -> Vec<(String, u64)> {
    status["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == plugin)
        .flat_map(|p| p["acks"].as_array().into_iter().flatten())
        .filter_map(|a| Some((a["pod"].as_str()?.to_owned(), a["applied_revision"].as_u64()?)))
        .collect()
}

/// A running plug-in sees a changed discovery value without a restart, acks it, and the status
/// shows the acked revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_plugin_receives_a_changed_value_and_acks_it() {
    let e = E2e::new("e2edisc").await;
    let dir = tempfile::tempdir().unwrap();
    let s = Live::start(dir.path(), 0).await;
    e.seed(
        &s,
        "mesh",
        &format!("{HTTP}{WATCHER}"),
        level_group(),
        &[json!({"name": "web"})],
    )
    .await;
    s.ok(Method::PUT, &e.path("/components/web/plugins/mesh"), Some(json!({})))
        .await;
    let ctr = e.deploy(&s, "web", "mesh").await;
    let logs = e.wait_logs(&s, "web", "plugin-mesh", "\"LEVEL\":\"info\"").await;
    let first = last_json(&logs, "doc ");
    let rev1 = first["revision"].as_u64().unwrap();
    e.wait_logs(&s, "web", "plugin-mesh", &format!("ack {rev1} HTTP/1.0 20"))
        .await;
    let before = identity(&ctr);
    let restarts = plugin_restarts(&e.status(&s, "web").await, "mesh");

    let t0 = Instant::now();
    let changed = time::OffsetDateTime::now_utc();
    set_level(&e, &s, "debug").await;
    let logs = e.wait_logs(&s, "web", "plugin-mesh", "\"LEVEL\":\"debug\"").await;
    let delivered = t0.elapsed();
    let doc = last_json(&logs, "doc ");
    assert_eq!(doc["base"], json!({"LEVEL": "debug"}), "{logs}");
    let rev2 = doc["revision"].as_u64().unwrap();
    assert!(rev2 > rev1, "{logs}");
    let pod = e.status(&s, "web").await["pods"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let st = e
        .wait(&s, "web", "the ack in the status", |st| {
            acked(st, "mesh").contains(&(pod.clone(), rev2))
        })
        .await;
    // When the server took the ack: the change reached the plug-in, which answered, by then.
    let at = st["plugins"][0]["acks"][0]["applied_at"].as_str().unwrap();
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    println!(
        "discovery on podman: value change -> ack taken by the server {} ms, -> value in the plug-in's log (logs endpoint) {} ms",
        (at - changed).whole_milliseconds(),
        delivered.as_millis()
    );
    e.wait_logs(&s, "web", "plugin-mesh", &format!("ack {rev2} HTTP/1.0 20"))
        .await;
    assert_eq!(
        identity(&ctr),
        before,
        "the plug-in's container was replaced or restarted"
    );
    assert_eq!(plugin_restarts(&st, "mesh"), restarts, "{st:#}");
    assert_eq!(st["state"], "running", "{st:#}");
    e.stop(&s, "web").await;
    s.shutdown().await;
}

/// A Rainbond-style plug-in polling `$DISCOVER_URL` gets the component's ports and dependencies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rainbond_style_plugin_reads_ports_and_dependencies() {
    let e = E2e::new("e2erain").await;
    let dir = tempfile::tempdir().unwrap();
    let s = Live::start(dir.path(), 0).await;
    let groups = json!([
        {"name": "base", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]},
        {"name": "ports", "meta": "component-port", "injection": "discovery", "items": [{"name": "TIMEOUT", "default": "5s"}]},
        {"name": "down", "meta": "downstream-port", "injection": "discovery", "items": [{"name": "RETRIES", "default": "3"}]}]);
    e.seed(
        &s,
        "mesh",
        &format!("{HTTP}{POLLER}"),
        groups,
        &[
            json!({"name": "db", "ports": [{"port": 3306, "protocol": "mysql"}]}),
            json!({"name": "web", "ports": [{"port": 8080, "protocol": "http"}], "depends_on": ["db"]}),
        ],
    )
    .await;
    s.ok(Method::PUT, &e.path("/components/web/plugins/mesh"), Some(json!({})))
        .await;
    e.deploy(&s, "web", "mesh").await;
    let logs = e.wait_logs(&s, "web", "plugin-mesh", "spec {").await;
    let spec = last_json(&logs, "spec ");
    let port = &spec["base_ports"][0];
    assert_eq!(
        (
            port["service_alias"].as_str(),
            port["port"].as_u64(),
            port["protocol"].as_str()
        ),
        (Some("web"), Some(8080), Some("http")),
        "{spec:#}"
    );
    assert_eq!(port["options"]["TIMEOUT"], "5s", "{spec:#}");
    let dep = &spec["base_services"][0];
    assert_eq!(
        (
            dep["depend_service_alias"].as_str(),
            dep["port"].as_u64(),
            dep["protocol"].as_str()
        ),
        (Some("db"), Some(3306), Some("mysql")),
        "{spec:#}"
    );
    assert_eq!(dep["options"]["RETRIES"], "3", "{spec:#}");
    assert_eq!(spec["base_normal"]["options"]["LEVEL"], "info", "{spec:#}");

    // A change reaches it on its next poll.
    set_level(&e, &s, "warn").await;
    let logs = e.wait_logs(&s, "web", "plugin-mesh", "\"LEVEL\":\"warn\"").await;
    assert_eq!(last_json(&logs, "spec ")["base_normal"]["options"]["LEVEL"], "warn");
    e.stop(&s, "web").await;
    s.shutdown().await;
}

/// With the server away for 10 s the plug-in keeps running with its last document; a change
/// made once the server is back (same port, same data) reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_outlives_a_server_restart_and_picks_up_later_changes() {
    let e = E2e::new("e2eback").await;
    let dir = tempfile::tempdir().unwrap();
    let s = Live::start(dir.path(), 0).await;
    let port = s.port;
    e.seed(
        &s,
        "mesh",
        &format!("{HTTP}{WATCHER}"),
        level_group(),
        &[json!({"name": "web"})],
    )
    .await;
    s.ok(
        Method::PUT,
        &e.path("/components/web/plugins/mesh"),
        Some(json!({"values": {"base": {"LEVEL": "debug"}}})),
    )
    .await;
    let ctr = e.deploy(&s, "web", "mesh").await;
    e.wait_logs(&s, "web", "plugin-mesh", "\"LEVEL\":\"debug\"").await;
    let before = identity(&ctr);
    s.shutdown().await;

    // The server is away: the plug-in notices and keeps trying, with its last document.
    let away = Instant::now();
    let deadline = away + Duration::from_secs(60);
    loop {
        let out = podman(&["logs", &ctr]);
        if String::from_utf8_lossy(&out.stdout).contains("unreachable") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plug-in never noticed the server was away"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(away.elapsed())).await;
    assert_eq!(
        identity(&ctr),
        before,
        "the plug-in's container was replaced or restarted"
    );
    let state = checked(&["inspect", "--type", "container", "--format", "{{.State.Status}}", &ctr]);
    assert_eq!(state.trim(), "running");

    let s = Live::start(dir.path(), port).await;
    let st = e
        .wait(&s, "web", "running after the restart", |st| st["state"] == "running")
        .await;
    let restarts = plugin_restarts(&st, "mesh");
    set_level(&e, &s, "trace").await;
    let logs = e.wait_logs(&s, "web", "plugin-mesh", "\"LEVEL\":\"trace\"").await;
    let rev = last_json(&logs, "doc ")["revision"].as_u64().unwrap();
    e.wait_logs(&s, "web", "plugin-mesh", &format!("ack {rev} HTTP/1.0 20"))
        .await;
    assert_eq!(
        identity(&ctr),
        before,
        "the plug-in's container was replaced or restarted"
    );
    assert_eq!(plugin_restarts(&e.status(&s, "web").await, "mesh"), restarts);
    e.stop(&s, "web").await;
    s.shutdown().await;
}
