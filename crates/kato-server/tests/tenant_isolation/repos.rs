//! Repos are cloned with the team's identity, never the server's: a team token cannot build
//! from the server's disk unless the server allows it, and ssh repos need the team's own key.

use axum::http::{Method, StatusCode};
use kato_testkit::{GitRepo, base_image};
use serde_json::{Value, json};

use super::{refused, team_token};
use crate::common::Server;

fn repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!("FROM {}\nRUN echo built-by-kato\n", base_image()),
    );
    repo.commit("initial");
    repo
}

fn dockerfile(repo: &str) -> Value {
    json!({"dockerfile": {"repo": repo}})
}

async fn build(s: &Server, token: &str, plugin: &str) -> Value {
    let (status, v) = s
        .call_as(
            token,
            Method::POST,
            &format!("/teams/demo/plugins/{plugin}/versions"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.finished_version("demo", plugin, v["number"].as_u64().unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_token_cannot_build_from_the_servers_disk_but_the_admin_can() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let team = team_token(&s, "demo").await;
    let r = repo();
    let dir = r.path().display().to_string();
    // The admin may, on the server's defaults (the README's walk-through builds `--repo "$PWD"`).
    s.ok(
        Method::POST,
        "/teams/demo/plugins",
        Some(json!({"name": "by-admin", "kind": "general", "source": dockerfile(&dir)})),
        StatusCode::CREATED,
    )
    .await;
    let v = build(&s, &s.admin, "by-admin").await;
    assert_eq!(v["status"], "succeeded", "{v}");

    let before = s.snapshot("demo").await;
    for local in [dir.clone(), r.url(), "/".to_owned()] {
        let (status, body) = s
            .call_as(
                &team,
                Method::POST,
                "/teams/demo/plugins",
                Some(json!({"name": "stolen", "kind": "general", "source": dockerfile(&local)})),
            )
            .await;
        refused(status, &body, StatusCode::FORBIDDEN, "source.dockerfile.repo");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("--allow-local-repos"), "{message}");
        let (status, body) = s
            .call_as(
                &team,
                Method::PATCH,
                "/teams/demo/plugins/by-admin",
                Some(json!({"source": dockerfile(&format!("{local}/other"))})),
            )
            .await;
        refused(status, &body, StatusCode::FORBIDDEN, "source.dockerfile.repo");
        let doc = json!({"kind": "Plugin", "metadata": {"name": "stolen"}, "spec": {"kind": "general", "source": dockerfile(&local)}});
        let (status, body) = s
            .call_as(
                &team,
                Method::POST,
                "/teams/demo/apply",
                Some(json!({"documents": [doc]})),
            )
            .await;
        refused(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "documents[0].spec.source.dockerfile.repo",
        );
    }
    assert_eq!(s.snapshot("demo").await, before, "a refused request changes nothing");

    // A source the team does not change is not checked again: the admin set it up.
    let (status, body) = s
        .call_as(
            &team,
            Method::PATCH,
            "/teams/demo/plugins/by-admin",
            Some(json!({"memory_mib": 96})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_allow_local_repos_a_team_token_may_build_from_the_servers_disk() {
    let s = Server::start_building(|b| b.allow_local_repos = true).await;
    s.team("demo").await;
    let team = team_token(&s, "demo").await;
    let r = repo();
    let (status, body) = s
        .call_as(
            &team,
            Method::POST,
            "/teams/demo/plugins",
            Some(json!({"name": "local", "kind": "general", "source": dockerfile(&r.url())})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = build(&s, &team, "local").await;
    assert_eq!(v["status"], "succeeded", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ssh_repo_needs_the_teams_own_key_and_known_host() {
    let s = Server::start_building(|_| {}).await;
    s.team("demo").await;
    let team = team_token(&s, "demo").await;
    // Nothing listens on port 9: with a key, the clone is tried and fails to connect.
    let repo = "ssh://git@127.0.0.1:9/team/agent.git";
    let (status, body) = s
        .call_as(
            &team,
            Method::POST,
            "/teams/demo/plugins",
            Some(json!({"name": "agent", "kind": "general", "source": dockerfile(repo)})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = build(&s, &team, "agent").await;
    assert_eq!(v["status"], "failed", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("needs the team's SSH key for `127.0.0.1:9`")
            && error.contains("--ssh-key FILE --known-hosts FILE")
            && error.contains("never clones with the server's own keys"),
        "{error}"
    );

    // A key without the host's known_hosts is refused: an unknown host key is never trusted.
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEtcmVhbC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n";
    let (status, body) = s
        .call_as(
            &team,
            Method::POST,
            "/teams/demo/credentials",
            Some(json!({"host": "127.0.0.1:9", "ssh_key": key})),
        )
        .await;
    refused(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "known_hosts");
    let known_hosts = "[127.0.0.1]:9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKato";
    let (status, body) = s
        .call_as(
            &team,
            Method::POST,
            "/teams/demo/credentials",
            Some(json!({"host": "127.0.0.1:9", "username": "git", "ssh_key": key, "known_hosts": known_hosts})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, listed) = s.call_as(&team, Method::GET, "/teams/demo/credentials", None).await;
    assert_eq!(listed[0]["ssh_key_set"], true, "{listed}");
    let text = listed.to_string();
    assert!(
        !text.contains("bm90LWEtcmVhbC1rZXk") && !text.contains("AAAAC3NzaC1lZDI1NTE5AAAAIKato"),
        "{text}"
    );

    let v = build(&s, &team, "agent").await;
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("is unreachable"),
        "the clone was tried with the key: {error}"
    );
    let leftovers: Vec<_> = walk(&s.dir.path().join("builds"));
    assert!(
        leftovers
            .iter()
            .all(|p| !p.ends_with("known_hosts") && !p.ends_with("id")),
        "the key and known_hosts are removed after the clone: {leftovers:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
