//! Builds from the pages: a version built and its log (whole, resumed, live while the build
//! runs), cancelling, deleting versions and plug-ins.

use axum::http::{Method, StatusCode};
use kato_model::VersionStatus;
use serde_json::json;

use super::common::{self, Console};
use super::support::*;

#[tokio::test]
async fn creating_from_an_image_then_building_shows_the_version_and_its_log() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let registry = kato_testkit::TestRegistry::start().await;
    let pushed = registry.push_image("alpha/agent", "1").await;
    let form = c.get(&a, "/teams/alpha/plugins/new").await;
    assert_eq!(form.status, StatusCode::OK);
    for label in [
        "<label for=\"name\">Name</label>",
        "<label for=\"description\">Description</label>",
        "<label for=\"kind\">Kind</label>",
        "<label for=\"source-image\">Image reference</label>",
        "<label for=\"source-dockerfile-repo\">Git repo</label>",
        "<label for=\"source-dockerfile-ref\">Git ref</label>",
        "<label for=\"source-dockerfile-path\">Dockerfile path</label>",
        "<label for=\"memory_mib\">Minimum memory (MiB)</label>",
        "<label for=\"cpu_millis\">CPU (millicores)</label>",
        "<label for=\"command\">Command</label>",
        "> Image</label>",
        "> Dockerfile in a git repo</label>",
        "href=\"/teams/alpha/settings#credentials\">Add a credential</a>",
        "<button type=\"submit\" class=\"primary\">Create plug-in</button>",
    ] {
        assert!(form.contains(label), "{label}");
    }
    assert_eq!(form.body.matches("<option value=").count(), 6, "the six kinds");

    let image = pushed.image.to_string();
    let made = c
        .post(
            &a,
            "/teams/alpha/plugins/new",
            &[
                ("name", "agent"),
                ("description", "an agent"),
                ("kind", "perf-analysis"),
                ("source", "image"),
                ("source.image", &image),
                ("source.dockerfile.repo", "ignored"),
                ("memory_mib", "32"),
                ("cpu_millis", "250"),
                ("command", "agent\r\n--verbose\r\n"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(made.location(), "/teams/alpha/plugins/agent");
    let d = draft(&c, "alpha", "agent").await;
    assert_eq!(
        (
            &d["kind"],
            &d["source"],
            &d["memory_mib"],
            &d["cpu_millis"],
            &d["command"]
        ),
        (
            &json!("perf-analysis"),
            &json!({"image": image}),
            &json!(32),
            &json!(250),
            &json!(["agent", "--verbose"])
        )
    );

    let page = c.get(&a, "/teams/alpha/plugins/agent").await;
    assert!(page.contains("<h1>agent</h1>"));
    assert!(page.contains("No version yet"));
    let built = c.post(&a, "/teams/alpha/plugins/agent/versions", &[]).await;
    assert_eq!(built.status, StatusCode::SEE_OTHER, "{}", built.body);
    assert_eq!(built.location(), "/teams/alpha/plugins/agent/versions/1");
    let (_, v) = c
        .api(&a, Method::GET, "/teams/alpha/plugins/agent/versions/1", None)
        .await;
    let pinned = format!("{}/alpha/agent@{}", registry.host(), pushed.digest);
    assert_eq!(
        (v["status"].as_str(), v["image"].as_str()),
        (Some("succeeded"), Some(pinned.as_str()))
    );

    let version = c.get(&a, "/teams/alpha/plugins/agent/versions/1").await;
    assert_eq!(version.status, StatusCode::OK);
    assert!(version.contains("<span class=\"badge s-succeeded\">succeeded</span>"));
    assert!(
        version
            .contains("Version 1 is fixed: its image and config never change; edit the draft and build a new version")
    );
    assert!(version.contains(&pinned) && !version.contains("Cancel build"));
    let (s, stored) = raw_get(&c, &a, "/api/v1/teams/alpha/plugins/agent/versions/1/log").await;
    assert_eq!(s, StatusCode::OK);
    let lines = stored.lines().count();
    assert!(lines > 0, "pinning logs what it did");
    assert!(
        version.contains(&format!(
            "data-sse=\"/teams/alpha/plugins/agent/versions/1/log/events?after={lines}\""
        )),
        "the live log goes on after the lines the page shows"
    );
    assert!(version.contains(&format!("<div>{}</div>", stored.lines().next().unwrap())));

    // The whole log as events, then how the build ended; a finished build's stream ends at once.
    let events = Events::open(&c, &a, "/teams/alpha/plugins/agent/versions/1/log/events", None)
        .await
        .all()
        .await;
    let (line_events, end) = events.split_at(events.len() - 1);
    assert_eq!(line_events.len(), lines);
    assert!(
        line_events
            .iter()
            .enumerate()
            .all(|(n, e)| e.event == "line" && e.id == (n + 1).to_string())
    );
    assert_eq!(line_events[0].data, stored.lines().next().unwrap());
    assert_eq!(end[0].event, "end");
    assert_eq!(end[0].data, format!("Build succeeded: {pinned}"));
    // A reconnecting EventSource says what it has; the page's own lines are skipped the same way.
    let resumed = Events::open(&c, &a, "/teams/alpha/plugins/agent/versions/1/log/events", Some("1"))
        .await
        .all()
        .await;
    assert_eq!(resumed.len(), lines, "every line but the first, then the end");
    let after_all = Events::open(
        &c,
        &a,
        &format!("/teams/alpha/plugins/agent/versions/1/log/events?after={lines}"),
        None,
    )
    .await
    .all()
    .await;
    assert_eq!(after_all.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["end"]);

    // The plug-in page lists it, fixed; a finished version can be deleted.
    let page = c.get(&a, "/teams/alpha/plugins/agent").await;
    assert!(page.contains("Version 1 is fixed"));
    assert!(page.contains(&pinned));
    assert!(page.contains("Delete version 1</button>"));
    let deleted = c.post(&a, "/teams/alpha/plugins/agent/versions/1/delete", &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    let (s, _) = c
        .api(&a, Method::GET, "/teams/alpha/plugins/agent/versions/1", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_versions_table_and_the_version_page_say_who_built_each_version() {
    let c = Console::start().await;
    // A team token named `test` (see `Console::team`), and the admin.
    let a = c.team("alpha").await;
    let registry = kato_testkit::TestRegistry::start().await;
    let mut spec = p_spec();
    spec["source"] = json!({"image": registry.push_image("alpha/p", "1").await.image.to_string()});
    plugin(&c, &a, "alpha", spec).await;
    let page = c.get(&a, "/teams/alpha/plugins/p").await;
    assert!(page.contains("<th scope=\"col\">Built by</th>"), "{}", page.body);
    assert!(page.contains("<td colspan=\"8\" class=\"muted\">No version yet"));
    let built = c.post(&a, "/teams/alpha/plugins/p/versions", &[]).await;
    assert_eq!(built.location(), "/teams/alpha/plugins/p/versions/1");
    let built = c.post(&c.admin, "/teams/alpha/plugins/p/versions", &[]).await;
    assert_eq!(built.location(), "/teams/alpha/plugins/p/versions/2");

    let page = c.get(&a, "/teams/alpha/plugins/p").await;
    let row = |n: u32| {
        let link = format!("<a href=\"/teams/alpha/plugins/p/versions/{n}\">Version {n}</a>");
        let at = page.body.find(&link).unwrap_or_else(|| panic!("a row for version {n}"));
        let end = page.body[at..].find("</tr>").unwrap() + at;
        page.body[at..end].to_owned()
    };
    assert!(row(1).contains("<td>token test</td>"), "{}", row(1));
    assert!(row(2).contains("<td>admin</td>"), "{}", row(2));
    for (n, by) in [(1, "token test"), (2, "admin")] {
        let version = c.get(&a, &format!("/teams/alpha/plugins/p/versions/{n}")).await;
        assert_eq!(version.status, StatusCode::OK);
        assert!(
            version.contains(&format!("<dt>Built by</dt><dd>{by}</dd>")),
            "{}",
            version.body
        );
    }
}

#[tokio::test]
async fn a_build_in_progress_streams_each_line_as_it_is_written_and_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let registry = kato_testkit::TestRegistry::start().await;
    let mut cfg = common::config(dir.path());
    // A platform registry, so Dockerfile versions are queued; no build worker runs here: the
    // test writes the build's log and outcome itself.
    cfg.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
    let c = Console::start_with(cfg, dir).await;
    let a = c.team("alpha").await;
    plugin(
        &c,
        &a,
        "alpha",
        json!({"name": "built", "kind": "general",
        "source": {"dockerfile": {"repo": "https://git.example.com/team/built.git"}}}),
    )
    .await;
    let built = c.post(&a, "/teams/alpha/plugins/built/versions", &[]).await;
    assert_eq!(built.location(), "/teams/alpha/plugins/built/versions/1");
    let version = c.get(&a, "/teams/alpha/plugins/built/versions/1").await;
    assert!(version.contains("<span class=\"badge s-queued\">queued</span>"));
    assert!(version.contains(">Cancel build</button>"));
    assert!(version.contains("data-on-end=\"#build-ended\""));
    assert!(version.contains("data-sse=\"/teams/alpha/plugins/built/versions/1/log/events?after=0\""));

    let mut events = Events::open(&c, &a, "/teams/alpha/plugins/built/versions/1/log/events?after=0", None).await;
    let key = ("alpha".parse().unwrap(), "built".parse().unwrap(), 1u32);
    for (n, text) in [(1, "STEP 1/2: FROM busybox"), (2, "STEP 2/2: RUN make")] {
        let mut tx = c.state.store.begin().await.unwrap();
        tx.append_build_log(&key, &[(kato_store::now(), text.to_owned())])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let e = events.next().await.expect("the line, while the build goes on");
        assert_eq!((e.event.as_str(), e.id.as_str()), ("line", n.to_string().as_str()));
        assert!(e.data.ends_with(text), "{e:?}");
    }
    let mut tx = c.state.store.begin().await.unwrap();
    tx.finish_version(
        &key.0,
        &key.1,
        1,
        VersionStatus::Failed,
        None,
        Some("step 2 failed: make exited with 2"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let end = events.next().await.unwrap();
    assert_eq!(
        (end.event.as_str(), end.data.as_str()),
        ("end", "Build failed: step 2 failed: make exited with 2")
    );
    assert_eq!(events.next().await, None, "the stream ends with the build");
    let failed = c.get(&a, "/teams/alpha/plugins/built/versions/1").await;
    assert!(failed.contains("Build failed: step 2 failed: make exited with 2"));
    assert!(failed.contains("STEP 2/2: RUN make</div>") && !failed.contains("Cancel build"));

    // Version 2 is cancelled from its page.
    let built = c.post(&a, "/teams/alpha/plugins/built/versions", &[]).await;
    assert_eq!(built.location(), "/teams/alpha/plugins/built/versions/2");
    let cancelled = c.post(&a, "/teams/alpha/plugins/built/versions/2/cancel", &[]).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    assert_eq!(cancelled.location(), "/teams/alpha/plugins/built/versions/2");
    let (_, v) = c
        .api(&a, Method::GET, "/teams/alpha/plugins/built/versions/2", None)
        .await;
    assert_eq!(v["status"], "cancelled");
    let events = Events::open(&c, &a, "/teams/alpha/plugins/built/versions/2/log/events", None)
        .await
        .all()
        .await;
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("Build cancelled"));
}

#[tokio::test]
async fn deleting_asks_for_confirmation_and_an_installed_plugin_needs_the_uninstall_box() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let registry = kato_testkit::TestRegistry::start().await;
    let image = registry.push_image("alpha/p", "1").await.image.to_string();
    let mut spec = p_spec();
    spec["source"] = json!({"image": image});
    plugin(&c, &a, "alpha", spec).await;
    let (s, _) = c.api(&a, Method::POST, "/teams/alpha/plugins/p/versions", None).await;
    assert_eq!(s, StatusCode::CREATED);
    c.api(
        &a,
        Method::POST,
        "/teams/alpha/components",
        Some(json!({"name": "web", "image": "nginx"})),
    )
    .await;
    let (s, _) = c
        .api(
            &a,
            Method::PUT,
            "/teams/alpha/components/web/plugins/p",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let confirm = c.get(&a, "/teams/alpha/plugins/p/delete").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.contains("<h1>Delete plug-in p</h1>") && confirm.contains("> Yes, delete</label>"));
    let unconfirmed = c.post(&a, "/teams/alpha/plugins/p/delete", &[]).await;
    assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unconfirmed.contains("Tick “Yes, delete” to delete the plug-in."));
    let in_use = c
        .post(&a, "/teams/alpha/plugins/p/delete", &[("confirm", "true")])
        .await;
    assert_eq!(in_use.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(in_use.contains("installed on web"), "{}", in_use.body);
    assert_eq!(draft(&c, "alpha", "p").await["name"], "p", "still there");
    // An installed version cannot be deleted either: the API's refusal, as a page.
    let version = c.post(&a, "/teams/alpha/plugins/p/versions/1/delete", &[]).await;
    assert_eq!(version.status, StatusCode::CONFLICT);
    assert!(version.contains("installed on"), "{}", version.body);

    let gone = c
        .post(
            &a,
            "/teams/alpha/plugins/p/delete",
            &[("confirm", "true"), ("force", "true")],
        )
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert_eq!(gone.location(), "/teams/alpha/plugins");
    let (s, _) = c.api(&a, Method::GET, "/teams/alpha/plugins/p", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
