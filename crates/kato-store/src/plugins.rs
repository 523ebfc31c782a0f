//! Plug-in drafts. The defaults of their secret items are sealed at rest.

use kato_model::{PluginName, PluginSpec, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{now, number, status};
use crate::installations::installations_of_plugin;
use crate::keys::{Keyring, SecretKey};
use crate::sealing::{Part, open_doc, place, seal_doc};
use crate::store::sealed_reads;
use crate::teams::{no_team, team_exists};
use crate::{Backend, PluginBrief, PluginRecord, PluginSummary, Store, StoreError, Tx};

pub(crate) fn no_plugin(team: &TeamName, plugin: &PluginName) -> StoreError {
    StoreError::NotFound(format!("plug-in `{plugin}` does not exist in team `{team}`"))
}

sealed_reads! {
    fn get_plugin(team: &TeamName, plugin: &PluginName) -> Option<PluginRecord>;
    /// The team's plug-ins by name.
    fn list_plugins(team: &TeamName) -> Vec<PluginRecord>;
    /// The team's plug-ins by name, each with its newest version and how many components
    /// install it: one query, whatever the number of plug-ins.
    fn list_plugin_summaries(team: &TeamName) -> Vec<PluginSummary>;
}

/// name, spec, sealed defaults, created_at, updated_at.
type PluginRow = (String, String, String, String, String);
/// A [`PluginRow`], then the newest version's number and status, and the count of installations.
type SummaryRow = (String, String, String, String, String, Option<i64>, Option<String>, i64);

fn sealed_at(team: &TeamName, plugin: &str) -> String {
    place("plugins", &[team.as_str(), plugin], "sealed_defaults")
}

/// The spec as stored, and its sealed secret defaults.
fn seal_spec(key: &SecretKey, team: &TeamName, spec: &PluginSpec) -> Result<(String, String), StoreError> {
    seal_doc(key, &sealed_at(team, spec.name.as_str()), Part::SecretDefaults, spec)
}

fn plugin(keys: &Keyring, team: &TeamName, row: PluginRow) -> Result<PluginRecord, StoreError> {
    let (name, spec, sealed, created_at, updated_at) = row;
    Ok(PluginRecord {
        spec: open_doc(
            keys,
            &sealed_at(team, &name),
            Part::SecretDefaults,
            || format!("plug-in draft `{name}` in team `{team}`"),
            &spec,
            &sealed,
        )?,
        created_at,
        updated_at,
    })
}

async fn get_plugin<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    name: &PluginName,
) -> Result<Option<PluginRecord>, StoreError> {
    let row: Option<PluginRow> = sqlx::query_as(
        "SELECT name, spec, sealed_defaults, created_at, updated_at FROM plugins WHERE team = $1 AND name = $2",
    )
    .bind(team.as_str())
    .bind(name.as_str())
    .fetch_optional(e)
    .await?;
    row.map(|r| plugin(keys, team, r)).transpose()
}

async fn list_plugins<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
) -> Result<Vec<PluginRecord>, StoreError> {
    let rows: Vec<PluginRow> = sqlx::query_as(
        "SELECT name, spec, sealed_defaults, created_at, updated_at FROM plugins WHERE team = $1 ORDER BY name",
    )
    .bind(team.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter().map(|r| plugin(keys, team, r)).collect()
}

async fn list_plugin_summaries<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
) -> Result<Vec<PluginSummary>, StoreError> {
    // Both subqueries are index look-ups: the newest version by the versions' primary key,
    // the count by `installations_by_plugin`.
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT p.name, p.spec, p.sealed_defaults, p.created_at, p.updated_at, v.number, v.status, \
         (SELECT COUNT(*) FROM installations i WHERE i.team = p.team AND i.plugin = p.name) \
         FROM plugins p LEFT JOIN versions v ON v.team = p.team AND v.plugin = p.name \
         AND v.number = (SELECT MAX(w.number) FROM versions w WHERE w.team = p.team AND w.plugin = p.name) \
         WHERE p.team = $1 ORDER BY p.name",
    )
    .bind(team.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(name, spec, sealed, created_at, updated_at, n, st, used_by)| {
            let latest_version = match (n, st) {
                (Some(n), Some(st)) => Some((number(n)?, status(&st)?)),
                _ => None,
            };
            Ok(PluginSummary {
                plugin: plugin(keys, team, (name, spec, sealed, created_at, updated_at))?,
                latest_version,
                used_by: u64::try_from(used_by).unwrap_or(0),
            })
        })
        .collect()
}

/// A brief's query: kind, description and memory read out of the stored spec by the database,
/// and the whole list folded into one JSON array there, so that the spec's text is neither sent
/// nor decoded and the driver hands over one row instead of one per plug-in (per-row cost
/// dominated the read of a thousand).
macro_rules! brief_sql {
    ($agg_open:literal, $agg_close:literal, $kind:literal, $description:literal, $memory:literal) => {
        concat!(
            "SELECT ",
            $agg_open,
            "'name', p.name, 'description', ",
            $description,
            ", 'kind', ",
            $kind,
            ", 'memory', ",
            $memory,
            ", 'number', v.number, 'status', v.status, 'used_by', ",
            "(SELECT COUNT(*) FROM installations i WHERE i.team = p.team AND i.plugin = p.name)",
            $agg_close,
            " FROM plugins p LEFT JOIN versions v ON v.team = p.team AND v.plugin = p.name ",
            "AND v.number = (SELECT MAX(w.number) FROM versions w WHERE w.team = p.team AND w.plugin = p.name) ",
            "WHERE p.team = $1"
        )
    };
}

fn brief_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => brief_sql!(
            "json_group_array(json_object(",
            "))",
            "json_extract(p.spec, '$.kind')",
            "COALESCE(json_extract(p.spec, '$.description'), '')",
            "CAST(COALESCE(json_extract(p.spec, '$.memory_mib'), 0) AS BIGINT)"
        ),
        Backend::Postgres => brief_sql!(
            "CAST(COALESCE(json_agg(json_build_object(",
            ")), '[]') AS TEXT)",
            "(p.spec::jsonb ->> 'kind')",
            "COALESCE(p.spec::jsonb ->> 'description', '')",
            "CAST(COALESCE(p.spec::jsonb ->> 'memory_mib', '0') AS BIGINT)"
        ),
    }
}

/// One plug-in of [`brief_sql`]'s array.
#[derive(serde::Deserialize)]
struct BriefRow {
    name: String,
    description: String,
    kind: String,
    memory: i64,
    number: Option<i64>,
    status: Option<String>,
    used_by: i64,
}

impl Store {
    /// The team's plug-ins by name, as a list shows them (see [`PluginBrief`]): what
    /// [`Store::list_plugin_summaries`] tells, without reading each draft's spec.
    pub async fn list_plugin_briefs(&self, team: &TeamName) -> Result<Vec<PluginBrief>, StoreError> {
        let query = sqlx::query_scalar::<_, Option<String>>(brief_sql(self.backend())).bind(team.as_str());
        let array = match self.readers() {
            Some(readers) => {
                let mut reader = readers.get().await?;
                let result = query.fetch_one(reader.conn()).await.map_err(StoreError::from);
                reader.done(result)?
            }
            None => query.fetch_one(self.pool()).await?,
        };
        let rows: Vec<BriefRow> = match array {
            Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                what: format!("plug-in list of team `{team}`"),
                reason: e.to_string(),
            })?,
            None => Vec::new(),
        };
        let mut briefs = rows
            .into_iter()
            .map(|row| {
                let latest_version = match (row.number, row.status) {
                    (Some(n), Some(st)) => Some((number(n)?, status(&st)?)),
                    _ => None,
                };
                Ok(PluginBrief {
                    name: row.name,
                    description: row.description,
                    kind: row.kind,
                    memory_mib: u64::try_from(row.memory).unwrap_or(0),
                    latest_version,
                    used_by: u64::try_from(row.used_by).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        briefs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(briefs)
    }
}

impl Tx {
    /// Adds a plug-in draft; `Conflict` if the team has one of that name, `NotFound` if the
    /// team does not exist.
    pub async fn insert_plugin(&mut self, team: &TeamName, spec: &PluginSpec) -> Result<(), StoreError> {
        let key = self.sealing_key().await?;
        if !team_exists(self.conn(), team).await? {
            return Err(no_team(team));
        }
        let at = now();
        let (doc, sealed) = seal_spec(&key, team, spec)?;
        let done = sqlx::query(
            "INSERT INTO plugins (team, name, spec, sealed_defaults, sealed_with, last_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6) ON CONFLICT (team, name) DO NOTHING",
        )
        .bind(team.as_str())
        .bind(spec.name.as_str())
        .bind(doc)
        .bind(sealed)
        .bind(key.id())
        .bind(&at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "plug-in `{}` already exists in team `{team}`",
                spec.name
            )));
        }
        Ok(())
    }

    /// Replaces the draft of `spec.name`; false if there is no such plug-in. Versions already
    /// cut keep their own copy.
    pub async fn update_plugin(&mut self, team: &TeamName, spec: &PluginSpec) -> Result<bool, StoreError> {
        let key = self.sealing_key().await?;
        let (doc, sealed) = seal_spec(&key, team, spec)?;
        let done = sqlx::query(
            "UPDATE plugins SET spec = $1, sealed_defaults = $2, sealed_with = $3, updated_at = $4 \
             WHERE team = $5 AND name = $6",
        )
        .bind(doc)
        .bind(sealed)
        .bind(key.id())
        .bind(now())
        .bind(team.as_str())
        .bind(spec.name.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a plug-in and all its versions; false if there is no such plug-in. `InUse`
    /// while it is installed anywhere: the caller uninstalls it first.
    pub async fn delete_plugin(&mut self, team: &TeamName, plugin: &PluginName) -> Result<bool, StoreError> {
        let keys = self.keys.clone();
        let users = installations_of_plugin(self.conn(), &keys, team, plugin).await?;
        if !users.is_empty() {
            let names: Vec<_> = users.iter().map(|(c, _)| format!("`{c}`")).collect();
            return Err(StoreError::InUse(format!(
                "plug-in `{plugin}` is installed on {}: uninstall it first",
                names.join(", ")
            )));
        }
        // Versions go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM plugins WHERE team = $1 AND name = $2")
            .bind(team.as_str())
            .bind(plugin.as_str())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
