//! Plug-in versions: numbered snapshots of a draft with their build result, immutable once
//! their status is final. The defaults of their secret items are sealed at rest.

use kato_model::{PluginName, PluginSpec, TeamName, Version, VersionStatus};
use sqlx::any::AnyExecutor;

use crate::codec::{from_json, name, now, number, status};
use crate::keys::Keyring;
use crate::plugins::no_plugin;
use crate::sealing::{Part, open_doc, place, seal_doc};
use crate::store::{reads, sealed_reads};
use crate::{Backend, StoreError, Tx, VersionRecord};

/// A version, by its keys.
pub type VersionKey = (TeamName, PluginName, u32);

sealed_reads! {
    fn get_version(team: &TeamName, plugin: &PluginName, number: u32) -> Option<VersionRecord>;
    /// The plug-in's versions, oldest first.
    fn list_versions(team: &TeamName, plugin: &PluginName) -> Vec<VersionRecord>;
    /// The newest version whose build succeeded: what a new installation gets by default.
    fn latest_succeeded_version(team: &TeamName, plugin: &PluginName) -> Option<Version>;
}

reads! {
    /// Every version still `queued` or `building`, in every team, oldest first.
    fn unfinished_versions() -> Vec<VersionKey>;
    /// The number the plug-in's next version gets unless another is cut first: one more than
    /// the highest ever cut (1 for a plug-in that does not exist yet).
    fn next_version_number(team: &TeamName, plugin: &PluginName) -> u32;
}

/// The columns a [`VersionRow`] is read from; a macro so that queries stay `&'static str`.
macro_rules! columns {
    () => {
        "number, status, spec, sealed_defaults, image, error, created_at, finished_at, provenance, created_by"
    };
}
type VersionRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn sealed_at(team: &TeamName, plugin: &PluginName, n: impl std::fmt::Display) -> String {
    place(
        "versions",
        &[team.as_str(), plugin.as_str(), &n.to_string()],
        "sealed_defaults",
    )
}

fn version(keys: &Keyring, team: &TeamName, plugin: &PluginName, row: VersionRow) -> Result<VersionRecord, StoreError> {
    let (n, st, spec, sealed, image, error, created_at, finished_at, provenance, created_by) = row;
    let provenance = provenance
        .map(|p| from_json(|| format!("the provenance of version {n} of plug-in `{plugin}`"), &p))
        .transpose()?;
    Ok(VersionRecord {
        version: Version {
            number: number(n)?,
            status: status(&st)?,
            spec: open_doc(
                keys,
                &sealed_at(team, plugin, n),
                Part::SecretDefaults,
                || format!("version {n} of plug-in `{plugin}`"),
                &spec,
                &sealed,
            )?,
            image,
            error,
        },
        created_at,
        created_by,
        finished_at,
        provenance,
    })
}

async fn get_version<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    plugin: &PluginName,
    n: u32,
) -> Result<Option<VersionRecord>, StoreError> {
    let row: Option<VersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM versions WHERE team = $1 AND plugin = $2 AND number = $3"
    ))
    .bind(team.as_str())
    .bind(plugin.as_str())
    .bind(i64::from(n))
    .fetch_optional(e)
    .await?;
    row.map(|r| version(keys, team, plugin, r)).transpose()
}

async fn list_versions<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    plugin: &PluginName,
) -> Result<Vec<VersionRecord>, StoreError> {
    let rows: Vec<VersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM versions WHERE team = $1 AND plugin = $2 ORDER BY number"
    ))
    .bind(team.as_str())
    .bind(plugin.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter().map(|r| version(keys, team, plugin, r)).collect()
}

async fn latest_succeeded_version<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    plugin: &PluginName,
) -> Result<Option<Version>, StoreError> {
    let row: Option<VersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM versions WHERE team = $1 AND plugin = $2 AND status = 'succeeded' \
         ORDER BY number DESC LIMIT 1"
    ))
    .bind(team.as_str())
    .bind(plugin.as_str())
    .fetch_optional(e)
    .await?;
    Ok(row
        .map(|r| version(keys, team, plugin, r))
        .transpose()?
        .map(|r| r.version))
}

async fn unfinished_versions<'e>(e: impl AnyExecutor<'e>) -> Result<Vec<VersionKey>, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT team, plugin, number FROM versions WHERE status IN ('queued', 'building') \
         ORDER BY created_at, team, plugin, number",
    )
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(t, p, n)| Ok((name(&t)?, name(&p)?, number(n)?)))
        .collect()
}

async fn next_version_number<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    plugin: &PluginName,
) -> Result<u32, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT last_version FROM plugins WHERE team = $1 AND name = $2")
        .bind(team.as_str())
        .bind(plugin.as_str())
        .fetch_optional(e)
        .await?;
    number(row.map_or(0, |(n,)| n) + 1)
}

fn immutable(plugin: &PluginName, n: u32, st: &str) -> StoreError {
    StoreError::Immutable(format!(
        "version {n} of plug-in `{plugin}` is {st} and can no longer change: create a new version"
    ))
}

impl Tx {
    /// Cuts the next version of a plug-in from `spec`, recording who cut it (`created_by`).
    /// Its number is one more than the highest ever cut for the plug-in (a deleted number is
    /// never reused); the counter is bumped in this transaction, which on PostgreSQL locks the
    /// plug-in row until commit.
    pub async fn insert_version(
        &mut self,
        team: &TeamName,
        plugin: &PluginName,
        spec: &PluginSpec,
        st: VersionStatus,
        created_by: &str,
    ) -> Result<Version, StoreError> {
        let key = self.sealing_key().await?;
        let next: Option<(i64,)> = sqlx::query_as(
            "UPDATE plugins SET last_version = last_version + 1 WHERE team = $1 AND name = $2 \
             RETURNING last_version",
        )
        .bind(team.as_str())
        .bind(plugin.as_str())
        .fetch_optional(self.conn())
        .await?;
        let Some((n,)) = next else {
            return Err(no_plugin(team, plugin));
        };
        let at = now();
        let (doc, sealed) = seal_doc(&key, &sealed_at(team, plugin, n), Part::SecretDefaults, spec)?;
        sqlx::query(
            "INSERT INTO versions (team, plugin, number, status, spec, sealed_defaults, sealed_with, created_at, created_by, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(team.as_str())
        .bind(plugin.as_str())
        .bind(n)
        .bind(st.as_str())
        .bind(doc)
        .bind(sealed)
        .bind(key.id())
        .bind(&at)
        .bind(created_by)
        .bind(st.is_final().then_some(&at))
        .execute(self.conn())
        .await?;
        Ok(Version {
            number: number(n)?,
            status: st,
            spec: spec.clone(),
            image: None,
            error: None,
        })
    }

    /// Records a build's outcome. Only a version still `queued` or `building` can change:
    /// otherwise `Immutable`, and the row is left as it was. A final `st` sets `finished_at`.
    pub async fn finish_version(
        &mut self,
        team: &TeamName,
        plugin: &PluginName,
        n: u32,
        st: VersionStatus,
        image: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE versions SET status = $1, image = $2, error = $3, finished_at = $4, lease_owner = NULL, lease_until = NULL \
             WHERE team = $5 AND plugin = $6 AND number = $7 AND status IN ('queued', 'building')",
        )
        .bind(st.as_str())
        .bind(image)
        .bind(error)
        .bind(st.is_final().then(now))
        .bind(team.as_str())
        .bind(plugin.as_str())
        .bind(i64::from(n))
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.why_unchanged(team, plugin, n).await);
        }
        Ok(())
    }

    /// Moves an unfinished version to another status (`queued` → `building`), leaving its image
    /// and error alone; `Immutable` once it is final.
    pub async fn set_version_status(
        &mut self,
        team: &TeamName,
        plugin: &PluginName,
        n: u32,
        st: VersionStatus,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE versions SET status = $1, finished_at = $2 \
             WHERE team = $3 AND plugin = $4 AND number = $5 AND status IN ('queued', 'building')",
        )
        .bind(st.as_str())
        .bind(st.is_final().then(now))
        .bind(team.as_str())
        .bind(plugin.as_str())
        .bind(i64::from(n))
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.why_unchanged(team, plugin, n).await);
        }
        Ok(())
    }

    /// Moves the oldest `queued` version of any team to `building` and returns it: how a
    /// builder takes a job. Two replicas never get the same version (on PostgreSQL the row is
    /// locked with SKIP LOCKED; on SQLite writers are serialised).
    pub async fn claim_queued_version(&mut self) -> Result<Option<VersionKey>, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => {
                "UPDATE versions SET status = 'building' WHERE (team, plugin, number) IN \
                 (SELECT team, plugin, number FROM versions WHERE status = 'queued' \
                  ORDER BY created_at, team, plugin, number LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING team, plugin, number"
            }
            Backend::Sqlite => {
                "UPDATE versions SET status = 'building' WHERE (team, plugin, number) IN \
                 (SELECT team, plugin, number FROM versions WHERE status = 'queued' \
                  ORDER BY created_at, team, plugin, number LIMIT 1) \
                 RETURNING team, plugin, number"
            }
        };
        let row: Option<(String, String, i64)> = sqlx::query_as(sql).fetch_optional(self.conn()).await?;
        row.map(|(t, p, n)| Ok((name(&t)?, name(&p)?, number(n)?))).transpose()
    }

    /// Deletes a version; false if there is no such version. `InUse` while an installation
    /// runs it (also enforced by the schema).
    pub async fn delete_version(&mut self, team: &TeamName, plugin: &PluginName, n: u32) -> Result<bool, StoreError> {
        let users: Vec<(String,)> = sqlx::query_as(
            "SELECT component FROM installations WHERE team = $1 AND plugin = $2 AND version = $3 ORDER BY component",
        )
        .bind(team.as_str())
        .bind(plugin.as_str())
        .bind(i64::from(n))
        .fetch_all(self.conn())
        .await?;
        if !users.is_empty() {
            let names: Vec<_> = users.iter().map(|(c,)| format!("`{c}`")).collect();
            return Err(StoreError::InUse(format!(
                "version {n} of plug-in `{plugin}` is installed on {}: move them to another version or uninstall it first",
                names.join(", ")
            )));
        }
        let done = sqlx::query("DELETE FROM versions WHERE team = $1 AND plugin = $2 AND number = $3")
            .bind(team.as_str())
            .bind(plugin.as_str())
            .bind(i64::from(n))
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Why an update guarded by "still unfinished" changed nothing.
    async fn why_unchanged(&mut self, team: &TeamName, plugin: &PluginName, n: u32) -> StoreError {
        let keys = self.keys.clone();
        match get_version(self.conn(), &keys, team, plugin, n).await {
            Ok(Some(v)) => immutable(plugin, n, v.version.status.as_str()),
            Ok(None) => StoreError::NotFound(format!("plug-in `{plugin}` of team `{team}` has no version {n}")),
            Err(e) => e,
        }
    }
}
