//! A draft laid out for the templates: every input with its name (the API's field path), id,
//! value, choices and error, so that a template only places them.

use std::collections::BTreeMap;

use super::draft::{Draft, Group, Item};

/// One input of a form.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub name: String,
    pub id: String,
    pub value: String,
    pub error: String,
    /// A select's options, or a radio group's.
    pub choices: Vec<Choice>,
}

#[derive(Debug, Clone)]
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

impl Input {
    fn new(name: String, value: &str, errors: &BTreeMap<String, String>) -> Input {
        Input {
            id: id_of(&name),
            value: value.to_owned(),
            error: errors.get(&name).cloned().unwrap_or_default(),
            name,
            choices: Vec::new(),
        }
    }

    fn with_choices(mut self, choices: &[(&'static str, &'static str)]) -> Input {
        let known = choices.iter().any(|(v, _)| *v == self.value);
        self.choices = choices
            .iter()
            .enumerate()
            .map(|(n, (value, label))| Choice {
                value,
                label,
                // A value the console does not know (an older or newer API's) selects the first.
                selected: *value == self.value || (!known && n == 0),
            })
            .collect();
        self
    }

    pub fn invalid(&self) -> bool {
        !self.error.is_empty()
    }

    /// Ticked, for a checkbox.
    pub fn checked(&self) -> bool {
        self.value == "true"
    }
}

/// An element id from an input name: `config_groups[0].items[1].name` → `config_groups-0-items-1-name`.
pub fn id_of(name: &str) -> String {
    let mut id = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            id.push(c);
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_owned()
}

pub const KINDS: [(&str, &str); 6] = [
    (
        "inbound-net",
        "inbound-net — a sidecar that takes over the component's inbound ports",
    ),
    (
        "outbound-net",
        "outbound-net — a sidecar that governs calls to downstream components",
    ),
    ("inout-net", "inout-net — both: inbound and outbound traffic"),
    (
        "perf-analysis",
        "perf-analysis — a sidecar that analyses performance (needs an http or mysql port)",
    ),
    ("init", "init — runs to completion before the app starts"),
    ("general", "general — any other sidecar beside the app"),
];

const SOURCES: [(&str, &str); 2] = [("image", "Image"), ("dockerfile", "Dockerfile in a git repo")];

const METAS: [(&str, &str); 3] = [
    ("none", "none — one set of values per installation"),
    ("component-port", "component-port — one set per matching port"),
    ("downstream-port", "downstream-port — one set per downstream port"),
];

const INJECTIONS: [(&str, &str); 2] = [
    ("env", "env — environment variables"),
    ("discovery", "discovery — discovery API, changed live"),
];

const TYPES: [(&str, &str); 3] = [
    ("string", "string — any text"),
    ("single", "single — one of the options"),
    ("multi", "multi — some of the options"),
];

/// The inputs of a draft form.
#[derive(Debug, Clone)]
pub struct DraftView {
    pub name: Input,
    pub description: Input,
    pub kind: Input,
    pub source: Input,
    pub image: Input,
    pub repo: Input,
    pub git_ref: Input,
    pub path: Input,
    pub memory_mib: Input,
    pub cpu_millis: Input,
    pub command: Input,
    pub command_shell: bool,
    pub groups: Vec<GroupView>,
    /// What the API refused that no input shows.
    pub general: String,
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub index: usize,
    pub legend: String,
    pub name: Input,
    pub meta: Input,
    pub injection: Input,
    pub items: Vec<ItemView>,
}

#[derive(Debug, Clone)]
pub struct ItemView {
    pub index: usize,
    pub legend: String,
    pub name: Input,
    pub item_type: Input,
    pub options: Input,
    pub default: Input,
    pub changeable: Input,
    pub protocols: Input,
    pub secret: Input,
    pub description: Input,
    /// A secret default is stored: it is not shown, and an empty input keeps it.
    pub secret_set: bool,
}

impl DraftView {
    /// `secret_set` lists the `group.item` names whose secret default the API keeps
    /// (`secret_defaults_set` of the stored draft).
    pub fn new(d: &Draft, errors: &BTreeMap<String, String>, secret_set: &[String]) -> DraftView {
        let input = |name: &str, value: &str| Input::new(name.to_owned(), value, errors);
        let groups = d
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| group_view(g, group, errors, secret_set))
            .collect();
        DraftView {
            name: input("name", &d.name),
            description: input("description", &d.description),
            kind: input("kind", &d.kind).with_choices(&KINDS),
            source: input("source", &d.source).with_choices(&SOURCES),
            image: input("source.image", &d.image),
            repo: input("source.dockerfile.repo", &d.repo),
            git_ref: input("source.dockerfile.ref", &d.git_ref),
            path: input("source.dockerfile.path", &d.path),
            memory_mib: input("memory_mib", &d.memory_mib),
            cpu_millis: input("cpu_millis", &d.cpu_millis),
            command: input("command", &d.command),
            command_shell: d.command_shell,
            groups,
            general: errors.get("_form").cloned().unwrap_or_default(),
        }
    }
}

fn group_view(g: usize, group: &Group, errors: &BTreeMap<String, String>, secret_set: &[String]) -> GroupView {
    let input = |field: &str, value: &str| Input::new(format!("config_groups[{g}].{field}"), value, errors);
    let shown = if group.name.trim().is_empty() {
        format!("{}", g + 1)
    } else {
        group.name.trim().to_owned()
    };
    GroupView {
        index: g,
        legend: format!("Config group {shown}"),
        name: input("name", &group.name),
        meta: input("meta", &group.meta).with_choices(&METAS),
        injection: input("injection", &group.injection).with_choices(&INJECTIONS),
        items: group
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| item_view(g, i, &group.name, item, errors, secret_set))
            .collect(),
    }
}

fn item_view(
    g: usize,
    i: usize,
    group: &str,
    item: &Item,
    errors: &BTreeMap<String, String>,
    secret_set: &[String],
) -> ItemView {
    let input = |field: &str, value: &str| Input::new(format!("config_groups[{g}].items[{i}].{field}"), value, errors);
    let flag = |on: bool| if on { "true" } else { "" };
    let shown = if item.name.trim().is_empty() {
        format!("{}", i + 1)
    } else {
        item.name.trim().to_owned()
    };
    let secret_set = item.secret && secret_set.contains(&format!("{}.{}", group.trim(), item.name.trim()));
    ItemView {
        index: i,
        legend: format!("Item {shown}"),
        name: input("name", &item.name),
        item_type: input("type", &item.item_type).with_choices(&TYPES),
        options: input("options", &item.options),
        // A secret is never sent back to the page, not even one just typed into a refused form.
        default: input("default", if item.secret { "" } else { &item.default }),
        changeable: input("changeable", flag(item.changeable)),
        protocols: input("protocols", &item.protocols),
        secret: input("secret", flag(item.secret)),
        description: input("description", &item.description),
        secret_set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_of_the_name() {
        assert_eq!(
            id_of("config_groups[0].items[12].name"),
            "config_groups-0-items-12-name"
        );
        assert_eq!(id_of("source.dockerfile.ref"), "source-dockerfile-ref");
    }

    #[test]
    fn secrets_are_not_shown_and_their_stored_default_is_named() {
        let mut d = Draft::blank();
        d.groups.push(Group {
            name: "g".into(),
            meta: "none".into(),
            injection: "env".into(),
            items: vec![Item {
                name: "TOKEN".into(),
                secret: true,
                default: "typed-secret".into(),
                ..Item::default()
            }],
        });
        let v = DraftView::new(&d, &BTreeMap::new(), &["g.TOKEN".to_owned()]);
        let item = &v.groups[0].items[0];
        assert_eq!(item.default.value, "");
        assert!(item.secret_set && item.secret.checked());
        assert_eq!(v.groups[0].meta.choices.iter().filter(|c| c.selected).count(), 1);
    }
}
