//! A Dockerfile source reads only its own checkout: absolute paths and `..` in `path` and
//! `context` are refused (422, nothing changed); a symlink out of the repo fails the build.

use std::os::unix::fs::symlink;

use axum::http::{Method, StatusCode};
use kato_testkit::{GitRepo, base_image};
use serde_json::json;

use super::{refused, team_token};
use crate::common::Server;

#[tokio::test]
async fn paths_out_of_the_repo_are_refused_by_create_patch_and_apply() {
    let s = Server::start().await;
    s.team("demo").await;
    let team = team_token(&s, "demo").await;
    let repo = "https://git.example.com/demo/agent.git";
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "agent", "kind": "general", "source": {"dockerfile": {"repo": repo}}})),
        StatusCode::CREATED,
    )
    .await;
    let before = s.snapshot("demo").await;
    for (key, value) in [("context", "/"), ("context", "../x"), ("path", "/"), ("path", "../x")] {
        let field = format!("source.dockerfile.{key}");
        let mut dockerfile = json!({"repo": repo});
        dockerfile[key] = json!(value);
        let source = json!({"dockerfile": dockerfile});
        for token in [&s.admin, &team] {
            let (status, body) = s
                .call_as(
                    token,
                    Method::POST,
                    "/teams/demo/plugins",
                    Some(json!({"name": "escape", "kind": "general", "source": source})),
                )
                .await;
            refused(status, &body, StatusCode::UNPROCESSABLE_ENTITY, &field);
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("`{value}`")), "{message}");
            let (status, body) = s
                .call_as(
                    token,
                    Method::PATCH,
                    "/teams/demo/plugins/agent",
                    Some(json!({"source": source})),
                )
                .await;
            refused(status, &body, StatusCode::UNPROCESSABLE_ENTITY, &field);
            let doc =
                json!({"kind": "Plugin", "metadata": {"name": "agent"}, "spec": {"kind": "general", "source": source}});
            let (status, body) = s
                .call_as(
                    token,
                    Method::POST,
                    "/teams/demo/apply",
                    Some(json!({"documents": [doc]})),
                )
                .await;
            refused(
                status,
                &body,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("documents[0].spec.{field}"),
            );
        }
    }
    assert_eq!(s.snapshot("demo").await, before, "a rejected request changes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_context_symlinked_to_the_hosts_root_fails_the_version_and_names_the_symlink() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let marker = format!("kato-host-secret-{}", std::process::id());
    let secret = tempfile::Builder::new().prefix("kato-outside-").tempdir().unwrap();
    std::fs::write(secret.path().join("admin.token"), format!("{marker}\n")).unwrap();
    let from_root = secret.path().join("admin.token");
    let from_root = from_root.strip_prefix("/").unwrap().display().to_string();
    let repo = GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!("FROM {}\nCOPY {from_root} /stolen\nRUN cat /stolen\n", base_image()),
    );
    symlink("/", repo.path().join("ctx")).unwrap();
    repo.commit("the host's root as the context");
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "thief", "kind": "general", "source": {"dockerfile": {"repo": repo.url(), "context": "ctx"}}})),
        StatusCode::CREATED,
    )
    .await;
    s.ok(
        Method::POST,
        "/teams/demo/plugins/thief/versions",
        None,
        StatusCode::CREATED,
    )
    .await;
    let v = s.finished_version("demo", "thief", 1).await;
    assert_eq!(v["status"], "failed", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("source.dockerfile.context `ctx` leads outside the repo")
            && error.contains("`ctx` in the repo is a symlink to `/`"),
        "{error}"
    );
    let (_, log) = s
        .raw(
            Method::GET,
            "/api/v1/teams/demo/plugins/thief/versions/1/log",
            Some(&s.admin),
            None,
        )
        .await;
    assert!(log.contains("symlink to `/`"), "{log}");
    assert!(!log.contains(&marker), "{log}");
    assert_eq!(
        s.registry.registry_digest("platform/demo/thief", "v1").await,
        None,
        "no image was pushed"
    );
}
