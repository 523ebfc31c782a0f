//! The example sidecar as a process against a real server: it writes each revision to its file
//! and acks it; in compat mode it writes the ResourceSpec read from `$DISCOVER_URL`.

use std::path::Path;
use std::time::Duration;

use kato_server::Config;
use kato_testkit::TestRegistry;
use serde_json::{Value, json};

struct Server {
    base: String,
    admin: String,
    state: std::sync::Arc<kato_server::AppState>,
}

impl Server {
    async fn start(dir: &Path) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
        tokio::spawn(kato_server::serve_on(listener, state.clone(), std::future::pending()));
        Server {
            base: format!("http://{addr}"),
            admin: std::fs::read_to_string(token_path).unwrap().trim().to_owned(),
            state,
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let res = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.base))
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

    async fn token(&self) -> String {
        let (t, c, p) = ("demo".parse().unwrap(), "web".parse().unwrap(), "side".parse().unwrap());
        let record = self.state.store.get_installation(&t, &c, &p).await.unwrap().unwrap();
        self.state.discovery.token(&t, &c, &record)
    }
}

async fn seeded(dir: &Path, registry: &TestRegistry) -> Server {
    let s = Server::start(dir).await;
    let image = registry.push_image("demo/side", "1").await.image.to_string();
    let post = reqwest::Method::POST;
    s.api(post.clone(), "/teams", json!({"name": "demo"})).await;
    s.api(
        post.clone(),
        "/teams/demo/plugins",
        json!({"name": "side", "kind": "general", "source": {"image": image}, "config_groups": [
            {"name": "base", "injection": "discovery", "items": [{"name": "LEVEL", "default": "info"}]},
            {"name": "down", "meta": "downstream-port", "injection": "discovery", "items": [{"name": "RETRIES", "default": "3"}]}]}),
    )
    .await;
    s.api(post.clone(), "/teams/demo/plugins/side/versions", json!(null))
        .await;
    s.api(
        post.clone(),
        "/teams/demo/components",
        json!({"name": "db", "image": "mysql", "ports": [{"port": 3306, "protocol": "mysql"}]}),
    )
    .await;
    s.api(
        post,
        "/teams/demo/components",
        json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}], "depends_on": ["db"]}),
    )
    .await;
    s.api(
        reqwest::Method::PUT,
        "/teams/demo/components/web/plugins/side",
        json!({}),
    )
    .await;
    s
}

struct Sidecar(std::process::Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sidecar(envs: &[(&str, &str)], output: &Path, compat: bool) -> Sidecar {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_discovery-sidecar"));
    cmd.env_clear()
        .env("SIDECAR_OUTPUT", output)
        .env("HOSTNAME", "web-pod-1")
        .envs(envs.iter().copied());
    if compat {
        cmd.args(["--compat", "--interval", "1"]);
    }
    Sidecar(cmd.spawn().unwrap())
}

/// Polls the output file until `check` holds (bounded).
async fn file_until(path: &Path, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            && check(&v)
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never matched",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_acks_each_revision() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let s = seeded(dir.path(), &registry).await;
    let out = dir.path().join("out/discovery.json");
    let url = format!("{}/discovery/v1/demo/web/side", s.base);
    let token = s.token().await;
    let _side = sidecar(
        &[("KATO_DISCOVERY_URL", &url), ("KATO_DISCOVERY_TOKEN", &token)],
        &out,
        false,
    );
    let first = file_until(&out, |v| v["base"]["LEVEL"] == "info").await;
    let r = first["revision"].as_u64().unwrap();
    assert_eq!(first["downstream"][0]["component"], "db");

    s.api(
        reqwest::Method::PUT,
        "/teams/demo/components/web/plugins/side",
        json!({"values": {"base": {"LEVEL": "debug"}}}),
    )
    .await;
    let next = file_until(&out, |v| v["base"]["LEVEL"] == "debug").await;
    assert_eq!(next["revision"].as_u64(), Some(r + 1));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let i = s
            .api(
                reqwest::Method::GET,
                "/teams/demo/components/web/plugins/side",
                json!(null),
            )
            .await;
        if i["pods"][0]["applied_revision"].as_u64() == Some(r + 1) {
            assert_eq!(i["pods"][0]["pod"], "web-pod-1");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ack of revision {}: {i}",
            r + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_mode_reads_discover_url() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let s = seeded(dir.path(), &registry).await;
    let out = dir.path().join("spec.json");
    let url = format!("{}/v1/resources/demo/web/side?token={}", s.base, s.token().await);
    let _side = sidecar(&[("DISCOVER_URL", &url)], &out, true);
    let spec = file_until(&out, |v| v.get("base_services").is_some()).await;
    assert_eq!(spec["base_normal"]["options"]["LEVEL"], "info");
    assert_eq!(spec["base_services"][0]["depend_service_alias"], "db");
    assert_eq!(spec["base_services"][0]["port"], 3306);
    assert_eq!(spec["base_services"][0]["options"]["RETRIES"], "3");
}
