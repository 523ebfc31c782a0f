//! A plug-in draft as its forms hold it: read from the API's JSON or from a posted form (whose
//! input names are the API's field paths), edited row by row (add or remove a config group or
//! an item, without saving); and the API's refusal placed beside the input it names. Nothing is
//! checked here: every rule is the API's. The JSON sent back is built in `body`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::Failure;
use crate::form::Fields;

/// The inputs of the plug-in forms, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    pub name: String,
    pub description: String,
    pub kind: String,
    /// `image` or `dockerfile`.
    pub source: String,
    pub image: String,
    pub repo: String,
    pub git_ref: String,
    pub path: String,
    pub memory_mib: String,
    pub cpu_millis: String,
    /// One argument per line; or one shell line when `command_shell`.
    pub command: String,
    /// The stored command is a string, run with `/bin/sh -c`: it is saved as a string again.
    pub command_shell: bool,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub meta: String,
    pub injection: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub item_type: String,
    /// A comma list.
    pub options: String,
    /// A comma list for `multi` items. Never a stored secret: those are not shown.
    pub default: String,
    pub changeable: bool,
    /// A comma list; empty means every protocol.
    pub protocols: String,
    pub secret: bool,
    pub description: String,
}

impl Default for Item {
    fn default() -> Self {
        Item {
            name: String::new(),
            item_type: "string".into(),
            options: String::new(),
            default: String::new(),
            changeable: true,
            protocols: String::new(),
            secret: false,
            description: String::new(),
        }
    }
}

/// What a button of the draft form asks for, besides saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Save,
    AddGroup,
    AddItem(usize),
    RemoveGroup(usize),
    RemoveItem(usize, usize),
}

impl Edit {
    /// The `_action` value of the button that sent the form (Enter in a field saves).
    pub fn of(fields: &Fields) -> Edit {
        let action = fields.get("_action").unwrap_or("save");
        let numbers: Vec<usize> = action.split('-').filter_map(|p| p.parse().ok()).collect();
        match (action, numbers.as_slice()) {
            ("add-group", _) => Edit::AddGroup,
            (a, [g]) if a.starts_with("add-item-") => Edit::AddItem(*g),
            (a, [g]) if a.starts_with("remove-group-") => Edit::RemoveGroup(*g),
            (a, [g, i]) if a.starts_with("remove-item-") => Edit::RemoveItem(*g, *i),
            _ => Edit::Save,
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

impl Draft {
    /// The create form's starting point.
    pub fn blank() -> Draft {
        Draft {
            kind: "general".into(),
            source: "image".into(),
            path: "Dockerfile".into(),
            memory_mib: "64".into(),
            ..Draft::default()
        }
    }

    /// The draft as the API answers it (secret defaults already left out).
    pub fn from_api(v: &Value) -> Draft {
        let source = &v["source"];
        let dockerfile = &source["dockerfile"];
        let (command, command_shell) = match &v["command"] {
            Value::String(s) => (s.clone(), true),
            Value::Array(args) => (args.iter().map(text).collect::<Vec<_>>().join("\n"), false),
            _ => (String::new(), false),
        };
        let groups = v["config_groups"].as_array().map_or_else(Vec::new, |groups| {
            groups
                .iter()
                .map(|g| Group {
                    name: text(&g["name"]),
                    meta: g["meta"].as_str().unwrap_or("none").to_owned(),
                    injection: g["injection"].as_str().unwrap_or("env").to_owned(),
                    items: g["items"].as_array().map_or_else(Vec::new, |items| {
                        items
                            .iter()
                            .map(|i| Item {
                                name: text(&i["name"]),
                                item_type: i["type"].as_str().unwrap_or("string").to_owned(),
                                options: text(&i["options"]),
                                default: text(&i["default"]),
                                changeable: i["changeable"].as_bool().unwrap_or(true),
                                protocols: text(&i["protocols"]),
                                secret: i["secret"].as_bool().unwrap_or(false),
                                description: text(&i["description"]),
                            })
                            .collect()
                    }),
                })
                .collect()
        });
        Draft {
            name: text(&v["name"]),
            description: text(&v["description"]),
            kind: text(&v["kind"]),
            source: if dockerfile.is_object() { "dockerfile" } else { "image" }.into(),
            image: text(&source["image"]),
            repo: text(&dockerfile["repo"]),
            git_ref: text(&dockerfile["ref"]),
            path: if dockerfile.is_object() {
                text(&dockerfile["path"])
            } else {
                "Dockerfile".into()
            },
            memory_mib: text(&v["memory_mib"]),
            cpu_millis: text(&v["cpu_millis"]),
            command,
            command_shell,
            groups,
        }
    }

    /// The draft as a form posted it.
    pub fn from_fields(f: &Fields) -> Draft {
        let get = |name: &str| f.get(name).unwrap_or_default().to_owned();
        let mut groups: BTreeMap<usize, (Group, BTreeMap<usize, Item>)> = BTreeMap::new();
        for (rest, value) in f.under("config_groups[") {
            let Some((g, rest)) = index(rest) else { continue };
            let (group, items) = groups.entry(g).or_default();
            match rest {
                ".name" => group.name = value.to_owned(),
                ".meta" => group.meta = value.to_owned(),
                ".injection" => group.injection = value.to_owned(),
                _ => {
                    let Some((i, field)) = rest.strip_prefix(".items[").and_then(index) else {
                        continue;
                    };
                    let item = items.entry(i).or_insert_with(|| Item {
                        // A checkbox left unticked sends nothing.
                        changeable: false,
                        ..Item::default()
                    });
                    match field {
                        ".name" => item.name = value.to_owned(),
                        ".type" => item.item_type = value.to_owned(),
                        ".options" => item.options = value.to_owned(),
                        ".default" => item.default = value.to_owned(),
                        ".changeable" => item.changeable = value != "false",
                        ".protocols" => item.protocols = value.to_owned(),
                        ".secret" => item.secret = value != "false",
                        ".description" => item.description = value.to_owned(),
                        _ => {}
                    }
                }
            }
        }
        Draft {
            name: get("name").trim().to_owned(),
            // Browsers send a textarea's line breaks as CRLF.
            description: get("description").replace("\r\n", "\n"),
            kind: get("kind"),
            source: if f.get("source") == Some("dockerfile") {
                "dockerfile"
            } else {
                "image"
            }
            .into(),
            image: get("source.image").trim().to_owned(),
            repo: get("source.dockerfile.repo").trim().to_owned(),
            git_ref: get("source.dockerfile.ref").trim().to_owned(),
            path: get("source.dockerfile.path").trim().to_owned(),
            memory_mib: get("memory_mib"),
            cpu_millis: get("cpu_millis"),
            command: get("command").replace("\r\n", "\n"),
            command_shell: f.checked("command.shell"),
            groups: groups
                .into_values()
                .map(|(mut g, items)| {
                    g.items = items.into_values().collect();
                    g
                })
                .collect(),
        }
    }

    /// Adds or removes a row; `false` for a row that is not there.
    pub fn edit(&mut self, edit: Edit) -> bool {
        match edit {
            Edit::Save => return true,
            Edit::AddGroup => {
                // A second group of the same meta is refused: offer the next one not used yet.
                let used: BTreeSet<&str> = self.groups.iter().map(|g| g.meta.as_str()).collect();
                let meta = ["none", "component-port", "downstream-port"]
                    .into_iter()
                    .find(|m| !used.contains(m))
                    .unwrap_or("none");
                self.groups.push(Group {
                    name: String::new(),
                    meta: meta.into(),
                    injection: if meta == "none" { "env" } else { "discovery" }.into(),
                    items: vec![Item::default()],
                });
            }
            Edit::AddItem(g) => match self.groups.get_mut(g) {
                Some(group) => group.items.push(Item::default()),
                None => return false,
            },
            Edit::RemoveGroup(g) if g < self.groups.len() => {
                self.groups.remove(g);
            }
            Edit::RemoveItem(g, i) => match self.groups.get_mut(g) {
                Some(group) if i < group.items.len() => {
                    group.items.remove(i);
                }
                _ => return false,
            },
            Edit::RemoveGroup(_) => return false,
        }
        true
    }

    /// The name of every input the form shows, by which an error is placed.
    pub fn inputs(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = [
            "name",
            "description",
            "kind",
            "source",
            "source.image",
            "source.dockerfile.repo",
            "source.dockerfile.ref",
            "source.dockerfile.path",
            "memory_mib",
            "cpu_millis",
            "command",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for (g, group) in self.groups.iter().enumerate() {
            for field in ["name", "meta", "injection"] {
                names.insert(format!("config_groups[{g}].{field}"));
            }
            for i in 0..group.items.len() {
                for field in ITEM_FIELDS {
                    names.insert(format!("config_groups[{g}].items[{i}].{field}"));
                }
            }
        }
        names
    }

    /// The API's refusal as errors by input name: beside the input the API names, or in the
    /// form's general slot (`_form`) when no input has that name.
    pub fn errors(&self, f: &Failure) -> BTreeMap<String, String> {
        let (field, message) = located(f);
        match field {
            Some(field) if self.inputs().contains(&field) => {
                let own = message
                    .strip_prefix(&format!("{field}: "))
                    .unwrap_or(&message)
                    .to_owned();
                BTreeMap::from([(field, own)])
            }
            _ => BTreeMap::from([("_form".to_owned(), message)]),
        }
    }
}

pub const ITEM_FIELDS: [&str; 8] = [
    "name",
    "type",
    "options",
    "default",
    "changeable",
    "protocols",
    "secret",
    "description",
];

/// `3].rest` → (3, `rest`).
fn index(s: &str) -> Option<(usize, &str)> {
    let (n, rest) = s.split_once(']')?;
    Some((n.parse().ok()?, rest))
}

/// The field a refusal is about and its message. A body the API could not read names the path
/// in its message (`body: config_groups[0].items[1].name: …`): that path is the field.
fn located(f: &Failure) -> (Option<String>, String) {
    match f.field.as_deref() {
        Some("body") => {
            let message = f.message.strip_prefix("body: ").unwrap_or(&f.message);
            let path = message.split_once(": ").map(|(p, _)| p).filter(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
            });
            (path.map(str::to_owned), message.to_owned())
        }
        Some(field) => (Some(field.to_owned()), f.message.clone()),
        None => (None, f.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn a_posted_form_reads_back_by_index_with_unticked_boxes_off() {
        let f = fields(&[
            ("description", "d"),
            ("kind", "init"),
            ("source", "dockerfile"),
            ("source.dockerfile.repo", " https://git.example/r.git "),
            ("config_groups[1].name", "second"),
            ("config_groups[0].name", "first"),
            ("config_groups[0].items[0].name", "A"),
            ("config_groups[0].items[0].changeable", "true"),
            ("config_groups[0].items[2].name", "C"),
            ("config_groups[0].items[2].secret", "true"),
        ]);
        let d = Draft::from_fields(&f);
        assert_eq!(
            (d.source.as_str(), d.repo.as_str()),
            ("dockerfile", "https://git.example/r.git")
        );
        assert_eq!(d.groups.len(), 2);
        assert_eq!(d.groups[0].name, "first");
        let items = &d.groups[0].items;
        assert_eq!(
            (items[0].name.as_str(), items[0].changeable, items[0].secret),
            ("A", true, false)
        );
        assert_eq!(
            (items[1].name.as_str(), items[1].changeable, items[1].secret),
            ("C", false, true)
        );
    }

    #[test]
    fn rows_are_added_and_removed_and_a_new_group_takes_an_unused_meta() {
        let mut d = Draft::blank();
        assert!(d.edit(Edit::AddGroup));
        assert!(d.edit(Edit::AddGroup));
        assert_eq!(
            (d.groups[1].meta.as_str(), d.groups[1].injection.as_str()),
            ("component-port", "discovery")
        );
        assert!(d.edit(Edit::AddItem(1)));
        assert_eq!(d.groups[1].items.len(), 2);
        assert!(d.groups[1].items[1].changeable, "a new item is changeable");
        assert!(d.edit(Edit::RemoveItem(1, 0)));
        assert!(d.edit(Edit::RemoveGroup(0)));
        assert_eq!((d.groups.len(), d.groups[0].items.len()), (1, 1));
        assert!(!d.edit(Edit::RemoveItem(3, 0)));
        assert_eq!(
            Edit::of(&fields(&[("_action", "remove-item-2-5")])),
            Edit::RemoveItem(2, 5)
        );
        assert_eq!(Edit::of(&fields(&[])), Edit::Save);
    }

    #[test]
    fn refusals_land_on_the_input_they_name() {
        let mut d = Draft::blank();
        d.edit(Edit::AddGroup);
        let refusal = |field: Option<&str>, message: &str| Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid".into(),
            message: message.into(),
            field: field.map(str::to_owned),
        };
        let e = d.errors(&refusal(
            Some("config_groups[0].injection"),
            "config_groups[0].injection: set injection to `discovery`",
        ));
        assert_eq!(e["config_groups[0].injection"], "set injection to `discovery`");
        let e = d.errors(&refusal(
            Some("body"),
            "body: config_groups[0].items[0].name: invalid env variable name `a-b`",
        ));
        assert_eq!(e["config_groups[0].items[0].name"], "invalid env variable name `a-b`");
        let e = d.errors(&refusal(Some("config_groups[4].name"), "config_groups[4].name: x"));
        assert_eq!(e["_form"], "config_groups[4].name: x");
        let e = d.errors(&refusal(None, "plug-in `p` already exists"));
        assert_eq!(e["_form"], "plug-in `p` already exists");
    }
}
