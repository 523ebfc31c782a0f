//! Several replicas on one PostgreSQL: a change on one wakes waiters on another.

use super::*;

/// A fresh PostgreSQL schema for a test, from `KATO_TEST_DATABASE_URL`; `None` when
/// `KATO_TEST_SKIP_POSTGRES=1`.
async fn postgres_schema() -> Option<(String, String)> {
    use sqlx::{Connection, Executor};
    let Ok(admin) = std::env::var("KATO_TEST_DATABASE_URL") else {
        if std::env::var("KATO_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
            return None;
        }
        panic!("set KATO_TEST_DATABASE_URL (eval \"$(scripts/pg-test-setup.sh)\"), or KATO_TEST_SKIP_POSTGRES=1");
    };
    let schema = format!(
        "kato_discovery_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some((format!("{admin}{sep}options[search_path]={schema}"), schema))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_wakes_waiters_on_another() {
    let Some((url, schema)) = postgres_schema().await else {
        return;
    };
    let a = common::Server::start_with(tempfile::tempdir().unwrap(), Some(url.clone())).await;
    // Replicas share the discovery key, as they would share a mounted Secret.
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(a.dir.path().join("discovery.key"), b_dir.path().join("discovery.key")).unwrap();
    // And the key the store's secrets are sealed with.
    std::fs::copy(a.dir.path().join("secrets.key"), b_dir.path().join("secrets.key")).unwrap();
    let b = common::Server::start_with(b_dir, Some(url)).await;
    seed(&a).await;

    let tok = token(&a, "web", "mesh").await;
    assert_eq!(
        tok,
        token(&b, "web", "mesh").await,
        "both replicas render the same token"
    );
    let r = revision(&b, &tok).await;
    let waiter = waiting_long_poll(&b, &tok, r, 60).await;
    a.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "warn"}}})),
        StatusCode::OK,
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("replica b's waiter was woken")
        .unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        (got.body["revision"].as_u64(), &got.body["base"]["LEVEL"]),
        (Some(r + 1), &json!("warn"))
    );

    // A rotation on a revokes the token b had cached.
    a.ok(
        Method::POST,
        "/teams/demo/components/web/plugins/mesh/rotate-token",
        None,
        StatusCode::OK,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(&b, DOC, Some(&tok)).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b still accepts the rotated token"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let new = token(&a, "web", "mesh").await;
    assert_eq!(revision(&b, &new).await, r + 1);

    a.state.store.close().await;
    b.state.store.close().await;
    use sqlx::{Connection, Executor};
    let admin = std::env::var("KATO_TEST_DATABASE_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
}
