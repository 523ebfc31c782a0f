//! Traffic through the proxy: inbound and outbound HTTP, TCP passthrough, rate limit, circuit
//! breaking and outlier ejection, against real servers on 127.0.0.1.

mod common;

use common::*;
use kato_mesh::Role;
use serde_json::json;
use tokio::net::TcpStream;

#[tokio::test]
async fn inbound_http_forwards_and_admin_reports() {
    let app = backend("app").await;
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0, "options": {}}]),
        json!([]),
    );
    let summary = mesh.apply(config(&d)).await.unwrap();
    assert_eq!(
        summary.listeners,
        vec![format!("0→127.0.0.1:{} (http)", app.addr.port())]
    );
    assert!(summary.to_string().starts_with("1 listener: 0→127.0.0.1:"), "{summary}");
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());
    let got = get(addr, "whatever", "/hello").await;
    assert_eq!((got.status, got.body.as_str()), (200, "app /hello"));

    let admin = local(mesh.admin_addr().unwrap());
    assert_eq!(get(admin, "x", "/ready").await.status, 200);
    assert_eq!(get(admin, "x", "/healthz").await.status, 200);
    let metrics = get(admin, "x", "/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            r#"kato_mesh_requests_total{{listener="inbound:0",route="127.0.0.1:{}",class="2xx"}} 1"#,
            app.addr.port()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("kato_mesh_config_revision 1"));
}

#[tokio::test]
async fn inbound_rate_limit_answers_429_past_the_limit() {
    let app = backend("app").await;
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0,
                "options": {"OPEN_LIMIT": "YES", "LIMIT_RPS": "3"}}]),
        json!([]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());
    let mut c = Conn::open(addr).await.unwrap();
    let mut ok = 0;
    let mut limited = None;
    for _ in 0..20 {
        let got = c.get("h", "/", &[]).await.unwrap();
        match got.status {
            200 => ok += 1,
            429 => limited = Some(got),
            s => panic!("unexpected status {s}"),
        }
    }
    let limited = limited.expect("some requests past LIMIT_RPS are answered 429");
    assert!(ok >= 3, "the bucket's capacity passes first ({ok})");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.header("x-kato-mesh"), Some("rate-limited"));
    assert_eq!(app.hits(), ok, "limited requests never reach the app");
}

#[tokio::test]
async fn outbound_http_routes_by_domain_prefix_and_headers() {
    let (api, web, canary) = (backend("api").await, backend("web").await, backend("canary").await);
    let mut mesh = mesh(&[("api", api.addr), ("web", web.addr), ("canary", canary.addr)]);
    let d = doc(
        1,
        json!({}),
        json!([]),
        json!([
            {"component": "api", "port": 0, "protocol": "http", "options": {"Domains": "api.example.com"}},
            {"component": "web", "port": 0, "protocol": "http", "options": {"Domains": "*.example.com", "Prefix": "/static"}},
            {"component": "canary", "port": 0, "protocol": "http",
             "options": {"Domains": "api.example.com", "Headers": "x-env:canary"}},
        ]),
    );
    let summary = mesh.apply(config(&d)).await.unwrap();
    assert_eq!(
        summary.listeners.len(),
        1,
        "entries on one port share a listener: {summary}"
    );
    let addr = mesh.local_addr(Role::Outbound, 0).unwrap();
    assert_eq!(get(addr, "api.example.com:80", "/x").await.body, "api /x");
    assert_eq!(
        get(addr, "www.example.com", "/static/a.css").await.body,
        "web /static/a.css"
    );
    let canary_got = get_with(addr, "api.example.com", "/x", &[("x-env", "canary")]).await;
    assert_eq!(canary_got.body, "canary /x");
    let none = get(addr, "www.example.com", "/other").await;
    assert_eq!(none.status, 404, "no route matches");
    assert_eq!(none.header("x-kato-mesh"), Some("no-route"));
}

#[tokio::test]
async fn outbound_http_splits_by_weight() {
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    let mut mesh = mesh(&[("v1", v1.addr), ("v2", v2.addr)]);
    let d = doc(
        1,
        json!({}),
        json!([]),
        json!([
            {"component": "v1", "port": 0, "protocol": "http", "options": {"Weight": "75"}},
            {"component": "v2", "port": 0, "protocol": "http", "options": {"Weight": "25"}},
        ]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let mut c = Conn::open(mesh.local_addr(Role::Outbound, 0).unwrap()).await.unwrap();
    let mut to_v1 = 0;
    for _ in 0..400 {
        if c.get("svc", "/", &[]).await.unwrap().body.starts_with("v1") {
            to_v1 += 1;
        }
    }
    assert!((240..=360).contains(&to_v1), "75% of 400 expected, got {to_v1}");
    assert_eq!(v1.hits() + v2.hits(), 400);
}

#[tokio::test]
async fn tcp_passthrough_echoes_inbound_and_outbound() {
    let server = echo().await;
    let mut mesh = mesh(&[("db", server)]);
    let d = doc(
        1,
        json!({}),
        json!([{"port": server.port(), "protocol": "mysql", "listen_port": 0, "options": {}}]),
        json!([{"component": "db", "port": 0, "protocol": "postgresql", "options": {}},
               {"component": "dz", "port": 0, "protocol": "tcp", "options": {}},
               {"component": "dns", "port": 53, "protocol": "udp", "options": {}}]),
    );
    let summary = mesh.apply(config(&d)).await.unwrap().to_string();
    assert!(
        summary.contains("outbound dz:0 (tcp) shadowed by db:0 (postgresql)"),
        "{summary}"
    );
    assert!(summary.contains("outbound dns:53 (udp) skipped"), "{summary}");
    for addr in [
        local(mesh.local_addr(Role::Inbound, 0).unwrap()),
        mesh.local_addr(Role::Outbound, 0).unwrap(),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(echo_round(&mut s, b"ping").await.as_deref(), Some(&b"ping"[..]));
        assert_eq!(echo_round(&mut s, b"again").await.as_deref(), Some(&b"again"[..]));
    }
}

#[tokio::test]
async fn outbound_endpoint_is_ejected_after_consecutive_errors_and_returns() {
    let db = backend("api").await;
    db.set_status(500);
    let mut mesh = mesh(&[("api", db.addr)]);
    let d = doc(
        1,
        json!({}),
        json!([]),
        json!([{"component": "api", "port": 0, "protocol": "http", "options": {
            "ConsecutiveErrors": "3", "BaseEjectionTimeMS": "200", "IntervalMS": "10",
            "HealthCheckInterval": "0"}}]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = mesh.local_addr(Role::Outbound, 0).unwrap();
    for _ in 0..3 {
        assert_eq!(get(addr, "api", "/").await.status, 500, "5xx answers pass through");
    }
    let ejected = get(addr, "api", "/").await;
    assert_eq!(ejected.status, 503);
    assert_eq!(ejected.header("x-kato-mesh"), Some("ejected"));
    assert_eq!(db.hits(), 3, "an ejected endpoint is not contacted");

    db.set_status(200);
    eventually("the endpoint returns after BaseEjectionTimeMS", || async {
        get(addr, "api", "/").await.status == 200
    })
    .await;
    let metrics = mesh.metrics().encode();
    assert!(
        metrics.contains(r#"kato_mesh_ejections_total{listener="outbound:0",route="api:0"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn connect_failure_retries_on_another_endpoint() {
    let good = backend("good").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut mesh = mesh(&[("api", dead), ("api", good.addr)]);
    let d = doc(
        1,
        json!({}),
        json!([]),
        json!([{"component": "api", "port": 0, "protocol": "http", "options": {"HealthCheckInterval": "0"}}]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = mesh.local_addr(Role::Outbound, 0).unwrap();
    for _ in 0..4 {
        assert_eq!(get(addr, "api", "/").await.body, "good /");
    }
}

#[tokio::test]
async fn max_requests_and_pending_overflow_with_503() {
    let app = backend("app").await;
    app.gate.send_replace(false);
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0,
                "options": {"MaxRequests": "1", "MaxPendingRequests": "0"}}]),
        json!([]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let addr = local(mesh.local_addr(Role::Inbound, 0).unwrap());
    let slow = tokio::spawn(async move { get(addr, "h", "/slow").await.status });
    eventually("the first request reaches the app", || async { app.hits() == 1 }).await;
    let over = get(addr, "h", "/fast").await;
    assert_eq!(over.status, 503);
    assert_eq!(over.header("x-kato-mesh"), Some("overflow"));
    app.gate.send_replace(true);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(get(addr, "h", "/fast").await.status, 200, "a place is free again");
}

#[tokio::test]
async fn max_requests_per_connection_closes_keep_alive() {
    let app = backend("app").await;
    let mut mesh = mesh(&[]);
    let d = doc(
        1,
        json!({}),
        json!([{"port": app.addr.port(), "protocol": "http", "listen_port": 0,
                "options": {"MaxRequestsPerConnection": "2"}}]),
        json!([]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let mut c = Conn::open(local(mesh.local_addr(Role::Inbound, 0).unwrap()))
        .await
        .unwrap();
    assert_eq!(c.get("h", "/1", &[]).await.unwrap().header("connection"), None);
    assert_eq!(c.get("h", "/2", &[]).await.unwrap().header("connection"), Some("close"));
    assert!(
        c.get("h", "/3", &[]).await.is_err(),
        "the connection is closed after 2 requests"
    );
}

#[tokio::test]
async fn failing_health_check_excludes_an_endpoint_until_it_passes() {
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut mesh = mesh(&[("api", addr)]);
    let d = doc(
        1,
        json!({}),
        json!([]),
        json!([{"component": "api", "port": 0, "protocol": "http", "options": {
            "HealthCheckInterval": "1", "HealthCheckTimeout": "1", "ConsecutiveErrors": "10000"}}]),
    );
    mesh.apply(config(&d)).await.unwrap();
    let proxy = mesh.local_addr(Role::Outbound, 0).unwrap();
    eventually("the dead endpoint is excluded by its health check", || async {
        get(proxy, "api", "/").await.header("x-kato-mesh") == Some("unhealthy")
    })
    .await;
    // The endpoint comes up: the next check lets it back in.
    let socket = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
                    "up",
                ))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    eventually("the endpoint serves once a check passes", || async {
        get(proxy, "api", "/").await.body == "up"
    })
    .await;
}
