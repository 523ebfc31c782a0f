//! A component for kato-perf's podman test (tests/podman.rs): known latencies, and a load
//! generator, in one static-free binary that runs in a busybox image.
//!
//! ```text
//! perf-demo serve                          HTTP on :8080 (/fast 5 ms, /slow 50 ms, else 500) and a
//!                                          MySQL-protocol server on :3306 (`… users …` 5 ms,
//!                                          `… orders …` 30 ms, else ERR); prints `truth <what> <ms>`
//! perf-demo http HOST:PORT PATH N RATE     N keep-alive GETs at RATE per second
//! perf-demo mysql HOST:PORT N              N × (a users query, an orders query, a bad one)
//! perf-demo junk HOST:PORT                 bytes that are not HTTP
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "serve" => serve(),
        "http" => http(&arg(1), &arg(2), arg(3).parse().unwrap(), arg(4).parse().unwrap()),
        "mysql" => mysql(&arg(1), arg(2).parse().unwrap()),
        "junk" => {
            let mut s = TcpStream::connect(arg(1)).unwrap();
            s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP at all\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            println!("junk sent");
        }
        other => {
            eprintln!("perf-demo: unknown command `{other}`");
            std::process::exit(2);
        }
    }
}

fn serve() {
    let mysql = TcpListener::bind("0.0.0.0:3306").unwrap();
    std::thread::spawn(move || {
        for c in mysql.incoming().flatten() {
            std::thread::spawn(move || mysql_conn(c));
        }
    });
    let http = TcpListener::bind("0.0.0.0:8080").unwrap();
    println!("serving");
    for c in http.incoming().flatten() {
        std::thread::spawn(move || http_conn(c));
    }
}

fn http_conn(c: TcpStream) {
    let mut c = BufReader::new(c);
    loop {
        let mut line = String::new();
        if c.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap_or("/")
            .to_owned();
        loop {
            let mut h = String::new();
            if c.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let start = Instant::now();
        let (delay, status) = match path.as_str() {
            "/fast" => (5, "200 OK"),
            "/slow" => (50, "200 OK"),
            _ => (0, "500 Internal Server Error"),
        };
        std::thread::sleep(Duration::from_millis(delay));
        let res = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok");
        if c.get_mut().write_all(res.as_bytes()).is_err() {
            return;
        }
        println!("truth http {path} {:.3}", start.elapsed().as_secs_f64() * 1000.0);
    }
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut p = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    p.extend_from_slice(payload);
    p
}

fn read_packet(c: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    c.read_exact(&mut h).ok()?;
    let n = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0; n];
    c.read_exact(&mut p).ok()?;
    Some((h[3], p))
}

const OK: [u8; 7] = [0, 0, 0, 2, 0, 0, 0];

fn mysql_conn(mut c: TcpStream) {
    let _ = c.write_all(&packet(0, b"\x0a8.0.36-perf-demo\0\x01\0\0\0saltsalt\0"));
    if read_packet(&mut c).is_none() {
        return;
    }
    let _ = c.write_all(&packet(2, &OK));
    while let Some((_, p)) = read_packet(&mut c) {
        match p.first() {
            Some(1) | None => return, // COM_QUIT
            Some(3) => {}
            Some(_) => {
                let _ = c.write_all(&packet(1, &OK));
                continue;
            }
        }
        let sql = String::from_utf8_lossy(&p[1..]).to_lowercase();
        let start = Instant::now();
        let (what, delay) = if sql.contains("users") {
            ("users", Some(5))
        } else if sql.contains("orders") {
            ("orders", Some(30))
        } else {
            ("bad", None)
        };
        let answer = match delay {
            Some(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                packet(1, &OK)
            }
            None => packet(1, b"\xff\x7a\x04#42S02Table doesn't exist"),
        };
        if c.write_all(&answer).is_err() {
            return;
        }
        println!("truth mysql {what} {:.3}", start.elapsed().as_secs_f64() * 1000.0);
    }
}

fn http(addr: &str, path: &str, n: usize, rate: f64) {
    let mut c = BufReader::new(TcpStream::connect(addr).unwrap());
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for i in 0..n {
        let due = start + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        write!(c.get_mut(), "GET {path}?i={i} HTTP/1.1\r\nHost: web\r\n\r\n").unwrap();
        let mut len = 0;
        loop {
            let mut h = String::new();
            c.read_line(&mut h).unwrap();
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if h == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        c.read_exact(&mut body).unwrap();
    }
    println!("done {n}");
}

fn mysql(addr: &str, n: usize) {
    let mut c = TcpStream::connect(addr).unwrap();
    read_packet(&mut c).unwrap();
    c.write_all(&packet(1, b"login")).unwrap();
    read_packet(&mut c).unwrap();
    for i in 0..n {
        for q in [
            format!("SELECT name FROM users WHERE id = {i}"),
            format!("select * from orders where id in ({i}, {}) and state = 'open'", i + 1),
            "SELECT * FROM missing".to_owned(),
        ] {
            let mut p = vec![3];
            p.extend_from_slice(q.as_bytes());
            c.write_all(&packet(0, &p)).unwrap();
            read_packet(&mut c).unwrap();
        }
    }
    c.write_all(&packet(0, &[1])).unwrap();
    println!("done {n}");
}
