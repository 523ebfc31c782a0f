//! The client against a real `kato` server on a loopback port (SQLite, a real registry for the
//! plug-in's image), stopped and started again to prove the watch survives it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kato_discovery_client::{AckStatus, Client, Error};
use kato_server::Config;
use kato_testkit::TestRegistry;
use serde_json::{Value, json};
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    admin: String,
    state: std::sync::Arc<kato_server::AppState>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path, addr: SocketAddr) -> Running {
    let config = Config {
        data_dir: dir.to_owned(),
        listen: addr,
        database_url: None,
        public_url: None,
        target: Some(kato_server::TargetKind::None),
        kubeconfig: None,
        builds: Default::default(),
        secret_key: Default::default(),
    };
    let (state, token_path) = kato_server::prepare(&config).await.unwrap();
    let admin = std::fs::read_to_string(token_path).unwrap().trim().to_owned();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
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
    Running {
        addr,
        admin,
        state,
        stop,
        done,
    }
}

impl Running {
    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let res = reqwest::Client::new()
            .request(method, format!("http://{}/api/v1{path}", self.addr))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    fn url(&self) -> String {
        format!("http://{}/discovery/v1/demo/web/mesh", self.addr)
    }

    async fn token(&self) -> String {
        let (t, c, p) = ("demo".parse().unwrap(), "web".parse().unwrap(), "mesh".parse().unwrap());
        let record = self.state.store.get_installation(&t, &c, &p).await.unwrap().unwrap();
        self.state.discovery.token(&t, &c, &record)
    }

    async fn set_level(&self, level: &str) {
        self.api(
            reqwest::Method::PUT,
            "/teams/demo/components/web/plugins/mesh",
            json!({"values": {"base": {"LEVEL": level}}}),
        )
        .await;
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.done.await.unwrap();
        self.state.store.close().await;
    }
}

async fn seeded(dir: &Path, registry: &TestRegistry) -> Running {
    let s = start(dir, "127.0.0.1:0".parse().unwrap()).await;
    let image = registry.push_image("demo/mesh", "1").await.image.to_string();
    let post = reqwest::Method::POST;
    s.api(post.clone(), "/teams", json!({"name": "demo"})).await;
    s.api(
        post.clone(),
        "/teams/demo/plugins",
        json!({"name": "mesh", "kind": "general", "source": {"image": image}, "config_groups": [
            {"name": "base", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]}]}),
    )
    .await;
    s.api(post.clone(), "/teams/demo/plugins/mesh/versions", json!(null))
        .await;
    s.api(
        post,
        "/teams/demo/components",
        json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}]}),
    )
    .await;
    s.api(
        reqwest::Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        json!({}),
    )
    .await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_watch_and_ack() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let s = seeded(dir.path(), &registry).await;
    let client = Client::new(s.url(), s.token().await);

    let doc = client.fetch().await.unwrap();
    assert_eq!((doc.plugin.as_str(), doc.version), ("mesh", 1));
    assert_eq!(doc.base["LEVEL"], "info");
    assert_eq!(doc.ports.len(), 0);

    let mut watch = client.watch();
    assert_eq!(
        watch.next().await.unwrap(),
        doc,
        "the first call gives the current document"
    );
    let next = tokio::spawn(async move { (watch.next().await, watch) });
    s.set_level("debug").await;
    let (got, watch) = tokio::time::timeout(Duration::from_secs(20), next)
        .await
        .unwrap()
        .unwrap();
    let got = got.unwrap();
    assert_eq!((got.revision, &got.base["LEVEL"]), (doc.revision + 1, &json!("debug")));
    assert_eq!(watch.last(), Some(&got));

    client.ack(got.revision, "web-1", AckStatus::Applied, "").await.unwrap();
    let i = s
        .api(
            reqwest::Method::GET,
            "/teams/demo/components/web/plugins/mesh",
            json!(null),
        )
        .await;
    assert_eq!(i["pods"][0]["applied_revision"], got.revision);
    let e = client
        .ack(got.revision + 5, "web-1", AckStatus::Applied, "")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused { status: 400, .. }), "{e}");

    // A wrong token is refused, and is not worth retrying.
    let e = Client::new(s.url(), "kd_wrong").fetch().await.unwrap_err();
    assert!(
        matches!(e, Error::Refused { status: 401, .. }) && !e.is_transient(),
        "{e}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let s = seeded(dir.path(), &registry).await;
    let (addr, url, token) = (s.addr, s.url(), s.token().await);
    let client = Client::new(url, token).with_wait(Duration::from_secs(5));
    let mut watch = client.watch();
    let first = watch.next().await.unwrap();
    s.stop().await;

    // While the server is away, the watch keeps trying and keeps the last document.
    let down = tokio::time::timeout(Duration::from_secs(1), watch.next()).await;
    assert!(down.is_err(), "no new document can come while the server is down");
    assert_eq!(watch.last(), Some(&first));

    let s = start(dir.path(), addr).await;
    let next = tokio::spawn(async move { watch.next().await });
    s.set_level("warn").await;
    let got = tokio::time::timeout(Duration::from_secs(60), next)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((got.revision, &got.base["LEVEL"]), (first.revision + 1, &json!("warn")));
    s.stop().await;
}
