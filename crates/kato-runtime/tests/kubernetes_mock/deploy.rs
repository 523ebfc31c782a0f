//! Deploy (first, again, garbage collection) and stop.

use http::Method;
use kato_runtime::Runtime;
use serde_json::Value;

use crate::common;
use crate::server::*;

#[tokio::test]
async fn first_deploy_creates_the_namespace_and_applies_every_object() {
    let rendered = common::web(Some(64));
    let expected: Vec<Value> = rendered
        .objects
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    let (rt, server) = runtime();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    scenario(server, rt.deploy(WEB, &rendered), move |mut s| async move {
        s.expect(Method::GET, "/api/v1/namespaces/shop")
            .await
            .reply(404, status_body(404, "NotFound", "namespaces \"shop\" not found"));
        let create = s.expect(Method::POST, "/api/v1/namespaces").await;
        let ns = create.body.clone().unwrap();
        assert_eq!(ns["metadata"]["name"], "shop");
        assert_eq!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kato");
        create.reply(201, ns);
        let mut b = Vec::new();
        b.push(
            s.expect_apply("/api/v1/namespaces/shop/secrets/web.plugin-exporter")
                .await,
        );
        b.push(s.expect_apply("/api/v1/namespaces/shop/services/web").await);
        b.push(s.expect_apply("/apis/apps/v1/namespaces/shop/deployments/web").await);
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web"])
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web.plugin-exporter"])
            .await;
        *seen.lock().unwrap() = b;
        s
    })
    .await
    .expect("deploy succeeds");

    // Each body is the rendered object itself, with its kind and apiVersion.
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies, expected);
    assert_eq!(bodies[0]["kind"], "Secret");
    assert_eq!(bodies[2]["apiVersion"], "apps/v1");
    assert_eq!(bodies[2]["metadata"]["namespace"], "shop");
}

#[tokio::test]
async fn redeploy_applies_the_new_render_into_the_existing_namespace() {
    let rendered = common::web(Some(128));
    let (rt, server) = runtime();
    scenario(server, rt.deploy(WEB, &rendered), |mut s| async move {
        s.expect(Method::GET, "/api/v1/namespaces/shop")
            .await
            .reply(200, kato_namespace());
        s.expect_apply("/api/v1/namespaces/shop/secrets/web.plugin-exporter")
            .await;
        s.expect_apply("/api/v1/namespaces/shop/services/web").await;
        let d = s.expect_apply("/apis/apps/v1/namespaces/shop/deployments/web").await;
        let plugin = &d["spec"]["template"]["spec"]["initContainers"][0];
        assert_eq!(plugin["name"], "plugin-exporter");
        assert_eq!(plugin["resources"]["limits"]["memory"], "128Mi");
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web"])
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web.plugin-exporter"])
            .await;
        s
    })
    .await
    .expect("redeploy succeeds");
}

#[tokio::test]
async fn deploy_deletes_what_the_component_no_longer_renders() {
    // The plug-in was uninstalled: its Secret goes, and so does a leftover Deployment.
    let rendered = common::web(None);
    assert!(rendered.objects.iter().all(|o| o.kind() != "Secret"));
    let (rt, server) = runtime();
    let (result, server) = {
        let server_side = tokio::spawn(async move {
            let mut s = server;
            s.expect(Method::GET, "/api/v1/namespaces/shop")
                .await
                .reply(200, kato_namespace());
            s.expect_apply("/api/v1/namespaces/shop/services/web").await;
            s.expect_apply("/apis/apps/v1/namespaces/shop/deployments/web").await;
            s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web", "web-old"])
                .await;
            s.expect_delete("/apis/apps/v1/namespaces/shop/deployments/web-old", 200)
                .await;
            s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
            s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web.plugin-exporter"])
                .await;
            // Deleted meanwhile by someone else: still what we wanted.
            s.expect_delete("/api/v1/namespaces/shop/secrets/web.plugin-exporter", 404)
                .await;
            s
        });
        let result = rt.deploy(WEB, &rendered).await;
        (result, server_side.await.expect("the API server's script passes"))
    };
    result.expect("deploy succeeds");
    drop(rt);
    server.expect_no_more().await;
}

#[tokio::test]
async fn stop_deletes_every_object_of_the_component_by_label() {
    let (rt, server) = runtime();
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &["web"])
            .await;
        s.expect_delete("/apis/apps/v1/namespaces/shop/deployments/web", 200)
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &["web"]).await;
        s.expect_delete("/api/v1/namespaces/shop/services/web", 200).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &["web-plugin-a", "web-plugin-b"])
            .await;
        s.expect_delete("/api/v1/namespaces/shop/secrets/web-plugin-a", 200)
            .await;
        s.expect_delete("/api/v1/namespaces/shop/secrets/web-plugin-b", 200)
            .await;
        s
    });
    rt.stop(WEB).await.expect("stop succeeds");
    let server = server_side.await.expect("the API server's script passes");

    // Stopping a stopped component finds nothing and deletes nothing.
    let server_side = tokio::spawn(async move {
        let mut s = server;
        s.expect_owned_list("/apis/apps/v1/namespaces/shop/deployments", &[])
            .await;
        s.expect_owned_list("/api/v1/namespaces/shop/services", &[]).await;
        s.expect_owned_list("/api/v1/namespaces/shop/secrets", &[]).await;
        s
    });
    rt.stop(WEB).await.expect("stopping again succeeds");
    let server = server_side.await.unwrap();
    drop(rt);
    server.expect_no_more().await;
}
