//! A real AF_PACKET capture on `lo` (the tests run as root, or with CAP_NET_RAW): an HTTP
//! server made here answers `/fast` in 5 ms and `/slow` in 50 ms; the plug-in's counts are
//! exact and its p50 per path is within 10 % of the server's own measure.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kato_perf::{Capture, Protocol};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_real_exchange_on_lo_is_measured() {
    let truth: Truth = Arc::default();
    let port = serve(truth.clone());
    let capture = Capture::start(50).expect("the tests run as root (CAP_NET_RAW)");
    capture.set_ports(BTreeMap::from([(port, Protocol::Http)]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while capture.analysed().is_empty() {
        assert!(Instant::now() < deadline, "the capture never applied the ports");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Three keep-alive connections, then pipelined requests on a fourth.
    for c in 0..3 {
        let mut conn = BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
        for i in 0..10 {
            let path = if i % 3 == 0 { "/slow" } else { "/fast" };
            write!(conn.get_mut(), "GET {path}?c={c}&i={i} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            read_response(&mut conn);
        }
    }
    let mut conn = BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
    conn.get_mut()
        .write_all(b"GET /fast HTTP/1.1\r\n\r\nGET /boom/42 HTTP/1.1\r\n\r\n")
        .unwrap();
    read_response(&mut conn);
    read_response(&mut conn);
    drop(conn);

    std::thread::sleep(Duration::from_millis(300));
    let summary = capture.summary();
    capture.stop();
    let json = serde_json::to_value(&summary).unwrap();
    let window = &json["ports"][0]["windows"]["1m"];
    let counts: BTreeMap<String, u64> = window["most_frequent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["route"].as_str().unwrap().to_owned(), r["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("GET /fast".into(), 19),
            ("GET /slow".into(), 12),
            ("GET /boom/{id}".into(), 1)
        ]),
        "{json:#}"
    );
    assert_eq!(window["all"]["errors"], 1, "{json:#}");
    let mut truth = truth.lock().unwrap();
    for route in ["fast", "slow"] {
        let want = median(truth.get_mut(&format!("/{route}")).unwrap());
        let got = window["most_frequent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == format!("GET /{route}"))
            .unwrap()["p50_ms"]
            .as_f64()
            .unwrap();
        eprintln!("/{route}: plug-in p50 {got:.3} ms, server {want:.3} ms");
        assert!((got - want).abs() / want < 0.10, "/{route}: {got} ms vs {want} ms");
    }
    assert_eq!(summary.undecodable_flows.values().sum::<u64>(), 0, "{json:#}");
    assert!(summary.warning.is_none(), "{json:#}");
    assert_eq!(summary.flows, 4);
}

fn wait_applied(capture: &Capture, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while capture.analysed().len() != want {
        assert!(Instant::now() < deadline, "the capture never applied the ports");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut p = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    p.extend_from_slice(payload);
    p
}

fn read_packet(conn: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    conn.read_exact(&mut h).ok()?;
    let n = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0; n];
    conn.read_exact(&mut p).ok()?;
    Some((h[3], p))
}

/// Enough of a MySQL server: a greeting, OK to any login, then `select sleep(…)` answered OK
/// after 20 ms and anything else answered ERR at once.
fn mysql_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            std::thread::spawn(move || {
                let mut conn = conn.unwrap();
                conn.write_all(&packet(0, b"\x0a8.0.36-fake\0\x01\0\0\0salt")).unwrap();
                read_packet(&mut conn).unwrap();
                conn.write_all(&packet(2, &[0, 0, 0, 2, 0, 0, 0])).unwrap();
                while let Some((_, p)) = read_packet(&mut conn) {
                    if p.first() == Some(&1) {
                        return; // COM_QUIT
                    }
                    let sql = String::from_utf8_lossy(&p[1..]).to_lowercase();
                    if sql.contains("sleep") {
                        std::thread::sleep(Duration::from_millis(20));
                        conn.write_all(&packet(1, &[0, 0, 0, 2, 0, 0, 0])).unwrap();
                    } else {
                        conn.write_all(&packet(1, b"\xff\x7a\x04#42S02no such table")).unwrap();
                    }
                }
            });
        }
    });
    port
}

#[test]
fn mysql_queries_garbage_and_ports_switched_off() {
    let mysql = mysql_server();
    let truth: Truth = Arc::default();
    let http = serve(truth);
    let capture = Capture::start(50).expect("the tests run as root (CAP_NET_RAW)");
    capture.set_ports(BTreeMap::from([(mysql, Protocol::Mysql), (http, Protocol::Http)]));
    wait_applied(&capture, 2);

    let mut conn = TcpStream::connect(("127.0.0.1", mysql)).unwrap();
    read_packet(&mut conn).unwrap();
    conn.write_all(&packet(1, b"login")).unwrap();
    read_packet(&mut conn).unwrap();
    for q in [
        "SELECT SLEEP(0.02)",
        "select sleep(1)",
        "SELECT * FROM nope WHERE id = 7",
    ] {
        let mut p = vec![3];
        p.extend_from_slice(q.as_bytes());
        conn.write_all(&packet(0, &p)).unwrap();
        read_packet(&mut conn).unwrap();
    }
    conn.write_all(&packet(0, &[1])).unwrap();
    drop(conn);

    // Not HTTP: one undecodable flow, no panic, nothing recorded.
    let mut junk = TcpStream::connect(("127.0.0.1", http)).unwrap();
    junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS, not HTTP\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(junk);

    std::thread::sleep(Duration::from_millis(300));
    let summary = serde_json::to_value(capture.summary()).unwrap();
    let port = |p: u16| {
        summary["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["port"] == p)
            .unwrap()["windows"]["1m"]
            .clone()
    };
    let m = port(mysql);
    let routes: BTreeMap<String, (u64, u64, f64)> = m["most_frequent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap().to_owned(),
                (
                    r["requests"].as_u64().unwrap(),
                    r["errors"].as_u64().unwrap(),
                    r["p50_ms"].as_f64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(routes.len(), 2, "{summary:#}");
    let (n, errors, p50) = routes["select sleep(?)"];
    assert_eq!((n, errors), (2, 0));
    assert!((p50 - 20.0).abs() < 2.0, "{p50}");
    assert_eq!(routes["select * from nope where id = ?"].0, 1);
    assert_eq!(routes["select * from nope where id = ?"].1, 1);
    assert_eq!(summary["undecodable_flows"]["malformed"], 1, "{summary:#}");
    assert_eq!(port(http)["all"]["requests"], 0);

    // The HTTP port switched off: its traffic is no longer looked at.
    capture.set_ports(BTreeMap::from([(mysql, Protocol::Mysql)]));
    wait_applied(&capture, 1);
    let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", http)).unwrap());
    c.get_mut().write_all(b"GET /fast HTTP/1.1\r\n\r\n").unwrap();
    read_response(&mut c);
    std::thread::sleep(Duration::from_millis(200));
    let after = capture.summary();
    capture.stop();
    assert_eq!(after.ports.len(), 1);
    assert!(!capture.metrics().contains(&format!("port=\"{http}\"")));
}
