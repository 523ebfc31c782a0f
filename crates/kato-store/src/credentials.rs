//! A team's credentials for private registries and git hosts: listed without their password,
//! read with it only by builds. The password, SSH key and known_hosts are sealed at rest.

use kato_model::TeamName;
use sqlx::any::AnyExecutor;

use crate::codec::now;
use crate::keys::Keyring;
use crate::sealing::{open_text_or_empty, place, seal_text};
use crate::store::{reads, sealed_reads};
use crate::{StoreError, Timestamp, Tx};

/// A credential as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// `registry.example.com[:port]` or a git host (`git.example.com`).
    pub host: String,
    pub username: String,
    /// Whether it holds an SSH key (and the host's known_hosts) for ssh repos.
    pub ssh_key_set: bool,
    pub created_at: Timestamp,
}

/// What a team gives for one host: a username and password (registries, https git hosts),
/// an SSH private key with the host's known_hosts line(s) (ssh git hosts), or both.
/// `Debug` hides the password and the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NewCredential {
    pub username: String,
    pub password: String,
    pub ssh: Option<SshIdentity>,
}

/// An SSH private key and the known_hosts line(s) that vouch for the host.
#[derive(Clone, PartialEq, Eq)]
pub struct SshIdentity {
    pub private_key: String,
    pub known_hosts: String,
}

impl std::fmt::Debug for SshIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshIdentity")
            .field("private_key", &"<redacted>")
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ssh", &self.ssh)
            .finish()
    }
}

/// A credential with its password, for builds. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub host: String,
    pub username: String,
    /// Empty for a credential that holds only an SSH key.
    pub password: String,
    pub ssh: Option<SshIdentity>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ssh", &self.ssh)
            .finish()
    }
}

reads! {
    /// The team's credentials, by host, without passwords.
    fn list_credentials(team: &TeamName) -> Vec<CredentialRecord>;
}

sealed_reads! {
    /// The team's credentials with their passwords: for builds only.
    fn credential_secrets(team: &TeamName) -> Vec<Secret>;
}

async fn list_credentials<'e>(e: impl AnyExecutor<'e>, team: &TeamName) -> Result<Vec<CredentialRecord>, StoreError> {
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT host, username, ssh_key, created_at FROM credentials WHERE team = $1 ORDER BY host")
            .bind(team.as_str())
            .fetch_all(e)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(host, username, ssh_key, created_at)| CredentialRecord {
            host,
            username,
            ssh_key_set: !ssh_key.is_empty(),
            created_at,
        })
        .collect())
}

async fn credential_secrets<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
) -> Result<Vec<Secret>, StoreError> {
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT host, username, password, ssh_key, known_hosts FROM credentials WHERE team = $1 ORDER BY host",
    )
    .bind(team.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(host, username, password, private_key, known_hosts)| {
            let open = |column, sealed: &str| open_text_or_empty(keys, &sealed_at(team, &host, column), sealed);
            let private_key = open("ssh_key", &private_key)?;
            let ssh = if private_key.is_empty() {
                None
            } else {
                Some(SshIdentity {
                    private_key,
                    known_hosts: open("known_hosts", &known_hosts)?,
                })
            };
            Ok(Secret {
                password: open("password", &password)?,
                host,
                username,
                ssh,
            })
        })
        .collect()
}

fn sealed_at(team: &TeamName, host: &str, column: &str) -> String {
    place("credentials", &[team.as_str(), host], column)
}

impl Tx {
    /// Sets the team's credential for `host` (a username and password), replacing one it had.
    pub async fn put_credential(
        &mut self,
        team: &TeamName,
        host: &str,
        username: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        let c = NewCredential {
            username: username.to_owned(),
            password: password.to_owned(),
            ssh: None,
        };
        self.set_credential(team, host, &c).await
    }

    /// Sets the team's credential for `host`, replacing one it had.
    pub async fn set_credential(&mut self, team: &TeamName, host: &str, c: &NewCredential) -> Result<(), StoreError> {
        let key = self.sealing_key().await?;
        let (ssh_key, known_hosts) = c
            .ssh
            .as_ref()
            .map_or(("", ""), |s| (s.private_key.as_str(), s.known_hosts.as_str()));
        let seal = |column, text| seal_text(&key, &sealed_at(team, host, column), text);
        sqlx::query(
            "INSERT INTO credentials (team, host, username, password, ssh_key, known_hosts, created_at, sealed_with) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (team, host) DO UPDATE SET username = excluded.username, password = excluded.password, \
             ssh_key = excluded.ssh_key, known_hosts = excluded.known_hosts, created_at = excluded.created_at, \
             sealed_with = excluded.sealed_with",
        )
        .bind(team.as_str())
        .bind(host)
        .bind(&c.username)
        .bind(seal("password", &c.password))
        .bind(seal("ssh_key", ssh_key))
        .bind(seal("known_hosts", known_hosts))
        .bind(now())
        .bind(key.id())
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
