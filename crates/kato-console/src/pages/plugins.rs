//! The team's plug-ins: the list, the create form, and deleting one. The plug-in's own page (its
//! draft and config-group editor) is in `editor`, its versions and build logs in `versions`.

mod body;
mod draft;
mod editor;
mod fields;
mod versions;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use crate::api::enc;
use crate::form::Form;
use crate::view::{Nav, check_csrf, failure, mib, page};
use crate::{Console, Failure, Session};
use draft::Draft;
use fields::{Choice, DraftView, KINDS};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/teams/{team}/plugins", get(list))
        .route("/teams/{team}/plugins/new", get(new_page).post(create))
        .route("/teams/{team}/plugins/{plugin}/delete", get(delete_page).post(delete))
        .merge(editor::routes())
        .merge(versions::routes())
}

/// Whether a refusal is about what the form holds (shown beside its fields, the form kept), or
/// about the request itself (a page of its own: not allowed, not found, …).
fn about_the_form(f: &Failure) -> bool {
    matches!(f.status, StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT)
        || (f.status == StatusCode::FORBIDDEN && f.field.is_some())
}

/// A page re-rendered after a refusal says so with its status.
fn refused(mut res: Response, errors: bool) -> Response {
    if errors {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

/// Rows per page of the list: search and the kind filter find the others.
const PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

/// What the list shows of a plug-in; the rest of the API's answer is skipped unread.
#[derive(Deserialize)]
struct Listed {
    name: String,
    #[serde(default)]
    description: String,
    kind: String,
    memory_mib: u64,
    latest_version: Option<Latest>,
    #[serde(default)]
    used_by: u64,
}

#[derive(Deserialize)]
struct Latest {
    number: u64,
    status: String,
}

struct Row {
    name: String,
    description: String,
    kind: String,
    memory: String,
    latest: Option<(u64, String)>,
    used_by: u64,
}

#[derive(askama::Template)]
#[template(path = "plugins/list.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<Row>,
    /// The team's plug-ins, and those the filter keeps.
    total: usize,
    matching: usize,
    /// The rows shown are `first..=last` of `matching` (1-based).
    first: usize,
    last: usize,
    previous: Option<String>,
    next: Option<String>,
    kinds: Vec<Choice>,
    q: String,
}

async fn list(
    session: Session,
    State(console): State<Console>,
    Path(team): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let api_path = format!("/teams/{}/plugins?view=brief", enc(&team));
    let (nav, listed) = tokio::join!(
        Nav::of(&console, &session, &team, "plugins", format!("/teams/{team}/plugins")),
        console.api.get::<Vec<Listed>>(&session.token, &api_path),
    );
    let nav = match nav {
        Ok(n) => n,
        Err(r) => return r,
    };
    let listed = match listed {
        Ok(l) => l,
        Err(f) => return failure(&f),
    };
    page(&ListPage::new(nav, listed, query, &team))
}

impl ListPage {
    /// The rows of the page asked for, of those the kind filter and the search keep.
    fn new(nav: Nav, listed: Vec<Listed>, query: ListQuery, team: &str) -> ListPage {
        let total = listed.len();
        let needle = query.q.trim().to_lowercase();
        let matching: Vec<Listed> = listed
            .into_iter()
            .filter(|p| query.kind.is_empty() || p.kind == query.kind)
            .filter(|p| needle.is_empty() || p.name.contains(&needle) || p.description.to_lowercase().contains(&needle))
            .collect();
        let pages = matching.len().div_ceil(PER_PAGE).max(1);
        let at = query.page.unwrap_or(1).clamp(1, pages);
        let link = |n: usize| {
            let (kind, q) = (enc(&query.kind), enc(&query.q));
            format!("/teams/{}/plugins?kind={kind}&q={q}&page={n}", enc(team))
        };
        let first = (at - 1) * PER_PAGE;
        let rows: Vec<Row> = matching
            .iter()
            .skip(first)
            .take(PER_PAGE)
            .map(|p| Row {
                memory: mib(p.memory_mib),
                latest: p.latest_version.as_ref().map(|l| (l.number, l.status.clone())),
                name: p.name.clone(),
                description: p.description.clone(),
                kind: p.kind.clone(),
                used_by: p.used_by,
            })
            .collect();
        let kinds = std::iter::once(("", "All kinds"))
            .chain(KINDS.iter().map(|(k, _)| (*k, *k)))
            .map(|(value, label)| Choice {
                value,
                label,
                selected: value == query.kind,
            })
            .collect();
        ListPage {
            nav,
            first: first + 1,
            last: first + rows.len(),
            rows,
            total,
            matching: matching.len(),
            previous: (at > 1).then(|| link(at - 1)),
            next: (at < pages).then(|| link(at + 1)),
            kinds,
            q: query.q,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "plugins/new.html")]
struct NewPage {
    nav: Nav,
    draft: DraftView,
}

async fn new_form(
    console: &Console,
    session: &Session,
    team: &str,
    draft: &Draft,
    errors: BTreeMap<String, String>,
) -> Response {
    let path = format!("/teams/{team}/plugins/new");
    let nav = match Nav::of(console, session, team, "plugins", path).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let refused_now = !errors.is_empty();
    let draft = DraftView::new(draft, &errors, &[]);
    refused(page(&NewPage { nav, draft }), refused_now)
}

async fn new_page(session: Session, State(console): State<Console>, Path(team): Path<String>) -> Response {
    new_form(&console, &session, &team, &Draft::blank(), BTreeMap::new()).await
}

async fn create(
    session: Session,
    State(console): State<Console>,
    Path(team): Path<String>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let draft = Draft::from_fields(&form);
    let path = format!("/teams/{}/plugins", enc(&team));
    let body = draft.create_body();
    match console
        .api
        .json::<Value>(&session.token, Method::POST, &path, Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&format!("{path}/{}", enc(&draft.name))).into_response(),
        Err(f) if about_the_form(&f) => {
            let mut errors = draft.errors(&f);
            if f.status == StatusCode::CONFLICT
                && let Some(message) = errors.remove("_form")
            {
                // The one conflict a create meets: the name is taken.
                errors.insert("name".into(), message);
            }
            new_form(&console, &session, &team, &draft, errors).await
        }
        Err(f) => failure(&f),
    }
}

#[derive(askama::Template)]
#[template(path = "plugins/delete.html")]
struct DeletePage {
    nav: Nav,
    name: String,
    delete_error: String,
}

async fn delete_form(console: &Console, session: &Session, team: &str, plugin: &str, error: String) -> Response {
    let path = format!("/teams/{team}/plugins/{plugin}/delete");
    let api_path = format!("/teams/{}/plugins/{}", enc(team), enc(plugin));
    let (nav, found) = tokio::join!(
        Nav::of(console, session, team, "plugins", path),
        console.api.call(&session.token, Method::GET, &api_path, None),
    );
    let nav = match nav {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(f) = found {
        return failure(&f);
    }
    let refused_now = !error.is_empty();
    let res = page(&DeletePage {
        nav,
        name: plugin.to_owned(),
        delete_error: error,
    });
    refused(res, refused_now)
}

async fn delete_page(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin)): Path<(String, String)>,
) -> Response {
    delete_form(&console, &session, &team, &plugin, String::new()).await
}

async fn delete(
    session: Session,
    State(console): State<Console>,
    Path((team, plugin)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    if !form.checked("confirm") {
        let why = "Tick “Yes, delete” to delete the plug-in.".to_owned();
        return delete_form(&console, &session, &team, &plugin, why).await;
    }
    let path = format!(
        "/teams/{}/plugins/{}{}",
        enc(&team),
        enc(&plugin),
        if form.checked("force") { "?force=true" } else { "" }
    );
    match console.api.call(&session.token, Method::DELETE, &path, None).await {
        Ok(_) => Redirect::to(&format!("/teams/{}/plugins", enc(&team))).into_response(),
        Err(f) if about_the_form(&f) => delete_form(&console, &session, &team, &plugin, f.message).await,
        Err(f) => failure(&f),
    }
}
