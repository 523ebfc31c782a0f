//! The load: an open-loop generator at a fixed rate (each request timed from when it was due
//! if its connection was still busy) and `wrk` for saturation.

use super::*;

// ---- load ----

/// What an open-loop run saw: per request, when it was due (from the start) and its latency.
#[derive(Default)]
pub(crate) struct Run {
    pub(crate) samples: Vec<(Duration, Duration)>,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
}

impl Run {
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut l: Vec<Duration> = self.samples.iter().map(|s| s.1).collect();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort_unstable();
        let i = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
        l[i.min(l.len() - 1)]
    }

    /// Every sample but those of the second after each of `changes`.
    pub(crate) fn steady(&self, changes: &[Duration]) -> Run {
        Run {
            samples: self
                .samples
                .iter()
                .copied()
                .filter(|s| !changes.iter().any(|c| s.0 >= *c && s.0 < *c + Duration::from_secs(1)))
                .collect(),
            ok: 0,
            errors: 0,
        }
    }

    pub(crate) fn window(&self, from: Duration, to: Duration) -> Run {
        Run {
            samples: self
                .samples
                .iter()
                .copied()
                .filter(|s| s.0 >= from && s.0 < to)
                .collect(),
            ok: 0,
            errors: 0,
        }
    }
}

/// A few requests on fresh connections, so that pools and caches are warm.
pub(crate) async fn warm(addr: SocketAddr) {
    let _ = load(addr, Duration::from_millis(500)).await;
}

pub(crate) async fn load_with_changes(
    addr: SocketAddr,
    span: Duration,
    stub: &Stub,
    changes: &[(Duration, serde_json::Value)],
) -> Run {
    let start = Instant::now();
    let publisher = {
        let stub = stub.clone();
        let changes = changes.to_vec();
        tokio::spawn(async move {
            for (at, doc) in changes {
                tokio::time::sleep_until((start + at).into()).await;
                stub.publish(doc);
            }
        })
    };
    let run = load(addr, span).await;
    let _ = publisher.await;
    run
}

/// RATE requests a second for `span`, spread over CONNECTIONS keep-alive connections, each
/// request's latency counted from when it was due.
pub(crate) async fn load(addr: SocketAddr, span: Duration) -> Run {
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_nanos(1_000_000_000 * CONNECTIONS / RATE);
    let per_conn = span.as_nanos() as u64 / interval.as_nanos() as u64;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let offset = interval * c as u32 / CONNECTIONS as u32;
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            let mut sender = None;
            let mut free_since = start;
            for i in 0..per_conn {
                let due = start + offset + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                // Free before it was due: timed from the send, so the timer's own lateness
                // (tokio's timer ticks by the millisecond) is not counted. Still busy with the
                // previous request when it was due: timed from when it was due.
                let sent = if free_since <= due { Instant::now() } else { due };
                if sender.is_none() {
                    sender = connect(addr).await;
                }
                let Some(send) = sender.as_mut() else {
                    run.errors += 1;
                    continue;
                };
                let req = Request::get("/")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let ok = match send.send_request(req).await {
                    Ok(res) => {
                        let good = res.status() == StatusCode::OK;
                        good && res
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len() == BODY.len())
                            .unwrap_or(false)
                    }
                    Err(_) => false,
                };
                free_since = Instant::now();
                let latency = free_since - sent;
                if ok {
                    run.ok += 1;
                    run.samples.push((due - start, latency));
                } else {
                    run.errors += 1;
                    sender = None;
                }
            }
            run
        }));
    }
    let mut all = Run::default();
    for t in tasks {
        let r = t.await.expect("load task");
        all.samples.extend(r.samples);
        all.ok += r.ok;
        all.errors += r.errors;
    }
    all
}

pub(crate) async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// Requests/s at saturation: `wrk -t1 -c64`.
pub(crate) fn wrk(addr: SocketAddr, span: Duration) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c64",
            &format!("-d{}s", span.as_secs()),
            &format!("http://{addr}/"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk against {addr} saw errors:\n{text}");
    }
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
