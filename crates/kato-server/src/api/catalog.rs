//! `POST /teams/{team}/plugins/defaults`: the team's default plug-in catalog
//! ([`crate::catalog`]). The path's static segment shadows a plug-in named `defaults`, so its
//! reads and edits are routed here too.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use kato_model::TeamName;
use serde_json::{Value, json};

use super::Body;
use super::plugins;
use crate::auth::{Caller, Principal};
use crate::error::ApiResult;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/teams/{team}/plugins/defaults",
        post(install_defaults)
            .get(get_named_defaults)
            .patch(patch_named_defaults)
            .delete(delete_named_defaults),
    )
}

async fn install_defaults(
    State(state): State<Arc<AppState>>,
    who: Caller,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    let team: TeamName = team.parse()?;
    who.principal.check_team(&team)?;
    let plugins = crate::catalog::install(&state, &who, &team).await?;
    Ok(Json(json!({ "plugins": plugins })))
}

fn named(team: String) -> Path<(String, String)> {
    Path((team, "defaults".into()))
}

async fn get_named_defaults(
    state: State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
) -> ApiResult<Response> {
    plugins::get_plugin(state, who, named(team)).await
}

async fn patch_named_defaults(
    state: State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    q: Query<plugins::PatchQuery>,
    patch: Body<Value>,
) -> ApiResult<Json<Value>> {
    plugins::patch_plugin(state, who, named(team), q, patch).await
}

async fn delete_named_defaults(
    state: State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    q: Query<plugins::DeleteQuery>,
) -> ApiResult<Json<Value>> {
    plugins::delete_plugin(state, who, named(team), q).await
}
