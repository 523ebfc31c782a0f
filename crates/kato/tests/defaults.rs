//! `kato plugin install-defaults` against the real `kato serve` binary, started with
//! `--defaults-repo`/`--defaults-ref` pointing at a repo `scripts/defaults` staged; and without
//! them, the error that says how to get one.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kato_testkit::TestRegistry;
use serde_json::Value;

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

fn serve(data_dir: &Path, extra: &[&str]) -> Serve {
    let port = free_port();
    let log = std::fs::File::create(data_dir.join("serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--target", "none"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("KATO_DATABASE_URL")
        .env_remove("KATO_DEFAULTS_REPO")
        .env_remove("KATO_DEFAULTS_REF")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kato serve starts on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

fn kato(server: &Serve, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kato"))
        .args(args)
        .env_remove("KATO_TOKEN")
        .env("KATO_SERVER", &server.url)
        .env("KATO_DATA_DIR", data_dir)
        .env("KATO_TEAM", "demo")
        .output()
        .unwrap()
}

fn ok(server: &Serve, data_dir: &Path, args: &[&str]) -> String {
    let out = kato(server, data_dir, args);
    assert!(
        out.status.success(),
        "kato {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/defaults` into `dir`, with `/bin/true` standing in for the kato-mesh binary (the
/// script builds the real one otherwise); answers the flags it printed.
fn stage(dir: &Path) -> Vec<String> {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/defaults"))
        .env("KATO_DEFAULTS_DIR", dir)
        .env("KATO_MESH_BIN", "/bin/true")
        .env("KATO_PERF_BIN", "/bin/true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_defaults_creates_the_catalog_once_and_builds_it() {
    let registry = TestRegistry::start().await;
    let work = tempfile::tempdir().unwrap();
    let flags = stage(&work.path().join("defaults-repo"));
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut args = vec!["--registry", registry.host()];
    args.extend(flags.iter().map(String::as_str));
    let server = serve(&data, &args);
    ok(&server, &data, &["team", "create", "demo"]);

    let table = ok(&server, &data, &["plugin", "install-defaults"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "KIND", "STATE", "VERSION", "STATUS"],
            vec!["inbound-net", "inbound-net", "created", "1", "queued"],
            vec!["outbound-net", "outbound-net", "created", "1", "queued"],
            vec!["inout-net", "inout-net", "created", "1", "queued"],
            vec!["perf-analysis", "perf-analysis", "created", "1", "queued"],
            vec!["logtail", "general", "created", "1", "queued"],
        ],
        "{table}"
    );

    for name in ["inbound-net", "outbound-net", "inout-net", "perf-analysis", "logtail"] {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let v: Value =
                serde_json::from_str(&ok(&server, &data, &["plugin", "version", name, "1", "-o", "json"])).unwrap();
            if v["status"] == "succeeded" {
                assert!(v["image"].as_str().unwrap().contains("@sha256:"), "{v}");
                assert_eq!(v["created_by"], "admin");
                break;
            }
            assert!(
                matches!(v["status"].as_str(), Some("queued" | "building")),
                "{name} builds: {v}"
            );
            assert!(Instant::now() < deadline, "{name} is built in time: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let again: Value =
        serde_json::from_str(&ok(&server, &data, &["plugin", "install-defaults", "-o", "json"])).unwrap();
    for p in again["plugins"].as_array().unwrap() {
        assert_eq!(p["state"], "kept", "{again}");
        assert_eq!(p["version"]["number"], 1, "{again}");
        assert_eq!(p["version"]["status"], "succeeded", "{again}");
    }
    let versions: Value =
        serde_json::from_str(&ok(&server, &data, &["plugin", "versions", "logtail", "-o", "json"])).unwrap();
    assert_eq!(
        versions.as_array().unwrap().len(),
        1,
        "nothing queued again: {versions}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_defaults_repo_install_defaults_says_how_to_get_one() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path(), &[]);
    ok(&server, data.path(), &["team", "create", "demo"]);
    let out = kato(&server, data.path(), &["plugin", "install-defaults"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--defaults-repo") && err.contains("scripts/defaults"),
        "{err}"
    );
    let listed = ok(&server, data.path(), &["plugin", "list", "-o", "json"]);
    assert_eq!(listed.trim(), "[]", "nothing was created");
}
