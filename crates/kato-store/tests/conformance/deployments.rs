//! Deployments: the desired state of components on the target and what was applied.

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
