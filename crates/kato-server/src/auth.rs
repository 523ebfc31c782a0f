//! Bearer-token authentication: the admin token sees every team, a team token only its own.
//! Tokens are stored as SHA-256 hashes; the clear token is shown once, when created.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kato_model::TeamName;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Team(TeamName),
}

impl Principal {
    /// A team token reaching for another team is refused; the admin reaches every team.
    pub fn check_team(&self, team: &TeamName) -> ApiResult<()> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Team(own) if own == team => Ok(()),
            Principal::Team(own) => Err(ApiError::Forbidden(format!(
                "this token belongs to team `{own}` and cannot access team `{team}`"
            ))),
        }
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Team(_) => Err(ApiError::Forbidden("this needs the admin token".into())),
        }
    }
}

/// A new random token: `kato_` and 48 hex digits (192 bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("kato_{}", hex::encode(bytes))
}

pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    hex::encode(digest)
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized("missing token: send `Authorization: Bearer <token>` (the admin token is in the server's data dir, file admin.token)".into())
        })?;
        principal_of(state, token).await
    }
}

/// Whom a token stands for (the console's session cookie holds one too).
pub async fn principal_of(state: &AppState, token: &str) -> ApiResult<Principal> {
    let hash = hash_token(token);
    if let Some(p) = state.cache.principal(&hash) {
        return Ok(p);
    }
    let generation = state.cache.generation();
    let record = state.store.token_by_hash(&hash).await?;
    let principal = match record {
        None => return Err(ApiError::Unauthorized("unknown or revoked token".into())),
        Some(r) => r.team.map_or(Principal::Admin, Principal::Team),
    };
    state.cache.put_principal(generation, hash, principal.clone());
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 48);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
