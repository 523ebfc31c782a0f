//! The workload as a plan: what every object holds, borrowed from the model wherever it can be.
//!
//! Both outputs come from one plan: [`Plan::into_objects`] builds the k8s-openapi objects the
//! engines apply, and `yaml::plan` writes the same objects' YAML straight from it, without
//! building them — a plug-in container repeats the app's env, so most of a workload's strings are
//! borrowed here and would each be an allocation in the objects.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ResourceRequirements, Secret,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kato_model::{Command, ComponentSpec, PluginKind, Ready};

use crate::containers::{self, PodContainers};
use crate::env::{self, Var};
use crate::objects::{self, Meta};
use crate::options::Target;
use crate::probe;
use crate::text::{Decimal, concat};
use crate::{Object, RenderError, RenderOptions, Rendered, Workload, active_plugins};

/// Everything the objects of one workload are made of.
pub(crate) struct Plan<'w> {
    pub target: Target,
    pub team: &'w str,
    pub component: &'w ComponentSpec,
    /// The team's namespace on kubernetes; podman pods have none.
    pub namespace: Option<&'w str>,
    /// Sorted by name.
    pub secrets: Vec<SecretPlan<'w>>,
    /// The Service's ports; no Service when empty.
    pub service_ports: Vec<ServicePortPlan>,
    /// `version.plugin.kato/…` and `revision.plugin.kato/…`, sorted by key.
    pub annotations: Vec<(String, String)>,
    /// The Deployment's pod template's: `secrets.plugin.kato/…`, each plug-in Secret's digest,
    /// so that a changed Secret rolls the pods (their env reads it only at start); sorted.
    pub template_annotations: Vec<(String, String)>,
    pub containers: Vec<ContainerPlan<'w>>,
    pub init_containers: Vec<ContainerPlan<'w>>,
}

pub(crate) struct SecretPlan<'w> {
    pub name: String,
    /// Sorted by key; values in clear (base64 is the writer's business).
    pub data: Vec<(&'w str, Cow<'w, str>)>,
}

pub(crate) struct ServicePortPlan {
    pub name: String,
    pub port: u16,
    pub protocol: &'static str,
    pub target_port: u16,
}

pub(crate) struct ContainerPlan<'w> {
    pub name: Cow<'w, str>,
    pub image: &'w str,
    pub command: Option<&'w Command>,
    pub env: Vec<Var<'w>>,
    /// The Secret that secret-backed env vars refer to.
    pub secret: Option<String>,
    /// `(containerPort, protocol)`.
    pub ports: Vec<(u16, &'static str)>,
    pub memory_mib: u32,
    pub cpu_millis: Option<u32>,
    /// A native sidecar: an init container that keeps running.
    pub restart_always: bool,
    pub privileged: bool,
    /// A sidecar plug-in's check: its startup and readiness probes.
    pub ready: Option<&'w Ready>,
}

impl Plan<'_> {
    /// The pod's restart policy on podman (see [`objects::pod`]).
    pub fn pod_restart_policy(&self) -> &'static str {
        objects::pod_restart_policy(!self.init_containers.is_empty())
    }
    pub fn pod_name(&self) -> String {
        crate::names::podman_pod_name(self.team, self.component.name.as_str())
    }
}

/// Plans the workload; the checks are [`crate::render`]'s.
pub(crate) fn plan<'w>(w: &'w Workload<'w>, opts: &'w RenderOptions) -> Result<Plan<'w>, RenderError> {
    let active = active_plugins(w)?;
    let mode = opts.effective_sidecars();
    let (team, component) = (w.team.as_str(), w.component);
    let name = component.name.as_str();
    let ctx = env::EnvContext {
        team,
        component,
        discovery_base_url: &opts.discovery_base_url,
        redact_secrets: opts.redact_secrets,
    };

    let mut secrets = Vec::with_capacity(active.len());
    let mut annotations = Vec::with_capacity(2 * active.len());
    let mut template_annotations = Vec::with_capacity(active.len());
    let kinds: Vec<PluginKind> = active.iter().map(|a| a.kind).collect();
    let PodContainers {
        containers,
        init_containers,
    } = containers::pod_containers(containers::app_container(component), &kinds, mode, |i| {
        let a = &active[i];
        let plugin = a.inst.installation.plugin.as_str();
        let penv = env::plugin_env(&ctx, a.inst);
        let secret = crate::names::plugin_secret_name(name, plugin);
        template_annotations.push((concat(&["secrets.plugin.kato/", plugin]), penv.secret_digest));
        secrets.push(SecretPlan {
            name: secret.clone(),
            data: penv.secret_data,
        });
        annotations.push((
            concat(&["version.plugin.kato/", plugin]),
            Decimal::new(a.inst.version.number).as_str().to_owned(),
        ));
        annotations.push((
            concat(&["revision.plugin.kato/", plugin]),
            Decimal::new(a.inst.installation.revision).as_str().to_owned(),
        ));
        containers::plugin_container(a.inst, a.image, penv.env, secret, component, mode)
    });
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    annotations.sort_by(|a, b| a.0.cmp(&b.0));
    template_annotations.sort_by(|a, b| a.0.cmp(&b.0));

    // Inbound takeover: the Service sends a port's traffic to the net plug-in's listen port.
    let inbound = active.iter().find(|a| a.kind.handles_inbound());
    let service_ports = component
        .ports
        .iter()
        .map(|p| ServicePortPlan {
            name: objects::port_name(p.protocol.as_str(), p.port),
            port: p.port,
            protocol: containers::protocol_name(p.protocol),
            target_port: inbound
                .and_then(|a| a.inst.installation.listen_ports.get(&p.port).copied())
                .unwrap_or(p.port),
        })
        .collect();

    Ok(Plan {
        target: opts.target,
        team,
        component,
        namespace: (opts.target == Target::Kubernetes).then_some(team),
        secrets,
        service_ports,
        annotations,
        template_annotations,
        containers,
        init_containers,
    })
}

impl Plan<'_> {
    /// Secrets sorted by name, the Service (when the component has ports), then the Deployment
    /// (kubernetes) or Pod (podman).
    pub fn into_objects(self) -> Rendered {
        let component = self.component;
        let name = component.name.as_str();
        let meta = Meta::new(self.team, name, self.namespace);
        let (volumes, mounts) = volumes(component);
        let mut out: Vec<Object> = Vec::with_capacity(self.secrets.len() + 2);
        for s in self.secrets {
            let data = s
                .data
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_owned().into_bytes())))
                .collect();
            out.push(Object::Secret(Secret {
                metadata: meta.object(s.name, None),
                data: Some(data),
                type_: Some("Opaque".to_owned()),
                ..Default::default()
            }));
        }
        if !self.service_ports.is_empty() {
            out.push(Object::Service(objects::service(&meta, name, self.service_ports)));
        }
        let container = |c: ContainerPlan<'_>| c.into_container(&mounts);
        let parts = PodContainers {
            containers: self.containers.into_iter().map(container).collect(),
            init_containers: self.init_containers.into_iter().map(container).collect(),
        };
        let annotations: BTreeMap<String, String> = self.annotations.into_iter().collect();
        out.push(match self.target {
            Target::Kubernetes => {
                let template = self.template_annotations.into_iter().collect();
                Object::Deployment(objects::deployment(
                    &meta,
                    component,
                    annotations,
                    template,
                    parts,
                    volumes,
                ))
            }
            Target::Podman => Object::Pod(objects::pod(
                &meta,
                crate::names::podman_pod_name(self.team, name),
                annotations,
                parts,
                volumes,
            )),
        });
        Rendered { objects: out }
    }
}

/// One `emptyDir` per component volume, mounted by every container at the component's path.
fn volumes(component: &ComponentSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let volumes = component
        .volumes
        .iter()
        .map(|v| Volume {
            name: v.name.as_str().to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        })
        .collect();
    let mounts = component
        .volumes
        .iter()
        .map(|v| VolumeMount {
            name: v.name.as_str().to_owned(),
            mount_path: v.path.clone(),
            ..Default::default()
        })
        .collect();
    (volumes, mounts)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Memory request = limit; cpu only when set.
fn resources(memory_mib: u32, cpu_millis: Option<u32>) -> ResourceRequirements {
    let mut amounts = BTreeMap::new();
    amounts.insert(
        "memory".to_owned(),
        Quantity(concat(&[Decimal::new(memory_mib).as_str(), "Mi"])),
    );
    if let Some(cpu) = cpu_millis {
        amounts.insert("cpu".to_owned(), Quantity(concat(&[Decimal::new(cpu).as_str(), "m"])));
    }
    ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        claims: None,
    }
}

impl ContainerPlan<'_> {
    fn into_container(self, mounts: &[VolumeMount]) -> Container {
        let secret = self.secret.unwrap_or_default();
        let env = self
            .env
            .into_iter()
            .map(|var| {
                if var.secret {
                    EnvVar {
                        name: var.name.to_owned(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(SecretKeySelector {
                                key: var.name.to_owned(),
                                name: secret.clone(),
                                optional: None,
                            }),
                            ..Default::default()
                        }),
                    }
                } else {
                    EnvVar {
                        name: var.name.to_owned(),
                        value: Some(var.value.into_owned()),
                        value_from: None,
                    }
                }
            })
            .collect();
        let ports = self
            .ports
            .into_iter()
            .map(|(port, protocol)| ContainerPort {
                container_port: i32::from(port),
                protocol: Some(protocol.to_owned()),
                ..Default::default()
            })
            .collect();
        Container {
            name: self.name.into_owned(),
            image: Some(self.image.to_owned()),
            command: self.command.map(Command::to_argv),
            env: non_empty(env),
            ports: non_empty(ports),
            readiness_probe: self.ready.map(|r| probe::probe(r, probe::READINESS)),
            resources: Some(resources(self.memory_mib, self.cpu_millis)),
            restart_policy: self.restart_always.then(|| "Always".to_owned()),
            security_context: self.privileged.then(|| SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
            startup_probe: self.ready.map(|r| probe::probe(r, probe::STARTUP)),
            volume_mounts: non_empty(mounts.to_vec()),
            ..Default::default()
        }
    }
}
