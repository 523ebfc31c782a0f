//! Status by watch.

use futures::StreamExt;
use http::{Method, Response};
use http_body_util::{BodyExt, StreamBody};
use kato_runtime::ComponentState;
use serde_json::{Value, json};

use crate::server::*;

/// Answers a watch from `version` with a body the test writes events into, one JSON per line.
async fn expect_pod_watch(
    s: &mut ApiServer,
    version: &str,
) -> futures::channel::mpsc::Sender<Result<bytes::Bytes, std::io::Error>> {
    let call = s.expect(Method::GET, "/api/v1/namespaces/shop/pods").await;
    assert_eq!(call.query.get("watch").map(String::as_str), Some("true"));
    assert_eq!(call.query.get("resourceVersion").map(String::as_str), Some(version));
    assert_eq!(call.query.get("labelSelector").map(String::as_str), Some(PODS));
    let (tx, body) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = BodyExt::boxed(StreamBody::new(body.map(|r| r.map(http_body::Frame::data))));
    call.respond
        .send_response(Response::builder().status(200).body(body).unwrap());
    tx
}

async fn send_event(tx: &mut futures::channel::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>, event: Value) {
    use futures::SinkExt;
    let mut line = serde_json::to_vec(&event).unwrap();
    line.push(b'\n');
    tx.send(Ok(line.into())).await.unwrap();
}

fn with_version(mut pod: Value, version: &str) -> Value {
    pod["metadata"]["resourceVersion"] = json!(version);
    pod
}

#[tokio::test]
async fn watch_status_follows_the_pods_and_lists_again_when_the_version_is_gone() {
    let creating = pod(
        "web-1",
        "Pending",
        vec![],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![cstatus(
            "web",
            false,
            0,
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        )],
    );
    let running = pod(
        "web-1",
        "Running",
        vec![],
        vec![container("web", "nginx:1.27")],
        vec![],
        vec![cstatus("web", true, 0, json!({"running": {}}), json!({}))],
    );
    let (rt, server) = runtime();
    let (step_tx, mut step_rx) = tokio::sync::mpsc::channel::<()>(1);
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_pod_list_at("10", vec![with_version(creating.clone(), "9")])
            .await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(200, deployment(json!({})));
        let mut events = expect_pod_watch(&mut s, "10").await;
        // A change that changes nothing the status shows is not yielded.
        send_event(
            &mut events,
            json!({"type": "MODIFIED", "object": with_version(creating, "11")}),
        )
        .await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(200, deployment(json!({})));
        send_event(
            &mut events,
            json!({"type": "MODIFIED", "object": with_version(running.clone(), "12")}),
        )
        .await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(200, deployment(json!({})));
        step_rx.recv().await;
        // The version is too old by now: list again, and watch from the new list.
        send_event(
            &mut events,
            json!({"type": "ERROR", "object": status_body(410, "Expired", "too old resource version: 12 (30)")}),
        )
        .await;
        s.expect_pod_list_at("30", vec![]).await;
        s.expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web")
            .await
            .reply(404, status_body(404, "NotFound", "deployments.apps \"web\" not found"));
        // Kept open: nothing changes any more.
        let events = expect_pod_watch(&mut s, "30").await;
        (s, events)
    });

    let mut statuses = Box::pin(rt.watch_status(WEB));
    let first = statuses.next().await.unwrap().expect("a status");
    assert_eq!(first.state, ComponentState::Starting);
    let second = statuses.next().await.unwrap().expect("a status");
    assert_eq!(second.state, ComponentState::Running);
    step_tx.send(()).await.unwrap();
    let third = statuses.next().await.unwrap().expect("a status");
    assert_eq!(third.state, ComponentState::Stopped);
    // The next poll opens the watch from the new list's version, and yields nothing while
    // nothing changes.
    let mut server_side = server_side;
    tokio::select! {
        biased;
        server = &mut server_side => drop(server.expect("the API server's script passes")),
        item = statuses.next() => panic!("no status until something changes, got {item:?}"),
    }
}

#[tokio::test]
async fn watch_status_ends_with_the_api_error() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop/pods").await.reply(
            403,
            status_body(
                403,
                "Forbidden",
                "pods is forbidden: User \"x\" cannot list resource \"pods\"",
            ),
        );
        s
    });
    let items: Vec<_> = rt.watch_status(WEB).collect().await;
    assert_eq!(items.len(), 1);
    let err = items.into_iter().next().unwrap().expect_err("an error");
    assert!(err.to_string().contains("cannot list resource"), "{err}");
    server_side.await.unwrap();
}
