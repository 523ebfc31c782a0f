//! Pods as Kubernetes reports them → [`ComponentStatus`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, ContainerStatus as K8sContainerStatus, Pod};

use crate::{ComponentState, ComponentStatus, ContainerRole, ContainerState, ContainerStatus, PodStatus};

/// Waiting reasons that do not go away by waiting.
const FAILED_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Annotations of the Deployment that describe the running plug-ins (DESIGN §5.8).
fn plugin_annotations(deployment: Option<&Deployment>) -> BTreeMap<String, String> {
    deployment
        .and_then(|d| d.metadata.annotations.as_ref())
        .map(|a| {
            a.iter()
                .filter(|(k, _)| k.starts_with("version.plugin.kato/") || k.starts_with("revision.plugin.kato/"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The component's state from its Deployment and pods. Pods being deleted (a stop, or the old
/// pods of a rollout) are listed but do not decide the state.
pub(crate) fn component_status(deployment: Option<&Deployment>, pods: &[Pod]) -> ComponentStatus {
    let plugin_annotations = plugin_annotations(deployment);
    let mut out: Vec<PodStatus> = pods.iter().map(|p| pod_status(p, &plugin_annotations)).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));

    let live: Vec<(&Pod, &PodStatus)> = pods
        .iter()
        .filter(|p| !terminating(p))
        .map(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            (p, out.iter().find(|s| s.name == name).expect("every pod has a status"))
        })
        .collect();

    let stuck = deployment.and_then(deployment_failure);
    if live.is_empty() {
        if let Some(why) = stuck {
            return failed(why, out);
        }
        return match deployment {
            Some(d) if d.metadata.deletion_timestamp.is_none() => ComponentStatus {
                state: ComponentState::Starting,
                message: Some("no pod yet".into()),
                pods: out,
            },
            _ => ComponentStatus {
                state: ComponentState::Stopped,
                message: None,
                pods: out,
            },
        };
    }

    // Failed: any container that cannot run.
    for (pod, ps) in &live {
        if ps.phase == "Failed" {
            let why = pod
                .status
                .as_ref()
                .and_then(|s| s.message.clone().or_else(|| s.reason.clone()))
                .unwrap_or_else(|| "the pod failed".into());
            return failed(format!("pod {}: {why}", ps.name), out);
        }
        for c in &ps.containers {
            if let Some(why) = container_failure(c) {
                return failed(format!("pod {}: container {}: {why}", ps.name, c.name), out);
            }
        }
    }

    if let Some(why) = stuck {
        return failed(why, out);
    }

    // Starting: a pod not yet scheduled, a container not ready, or a pod not running yet.
    for (pod, ps) in &live {
        if let Some(why) = unscheduled(pod) {
            return starting(format!("pod {} is not scheduled: {why}", ps.name), out);
        }
        for c in &ps.containers {
            // A finished init container has done its job; a native sidecar must be ready.
            let done = c.init && c.state == ContainerState::Terminated && c.exit_code == Some(0);
            if !c.ready && !done {
                let what = c
                    .reason
                    .as_deref()
                    .map_or_else(|| state_word(c.state).to_owned(), str::to_owned);
                return starting(
                    format!("pod {}: container {} is not ready ({what})", ps.name, c.name),
                    out,
                );
            }
        }
        if ps.phase != "Running" {
            return starting(format!("pod {} is {}", ps.name, ps.phase.to_lowercase()), out);
        }
    }
    ComponentStatus {
        state: ComponentState::Running,
        message: None,
        pods: out,
    }
}

/// Why the Deployment cannot bring its pods up, when its controller says so: it cannot create
/// them (quota, admission), or the rollout ran past its progress deadline.
fn deployment_failure(d: &Deployment) -> Option<String> {
    let conditions = d.status.as_ref()?.conditions.as_ref()?;
    let failing = conditions.iter().find(|c| {
        (c.type_ == "ReplicaFailure" && c.status == "True")
            || (c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    })?;
    let reason = failing.reason.as_deref().unwrap_or(&failing.type_);
    Some(match failing.message.as_deref() {
        Some(m) if !m.is_empty() => format!("deployment: {reason}: {m}"),
        _ => format!("deployment: {reason}"),
    })
}

fn failed(message: String, pods: Vec<PodStatus>) -> ComponentStatus {
    ComponentStatus {
        state: ComponentState::Failed,
        message: Some(message),
        pods,
    }
}

fn starting(message: String, pods: Vec<PodStatus>) -> ComponentStatus {
    ComponentStatus {
        state: ComponentState::Starting,
        message: Some(message),
        pods,
    }
}

fn state_word(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Waiting => "waiting",
        ContainerState::Running => "running",
        ContainerState::Terminated => "terminated",
        ContainerState::Unknown => "unknown",
    }
}

/// Why the scheduler has not placed a pod, when it has not.
fn unscheduled(pod: &Pod) -> Option<String> {
    let c = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))?;
    Some(
        c.message
            .clone()
            .or_else(|| c.reason.clone())
            .unwrap_or_else(|| "no node fits".into()),
    )
}

/// Why a container cannot run, when it cannot.
fn container_failure(c: &ContainerStatus) -> Option<String> {
    let reason = c.reason.as_deref()?;
    let failing = match c.state {
        ContainerState::Waiting => FAILED_WAITING.contains(&reason) || reason == "InitFailed" || reason == "OOMKilled",
        // A finished app or sidecar container that will not be restarted, or a failed init.
        ContainerState::Terminated => c.exit_code != Some(0),
        ContainerState::Running | ContainerState::Unknown => false,
    };
    failing.then(|| match &c.message {
        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
        _ => reason.to_owned(),
    })
}

fn pod_status(pod: &Pod, plugin_annotations: &BTreeMap<String, String>) -> PodStatus {
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let mut containers = Vec::new();
    let init_statuses = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let statuses = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    for c in spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default() {
        containers.push(container_status(
            c,
            true,
            init_statuses.iter().find(|s| s.name == c.name),
        ));
    }
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        containers.push(container_status(c, false, statuses.iter().find(|s| s.name == c.name)));
    }
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.extend(plugin_annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    PodStatus {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()),
        annotations,
        containers,
        ip: status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()),
    }
}

fn container_status(spec: &Container, init: bool, status: Option<&K8sContainerStatus>) -> ContainerStatus {
    let role = if spec.name.starts_with("plugin-") {
        ContainerRole::Plugin
    } else {
        ContainerRole::App
    };
    // A native sidecar is an init container that keeps running.
    let run_to_completion = init && spec.restart_policy.as_deref() != Some("Always");
    let mut out = ContainerStatus {
        name: spec.name.clone(),
        role,
        init,
        state: ContainerState::Waiting,
        ready: false,
        restarts: 0,
        exit_code: None,
        reason: None,
        message: None,
        image: spec.image.clone(),
    };
    let Some(s) = status else { return out };
    out.ready = s.ready;
    out.restarts = u32::try_from(s.restart_count).unwrap_or(0);
    let last = s.last_state.as_ref().and_then(|l| l.terminated.as_ref());
    let state = s.state.as_ref();
    if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
        out.state = ContainerState::Terminated;
        out.exit_code = Some(t.exit_code);
        out.message = t.message.clone();
        out.reason = match t.reason.as_deref() {
            Some("OOMKilled") => Some("OOMKilled".into()),
            _ if run_to_completion && t.exit_code != 0 => Some("InitFailed".into()),
            Some(r) => Some(r.to_owned()),
            None if t.exit_code == 0 => Some("Completed".into()),
            None => Some("Error".into()),
        };
    } else if let Some(w) = state.and_then(|st| st.waiting.as_ref()) {
        out.state = ContainerState::Waiting;
        out.reason = w.reason.clone();
        out.message = w.message.clone();
        if w.reason.as_deref() == Some("CrashLoopBackOff")
            && let Some(l) = last
        {
            // The crash that put it in back-off says more than the back-off itself.
            out.exit_code = Some(l.exit_code);
            let last_reason = l.reason.as_deref().unwrap_or("Error");
            out.reason = Some(if last_reason == "OOMKilled" {
                "OOMKilled".into()
            } else if run_to_completion {
                "InitFailed".into()
            } else {
                "CrashLoopBackOff".into()
            });
            let said = l.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            out.message = Some(format!(
                "restarting after exit code {} ({last_reason}{said}); {}",
                l.exit_code,
                w.message.as_deref().unwrap_or("back-off")
            ));
        }
    } else if state.and_then(|st| st.running.as_ref()).is_some() {
        out.state = ContainerState::Running;
        // Running again after a crash: say what the last one was.
        if let Some(l) = last {
            out.exit_code = Some(l.exit_code);
            out.reason = l.reason.clone();
            out.message = Some(format!("restarted after exit code {}", l.exit_code));
        }
    } else {
        out.state = ContainerState::Unknown;
    }
    out
}

/// The pod to read logs from: the newest live pod, else the newest one.
pub(crate) fn log_pod(pods: &[Pod]) -> Option<&Pod> {
    newest(pods.iter().filter(|p| !terminating(p))).or_else(|| newest(pods.iter()))
}

fn newest<'p>(pods: impl Iterator<Item = &'p Pod>) -> Option<&'p Pod> {
    pods.max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The names of a pod's containers, init containers first.
pub(crate) fn container_names(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .chain(spec.map(|s| s.containers.as_slice()).unwrap_or_default())
        .map(|c| c.name.clone())
        .collect()
}
