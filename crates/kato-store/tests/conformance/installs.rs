//! Installations: order, references to components and versions, and what deleting does.

use kato_model::VersionStatus;
use kato_store::Store;

use crate::support::*;

/// Team `t` with plug-ins `a`, `b`, `c` (one succeeded version each) and components `web`, `db`.
pub async fn seeded(store: &Store) {
    let t = team("t");
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    for p in ["a", "b", "c"] {
        tx.insert_plugin(&t, &plugin(p)).await.unwrap();
        tx.insert_version(&t, &plugin_name(p), &plugin(p), VersionStatus::Building, "admin")
            .await
            .unwrap();
        tx.finish_version(
            &t,
            &plugin_name(p),
            1,
            VersionStatus::Succeeded,
            Some("i@sha256:1"),
            None,
        )
        .await
        .unwrap();
    }
    tx.insert_component(&t, &component("db", &[])).await.unwrap();
    tx.insert_component(&t, &component("web", &["db"])).await.unwrap();
    tx.commit().await.unwrap();
}

fn order(records: &[kato_store::InstallationRecord]) -> Vec<&str> {
    records.iter().map(|r| r.installation.plugin.as_str()).collect()
}

pub async fn install_order_is_kept_on_update(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    for (p, token) in [("c", "tok-c"), ("a", "tok-a"), ("b", "tok-b")] {
        tx.put_installation(&t, &web, &installation(p, 1, 1), &cred(token))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let before = store.list_installations(&t, &web).await.unwrap();
    assert_eq!(order(&before), ["c", "a", "b"]);

    // Updating the first one changes its document and keeps its place.
    let mut updated = installation("c", 1, 2);
    updated.enabled = false;
    updated.memory_mib = 256;
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &updated, &cred("tok-c2")).await.unwrap();
    tx.commit().await.unwrap();
    let after = store.list_installations(&t, &web).await.unwrap();
    assert_eq!(order(&after), ["c", "a", "b"]);
    assert_eq!(after[0].seq, before[0].seq);
    let got = store
        .get_installation(&t, &web, &plugin_name("c"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.installation, updated);
    assert_eq!(got.discovery.nonce, "tok-c2");
    assert_eq!(
        store
            .get_installation(&t, &component_name("db"), &plugin_name("c"))
            .await
            .unwrap(),
        None
    );

    // Uninstalled and installed again, it goes last.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_installation(&t, &web, &plugin_name("c")).await.unwrap());
    assert!(!tx.delete_installation(&t, &web, &plugin_name("c")).await.unwrap());
    tx.put_installation(&t, &web, &installation("c", 1, 3), &cred("tok-c3"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        order(&store.list_installations(&t, &web).await.unwrap()),
        ["a", "b", "c"]
    );

    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &component_name("db"), &installation("a", 1, 1), &cred("tok-db-a"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let users = store.installations_of_plugin(&t, &plugin_name("a")).await.unwrap();
    let components: Vec<_> = users.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(components, ["db", "web"]);
    assert_eq!(users[0].1.discovery.nonce, "tok-db-a");
}

pub async fn install_needs_component_and_version(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let t = team("t");
    let mut tx = store.begin().await.unwrap();
    let msg = assert_err!(
        tx.put_installation(&t, &component_name("ghost"), &installation("a", 1, 1), &cred("x"))
            .await,
        NotFound
    );
    assert!(msg.contains("component `ghost` does not exist"), "{msg}");
    let msg = assert_err!(
        tx.put_installation(&t, &component_name("web"), &installation("a", 7, 1), &cred("x"))
            .await,
        NotFound
    );
    assert!(msg.contains("plug-in `a` of team `t` has no version 7"), "{msg}");
    assert_err!(
        tx.put_installation(&t, &component_name("web"), &installation("zz", 1, 1), &cred("x"))
            .await,
        NotFound
    );
    tx.commit().await.unwrap();
    assert!(
        store
            .list_installations(&t, &component_name("web"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn versions_and_plugins_in_use_are_refused(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, a) = (team("t"), plugin_name("a"));
    let mut tx = store.begin().await.unwrap();
    tx.insert_version(&t, &a, &plugin("a"), VersionStatus::Failed, "admin")
        .await
        .unwrap();
    tx.put_installation(&t, &component_name("web"), &installation("a", 1, 1), &cred("x"))
        .await
        .unwrap();
    tx.put_installation(&t, &component_name("db"), &installation("a", 1, 1), &cred("y"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let msg = assert_err!(tx.delete_version(&t, &a, 1).await, InUse);
    assert!(
        msg.contains("version 1 of plug-in `a` is installed on `db`, `web`"),
        "{msg}"
    );
    let msg = assert_err!(tx.delete_plugin(&t, &a).await, InUse);
    assert!(msg.contains("plug-in `a` is installed on `db`, `web`"), "{msg}");
    // A version nobody runs can go.
    assert!(tx.delete_version(&t, &a, 2).await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.get_version(&t, &a, 1).await.unwrap().is_some());

    // Uninstalled everywhere (what a forced delete does), the plug-in goes with its versions.
    let mut tx = store.begin().await.unwrap();
    for (c, _) in tx.installations_of_plugin(&t, &a).await.unwrap() {
        assert!(tx.delete_installation(&t, &c, &a).await.unwrap());
    }
    assert!(tx.delete_plugin(&t, &a).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.get_plugin(&t, &a).await.unwrap(), None);
    assert_eq!(store.list_versions(&t, &a).await.unwrap(), vec![]);
    assert_eq!(store.get_version(&t, &a, 1).await.unwrap(), None);
}

pub async fn deleting_a_component_removes_its_installations(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 1), &cred("x"))
        .await
        .unwrap();
    tx.put_installation(&t, &web, &installation("b", 1, 1), &cred("y"))
        .await
        .unwrap();
    tx.put_installation(&t, &component_name("db"), &installation("b", 1, 1), &cred("z"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_component(&t, &web).await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.list_installations(&t, &web).await.unwrap().is_empty());
    assert!(
        store
            .installations_of_plugin(&t, &plugin_name("a"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .installations_of_plugin(&t, &plugin_name("b"))
            .await
            .unwrap()
            .len(),
        1
    );
    // Nothing runs version 1 of `a` any more, so it can be deleted.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_version(&t, &plugin_name("a"), 1).await.unwrap());
    tx.commit().await.unwrap();
}

pub async fn plugin_summaries_show_the_newest_version_and_how_many_components_install_it(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, other) = (team("t"), team("u"));
    let mut tx = store.begin().await.unwrap();
    // `a`: version 2 building (the newest, whatever the status); installed on web and db.
    tx.insert_version(&t, &plugin_name("a"), &plugin("a"), VersionStatus::Building, "admin")
        .await
        .unwrap();
    for c in ["web", "db"] {
        tx.put_installation(
            &t,
            &component_name(c),
            &installation("a", 1, 1),
            &cred(&format!("a-{c}")),
        )
        .await
        .unwrap();
    }
    // `b`: its only version deleted, so none; `c`: version 1 on web; `d`: a draft only.
    assert!(tx.delete_version(&t, &plugin_name("b"), 1).await.unwrap());
    tx.put_installation(&t, &component_name("web"), &installation("c", 1, 1), &cred("c-web"))
        .await
        .unwrap();
    tx.insert_plugin(&t, &plugin("d")).await.unwrap();
    // Another team's plug-in of the same name, versions and installations count for nothing here.
    tx.create_team(&other).await.unwrap();
    tx.insert_plugin(&other, &plugin("a")).await.unwrap();
    for _ in 0..3 {
        tx.insert_version(&other, &plugin_name("a"), &plugin("a"), VersionStatus::Queued, "admin")
            .await
            .unwrap();
    }
    tx.insert_component(&other, &component("web", &[])).await.unwrap();
    tx.finish_version(
        &other,
        &plugin_name("a"),
        1,
        VersionStatus::Succeeded,
        Some("i@sha256:1"),
        None,
    )
    .await
    .unwrap();
    tx.put_installation(&other, &component_name("web"), &installation("a", 1, 1), &cred("u-a"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let got: Vec<_> = store
        .list_plugin_summaries(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.plugin.spec.name.to_string(), s.latest_version, s.used_by))
        .collect();
    assert_eq!(
        got,
        [
            ("a".to_owned(), Some((2, VersionStatus::Building)), 2),
            ("b".to_owned(), None, 0),
            ("c".to_owned(), Some((1, VersionStatus::Succeeded)), 1),
            ("d".to_owned(), None, 0),
        ]
    );
    // The drafts are the ones `list_plugins` answers.
    let drafts: Vec<_> = store
        .list_plugin_summaries(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.plugin)
        .collect();
    assert_eq!(drafts, store.list_plugins(&t).await.unwrap());
    let theirs = store.list_plugin_summaries(&other).await.unwrap();
    assert_eq!(
        (theirs.len(), theirs[0].latest_version, theirs[0].used_by),
        (1, Some((3, VersionStatus::Queued)), 1)
    );

    // The briefs tell the same as the summaries, read out of the stored specs by the database.
    let mut tx = store.begin().await.unwrap();
    let mut described = plugin("e");
    described.description = "tails \"logs\" — ünïcode".into();
    described.memory_mib = 96;
    tx.insert_plugin(&t, &described).await.unwrap();
    tx.commit().await.unwrap();
    let summaries: Vec<kato_store::PluginBrief> = store
        .list_plugin_summaries(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|s| kato_store::PluginBrief {
            name: s.plugin.spec.name.to_string(),
            description: s.plugin.spec.description.clone(),
            kind: s.plugin.spec.kind.to_string(),
            memory_mib: u64::from(s.plugin.spec.memory_mib),
            latest_version: s.latest_version,
            used_by: s.used_by,
        })
        .collect();
    let briefs = store.list_plugin_briefs(&t).await.unwrap();
    assert_eq!(briefs, summaries);
    assert_eq!(briefs.len(), 5);
    assert_eq!(
        (briefs[4].description.as_str(), briefs[4].memory_mib),
        ("tails \"logs\" — ünïcode", 96)
    );
    assert_eq!(store.list_plugin_briefs(&other).await.unwrap().len(), 1);
    // A team without plug-ins: the database folds no row (SQL aggregates of nothing).
    let empty = team("empty");
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&empty).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.list_plugin_briefs(&empty).await.unwrap(), Vec::new());
}
