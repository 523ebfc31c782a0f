//! Teams (the admin's list and switcher) and a team's settings: tokens and credentials.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::enc;
use crate::form::{Fields, Form};
use crate::view::{Nav, check_csrf, failure, page};
use crate::{Console, Session};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/teams", get(teams).post(create_team))
        .route("/teams/switch", get(switch))
        .route("/teams/{team}", get(team_home))
        .route("/teams/{team}/settings", get(settings))
        .route("/teams/{team}/settings/tokens", post(create_token))
        .route("/teams/{team}/settings/tokens/{id}/delete", post(delete_token))
        .route("/teams/{team}/settings/credentials", post(put_credential))
        .route(
            "/teams/{team}/settings/credentials/{host}/delete",
            post(delete_credential),
        )
}

#[derive(Deserialize)]
struct Switch {
    to: Option<String>,
}

/// The switcher without a script: its form asks here.
async fn switch(_: Session, Query(q): Query<Switch>) -> Redirect {
    match q.to.as_deref() {
        Some(to) if to.starts_with("/teams/") && !to.contains("//") => Redirect::to(to),
        _ => Redirect::to("/"),
    }
}

async fn team_home(_: Session, Path(team): Path<String>) -> Redirect {
    Redirect::to(&format!("/teams/{}/plugins", enc(&team)))
}

#[derive(askama::Template)]
#[template(path = "teams.html")]
struct TeamsPage {
    nav: Nav,
    teams: Vec<(String, String)>,
    name: String,
    error: Option<String>,
}

async fn teams_page(console: &Console, session: &Session, name: String, error: Option<String>) -> Response {
    if !session.is_admin() {
        return Redirect::to("/").into_response();
    }
    let nav = match Nav::of(console, session, "", "teams", "/teams".into()).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let listed: Vec<Value> = match console.api.get(&session.token, "/teams").await {
        Ok(t) => t,
        Err(f) => return failure(&f),
    };
    let teams = listed
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["created_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut res = page(&TeamsPage {
        nav,
        teams,
        error: error.clone(),
        name,
    });
    if error.is_some() {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

async fn teams(session: Session, State(console): State<Console>) -> Response {
    teams_page(&console, &session, String::new(), None).await
}

async fn create_team(session: Session, State(console): State<Console>, Form(form): Form) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let name = form.get("name").unwrap_or("").trim().to_owned();
    let body = json!({"name": name});
    match console
        .api
        .json::<Value>(&session.token, Method::POST, "/teams", Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/teams/{}/plugins", enc(&name))).into_response(),
        Err(f) => teams_page(&console, &session, name, Some(f.to_string())).await,
    }
}

#[derive(askama::Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    nav: Nav,
    tokens: Vec<Value>,
    credentials: Vec<Value>,
    /// A token just created: shown once.
    new_token: Option<String>,
    /// What was typed into a refused form, and the errors by field.
    typed: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
}

impl SettingsPage {
    fn typed(&self, name: &str) -> &str {
        self.typed.get(name).map_or("", String::as_str)
    }

    fn error(&self, name: &str) -> &str {
        self.errors.get(name).map_or("", String::as_str)
    }
}

async fn settings_page(
    console: &Console,
    session: &Session,
    team: &str,
    new_token: Option<String>,
    typed: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
) -> Response {
    let path = format!("/teams/{team}/settings");
    let nav = match Nav::of(console, session, team, "settings", path).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let t = enc(team);
    let tokens = match console.api.get(&session.token, &format!("/teams/{t}/tokens")).await {
        Ok(v) => v,
        Err(f) => return failure(&f),
    };
    let credentials = match console
        .api
        .get(&session.token, &format!("/teams/{t}/credentials"))
        .await
    {
        Ok(v) => v,
        Err(f) => return failure(&f),
    };
    let refused = !errors.is_empty();
    let mut res = page(&SettingsPage {
        nav,
        tokens,
        credentials,
        new_token,
        typed,
        errors,
    });
    if refused {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

async fn settings(session: Session, State(console): State<Console>, Path(team): Path<String>) -> Response {
    settings_page(&console, &session, &team, None, BTreeMap::new(), BTreeMap::new()).await
}

/// The API's refusal of a form, as the errors shown beside its fields (`prefix` + the API's field).
fn refusal(prefix: &str, f: &crate::Failure) -> BTreeMap<String, String> {
    let field = f
        .field
        .as_deref()
        .map_or_else(|| format!("{prefix}_form"), |x| format!("{prefix}{x}"));
    BTreeMap::from([(field, f.message.clone())])
}

async fn create_token(
    session: Session,
    State(console): State<Console>,
    Path(team): Path<String>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let name = form.get("name").unwrap_or("").trim().to_owned();
    let path = format!("/teams/{}/tokens", enc(&team));
    let body = json!({"name": name});
    match console
        .api
        .json::<Value>(&session.token, Method::POST, &path, Some(&body))
        .await
    {
        Ok(v) => {
            let token = v["token"].as_str().map(str::to_owned);
            settings_page(&console, &session, &team, token, BTreeMap::new(), BTreeMap::new()).await
        }
        Err(f) => {
            let typed = BTreeMap::from([("token.name".to_owned(), name)]);
            settings_page(&console, &session, &team, None, typed, refusal("token.", &f)).await
        }
    }
}

async fn delete_token(
    session: Session,
    State(console): State<Console>,
    Path((team, id)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    delete_then_settings(&console, &session, &team, &form, &format!("tokens/{}", enc(&id))).await
}

async fn put_credential(
    session: Session,
    State(console): State<Console>,
    Path(team): Path<String>,
    Form(form): Form,
) -> Response {
    if let Err(r) = check_csrf(&session, &form) {
        return r;
    }
    let mut body = json!({
        "host": form.get("host").unwrap_or("").trim(),
        "username": form.get("username").unwrap_or(""),
        "password": form.get("password").unwrap_or(""),
    });
    if let Some(key) = form.text("ssh_key") {
        body["ssh_key"] = key.into();
        body["known_hosts"] = form.get("known_hosts").unwrap_or("").into();
    } else if let Some(known) = form.text("known_hosts") {
        body["known_hosts"] = known.into();
    }
    let path = format!("/teams/{}/credentials", enc(&team));
    match console
        .api
        .json::<Value>(&session.token, Method::POST, &path, Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/teams/{}/settings", enc(&team))).into_response(),
        Err(f) => {
            // Secrets are not sent back to the page: only what is safe to show again.
            let typed = ["host", "username", "known_hosts"]
                .iter()
                .map(|k| (format!("credential.{k}"), form.get(k).unwrap_or("").to_owned()))
                .collect();
            settings_page(&console, &session, &team, None, typed, refusal("credential.", &f)).await
        }
    }
}

async fn delete_credential(
    session: Session,
    State(console): State<Console>,
    Path((team, host)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    delete_then_settings(&console, &session, &team, &form, &format!("credentials/{}", enc(&host))).await
}

/// Deletes `/teams/{team}/{what}` through the API and goes back to the settings page.
async fn delete_then_settings(console: &Console, session: &Session, team: &str, form: &Fields, what: &str) -> Response {
    if let Err(r) = check_csrf(session, form) {
        return r;
    }
    let path = format!("/teams/{}/{what}", enc(team));
    match console.api.call(&session.token, Method::DELETE, &path, None).await {
        Ok(_) => Redirect::to(&format!("/teams/{}/settings", enc(team))).into_response(),
        Err(f) => failure(&f),
    }
}
