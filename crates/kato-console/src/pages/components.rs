//! The team's components: the list, the create form, and each component's page with its tabs
//! (overview, plug-ins, status and logs, manifests).

mod acks;
mod form;
mod installs;
mod perf;
mod runtime;
mod values;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kato_model::ComponentSpec;
use serde::Deserialize;
use serde_json::Value;

use crate::api::enc;
use crate::form::{Fields, Form};
use crate::view::{Nav, check_csrf, failure, page};
use crate::{Console, Failure, Session};
use form::ComponentForm;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/teams/{team}/components", get(list))
        .route("/teams/{team}/components/new", get(new_page).post(create))
        .route("/teams/{team}/components/{c}", get(overview).post(save))
        .route("/teams/{team}/components/{c}/deploy", post(deploy))
        .route("/teams/{team}/components/{c}/stop", post(stop))
        .route("/teams/{team}/components/{c}/delete", get(delete_page).post(delete))
        .merge(installs::routes())
        .merge(perf::routes())
        .merge(acks::routes())
        .merge(runtime::routes())
}

/// The API path of a team's components, or of one of them.
fn api_path(team: &str, c: Option<&str>) -> String {
    match c {
        Some(c) => format!("/teams/{}/components/{}", enc(team), enc(c)),
        None => format!("/teams/{}/components", enc(team)),
    }
}

/// The page path of a component (`tab` empty for the overview).
fn page_path(team: &str, c: &str, tab: &str) -> String {
    let base = format!("/teams/{}/components/{}", enc(team), enc(c));
    if tab.is_empty() { base } else { format!("{base}/{tab}") }
}

/// A refusal a page shows as such (whose fault is not the form's): no session, another
/// team's, a server error.
fn not_the_forms(f: &Failure) -> bool {
    matches!(f.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || f.status.is_server_error()
}

fn with_status(mut res: Response, status: StatusCode) -> Response {
    *res.status_mut() = status;
    res
}

/// The team's components, as the API lists them.
async fn team_components(console: &Console, session: &Session, team: &str) -> Result<Vec<ComponentSpec>, Failure> {
    console.api.get(&session.token, &api_path(team, None)).await
}

/// The components `component` depends on (one read each, not the team's whole list); one gone
/// meanwhile is left out.
async fn dependencies(
    console: &Console,
    session: &Session,
    team: &str,
    component: &ComponentSpec,
) -> Result<Vec<ComponentSpec>, Failure> {
    let mut out = Vec::with_capacity(component.depends_on.len());
    for d in &component.depends_on {
        match console.api.get(&session.token, &api_path(team, Some(d.as_str()))).await {
            Ok(spec) => out.push(spec),
            Err(f) if f.status == StatusCode::NOT_FOUND => {}
            Err(f) => return Err(f),
        }
    }
    Ok(out)
}

/// A component as the list shows it: read without checking its names and image again (the
/// API did), which keeps a list of thousands quick.
#[derive(Deserialize)]
struct Listed {
    name: String,
    image: String,
    #[serde(default)]
    ports: Vec<ListedPort>,
    #[serde(default)]
    depends_on: Vec<String>,
}

#[derive(Deserialize)]
struct ListedPort {
    port: u16,
    protocol: String,
}

/// One row of the list.
struct Row {
    name: String,
    image: String,
    ports: String,
    depends_on: String,
}

/// Rows per page of the list: the search finds the others.
const PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(askama::Template)]
#[template(path = "components/list.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<Row>,
    q: String,
    total: usize,
    matching: usize,
    first: usize,
    last: usize,
    previous: Option<String>,
    next: Option<String>,
}

async fn list(
    session: Session,
    State(console): State<Console>,
    Path(team): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let path = format!("/teams/{team}/components");
    let nav = match Nav::of(&console, &session, &team, "components", path).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let components: Vec<Listed> = match console.api.get(&session.token, &api_path(&team, None)).await {
        Ok(c) => c,
        Err(f) => return failure(&f),
    };
    let total = components.len();
    let needle = query.q.trim().to_lowercase();
    let matching: Vec<Listed> = components
        .into_iter()
        .filter(|c| needle.is_empty() || c.name.contains(&needle) || c.image.to_lowercase().contains(&needle))
        .collect();
    let pages = matching.len().div_ceil(PER_PAGE).max(1);
    let at = query.page.unwrap_or(1).clamp(1, pages);
    let link = |n: usize| format!("/teams/{}/components?q={}&page={n}", enc(&team), enc(&query.q));
    let first = (at - 1) * PER_PAGE;
    let count = matching.len();
    let rows: Vec<Row> = matching
        .into_iter()
        .skip(first)
        .take(PER_PAGE)
        .map(|c| Row {
            ports: c
                .ports
                .iter()
                .map(|p| format!("{} {}", p.port, p.protocol))
                .collect::<Vec<_>>()
                .join(", "),
            depends_on: c.depends_on.join(", "),
            image: c.image,
            name: c.name,
        })
        .collect();
    page(&ListPage {
        nav,
        first: first + 1,
        last: first + rows.len(),
        rows,
        q: query.q.clone(),
        total,
        matching: count,
        previous: (at > 1).then(|| link(at - 1)),
        next: (at < pages).then(|| link(at + 1)),
    })
}

#[derive(askama::Template)]
#[template(path = "components/new.html")]
struct NewPage {
    nav: Nav,
    form: ComponentForm,
    editing: bool,
}

async fn new_page_with(console: &Console, session: &Session, team: &str, form: Option<ComponentForm>) -> Response {
    let path = format!("/teams/{team}/components/new");
    let nav = match Nav::of(console, session, team, "components", path).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let form = match form {
        Some(f) => f,
        None => match team_components(console, session, team).await {
            Ok(all) => ComponentForm::blank(all.iter().map(|c| c.name.to_string()).collect()),
            Err(f) => return failure(&f),
        },
    };
    let refused = !form.errors.is_empty();
    let res = page(&NewPage {
        nav,
        form,
        editing: false,
    });
    if refused {
        with_status(res, StatusCode::UNPROCESSABLE_ENTITY)
    } else {
        res
    }
}

async fn new_page(session: Session, State(console): State<Console>, Path(team): Path<String>) -> Response {
    new_page_with(&console, &session, &team, None).await
}

async fn create(
    session: Session,
    State(console): State<Console>,
    Path(team): Path<String>,
    Form(fields): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &fields) {
        return r;
    }
    let candidates = team_components(&console, &session, &team)
        .await
        .map(|all| all.iter().map(|c| c.name.to_string()).collect())
        .unwrap_or_default();
    let mut form = ComponentForm::posted(&fields, candidates);
    let name = form.value("name").trim().to_owned();
    let parsed = match form::parse(&fields, &name) {
        Ok(p) => p,
        Err(errors) => {
            form.errors = errors;
            return new_page_with(&console, &session, &team, Some(form)).await;
        }
    };
    let answer = console
        .api
        .json::<Value>(&session.token, Method::POST, &api_path(&team, None), Some(&parsed.body))
        .await;
    match answer {
        Ok(_) => Redirect::to(&page_path(&team, &name, "")).into_response(),
        Err(f) if not_the_forms(&f) => failure(&f),
        Err(f) => {
            form.errors = parsed.refusal(&f);
            if f.status == StatusCode::CONFLICT && form.errors.contains_key("_form") {
                form.errors = BTreeMap::from([("name".to_owned(), f.message.clone())]);
            }
            new_page_with(&console, &session, &team, Some(form)).await
        }
    }
}

/// The component's state as its status tells it, in one line.
struct StateLine {
    state: String,
    message: String,
    target: String,
}

impl StateLine {
    fn of(status: &Value) -> Self {
        let text = |k: &str| status[k].as_str().unwrap_or_default().to_owned();
        let mut message = text("message");
        if message.is_empty() {
            message = text("error");
        }
        StateLine {
            state: text("state"),
            message,
            target: text("target"),
        }
    }

    fn renders_only(&self) -> bool {
        self.target == "none"
    }
}

#[derive(askama::Template)]
#[template(path = "components/overview.html")]
struct OverviewPage {
    nav: Nav,
    component: String,
    tab: &'static str,
    form: ComponentForm,
    editing: bool,
    state: Option<StateLine>,
    /// The engine's refusal of the status, or of a deploy or stop just asked.
    notice: Option<String>,
    saved: bool,
}

#[derive(Deserialize, Default)]
struct Saved {
    saved: Option<String>,
}

/// The overview tab; `form` is a refused form to show again, `notice` a refused action.
async fn overview_with(
    console: &Console,
    session: &Session,
    team: &str,
    c: &str,
    form: Option<ComponentForm>,
    notice: Option<String>,
    saved: bool,
) -> Response {
    let nav = match Nav::of(console, session, team, "components", page_path(team, c, "")).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let spec: ComponentSpec = match console.api.get(&session.token, &api_path(team, Some(c))).await {
        Ok(s) => s,
        Err(f) => return failure(&f),
    };
    let form = match form {
        Some(f) => f,
        None => {
            let all = team_components(console, session, team).await.unwrap_or_default();
            let candidates = all.iter().map(|x| x.name.to_string()).filter(|n| n != c).collect();
            ComponentForm::of(&spec, candidates)
        }
    };
    let status_path = format!("{}/status", api_path(team, Some(c)));
    let (state, status_notice) = match console.api.get::<Value>(&session.token, &status_path).await {
        Ok(s) => (Some(StateLine::of(&s)), None),
        Err(f) => (None, Some(format!("The status cannot be read: {f}"))),
    };
    let refused = !form.errors.is_empty();
    let res = page(&OverviewPage {
        nav,
        component: spec.name.to_string(),
        tab: "overview",
        form,
        editing: true,
        state,
        notice: notice.or(status_notice),
        saved,
    });
    if refused {
        with_status(res, StatusCode::UNPROCESSABLE_ENTITY)
    } else {
        res
    }
}

async fn overview(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Query(q): Query<Saved>,
) -> Response {
    overview_with(&console, &session, &team, &c, None, None, q.saved.is_some()).await
}

/// Saves the overview's form: the component replaced through the API (PUT).
async fn save(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Form(fields): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &fields) {
        return r;
    }
    let candidates = team_components(&console, &session, &team)
        .await
        .map(|all| all.iter().map(|x| x.name.to_string()).filter(|n| *n != c).collect())
        .unwrap_or_default();
    let mut form = ComponentForm::posted(&fields, candidates);
    form.text.insert("name", c.clone());
    let parsed = match form::parse(&fields, &c) {
        Ok(p) => p,
        Err(errors) => {
            form.errors = errors;
            return overview_with(&console, &session, &team, &c, Some(form), None, false).await;
        }
    };
    let answer = console
        .api
        .json::<Value>(
            &session.token,
            Method::PUT,
            &api_path(&team, Some(&c)),
            Some(&parsed.body),
        )
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("{}?saved=1", page_path(&team, &c, ""))).into_response(),
        Err(f) if not_the_forms(&f) => failure(&f),
        Err(f) => {
            form.errors = parsed.refusal(&f);
            overview_with(&console, &session, &team, &c, Some(form), None, false).await
        }
    }
}

/// Deploy or stop: the status tab on success, else the overview with the refusal.
async fn run_action(
    console: &Console,
    session: &Session,
    team: &str,
    c: &str,
    fields: &Fields,
    action: &str,
) -> Response {
    if let Err(r) = check_csrf(session, fields) {
        return r;
    }
    let path = format!("{}/{action}", api_path(team, Some(c)));
    match console.api.call(&session.token, Method::POST, &path, None).await {
        Ok(_) => Redirect::to(&page_path(team, c, "status")).into_response(),
        Err(f) if not_the_forms(&f) || f.status == StatusCode::NOT_FOUND => failure(&f),
        Err(f) => {
            let res = overview_with(console, session, team, c, None, Some(f.to_string()), false).await;
            if res.status().is_success() {
                with_status(res, f.status)
            } else {
                res
            }
        }
    }
}

async fn deploy(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Form(fields): Form,
) -> Response {
    run_action(&console, &session, &team, &c, &fields, "deploy").await
}

async fn stop(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Form(fields): Form,
) -> Response {
    run_action(&console, &session, &team, &c, &fields, "stop").await
}

#[derive(askama::Template)]
#[template(path = "components/delete.html")]
struct DeletePage {
    nav: Nav,
    component: String,
    /// Components that depend on this one (the API refuses to delete it while they do).
    dependents: Vec<String>,
    error: Option<String>,
}

async fn delete_page_with(
    console: &Console,
    session: &Session,
    team: &str,
    c: &str,
    error: Option<Failure>,
) -> Response {
    let nav = match Nav::of(console, session, team, "components", page_path(team, c, "delete")).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let all = match team_components(console, session, team).await {
        Ok(a) => a,
        Err(f) => return failure(&f),
    };
    if !all.iter().any(|x| x.name.as_str() == c) {
        return failure(&Failure {
            status: StatusCode::NOT_FOUND,
            code: "not_found".into(),
            message: format!("component `{c}` does not exist in team `{team}`"),
            field: None,
        });
    }
    let dependents = all
        .iter()
        .filter(|x| x.depends_on.iter().any(|d| d.as_str() == c))
        .map(|x| x.name.to_string())
        .collect();
    let status = error.as_ref().map(|f| f.status);
    let res = page(&DeletePage {
        nav,
        component: c.to_owned(),
        dependents,
        error: error.map(|f| f.to_string()),
    });
    match status {
        Some(s) => with_status(res, s),
        None => res,
    }
}

async fn delete_page(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
) -> Response {
    delete_page_with(&console, &session, &team, &c, None).await
}

async fn delete(
    session: Session,
    State(console): State<Console>,
    Path((team, c)): Path<(String, String)>,
    Form(fields): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &fields) {
        return r;
    }
    match console
        .api
        .call(&session.token, Method::DELETE, &api_path(&team, Some(&c)), None)
        .await
    {
        Ok(_) => Redirect::to(&format!("/teams/{}/components", enc(&team))).into_response(),
        Err(f) if not_the_forms(&f) || f.status == StatusCode::NOT_FOUND => failure(&f),
        Err(f) => delete_page_with(&console, &session, &team, &c, Some(f)).await,
    }
}
