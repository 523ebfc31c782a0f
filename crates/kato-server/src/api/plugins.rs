//! Plug-ins (editable drafts) and their immutable versions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kato_model::{PluginName, PluginSpec, TeamName};
use serde::Deserialize;
use serde_json::Value;

use super::Body;
use crate::auth::{Caller, Principal};
use crate::error::{ApiError, ApiResult};
use crate::ops::{self, no_plugin, require_team};
use crate::state::AppState;
use crate::views;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams/{team}/plugins", get(list_plugins).post(create_plugin))
        .route(
            "/teams/{team}/plugins/{plugin}",
            get(get_plugin).patch(patch_plugin).delete(delete_plugin),
        )
        .route(
            "/teams/{team}/plugins/{plugin}/versions",
            get(list_versions).post(create_version),
        )
        .route(
            "/teams/{team}/plugins/{plugin}/versions/{number}",
            get(get_version).delete(delete_version),
        )
}

fn names(team: &str, plugin: &str) -> ApiResult<(TeamName, PluginName)> {
    Ok((team.parse()?, plugin.parse()?))
}

fn version_number(n: &str) -> ApiResult<u32> {
    n.parse()
        .map_err(|_| ApiError::BadRequest(format!("version `{n}` is not a number: versions are 1, 2, 3…")))
}

async fn create_plugin(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    Body(mut spec): Body<PluginSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    spec.validate()?;
    crate::policy::check_source(&who, state.builds.settings.allow_local_repos, &spec.source, None, "")?;
    crate::policy::check_plugin_image(&state.builds, &team, &spec.source, "")?;
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    if tx.get_plugin(&team, &spec.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "plug-in `{}` already exists in team `{team}`: edit its draft with PATCH",
            spec.name
        )));
    }
    tx.insert_plugin(&team, &spec).await?;
    let record = tx
        .get_plugin(&team, &spec.name)
        .await?
        .ok_or_else(|| no_plugin(&team, &spec.name))?;
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, Json(views::plugin(&record))))
}

/// The team's plug-ins with their newest version and users: one query, and on a single-process
/// server kept until the next write (a team of 1,000 plug-ins is ~0.5 MB of JSON to build).
#[derive(serde::Deserialize, Default)]
struct ListQuery {
    /// `brief`: only what a list shows (name, description, kind, memory_mib, latest_version,
    /// used_by), without each draft's config groups; read without decoding the drafts.
    view: Option<String>,
}

async fn list_plugins(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let team = crate::ops::existing_team(&state, &who, &team).await?;
    let brief = match q.view.as_deref() {
        None | Some("full") => false,
        Some("brief") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "view",
                format!("`{other}` is not a view: give `brief`, or leave it out for the whole drafts"),
            ));
        }
    };
    let key = format!("plugins{}/{team}", if brief { "-brief" } else { "" });
    let body = match state.cache.body(&key) {
        Some(b) => b,
        None if brief => {
            let generation = state.cache.generation();
            let plugins = state.store.list_plugin_briefs(&team).await?;
            let body = Bytes::from(views::plugin_briefs(&plugins).map_err(|e| ApiError::Internal(e.to_string()))?);
            state.cache.put_body(generation, key, body.clone());
            body
        }
        None => {
            let generation = state.cache.generation();
            let plugins = state.store.list_plugin_summaries(&team).await?;
            let body = Bytes::from(views::plugin_list(&plugins).map_err(|e| ApiError::Internal(e.to_string()))?);
            state.cache.put_body(generation, key, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub(super) async fn get_plugin(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (team, plugin) = names(&team, &plugin)?;
    who.check_team(&team)?;
    let key = format!("plugin/{team}/{plugin}");
    let body = match state.cache.body(&key) {
        Some(b) => b,
        None => {
            let generation = state.cache.generation();
            let record = state
                .store
                .get_plugin(&team, &plugin)
                .await?
                .ok_or_else(|| no_plugin(&team, &plugin))?;
            let body = Bytes::from(
                serde_json::to_vec(&views::plugin(&record)).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            state.cache.put_body(generation, key, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
pub(super) struct PatchQuery {
    /// Check the patch as a save would, and answer the draft it would make, without saving.
    #[serde(default)]
    dry_run: bool,
}

/// RFC 7386 JSON merge patch over the draft; the name cannot change.
pub(super) async fn patch_plugin(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin)): Path<(String, String)>,
    Query(q): Query<PatchQuery>,
    Body(patch): Body<Value>,
) -> ApiResult<Json<Value>> {
    let (team, plugin) = names(&team, &plugin)?;
    who.check_team(&team)?;
    if !patch.is_object() {
        return Err(ApiError::invalid(
            "body",
            "send a JSON object with the fields to change (a JSON merge patch)",
        ));
    }
    if let Some(name) = patch.get("name")
        && name.as_str() != Some(plugin.as_str())
    {
        return Err(ApiError::invalid(
            "name",
            "a plug-in cannot be renamed: create a new plug-in instead",
        ));
    }
    if q.dry_run {
        // Read outside a write transaction: checking as the user types never waits for writers.
        let current = state
            .store
            .get_plugin(&team, &plugin)
            .await?
            .ok_or_else(|| no_plugin(&team, &plugin))?;
        let spec = patched(&state, &who, &team, &current.spec, &patch)?;
        return Ok(Json(views::plugin(&kato_store::PluginRecord { spec, ..current })));
    }
    let mut tx = state.begin().await?;
    let current = tx
        .get_plugin(&team, &plugin)
        .await?
        .ok_or_else(|| no_plugin(&team, &plugin))?;
    let spec = patched(&state, &who, &team, &current.spec, &patch)?;
    if spec != current.spec {
        tx.update_plugin(&team, &spec).await?;
    }
    let record = tx
        .get_plugin(&team, &plugin)
        .await?
        .ok_or_else(|| no_plugin(&team, &plugin))?;
    state.commit(tx).await?;
    Ok(Json(views::plugin(&record)))
}

/// The draft `patch` makes of `current`, checked as every save is checked.
fn patched(
    state: &AppState,
    who: &Principal,
    team: &TeamName,
    current: &PluginSpec,
    patch: &Value,
) -> ApiResult<PluginSpec> {
    let mut doc = serde_json::to_value(current).map_err(|e| ApiError::Internal(e.to_string()))?;
    merge_patch(&mut doc, patch);
    // The error names the field's path, as a POST's does.
    let mut spec: PluginSpec =
        serde_path_to_error::deserialize(doc).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    // Groups sent back as a GET showed them (secret defaults left out) keep those defaults.
    spec.keep_secret_defaults_from(current);
    spec.validate()?;
    crate::policy::check_source(
        who,
        state.builds.settings.allow_local_repos,
        &spec.source,
        Some(&current.source),
        "",
    )?;
    crate::policy::check_plugin_image(&state.builds, team, &spec.source, "")?;
    Ok(spec)
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[derive(Deserialize)]
pub(super) struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

pub(super) async fn delete_plugin(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<Value>> {
    let (team, plugin) = names(&team, &plugin)?;
    who.check_team(&team)?;
    let mut tx = state.begin().await?;
    let uninstalled = ops::delete_plugin(&mut tx, &team, &plugin, q.force).await?;
    state.commit(tx).await?;
    Ok(Json(
        serde_json::json!({"deleted": plugin, "uninstalled_from": uninstalled}),
    ))
}

async fn create_version(
    State(state): State<Arc<AppState>>,
    who: Caller,
    Path((team, plugin)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (team, plugin) = names(&team, &plugin)?;
    who.principal.check_team(&team)?;
    let record = ops::create_version(&state, &team, &plugin, &who.author()).await?;
    Ok((StatusCode::CREATED, Json(views::version(&record))))
}

async fn list_versions(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, plugin) = names(&team, &plugin)?;
    who.check_team(&team)?;
    if state.store.get_plugin(&team, &plugin).await?.is_none() {
        return Err(no_plugin(&team, &plugin));
    }
    let versions = state.store.list_versions(&team, &plugin).await?;
    Ok(Json(Value::Array(versions.iter().map(views::version).collect())))
}

async fn get_version(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin, number)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, plugin) = names(&team, &plugin)?;
    who.check_team(&team)?;
    let n = version_number(&number)?;
    let v = state
        .store
        .get_version(&team, &plugin, n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("plug-in `{plugin}` has no version {n}")))?;
    let mut body = views::version(&v);
    if let Some(why) = state
        .builds
        .image_gone(&state.resolver, v.version.image.as_deref())
        .await
    {
        body["image_missing"] = true.into();
        body["image_error"] = why.into();
    }
    Ok(Json(body))
}

async fn delete_version(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin, number)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (team, plugin) = names(&team, &plugin)?;
    who.check_team(&team)?;
    let n = version_number(&number)?;
    let mut tx = state.begin().await?;
    let users = tx.installations_of_plugin(&team, &plugin).await?;
    let using: Vec<String> = users
        .iter()
        .filter(|(_, r)| r.installation.version == n)
        .map(|(c, _)| c.to_string())
        .collect();
    if !using.is_empty() {
        return Err(ApiError::Conflict(format!(
            "version {n} of `{plugin}` is installed on {}: upgrade or uninstall it there first",
            using.join(", ")
        )));
    }
    if !tx.delete_version(&team, &plugin, n).await? {
        return Err(ApiError::NotFound(format!("plug-in `{plugin}` has no version {n}")));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(&mut doc, &json!({"a": null, "b": {"c": 5}, "e": [2, 3], "f": "x"}));
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [2, 3], "f": "x"}));
    }
}
