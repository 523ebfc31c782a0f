//! Components, the plug-ins installed on them, and their rendered manifests.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kato_model::{ComponentName, ComponentSpec, InstallRequest, PluginName, TeamName};
use kato_render::{PluginInstance, RenderOptions, SidecarMode, Target, Workload};
use serde::Deserialize;
use serde_json::Value;

use super::{Body, OrDefault};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ops::{self, component_context, no_component, require_team};
use crate::state::AppState;
use crate::views;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams/{team}/components", get(list_components).post(create_component))
        .route(
            "/teams/{team}/components/{component}",
            get(get_component).put(put_component).delete(delete_component),
        )
        .route("/teams/{team}/components/{component}/plugins", get(list_installations))
        .route(
            "/teams/{team}/components/{component}/plugins/{plugin}",
            get(get_installation).put(put_installation).delete(delete_installation),
        )
        .route("/teams/{team}/components/{component}/manifests", get(manifests))
        .route("/teams/{team}/apply", axum::routing::post(crate::apply::handler))
}

fn names(team: &str, component: &str) -> ApiResult<(TeamName, ComponentName)> {
    Ok((team.parse()?, component.parse()?))
}

fn component_view(spec: &ComponentSpec) -> Value {
    serde_json::to_value(spec).unwrap_or_default()
}

async fn create_component(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    Body(spec): Body<ComponentSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    crate::policy::check_image(&state.builds, &team, &spec.image, "image")?;
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    ops::put_component(&mut tx, &team, &spec, true).await?;
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, Json(component_view(&spec))))
}

async fn put_component(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
    Body(spec): Body<ComponentSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    if spec.name != component {
        return Err(ApiError::invalid(
            "name",
            format!("the body names `{}` but the path names `{component}`", spec.name),
        ));
    }
    crate::policy::check_image(&state.builds, &team, &spec.image, "image")?;
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    let created = ops::put_component(&mut tx, &team, &spec, false).await?;
    state.commit(tx).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(component_view(&spec))))
}

/// The team's components; the answer is kept until the next write (a console lists thousands).
async fn list_components(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
) -> ApiResult<Response> {
    let team = crate::ops::existing_team(&state, &who, &team).await?;
    let key = format!("components/{team}");
    let body = match state.cache.body(&key) {
        Some(b) => b,
        None => {
            let generation = state.cache.generation();
            let list = state.store.list_components(&team).await?;
            let specs: Vec<&ComponentSpec> = list.iter().map(|c| &c.spec).collect();
            let body = Bytes::from(serde_json::to_vec(&specs).map_err(|e| ApiError::Internal(e.to_string()))?);
            state.cache.put_body(generation, key, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn get_component(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    let c = state
        .store
        .get_component(&team, &component)
        .await?
        .ok_or_else(|| no_component(&team, &component))?;
    Ok(Json(component_view(&c.spec)))
}

async fn delete_component(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    let mut tx = state.begin().await?;
    ops::delete_component(&mut tx, &team, &component).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_installations(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    let ctx = component_context(&mut &state.store, &team, &component).await?;
    let mut pods = crate::discovery::pod_reports(&state.store, &team, &component).await?;
    Ok(Json(Value::Array(
        ctx.installs
            .iter()
            .map(|(r, v)| views::with_pods(views::installation_record(r, v), pods.remove(&r.installation.plugin)))
            .collect(),
    )))
}

async fn get_installation(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component, plugin)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, component) = names(&team, &component)?;
    let plugin: PluginName = plugin.parse()?;
    who.check_team(&team)?;
    let ctx = component_context(&mut &state.store, &team, &component).await?;
    let (r, v) = ctx
        .installs
        .iter()
        .find(|(r, _)| r.installation.plugin == plugin)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "plug-in `{plugin}` is not installed on component `{component}`"
            ))
        })?;
    let mut pods = crate::discovery::pod_reports(&state.store, &team, &component).await?;
    Ok(Json(views::with_pods(
        views::installation_record(r, v),
        pods.remove(&plugin),
    )))
}

async fn put_installation(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component, plugin)): Path<(String, String, String)>,
    OrDefault(req): OrDefault<InstallRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (team, component) = names(&team, &component)?;
    let plugin: PluginName = plugin.parse()?;
    who.check_team(&team)?;
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    let (inst, version, created) = ops::install(
        &mut tx,
        &who,
        &state.discovery.key,
        &team,
        &component,
        &plugin,
        &req,
        false,
    )
    .await?;
    if let Some(why) = state.builds.image_gone(&state.resolver, version.image.as_deref()).await {
        return Err(ApiError::invalid(
            "version",
            format!("version {} cannot be installed: {why}", version.number),
        ));
    }
    state.commit(tx).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(views::installation(&inst, &version))))
}

async fn delete_installation(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component, plugin)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (team, component) = names(&team, &component)?;
    let plugin: PluginName = plugin.parse()?;
    who.check_team(&team)?;
    let mut tx = state.begin().await?;
    if !tx.delete_installation(&team, &component, &plugin).await? {
        return Err(ApiError::NotFound(format!(
            "plug-in `{plugin}` is not installed on component `{component}`"
        )));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestQuery {
    target: Option<String>,
    sidecars: Option<String>,
}

async fn manifests(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component)): Path<(String, String)>,
    Query(q): Query<ManifestQuery>,
) -> ApiResult<Response> {
    let (team, component) = names(&team, &component)?;
    who.check_team(&team)?;
    let target: Target = match q.target.as_deref() {
        None => Target::Kubernetes,
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::invalid("target", format!("`{t}` is not a target: use kubernetes or podman")))?,
    };
    let sidecars: Option<SidecarMode> = match q.sidecars.as_deref() {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            ApiError::invalid(
                "sidecars",
                format!("`{s}` is not a sidecar mode: use native or classic"),
            )
        })?),
    };
    let key = format!(
        "manifests/{team}/{component}/{target}/{}",
        q.sidecars.as_deref().unwrap_or("default")
    );
    let body = match state.cache.body(&key) {
        Some(b) => b,
        None => {
            let generation = state.cache.generation();
            let ctx = component_context(&mut &state.store, &team, &component).await?;
            let yaml = render_yaml(&state, &team, &ctx, target, sidecars, true)?;
            let body = Bytes::from(yaml);
            state.cache.put_body(generation, key, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/yaml")], body).into_response())
}

/// The component's objects for `target` as YAML, written straight from the model.
pub fn render_yaml(
    state: &AppState,
    team: &TeamName,
    ctx: &ops::ComponentContext,
    target: Target,
    sidecars: Option<SidecarMode>,
    redact_secrets: bool,
) -> ApiResult<String> {
    with_workload(
        state,
        team,
        ctx,
        target,
        sidecars,
        redact_secrets,
        kato_render::render_yaml,
    )
}

/// The component's objects for `target`.
pub fn render_objects(
    state: &AppState,
    team: &TeamName,
    ctx: &ops::ComponentContext,
    target: Target,
    sidecars: Option<SidecarMode>,
    redact_secrets: bool,
) -> ApiResult<kato_render::Rendered> {
    with_workload(state, team, ctx, target, sidecars, redact_secrets, kato_render::render)
}

/// Runs `render` on the component's workload.
fn with_workload<T>(
    state: &AppState,
    team: &TeamName,
    ctx: &ops::ComponentContext,
    target: Target,
    sidecars: Option<SidecarMode>,
    redact_secrets: bool,
    render: impl FnOnce(&Workload<'_>, &RenderOptions) -> Result<T, kato_render::RenderError>,
) -> ApiResult<T> {
    let tokens: Vec<String> = ctx
        .installs
        .iter()
        .map(|(r, _)| state.discovery.token(team, &ctx.spec.name, r))
        .collect();
    let plugins = ctx
        .installs
        .iter()
        .zip(&tokens)
        .map(|((r, v), token)| PluginInstance {
            installation: &r.installation,
            version: v,
            discovery_token: token,
        })
        .collect();
    let workload = Workload {
        team,
        component: &ctx.spec,
        downstream: ctx.downstream_refs(),
        plugins,
    };
    let options = RenderOptions {
        target,
        sidecars,
        discovery_base_url: state.discovery_base_url.clone(),
        redact_secrets,
    };
    render(&workload, &options).map_err(|e| ApiError::invalid("component", e.to_string()))
}
