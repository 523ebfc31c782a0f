//! Containers of the pod: the app, one per rendered plug-in, and where each goes by sidecar mode.

use std::borrow::Cow;

use kato_model::{ComponentSpec, PluginKind, Protocol};

use crate::PluginInstance;
use crate::env::Var;
use crate::options::SidecarMode;
use crate::plan::ContainerPlan;
use crate::text::concat;

/// The containers of a pod spec, already in their final order.
pub(crate) struct PodContainers<C> {
    pub containers: Vec<C>,
    pub init_containers: Vec<C>,
}

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    if p.is_udp() { "UDP" } else { "TCP" }
}

/// The app container: only the component's own env, never a plug-in variable.
pub(crate) fn app_container(component: &ComponentSpec) -> ContainerPlan<'_> {
    ContainerPlan {
        name: Cow::Borrowed(component.name.as_str()),
        image: component.image.as_str(),
        command: component.command.as_ref(),
        env: component
            .env
            .iter()
            .map(|e| Var::plain(e.name.as_str(), e.value.as_str()))
            .collect(),
        secret: None,
        ports: component
            .ports
            .iter()
            .map(|p| (p.port, protocol_name(p.protocol)))
            .collect(),
        memory_mib: component.memory_mib,
        cpu_millis: component.cpu_millis,
        restart_always: false,
        privileged: false,
        ready: None,
    }
}

/// A plug-in container. An inbound net plug-in's ports are the listen ports it takes over;
/// `secret` is the Secret its secret-backed variables refer to.
pub(crate) fn plugin_container<'w>(
    inst: &'w PluginInstance<'w>,
    image: &'w str,
    env: Vec<Var<'w>>,
    secret: String,
    component: &'w ComponentSpec,
    mode: SidecarMode,
) -> ContainerPlan<'w> {
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
                    .map(|l| (*l, protocol_name(p.protocol)))
            })
            .collect()
    } else {
        Vec::new()
    };
    ContainerPlan {
        name: Cow::Owned(concat(&["plugin-", installation.plugin.as_str()])),
        image,
        command: inst.version.spec.command.as_ref(),
        env,
        secret: Some(secret),
        ports,
        memory_mib: installation.memory_mib,
        cpu_millis: installation.cpu_millis,
        restart_always: kind.is_sidecar() && mode == SidecarMode::Native,
        privileged: kind == PluginKind::Init && installation.privileged,
        // An init plug-in runs to completion: nothing waits for it to be ready.
        ready: inst.version.spec.ready.as_ref().filter(|_| kind.is_sidecar()),
    }
}

/// Builds the containers in their final places (DESIGN §5 rule 5): `native` puts net sidecars,
/// then the other sidecars, then init plug-ins in `initContainers`, and the app alone in
/// `containers`; `classic` puts net plug-ins, the app, then the other sidecars in `containers`
/// and init plug-ins in `initContainers`. Within a group, install order. `build` makes a
/// plug-in's container; `kinds` are the running plug-ins' kinds in install order.
pub(crate) fn pod_containers<C>(
    app: C,
    kinds: &[PluginKind],
    mode: SidecarMode,
    mut build: impl FnMut(usize) -> C,
) -> PodContainers<C> {
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
