//! Dockerfile versions through the API: queued, built by the worker with real git, podman and a
//! local registry; logs, cancel, timeout, failures and the concurrency limit.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::Server;
use kato_testkit::{GitRepo, base_image};
use serde_json::{Value, json};

fn repo(dockerfile_body: &str) -> GitRepo {
    let repo = GitRepo::new();
    repo.write("Dockerfile", &format!("FROM {}\n{dockerfile_body}", base_image()));
    repo.commit("initial");
    repo
}

async fn plugin_from(s: &Server, name: &str, repo: &GitRepo) {
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": name, "kind": "general", "source": {"dockerfile": {"repo": repo.url()}}})),
        StatusCode::CREATED,
    )
    .await;
}

async fn new_version(s: &Server, name: &str) -> Value {
    s.ok(
        Method::POST,
        &format!("/teams/demo/plugins/{name}/versions"),
        None,
        StatusCode::CREATED,
    )
    .await
}

async fn log(s: &Server, name: &str, n: u64, follow: bool) -> String {
    let path = format!("/api/v1/teams/demo/plugins/{name}/versions/{n}/log?follow={follow}");
    let (status, text) = s.raw(Method::GET, &path, Some(&s.admin), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerfile_version_is_built_pushed_and_pinned_with_provenance() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let repo = repo("RUN echo hello-from-the-build\n");
    let commit = repo.git(&["rev-parse", "HEAD"]);
    plugin_from(&s, "built", &repo).await;
    let v = new_version(&s, "built").await;
    assert_eq!(v["status"], "queued", "{v}");
    // Following the log ends when the build does, and holds every line.
    let followed = log(&s, "built", 1, true).await;
    let v = s.finished_version("demo", "built", 1).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    let image = v["image"].as_str().unwrap();
    let repository = "platform/demo/built";
    let digest = s.registry.registry_digest(repository, "v1").await.expect("pushed");
    assert_eq!(image, format!("{}/{repository}@{digest}", s.registry.host()));
    let p = &v["provenance"];
    assert_eq!(p["repo"], repo.url());
    assert_eq!(p["commit"], commit);
    assert_eq!(p["dockerfile"], "Dockerfile");
    assert_eq!(p["base_image"], base_image());
    assert_eq!(p["digest"], digest);

    let stored = log(&s, "built", 1, false).await;
    assert_eq!(followed, stored);
    assert!(stored.contains("hello-from-the-build"), "{stored}");
    assert!(stored.contains(&format!("checking out HEAD at {commit}")), "{stored}");
    for line in stored.lines() {
        let (at, _) = line.split_once(' ').unwrap();
        assert!(at.len() == 27 && at.ends_with('Z'), "timestamped: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_run_step_fails_the_version_with_the_step_and_its_output() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let repo = repo("RUN echo about-to-break && exit 3\n");
    plugin_from(&s, "broken", &repo).await;
    new_version(&s, "broken").await;
    let v = s.finished_version("demo", "broken", 1).await;
    assert_eq!(v["status"], "failed", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("build step failed: RUN echo about-to-break && exit 3"),
        "{error}"
    );
    assert!(error.contains("about-to-break"), "{error}");
    assert!(v["image"].is_null());
    let stored = log(&s, "broken", 1, false).await;
    assert!(stored.contains("failed: build step failed"), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_ref_or_dockerfile_says_so() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let repo = repo("RUN true\n");
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "noref", "kind": "general", "source": {"dockerfile": {"repo": repo.url(), "ref": "release-9"}}})),
        StatusCode::CREATED,
    )
    .await;
    new_version(&s, "noref").await;
    let v = s.finished_version("demo", "noref", 1).await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("git ref `release-9` was not found"),
        "{v}"
    );

    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "nofile", "kind": "general", "source": {"dockerfile": {"repo": repo.url(), "path": "docker/Dockerfile"}}})),
        StatusCode::CREATED,
    )
    .await;
    new_version(&s, "nofile").await;
    let v = s.finished_version("demo", "nofile", 1).await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no Dockerfile at `docker/Dockerfile`"),
        "{v}"
    );
}

async fn wait_for_log(s: &Server, name: &str, n: u64, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !log(s, name, n, false).await.contains(needle) {
        assert!(std::time::Instant::now() < deadline, "the log shows `{needle}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_build() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let repo = repo("RUN echo slow-step-started && sleep 300\n");
    plugin_from(&s, "slow", &repo).await;
    new_version(&s, "slow").await;
    wait_for_log(&s, "slow", 1, "slow-step-started").await;
    let v = s
        .ok(
            Method::POST,
            "/teams/demo/plugins/slow/versions/1/cancel",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["status"], "cancelled");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.state.builds.running() > 0 {
        assert!(std::time::Instant::now() < deadline, "the builder stops");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = s.finished_version("demo", "slow", 1).await;
    assert_eq!(v["status"], "cancelled");
    let (status, e) = s
        .call(Method::POST, "/teams/demo/plugins/slow/versions/1/cancel", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_over_its_time_limit_fails_as_a_timeout() {
    let s = Server::start_building(|b| b.timeout = Duration::from_secs(3)).await;
    s.team("demo").await;
    let repo = repo("RUN sleep 300\n");
    plugin_from(&s, "forever", &repo).await;
    new_version(&s, "forever").await;
    let v = s.finished_version("demo", "forever", 1).await;
    assert_eq!(v["status"], "failed");
    assert!(v["error"].as_str().unwrap().contains("did not finish within 3s"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_builds_never_exceed_the_concurrency_limit() {
    let s = Server::start_building(|b| b.concurrency = 2).await;
    s.team("demo").await;
    let repo = repo("RUN echo one-step\n");
    plugin_from(&s, "many", &repo).await;
    for _ in 0..5 {
        new_version(&s, "many").await;
    }
    for n in 1..=5 {
        let v = s.finished_version("demo", "many", n).await;
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let peak = s.state.builds.peak_running.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=2).contains(&peak), "at most 2 builds ran at once, saw {peak}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_source_is_copied_into_the_platform_registry_and_its_loss_is_reported() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let vendor = kato_testkit::TestRegistry::start().await;
    let pushed = vendor.push_image("vendor/agent", "2").await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "agent", "kind": "general", "source": {"image": pushed.image.as_str()}})),
        StatusCode::CREATED,
    )
    .await;
    let v = new_version(&s, "agent").await;
    assert_eq!(v["status"], "succeeded", "{v}");
    let copy = format!("{}/platform/demo/agent@{}", s.registry.host(), pushed.digest);
    assert_eq!(v["image"], copy);
    assert_eq!(v["provenance"]["source_image"], pushed.pinned());
    assert_eq!(v["provenance"]["digest"], pushed.digest);
    assert_eq!(
        s.registry.registry_digest("platform/demo/agent", "v1").await.as_deref(),
        Some(pushed.digest.as_str())
    );
    let v = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/agent/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(v.get("image_missing").is_none(), "{v}");

    s.registry.delete_manifest("platform/demo/agent", &pushed.digest).await;
    let v = s
        .ok(
            Method::GET,
            "/teams/demo/plugins/agent/versions/1",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["image_missing"], true, "{v}");
    assert!(
        v["image_error"]
            .as_str()
            .unwrap()
            .contains("no longer in the platform registry"),
        "{v}"
    );
    s.ok(
        Method::POST,
        "/teams/demo/components",
        Some(json!({"name": "web", "image": "nginx"})),
        StatusCode::CREATED,
    )
    .await;
    let (status, e) = s
        .call(Method::PUT, "/teams/demo/components/web/plugins/agent", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("no longer in the platform registry"), "{e}");
    let (_, list) = s.call(Method::GET, "/teams/demo/components/web/plugins", None).await;
    assert_eq!(list, json!([]), "a refused install changes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_base_images_need_the_teams_credential_which_never_shows() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let private = kato_testkit::TestRegistry::start_with_auth("puller", "right-pass-123").await;
    let base = format!("{}/base/busybox:1", private.host());
    let pushed = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", kato_testkit::containers_conf())
        .args([
            "push",
            "--quiet",
            "--tls-verify=false",
            "--creds",
            "puller:right-pass-123",
            base_image(),
        ])
        .arg(format!("docker://{base}"))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let repo = GitRepo::new();
    repo.write("Dockerfile", &format!("FROM {base}\nRUN echo private-base\n"));
    repo.commit("private base");
    plugin_from(&s, "private", &repo).await;

    let wrong = "wrong-pass-456";
    let c = s
        .ok(
            Method::POST,
            "/teams/demo/credentials",
            Some(json!({"host": private.host(), "username": "puller", "password": wrong})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        c,
        json!({"host": private.host(), "username": "puller", "ssh_key_set": false, "created_at": c["created_at"]})
    );
    new_version(&s, "private").await;
    let v = s.finished_version("demo", "private", 1).await;
    assert_eq!(v["status"], "failed", "{v}");
    let stored = log(&s, "private", 1, false).await;
    let listed = s.ok(Method::GET, "/teams/demo/credentials", None, StatusCode::OK).await;
    for text in [v.to_string(), stored.clone(), listed.to_string()] {
        assert!(!text.contains(wrong), "the password never shows: {text}");
        assert!(
            !text.contains("cHVsbGVyOndyb25nLXBhc3MtNDU2"),
            "nor its basic-auth token: {text}"
        );
    }
    assert!(stored.contains("failed: build step failed"), "{stored}");

    s.ok(
        Method::POST,
        "/teams/demo/credentials",
        Some(json!({"host": private.host(), "username": "puller", "password": "right-pass-123"})),
        StatusCode::CREATED,
    )
    .await;
    new_version(&s, "private").await;
    let v = s.finished_version("demo", "private", 2).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["provenance"]["base_image"], base);
    assert!(!log(&s, "private", 2, false).await.contains("right-pass-123"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_log_ends_when_the_server_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let registry = kato_testkit::TestRegistry::start().await;
    let mut cfg = common::config(dir.path());
    cfg.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
    let (state, token_path) = kato_server::prepare(&cfg).await.unwrap();
    let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(kato_server::serve_on(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let s = Server {
        router: kato_server::router(state.clone()),
        state,
        admin: admin.clone(),
        registry,
        dir,
    };
    s.team("demo").await;
    let slow = repo("RUN echo follow-me-started && sleep 300\n");
    plugin_from(&s, "slow", &slow).await;
    new_version(&s, "slow").await;

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/teams/demo/plugins/slow/versions/1/log?follow=true HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {admin}\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The step's own output, not the STEP line that names it.
    while !String::from_utf8_lossy(&seen).contains(" follow-me-started\n") {
        let n = tokio::time::timeout(Duration::from_secs(120), conn.read(&mut buf))
            .await
            .expect("the build's output is followed")
            .unwrap();
        assert!(
            n > 0,
            "the stream stays open while the build runs: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }

    stop.send(()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.map(|_| rest)
    })
    .await
    .expect("the followed log ends when the server shuts down")
    .unwrap();
    seen.extend_from_slice(&rest);
    assert!(
        String::from_utf8_lossy(&seen).ends_with("0\r\n\r\n"),
        "the chunked response ends properly: {}",
        String::from_utf8_lossy(&seen)
    );
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("the shutdown is not held by the follower")
        .unwrap()
        .unwrap();
}
