//! Helpers of kato-perf's tests: an HTTP/1.1 server with known delays per path, and a tiny
//! HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Truth = Arc<Mutex<BTreeMap<String, Vec<f64>>>>;

/// A keep-alive HTTP/1.1 server: the delay per path, measured from the request's last byte read
/// to the response written.
pub fn serve(truth: Truth) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let truth = truth.clone();
            std::thread::spawn(move || {
                let mut conn = BufReader::new(conn.unwrap());
                loop {
                    let mut line = String::new();
                    if conn.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                    loop {
                        let mut h = String::new();
                        conn.read_line(&mut h).unwrap();
                        if h == "\r\n" {
                            break;
                        }
                    }
                    let start = Instant::now();
                    let (delay, status) = match path.split('?').next().unwrap() {
                        "/fast" => (5, "200 OK"),
                        "/slow" => (50, "200 OK"),
                        _ => (0, "500 Oops"),
                    };
                    std::thread::sleep(Duration::from_millis(delay));
                    let body = "done";
                    let res = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    conn.get_mut().write_all(res.as_bytes()).unwrap();
                    let took = start.elapsed().as_secs_f64() * 1000.0;
                    let key = path.split('?').next().unwrap().to_owned();
                    truth.lock().unwrap().entry(key).or_default().push(took);
                }
            });
        }
    });
    port
}

pub fn read_response(conn: &mut BufReader<TcpStream>) {
    let mut len = 0;
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).unwrap();
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if h == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    conn.read_exact(&mut body).unwrap();
}

/// A port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:port: the status and body, or none when nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Waits up to 10 s for `check`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
