//! Versions and installations: the rules for putting a plug-in version on a component.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::component::ComponentSpec;
use crate::names::PluginName;
use crate::plugin::{Meta, PluginKind, PluginSpec, check_cpu, check_memory, meta_name};
use crate::protocol::Protocol;
use crate::value::{Values, ports_list};
use crate::{Invalid, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    Queued,
    Building,
    Succeeded,
    Failed,
    Cancelled,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Building => "building",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl std::str::FromStr for VersionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown version status `{s}`"))
    }
}

/// An immutable snapshot of a plug-in's draft plus its build result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub number: u32,
    pub status: VersionStatus,
    /// The draft as it was when the version was cut.
    pub spec: PluginSpec,
    /// The digest-pinned image (`repo@sha256:…`) once the build succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a client sends to install or update a plug-in on a component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// The version to run; the newest succeeded one when absent on a new installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// Init plug-ins run unprivileged unless this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
}

/// A plug-in version on a component, with its own memory, switch and values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub plugin: PluginName,
    pub version: u32,
    pub enabled: bool,
    pub memory_mib: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub values: Values,
    /// Component port → the plug-in's listen port, for inbound net plug-ins (DESIGN §5 rule 7).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listen_ports: BTreeMap<u16, u16>,
    /// Grows on every change of the installation; discovery waiters wake on it.
    pub revision: u64,
}

impl Installation {
    /// Applies a request to an existing installation (or a fresh one) and checks every rule
    /// that concerns this installation alone and the component it is on. `others` are the
    /// component's other installations with their versions' kinds.
    pub fn apply_request(
        current: Option<&Installation>,
        plugin: &PluginName,
        req: &InstallRequest,
        version: &Version,
        component: &ComponentSpec,
        downstream: &[&ComponentSpec],
        others: &[(PluginName, PluginKind, bool)],
    ) -> Result<Installation, Invalid> {
        if version.status != VersionStatus::Succeeded {
            return Err(invalid(
                "version",
                format!(
                    "version {} of `{plugin}` is {}: only a succeeded version can be installed",
                    version.number,
                    version.status.as_str()
                ),
            ));
        }
        let spec = &version.spec;
        let memory_mib = match req.memory_mib {
            Some(m) => m,
            // Keep the current memory, raised to the new version's minimum on an upgrade.
            None => current.map_or(spec.memory_mib, |c| c.memory_mib.max(spec.memory_mib)),
        };
        check_memory("memory_mib", memory_mib)?;
        if memory_mib < spec.memory_mib {
            return Err(invalid(
                "memory_mib",
                format!(
                    "{memory_mib} MiB is below the {} MiB that version {} of `{plugin}` needs: give at least {}",
                    spec.memory_mib, version.number, spec.memory_mib
                ),
            ));
        }
        let cpu_millis = req
            .cpu_millis
            .or(current.and_then(|c| c.cpu_millis))
            .or(spec.cpu_millis);
        check_cpu("cpu_millis", cpu_millis)?;
        let enabled = req.enabled.or(current.map(|c| c.enabled)).unwrap_or(true);
        check_kind_rules(plugin, spec, component, downstream, others)?;
        let mut values = match (&req.values, current) {
            (Some(v), cur) => {
                let mut v = v.clone();
                if let Some(cur) = cur {
                    v.keep_secrets_from(&cur.values, spec);
                }
                v
            }
            (None, Some(cur)) => cur.values.clone(),
            (None, None) => Values::default(),
        };
        values = values.validate(spec, component, downstream)?;
        let privileged = req.privileged.or(current.map(|c| c.privileged)).unwrap_or(false);
        if privileged && spec.kind != PluginKind::Init {
            return Err(invalid(
                "privileged",
                format!("only init plug-ins may run privileged; `{plugin}` is {}", spec.kind),
            ));
        }
        let listen_ports = if spec.kind.handles_inbound() {
            allocate_listen_ports(current.map(|c| &c.listen_ports), component)?
        } else {
            BTreeMap::new()
        };
        let next = Installation {
            plugin: plugin.clone(),
            version: version.number,
            enabled,
            memory_mib,
            cpu_millis,
            privileged,
            values,
            listen_ports,
            revision: current.map_or(1, |c| c.revision),
        };
        Ok(match current {
            Some(c) if c.same_config(&next) => next,
            Some(c) => Installation {
                revision: c.revision + 1,
                ..next
            },
            None => next,
        })
    }

    fn same_config(&self, other: &Installation) -> bool {
        Installation {
            revision: 0,
            ..self.clone()
        } == Installation {
            revision: 0,
            ..other.clone()
        }
    }
}

/// DESIGN §3 and §4: net exclusivity, perf-analysis ports, port-group requirements.
fn check_kind_rules(
    plugin: &PluginName,
    spec: &PluginSpec,
    component: &ComponentSpec,
    downstream: &[&ComponentSpec],
    others: &[(PluginName, PluginKind, bool)],
) -> Result<(), Invalid> {
    let kind = spec.kind;
    for (other, other_kind, _) in others.iter().filter(|(n, _, _)| n != plugin) {
        let clash = (kind.handles_inbound() && other_kind.handles_inbound())
            || (kind.handles_outbound() && other_kind.handles_outbound());
        if clash {
            let what = if kind.handles_inbound() && other_kind.handles_inbound() {
                "inbound"
            } else {
                "outbound"
            };
            return Err(invalid(
                "plugin",
                format!(
                    "component `{}` already has `{other}` ({other_kind}) handling {what} traffic, and `{plugin}` is {kind}: a component has at most one {what} net plug-in; uninstall `{other}` first",
                    component.name
                ),
            ));
        }
    }
    if kind == PluginKind::PerfAnalysis {
        let mut wanted: Vec<Protocol> = spec
            .config_groups
            .iter()
            .flat_map(|g| g.items.iter().flat_map(|i| i.protocols.iter().copied()))
            .collect();
        if wanted.is_empty() {
            wanted = vec![Protocol::Http, Protocol::Mysql];
        }
        if !component.has_protocol(&wanted) {
            return Err(invalid(
                "plugin",
                format!(
                    "perf-analysis plug-in `{plugin}` needs a port with protocol {}; component `{}` has {}",
                    wanted.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" or "),
                    component.name,
                    ports_list(&component.ports)
                ),
            ));
        }
    }
    if let Some(g) = spec.group(Meta::ComponentPort) {
        let matches = component
            .ports
            .iter()
            .any(|p| g.items.iter().any(|i| i.applies_to(p.protocol)));
        if !matches {
            let wanted: Vec<_> = g
                .items
                .iter()
                .flat_map(|i| i.protocols.iter().map(|p| p.as_str()))
                .collect();
            return Err(invalid(
                "plugin",
                format!(
                    "`{plugin}` has a {} group for ports of protocol {}; component `{}` has {}: add such a port",
                    meta_name(Meta::ComponentPort),
                    if wanted.is_empty() {
                        "any".into()
                    } else {
                        wanted.join(" or ")
                    },
                    component.name,
                    ports_list(&component.ports)
                ),
            ));
        }
    }
    if spec.group(Meta::DownstreamPort).is_some() && component.depends_on.is_empty() {
        return Err(invalid(
            "plugin",
            format!(
                "`{plugin}` configures calls to downstream components, but component `{}` has no depends_on: add the components it calls",
                component.name
            ),
        ));
    }
    debug_assert!(downstream.len() <= component.depends_on.len());
    Ok(())
}

pub const LISTEN_PORT_FIRST: u16 = 65301;
pub const LISTEN_PORT_LAST: u16 = 65400;

/// Keeps existing listen ports and gives each new component port the lowest free one in
/// 65301–65400, never one the component itself listens on.
pub fn allocate_listen_ports(
    existing: Option<&BTreeMap<u16, u16>>,
    component: &ComponentSpec,
) -> Result<BTreeMap<u16, u16>, Invalid> {
    let own: Vec<u16> = component.ports.iter().map(|p| p.port).collect();
    let mut out: BTreeMap<u16, u16> = existing
        .into_iter()
        .flatten()
        .filter(|(port, listen)| own.contains(port) && !own.contains(listen))
        .map(|(p, l)| (*p, *l))
        .collect();
    for port in &own {
        if out.contains_key(port) {
            continue;
        }
        let free =
            (LISTEN_PORT_FIRST..=LISTEN_PORT_LAST).find(|l| !own.contains(l) && !out.values().any(|used| used == l));
        let Some(listen) = free else {
            return Err(invalid(
                "ports",
                format!(
                    "no free listen port left in {LISTEN_PORT_FIRST}-{LISTEN_PORT_LAST} for port {port}: remove some ports"
                ),
            ));
        };
        out.insert(*port, listen);
    }
    Ok(out)
}
