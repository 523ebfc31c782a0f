//! Kato's store: teams, tokens, plug-ins, versions, components and installations in SQLite
//! (embedded, the default) or PostgreSQL, behind one interface.
//!
//! The model is kept as JSON documents in TEXT columns beside the key columns the database
//! needs for identity, order and references. Both backends go through sqlx's `Any` driver with
//! the same SQL (`$N` placeholders, `ON CONFLICT`, `RETURNING` mean the same on both), so each
//! query is written once. Writes happen in a [`Tx`]; reads are also on [`Store`] directly, as one
//! query on a read connection that never waits for a writer.
//!
//! Secrets (credentials, installations' values, secret defaults) are sealed at rest with a key
//! the caller gives (see `sealing`): what the store hands back is always in clear, and what it
//! writes never is.
#![forbid(unsafe_code)]

mod builds;
mod codec;
mod components;
mod credentials;
mod deployments;
mod discovery;
mod error;
mod installations;
mod keys;
mod legacy;
mod plugins;
mod readers;
mod sealing;
mod store;
mod teams;
mod versions;

use kato_model::{ComponentSpec, Installation, PluginSpec, Provenance, TeamName, Version, VersionStatus};

pub use codec::{now, until};
pub use credentials::{CredentialRecord, NewCredential, Secret, SshIdentity};
pub use discovery::{
    AckRecord, AckStatus, DiscoveryCredential, DiscoveryEvent, InstallationKey, MAX_ACK_PODS, MAX_ACKS_PER_POD,
};
pub use error::StoreError;
pub use keys::{Keyring, SecretKey};
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

/// What a list of plug-ins shows of each, read without the draft's whole spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginBrief {
    pub name: String,
    pub description: String,
    pub kind: String,
    pub memory_mib: u64,
    /// The number and status of the newest version still kept, if any.
    pub latest_version: Option<(u32, VersionStatus)>,
    /// How many components of the team install it.
    pub used_by: u64,
}

/// A plug-in's draft with what a list of plug-ins shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    pub plugin: PluginRecord,
    /// The number and status of the newest version still kept, if any.
    pub latest_version: Option<(u32, VersionStatus)>,
    /// How many components of the team install it.
    pub used_by: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub version: Version,
    pub created_at: Timestamp,
    /// Who created it, as the server recorded it (`admin`, `token ci job`); `None` for versions
    /// created before authors were recorded.
    pub created_by: Option<String>,
    /// Set when the version reached a final status.
    pub finished_at: Option<Timestamp>,
    /// What the image was made from, once the build knows.
    pub provenance: Option<Provenance>,
}

/// One line of a build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Numbers the version's lines from 1, in the order they were printed.
    pub seq: i64,
    pub at: Timestamp,
    pub line: String,
}

/// What a component should be doing on the server's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Deployed,
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployed => "deployed",
            Self::Stopped => "stopped",
        }
    }
}

/// A component's deployment: what it should be doing, and what the last deploy applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub team: TeamName,
    pub component: kato_model::ComponentName,
    pub desired: Desired,
    /// The hash of the objects the last deploy played; `None` before the first one and once
    /// stopped.
    pub applied_hash: Option<String>,
    /// The last deploy's error, if it failed.
    pub error: Option<String>,
    /// Failed deploys of `applied_hash` in a row; 0 after a success and after every user change.
    pub attempts: u32,
    /// When the next retry of a failed deploy is due; `None` when none is.
    pub next_try_at: Option<Timestamp>,
    pub updated_at: Timestamp,
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
