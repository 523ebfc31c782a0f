//! Deployments: the desired state of components on the target and what was applied.

use std::time::Duration;

use kato_store::Desired;

use crate::support::*;

pub async fn deployments_record_desired_and_applied_state(db: Db) {
    let store = db.store;
    let (t, web, api) = (team("a"), component_name("web"), component_name("api"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_component(&t, &component("web", &[])).await.unwrap();
    tx.insert_component(&t, &component("api", &[])).await.unwrap();
    let msg = assert_err!(
        tx.set_desired(&t, &component_name("nope"), Desired::Deployed).await,
        NotFound
    );
    assert!(msg.contains("component `nope`"), "{msg}");
    tx.set_desired(&t, &web, Desired::Deployed).await.unwrap();
    tx.commit().await.unwrap();

    let d = store.get_deployment(&t, &web).await.unwrap().unwrap();
    assert_eq!(
        (d.desired, d.applied_hash.as_deref(), d.error.as_deref()),
        (Desired::Deployed, None, None)
    );
    assert_eq!(store.get_deployment(&t, &api).await.unwrap(), None);

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.record_applied(&t, &web, Some("h1"), Some("pull failed"))
            .await
            .unwrap()
    );
    assert!(!tx.record_applied(&t, &api, Some("h1"), None).await.unwrap());
    tx.set_desired(&t, &api, Desired::Stopped).await.unwrap();
    tx.commit().await.unwrap();
    let d = store.get_deployment(&t, &web).await.unwrap().unwrap();
    assert_eq!(
        (d.applied_hash.as_deref(), d.error.as_deref()),
        (Some("h1"), Some("pull failed"))
    );

    // Deploying again forgets what was applied, so it is played again.
    let mut tx = store.begin().await.unwrap();
    tx.set_desired(&t, &web, Desired::Deployed).await.unwrap();
    tx.commit().await.unwrap();
    let all = store.list_deployments().await.unwrap();
    let rows: Vec<_> = all
        .iter()
        .map(|d| (d.component.as_str(), d.desired, d.applied_hash.clone(), d.error.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("api", Desired::Stopped, None, None),
            ("web", Desired::Deployed, None, None)
        ]
    );

    // Rows outlive their component, so that what still runs can be stopped.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_component(&t, &web).await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.get_deployment(&t, &web).await.unwrap().is_some());
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_deployment(&t, &web).await.unwrap());
    assert!(!tx.delete_deployment(&t, &web).await.unwrap());
    drop(tx);
    assert!(store.get_deployment(&t, &web).await.unwrap().is_some());
}

pub async fn failed_deploys_keep_their_retry_and_one_replica_claims_it(db: Db) {
    let store = db.store;
    let (t, web) = (team("a"), component_name("web"));
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_component(&t, &component("web", &[])).await.unwrap();
    tx.set_desired(&t, &web, Desired::Deployed).await.unwrap();
    tx.commit().await.unwrap();
    let d = store.get_deployment(&t, &web).await.unwrap().unwrap();
    assert_eq!((d.attempts, d.next_try_at), (0, None));

    let before = kato_store::now();
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.record_failed(&t, &web, "h1", "pull failed", 3, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !tx.record_failed(&t, &component_name("api"), "h1", "x", 1, Duration::ZERO)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let d = store.get_deployment(&t, &web).await.unwrap().unwrap();
    assert_eq!(
        (d.applied_hash.as_deref(), d.error.as_deref(), d.attempts),
        (Some("h1"), Some("pull failed"), 3)
    );
    let due = d.next_try_at.clone().expect("a retry is due");
    assert!(due > before, "{due} is after {before}");
    assert!(kato_store::until(&due) > Duration::ZERO);

    // Two replicas read the same row: the first claim moves next_try_at, so the second fails.
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.claim_retry(&t, &web, "h2", &due, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        tx.claim_retry(&t, &web, "h1", &due, Duration::from_secs(30))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.claim_retry(&t, &web, "h1", &due, Duration::from_secs(30))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let claimed = store.get_deployment(&t, &web).await.unwrap().unwrap();
    assert_ne!(claimed.next_try_at.as_deref(), Some(due.as_str()));
    assert_eq!(claimed.attempts, 3);

    // A success forgets the retry.
    let mut tx = store.begin().await.unwrap();
    tx.record_applied(&t, &web, Some("h1"), None).await.unwrap();
    tx.commit().await.unwrap();
    let d = store.get_deployment(&t, &web).await.unwrap().unwrap();
    assert_eq!((d.attempts, d.next_try_at, d.error), (0, None, None));

    // A user change (deploy again, or stop) resets the count and cancels the retry.
    for desired in [Desired::Deployed, Desired::Stopped] {
        let mut tx = store.begin().await.unwrap();
        tx.record_failed(&t, &web, "h1", "pull failed", 2, Duration::ZERO)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let seen = store
            .get_deployment(&t, &web)
            .await
            .unwrap()
            .unwrap()
            .next_try_at
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.set_desired(&t, &web, desired).await.unwrap();
        tx.commit().await.unwrap();
        let d = store.get_deployment(&t, &web).await.unwrap().unwrap();
        assert_eq!(
            (d.attempts, d.next_try_at, d.applied_hash),
            (0, None, None),
            "{desired:?}"
        );
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.claim_retry(&t, &web, "h1", &seen, Duration::ZERO).await.unwrap());
        tx.commit().await.unwrap();
    }
}
