//! SQLite's read connections: a few connections kept open for reads on the [`Store`](crate::Store),
//! each behind its own async mutex.
//!
//! sqlx's pool returns every connection through a spawned task, which on SQLite costs about as
//! much as the query itself; a guard released in place roughly doubles the reads per second on
//! two cores. PostgreSQL keeps the pool: there the network round trip dominates, and the pool
//! replaces connections a server restart broke.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{Mutex, MutexGuard};

use crate::StoreError;

pub(crate) struct Readers {
    url: String,
    slots: Vec<Mutex<Option<AnyConnection>>>,
    next: AtomicUsize,
}

/// A read connection checked out of [`Readers`]; hand the query's result to [`Reader::done`].
pub(crate) struct Reader<'a> {
    slot: MutexGuard<'a, Option<AnyConnection>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("connections", &self.slots.len())
            .finish()
    }
}

impl Readers {
    /// Opens `count` read-only connections to the SQLite database at `url`.
    pub(crate) async fn open(url: &str, count: usize) -> Result<Readers, StoreError> {
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            slots.push(Mutex::new(Some(connect(url).await?)));
        }
        Ok(Readers {
            url: url.to_owned(),
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// A free connection if there is one, else waits for one (round robin, so waiters spread).
    pub(crate) async fn get(&self) -> Result<Reader<'_>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % n].lock().await,
        };
        if slot.is_none() {
            *slot = Some(connect(&self.url).await?);
        }
        Ok(Reader { slot })
    }

    pub(crate) async fn close(&self) {
        for slot in &self.slots {
            if let Some(conn) = slot.lock().await.take() {
                // Closing is best effort: the database file is consistent either way.
                let _ = conn.close().await;
            }
        }
    }
}

impl Reader<'_> {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.slot.as_mut().expect("a reader always holds a connection")
    }

    /// Passes the query's result through, dropping the connection if it broke so that the
    /// next reader of this slot opens a fresh one.
    pub(crate) fn done<T>(mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_))) =
            &result
        {
            self.slot.take();
        }
        result
    }
}

async fn connect(url: &str) -> Result<AnyConnection, StoreError> {
    let mut conn = AnyConnection::connect(url).await?;
    set_pragmas(&mut conn).await?;
    // These connections only ever read; make a mistake in the store fail loudly.
    conn.execute("PRAGMA query_only = ON").await?;
    Ok(conn)
}

/// The per-connection settings every SQLite connection of the store gets.
pub(crate) async fn set_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    // NORMAL is durable under WAL except for the last commits before a power cut;
    // busy_timeout (ms) is how long to wait for a lock held by another process; secure_delete
    // zeroes what a row held before an update, so a value sealed now (or sealed with a rotated
    // key) does not stay readable in a free page.
    conn.execute(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON;",
    )
    .await?;
    Ok(())
}
