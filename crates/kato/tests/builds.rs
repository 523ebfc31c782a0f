//! Builds with the real `kato serve` binary: following a build from the command line, a server
//! killed mid-build and restarted, and two servers sharing one PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kato_testkit::{GitRepo, TestRegistry, base_image};
use serde_json::{Value, json};

/// A `kato serve` child process; killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(data_dir: &Path, registry: &str, extra: &[&str]) -> Serve {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(data_dir.join(format!("serve-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kato"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(if registry.is_empty() {
            vec![]
        } else {
            vec!["--registry", registry]
        })
        .args(extra)
        .env_remove("KATO_DATABASE_URL")
        .env_remove("CONTAINERS_CONF")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = Serve { child, url };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kato serve starts on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

struct Cli {
    server: String,
    data_dir: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kato"))
            .args(args)
            .env_remove("KATO_TOKEN")
            .env("KATO_SERVER", &self.server)
            .env("KATO_DATA_DIR", &self.data_dir)
            .env("KATO_TEAM", "demo")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kato {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn version(&self, name: &str, n: u32) -> Value {
        serde_json::from_str(&self.ok(&["plugin", "version", name, &n.to_string(), "-o", "json"])).unwrap()
    }

    /// Polls until `pred` holds for the version (bounded).
    fn wait_version(&self, name: &str, n: u32, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.version(name, n);
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "version {n} of {name}: {what}; it is {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_log(&self, name: &str, n: u32, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let log = self.ok(&["plugin", "log", name, &n.to_string()]);
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log of version {n} shows `{needle}`: {log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn repo(body: &str) -> GitRepo {
    let repo = GitRepo::new();
    repo.write("Dockerfile", &format!("FROM {}\n{body}", base_image()));
    repo.commit("initial");
    repo
}

#[tokio::test(flavor = "multi_thread")]
async fn build_follow_shows_the_log_and_its_exit_says_how_the_build_ended() {
    let registry = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), registry.host(), &[]);
    let cli = Cli {
        server: server.url.clone(),
        data_dir: dir.path().to_owned(),
    };
    cli.ok(&["team", "create", "demo"]);
    let good = repo("RUN echo the-step-ran\n");
    cli.ok(&["plugin", "create", "good", "--kind", "general", "--repo", &good.url()]);
    let out = cli.run(&["plugin", "build", "good", "--follow"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}{stdout}");
    assert!(stdout.contains("the-step-ran"), "{stdout}");
    assert!(stderr.contains("version 1 of good succeeded"), "{stderr}");
    assert_eq!(cli.version("good", 1)["status"], "succeeded");

    let bad = repo("RUN echo about-to-fail && false\n");
    cli.ok(&["plugin", "create", "bad", "--kind", "general", "--repo", &bad.url()]);
    let out = cli.run(&["plugin", "build", "bad", "--follow"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a failed build exits non-zero: {stdout}");
    assert!(stdout.contains("about-to-fail"), "{stdout}");
    assert!(
        stderr.contains("build step failed: RUN echo about-to-fail && false"),
        "{stderr}"
    );
}

/// Processes whose command line mentions `needle`, as `pid command line`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid} {cmdline}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_build_leaves_no_process_fails_it_on_restart_and_runs_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    // The server runs its own registry, so that it too is one of its processes.
    let registry = format!("127.0.0.1:{}", free_port());
    let args = ["--build-concurrency", "1", "--local-registry", registry.as_str()];
    let mut server = serve(dir.path(), "", &args);
    let cli = Cli {
        server: server.url.clone(),
        data_dir: dir.path().to_owned(),
    };
    cli.ok(&["team", "create", "demo"]);
    let marker = format!("slow-started-{}", dir.path().file_name().unwrap().to_string_lossy());
    // A sleep of its own length, so that it is told apart from other tests' sleeps, and a
    // command after it, so that the shell (which names the marker) stays too.
    let sleep = format!("sleep {}", 1000 + free_port() % 1000);
    let slow = repo(&format!("RUN echo {marker} && {sleep} && echo {marker}-done\n"));
    cli.ok(&["plugin", "create", "slow", "--kind", "general", "--repo", &slow.url()]);
    cli.ok(&["plugin", "build", "slow"]);
    cli.ok(&["plugin", "build", "slow"]);
    // The step's own output, not the STEP line that names it.
    let step_ran = format!(" {marker}\n");
    cli.wait_log("slow", 1, &step_ran);
    assert_eq!(cli.version("slow", 2)["status"], "queued", "one build at a time");
    // The registry (its config is in the data dir), podman (its Dockerfile too) and the RUN step.
    let ours = || {
        let sleeps = processes_mentioning(&sleep)
            .into_iter()
            .filter(|p| p.ends_with(&format!(" {sleep} ")));
        [
            processes_mentioning(&data_dir),
            processes_mentioning(&marker),
            sleeps.collect(),
        ]
        .concat()
    };
    let before = ours();
    let running = |what: &str| before.iter().any(|p| p.contains(what));
    assert!(
        running("docker-registry") && running("podman build") && running(&format!("{marker} && {sleep}")),
        "the server's registry and build run: {before:#?}"
    );

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // SIGKILL runs no clean-up in the server: the kernel takes its children down with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = ours();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no process of the killed server is left: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let server = serve(dir.path(), "", &args);
    let cli = Cli {
        server: server.url.clone(),
        data_dir: dir.path().to_owned(),
    };
    let v1 = cli.version("slow", 1);
    assert_eq!(v1["status"], "failed", "{v1}");
    assert!(
        v1["error"]
            .as_str()
            .unwrap()
            .starts_with("interrupted by a server restart"),
        "{v1}"
    );
    // The queued build survives the restart and runs.
    cli.wait_log("slow", 2, &step_ran);
    let cancelled = cli.ok(&["plugin", "cancel", "slow", "2", "-o", "json"]);
    let v2: Value = serde_json::from_str(&cancelled).unwrap();
    assert_eq!(v2["status"], "cancelled");
    let out = cli.run(&["plugin", "log", "slow", "2", "--follow"]);
    assert!(!out.status.success(), "following a cancelled build exits non-zero");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&marker));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 2 of slow cancelled"));
}

/// A fresh schema in the test PostgreSQL, as a database URL; None (skipped) when PostgreSQL is
/// not configured and KATO_TEST_SKIP_POSTGRES=1.
fn postgres_schema() -> Option<String> {
    let Ok(admin) = std::env::var("KATO_TEST_DATABASE_URL") else {
        assert_eq!(
            std::env::var("KATO_TEST_SKIP_POSTGRES").as_deref(),
            Ok("1"),
            "set KATO_TEST_DATABASE_URL (eval \"$(scripts/pg-test-setup.sh)\") or KATO_TEST_SKIP_POSTGRES=1"
        );
        return None;
    };
    let schema = format!("kato_cli_{}_{}", std::process::id(), free_port());
    let out = Command::new("psql")
        .arg(&admin)
        .arg("-c")
        .arg(format!("CREATE SCHEMA {schema}"))
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some(format!("{admin}{sep}options[search_path]={schema}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_postgresql_share_the_queue_and_reap_a_dead_ones_build() {
    let Some(db) = postgres_schema() else { return };
    let registry = TestRegistry::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Servers on one database share the key its secrets are sealed with; the first to start
    // creates the file.
    let key_file = dir_a.path().join("shared-secrets.key").display().to_string();
    let flags = [
        "--database-url",
        db.as_str(),
        "--secret-key-file",
        key_file.as_str(),
        "--build-concurrency",
        "1",
        "--build-lease",
        "3s",
    ];
    let mut a = serve(dir_a.path(), registry.host(), &flags);
    let mut b = serve(dir_b.path(), registry.host(), &flags);
    let cli_a = Cli {
        server: a.url.clone(),
        data_dir: dir_a.path().to_owned(),
    };
    let cli_b = Cli {
        server: b.url.clone(),
        data_dir: dir_b.path().to_owned(),
    };
    cli_a.ok(&["team", "create", "demo"]);
    let quick = repo("RUN echo quick\n");
    cli_a.ok(&["plugin", "create", "quick", "--kind", "general", "--repo", &quick.url()]);
    for _ in 0..4 {
        cli_a.ok(&["plugin", "build", "quick"]);
    }
    for n in 1..=4 {
        let v = cli_b.wait_version("quick", n, "succeeds", |v| v["status"] == "succeeded");
        assert!(v["image"].as_str().unwrap().contains("@sha256:"), "{v}");
        let log = cli_b.ok(&["plugin", "log", "quick", &n.to_string()]);
        assert_eq!(log.matches("building version").count(), 1, "claimed once: {log}");
    }

    let slow = repo("RUN echo slow-started && sleep 60\n");
    cli_a.ok(&["plugin", "create", "slow", "--kind", "general", "--repo", &slow.url()]);
    cli_a.ok(&["plugin", "build", "slow"]);
    let log = cli_a.wait_log("slow", 1, "slow-started");
    let owner_pid: u32 = log
        .split(" on server ")
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the log names the server: {log}"));
    let (dead, survivor) = if owner_pid == a.child.id() {
        (&mut a, &cli_b)
    } else {
        assert_eq!(owner_pid, b.child.id());
        (&mut b, &cli_a)
    };
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let v = survivor.wait_version("slow", 1, "is failed by the surviving server", |v| {
        v["status"] != "building"
    });
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("its claim on the build ran out"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_registry_the_server_runs_a_local_one_in_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let server = serve(dir.path(), "", &["--local-registry", &addr]);
    let cli = Cli {
        server: server.url.clone(),
        data_dir: dir.path().to_owned(),
    };
    cli.ok(&["team", "create", "demo"]);
    let r = repo("RUN echo local\n");
    cli.ok(&["plugin", "create", "local", "--kind", "general", "--repo", &r.url()]);
    let out = cli.run(&["plugin", "build", "local", "--follow"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = cli.version("local", 1);
    assert!(
        v["image"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{addr}/demo/local@sha256:")),
        "{v}"
    );
    assert!(
        dir.path()
            .join("registry/storage/docker/registry/v2/repositories/demo/local")
            .is_dir(),
        "the image is stored in the data dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_set_from_the_command_line_and_never_printed() {
    let registry = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), registry.host(), &[]);
    let cli = Cli {
        server: server.url.clone(),
        data_dir: dir.path().to_owned(),
    };
    cli.ok(&["team", "create", "demo"]);
    let mut set = Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["credential", "set", "registry.example.com", "--username", "bot"])
        .env_remove("KATO_TOKEN")
        .env_remove("KATO_CREDENTIAL_PASSWORD")
        .env("KATO_SERVER", &cli.server)
        .env("KATO_DATA_DIR", &cli.data_dir)
        .env("KATO_TEAM", "demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    set.stdin.take().unwrap().write_all(b"cli-secret-789\n").unwrap();
    let out = set.wait_with_output().unwrap();
    assert!(out.status.success());
    let listed = cli.ok(&["credential", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v[0]["host"], "registry.example.com");
    assert_eq!(v[0]["username"], "bot");
    assert!(!listed.contains("cli-secret-789") && !String::from_utf8_lossy(&out.stdout).contains("cli-secret-789"));

    // An SSH key and the host's known_hosts, from files, for ssh repos; never printed either.
    let key = dir.path().join("deploy_key");
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nY2xpLWtleS0xMjM=\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(&known, "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcli\n").unwrap();
    let set = cli.ok(&[
        "credential",
        "set",
        "git.example.com",
        "--ssh-key",
        key.to_str().unwrap(),
        "--known-hosts",
        known.to_str().unwrap(),
    ]);
    let listed = cli.ok(&["credential", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        (&v[0]["host"], &v[0]["ssh_key_set"]),
        (&json!("git.example.com"), &json!(true))
    );
    for text in [set, listed] {
        assert!(
            !text.contains("Y2xpLWtleS0xMjM") && !text.contains("AAAAC3NzaC1lZDI1NTE5AAAAIcli"),
            "{text}"
        );
    }
}
