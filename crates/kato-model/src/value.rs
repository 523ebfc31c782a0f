//! Config values: what an installation sets for a plug-in's items, validated against the version.

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

use crate::component::{ComponentSpec, Port};
use crate::names::ComponentName;
use crate::plugin::{ConfigGroup, ConfigItem, ItemType, Meta, PluginSpec};
use crate::{Invalid, invalid};

/// One item's value: text for `string`/`single`, a list for `multi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    List(Vec<String>),
}

impl ConfigValue {
    /// The text an env variable carries; a list is joined with commas, as Rainbond did.
    pub fn to_env_string(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::List(l) => l.join(","),
        }
    }
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Text(s) => serde_json::Value::String(s.clone()),
            Self::List(l) => l.iter().cloned().map(serde_json::Value::String).collect(),
        }
    }
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_env_string())
    }
}

impl<'de> Deserialize<'de> for ConfigValue {
    /// Scalars of any YAML type become text (`ES_PORT: 9200` is `"9200"`); lists become lists.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn scalar(v: serde_json::Value) -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
        let err = || serde::de::Error::custom("a config value is a string, number, boolean or a list of them");
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(v).ok_or_else(err))
                .collect::<Result<_, _>>()
                .map(Self::List),
            v => scalar(v).map(Self::Text).ok_or_else(err),
        }
    }
}

/// Checks one value against its item; the error says what the item accepts.
pub(crate) fn check_value(item: &ConfigItem, value: &ConfigValue) -> Result<ConfigValue, String> {
    let options = || item.options.join(", ");
    match (item.item_type, value) {
        (ItemType::String, ConfigValue::Text(_)) => Ok(value.clone()),
        (ItemType::String, ConfigValue::List(_)) => {
            Err("is a list, but the item is a `string`: give one text value".into())
        }
        (ItemType::Single, ConfigValue::Text(s)) => {
            if item.options.contains(s) {
                Ok(value.clone())
            } else {
                Err(format!("`{s}` is not one of {}", options()))
            }
        }
        (ItemType::Single, ConfigValue::List(_)) => Err(format!(
            "is a list, but the item is `single`: give one of {}",
            options()
        )),
        (ItemType::Multi, v) => {
            // Rainbond stores `multi` values comma-joined; accept that form too.
            let list: Vec<String> = match v {
                ConfigValue::List(l) => l.clone(),
                ConfigValue::Text(s) => s
                    .split(',')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty())
                    .collect(),
            };
            if let Some(bad) = list.iter().find(|x| !item.options.contains(x)) {
                return Err(format!("`{bad}` is not one of {}", options()));
            }
            Ok(ConfigValue::List(list))
        }
    }
}

pub type ItemValues = BTreeMap<String, ConfigValue>;

/// The values an installation sets: `base` for the `meta: none` group, `ports` keyed by the
/// component port (`"8080"`), `downstream` keyed by `"<component>:<port>"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub base: ItemValues,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, ItemValues>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub downstream: BTreeMap<String, ItemValues>,
}

/// Every item's effective value (set or default), in the version's item order.
pub type Effective = IndexMap<String, ConfigValue>;

/// One component port with its effective values.
#[derive(Debug, Clone, PartialEq)]
pub struct PortValues {
    pub port: Port,
    pub values: Effective,
}

/// One (downstream component, port) with its effective values.
#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamValues {
    pub component: ComponentName,
    pub port: Port,
    pub values: Effective,
}

/// Values resolved against a version and a component: what rendering and discovery serve.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    /// `meta: none` values, with the group's injection.
    pub base: Effective,
    pub base_is_env: bool,
    pub ports: Vec<PortValues>,
    pub downstream: Vec<DownstreamValues>,
}

fn effective(group: &ConfigGroup, protocol: Option<crate::Protocol>, set: Option<&ItemValues>) -> Effective {
    group
        .items
        .iter()
        .filter(|i| protocol.is_none_or(|p| i.applies_to(p)))
        .filter_map(|item| {
            let v = set.and_then(|s| s.get(item.name.as_str())).or(item.default.as_ref())?;
            Some((item.name.to_string(), v.clone()))
        })
        .collect()
}

fn check_set(
    field: &str,
    group: &ConfigGroup,
    protocol: Option<crate::Protocol>,
    set: &ItemValues,
) -> Result<ItemValues, Invalid> {
    let mut out = ItemValues::new();
    for (name, value) in set {
        let field = format!("{field}.{name}");
        let Some(item) = group.items.iter().find(|i| i.name.as_str() == name) else {
            let known: Vec<_> = group.items.iter().map(|i| i.name.as_str()).collect();
            return Err(invalid(
                field,
                format!(
                    "is not an item of group `{}`: known items are {}",
                    group.name,
                    list_or_none(&known)
                ),
            ));
        };
        if let Some(p) = protocol
            && !item.applies_to(p)
        {
            return Err(invalid(
                field,
                format!(
                    "applies only to ports of protocol {}, not {p}",
                    item.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let value = check_value(item, value).map_err(|why| invalid(&field, why))?;
        if !item.changeable && Some(&value) != item.default.as_ref() {
            return Err(invalid(
                field,
                "is not changeable: the plug-in keeps its default; remove the value",
            ));
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl Values {
    /// Validates values against a version's groups and the component they are installed on,
    /// returning them normalised (`multi` values as lists). `downstream` maps each dependency of
    /// the component to its spec.
    pub fn validate(
        &self,
        spec: &PluginSpec,
        component: &ComponentSpec,
        downstream: &[&ComponentSpec],
    ) -> Result<Values, Invalid> {
        let mut out = Values::default();
        if !self.base.is_empty() {
            let group = spec
                .group(Meta::None)
                .ok_or_else(|| invalid("values.base", "the plug-in has no `meta: none` group: remove `base`"))?;
            out.base = check_set("values.base", group, None, &self.base)?;
        }
        for (key, set) in &self.ports {
            let field = format!("values.ports.{key}");
            let group = spec
                .group(Meta::ComponentPort)
                .ok_or_else(|| invalid(&field, "the plug-in has no `component-port` group: remove `ports`"))?;
            let port = component
                .ports
                .iter()
                .find(|p| p.port.to_string() == *key)
                .ok_or_else(|| {
                    invalid(
                        &field,
                        format!(
                            "component `{}` has no port {key}: its ports are {}",
                            component.name,
                            ports_list(&component.ports)
                        ),
                    )
                })?;
            out.ports
                .insert(key.clone(), check_set(&field, group, Some(port.protocol), set)?);
        }
        for (key, set) in &self.downstream {
            let field = format!("values.downstream.{key}");
            let group = spec.group(Meta::DownstreamPort).ok_or_else(|| {
                invalid(
                    &field,
                    "the plug-in has no `downstream-port` group: remove `downstream`",
                )
            })?;
            let (name, port) = key
                .split_once(':')
                .ok_or_else(|| invalid(&field, "write the key as `<component>:<port>`, e.g. `db:3306`"))?;
            let dep = downstream.iter().find(|d| d.name.as_str() == name).ok_or_else(|| {
                invalid(
                    &field,
                    format!(
                        "`{name}` is not a dependency of component `{}`: add it to depends_on",
                        component.name
                    ),
                )
            })?;
            let port = dep.ports.iter().find(|p| p.port.to_string() == port).ok_or_else(|| {
                invalid(
                    &field,
                    format!(
                        "component `{name}` has no port {port}: its ports are {}",
                        ports_list(&dep.ports)
                    ),
                )
            })?;
            out.downstream
                .insert(key.clone(), check_set(&field, group, Some(port.protocol), set)?);
        }
        Ok(out)
    }

    /// Effective values for every item of every group, per port and per dependency port.
    pub fn resolve(&self, spec: &PluginSpec, component: &ComponentSpec, downstream: &[&ComponentSpec]) -> Resolved {
        let mut r = Resolved::default();
        if let Some(g) = spec.group(Meta::None) {
            r.base = effective(g, None, Some(&self.base));
            r.base_is_env = g.injection == crate::Injection::Env;
        }
        if let Some(g) = spec.group(Meta::ComponentPort) {
            for port in &component.ports {
                if g.items.iter().any(|i| i.applies_to(port.protocol)) {
                    let values = effective(g, Some(port.protocol), self.ports.get(&port.port.to_string()));
                    r.ports.push(PortValues {
                        port: port.clone(),
                        values,
                    });
                }
            }
        }
        if let Some(g) = spec.group(Meta::DownstreamPort) {
            for dep in downstream {
                for port in &dep.ports {
                    if g.items.iter().any(|i| i.applies_to(port.protocol)) {
                        let key = format!("{}:{}", dep.name, port.port);
                        let values = effective(g, Some(port.protocol), self.downstream.get(&key));
                        r.downstream.push(DownstreamValues {
                            component: dep.name.clone(),
                            port: port.clone(),
                            values,
                        });
                    }
                }
            }
        }
        r
    }

    /// A copy safe to show: values of `secret` items removed; their names are returned apart.
    pub fn redacted(&self, spec: &PluginSpec) -> (Values, Vec<String>) {
        let mut hidden = Vec::new();
        let mut strip = |meta: Meta, set: &ItemValues, prefix: &str| -> ItemValues {
            let secret = |name: &str| {
                spec.group(meta)
                    .is_some_and(|g| g.items.iter().any(|i| i.secret && i.name.as_str() == name))
            };
            set.iter()
                .filter(|(k, _)| {
                    let s = secret(k);
                    if s {
                        hidden.push(format!("{prefix}{k}"));
                    }
                    !s
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let base = strip(Meta::None, &self.base, "base.");
        let ports = self
            .ports
            .iter()
            .map(|(p, s)| (p.clone(), strip(Meta::ComponentPort, s, &format!("ports.{p}."))))
            .collect();
        let downstream = self
            .downstream
            .iter()
            .map(|(d, s)| (d.clone(), strip(Meta::DownstreamPort, s, &format!("downstream.{d}."))))
            .collect();
        (
            Values {
                base,
                ports,
                downstream,
            },
            hidden,
        )
    }

    /// Keeps stored secret values the caller did not send again: an edited copy of a redacted
    /// read does not erase them.
    pub fn keep_secrets_from(&mut self, stored: &Values, spec: &PluginSpec) {
        let is_secret = |meta: Meta, name: &str| {
            spec.group(meta)
                .is_some_and(|g| g.items.iter().any(|i| i.secret && i.name.as_str() == name))
        };
        for (k, v) in &stored.base {
            if is_secret(Meta::None, k) {
                self.base.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for (p, set) in &stored.ports {
            for (k, v) in set {
                if is_secret(Meta::ComponentPort, k) {
                    self.ports
                        .entry(p.clone())
                        .or_default()
                        .entry(k.clone())
                        .or_insert_with(|| v.clone());
                }
            }
        }
        for (d, set) in &stored.downstream {
            for (k, v) in set {
                if is_secret(Meta::DownstreamPort, k) {
                    self.downstream
                        .entry(d.clone())
                        .or_default()
                        .entry(k.clone())
                        .or_insert_with(|| v.clone());
                }
            }
        }
    }
}

pub(crate) fn ports_list(ports: &[Port]) -> String {
    if ports.is_empty() {
        return "none".into();
    }
    ports
        .iter()
        .map(|p| format!("{}:{}", p.protocol, p.port))
        .collect::<Vec<_>>()
        .join(", ")
}
