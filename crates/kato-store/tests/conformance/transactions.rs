//! Transactions: rollback, errors inside a transaction, concurrency and durability.

use std::collections::BTreeSet;
use std::time::Duration;

use kato_model::VersionStatus;

use crate::installs::seeded;
use crate::support::*;

pub async fn rollback_leaves_everything_as_it_was(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let plugins_before = store.list_plugins(&t).await.unwrap();
    let components_before = store.list_components(&t).await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.insert_plugin(&t, &plugin("new")).await.unwrap();
    tx.insert_version(
        &t,
        &plugin_name("new"),
        &plugin("new"),
        VersionStatus::Building,
        "admin",
    )
    .await
    .unwrap();
    tx.finish_version(
        &t,
        &plugin_name("new"),
        1,
        VersionStatus::Succeeded,
        Some("i@sha256:9"),
        None,
    )
    .await
    .unwrap();
    tx.put_installation(&t, &web, &installation("new", 1, 1), &cred("tok"))
        .await
        .unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 1), &cred("tok-a"))
        .await
        .unwrap();
    tx.insert_version(&t, &plugin_name("a"), &plugin("a"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    let mut edited = plugin("a");
    edited.description = "edited".into();
    tx.update_plugin(&t, &edited).await.unwrap();
    tx.update_component(&t, &component("web", &[])).await.unwrap();
    tx.create_team(&team("other")).await.unwrap();
    // The transaction sees its own writes...
    assert_eq!(tx.list_installations(&t, &web).await.unwrap().len(), 2);
    drop(tx);

    // ...and nobody else ever does.
    assert_eq!(store.get_plugin(&t, &plugin_name("new")).await.unwrap(), None);
    assert!(store.list_installations(&t, &web).await.unwrap().is_empty());
    assert_eq!(store.list_plugins(&t).await.unwrap(), plugins_before);
    assert_eq!(store.list_components(&t).await.unwrap(), components_before);
    assert_eq!(
        store.components_depending_on(&t, &component_name("db")).await.unwrap(),
        vec![web.clone()]
    );
    assert!(!store.team_exists(&team("other")).await.unwrap());
    assert_eq!(store.list_versions(&t, &plugin_name("a")).await.unwrap().len(), 1);

    // The next writer starts at once, and the version counter was rolled back too.
    let mut tx = tokio::time::timeout(Duration::from_secs(5), store.begin())
        .await
        .unwrap()
        .unwrap();
    let v = tx
        .insert_version(&t, &plugin_name("a"), &plugin("a"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    assert_eq!(v.number, 2);
    tx.commit().await.unwrap();
}

/// NotFound, Conflict, InUse and Immutable are answers, not failed statements: the transaction
/// goes on and commits on both backends (a failed statement would poison it on PostgreSQL).
pub async fn domain_errors_leave_the_transaction_usable(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, a, web) = (team("t"), plugin_name("a"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    assert_err!(tx.create_team(&t).await, Conflict);
    assert_err!(tx.insert_plugin(&t, &plugin("a")).await, Conflict);
    assert_err!(tx.insert_component(&t, &component("web", &[])).await, Conflict);
    assert_err!(tx.insert_component(&t, &component("x", &["ghost"])).await, NotFound);
    assert_err!(tx.create_token(Some(&team("ghost")), "n", "h").await, NotFound);
    assert_err!(
        tx.finish_version(&t, &a, 1, VersionStatus::Failed, None, None).await,
        Immutable
    );
    assert_err!(tx.delete_component(&t, &component_name("db")).await, InUse);
    assert_err!(
        tx.put_installation(&t, &web, &installation("a", 5, 1), &cred("x"))
            .await,
        NotFound
    );
    tx.put_installation(&t, &web, &installation("a", 1, 1), &cred("x"))
        .await
        .unwrap();
    assert_err!(tx.delete_version(&t, &a, 1).await, InUse);
    assert_err!(tx.delete_plugin(&t, &a).await, InUse);
    tx.insert_plugin(&t, &plugin("after")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.get_plugin(&t, &plugin_name("after")).await.unwrap().is_some());
    assert_eq!(store.list_installations(&t, &web).await.unwrap().len(), 1);
}

/// 20 writers at once: on SQLite none of them may fail with SQLITE_BUSY.
pub async fn concurrent_writers_all_succeed(db: Db) {
    let store = db.store;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let writer = store.clone();
        tasks.push(tokio::spawn(async move {
            let store = writer;
            let t = team(&format!("t{i}"));
            let mut tx = store.begin().await?;
            // Read before writing, while others commit: the pattern that makes SQLite refuse
            // to upgrade a reader into a writer (SQLITE_BUSY, which no waiting cures).
            assert!(!tx.team_exists(&t).await?);
            tokio::task::yield_now().await;
            tx.create_team(&t).await?;
            tx.insert_plugin(&t, &plugin("p")).await?;
            tx.insert_version(&t, &plugin_name("p"), &plugin("p"), VersionStatus::Queued, "admin")
                .await?;
            tx.commit().await
        }));
        let reader = store.clone();
        tasks.push(tokio::spawn(async move { reader.list_teams().await.map(drop) }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.list_teams().await.unwrap().len(), 20);
    assert_eq!(store.unfinished_versions().await.unwrap().len(), 20);
}

pub async fn concurrent_versions_get_distinct_numbers(db: Db) {
    let store = db.store;
    let (t, p) = (team("t"), plugin_name("p"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    tx.commit().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (store, t, p) = (store.clone(), t.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await?;
            let v = tx
                .insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
                .await?;
            tx.commit().await?;
            Ok::<_, kato_store::StoreError>(v.number)
        }));
    }
    let mut numbers = BTreeSet::new();
    for task in tasks {
        numbers.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(numbers, (1..=20).collect());
}

pub async fn reads_do_not_wait_for_writers(db: Db) {
    let store = db.store;
    let t = team("t");
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    // The writer is still open: reads on the store answer at once, without its writes.
    let p = plugin_name("p");
    let read = tokio::time::timeout(Duration::from_secs(5), store.get_plugin(&t, &p));
    assert_eq!(read.await.expect("a read waited for the writer").unwrap(), None);
    assert!(!store.team_exists(&t).await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.get_plugin(&t, &p).await.unwrap().is_some());
}

pub async fn data_survives_reopening(db: Db) {
    let (t, p, web) = (team("t"), plugin_name("p"), component_name("web"));
    let mut tx = db.store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.create_token(None, "admin", "h").await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    for _ in 0..2 {
        tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Succeeded, "admin")
            .await
            .unwrap();
    }
    tx.delete_version(&t, &p, 2).await.unwrap();
    tx.insert_component(&t, &component("web", &[])).await.unwrap();
    tx.put_installation(&t, &web, &installation("p", 1, 1), &cred("tok"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Twice: migrations that already ran are not run again.
    let db = db.reopen().await.reopen().await;
    let store = &db.store;
    assert!(store.team_exists(&t).await.unwrap());
    assert!(store.token_by_hash("h").await.unwrap().is_some());
    assert_eq!(store.get_plugin(&t, &p).await.unwrap().unwrap().spec, plugin("p"));
    assert_eq!(
        store.list_installations(&t, &web).await.unwrap()[0].discovery.nonce,
        "tok"
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
            .await
            .unwrap()
            .number,
        3
    );
    tx.commit().await.unwrap();
    if db.kind == Kind::Sqlite {
        assert!(db.url.starts_with("sqlite://"), "{}", db.url);
    }
}
