//! Versions: building one from the draft, a version's page with its build log (followed live
//! over server-sent events while it builds), cancelling a build, deleting a version.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Api, enc};
use crate::form::Form;
use crate::pages::live;
use crate::view::{Nav, check_csrf, failure, mib, page};
use crate::{Console, Session};

pub fn routes() -> Router<Console> {
    let version = "/teams/{team}/plugins/{plugin}/versions/{number}";
    Router::new()
        .route("/teams/{team}/plugins/{plugin}/versions", post(build))
        .route(version, get(show))
        .route(&format!("{version}/log/events"), get(log_events))
        .route(&format!("{version}/cancel"), post(cancel))
        .route(&format!("{version}/delete"), post(delete))
}

/// A version as the plug-in page's table shows it.
pub struct VersionRow {
    pub number: u64,
    pub status: String,
    pub image: String,
    pub error: String,
    pub provenance: Vec<(&'static str, String)>,
    pub created_at: String,
    /// Who created it (`admin`, `token ci job`); empty when the server did not record it.
    pub created_by: String,
    pub finished_at: String,
    /// Its build is over: it can be deleted (unless installed somewhere).
    pub finished: bool,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// What the version's image was made from, in the words of the page.
fn provenance(p: &Value) -> Vec<(&'static str, String)> {
    [
        ("Source image", "source_image"),
        ("Repo", "repo"),
        ("Commit", "commit"),
        ("Dockerfile", "dockerfile"),
        ("Base image", "base_image"),
        ("Base image digest", "base_image_digest"),
    ]
    .into_iter()
    .filter_map(|(label, key)| p[key].as_str().map(|v| (label, v.to_owned())))
    .collect()
}

pub fn version_row(v: &Value) -> VersionRow {
    let status = text(&v["status"]);
    VersionRow {
        number: v["number"].as_u64().unwrap_or_default(),
        finished: matches!(status.as_str(), "succeeded" | "failed" | "cancelled"),
        status,
        image: text(&v["image"]),
        error: text(&v["error"]),
        provenance: provenance(&v["provenance"]),
        created_at: text(&v["created_at"]),
        created_by: text(&v["created_by"]),
        finished_at: text(&v["finished_at"]),
    }
}

fn version_path(team: &str, plugin: &str, number: &str) -> String {
    format!("/teams/{}/plugins/{}/versions/{}", enc(team), enc(plugin), enc(number))
}

async fn build(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let path = format!("/teams/{}/plugins/{}/versions", enc(&team), enc(&plugin));
    match console
        .api
        .json::<Value>(&session.token, Method::POST, &path, None)
        .await
    {
        Ok(v) => Redirect::to(&format!("{path}/{}", v["number"])).into_response(),
        Err(f) => failure(&f),
    }
}

#[derive(askama::Template)]
#[template(path = "plugins/version.html")]
struct VersionPage {
    nav: Nav,
    name: String,
    number: u64,
    status: String,
    finished: bool,
    error: String,
    image: String,
    image_error: String,
    provenance: Vec<(&'static str, String)>,
    kind: String,
    memory: String,
    groups: String,
    created_at: String,
    created_by: String,
    finished_at: String,
    /// The log as stored so far; the live stream goes on after these.
    lines: Vec<String>,
    /// What the log viewer says before (or without) the live stream.
    outcome: String,
}

/// The one line that says how a build ended.
fn outcome(v: &Value) -> String {
    match v["status"].as_str().unwrap_or_default() {
        "succeeded" => format!("Build succeeded: {}", text(&v["image"])),
        "failed" => format!("Build failed: {}", text(&v["error"])),
        "cancelled" => "Build cancelled".into(),
        _ => "Building: the log follows live (without JavaScript, reload the page for new lines).".into(),
    }
}

async fn show(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin, number)): Path<(String, String, String)>,
) -> Response {
    let path = version_path(&team, &plugin, &number);
    let log_path = format!("{path}/log");
    let (nav, found, log) = tokio::join!(
        Nav::of(
            &console,
            &session,
            &team,
            "plugins",
            format!("/teams/{team}/plugins/{plugin}/versions/{number}")
        ),
        console.api.get::<Value>(&session.token, &path),
        console.api.text(&session.token, &log_path),
    );
    let nav = match nav {
        Ok(n) => n,
        Err(r) => return r,
    };
    let (v, log) = match (found, log) {
        (Ok(v), Ok(log)) => (v, log),
        (Err(f), _) | (_, Err(f)) => return failure(&f),
    };
    let row = version_row(&v);
    let spec = &v["plugin"];
    let groups: Vec<String> = spec["config_groups"]
        .as_array()
        .map(|g| g.iter().map(|g| text(&g["name"])).collect())
        .unwrap_or_default();
    page(&VersionPage {
        nav,
        name: plugin,
        number: row.number,
        outcome: outcome(&v),
        status: row.status,
        finished: row.finished,
        error: row.error,
        image: row.image,
        image_error: text(&v["image_error"]),
        provenance: row.provenance,
        kind: text(&spec["kind"]),
        memory: mib(spec["memory_mib"].as_u64().unwrap_or_default()),
        groups: groups.join(", "),
        created_at: row.created_at,
        created_by: row.created_by,
        finished_at: row.finished_at,
        lines: log.lines().map(str::to_owned).collect(),
    })
}

#[derive(Deserialize, Default)]
struct After {
    /// Lines the page already shows.
    #[serde(default)]
    after: u64,
}

/// The build log as server-sent events: one `line` per log line after those the page (or a
/// reconnecting `EventSource`) has, then one `end` saying how the build ended. A finished
/// build's log ends at once.
async fn log_events(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin, number)): Path<(String, String, String)>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Response {
    let path = version_path(&team, &plugin, &number);
    let body = match console
        .api
        .stream(&session.token, &format!("{path}/log?follow=true"))
        .await
    {
        Ok(b) => b,
        Err(f) => return failure(&f),
    };
    let skip = live::resume_after(&headers).max(q.after);
    let api: Api = console.api.clone();
    let token = session.token;
    live::lines(body, skip, move || async move {
        match api.get::<Value>(&token, &path).await {
            Ok(v) if matches!(v["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) => outcome(&v),
            Ok(_) => "The log stream ended before the build: reload the page.".into(),
            Err(f) => f.to_string(),
        }
    })
    .into_response()
}

async fn cancel(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin, number)): Path<(String, String, String)>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let path = version_path(&team, &plugin, &number);
    match console
        .api
        .call(&session.token, Method::POST, &format!("{path}/cancel"), None)
        .await
    {
        Ok(_) => Redirect::to(&path).into_response(),
        // Finished meanwhile: its page says how.
        Err(f) if f.status == StatusCode::CONFLICT => Redirect::to(&path).into_response(),
        Err(f) => failure(&f),
    }
}

async fn delete(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin, number)): Path<(String, String, String)>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let path = version_path(&team, &plugin, &number);
    match console.api.call(&session.token, Method::DELETE, &path, None).await {
        Ok(_) => Redirect::to(&format!("/teams/{}/plugins/{}#versions", enc(&team), enc(&plugin))).into_response(),
        Err(f) => failure(&f),
    }
}

#[cfg(test)]
mod tests {
    use askama::Template;
    use serde_json::json;

    use super::*;

    fn rendered(v: &Value) -> String {
        let row = version_row(v);
        VersionPage {
            nav: Nav {
                team: "alpha".into(),
                teams: Vec::new(),
                admin: false,
                csrf: "c".into(),
                section: "plugins",
                path: "/teams/alpha/plugins/p/versions/1".into(),
            },
            name: "p".into(),
            number: row.number,
            outcome: outcome(v),
            status: row.status,
            finished: row.finished,
            error: row.error,
            image: row.image,
            image_error: String::new(),
            provenance: row.provenance,
            kind: "general".into(),
            memory: "64 MiB".into(),
            groups: String::new(),
            created_at: row.created_at,
            created_by: row.created_by,
            finished_at: row.finished_at,
            lines: Vec::new(),
        }
        .render()
        .unwrap()
    }

    #[test]
    fn a_version_from_before_authors_were_recorded_is_built_by_unknown() {
        let v = json!({"number": 1, "status": "succeeded", "created_at": "2025-01-31T12:00:00.000000Z"});
        assert_eq!(version_row(&v).created_by, "");
        assert!(rendered(&v).contains("<dt>Built by</dt><dd><span class=\"muted\">unknown</span></dd>"));
        let v = json!({"number": 1, "status": "succeeded", "created_by": "token ci job"});
        assert!(rendered(&v).contains("<dt>Built by</dt><dd>token ci job</dd>"));
    }
}
