//! An installation's config values as form widgets, one per item and type, and the posted
//! widgets read back into the API's `values`. Input names are the API's value paths
//! (`values.base.LEVEL`, `values.ports.80.TIMEOUT`, `values.downstream.db:3306.RETRIES`), so the
//! API's refusal lands next to the input it names.

use std::collections::BTreeMap;

use kato_model::value::ItemValues;
use kato_model::{ComponentSpec, ConfigGroup, ConfigItem, ConfigValue, Injection, ItemType, Meta, PluginSpec, Values};
use serde_json::{Map, Value};

use crate::form::Fields;

/// One set of values: the `meta: none` group, one component port, or one dependency's port.
pub struct Slot<'a> {
    /// Where its values live under `values` (`base`, `ports.80`, `downstream.db:3306`).
    path: String,
    pub title: String,
    pub group: &'a ConfigGroup,
    pub items: Vec<&'a ConfigItem>,
}

impl Slot<'_> {
    fn input(&self, item: &ConfigItem) -> String {
        format!("values.{}.{}", self.path, item.name)
    }

    fn current<'v>(&self, values: &'v Values) -> Option<&'v ItemValues> {
        match self.path.split_once('.') {
            None => Some(&values.base),
            Some(("ports", key)) => values.ports.get(key),
            Some((_, key)) => values.downstream.get(key),
        }
    }
}

/// The value sets a version's groups have on this component, in page order: the `meta: none`
/// group, each component port an item applies to, each port of each dependency.
pub fn slots<'a>(spec: &'a PluginSpec, component: &ComponentSpec, team: &[ComponentSpec]) -> Vec<Slot<'a>> {
    let mut out = Vec::new();
    if let Some(g) = spec.group(Meta::None) {
        out.push(Slot {
            path: "base".into(),
            title: g.name.clone(),
            group: g,
            items: g.items.iter().collect(),
        });
    }
    if let Some(g) = spec.group(Meta::ComponentPort) {
        for port in &component.ports {
            let items: Vec<&ConfigItem> = g.items.iter().filter(|i| i.applies_to(port.protocol)).collect();
            if !items.is_empty() {
                out.push(Slot {
                    path: format!("ports.{}", port.port),
                    title: format!("Port {} ({})", port.port, port.protocol),
                    group: g,
                    items,
                });
            }
        }
    }
    if let Some(g) = spec.group(Meta::DownstreamPort) {
        for dep in &component.depends_on {
            let Some(dep) = team.iter().find(|c| c.name == *dep) else {
                continue;
            };
            for port in &dep.ports {
                let items: Vec<&ConfigItem> = g.items.iter().filter(|i| i.applies_to(port.protocol)).collect();
                if !items.is_empty() {
                    out.push(Slot {
                        path: format!("downstream.{}:{}", dep.name, port.port),
                        title: format!("{}:{} ({})", dep.name, port.port, port.protocol),
                        group: g,
                        items,
                    });
                }
            }
        }
    }
    out
}

/// A fieldset of the installation's form.
pub struct Section {
    pub title: String,
    pub group: String,
    /// Served by discovery (applies live) rather than the container's environment.
    pub live: bool,
    pub widgets: Vec<Widget>,
}

/// One item's input.
pub struct Widget {
    /// The input's name: the API's value path.
    pub name: String,
    pub id: String,
    pub label: String,
    /// `text`, `select` (single), `multi`, `readonly` (not changeable) or `secret`.
    pub kind: &'static str,
    pub value: String,
    /// Options with whether each is chosen (`select`, `multi`).
    pub options: Vec<(String, bool)>,
    pub description: String,
    /// `live` (discovery) or `restart` (environment).
    pub effect: &'static str,
    /// A secret with a value already (set on the installation, or the plug-in's default).
    pub secret_set: bool,
    pub error: String,
}

impl Widget {
    /// A single choice with nothing chosen yet: the select starts on an empty option.
    pub fn none_chosen(&self) -> bool {
        !self.options.iter().any(|(_, chosen)| *chosen)
    }

    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if !self.description.is_empty() || self.kind == "secret" || self.kind == "readonly" {
            ids.push(format!("{}-hint", self.id));
        }
        ids.push(format!("{}-error", self.id));
        ids.join(" ")
    }
}

/// What the widgets start from: the installation's values (secrets left out by the API) and
/// the names of secrets that have a value; or, after a refused save, what was posted.
pub struct Shown<'a> {
    pub values: &'a Values,
    /// `base.KEY`, `ports.80.KEY`: secrets set on the installation.
    pub secrets_set: &'a [String],
    /// `group.item`: secret items whose default the plug-in set.
    pub secret_defaults_set: &'a [String],
    pub posted: Option<&'a Fields>,
    pub errors: &'a BTreeMap<String, String>,
}

fn list_of(v: &ConfigValue) -> Vec<String> {
    match v {
        ConfigValue::List(l) => l.clone(),
        ConfigValue::Text(s) => s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect(),
    }
}

/// The widgets of every slot, with ids unique on the page (`id_prefix` names the installation).
pub fn sections(slots: &[Slot<'_>], shown: &Shown<'_>, id_prefix: &str) -> Vec<Section> {
    slots
        .iter()
        .enumerate()
        .map(|(s, slot)| {
            let live = slot.group.injection == Injection::Discovery;
            let current = slot.current(shown.values);
            let widgets = slot
                .items
                .iter()
                .map(|item| {
                    let name = slot.input(item);
                    let set = current.and_then(|c| c.get(item.name.as_str()));
                    let mut value = set.or(item.default.as_ref()).cloned();
                    if let Some(p) = shown.posted {
                        let posted: Vec<&str> = p.all(&name).into_iter().filter(|v| !v.is_empty()).collect();
                        if p.get(&name).is_some() {
                            value = Some(match item.item_type {
                                ItemType::Multi => ConfigValue::List(posted.iter().map(|v| (*v).to_owned()).collect()),
                                _ => ConfigValue::Text(p.get(&name).unwrap_or_default().to_owned()),
                            });
                        }
                    }
                    let chosen = value.as_ref().map(list_of).unwrap_or_default();
                    let kind = if item.secret {
                        "secret"
                    } else if !item.changeable {
                        "readonly"
                    } else {
                        match item.item_type {
                            ItemType::String => "text",
                            ItemType::Single => "select",
                            ItemType::Multi => "multi",
                        }
                    };
                    let secret_set = item.secret
                        && (shown.secrets_set.iter().any(|k| format!("values.{k}") == name)
                            || shown
                                .secret_defaults_set
                                .iter()
                                .any(|k| *k == format!("{}.{}", slot.group.name, item.name)));
                    Widget {
                        id: format!("{id_prefix}-s{s}-{}", item.name),
                        label: item.name.to_string(),
                        kind,
                        value: if item.secret {
                            String::new()
                        } else {
                            value.as_ref().map(ConfigValue::to_env_string).unwrap_or_default()
                        },
                        options: item.options.iter().map(|o| (o.clone(), chosen.contains(o))).collect(),
                        description: item.description.clone(),
                        effect: if live { "live" } else { "restart" },
                        secret_set,
                        error: shown.errors.get(&name).cloned().unwrap_or_default(),
                        name,
                    }
                })
                .collect();
            Section {
                title: slot.title.clone(),
                group: slot.group.name.clone(),
                live,
                widgets,
            }
        })
        .collect()
}

/// Reads the posted widgets into the API's `values` for `slots` (of the version being saved).
/// An item keeps no value of its own unless it had one or the user changed it from the
/// default, so a later version's defaults still reach it; an empty secret keeps the current
/// secret (the API keeps secrets not sent); items not changeable are never sent.
pub fn posted_values(slots: &[Slot<'_>], fields: &Fields, current: &Values) -> Value {
    let mut base = Map::new();
    let mut ports = Map::new();
    let mut downstream = Map::new();
    for slot in slots {
        let set = slot.current(current);
        let mut out = Map::new();
        for item in slot.items.iter().filter(|i| i.changeable) {
            let name = slot.input(item);
            let Some(first) = fields.get(&name) else { continue };
            let value = match item.item_type {
                ItemType::Multi => ConfigValue::List(
                    fields
                        .all(&name)
                        .into_iter()
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                _ if first.is_empty() && (item.secret || item.item_type == ItemType::Single) => continue,
                _ => ConfigValue::Text(first.to_owned()),
            };
            let had = set.is_some_and(|s| s.contains_key(item.name.as_str()));
            let default = item.default.clone().unwrap_or_else(|| match item.item_type {
                ItemType::Multi => ConfigValue::List(Vec::new()),
                _ => ConfigValue::Text(String::new()),
            });
            if item.secret || had || value != default {
                out.insert(item.name.to_string(), value.to_json());
            }
        }
        if out.is_empty() {
            continue;
        }
        match slot.path.split_once('.') {
            None => base = out,
            Some(("ports", key)) => {
                ports.insert(key.to_owned(), out.into());
            }
            Some((_, key)) => {
                downstream.insert(key.to_owned(), out.into());
            }
        }
    }
    serde_json::json!({"base": base, "ports": ports, "downstream": downstream})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> PluginSpec {
        serde_json::from_value(
            json!({"name": "mesh", "kind": "general", "source": {"image": "r/mesh:1"},
            "config_groups": [
                {"name": "base", "meta": "none", "injection": "env", "items": [
                    {"name": "LEVEL", "type": "single", "options": ["info", "debug"], "default": "info"},
                    {"name": "TAGS", "type": "multi", "options": ["a", "b", "c"], "default": ["a"]},
                    {"name": "FIXED", "default": "x", "changeable": false},
                    {"name": "KEY", "secret": true},
                    {"name": "NOTE"}]},
                {"name": "ports", "meta": "component-port", "injection": "discovery", "items": [
                    {"name": "TIMEOUT", "default": "5s", "protocols": ["http"]}]},
                {"name": "down", "meta": "downstream-port", "injection": "discovery", "items": [
                    {"name": "RETRIES", "default": "3"}]}]}),
        )
        .unwrap()
    }

    fn component(v: Value) -> ComponentSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn one_slot_per_matching_port_and_dependency_port() {
        let spec = spec();
        let web = component(json!({"name": "web", "image": "nginx", "depends_on": ["db"],
            "ports": [{"port": 80, "protocol": "http"}, {"port": 9000, "protocol": "tcp"}]}));
        let db = component(json!({"name": "db", "image": "mysql", "ports": [{"port": 3306, "protocol": "mysql"}]}));
        let slots = slots(&spec, &web, &[web.clone(), db]);
        let titles: Vec<&str> = slots.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["base", "Port 80 (http)", "db:3306 (mysql)"]);
        assert_eq!(slots[1].input(slots[1].items[0]), "values.ports.80.TIMEOUT");
        assert_eq!(slots[2].input(slots[2].items[0]), "values.downstream.db:3306.RETRIES");
    }

    #[test]
    fn only_changes_and_values_set_before_are_sent() {
        let spec = spec();
        let web = component(json!({"name": "web", "image": "nginx", "ports": [{"port": 80, "protocol": "http"}]}));
        let slots = slots(&spec, &web, &[]);
        let current: Values = serde_json::from_value(json!({"base": {"NOTE": "kept"}})).unwrap();
        let fields = Fields(
            [
                ("values.base.LEVEL", "info"),
                ("values.base.TAGS", ""),
                ("values.base.TAGS", "b"),
                ("values.base.FIXED", "y"),
                ("values.base.KEY", ""),
                ("values.base.NOTE", "kept"),
                ("values.ports.80.TIMEOUT", "9s"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        );
        assert_eq!(
            posted_values(&slots, &fields, &current),
            json!({"base": {"TAGS": ["b"], "NOTE": "kept"}, "ports": {"80": {"TIMEOUT": "9s"}}, "downstream": {}})
        );
    }
}
