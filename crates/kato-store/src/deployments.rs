//! What each component should be doing on the target, and what its last deploy applied.

use kato_model::{ComponentName, TeamName};
use sqlx::any::AnyExecutor;

use std::time::Duration;

use crate::codec::{from_now, name, now};
use crate::components::no_component;
use crate::error::corrupt;
use crate::store::reads;
use crate::{DeploymentRecord, Desired, StoreError, Tx};

reads! {
    fn get_deployment(team: &TeamName, component: &ComponentName) -> Option<DeploymentRecord>;
    /// Every deployment row, by team and component.
    fn list_deployments() -> Vec<DeploymentRecord>;
}

type DeploymentRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    String,
);

fn deployment(row: DeploymentRow) -> Result<DeploymentRecord, StoreError> {
    let (team, component, desired, applied_hash, error, attempts, next_try_at, updated_at) = row;
    let desired = match desired.as_str() {
        "deployed" => Desired::Deployed,
        "stopped" => Desired::Stopped,
        other => {
            return Err(corrupt(
                format!("deployment of `{component}` in team `{team}`"),
                format!("unknown desired state `{other}`"),
            ));
        }
    };
    let attempts = u32::try_from(attempts).map_err(|e| {
        corrupt(
            format!("deployment of `{component}` in team `{team}`"),
            format!("attempts {attempts}: {e}"),
        )
    })?;
    Ok(DeploymentRecord {
        team: name(&team)?,
        component: name(&component)?,
        desired,
        applied_hash,
        error,
        attempts,
        next_try_at,
        updated_at,
    })
}

async fn get_deployment<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
) -> Result<Option<DeploymentRecord>, StoreError> {
    let row: Option<DeploymentRow> = sqlx::query_as(
        "SELECT team, component, desired, applied_hash, error, attempts, next_try_at, updated_at \
         FROM deployments WHERE team = $1 AND component = $2",
    )
    .bind(team.as_str())
    .bind(c.as_str())
    .fetch_optional(e)
    .await?;
    row.map(deployment).transpose()
}

async fn list_deployments<'e>(e: impl AnyExecutor<'e>) -> Result<Vec<DeploymentRecord>, StoreError> {
    let rows: Vec<DeploymentRow> = sqlx::query_as(
        "SELECT team, component, desired, applied_hash, error, attempts, next_try_at, updated_at \
         FROM deployments ORDER BY team, component",
    )
    .fetch_all(e)
    .await?;
    rows.into_iter().map(deployment).collect()
}

impl Tx {
    /// Sets what the component should be doing and forgets what was applied and every pending
    /// retry, so the next reconciliation deploys (or stops) it again. `NotFound` if there is no such component.
    pub async fn set_desired(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        desired: Desired,
    ) -> Result<(), StoreError> {
        if self.get_component(team, c).await?.is_none() {
            return Err(no_component(team, c));
        }
        sqlx::query(
            "INSERT INTO deployments (team, component, desired, applied_hash, error, updated_at) \
             VALUES ($1, $2, $3, NULL, NULL, $4) \
             ON CONFLICT (team, component) DO UPDATE SET desired = $3, applied_hash = NULL, error = NULL, \
             attempts = 0, next_try_at = NULL, updated_at = $4",
        )
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(desired.as_str())
        .bind(now())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Records what a reconciliation applied: the hash of the objects played (`None` once
    /// stopped) and its error, with no retry pending. False if the row is gone.
    pub async fn record_applied(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        applied_hash: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET applied_hash = $1, error = $2, attempts = 0, next_try_at = NULL, updated_at = $3 \
             WHERE team = $4 AND component = $5",
        )
        .bind(applied_hash)
        .bind(error)
        .bind(now())
        .bind(team.as_str())
        .bind(c.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a failed deploy of `hash` that is to be retried: its error, the failures in a row
    /// so far, and the retry due `retry_in` from now. False if the row is gone.
    pub async fn record_failed(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        hash: &str,
        error: &str,
        attempts: u32,
        retry_in: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET applied_hash = $1, error = $2, attempts = $3, next_try_at = $4, updated_at = $5 \
             WHERE team = $6 AND component = $7",
        )
        .bind(hash)
        .bind(error)
        .bind(i64::from(attempts))
        .bind(from_now(retry_in))
        .bind(now())
        .bind(team.as_str())
        .bind(c.as_str())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims the due retry of a failed deploy: moves `next_try_at` from `seen` (the value read)
    /// to `lease` from now, provided the component is still to be deployed with `hash`. False when
    /// another replica claimed it first, or a user change or a stop cancelled it.
    pub async fn claim_retry(
        &mut self,
        team: &TeamName,
        c: &ComponentName,
        hash: &str,
        seen: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET next_try_at = $1 WHERE team = $2 AND component = $3 \
             AND desired = 'deployed' AND applied_hash = $4 AND next_try_at = $5",
        )
        .bind(from_now(lease))
        .bind(team.as_str())
        .bind(c.as_str())
        .bind(hash)
        .bind(seen)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets a component's deployment; false if there was none.
    pub async fn delete_deployment(&mut self, team: &TeamName, c: &ComponentName) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM deployments WHERE team = $1 AND component = $2")
            .bind(team.as_str())
            .bind(c.as_str())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
