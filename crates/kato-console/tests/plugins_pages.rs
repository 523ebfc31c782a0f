//! The plug-in pages: the list and its filters, creating from an image or a Dockerfile, the
//! draft and its config-group editor (rows added and removed without saving, validation as you
//! type, refused saves), secrets, builds with their live log, deleting; CSRF and team bounds.

#[path = "plugins_pages/builds.rs"]
mod builds;
mod common;
#[path = "plugins_pages/support.rs"]
mod support;

use axum::http::{Method, StatusCode};
use common::Console;
use serde_json::json;
use support::*;

#[tokio::test]
async fn the_list_shows_each_plugins_latest_version_memory_and_users_and_filters_without_js() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let registry = kato_testkit::TestRegistry::start().await;
    let image = registry.push_image("alpha/logs", "1").await.image.to_string();
    plugin(
        &c,
        &a,
        "alpha",
        json!({"name": "logs", "description": "Collects the app's logs", "kind": "general",
        "source": {"image": image}, "memory_mib": 2048}),
    )
    .await;
    plugin(
        &c,
        &a,
        "alpha",
        json!({"name": "mesh", "description": "governs calls", "kind": "outbound-net",
        "source": {"image": image}}),
    )
    .await;
    plugin(
        &c,
        &a,
        "alpha",
        json!({"name": "seed", "kind": "init", "source": {"image": image}}),
    )
    .await;
    let (s, v) = c
        .api(&a, Method::POST, "/teams/alpha/plugins/logs/versions", None)
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::CREATED, Some("succeeded")),
        "{v}"
    );
    let (s, _) = c
        .api(
            &a,
            Method::POST,
            "/teams/alpha/components",
            Some(json!({"name": "web", "image": "nginx"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = c
        .api(
            &a,
            Method::PUT,
            "/teams/alpha/components/web/plugins/logs",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let list = c.get(&a, "/teams/alpha/plugins").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.contains("<h1>Plug-ins</h1>"));
    assert!(list.contains("href=\"/teams/alpha/plugins/new\">New plug-in</a>"));
    assert!(list.contains("3 plug-ins"));
    let logs_row = row_of(&list.body, "logs");
    assert!(logs_row.contains("<td>general</td>"), "{logs_row}");
    assert!(
        logs_row.contains(
            "href=\"/teams/alpha/plugins/logs/versions/1\">1</a> <span class=\"badge s-succeeded\">succeeded</span>"
        ),
        "{logs_row}"
    );
    assert!(
        logs_row.contains("<td>2 GiB</td>") && logs_row.contains("1 component<"),
        "{logs_row}"
    );
    let mesh_row = row_of(&list.body, "mesh");
    assert!(
        mesh_row.contains("none yet") && mesh_row.contains("0 components"),
        "{mesh_row}"
    );
    assert!(list.contains("<label for=\"filter-kind\">Kind</label>"));
    assert!(list.contains("<label for=\"filter-q\">Search</label>"));

    let init = c.get(&a, "/teams/alpha/plugins?kind=init&q=").await;
    assert!(init.contains("1 of 3 plug-ins"), "{}", init.body);
    assert!(init.contains("/plugins/seed\"") && !init.contains("/plugins/logs\"") && !init.contains("/plugins/mesh\""));
    assert!(
        init.contains("<option value=\"init\" selected>"),
        "the filter shows what it filters by"
    );
    let searched = c.get(&a, "/teams/alpha/plugins?kind=&q=APP%27S").await;
    assert!(
        searched.contains("/plugins/logs\"") && !searched.contains("/plugins/mesh\""),
        "by description"
    );
    assert!(searched.contains("value=\"APP&#39;S\""), "{}", searched.body);
    let by_name = c.get(&a, "/teams/alpha/plugins?q=mes").await;
    assert!(by_name.contains("/plugins/mesh\"") && !by_name.contains("/plugins/seed\""));
    let none = c.get(&a, "/teams/alpha/plugins?kind=perf-analysis").await;
    assert!(none.contains("No plug-in matches."));
}

#[tokio::test]
async fn creating_from_a_dockerfile_in_git_keeps_repo_ref_and_path_and_a_refusal_keeps_the_input() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let fields = [
        ("name", "builder"),
        ("description", ""),
        ("kind", "init"),
        ("source", "dockerfile"),
        ("source.image", ""),
        ("source.dockerfile.repo", "https://git.example.com/team/agent.git"),
        ("source.dockerfile.ref", "v1.2"),
        ("source.dockerfile.path", "docker/Dockerfile"),
        ("memory_mib", "2"),
        ("cpu_millis", ""),
        ("command", ""),
    ];
    let refused = c.post(&a, "/teams/alpha/plugins/new", &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.contains("id=\"memory_mib-error\" data-error-for=\"memory_mib\">is 2 MiB: give between 4 and"),
        "{}",
        refused.body
    );
    assert!(refused.contains("id=\"memory_mib\" name=\"memory_mib\" value=\"2\" inputmode=\"numeric\""));
    assert!(refused.contains("value=\"https://git.example.com/team/agent.git\""));
    assert!(refused.contains("value=\"v1.2\"") && refused.contains("value=\"docker/Dockerfile\""));
    assert!(refused.contains("id=\"source-dockerfile\" name=\"source\" value=\"dockerfile\" checked"));
    assert!(refused.contains("<option value=\"init\" selected>"));
    let (_, list) = c.api(&a, Method::GET, "/teams/alpha/plugins", None).await;
    assert_eq!(list, json!([]), "nothing was created");

    let mut fixed = fields;
    fixed[8].1 = "128";
    let made = c.post(&a, "/teams/alpha/plugins/new", &fixed).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let d = draft(&c, "alpha", "builder").await;
    assert_eq!(
        d["source"],
        json!({"dockerfile": {"repo": "https://git.example.com/team/agent.git", "ref": "v1.2", "path": "docker/Dockerfile"}})
    );
    // The page shows the draft as it is: the Dockerfile source chosen.
    let page = c.get(&a, "/teams/alpha/plugins/builder").await;
    assert!(page.contains("id=\"source-dockerfile\" name=\"source\" value=\"dockerfile\" checked"));
    assert!(page.contains("value=\"docker/Dockerfile\""));

    // The name is taken: said beside the name.
    let again = c.post(&a, "/teams/alpha/plugins/new", &fixed).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.contains("data-error-for=\"name\">plug-in `builder` already exists"),
        "{}",
        again.body
    );
    // An invalid name: the API's message, beside the name.
    let mut bad = fixed;
    bad[0].1 = "Bad_Name";
    let named = c.post(&a, "/teams/alpha/plugins/new", &bad).await;
    assert_eq!(named.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        named.contains("data-error-for=\"name\">invalid plug-in name `Bad_Name`"),
        "{}",
        named.body
    );
}

#[tokio::test]
async fn adding_and_removing_rows_keeps_everything_typed_and_saves_nothing() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    plugin(&c, &a, "alpha", p_spec()).await;
    let before = draft(&c, "alpha", "p").await;
    let page = c.get(&a, "/teams/alpha/plugins/p").await;
    for label in [
        "<legend id=\"config-group-0-legend\">Config group base</legend>",
        "<label for=\"config_groups-0-name\">Group name</label>",
        "<label for=\"config_groups-0-meta\">Meta type</label>",
        "<label for=\"config_groups-0-injection\">Injection type</label>",
        "<label for=\"config_groups-0-items-0-name\">Item name</label>",
        "<label for=\"config_groups-0-items-0-type\">Type</label>",
        "<label for=\"config_groups-0-items-0-options\">Options</label>",
        "<label for=\"config_groups-0-items-0-default\">Default</label>",
        "<label for=\"config_groups-0-items-0-protocols\">Protocols</label>",
        "<label for=\"config_groups-0-items-0-description\">Description</label>",
        "> Changeable</label>",
        "> Secret</label>",
        ">Add item</button>",
        ">Add config group</button>",
        ">Remove</button>",
        "class=\"primary\">Save draft</button>",
        "data-validate=\"/teams/alpha/plugins/p/validate\"",
    ] {
        assert!(page.contains(label), "{label}");
    }
    assert!(page.contains("value=\"debug, info\""));

    let typed = draft_form(&[
        ("description", "typed, not saved"),
        ("config_groups[0].items[0].options", "debug, info, warn"),
        ("_action", "add-item-0"),
    ]);
    let more = c.post(&a, "/teams/alpha/plugins/p", &typed).await;
    assert_eq!(more.status, StatusCode::OK, "{}", more.body);
    assert!(more.contains(">typed, not saved</textarea>"));
    assert!(more.contains("value=\"debug, info, warn\""));
    assert!(
        more.contains("name=\"config_groups[0].items[1].name\" value=\"\""),
        "one more item"
    );
    assert!(more.contains("<legend id=\"config-group-0-item-1-legend\">Item 2</legend>"));
    assert!(!more.contains("config_groups[0].items[2]"));
    assert!(
        more.contains("id=\"config_groups-0-items-1-changeable\" name=\"config_groups[0].items[1].changeable\" value=\"true\" checked"),
        "a new item is changeable"
    );

    let group = c
        .post(
            &a,
            "/teams/alpha/plugins/p",
            &draft_form(&[("description", "typed, not saved"), ("_action", "add-group")]),
        )
        .await;
    assert_eq!(group.status, StatusCode::OK);
    assert!(group.contains("<legend id=\"config-group-1-legend\">Config group 2</legend>"));
    assert!(group.contains("name=\"config_groups[1].items[0].name\""));
    assert!(
        group.contains("<option value=\"component-port\" selected>"),
        "the next meta not used"
    );
    assert!(group.contains("value=\"LEVEL\"") && group.contains(">typed, not saved</textarea>"));

    let fewer = c
        .post(
            &a,
            "/teams/alpha/plugins/p",
            &draft_form(&[
                ("config_groups[0].items[1].name", "SECOND"),
                ("config_groups[0].items[1].type", "string"),
                ("_action", "remove-item-0-0"),
            ]),
        )
        .await;
    assert_eq!(fewer.status, StatusCode::OK);
    assert!(!fewer.contains("value=\"LEVEL\"") && fewer.contains("value=\"SECOND\""));
    assert!(!fewer.contains("config_groups[0].items[1]"), "renumbered");
    let none = c
        .post(
            &a,
            "/teams/alpha/plugins/p",
            &draft_form(&[("_action", "remove-group-0")]),
        )
        .await;
    assert!(none.contains("No config group.") && none.contains("value=\"busybox:1.36\""));

    assert_eq!(draft(&c, "alpha", "p").await, before, "nothing was saved");
}

#[tokio::test]
async fn validation_as_you_type_answers_the_models_error_under_the_input_name() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    plugin(&c, &a, "alpha", p_spec()).await;
    let before = draft(&c, "alpha", "p").await;
    assert_eq!(validate(&c, &a, &[]).await, json!({}));
    let e = validate(&c, &a, &[("config_groups[0].meta", "component-port")]).await;
    let msg = e["config_groups[0].injection"]
        .as_str()
        .unwrap_or_else(|| panic!("{e}"));
    assert!(msg.contains("set injection to `discovery`"), "{msg}");
    let e = validate(&c, &a, &[("config_groups[0].items[0].name", "bad-name")]).await;
    assert!(
        e["config_groups[0].items[0].name"]
            .as_str()
            .is_some_and(|m| m.contains("invalid env variable name `bad-name`")),
        "{e}"
    );
    let e = validate(&c, &a, &[("config_groups[0].items[0].default", "trace")]).await;
    assert!(
        e["config_groups[0].items[0].default"]
            .as_str()
            .is_some_and(|m| m.contains("`trace` is not one of debug, info")),
        "{e}"
    );
    let e = validate(
        &c,
        &a,
        &[
            ("config_groups[1].name", "again"),
            ("config_groups[1].meta", "none"),
            ("config_groups[1].injection", "env"),
        ],
    )
    .await;
    assert!(e["config_groups[1].meta"].is_string(), "one group per meta: {e}");
    let e = validate(&c, &a, &[("memory_mib", "lots")]).await;
    assert!(e["memory_mib"].is_string(), "{e}");
    // A team token may not build from the server's disk: the same rule as a save, on its field.
    let e = validate(
        &c,
        &a,
        &[("source", "dockerfile"), ("source.dockerfile.repo", "/srv/agent")],
    )
    .await;
    assert!(
        e["source.dockerfile.repo"]
            .as_str()
            .is_some_and(|m| m.contains("may not build from the server's disk")),
        "{e}"
    );

    let no_csrf = c
        .post_raw(&a, "/teams/alpha/plugins/p/validate", &draft_form(&[]), "same-origin")
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(draft(&c, "alpha", "p").await, before, "checking saves nothing");
}

#[tokio::test]
async fn a_refused_save_keeps_the_input_and_places_the_error_then_a_save_goes_through() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    plugin(&c, &a, "alpha", p_spec()).await;
    let before = draft(&c, "alpha", "p").await;
    let refused = c
        .post(
            &a,
            "/teams/alpha/plugins/p",
            &draft_form(&[
                ("description", "typed before the refusal"),
                ("config_groups[0].items[0].default", "trace"),
                ("_action", "save"),
            ]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.contains(">typed before the refusal</textarea>"));
    let input = tag(&refused.body, "config_groups-0-items-0-default");
    assert!(
        input.contains("value=\"trace\"") && input.contains("aria-invalid=\"true\""),
        "{input}"
    );
    assert!(
        input.contains(
            "aria-describedby=\"config_groups-0-items-0-default-hint config_groups-0-items-0-default-error\""
        )
    );
    assert!(refused.contains(
        "id=\"config_groups-0-items-0-default-error\" data-error-for=\"config_groups[0].items[0].default\">`trace` is not one of debug, info"
    ));
    assert_eq!(draft(&c, "alpha", "p").await, before, "a refused save changes nothing");

    // Enter in a field sends no button: that saves too.
    let saved = c
        .post(
            &a,
            "/teams/alpha/plugins/p",
            &draft_form(&[
                ("description", "saved"),
                ("memory_mib", "96"),
                ("command", "agent\n--once"),
                ("config_groups[0].items[0].changeable", "false"),
                ("config_groups[0].items[0].protocols", "http, grpc"),
            ]),
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/teams/alpha/plugins/p?saved=true#draft");
    let d = draft(&c, "alpha", "p").await;
    assert_eq!((&d["description"], &d["memory_mib"]), (&json!("saved"), &json!(96)));
    assert_eq!(d["command"], json!(["agent", "--once"]));
    let item = &d["config_groups"][0]["items"][0];
    assert_eq!(
        (&item["changeable"], &item["protocols"]),
        (&json!(false), &json!(["http", "grpc"]))
    );
    let page = c.get(&a, "/teams/alpha/plugins/p?saved=true").await;
    assert!(page.contains("Draft saved."));
    assert!(page.contains("value=\"http, grpc\""));

    // Emptied fields are removed from the draft.
    let cleared = c
        .post(
            &a,
            "/teams/alpha/plugins/p",
            &draft_form(&[("memory_mib", ""), ("cpu_millis", ""), ("command", "")]),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    let d = draft(&c, "alpha", "p").await;
    assert_eq!((&d["memory_mib"], d.get("command")), (&json!(64), None));
}

#[tokio::test]
async fn secret_defaults_are_never_shown_and_an_empty_input_keeps_them() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let mut spec = p_spec();
    spec["config_groups"][0]["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "TOKEN", "secret": true, "default": "s3cr3t-value"}));
    plugin(&c, &a, "alpha", spec).await;
    let page = c.get(&a, "/teams/alpha/plugins/p").await;
    assert!(!page.contains("s3cr3t-value"));
    assert!(page.contains(
        "id=\"config_groups-0-items-1-default\" name=\"config_groups[0].items[1].default\" value=\"\" type=\"password\""
    ));
    assert!(page.contains("A secret default is set and never shown: leave empty to keep it."));

    let secret_item: [(&str, &str); 5] = [
        ("config_groups[0].items[1].name", "TOKEN"),
        ("config_groups[0].items[1].type", "string"),
        ("config_groups[0].items[1].default", ""),
        ("config_groups[0].items[1].changeable", "true"),
        ("config_groups[0].items[1].secret", "true"),
    ];
    // A typed secret is not sent back to the page either.
    let mut typed = secret_item.to_vec();
    typed[2].1 = "typed-secret";
    typed.push(("_action", "add-item-0"));
    let mut fields = draft_form(&[]);
    fields.extend(typed);
    let again = c.post(&a, "/teams/alpha/plugins/p", &fields).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(!again.contains("typed-secret") && !again.contains("s3cr3t-value"));

    let mut fields = draft_form(&[("description", "edited")]);
    fields.extend(secret_item);
    let saved = c.post(&a, "/teams/alpha/plugins/p", &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stored = c
        .state
        .store
        .get_plugin(&"alpha".parse().unwrap(), &"p".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spec.description, "edited");
    let token = &stored.spec.config_groups[0].items[1];
    assert_eq!(
        token.default,
        Some(kato_model::ConfigValue::Text("s3cr3t-value".into())),
        "left empty, the secret default is kept"
    );
}

#[tokio::test]
async fn without_the_csrf_value_nothing_changes() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    plugin(&c, &a, "alpha", p_spec()).await;
    let before = draft(&c, "alpha", "p").await;
    let posts: [(&str, Vec<(&str, &str)>); 6] = [
        (
            "/teams/alpha/plugins/new",
            vec![
                ("name", "q"),
                ("kind", "general"),
                ("source", "image"),
                ("source.image", "x"),
            ],
        ),
        ("/teams/alpha/plugins/p", draft_form(&[("description", "changed")])),
        ("/teams/alpha/plugins/p/validate", draft_form(&[])),
        ("/teams/alpha/plugins/p/versions", vec![]),
        (
            "/teams/alpha/plugins/p/delete",
            vec![("confirm", "true"), ("force", "true")],
        ),
        ("/teams/alpha/plugins/p/versions/1/delete", vec![]),
    ];
    for (path, fields) in &posts {
        let page = c.post_raw(&a, path, fields, "same-origin").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        let csrf = kato_console::session::csrf_of(&a);
        let mut with = vec![("_csrf", csrf.as_str())];
        with.extend(fields.iter().copied());
        let cross = c.post_raw(&a, path, &with, "cross-site").await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{path} from another site");
    }
    assert_eq!(draft(&c, "alpha", "p").await, before);
    let (_, list) = c.api(&a, Method::GET, "/teams/alpha/plugins", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "no plug-in created or deleted");
    let (_, versions) = c.api(&a, Method::GET, "/teams/alpha/plugins/p/versions", None).await;
    assert_eq!(versions, json!([]), "no version built");
}

#[tokio::test]
async fn another_teams_token_is_refused_and_changes_nothing() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let b = c.team("beta").await;
    plugin(&c, &b, "beta", p_spec()).await;
    let before = draft(&c, "beta", "p").await;
    for path in [
        "/teams/beta/plugins",
        "/teams/beta/plugins/new",
        "/teams/beta/plugins/p",
        "/teams/beta/plugins/p/delete",
        "/teams/beta/plugins/p/versions/1",
        "/teams/beta/plugins/p/versions/1/log/events",
    ] {
        let page = c.get(&a, path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(!page.contains("collects logs"), "{path} shows nothing of beta's");
    }
    for (path, fields) in [
        (
            "/teams/beta/plugins/new",
            vec![
                ("name", "q"),
                ("kind", "general"),
                ("source", "image"),
                ("source.image", "x"),
            ],
        ),
        ("/teams/beta/plugins/p", draft_form(&[("description", "changed")])),
        ("/teams/beta/plugins/p", draft_form(&[("_action", "add-group")])),
        ("/teams/beta/plugins/p/validate", draft_form(&[])),
        ("/teams/beta/plugins/p/versions", vec![]),
        (
            "/teams/beta/plugins/p/delete",
            vec![("confirm", "true"), ("force", "true")],
        ),
    ] {
        let page = c.post(&a, path, &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(!page.contains("collects logs"), "{path} shows nothing of beta's");
    }
    assert_eq!(draft(&c, "beta", "p").await, before);
    let (_, list) = c.api(&b, Method::GET, "/teams/beta/plugins", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, versions) = c.api(&b, Method::GET, "/teams/beta/plugins/p/versions", None).await;
    assert_eq!(versions, json!([]));
}

#[tokio::test]
async fn a_long_list_is_shown_a_hundred_at_a_time_and_the_filter_carries_over_pages() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    for i in 0..105 {
        let kind = if i % 2 == 0 { "general" } else { "init" };
        plugin(
            &c,
            &a,
            "alpha",
            json!({"name": format!("p{i:03}"), "kind": kind, "source": {"image": "x:1"}}),
        )
        .await;
    }
    let first = c.get(&a, "/teams/alpha/plugins").await;
    assert!(first.contains("105 plug-ins: 1–100 shown"), "{}", first.body);
    assert!(first.contains("/plugins/p099\"") && !first.contains("/plugins/p100\""));
    assert!(
        first.contains("href=\"/teams/alpha/plugins?kind=&#38;q=&#38;page=2\" rel=\"next\">Next</a>"),
        "{}",
        first.body
    );
    assert!(!first.contains("rel=\"prev\""));
    let second = c.get(&a, "/teams/alpha/plugins?kind=&q=&page=2").await;
    assert!(second.contains("105 plug-ins: 101–105 shown"));
    assert!(second.contains("/plugins/p104\"") && !second.contains("/plugins/p099\""));
    assert!(second.contains("rel=\"prev\">Previous</a>") && !second.contains("rel=\"next\""));
    // 53 plug-ins are `general`: one page, no links.
    let general = c.get(&a, "/teams/alpha/plugins?kind=general&q=p&page=7").await;
    assert!(general.contains("53 of 105 plug-ins<"), "{}", general.body);
    assert!(!general.contains("rel=\"next\"") && !general.contains("rel=\"prev\""));
}
