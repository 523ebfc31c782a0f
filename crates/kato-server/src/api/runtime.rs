//! Running components on the server's target: deploy, stop, status and logs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kato_model::{ComponentName, TeamName};
use kato_runtime::{ComponentRef, ComponentState, LogsRequest, TargetKind};
use kato_store::{DeploymentRecord, Desired};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ops::no_component;
use crate::reconcile;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams/{team}/components/{component}/deploy", post(deploy))
        .route("/teams/{team}/components/{component}/stop", post(stop))
        .route("/teams/{team}/components/{component}/status", get(status))
        .route("/teams/{team}/components/{component}/logs", get(logs))
}

fn names(team: &str, component: &str) -> ApiResult<(TeamName, ComponentName)> {
    Ok((team.parse()?, component.parse()?))
}

async fn set(
    state: &Arc<AppState>,
    who: &Principal,
    team: &str,
    component: &str,
    desired: Desired,
) -> ApiResult<Json<Value>> {
    let (team, component) = names(team, component)?;
    who.check_team(&team)?;
    if state.runtime.kind() == TargetKind::None {
        return Err(kato_runtime::RuntimeError::NotSupported.into());
    }
    if desired == Desired::Deployed
        && let Some(c) = state.store.get_component(&team, &component).await?
    {
        // A component stored before the rule may still name another team's image.
        crate::policy::check_image(&state.builds, &team, &c.spec.image, "image")?;
    }
    let mut tx = state.begin().await?;
    tx.set_desired(&team, &component, desired).await?;
    state.commit(tx).await?;
    let row = reconcile::reconcile(state, &team, &component).await?;
    Ok(Json(view(state, &team, &component, row).await?))
}

async fn deploy(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    set(&state, &who, &team, &component, Desired::Deployed).await
}

async fn stop(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    set(&state, &who, &team, &component, Desired::Stopped).await
}

async fn status(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    if state.store.get_component(&team, &component).await?.is_none() {
        return Err(no_component(&team, &component));
    }
    let row = state.store.get_deployment(&team, &component).await?;
    Ok(Json(view(&state, &team, &component, row).await?))
}

/// The status body: the target's view of the component, the desired state, the last deploy's
/// error, and each plug-in's installed version, config revision and discovery acks per pod.
async fn view(
    state: &AppState,
    team: &TeamName,
    component: &ComponentName,
    row: Option<DeploymentRecord>,
) -> ApiResult<Value> {
    let c = ComponentRef {
        team: team.as_str(),
        component: component.as_str(),
    };
    let mut s = state.runtime.status(c).await?;
    let error = row.as_ref().and_then(|d| d.error.clone());
    let desired = row.as_ref().map(|d| d.desired);
    if let Some(e) = &error
        && s.state == ComponentState::Stopped
        && desired == Some(Desired::Deployed)
    {
        s.state = ComponentState::Failed;
        s.message = Some(e.clone());
    }
    let installs = state.store.list_installations(team, component).await?;
    let mut acks = crate::discovery::pod_reports(&state.store, team, component).await?;
    let mut body = serde_json::to_value(&s).map_err(|e| ApiError::Internal(e.to_string()))?;
    for pod in body["pods"].as_array_mut().into_iter().flatten() {
        for ctr in pod["containers"].as_array_mut().into_iter().flatten() {
            let name = ctr["name"].as_str().unwrap_or_default().to_owned();
            if let Some(plugin) = name.strip_prefix("plugin-")
                && let Some(i) = installs.iter().find(|i| i.installation.plugin.as_str() == plugin)
            {
                ctr["plugin"] = json!({
                    "name": plugin,
                    "version": i.installation.version,
                    "revision": i.installation.revision,
                });
            }
        }
    }
    let plugins: Vec<Value> = installs
        .iter()
        .map(|i| {
            json!({
                "name": i.installation.plugin,
                "version": i.installation.version,
                "revision": i.installation.revision,
                "enabled": i.installation.enabled,
                // Per pod: the discovery revision the plug-in applied, and those it rejected.
                "acks": acks.remove(&i.installation.plugin).unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    body["team"] = json!(team);
    body["component"] = json!(component);
    body["target"] = json!(state.runtime.kind());
    body["desired"] = json!(desired.map(Desired::as_str));
    body["error"] = json!(error);
    // While a failed deploy is being retried: how often it failed, why, and when it is next tried.
    if let Some(d) = row
        .as_ref()
        .filter(|d| d.desired == Desired::Deployed && d.attempts > 0)
    {
        body["deploy"] = json!({
            "attempts": d.attempts,
            "last_error": d.error,
            "next_try_at": d.next_try_at,
        });
    }
    body["plugins"] = json!(plugins);
    Ok(body)
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    container: Option<String>,
    tail: Option<u32>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    if state.store.get_component(&team, &component).await?.is_none() {
        return Err(no_component(&team, &component));
    }
    let c = ComponentRef {
        team: team.as_str(),
        component: component.as_str(),
    };
    let request = LogsRequest {
        container: q.container.filter(|c| !c.is_empty()),
        tail: q.tail,
        follow: q.follow,
    };
    let stream = state.runtime.logs(c, request).await?;
    // A followed log ends when the server shuts down rather than holding the shutdown.
    let stream = futures_util::StreamExt::take_until(stream, state.builds.stopping.clone().cancelled_owned());
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}
