//! The platform registry is shared by every team and read with one credential (or none), so
//! Kato keeps each team to `<platform>/<team>/…`: a plug-in's `source.image`, a component's
//! `image` and every image a Dockerfile names are refused in another team's directory, in both
//! directions, while each team still reads its own.

use axum::http::{Method, StatusCode};
use kato_testkit::{FlakyRegistry, GitRepo, TestRegistry, base_image};
use serde_json::{Value, json};

use super::{refused, team_token};
use crate::common::podman::{Cleanup, checked, podman};
use crate::common::{self, Server};

/// The message naming `other`'s repository, and what `own` may use instead.
fn names_the_trespass(body: &Value, other: &str, own_prefix: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("is team {other}'s repository in the platform registry"))
            && message.contains(&format!("a team can only use its own, `{own_prefix}/…`")),
        "{body}"
    );
}

/// Pushes the test busybox into `registry` as `repository:1`; answers the reference.
fn push_base(registry: &str, repository: &str) -> String {
    let target = format!("{registry}/{repository}:1");
    checked(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        base_image(),
        &format!("docker://{target}"),
    ]);
    target
}

#[tokio::test(flavor = "multi_thread")]
async fn image_sources_and_component_images_name_only_the_teams_own_platform_directory() {
    let s = Server::start_building(|_| {}).await;
    let host = s.registry.host().to_owned();
    let port = host.rsplit(':').next().unwrap().to_owned();
    for team in ["teama", "teamb"] {
        s.team(team).await;
    }
    for (own, other) in [("teama", "teamb"), ("teamb", "teama")] {
        let token = team_token(&s, own).await;
        let own_prefix = format!("{host}/platform/{own}");
        let pushed = s.registry.push_image(&format!("platform/{other}/x"), "1").await;
        let theirs = [
            format!("{host}/platform/{other}/x:1"),
            // The same registry under another name, pinned as a deploy would pull it.
            format!("localhost:{port}/platform/{other}/x@{}", pushed.digest),
        ];
        let before = s.snapshot(own).await;
        for image in &theirs {
            // Whoever asks: the image would be read for the team.
            for caller in [&token, &s.admin] {
                let plugin = json!({"name": "stolen", "kind": "general", "source": {"image": image}});
                let (status, body) = s
                    .call_as(
                        caller,
                        Method::POST,
                        &format!("/teams/{own}/plugins"),
                        Some(plugin.clone()),
                    )
                    .await;
                refused(status, &body, StatusCode::FORBIDDEN, "source.image");
                names_the_trespass(&body, other, &own_prefix);
                let component = json!({"name": "stolen", "image": image});
                let (status, body) = s
                    .call_as(
                        caller,
                        Method::POST,
                        &format!("/teams/{own}/components"),
                        Some(component),
                    )
                    .await;
                refused(status, &body, StatusCode::FORBIDDEN, "image");
                names_the_trespass(&body, other, &own_prefix);
                let documents = json!({"documents": [
                    {"kind": "Component", "metadata": {"name": "web"}, "spec": {"image": format!("{own_prefix}/app:1")}},
                    {"kind": "Plugin", "metadata": {"name": "stolen"}, "spec": {"kind": "general", "source": {"image": image}}},
                ]});
                let (status, body) = s
                    .call_as(caller, Method::POST, &format!("/teams/{own}/apply"), Some(documents))
                    .await;
                refused(status, &body, StatusCode::FORBIDDEN, "documents[1].spec.source.image");
                let documents = json!({"documents": [{"kind": "Component", "metadata": {"name": "web"}, "spec": {"image": image}}]});
                let (status, body) = s
                    .call_as(caller, Method::POST, &format!("/teams/{own}/apply"), Some(documents))
                    .await;
                refused(status, &body, StatusCode::FORBIDDEN, "documents[0].spec.image");
            }
        }
        assert_eq!(s.snapshot(own).await, before, "a refused request changes nothing");

        // The team's own images: a copy into its own directory, and a component running one.
        let mine = s.registry.push_image(&format!("platform/{own}/base"), "1").await;
        let spec = json!({"name": "mine", "kind": "general", "source": {"image": mine.image.to_string()}});
        s.ok(
            Method::POST,
            &format!("/teams/{own}/plugins"),
            Some(spec),
            StatusCode::CREATED,
        )
        .await;
        let (status, body) = s
            .call_as(
                &token,
                Method::PATCH,
                &format!("/teams/{own}/plugins/mine"),
                Some(json!({"source": {"image": theirs[0]}})),
            )
            .await;
        refused(status, &body, StatusCode::FORBIDDEN, "source.image");
        let (status, v) = s
            .call_as(
                &token,
                Method::POST,
                &format!("/teams/{own}/plugins/mine/versions"),
                None,
            )
            .await;
        assert_eq!(
            (status, &v["status"]),
            (StatusCode::CREATED, &json!("succeeded")),
            "{v}"
        );
        assert!(
            v["image"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{own_prefix}/mine@sha256:")),
            "{v}"
        );
        let web = json!({"name": "web", "image": mine.pinned()});
        let (status, body) = s
            .call_as(&token, Method::POST, &format!("/teams/{own}/components"), Some(web))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = s
            .call_as(
                &token,
                Method::PUT,
                &format!("/teams/{own}/components/web"),
                Some(json!({"name": "web", "image": theirs[1]})),
            )
            .await;
        refused(status, &body, StatusCode::FORBIDDEN, "image");
        let (_, web) = s
            .call_as(&token, Method::GET, &format!("/teams/{own}/components/web"), None)
            .await;
        assert_eq!(web["image"], mine.pinned(), "the refused PUT changed nothing");
    }
}

/// A server on podman whose platform registry is a fresh test registry (`…/platform`).
async fn podman_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let mut config = common::config(dir.path());
    config.target = Some(kato_runtime::TargetKind::Podman);
    config.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
    let (state, token_path) = kato_server::prepare(&config).await.unwrap();
    let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
    Server {
        router: kato_server::router(state.clone()),
        state,
        admin,
        registry,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_deploys_refuse_another_teams_image_stored_before_the_rule() {
    let s = podman_server().await;
    let host = s.registry.host().to_owned();
    let teams = ["plata", "platb"];
    let _cleanup = teams.map(|t| Cleanup(t.to_owned()));
    let mut images = Vec::new();
    for team in teams {
        s.team(team).await;
        images.push(push_base(&host, &format!("platform/{team}/app")));
    }
    for (own, other, theirs) in [(teams[0], teams[1], &images[1]), (teams[1], teams[0], &images[0])] {
        let token = team_token(&s, own).await;
        let own_prefix = format!("{host}/platform/{own}");
        // Written straight to the store, as a server without the rule would have.
        let team: kato_model::TeamName = own.parse().unwrap();
        let plugin: kato_model::PluginSpec =
            serde_json::from_value(json!({"name": "stolen", "kind": "general", "source": {"image": theirs}})).unwrap();
        let component: kato_model::ComponentSpec =
            serde_json::from_value(json!({"name": "stolen", "image": theirs, "command": "sleep 1000"})).unwrap();
        let mut tx = s.state.store.begin().await.unwrap();
        tx.insert_plugin(&team, &plugin).await.unwrap();
        tx.insert_component(&team, &component).await.unwrap();
        tx.commit().await.unwrap();

        let before = s.snapshot(own).await;
        let (status, body) = s
            .call_as(
                &token,
                Method::POST,
                &format!("/teams/{own}/plugins/stolen/versions"),
                None,
            )
            .await;
        refused(status, &body, StatusCode::FORBIDDEN, "source.image");
        names_the_trespass(&body, other, &own_prefix);
        let (status, body) = s
            .call_as(
                &token,
                Method::POST,
                &format!("/teams/{own}/components/stolen/deploy"),
                None,
            )
            .await;
        refused(status, &body, StatusCode::FORBIDDEN, "image");
        names_the_trespass(&body, other, &own_prefix);
        assert_eq!(s.snapshot(own).await, before, "no version, no deploy");
        let (_, status) = s
            .call_as(
                &token,
                Method::GET,
                &format!("/teams/{own}/components/stolen/status"),
                None,
            )
            .await;
        assert!(status["desired"].is_null(), "{status}");
        assert!(
            !podman(&["image", "exists", theirs]).status.success(),
            "the other team's image was never pulled"
        );
        assert_eq!(
            s.registry
                .registry_digest(&format!("platform/{own}/stolen"), "v1")
                .await,
            None,
            "nothing was copied"
        );
    }
    // Each team's own image deploys (after the refusals: it lands in podman's storage).
    for (own, mine) in teams.iter().zip(&images) {
        let token = team_token(&s, own).await;
        let app = json!({"name": "app", "image": mine, "command": "sleep 1000"});
        let (status, body) = s
            .call_as(&token, Method::POST, &format!("/teams/{own}/components"), Some(app))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, v) = s
            .call_as(
                &token,
                Method::POST,
                &format!("/teams/{own}/components/app/deploy"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(v["error"].is_null(), "{v}");
        assert!(podman(&["image", "exists", mine]).status.success(), "pulled: {mine}");
    }
}

/// A plug-in of `team` built from a repo holding `dockerfile`; answers the finished version
/// and its log.
async fn build(s: &Server, team: &str, name: &str, dockerfile: &str) -> (Value, String) {
    let repo = GitRepo::new();
    repo.write("Dockerfile", dockerfile);
    repo.write("hello.txt", "hello\n");
    repo.commit("initial");
    let spec = json!({"name": name, "kind": "general", "source": {"dockerfile": {"repo": repo.url()}}});
    s.ok(
        Method::POST,
        &format!("/teams/{team}/plugins"),
        Some(spec),
        StatusCode::CREATED,
    )
    .await;
    let v = s
        .ok(
            Method::POST,
            &format!("/teams/{team}/plugins/{name}/versions"),
            None,
            StatusCode::CREATED,
        )
        .await;
    let n = v["number"].as_u64().unwrap();
    let v = s.finished_version(team, name, n).await;
    let (_, log) = s
        .raw(
            Method::GET,
            &format!("/api/v1/teams/{team}/plugins/{name}/versions/{n}/log"),
            Some(&s.admin),
            None,
        )
        .await;
    (v, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerfile_naming_another_teams_platform_image_fails_before_anything_is_pulled() {
    // The platform registry behind a proxy that counts every request it is sent.
    let upstream = TestRegistry::start().await;
    let platform = FlakyRegistry::fail_first(upstream.host(), 503, 0).await;
    let host = platform.host().to_owned();
    let port = host.rsplit(':').next().unwrap().to_owned();
    let s = Server::start_building(|b| b.registry = Some(format!("{host}/platform").parse().unwrap())).await;
    for team in ["teama", "teamb"] {
        s.team(team).await;
        push_base(upstream.host(), &format!("platform/{team}/base"));
    }
    for (own, other) in [("teama", "teamb"), ("teamb", "teama")] {
        let theirs = format!("{host}/platform/{other}/base:1");
        let mine = format!("{host}/platform/{own}/base:1");
        let attempts = [
            ("from", format!("FROM {theirs}\nRUN echo stolen\n")),
            (
                "arg",
                format!("ARG BASE=localhost:{port}/platform/{other}/base:1\nFROM ${{BASE}}\n"),
            ),
            (
                "copy",
                format!("FROM {mine}\nCOPY --from=127.0.0.1:{port}/platform/{other}/base:1 /bin/busybox /stolen\n"),
            ),
        ];
        for (kind, dockerfile) in attempts {
            let seen = platform.requests();
            let (v, log) = build(&s, own, &format!("steal-{kind}"), &dockerfile).await;
            assert_eq!(v["status"], "failed", "{v}");
            let error = v["error"].as_str().unwrap();
            assert!(
                error.contains(&format!("is team {other}'s repository in the platform registry"))
                    && error.contains(&format!("a team can only use its own, `{host}/platform/{own}/…`"))
                    && error.contains("before anything was pulled"),
                "{error}"
            );
            assert!(log.contains(&format!("team {other}'s repository")), "{log}");
            assert!(!log.contains("with podman"), "the builder never ran: {log}");
            assert_eq!(platform.requests(), seen, "the platform registry saw no request");
        }
        assert!(
            !podman(&["image", "exists", &theirs]).status.success(),
            "{theirs} was never pulled"
        );
    }
    // Each team still builds from its own images.
    for team in ["teama", "teamb"] {
        let dockerfile = format!("FROM {host}/platform/{team}/base:1\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n");
        let (v, log) = build(&s, team, "own", &dockerfile).await;
        assert_eq!(v["status"], "succeeded", "{v}\n{log}");
        assert!(log.contains("none reaches another team's repository"), "{log}");
    }
}
