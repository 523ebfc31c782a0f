//! Kato's builds: turning a plug-in version's image source into a reference pinned by digest.
//!
//! [`Resolver::resolve`] asks the image's registry (OCI distribution API) for the manifest digest of
//! a tag, or checks that a digest exists, and answers `registry/repository@sha256:…`. Registries are
//! reached over HTTPS, plain HTTP only on loopback; every call has a timeout; failures are
//! [`ResolveError`]s that say what to do.

#![forbid(unsafe_code)]

mod error;
mod registry;
mod resolve;

pub use error::ResolveError;
pub use registry::{RegistryCredential, is_loopback_registry, protocol_for};
pub use resolve::{Pinned, Resolver, ResolverConfig};
