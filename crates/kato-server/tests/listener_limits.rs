//! The listener's limits over a real socket: request heads that never finish, connections that
//! idle, floods of connections, and floods of acks. Every wait here is for an observable event
//! (a closed socket, a counter reaching a number), bounded generously; the limits are short so
//! that the tests are quick.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::Server;
use kato_server::listener::{Connections, Limits};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const DOC: &str = "/discovery/v1/demo/web/mesh";
/// How long any awaited event may take before the test fails: far over every limit used here.
const BOUND: Duration = Duration::from_secs(60);

struct Live {
    s: Server,
    addr: std::net::SocketAddr,
    token: String,
    connections: Arc<Connections>,
    _stop: oneshot::Sender<()>,
}

/// Team `demo` with plug-in `mesh` installed on `web`, served on a loopback port with `limits`.
async fn live(limits: Limits) -> Live {
    let s = Server::start().await;
    s.team("demo").await;
    let image = s.image("demo/mesh").await;
    s.plugin(
        "demo",
        json!({"name": "mesh", "kind": "general", "source": {"image": image}, "config_groups": [
            {"name": "base", "meta": "none", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]}]}),
    )
    .await;
    let web = json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}]});
    let (status, v) = s.call(Method::PUT, "/teams/demo/components/web", Some(web)).await;
    assert!(status.is_success(), "{v}");
    let install = "/teams/demo/components/web/plugins/mesh";
    s.ok(Method::PUT, install, None, StatusCode::CREATED).await;
    let (team, component, plugin) = ("demo".parse().unwrap(), "web".parse().unwrap(), "mesh".parse().unwrap());
    let record = s.state.store.get_installation(&team, &component, &plugin).await;
    let token = s.state.discovery.token(&team, &component, &record.unwrap().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Connections::new(limits);
    let (stop, stopped) = oneshot::channel::<()>();
    let (state, conns) = (s.state.clone(), connections.clone());
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        kato_server::serve_listeners(listener, None, state, conns, shutdown)
            .await
            .unwrap();
    });
    Live {
        s,
        addr,
        token,
        connections,
        _stop: stop,
    }
}

fn short(max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        max_connections,
    }
}

/// Reads until the server closes the connection (or resets it); what it sent meanwhile.
async fn until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&got).into_owned()
}

/// One whole request and its answer's status line, on a fresh connection.
async fn request(addr: std::net::SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut s).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Waits until `done` holds, checking often; fails after [`BOUND`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `head`, then one more byte of a never-ending header every 100 ms, until the server
/// closes the connection; answers what the server sent.
async fn dribble(addr: std::net::SocketAddr, head: &'static str) -> String {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        while wr.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the server closes a connection whose head never ends");
    writer.abort();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn heads_that_never_finish_are_cut_off_and_others_are_still_answered() {
    let l = live(short(1000)).await;
    let mut slow = Vec::new();
    // Connections that say nothing, ones that dribble a discovery GET's head byte by byte, and
    // ones that dribble the head of their second request, after one answered by axum.
    for _ in 0..10 {
        let addr = l.addr;
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            until_closed(&mut s).await
        }));
        slow.push(tokio::spawn(dribble(
            addr,
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nHost: k\r\nX-Slow: ",
        )));
        slow.push(tokio::spawn(dribble(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: k\r\n\r\nGET /healthz HTTP/1.1\r\nX-Slow: ",
        )));
    }
    eventually("the slow clients are connected", || l.connections.open() >= 30).await;
    // Meanwhile, everyone else is answered.
    for _ in 0..5 {
        let status = request(l.addr, "GET /healthz HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
    }
    for (i, task) in slow.into_iter().enumerate() {
        let sent = task.await.unwrap();
        // The third kind got its first answer; nobody got anything else.
        let answers = sent.matches("HTTP/1.1 200 OK").count();
        assert_eq!(answers, usize::from(i % 3 == 2), "{sent}");
    }
    eventually("every slow connection is closed", || l.connections.open() == 0).await;
    assert!(l.connections.timed_out() >= 30, "{}", l.connections.timed_out());
}

#[tokio::test]
async fn idle_connections_are_closed_but_a_long_poll_waits_its_whole_wait() {
    let l = live(short(1000)).await;
    let get = |query: &str| {
        format!(
            "GET {DOC}{query} HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {}\r\n\r\n",
            l.token
        )
    };
    // Answered, then idle: closed after the idle limit.
    let mut idle = TcpStream::connect(l.addr).await.unwrap();
    idle.write_all(get("").as_bytes()).await.unwrap();
    let sent = until_closed(&mut idle).await;
    assert!(sent.starts_with("HTTP/1.1 200 OK"), "{sent}");
    let revision: u64 = sent
        .lines()
        .find_map(|l| l.strip_prefix("x-kato-revision: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // A long-poll of 4 s, twice the idle limit: its wait is not idle, so it gets its 304.
    let mut polling = TcpStream::connect(l.addr).await.unwrap();
    let poll = get(&format!("?revision={revision}&wait=4"));
    polling.write_all(poll.as_bytes()).await.unwrap();
    let sent = until_closed(&mut polling).await;
    assert!(sent.starts_with("HTTP/1.1 304 Not Modified"), "{sent}");
    assert_eq!(sent.matches("HTTP/1.1").count(), 1, "{sent}");
    eventually("both connections are counted closed", || l.connections.open() == 0).await;
    assert!(l.connections.timed_out() >= 2);
}

/// RSS of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_connection_flood_is_held_to_the_cap() {
    const CAP: usize = 50;
    const FLOOD: usize = 2000;
    let limits = Limits {
        header_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        max_connections: CAP,
    };
    let l = live(limits).await;
    let before = rss_kib();
    // Each sends most of a head, which the server buffers while it waits for the rest.
    let partial = format!("GET /healthz HTTP/1.1\r\nX-Fill: {}", "x".repeat(3500));
    let mut held = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut s = TcpStream::connect(l.addr).await.unwrap();
        let _ = s.write_all(partial.as_bytes()).await;
        held.push(s);
        assert!(l.connections.open() <= CAP, "{} open", l.connections.open());
    }
    let refused = (FLOOD - CAP) as u64;
    eventually("the connections over the cap are refused", || {
        l.connections.refused() == refused
    })
    .await;
    assert_eq!(l.connections.open(), CAP);
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the server grew by {grown} KiB with {CAP} connections held"
    );
    // The last one was refused with a reason.
    let last = until_closed(held.last_mut().unwrap()).await;
    assert!(last.starts_with("HTTP/1.1 503 Service Unavailable"), "{last}");
    assert!(last.contains("--max-connections"), "{last}");

    // Once the flood leaves, the server serves again.
    drop(held);
    eventually("the flood's connections are closed", || l.connections.open() == 0).await;
    let status = request(l.addr, "GET /healthz HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn an_ack_flood_from_made_up_pods_keeps_the_rows_bounded() {
    let l = live(Limits::default()).await;
    let flood = kato_store::MAX_ACK_PODS * 4;
    for i in 0..flood {
        let body = json!({"revision": 1, "pod": format!("made-up-{i}"), "status": "applied"});
        let (status, text) =
            l.s.raw(Method::POST, &format!("{DOC}/ack"), Some(&l.token), Some(body))
                .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    }
    let (team, component) = ("demo".parse().unwrap(), "web".parse().unwrap());
    let acks = l.s.state.store.list_acks(&team, &component).await.unwrap();
    assert_eq!(acks.len(), kato_store::MAX_ACK_PODS);
    let status =
        l.s.ok(Method::GET, "/teams/demo/components/web/status", None, StatusCode::OK)
            .await;
    let shown = status["plugins"][0]["acks"].as_array().unwrap().len();
    assert_eq!(shown, kato_store::MAX_ACK_PODS, "{status}");
}
