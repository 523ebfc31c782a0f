//! The console in a real browser: `kato serve` as a user starts it (default data dir, podman,
//! the local registry), and Debian's chromium, driven by playwright-core, walking through the
//! pages only: sign in, a plug-in from a Dockerfile repo with an env and a discovery group, its
//! build log live, a component with the plug-in installed, deployed on podman, its logs live, a
//! discovery change acked live, the plug-in disabled, and a validation error next to its field.
//! axe-core checks every page. See `crates/kato-console/tests/browser/scenario.mjs`.
//!
//! Needs `npm ci` in that directory and chromium (`scripts/test` installs both). Screenshots go to
//! a temp dir, or to `KATO_CONSOLE_SHOTS` (`docs/console` refreshes the docs' pictures).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use kato_testkit::{GitRepo, busybox_full_image};

/// The plug-in: follows its discovery document (long-polls with the revision it has), logs
/// `greeting <value> revision <n>` with its env PREFIX, and acks each revision as applied with
/// `greeting=<value>`. busybox `nc` speaks HTTP/1.0 through a FIFO held open until the answer
/// ends (nc stops reading when its input ends).
const PLUGIN_SH: &str = r#"trap 'exit 0' TERM
mkfifo /tmp/in
http() {
  nc -w 30 "$host" "$port" < /tmp/in > /tmp/resp 2>/tmp/err & np=$!
  { printf "$@"; exec sleep 600; } > /tmp/in & sp=$!
  wait $np; kill $sp 2>/dev/null
}
u=${KATO_DISCOVERY_URL#http://}; hp=${u%%/*}; path=/${u#*/}; host=${hp%:*}; port=${hp##*:}
rev=0
while true; do
  http 'GET %s?revision=%s&wait=20 HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n' "$path" "$rev" "$KATO_DISCOVERY_TOKEN"
  if head -n 1 /tmp/resp | grep -q ' 200 '; then
    sed '1,/^\r$/d' /tmp/resp > /tmp/doc
    rev=$(sed -n 's/.*"revision":\([0-9]*\).*/\1/p' /tmp/doc)
    greeting=$(sed -n 's/.*"GREETING":"\([^"]*\)".*/\1/p' /tmp/doc)
    echo "$PREFIX: greeting $greeting revision $rev"
    body="{\"revision\":$rev,\"pod\":\"$HOSTNAME\",\"status\":\"applied\",\"message\":\"greeting=$greeting\"}"
    http 'POST %s/ack HTTP/1.0\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' "$path" "$KATO_DISCOVERY_TOKEN" "${#body}" "$body"
  elif ! head -n 1 /tmp/resp | grep -q ' 304 '; then
    echo "unreachable: $(head -n 1 /tmp/resp) $(cat /tmp/err)"
    sleep 1 & wait $!
  fi
done
"#;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kato-console/tests/browser")
}

#[test]
fn the_console_takes_a_user_from_sign_in_to_a_live_plug_in_and_back() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir() && dir.join("node_modules/axe-core").is_dir(),
        "the browser test's packages are missing: run `npm ci --prefix {}` (scripts/test does)",
        dir.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no browser at {chromium}: install Debian's chromium (scripts/test does), or set CHROMIUM"
    );

    let work = tempfile::tempdir().unwrap();
    let repo = GitRepo::new();
    repo.write(
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo one && echo two && echo three\nCOPY plugin.sh /plugin.sh\nCMD [\"/bin/sh\", \"/plugin.sh\"]\n",
            busybox_full_image()
        ),
    )
    .write("plugin.sh", PLUGIN_SH)
    .commit("a plug-in that follows its discovery document");
    let server = Server::start(work.path(), "shop");
    let token = std::fs::read_to_string(work.path().join("kato-data/admin.token")).unwrap();
    let shots = std::env::var_os("KATO_CONSOLE_SHOTS")
        .map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(d))
        .unwrap_or_else(|| work.path().join("shots"));

    let mut node = Command::new("node")
        .arg(dir.join("scenario.mjs"))
        .current_dir(&dir)
        .env("KATO_URL", &server.url)
        .env("KATO_TOKEN", token.trim())
        .env("KATO_REPO", repo.path())
        .env("KATO_IMAGE", busybox_full_image())
        .env("KATO_SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdout(std::fs::File::create(work.path().join("scenario.out")).unwrap())
        .stderr(std::fs::File::create(work.path().join("scenario.err")).unwrap())
        .spawn()
        .expect("node runs (install nodejs; scripts/test does)");
    // Bounded: the scenario's own waits are bounded too; this catches a hung browser.
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            break node.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let read = |f: &str| std::fs::read_to_string(work.path().join(f)).unwrap_or_default();
    let text = format!("{}{}", read("scenario.out"), read("scenario.err"));
    println!("{text}");
    assert!(
        status.success(),
        "the browser scenario failed (screenshot: {}/failure.png):\n{text}\nserver:\n{}",
        shots.display(),
        server.output()
    );
    assert!(text.contains("the scenario passed"), "{text}");
    server.ok(&["stop", "web"]);
}
