//! A server under test: a real SQLite store in a temp dir, a real local registry, and the
//! router called in-process (no port bound).
#![allow(dead_code)]

pub mod live;
pub mod podman;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kato_server::{AppState, Config};
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Server {
    pub router: Router,
    pub state: Arc<AppState>,
    pub admin: String,
    pub registry: TestRegistry,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:7070".parse().unwrap(),
        database_url: None,
        public_url: Some("http://kato.test:7070".into()),
        target: Some(kato_runtime::TargetKind::None),
        kubeconfig: None,
        builds: Default::default(),
        secret_key: Default::default(),
    }
}

impl Server {
    /// A server whose build worker runs, pushing to its test registry; `tune` adjusts the
    /// build settings.
    pub async fn start_building(tune: impl FnOnce(&mut kato_server::builds::BuildSettings)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().await;
        let mut cfg = config(dir.path());
        cfg.builds.registry = Some(format!("{}/platform", registry.host()).parse().unwrap());
        tune(&mut cfg.builds);
        let (state, token_path) = kato_server::prepare(&cfg).await.unwrap();
        let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
        tokio::spawn(kato_server::builds::run_worker(
            state.clone(),
            kato_build::CancellationToken::new(),
        ));
        Server {
            router: kato_server::router(state.clone()),
            state,
            admin,
            registry,
            dir,
        }
    }

    /// Polls a version until its status is final (bounded), and answers it.
    pub async fn finished_version(&self, team: &str, plugin: &str, n: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let v = self
                .ok(
                    Method::GET,
                    &format!("/teams/{team}/plugins/{plugin}/versions/{n}"),
                    None,
                    StatusCode::OK,
                )
                .await;
            if !matches!(v["status"].as_str(), Some("queued" | "building")) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "version {n} of {plugin} finishes: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn start() -> Server {
        Self::start_on(kato_runtime::TargetKind::None).await
    }

    /// A server whose components run on `target`.
    pub async fn start_on(target: kato_runtime::TargetKind) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.target = Some(target);
        Self::start_config(dir, config).await
    }

    /// A server on its own data dir and, when given, that database instead of SQLite.
    pub async fn start_with(dir: tempfile::TempDir, database_url: Option<String>) -> Server {
        let config = Config {
            database_url,
            ..config(dir.path())
        };
        Self::start_config(dir, config).await
    }

    async fn start_config(dir: tempfile::TempDir, config: Config) -> Server {
        let (state, token_path) = kato_server::prepare(&config).await.unwrap();
        let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
        let registry = TestRegistry::start().await;
        Server {
            router: kato_server::router(state.clone()),
            state,
            admin,
            registry,
            dir,
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Calls the API as `token`; the body is parsed as JSON (Null when empty).
    pub async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.raw(method, &format!("/api/v1{path}"), Some(token), body).await;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let admin = self.admin.clone();
        self.call_as(&admin, method, path, body).await
    }

    /// Calls and asserts the status, returning the body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>, expect: StatusCode) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert_eq!(status, expect, "{method} {path} answered {v}");
        v
    }

    pub async fn team(&self, name: &str) {
        self.ok(Method::POST, "/teams", Some(json!({"name": name})), StatusCode::CREATED)
            .await;
    }

    /// A plug-in from an image pushed to the test registry, with version 1 built.
    pub async fn plugin(&self, team: &str, spec: Value) -> Value {
        let name = spec["name"].as_str().unwrap().to_owned();
        self.ok(
            Method::POST,
            &format!("/teams/{team}/plugins"),
            Some(spec),
            StatusCode::CREATED,
        )
        .await;
        let v = self
            .ok(
                Method::POST,
                &format!("/teams/{team}/plugins/{name}/versions"),
                None,
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(v["status"], "succeeded", "{v}");
        v
    }

    pub async fn image(&self, repo: &str) -> String {
        self.registry.push_image(repo, "1").await.image.to_string()
    }

    /// Everything a team holds, as the API shows it: compared before and after a rejected
    /// request to prove it changed nothing.
    pub async fn snapshot(&self, team: &str) -> Value {
        let plugins = self
            .ok(Method::GET, &format!("/teams/{team}/plugins"), None, StatusCode::OK)
            .await;
        let mut versions = serde_json::Map::new();
        for p in plugins.as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            versions.insert(
                name.into(),
                self.ok(
                    Method::GET,
                    &format!("/teams/{team}/plugins/{name}/versions"),
                    None,
                    StatusCode::OK,
                )
                .await,
            );
        }
        let components = self
            .ok(Method::GET, &format!("/teams/{team}/components"), None, StatusCode::OK)
            .await;
        let mut installs = serde_json::Map::new();
        for c in components.as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            installs.insert(
                name.into(),
                self.ok(
                    Method::GET,
                    &format!("/teams/{team}/components/{name}/plugins"),
                    None,
                    StatusCode::OK,
                )
                .await,
            );
        }
        json!({"plugins": plugins, "versions": versions, "components": components, "installations": installs})
    }
}
