//! Keeps what runs in step with what is stored.
//!
//! Each component has a desired state (deployed or stopped). After every committed write the
//! reconciler wakes up, renders each deployed component for the target, and redeploys the ones
//! whose objects changed since their last deploy (install, uninstall, enable, disable, memory,
//! version, values, the component itself). It runs outside any request's transaction; a failed
//! deploy is recorded and shown by the component's status, and retried with backoff (see
//! [`backoff`]) while the component is still to be deployed with the same objects. Retry times
//! live in the store, so they survive restarts; a replica claims a due retry with a
//! compare-and-set on it, so only one replica retries a component at a time.

pub mod backoff;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kato_model::{ComponentName, TeamName};
use kato_render::Target;
use kato_runtime::{ComponentRef, TargetKind};
use kato_store::{DeploymentRecord, Desired};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::error::{ApiError, ApiResult};
use crate::ops::component_context;
use crate::state::AppState;

/// What `applied_hash` holds once a component was stopped.
const STOPPED: &str = "stopped";

/// A lock per (team, component).
type Locks = Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;

/// How long a replica holds a retry it claimed before another may take it over (it died
/// mid-deploy, say).
const RETRY_LEASE: Duration = backoff::CAP;

pub struct Reconciler {
    wake: Arc<Notify>,
    /// One reconciliation at a time per component.
    locks: Locks,
    /// The first retry's delay, in milliseconds.
    retry_base_ms: AtomicU64,
}

impl Default for Reconciler {
    fn default() -> Self {
        Self {
            wake: Arc::default(),
            locks: Locks::default(),
            retry_base_ms: AtomicU64::new(backoff::DEFAULT_BASE.as_millis() as u64),
        }
    }
}

impl Reconciler {
    /// Sets the first retry's delay (1 s unless set); later retries double it.
    pub fn set_retry_base(&self, base: Duration) {
        let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        self.retry_base_ms.store(ms, Ordering::Relaxed);
    }

    fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms.load(Ordering::Relaxed))
    }

    /// Asks for a pass over every deployment; wakes up at most once however often it is called
    /// while a pass runs.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn lock(&self, team: &TeamName, component: &ComponentName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks
            .entry((team.to_string(), component.to_string()))
            .or_default()
            .clone()
    }
}

/// Runs reconciliation passes until the state is dropped. A pass also runs at start, so a
/// restarted server catches up with changes it missed.
pub fn spawn(state: &Arc<AppState>) {
    if state.runtime.kind() == TargetKind::None {
        return;
    }
    let weak: Weak<AppState> = Arc::downgrade(state);
    state.reconciler.wake();
    let wake = state.reconciler.wake.clone();
    tokio::spawn(async move {
        let mut retry_in: Option<Duration> = None;
        loop {
            match retry_in {
                Some(d) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                }
                None => wake.notified().await,
            }
            // The task holds the state only during a pass, so dropping the state ends it.
            let Some(state) = weak.upgrade() else { return };
            if let Err(e) = reconcile_all(&state).await {
                tracing::warn!(error = %e, "reconciliation pass failed");
            }
            retry_in = match next_retry(&state).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read when the next retry is due");
                    Some(backoff::DEFAULT_BASE)
                }
            };
        }
    });
}

/// How long until the earliest retry of a failed deploy is due (another replica's claim
/// included, so a replica takes over a claim whose holder died); `None` when none is pending.
async fn next_retry(state: &AppState) -> ApiResult<Option<Duration>> {
    let rows = state.store.list_deployments().await?;
    Ok(rows
        .iter()
        .filter(|d| d.desired == Desired::Deployed && d.error.is_some())
        .filter_map(|d| d.next_try_at.as_deref())
        .map(kato_store::until)
        .min())
}

/// One pass over every deployment.
pub async fn reconcile_all(state: &AppState) -> ApiResult<()> {
    for d in state.store.list_deployments().await? {
        if let Err(e) = reconcile(state, &d.team, &d.component).await {
            tracing::warn!(team = %d.team, component = %d.component, error = %e, "reconciliation failed");
        }
    }
    Ok(())
}

/// Brings one component in step with its deployment row; returns the row as it ends up
/// (`None` once a deleted component's row is gone).
pub async fn reconcile(
    state: &AppState,
    team: &TeamName,
    component: &ComponentName,
) -> ApiResult<Option<DeploymentRecord>> {
    let lock = state.reconciler.lock(team, component);
    let _guard = lock.lock().await;
    let Some(d) = state.store.get_deployment(team, component).await? else {
        return Ok(None);
    };
    let c = ComponentRef {
        team: team.as_str(),
        component: component.as_str(),
    };
    let outcome = match d.desired {
        Desired::Stopped => {
            if d.applied_hash.as_deref() == Some(STOPPED) {
                return Ok(Some(d));
            }
            let result = state.runtime.stop(c).await;
            record(state, &d, Some(STOPPED), result.err().map(|e| e.to_string())).await?
        }
        Desired::Deployed => {
            let ctx = match component_context(&mut &state.store, team, component).await {
                Ok(ctx) => ctx,
                Err(ApiError::NotFound(_)) => {
                    // The component was deleted: stop what still runs, then forget it.
                    state.runtime.stop(c).await?;
                    let mut tx = state.store.begin().await?;
                    tx.delete_deployment(team, component).await?;
                    tx.commit().await?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if let Err(e) = crate::policy::check_image(&state.builds, team, &ctx.spec.image, "image") {
                return record(state, &d, d.applied_hash.as_deref(), Some(format!("not deployed: {e}"))).await;
            }
            let target = match state.runtime.kind() {
                TargetKind::Kubernetes => Target::Kubernetes,
                _ => Target::Podman,
            };
            let rendered = match crate::api::render_objects(state, team, &ctx, target, None, false) {
                Ok(r) => r,
                Err(e) => {
                    let error = format!("cannot render the component: {e}");
                    return record(state, &d, d.applied_hash.as_deref(), Some(error)).await;
                }
            };
            let hash = workload_hash(&rendered);
            if d.applied_hash.as_deref() == Some(hash.as_str()) {
                if !claim_due_retry(state, &d, &hash).await? {
                    return Ok(state.store.get_deployment(team, component).await?);
                }
                tracing::info!(%team, %component, attempts = d.attempts, "retrying a failed deploy");
            } else {
                tracing::info!(%team, %component, "deploying");
            }
            match state.runtime.deploy(c, &rendered).await {
                Ok(()) => record(state, &d, Some(&hash), None).await?,
                Err(e) => record_failure(state, &d, &hash, e.to_string()).await?,
            }
        }
    };
    Ok(outcome)
}

/// Whether the objects already recorded are to be deployed again now: a failed deploy whose retry
/// is due and that this replica claimed first.
async fn claim_due_retry(state: &AppState, d: &DeploymentRecord, hash: &str) -> ApiResult<bool> {
    let Some(due) = d.next_try_at.as_deref().filter(|_| d.error.is_some()) else {
        return Ok(false);
    };
    if !kato_store::until(due).is_zero() {
        return Ok(false);
    }
    let mut tx = state.store.begin().await?;
    let claimed = tx.claim_retry(&d.team, &d.component, hash, due, RETRY_LEASE).await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Records a failed deploy of `hash` with its retry: one more attempt when the same objects
/// failed before, else the first.
async fn record_failure(
    state: &AppState,
    d: &DeploymentRecord,
    hash: &str,
    error: String,
) -> ApiResult<Option<DeploymentRecord>> {
    let attempts = backoff::attempts_after(d.applied_hash.as_deref(), d.attempts, hash);
    let retry_in = backoff::next(state.reconciler.retry_base(), attempts);
    tracing::warn!(
        team = %d.team, component = %d.component, error = %error, attempts, ?retry_in,
        "deploy failed; retrying later"
    );
    let mut tx = state.store.begin().await?;
    tx.record_failed(&d.team, &d.component, hash, &error, attempts, retry_in)
        .await?;
    let row = tx.get_deployment(&d.team, &d.component).await?;
    tx.commit().await?;
    state.reconciler.wake();
    Ok(row)
}

async fn record(
    state: &AppState,
    d: &DeploymentRecord,
    hash: Option<&str>,
    error: Option<String>,
) -> ApiResult<Option<DeploymentRecord>> {
    if let Some(e) = &error {
        tracing::warn!(team = %d.team, component = %d.component, error = %e, "deploy failed");
    }
    let mut tx = state.store.begin().await?;
    tx.record_applied(&d.team, &d.component, hash, error.as_deref()).await?;
    let row = tx.get_deployment(&d.team, &d.component).await?;
    tx.commit().await?;
    Ok(row)
}

/// What decides whether the engine must re-run the component: the rendered objects without the
/// config-revision annotations. A change that only reaches plug-ins through discovery bumps the
/// revision and nothing else, and must not restart their containers; the status reads the
/// revision from the store.
fn workload_hash(rendered: &kato_render::Rendered) -> String {
    let mut objects = rendered.clone();
    for o in &mut objects.objects {
        let meta = match o {
            kato_render::Object::Pod(p) => &mut p.metadata,
            kato_render::Object::Deployment(d) => &mut d.metadata,
            _ => continue,
        };
        if let Some(a) = meta.annotations.as_mut() {
            a.retain(|k, _| !k.starts_with(REVISION_ANNOTATION));
        }
    }
    hash(&objects.to_yaml())
}

const REVISION_ANNOTATION: &str = "revision.plugin.kato/";

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kato_render::{Object, Rendered};

    use super::workload_hash;

    fn pod(annotations: &[(&str, &str)]) -> Rendered {
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Rendered {
            objects: vec![Object::Pod(Pod {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                ..Default::default()
            })],
        }
    }

    #[test]
    fn a_new_config_revision_alone_does_not_redeploy() {
        let before = pod(&[("version.plugin.kato/log", "1"), ("revision.plugin.kato/log", "3")]);
        let after = pod(&[("version.plugin.kato/log", "1"), ("revision.plugin.kato/log", "4")]);
        assert_eq!(workload_hash(&before), workload_hash(&after));
    }

    #[test]
    fn a_new_version_redeploys() {
        let before = pod(&[("version.plugin.kato/log", "1"), ("revision.plugin.kato/log", "3")]);
        let after = pod(&[("version.plugin.kato/log", "2"), ("revision.plugin.kato/log", "3")]);
        assert_ne!(workload_hash(&before), workload_hash(&after));
    }
}
