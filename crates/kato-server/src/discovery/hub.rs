//! The live documents: one `watch` channel per installation someone asked about, carrying the
//! document serialised once per revision. Thousands of long-polls on one installation share one
//! `Bytes` and wake together; no task polls the store. Channels are refreshed after every
//! commit that touched their installation (this server's, or another replica's through the
//! store's change feed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kato_model::DiscoveryDocument;
use kato_store::{InstallationKey, Store};
use tokio::sync::watch;

use crate::error::ApiResult;

/// One revision of a document, serialised once.
#[derive(Debug)]
pub struct Snapshot {
    pub revision: u64,
    pub document: DiscoveryDocument,
    /// `document` as JSON, shared by every answer of this revision.
    pub body: Bytes,
    /// The HTTP/1.1 head of those answers, up to their `date` header.
    pub head: Bytes,
}

#[derive(Debug, Clone)]
pub enum Entry {
    /// Not read yet, or its last read failed.
    Unknown,
    Present(Arc<Snapshot>),
    /// Uninstalled.
    Gone,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<InstallationKey, watch::Sender<Entry>>,
    /// Token hash → installation, for tokens seen recently; dropped with their installation's
    /// next change (a rotation or an uninstall is one).
    tokens: HashMap<String, InstallationKey>,
}

pub struct Hub {
    inner: Mutex<Inner>,
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            inner: Mutex::default(),
            closing: watch::Sender::new(false),
        }
    }
}

const MAX_CACHED_TOKENS: usize = 100_000;

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cached_token(&self, hash: &str) -> Option<InstallationKey> {
        self.lock().tokens.get(hash).cloned()
    }

    pub fn cache_token(&self, hash: String, key: InstallationKey) {
        let mut inner = self.lock();
        if inner.tokens.len() < MAX_CACHED_TOKENS {
            inner.tokens.insert(hash, key);
        }
    }

    /// The current snapshot of an installation's document (read from the store when not
    /// known yet) and a receiver that sees every later one. `None` if it is not installed.
    pub async fn current(
        &self,
        store: &Store,
        key: &InstallationKey,
    ) -> ApiResult<Option<(Arc<Snapshot>, watch::Receiver<Entry>)>> {
        let rx = {
            let mut inner = self.lock();
            inner
                .slots
                .entry(key.clone())
                .or_insert_with(|| watch::Sender::new(Entry::Unknown))
                .subscribe()
        };
        let entry = rx.borrow().clone();
        match entry {
            Entry::Present(s) => Ok(Some((s, rx))),
            Entry::Gone => Ok(None),
            Entry::Unknown => match self.reload(store, key).await? {
                Some(s) => Ok(Some((s, rx))),
                None => Ok(None),
            },
        }
    }

    /// Reads the document from the store and publishes it, unless a newer one is already out
    /// (two readers may race; revisions only grow, so the higher one is the newer).
    async fn reload(&self, store: &Store, key: &InstallationKey) -> ApiResult<Option<Arc<Snapshot>>> {
        let loaded = super::load(store, key).await?;
        let mut inner = self.lock();
        match loaded {
            None => {
                if let Some(tx) = inner.slots.remove(key) {
                    tx.send_replace(Entry::Gone);
                }
                Ok(None)
            }
            Some(doc) => {
                let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
                let fresh = Arc::new(Snapshot {
                    revision: doc.revision,
                    head: crate::listener::document_head(doc.revision, body.len()),
                    document: doc,
                    body,
                });
                let Some(tx) = inner.slots.get(key) else {
                    return Ok(Some(fresh));
                };
                let mut out = fresh.clone();
                tx.send_if_modified(|e| match e {
                    Entry::Present(cur) if cur.revision >= fresh.revision => {
                        out = cur.clone();
                        false
                    }
                    _ => {
                        *e = Entry::Present(fresh.clone());
                        true
                    }
                });
                Ok(Some(out))
            }
        }
    }

    /// After a commit touched these installations: forget their tokens, and read the
    /// documents that someone watches again.
    pub async fn refresh(&self, store: &Store, keys: &[InstallationKey]) {
        for key in keys {
            let watched = {
                let mut inner = self.lock();
                inner.tokens.retain(|_, k| k != key);
                inner.slots.contains_key(key)
            };
            if watched && let Err(e) = self.reload(store, key).await {
                tracing::warn!(?key, error = %e, "cannot read a discovery document again");
                if let Some(tx) = self.lock().slots.get(key) {
                    tx.send_replace(Entry::Unknown);
                }
            }
        }
    }

    /// Changes may have been missed (the change feed reconnected): forget everything cached
    /// and read every watched document again.
    pub async fn resync(&self, store: &Store) {
        let keys: Vec<InstallationKey> = {
            let mut inner = self.lock();
            inner.tokens.clear();
            inner.slots.keys().cloned().collect()
        };
        self.refresh(store, &keys).await;
    }

    /// The server is stopping: long-polls answer now instead of holding the shutdown.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// How many installations have a live channel.
    pub fn watched(&self) -> usize {
        self.lock().slots.len()
    }

    /// How many requests hold this installation's channel now (long-polls waiting on it).
    pub fn waiters(&self, key: &InstallationKey) -> usize {
        self.lock().slots.get(key).map_or(0, |tx| tx.receiver_count())
    }
}
