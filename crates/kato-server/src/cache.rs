//! A read-through cache for hot GETs (plug-ins, manifests, tokens), dropped as a whole on every
//! committed write. Only a single-process server may use it: on SQLite the server is the only
//! writer; with PostgreSQL other replicas write too, so the cache stays off there.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::auth::Caller;

const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
struct Entries {
    generation: u64,
    bodies: HashMap<String, Bytes>,
    /// By token hash.
    callers: HashMap<String, Caller>,
}

pub struct Cache {
    enabled: bool,
    generation: AtomicU64,
    entries: RwLock<Entries>,
}

impl Cache {
    pub fn new(enabled: bool) -> Self {
        Cache {
            enabled,
            generation: AtomicU64::new(1),
            entries: RwLock::default(),
        }
    }

    /// Read this before loading from the store, and hand it to `put_*`: an entry loaded before
    /// a write that committed meanwhile is then not kept.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called after every committed write.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn read<T>(&self, f: impl FnOnce(&Entries) -> Option<T>) -> Option<T> {
        if !self.enabled {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        if entries.generation != self.generation() {
            return None;
        }
        f(&entries)
    }

    fn write(&self, generation: u64, f: impl FnOnce(&mut Entries)) {
        if !self.enabled || generation != self.generation() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.generation != generation {
            *entries = Entries {
                generation,
                ..Entries::default()
            };
        }
        if entries.bodies.len() + entries.callers.len() < MAX_ENTRIES {
            f(&mut entries);
        }
    }

    pub fn body(&self, key: &str) -> Option<Bytes> {
        self.read(|e| e.bodies.get(key).cloned())
    }

    pub fn put_body(&self, generation: u64, key: String, body: Bytes) {
        self.write(generation, |e| {
            e.bodies.insert(key, body);
        });
    }

    pub fn caller(&self, hash: &str) -> Option<Caller> {
        self.read(|e| e.callers.get(hash).cloned())
    }

    pub fn put_caller(&self, generation: u64, hash: String, c: Caller) {
        self.write(generation, |e| {
            e.callers.insert(hash, c);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_drops_everything_loaded_before_it() {
        let c = Cache::new(true);
        let g = c.generation();
        c.put_body(g, "k".into(), Bytes::from_static(b"v"));
        assert_eq!(c.body("k").as_deref(), Some(&b"v"[..]));
        c.invalidate();
        assert_eq!(c.body("k"), None);
        // an entry loaded under the old generation is not stored
        c.put_body(g, "k".into(), Bytes::from_static(b"stale"));
        assert_eq!(c.body("k"), None);
    }

    #[test]
    fn a_write_drops_cached_callers() {
        let c = Cache::new(true);
        let ci = Caller {
            principal: crate::auth::Principal::Team("alpha".parse().unwrap()),
            token_name: "ci job".into(),
        };
        c.put_caller(c.generation(), "h".into(), ci.clone());
        assert_eq!(c.caller("h"), Some(ci));
        // a revoked token's write
        c.invalidate();
        assert_eq!(c.caller("h"), None);
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let c = Cache::new(false);
        c.put_body(c.generation(), "k".into(), Bytes::from_static(b"v"));
        assert_eq!(c.body("k"), None);
    }
}
