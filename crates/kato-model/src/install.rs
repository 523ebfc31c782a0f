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
        check_kind_rules(plugin, spec, component, others)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ConfigValue;

    fn component(yaml: &str) -> ComponentSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn version(yaml: &str) -> Version {
        let mut spec: PluginSpec = serde_yaml::from_str(yaml).unwrap();
        spec.validate().unwrap();
        Version {
            number: 1,
            status: VersionStatus::Succeeded,
            spec,
            image: Some("r/p@sha256:0".into()),
            error: None,
        }
    }

    fn name(s: &str) -> PluginName {
        s.parse().unwrap()
    }

    fn install(
        v: &Version,
        c: &ComponentSpec,
        req: &InstallRequest,
        others: &[(PluginName, PluginKind, bool)],
    ) -> Result<Installation, Invalid> {
        Installation::apply_request(None, &v.spec.name, req, v, c, &[], others)
    }

    #[test]
    fn net_exclusivity_both_directions() {
        let web = component("{name: web, image: nginx, ports: [{port: 80, protocol: http}]}");
        let inout = version("{name: mesh, kind: inout-net, source: {image: x}}");
        let inbound = version("{name: gate, kind: inbound-net, source: {image: x}}");
        let outbound = version("{name: out, kind: outbound-net, source: {image: x}}");
        let req = InstallRequest::default();
        // inout after inbound, and inbound after inout
        let e = install(&inout, &web, &req, &[(name("gate"), PluginKind::InboundNet, true)]).unwrap_err();
        assert!(
            e.message
                .contains("already has `gate` (inbound-net) handling inbound traffic"),
            "{e}"
        );
        let e = install(&inbound, &web, &req, &[(name("mesh"), PluginKind::InoutNet, true)]).unwrap_err();
        assert!(e.message.contains("uninstall `mesh` first"), "{e}");
        let e = install(&outbound, &web, &req, &[(name("mesh"), PluginKind::InoutNet, false)]).unwrap_err();
        assert!(e.message.contains("outbound"), "{e}");
        // inbound and outbound plug-ins may coexist
        install(&outbound, &web, &req, &[(name("gate"), PluginKind::InboundNet, true)]).unwrap();
    }

    #[test]
    fn perf_analysis_needs_http_or_mysql() {
        let perf = version("{name: perf, kind: perf-analysis, source: {image: x}}");
        let db = component("{name: db, image: pg, ports: [{port: 5432, protocol: tcp}]}");
        let e = install(&perf, &db, &InstallRequest::default(), &[]).unwrap_err();
        assert_eq!(
            e.message,
            "perf-analysis plug-in `perf` needs a port with protocol http or mysql; component `db` has tcp:5432"
        );
        let web = component("{name: web, image: n, ports: [{port: 3306, protocol: mysql}]}");
        install(&perf, &web, &InstallRequest::default(), &[]).unwrap();
    }

    #[test]
    fn port_groups_need_matching_ports_and_dependencies() {
        let v = version(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: g, meta: component-port, injection: discovery, items: [{name: OPEN, protocols: [http]}]}]}",
        );
        let tcp = component("{name: web, image: n, ports: [{port: 22, protocol: tcp}]}");
        let e = install(&v, &tcp, &InstallRequest::default(), &[]).unwrap_err();
        assert!(e.message.contains("protocol http"), "{e}");
        let down = version(
            "{name: p, kind: outbound-net, source: {image: x}, config_groups: [{name: g, meta: downstream-port, injection: discovery}]}",
        );
        let e = install(&down, &tcp, &InstallRequest::default(), &[]).unwrap_err();
        assert!(e.message.contains("has no depends_on"), "{e}");
    }

    #[test]
    fn memory_below_the_version_minimum_is_refused() {
        let v = version("{name: p, kind: general, source: {image: x}, memory_mib: 128}");
        let web = component("{name: web, image: n}");
        let req = InstallRequest {
            memory_mib: Some(64),
            ..Default::default()
        };
        let e = install(&v, &web, &req, &[]).unwrap_err();
        assert_eq!(e.field, "memory_mib");
        assert!(e.message.contains("give at least 128"), "{e}");
        assert_eq!(
            install(&v, &web, &InstallRequest::default(), &[]).unwrap().memory_mib,
            128
        );
    }

    #[test]
    fn only_succeeded_versions_install() {
        let mut v = version("{name: p, kind: general, source: {image: x}}");
        v.status = VersionStatus::Failed;
        let e = install(&v, &component("{name: web, image: n}"), &InstallRequest::default(), &[]).unwrap_err();
        assert!(e.message.contains("only a succeeded version can be installed"), "{e}");
    }

    #[test]
    fn values_are_validated() {
        let v = version(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: g, items: [
               {name: MODE, type: single, options: [a, b], default: a},
               {name: TAGS, type: multi, options: [x, y, z]},
               {name: FIXED, default: keep, changeable: false}]}]}",
        );
        let web = component("{name: web, image: n}");
        let with = |yaml: &str| InstallRequest {
            values: Some(serde_yaml::from_str(yaml).unwrap()),
            ..Default::default()
        };
        let ok = install(&v, &web, &with("{base: {MODE: b, TAGS: 'x,z'}}"), &[]).unwrap();
        assert_eq!(ok.values.base["TAGS"], ConfigValue::List(vec!["x".into(), "z".into()]));
        for (bad, field) in [
            ("{base: {MODE: c}}", "values.base.MODE"),
            ("{base: {TAGS: [x, w]}}", "values.base.TAGS"),
            ("{base: {FIXED: other}}", "values.base.FIXED"),
            ("{base: {NOPE: 1}}", "values.base.NOPE"),
            ("{ports: {'80': {}}}", "values.ports.80"),
        ] {
            assert_eq!(install(&v, &web, &with(bad), &[]).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn secret_values_survive_a_redacted_round_trip() {
        let v = version(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: g, items: [{name: PASS, secret: true}, {name: USER}]}]}",
        );
        let web = component("{name: web, image: n}");
        let req = InstallRequest {
            values: Some(serde_yaml::from_str("{base: {PASS: s3cret, USER: u}}").unwrap()),
            ..Default::default()
        };
        let first = install(&v, &web, &req, &[]).unwrap();
        let (shown, hidden) = first.values.redacted(&v.spec);
        assert_eq!(hidden, vec!["base.PASS".to_string()]);
        assert!(!serde_json::to_string(&shown).unwrap().contains("s3cret"));
        let again = InstallRequest {
            values: Some(shown),
            ..Default::default()
        };
        let second = Installation::apply_request(Some(&first), &v.spec.name, &again, &v, &web, &[], &[]).unwrap();
        assert_eq!(second.values.base["PASS"], ConfigValue::Text("s3cret".into()));
        assert_eq!(
            second.revision, first.revision,
            "an unchanged config keeps its revision"
        );
    }

    #[test]
    fn listen_ports_are_stable() {
        let web = component("{name: web, image: n, ports: [{port: 80}, {port: 65301}]}");
        let first = allocate_listen_ports(None, &web).unwrap();
        assert_eq!(first[&80], 65302, "skips a port the component itself uses");
        let more = component("{name: web, image: n, ports: [{port: 22}, {port: 80}, {port: 65301}]}");
        let second = allocate_listen_ports(Some(&first), &more).unwrap();
        assert_eq!(second[&80], 65302, "existing ports keep their listen port");
        assert_eq!(second[&65301], first[&65301]);
        assert_eq!(second[&22], 65304, "a new port takes the lowest free one");
    }
}
