//! A team's credentials for private registries and git hosts: listed without their password,
//! read with it only by builds.

use kato_model::TeamName;
use sqlx::any::AnyExecutor;

use crate::codec::now;
use crate::store::reads;
use crate::{StoreError, Timestamp, Tx};

/// A credential as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// `registry.example.com[:port]` or a git host (`git.example.com`).
    pub host: String,
    pub username: String,
    pub created_at: Timestamp,
}

/// A credential with its password, for builds. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub host: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

reads! {
    /// The team's credentials, by host, without passwords.
    fn list_credentials(team: &TeamName) -> Vec<CredentialRecord>;
    /// The team's credentials with their passwords: for builds only.
    fn credential_secrets(team: &TeamName) -> Vec<Secret>;
}

async fn list_credentials<'e>(e: impl AnyExecutor<'e>, team: &TeamName) -> Result<Vec<CredentialRecord>, StoreError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT host, username, created_at FROM credentials WHERE team = $1 ORDER BY host")
            .bind(team.as_str())
            .fetch_all(e)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(host, username, created_at)| CredentialRecord {
            host,
            username,
            created_at,
        })
        .collect())
}

async fn credential_secrets<'e>(e: impl AnyExecutor<'e>, team: &TeamName) -> Result<Vec<Secret>, StoreError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT host, username, password FROM credentials WHERE team = $1 ORDER BY host")
            .bind(team.as_str())
            .fetch_all(e)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(host, username, password)| Secret {
            host,
            username,
            password,
        })
        .collect())
}

impl Tx {
    /// Sets the team's credential for `host`, replacing one it had.
    pub async fn put_credential(
        &mut self,
        team: &TeamName,
        host: &str,
        username: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO credentials (team, host, username, password, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (team, host) DO UPDATE SET username = excluded.username, password = excluded.password, \
             created_at = excluded.created_at",
        )
        .bind(team.as_str())
        .bind(host)
        .bind(username)
        .bind(password)
        .bind(now())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Removes the team's credential for `host`; false if it had none.
    pub async fn delete_credential(&mut self, team: &TeamName, host: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM credentials WHERE team = $1 AND host = $2")
            .bind(team.as_str())
            .bind(host)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
