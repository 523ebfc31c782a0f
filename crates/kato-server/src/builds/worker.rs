//! The worker: claims queued builds up to the concurrency limit, runs each with a timeout and a
//! renewed lease, records the outcome, and fails builds whose server stopped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kato_build::{BuildError, BuildRequest, Built, CancellationToken};
use kato_model::{Provenance, Source, VersionStatus};
use kato_store::{Backend, Store, StoreError, VersionKey};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Running, StopReason};
use crate::state::AppState;

/// How often an idle worker looks for builds queued by other servers.
const POLL: Duration = Duration::from_millis(500);

pub const INTERRUPTED_BY_RESTART: &str = "interrupted by a server restart: create a new version";
const LEASE_EXPIRED: &str =
    "interrupted: the server building it stopped (its claim on the build ran out): create a new version";
const SHUTDOWN: &str = "interrupted: the server stopped during the build: create a new version";

/// At start: builds a previous run of this server left `building` are failed (on SQLite, the
/// only server; on PostgreSQL, those whose lease ran out). Queued builds stay queued and run.
pub async fn fail_interrupted_builds(store: &Store) -> Result<usize, StoreError> {
    let stuck = match store.backend() {
        Backend::Sqlite => {
            let mut building = Vec::new();
            for key in store.unfinished_versions().await? {
                let v = store.get_version(&key.0, &key.1, key.2).await?;
                if v.is_some_and(|v| v.version.status == VersionStatus::Building) {
                    building.push(key);
                }
            }
            building
        }
        Backend::Postgres => store.expired_builds().await?,
    };
    fail_all(store, &stuck, INTERRUPTED_BY_RESTART).await
}

async fn fail_all(store: &Store, keys: &[VersionKey], why: &str) -> Result<usize, StoreError> {
    let mut failed = 0;
    for (team, plugin, n) in keys {
        let mut tx = store.begin().await?;
        match tx
            .finish_version(team, plugin, *n, VersionStatus::Failed, None, Some(why))
            .await
        {
            Ok(()) => failed += 1,
            // Finished meanwhile by its server: nothing to do.
            Err(StoreError::Immutable(_) | StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
        tx.commit().await?;
    }
    Ok(failed)
}

/// Runs until `stop`; builds still running then are stopped and failed.
pub async fn run_worker(state: Arc<AppState>, stop: CancellationToken) {
    let builds = state.builds.clone();
    let limit = Arc::new(Semaphore::new(builds.settings.concurrency.max(1)));
    let reap_every = builds.settings.lease / 3;
    let mut last_reap: Option<Instant> = None;
    loop {
        if last_reap.is_none_or(|t| t.elapsed() >= reap_every) {
            match state.store.expired_builds().await {
                Ok(keys) if !keys.is_empty() => {
                    if let Err(e) = fail_all(&state.store, &keys, LEASE_EXPIRED).await {
                        tracing::warn!(error = %e, "could not fail builds whose server stopped");
                    }
                    state.cache.invalidate();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not look for builds whose server stopped"),
            }
            last_reap = Some(Instant::now());
        }
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = stop.cancelled() => break,
        };
        match claim(&state).await {
            Ok(Some(key)) => {
                tokio::spawn(build_one(state.clone(), key, permit, stop.child_token()));
                continue;
            }
            Ok(None) => drop(permit),
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "could not claim a queued build");
            }
        }
        tokio::select! {
            () = builds.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => break,
        }
    }
    let running: Vec<VersionKey> = builds
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys()
        .cloned()
        .collect();
    for key in running {
        builds.stop(&key, StopReason::Shutdown);
    }
}

async fn claim(state: &AppState) -> Result<Option<VersionKey>, StoreError> {
    let mut tx = state.store.begin().await?;
    let key = tx.claim_build(&state.builds.owner, state.builds.settings.lease).await?;
    tx.commit().await?;
    if key.is_some() {
        state.cache.invalidate();
    }
    Ok(key)
}

async fn build_one(state: Arc<AppState>, key: VersionKey, _permit: OwnedSemaphorePermit, token: CancellationToken) {
    let builds = &state.builds;
    {
        let mut running = builds.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.insert(
            key.clone(),
            Running {
                token: token.clone(),
                reason: None,
            },
        );
        builds.peak_running.fetch_max(running.len(), Ordering::Relaxed);
    }
    let outcome = execute(&state, &key, &token).await;
    let reason = builds
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&key)
        .and_then(|r| r.reason);
    if let Err(e) = record(&state, &key, outcome, reason).await {
        tracing::warn!(error = %e, plugin = %key.1, version = key.2, "could not record a build's outcome");
    }
    builds.progressed();
}

/// Runs the build with its log, lease renewal and timeout.
async fn execute(state: &Arc<AppState>, key: &VersionKey, token: &CancellationToken) -> Result<Built, BuildError> {
    let builds = &state.builds;
    let (team, plugin, n) = key;
    let record = state
        .store
        .get_version(team, plugin, *n)
        .await
        .map_err(|e| BuildError::Tool(e.to_string()))?
        .ok_or(BuildError::Cancelled)?;
    let Source::Dockerfile(source) = record.version.spec.source else {
        return Err(BuildError::Tool("only Dockerfile sources are built".into()));
    };
    let Some(target) = builds.target(key) else {
        return Err(BuildError::Tool(crate::ops::NO_PLATFORM_REGISTRY.into()));
    };
    let credentials = builds
        .credentials_for(&state.store, team)
        .await
        .map_err(|e| BuildError::Tool(e.to_string()))?;
    let secrets = super::secret_forms(&credentials);
    let (log, writer) = builds.version_log(&state.store, key, secrets);
    log.line(format!(
        "building version {n} of plug-in `{plugin}` into {target} on server {}",
        builds.owner
    ));
    let renewer = tokio::spawn(renew(state.clone(), key.clone()));
    let ssh_keys = builds
        .ssh_keys_for(&state.store, team)
        .await
        .map_err(|e| BuildError::Tool(e.to_string()))?;
    // A local repo got past the check at create, update and apply (the admin set it, or the
    // server allows local repos): git may read it. Any other source gets no file protocol.
    let allow_local_repos = source.repo_kind().is_ok_and(|k| k.is_local());
    let req = BuildRequest {
        source,
        target,
        git_env: vec![],
        credentials,
        ssh_keys,
        allow_local_repos,
    };
    let timeout = builds.settings.timeout;
    let outcome = match tokio::time::timeout(timeout, builds.builder.build(&req, &log, token)).await {
        Ok(r) => r,
        // Dropping the build kills the builder's process group.
        Err(_) => Err(BuildError::Timeout { after: timeout }),
    };
    renewer.abort();
    match &outcome {
        Ok(b) => log.line(format!("succeeded: {}", b.reference)),
        Err(BuildError::Cancelled) => log.line("stopped"),
        Err(e) => log.line(format!("failed: {e}")),
    }
    drop(log);
    let _ = writer.await;
    outcome
}

/// Keeps the claim alive; a build that is no longer ours (cancelled elsewhere) is stopped.
async fn renew(state: Arc<AppState>, key: VersionKey) {
    let lease = state.builds.settings.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let held = async {
            let mut tx = state.store.begin().await?;
            let held = tx.renew_lease(&key, &state.builds.owner, lease).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(held)
        }
        .await;
        match held {
            Ok(true) => {}
            Ok(false) => {
                state.builds.stop(&key, StopReason::Cancelled);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not renew a build's lease"),
        }
    }
}

async fn record(
    state: &AppState,
    key: &VersionKey,
    outcome: Result<Built, BuildError>,
    reason: Option<StopReason>,
) -> Result<(), StoreError> {
    let (team, plugin, n) = key;
    let mut tx = state.store.begin().await?;
    let done = match outcome {
        Ok(built) => {
            let provenance = Provenance {
                repo: None,
                commit: Some(built.commit),
                dockerfile: Some(built.dockerfile),
                base_image: built.base_image,
                base_image_digest: built.base_image_digest,
                source_image: None,
                digest: Some(built.digest),
            };
            let repo = match state.store.get_version(team, plugin, *n).await? {
                Some(v) => match v.version.spec.source {
                    Source::Dockerfile(d) => Some(d.repo),
                    Source::Image(_) => None,
                },
                None => None,
            };
            tx.set_provenance(key, &Provenance { repo, ..provenance }).await?;
            tx.finish_version(team, plugin, *n, VersionStatus::Succeeded, Some(&built.reference), None)
                .await
        }
        Err(BuildError::Cancelled) => {
            let why = match reason {
                Some(StopReason::Shutdown) => SHUTDOWN,
                _ => "cancelled",
            };
            let st = if reason == Some(StopReason::Shutdown) {
                VersionStatus::Failed
            } else {
                VersionStatus::Cancelled
            };
            tx.finish_version(team, plugin, *n, st, None, Some(why)).await
        }
        Err(e) => {
            let team_secrets = match state.builds.credentials_for(&state.store, team).await {
                Ok(c) => super::secret_forms(&c),
                Err(_) => Vec::new(),
            };
            let message = super::scrub(&state.builds.redact(&e.to_string()), &team_secrets);
            tx.finish_version(team, plugin, *n, VersionStatus::Failed, None, Some(&message))
                .await
        }
    };
    match done {
        Ok(()) => {}
        // Cancelled (or failed by another server) while it ran: that status stands.
        Err(StoreError::Immutable(_) | StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    state.cache.invalidate();
    Ok(())
}
