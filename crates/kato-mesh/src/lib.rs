//! `kato-mesh`: Kato's governance proxy plug-in, as a library.
//!
//! One binary plays three roles, inferred from its discovery document: inbound (`ports` with a
//! `listen_port`: `0.0.0.0:<listen_port>` → `127.0.0.1:<port>`), outbound (`downstream`:
//! `127.0.0.1:<port>` → `{component}.{team}:<port>`), or both. [`Config::from_document`] reads
//! and checks a document; [`Mesh::apply`] makes it live without dropping open connections;
//! [`Mesh::drain`] shuts down gracefully.
#![forbid(unsafe_code)]

mod admin;
mod cluster;
pub mod config;
mod http;
pub mod limits;
mod listener;
mod mesh;
pub mod metrics;
mod options;
pub mod resolve;
pub mod route;
mod tcp;

use std::sync::{Arc, Mutex};

pub use config::{Config, LogLevel, Rejection};
pub use mesh::{Mesh, Role, Summary};
pub use resolve::{Dns, HostMap, Resolver};

/// A value read often and replaced whole now and then: readers get an `Arc` of what was
/// current, so a replacement never changes what an open connection already holds.
#[derive(Debug)]
pub(crate) struct Shared<T>(Mutex<Arc<T>>);

impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Shared<T> {
        Shared(Mutex::new(Arc::new(value)))
    }

    pub(crate) fn load(&self) -> Arc<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn store(&self, value: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}
