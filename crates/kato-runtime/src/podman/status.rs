//! The component's status: cached between reads and while a deploy runs, and from podman's
//! inspect answers: container states, reasons, phases.

use super::*;

/// Restarts after which a failing container counts as crash-looping.
pub(super) const CRASH_LOOP_RESTARTS: u32 = 3;

impl PodmanRuntime {
    /// The component's status: the cached view while it is fresh or while a deploy runs, else
    /// podman's answer.
    pub(super) async fn status_cached(&self, c: ComponentRef<'_>) -> Result<ComponentStatus, RuntimeError> {
        let k = key(c);
        let cached = || self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&k).cloned();
        let deploying = self.lock(&k).try_lock().is_err();
        if let Some((at, s)) = cached()
            && (deploying || at.elapsed() < self.config.status_ttl)
        {
            return Ok(s);
        }
        if deploying {
            // No whole view yet: what podman says now, not kept.
            return self.status_uncached(c).await;
        }
        // A deploy that begins while podman is asked can tear the view (the old pod half
        // removed): then the last whole view answers while it runs, or podman is asked again.
        let mut attempts = 0;
        loop {
            let before = self.begun(&k);
            let read = self.status_uncached(c).await?;
            attempts += 1;
            if self.begun(&k) == before {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(k, (Instant::now(), read.clone()));
                return Ok(read);
            }
            if self.lock(&k).try_lock().is_err()
                && let Some((_, whole)) = cached()
            {
                return Ok(whole);
            }
            if attempts == 2 {
                return Ok(read);
            }
        }
    }

    /// A deploy or stop of the component begins (its lock held).
    pub(super) fn begin(&self, key: &str) {
        *self
            .begun
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default() += 1;
    }

    fn begun(&self, key: &str) -> u64 {
        self.begun
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub(super) async fn status_uncached(&self, c: ComponentRef<'_>) -> Result<ComponentStatus, RuntimeError> {
        let mut pods = Vec::new();
        for name in self.pods(c).await? {
            if let Some(p) = self.pod_status(&name, c).await? {
                pods.push(p);
            }
        }
        let failure = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(c))
            .cloned();
        if let Some(mut f) = failure {
            if !pods.is_empty() {
                f.pods = pods;
            }
            return Ok(f);
        }
        Ok(summarise(pods))
    }

    /// The status of the pod named `pod`, when it exists and is `c`'s.
    pub(super) async fn pod_status(&self, pod: &str, c: ComponentRef<'_>) -> Result<Option<PodStatus>, RuntimeError> {
        let Some(inspect) = self.inspect_pod(pod, c).await? else {
            return Ok(None);
        };
        // The infra container too: it holds the pod's network, so its address.
        let ids: Vec<&str> = inspect.containers.iter().map(|c| c.id.as_str()).collect();
        let mut details: Vec<CtrInspect> = Vec::new();
        if !ids.is_empty() {
            let mut a = args(["container", "inspect"]);
            a.extend(ids.iter().map(OsString::from));
            let (_, out, _) = self.output(&a, None, self.config.call_timeout).await?;
            if !out.trim().is_empty() {
                details = parse_json(&out)?;
            }
        }
        let mut last_exits = HashMap::new();
        if details.iter().any(|d| d.restart_count > 0) {
            last_exits = self.last_exits(pod, &inspect.created).await?;
        }
        Ok(Some(pod_view(pod, details, &last_exits)))
    }

    /// The last exit code of each container of `pod` that died since `since`, from podman's
    /// events: a restarted container's inspect no longer says how it ended.
    pub(super) async fn last_exits(&self, pod: &str, since: &str) -> Result<HashMap<String, i32>, RuntimeError> {
        let mut a = args(["events", "--stream=false", "--filter", "event=died", "--format", "json"]);
        if !since.is_empty() {
            a.push("--since".into());
            a.push(since.into());
        }
        let out = self.run(&a, None, self.config.call_timeout).await?;
        let prefix = format!("{pod}-");
        let mut exits = HashMap::new();
        for line in out.lines().filter(|l| l.starts_with('{')) {
            if let Ok(e) = serde_json::from_str::<DiedEvent>(line)
                && let Some(name) = e.name.strip_prefix(&prefix)
            {
                exits.insert(name.to_owned(), e.exit_code.unwrap_or(0));
            }
        }
        Ok(exits)
    }
}

#[derive(Deserialize, Debug, Clone)]
pub(crate) struct CtrInspect {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "State")]
    pub state: CtrState,
    #[serde(rename = "RestartCount", default)]
    pub restart_count: u32,
    #[serde(rename = "ImageName", default)]
    pub image_name: String,
    #[serde(rename = "Config", default)]
    pub config: CtrConfig,
    #[serde(rename = "IsInfra", default)]
    pub is_infra: bool,
    #[serde(rename = "HostConfig", default)]
    pub host_config: CtrHostConfig,
    #[serde(rename = "NetworkSettings", default)]
    pub network: CtrNetwork,
}

/// The networks a container (the pod's infra container) is on, and its address on each.
#[derive(Deserialize, Debug, Clone, Default)]
pub(crate) struct CtrNetwork {
    #[serde(rename = "Networks", default)]
    pub networks: BTreeMap<String, CtrEndpoint>,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub(crate) struct CtrEndpoint {
    #[serde(rename = "IPAddress", default)]
    pub ip: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub(crate) struct CtrHostConfig {
    /// The memory limit in bytes; 0 for none.
    #[serde(rename = "Memory", default)]
    pub memory: i64,
}

#[derive(Deserialize)]
struct DiedEvent {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "ContainerExitCode", default)]
    exit_code: Option<i32>,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub(crate) struct CtrConfig {
    #[serde(rename = "Annotations", default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug, Clone)]
pub(crate) struct CtrState {
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i32,
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// One pod's status from `podman container inspect` of its containers.
pub(crate) fn pod_view(pod: &str, details: Vec<CtrInspect>, last_exits: &HashMap<String, i32>) -> PodStatus {
    let mut annotations = BTreeMap::new();
    let mut containers = Vec::new();
    let prefix = format!("{pod}-");
    let mut inits: BTreeMap<usize, String> = BTreeMap::new();
    let mut order: BTreeMap<usize, String> = BTreeMap::new();
    // The infra container holds the pod's network; the others share it.
    let ip = details
        .iter()
        .filter(|d| d.is_infra)
        .chain(details.iter().filter(|d| !d.is_infra))
        .flat_map(|d| d.network.networks.values())
        .find_map(|n| n.ip.parse().ok());
    for d in details.iter().filter(|d| !d.is_infra) {
        for (k, v) in &d.config.annotations {
            if k.ends_with(".plugin.kato") || k.contains(".plugin.kato/") {
                annotations.insert(k.clone(), v.clone());
            }
            for (key, list) in [(INIT_ANNOTATION, &mut inits), (CONTAINERS_ANNOTATION, &mut order)] {
                listed(list, key, k, v);
            }
        }
    }
    let inits: Vec<String> = inits.into_values().collect();
    let order: Vec<String> = order.into_values().collect();
    for d in details.into_iter().filter(|d| !d.is_infra) {
        let name = d.name.strip_prefix(&prefix).unwrap_or(&d.name).to_owned();
        let init = inits.contains(&name);
        let last = last_exits.get(&name).copied();
        containers.push(container_view(name, init, &d, last));
    }
    // Init containers podman removed after they succeeded.
    let app_started = containers.iter().any(|c| !c.init && c.state != ContainerState::Waiting);
    for name in &inits {
        if !containers.iter().any(|c| &c.name == name) {
            containers.push(ContainerStatus {
                name: name.clone(),
                role: role_of(name),
                init: true,
                state: if app_started {
                    ContainerState::Terminated
                } else {
                    ContainerState::Unknown
                },
                ready: false,
                restarts: 0,
                exit_code: app_started.then_some(0),
                reason: app_started.then(|| "Completed".to_owned()),
                message: None,
                image: None,
            });
        }
    }
    // Init containers first in their order, then the others in pod order.
    containers.sort_by_key(|c| {
        if c.init {
            (0, inits.iter().position(|n| n == &c.name).unwrap_or(0))
        } else {
            (1, order.iter().position(|n| n == &c.name).unwrap_or(usize::MAX))
        }
    });
    let phase = phase_of(&containers);
    PodStatus {
        name: pod.to_owned(),
        phase,
        annotations,
        containers,
        ip,
    }
}

/// Adds the container the annotation `k` = `v` names to `list` when `k` is `key.N`; a pod played
/// by an older Kato has `key` = a comma-separated list.
fn listed(list: &mut BTreeMap<usize, String>, key: &str, k: &str, v: &str) {
    if k == key {
        list.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).enumerate());
    } else if let Some(i) = k.strip_prefix(key).and_then(|r| r.strip_prefix('.')?.parse().ok()) {
        list.insert(i, v.to_owned());
    }
}

pub(super) fn role_of(name: &str) -> ContainerRole {
    if name.starts_with("plugin-") {
        ContainerRole::Plugin
    } else {
        ContainerRole::App
    }
}

/// The exit code of a process killed by SIGKILL, which is how the kernel ends a container over its
/// memory limit (podman does not always see the OOM event itself).
pub(super) const SIGKILL_EXIT: i32 = 137;

pub(super) fn container_view(name: String, init: bool, d: &CtrInspect, last_exit: Option<i32>) -> ContainerStatus {
    let s = &d.state;
    let (state, mut exit_code) = match s.status.as_str() {
        "running" => (ContainerState::Running, None),
        "created" | "configured" | "initialized" => (ContainerState::Waiting, None),
        "exited" | "stopped" => (ContainerState::Terminated, Some(s.exit_code)),
        _ => (ContainerState::Unknown, None),
    };
    if exit_code.is_none() && d.restart_count > 0 {
        exit_code = last_exit;
    }
    let limited = d.host_config.memory > 0;
    let oom = s.oom_killed || (limited && exit_code == Some(SIGKILL_EXIT));
    // An init container that failed and is being retried still failed.
    let init_failed = init && exit_code.is_some_and(|c| c != 0);
    let reason = match state {
        _ if init_failed => Some("InitFailed"),
        ContainerState::Terminated if oom => Some("OOMKilled"),
        ContainerState::Terminated if s.exit_code == 0 => Some("Completed"),
        ContainerState::Terminated if d.restart_count >= CRASH_LOOP_RESTARTS => Some("CrashLoopBackOff"),
        ContainerState::Terminated => Some("Error"),
        ContainerState::Running | ContainerState::Unknown if oom => Some("OOMKilled"),
        ContainerState::Running | ContainerState::Unknown if d.restart_count >= CRASH_LOOP_RESTARTS => {
            Some("CrashLoopBackOff")
        }
        _ => None,
    };
    let message = match reason {
        Some("OOMKilled") => Some(format!(
            "the container used more than its memory limit ({} MiB) and was killed; restarted {} times",
            d.host_config.memory / (1024 * 1024),
            d.restart_count
        )),
        Some("CrashLoopBackOff") => Some(format!(
            "the container keeps exiting (last exit code {}); restarted {} times",
            exit_code.unwrap_or_default(),
            d.restart_count
        )),
        Some("InitFailed") => Some(format!(
            "the init container exited with code {}",
            exit_code.unwrap_or_default()
        )),
        _ => (!s.error.is_empty()).then(|| s.error.clone()),
    };
    ContainerStatus {
        role: role_of(&name),
        name,
        init,
        state,
        ready: state == ContainerState::Running,
        restarts: d.restart_count,
        exit_code,
        reason: reason.map(str::to_owned),
        message,
        image: (!d.image_name.is_empty()).then(|| d.image_name.clone()),
    }
}

pub(super) fn phase_of(containers: &[ContainerStatus]) -> String {
    let main: Vec<&ContainerStatus> = containers.iter().filter(|c| !c.init).collect();
    let phase = if main.iter().any(|c| c.state == ContainerState::Running) {
        "Running"
    } else if containers
        .iter()
        .any(|c| c.init && c.reason.as_deref() == Some("InitFailed"))
        || (!main.is_empty()
            && main
                .iter()
                .all(|c| c.state == ContainerState::Terminated && c.exit_code != Some(0)))
    {
        "Failed"
    } else if !main.is_empty() && main.iter().all(|c| c.state == ContainerState::Terminated) {
        "Succeeded"
    } else {
        "Pending"
    };
    phase.to_owned()
}

/// The component's state from its pods' containers.
pub(crate) fn summarise(pods: Vec<PodStatus>) -> ComponentStatus {
    if pods.is_empty() {
        return ComponentStatus::stopped();
    }
    let all = || pods.iter().flat_map(|p| p.containers.iter());
    let broken = all().find(|c| {
        matches!(
            c.reason.as_deref(),
            Some("InitFailed" | "CrashLoopBackOff" | "ErrImagePull" | "ImagePullBackOff")
        ) || (c.reason.as_deref() == Some("OOMKilled") && c.restarts >= CRASH_LOOP_RESTARTS)
            || (!c.init && c.state == ContainerState::Terminated && c.exit_code != Some(0))
    });
    let oom = all().find(|c| c.reason.as_deref() == Some("OOMKilled"));
    let waiting = all().find(|c| !c.init && c.state != ContainerState::Running);
    let (state, message) = if let Some(c) = broken {
        let why = c.message.clone().or_else(|| c.reason.clone()).unwrap_or_default();
        let what = c.reason.clone().unwrap_or_else(|| "Error".to_owned());
        (
            ComponentState::Failed,
            Some(format!("container {}: {what}: {why}", c.name)),
        )
    } else if let Some(c) = waiting {
        if c.state == ContainerState::Terminated {
            let what = c.reason.clone().unwrap_or_else(|| "Error".to_owned());
            (
                ComponentState::Failed,
                Some(format!("container {} stopped: {what}", c.name)),
            )
        } else {
            (
                ComponentState::Starting,
                Some(format!("container {} is not running yet", c.name)),
            )
        }
    } else if let Some(c) = oom {
        (
            ComponentState::Running,
            Some(format!("container {} was OOMKilled and restarted", c.name)),
        )
    } else {
        (ComponentState::Running, None)
    };
    ComponentStatus { state, message, pods }
}

/// The status of a component whose deploy could not pull an image.
pub(super) fn pull_failure(pod: &str, all: &[&Container], failed: &str, image: &str, why: &str) -> ComponentStatus {
    let containers = all
        .iter()
        .map(|c| {
            let this = c.name == failed;
            ContainerStatus {
                name: c.name.clone(),
                role: role_of(&c.name),
                init: false,
                state: ContainerState::Waiting,
                ready: false,
                restarts: 0,
                exit_code: None,
                reason: this.then(|| "ErrImagePull".to_owned()),
                message: this.then(|| why.to_owned()),
                image: c.image.clone(),
            }
        })
        .collect();
    ComponentStatus {
        state: ComponentState::Failed,
        message: Some(format!("container {failed}: ErrImagePull: cannot pull {image}: {why}")),
        pods: vec![PodStatus {
            name: pod.to_owned(),
            phase: "Pending".to_owned(),
            annotations: BTreeMap::new(),
            containers,
            ip: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_address_is_the_infra_containers_on_the_pod_network() {
        let details: Vec<CtrInspect> = serde_json::from_value(serde_json::json!([
            {"Name": "web-pod-web", "State": {"Status": "running"}, "IsInfra": false,
             "NetworkSettings": {"Networks": {}}},
            {"Name": "web-pod-infra", "State": {"Status": "running"}, "IsInfra": true,
             "NetworkSettings": {"Networks": {"podman-default-kube-network": {"IPAddress": "10.89.0.7"}}}}
        ]))
        .unwrap();
        let pod = pod_view("web-pod", details, &HashMap::new());
        assert_eq!(pod.ip, Some("10.89.0.7".parse().unwrap()));
        assert_eq!(pod.containers.len(), 1, "the infra container is not one of the pod's");
        let none: Vec<CtrInspect> =
            serde_json::from_value(serde_json::json!([{"Name": "x", "State": {"Status": "exited"}}])).unwrap();
        assert_eq!(pod_view("x", none, &HashMap::new()).ip, None);
    }
}
