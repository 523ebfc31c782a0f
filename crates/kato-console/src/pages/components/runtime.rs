//! What runs: the status and logs tab (per pod its containers, a live log viewer per
//! container) and the manifests tab (the rendered YAML for a target and sidecar mode).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{api_path, page_path, with_status};
use crate::api::enc;
use crate::pages::live;
use crate::view::{Nav, failure, page};
use crate::{Console, Session};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/teams/{team}/components/{c}/status", get(status))
        .route("/teams/{team}/components/{c}/logs", get(log_text))
        .route("/teams/{team}/components/{c}/logs/events", get(log_events))
        .route("/teams/{team}/components/{c}/manifests", get(manifests))
}

#[derive(Deserialize, Default)]
struct StatusAnswer {
    #[serde(default)]
    state: String,
    message: Option<String>,
    error: Option<String>,
    #[serde(default)]
    target: String,
    #[serde(default)]
    pods: Vec<PodAnswer>,
}

#[derive(Deserialize)]
struct PodAnswer {
    name: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    containers: Vec<ContainerAnswer>,
}

#[derive(Deserialize)]
struct ContainerAnswer {
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    init: bool,
    #[serde(default)]
    state: String,
    #[serde(default)]
    restarts: u32,
    exit_code: Option<i32>,
    reason: Option<String>,
    message: Option<String>,
    plugin: Option<PluginRef>,
}

#[derive(Deserialize)]
struct PluginRef {
    version: u32,
    revision: u64,
}

#[derive(Deserialize)]
struct InstalledKind {
    plugin: String,
    kind: String,
}

/// A container's row.
struct ContainerRow {
    name: String,
    kind: String,
    state: String,
    restarts: u32,
    exit: String,
    version: String,
}

struct PodRow {
    name: String,
    phase: String,
    containers: Vec<ContainerRow>,
}

#[derive(askama::Template)]
#[template(path = "components/status.html")]
struct StatusPage {
    nav: Nav,
    component: String,
    tab: &'static str,
    state: String,
    message: String,
    renders_only: bool,
    pods: Vec<PodRow>,
    /// The containers a log can be followed of, and the one chosen.
    containers: Vec<String>,
    container: String,
    sse: String,
    text_url: String,
}

#[derive(Deserialize, Default)]
struct LogQuery {
    container: Option<String>,
}

/// How a container stands to the component: the app, an init plug-in, or a plug-in.
fn kind_of(c: &ContainerAnswer, kinds: &BTreeMap<String, String>) -> String {
    if c.role != "plugin" {
        return "app".into();
    }
    let kind = c
        .name
        .strip_prefix("plugin-")
        .and_then(|p| kinds.get(p))
        .map_or("", String::as_str);
    match kind {
        "init" => "init plug-in".into(),
        "" => "plug-in".into(),
        k if c.init => format!("plug-in ({k}, native sidecar)"),
        k => format!("plug-in ({k})"),
    }
}

fn exit_of(c: &ContainerAnswer) -> String {
    let mut parts = Vec::new();
    if let Some(code) = c.exit_code {
        parts.push(format!("exit {code}"));
    }
    if let Some(r) = &c.reason {
        parts.push(r.clone());
    }
    if let Some(m) = c.message.as_ref().filter(|m| !m.is_empty()) {
        parts.push(m.clone());
    }
    parts.join(": ")
}

async fn status(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let nav = match Nav::of(&console, &session, &team, "components", page_path(&team, &c, "status")).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let base = api_path(&team, Some(&c));
    let s: StatusAnswer = match console.api.get(&session.token, &format!("{base}/status")).await {
        Ok(s) => s,
        Err(f) => return failure(&f),
    };
    let kinds: BTreeMap<String, String> = console
        .api
        .get::<Vec<InstalledKind>>(&session.token, &format!("{base}/plugins"))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.plugin, i.kind))
        .collect();
    let mut containers: Vec<String> = Vec::new();
    let pods = s
        .pods
        .iter()
        .map(|p| PodRow {
            name: p.name.clone(),
            phase: p.phase.clone(),
            containers: p
                .containers
                .iter()
                .map(|ctr| {
                    if !containers.contains(&ctr.name) {
                        containers.push(ctr.name.clone());
                    }
                    ContainerRow {
                        name: ctr.name.clone(),
                        kind: kind_of(ctr, &kinds),
                        state: ctr.state.clone(),
                        restarts: ctr.restarts,
                        exit: exit_of(ctr),
                        version: ctr
                            .plugin
                            .as_ref()
                            .map(|p| format!("version {} · revision {}", p.version, p.revision))
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect();
    let container = q
        .container
        .filter(|x| containers.contains(x))
        .unwrap_or_else(|| c.clone());
    let query = format!("container={}", enc(&container));
    let here = page_path(&team, &c, "");
    page(&StatusPage {
        nav,
        component: c.clone(),
        tab: "status",
        message: s.message.or(s.error).unwrap_or_default(),
        renders_only: s.target == "none",
        state: s.state,
        pods,
        containers,
        sse: format!("{here}/logs/events?{query}"),
        text_url: format!("{here}/logs?{query}"),
        container,
    })
}

/// The API's log path of a container.
fn log_path(team: &str, c: &str, container: Option<&str>, follow: bool) -> String {
    let mut path = format!("{}/logs?follow={follow}", api_path(team, Some(c)));
    if let Some(x) = container.filter(|x| !x.is_empty()) {
        path.push_str(&format!("&container={}", enc(x)));
    }
    path
}

/// The log as text, for a browser without the script (and to save).
async fn log_text(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    match console
        .api
        .stream(&session.token, &log_path(&team, &c, q.container.as_deref(), false))
        .await
    {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response(),
        Err(f) => (f.status, f.to_string()).into_response(),
    }
}

/// The container's log followed, one `line` event per line (a reconnect resumes after the
/// last line it has), then `end`. A log that cannot be followed is one `end` saying why.
async fn log_events(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    let path = log_path(&team, &c, q.container.as_deref(), true);
    match console.api.stream(&session.token, &path).await {
        Ok(body) => {
            let skip = live::resume_after(&headers);
            live::lines(body, skip, || async {
                "The log ended: the container stopped or was replaced. Reload to follow the one running now.".to_owned()
            })
            .into_response()
        }
        Err(f) if matches!(f.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            (f.status, f.to_string()).into_response()
        }
        Err(f) => {
            let end = futures_util::stream::once(async move {
                Ok::<_, std::convert::Infallible>(Event::default().event("end").data(f.to_string()))
            });
            Sse::new(end).into_response()
        }
    }
}

#[derive(Deserialize, Default)]
struct ManifestQuery {
    target: Option<String>,
    sidecars: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "components/manifests.html")]
struct ManifestsPage {
    nav: Nav,
    component: String,
    tab: &'static str,
    target: String,
    sidecars: String,
    yaml: String,
    error: String,
}

async fn manifests(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Query(q): Query<ManifestQuery>,
) -> Response {
    let nav = match Nav::of(
        &console,
        &session,
        &team,
        "components",
        page_path(&team, &c, "manifests"),
    )
    .await
    {
        Ok(n) => n,
        Err(r) => return r,
    };
    let target = q
        .target
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "kubernetes".into());
    // Each target's own default: native sidecars on Kubernetes, classic on podman.
    let sidecars = q
        .sidecars
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| if target == "podman" { "classic" } else { "native" }.into());
    let path = format!(
        "{}/manifests?target={}&sidecars={}",
        api_path(&team, Some(&c)),
        enc(&target),
        enc(&sidecars)
    );
    let (yaml, error, status) = match console.api.text(&session.token, &path).await {
        Ok(y) => (y, String::new(), StatusCode::OK),
        Err(f) if f.status == StatusCode::UNPROCESSABLE_ENTITY || f.status == StatusCode::BAD_REQUEST => (
            String::new(),
            super::form::field_of(&f).1,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(f) => return failure(&f),
    };
    let res = page(&ManifestsPage {
        nav,
        component: c,
        tab: "manifests",
        target,
        sidecars,
        yaml,
        error,
    });
    with_status(res, status)
}
