//! Discovery state beside the installations: token credentials, the revision high-water marks
//! and what each plug-in pod reported applying.

use kato_model::{ComponentName, PluginName, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{name, now};
use crate::error::corrupt;
use crate::store::reads;
use crate::{StoreError, Timestamp, Tx};

/// What a discovery token is derived from (`nonce`, with the server's key) and checked against
/// (`hash`, the token's SHA-256). The clear token is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryCredential {
    pub nonce: String,
    pub hash: String,
}

/// One installation: where a discovery document lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstallationKey {
    pub team: TeamName,
    pub component: ComponentName,
    pub plugin: PluginName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Applied,
    Rejected,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Applied => "applied",
            AckStatus::Rejected => "rejected",
        }
    }
}

/// At most this many pods keep reports per installation: when one more pod reports, those whose
/// last report is the oldest age out (pods of a finished rollout, or names made up by a plug-in).
pub const MAX_ACK_PODS: usize = 128;
/// At most this many reports are kept per pod: its applied revision and the rejections since;
/// older revisions age out first.
pub const MAX_ACKS_PER_POD: usize = 16;

/// A pod's report on one revision of its plug-in's document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRecord {
    pub plugin: PluginName,
    pub pod: String,
    pub revision: u64,
    pub status: AckStatus,
    pub message: String,
    pub at: Timestamp,
}

reads! {
    /// The installation whose discovery token has this hash.
    fn installation_by_discovery_hash(hash: &str) -> Option<InstallationKey>;
    /// The highest revision this plug-in ever had on this component; 0 if never installed.
    fn discovery_high_water(team: &TeamName, component: &ComponentName, plugin: &PluginName) -> u64;
    /// The acks of every plug-in pod of the component, by plug-in, pod and revision.
    fn list_acks(team: &TeamName, component: &ComponentName) -> Vec<AckRecord>;
    /// Installations whose token hash is not filled in yet, with their nonces.
    fn unhashed_discovery_credentials() -> Vec<(InstallationKey, String)>;
}

fn revision(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|e| corrupt("a revision column", e))
}

async fn installation_by_discovery_hash<'e>(
    e: impl AnyExecutor<'e>,
    hash: &str,
) -> Result<Option<InstallationKey>, StoreError> {
    if hash.is_empty() {
        return Ok(None);
    }
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT team, component, plugin FROM installations WHERE discovery_hash = $1")
            .bind(hash)
            .fetch_optional(e)
            .await?;
    row.map(|(t, c, p)| key(&t, &c, &p)).transpose()
}

fn key(t: &str, c: &str, p: &str) -> Result<InstallationKey, StoreError> {
    Ok(InstallationKey {
        team: name(t)?,
        component: name(c)?,
        plugin: name(p)?,
    })
}

async fn discovery_high_water<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
    plugin: &PluginName,
) -> Result<u64, StoreError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT revision FROM discovery_revisions WHERE team = $1 AND component = $2 AND plugin = $3")
            .bind(team.as_str())
            .bind(c.as_str())
            .bind(plugin.as_str())
            .fetch_optional(e)
            .await?;
    row.map_or(Ok(0), |(n,)| revision(n))
}

async fn list_acks<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
) -> Result<Vec<AckRecord>, StoreError> {
    let rows: Vec<(String, String, i64, String, String, String)> = sqlx::query_as(
        "SELECT plugin, pod, revision, status, message, at FROM discovery_acks \
         WHERE team = $1 AND component = $2 ORDER BY plugin, pod, revision",
    )
    .bind(team.as_str())
    .bind(c.as_str())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(plugin, pod, rev, status, message, at)| {
            let status = match status.as_str() {
                "applied" => AckStatus::Applied,
                "rejected" => AckStatus::Rejected,
                other => return Err(corrupt("an ack status column", format!("unknown status `{other}`"))),
            };
            Ok(AckRecord {
                plugin: name(&plugin)?,
                pod,
                revision: revision(rev)?,
                status,
                message,
                at,
            })
        })
        .collect()
}

async fn unhashed_discovery_credentials<'e>(
    e: impl AnyExecutor<'e>,
) -> Result<Vec<(InstallationKey, String)>, StoreError> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT team, component, plugin, discovery_nonce FROM installations WHERE discovery_hash = '' \
         ORDER BY team, component, plugin",
    )
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(t, c, p, nonce)| Ok((key(&t, &c, &p)?, nonce)))
        .collect()
}

impl Tx {
    /// Records that this installation reached `revision`; a lower one leaves the mark as it is.
    pub(crate) async fn raise_high_water(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        plugin: &PluginName,
        revision: u64,
    ) -> Result<(), StoreError> {
        let revision = i64::try_from(revision).map_err(|e| corrupt("a revision", e))?;
        sqlx::query(
            "INSERT INTO discovery_revisions (team, component, plugin, revision) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (team, component, plugin) DO UPDATE SET revision = excluded.revision \
             WHERE excluded.revision > discovery_revisions.revision",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin.as_str())
        .bind(revision)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Replaces an installation's token credential (rotation); false if it is not installed.
    pub async fn set_discovery_credential(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        plugin: &PluginName,
        credential: &DiscoveryCredential,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE installations SET discovery_nonce = $1, discovery_hash = $2 \
             WHERE team = $3 AND component = $4 AND plugin = $5",
        )
        .bind(&credential.nonce)
        .bind(&credential.hash)
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin.as_str())
        .execute(self.conn())
        .await?;
        // Servers drop what they cached about the old token.
        self.touch(team, c, plugin);
        Ok(done.rows_affected() > 0)
    }

    /// Stores a pod's ack. An `applied` ack drops that pod's older reports, which it supersedes.
    /// The reports stay bounded: [`MAX_ACKS_PER_POD`] per pod, [`MAX_ACK_PODS`] pods per
    /// installation. `NotFound` if the plug-in is not installed on the component.
    pub async fn put_ack(&mut self, team: &TeamName, c: &ComponentName, ack: &AckRecord) -> Result<(), StoreError> {
        let plugin = &ack.plugin;
        let installed = sqlx::query("SELECT 1 FROM installations WHERE team = $1 AND component = $2 AND plugin = $3")
            .bind(team.as_str())
            .bind(c.as_str())
            .bind(plugin.as_str())
            .fetch_optional(self.conn())
            .await?;
        if installed.is_none() {
            return Err(StoreError::NotFound(format!(
                "plug-in `{plugin}` is not installed on component `{c}` of team `{team}`"
            )));
        }
        let revision = i64::try_from(ack.revision).map_err(|e| corrupt("a revision", e))?;
        if ack.status == AckStatus::Applied {
            sqlx::query(
                "DELETE FROM discovery_acks WHERE team = $1 AND component = $2 AND plugin = $3 AND pod = $4 \
                 AND revision < $5",
            )
            .bind(team.as_str())
            .bind(c.as_str())
            .bind(plugin.as_str())
            .bind(&ack.pod)
            .bind(revision)
            .execute(self.conn())
            .await?;
        }
        sqlx::query(
            "INSERT INTO discovery_acks (team, component, plugin, pod, revision, status, message, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (team, component, plugin, pod, revision) DO UPDATE SET status = excluded.status, \
             message = excluded.message, at = excluded.at",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin.as_str())
        .bind(&ack.pod)
        .bind(revision)
        .bind(ack.status.as_str())
        .bind(&ack.message)
        .bind(if ack.at.is_empty() { now() } else { ack.at.clone() })
        .execute(self.conn())
        .await?;
        self.bound_acks(team, c, ack).await
    }

    /// Ages out the reports over the bounds after `ack` was stored: the pod's oldest revisions,
    /// then the pods (never `ack`'s) whose last report is the oldest.
    async fn bound_acks(&mut self, team: &TeamName, c: &ComponentName, ack: &AckRecord) -> Result<(), StoreError> {
        let plugin = ack.plugin.as_str();
        sqlx::query(
            "DELETE FROM discovery_acks WHERE team = $1 AND component = $2 AND plugin = $3 AND pod = $4 \
             AND revision NOT IN (SELECT revision FROM discovery_acks WHERE team = $1 AND component = $2 \
             AND plugin = $3 AND pod = $4 ORDER BY revision DESC LIMIT $5)",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin)
        .bind(&ack.pod)
        .bind(MAX_ACKS_PER_POD as i64)
        .execute(self.conn())
        .await?;
        let pods: Vec<(String,)> = sqlx::query_as(
            "SELECT pod FROM discovery_acks WHERE team = $1 AND component = $2 AND plugin = $3 \
             GROUP BY pod ORDER BY MAX(at) DESC, pod DESC",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(plugin)
        .fetch_all(self.conn())
        .await?;
        if pods.len() <= MAX_ACK_PODS {
            return Ok(());
        }
        let keep = MAX_ACK_PODS - 1;
        let old = pods.iter().map(|(p,)| p).filter(|p| **p != ack.pod).skip(keep);
        for pod in old {
            sqlx::query("DELETE FROM discovery_acks WHERE team = $1 AND component = $2 AND plugin = $3 AND pod = $4")
                .bind(team.as_str())
                .bind(c.as_str())
                .bind(plugin)
                .bind(pod)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}

/// The PostgreSQL channel on which committed discovery changes are announced.
const CHANNEL: &str = "kato_discovery";

/// What [`Store::listen_discovery`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A transaction, of this server or another, committed a change to this installation.
    Changed(InstallationKey),
    /// The connection was lost and is back: changes in between were missed, so every cached
    /// document must be read again.
    Resync,
}

impl InstallationKey {
    fn payload(&self) -> String {
        format!("{}/{}/{}", self.team, self.component, self.plugin)
    }

    fn from_payload(p: &str) -> Option<InstallationKey> {
        let mut parts = p.split('/');
        let (t, c, pl) = (parts.next()?, parts.next()?, parts.next()?);
        key(t, c, pl).ok()
    }
}

impl Tx {
    /// On PostgreSQL, announces every touched installation on the discovery channel; the
    /// database delivers the announcements when (and only if) the transaction commits, to every
    /// replica listening. Nothing to do on SQLite, where the server is the only process.
    pub async fn notify_discovery(&mut self) -> Result<(), StoreError> {
        if self.backend() != crate::Backend::Postgres {
            return Ok(());
        }
        let payloads: Vec<String> = self.touched().iter().map(InstallationKey::payload).collect();
        for p in payloads {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(p)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}

impl crate::Store {
    /// PostgreSQL only (`None` on SQLite): committed discovery changes of every replica, as
    /// they happen. The listening task ends when the receiver is dropped.
    pub async fn listen_discovery(&self) -> Result<Option<tokio::sync::mpsc::Receiver<DiscoveryEvent>>, StoreError> {
        let Some(url) = self.postgres_url() else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = tx.closed() => return,
                    got = listener.try_recv() => got,
                };
                let event = match event {
                    Ok(Some(n)) => match InstallationKey::from_payload(n.payload()) {
                        Some(k) => DiscoveryEvent::Changed(k),
                        None => continue,
                    },
                    // Lost: the next `try_recv` reconnects and listens again.
                    Ok(None) => DiscoveryEvent::Resync,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        DiscoveryEvent::Resync
                    }
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}
