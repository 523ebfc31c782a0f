//! Opening the database (pool, pragmas, migrations) and the write transaction.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use kato_model::{ComponentName, PluginName, TeamName};

use crate::Backend;
use crate::discovery::InstallationKey;
use crate::error::StoreError;
use crate::keys::{Keyring, SecretKey};
use crate::readers::{Readers, set_pragmas};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// SQLite readers run in parallel under WAL; a few connections keep both cores busy without
/// paying a worker thread and a page cache per request.
const SQLITE_READERS: usize = 4;
/// Writers take turns (see `Inner::writer`): one connection, and one more for the moment a
/// dropped transaction's rollback is still queued on the first.
const SQLITE_WRITE_CONNECTIONS: u32 = 2;
const POSTGRES_MAX_CONNECTIONS: u32 = 16;

/// The database, shared by every task: cloning is cheap.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Write transactions on both backends; reads too on PostgreSQL.
    pool: AnyPool,
    /// Reads on SQLite.
    readers: Option<Readers>,
    backend: Backend,
    /// The PostgreSQL URL, for connections outside the pool (LISTEN).
    postgres_url: Option<String>,
    /// Serialises write transactions on SQLite, which allows one writer at a time anyway:
    /// waiting here costs no pool connection, and no transaction ever has to upgrade a read
    /// lock to a write lock (which SQLite answers with SQLITE_BUSY, not with waiting).
    writer: Arc<Mutex<()>>,
    /// The keys sealed values open with; a rotation adds one.
    keys: RwLock<Arc<Keyring>>,
}

/// A write transaction. Commit with [`Tx::commit`]; dropping it rolls everything back.
///
/// Every operation of the store is available here, reads included, and sees the
/// transaction's own writes.
#[derive(Debug)]
pub struct Tx {
    // Field order matters: the rollback of a dropped transaction is queued on its connection
    // before the writer lock is released.
    conn: Transaction<'static, Any>,
    backend: Backend,
    touched: Vec<InstallationKey>,
    pub(crate) keys: Arc<Keyring>,
    /// The key the database records, once this transaction sealed something.
    pub(crate) sealing: Option<SecretKey>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl Store {
    /// Opens (and on SQLite creates) the database and brings its schema up to date.
    ///
    /// `url` is `sqlite:///absolute/path/kato.db`, `sqlite://relative/path.db` or
    /// `postgres://user:password@host:port/database`.
    ///
    /// Secrets are sealed with the key the database records; a database without one records
    /// the first of `keys`. `StoreError::SecretKey` if `keys` lacks the recorded one. Values an
    /// older version of Kato stored in clear are sealed now.
    pub async fn open(url: &str, keys: Keyring) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = parse_url(url)?;
        let pool = match backend {
            Backend::Sqlite => open_sqlite(&url).await?,
            Backend::Postgres => open_postgres(&url).await?,
        };
        let migrations = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrations.run(&pool).await?;
        let readers = match backend {
            Backend::Sqlite => Some(Readers::open(&url, SQLITE_READERS).await?),
            Backend::Postgres => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                readers,
                backend,
                postgres_url: (backend == Backend::Postgres).then(|| url.clone()),
                writer: Arc::new(Mutex::new(())),
                keys: RwLock::new(Arc::new(keys)),
            }),
        };
        crate::sealing::prepare(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Starts a write transaction. On SQLite it waits for the previous one to end first.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = &self.inner;
        let (conn, writer) = match inner.backend {
            Backend::Sqlite => {
                let writer = inner.writer.clone().lock_owned().await;
                // IMMEDIATE takes the write lock now, so a second process on the same file
                // waits (busy_timeout) instead of failing when this transaction first writes.
                (inner.pool.begin_with("BEGIN IMMEDIATE").await?, Some(writer))
            }
            Backend::Postgres => (inner.pool.begin().await?, None),
        };
        Ok(Tx {
            conn,
            backend: inner.backend,
            touched: Vec::new(),
            keys: self.keyring(),
            sealing: None,
            _writer: writer,
        })
    }

    /// Closes every connection; on SQLite this also checkpoints the WAL into the database file.
    pub async fn close(&self) {
        if let Some(readers) = &self.inner.readers {
            readers.close().await;
        }
        self.inner.pool.close().await;
    }

    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.inner.postgres_url.as_deref()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(crate) fn readers(&self) -> Option<&Readers> {
        self.inner.readers.as_ref()
    }

    pub(crate) fn keyring(&self) -> Arc<Keyring> {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn add_key(&self, key: SecretKey) {
        let mut keys = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
        *keys = Arc::new((**keys).clone().with(key));
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.conn.commit().await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The installations this transaction wrote or removed so far, each once: after commit,
    /// their discovery documents may have changed.
    pub fn touched(&self) -> &[InstallationKey] {
        &self.touched
    }

    pub(crate) fn touch(&mut self, team: &TeamName, component: &ComponentName, plugin: &PluginName) {
        let key = InstallationKey {
            team: team.clone(),
            component: component.clone(),
            plugin: plugin.clone(),
        };
        if !self.touched.contains(&key) {
            self.touched.push(key);
        }
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

fn parse_url(url: &str) -> Result<(Backend, String), StoreError> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        if path.is_empty() || path.starts_with('?') {
            return Err(StoreError::InvalidUrl(
                "the sqlite URL names no file: write sqlite:///absolute/path/kato.db or sqlite://relative/kato.db"
                    .into(),
            ));
        }
        // mode=rwc creates the file when it is missing; a mode given in the URL wins.
        let url = if url.contains("mode=") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((Backend::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_owned()))
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        Err(StoreError::InvalidUrl(format!(
            "unknown database URL scheme `{scheme}`: use sqlite:///path/kato.db or postgres://user:password@host/database"
        )))
    }
}

async fn open_sqlite(url: &str) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .max_connections(SQLITE_WRITE_CONNECTIONS)
        // A ping per checkout would double the cost of every read; a broken connection
        // surfaces as an error on use and is then discarded by the pool.
        .test_before_acquire(false)
        .after_connect(|conn, _meta| Box::pin(set_pragmas(conn)))
        .connect(url)
        .await?;
    // WAL lets readers run beside the writer. It is a property of the file, so it is set
    // once here rather than per connection (the switch needs an exclusive lock).
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode = WAL").fetch_one(&pool).await?;
    if !mode.0.eq_ignore_ascii_case("wal") && !mode.0.eq_ignore_ascii_case("memory") {
        return Err(StoreError::InvalidUrl(format!(
            "SQLite refused WAL mode (journal_mode is `{}`): put the database on a local file system",
            mode.0
        )));
    }
    Ok(pool)
}

async fn open_postgres(url: &str) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .test_before_acquire(false)
        // Connections dropped by a proxy or a database restart are replaced in time.
        .idle_timeout(Duration::from_secs(300))
        .connect(url)
        .await?;
    Ok(pool)
}

/// Generates the read operations on both [`Store`] (one query on a read connection, no write
/// lock) and [`Tx`] (inside the transaction) from one free function each, generic over the
/// executor.
macro_rules! reads {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty; )*) => {
        impl $crate::Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret, $crate::StoreError> {
                    match self.readers() {
                        Some(readers) => {
                            let mut reader = readers.get().await?;
                            let result = $name(reader.conn(), $($arg),*).await;
                            reader.done(result)
                        }
                        None => $name(self.pool(), $($arg),*).await,
                    }
                }
            )*
        }
        impl $crate::Tx {
            $(
                $(#[$doc])*
                pub async fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, $crate::StoreError> {
                    $name(self.conn(), $($arg),*).await
                }
            )*
        }
    };
}
pub(crate) use reads;

/// [`reads!`] for reads that open sealed values: the free function takes the keyring after
/// its executor.
macro_rules! sealed_reads {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty; )*) => {
        impl $crate::Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret, $crate::StoreError> {
                    let keys = self.keyring();
                    match self.readers() {
                        Some(readers) => {
                            let mut reader = readers.get().await?;
                            let result = $name(reader.conn(), &keys, $($arg),*).await;
                            reader.done(result)
                        }
                        None => $name(self.pool(), &keys, $($arg),*).await,
                    }
                }
            )*
        }
        impl $crate::Tx {
            $(
                $(#[$doc])*
                pub async fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, $crate::StoreError> {
                    let keys = self.keys.clone();
                    $name(self.conn(), &keys, $($arg),*).await
                }
            )*
        }
    };
}
pub(crate) use sealed_reads;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("sqlite:///data/kato.db").unwrap(),
            (Backend::Sqlite, "sqlite:///data/kato.db?mode=rwc".into())
        );
        assert_eq!(
            parse_url("sqlite://kato.db?mode=ro").unwrap(),
            (Backend::Sqlite, "sqlite://kato.db?mode=ro".into())
        );
        assert_eq!(parse_url("postgresql://h/db").unwrap().0, Backend::Postgres);
        let e = parse_url("mysql://h/db").unwrap_err().to_string();
        assert!(e.contains("unknown database URL scheme `mysql`"), "{e}");
        assert!(parse_url("sqlite://").is_err());
    }
}
