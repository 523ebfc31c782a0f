//! Installations: a plug-in version on a component, kept in install order.

use kato_model::{ComponentName, Installation, PluginName, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{from_json, name, now, to_json};
use crate::components::no_component;
use crate::store::reads;
use crate::{DiscoveryCredential, InstallationRecord, StoreError, Tx};

reads! {
    fn get_installation(team: &TeamName, component: &ComponentName, plugin: &PluginName)
        -> Option<InstallationRecord>;
    /// The component's installations in install order.
    fn list_installations(team: &TeamName, component: &ComponentName) -> Vec<InstallationRecord>;
    /// Where a plug-in is installed, by component.
    fn installations_of_plugin(team: &TeamName, plugin: &PluginName) -> Vec<(ComponentName, InstallationRecord)>;
}

type InstallationRow = (String, String, String, i64);

fn installation(component: &str, plugin: &str, row: InstallationRow) -> Result<InstallationRecord, StoreError> {
    let (doc, nonce, hash, seq) = row;
    Ok(InstallationRecord {
        installation: from_json(|| format!("installation of `{plugin}` on `{component}`"), &doc)?,
        discovery: DiscoveryCredential { nonce, hash },
        seq,
    })
}

async fn get_installation<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
    plugin: &PluginName,
) -> Result<Option<InstallationRecord>, StoreError> {
    let row: Option<InstallationRow> = sqlx::query_as(
        "SELECT doc, discovery_nonce, discovery_hash, seq FROM installations WHERE team = $1 AND component = $2 AND plugin = $3",
    )
    .bind(team.as_str())
    .bind(c.as_str())
    .bind(plugin.as_str())
    .fetch_optional(e)
    .await?;
    row.map(|r| installation(c.as_str(), plugin.as_str(), r)).transpose()
}

pub(crate) async fn list_installations<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
) -> Result<Vec<InstallationRecord>, StoreError> {
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT plugin, doc, discovery_nonce, discovery_hash, seq FROM installations WHERE team = $1 AND component = $2 \
         ORDER BY seq, plugin",
    )
    .bind(team.as_str())
    .bind(c.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(plugin, doc, nonce, hash, seq)| installation(c.as_str(), &plugin, (doc, nonce, hash, seq)))
        .collect()
}

pub(crate) async fn installations_of_plugin<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    plugin: &PluginName,
) -> Result<Vec<(ComponentName, InstallationRecord)>, StoreError> {
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT component, doc, discovery_nonce, discovery_hash, seq FROM installations WHERE team = $1 AND plugin = $2 \
         ORDER BY component",
    )
    .bind(team.as_str())
    .bind(plugin.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(c, doc, nonce, hash, seq)| {
            let record = installation(&c, plugin.as_str(), (doc, nonce, hash, seq))?;
            Ok((name(&c)?, record))
        })
        .collect()
}

impl Tx {
    /// Installs `installation.plugin` on a component, or updates that installation. A first
    /// install takes the next place in the component's install order; an update keeps its
    /// place. `NotFound` if the component or the version does not exist. The revision's
    /// high-water mark follows (see [`Tx::discovery_high_water`]).
    pub async fn put_installation(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        installation: &Installation,
        discovery: &DiscoveryCredential,
    ) -> Result<(), StoreError> {
        let plugin = &installation.plugin;
        // Also locks the component row on PostgreSQL, so concurrent installs on one component
        // get distinct places.
        let seq: Option<(i64,)> = sqlx::query_as(
            "UPDATE components SET last_install = last_install + 1 WHERE team = $1 AND name = $2 \
             RETURNING last_install",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .fetch_optional(self.conn())
        .await?;
        let Some((seq,)) = seq else {
            return Err(no_component(team, c));
        };
        let version = i64::from(installation.version);
        let exists = sqlx::query("SELECT 1 FROM versions WHERE team = $1 AND plugin = $2 AND number = $3")
            .bind(team.as_str())
            .bind(plugin.as_str())
            .bind(version)
            .fetch_optional(self.conn())
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "plug-in `{plugin}` of team `{team}` has no version {}",
                installation.version
            )));
        }
        let at = now();
        sqlx::query(
            "INSERT INTO installations \
             (team, component, plugin, version, seq, doc, discovery_nonce, discovery_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (team, component, plugin) DO UPDATE SET version = excluded.version, \
             doc = excluded.doc, discovery_nonce = excluded.discovery_nonce, \
             discovery_hash = excluded.discovery_hash, updated_at = excluded.updated_at",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin.as_str())
        .bind(version)
        .bind(seq)
        .bind(to_json("an installation", installation)?)
        .bind(&discovery.nonce)
        .bind(&discovery.hash)
        .bind(&at)
        .execute(self.conn())
        .await?;
        self.raise_high_water(team, c, plugin, installation.revision).await?;
        self.touch(team, c, plugin);
        Ok(())
    }

    /// Uninstalls a plug-in from a component; false if it was not installed there.
    pub async fn delete_installation(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        plugin: &PluginName,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM installations WHERE team = $1 AND component = $2 AND plugin = $3")
            .bind(team.as_str())
            .bind(c.as_str())
            .bind(plugin.as_str())
            .execute(self.conn())
            .await?;
        self.touch(team, c, plugin);
        Ok(done.rows_affected() > 0)
    }
}
