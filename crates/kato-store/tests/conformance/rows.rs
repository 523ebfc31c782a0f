//! Rows the model refuses (written by another program or another version of Kato) are
//! reported as corrupt, naming what was read, and never crash the server.

use kato_store::StoreError;
use sqlx::{AnyConnection, Connection, Executor};

use crate::support::*;

pub async fn corrupt_rows_are_reported(db: Db) {
    let store = db.store;
    let t = team("t");
    let mut tx = store.begin().await.unwrap();
    tx.create_team(&t).await.unwrap();
    tx.insert_plugin(&t, &plugin("p")).await.unwrap();
    tx.insert_plugin(&t, &plugin("q")).await.unwrap();
    tx.create_token(Some(&t), "ci", "h1").await.unwrap();
    tx.commit().await.unwrap();

    let mut raw = AnyConnection::connect(&db.url).await.unwrap();
    raw.execute("UPDATE plugins SET spec = '{\"name\": \"q\", \"kind\": \"sidecar\"}' WHERE name = 'q'")
        .await
        .unwrap();
    raw.execute("UPDATE tokens SET name = 'x', team = NULL WHERE hash = 'h1'")
        .await
        .unwrap();
    raw.execute("INSERT INTO teams (name, created_at) VALUES ('Not_A_Name', 'now')")
        .await
        .unwrap();
    raw.close().await.unwrap();

    // The healthy row still reads; the broken one says which row it is.
    assert!(store.get_plugin(&t, &plugin_name("p")).await.unwrap().is_some());
    let e = store.get_plugin(&t, &plugin_name("q")).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("plug-in draft `q` in team `t`"), "{e}");
    assert!(matches!(store.list_plugins(&t).await, Err(StoreError::Corrupt { .. })));
    let e = store.list_teams().await.unwrap_err();
    assert!(e.to_string().contains("invalid team name `Not_A_Name`"), "{e}");
    // An admin token with a changed name is still well formed.
    assert_eq!(store.token_by_hash("h1").await.unwrap().unwrap().team, None);
}
