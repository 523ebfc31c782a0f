//! A server on a real port targeting podman, for plug-ins that call it back (discovery), and
//! the busybox image with every applet they are written in.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kato_server::{AppState, Config, TargetKind};
use serde_json::Value;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// busybox-static with every applet (`nc`, `sed`, `printf`…), imported once per machine.
pub const BASE: &str = "localhost/kato-test/busybox-full:1";

/// Imports [`BASE`] once per machine.
pub fn base_image() {
    assert_eq!(kato_testkit::busybox_full_image(), BASE);
}

/// A server listening on all interfaces, telling its plug-ins `host.containers.internal` (the
/// host as pods on podman's bridge networks reach it).
pub struct Live {
    pub state: Arc<AppState>,
    pub admin: String,
    pub port: u16,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Live {
    /// Serves on `0.0.0.0:port` (0: any free port) with the data in `dir`.
    pub async fn start(dir: &Path, port: u16) -> Live {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = Config {
            data_dir: dir.to_owned(),
            listen: listener.local_addr().unwrap(),
            database_url: None,
            public_url: Some(format!("http://host.containers.internal:{port}")),
            target: Some(TargetKind::Podman),
            kubeconfig: None,
            builds: Default::default(),
            secret_key: Default::default(),
        };
        let (state, token_path) = kato_server::prepare(&config).await.unwrap();
        let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn({
            let state = state.clone();
            async move {
                kato_server::serve_on(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Live {
            state,
            admin,
            port,
            stop,
            done,
        }
    }

    pub async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.done.await.unwrap();
        self.state.store.close().await;
    }

    /// Calls `/api/v1{path}` as the admin; the status and the body.
    pub async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header("authorization", format!("Bearer {}", self.admin));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = kato_server::router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}
