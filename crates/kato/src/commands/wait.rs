//! Reading a component's status as the command line reports it: whether it tells of a failure
//! (the command then exits non-zero), and `kato deploy --wait`'s bounded wait until it runs.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::Value;

use crate::output::field;

/// How often `--wait` asks for the status.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// How long one status request of `--wait` may take.
const FETCH_LIMIT: Duration = Duration::from_secs(30);

/// Container reasons that mean it cannot run as it is: the engine may try again, but someone
/// has to change something first.
const CANNOT_RUN: [&str; 6] = [
    "InitFailed",
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
];

/// The failure a status tells of, in words: the component's state is `failed`, a container
/// cannot run, or the last deploy (or stop) failed. `None` when nothing failed: running,
/// starting and stopped are not failures.
pub fn failure(status: &Value) -> Option<String> {
    let error = status["error"].as_str().filter(|e| !e.is_empty());
    if status["state"] == "failed" {
        let why = status["message"].as_str().or(error).unwrap_or("no reason given");
        return Some(why.to_owned());
    }
    if let Some(c) = containers(status).find(|c| c["reason"].as_str().is_some_and(|r| CANNOT_RUN.contains(&r))) {
        let mut why = format!("container {}: {}", field(c, "name"), field(c, "reason"));
        if let Some(m) = c["message"].as_str().filter(|m| !m.is_empty()) {
            why.push_str(&format!(": {m}"));
        }
        return Some(why);
    }
    error.map(|e| format!("the last deploy failed: {e}"))
}

/// Whether the component runs with every container running (init containers that finished
/// their work count as done).
pub fn runs(status: &Value) -> bool {
    status["state"] == "running" && containers(status).all(|c| c["state"] == "running" || finished_init(c))
}

/// `web: starting (2/3 containers running): container plugin-x is not running yet`.
pub fn progress(component: &str, status: &Value) -> String {
    let counted: Vec<&Value> = containers(status).filter(|c| !finished_init(c)).collect();
    let running = counted.iter().filter(|c| c["state"] == "running").count();
    let mut line = format!(
        "{component}: {} ({running}/{} containers running)",
        field(status, "state"),
        counted.len()
    );
    if let Some(m) = status["message"].as_str().filter(|m| !m.is_empty()) {
        line.push_str(&format!(": {m}"));
    }
    line
}

/// How a wait ended, with the last status seen.
#[derive(Debug)]
pub enum Waited {
    Running(Value),
    Failed(Value, String),
    TimedOut(Value),
}

/// Asks for the status (`fetch`) every `interval` from `first` on, telling `report` each new
/// progress line, until the component runs, fails, or `timeout` passes. Each request may take
/// at most [`FETCH_LIMIT`]; an error of one ends the wait with that error.
pub async fn until_running<F, Fut>(
    component: &str,
    first: Value,
    timeout: Duration,
    interval: Duration,
    mut fetch: F,
    mut report: impl FnMut(String),
) -> Result<Waited>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut status = first;
    let mut last = String::new();
    loop {
        let line = progress(component, &status);
        if line != last {
            report(line.clone());
            last = line;
        }
        if let Some(why) = failure(&status) {
            return Ok(Waited::Failed(status, why));
        }
        if runs(&status) {
            return Ok(Waited::Running(status));
        }
        if status["desired"] == "stopped" {
            return Ok(Waited::Failed(status, "it was stopped while waiting".into()));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Waited::TimedOut(status));
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        status = tokio::time::timeout(FETCH_LIMIT, fetch())
            .await
            .map_err(|_| anyhow!("the server did not answer the status within {}s", FETCH_LIMIT.as_secs()))??;
    }
}

/// Every container of every pod.
fn containers(status: &Value) -> impl Iterator<Item = &Value> {
    status["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["containers"].as_array().into_iter().flatten())
}

fn finished_init(c: &Value) -> bool {
    c["init"] == true && c["state"] == "terminated" && c["exit_code"] == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    fn status(state: &str, containers: Value) -> Value {
        json!({"state": state, "message": null, "error": null, "desired": "deployed",
            "pods": [{"name": "demo-web", "containers": containers}]})
    }

    fn ctr(name: &str, state: &str) -> Value {
        json!({"name": name, "init": false, "state": state, "reason": null, "message": null})
    }

    #[test]
    fn failures_are_a_failed_state_a_container_that_cannot_run_or_a_failed_deploy() {
        assert_eq!(failure(&status("running", json!([ctr("web", "running")]))), None);
        assert_eq!(failure(&status("starting", json!([ctr("web", "waiting")]))), None);
        assert_eq!(failure(&json!({"state": "stopped", "pods": []})), None);

        let mut failed = status("failed", json!([]));
        failed["message"] = json!("container plugin-x: InitFailed: exit 3");
        assert_eq!(failure(&failed).unwrap(), "container plugin-x: InitFailed: exit 3");

        let mut pulling = ctr("plugin-x", "waiting");
        pulling["reason"] = json!("ImagePullBackOff");
        pulling["message"] = json!("manifest unknown");
        let starting = status("starting", json!([ctr("web", "running"), pulling]));
        assert_eq!(
            failure(&starting).unwrap(),
            "container plugin-x: ImagePullBackOff: manifest unknown"
        );

        let mut old_pod_runs = status("running", json!([ctr("web", "running")]));
        old_pod_runs["error"] = json!("podman failed: no such image");
        assert_eq!(
            failure(&old_pod_runs).unwrap(),
            "the last deploy failed: podman failed: no such image"
        );
    }

    #[test]
    fn progress_counts_running_containers_and_finished_init_ones_are_done() {
        let mut init = ctr("plugin-init", "terminated");
        init["init"] = json!(true);
        init["exit_code"] = json!(0);
        let mut s = status(
            "starting",
            json!([init, ctr("web", "running"), ctr("plugin-a", "waiting")]),
        );
        s["message"] = json!("container plugin-a is not running yet");
        assert_eq!(
            progress("web", &s),
            "web: starting (1/2 containers running): container plugin-a is not running yet"
        );
        assert!(!runs(&s));
        let s = status("running", json!([ctr("web", "running"), ctr("plugin-a", "running")]));
        assert_eq!(progress("web", &s), "web: running (2/2 containers running)");
        assert!(runs(&s));
    }

    /// Answers the given statuses in turn, then the last one for ever.
    fn script(statuses: Vec<Value>) -> impl FnMut() -> std::future::Ready<Result<Value>> {
        let left = Mutex::new(statuses);
        move || {
            let mut left = left.lock().unwrap();
            let next = if left.len() > 1 {
                left.remove(0)
            } else {
                left[0].clone()
            };
            std::future::ready(Ok(next))
        }
    }

    #[tokio::test]
    async fn the_wait_ends_when_every_container_runs_reporting_each_change_once() {
        let starting = status("starting", json!([ctr("web", "running"), ctr("plugin-a", "waiting")]));
        let running = status("running", json!([ctr("web", "running"), ctr("plugin-a", "running")]));
        let mut lines = Vec::new();
        let fetch = script(vec![starting.clone(), starting.clone(), running]);
        let waited = until_running(
            "web",
            starting,
            Duration::from_secs(5),
            Duration::from_millis(1),
            fetch,
            |l| lines.push(l),
        )
        .await
        .unwrap();
        assert!(matches!(waited, Waited::Running(_)), "{waited:?}");
        assert_eq!(
            lines,
            [
                "web: starting (1/2 containers running)",
                "web: running (2/2 containers running)"
            ]
        );
    }

    #[tokio::test]
    async fn the_wait_ends_on_a_failure_or_at_its_timeout() {
        let starting = status("starting", json!([ctr("web", "waiting")]));
        let mut crashing = ctr("web", "waiting");
        crashing["reason"] = json!("CrashLoopBackOff");
        let failing = status("starting", json!([crashing]));
        let fetch = script(vec![failing]);
        let waited = until_running(
            "web",
            starting.clone(),
            Duration::from_secs(5),
            Duration::from_millis(1),
            fetch,
            |_| {},
        )
        .await
        .unwrap();
        assert!(
            matches!(&waited, Waited::Failed(_, why) if why == "container web: CrashLoopBackOff"),
            "{waited:?}"
        );

        let started = std::time::Instant::now();
        let fetch = script(vec![starting.clone()]);
        let waited = until_running(
            "web",
            starting,
            Duration::from_millis(300),
            Duration::from_millis(100),
            fetch,
            |_| {},
        )
        .await
        .unwrap();
        assert!(matches!(waited, Waited::TimedOut(_)), "{waited:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
