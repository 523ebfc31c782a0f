//! The `kato` binary against a real server on a loopback port: tables for people, JSON for
//! scripts, and a non-zero exit with the server's message on failure.

use std::process::Output;

use kato_testkit::TestRegistry;
use serde_json::Value;

struct Env {
    server: String,
    state: std::sync::Arc<kato_server::AppState>,
    dir: tempfile::TempDir,
    registry: TestRegistry,
}

async fn start() -> Env {
    start_on(kato_server::TargetKind::None).await
}

async fn start_on(target: kato_server::TargetKind) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = kato_server::Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: None,
        public_url: None,
        target: Some(target),
        kubeconfig: None,
        builds: Default::default(),
        secret_key: Default::default(),
    };
    let (state, _) = kato_server::prepare(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = state.clone();
    tokio::spawn(async move { axum_serve(listener, served).await });
    Env {
        server: format!("http://{addr}"),
        state,
        dir,
        registry: TestRegistry::start().await,
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, state: std::sync::Arc<kato_server::AppState>) {
    kato_server::serve_on(listener, state, std::future::pending())
        .await
        .unwrap();
}

impl Env {
    async fn kato(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kato"));
        cmd.args(args)
            .env_remove("KATO_TOKEN")
            .env("KATO_SERVER", &self.server)
            .env("KATO_DATA_DIR", self.dir.path())
            .env("KATO_TEAM", "demo");
        tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
            .await
            .expect("kato finished in time")
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kato(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kato {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_walk_through_works_from_the_command_line() {
    let env = start().await;
    let image = env.registry.push_image("demo/logtail", "1").await;
    env.ok(&["team", "create", "demo"]).await;
    let table = env
        .ok(&[
            "plugin",
            "create",
            "logtail",
            "--kind",
            "general",
            "--image",
            image.image.as_str(),
            "--memory",
            "64",
        ])
        .await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("logtail") && table.contains("general"), "{table}");

    let built = env.ok(&["plugin", "build", "logtail", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&built).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert!(v["image"].as_str().unwrap().ends_with(&image.digest), "{v}");

    env.ok(&[
        "component",
        "create",
        "web",
        "--image",
        "nginx:1.27",
        "--port",
        "80/http",
        "--volume",
        "logs:/var/log/nginx",
    ])
    .await;
    env.ok(&["install", "web", "logtail", "--memory", "96"]).await;
    let installed = env.kato(&["install", "web", "logtail", "--set", "NOPE=1"]).await;
    assert!(!installed.status.success(), "an unknown item fails");
    let err = String::from_utf8_lossy(&installed.stderr);
    assert!(
        err.contains("the plug-in has no `meta: none` group"),
        "the server's message is shown: {err}"
    );

    env.ok(&["disable", "web", "logtail"]).await;
    let list = env.ok(&["component", "plugins", "web", "-o", "yaml"]).await;
    let v: Value = serde_yaml::from_str(&list).unwrap();
    assert_eq!(v[0]["enabled"], false);
    env.ok(&["enable", "web", "logtail"]).await;

    let yaml = env.ok(&["render", "web"]).await;
    assert!(
        yaml.contains("name: plugin-logtail") && yaml.contains("kind: Deployment"),
        "{yaml}"
    );
    let podman = env.ok(&["render", "web", "--target", "podman"]).await;
    assert!(podman.contains("kind: Pod"), "{podman}");

    env.ok(&["uninstall", "web", "logtail"]).await;
    let missing = env.kato(&["plugin", "get", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("plug-in `nope` does not exist in team `demo`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_say_who_built_them() {
    let env = start().await;
    let image = env.registry.push_image("demo/agent", "1").await;
    env.ok(&["team", "create", "demo"]).await;
    env.ok(&[
        "plugin",
        "create",
        "agent",
        "--kind",
        "general",
        "--image",
        image.image.as_str(),
    ])
    .await;
    let built = env.ok(&["plugin", "build", "agent"]).await;
    assert!(built.lines().next().unwrap().contains("  BY  "), "{built}");
    assert!(built.contains("  admin  "), "{built}");
    let token: Value =
        serde_json::from_str(&env.ok(&["token", "create", "--name", "ci job", "-o", "json"]).await).unwrap();
    let token = token["token"].as_str().unwrap();
    env.ok(&["--token", token, "plugin", "build", "agent"]).await;

    let table = env.ok(&["plugin", "versions", "agent"]).await;
    let lines: Vec<&str> = table.lines().collect();
    let by = lines[0].find("BY").expect("a BY column");
    assert_eq!(
        lines[0][by..].split_whitespace().collect::<Vec<_>>(),
        ["BY", "CREATED"],
        "{table}"
    );
    assert!(lines[1][by..].starts_with("admin "), "{table}");
    assert!(lines[2][by..].starts_with("token ci job "), "{table}");
    let json: Value = serde_json::from_str(&env.ok(&["plugin", "versions", "agent", "-o", "json"]).await).unwrap();
    let authors: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["admin", "token ci job"]);
    let one = env.ok(&["plugin", "version", "agent", "2", "-o", "yaml"]).await;
    assert!(one.contains("created_by: token ci job"), "{one}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_reads_yaml_files() {
    let env = start().await;
    env.ok(&["team", "create", "demo"]).await;
    for repo in ["kato-examples/logtail", "kato-examples/log-demo"] {
        env.registry.push_image(repo, "1").await;
    }
    let read = |path: &str| {
        std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .replace("127.0.0.1:5000", env.registry.host())
    };
    // The example's plug-in, from an image rather than its Dockerfile (no build runs here).
    let mut plugin: Value = serde_yaml::from_str(&read("examples/log-collector/plugin.yaml")).unwrap();
    plugin["spec"]["source"] = serde_json::json!({"image": format!("{}/kato-examples/logtail:1", env.registry.host())});
    let plugin_file = env.dir.path().join("plugin.yaml");
    std::fs::write(&plugin_file, serde_yaml::to_string(&plugin).unwrap()).unwrap();
    let file = env.dir.path().join("example.yaml");
    std::fs::write(&file, read("examples/log-collector.yaml")).unwrap();
    let files = ["-f", plugin_file.to_str().unwrap(), "-f", file.to_str().unwrap()];
    let out = env.ok(&[&["apply"][..], &files].concat()).await;
    assert!(out.contains("versioned 1") && out.contains("installed"), "{out}");
    let again = env.ok(&[&["apply"][..], &files, &["-o", "json"]].concat()).await;
    let v: Value = serde_json::from_str(&again).unwrap();
    assert!(v.as_array().unwrap().iter().all(|o| o["action"] == "unchanged"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_clear_error() {
    let env = start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["team", "list"])
        .env("KATO_SERVER", "http://127.0.0.1:9")
        .env("KATO_TOKEN", "x")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the Kato server"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(env);
}

fn podman(args: &[&str]) -> std::process::Output {
    std::process::Command::new("podman")
        .args(args)
        .env(
            "CONTAINERS_CONF",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/containers.conf"),
        )
        .output()
        .expect("podman runs")
}

/// busybox-static imported into podman (no network pull) and pushed to the test registry.
fn push_busybox(registry: &TestRegistry, repo: &str) -> String {
    let local = "localhost/kato-cli-test/busybox:1";
    if !podman(&["image", "exists", local]).status.success() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let tar = dir.path().join("image.tar");
        let ok = std::process::Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
        let out = podman(&["import", "--quiet", tar.to_str().unwrap(), local]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let target = format!("{}/{repo}:1", registry.host());
    let out = podman(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        local,
        &format!("docker://{target}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    target
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_status_logs_and_stop_from_the_command_line() {
    let env = start_on(kato_server::TargetKind::Podman).await;
    // Removes the pod even when the test fails.
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            podman(&["pod", "rm", "--force", "--time", "0", "demo-cliweb"]);
        }
    }
    let _cleanup = Cleanup;
    let image = push_busybox(&env.registry, "demo/app");
    env.ok(&["team", "create", "demo"]).await;
    let file = env.dir.path().join("cliweb.json");
    let spec = serde_json::json!({"name": "cliweb", "image": image,
        "command": "echo hello from the app; trap 'exit 0' TERM; sleep 100000 & wait"});
    std::fs::write(&file, spec.to_string()).unwrap();
    env.ok(&["component", "create", "-f", file.to_str().unwrap()]).await;
    let table = env.ok(&["deploy", "cliweb"]).await;
    assert!(table.starts_with("cliweb podman:"), "{table}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let v: Value = serde_json::from_str(&env.ok(&["status", "cliweb", "-o", "json"]).await).unwrap();
        if v["state"] == "running" {
            assert_eq!(v["pods"][0]["containers"][0]["name"], "cliweb", "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never running: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let table = env.ok(&["status", "cliweb"]).await;
    assert!(table.contains("CONTAINER") && table.contains("running"), "{table}");
    let logs = env.ok(&["logs", "cliweb", "--tail", "5"]).await;
    assert!(logs.contains("hello from the app"), "{logs}");
    let bad = env.kato(&["logs", "cliweb", "-c", "plugin-nope"]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cliweb"),
        "the known containers are listed"
    );
    let stopped = env.ok(&["stop", "cliweb"]).await;
    assert!(stopped.starts_with("cliweb podman: stopped"), "{stopped}");
    assert!(!podman(&["pod", "exists", "demo-cliweb"]).status.success());
}

/// Removes a test's pod even when the test fails.
struct PodCleanup(&'static str);

impl Drop for PodCleanup {
    fn drop(&mut self) {
        podman(&["pod", "rm", "--force", "--time", "0", self.0]);
    }
}

/// A busybox component that keeps running, created through the CLI.
async fn running_component(env: &Env, name: &str) {
    let image = push_busybox(&env.registry, "demo/app");
    let file = env.dir.path().join(format!("{name}.json"));
    let spec = serde_json::json!({"name": name, "image": image,
        "command": "trap 'exit 0' TERM; sleep 100000 & wait"});
    std::fs::write(&file, spec.to_string()).unwrap();
    env.ok(&["component", "create", "-f", file.to_str().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deploy_exits_non_zero_with_the_reason() {
    let env = start_on(kato_server::TargetKind::Podman).await;
    let _cleanup = PodCleanup("demo-clifail");
    env.ok(&["team", "create", "demo"]).await;
    running_component(&env, "clifail").await;
    // A plug-in whose pinned image is gone from its (loopback) registry never starts.
    let pushed = env.registry.push_image("demo/agent", "1").await;
    env.ok(&[
        "plugin",
        "create",
        "agent",
        "--kind",
        "general",
        "--image",
        pushed.image.as_str(),
    ])
    .await;
    env.ok(&["plugin", "build", "agent"]).await;
    env.registry.delete_manifest("demo/agent", &pushed.digest).await;
    env.ok(&["install", "clifail", "agent"]).await;
    let build = env.kato(&["plugin", "build", "agent"]).await;
    let err = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success(), "a failed build exits non-zero: {err}");
    assert!(err.contains("version 2 of agent failed"), "{err}");

    let check = |out: &Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{what} exits non-zero: {err}");
        assert!(
            err.contains("container plugin-agent: ErrImagePull"),
            "{what} says why on stderr: {err}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = check(&env.kato(&["deploy", "clifail"]).await, "deploy");
    assert!(
        table.starts_with("clifail podman: failed"),
        "the status is printed too: {table}"
    );
    check(&env.kato(&["status", "clifail"]).await, "status");
    let json = check(&env.kato(&["status", "clifail", "-o", "json"]).await, "status -o json");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["state"], "failed", "{v}");
    let started = std::time::Instant::now();
    check(
        &env.kato(&["deploy", "clifail", "--wait", "--timeout", "50s"]).await,
        "deploy --wait",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "a failure ends the wait at once"
    );
    // A stopped component is not a failure.
    env.ok(&["stop", "clifail"]).await;
    env.ok(&["status", "clifail"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_wait_returns_once_every_container_runs() {
    let env = start_on(kato_server::TargetKind::Podman).await;
    let _cleanup = PodCleanup("demo-cliwait");
    env.ok(&["team", "create", "demo"]).await;
    running_component(&env, "cliwait").await;
    let image = push_busybox(&env.registry, "demo/sidecar");
    env.ok(&[
        "plugin",
        "create",
        "sidecar",
        "--kind",
        "general",
        "--image",
        &image,
        "--command",
        "trap 'exit 0' TERM; sleep 100000 & wait",
    ])
    .await;
    env.ok(&["plugin", "build", "sidecar"]).await;
    env.ok(&["install", "cliwait", "sidecar"]).await;

    let out = env.kato(&["deploy", "cliwait", "--wait", "--timeout", "50s"]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}{stdout}");
    assert!(
        stderr.contains("cliwait: running (2/2 containers running)"),
        "the progress ends with every container running: {stderr}"
    );
    assert!(stdout.starts_with("cliwait podman: running"), "{stdout}");
    for container in ["cliwait", "plugin-sidecar"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!(" {container} ")) && l.contains("running")),
            "{container} runs: {stdout}"
        );
    }
    // Once it runs, `status` says so with a zero exit.
    env.ok(&["status", "cliwait"]).await;
    env.ok(&["stop", "cliwait"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_render_only_server_says_how_to_run_components() {
    let env = start().await;
    let image = env.registry.push_image("demo/app", "1").await;
    env.ok(&["team", "create", "demo"]).await;
    env.ok(&["component", "create", "web", "--image", image.image.as_str()])
        .await;
    let out = env.kato(&["deploy", "web"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--target podman"), "{err}");
    let status = env.ok(&["status", "web"]).await;
    assert!(status.starts_with("web none: stopped"), "{status}");
}

impl Env {
    /// The installation's discovery token, derived as the renderer injects it into the pod.
    async fn discovery_token(&self, component: &str, plugin: &str) -> String {
        let (team, component, plugin) = (
            "demo".parse().unwrap(),
            component.parse().unwrap(),
            plugin.parse().unwrap(),
        );
        let record = self
            .state
            .store
            .get_installation(&team, &component, &plugin)
            .await
            .unwrap()
            .expect("installed");
        self.state.discovery.token(&team, &component, &record)
    }

    /// A plug-in's call to the discovery API: its status and body.
    async fn discovery(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.server))
            .bearer_auth(token)
            .timeout(std::time::Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_show_in_status_and_rotate_token_replaces_the_token() {
    let env = start().await;
    let image = env.registry.push_image("demo/mesh", "1").await;
    env.ok(&["team", "create", "demo"]).await;
    env.ok(&[
        "plugin",
        "create",
        "mesh",
        "--kind",
        "general",
        "--image",
        image.image.as_str(),
    ])
    .await;
    env.ok(&["plugin", "build", "mesh"]).await;
    env.ok(&[
        "component",
        "create",
        "web",
        "--image",
        "nginx:1.27",
        "--port",
        "80/http",
    ])
    .await;
    env.ok(&["install", "web", "mesh"]).await;

    const DOC: &str = "/discovery/v1/demo/web/mesh";
    let old = env.discovery_token("web", "mesh").await;
    let (status, doc) = env.discovery(reqwest::Method::GET, DOC, &old, None).await;
    assert_eq!(status, 200, "{doc}");
    let revision = doc["revision"].as_u64().unwrap();
    let ack = |pod: &str, status: &str, message: &str| serde_json::json!({"revision": revision, "pod": pod, "status": status, "message": message});
    let ack_path = format!("{DOC}/ack");
    for body in [
        ack("web-1", "applied", ""),
        ack("web-2", "rejected", "LEVEL nonsense is unknown"),
    ] {
        let (status, _) = env.discovery(reqwest::Method::POST, &ack_path, &old, Some(body)).await;
        assert_eq!(status, 204);
    }

    let table = env.ok(&["status", "web"]).await;
    let row = |pod: &str| {
        table
            .lines()
            .find(|l| l.starts_with("mesh") && l.contains(pod))
            .unwrap_or_else(|| panic!("no row for {pod}: {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(table.contains("PLUGIN") && table.contains("APPLIED"), "{table}");
    assert_eq!(row("web-1"), format!("mesh 1 {revision} true web-1 {revision} -"));
    assert_eq!(
        row("web-2"),
        format!("mesh 1 {revision} true web-2 - {revision} (LEVEL nonsense is unknown)")
    );
    let json: Value = serde_json::from_str(&env.ok(&["status", "web", "-o", "json"]).await).unwrap();
    let acks = &json["plugins"][0]["acks"];
    assert_eq!(acks[0]["pod"], "web-1", "{json}");
    assert_eq!(acks[0]["applied_revision"], revision);
    assert_eq!(acks[1]["rejected"][0]["message"], "LEVEL nonsense is unknown");
    let list = env.ok(&["component", "plugins", "web"]).await;
    assert!(
        list.contains(&format!(
            "web-1 applied {revision}; web-2 applied -, rejected {revision} (LEVEL nonsense is unknown)"
        )),
        "{list}"
    );

    let out = env.ok(&["rotate-token", "web", "mesh"]).await;
    assert!(out.contains("discovery token rotated"), "{out}");
    let new = env.discovery_token("web", "mesh").await;
    assert_ne!(new, old);
    let (status, _) = env.discovery(reqwest::Method::GET, DOC, &old, None).await;
    assert_eq!(status, 401, "the old token no longer works");
    let (status, doc) = env.discovery(reqwest::Method::GET, DOC, &new, None).await;
    assert_eq!(status, 200, "the new one does: {doc}");
    assert_eq!(doc["revision"], revision, "rotating does not change the document");
    let json: Value = serde_json::from_str(&env.ok(&["rotate-token", "web", "mesh", "-o", "json"]).await).unwrap();
    assert_eq!(json["rotated"], true);
    let (status, _) = env.discovery(reqwest::Method::GET, DOC, &new, None).await;
    assert_eq!(status, 401, "rotated again");

    let missing = env.kato(&["rotate-token", "web", "nope"]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("plug-in `nope` is not installed on component `web`"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
