//! Logs: tail, follow, unknown containers.

use futures::StreamExt;
use http::{Method, Response};
use http_body_util::{BodyExt, StreamBody};
use kato_runtime::{LogsRequest, Runtime, RuntimeError};
use serde_json::{Value, json};

use crate::server::*;

fn running_pod() -> Value {
    let sidecar = json!({"name": "plugin-exporter", "image": "exporter", "restartPolicy": "Always"});
    pod(
        "web-1",
        "Running",
        vec![sidecar],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![],
    )
}

async fn collect(stream: kato_runtime::LogStream) -> Vec<String> {
    stream
        .map(|l| String::from_utf8(l.expect("a log line").to_vec()).unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn logs_tail_a_container() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(vec![running_pod()]).await;
        let call = s.expect(Method::GET, "/api/v1/namespaces/shop/pods/web-1/log").await;
        let q = call.query.clone();
        assert_eq!(q.get("container").map(String::as_str), Some("plugin-exporter"));
        assert_eq!(q.get("tailLines").map(String::as_str), Some("2"));
        assert_eq!(q.get("follow"), None);
        call.reply_text("scraped 1\nscraped 2\n");
        s
    });
    let request = LogsRequest {
        container: Some("plugin-exporter".into()),
        tail: Some(2),
        follow: false,
    };
    let lines = collect(rt.logs(WEB, request).await.expect("logs")).await;
    assert_eq!(lines, ["scraped 1\n", "scraped 2\n"]);
    server_side.await.unwrap();
}

#[tokio::test]
async fn logs_follow_streams_the_app_container() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(vec![running_pod()]).await;
        let call = s.expect(Method::GET, "/api/v1/namespaces/shop/pods/web-1/log").await;
        assert_eq!(call.query.get("container").map(String::as_str), Some("web"));
        assert_eq!(call.query.get("follow").map(String::as_str), Some("true"));
        assert_eq!(call.query.get("tailLines"), None);
        // The body streams in pieces that do not align with lines.
        let (mut tx, body) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let body = BodyExt::boxed(StreamBody::new(body.map(|r| r.map(http_body::Frame::data))));
        call.respond
            .send_response(Response::builder().status(200).body(body).unwrap());
        use futures::SinkExt;
        tx.send(Ok("GET /a\nGE".into())).await.unwrap();
        tx.send(Ok("T /b\n".into())).await.unwrap();
        drop(tx);
        s
    });
    let request = LogsRequest {
        container: None,
        tail: None,
        follow: true,
    };
    let lines = collect(rt.logs(WEB, request).await.expect("logs")).await;
    assert_eq!(lines, ["GET /a\n", "GET /b\n"]);
    server_side.await.unwrap();
}

#[tokio::test]
async fn logs_name_the_containers_when_asked_for_an_unknown_one() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list(vec![running_pod()]).await;
        s.expect_pod_list(vec![]).await;
        s
    });
    let request = LogsRequest {
        container: Some("plugin-nope".into()),
        ..Default::default()
    };
    match rt.logs(WEB, request).await {
        Err(RuntimeError::NoSuchContainer { name, known }) => {
            assert_eq!(name, "plugin-nope");
            assert_eq!(known, "plugin-exporter, web");
        }
        other => panic!("expected NoSuchContainer, got {:?}", other.map(|_| ())),
    }
    match rt.logs(WEB, LogsRequest::default()).await {
        Err(RuntimeError::NotRunning(c)) => assert_eq!(c, "web"),
        other => panic!("expected NotRunning, got {:?}", other.map(|_| ())),
    }
    server_side.await.unwrap();
}
