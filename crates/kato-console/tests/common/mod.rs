//! A console under test: a real SQLite store in a temp dir, the API and the pages called
//! in-process (no port bound), a browser's requests made by hand: the session cookie, the form's
//! CSRF value, `Sec-Fetch-Site`.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use kato_server::{AppState, Config};
use serde_json::Value;
use tower::ServiceExt;

pub struct Console {
    pub app: Router,
    pub state: Arc<AppState>,
    pub admin: String,
    pub dir: tempfile::TempDir,
}

/// A page's answer.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
    }

    /// The CSRF value of the page's forms.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"_csrf\" value=\"").expect("the page has a form");
        let rest = &self.body[at + "name=\"_csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    pub fn contains(&self, s: &str) -> bool {
        self.body.contains(s)
    }
}

pub fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:7070".parse().unwrap(),
        database_url: None,
        public_url: Some("http://kato.test:7070".into()),
        target: Some(kato_server::TargetKind::None),
        kubeconfig: None,
        builds: Default::default(),
        secret_key: Default::default(),
    }
}

impl Console {
    /// The server with the console's pages, as `kato serve` serves them, on the `none` target.
    pub async fn start() -> Console {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with(config(dir.path()), dir).await
    }

    pub async fn start_with(cfg: Config, dir: tempfile::TempDir) -> Console {
        Self::start_with_options(cfg, dir, kato_console::Options::default()).await
    }

    /// The console run with `options` (the others run on the defaults `kato serve` uses).
    pub async fn start_with_options(cfg: Config, dir: tempfile::TempDir, options: kato_console::Options) -> Console {
        let (state, token_path) = kato_server::prepare(&cfg).await.unwrap();
        let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
        let app = kato_server::app(&state, Some(kato_console::pages_with(options)));
        Console { app, state, admin, dir }
    }

    async fn send(&self, req: Request<Body>) -> Page {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A page, as a browser signed in with `token` asks for it.
    pub async fn get(&self, token: &str, path: &str) -> Page {
        let req = Request::get(path)
            .header(header::COOKIE, format!("kato_session={token}"))
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// A form posted by a page of this site (with the session's CSRF value added).
    pub async fn post(&self, token: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = kato_console::session::csrf_of(token);
        let mut all: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
        all.extend_from_slice(fields);
        self.post_raw(token, path, &all, "same-origin").await
    }

    /// A form posted exactly as given, from a page of `site` (`same-origin`, `cross-site`, …).
    pub async fn post_raw(&self, token: &str, path: &str, fields: &[(&str, &str)], site: &str) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = Request::post(path)
            .header(header::COOKIE, format!("kato_session={token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    /// A call to the REST API with `token`, answering its JSON (for setting up and checking).
    pub async fn api(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let page = self.send(req.body(body).unwrap()).await;
        (page.status, serde_json::from_str(&page.body).unwrap_or(Value::Null))
    }

    /// Creates a team and answers a token of it.
    pub async fn team(&self, name: &str) -> String {
        let (s, _) = self
            .api(
                &self.admin,
                Method::POST,
                "/teams",
                Some(serde_json::json!({"name": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, t) = self
            .api(
                &self.admin,
                Method::POST,
                &format!("/teams/{name}/tokens"),
                Some(serde_json::json!({"name": "test"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        t["token"].as_str().unwrap().to_owned()
    }
}
