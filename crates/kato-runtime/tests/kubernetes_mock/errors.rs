//! API errors and timeouts.

use http::Method;
use kato_runtime::{Runtime, RuntimeError};
use serde_json::json;

use crate::common;
use crate::server::*;

#[tokio::test]
async fn a_forbidden_namespace_read_is_a_clear_error_and_nothing_is_applied() {
    let rendered = common::web(Some(64));
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop").await.reply(
            403,
            status_body(
                403,
                "Forbidden",
                "namespaces \"shop\" is forbidden: User \"system:serviceaccount:kato-system:kato\" cannot get resource \"namespaces\"",
            ),
        );
        s
    });
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    let server = server_side.await.unwrap();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            RuntimeError::Engine {
                engine: "kubernetes",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("read namespace shop"), "{text}");
    assert!(text.contains("cannot get resource \"namespaces\""), "{text}");
    assert!(text.contains("403 Forbidden"), "{text}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_rejected_apply_stops_the_deploy_before_any_deletion() {
    let rendered = common::web(Some(64));
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop")
            .await
            .reply(200, kato_namespace());
        s.expect_apply("/api/v1/namespaces/shop/secrets/web.plugin-exporter")
            .await;
        s.expect_apply("/api/v1/namespaces/shop/services/web").await;
        s.expect(Method::PATCH, "/apis/apps/v1/namespaces/shop/deployments/web").await.reply(
            422,
            status_body(
                422,
                "Invalid",
                "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].resources.limits: Invalid value",
            ),
        );
        s
    });
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    let server = server_side.await.unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with("kubernetes failed: apply Deployment shop/web: "),
        "{text}"
    );
    assert!(
        text.contains("spec.template.spec.containers[0].resources.limits"),
        "{text}"
    );
    assert!(text.contains("422 Invalid"), "{text}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_podman_render_is_refused_before_any_call() {
    let mut rendered = common::web(None);
    let kato_render::Object::Deployment(d) = rendered.objects.pop().unwrap() else {
        panic!("a Deployment last")
    };
    let pod = k8s_openapi::api::core::v1::Pod {
        metadata: d.metadata.clone(),
        ..Default::default()
    };
    rendered.objects.push(kato_render::Object::Pod(pod));
    let (rt, server) = runtime();
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    assert!(err.to_string().contains("rendered for podman"), "{err}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_does_not_answer_is_a_timeout() {
    let (rt, mut server) = runtime();
    // The server takes the request and never answers; time is paused, so the deadline passes
    // as soon as nothing else can run.
    let held = tokio::spawn(async move {
        let call = server
            .expect(Method::GET, "/apis/apps/v1/namespaces/shop/deployments")
            .await;
        (server, call.respond)
    });
    let err = rt.stop(WEB).await.expect_err("stop fails");
    assert!(
        matches!(
            err,
            RuntimeError::Timeout {
                engine: "kubernetes",
                seconds: 7
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "kubernetes did not answer within 7 s");
    drop(held.await.unwrap());
}

#[tokio::test]
async fn a_namespace_kato_did_not_create_is_refused_and_nothing_is_applied() {
    let rendered = common::web(Some(64));
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/api/v1/namespaces/shop").await.reply(
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        );
        s
    });
    let err = rt.deploy(WEB, &rendered).await.expect_err("deploy fails");
    let server = server_side.await.unwrap();
    let text = err.to_string();
    assert!(
        text.contains("namespace `shop` exists and is not managed by Kato"),
        "{text}"
    );
    assert!(text.contains("app.kubernetes.io/managed-by=kato"), "{text}");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn the_server_version_checks_the_cluster_answers() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect(Method::GET, "/version").await.reply(
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "", "gitTreeState": "clean",
                   "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
        );
        s.expect(Method::GET, "/version")
            .await
            .reply(401, status_body(401, "Unauthorized", "Unauthorized"));
        s
    });
    assert_eq!(rt.server_version().await.expect("a version"), "v1.33.1");
    let err = rt.server_version().await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "kubernetes failed: read the API server's version: Unauthorized (401 Unauthorized)"
    );
    server_side.await.unwrap();
}
