//! A plug-in's page: its versions, its draft with the config-group editor, and the check the
//! draft form asks for as the user types (the API's own, through a dry-run PATCH).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::draft::{Draft, Edit};
use super::fields::DraftView;
use super::versions::{VersionRow, version_row};
use super::{about_the_form, refused};
use crate::api::enc;
use crate::form::Form;
use crate::view::{Nav, check_csrf, failure, page};
use crate::{Console, Session};

pub fn routes() -> axum::Router<Console> {
    Router::new()
        .route("/teams/{team}/plugins/{plugin}", get(show).post(save))
        .route("/teams/{team}/plugins/{plugin}/validate", post(validate))
}

#[derive(askama::Template)]
#[template(path = "plugins/plugin.html")]
struct PluginPage {
    nav: Nav,
    name: String,
    kind: String,
    description: String,
    versions: Vec<VersionRow>,
    /// The newest succeeded version.
    fixed: Option<u64>,
    /// The saved draft differs from the newest version's.
    draft_changed: bool,
    draft: DraftView,
    saved: bool,
    delete_error: String,
}

/// What the page shows beside the form: the saved draft and the versions, as the API answers.
struct Stored {
    nav: Nav,
    plugin: Value,
    versions: Vec<Value>,
}

async fn stored(console: &Console, session: &Session, team: &str, plugin: &str) -> Result<Stored, Response> {
    let path = format!("/teams/{}/plugins/{}", enc(team), enc(plugin));
    let versions_path = format!("{path}/versions");
    let (nav, found, versions) = tokio::join!(
        Nav::of(
            console,
            session,
            team,
            "plugins",
            format!("/teams/{team}/plugins/{plugin}")
        ),
        console.api.get::<Value>(&session.token, &path),
        console.api.get::<Vec<Value>>(&session.token, &versions_path),
    );
    let nav = nav?;
    let plugin = found.map_err(|f| failure(&f))?;
    let versions = versions.map_err(|f| failure(&f))?;
    Ok(Stored { nav, plugin, versions })
}

/// The page, with `draft` as typed (or as stored) and the errors of a refused save.
fn render(stored: Stored, draft: &Draft, errors: &BTreeMap<String, String>, saved: bool) -> Response {
    let Stored { nav, plugin, versions } = stored;
    let secret_set: Vec<String> = plugin["secret_defaults_set"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let fixed = versions
        .iter()
        .rev()
        .find(|v| v["status"] == "succeeded")
        .and_then(|v| v["number"].as_u64());
    let draft_changed = versions.last().is_some_and(|v| {
        let mut saved_draft = plugin.clone();
        if let Some(o) = saved_draft.as_object_mut() {
            o.remove("created_at");
            o.remove("updated_at");
        }
        v["plugin"] != saved_draft
    });
    let res = page(&PluginPage {
        name: plugin["name"].as_str().unwrap_or_default().to_owned(),
        kind: plugin["kind"].as_str().unwrap_or_default().to_owned(),
        description: plugin["description"].as_str().unwrap_or_default().to_owned(),
        versions: versions.iter().rev().map(version_row).collect(),
        fixed,
        draft_changed,
        draft: DraftView::new(draft, errors, &secret_set),
        saved,
        delete_error: String::new(),
        nav,
    });
    refused(res, !errors.is_empty())
}

#[derive(Deserialize, Default)]
struct Shown {
    #[serde(default)]
    saved: bool,
}

async fn show(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin)): Path<(String, String)>,
    Query(q): Query<Shown>,
) -> Response {
    match stored(&console, &session, &team, &plugin).await {
        Ok(s) => {
            let draft = Draft::from_api(&s.plugin);
            render(s, &draft, &BTreeMap::new(), q.saved)
        }
        Err(r) => r,
    }
}

/// "Save draft" saves through the API; "Add …" and "Remove" change the form's rows and show it
/// again with everything typed, saving nothing.
async fn save(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let stored = match stored(&console, &session, &team, &plugin).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut draft = Draft::from_fields(&form);
    let edit = Edit::of(&form);
    if edit != Edit::Save {
        draft.edit(edit);
        return render(stored, &draft, &BTreeMap::new(), false);
    }
    let path = format!("/teams/{}/plugins/{}", enc(&team), enc(&plugin));
    let patch = draft.patch(&stored.plugin);
    match console
        .api
        .json::<Value>(&session.token, Method::PATCH, &path, Some(&patch))
        .await
    {
        Ok(_) => Redirect::to(&format!("{path}?saved=true#draft")).into_response(),
        Err(f) if about_the_form(&f) => {
            let errors = draft.errors(&f);
            render(stored, &draft, &errors, false)
        }
        Err(f) => failure(&f),
    }
}

/// The draft form as typed so far, checked by the API exactly as a save would be, without
/// saving: `{"errors": {"<input name>": "message"}}`, empty when the save would pass. A request
/// the API refuses outright (another team, no such plug-in) gets the refusal's status.
async fn validate(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let draft = Draft::from_fields(&form);
    let path = format!("/teams/{}/plugins/{}", enc(&team), enc(&plugin));
    let current = match console.api.get::<Value>(&session.token, &path).await {
        Ok(c) => c,
        Err(f) => return failure(&f),
    };
    let patch = draft.patch(&current);
    let checked = console
        .api
        .call(
            &session.token,
            Method::PATCH,
            &format!("{path}?dry_run=true"),
            Some(&patch),
        )
        .await;
    match checked {
        Ok(_) => Json(json!({"errors": {}})).into_response(),
        Err(f) if about_the_form(&f) => Json(json!({"errors": draft.errors(&f)})).into_response(),
        Err(f) => failure(&f),
    }
}
