//! The server as a newcomer starts it: from a working directory, on its default relative data
//! dir (`./kato-data`), without `--public-url`, with the CLI run from the same directory finding
//! the admin token there. Only the ports differ from the defaults, so that the test does not
//! collide with a server the user runs (the README walk-through test runs on the defaults).

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Server, free_port};
use kato_testkit::{GitRepo, busybox_full_image};
use serde_json::Value;

const TEAM: &str = "oobox";

/// A plug-in that prints its discovery document, through both of the URLs Kato gives it, every
/// half second: busybox `nc` speaking HTTP/1.0, as plug-ins without an HTTP client do. busybox's
/// `nc` stops reading at the end of its input, so the request comes through a FIFO held open
/// until the answer ends.
const PLUGIN_SH: &str = r#"trap 'exit 0' TERM
mkfifo /tmp/in
fetch() {
  rest="${1#http://}"; hostport="${rest%%/*}"; path="/${rest#*/}"
  nc -w 10 "${hostport%:*}" "${hostport##*:}" < /tmp/in > /tmp/resp & np=$!
  { printf 'GET %s HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n' "$path" "$KATO_DISCOVERY_TOKEN"; exec sleep 60; } > /tmp/in & sp=$!
  wait $np; kill $sp 2>/dev/null
  tail -n 1 /tmp/resp
}
while true; do
  echo "doc $(fetch "$KATO_DISCOVERY_URL")"
  echo "compat $(fetch "$DISCOVER_URL")"
  sleep 0.5 & wait $!
done
"#;

#[test]
fn a_server_on_its_default_data_dir_builds_deploys_and_serves_discovery_to_its_pods() {
    let work = tempfile::tempdir().unwrap();
    let repo = GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo built-by-kato > /built.txt\nCOPY plugin.sh /plugin.sh\nCMD [\"/bin/sh\", \"/plugin.sh\"]\n",
            busybox_full_image()
        ),
    )
    .write("plugin.sh", PLUGIN_SH)
    .commit("a plug-in that reads its discovery document");
    let server = Server::start(work.path(), TEAM);

    // The data dir is the relative default, resolved against the server's working directory.
    let data = work.path().join("kato-data");
    assert!(data.join("admin.token").is_file(), "{}", server.output());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&data).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the data dir is private");

    server.ok(&["team", "create", TEAM]);
    let plugin = work.path().join("plugin.yaml");
    std::fs::write(
        &plugin,
        format!(
            "kind: Plugin\nmetadata: {{name: hello}}\nspec:\n  kind: general\n  source: {{dockerfile: {{repo: {}}}}}\n  config_groups:\n    - name: greeting\n      meta: none\n      injection: discovery\n      items: [{{name: GREETING, default: hello}}]\n",
            repo.path().display()
        ),
    )
    .unwrap();
    server.ok(&["apply", "-f", "plugin.yaml"]);
    // A RUN step: podman's helpers read the containers.conf in the data dir from other
    // working directories.
    let log = server.ok(&["plugin", "log", "hello", "1", "--follow"]);
    let version: Value = serde_json::from_str(&server.ok(&["plugin", "version", "hello", "1", "-o", "json"])).unwrap();
    assert_eq!(version["status"], "succeeded", "{version}\n{log}");
    let image = version["image"].as_str().unwrap().to_owned();

    std::fs::write(
        work.path().join("web.yaml"),
        format!(
            "kind: Component\nmetadata: {{name: web}}\nspec:\n  image: \"{image}\"\n  command: \"trap 'exit 0' TERM; sleep 100000 & wait\"\n  plugins: [{{plugin: hello}}]\n"
        ),
    )
    .unwrap();
    server.ok(&["apply", "-f", "web.yaml"]);
    server.ok(&["deploy", "web"]);

    // The plug-in reaches the discovery API at the address the server told it, with no flags.
    server.wait_logs("web", "plugin-hello", "\"base\":{\"GREETING\":\"hello\"}");
    server.wait_logs(
        "web",
        "plugin-hello",
        "compat {\"base_normal\":{\"options\":{\"GREETING\":\"hello\"}}",
    );
    // A changed value reaches the running plug-in.
    server.ok(&["install", "web", "hello", "--set", "GREETING=bye"]);
    server.wait_logs("web", "plugin-hello", "\"base\":{\"GREETING\":\"bye\"}");

    // That address serves plug-ins the discovery API and nothing else: the admin API stays on
    // loopback.
    let out = server.output();
    let public = out
        .lines()
        .find_map(|l| l.strip_prefix("plug-ins reach the discovery API at "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the server says where plug-ins reach it: {out}"))
        .to_owned();
    let host = public.trim_start_matches("http://");
    assert!(!host.starts_with("127."), "{public}");
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let answer = http_get(host, "/api/v1/teams", token.trim());
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("discovery API only"), "{answer}");

    server.ok(&["stop", "web"]);
}

/// A plain HTTP/1.1 GET, answered in full (the server closes after `Connection: close`).
fn http_get(host: &str, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(host).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}

/// `kato doctor` on a machine `scripts/test` set up: everything the podman target and builds
/// need is there. With a platform registry that does not answer, it says so, with the fix, and
/// exits non-zero.
#[test]
fn doctor_checks_what_the_target_and_builds_need() {
    let work = tempfile::tempdir().unwrap();
    let doctor = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kato"))
            .args(["doctor", "--target", "podman"])
            .args(extra)
            .current_dir(work.path())
            .env_remove("KATO_DATA_DIR")
            .env_remove("KATO_REGISTRY")
            .env_remove("CONTAINERS_CONF")
            .output()
            .unwrap()
    };
    let out = doctor(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for check in [
        "data dir",
        "podman",
        "runc",
        "pause binary",
        "pod network",
        "pod DNS",
        "engine",
        "git",
        "platform registry",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("ok") && l.contains(check)),
            "no `ok` line for {check}:\n{text}"
        );
    }

    let closed = free_port();
    let out = doctor(&["--registry", &format!("127.0.0.1:{closed}")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .position(|l| l.starts_with("MISSING") && l.contains("platform registry"))
        .unwrap_or_else(|| panic!("the registry is reported missing:\n{text}"));
    assert!(text.lines().nth(line + 1).is_some_and(|l| l.contains("fix:")), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 9 checks found something missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kato serve` runs the same checks at start and logs each failure with its fix, instead of
/// failing later inside a build.
#[test]
fn serve_logs_what_is_missing_at_start() {
    let work = tempfile::tempdir().unwrap();
    let closed = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kato"))
        .args([
            "serve",
            "--target",
            "none",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--registry", &format!("127.0.0.1:{closed}")])
        .current_dir(work.path())
        .env_remove("KATO_DATA_DIR")
        .env("KATO_LOG", "warn")
        .stdout(std::fs::File::create(work.path().join("serve.out")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let logged = loop {
        let err = std::fs::read_to_string(work.path().join("serve.out")).unwrap_or_default();
        if err.contains("platform registry") || Instant::now() > deadline {
            break err;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = logged
        .lines()
        .find(|l| l.contains("platform registry"))
        .unwrap_or_else(|| panic!("no warning about the registry: {logged}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{closed} does not answer")), "{line}");
    assert!(line.contains("fix="), "{line}");
}
