//! Plug-ins: kinds, build sources, config groups and items, and the rules a draft must follow.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::names::{EnvName, ImageRef, PluginName};
use crate::protocol::{Protocol, deserialize_protocols};
pub use crate::ready::{HttpCheck, Ready, TcpCheck};
pub use crate::source::{DockerfileSource, RepoKind, Source};
use crate::value::ConfigValue;
use crate::{Invalid, invalid};

/// Where a plug-in container goes in the pod (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    #[serde(alias = "net-plugin:up")]
    InboundNet,
    #[serde(alias = "net-plugin:down")]
    OutboundNet,
    #[serde(alias = "net-plugin:in-and-out")]
    InoutNet,
    #[serde(alias = "analyst-plugin:perf")]
    PerfAnalysis,
    #[serde(alias = "init-plugin")]
    Init,
    #[serde(alias = "general-plugin")]
    General,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InboundNet => "inbound-net",
            Self::OutboundNet => "outbound-net",
            Self::InoutNet => "inout-net",
            Self::PerfAnalysis => "perf-analysis",
            Self::Init => "init",
            Self::General => "general",
        }
    }
    /// Takes over the component's inbound ports.
    pub fn handles_inbound(self) -> bool {
        matches!(self, Self::InboundNet | Self::InoutNet)
    }
    /// Governs calls to downstream components.
    pub fn handles_outbound(self) -> bool {
        matches!(self, Self::OutboundNet | Self::InoutNet)
    }
    pub fn is_net(self) -> bool {
        self.handles_inbound() || self.handles_outbound()
    }
    pub fn is_sidecar(self) -> bool {
        self != Self::Init
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container command: a list is run as given; a string runs through `/bin/sh -c` so that
/// `$VAR` references expand (Rainbond's behaviour since 5.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl Command {
    pub fn to_argv(&self) -> Vec<String> {
        match self {
            Self::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Self::Exec(v) => v.clone(),
        }
    }
    fn check(&self, field: &str) -> Result<(), Invalid> {
        let empty = match self {
            Self::Shell(s) => s.trim().is_empty(),
            Self::Exec(v) => v.is_empty() || v[0].trim().is_empty(),
        };
        if empty {
            return Err(invalid(field, "is empty: omit it to use the image's own command"));
        }
        Ok(())
    }
}

/// What a config group's values are attached to (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Meta {
    #[serde(alias = "un_define")]
    None,
    #[serde(alias = "upstream_port")]
    ComponentPort,
    #[serde(alias = "downstream_port")]
    DownstreamPort,
}

/// How a config group's values reach the plug-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    Env,
    #[serde(alias = "auto")]
    Discovery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ItemType {
    #[default]
    String,
    #[serde(alias = "radio")]
    Single,
    #[serde(alias = "checkbox")]
    Multi,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigItem {
    #[serde(alias = "attr_name")]
    pub name: EnvName,
    #[serde(default, rename = "type", alias = "attr_type")]
    pub item_type: ItemType,
    #[serde(default, alias = "attr_alt_value", deserialize_with = "deserialize_options")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, alias = "attr_default_value", skip_serializing_if = "Option::is_none")]
    pub default: Option<ConfigValue>,
    /// Whether an installation may set its own value; `false` keeps the default.
    #[serde(default = "yes", alias = "is_change")]
    pub changeable: bool,
    /// The port protocols this item applies to; empty means all.
    #[serde(default, alias = "protocol", deserialize_with = "deserialize_protocols")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<Protocol>,
    #[serde(default, alias = "attr_info", skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

fn yes() -> bool {
    true
}

fn deserialize_options<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::Text(s)) => s
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        Some(Raw::List(l)) => l,
    })
}

impl ConfigItem {
    /// Whether the item applies to a port of this protocol.
    pub fn applies_to(&self, protocol: Protocol) -> bool {
        self.protocols.is_empty() || self.protocols.contains(&protocol)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigGroup {
    #[serde(alias = "config_name")]
    pub name: String,
    #[serde(default = "meta_none", alias = "service_meta_type")]
    pub meta: Meta,
    #[serde(default = "injection_env")]
    pub injection: Injection,
    #[serde(default, alias = "options")]
    pub items: Vec<ConfigItem>,
}

fn meta_none() -> Meta {
    Meta::None
}
fn injection_env() -> Injection {
    Injection::Env
}

/// A plug-in's editable draft; a version freezes a copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub name: PluginName,
    #[serde(default)]
    pub description: String,
    pub kind: PluginKind,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// The minimum memory of the plug-in container, MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// How Kubernetes tells that a sidecar is up (Kato's extension): the app starts after it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    #[serde(default)]
    pub config_groups: Vec<ConfigGroup>,
}

pub const DEFAULT_PLUGIN_MEMORY_MIB: u32 = 64;
/// Memory below this cannot start a container reliably.
pub const MIN_MEMORY_MIB: u32 = 4;
pub const MAX_MEMORY_MIB: u32 = 1024 * 1024;

fn default_memory() -> u32 {
    DEFAULT_PLUGIN_MEMORY_MIB
}

pub(crate) fn check_memory(field: &str, mib: u32) -> Result<(), Invalid> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(invalid(
            field,
            format!("is {mib} MiB: give between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB} MiB"),
        ));
    }
    Ok(())
}

pub(crate) fn check_cpu(field: &str, millis: Option<u32>) -> Result<(), Invalid> {
    if millis == Some(0) || millis.is_some_and(|m| m > 1_000_000) {
        return Err(invalid(field, "give 1-1000000 millicores, or omit it for no cpu limit"));
    }
    Ok(())
}

impl PluginSpec {
    /// The rules of DESIGN §4 for a draft; every error names the field and the fix. Values are
    /// normalised in place (`multi` defaults become lists).
    pub fn validate(&mut self) -> Result<(), Invalid> {
        check_memory("memory_mib", self.memory_mib)?;
        check_cpu("cpu_millis", self.cpu_millis)?;
        if let Some(c) = &self.command {
            c.check("command")?;
        }
        if let Some(r) = &self.ready {
            r.check(self.kind)?;
        }
        if let Source::Dockerfile(d) = &self.source {
            d.check()?;
        }
        let mut metas = BTreeSet::new();
        let mut group_names = BTreeSet::new();
        for (g, group) in self.config_groups.iter_mut().enumerate() {
            let field = format!("config_groups[{g}]");
            if group.name.trim().is_empty() {
                return Err(invalid(format!("{field}.name"), "is empty: name the group"));
            }
            if !group_names.insert(group.name.clone()) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("`{}` is used by another group: group names must be unique", group.name),
                ));
            }
            if !metas.insert(group.meta) {
                return Err(invalid(
                    format!("{field}.meta"),
                    format!(
                        "a version has at most one group per meta, and `{}` is already used: merge the items into one group",
                        meta_name(group.meta)
                    ),
                ));
            }
            if group.meta != Meta::None && group.injection != Injection::Discovery {
                return Err(invalid(
                    format!("{field}.injection"),
                    format!(
                        "groups with meta `{}` are served per port by the discovery API: set injection to `discovery`",
                        meta_name(group.meta)
                    ),
                ));
            }
            let mut item_names = BTreeSet::new();
            for (i, item) in group.items.iter_mut().enumerate() {
                let field = format!("{field}.items[{i}]");
                if !item_names.insert(item.name.clone()) {
                    return Err(invalid(
                        format!("{field}.name"),
                        format!("`{}` appears twice in the group", item.name),
                    ));
                }
                check_item(&field, item)?;
            }
        }
        Ok(())
    }

    /// The group with this meta, if the plug-in declares one.
    pub fn group(&self, meta: Meta) -> Option<&ConfigGroup> {
        self.config_groups.iter().find(|g| g.meta == meta)
    }

    /// A copy safe to show: the `default` of `secret` items removed, as secret values are
    /// (see [`crate::Values::redacted`]); their `group.item` names are returned apart.
    pub fn redacted(&self) -> (PluginSpec, Vec<String>) {
        let mut copy = self.clone();
        let mut hidden = Vec::new();
        for group in &mut copy.config_groups {
            for item in group.items.iter_mut().filter(|i| i.secret) {
                if item.default.take().is_some() {
                    hidden.push(format!("{}.{}", group.name, item.name));
                }
            }
        }
        (copy, hidden)
    }

    /// Keeps the stored defaults of secret items the caller did not send again: an edited copy
    /// of a redacted read does not erase them (as [`crate::Values::keep_secrets_from`]).
    pub fn keep_secret_defaults_from(&mut self, stored: &PluginSpec) {
        for group in &mut self.config_groups {
            let Some(before) = stored.config_groups.iter().find(|g| g.name == group.name) else {
                continue;
            };
            for item in group.items.iter_mut().filter(|i| i.secret && i.default.is_none()) {
                if let Some(old) = before.items.iter().find(|i| i.secret && i.name == item.name) {
                    item.default.clone_from(&old.default);
                }
            }
        }
    }

    pub fn image(&self) -> Option<&ImageRef> {
        match &self.source {
            Source::Image(i) => Some(i),
            Source::Dockerfile(_) => None,
        }
    }
}

pub fn meta_name(m: Meta) -> &'static str {
    match m {
        Meta::None => "none",
        Meta::ComponentPort => "component-port",
        Meta::DownstreamPort => "downstream-port",
    }
}

fn check_item(field: &str, item: &mut ConfigItem) -> Result<(), Invalid> {
    match item.item_type {
        ItemType::String => {
            if !item.options.is_empty() {
                return Err(invalid(
                    format!("{field}.options"),
                    "only `single` and `multi` items have options: remove them or change the type",
                ));
            }
        }
        ItemType::Single | ItemType::Multi => {
            if item.options.is_empty() {
                return Err(invalid(
                    format!("{field}.options"),
                    format!(
                        "a `{}` item needs at least one option",
                        if item.item_type == ItemType::Single {
                            "single"
                        } else {
                            "multi"
                        }
                    ),
                ));
            }
            let unique: BTreeSet<_> = item.options.iter().collect();
            if unique.len() != item.options.len() {
                return Err(invalid(format!("{field}.options"), "lists an option twice"));
            }
        }
    }
    if let Some(default) = &item.default {
        let normal =
            crate::value::check_value(item, default).map_err(|why| invalid(format!("{field}.default"), why))?;
        item.default = Some(normal);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PluginSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn rainbond_aliases_import_unchanged() {
        let mut p = spec(
            r#"
name: mesh
kind: "net-plugin:down"
source: {image: "goodrain.me/rbd-mesh-data-panel"}
config_groups:
  - config_name: out
    service_meta_type: downstream_port
    injection: auto
    options:
      - {attr_name: PROXY, attr_type: radio, attr_alt_value: "YES,NO", attr_default_value: "YES", is_change: false, protocol: "http,grpc"}
      - {attr_name: Domains, attr_type: checkbox, attr_alt_value: "a,b", attr_default_value: "a,b"}
"#,
        );
        p.validate().unwrap();
        assert_eq!(p.kind, PluginKind::OutboundNet);
        let g = &p.config_groups[0];
        assert_eq!((g.meta, g.injection), (Meta::DownstreamPort, Injection::Discovery));
        assert_eq!(g.items[0].protocols, vec![Protocol::Http, Protocol::Grpc]);
        assert!(!g.items[0].changeable);
        assert_eq!(
            g.items[1].default,
            Some(ConfigValue::List(vec!["a".into(), "b".into()]))
        );
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["kind"], "outbound-net");
        assert_eq!(back["config_groups"][0]["meta"], "downstream-port");
        assert_eq!(back["config_groups"][0]["items"][0]["type"], "single");
    }

    #[test]
    fn port_groups_must_use_discovery() {
        let mut p = spec(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: g, meta: component-port, injection: env}]}",
        );
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "config_groups[0].injection");
        assert!(e.message.contains("set injection to `discovery`"), "{e}");
    }

    #[test]
    fn one_group_per_meta() {
        let mut p = spec("{name: p, kind: general, source: {image: x}, config_groups: [{name: a}, {name: b}]}");
        assert_eq!(p.validate().unwrap_err().field, "config_groups[1].meta");
    }

    #[test]
    fn single_default_must_be_an_option() {
        let mut p = spec(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: a, items: [{name: M, type: single, options: [x, y], default: z}]}]}",
        );
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "config_groups[0].items[0].default");
        assert!(e.message.contains("`z` is not one of x, y"), "{e}");
    }

    #[test]
    fn env_item_names_are_env_names() {
        let err = serde_yaml::from_str::<PluginSpec>(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: a, items: [{name: bad-name}]}]}",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("invalid env variable name `bad-name`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        assert!(serde_yaml::from_str::<PluginSpec>("{name: p, kind: sidecar, source: {image: x}}").is_err());
        assert!(
            serde_yaml::from_str::<PluginSpec>("{name: p, kind: init, source: {image: x}, memroy_mib: 3}").is_err()
        );
    }

    #[test]
    fn secret_defaults_are_redacted_and_kept_across_an_edit_of_the_redacted_copy() {
        let stored = spec(
            "{name: p, kind: general, source: {image: x}, config_groups: [{name: g, items: [\
             {name: TOKEN, secret: true, default: s3cr3t}, {name: LEVEL, default: info}]}]}",
        );
        let (shown, hidden) = stored.redacted();
        assert_eq!(hidden, vec!["g.TOKEN".to_owned()]);
        assert_eq!(shown.config_groups[0].items[0].default, None);
        assert_eq!(
            shown.config_groups[0].items[1].default,
            Some(ConfigValue::Text("info".into()))
        );
        assert!(!serde_json::to_string(&shown).unwrap().contains("s3cr3t"));
        let mut edited = shown;
        edited.config_groups[0].items[1].default = Some(ConfigValue::Text("debug".into()));
        edited.keep_secret_defaults_from(&stored);
        assert_eq!(
            edited.config_groups[0].items[0].default,
            Some(ConfigValue::Text("s3cr3t".into()))
        );
    }

    #[test]
    fn memory_bounds() {
        let mut p = spec("{name: p, kind: init, source: {image: x}, memory_mib: 0}");
        assert_eq!(p.validate().unwrap_err().field, "memory_mib");
    }
}
