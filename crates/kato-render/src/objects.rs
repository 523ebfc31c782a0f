//! The Kubernetes objects of a workload: Secrets, the Service, the Deployment or Pod, and labels.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kato_model::ComponentSpec;
use serde::Serialize;

use crate::containers::PodContainers;
use crate::plan::ServicePortPlan;
use crate::text::{Decimal, concat};

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_TEAM: &str = "kato/team";
pub const LABEL_COMPONENT: &str = "kato/component";

/// One rendered Kubernetes object.
// Unboxed so callers match on plain k8s-openapi types; a workload holds a handful of objects.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Secret(Secret),
    Service(Service),
    Deployment(Deployment),
    Pod(Pod),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Secret(_) => "Secret",
            Self::Service(_) => "Service",
            Self::Deployment(_) => "Deployment",
            Self::Pod(_) => "Pod",
        }
    }
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Secret(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::Deployment(o) => &o.metadata,
            Self::Pod(o) => &o.metadata,
        }
    }
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }
}

/// Names and labels shared by every object of one workload.
pub(crate) struct Meta<'a> {
    pub namespace: Option<&'a str>,
    pub labels: BTreeMap<String, String>,
}

impl<'a> Meta<'a> {
    pub fn new(team: &str, component: &str, namespace: Option<&'a str>) -> Self {
        let labels = BTreeMap::from([
            (LABEL_NAME.to_owned(), component.to_owned()),
            (LABEL_MANAGED_BY.to_owned(), "kato".to_owned()),
            (LABEL_TEAM.to_owned(), team.to_owned()),
            (LABEL_COMPONENT.to_owned(), component.to_owned()),
        ]);
        Meta { namespace, labels }
    }

    /// What selects the workload's pods: team and component.
    pub fn selector(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .filter(|(k, _)| *k == LABEL_TEAM || *k == LABEL_COMPONENT)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn object(&self, name: String, annotations: Option<BTreeMap<String, String>>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.map(str::to_owned),
            labels: Some(self.labels.clone()),
            annotations,
            ..Default::default()
        }
    }
}

/// A Service port name: `{protocol}-{port}` when that is a valid IANA service name (≤ 15
/// characters), else `p-{port}`.
pub(crate) fn port_name(protocol: &str, port: u16) -> String {
    let port = Decimal::new(port);
    let name = concat(&[protocol, "-", port.as_str()]);
    if name.len() <= 15 {
        name
    } else {
        concat(&["p-", port.as_str()])
    }
}

/// The component's Service.
pub(crate) fn service(meta: &Meta<'_>, name: &str, ports: Vec<ServicePortPlan>) -> Service {
    let ports = ports
        .into_iter()
        .map(|p| ServicePort {
            name: Some(p.name),
            port: i32::from(p.port),
            protocol: Some(p.protocol.to_owned()),
            target_port: Some(IntOrString::Int(i32::from(p.target_port))),
            ..Default::default()
        })
        .collect();
    Service {
        metadata: meta.object(name.to_owned(), None),
        spec: Some(ServiceSpec {
            ports: Some(ports),
            selector: Some(meta.selector()),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod_spec(parts: PodContainers<Container>, volumes: Vec<k8s_openapi::api::core::v1::Volume>) -> PodSpec {
    PodSpec {
        containers: parts.containers,
        init_containers: (!parts.init_containers.is_empty()).then_some(parts.init_containers),
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..Default::default()
    }
}

/// The kubernetes workload. Plug-in annotations go on the Deployment, not the pod template, so a
/// config-only change does not restart the pods.
pub(crate) fn deployment(
    meta: &Meta<'_>,
    component: &ComponentSpec,
    annotations: BTreeMap<String, String>,
    template_annotations: BTreeMap<String, String>,
    parts: PodContainers<Container>,
    volumes: Vec<k8s_openapi::api::core::v1::Volume>,
) -> Deployment {
    Deployment {
        metadata: meta.object(component.name.as_str().to_owned(), non_empty(annotations)),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(component.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(meta.selector()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    annotations: non_empty(template_annotations),
                    labels: Some(meta.labels.clone()),
                    ..Default::default()
                }),
                spec: Some(pod_spec(parts, volumes)),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The podman workload: podman 4.x restarts init containers of a pod whose restart policy is
/// `Always`, so a pod with init containers restarts `OnFailure`.
pub(crate) fn pod(
    meta: &Meta<'_>,
    name: String,
    annotations: BTreeMap<String, String>,
    parts: PodContainers<Container>,
    volumes: Vec<k8s_openapi::api::core::v1::Volume>,
) -> Pod {
    let restart = pod_restart_policy(!parts.init_containers.is_empty());
    let mut spec = pod_spec(parts, volumes);
    spec.restart_policy = Some(restart.to_owned());
    Pod {
        metadata: meta.object(name, non_empty(annotations)),
        spec: Some(spec),
        status: None,
    }
}

/// podman 4.x restarts init containers of a pod whose restart policy is `Always`.
pub(crate) fn pod_restart_policy(has_init_containers: bool) -> &'static str {
    if has_init_containers { "OnFailure" } else { "Always" }
}

fn non_empty(m: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_are_iana_service_names() {
        assert_eq!(port_name("http", 8080), "http-8080");
        assert_eq!(port_name("websocket", 12345), "websocket-12345");
        assert_eq!(port_name("postgresql", 5432), "postgresql-5432");
        assert_eq!(port_name("postgresql", 15432), "p-15432");
    }
}
