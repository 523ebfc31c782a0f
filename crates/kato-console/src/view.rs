//! What every page shares: rendering, the navigation bar, and the error page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::api::{Failure, enc};
use crate::{Console, Session};

/// Renders a template into a page; a template that fails to render is a 500 with the reason logged.
pub fn page<T: askama::Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

/// A fragment (for a script to place in a page), rendered like a page.
#[allow(dead_code)]
pub fn fragment<T: askama::Template>(t: &T) -> Response {
    page(t)
}

/// The header of every signed-in page.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The team the page belongs to (empty on pages above teams).
    pub team: String,
    /// The teams the switcher offers (the admin's); a team token has only its own.
    pub teams: Vec<String>,
    pub admin: bool,
    pub csrf: String,
    /// Which part of the menu is current: `plugins`, `components`, `settings`, `teams`.
    pub section: &'static str,
    /// Where the page is (`/teams/a/plugins/x`), for the team switcher to keep the place.
    pub path: String,
}

impl Nav {
    /// The navigation of a page of `team`; a team token reaching for another team gets the
    /// API's refusal, as a page.
    pub async fn of(
        console: &Console,
        session: &Session,
        team: &str,
        section: &'static str,
        path: String,
    ) -> Result<Nav, Response> {
        let teams = if session.is_admin() {
            let teams: Vec<serde_json::Value> = console
                .api
                .get(&session.token, "/teams")
                .await
                .map_err(|f| failure(&f))?;
            teams
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        } else {
            vec![session.own_team().unwrap_or_default().to_owned()]
        };
        if !team.is_empty() && !teams.iter().any(|t| t == team) {
            let f = match session.own_team() {
                Some(own) => Failure {
                    status: StatusCode::FORBIDDEN,
                    code: "forbidden".into(),
                    message: format!("this token belongs to team `{own}` and cannot access team `{team}`"),
                    field: None,
                },
                None => Failure {
                    status: StatusCode::NOT_FOUND,
                    code: "not_found".into(),
                    message: format!("team `{team}` does not exist: create it on the Teams page"),
                    field: None,
                },
            };
            return Err(failure(&f));
        }
        Ok(Nav {
            team: team.to_owned(),
            teams,
            admin: session.is_admin(),
            csrf: session.csrf.clone(),
            section,
            path,
        })
    }

    /// This page's path in another team (the switcher's links).
    pub fn in_team(&self, other: &str) -> String {
        let prefix = format!("/teams/{}/", self.team);
        let section = match self.path.strip_prefix(&prefix) {
            Some(rest) => rest.split('/').next().unwrap_or("plugins"),
            None => "plugins",
        };
        format!("/teams/{}/{section}", enc(other))
    }
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// The API's refusal, as a page with its status.
pub fn failure(f: &Failure) -> Response {
    let title = match f.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Sign in again",
        s if s.is_server_error() => "Something went wrong",
        _ => "Refused",
    };
    let message = f.to_string();
    let mut res = page(&ErrorPage {
        status: f.status.as_u16(),
        title,
        message: &message,
    });
    *res.status_mut() = f.status;
    res
}

/// A change without the session's CSRF value.
pub fn csrf_refused() -> Response {
    let mut res = page(&ErrorPage {
        status: 403,
        title: "Refused",
        message: "This form is out of date or came from another site: reload the page and try again.",
    });
    *res.status_mut() = StatusCode::FORBIDDEN;
    res
}

/// Checks a posted form's CSRF value (or the script's header) against the session's.
// The refusal is the response itself, built once per refused request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub fn check_csrf(session: &Session, form: &crate::form::Fields) -> Result<(), Response> {
    if form.get("_csrf") == Some(session.csrf.as_str()) {
        Ok(())
    } else {
        Err(csrf_refused())
    }
}

/// Formats a size in MiB as people read it.
pub fn mib(m: u64) -> String {
    if m >= 1024 && m.is_multiple_of(1024) {
        format!("{} GiB", m / 1024)
    } else {
        format!("{m} MiB")
    }
}
