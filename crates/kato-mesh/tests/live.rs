//! Revisions applied live: settings swap under open connections, rejected revisions leave the
//! last good config serving, listeners come and go, and shutdown drains.

mod common;

use std::time::Duration;

use common::*;
use kato_mesh::{Rejection, Role};
use serde_json::json;
use tokio::net::TcpStream;

#[tokio::test]
async fn max_connections_lowered_live_keeps_the_open_connection() {
    let server = echo().await;
    let mut mesh = mesh(&[("db", server)]);
    let tcp = |rev, max: &str| {
        doc(
            rev,
            json!({}),
            json!([]),
            json!([{"component": "db", "port": 0, "protocol": "tcp", "options": {"MaxConnections": max}}]),
        )
    };
    mesh.apply(config(&tcp(1, "2"))).await.unwrap();
    let addr = mesh.local_addr(Role::Outbound, 0).unwrap();
    let mut open = TcpStream::connect(addr).await.unwrap();
    assert!(echo_round(&mut open, b"one").await.is_some());

    mesh.apply(config(&tcp(2, "1"))).await.unwrap();
    assert_eq!(mesh.local_addr(Role::Outbound, 0), Some(addr), "the socket is kept");
    assert_eq!(
        echo_round(&mut open, b"still").await.as_deref(),
        Some(&b"still"[..]),
        "the open connection survives"
    );
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        echo_round(&mut refused, b"x").await,
        None,
        "past MaxConnections: closed at once"
    );

    drop(open);
    eventually("a place frees once the open connection closes", || async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        echo_round(&mut s, b"y").await.is_some()
    })
    .await;
}

#[tokio::test]
async fn bad_value_is_rejected_and_the_last_config_keeps_serving() {
    let app = backend("app").await;
    let mut mesh = mesh(&[("db", app.addr)]);
    let good = doc(
        1,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0, "options": {}}]),
        json!([]),
    );
    mesh.apply(config(&good)).await.unwrap();
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());

    let bad = doc(
        2,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0, "options": {}}]),
        json!([{"component": "db", "port": 8080, "protocol": "http", "options": {"MaxConnections": "abc"}}]),
    );
    let err = kato_mesh::Config::from_value(&bad, TEAM).unwrap_err();
    assert_eq!(
        err.to_string(),
        "outbound db:8080: MaxConnections `abc` is not a whole number; give a number from 1 to 1000000"
    );
    assert_eq!(get(addr, "h", "/").await.status, 200);
    assert_eq!(mesh.current().unwrap().revision, 1);

    // A port taken by someone else: the bind fails, nothing changes.
    let squatter = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let clash = doc(
        3,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": taken, "options": {}}]),
        json!([]),
    );
    let err = mesh.apply(config(&clash)).await.unwrap_err();
    assert!(matches!(err, Rejection::Bind { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("cannot listen on 0.0.0.0:{taken}")),
        "{err}"
    );
    assert_eq!(mesh.current().unwrap().revision, 1);
    assert_eq!(mesh.local_addr(Role::Inbound, taken), None);
    assert_eq!(get(addr, "h", "/").await.status, 200, "the old listener still serves");
    assert!(mesh.is_ready());
}

#[tokio::test]
async fn listeners_are_added_and_removed_live() {
    let app = backend("app").await;
    let mut mesh = mesh(&[]);
    let p = app.addr.port();
    let second = free_port();
    let one = json!({"port": p, "protocol": "http", "listen_port": 0, "options": {}});
    let two = json!({"port": p, "protocol": "http", "listen_port": second, "options": {}});
    mesh.apply(config(&doc(1, json!({}), json!([one.clone()]), json!([]))))
        .await
        .unwrap();
    let first_addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());

    let summary = mesh
        .apply(config(&doc(2, json!({}), json!([one, two.clone()]), json!([]))))
        .await
        .unwrap();
    assert_eq!(summary.listeners.len(), 2);
    let second_addr = local(mesh.local_addr(Role::Inbound, second).unwrap());
    assert_eq!(get(second_addr, "h", "/b").await.body, "app /b");
    assert_eq!(local(mesh.local_addr(Role::Inbound, 0).unwrap()), first_addr);

    // A request in flight on the listener about to go finishes after it is removed.
    app.gate.send_replace(false);
    let hits = app.hits();
    let in_flight = tokio::spawn(async move { get(first_addr, "h", "/slow").await });
    eventually("the request reaches the app", || async { app.hits() > hits }).await;
    mesh.apply(config(&doc(3, json!({"DRAIN_SECONDS": "30"}), json!([two]), json!([]))))
        .await
        .unwrap();
    assert_eq!(mesh.local_addr(Role::Inbound, 0), None);
    eventually("the removed listener stops accepting", || async {
        TcpStream::connect(first_addr).await.is_err()
    })
    .await;
    app.gate.send_replace(true);
    let got = in_flight.await.unwrap();
    assert_eq!((got.status, got.body.as_str()), (200, "app /slow"));
    assert_eq!(get(second_addr, "h", "/c").await.status, 200);
}

#[tokio::test]
async fn drain_turns_ready_off_and_finishes_in_flight_requests() {
    let app = backend("app").await;
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({"DRAIN_SECONDS": "30"}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0, "options": {}}]),
        json!([]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());
    let admin = local(mesh.admin_addr().unwrap());
    assert_eq!(get(admin, "x", "/ready").await.status, 200);

    app.gate.send_replace(false);
    let in_flight = tokio::spawn(async move { get(addr, "h", "/slow").await });
    eventually("the request reaches the app", || async { app.hits() == 1 }).await;
    let draining = tokio::spawn(async move {
        mesh.drain().await;
        mesh
    });
    eventually("/ready answers 503 while draining", || async {
        match Conn::open(admin).await {
            Ok(mut c) => c.get("x", "/ready", &[]).await.is_ok_and(|g| g.status == 503),
            Err(_) => false,
        }
    })
    .await;
    eventually("no new connections while draining", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!draining.is_finished(), "drain waits for the request in flight");
    app.gate.send_replace(true);
    assert_eq!(in_flight.await.unwrap().status, 200);
    let mesh = tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("drain ends once nothing is in flight")
        .unwrap();
    assert!(!mesh.is_ready());
}

#[tokio::test]
async fn drain_is_bounded_by_drain_seconds() {
    let app = backend("app").await;
    app.gate.send_replace(false);
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({"DRAIN_SECONDS": "0"}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0, "options": {}}]),
        json!([]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());
    let stuck = tokio::spawn(async move {
        let mut c = Conn::open(addr).await.unwrap();
        c.get("h", "/stuck", &[]).await.map(|g| g.status)
    });
    eventually("the request reaches the app", || async { app.hits() == 1 }).await;
    tokio::time::timeout(Duration::from_secs(10), mesh.drain())
        .await
        .expect("drain gives up after DRAIN_SECONDS");
    assert!(stuck.await.unwrap().is_err(), "the unfinished request is cut");
}
