//! Kato's domain model: names, plug-ins, versions, config groups, components, installations,
//! and every rule they obey. No I/O: the store, renderer and API build on these types.
#![forbid(unsafe_code)]

pub mod build;
pub mod component;
pub mod discovery;
pub mod install;
pub mod names;
pub mod plugin;
pub mod protocol;
pub mod ready;
mod reference;
pub mod source;
pub mod value;

pub use build::Provenance;
pub use component::{ComponentSpec, EnvVar, Port, Volume};
pub use discovery::DiscoveryDocument;
pub use install::{InstallRequest, Installation, Version, VersionStatus};
pub use names::{ComponentName, EnvName, ImageRef, NameError, PluginName, TeamName, VolumeName};
pub use plugin::{Command, ConfigGroup, ConfigItem, Injection, ItemType, Meta, PluginKind, PluginSpec, Source};
pub use protocol::Protocol;
pub use ready::Ready;
pub use value::{ConfigValue, Resolved, Values};

/// A request broke a rule: `field` is the path of the offending field, `message` says what is
/// wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}
