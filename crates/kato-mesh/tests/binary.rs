//! The real `kato-mesh` binary: with `--document FILE`, and watching a discovery server that
//! this test plays (long-poll GETs and acks), then SIGTERM.

mod common;

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], env: &[(&str, String)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kato-mesh"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().expect("start kato-mesh"))
}

async fn ready(admin_port: u16) -> bool {
    let addr = ([127, 0, 0, 1], admin_port).into();
    match Conn::open(addr).await {
        Ok(mut c) => c.get("x", "/ready", &[]).await.is_ok_and(|g| g.status == 200),
        Err(_) => false,
    }
}

/// Sends SIGTERM and waits for the exit status.
async fn terminate(mut running: Running) -> std::process::ExitStatus {
    let pid = running.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(status) = running.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("kato-mesh exits after SIGTERM")
}

#[tokio::test]
async fn binary_serves_a_static_document() {
    let app = backend("app").await;
    let (admin, listen) = (free_port(), free_port());
    let d = doc(
        1,
        json!({"METRICS_PORT": admin.to_string(), "DRAIN_SECONDS": "1"}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": listen, "options": {}}]),
        json!([]),
    );
    let file = std::env::temp_dir().join(format!("kato-mesh-doc-{}-{listen}.json", std::process::id()));
    std::fs::write(&file, d.to_string()).unwrap();
    let running = spawn(&["--document", file.to_str().unwrap()], &[]);
    eventually("/ready answers 200", || ready(admin)).await;
    let got = get(([127, 0, 0, 1], listen).into(), "h", "/through").await;
    assert_eq!((got.status, got.body.as_str()), (200, "app /through"));
    assert!(terminate(running).await.success(), "exit 0 after SIGTERM");
    let _ = std::fs::remove_file(file);
}

#[test]
fn binary_refuses_a_bad_document() {
    let d = doc(
        1,
        json!({}),
        json!([{"port": 1, "protocol": "http", "listen_port": 0, "options": {"MaxRequests": "lots"}}]),
        json!([]),
    );
    let file = std::env::temp_dir().join(format!("kato-mesh-bad-{}.json", std::process::id()));
    std::fs::write(&file, d.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kato-mesh"))
        .args(["--document", file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(file);
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.contains("inbound 1: MaxRequests `lots` is not a whole number"),
        "{logs}"
    );
}

/// A discovery server: revision 1 at once, revision 2 on the long-poll after it, then nothing
/// new; acks are collected.
async fn discovery(docs: Vec<Value>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/discovery/v1/team/web/mesh", socket.local_addr().unwrap());
    let acks = Arc::new(Mutex::new(Vec::new()));
    let (docs, seen) = (Arc::new(docs), acks.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else { return };
            let (docs, acks) = (docs.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (docs, acks) = (docs.clone(), acks.clone());
                    async move {
                        assert_eq!(req.headers()["authorization"], "Bearer secret");
                        if req.method() == hyper::Method::POST {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            acks.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("{}"))));
                        }
                        let after: u64 = req
                            .uri()
                            .query()
                            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("revision=")))
                            .map_or(0, |r| r.parse().unwrap());
                        match docs.iter().find(|d| d["revision"].as_u64().unwrap() > after) {
                            Some(d) => Ok(Response::new(Full::new(Bytes::from(d.to_string())))),
                            None => {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                let mut res = Response::new(Full::new(Bytes::new()));
                                *res.status_mut() = hyper::StatusCode::NOT_MODIFIED;
                                Ok(res)
                            }
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, acks)
}

#[tokio::test]
async fn binary_watches_applies_acks_and_rejects() {
    let app = backend("app").await;
    let (admin, listen) = (free_port(), free_port());
    let base = json!({"METRICS_PORT": admin.to_string(), "DRAIN_SECONDS": "1"});
    let port = json!([{"port": app.addr.port(), "protocol": "http", "listen_port": listen, "options": {}}]);
    let good = doc(1, base.clone(), port.clone(), json!([]));
    let bad = doc(
        2,
        base,
        port,
        json!([{"component": "db", "port": 8080, "protocol": "http", "options": {"MaxConnections": "abc"}}]),
    );
    let (url, acks) = discovery(vec![good, bad]).await;
    let running = spawn(
        &[],
        &[
            ("KATO_DISCOVERY_URL", url),
            ("KATO_DISCOVERY_TOKEN", "secret".into()),
            ("KATO_TEAM", "team".into()),
            ("HOSTNAME", "web-0".into()),
        ],
    );
    eventually("both revisions are acked", || async { acks.lock().unwrap().len() >= 2 }).await;
    let acks = acks.lock().unwrap().clone();
    assert_eq!(acks[0]["revision"], 1);
    assert_eq!(acks[0]["pod"], "web-0");
    assert_eq!(acks[0]["status"], "applied");
    let applied = acks[0]["message"].as_str().unwrap();
    assert!(
        applied.starts_with(&format!("1 listener: {listen}→127.0.0.1:{} (http)", app.addr.port())),
        "{applied}"
    );
    assert_eq!(acks[1]["revision"], 2);
    assert_eq!(acks[1]["status"], "rejected");
    assert_eq!(
        acks[1]["message"],
        "outbound db:8080: MaxConnections `abc` is not a whole number; give a number from 1 to 1000000"
    );
    assert!(ready(admin).await);
    let got = get(([127, 0, 0, 1], listen).into(), "h", "/still").await;
    assert_eq!(got.body, "app /still", "the last good config keeps serving");
    assert!(terminate(running).await.success());
}

/// `kato-mesh ready` with this state file: its exit status and stderr.
fn ready_command(file: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kato-mesh"))
        .arg("ready")
        .env("KATO_MESH_READY_FILE", file)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn ready_passes_once_a_document_is_applied_and_fails_from_sigterm_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kato-mesh").join("ready");
    let (ok, reason) = ready_command(&file);
    assert!(!ok, "nothing applied yet");
    assert_eq!(reason.lines().count(), 1, "one line: {reason}");
    assert!(reason.contains("not ready: no revision applied yet"), "{reason}");

    let app = backend("app").await;
    let (admin, listen) = (free_port(), free_port());
    let d = doc(
        7,
        json!({"METRICS_PORT": admin.to_string(), "DRAIN_SECONDS": "1"}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": listen, "options": {}}]),
        json!([]),
    );
    let document = dir.path().join("doc.json");
    std::fs::write(&document, d.to_string()).unwrap();
    let running = spawn(
        &["--document", document.to_str().unwrap()],
        &[("KATO_MESH_READY_FILE", file.display().to_string())],
    );
    eventually("`kato-mesh ready` passes", || async { ready_command(&file).0 }).await;
    // Ready means listening: the inbound listener answers at once.
    let got = get(([127, 0, 0, 1], listen).into(), "h", "/first").await;
    assert_eq!((got.status, got.body.as_str()), (200, "app /first"));
    assert!(terminate(running).await.success());
    let (ok, reason) = ready_command(&file);
    assert!(
        !ok && reason.contains("or draining"),
        "not ready once draining starts: {reason}"
    );
}

#[test]
fn a_rejected_document_never_reads_as_ready_even_with_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ready");
    std::fs::write(&file, "3\n").unwrap();
    let d = doc(
        1,
        json!({}),
        json!([{"port": 1, "protocol": "http", "listen_port": 0, "options": {"MaxRequests": "lots"}}]),
        json!([]),
    );
    let document = dir.path().join("doc.json");
    std::fs::write(&document, d.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kato-mesh"))
        .args(["--document", document.to_str().unwrap()])
        .env("KATO_MESH_READY_FILE", &file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !ready_command(&file).0,
        "a file left by an earlier run is removed at start"
    );
}
