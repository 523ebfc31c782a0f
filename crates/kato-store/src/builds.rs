//! Builds: claiming queued versions with a lease, renewing and reaping leases, provenance, and
//! the build log.

use std::time::Duration;

use kato_model::{PluginName, Provenance, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{from_now, name, now, number, to_json};
use crate::store::reads;
use crate::versions::VersionKey;
use crate::{Backend, LogLine, StoreError, Tx};

reads! {
    /// The version's log lines numbered above `after`, in order (`after = 0`: all of them).
    fn build_log(team: &TeamName, plugin: &PluginName, number: u32, after: i64) -> Vec<LogLine>;
    /// Versions `building` whose lease ran out: their server stopped without finishing them.
    fn expired_builds() -> Vec<VersionKey>;
}

async fn build_log<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    plugin: &PluginName,
    n: u32,
    after: i64,
) -> Result<Vec<LogLine>, StoreError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, at, line FROM build_logs WHERE team = $1 AND plugin = $2 AND number = $3 AND seq > $4 \
         ORDER BY seq",
    )
    .bind(team.as_str())
    .bind(plugin.as_str())
    .bind(i64::from(n))
    .bind(after)
    .fetch_all(e)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, at, line)| LogLine { seq, at, line })
        .collect())
}

async fn expired_builds<'e>(e: impl AnyExecutor<'e>) -> Result<Vec<VersionKey>, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT team, plugin, number FROM versions WHERE status = 'building' \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY created_at, team, plugin, number",
    )
    .bind(now())
    .fetch_all(e)
    .await?;
    rows.into_iter()
        .map(|(t, p, n)| Ok((name(&t)?, name(&p)?, number(n)?)))
        .collect()
}

impl Tx {
    /// Moves the oldest `queued` version to `building`, held by `owner` for `lease` (renew it
    /// with [`Tx::renew_lease`]). Two servers never claim the same version: on PostgreSQL the
    /// row is taken with `FOR UPDATE SKIP LOCKED`, on SQLite writers are serialised.
    pub async fn claim_build(&mut self, owner: &str, lease: Duration) -> Result<Option<VersionKey>, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => {
                "UPDATE versions SET status = 'building', lease_owner = $1, lease_until = $2 \
                 WHERE (team, plugin, number) IN \
                 (SELECT team, plugin, number FROM versions WHERE status = 'queued' \
                  ORDER BY created_at, team, plugin, number LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING team, plugin, number"
            }
            Backend::Sqlite => {
                "UPDATE versions SET status = 'building', lease_owner = $1, lease_until = $2 \
                 WHERE (team, plugin, number) IN \
                 (SELECT team, plugin, number FROM versions WHERE status = 'queued' \
                  ORDER BY created_at, team, plugin, number LIMIT 1) \
                 RETURNING team, plugin, number"
            }
        };
        let row: Option<(String, String, i64)> = sqlx::query_as(sql)
            .bind(owner)
            .bind(from_now(lease))
            .fetch_optional(self.conn())
            .await?;
        row.map(|(t, p, n)| Ok((name(&t)?, name(&p)?, number(n)?))).transpose()
    }

    /// Extends `owner`'s hold on a build; false when the build is no longer `owner`'s to run
    /// (cancelled, or failed by another server after the lease ran out).
    pub async fn renew_lease(&mut self, key: &VersionKey, owner: &str, lease: Duration) -> Result<bool, StoreError> {
        let (team, plugin, n) = key;
        let done = sqlx::query(
            "UPDATE versions SET lease_until = $1 WHERE team = $2 AND plugin = $3 AND number = $4 \
             AND status = 'building' AND lease_owner = $5",
        )
        .bind(from_now(lease))
        .bind(team.as_str())
        .bind(plugin.as_str())
        .bind(i64::from(*n))
        .bind(owner)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records what the version's image was made from.
    pub async fn set_provenance(&mut self, key: &VersionKey, provenance: &Provenance) -> Result<(), StoreError> {
        let (team, plugin, n) = key;
        sqlx::query("UPDATE versions SET provenance = $1 WHERE team = $2 AND plugin = $3 AND number = $4")
            .bind(to_json("a provenance", provenance)?)
            .bind(team.as_str())
            .bind(plugin.as_str())
            .bind(i64::from(*n))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Appends lines (with the time each was printed) to the version's log.
    pub async fn append_build_log(&mut self, key: &VersionKey, lines: &[(String, String)]) -> Result<(), StoreError> {
        let (team, plugin, n) = key;
        let last: Option<(i64,)> = sqlx::query_as(
            "SELECT MAX(seq) FROM build_logs WHERE team = $1 AND plugin = $2 AND number = $3 HAVING MAX(seq) IS NOT NULL",
        )
        .bind(team.as_str())
        .bind(plugin.as_str())
        .bind(i64::from(*n))
        .fetch_optional(self.conn())
        .await?;
        let mut seq = last.map_or(0, |(s,)| s);
        for (at, line) in lines {
            seq += 1;
            sqlx::query("INSERT INTO build_logs (team, plugin, number, seq, at, line) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(team.as_str())
                .bind(plugin.as_str())
                .bind(i64::from(*n))
                .bind(seq)
                .bind(at)
                .bind(line)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}
