//! Pinning an image-source version: the one path by which `POST …/versions` (`kato plugin
//! build`) and `kato apply` turn a plug-in's image reference into a version's image. Both get
//! the same kind of version: resolved with the team's credentials, copied into the platform
//! registry when there is one (else pinned in place), with its provenance and its log.

use kato_build::{ResolveError, Resolver, ResolverConfig};
use kato_model::{ImageRef, Provenance, VersionStatus};
use kato_store::{Tx, VersionKey};

use crate::error::ApiResult;
use crate::state::AppState;

/// Where a pin's log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// The version's stored log, line by line as they come: the version is written already,
    /// and a follower of its log sees the retries while the pin runs.
    Stored,
    /// Held with the outcome, for a version not written yet: [`record`] stores them in the
    /// transaction that writes it, so nothing is stored when that transaction does not commit.
    Held,
}

/// An image pinned for a version.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// `platform[/namespace]/team/plugin@sha256:…`, or the source pinned in place when the
    /// server has no platform registry.
    pub image: String,
    pub provenance: Provenance,
}

/// What pinning a version's image came to, with the log lines still to store.
pub struct Pin {
    /// The version the image was pinned for.
    pub key: VersionKey,
    pub outcome: Result<Pinned, ResolveError>,
    held: Vec<(String, String)>,
}

/// Resolves `image` for the version `key` with the team's credentials and, with a platform
/// registry, copies it there as `…/team/plugin:vN` (N from `key`) pinned by digest. Registry
/// failures are the pin's outcome, not an error: the caller decides whether they fail the
/// version (`POST …/versions`) or reject the request (`apply`). The error is the store's.
pub async fn pin_image(state: &AppState, key: &VersionKey, image: &ImageRef, log_to: LogTo) -> ApiResult<Pin> {
    let (team, plugin, n) = key;
    let credentials = state.builds.credentials_for(&state.store, team).await?;
    let secrets = super::secret_forms(&credentials);
    let (log, writer) = match log_to {
        LogTo::Stored => {
            let (log, writer) = state.builds.version_log(&state.store, key, secrets);
            (log, Writer::Stored(writer))
        }
        LogTo::Held => {
            let (log, collector) = state.builds.held_log(secrets);
            (log, Writer::Held(collector))
        }
    };
    // The team's credentials for the image's registry need a resolver of their own; the
    // shared one holds the platform registry's.
    let registry = image.reference().registry();
    let resolver = if credentials.iter().any(|c| c.registry == registry) {
        Resolver::new(ResolverConfig {
            credentials,
            ..ResolverConfig::default()
        })
        .logging_to(log.clone())
    } else {
        state.resolver.logging_to(log.clone())
    };
    let outcome = match state.builds.target(key) {
        // With a platform registry, running components pull only from it.
        Some(dest) => {
            log.line(format!(
                "copying `{image}` into {dest} for version {n} of plug-in `{plugin}`"
            ));
            resolver.copy(image, &dest).await.map(|c| Pinned {
                image: c.pinned.reference,
                provenance: Provenance {
                    source_image: Some(c.source.reference),
                    digest: Some(c.pinned.digest),
                    ..Provenance::default()
                },
            })
        }
        None => {
            log.line(format!(
                "resolving `{image}` for version {n} of plug-in `{plugin}` (no platform registry: pinned in place)"
            ));
            resolver.resolve(image).await.map(|p| Pinned {
                image: p.reference.clone(),
                provenance: Provenance {
                    source_image: Some(p.reference),
                    digest: Some(p.digest),
                    ..Provenance::default()
                },
            })
        }
    };
    match &outcome {
        Ok(p) => log.line(format!("succeeded: {}", p.image)),
        Err(e) => log.line(format!("failed: {e}")),
    }
    drop((resolver, log));
    let held = writer.finish().await;
    Ok(Pin {
        key: key.clone(),
        outcome,
        held,
    })
}

/// Writes a pin's outcome into its version (still `building`): the held log lines, then the
/// provenance and the pinned image, or the failure.
pub async fn record(tx: &mut Tx, pin: &Pin) -> ApiResult<()> {
    let (team, plugin, n) = &pin.key;
    if !pin.held.is_empty() {
        tx.append_build_log(&pin.key, &pin.held).await?;
    }
    match &pin.outcome {
        Ok(p) => {
            tx.set_provenance(&pin.key, &p.provenance).await?;
            tx.finish_version(team, plugin, *n, VersionStatus::Succeeded, Some(&p.image), None)
                .await?;
        }
        Err(e) => {
            tx.finish_version(team, plugin, *n, VersionStatus::Failed, None, Some(&e.to_string()))
                .await?;
        }
    }
    Ok(())
}

enum Writer {
    Stored(tokio::task::JoinHandle<()>),
    Held(tokio::task::JoinHandle<Vec<(String, String)>>),
}

impl Writer {
    /// Waits for the lines to be stored or collected; the held ones are answered.
    async fn finish(self) -> Vec<(String, String)> {
        match self {
            Writer::Stored(w) => {
                let _ = w.await;
                Vec::new()
            }
            Writer::Held(c) => c.await.unwrap_or_default(),
        }
    }
}
