//! The plug-ins tab: installing a succeeded version of one of the team's plug-ins, and per
//! installation its switch, memory, version and values (one widget per item), with the
//! discovery revision each pod applied, live.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kato_model::{ComponentSpec, PluginSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use super::acks::{self, Installed, installation_path};
use super::perf;
use super::values::{self, Section, Shown};
use super::{api_path, dependencies, not_the_forms, page_path, with_status};
use crate::api::enc;
use crate::form::{Fields, Form};
use crate::view::{Nav, check_csrf, failure, page};
use crate::{Console, Failure, Session};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/teams/{team}/components/{c}/plugins", get(tab).post(install))
        .route("/teams/{team}/components/{c}/plugins/{p}", post(save))
        .route(
            "/teams/{team}/components/{c}/plugins/{p}/uninstall",
            get(uninstall_page).post(uninstall),
        )
}

/// A version as the API lists it, with the plug-in as it was frozen.
struct VersionInfo {
    number: u32,
    succeeded: bool,
    spec: PluginSpec,
    /// `group.item`: secret items whose default the plug-in set (the API does not show it).
    secret_defaults_set: Vec<String>,
}

#[derive(Deserialize)]
struct VersionAnswer {
    number: u32,
    status: String,
    plugin: Value,
}

/// A plug-in's versions, newest first; versions whose plug-in cannot be read are left out.
async fn versions(console: &Console, session: &Session, team: &str, plugin: &str) -> Result<Vec<VersionInfo>, Failure> {
    let path = format!("/teams/{}/plugins/{}/versions", enc(team), enc(plugin));
    let answers: Vec<VersionAnswer> = console.api.get(&session.token, &path).await?;
    let mut out: Vec<VersionInfo> = answers
        .into_iter()
        .filter_map(|mut a| {
            let secret_defaults_set = a
                .plugin
                .as_object_mut()
                .and_then(|o| o.remove("secret_defaults_set"))
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            let spec = serde_json::from_value(a.plugin)
                .map_err(
                    |e| tracing::warn!(plugin, version = a.number, error = %e, "a version's plug-in cannot be read"),
                )
                .ok()?;
            Some(VersionInfo {
                number: a.number,
                succeeded: a.status == "succeeded",
                spec,
                secret_defaults_set,
            })
        })
        .collect();
    out.sort_by_key(|v| std::cmp::Reverse(v.number));
    Ok(out)
}

/// One option of the "Plug-in version" select.
struct Choice {
    value: String,
    label: String,
}

/// A plug-in as the team's list shows it: only what the select needs.
#[derive(Deserialize)]
struct Listed {
    name: String,
    kind: String,
    /// Absent from an older answer; `null` before the first version.
    #[serde(default, deserialize_with = "present")]
    latest_version: Option<Option<Latest>>,
}

#[derive(Deserialize)]
struct Latest {
    number: u32,
    status: String,
}

/// A field that is there, even as `null` (`Some(None)`), apart from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The newest succeeded version of each of the team's plug-ins not installed here yet. The
/// team's list tells each plug-in's newest version, so a plug-in's versions are asked for
/// only when that one did not succeed (or the list does not say).
async fn choices(
    console: &Console,
    session: &Session,
    team: &str,
    installed: &[Installed],
) -> Result<Vec<Choice>, Failure> {
    let plugins: Vec<Listed> = console
        .api
        .get(&session.token, &format!("/teams/{}/plugins?view=brief", enc(team)))
        .await?;
    let mut out = Vec::new();
    for p in plugins.iter().filter(|p| !installed.iter().any(|i| i.plugin == p.name)) {
        let (number, kind) = match &p.latest_version {
            Some(None) => continue,
            Some(Some(l)) if l.status == "succeeded" => (l.number, p.kind.clone()),
            _ => {
                let versions = versions(console, session, team, &p.name).await?;
                let Some(v) = versions.iter().find(|v| v.succeeded) else {
                    continue;
                };
                (v.number, v.spec.kind.to_string())
            }
        };
        out.push(Choice {
            value: format!("{}:{number}", p.name),
            label: format!("{} — version {number} ({kind})", p.name),
        });
    }
    Ok(out)
}

/// An installation's section of the tab.
struct InstallView {
    name: String,
    kind: String,
    version: u32,
    image: String,
    enabled: bool,
    memory: String,
    min_memory: u32,
    /// The current version and the newer succeeded ones, with the one chosen.
    upgrades: Vec<(u32, bool)>,
    sections: Vec<Section>,
    errors: BTreeMap<String, String>,
    acks_html: String,
    live_url: String,
    /// A perf-analysis installation's figures (or why there are none).
    perf: Option<super::perf::PerfSection>,
}

impl InstallView {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map_or("", String::as_str)
    }
}

/// A refused save, shown again: which installation, what was posted, the errors by input.
struct Refused {
    plugin: String,
    fields: Fields,
    errors: BTreeMap<String, String>,
}

#[derive(askama::Template)]
#[template(path = "components/plugins.html")]
struct TabPage {
    nav: Nav,
    component: String,
    tab: &'static str,
    choices: Vec<Choice>,
    chosen: String,
    install_error: String,
    installs: Vec<InstallView>,
    notice: Option<String>,
}

/// The installation's section, with what was posted when its save was refused.
#[allow(clippy::too_many_arguments)]
fn install_view(
    team: &str,
    component: &ComponentSpec,
    all: &[ComponentSpec],
    i: &Installed,
    versions: &[VersionInfo],
    refused: Option<&Refused>,
) -> InstallView {
    let empty = BTreeMap::new();
    let errors = refused.map_or(&empty, |r| &r.errors);
    let posted = refused.map(|r| &r.fields);
    let current = versions.iter().find(|v| v.number == i.version);
    let sections = current.map_or_else(Vec::new, |v| {
        let slots = values::slots(&v.spec, component, all);
        let shown = Shown {
            values: &i.values,
            secrets_set: &i.secret_values_set,
            secret_defaults_set: &v.secret_defaults_set,
            posted,
            errors,
        };
        values::sections(&slots, &shown, &format!("i-{}", i.plugin))
    });
    let chosen = posted
        .and_then(|p| p.get("version"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(i.version);
    let upgrades = versions
        .iter()
        .rev()
        .filter(|v| v.number == i.version || (v.number > i.version && v.succeeded))
        .map(|v| (v.number, v.number == chosen))
        .collect();
    InstallView {
        name: i.plugin.clone(),
        kind: i.kind.clone(),
        version: i.version,
        image: i.image.clone().unwrap_or_default(),
        enabled: posted.map_or(i.enabled, |p| p.checked("enabled")),
        memory: posted.map_or_else(
            || i.memory_mib.to_string(),
            |p| p.get("memory_mib").unwrap_or_default().to_owned(),
        ),
        min_memory: current.map_or(0, |v| v.spec.memory_mib),
        upgrades,
        sections,
        errors: errors.clone(),
        acks_html: acks::fragment(i),
        live_url: acks::events_url(team, component.name.as_str(), &i.plugin),
        perf: None,
    }
}

const PERF_KIND: &str = "perf-analysis";

/// A perf-analysis installation's section on the tab (the 5-minute window); a refusal the
/// section does not explain itself (the installation went meanwhile) shows as its message.
async fn perf_section(console: &Console, session: &Session, team: &str, c: &str, p: &str) -> perf::PerfSection {
    match perf::section(console, session, team, c, p, perf::DEFAULT_WINDOW).await {
        Ok(s) => s,
        Err(f) => perf::PerfSection::new(team, c, p, perf::DEFAULT_WINDOW).with_refusal(&f),
    }
}

/// What the tab shows besides the installations: an install refused, a save done.
#[derive(Default)]
struct Outcome {
    refused: Option<Refused>,
    install_error: Option<(String, String)>,
    notice: Option<String>,
}

async fn tab_with(console: &Console, session: &Session, team: &str, c: &str, outcome: Outcome) -> Response {
    let nav = match Nav::of(console, session, team, "components", page_path(team, c, "plugins")).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let component: ComponentSpec = match console.api.get(&session.token, &api_path(team, Some(c))).await {
        Ok(s) => s,
        Err(f) => return failure(&f),
    };
    let loaded = async {
        let installed: Vec<Installed> = console
            .api
            .get(&session.token, &format!("{}/plugins", api_path(team, Some(c))))
            .await?;
        let all = dependencies(console, session, team, &component).await?;
        let choices = choices(console, session, team, &installed).await?;
        let mut views = Vec::new();
        for i in &installed {
            let versions = versions(console, session, team, &i.plugin).await?;
            let refused = outcome.refused.as_ref().filter(|r| r.plugin == i.plugin);
            let mut view = install_view(team, &component, &all, i, &versions, refused);
            if i.kind == PERF_KIND {
                view.perf = Some(perf_section(console, session, team, c, &i.plugin).await);
            }
            views.push(view);
        }
        Ok::<_, Failure>((choices, views))
    };
    let (choices, installs) = match loaded.await {
        Ok(x) => x,
        Err(f) => return failure(&f),
    };
    let refused = outcome.refused.is_some() || outcome.install_error.is_some();
    let (chosen, install_error) = outcome.install_error.unwrap_or_default();
    let res = page(&TabPage {
        nav,
        component: c.to_owned(),
        tab: "plugins",
        choices,
        chosen,
        install_error,
        installs,
        notice: outcome.notice,
    });
    if refused {
        with_status(res, StatusCode::UNPROCESSABLE_ENTITY)
    } else {
        res
    }
}

#[derive(Deserialize, Default)]
struct Done {
    installed: Option<String>,
    saved: Option<String>,
}

async fn tab(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Query(q): Query<Done>,
) -> Response {
    let notice = match (q.installed, q.saved) {
        (Some(p), _) => Some(format!("Plug-in {p} installed.")),
        (_, Some(p)) => Some(format!("Plug-in {p} saved.")),
        _ => None,
    };
    let outcome = Outcome {
        notice,
        ..Default::default()
    };
    tab_with(&console, &session, &team, &c, outcome).await
}

fn tab_anchor(team: &str, c: &str, query: &str, p: &str) -> String {
    format!("{}?{query}={}#plugin-{p}", page_path(team, c, "plugins"), enc(p))
}

async fn install(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Form(fields): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &fields) {
        return r;
    }
    let chosen = fields.get("plugin_version").unwrap_or_default().to_owned();
    let refuse = |message: String| Outcome {
        install_error: Some((chosen.clone(), message)),
        ..Default::default()
    };
    let Some((plugin, number)) = chosen
        .rsplit_once(':')
        .and_then(|(p, n)| Some((p, n.parse::<u32>().ok()?)))
    else {
        let outcome = refuse("Choose a plug-in version to install.".into());
        return tab_with(&console, &session, &team, &c, outcome).await;
    };
    let body = json!({"version": number});
    let path = installation_path(&team, &c, plugin);
    match console
        .api
        .json::<Value>(&session.token, Method::PUT, &path, Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&tab_anchor(&team, &c, "installed", plugin)).into_response(),
        Err(f) if not_the_forms(&f) => failure(&f),
        Err(f) => {
            let outcome = refuse(super::form::field_of(&f).1);
            tab_with(&console, &session, &team, &c, outcome).await
        }
    }
}

/// The body of a save: the switch, memory, version, and the values read against that
/// version's items; or the errors of inputs that cannot be read.
async fn save_body(
    console: &Console,
    session: &Session,
    team: &str,
    c: &str,
    current: &Installed,
    fields: &Fields,
) -> Result<Result<Value, BTreeMap<String, String>>, Failure> {
    let component: ComponentSpec = console.api.get(&session.token, &api_path(team, Some(c))).await?;
    let all = dependencies(console, session, team, &component).await?;
    let versions = versions(console, session, team, &current.plugin).await?;
    let mut errors = BTreeMap::new();
    let number = match fields.get("version").map(str::parse::<u32>) {
        None => current.version,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            errors.insert("version".to_owned(), "choose a version".to_owned());
            current.version
        }
    };
    let Some(version) = versions.iter().find(|v| v.number == number) else {
        errors.insert(
            "version".to_owned(),
            format!("plug-in `{}` has no version {number}", current.plugin),
        );
        return Ok(Err(errors));
    };
    let slots = values::slots(&version.spec, &component, &all);
    let mut body = json!({
        "version": number,
        "enabled": fields.checked("enabled"),
        "values": values::posted_values(&slots, fields, &current.values),
    });
    // Memory left as it was is not sent: the API keeps it, raised to a new version's minimum.
    if let Some(m) = fields.text("memory_mib") {
        match m.parse::<u32>() {
            Ok(m) if m == current.memory_mib => {}
            Ok(m) => body["memory_mib"] = m.into(),
            Err(_) => {
                errors.insert("memory_mib".to_owned(), format!("`{m}` is not a whole number of MiB"));
            }
        }
    }
    Ok(if errors.is_empty() { Ok(body) } else { Err(errors) })
}

/// The API's refusal of a save, by input: value paths and the installation's own fields.
fn save_refusal(f: &Failure) -> BTreeMap<String, String> {
    let (field, message) = super::form::field_of(f);
    let field = match field {
        Some(x) if x.starts_with("values.") || ["memory_mib", "version", "enabled"].contains(&x.as_str()) => x,
        Some(x) => return BTreeMap::from([("_form".to_owned(), format!("{x}: {message}"))]),
        None => "_form".to_owned(),
    };
    BTreeMap::from([(field, message)])
}

async fn save(
    session: Session,
    State(console): State<Console>,
    Path((team, c, p)): Path<(String, String, String)>,
    Form(fields): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &fields) {
        return r;
    }
    let path = installation_path(&team, &c, &p);
    let current: Installed = match console.api.get(&session.token, &path).await {
        Ok(i) => i,
        Err(f) => return failure(&f),
    };
    let refused = |errors| Outcome {
        refused: Some(Refused {
            plugin: p.clone(),
            fields: fields.clone(),
            errors,
        }),
        ..Default::default()
    };
    let body = match save_body(&console, &session, &team, &c, &current, &fields).await {
        Ok(Ok(b)) => b,
        Ok(Err(errors)) => return tab_with(&console, &session, &team, &c, refused(errors)).await,
        Err(f) => return failure(&f),
    };
    match console
        .api
        .json::<Value>(&session.token, Method::PUT, &path, Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&tab_anchor(&team, &c, "saved", &p)).into_response(),
        Err(f) if not_the_forms(&f) => failure(&f),
        Err(f) => tab_with(&console, &session, &team, &c, refused(save_refusal(&f))).await,
    }
}

#[derive(askama::Template)]
#[template(path = "components/uninstall.html")]
struct UninstallPage {
    nav: Nav,
    component: String,
    plugin: String,
    error: Option<String>,
}

async fn uninstall_page_with(
    console: &Console,
    session: &Session,
    team: &str,
    c: &str,
    p: &str,
    error: Option<Failure>,
) -> Response {
    let here = format!("{}/{}/uninstall", page_path(team, c, "plugins"), enc(p));
    let nav = match Nav::of(console, session, team, "components", here).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(f) = console
        .api
        .get::<Installed>(&session.token, &installation_path(team, c, p))
        .await
    {
        return failure(&f);
    }
    let status = error.as_ref().map(|f| f.status);
    let res = page(&UninstallPage {
        nav,
        component: c.to_owned(),
        plugin: p.to_owned(),
        error: error.map(|f| f.to_string()),
    });
    match status {
        Some(s) => with_status(res, s),
        None => res,
    }
}

async fn uninstall_page(
    session: Session,
    State(console): State<Console>,
    Path((team, c, p)): Path<(String, String, String)>,
) -> Response {
    uninstall_page_with(&console, &session, &team, &c, &p, None).await
}

async fn uninstall(
    session: Session,
    State(console): State<Console>,
    Path((team, c, p)): Path<(String, String, String)>,
    Form(fields): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &fields) {
        return r;
    }
    let path = installation_path(&team, &c, &p);
    match console.api.call(&session.token, Method::DELETE, &path, None).await {
        Ok(_) => Redirect::to(&page_path(&team, &c, "plugins")).into_response(),
        Err(f) if not_the_forms(&f) || f.status == StatusCode::NOT_FOUND => failure(&f),
        Err(f) => uninstall_page_with(&console, &session, &team, &c, &p, Some(f)).await,
    }
}
