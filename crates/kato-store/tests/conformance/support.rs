//! The conformance suite's harness: a fresh database per test (a SQLite file in a temporary
//! directory, or a new PostgreSQL schema), and fixtures built through the model's serde.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use kato_model::{ComponentName, ComponentSpec, Installation, PluginName, PluginSpec, TeamName};
use kato_store::{DiscoveryCredential, Keyring, SecretKey, Store};
use serde_json::json;
use sqlx::{Connection, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// What a test gets: the opened store, and the URL and key to open it again.
pub struct Db {
    pub store: Store,
    pub url: String,
    pub kind: Kind,
    /// The secret key the store was opened with: a new random one per test.
    pub key: SecretKey,
}

impl Db {
    /// Closes the store and opens the same database again, as a restarted server would.
    pub async fn reopen(self) -> Db {
        self.store.close().await;
        let store = Store::open(&self.url, Keyring::new(self.key.clone()))
            .await
            .expect("reopen the store");
        Db { store, ..self }
    }
}

/// Where a test's database lives; removed after the test, whether it passed or not.
/// On PostgreSQL that is a schema of its own, which the store's connections find first on
/// their search_path: as isolated as a database, and created in milliseconds.
enum Place {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

const SETUP_HINT: &str = "KATO_TEST_DATABASE_URL is not set, so the PostgreSQL half of the store's conformance \
     suite cannot run. Start PostgreSQL and point the tests at it: as root, run \
     `eval \"$(scripts/pg-test-setup.sh)\"` (it prints `export KATO_TEST_DATABASE_URL=postgres://kato:kato@127.0.0.1:5432/postgres`), \
     or give the URL of any database whose user may create schemas. To skip these tests on purpose, set KATO_TEST_SKIP_POSTGRES=1.";

/// Runs one conformance test against a fresh database of `kind`, then drops the database.
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((place, url)) = create(kind).await else {
        return;
    };
    let key = SecretKey::generate();
    let store = Store::open(&url, Keyring::new(key.clone()))
        .await
        .expect("open a fresh store");
    // The test runs as its own task so that a failing assertion still lets us clean up.
    let outcome = tokio::spawn(test(Db { store, url, kind, key })).await;
    if let Place::Postgres { admin_url, schema } = &place {
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to drop the schema");
        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        admin
            .execute(sqlx::AssertSqlSafe(drop))
            .await
            .expect("drop the test schema");
    }
    drop(place);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn create(kind: Kind) -> Option<(Place, String)> {
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("kato.db").display());
            Some((Place::Sqlite(dir), url))
        }
        Kind::Postgres => {
            let Ok(admin_url) = std::env::var("KATO_TEST_DATABASE_URL") else {
                if std::env::var("KATO_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
                    eprintln!("skipped: PostgreSQL conformance test (KATO_TEST_SKIP_POSTGRES=1)");
                    return None;
                }
                panic!("{SETUP_HINT}");
            };
            let schema = unique_name();
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to KATO_TEST_DATABASE_URL: {e}"));
            let create = format!("CREATE SCHEMA {schema}");
            admin
                .execute(sqlx::AssertSqlSafe(create))
                .await
                .expect("create a test schema");
            let separator = if admin_url.contains('?') { '&' } else { '?' };
            let url = format!("{admin_url}{separator}options[search_path]={schema}");
            Some((Place::Postgres { admin_url, schema }, url))
        }
    }
}

fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "kato_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Instantiates each listed test once per backend: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::run($crate::support::Kind::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::run($crate::support::Kind::Postgres, super::$name).await
                }
            )*
        }
    };
}

pub fn team(name: &str) -> TeamName {
    name.parse().unwrap()
}

pub fn plugin_name(name: &str) -> PluginName {
    name.parse().unwrap()
}

pub fn component_name(name: &str) -> ComponentName {
    name.parse().unwrap()
}

pub fn plugin(name: &str) -> PluginSpec {
    serde_json::from_value(json!({"name": name, "kind": "general", "source": {"image": "nginx:1.27"}})).unwrap()
}

pub fn component(name: &str, depends_on: &[&str]) -> ComponentSpec {
    serde_json::from_value(json!({"name": name, "image": "nginx", "depends_on": depends_on})).unwrap()
}

pub fn installation(plugin: &str, version: u32, revision: u64) -> Installation {
    serde_json::from_value(json!({
        "plugin": plugin, "version": version, "enabled": true, "memory_mib": 64, "revision": revision,
    }))
    .unwrap()
}

/// Asserts the error's variant, printing the error when it is another.
macro_rules! assert_err {
    ($result:expr, $variant:ident) => {
        match $result {
            Err(e @ kato_store::StoreError::$variant(_)) => e.to_string(),
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

/// A discovery credential whose nonce and hash are both `s`.
pub fn cred(s: &str) -> DiscoveryCredential {
    DiscoveryCredential {
        nonce: s.into(),
        hash: format!("hash-{s}"),
    }
}
