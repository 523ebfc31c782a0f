//! A team's credentials for private registries and git hosts. Passwords go in and never come out.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use kato_model::TeamName;
use kato_store::CredentialRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Body;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ops::require_team;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams/{team}/credentials", get(list).post(put))
        .route("/teams/{team}/credentials/{host}", delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    /// `registry.example.com[:port]`, or the host of https git repos.
    host: String,
    username: String,
    password: String,
}

fn view(c: &CredentialRecord) -> Value {
    json!({"host": c.host, "username": c.username, "created_at": c.created_at})
}

fn check_host(host: &str) -> ApiResult<()> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "host",
            format!(
                "`{host}` is not a host: give it as in image references or git URLs, e.g. registry.example.com:5000"
            ),
        ))
    }
}

async fn put(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    Body(c): Body<NewCredential>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    let host = c.host.trim().to_ascii_lowercase();
    check_host(&host)?;
    if c.username.is_empty() {
        return Err(ApiError::invalid("username", "is empty: give the registry or git user"));
    }
    if c.password.is_empty() {
        return Err(ApiError::invalid(
            "password",
            "is empty: give the password or access token",
        ));
    }
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    tx.put_credential(&team, &host, &c.username, &c.password).await?;
    state.commit(tx).await?;
    let listed = state.store.list_credentials(&team).await?;
    let saved = listed
        .iter()
        .find(|r| r.host == host)
        .ok_or_else(|| ApiError::Internal("credential vanished".into()))?;
    Ok((StatusCode::CREATED, Json(view(saved))))
}

async fn list(State(state): State<Arc<AppState>>, who: Principal, Path(team): Path<String>) -> ApiResult<Json<Value>> {
    let team = crate::ops::existing_team(&state, &who, &team).await?;
    let listed = state.store.list_credentials(&team).await?;
    Ok(Json(Value::Array(listed.iter().map(view).collect())))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, host)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    let mut tx = state.begin().await?;
    if !tx.delete_credential(&team, &host.to_ascii_lowercase()).await? {
        return Err(ApiError::NotFound(format!(
            "team `{team}` has no credential for `{host}`"
        )));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
