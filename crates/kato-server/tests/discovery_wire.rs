//! Discovery over a real socket, as plug-ins call it: the listener answers plain document GETs
//! itself and hands everything else to axum; both must answer alike, on the same connection.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const DOC: &str = "/discovery/v1/demo/web/mesh";

struct Live {
    s: Server,
    addr: std::net::SocketAddr,
    token: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

/// Team `demo`, plug-in `mesh` with one discovery value installed on component `web`, served
/// on a loopback port.
async fn live() -> Live {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/mesh").await;
    s.plugin(
        "demo",
        json!({"name": "mesh", "kind": "general", "source": {"image": image}, "config_groups": [
            {"name": "base", "meta": "none", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]}]}),
    )
    .await;
    let (status, v) = s
        .call(
            Method::PUT,
            "/teams/demo/components/web",
            Some(json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}]})),
        )
        .await;
    assert!(status.is_success(), "{v}");
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        None,
        StatusCode::CREATED,
    )
    .await;
    let (team, component, plugin) = ("demo".parse().unwrap(), "web".parse().unwrap(), "mesh".parse().unwrap());
    let record = s
        .state
        .store
        .get_installation(&team, &component, &plugin)
        .await
        .unwrap()
        .unwrap();
    let token = s.state.discovery.token(&team, &component, &record);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = s.state.clone();
    let done = tokio::spawn(async move {
        kato_server::serve_on(listener, state, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Live {
        s,
        addr,
        token,
        stop: Some(stop),
        done,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 client connection; reads answers one after the other, within 30 s each.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, path: &str, token: Option<&str>, extra: &str) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: kato\r\n{auth}{extra}\r\n");
        self.stream.write_all(req.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn answer(&mut self) -> Answer {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill().await > 0, "the connection closed before an answer");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        while self.buf.len() < end + 4 + len {
            assert!(self.fill().await > 0, "the connection closed within a body");
        }
        let body = self.buf[end + 4..end + 4 + len].to_vec();
        self.buf.drain(..end + 4 + len);
        Answer { status, headers, body }
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> Answer {
        self.send(path, token, "").await;
        self.answer().await
    }

    /// Whether the server closed the connection (after what it answered).
    async fn closed(&mut self) -> bool {
        self.fill().await == 0
    }
}

async fn wait_for_watchers(l: &Live, n: usize) {
    let key = kato_store::InstallationKey {
        team: "demo".parse().unwrap(),
        component: "web".parse().unwrap(),
        plugin: "mesh".parse().unwrap(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while l.s.state.discovery.hub.waiters(&key) != n {
        assert!(tokio::time::Instant::now() < deadline, "never {n} waiters");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn change(l: &Live, level: &str) {
    l.s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": level}}})),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_documents_long_polls_and_the_api() {
    let l = live().await;
    let mut c = Client::connect(l.addr).await;
    let a = c.get(DOC, Some(&l.token)).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert!(a.header("date").is_some());
    let r = a.json()["revision"].as_u64().unwrap();
    assert_eq!(a.header("x-kato-revision"), Some(r.to_string().as_str()));
    assert_eq!(a.json()["base"]["LEVEL"], "info");

    // Up to date: 304 once the wait is over, with the revision.
    let a = c.get(&format!("{DOC}?revision={r}&wait=1"), Some(&l.token)).await;
    assert_eq!(a.status, 304, "{a:?}");
    assert_eq!(a.header("x-kato-revision"), Some(r.to_string().as_str()));
    assert!(a.body.is_empty());

    // A change wakes the waiting long-poll with the new document.
    c.send(&format!("{DOC}?revision={r}&wait=60"), Some(&l.token), "").await;
    wait_for_watchers(&l, 1).await;
    change(&l, "warn").await;
    let a = c.answer().await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.json()["revision"].as_u64().unwrap() > r);
    assert_eq!(a.json()["base"]["LEVEL"], "warn");

    // The API on the same connection goes to axum, and so does what follows.
    c.send("/api/v1/teams", Some(&l.s.admin), "").await;
    let a = c.answer().await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()[0]["name"], "demo");
    let a = c.get(DOC, Some(&l.token)).await;
    assert_eq!(a.json()["base"]["LEVEL"], "warn");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_axums_own() {
    let l = live().await;
    for (path, token) in [
        (DOC.to_owned(), None),
        (DOC.to_owned(), Some("kd_nope")),
        ("/discovery/v1/demo/web/nope".to_owned(), Some(l.token.as_str())),
        (format!("{DOC}?revision=x"), Some(l.token.as_str())),
        (format!("{DOC}?since=1"), Some(l.token.as_str())),
    ] {
        let mut c = Client::connect(l.addr).await;
        let wire = c.get(&path, token).await;
        // The same request through the router in-process.
        let (status, body) = l.s.raw(Method::GET, &path, token, None).await;
        assert_eq!(wire.status, status.as_u16(), "{path}: {wire:?}");
        assert_eq!(wire.json(), serde_json::from_str::<Value>(&body).unwrap(), "{path}");
        assert!(wire.json()["error"]["message"].is_string(), "{path}: {wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_answered_as_axum_answers_them() {
    let l = live().await;
    // `w%65b` is `web` to axum, and not a path the listener takes: the same document by both.
    let mut c = Client::connect(l.addr).await;
    for close in ["", "Connection: close\r\n"] {
        let mut lean = Client::connect(l.addr).await;
        lean.send(DOC, Some(&l.token), close).await;
        let lean = lean.answer().await;
        c = Client::connect(l.addr).await;
        c.send("/discovery/v1/demo/w%65b/mesh", Some(&l.token), close).await;
        let axum = c.answer().await;
        let without_date = |a: &Answer| {
            let mut h: Vec<_> = a.headers.iter().filter(|(n, _)| n != "date").cloned().collect();
            h.sort();
            h
        };
        assert_eq!(lean.status, 200, "{lean:?}");
        assert_eq!((lean.status, without_date(&lean)), (axum.status, without_date(&axum)));
        assert_eq!(lean.body, axum.body);
        assert!(lean.header("date").is_some() && axum.header("date").is_some());
    }
    assert!(c.closed().await, "`Connection: close` closes the connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let l = live().await;
    let mut c = Client::connect(l.addr).await;
    let auth = format!("Authorization: Bearer {}\r\n", l.token);
    let two = format!(
        "GET {DOC} HTTP/1.1\r\nHost: k\r\n{auth}\r\nGET /discovery/v1/demo/web/nope HTTP/1.1\r\nHost: k\r\n{auth}\r\n"
    );
    c.stream.write_all(two.as_bytes()).await.unwrap();
    assert_eq!(c.answer().await.status, 200);
    assert_eq!(c.answer().await.status, 404);
    c.send(DOC, Some(&l.token), "Connection: close\r\n").await;
    let a = c.answer().await;
    assert_eq!((a.status, a.header("connection")), (200, Some("close")));
    assert!(c.closed().await, "closed after `Connection: close`");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_frees_its_waiter() {
    let l = live().await;
    let r = Client::connect(l.addr).await.get(DOC, Some(&l.token)).await.json()["revision"]
        .as_u64()
        .unwrap();
    let mut c = Client::connect(l.addr).await;
    c.send(&format!("{DOC}?revision={r}&wait=300"), Some(&l.token), "")
        .await;
    wait_for_watchers(&l, 1).await;
    drop(c);
    wait_for_watchers(&l, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_server_answers_waiting_long_polls() {
    let mut l = live().await;
    let r = Client::connect(l.addr).await.get(DOC, Some(&l.token)).await.json()["revision"]
        .as_u64()
        .unwrap();
    let mut waiting = Client::connect(l.addr).await;
    waiting
        .send(&format!("{DOC}?revision={r}&wait=300"), Some(&l.token), "")
        .await;
    let mut idle = Client::connect(l.addr).await;
    assert_eq!(idle.get(DOC, Some(&l.token)).await.status, 200);
    wait_for_watchers(&l, 1).await;
    l.stop.take().unwrap().send(()).unwrap();
    let a = waiting.answer().await;
    assert_eq!((a.status, a.header("connection")), (304, Some("close")), "{a:?}");
    assert!(waiting.closed().await);
    assert!(idle.closed().await, "an idle connection is closed too");
    tokio::time::timeout(Duration::from_secs(30), l.done)
        .await
        .expect("the server stops")
        .unwrap();
}
