//! Discovery state: token credentials, revisions that only grow, pods' acks, and the record of
//! which installations a transaction touched.

use kato_store::{AckRecord, AckStatus, DiscoveryEvent, InstallationKey};

use crate::installs::seeded;
use crate::support::*;

fn ack(plugin: &str, pod: &str, revision: u64, status: AckStatus, message: &str) -> AckRecord {
    AckRecord {
        plugin: plugin_name(plugin),
        pod: pod.into(),
        revision,
        status,
        message: message.into(),
        at: String::new(),
    }
}

pub async fn discovery_tokens_are_found_by_hash_and_rotate(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web, a) = (team("t"), component_name("web"), plugin_name("a"));
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 1), &cred("one"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let key = InstallationKey {
        team: t.clone(),
        component: web.clone(),
        plugin: a.clone(),
    };
    assert_eq!(
        store.installation_by_discovery_hash("hash-one").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.installation_by_discovery_hash("").await.unwrap(), None);

    let mut tx = store.begin().await.unwrap();
    assert!(tx.set_discovery_credential(&t, &web, &a, &cred("two")).await.unwrap());
    assert!(
        !tx.set_discovery_credential(&t, &web, &plugin_name("b"), &cred("x"))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(store.installation_by_discovery_hash("hash-one").await.unwrap(), None);
    assert_eq!(
        store.installation_by_discovery_hash("hash-two").await.unwrap(),
        Some(key)
    );
    assert!(store.unhashed_discovery_credentials().await.unwrap().is_empty());

    // Uninstalling revokes: the hash finds nothing any more.
    let mut tx = store.begin().await.unwrap();
    tx.delete_installation(&t, &web, &a).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.installation_by_discovery_hash("hash-two").await.unwrap(), None);
}

pub async fn revisions_high_water_survives_reinstall(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web, a) = (team("t"), component_name("web"), plugin_name("a"));
    assert_eq!(store.discovery_high_water(&t, &web, &a).await.unwrap(), 0);
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 7), &cred("x"))
        .await
        .unwrap();
    // A lower revision written later does not lower the mark.
    tx.put_installation(&t, &web, &installation("a", 1, 5), &cred("x"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.discovery_high_water(&t, &web, &a).await.unwrap(), 7);
    let mut tx = store.begin().await.unwrap();
    tx.delete_installation(&t, &web, &a).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.discovery_high_water(&t, &web, &a).await.unwrap(), 7);
    let db = Db { store, ..db }.reopen().await;
    assert_eq!(db.store.discovery_high_water(&t, &web, &a).await.unwrap(), 7);
}

pub async fn acks_are_kept_per_pod_and_go_with_the_installation(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 3), &cred("x"))
        .await
        .unwrap();
    tx.put_ack(&t, &web, &ack("a", "p1", 1, AckStatus::Applied, ""))
        .await
        .unwrap();
    tx.put_ack(&t, &web, &ack("a", "p1", 2, AckStatus::Rejected, "bad port"))
        .await
        .unwrap();
    tx.put_ack(&t, &web, &ack("a", "p2", 2, AckStatus::Applied, ""))
        .await
        .unwrap();
    let msg = assert_err!(
        tx.put_ack(&t, &web, &ack("b", "p1", 1, AckStatus::Applied, "")).await,
        NotFound
    );
    assert!(msg.contains("`b` is not installed"), "{msg}");
    tx.commit().await.unwrap();
    let acks = store.list_acks(&t, &web).await.unwrap();
    let seen: Vec<_> = acks.iter().map(|a| (a.pod.as_str(), a.revision, a.status)).collect();
    assert_eq!(
        seen,
        [
            ("p1", 1, AckStatus::Applied),
            ("p1", 2, AckStatus::Rejected),
            ("p2", 2, AckStatus::Applied)
        ]
    );
    assert_eq!(acks[1].message, "bad port");
    assert!(acks[0].at.ends_with('Z'), "{}", acks[0].at);

    // Applying revision 3 supersedes p1's older reports.
    let mut tx = store.begin().await.unwrap();
    tx.put_ack(&t, &web, &ack("a", "p1", 3, AckStatus::Applied, ""))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let acks = store.list_acks(&t, &web).await.unwrap();
    let p1: Vec<_> = acks.iter().filter(|a| a.pod == "p1").map(|a| a.revision).collect();
    assert_eq!(p1, [3]);

    let mut tx = store.begin().await.unwrap();
    tx.delete_installation(&t, &web, &plugin_name("a")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.list_acks(&t, &web).await.unwrap().is_empty());
}

pub async fn transactions_record_touched_installations(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    for p in ["a", "b", "a"] {
        tx.put_installation(&t, &web, &installation(p, 1, 1), &cred(p))
            .await
            .unwrap();
    }
    let touched: Vec<_> = tx.touched().iter().map(|k| k.plugin.as_str()).collect();
    assert_eq!(touched, ["a", "b"]);
    tx.commit().await.unwrap();

    // Deleting a component touches every installation it had.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_component(&t, &web).await.unwrap());
    let mut touched: Vec<_> = tx.touched().iter().map(|k| k.plugin.as_str()).collect();
    touched.sort();
    assert_eq!(touched, ["a", "b"]);
    assert!(tx.touched().iter().all(|k| k.team == t && k.component == web));
}

pub async fn committed_changes_are_announced_to_listeners(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let Some(mut events) = store.listen_discovery().await.unwrap() else {
        assert_eq!(db.kind, Kind::Sqlite, "only SQLite has no change feed (one process)");
        return;
    };
    // A rolled-back change is not announced; the committed one after it is.
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 1), &cred("a"))
        .await
        .unwrap();
    tx.notify_discovery().await.unwrap();
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("b", 1, 1), &cred("b"))
        .await
        .unwrap();
    tx.notify_discovery().await.unwrap();
    tx.commit().await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("the change is announced")
        .unwrap();
    assert_eq!(
        got,
        DiscoveryEvent::Changed(InstallationKey {
            team: t,
            component: web,
            plugin: plugin_name("b"),
        })
    );
}

/// Any string a plug-in sends as `pod` used to add a row: thousands of made-up pods, or
/// thousands of rejected revisions, stay within the bounds; the newest reports are the ones kept.
pub async fn acks_stay_bounded_per_pod_and_per_installation(db: Db) {
    let store = db.store;
    seeded(&store).await;
    let (t, web) = (team("t"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    tx.put_installation(&t, &web, &installation("a", 1, 3), &cred("x"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let flood = kato_store::MAX_ACK_PODS * 4;
    for batch in 0..4 {
        let mut tx = store.begin().await.unwrap();
        for i in 0..flood / 4 {
            let pod = format!("pod-{:05}", batch * flood / 4 + i);
            tx.put_ack(&t, &web, &ack("a", &pod, 1, AckStatus::Applied, ""))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let acks = store.list_acks(&t, &web).await.unwrap();
    assert_eq!(acks.len(), kato_store::MAX_ACK_PODS);
    let oldest_kept = format!("pod-{:05}", flood - kato_store::MAX_ACK_PODS);
    assert!(acks.iter().all(|a| a.pod >= oldest_kept), "the newest pods are kept");

    // One pod rejecting revision after revision keeps its newest reports only.
    let mut tx = store.begin().await.unwrap();
    for revision in 1..=(3 * kato_store::MAX_ACKS_PER_POD as u64) {
        tx.put_ack(&t, &web, &ack("a", "busy", revision, AckStatus::Rejected, "no"))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let acks = store.list_acks(&t, &web).await.unwrap();
    let pods: std::collections::BTreeSet<&str> = acks.iter().map(|a| a.pod.as_str()).collect();
    assert_eq!(pods.len(), kato_store::MAX_ACK_PODS, "`busy` took an old pod's place");
    assert_eq!(acks.len(), kato_store::MAX_ACK_PODS - 1 + kato_store::MAX_ACKS_PER_POD);
    let busy: Vec<u64> = acks.iter().filter(|a| a.pod == "busy").map(|a| a.revision).collect();
    let newest = 3 * kato_store::MAX_ACKS_PER_POD as u64;
    let want: Vec<u64> = (newest + 1 - kato_store::MAX_ACKS_PER_POD as u64..=newest).collect();
    assert_eq!(busy, want);
}
