//! The store's conformance suite: every test is written once and runs against SQLite and
//! PostgreSQL (`sqlite::name`, `postgres::name`), each on a fresh database.
//!
//! PostgreSQL comes from `KATO_TEST_DATABASE_URL` (see `scripts/pg-test-setup.sh`); without it
//! the PostgreSQL tests fail, unless `KATO_TEST_SKIP_POSTGRES=1`.

// First, so that its macros are in scope in the modules below.
#[macro_use]
mod support;
mod builds;
mod deployments;
mod discovery;
mod installs;
mod rows;
mod sealing;
mod transactions;

use builds::*;
use deployments::*;
use discovery::*;
use installs::*;
use kato_model::VersionStatus;
use rows::*;
use sealing::*;
use support::*;
use transactions::*;

conformance! {
    teams_are_unique_and_listed,
    tokens_are_scoped_to_their_team,
    plugin_drafts,
    versions_are_numbered_per_plugin_and_never_reused,
    finished_versions_are_immutable,
    latest_succeeded_and_unfinished_versions,
    claiming_queued_versions,
    components_and_dependencies,
    corrupt_rows_are_reported,
    install_order_is_kept_on_update,
    install_needs_component_and_version,
    versions_and_plugins_in_use_are_refused,
    plugin_summaries_show_the_newest_version_and_how_many_components_install_it,
    deleting_a_component_removes_its_installations,
    rollback_leaves_everything_as_it_was,
    domain_errors_leave_the_transaction_usable,
    concurrent_writers_all_succeed,
    concurrent_versions_get_distinct_numbers,
    reads_do_not_wait_for_writers,
    data_survives_reopening,
    deployments_record_desired_and_applied_state,
    failed_deploys_keep_their_retry_and_one_replica_claims_it,
    builds_are_claimed_once_and_held_by_a_lease,
    a_lease_that_runs_out_is_reported,
    provenance_and_logs_are_kept_with_the_version,
    versions_record_who_created_them,
    credentials_are_kept_per_team_and_listed_without_passwords,
    discovery_tokens_are_found_by_hash_and_rotate,
    revisions_high_water_survives_reinstall,
    acks_are_kept_per_pod_and_go_with_the_installation,
    acks_stay_bounded_per_pod_and_per_installation,
    transactions_record_touched_installations,
    committed_changes_are_announced_to_listeners,
    secrets_are_sealed_at_rest_and_read_in_clear,
    rows_an_older_version_left_in_clear_are_sealed_at_open,
    rotation_reseals_every_secret_with_the_new_key,
    a_rotation_that_fails_midway_leaves_every_secret_under_the_old_key,
    a_server_without_the_databases_key_neither_opens_nor_seals,
}

async fn teams_are_unique_and_listed(db: Db) {
    let store = db.store;
    assert!(!store.team_exists(&team("b")).await.unwrap());
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&team("b")).await.unwrap();
    tx.create_team(&team("a")).await.unwrap();
    let msg = assert_err!(tx.create_team(&team("a")).await, Conflict);
    assert!(msg.contains("team `a` already exists"), "{msg}");
    tx.commit().await.unwrap();

    let teams = store.list_teams().await.unwrap();
    let names: Vec<_> = teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(teams[0].created_at.ends_with('Z'), "{}", teams[0].created_at);
    assert!(store.team_exists(&team("b")).await.unwrap());
    assert!(!store.team_exists(&team("c")).await.unwrap());
}

async fn tokens_are_scoped_to_their_team(db: Db) {
    let store = db.store;
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&team("a")).await.unwrap();
    tx.create_team(&team("b")).await.unwrap();
    let admin = tx.create_token(None, "admin", "h-admin").await.unwrap();
    let a1 = tx.create_token(Some(&team("a")), "ci", "h-a1").await.unwrap();
    let a2 = tx.create_token(Some(&team("a")), "laptop", "h-a2").await.unwrap();
    let b1 = tx.create_token(Some(&team("b")), "ci", "h-b1").await.unwrap();
    assert_err!(tx.create_token(Some(&team("a")), "again", "h-a1").await, Conflict);
    let msg = assert_err!(tx.create_token(Some(&team("zz")), "x", "h-zz").await, NotFound);
    assert!(msg.contains("team `zz`"), "{msg}");
    tx.commit().await.unwrap();

    assert_eq!(admin.team, None);
    assert_eq!(a1.team, Some(team("a")));
    let found = store.token_by_hash("h-a2").await.unwrap().unwrap();
    assert_eq!(found, a2);
    assert_eq!(store.token_by_hash("h-admin").await.unwrap(), Some(admin.clone()));
    assert_eq!(store.token_by_hash("nope").await.unwrap(), None);
    assert_eq!(
        store.list_tokens(Some(&team("a"))).await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(store.list_tokens(None).await.unwrap(), vec![admin.clone()]);

    let mut tx = store.begin().await.unwrap();
    // A team cannot revoke another team's token, nor an admin token, by guessing its id.
    assert!(!tx.delete_token(Some(&team("a")), b1.id).await.unwrap());
    assert!(!tx.delete_token(Some(&team("a")), admin.id).await.unwrap());
    assert!(!tx.delete_token(None, a1.id).await.unwrap());
    assert!(tx.delete_token(Some(&team("a")), a2.id).await.unwrap());
    assert!(!tx.delete_token(Some(&team("a")), a2.id).await.unwrap());
    // Ids of revoked tokens are not handed out again.
    let a3 = tx.create_token(Some(&team("a")), "new", "h-a3").await.unwrap();
    assert!(a3.id > b1.id, "{} after {}", a3.id, b1.id);
    tx.commit().await.unwrap();
    assert_eq!(store.token_by_hash("h-a2").await.unwrap(), None);
    assert_eq!(store.list_tokens(Some(&team("b"))).await.unwrap(), vec![b1]);
}

async fn plugin_drafts(db: Db) {
    let store = db.store;
    let t = team("t");
    let mut tx = store.begin().await.unwrap();
    let msg = assert_err!(tx.insert_plugin(&t, &plugin("mesh")).await, NotFound);
    assert!(msg.contains("team `t` does not exist"), "{msg}");
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("mesh")).await.unwrap();
    tx.insert_plugin(&t, &plugin("logs")).await.unwrap();
    let msg = assert_err!(tx.insert_plugin(&t, &plugin("mesh")).await, Conflict);
    assert!(msg.contains("plug-in `mesh` already exists in team `t`"), "{msg}");
    tx.commit().await.unwrap();

    let got = store.get_plugin(&t, &plugin_name("mesh")).await.unwrap().unwrap();
    assert_eq!(got.spec, plugin("mesh"));
    assert_eq!(got.created_at, got.updated_at);
    assert_eq!(store.get_plugin(&t, &plugin_name("none")).await.unwrap(), None);
    assert_eq!(
        store.get_plugin(&team("other"), &plugin_name("mesh")).await.unwrap(),
        None
    );
    let names: Vec<_> = store
        .list_plugins(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.spec.name)
        .collect();
    assert_eq!(names, [plugin_name("logs"), plugin_name("mesh")]);

    let mut edited = plugin("mesh");
    edited.description = "governs calls".into();
    edited.memory_mib = 128;
    let mut tx = store.begin().await.unwrap();
    assert!(tx.update_plugin(&t, &edited).await.unwrap());
    assert!(!tx.update_plugin(&t, &plugin("ghost")).await.unwrap());
    tx.commit().await.unwrap();
    let got = store.get_plugin(&t, &plugin_name("mesh")).await.unwrap().unwrap();
    assert_eq!(got.spec, edited);
    assert!(got.updated_at >= got.created_at);

    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_plugin(&t, &plugin_name("logs")).await.unwrap());
    assert!(!tx.delete_plugin(&t, &plugin_name("logs")).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.list_plugins(&t).await.unwrap().len(), 1);
}

async fn versions_are_numbered_per_plugin_and_never_reused(db: Db) {
    let store = db.store;
    let (t, p, q) = (team("t"), plugin_name("p"), plugin_name("q"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    tx.insert_plugin(&t, &plugin("q")).await.unwrap();
    for expected in 1..=3 {
        let v = tx
            .insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
            .await
            .unwrap();
        assert_eq!((v.number, v.status), (expected, VersionStatus::Queued));
    }
    assert_eq!(
        tx.insert_version(&t, &q, &plugin("q"), VersionStatus::Queued, "admin")
            .await
            .unwrap()
            .number,
        1
    );
    let msg = assert_err!(
        tx.insert_version(
            &t,
            &plugin_name("ghost"),
            &plugin("ghost"),
            VersionStatus::Queued,
            "admin"
        )
        .await,
        NotFound
    );
    assert!(msg.contains("plug-in `ghost`"), "{msg}");
    tx.commit().await.unwrap();

    // The newest number is deleted: the next version still does not take it.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_version(&t, &p, 3).await.unwrap());
    assert!(!tx.delete_version(&t, &p, 3).await.unwrap());
    assert!(tx.delete_version(&t, &p, 1).await.unwrap());
    assert_eq!(tx.next_version_number(&t, &p).await.unwrap(), 4);
    assert_eq!(tx.next_version_number(&t, &plugin_name("ghost")).await.unwrap(), 1);
    let v = tx
        .insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    assert_eq!(v.number, 4);
    tx.commit().await.unwrap();
    let numbers: Vec<_> = store
        .list_versions(&t, &p)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version.number)
        .collect();
    assert_eq!(numbers, [2, 4]);
    assert_eq!(store.next_version_number(&t, &p).await.unwrap(), 5);

    // A version keeps the draft as it was when cut.
    let mut edited = plugin("p");
    edited.description = "changed later".into();
    let mut tx = store.begin().await.unwrap();
    tx.update_plugin(&t, &edited).await.unwrap();
    tx.commit().await.unwrap();
    let v2 = store.get_version(&t, &p, 2).await.unwrap().unwrap();
    assert_eq!(v2.version.spec, plugin("p"));
    assert_eq!(v2.finished_at, None);
    assert_eq!(store.get_version(&t, &p, 3).await.unwrap(), None);
}

async fn finished_versions_are_immutable(db: Db) {
    let store = db.store;
    let (t, p) = (team("t"), plugin_name("p"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    tx.set_version_status(&t, &p, 1, VersionStatus::Building).await.unwrap();
    tx.commit().await.unwrap();
    let building = store.get_version(&t, &p, 1).await.unwrap().unwrap();
    assert_eq!(
        (building.version.status, building.finished_at),
        (VersionStatus::Building, None)
    );

    let image = format!("nginx@sha256:{}", "a".repeat(64));
    let mut tx = store.begin().await.unwrap();
    tx.finish_version(&t, &p, 1, VersionStatus::Succeeded, Some(&image), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let done = store.get_version(&t, &p, 1).await.unwrap().unwrap();
    assert_eq!(done.version.status, VersionStatus::Succeeded);
    assert_eq!(done.version.image.as_deref(), Some(image.as_str()));
    assert!(done.finished_at.is_some());

    let mut tx = store.begin().await.unwrap();
    let msg = assert_err!(
        tx.finish_version(&t, &p, 1, VersionStatus::Failed, None, Some("late"))
            .await,
        Immutable
    );
    assert!(msg.contains("version 1 of plug-in `p` is succeeded"), "{msg}");
    assert_err!(
        tx.set_version_status(&t, &p, 1, VersionStatus::Building).await,
        Immutable
    );
    assert_err!(
        tx.finish_version(&t, &p, 9, VersionStatus::Failed, None, None).await,
        NotFound
    );
    tx.commit().await.unwrap();
    assert_eq!(store.get_version(&t, &p, 1).await.unwrap().unwrap(), done);

    // A version can also be cut already final (a build that cannot start).
    let mut tx = store.begin().await.unwrap();
    let v = tx
        .insert_version(&t, &p, &plugin("p"), VersionStatus::Failed, "admin")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let failed = store.get_version(&t, &p, v.number).await.unwrap().unwrap();
    assert!(failed.finished_at.is_some());
}

async fn latest_succeeded_and_unfinished_versions(db: Db) {
    let store = db.store;
    let (t, p) = (team("t"), plugin_name("p"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    assert_eq!(tx.latest_succeeded_version(&t, &p).await.unwrap(), None);
    for _ in 0..3 {
        tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Building, "admin")
            .await
            .unwrap();
    }
    tx.finish_version(&t, &p, 1, VersionStatus::Succeeded, Some("i@sha256:1"), None)
        .await
        .unwrap();
    tx.finish_version(&t, &p, 2, VersionStatus::Failed, None, Some("unauthorized"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let latest = store.latest_succeeded_version(&t, &p).await.unwrap().unwrap();
    assert_eq!((latest.number, latest.image.as_deref()), (1, Some("i@sha256:1")));
    let failed = store.get_version(&t, &p, 2).await.unwrap().unwrap();
    assert_eq!(failed.version.error.as_deref(), Some("unauthorized"));
    assert_eq!(
        store.unfinished_versions().await.unwrap(),
        vec![(t.clone(), p.clone(), 3)]
    );

    let mut tx = store.begin().await.unwrap();
    tx.finish_version(&t, &p, 3, VersionStatus::Succeeded, Some("i@sha256:3"), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.latest_succeeded_version(&t, &p).await.unwrap().unwrap().number, 3);
    assert_eq!(store.unfinished_versions().await.unwrap(), vec![]);
}

async fn claiming_queued_versions(db: Db) {
    let store = db.store;
    let (t, p) = (team("t"), plugin_name("p"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    assert_eq!(tx.claim_queued_version().await.unwrap(), None);
    tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.claim_queued_version().await.unwrap(),
        Some((t.clone(), p.clone(), 1))
    );
    assert_eq!(
        tx.claim_queued_version().await.unwrap(),
        Some((t.clone(), p.clone(), 2))
    );
    assert_eq!(tx.claim_queued_version().await.unwrap(), None);
    tx.commit().await.unwrap();
    let v = store.get_version(&t, &p, 1).await.unwrap().unwrap();
    assert_eq!(v.version.status, VersionStatus::Building);
}

async fn components_and_dependencies(db: Db) {
    let store = db.store;
    let t = team("t");
    let (web, db_, api) = (component_name("web"), component_name("db"), component_name("api"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    let msg = assert_err!(tx.insert_component(&t, &component("web", &["db"])).await, NotFound);
    assert!(msg.contains("component `db`, a dependency of `web`"), "{msg}");
    tx.insert_component(&t, &component("db", &[])).await.unwrap();
    tx.insert_component(&t, &component("web", &["db"])).await.unwrap();
    tx.insert_component(&t, &component("api", &["db", "web"]))
        .await
        .unwrap();
    let msg = assert_err!(tx.insert_component(&t, &component("db", &[])).await, Conflict);
    assert!(msg.contains("component `db` already exists"), "{msg}");
    tx.commit().await.unwrap();

    let got = store.get_component(&t, &web).await.unwrap().unwrap();
    assert_eq!(got.spec, component("web", &["db"]));
    assert_eq!(store.get_component(&t, &component_name("none")).await.unwrap(), None);
    let names: Vec<_> = store
        .list_components(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.spec.name)
        .collect();
    assert_eq!(names, [api.clone(), db_.clone(), web.clone()]);
    assert_eq!(
        store.components_depending_on(&t, &db_).await.unwrap(),
        [api.clone(), web.clone()]
    );
    assert_eq!(
        store.components_depending_on(&t, &web).await.unwrap(),
        vec![api.clone()]
    );

    let mut tx = store.begin().await.unwrap();
    let msg = assert_err!(tx.delete_component(&t, &db_).await, InUse);
    assert!(msg.contains("`api`, `web`"), "{msg}");
    // api stops depending on db: only web is left.
    assert!(tx.update_component(&t, &component("api", &["web"])).await.unwrap());
    assert!(!tx.update_component(&t, &component("ghost", &[])).await.unwrap());
    assert_err!(tx.update_component(&t, &component("api", &["ghost"])).await, NotFound);
    assert_eq!(tx.components_depending_on(&t, &db_).await.unwrap(), vec![web.clone()]);
    assert!(tx.delete_component(&t, &api).await.unwrap());
    assert!(tx.update_component(&t, &component("web", &[])).await.unwrap());
    assert!(tx.delete_component(&t, &db_).await.unwrap());
    assert!(!tx.delete_component(&t, &db_).await.unwrap());
    tx.commit().await.unwrap();
    let names: Vec<_> = store
        .list_components(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.spec.name)
        .collect();
    assert_eq!(names, [web]);
}
