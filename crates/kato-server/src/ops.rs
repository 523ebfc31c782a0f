//! The operations behind the API and `apply`: load, check every rule, write — inside the
//! caller's transaction, so a rejected request changes nothing.

use kato_model::{
    ComponentName, ComponentSpec, InstallRequest, Installation, Meta, PluginKind, PluginName, PluginSpec, Source,
    TeamName, Version, VersionStatus,
};
use kato_store::{InstallationKey, InstallationRecord, Store, Tx, VersionRecord};

use crate::builds::pin::{LogTo, pin_image, record as record_pin};
use crate::discovery::{TokenKey, document, same_content};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const NO_PLATFORM_REGISTRY: &str = "Dockerfile builds need a platform registry to push to: start `kato serve` \
     with --registry HOST[:PORT][/namespace], or install docker-registry so that Kato runs one on loopback";

pub async fn require_team(tx: &mut Tx, team: &TeamName) -> ApiResult<()> {
    if tx.team_exists(team).await? {
        Ok(())
    } else {
        Err(no_team(team))
    }
}

/// A team from the path that the caller may see and that exists (for reads).
pub async fn existing_team(state: &AppState, who: &crate::auth::Principal, team: &str) -> ApiResult<TeamName> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    if !state.store.team_exists(&team).await? {
        return Err(no_team(&team));
    }
    Ok(team)
}

pub fn no_team(team: &TeamName) -> ApiError {
    ApiError::NotFound(format!(
        "team `{team}` does not exist: create it with `kato team create {team}`"
    ))
}

pub fn no_plugin(team: &TeamName, plugin: &PluginName) -> ApiError {
    ApiError::NotFound(format!("plug-in `{plugin}` does not exist in team `{team}`"))
}

pub fn no_component(team: &TeamName, c: &ComponentName) -> ApiError {
    ApiError::NotFound(format!("component `{c}` does not exist in team `{team}`"))
}

/// A component with its dependencies and current installations (in install order).
pub struct ComponentContext {
    pub spec: ComponentSpec,
    pub downstream: Vec<ComponentSpec>,
    pub installs: Vec<(InstallationRecord, Version)>,
}

impl ComponentContext {
    pub fn downstream_refs(&self) -> Vec<&ComponentSpec> {
        self.downstream.iter().collect()
    }

    fn others(&self, except: &PluginName) -> Vec<(PluginName, PluginKind, bool)> {
        self.installs
            .iter()
            .filter(|(r, _)| &r.installation.plugin != except)
            .map(|(r, v)| (r.installation.plugin.clone(), v.spec.kind, r.installation.enabled))
            .collect()
    }
}

/// The reads a component context needs, from the store directly (GETs, no write lock) or
/// inside a transaction (writes).
pub trait Reader: Send {
    fn component(
        &mut self,
        team: &TeamName,
        name: &ComponentName,
    ) -> impl Future<Output = Result<Option<ComponentSpec>, kato_store::StoreError>> + Send;
    fn installations(
        &mut self,
        team: &TeamName,
        name: &ComponentName,
    ) -> impl Future<Output = Result<Vec<InstallationRecord>, kato_store::StoreError>> + Send;
    fn version(
        &mut self,
        team: &TeamName,
        plugin: &PluginName,
        n: u32,
    ) -> impl Future<Output = Result<Option<VersionRecord>, kato_store::StoreError>> + Send;
}

macro_rules! reader {
    ($t:ty) => {
        impl Reader for $t {
            async fn component(
                &mut self,
                team: &TeamName,
                name: &ComponentName,
            ) -> Result<Option<ComponentSpec>, kato_store::StoreError> {
                Ok(self.get_component(team, name).await?.map(|c| c.spec))
            }
            async fn installations(
                &mut self,
                team: &TeamName,
                name: &ComponentName,
            ) -> Result<Vec<InstallationRecord>, kato_store::StoreError> {
                self.list_installations(team, name).await
            }
            async fn version(
                &mut self,
                team: &TeamName,
                plugin: &PluginName,
                n: u32,
            ) -> Result<Option<VersionRecord>, kato_store::StoreError> {
                self.get_version(team, plugin, n).await
            }
        }
    };
}
reader!(Tx);
reader!(&Store);

pub async fn component_context(
    r: &mut impl Reader,
    team: &TeamName,
    name: &ComponentName,
) -> ApiResult<ComponentContext> {
    let spec = r.component(team, name).await?.ok_or_else(|| no_component(team, name))?;
    let mut downstream = Vec::new();
    for dep in &spec.depends_on {
        if let Some(d) = r.component(team, dep).await? {
            downstream.push(d);
        }
    }
    let mut installs = Vec::new();
    for rec in r.installations(team, name).await? {
        let v = r
            .version(team, &rec.installation.plugin, rec.installation.version)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "installation of `{}` names a missing version",
                    rec.installation.plugin
                ))
            })?;
        installs.push((rec, v.version));
    }
    Ok(ComponentContext {
        spec,
        downstream,
        installs,
    })
}

/// Installs or updates `plugin` on `component`. With `version` absent, a new installation takes
/// the newest succeeded version and an existing one keeps its version, unless `to_latest`.
/// A new installation gets a fresh discovery token and a revision above any it had before.
/// Only the admin may make it privileged ([`crate::policy::check_privileged`]).
#[allow(clippy::too_many_arguments)]
pub async fn install(
    tx: &mut Tx,
    who: &crate::auth::Principal,
    tokens: &TokenKey,
    team: &TeamName,
    component: &ComponentName,
    plugin: &PluginName,
    req: &InstallRequest,
    to_latest: bool,
) -> ApiResult<(Installation, Version, bool)> {
    let ctx = component_context(tx, team, component).await?;
    if tx.get_plugin(team, plugin).await?.is_none() {
        return Err(no_plugin(team, plugin));
    }
    let current = ctx
        .installs
        .iter()
        .find(|(r, _)| &r.installation.plugin == plugin)
        .map(|(r, _)| r);
    let number = match (req.version, current) {
        (Some(n), _) => n,
        (None, Some(c)) if !to_latest => c.installation.version,
        _ => tx
            .latest_succeeded_version(team, plugin)
            .await?
            .ok_or_else(|| {
                ApiError::invalid(
                    "version",
                    format!(
                        "plug-in `{plugin}` has no succeeded version yet: create one with `kato plugin build {plugin}`"
                    ),
                )
            })?
            .number,
    };
    let version = tx
        .get_version(team, plugin, number)
        .await?
        .ok_or_else(|| ApiError::invalid("version", format!("plug-in `{plugin}` has no version {number}")))?
        .version;
    let mut inst = Installation::apply_request(
        current.map(|c| &c.installation),
        plugin,
        req,
        &version,
        &ctx.spec,
        &ctx.downstream_refs(),
        &ctx.others(plugin),
    )?;
    crate::policy::check_privileged(who, current.map(|c| &c.installation), &inst, "privileged")?;
    let credential = match current {
        Some(c) => c.discovery.clone(),
        None => {
            // Revisions only grow, across an uninstall and a reinstall too.
            inst.revision = tx.discovery_high_water(team, component, plugin).await? + 1;
            let key = InstallationKey {
                team: team.clone(),
                component: component.clone(),
                plugin: plugin.clone(),
            };
            tokens.new_credential(&key)
        }
    };
    if current.map(|c| &c.installation) != Some(&inst) {
        tx.put_installation(team, component, &inst, &credential).await?;
    }
    Ok((inst, version, current.is_none()))
}

/// Creates or replaces a component, then re-checks its installations against it (ports may
/// have changed) and bumps the revision of plug-ins on components that call it.
pub async fn put_component(tx: &mut Tx, team: &TeamName, spec: &ComponentSpec, create_only: bool) -> ApiResult<bool> {
    spec.validate()?;
    for (i, dep) in spec.depends_on.iter().enumerate() {
        if tx.get_component(team, dep).await?.is_none() {
            return Err(ApiError::invalid(
                format!("depends_on[{i}]"),
                format!("component `{dep}` does not exist in team `{team}`: create it first"),
            ));
        }
    }
    let existing = tx.get_component(team, &spec.name).await?;
    let old = existing.as_ref().map(|c| c.spec.clone());
    let created = match existing {
        Some(_) if create_only => {
            return Err(ApiError::Conflict(format!(
                "component `{}` already exists in team `{team}`: use PUT to replace it",
                spec.name
            )));
        }
        Some(old) if old.spec == *spec => return Ok(false),
        Some(_) => {
            tx.update_component(team, spec).await?;
            false
        }
        None => {
            tx.insert_component(team, spec).await?;
            true
        }
    };
    if let Some(old) = old {
        recheck_installations(tx, team, &old).await?;
        for dependent in tx.components_depending_on(team, &spec.name).await? {
            bump_downstream_revisions(tx, team, &dependent, &old).await?;
        }
    }
    Ok(created)
}

/// The specs of `spec`'s dependencies as they are in the transaction.
async fn dependencies(tx: &mut Tx, team: &TeamName, spec: &ComponentSpec) -> ApiResult<Vec<ComponentSpec>> {
    let mut out = Vec::new();
    for dep in &spec.depends_on {
        if let Some(d) = tx.get_component(team, dep).await? {
            out.push(d.spec);
        }
    }
    Ok(out)
}

/// The component changed from `old`: its installations must still hold, and those whose
/// discovery document changed (a port or a dependency added or removed) get a new revision.
async fn recheck_installations(tx: &mut Tx, team: &TeamName, old: &ComponentSpec) -> ApiResult<()> {
    let name = &old.name;
    let ctx = component_context(tx, team, name).await?;
    let old_downstream = dependencies(tx, team, old).await?;
    let old_downstream: Vec<&ComponentSpec> = old_downstream.iter().collect();
    for (r, version) in &ctx.installs {
        let plugin = &r.installation.plugin;
        let next = Installation::apply_request(
            Some(&r.installation),
            plugin,
            &InstallRequest::default(),
            version,
            &ctx.spec,
            &ctx.downstream_refs(),
            &ctx.others(plugin),
        )
        .map_err(|e| {
            ApiError::invalid(
                e.field,
                format!(
                    "installed plug-in `{plugin}` would break: {} (change or uninstall it first)",
                    e.message
                ),
            )
        })?;
        let mut next = next;
        let before = document(&r.installation, version, old, &old_downstream);
        let after = document(&next, version, &ctx.spec, &ctx.downstream_refs());
        if next.revision == r.installation.revision && !same_content(&before, &after) {
            next.revision += 1;
        }
        if next != r.installation {
            tx.put_installation(team, name, &next, &r.discovery).await?;
        }
    }
    Ok(())
}

/// A dependency changed from `old`: plug-ins whose downstream entries changed see a new revision.
async fn bump_downstream_revisions(
    tx: &mut Tx,
    team: &TeamName,
    name: &ComponentName,
    old: &ComponentSpec,
) -> ApiResult<()> {
    let ctx = component_context(tx, team, name).await?;
    let before: Vec<&ComponentSpec> = ctx
        .downstream
        .iter()
        .map(|d| if d.name == old.name { old } else { d })
        .collect();
    for (r, version) in &ctx.installs {
        if version.spec.group(Meta::DownstreamPort).is_none() {
            continue;
        }
        let a = document(&r.installation, version, &ctx.spec, &before);
        let b = document(&r.installation, version, &ctx.spec, &ctx.downstream_refs());
        if !same_content(&a, &b) {
            let mut next = r.installation.clone();
            next.revision += 1;
            tx.put_installation(team, name, &next, &r.discovery).await?;
        }
    }
    Ok(())
}

pub async fn delete_component(tx: &mut Tx, team: &TeamName, name: &ComponentName) -> ApiResult<()> {
    let dependents = tx.components_depending_on(team, name).await?;
    if !dependents.is_empty() {
        let list: Vec<_> = dependents.iter().map(|d| format!("`{d}`")).collect();
        return Err(ApiError::Conflict(format!(
            "component `{name}` is a dependency of {}: remove it from their depends_on first",
            list.join(", ")
        )));
    }
    if !tx.delete_component(team, name).await? {
        return Err(no_component(team, name));
    }
    Ok(())
}

/// Deletes a plug-in; one in use needs `force`, which uninstalls it everywhere first.
pub async fn delete_plugin(tx: &mut Tx, team: &TeamName, name: &PluginName, force: bool) -> ApiResult<Vec<String>> {
    if tx.get_plugin(team, name).await?.is_none() {
        return Err(no_plugin(team, name));
    }
    let users = tx.installations_of_plugin(team, name).await?;
    let components: Vec<String> = users.iter().map(|(c, _)| c.to_string()).collect();
    if !users.is_empty() && !force {
        return Err(ApiError::Conflict(format!(
            "plug-in `{name}` is installed on {}: uninstall it first, or delete with ?force=true (`--force`) to uninstall it everywhere",
            components.join(", ")
        )));
    }
    for (component, _) in &users {
        tx.delete_installation(team, component, name).await?;
    }
    tx.delete_plugin(team, name).await?;
    Ok(components)
}

/// Snapshots the draft into a new version and builds it: an image source is pinned by
/// [`pin_image`] (the path `apply` takes too); a Dockerfile source is queued for the build
/// worker. The version row is written first (status `building`) so a crash mid-resolution
/// leaves a trace that the next start marks failed, and the pin's log is stored as it comes.
/// `created_by` is who asked for it ([`crate::auth::Caller::author`]).
pub async fn create_version(
    state: &AppState,
    team: &TeamName,
    plugin: &PluginName,
    created_by: &str,
) -> ApiResult<VersionRecord> {
    let mut tx = state.begin().await?;
    require_team(&mut tx, team).await?;
    let spec = tx
        .get_plugin(team, plugin)
        .await?
        .ok_or_else(|| no_plugin(team, plugin))?
        .spec;
    let Source::Image(image) = &spec.source else {
        let record = queue_build(&mut tx, state, team, &spec, created_by).await?;
        state.commit(tx).await?;
        state.builds.wake();
        return Ok(record);
    };
    // Checked again here: a source stored before the rule, or by an older server.
    crate::policy::check_image(&state.builds, team, image, "source.image")?;
    let v = tx
        .insert_version(team, plugin, &spec, VersionStatus::Building, created_by)
        .await?;
    state.commit(tx).await?;
    let key = (team.clone(), plugin.clone(), v.number);
    let pin = pin_image(state, &key, image, LogTo::Stored).await?;
    let mut tx = state.begin().await?;
    record_pin(&mut tx, &pin).await?;
    let record = tx.get_version(team, plugin, v.number).await?;
    state.commit(tx).await?;
    record.ok_or_else(|| ApiError::Internal("version vanished".into()))
}

/// Snapshots `spec` (a Dockerfile source) into a new `queued` version inside the caller's
/// transaction, for the build worker; without a platform registry it fails at once, saying so.
/// The caller wakes the worker ([`crate::builds::Builds::wake`]) once it has committed.
pub async fn queue_build(
    tx: &mut Tx,
    state: &AppState,
    team: &TeamName,
    spec: &PluginSpec,
    created_by: &str,
) -> ApiResult<VersionRecord> {
    let plugin = &spec.name;
    let v = tx
        .insert_version(team, plugin, spec, VersionStatus::Queued, created_by)
        .await?;
    if state.builds.settings.registry.is_none() {
        tx.finish_version(
            team,
            plugin,
            v.number,
            VersionStatus::Failed,
            None,
            Some(NO_PLATFORM_REGISTRY),
        )
        .await?;
    }
    tx.get_version(team, plugin, v.number)
        .await?
        .ok_or_else(|| ApiError::Internal("version vanished".into()))
}

/// Cancels a queued or running build: the version becomes `cancelled` at once, and the server
/// running it stops the builder (this one now, another one when it next renews its claim).
pub async fn cancel_version(
    state: &AppState,
    team: &TeamName,
    plugin: &PluginName,
    n: u32,
) -> ApiResult<VersionRecord> {
    let mut tx = state.begin().await?;
    let v = tx
        .get_version(team, plugin, n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("plug-in `{plugin}` has no version {n}")))?;
    if v.version.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "version {n} of plug-in `{plugin}` already {}: only a queued or building version can be cancelled",
            v.version.status.as_str()
        )));
    }
    tx.finish_version(team, plugin, n, VersionStatus::Cancelled, None, Some("cancelled"))
        .await?;
    let record = tx.get_version(team, plugin, n).await?;
    state.commit(tx).await?;
    state.builds.cancel_local(&(team.clone(), plugin.clone(), n));
    state.builds.progressed();
    record.ok_or_else(|| ApiError::Internal("version vanished".into()))
}

/// Whether a plug-in's draft differs from what its newest version froze.
pub fn draft_changed(draft: &PluginSpec, latest: Option<&Version>) -> bool {
    latest.is_none_or(|v| &v.spec != draft)
}
