//! Plug-in drafts.

use kato_model::{PluginName, PluginSpec, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{from_json, now, to_json};
use crate::installations::installations_of_plugin;
use crate::store::reads;
use crate::teams::{no_team, team_exists};
use crate::{PluginRecord, StoreError, Tx};

pub(crate) fn no_plugin(team: &TeamName, plugin: &PluginName) -> StoreError {
    StoreError::NotFound(format!("plug-in `{plugin}` does not exist in team `{team}`"))
}

reads! {
    fn get_plugin(team: &TeamName, plugin: &PluginName) -> Option<PluginRecord>;
    /// The team's plug-ins by name.
    fn list_plugins(team: &TeamName) -> Vec<PluginRecord>;
}

type PluginRow = (String, String, String);

fn plugin(team: &TeamName, row: PluginRow) -> Result<PluginRecord, StoreError> {
    let (spec, created_at, updated_at) = row;
    Ok(PluginRecord {
        spec: from_json(|| format!("plug-in draft in team `{team}`"), &spec)?,
        created_at,
        updated_at,
    })
}

async fn get_plugin<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    name: &PluginName,
) -> Result<Option<PluginRecord>, StoreError> {
    let row: Option<PluginRow> =
        sqlx::query_as("SELECT spec, created_at, updated_at FROM plugins WHERE team = $1 AND name = $2")
            .bind(team.as_str())
            .bind(name.as_str())
            .fetch_optional(e)
            .await?;
    row.map(|r| plugin(team, r)).transpose()
}

async fn list_plugins<'e>(e: impl AnyExecutor<'e>, team: &TeamName) -> Result<Vec<PluginRecord>, StoreError> {
    let rows: Vec<PluginRow> =
        sqlx::query_as("SELECT spec, created_at, updated_at FROM plugins WHERE team = $1 ORDER BY name")
            .bind(team.as_str())
            .fetch_all(e)
            .await?;
    rows.into_iter().map(|r| plugin(team, r)).collect()
}

impl Tx {
    /// Adds a plug-in draft; `Conflict` if the team has one of that name, `NotFound` if the
    /// team does not exist.
    pub async fn insert_plugin(&mut self, team: &TeamName, spec: &PluginSpec) -> Result<(), StoreError> {
        if !team_exists(self.conn(), team).await? {
            return Err(no_team(team));
        }
        let at = now();
        let done = sqlx::query(
            "INSERT INTO plugins (team, name, spec, last_version, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (team, name) DO NOTHING",
        )
        .bind(team.as_str())
        .bind(spec.name.as_str())
        .bind(to_json("a plug-in", spec)?)
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
        let done = sqlx::query("UPDATE plugins SET spec = $1, updated_at = $2 WHERE team = $3 AND name = $4")
            .bind(to_json("a plug-in", spec)?)
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
        let users = installations_of_plugin(self.conn(), team, plugin).await?;
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
