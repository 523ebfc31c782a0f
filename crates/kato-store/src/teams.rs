//! Teams and API tokens.

use kato_model::TeamName;
use sqlx::any::AnyExecutor;

use crate::codec::{name, now};
use crate::store::reads;
use crate::{StoreError, TeamRecord, TokenRecord, Tx};

pub(crate) fn no_team(team: &TeamName) -> StoreError {
    StoreError::NotFound(format!("team `{team}` does not exist"))
}

reads! {
    fn list_teams() -> Vec<TeamRecord>;
    fn team_exists(team: &TeamName) -> bool;
    /// The tokens of a team, or the admin tokens for `None`, oldest first.
    fn list_tokens(team: Option<&TeamName>) -> Vec<TokenRecord>;
    /// The token with this hash: how a request is authenticated.
    fn token_by_hash(hash: &str) -> Option<TokenRecord>;
}

async fn list_teams<'e>(e: impl AnyExecutor<'e>) -> Result<Vec<TeamRecord>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, created_at FROM teams ORDER BY name")
        .fetch_all(e)
        .await?;
    rows.into_iter()
        .map(|(n, created_at)| {
            Ok(TeamRecord {
                name: name(&n)?,
                created_at,
            })
        })
        .collect()
}

pub(crate) async fn team_exists<'e>(e: impl AnyExecutor<'e>, team: &TeamName) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 FROM teams WHERE name = $1")
        .bind(team.as_str())
        .fetch_optional(e)
        .await?;
    Ok(row.is_some())
}

type TokenRow = (i64, Option<String>, String, String);

fn token(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (id, team, token_name, created_at) = row;
    Ok(TokenRecord {
        id,
        team: team.as_deref().map(name).transpose()?,
        name: token_name,
        created_at,
    })
}

async fn list_tokens<'e>(e: impl AnyExecutor<'e>, team: Option<&TeamName>) -> Result<Vec<TokenRecord>, StoreError> {
    let rows: Vec<TokenRow> =
        sqlx::query_as("SELECT id, team, name, created_at FROM tokens WHERE team IS NOT DISTINCT FROM $1 ORDER BY id")
            .bind(team.map(TeamName::as_str))
            .fetch_all(e)
            .await?;
    rows.into_iter().map(token).collect()
}

async fn token_by_hash<'e>(e: impl AnyExecutor<'e>, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
    let row: Option<TokenRow> = sqlx::query_as("SELECT id, team, name, created_at FROM tokens WHERE hash = $1")
        .bind(hash)
        .fetch_optional(e)
        .await?;
    row.map(token).transpose()
}

impl Tx {
    /// Creates a team; `Conflict` if it exists.
    pub async fn create_team(&mut self, team: &TeamName) -> Result<(), StoreError> {
        let done = sqlx::query("INSERT INTO teams (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(team.as_str())
            .bind(now())
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("team `{team}` already exists")));
        }
        Ok(())
    }

    /// Stores a token of `team`, or an admin token for `None`. Only the hash is kept.
    pub async fn create_token(
        &mut self,
        team: Option<&TeamName>,
        token_name: &str,
        hash: &str,
    ) -> Result<TokenRecord, StoreError> {
        if let Some(t) = team
            && !team_exists(self.conn(), t).await?
        {
            return Err(no_team(t));
        }
        let created_at = now();
        let id: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO tokens (team, name, hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash) DO NOTHING RETURNING id",
        )
        .bind(team.map(TeamName::as_str))
        .bind(token_name)
        .bind(hash)
        .bind(&created_at)
        .fetch_optional(self.conn())
        .await?;
        let Some((id,)) = id else {
            return Err(StoreError::Conflict("a token with this hash already exists".into()));
        };
        Ok(TokenRecord {
            id,
            team: team.cloned(),
            name: token_name.to_owned(),
            created_at,
        })
    }

    /// Revokes a token of `team` (admin tokens for `None`); false when there is no such token
    /// in that scope, so a team cannot revoke another team's token by id.
    pub async fn delete_token(&mut self, team: Option<&TeamName>, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1 AND team IS NOT DISTINCT FROM $2")
            .bind(id)
            .bind(team.map(TeamName::as_str))
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
