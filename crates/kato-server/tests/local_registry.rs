//! The local registry `kato serve` runs when no `--registry` is given: a registry a previous run
//! left running is stopped at start, and the new one serves the same storage.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kato_server::builds::local_registry;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn running(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) has an empty command line.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

async fn status_line(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the registry answers")
        .unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_left_by_a_previous_run_is_stopped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = local_registry::start(dir.path(), free_addr())
        .await
        .unwrap()
        .expect("docker-registry is installed");
    let pid_file = dir.path().join("registry/registry.pid");
    let stale: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(running(stale));
    // As if the server that started it had died without stopping it.
    std::mem::forget(first);

    let addr = free_addr();
    let second = local_registry::start(dir.path(), addr).await.unwrap().unwrap();
    assert!(!running(stale), "the stale registry {stale} was stopped");
    let fresh: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_ne!(fresh, stale);
    assert!(running(fresh));
    assert_eq!(status_line(addr).await, "HTTP/1.0 200 OK", "the new registry answers");
    drop(second);
    // Killed on drop: gone once reaped (bounded wait, polling).
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(fresh) {
        assert!(Instant::now() < deadline, "the registry stops with its owner");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
