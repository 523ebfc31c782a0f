//! Signing in and out, the session cookie, CSRF and cross-site refusals, and team boundaries.

mod common;

use axum::http::StatusCode;
use common::Console;

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_out_clears_it() {
    let c = Console::start().await;
    let page = c.get("", "/teams").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2Fteams");

    let wrong = c
        .post_raw(
            "",
            "/login",
            &[("token", "kato_nope"), ("next", "/teams")],
            "same-origin",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.contains("Unknown or revoked token"), "{}", wrong.body);

    let ok = c
        .post_raw("", "/login", &[("token", &c.admin), ("next", "/teams")], "same-origin")
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/teams");
    let cookie = ok.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with(&format!("kato_session={};", c.admin)), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let out = c.post(&c.admin, "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let cleared = out.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        cleared.starts_with("kato_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn sign_in_never_sends_the_browser_to_another_site() {
    let c = Console::start().await;
    for next in ["//evil.example/", "https://evil.example/", "/\\evil.example"] {
        let ok = c
            .post_raw("", "/login", &[("token", &c.admin), ("next", next)], "same-origin")
            .await;
        assert_eq!(ok.location(), "/", "next={next}");
    }
}

#[tokio::test]
async fn a_change_without_the_csrf_value_or_from_another_site_changes_nothing() {
    let c = Console::start().await;
    let no_csrf = c.post_raw(&c.admin, "/teams", &[("name", "a")], "same-origin").await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let other_token_csrf = kato_console::session::csrf_of("kato_someone_else");
    let wrong = c
        .post_raw(
            &c.admin,
            "/teams",
            &[("_csrf", &other_token_csrf), ("name", "b")],
            "same-origin",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let csrf = kato_console::session::csrf_of(&c.admin);
    let cross = c
        .post_raw(&c.admin, "/teams", &[("_csrf", &csrf), ("name", "c")], "cross-site")
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let login_cross = c.post_raw("", "/login", &[("token", &c.admin)], "cross-site").await;
    assert_eq!(login_cross.status, StatusCode::FORBIDDEN);
    assert!(login_cross.headers.get("set-cookie").is_none());
    let (_, teams) = c.api(&c.admin, axum::http::Method::GET, "/teams", None).await;
    assert_eq!(teams, serde_json::json!([]), "no team was created");

    let made = c.post(&c.admin, "/teams", &[("name", "d")]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(made.location(), "/teams/d/plugins");
}

#[tokio::test]
async fn a_team_token_sees_its_team_only_and_no_team_list() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    c.team("beta").await;
    let home = c.get(&a, "/").await;
    assert_eq!(home.location(), "/teams/alpha/plugins");
    let other = c.get(&a, "/teams/beta/settings").await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert!(other.contains("cannot access team `beta`"), "{}", other.body);
    let teams = c.get(&a, "/teams").await;
    assert_eq!(teams.status, StatusCode::SEE_OTHER, "a team token has no team list");
    let settings = c.get(&a, "/teams/alpha/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(!settings.contains("beta"), "the page names no other team");
    // A token of beta made through alpha's session: refused by the API, nothing created.
    let made = c.post(&a, "/teams/beta/settings/tokens", &[("name", "sneak")]).await;
    assert_eq!(made.status, StatusCode::FORBIDDEN, "{}", made.body);
    let (_, tokens) = c
        .api(&c.admin, axum::http::Method::GET, "/teams/beta/tokens", None)
        .await;
    assert_eq!(
        tokens.as_array().unwrap().len(),
        1,
        "only the test's own token: {tokens}"
    );
}

#[tokio::test]
async fn a_revoked_token_ends_its_session() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    assert_eq!(c.get(&a, "/teams/alpha/settings").await.status, StatusCode::OK);
    let (_, tokens) = c
        .api(&c.admin, axum::http::Method::GET, "/teams/alpha/tokens", None)
        .await;
    let id = tokens[0]["id"].to_string();
    let (s, _) = c
        .api(
            &c.admin,
            axum::http::Method::DELETE,
            &format!("/teams/alpha/tokens/{id}"),
            None,
        )
        .await;
    assert!(s.is_success(), "{s}");
    let after = c.get(&a, "/teams/alpha/settings").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location().starts_with("/login"));
}

#[tokio::test]
async fn a_new_token_is_shown_once_and_a_refused_form_keeps_what_was_typed() {
    let c = Console::start().await;
    c.team("alpha").await;
    let made = c
        .post(&c.admin, "/teams/alpha/settings/tokens", &[("name", "ci job")])
        .await;
    assert_eq!(made.status, StatusCode::OK);
    let at = made
        .body
        .find("<code id=\"new-token\">")
        .expect("the new token is shown");
    let token = &made.body[at + 21..at + 21 + 53];
    assert!(token.starts_with("kato_"), "{token}");
    assert_eq!(
        c.get(token, "/teams/alpha/settings").await.status,
        StatusCode::OK,
        "the shown token works"
    );
    assert!(
        !c.get(&c.admin, "/teams/alpha/settings").await.contains(token),
        "shown only once"
    );

    let long = "x".repeat(101);
    let refused = c
        .post(&c.admin, "/teams/alpha/settings/tokens", &[("name", &long)])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.contains(&format!("value=\"{long}\"")), "the input is kept");
    assert!(
        refused.contains("give a token name of 1-100 characters"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn settings_revoke_a_token_and_remove_a_credential_only_with_the_csrf_value() {
    let c = Console::start().await;
    let a = c.team("alpha").await;
    let (_, tokens) = c
        .api(&c.admin, axum::http::Method::GET, "/teams/alpha/tokens", None)
        .await;
    let id = tokens[0]["id"].to_string();
    let (s, _) = c
        .api(
            &c.admin,
            axum::http::Method::POST,
            "/teams/alpha/credentials",
            Some(serde_json::json!({"host": "registry.example.com", "username": "u", "password": "p"})),
        )
        .await;
    assert!(s.is_success(), "{s}");
    let revoke = format!("/teams/alpha/settings/tokens/{id}/delete");
    let remove = "/teams/alpha/settings/credentials/registry.example.com/delete";
    for path in [revoke.as_str(), remove] {
        let refused = c.post_raw(&c.admin, path, &[], "same-origin").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        c.get(&a, "/teams/alpha/settings").await.status,
        StatusCode::OK,
        "nothing revoked"
    );
    let removed = c.post(&c.admin, remove, &[]).await;
    assert_eq!(removed.location(), "/teams/alpha/settings");
    let (_, creds) = c
        .api(&c.admin, axum::http::Method::GET, "/teams/alpha/credentials", None)
        .await;
    assert_eq!(creds, serde_json::json!([]));
    let revoked = c.post(&c.admin, &revoke, &[]).await;
    assert_eq!(revoked.location(), "/teams/alpha/settings");
    assert_eq!(
        c.get(&a, "/teams/alpha/settings").await.status,
        StatusCode::SEE_OTHER,
        "the session ended"
    );
}
