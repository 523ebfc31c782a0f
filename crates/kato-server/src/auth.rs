//! Bearer-token authentication: the admin token sees every team, a team token only its own.
//! Tokens are stored as SHA-256 hashes; the clear token is shown once, when created.
//!
//! Handlers take a [`Principal`] to check what a request may reach, or a [`Caller`] when they
//! also record who made it. Either resolves the token once per request.

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

/// Who a request comes from: its principal and the name its token was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub token_name: String,
}

impl Caller {
    /// How records name their author: `admin` for the admin token, `token <name>` for a team
    /// token (`token ci job`).
    pub fn author(&self) -> String {
        match self.principal {
            Principal::Admin => "admin".into(),
            Principal::Team(_) => format!("token {}", self.token_name),
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

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    /// Kept in the request's extensions, so that a second extractor does not look it up again.
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized("missing token: send `Authorization: Bearer <token>` (the admin token is in the server's data dir, file admin.token)".into())
        })?;
        let caller = caller_of(state, token).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        Ok(Caller::from_request_parts(parts, state).await?.principal)
    }
}

/// Whom a token stands for (the console's session cookie holds one too).
pub async fn principal_of(state: &AppState, token: &str) -> ApiResult<Principal> {
    Ok(caller_of(state, token).await?.principal)
}

/// Whom a token stands for, with the token's name. Cached until the next committed write, so
/// a revoked token stops working at once.
pub async fn caller_of(state: &AppState, token: &str) -> ApiResult<Caller> {
    let hash = hash_token(token);
    if let Some(c) = state.cache.caller(&hash) {
        return Ok(c);
    }
    let generation = state.cache.generation();
    let Some(record) = state.store.token_by_hash(&hash).await? else {
        return Err(ApiError::Unauthorized("unknown or revoked token".into()));
    };
    let caller = Caller {
        principal: record.team.map_or(Principal::Admin, Principal::Team),
        token_name: record.name,
    };
    state.cache.put_caller(generation, hash, caller.clone());
    Ok(caller)
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

    #[test]
    fn authors_name_the_admin_or_the_team_token() {
        let admin = Caller {
            principal: Principal::Admin,
            token_name: "admin".into(),
        };
        assert_eq!(admin.author(), "admin");
        let ci = Caller {
            principal: Principal::Team("alpha".parse().unwrap()),
            token_name: "ci job".into(),
        };
        assert_eq!(ci.author(), "token ci job");
    }
}
