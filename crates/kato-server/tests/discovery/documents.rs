//! Documents, tokens, revisions, acks and the Rainbond ResourceSpec.

use super::*;

#[tokio::test]
async fn the_document_goes_to_its_own_token_only() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let a = get(&s, DOC, Some(&tok)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let rev = a.body["revision"].as_u64().unwrap();
    assert_eq!(a.revision, Some(rev));
    assert_eq!(
        a.body,
        json!({
            "revision": rev, "plugin": "mesh", "version": 1,
            "base": {"LEVEL": "debug", "KEY": "s3cret"},
            "ports": [{"port": 80, "protocol": "http", "options": {"TIMEOUT": "5s"}}],
            "downstream": [{"component": "db", "port": 3306, "protocol": "mysql", "options": {"RETRIES": "3"}}],
        })
    );
    // The API never shows the secret in clear.
    let i = s
        .ok(
            Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(!i.to_string().contains("s3cret"), "{i}");

    assert_eq!(get(&s, DOC, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&s, DOC, Some("kd_nope")).await.status, StatusCode::UNAUTHORIZED);
    let admin = s.admin.clone();
    assert_eq!(get(&s, DOC, Some(&admin)).await.status, StatusCode::UNAUTHORIZED);

    // Another installation's token: 403 on an existing document...
    s.ok(
        Method::PUT,
        "/teams/demo/components/db/plugins/other",
        None,
        StatusCode::CREATED,
    )
    .await;
    let other = token(&s, "db", "other").await;
    let a = get(&s, DOC, Some(&other)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(!a.body.to_string().contains("s3cret"));
    // ...and the same 404 whichever part of the path is wrong.
    let mut messages = Vec::new();
    for path in [
        "/discovery/v1/nope/web/mesh",
        "/discovery/v1/demo/nope/mesh",
        "/discovery/v1/demo/web/nope",
        "/discovery/v1/demo/web/other",
        "/discovery/v1/NOT_A_NAME/web/mesh",
    ] {
        for t in [&tok, &other] {
            let a = get(&s, path, Some(t)).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
            messages.push(a.body["error"]["message"].clone());
        }
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[tokio::test]
async fn component_changes_bump_the_revision_and_bring_defaults() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r0 = revision(&s, &tok).await;

    // A port added: a new entry with the item's default.
    component(
        &s,
        json!({"name": "web", "image": "nginx", "depends_on": ["db"],
               "ports": [{"port": 80, "protocol": "http"}, {"port": 9090, "protocol": "grpc"}]}),
    )
    .await;
    let a = get(&s, DOC, Some(&tok)).await;
    let r1 = a.body["revision"].as_u64().unwrap();
    assert!(r1 > r0);
    assert_eq!(
        a.body["ports"][1],
        json!({"port": 9090, "protocol": "grpc", "options": {"TIMEOUT": "5s"}})
    );

    // A change that does not touch the document keeps the revision.
    component(
        &s,
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db"],
               "ports": [{"port": 80, "protocol": "http"}, {"port": 9090, "protocol": "grpc"}]}),
    )
    .await;
    assert_eq!(revision(&s, &tok).await, r1);

    // A port removed, a dependency added and removed, a dependency's port changed.
    component(
        &s,
        json!({"name": "cache", "image": "redis", "ports": [{"port": 6379, "protocol": "tcp"}]}),
    )
    .await;
    let steps = [
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db"], "ports": [{"port": 80, "protocol": "http"}]}),
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db", "cache"], "ports": [{"port": 80, "protocol": "http"}]}),
    ];
    let mut last = r1;
    for spec in steps {
        component(&s, spec).await;
        let r = revision(&s, &tok).await;
        assert!(r > last, "{r} after {last}");
        last = r;
    }
    let a = get(&s, DOC, Some(&tok)).await;
    assert_eq!(
        a.body["downstream"][1],
        json!({"component": "cache", "port": 6379, "protocol": "tcp", "options": {"RETRIES": "3"}})
    );
    component(
        &s,
        json!({"name": "db", "image": "mysql", "ports": [{"port": 3307, "protocol": "mysql"}]}),
    )
    .await;
    let r = revision(&s, &tok).await;
    assert!(r > last);
    last = r;
    component(
        &s,
        json!({"name": "web", "image": "nginx:2", "depends_on": ["db"], "ports": [{"port": 80, "protocol": "http"}]}),
    )
    .await;
    let a = get(&s, DOC, Some(&tok)).await;
    assert!(a.body["revision"].as_u64().unwrap() > last);
    assert_eq!(a.body["downstream"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["downstream"][0]["port"], 3307);
}

#[tokio::test]
async fn uninstall_revokes_reinstall_grows_rotate_replaces() {
    let s = setup().await;
    let old = token(&s, "web", "mesh").await;
    let r = revision(&s, &old).await;
    let path = "/teams/demo/components/web/plugins/mesh";

    let rotated = s
        .ok(Method::POST, &format!("{path}/rotate-token"), None, StatusCode::OK)
        .await;
    assert_eq!(rotated["rotated"], true);
    let new = token(&s, "web", "mesh").await;
    assert_ne!(new, old);
    assert_eq!(get(&s, DOC, Some(&old)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revision(&s, &new).await, r, "rotating does not change the document");
    let (status, _) = s
        .call(
            Method::POST,
            "/teams/demo/components/db/plugins/mesh/rotate-token",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    s.ok(Method::DELETE, path, None, StatusCode::NO_CONTENT).await;
    assert_eq!(get(&s, DOC, Some(&new)).await.status, StatusCode::UNAUTHORIZED);
    let i = s.ok(Method::PUT, path, None, StatusCode::CREATED).await;
    assert!(i["revision"].as_u64().unwrap() > r, "{i}");
    let again = token(&s, "web", "mesh").await;
    assert!(again != new && again != old);
    assert!(revision(&s, &again).await > r);
}

#[tokio::test]
async fn acks_show_per_pod_and_malformed_ones_are_refused() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r1 = revision(&s, &tok).await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "nonsense"}}})),
        StatusCode::OK,
    )
    .await;
    let r2 = revision(&s, &tok).await;
    let ack = |body: Value| {
        let (router, tok) = (s.router.clone(), tok.clone());
        async move {
            send(
                router,
                Method::POST,
                &format!("{DOC}/ack"),
                Some(&tok),
                Some(&body.to_string()),
            )
            .await
        }
    };
    for body in [
        json!({"revision": r1, "pod": "web-1", "status": "applied", "message": "LEVEL info in use"}),
        json!({"revision": r2, "pod": "web-1", "status": "rejected", "message": "LEVEL nonsense is unknown"}),
        json!({"revision": r2, "pod": "web-2", "status": "applied", "message": ""}),
    ] {
        let a = ack(body).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    }
    let i = s
        .ok(
            Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(i["pods"][0]["pod"], "web-1", "{i}");
    assert_eq!(i["pods"][0]["applied_revision"], r1);
    assert_eq!(i["pods"][0]["applied_message"], "LEVEL info in use");
    assert_eq!(i["pods"][0]["rejected"][0]["revision"], r2);
    assert_eq!(i["pods"][0]["rejected"][0]["message"], "LEVEL nonsense is unknown");
    assert_eq!(i["pods"][1]["applied_revision"], r2);
    let list = s
        .ok(Method::GET, "/teams/demo/components/web/plugins", None, StatusCode::OK)
        .await;
    assert_eq!(list[0]["pods"], i["pods"]);

    let before = i["pods"].clone();
    for bad in [
        "not json".to_owned(),
        json!({"revision": r2, "pod": "web-1"}).to_string(),
        json!({"revision": r2, "pod": "web-1", "status": "done"}).to_string(),
        json!({"revision": r2, "pod": "", "status": "applied"}).to_string(),
        json!({"revision": "two", "pod": "web-1", "status": "applied"}).to_string(),
        json!({"revision": r2 + 1, "pod": "web-1", "status": "applied"}).to_string(),
        json!({"revision": r2, "pod": "web-1", "status": "applied", "extra": 1}).to_string(),
    ] {
        let a = send(
            s.router.clone(),
            Method::POST,
            &format!("{DOC}/ack"),
            Some(&tok),
            Some(&bad),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
        assert!(!a.body["error"]["message"].as_str().unwrap().is_empty());
    }
    let a = send(s.router.clone(), Method::POST, &format!("{DOC}/ack"), None, Some("{}")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let i = s
        .ok(
            Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(i["pods"], before, "a refused ack changes nothing");
}

/// Pages that show revisions and acks wait on `Discovery::activity`: an ack and a change of
/// values each wake it; a change that touches no installation does not.
#[tokio::test]
async fn acks_and_installation_changes_are_announced() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let mut activity = s.state.discovery.activity();
    activity.borrow_and_update();
    let r = revision(&s, &tok).await;
    let body = json!({"revision": r, "pod": "web-1", "status": "applied"}).to_string();
    let a = send(
        s.router.clone(),
        Method::POST,
        &format!("{DOC}/ack"),
        Some(&tok),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert!(activity.has_changed().unwrap(), "an ack is announced");
    activity.borrow_and_update();
    s.ok(
        Method::POST,
        "/teams",
        Some(json!({"name": "quiet"})),
        StatusCode::CREATED,
    )
    .await;
    assert!(!activity.has_changed().unwrap(), "a new team touches no installation");
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "warn"}}})),
        StatusCode::OK,
    )
    .await;
    assert!(activity.has_changed().unwrap(), "a change of values is announced");
}

#[tokio::test]
async fn rainbond_resource_spec_with_the_token_parameter() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let a = get(&s, &format!("/v1/resources/demo/web/mesh?token={tok}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["base_normal"]["options"],
        json!({"LEVEL": "debug", "KEY": "s3cret"})
    );
    assert_eq!(a.body["base_ports"][0]["port"], 80);
    assert_eq!(a.body["base_ports"][0]["service_alias"], "web");
    assert_eq!(a.body["base_ports"][0]["options"], json!({"TIMEOUT": "5s"}));
    assert_eq!(a.body["base_services"][0]["depend_service_alias"], "db");
    assert_eq!(a.body["base_services"][0]["port"], 3306);
    assert_eq!(a.body["base_services"][0]["options"], json!({"RETRIES": "3"}));
    assert_eq!(
        get(&s, "/v1/resources/demo/web/mesh", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&s, "/v1/resources/demo/web/mesh?token=kd_x", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The rendered DISCOVER_URL (this path with the token parameter) comes from the plug-in's
    // Secret, token and all: the manifests show no part of it in clear.
    let (status, yaml) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/components/web/manifests?target=podman",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let docs: Vec<Value> = yaml
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let pod = docs.iter().find(|d| d["kind"] == "Pod").unwrap();
    let env = &pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "plugin-mesh")
        .unwrap()["env"];
    let url = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DISCOVER_URL")
        .unwrap();
    assert_eq!(
        url["valueFrom"]["secretKeyRef"],
        json!({"name": "web.plugin-mesh", "key": "DISCOVER_URL"}),
        "{yaml}"
    );
    assert!(!yaml.contains(&tok) && !yaml.contains("/v1/resources/"), "{yaml}");
}
