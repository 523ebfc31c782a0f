//! A team's credentials for private registries and git hosts. Passwords and SSH keys go in and
//! never come out.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use kato_model::TeamName;
use kato_store::{CredentialRecord, SshIdentity};
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
    /// `registry.example.com[:port]`, or the host of https or ssh git repos.
    host: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// An SSH private key for ssh repos on `host` (OpenSSH or PEM text).
    #[serde(default)]
    ssh_key: Option<String>,
    /// The known_hosts line(s) of `host`: ssh repos are cloned only when its key matches.
    #[serde(default)]
    known_hosts: Option<String>,
}

fn view(c: &CredentialRecord) -> Value {
    json!({"host": c.host, "username": c.username, "ssh_key_set": c.ssh_key_set, "created_at": c.created_at})
}

/// The SSH half of a credential: a key and the host's known_hosts, both or neither.
fn ssh_identity(host: &str, c: &NewCredential) -> ApiResult<Option<SshIdentity>> {
    let key = c.ssh_key.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let known = c.known_hosts.as_deref().map(str::trim).filter(|k| !k.is_empty());
    match (key, known) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ApiError::invalid(
            "known_hosts",
            format!(
                "is missing: give the known_hosts line(s) of `{host}` (e.g. from `ssh-keyscan {host}`, checked \
                 against what the host's admin publishes): Kato never trusts an unknown host key"
            ),
        )),
        (None, Some(_)) => Err(ApiError::invalid(
            "ssh_key",
            "is missing: known_hosts goes with the SSH private key that logs in to the host",
        )),
        (Some(key), Some(known)) => {
            if !key.starts_with("-----BEGIN ") || !key.contains("PRIVATE KEY-----") {
                return Err(ApiError::invalid(
                    "ssh_key",
                    "is not a private key: give the whole key file (`-----BEGIN OPENSSH PRIVATE KEY-----` …)",
                ));
            }
            if known
                .lines()
                .any(|l| !l.trim().is_empty() && l.split_whitespace().count() < 3)
            {
                return Err(ApiError::invalid(
                    "known_hosts",
                    "each line is `HOST KEYTYPE KEY`, as in ~/.ssh/known_hosts",
                ));
            }
            Ok(Some(SshIdentity {
                private_key: format!("{key}\n"),
                known_hosts: known.to_owned(),
            }))
        }
    }
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
    let ssh = ssh_identity(&host, &c)?;
    if ssh.is_none() || !c.password.is_empty() {
        if c.username.is_empty() {
            return Err(ApiError::invalid("username", "is empty: give the registry or git user"));
        }
        if c.password.is_empty() {
            return Err(ApiError::invalid(
                "password",
                "is empty: give the password or access token (or, for ssh repos, ssh_key and known_hosts)",
            ));
        }
    }
    let new = kato_store::NewCredential {
        username: c.username,
        password: c.password,
        ssh,
    };
    let mut tx = state.begin().await?;
    require_team(&mut tx, &team).await?;
    tx.set_credential(&team, &host, &new).await?;
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
