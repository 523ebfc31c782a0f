//! The JSON a draft form sends to the API: the whole draft to create a plug-in, or the merge
//! patch that turns the stored draft into the one typed. What the user left empty is left out
//! (or removed), and what does not parse is sent as typed, for the API to refuse by name.

use serde_json::{Map, Value, json};

use super::draft::Draft;

fn comma_list(s: &str) -> Vec<Value> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| Value::String(x.to_owned()))
        .collect()
}

/// A number as a number; anything else as typed, for the API to refuse by name.
fn number_or_text(s: &str) -> Value {
    let s = s.trim();
    s.parse::<u64>()
        .map_or_else(|_| Value::String(s.to_owned()), Value::from)
}

impl Draft {
    fn command_json(&self) -> Option<Value> {
        if self.command_shell {
            return (!self.command.trim().is_empty()).then(|| Value::String(self.command.clone()));
        }
        let args: Vec<Value> = self
            .command
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Value::String(l.to_owned()))
            .collect();
        (!args.is_empty()).then_some(Value::Array(args))
    }

    fn groups_json(&self) -> Value {
        let groups = self.groups.iter().map(|g| {
            let items = g.items.iter().map(|i| {
                let mut item = Map::new();
                item.insert("name".into(), i.name.trim().into());
                item.insert("type".into(), i.item_type.as_str().into());
                let options = comma_list(&i.options);
                if !options.is_empty() {
                    item.insert("options".into(), options.into());
                }
                // An empty default of a secret item keeps the stored one.
                if !i.default.is_empty() {
                    item.insert("default".into(), i.default.as_str().into());
                }
                item.insert("changeable".into(), i.changeable.into());
                let protocols = comma_list(&i.protocols);
                if !protocols.is_empty() {
                    item.insert("protocols".into(), protocols.into());
                }
                if !i.description.trim().is_empty() {
                    item.insert("description".into(), i.description.trim().into());
                }
                item.insert("secret".into(), i.secret.into());
                Value::Object(item)
            });
            json!({
                "name": g.name.trim(),
                "meta": g.meta,
                "injection": g.injection,
                "items": items.collect::<Vec<_>>(),
            })
        });
        Value::Array(groups.collect())
    }

    /// The body of `POST /teams/{team}/plugins`: what was left empty is left out.
    pub fn create_body(&self) -> Value {
        let mut body = json!({
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "config_groups": self.groups_json(),
        });
        body["source"] = if self.source == "dockerfile" {
            let mut d = json!({"repo": self.repo});
            if !self.git_ref.is_empty() {
                d["ref"] = self.git_ref.as_str().into();
            }
            if !self.path.is_empty() {
                d["path"] = self.path.as_str().into();
            }
            json!({"dockerfile": d})
        } else {
            json!({"image": self.image})
        };
        if !self.memory_mib.trim().is_empty() {
            body["memory_mib"] = number_or_text(&self.memory_mib);
        }
        if !self.cpu_millis.trim().is_empty() {
            body["cpu_millis"] = number_or_text(&self.cpu_millis);
        }
        if let Some(c) = self.command_json() {
            body["command"] = c;
        }
        body
    }

    /// The merge patch that makes `current` (the API's answer) this draft: what was left empty
    /// is removed; the Dockerfile's other fields (context, build args) stay as they are.
    pub fn patch(&self, current: &Value) -> Value {
        let source = if self.source == "dockerfile" {
            let was_dockerfile = current["source"]["dockerfile"].is_object();
            let mut d = json!({"repo": self.repo});
            for (key, value) in [("ref", &self.git_ref), ("path", &self.path)] {
                if !value.is_empty() {
                    d[key] = value.as_str().into();
                } else if was_dockerfile {
                    // null removes a key from the stored object; into a new one it is left out.
                    d[key] = Value::Null;
                }
            }
            json!({"image": null, "dockerfile": d})
        } else {
            json!({"image": self.image, "dockerfile": null})
        };
        let or_null = |s: &str| {
            if s.trim().is_empty() {
                Value::Null
            } else {
                number_or_text(s)
            }
        };
        json!({
            "description": self.description,
            "kind": self.kind,
            "source": source,
            "memory_mib": or_null(&self.memory_mib),
            "cpu_millis": or_null(&self.cpu_millis),
            "command": self.command_json().unwrap_or(Value::Null),
            "config_groups": self.groups_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_removes_what_was_emptied_and_switches_the_source() {
        let current = json!({"name": "p", "kind": "general", "memory_mib": 64, "cpu_millis": 100,
            "source": {"dockerfile": {"repo": "r", "ref": "main", "path": "Dockerfile", "context": "c"}}});
        let mut d = Draft::from_api(&current);
        assert_eq!((d.source.as_str(), d.git_ref.as_str()), ("dockerfile", "main"));
        d.git_ref.clear();
        d.cpu_millis.clear();
        d.memory_mib = "12x".into();
        let p = d.patch(&current);
        assert_eq!(
            p["source"],
            json!({"image": null, "dockerfile": {"repo": "r", "ref": null, "path": "Dockerfile"}})
        );
        assert_eq!(
            (p["cpu_millis"].clone(), p["memory_mib"].clone()),
            (Value::Null, json!("12x"))
        );
        d.source = "image".into();
        d.image = "busybox:1".into();
        assert_eq!(
            d.patch(&current)["source"],
            json!({"image": "busybox:1", "dockerfile": null})
        );
        let from_image = json!({"name": "p", "kind": "general", "source": {"image": "x"}});
        let mut d = Draft::from_api(&from_image);
        d.source = "dockerfile".into();
        d.repo = "r".into();
        d.path.clear();
        assert_eq!(
            d.patch(&from_image)["source"],
            json!({"image": null, "dockerfile": {"repo": "r"}}),
            "no null inside a new object"
        );
    }

    #[test]
    fn commands_keep_their_form() {
        let exec = Draft::from_api(&json!({"command": ["a", "b c"]}));
        assert_eq!(exec.command, "a\nb c");
        assert_eq!(exec.create_body()["command"], json!(["a", "b c"]));
        let shell = Draft::from_api(&json!({"command": "echo $HOME"}));
        assert!(shell.command_shell);
        assert_eq!(shell.create_body()["command"], json!("echo $HOME"));
    }
}
