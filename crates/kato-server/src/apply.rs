//! `kato apply`: plug-ins, components and their installations from declarative documents,
//! written in one transaction so that a batch lands whole or not at all.
//!
//! A document is `{kind: Plugin|Component, metadata: {name, team?}, spec: {…}}`. A plug-in
//! whose draft differs from its newest version gets a new version (its image resolved before
//! the transaction). A component's `spec.plugins`, when present, is the full set of its
//! installations: plug-ins not listed are uninstalled; an entry without `version` runs the
//! newest succeeded version.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use kato_model::{ComponentSpec, InstallRequest, PluginName, PluginSpec, Source, TeamName, VersionStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::Body;
use crate::auth::Principal;
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

pub async fn handler(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path(team): Path<String>,
    Body(req): Body<ApplyRequest>,
) -> ApiResult<Json<Vec<Outcome>>> {
    let team: TeamName = team.parse()?;
    who.check_team(&team)?;
    Ok(Json(apply(&state, &team, &req.documents).await?))
}

pub async fn apply(state: &AppState, team: &TeamName, documents: &[Value]) -> ApiResult<Vec<Outcome>> {
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
                plugins.push(p);
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

    // Resolve the images of drafts that need a new version before the transaction: the
    // registry may be slow, and a failure must leave everything as it was.
    let mut pinned = Vec::new();
    for p in &plugins {
        let latest = state.store.list_versions(team, &p.name).await?.pop().map(|r| r.version);
        let needs_version = draft_changed(p, latest.as_ref());
        let result = match (&p.source, needs_version) {
            (_, false) => None,
            (Source::Image(image), true) => Some(Ok(Some(state.resolver.resolve(image).await?.reference))),
            (Source::Dockerfile(_), true) if state.builds.settings.registry.is_none() => {
                Some(Err(NO_PLATFORM_REGISTRY))
            }
            // Queued for the build worker.
            (Source::Dockerfile(_), true) => Some(Ok(None)),
        };
        pinned.push(result);
    }

    let mut out = Vec::new();
    let mut queued = false;
    let mut tx = state.begin().await?;
    require_team(&mut tx, team).await?;
    for (p, build) in plugins.iter().zip(pinned) {
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
        if let Some(build) = build {
            let status = match build {
                Ok(None) => VersionStatus::Queued,
                _ => VersionStatus::Building,
            };
            let v = tx.insert_version(team, &p.name, p, status).await?;
            match build {
                Ok(None) => queued = true,
                Ok(Some(image)) => {
                    tx.finish_version(team, &p.name, v.number, VersionStatus::Succeeded, Some(&image), None)
                        .await?
                }
                Err(why) => {
                    tx.finish_version(team, &p.name, v.number, VersionStatus::Failed, None, Some(why))
                        .await?
                }
            }
            out.push(Outcome {
                kind: "Plugin",
                name: p.name.to_string(),
                action: format!("versioned {}", v.number),
            });
        }
    }

    // Components in dependency order: a pass puts every component whose dependencies exist.
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
                ops::put_component(&mut tx, team, c, false).await?;
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

    for (i, c, declared) in &components {
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
                &mut tx,
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
    state.commit(tx).await?;
    if queued {
        state.builds.wake();
    }
    Ok(out)
}
