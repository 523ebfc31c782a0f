//! Teams and their tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use kato_model::TeamName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, OrDefault};
use crate::auth::{Principal, hash_token, new_token};
use crate::error::{ApiError, ApiResult};
use crate::ops::require_team;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams", get(list_teams).post(create_team))
        .route("/teams/{team}/tokens", get(list_tokens).post(create_token))
        .route("/teams/{team}/tokens/{id}", delete(delete_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTeam {
    name: TeamName,
}

async fn create_team(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Body(body): Body<NewTeam>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require_admin()?;
    let mut tx = state.begin().await?;
    if tx.team_exists(&body.name).await? {
        return Err(ApiError::Conflict(format!("team `{}` already exists", body.name)));
    }
    tx.create_team(&body.name).await?;
    let created_at = tx
        .list_teams()
        .await?
        .into_iter()
        .find(|t| t.name == body.name)
        .map(|t| t.created_at);
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "created_at": created_at})),
    ))
}

async fn list_teams(State(state): State<Arc<AppState>>, who: Principal) -> ApiResult<Json<Value>> {
    let teams = state.store.list_teams().await?;
    let visible: Vec<Value> = teams
        .into_iter()
        .filter(|t| who.check_team(&t.name).is_ok())
        .map(|t| json!({"name": t.name, "created_at": t.created_at}))
        .collect();
    Ok(Json(Value::Array(visible)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    name: Option<String>,
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    OrDefault(body): OrDefault<NewToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    let name = body.name.unwrap_or_else(|| "default".into());
    if name.trim().is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("name", "give a token name of 1-100 characters"));
    }
    let token = new_token();
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    let record = tx.create_token(Some(&team), &name, &hash_token(&token)).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": record.id, "team": team, "name": record.name, "token": token, "created_at": record.created_at}),
        ),
    ))
}

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    let team = crate::ops::existing_team(&state, &who, &team).await?;
    let tokens = state.store.list_tokens(Some(&team)).await?;
    Ok(Json(Value::Array(
        tokens
            .into_iter()
            .map(|t| json!({"id": t.id, "name": t.name, "created_at": t.created_at}))
            .collect(),
    )))
}

async fn delete_token(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("token id `{id}` is not a number")))?;
    let mut tx = state.begin().await?;
    if !tx.delete_token(Some(&team), id).await? {
        return Err(ApiError::NotFound(format!("team `{team}` has no token {id}")));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
