//! Signing in and out. The session is the API token itself, in an HttpOnly, SameSite=Strict
//! cookie: it lives as long as the token (revoking the token ends every session that holds it),
//! survives a restart, and works on every replica. Each form carries a CSRF value derived from the
//! token, which a page of another site can neither read nor compute.

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kato_server::auth::Principal;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Console;
use crate::form::Form;
use crate::view::{self, page};

pub const COOKIE: &str = "kato_session";
/// The header `console.js` sends with its requests (its posts carry the form's `_csrf` field):
/// a script's request without a session gets a 401, not the sign-in page.
pub const CSRF_HEADER: &str = "x-kato-csrf";

/// A signed-in user: the token, whom it stands for, and the CSRF value of its forms.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub principal: Principal,
    pub csrf: String,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.principal == Principal::Admin
    }

    /// The team this session lands on: a team token's own, else none.
    pub fn own_team(&self) -> Option<&str> {
        match &self.principal {
            Principal::Team(t) => Some(t.as_str()),
            Principal::Admin => None,
        }
    }
}

/// The CSRF value of a token's forms.
pub fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kato-console-csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|t| !t.is_empty())
}

/// Where a request without a valid session goes: the sign-in page (pages), or a 401 (scripts).
pub struct SignIn(Response);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<Console> for Session {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, SignIn> {
        let to_sign_in = |parts: &Parts| {
            if parts.method == Method::GET && !parts.headers.contains_key(CSRF_HEADER) {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                SignIn(Redirect::to(&format!("/login?next={}", crate::api::enc(next))).into_response())
            } else {
                SignIn((StatusCode::UNAUTHORIZED, "sign in again: the session has ended").into_response())
            }
        };
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(to_sign_in(parts));
        };
        let Ok(principal) = kato_server::auth::principal_of(&console.state, &token).await else {
            return Err(to_sign_in(parts));
        };
        let csrf = csrf_of(&token);
        // Every change carries the CSRF value (each handler checks the form's `_csrf` field with
        // `view::check_csrf`); a browser also says when a request comes from another site, which
        // is refused outright.
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v != "same-origin" && v != "none");
        if parts.method != Method::GET && parts.method != Method::HEAD && cross_site {
            return Err(SignIn(
                (StatusCode::FORBIDDEN, "refused: this request came from another site").into_response(),
            ));
        }
        Ok(Session { token, principal, csrf })
    }
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

#[derive(Deserialize, Default)]
struct Next {
    next: Option<String>,
}

/// Only a path of this site: never another origin.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

async fn home(session: Session, State(console): State<Console>) -> Response {
    if let Some(team) = session.own_team() {
        return Redirect::to(&format!("/teams/{team}/plugins")).into_response();
    }
    let teams: Vec<serde_json::Value> = console.api.get(&session.token, "/teams").await.unwrap_or_default();
    match teams.first().and_then(|t| t["name"].as_str()) {
        Some(first) => Redirect::to(&format!("/teams/{first}/plugins")).into_response(),
        None => Redirect::to("/teams").into_response(),
    }
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
}

async fn login_page(Query(q): Query<Next>) -> Response {
    page(&LoginPage {
        next: safe_next(q.next.as_deref()).to_owned(),
        error: None,
    })
}

/// The sign-in form has no session yet, so no CSRF value: a login from another site could only
/// sign the victim in with the attacker's token; SameSite=Strict and the Sec-Fetch-Site check
/// refuse that too.
async fn login(State(console): State<Console>, headers: HeaderMap, Form(form): Form) -> Response {
    let next = safe_next(form.get("next")).to_owned();
    if headers.get("sec-fetch-site").is_some_and(|v| v == "cross-site") {
        return (StatusCode::FORBIDDEN, "refused: this request came from another site").into_response();
    }
    let token = form.get("token").unwrap_or("").trim().to_owned();
    let refused = |error: &str| {
        let mut res = page(&LoginPage {
            next: next.clone(),
            error: Some(error.to_owned()),
        });
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res
    };
    if token.is_empty() {
        return refused("Give a token: the admin token is in the server's data dir, file admin.token.");
    }
    if token.contains(|c: char| !c.is_ascii_graphic()) {
        return refused("This is not a Kato token: tokens are letters, digits and _ only.");
    }
    if kato_server::auth::principal_of(&console.state, &token).await.is_err() {
        return refused("Unknown or revoked token.");
    }
    let secure = headers.get("x-forwarded-proto").is_some_and(|p| p == "https");
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    let mut res = Redirect::to(&next).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a token is header-safe"),
    );
    res
}

async fn logout(session: Session, Form(form): Form) -> Response {
    if let Err(refused) = view::check_csrf(&session, &form) {
        return refused;
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("kato_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/teams/a/plugins")), "/teams/a/plugins");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn csrf_differs_per_token() {
        assert_ne!(csrf_of("kato_a"), csrf_of("kato_b"));
        assert_eq!(csrf_of("kato_a"), csrf_of("kato_a"));
    }
}
