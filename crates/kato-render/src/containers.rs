//! Containers of the pod: the app, one per rendered plug-in, and where each goes by sidecar mode.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ResourceRequirements, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kato_model::{ComponentSpec, PluginKind, Protocol};

use crate::PluginInstance;
use crate::options::SidecarMode;
use crate::text::{Decimal, concat};

/// The containers of a pod spec, already in their final order.
pub(crate) struct PodContainers {
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
}

/// One `emptyDir` per component volume, mounted by every container at the component's path.
pub(crate) fn volumes(component: &ComponentSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
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

/// Memory request = limit; cpu only when set.
pub(crate) fn resources(memory_mib: u32, cpu_millis: Option<u32>) -> ResourceRequirements {
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

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    if p.is_udp() { "UDP" } else { "TCP" }
}

fn container_port(port: u16, protocol: Protocol) -> ContainerPort {
    ContainerPort {
        container_port: i32::from(port),
        protocol: Some(protocol_name(protocol).to_owned()),
        ..Default::default()
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The app container: only the component's own env, never a plug-in variable.
pub(crate) fn app_container(component: &ComponentSpec, mounts: &[VolumeMount]) -> Container {
    let env = component
        .env
        .iter()
        .map(|e| EnvVar {
            name: e.name.as_str().to_owned(),
            value: Some(e.value.clone()),
            value_from: None,
        })
        .collect();
    let ports = component
        .ports
        .iter()
        .map(|p| container_port(p.port, p.protocol))
        .collect();
    Container {
        name: component.name.as_str().to_owned(),
        image: Some(component.image.as_str().to_owned()),
        command: component.command.as_ref().map(|c| c.to_argv()),
        env: non_empty(env),
        ports: non_empty(ports),
        resources: Some(resources(component.memory_mib, component.cpu_millis)),
        volume_mounts: non_empty(mounts.to_vec()),
        ..Default::default()
    }
}

/// A plug-in container. `listen_ports` are the ports an inbound net plug-in takes over.
pub(crate) fn plugin_container(
    inst: &PluginInstance<'_>,
    image: &str,
    env: Vec<EnvVar>,
    component: &ComponentSpec,
    mounts: &[VolumeMount],
    mode: SidecarMode,
) -> Container {
    let installation = inst.installation;
    let kind = inst.version.spec.kind;
    let ports = if kind.handles_inbound() {
        component
            .ports
            .iter()
            .filter_map(|p| {
                installation
                    .listen_ports
                    .get(&p.port)
                    .map(|l| container_port(*l, p.protocol))
            })
            .collect()
    } else {
        Vec::new()
    };
    let restart_policy = (kind.is_sidecar() && mode == SidecarMode::Native).then(|| "Always".to_owned());
    let security_context = (kind == PluginKind::Init && installation.privileged).then(|| SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    Container {
        name: concat(&["plugin-", installation.plugin.as_str()]),
        image: Some(image.to_owned()),
        command: inst.version.spec.command.as_ref().map(|c| c.to_argv()),
        env: non_empty(env),
        ports: non_empty(ports),
        resources: Some(resources(installation.memory_mib, installation.cpu_millis)),
        restart_policy,
        security_context,
        volume_mounts: non_empty(mounts.to_vec()),
        ..Default::default()
    }
}

/// Builds the containers in their final places (DESIGN §5 rule 5): `native` puts net sidecars,
/// then the other sidecars, then init plug-ins in `initContainers`, and the app alone in
/// `containers`; `classic` puts net plug-ins, the app, then the other sidecars in `containers`
/// and init plug-ins in `initContainers`. Within a group, install order. `build` makes a
/// plug-in's container; `kinds` are the running plug-ins' kinds in install order.
pub(crate) fn pod_containers(
    app: Container,
    kinds: &[PluginKind],
    mode: SidecarMode,
    mut build: impl FnMut(usize) -> Container,
) -> PodContainers {
    let inits = kinds.iter().filter(|k| placement(**k) == Placement::Init).count();
    let (mut containers, mut init_containers) = match mode {
        SidecarMode::Native => (Vec::with_capacity(1), Vec::with_capacity(kinds.len())),
        SidecarMode::Classic => (Vec::with_capacity(kinds.len() - inits + 1), Vec::with_capacity(inits)),
    };
    let mut app = Some(app);
    for group in [Placement::Net, Placement::Sidecar, Placement::Init] {
        if mode == SidecarMode::Classic && group == Placement::Sidecar {
            containers.extend(app.take());
        }
        for (i, _) in kinds.iter().enumerate().filter(|(_, k)| placement(**k) == group) {
            let c = build(i);
            if mode == SidecarMode::Native || group == Placement::Init {
                init_containers.push(c);
            } else {
                containers.push(c);
            }
        }
    }
    containers.extend(app);
    PodContainers {
        containers,
        init_containers,
    }
}

/// Which group of containers a plug-in kind joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    Net,
    Sidecar,
    Init,
}

pub(crate) fn placement(kind: PluginKind) -> Placement {
    if kind == PluginKind::Init {
        Placement::Init
    } else if kind.is_net() {
        Placement::Net
    } else {
        Placement::Sidecar
    }
}
