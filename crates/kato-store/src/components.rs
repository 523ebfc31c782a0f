//! Components and their dependencies.

use kato_model::{ComponentName, ComponentSpec, TeamName};
use sqlx::any::AnyExecutor;

use crate::codec::{from_json, name, now, to_json};
use crate::store::reads;
use crate::teams::{no_team, team_exists};
use crate::{ComponentRecord, StoreError, Tx};

pub(crate) fn no_component(team: &TeamName, component: &ComponentName) -> StoreError {
    StoreError::NotFound(format!("component `{component}` does not exist in team `{team}`"))
}

reads! {
    fn get_component(team: &TeamName, component: &ComponentName) -> Option<ComponentRecord>;
    /// The team's components by name.
    fn list_components(team: &TeamName) -> Vec<ComponentRecord>;
    /// The components whose `depends_on` names `component`, by name.
    fn components_depending_on(team: &TeamName, component: &ComponentName) -> Vec<ComponentName>;
}

type ComponentRow = (String, String, String);

fn component(team: &TeamName, row: ComponentRow) -> Result<ComponentRecord, StoreError> {
    let (spec, created_at, updated_at) = row;
    Ok(ComponentRecord {
        spec: from_json(|| format!("component in team `{team}`"), &spec)?,
        created_at,
        updated_at,
    })
}

async fn get_component<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
) -> Result<Option<ComponentRecord>, StoreError> {
    let row: Option<ComponentRow> =
        sqlx::query_as("SELECT spec, created_at, updated_at FROM components WHERE team = $1 AND name = $2")
            .bind(team.as_str())
            .bind(c.as_str())
            .fetch_optional(e)
            .await?;
    row.map(|r| component(team, r)).transpose()
}

async fn list_components<'e>(e: impl AnyExecutor<'e>, team: &TeamName) -> Result<Vec<ComponentRecord>, StoreError> {
    let rows: Vec<ComponentRow> =
        sqlx::query_as("SELECT spec, created_at, updated_at FROM components WHERE team = $1 ORDER BY name")
            .bind(team.as_str())
            .fetch_all(e)
            .await?;
    rows.into_iter().map(|r| component(team, r)).collect()
}

async fn components_depending_on<'e>(
    e: impl AnyExecutor<'e>,
    team: &TeamName,
    c: &ComponentName,
) -> Result<Vec<ComponentName>, StoreError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT component FROM component_deps WHERE team = $1 AND depends_on = $2 ORDER BY component")
            .bind(team.as_str())
            .bind(c.as_str())
            .fetch_all(e)
            .await?;
    rows.iter().map(|(n,)| name(n)).collect()
}

impl Tx {
    /// Adds a component; `Conflict` if the team has one of that name, `NotFound` if the team
    /// or a component it depends on does not exist.
    pub async fn insert_component(&mut self, team: &TeamName, spec: &ComponentSpec) -> Result<(), StoreError> {
        if !team_exists(self.conn(), team).await? {
            return Err(no_team(team));
        }
        self.check_dependencies(team, spec).await?;
        let at = now();
        let done = sqlx::query(
            "INSERT INTO components (team, name, spec, last_install, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (team, name) DO NOTHING",
        )
        .bind(team.as_str())
        .bind(spec.name.as_str())
        .bind(to_json("a component", spec)?)
        .bind(&at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "component `{}` already exists in team `{team}`",
                spec.name
            )));
        }
        self.write_dependencies(team, spec).await
    }

    /// Replaces the component `spec.name`; false if there is no such component. `NotFound` if
    /// a component it depends on does not exist. Its installations stay.
    pub async fn update_component(&mut self, team: &TeamName, spec: &ComponentSpec) -> Result<bool, StoreError> {
        self.check_dependencies(team, spec).await?;
        let done = sqlx::query("UPDATE components SET spec = $1, updated_at = $2 WHERE team = $3 AND name = $4")
            .bind(to_json("a component", spec)?)
            .bind(now())
            .bind(team.as_str())
            .bind(spec.name.as_str())
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM component_deps WHERE team = $1 AND component = $2")
            .bind(team.as_str())
            .bind(spec.name.as_str())
            .execute(self.conn())
            .await?;
        self.write_dependencies(team, spec).await?;
        Ok(true)
    }

    /// Deletes a component with its installations; false if there is no such component.
    /// `InUse` while another component depends on it.
    pub async fn delete_component(&mut self, team: &TeamName, c: &ComponentName) -> Result<bool, StoreError> {
        let dependents = components_depending_on(self.conn(), team, c).await?;
        if !dependents.is_empty() {
            let names: Vec<_> = dependents.iter().map(|d| format!("`{d}`")).collect();
            return Err(StoreError::InUse(format!(
                "component `{c}` is a dependency of {}: remove it from their depends_on first",
                names.join(", ")
            )));
        }
        // Installations and the component's own dependency rows go with it (ON DELETE CASCADE).
        let keys = self.keys.clone();
        for record in crate::installations::list_installations(self.conn(), &keys, team, c).await? {
            self.touch(team, c, &record.installation.plugin);
        }
        let done = sqlx::query("DELETE FROM components WHERE team = $1 AND name = $2")
            .bind(team.as_str())
            .bind(c.as_str())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn check_dependencies(&mut self, team: &TeamName, spec: &ComponentSpec) -> Result<(), StoreError> {
        for dep in &spec.depends_on {
            // Checked, not left to the foreign key: a failed statement would abort the whole
            // transaction on PostgreSQL, and this is the caller's mistake to report.
            let found = sqlx::query("SELECT 1 FROM components WHERE team = $1 AND name = $2")
                .bind(team.as_str())
                .bind(dep.as_str())
                .fetch_optional(self.conn())
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!(
                    "component `{dep}`, a dependency of `{}`, does not exist in team `{team}`",
                    spec.name
                )));
            }
        }
        Ok(())
    }

    async fn write_dependencies(&mut self, team: &TeamName, spec: &ComponentSpec) -> Result<(), StoreError> {
        for dep in &spec.depends_on {
            // DO NOTHING: a list naming a dependency twice is still one dependency.
            sqlx::query(
                "INSERT INTO component_deps (team, component, depends_on) VALUES ($1, $2, $3) \
                 ON CONFLICT (team, component, depends_on) DO NOTHING",
            )
            .bind(team.as_str())
            .bind(spec.name.as_str())
            .bind(dep.as_str())
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }
}
