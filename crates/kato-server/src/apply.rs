//! `kato apply`: plug-ins, components and their installations from declarative documents,
//! written in one transaction so that a batch lands whole or not at all.
//!
//! A document is `{kind: Plugin|Component, metadata: {name, team?}, spec: {…}}`. A plug-in
//! whose draft differs from its newest version gets a new version, made as `POST …/versions`
//! makes one (its image pinned before the transaction: see [`prepare_versions`]). A component's `spec.plugins`, when present, is the full set of its
//! installations: plug-ins not listed are uninstalled; an entry without `version` runs the
//! newest succeeded version.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use kato_model::{ComponentSpec, InstallRequest, PluginName, PluginSpec, Source, TeamName, VersionStatus};
use kato_store::Tx;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::Body;
use crate::auth::{Caller, Principal};
use crate::builds::pin::{LogTo, Pin, pin_image, record as record_pin};
use crate::error::{ApiError, ApiResult};
use crate::ops::{self, NO_PLATFORM_REGISTRY, draft_changed, require_team};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub documents: Vec<Value>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub kind: &'static str,
    pub name: String,
    /// created, updated, unchanged, versioned (a new version was cut), installed, uninstalled
    pub action: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    team: Option<TeamName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default, rename = "apiVersion")]
    _api_version: Option<String>,
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Installed {
    plugin: PluginName,
    #[serde(flatten)]
    request: InstallRequest,
}

enum Parsed {
    Plugin(PluginSpec),
    Component(ComponentSpec, Option<Vec<Installed>>),
}

fn parse(i: usize, team: &TeamName, doc: &Value) -> ApiResult<Parsed> {
    let field = |f: &str| format!("documents[{i}]{f}");
    let doc: Document = serde_json::from_value(doc.clone()).map_err(|e| ApiError::invalid(field(""), e.to_string()))?;
    if let Some(t) = &doc.metadata.team
        && t != team
    {
        return Err(ApiError::invalid(
            field(".metadata.team"),
            format!("names team `{t}`, but this apply is for team `{team}`"),
        ));
    }
    let mut spec = doc.spec;
    spec.insert("name".into(), Value::String(doc.metadata.name));
    match doc.kind.as_str() {
        "Plugin" => {
            let mut p: PluginSpec = serde_json::from_value(Value::Object(spec))
                .map_err(|e| ApiError::invalid(field(".spec"), e.to_string()))?;
            p.validate()
                .map_err(|e| ApiError::invalid(field(&format!(".spec.{}", e.field)), e.message))?;
            Ok(Parsed::Plugin(p))
        }
        "Component" => {
            let plugins = match spec.remove("plugins") {
                None => None,
                Some(v) => Some(
                    serde_json::from_value::<Vec<Installed>>(v)
                        .map_err(|e| ApiError::invalid(field(".spec.plugins"), e.to_string()))?,
                ),
            };
            let c: ComponentSpec = serde_json::from_value(Value::Object(spec))
                .map_err(|e| ApiError::invalid(field(".spec"), e.to_string()))?;
            c.validate()
                .map_err(|e| ApiError::invalid(field(&format!(".spec.{}", e.field)), e.message))?;
            Ok(Parsed::Component(c, plugins))
        }
        other => Err(ApiError::invalid(
            field(".kind"),
            format!("`{other}` is not a kind Kato applies: use Plugin or Component"),
        )),
    }
}

/// One `kind: Plugin` document (as `kato apply` sends it: YAML read into JSON), checked as an
/// apply checks it; the default catalog's definitions are read with it.
pub(crate) fn plugin_document(team: &TeamName, doc: &Value) -> ApiResult<PluginSpec> {
    match parse(0, team, doc)? {
        Parsed::Plugin(p) => Ok(p),
        Parsed::Component(c, _) => Err(ApiError::invalid(
            "documents[0].kind",
            format!("`{}` is a Component: a plug-in definition is `kind: Plugin`", c.name),
        )),
    }
}

pub async fn handler(
    State(state): State<Arc<AppState>>,
    who: Caller,
    Path(team): Path<String>,
    Body(req): Body<ApplyRequest>,
) -> ApiResult<Json<Vec<Outcome>>> {
    let team: TeamName = team.parse()?;
    who.principal.check_team(&team)?;
    Ok(Json(apply(&state, &who, &team, &req.documents).await?))
}

/// A component document: its index, its spec and, when listed, its full set of installations.
type ComponentDoc = (usize, ComponentSpec, Option<Vec<Installed>>);

/// How many times an apply starts over when other requests cut versions of its plug-ins
/// between its pins and its transaction.
const ATTEMPTS: u32 = 3;

/// Applies `documents` to `team` as `caller`, who is recorded as the author of the versions it
/// cuts.
pub async fn apply(state: &AppState, caller: &Caller, team: &TeamName, documents: &[Value]) -> ApiResult<Vec<Outcome>> {
    let who = &caller.principal;
    let (mut plugins, components) = parse_all(team, documents)?;
    check_against_stored(state, who, team, &mut plugins).await?;
    for (i, c, _) in &components {
        crate::policy::check_image(&state.builds, team, &c.image, &format!("documents[{i}].spec.image"))?;
    }
    let plugins: Vec<PluginSpec> = plugins.into_iter().map(|(_, p)| p).collect();
    let mut attempt = 1;
    loop {
        let versions = prepare_versions(state, team, &plugins).await?;
        match write(state, caller, team, &plugins, versions, &components).await? {
            Ok(out) => return Ok(out),
            Err(Raced(plugin)) if attempt < ATTEMPTS => {
                tracing::debug!(%plugin, attempt, "a version was cut while apply ran: starting over");
                attempt += 1;
            }
            Err(Raced(plugin)) => {
                return Err(ApiError::Conflict(format!(
                    "plug-in `{plugin}` kept getting new versions from other requests while this apply ran: apply again"
                )));
            }
        }
    }
}

/// A plug-in document: its index and its spec.
type PluginDoc = (usize, PluginSpec);

/// The plug-ins and the components of an apply.
fn parse_all(team: &TeamName, documents: &[Value]) -> ApiResult<(Vec<PluginDoc>, Vec<ComponentDoc>)> {
    let mut plugins = Vec::new();
    let mut components = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, doc) in documents.iter().enumerate() {
        match parse(i, team, doc)? {
            Parsed::Plugin(p) => {
                if !seen.insert(("Plugin", p.name.to_string())) {
                    return Err(ApiError::invalid(
                        format!("documents[{i}]"),
                        format!("plug-in `{}` is defined twice", p.name),
                    ));
                }
                plugins.push((i, p));
            }
            Parsed::Component(c, inst) => {
                if !seen.insert(("Component", c.name.to_string())) {
                    return Err(ApiError::invalid(
                        format!("documents[{i}]"),
                        format!("component `{}` is defined twice", c.name),
                    ));
                }
                if let Some(list) = &inst {
                    let mut names = BTreeSet::new();
                    if let Some(dup) = list.iter().find(|x| !names.insert(&x.plugin)) {
                        return Err(ApiError::Conflict(format!(
                            "documents[{i}].spec.plugins: `{}` is listed twice: a plug-in is installed on a component at most once",
                            dup.plugin
                        )));
                    }
                }
                components.push((i, c, inst));
            }
        }
    }
    Ok((plugins, components))
}

/// Each plug-in document against the stored plug-in: the sources it sets or changes must be
/// ones this token may set, and its image the team's own if in the platform registry (see
/// [`crate::policy`]); secret defaults it leaves out (a
/// document made from a GET, which never shows them) keep their stored value.
async fn check_against_stored(
    state: &AppState,
    who: &Principal,
    team: &TeamName,
    plugins: &mut [PluginDoc],
) -> ApiResult<()> {
    for (i, p) in plugins {
        let stored = state.store.get_plugin(team, &p.name).await?.map(|r| r.spec);
        crate::policy::check_source(
            who,
            state.builds.settings.allow_local_repos,
            &p.source,
            stored.as_ref().map(|s| &s.source),
            &format!("documents[{i}].spec."),
        )?;
        crate::policy::check_plugin_image(&state.builds, team, &p.source, &format!("documents[{i}].spec."))?;
        if let Some(stored) = &stored {
            p.keep_secret_defaults_from(stored);
        }
    }
    Ok(())
}

/// The new version a plug-in document cuts, prepared before the transaction.
enum NewVersion {
    /// An image source, pinned for the number the version is expected to get.
    Pinned(Box<Pin>),
    /// A Dockerfile source, queued for the build worker.
    Queued,
    /// A version that fails at once, and why.
    Failed(&'static str),
}

/// Another request cut a version of this plug-in after its image was pinned for that number.
struct Raced(PluginName);

/// Pins the images of drafts that need a new version, through the path `POST …/versions`
/// takes ([`pin_image`]), so an applied version is the same kind of version: copied into the
/// platform registry with the team's credentials, with its provenance and its log.
///
/// This happens before the transaction, because a registry may be slow and a registry failure
/// must reject the apply with nothing changed: no version, no log, no plug-in. The version row
/// cannot exist yet, so the image is pinned for the number the version will get (one more
/// than the plug-in's last: it lands at `…/team/plugin:vN` as with `POST …/versions`), its
/// log lines are held, and the transaction writes them with the version. Should another
/// request cut a version of the plug-in in between, the transaction sees a different number
/// and the apply starts over (its copy is then quick: the blobs are there). In that race the
/// tag `vN` may end up naming this apply's image instead of the other version's; both versions
/// stay pinned by digest, so what runs is never wrong. A rejected apply may leave a copied
/// image in the platform registry, under a tag that the next version's copy replaces.
async fn prepare_versions(
    state: &AppState,
    team: &TeamName,
    plugins: &[PluginSpec],
) -> ApiResult<Vec<Option<NewVersion>>> {
    let mut out = Vec::new();
    for p in plugins {
        let latest = state.store.list_versions(team, &p.name).await?.pop().map(|r| r.version);
        if !draft_changed(p, latest.as_ref()) {
            out.push(None);
            continue;
        }
        let new = match &p.source {
            Source::Image(image) => {
                let n = state.store.next_version_number(team, &p.name).await?;
                let pin = pin_image(state, &(team.clone(), p.name.clone(), n), image, LogTo::Held).await?;
                if let Err(e) = pin.outcome {
                    return Err(e.into());
                }
                NewVersion::Pinned(Box::new(pin))
            }
            Source::Dockerfile(_) if state.builds.settings.registry.is_none() => {
                NewVersion::Failed(NO_PLATFORM_REGISTRY)
            }
            Source::Dockerfile(_) => NewVersion::Queued,
        };
        out.push(Some(new));
    }
    Ok(out)
}

/// Writes every document in one transaction; `Raced` (nothing written) when a pinned version
/// did not get the number it was pinned for.
async fn write(
    state: &AppState,
    caller: &Caller,
    team: &TeamName,
    plugins: &[PluginSpec],
    versions: Vec<Option<NewVersion>>,
    components: &[ComponentDoc],
) -> ApiResult<Result<Vec<Outcome>, Raced>> {
    let mut out = Vec::new();
    let mut queued = false;
    let mut tx = state.begin().await?;
    require_team(&mut tx, team).await?;
    for (p, new) in plugins.iter().zip(versions) {
        let action = match tx.get_plugin(team, &p.name).await? {
            None => {
                tx.insert_plugin(team, p).await?;
                "created"
            }
            Some(cur) if cur.spec != *p => {
                tx.update_plugin(team, p).await?;
                "updated"
            }
            Some(_) => "unchanged",
        };
        out.push(Outcome {
            kind: "Plugin",
            name: p.name.to_string(),
            action: action.into(),
        });
        let Some(new) = new else { continue };
        let status = match new {
            NewVersion::Queued => VersionStatus::Queued,
            _ => VersionStatus::Building,
        };
        let v = tx.insert_version(team, &p.name, p, status, &caller.author()).await?;
        match new {
            NewVersion::Queued => queued = true,
            NewVersion::Failed(why) => {
                tx.finish_version(team, &p.name, v.number, VersionStatus::Failed, None, Some(why))
                    .await?
            }
            // Dropping the transaction rolls everything back.
            NewVersion::Pinned(pin) if pin.key.2 != v.number => return Ok(Err(Raced(p.name.clone()))),
            NewVersion::Pinned(pin) => record_pin(&mut tx, &pin).await?,
        }
        out.push(Outcome {
            kind: "Plugin",
            name: p.name.to_string(),
            action: format!("versioned {}", v.number),
        });
    }
    write_components(&mut tx, team, components, &mut out).await?;
    write_installations(&mut tx, state, &caller.principal, team, components, &mut out).await?;
    state.commit(tx).await?;
    if queued {
        state.builds.wake();
    }
    Ok(Ok(out))
}

/// Components in dependency order: a pass puts every component whose dependencies exist.
async fn write_components(
    tx: &mut Tx,
    team: &TeamName,
    components: &[ComponentDoc],
    out: &mut Vec<Outcome>,
) -> ApiResult<()> {
    let mut pending: Vec<_> = components.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for entry in pending {
            let (_, c, _) = entry;
            let mut ready = true;
            for d in &c.depends_on {
                ready &= tx.get_component(team, d).await?.is_some();
            }
            if ready {
                let existed = tx.get_component(team, &c.name).await?.map(|x| x.spec);
                ops::put_component(tx, team, c, false).await?;
                let action = match existed {
                    None => "created",
                    Some(old) if old != *c => "updated",
                    Some(_) => "unchanged",
                };
                out.push(Outcome {
                    kind: "Component",
                    name: c.name.to_string(),
                    action: action.into(),
                });
            } else {
                rest.push(entry);
            }
        }
        if rest.len() == before {
            let (i, c, _) = rest[0];
            let missing: Vec<String> = c.depends_on.iter().map(|d| d.to_string()).collect();
            return Err(ApiError::invalid(
                format!("documents[{i}].spec.depends_on"),
                format!(
                    "component `{}` depends on {} which neither exist nor are applied here (or they depend on each other)",
                    c.name,
                    missing.join(", ")
                ),
            ));
        }
        pending = rest;
    }
    Ok(())
}

/// The installations of components that list them: those not listed are uninstalled.
async fn write_installations(
    tx: &mut Tx,
    state: &AppState,
    who: &Principal,
    team: &TeamName,
    components: &[ComponentDoc],
    out: &mut Vec<Outcome>,
) -> ApiResult<()> {
    for (i, c, declared) in components {
        let Some(declared) = declared else { continue };
        let current = tx.list_installations(team, &c.name).await?;
        for r in &current {
            if !declared.iter().any(|d| d.plugin == r.installation.plugin) {
                tx.delete_installation(team, &c.name, &r.installation.plugin).await?;
                out.push(Outcome {
                    kind: "Installation",
                    name: format!("{}/{}", c.name, r.installation.plugin),
                    action: "uninstalled".into(),
                });
            }
        }
        for (j, d) in declared.iter().enumerate() {
            let before = current
                .iter()
                .find(|r| r.installation.plugin == d.plugin)
                .map(|r| r.installation.clone());
            let (after, _, created) = ops::install(
                tx,
                who,
                &state.discovery.key,
                team,
                &c.name,
                &d.plugin,
                &d.request,
                d.request.version.is_none(),
            )
            .await
            .map_err(|e| match e {
                ApiError::Invalid(inv) => {
                    ApiError::invalid(format!("documents[{i}].spec.plugins[{j}].{}", inv.field), inv.message)
                }
                ApiError::ForbiddenField(inv) => {
                    ApiError::forbidden_field(format!("documents[{i}].spec.plugins[{j}].{}", inv.field), inv.message)
                }
                other => other,
            })?;
            let action = if created {
                "installed"
            } else if before.as_ref() != Some(&after) {
                "updated"
            } else {
                "unchanged"
            };
            out.push(Outcome {
                kind: "Installation",
                name: format!("{}/{}", c.name, d.plugin),
                action: action.into(),
            });
        }
    }
    Ok(())
}
