//! Upstream connections are reused: sequential requests over one client keep-alive connection
//! (and a later client connection) go over one connection to the app, inbound and outbound.
//! Regression: the connection used to be dropped instead of pooled, one new upstream
//! connection per request.

mod common;

use common::*;
use kato_mesh::Role;
use serde_json::json;

const N: usize = 50;

async fn sequential(addr: std::net::SocketAddr, host: &str) {
    let mut c = Conn::open(addr).await.unwrap();
    for i in 0..N {
        let got = c.get(host, &format!("/{i}"), &[]).await.unwrap();
        assert_eq!(got.status, 200);
    }
}

#[tokio::test]
async fn inbound_requests_over_one_client_connection_use_one_upstream_connection() {
    let app = backend("app").await;
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0, "options": {}}]),
        json!([]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());
    sequential(addr, "h").await;
    assert_eq!(app.hits(), N);
    assert_eq!(app.accepts(), 1, "{N} sequential requests, one connection to the app");
    // A new client connection takes the pooled one.
    sequential(addr, "h").await;
    assert_eq!(app.hits(), 2 * N);
    assert_eq!(app.accepts(), 1, "the next client connection reuses it");
}

#[tokio::test]
async fn outbound_requests_over_one_client_connection_use_one_upstream_connection() {
    let api = backend("api").await;
    let mut mesh = mesh(&[("api", api.addr)]);
    let port = free_port();
    let d = doc(
        1,
        json!({}),
        json!([]),
        // No health checks: their TCP connects would be accepted too.
        json!([{"component": "api", "port": port, "protocol": "http",
                "options": {"HealthCheckInterval": "0"}}]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = mesh.local_addr(Role::Outbound, port).unwrap();
    sequential(addr, "api").await;
    assert_eq!(api.hits(), N);
    assert_eq!(
        api.accepts(),
        1,
        "{N} sequential requests, one connection to the downstream"
    );
}
