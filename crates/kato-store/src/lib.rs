//! Kato's store: teams, tokens, plug-ins, versions, components and installations in SQLite
//! (embedded, the default) or PostgreSQL, behind one interface.
//!
//! The model is kept as JSON documents in TEXT columns beside the key columns the database
//! needs for identity, order and references. Both backends go through sqlx's `Any` driver with
//! the same SQL (`$N` placeholders, `ON CONFLICT`, `RETURNING` mean the same on both), so each
//! query is written once. Writes happen in a [`Tx`]; reads are also on [`Store`] directly, as one
//! query on a read connection that never waits for a writer.
#![forbid(unsafe_code)]

mod codec;
mod components;
mod discovery;
mod error;
mod installations;
mod plugins;
mod readers;
mod store;
mod teams;
mod versions;

use kato_model::{ComponentSpec, Installation, PluginSpec, TeamName, Version};

pub use discovery::{AckRecord, AckStatus, DiscoveryCredential, DiscoveryEvent, InstallationKey};
pub use error::StoreError;
pub use store::{Store, Tx};
pub use versions::VersionKey;

/// Which database a [`Store`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Timestamps are RFC 3339 text in UTC with microseconds (`2025-01-31T12:00:00.000000Z`): fixed
/// width, so they sort as text the same way they sort in time.
pub type Timestamp = String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    pub name: TeamName,
    pub created_at: Timestamp,
}

/// An API token; the store only ever sees its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    /// `None` for an admin token.
    pub team: Option<TeamName>,
    pub name: String,
    pub created_at: Timestamp,
}

/// A plug-in's draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRecord {
    pub spec: PluginSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub version: Version,
    pub created_at: Timestamp,
    /// Set when the version reached a final status.
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRecord {
    pub spec: ComponentSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRecord {
    pub installation: Installation,
    /// What the plug-in's discovery token is derived from and checked against.
    pub discovery: DiscoveryCredential,
    /// The install order on the component: assigned on first install, kept on every update.
    pub seq: i64,
}
