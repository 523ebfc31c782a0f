//! Secrets on the real podman engine: a plug-in's secret value and its discovery token reach
//! the plug-in's environment (where they belong, and where a working `DISCOVER_URL` carries the
//! token) and nowhere else Kato puts things: no file of the data dir, no pod or container spec
//! podman shows, no line of the server's log, no API answer.
//!
//! The one place podman shows them is a plug-in container's own environment in `podman
//! inspect` (`Config.Env`): podman 4 lists every variable of a container there, secret or not
//! (containers/podman#12396, #23788), to those who may `podman exec` into it anyway.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use base64::Engine;
use common::live::{BASE, Live, base_image};
use common::podman::{Cleanup, checked};
use kato_testkit::TestRegistry;
use serde_json::{Value, json};

const TEAM: &str = "e2esecret";
/// The secret item's value: unique to this test, so any copy of it is a leak.
const MARKER: &str = "marker-podman-secret-5be1c07a";

/// Fetches `$DISCOVER_URL` (Rainbond's compatibility path, the token in its query) until it
/// answers 200 or 30 tries pass, prints the status line and the body, then idles. It never
/// prints the URL, the token or the secret.
const FETCHER: &str = r#"trap 'exit 0' TERM
u=${DISCOVER_URL#http://}; hp=${u%%/*}; path=/${u#*/}; host=${hp%:*}; port=${hp##*:}
mkfifo /tmp/in
n=0
while [ $n -lt 30 ]; do
  n=$((n+1))
  nc -w 10 "$host" "$port" < /tmp/in > /tmp/resp 2>/tmp/err & np=$!
  { printf 'GET %s HTTP/1.0\r\n\r\n' "$path"; exec sleep 600; } > /tmp/in & sp=$!
  wait $np; kill $sp 2>/dev/null
  if head -n 1 /tmp/resp | grep -q ' 200 '; then break; fi
  sleep 1
done
echo "compat $(head -n 1 /tmp/resp | tr -d '\r')"
echo "spec $(sed '1,/^\r$/d' /tmp/resp)"
sleep 100000 & wait
"#;

/// Waits without ever finishing before SIGTERM asks it to.
const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

/// The server's log, every line of every target at every level.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server, and every answer it gave the test.
struct Recorded {
    s: Live,
    answers: Vec<(String, String)>,
}

impl Recorded {
    async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let (status, text) = self.s.raw(method.clone(), path, body).await;
        self.answers.push((format!("{method} {path}"), text.clone()));
        (status, text)
    }

    async fn ok(&mut self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

fn team(rest: &str) -> String {
    format!("/teams/{TEAM}{rest}")
}

/// Each needle, and its base64 (how it would sit in a Secret or a podman secret).
fn needles(clear: &[&str]) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    clear.iter().flat_map(|c| [c.to_string(), b64(c)]).collect()
}

fn assert_clean(what: &str, bytes: &[u8], needles: &[String]) {
    for n in needles {
        assert!(
            !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
            "{what} holds `{n}` in clear:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files(&path));
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Sets up the team, the plug-in (a secret item, a plain value made from it with `${VAR}`, and
/// one reading the token with the kubelet's `$(VAR)`) and the component with it installed.
async fn seed(r: &mut Recorded, registry: &TestRegistry) {
    let push = |repo: &str| {
        let target = format!("{}/{repo}:1", registry.host());
        checked(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            BASE,
            &format!("docker://{target}"),
        ]);
        target
    };
    r.ok(Method::POST, "/teams", Some(json!({"name": TEAM}))).await;
    let items = json!([
        {"name": "SECRET_ITEM", "secret": true},
        {"name": "WITH_SECRET", "default": "x-${SECRET_ITEM}"},
        {"name": "TOKEN_REF", "default": "t=$(KATO_DISCOVERY_TOKEN)"}]);
    r.ok(
        Method::POST,
        &team("/plugins"),
        Some(
            json!({"name": "vault", "kind": "general", "source": {"image": push("e2e/vault")},
                    "command": FETCHER, "memory_mib": 16,
                    "config_groups": [{"name": "base", "items": items}]}),
        ),
    )
    .await;
    let v = r.ok(Method::POST, &team("/plugins/vault/versions"), None).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    r.ok(
        Method::POST,
        &team("/components"),
        Some(
            json!({"name": "web", "image": push("e2e/app"), "command": IDLE, "memory_mib": 32,
                    "env": [{"name": "APP_MODE", "value": "demo"}]}),
        ),
    )
    .await;
    r.ok(
        Method::PUT,
        &team("/components/web/plugins/vault"),
        Some(json!({"values": {"base": {"SECRET_ITEM": MARKER}}})),
    )
    .await;
}

/// Deploys and waits until the component runs and the plug-in printed the compat answer;
/// answers the pod's name and the plug-in's log.
async fn deploy(r: &mut Recorded) -> (String, String) {
    r.ok(Method::POST, &team("/components/web/deploy"), None).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let pod = loop {
        let st = r.ok(Method::GET, &team("/components/web/status"), None).await;
        if st["state"] == "running" {
            break st["pods"][0]["name"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "never running: {st:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = team("/components/web/logs?container=plugin-vault");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, text) = r.call(Method::GET, &logs, None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        if text.contains("spec ") {
            return (pod, text);
        }
        assert!(
            Instant::now() < deadline,
            "the plug-in never fetched DISCOVER_URL: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The plug-in's environment, read inside its container.
fn container_env(ctr: &str) -> Vec<(String, String)> {
    checked(&["exec", ctr, "/bin/busybox", "env"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `podman inspect` of every container of the pod and of the pod; the plug-in container's own
/// environment is taken out of its answer (see the module's documentation) after checking it
/// holds the secret and the token.
fn inspect_pod(pod: &str, token: &str, needles: &[String]) {
    let names = checked(&[
        "ps",
        "-a",
        "--pod",
        "--filter",
        &format!("pod={pod}"),
        "--format",
        "{{.Names}}",
    ]);
    let names: Vec<&str> = names.lines().collect();
    assert!(names.len() >= 3, "infra, app and plug-in: {names:?}");
    for name in names {
        let text = checked(&["inspect", "--type", "container", name]);
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        if name.ends_with("-plugin-vault") {
            let env = doc[0]["Config"]["Env"].take().to_string();
            assert!(
                env.contains(MARKER) && env.contains(token),
                "podman shows the container's environment: {env}"
            );
        }
        assert_clean(&format!("podman inspect {name}"), doc.to_string().as_bytes(), needles);
    }
    let text = checked(&["pod", "inspect", pod]);
    assert_clean(&format!("podman pod inspect {pod}"), text.as_bytes(), needles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_plugins_environment_and_nothing_else() {
    let log = LogBuffer::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    base_image();
    let _cleanup = Cleanup(TEAM.to_owned());
    let registry = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = Recorded {
        s: Live::start(dir.path(), 0).await,
        answers: Vec::new(),
    };
    seed(&mut r, &registry).await;
    let (pod, plugin_log) = deploy(&mut r).await;

    // Inside the container: the secret, the token, and URLs made from them that work.
    let env = container_env(&format!("{pod}-plugin-vault"));
    let get = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{name} in {env:?}"))
            .1
            .clone()
    };
    let token = get("KATO_DISCOVERY_TOKEN");
    assert!(token.starts_with("kd_"), "{token}");
    assert_eq!(get("SECRET_ITEM"), MARKER);
    assert_eq!(get("WITH_SECRET"), format!("x-{MARKER}"));
    assert_eq!(get("TOKEN_REF"), format!("t={token}"));
    let base = format!("/v1/resources/{TEAM}/web/vault?token={token}");
    assert_eq!(get("DISCOVER_URL_NOHOST"), base);
    assert_eq!(
        get("DISCOVER_URL"),
        format!("http://host.containers.internal:{}{base}", r.s.port)
    );
    assert_eq!(get("APP_MODE"), "demo");
    assert!(
        plugin_log.contains("compat HTTP/1.1 200") || plugin_log.contains("compat HTTP/1.0 200"),
        "{plugin_log}"
    );
    let spec = plugin_log.lines().find_map(|l| l.strip_prefix("spec ")).unwrap();
    let spec: Value = serde_json::from_str(spec).unwrap_or_else(|e| panic!("{e}: {plugin_log}"));
    assert!(spec["base_normal"].is_object(), "{spec}");

    let needles = needles(&[MARKER, &token]);
    inspect_pod(&pod, &token, &needles);

    // Every API answer: the ones above and the views of everything involved.
    for path in [
        "/components/web",
        "/components/web/status",
        "/components/web/plugins",
        "/components/web/plugins/vault",
        "/components/web/manifests",
        "/components/web/manifests?target=podman",
        "/components/web/manifests?target=kubernetes",
        "/components/web/logs?container=web",
        "/plugins/vault",
        "/plugins/vault/versions/1",
    ] {
        let (status, text) = r.call(Method::GET, &team(path), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
    }
    for (call, text) in &r.answers {
        assert_clean(&format!("the answer to {call}"), text.as_bytes(), &needles);
    }

    // The data dir: the played pod YAML is gone, the rest private and clean.
    let pods_dir = dir.path().join("podman").join("pods");
    let found = files(dir.path());
    assert!(found.iter().any(|p| p.ends_with("kato.db")), "{found:?}");
    assert!(
        found.iter().any(|p| p.starts_with(&pods_dir)),
        "the volume record: {found:?}"
    );
    for path in &found {
        assert_clean(&path.display().to_string(), &std::fs::read(path).unwrap(), &needles);
    }
    for path in &found {
        let kept = path.extension().is_some_and(|e| e == "yaml");
        assert!(!kept, "kept after the play: {path:?}");
        if path.starts_with(dir.path().join("podman")) {
            assert_eq!(mode(path), 0o600, "{path:?}");
        }
    }
    assert_eq!((mode(&pods_dir), mode(pods_dir.parent().unwrap())), (0o700, 0o700));

    let v = r.ok(Method::POST, &team("/components/web/stop"), None).await;
    assert_eq!(v["state"], "stopped", "{v}");
    r.s.shutdown().await;
    let log = log.0.lock().unwrap().clone();
    assert!(
        !log.is_empty(),
        "the server logged nothing: is the subscriber in place?"
    );
    assert_clean("the server's log", &log, &needles);
    let ours = format!("{}_", kato_render::names::component_hash(TEAM, "web"));
    let left = checked(&["secret", "ls", "--format", "{{.Name}}"]);
    let left: Vec<&str> = left.lines().filter(|n| n.starts_with(&ours)).collect();
    assert!(left.is_empty(), "podman secrets left behind: {left:?}");
}
