//! Kato's builds: turning a plug-in version's source into an image reference pinned by digest.
//!
//! [`Builder::build`] clones a `dockerfile` source with git, builds it with podman and pushes it to
//! the platform registry, logging every line of the tools to a [`BuildLog`].
//!
//! [`Resolver::resolve`] asks the image's registry (OCI distribution API) for the manifest digest of
//! a tag, or checks that a digest exists, and answers `registry/repository@sha256:…`. Registries are
//! reached over HTTPS, plain HTTP only on loopback; every call has a timeout; failures are
//! [`ResolveError`]s that say what to do. Failures that may pass (a refused or reset connection, a
//! timeout, HTTP 429/502/503/504) are retried with backoff ([`RetryPolicy`]); others never are.

#![forbid(unsafe_code)]

mod build_error;
mod confine;
mod copy;
mod dockerfile;
mod dockerfile_lex;
mod dockerfile_refs;
mod error;
mod git;
mod platform_scope;
mod process;
mod registry;
mod resolve;
mod retry;

pub use build_error::BuildError;
pub use copy::Copied;
pub use dockerfile::{BuildRequest, Builder, BuilderConfig, Built, final_base};
pub use error::ResolveError;
pub use git::SshKey;
pub use platform_scope::{PlatformScope, Trespass};
pub use process::BuildLog;
pub use registry::{RegistryCredential, is_loopback_registry, protocol_for};
pub use resolve::{Pinned, Resolver, ResolverConfig};
pub use retry::RetryPolicy;
pub use tokio_util::sync::CancellationToken;
