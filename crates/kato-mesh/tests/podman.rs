//! The governance proxy on podman, end to end, as a team gets it: `scripts/defaults` stages the
//! defaults repo with this build of kato-mesh, one `POST …/plugins/defaults` creates the
//! catalog, Kato builds each plug-in from its Dockerfile, and the plug-ins run beside real
//! components, configured live through the discovery API:
//!
//! `web` depends on `db` (HTTP on 8080 and a TCP echo on 9000) and on `db2` (HTTP on 8080).
//! Every request is made from inside the pods with busybox's `nc`, as the app would.
//!
//! 1. `web` with `outbound-net` reaches `db` through `127.0.0.1:8080` (HTTP) and `:9000` (TCP);
//! 2. a `Prefix` route and a `Weight` split between `db:8080` and `db2:8080`;
//! 3. `MaxConnections` lowered live: acked, a new connection past it is refused, the open one
//!    goes on echoing;
//! 4. `inbound-net` on `db` with `OPEN_LIMIT=YES` answers 429 past the limit;
//! 5. `db` failing `ConsecutiveErrors` times is ejected (503 without reaching it) and returns
//!    after `BaseEjectionTimeMS`;
//! 6. a bad value is rejected in the ack with its reason, and traffic keeps flowing;
//! 7. `inout-net` on `web` does both at once.
//!
//! The server listens on a real port of all interfaces and tells its plug-ins
//! `host.containers.internal`. The test works in a team of its own and removes its pods, even
//! when it fails.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kato_testkit::TestRegistry;
use serde_json::{Value, json};

#[path = "../../kato-server/tests/common/plugin_e2e.rs"]
mod e2e;

use e2e::{CONF, Cleanup, Live, checked, podman};

const TEAM: &str = "e2emesh";

/// Sets one downstream entry's options of an installed plug-in; answers the new revision.
async fn set_downstream(s: &Live, component: &str, plugin: &str, key: &str, options: Value) -> u64 {
    let mut values = s.installation(component, plugin).await["values"].clone();
    values["downstream"][key] = options;
    s.install(component, plugin, json!({"values": values})).await
}

/// A shell script for a component: serves `body` over HTTP on `port` from /www (and
/// `{body}-v2` at /v2/), with a CGI `/cgi-bin/flaky` that answers 500 while /tmp/fail exists
/// and counts its calls in /tmp/hits; then runs `then` in the foreground.
fn http_server(body: &str, port: u16, then: &str) -> String {
    format!(
        "mkdir -p /www/cgi-bin /www/v2
echo {body} > /www/index.html
echo {body}-v2 > /www/v2/index.html
cat > /www/cgi-bin/flaky <<'EOF'
#!/bin/sh
echo hit >> /tmp/hits
if [ -f /tmp/fail ]; then printf 'HTTP/1.0 500 Internal Server Error\\r\\n\\r\\nfailing\\n'; else printf 'HTTP/1.0 200 OK\\r\\n\\r\\nflaky-ok\\n'; fi
EOF
chmod +x /www/cgi-bin/flaky
httpd -p {port} -h /www
exec {then}
"
    )
}

/// Runs `script` with busybox's sh in a container; answers its stdout.
fn exec(container: &str, script: &str) -> String {
    checked(&["exec", container, "sh", "-c", script])
}

/// An HTTP/1.0 GET through `nc` inside `container`: the whole answer, head and body.
fn get(container: &str, host: &str, port: u16, path: &str) -> String {
    exec(
        container,
        &format!("printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 5 {host} {port}"),
    )
}

/// `n` GETs in one exec; answers each answer's status line and body joined by `|`.
fn gets(container: &str, host: &str, port: u16, path: &str, n: usize) -> Vec<String> {
    let out = exec(
        container,
        &format!(
            "for i in $(seq {n}); do printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 5 {host} {port} \
             | tr -d '\\r' | awk 'NR==1{{s=$0}} /^$/{{b=1;next}} b{{print s\"|\"$0; exit}} END{{if(!b)print s\"|\"}}'; done"
        ),
    );
    out.lines().map(str::to_owned).collect()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("").trim_end()
}

/// A TCP connection opened from inside `container` with `nc`, kept open; its output read
/// line by line on a thread, so that every read is bounded.
struct Held {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Held {
    fn open(container: &str, host: &str, port: u16) -> Held {
        let mut child = Command::new("podman")
            .args(["exec", "-i", container, "nc", host, &port.to_string()])
            .env("CONTAINERS_CONF", CONF)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Held { child, lines }
    }

    /// Sends a line and answers the line that comes back, waiting at most 20 s.
    fn echo(&mut self, line: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no echo of `{line}` within 20 s: {e}"))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks `path` of `host:port` from `container` until the answer ends with `body`, for at most
/// 30 s: right after a pod is replaced, names and proxies may still point at the old one
/// (podman's DNS and the proxy's endpoints catch up within seconds).
async fn until_served(container: &str, host: &str, port: u16, path: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = podman(&[
            "exec",
            container,
            "sh",
            "-c",
            &format!("printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 2 {host} {port}"),
        ]);
        let answer = String::from_utf8_lossy(&out.stdout);
        if answer.trim_end().ends_with(body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}:{port}{path} never answered `{body}`: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_governance_proxy_on_podman() {
    let _cleanup = Cleanup(TEAM);
    let registry = TestRegistry::start().await;
    let image = e2e::busybox_image(&registry, "busybox", &[]);
    let dir = tempfile::tempdir().unwrap();
    let defaults = e2e::stage_defaults(dir.path(), env!("CARGO_BIN_EXE_kato-mesh"), "/bin/true");
    let s = Live::start(&dir.path().join("data"), &registry, defaults, TEAM).await;

    // The catalog in one call, every version built by Kato from the staged repo.
    let catalog = s.team(reqwest::Method::POST, "/plugins/defaults", None).await;
    let names: Vec<&str> = catalog["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["inbound-net", "outbound-net", "inout-net"] {
        assert!(names.contains(&name), "{catalog:#}");
        s.built(name).await;
    }

    let component = |name: &str, command: String, ports: Value, depends_on: Value| {
        json!({
            "name": name, "image": image, "command": ["sh", "-c", command],
            "ports": ports, "depends_on": depends_on, "memory_mib": 64,
        })
    };
    let db = component(
        "db",
        http_server("db", 8080, "nc -ll -p 9000 -e cat"),
        json!([{"port": 8080, "protocol": "http"}, {"port": 9000, "protocol": "tcp"}]),
        json!([]),
    );
    let db2 = component(
        "db2",
        http_server("db2", 8080, "sleep 1000000"),
        json!([{"port": 8080, "protocol": "http"}]),
        json!([]),
    );
    let web = component(
        "web",
        http_server("web", 8000, "sleep 1000000"),
        json!([{"port": 8000, "protocol": "http"}]),
        json!(["db", "db2"]),
    );
    for c in [&db, &db2, &web] {
        s.team(reqwest::Method::POST, "/components", Some(c.clone())).await;
    }
    s.deploy("db").await;
    s.deploy("db2").await;

    // 1. Outbound: web reaches db through 127.0.0.1 by HTTP and by TCP. db2 serves only /v2.
    s.install(
        "web",
        "outbound-net",
        json!({"enabled": true, "values": {"downstream": {
            "db:8080": {"ConsecutiveErrors": "3", "BaseEjectionTimeMS": "3000"},
            "db2:8080": {"Prefix": "/v2"},
        }}}),
    )
    .await;
    let web_pod = s.deploy("web").await;
    let web_app = format!("{web_pod}-web");
    let revision = s.installation("web", "outbound-net").await["revision"]
        .as_u64()
        .unwrap();
    let pod = s.acked("web", "outbound-net", revision).await;
    assert_eq!(pod["applied_revision"].as_u64(), Some(revision), "{pod:#}");
    let answer = get(&web_app, "127.0.0.1", 8080, "/");
    assert!(status_line(&answer).ends_with("200 OK"), "{answer}");
    assert!(answer.trim_end().ends_with("db"), "{answer}");
    let mut echo = Held::open(&web_app, "127.0.0.1", 9000);
    assert_eq!(echo.echo("through the proxy"), "through the proxy");

    // 2. A Prefix route, then a Weight split between db:8080 and db2:8080.
    let answer = get(&web_app, "127.0.0.1", 8080, "/v2/");
    assert!(answer.trim_end().ends_with("db2-v2"), "{answer}");
    let answer = get(&web_app, "127.0.0.1", 8080, "/");
    assert!(answer.trim_end().ends_with("db"), "{answer}");
    let r = set_downstream(
        &s,
        "web",
        "outbound-net",
        "db2:8080",
        json!({"Prefix": "/", "Weight": "50"}),
    )
    .await;
    let r = {
        let r2 = set_downstream(
            &s,
            "web",
            "outbound-net",
            "db:8080",
            json!({"Weight": "50", "ConsecutiveErrors": "3", "BaseEjectionTimeMS": "3000"}),
        )
        .await;
        assert!(r2 > r);
        r2
    };
    assert_eq!(
        s.acked("web", "outbound-net", r).await["applied_revision"].as_u64(),
        Some(r)
    );
    let answers = gets(&web_app, "127.0.0.1", 8080, "/", 40);
    let to_db = answers.iter().filter(|a| a.ends_with("|db")).count();
    let to_db2 = answers.iter().filter(|a| a.ends_with("|db2")).count();
    assert_eq!(to_db + to_db2, 40, "{answers:?}");
    // 50/50 over 40 draws: both sides get some (each side empty has odds 2 × 2^-40).
    assert!(to_db > 0 && to_db2 > 0, "db {to_db}, db2 {to_db2}: {answers:?}");
    // Weight 100 to db and 0 to db2: all to db.
    set_downstream(
        &s,
        "web",
        "outbound-net",
        "db2:8080",
        json!({"Prefix": "/", "Weight": "0"}),
    )
    .await;
    let r = set_downstream(
        &s,
        "web",
        "outbound-net",
        "db:8080",
        json!({"Weight": "100", "ConsecutiveErrors": "3", "BaseEjectionTimeMS": "3000"}),
    )
    .await;
    s.acked("web", "outbound-net", r).await;
    let answers = gets(&web_app, "127.0.0.1", 8080, "/", 10);
    assert!(answers.iter().all(|a| a.ends_with("|db")), "{answers:?}");

    // 3. MaxConnections lowered live: acked, the open connection goes on, a new one is refused.
    let r = set_downstream(&s, "web", "outbound-net", "db:9000", json!({"MaxConnections": "1"})).await;
    let pod = s.acked("web", "outbound-net", r).await;
    assert_eq!(pod["applied_revision"].as_u64(), Some(r), "{pod:#}");
    assert_eq!(echo.echo("still here"), "still here");
    let refused = exec(&web_app, "echo second | nc -w 3 127.0.0.1 9000; true");
    assert_eq!(
        refused.trim(),
        "",
        "a second connection past MaxConnections 1 was served"
    );
    drop(echo);
    let r = set_downstream(&s, "web", "outbound-net", "db:9000", json!({"MaxConnections": "10240"})).await;
    s.acked("web", "outbound-net", r).await;

    // 4. Inbound on db with OPEN_LIMIT: 429 past the limit, at db's listen port.
    let r = s
        .install(
            "db",
            "inbound-net",
            json!({"enabled": true, "values": {"ports": {"8080": {"OPEN_LIMIT": "YES", "LIMIT_RPS": "2"}}}}),
        )
        .await;
    let db_pod = s.deploy("db").await;
    let db_app = format!("{db_pod}-db");
    s.acked("db", "inbound-net", r).await;
    let listen = s.installation("db", "inbound-net").await["listen_ports"]["8080"]
        .as_u64()
        .unwrap() as u16;
    let host = format!("db.{TEAM}");
    until_served(&web_app, &host, listen, "/", "db").await;
    let answers = gets(&web_app, &host, listen, "/", 12);
    let ok = answers.iter().filter(|a| a.contains(" 200 ")).count();
    let limited = answers.iter().filter(|a| a.contains(" 429 ")).count();
    assert!(ok >= 1 && limited >= 1 && ok + limited == 12, "{answers:?}");

    // 5. Ejection: db fails 3 times, then the proxy answers 503 without reaching it, and db
    //    returns after BaseEjectionTimeMS.
    until_served(&web_app, "127.0.0.1", 8080, "/cgi-bin/flaky", "flaky-ok").await;
    exec(&db_app, "rm -f /tmp/hits; touch /tmp/fail");
    let answers = gets(&web_app, "127.0.0.1", 8080, "/cgi-bin/flaky", 3);
    assert!(answers.iter().all(|a| a.contains(" 500 ")), "{answers:?}");
    let ejected_at = Instant::now();
    let answer = get(&web_app, "127.0.0.1", 8080, "/cgi-bin/flaky");
    assert!(status_line(&answer).contains(" 503 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-kato-mesh: ejected"), "{answer}");
    let hits = exec(&db_app, "wc -l < /tmp/hits");
    assert_eq!(hits.trim(), "3", "the ejected endpoint was called");
    exec(&db_app, "rm -f /tmp/fail");
    let deadline = Instant::now() + Duration::from_secs(30);
    let returned = loop {
        let answer = get(&web_app, "127.0.0.1", 8080, "/cgi-bin/flaky");
        if status_line(&answer).ends_with("200 OK") {
            break Instant::now();
        }
        assert!(status_line(&answer).contains(" 503 "), "{answer}");
        assert!(Instant::now() < deadline, "db never returned: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        returned - ejected_at >= Duration::from_millis(2500),
        "back after {:?}, before BaseEjectionTimeMS 3000 (less the 3 requests' time)",
        returned - ejected_at
    );

    // 6. A bad value: rejected with the reason, and traffic keeps flowing.
    let r = set_downstream(&s, "web", "outbound-net", "db:8080", json!({"MaxConnections": "lots"})).await;
    let pod = s.acked("web", "outbound-net", r).await;
    let message = pod["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["revision"].as_u64() == Some(r))
        .map(|x| x["message"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("revision {r} was not rejected: {pod:#}"));
    assert!(
        message.contains("MaxConnections") && message.contains("lots"),
        "{message}"
    );
    let answer = get(&web_app, "127.0.0.1", 8080, "/");
    assert!(answer.trim_end().ends_with("db"), "{answer}");

    // 7. In-and-out on web: inbound at web's listen port, outbound to db, both at once.
    s.team(reqwest::Method::DELETE, "/components/web/plugins/outbound-net", None)
        .await;
    let r = s.install("web", "inout-net", json!({"enabled": true})).await;
    let web_pod = s.deploy("web").await;
    let web_app = format!("{web_pod}-web");
    s.acked("web", "inout-net", r).await;
    let listen = s.installation("web", "inout-net").await["listen_ports"]["8000"]
        .as_u64()
        .unwrap() as u16;
    until_served(&db_app, &format!("web.{TEAM}"), listen, "/", "web").await;
    let mut echo = Held::open(&web_app, "127.0.0.1", 9000);
    assert_eq!(echo.echo("in and out"), "in and out");
    drop(echo);
    let answers = gets(&web_app, "127.0.0.1", 8080, "/", 6);
    assert!(
        answers.iter().all(|a| a.ends_with("|db") || a.ends_with("|db2")) && answers.len() == 6,
        "outbound: {answers:?}"
    );

    s.shutdown().await;
}
