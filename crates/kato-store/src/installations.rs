//! Installations: a plug-in version on a component, kept in install order. Their values are
//! sealed at rest, beside the rest of the document.

use kato_model::{ComponentName, Installation, PluginName, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{name, now};
use crate::components::no_component;
use crate::keys::Keyring;
use crate::sealing::{Part, open_doc, place, seal_doc};
use crate::store::sealed_reads;
use crate::{DiscoveryCredential, InstallationRecord, StoreError, Tx};

sealed_reads! {
    fn get_installation(team: &TeamName, component: &ComponentName, plugin: &PluginName)
        -> Option<InstallationRecord>;
    /// The component's installations in install order.
    fn list_installations(team: &TeamName, component: &ComponentName) -> Vec<InstallationRecord>;
    /// Where a plug-in is installed, by component.
    fn installations_of_plugin(team: &TeamName, plugin: &PluginName) -> Vec<(ComponentName, InstallationRecord)>;
}

/// doc, sealed values, discovery nonce and hash, seq.
type InstallationRow = (String, String, String, String, i64);

fn sealed_at(team: &TeamName, component: &str, plugin: &str) -> String {
    place("installations", &[team.as_str(), component, plugin], "sealed_values")
}

fn installation(
    keys: &Keyring,
    team: &TeamName,
    component: &str,
    plugin: &str,
    row: InstallationRow,
) -> Result<InstallationRecord, StoreError> {
    let (doc, sealed, nonce, hash, seq) = row;
    Ok(InstallationRecord {
        installation: open_doc(
            keys,
            &sealed_at(team, component, plugin),
            Part::Values,
            || format!("installation of `{plugin}` on `{component}`"),
            &doc,
            &sealed,
        )?,
        discovery: DiscoveryCredential { nonce, hash },
        seq,
    })
}

async fn get_installation<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    c: &ComponentName,
    plugin: &PluginName,
) -> Result<Option<InstallationRecord>, StoreError> {
    let row: Option<InstallationRow> = sqlx::query_as(
        "SELECT doc, sealed_values, discovery_nonce, discovery_hash, seq FROM installations \
         WHERE team = $1 AND component = $2 AND plugin = $3",
    )
    .bind(team.as_str())
    .bind(c.as_str())
    .bind(plugin.as_str())
    .fetch_optional(e)
    .await?;
    row.map(|r| installation(keys, team, c.as_str(), plugin.as_str(), r))
        .transpose()
}

pub(crate) async fn list_installations<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    c: &ComponentName,
) -> Result<Vec<InstallationRecord>, StoreError> {
    let rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT plugin, doc, sealed_values, discovery_nonce, discovery_hash, seq FROM installations \
         WHERE team = $1 AND component = $2 ORDER BY seq, plugin",
    )
    .bind(team.as_str())
    .bind(c.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(plugin, doc, sealed, nonce, hash, seq)| {
            installation(keys, team, c.as_str(), &plugin, (doc, sealed, nonce, hash, seq))
        })
        .collect()
}

pub(crate) async fn installations_of_plugin<'e>(
    e: impl AnyExecutor<'e>,
    keys: &Keyring,
    team: &TeamName,
    plugin: &PluginName,
) -> Result<Vec<(ComponentName, InstallationRecord)>, StoreError> {
    let rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT component, doc, sealed_values, discovery_nonce, discovery_hash, seq FROM installations \
         WHERE team = $1 AND plugin = $2 ORDER BY component",
    )
    .bind(team.as_str())
    .bind(plugin.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(c, doc, sealed, nonce, hash, seq)| {
            let record = installation(keys, team, &c, plugin.as_str(), (doc, sealed, nonce, hash, seq))?;
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
        let key = self.sealing_key().await?;
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
        let (doc, sealed) = seal_doc(
            &key,
            &sealed_at(team, c.as_str(), plugin.as_str()),
            Part::Values,
            installation,
        )?;
        sqlx::query(
            "INSERT INTO installations \
             (team, component, plugin, version, seq, doc, sealed_values, sealed_with, discovery_nonce, discovery_hash, \
              created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
             ON CONFLICT (team, component, plugin) DO UPDATE SET version = excluded.version, \
             doc = excluded.doc, sealed_values = excluded.sealed_values, sealed_with = excluded.sealed_with, \
             discovery_nonce = excluded.discovery_nonce, discovery_hash = excluded.discovery_hash, \
             updated_at = excluded.updated_at",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin.as_str())
        .bind(version)
        .bind(seq)
        .bind(doc)
        .bind(sealed)
        .bind(key.id())
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
