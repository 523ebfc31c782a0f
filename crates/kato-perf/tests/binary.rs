//! The real `kato-perf` binary: with `--document FILE`, and watching a discovery server that
//! this test plays (long-poll GETs and acks): a port analysed, switched off live (applied and
//! acked, no restart), a bad value rejected, then SIGTERM.

mod common;

use std::convert::Infallible;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], env: &[(&str, String)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kato-perf"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().expect("start kato-perf"))
}

fn terminate(mut running: Running) -> std::process::ExitStatus {
    let pid = running.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "kato-perf exits after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn doc(revision: u64, perf_port: u16, ports: Value) -> Value {
    json!({"revision": revision, "plugin": "perf", "version": 1, "base": {"PERF_PORT": perf_port.to_string()},
           "ports": ports, "downstream": []})
}

fn requests(perf_port: u16) -> u64 {
    let Some((200, body)) = http_get(perf_port, "/summary") else {
        return 0;
    };
    let v: Value = serde_json::from_str(&body).unwrap();
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["windows"]["1m"]["all"]["requests"].as_u64().unwrap())
        .sum()
}

fn send(port: u16, n: usize) {
    let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
    for _ in 0..n {
        c.get_mut().write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_response(&mut c);
    }
}

#[test]
fn binary_serves_a_static_document() {
    let app = serve(Arc::default());
    let perf = free_port();
    let file = std::env::temp_dir().join(format!("kato-perf-doc-{}-{perf}.json", std::process::id()));
    let d = doc(
        1,
        perf,
        json!([{"port": app, "protocol": "http", "options": {"OPEN": "YES"}}]),
    );
    std::fs::write(&file, d.to_string()).unwrap();
    let running = spawn(&["--document", file.to_str().unwrap()], &[]);
    eventually("/ready answers 200", || {
        http_get(perf, "/ready").is_some_and(|(s, _)| s == 200)
    });
    send(app, 3);
    eventually("3 requests in the summary", || requests(perf) == 3);
    let (status, metrics) = http_get(perf, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "kato_perf_requests_total{{port=\"{app}\",protocol=\"http\",route=\"GET /fast\",outcome=\"ok\"}} 3"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("kato_perf_latency_seconds_bucket"));
    assert!(terminate(running).success(), "exit 0 after SIGTERM");
    let _ = std::fs::remove_file(file);
}

#[test]
fn binary_refuses_a_bad_document() {
    let d = doc(
        1,
        1,
        json!([{"port": 80, "protocol": "http", "options": {"OPEN": "sometimes"}}]),
    );
    let file = std::env::temp_dir().join(format!("kato-perf-bad-{}.json", std::process::id()));
    std::fs::write(&file, d.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kato-perf"))
        .args(["--document", file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(file);
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.contains("port 80 (http): OPEN `sometimes` is neither YES nor NO"),
        "{logs}"
    );
}

type Docs = Arc<Mutex<Vec<Value>>>;

/// A discovery server: the newest document of `docs` past the asked revision, else 304 after
/// a second; acks are collected.
fn discovery(docs: Docs) -> (String, Arc<Mutex<Vec<Value>>>) {
    let acks = Arc::new(Mutex::new(Vec::new()));
    let seen = acks.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!(
                "http://{}/discovery/v1/team/web/perf",
                socket.local_addr().unwrap()
            ))
            .unwrap();
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
                            for _ in 0..50 {
                                let newest = docs.lock().unwrap().last().cloned();
                                if let Some(d) = newest.filter(|d| d["revision"].as_u64().unwrap() > after) {
                                    return Ok(Response::new(Full::new(Bytes::from(d.to_string()))));
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            let mut res = Response::new(Full::new(Bytes::new()));
                            *res.status_mut() = hyper::StatusCode::NOT_MODIFIED;
                            Ok(res)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    (rx.recv().unwrap(), acks)
}

#[test]
fn binary_watches_applies_acks_and_rejects() {
    let app = serve(Arc::default());
    let perf = free_port();
    let docs: Docs = Arc::default();
    docs.lock().unwrap().push(doc(
        1,
        perf,
        json!([{"port": app, "protocol": "http", "options": {"OPEN": "YES"}}]),
    ));
    let (url, acks) = discovery(docs.clone());
    let running = spawn(
        &[],
        &[
            ("KATO_DISCOVERY_URL", url),
            ("KATO_DISCOVERY_TOKEN", "secret".into()),
            ("HOSTNAME", "web-0".into()),
        ],
    );
    let ack = |n: usize| {
        eventually(&format!("ack {n}"), || acks.lock().unwrap().len() >= n);
        acks.lock().unwrap()[n - 1].clone()
    };
    let first = ack(1);
    assert_eq!(
        (first["revision"].clone(), first["pod"].clone(), first["status"].clone()),
        (json!(1), json!("web-0"), json!("applied"))
    );
    assert_eq!(
        first["message"],
        format!("analysing 1 port: {app} (http); summary and metrics on :{perf}")
    );
    send(app, 4);
    eventually("4 requests in the summary", || requests(perf) == 4);

    // OPEN=NO, live: acked, and the port's figures stop.
    docs.lock().unwrap().push(doc(
        2,
        perf,
        json!([{"port": app, "protocol": "http", "options": {"OPEN": "NO"}}]),
    ));
    let second = ack(2);
    assert_eq!(second["status"], "applied");
    assert_eq!(
        second["message"],
        format!("analysing 0 ports; summary and metrics on :{perf}; {app} (http) OPEN=NO")
    );
    send(app, 2);
    std::thread::sleep(Duration::from_millis(300));
    let (_, summary) = http_get(perf, "/summary").unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["ports"], json!([]), "{summary:#}");

    // A bad value: rejected with the reason, the last good config stays.
    docs.lock().unwrap().push(doc(
        3,
        perf,
        json!([{"port": app, "protocol": "http", "options": {"OPEN": "si"}}]),
    ));
    let third = ack(3);
    assert_eq!(third["status"], "rejected");
    assert_eq!(
        third["message"],
        format!("port {app} (http): OPEN `si` is neither YES nor NO; give YES to analyse the port, NO to leave it")
    );
    assert!(http_get(perf, "/ready").is_some_and(|(s, _)| s == 200));
    assert!(terminate(running).success());
}
