//! Builds: claims with a lease, renewal, reaping after a server died, provenance and logs.

use std::time::Duration;

use kato_model::{Provenance, VersionStatus};
use sqlx::{AnyConnection, Connection, Executor};

use crate::support::*;

async fn two_queued(db: &Db) -> (kato_model::TeamName, kato_model::PluginName) {
    let (t, p) = (team("t"), plugin_name("p"));
    let mut tx = db.store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    for _ in 0..2 {
        tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    (t, p)
}

pub async fn builds_are_claimed_once_and_held_by_a_lease(db: Db) {
    let (t, p) = two_queued(&db).await;
    let store = &db.store;
    let hour = Duration::from_secs(3600);
    let mut tx = store.begin().await.unwrap();
    let first = tx.claim_build("server-a", hour).await.unwrap().unwrap();
    assert_eq!(first, (t.clone(), p.clone(), 1));
    let second = tx.claim_build("server-b", hour).await.unwrap().unwrap();
    assert_eq!(second.2, 2);
    assert_eq!(tx.claim_build("server-a", hour).await.unwrap(), None);
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(tx.renew_lease(&first, "server-a", hour).await.unwrap());
    assert!(
        !tx.renew_lease(&first, "server-b", hour).await.unwrap(),
        "only the claimer renews"
    );
    tx.finish_version(&t, &p, 2, VersionStatus::Cancelled, None, Some("cancelled"))
        .await
        .unwrap();
    assert!(
        !tx.renew_lease(&second, "server-b", hour).await.unwrap(),
        "a cancelled build is no longer its claimer's"
    );
    tx.commit().await.unwrap();
    assert_eq!(store.expired_builds().await.unwrap(), vec![]);
}

pub async fn a_lease_that_runs_out_is_reported(db: Db) {
    let (t, p) = two_queued(&db).await;
    let store = &db.store;
    let mut tx = store.begin().await.unwrap();
    let live = tx
        .claim_build("alive", Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    let dead = tx.claim_build("dead", Duration::ZERO).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(live.2, 1);
    // A zero lease is in the past as soon as the clock moves: poll until it is.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let expired = store.expired_builds().await.unwrap();
        if expired == vec![(t.clone(), p.clone(), dead.2)] {
            break;
        }
        assert!(expired.is_empty(), "{expired:?}");
        assert!(std::time::Instant::now() < deadline, "the zero lease expires");
        tokio::task::yield_now().await;
    }
}

pub async fn provenance_and_logs_are_kept_with_the_version(db: Db) {
    let (t, p) = two_queued(&db).await;
    let store = &db.store;
    let key = (t.clone(), p.clone(), 1);
    let provenance = Provenance {
        repo: Some("https://example.com/r.git".into()),
        commit: Some("a".repeat(40)),
        dockerfile: Some("Dockerfile".into()),
        digest: Some(format!("sha256:{}", "b".repeat(64))),
        ..Provenance::default()
    };
    let mut tx = store.begin().await.unwrap();
    tx.set_provenance(&key, &provenance).await.unwrap();
    tx.append_build_log(&key, &[("t1".into(), "one".into()), ("t2".into(), "two".into())])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.append_build_log(&key, &[("t3".into(), "three".into())])
        .await
        .unwrap();
    tx.append_build_log(&(t.clone(), p.clone(), 2), &[("t9".into(), "other".into())])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let v = store.get_version(&t, &p, 1).await.unwrap().unwrap();
    assert_eq!(v.provenance, Some(provenance));
    assert_eq!(store.get_version(&t, &p, 2).await.unwrap().unwrap().provenance, None);
    let all = store.build_log(&t, &p, 1, 0).await.unwrap();
    let lines: Vec<_> = all.iter().map(|l| (l.seq, l.at.as_str(), l.line.as_str())).collect();
    assert_eq!(lines, [(1, "t1", "one"), (2, "t2", "two"), (3, "t3", "three")]);
    let rest = store.build_log(&t, &p, 1, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].line, "three");

    let mut tx = store.begin().await.unwrap();
    tx.finish_version(&t, &p, 1, VersionStatus::Failed, None, Some("x"))
        .await
        .unwrap();
    assert!(tx.delete_version(&t, &p, 1).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.build_log(&t, &p, 1, 0).await.unwrap(), vec![]);
    assert_eq!(store.build_log(&t, &p, 2, 0).await.unwrap().len(), 1);
}

/// Each version keeps who created it, whatever its build does, across a restart; a version an
/// older Kato wrote, before authors were recorded, has none.
pub async fn versions_record_who_created_them(db: Db) {
    let (t, p) = (team("t"), plugin_name("p"));
    let mut tx = db.store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Queued, "admin")
        .await
        .unwrap();
    tx.insert_version(&t, &p, &plugin("p"), VersionStatus::Building, "token ci job")
        .await
        .unwrap();
    tx.finish_version(
        &t,
        &p,
        2,
        VersionStatus::Succeeded,
        Some("registry.example.com/p@sha256:1"),
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let spec = serde_json::to_string(&plugin("p")).unwrap();
    let mut raw = AnyConnection::connect(&db.url).await.unwrap();
    for sql in [
        format!(
            "INSERT INTO versions (team, plugin, number, status, spec, created_at) VALUES ('t', 'p', 3, 'failed', '{spec}', 'now')"
        ),
        "UPDATE plugins SET last_version = 3 WHERE team = 't' AND name = 'p'".to_owned(),
    ] {
        raw.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    raw.close().await.unwrap();

    let authors = |list: Vec<kato_store::VersionRecord>| -> Vec<(u32, Option<String>)> {
        list.into_iter().map(|r| (r.version.number, r.created_by)).collect()
    };
    let expected = vec![
        (1, Some("admin".to_owned())),
        (2, Some("token ci job".to_owned())),
        (3, None),
    ];
    assert_eq!(authors(db.store.list_versions(&t, &p).await.unwrap()), expected);
    let db = db.reopen().await;
    assert_eq!(authors(db.store.list_versions(&t, &p).await.unwrap()), expected);
    let one = db.store.get_version(&t, &p, 1).await.unwrap().unwrap();
    assert_eq!(one.created_by.as_deref(), Some("admin"));
    let mut tx = db.store.begin().await.unwrap();
    let read = tx.get_version(&t, &p, 2).await.unwrap().unwrap();
    assert_eq!(
        read.created_by.as_deref(),
        Some("token ci job"),
        "inside a transaction too"
    );
}

pub async fn credentials_are_kept_per_team_and_listed_without_passwords(db: Db) {
    let store = &db.store;
    let (a, b) = (team("a"), team("b"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&a).await.unwrap();
    tx.create_team(&b).await.unwrap();
    tx.put_credential(&a, "registry.example.com", "bot", "pw-1")
        .await
        .unwrap();
    tx.put_credential(&a, "git.example.com", "ci", "pw-2").await.unwrap();
    tx.put_credential(&a, "registry.example.com", "bot2", "pw-3")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let listed = store.list_credentials(&a).await.unwrap();
    let hosts: Vec<_> = listed.iter().map(|c| (c.host.as_str(), c.username.as_str())).collect();
    assert_eq!(hosts, [("git.example.com", "ci"), ("registry.example.com", "bot2")]);
    assert_eq!(store.list_credentials(&b).await.unwrap(), vec![]);
    let secrets = store.credential_secrets(&a).await.unwrap();
    assert_eq!(
        secrets[1].password, "pw-3",
        "a replaced credential has the new password"
    );
    assert!(!format!("{secrets:?}").contains("pw-"), "Debug hides passwords");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_credential(&a, "git.example.com").await.unwrap());
    assert!(!tx.delete_credential(&a, "git.example.com").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.list_credentials(&a).await.unwrap().len(), 1);

    // An SSH key and the host's known_hosts are kept with the credential, and never listed.
    let ssh = kato_store::NewCredential {
        username: "git".into(),
        password: String::new(),
        ssh: Some(kato_store::SshIdentity {
            private_key: "KEY-SECRET".into(),
            known_hosts: "git.example.com ssh-ed25519 AAAA".into(),
        }),
    };
    let mut tx = store.begin().await.unwrap();
    tx.set_credential(&a, "git.example.com", &ssh).await.unwrap();
    tx.commit().await.unwrap();
    let listed = store.list_credentials(&a).await.unwrap();
    let flags: Vec<_> = listed.iter().map(|c| (c.host.as_str(), c.ssh_key_set)).collect();
    assert_eq!(flags, [("git.example.com", true), ("registry.example.com", false)]);
    let secrets = store.credential_secrets(&a).await.unwrap();
    assert_eq!(secrets[0].ssh.as_ref().unwrap().private_key, "KEY-SECRET");
    assert_eq!(secrets[1].ssh, None);
    assert!(!format!("{secrets:?}").contains("KEY-SECRET"), "Debug hides keys");
}
