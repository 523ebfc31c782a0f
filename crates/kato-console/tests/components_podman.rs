//! The status and logs tab of a component that runs on the real podman engine: deployed from
//! its page, its containers listed, and its log followed line by line as the app writes it.

mod common;
#[path = "support/events.rs"]
mod events;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::Console;
use events::Events;
use kato_testkit::TestRegistry;
use serde_json::{Value, json};

const TEAM: &str = "cpodlogs";

fn podman(args: &[&str]) -> std::process::Output {
    std::process::Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", kato_testkit::containers_conf())
        .output()
        .expect("podman runs")
}

/// Removes the team's pods when dropped, whether the test passed or not.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label=kato/team={TEAM}");
        let pods = podman(&["pod", "ls", "--filter", &label, "--format", "{{.Name}}"]);
        for pod in String::from_utf8_lossy(&pods.stdout).lines() {
            podman(&["pod", "rm", "--force", "--time", "0", pod]);
        }
    }
}

async fn status(c: &Console, token: &str) -> Value {
    let (code, s) = c
        .api(token, Method::GET, "/teams/cpodlogs/components/web/status", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{s}");
    s
}

#[tokio::test]
async fn a_running_components_log_reaches_the_page_as_it_is_written() {
    let _cleanup = Cleanup;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.target = Some(kato_server::TargetKind::Podman);
    let c = Console::start_with(cfg, dir).await;
    let token = c.team(TEAM).await;
    let registry = TestRegistry::start().await;
    let image = format!("{}/cpodlogs/app:1", registry.host());
    let pushed = podman(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        kato_testkit::base_image(),
        &format!("docker://{image}"),
    ]);
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let spec = json!({"name": "web", "image": image, "memory_mib": 32,
        "command": "trap 'exit 0' TERM; echo started; while true; do sleep 1; done"});
    let (code, v) = c
        .api(&token, Method::POST, "/teams/cpodlogs/components", Some(spec))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");

    let deployed = c.post(&token, "/teams/cpodlogs/components/web/deploy", &[]).await;
    assert_eq!(deployed.status, StatusCode::SEE_OTHER, "{}", deployed.body);
    assert_eq!(deployed.location(), "/teams/cpodlogs/components/web/status");
    let deadline = Instant::now() + Duration::from_secs(90);
    let running = loop {
        let s = status(&c, &token).await;
        if s["state"] == "running" {
            break s;
        }
        assert!(s["state"] != "failed", "web failed: {s:#}");
        assert!(Instant::now() < deadline, "web never ran: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pod = running["pods"][0]["name"].as_str().unwrap().to_owned();

    let page = c.get(&token, "/teams/cpodlogs/components/web/status").await;
    assert!(page.contains(&pod), "the pod is listed");
    assert!(page.contains("<label for=\"log-container\">Container</label>"));
    assert!(page.contains("<option value=\"web\" selected>web</option>"));
    assert!(page.contains("data-sse=\"/teams/cpodlogs/components/web/logs/events?container=web\""));
    for control in [">Pause</button>", ">Download</button>", ">Search the log</label>"] {
        assert!(page.contains(control), "{control}");
    }

    let (code, mut events) = Events::open(&c, &token, "/teams/cpodlogs/components/web/logs/events?container=web").await;
    assert_eq!(code, StatusCode::OK);
    let (event, line) = events.next(Duration::from_secs(30)).await;
    assert_eq!((event.as_str(), line.as_str()), ("line", "started"));

    // A line written now reaches the page at once.
    let written = podman(&[
        "exec",
        &format!("{pod}-web"),
        "/bin/sh",
        "-c",
        "echo marker-4711 > /proc/1/fd/1",
    ]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let (event, line) = events.next(Duration::from_secs(10)).await;
    assert_eq!((event.as_str(), line.as_str()), ("line", "marker-4711"));

    // A reconnecting viewer gets only the lines it does not have.
    let (_, mut again) = Events::resume(
        &c,
        &token,
        "/teams/cpodlogs/components/web/logs/events?container=web",
        Some(1),
    )
    .await;
    assert_eq!(again.next(Duration::from_secs(30)).await.1, "marker-4711");
    drop(again);

    // Stopped from the overview: the follow ends, and the page says nothing runs.
    let stopped = c.post(&token, "/teams/cpodlogs/components/web/stop", &[]).await;
    assert_eq!(stopped.status, StatusCode::SEE_OTHER, "{}", stopped.body);
    assert_eq!(events.next(Duration::from_secs(30)).await.0, "end");
    let page = c.get(&token, "/teams/cpodlogs/components/web/status").await;
    assert!(page.contains("web is not running."), "{}", page.body);
    assert!(page.contains(">Deploy</button>"), "offers to deploy it");
}
