//! The component form: its text areas (one port, variable, volume or argument per line) turned
//! into the API's component body, the stored component turned back into text, and the API's
//! field paths (`ports[1].protocol`) turned into the form field and line they name.

use std::collections::BTreeMap;

use kato_model::Command;
use kato_model::ComponentSpec;
use serde_json::{Map, Value, json};

use crate::Failure;
use crate::form::Fields;

/// The text fields of the form, in the order they appear.
pub const TEXT_FIELDS: [&str; 9] = [
    "name",
    "image",
    "command",
    "ports",
    "env",
    "volumes",
    "memory_mib",
    "cpu_millis",
    "replicas",
];

/// What the form shows: the values as text, the dependencies chosen, the errors by field.
#[derive(Debug, Clone, Default)]
pub struct ComponentForm {
    pub text: BTreeMap<&'static str, String>,
    /// The components this one depends on.
    pub depends_on: Vec<String>,
    /// The team's other components, which it may depend on.
    pub candidates: Vec<String>,
    /// The command is a shell script (run with `/bin/sh -c`), not one argument per line.
    pub shell: bool,
    /// Messages by field name; `_form` for one that names no field of the form.
    pub errors: BTreeMap<String, String>,
}

impl ComponentForm {
    /// An empty form for a new component.
    pub fn blank(candidates: Vec<String>) -> Self {
        ComponentForm {
            candidates,
            ..Default::default()
        }
    }

    /// The form of a stored component.
    pub fn of(spec: &ComponentSpec, candidates: Vec<String>) -> Self {
        let mut text = BTreeMap::new();
        text.insert("name", spec.name.to_string());
        text.insert("image", spec.image.as_str().to_owned());
        let shell = matches!(spec.command, Some(Command::Shell(_)));
        let command = match &spec.command {
            Some(Command::Shell(s)) => s.clone(),
            Some(Command::Exec(args)) => args.join("\n"),
            None => String::new(),
        };
        text.insert("command", command);
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|p| format!("{} {}", p.port, p.protocol))
            .collect();
        text.insert("ports", ports.join("\n"));
        let env: Vec<String> = spec.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect();
        text.insert("env", env.join("\n"));
        let volumes: Vec<String> = spec.volumes.iter().map(|v| format!("{}:{}", v.name, v.path)).collect();
        text.insert("volumes", volumes.join("\n"));
        text.insert("memory_mib", spec.memory_mib.to_string());
        text.insert("cpu_millis", spec.cpu_millis.map(|c| c.to_string()).unwrap_or_default());
        text.insert("replicas", spec.replicas.to_string());
        ComponentForm {
            text,
            depends_on: spec.depends_on.iter().map(ToString::to_string).collect(),
            candidates,
            shell,
            errors: BTreeMap::new(),
        }
    }

    /// The form as posted, to show again when it was refused.
    pub fn posted(fields: &Fields, candidates: Vec<String>) -> Self {
        let text = TEXT_FIELDS
            .iter()
            .map(|k| (*k, fields.get(k).unwrap_or_default().to_owned()))
            .collect();
        ComponentForm {
            text,
            depends_on: fields.all("depends_on").into_iter().map(str::to_owned).collect(),
            candidates,
            shell: fields.get("command_shell") == Some("true"),
            errors: BTreeMap::new(),
        }
    }

    pub fn value(&self, field: &str) -> &str {
        self.text.get(field).map_or("", String::as_str)
    }

    pub fn error(&self, field: &str) -> &str {
        self.errors.get(field).map_or("", String::as_str)
    }

    pub fn invalid(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    pub fn depends(&self, candidate: &str) -> bool {
        self.depends_on.iter().any(|d| d == candidate)
    }
}

/// The body for the API, and for each list field the line each entry came from.
#[derive(Debug, Default)]
pub struct Parsed {
    pub body: Value,
    lines: BTreeMap<(&'static str, usize), usize>,
}

/// The lines of a text area that hold something, numbered from 1 as the user sees them.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
}

/// Reads the posted form into the API's component body; a line that cannot be read (a port
/// that is no number, a variable without `=`) is refused here, by field.
pub fn parse(fields: &Fields, name: &str) -> Result<Parsed, BTreeMap<String, String>> {
    let mut errors = BTreeMap::new();
    let mut parsed = Parsed::default();
    let mut body = Map::new();
    body.insert("name".into(), name.trim().into());
    body.insert("image".into(), fields.get("image").unwrap_or_default().trim().into());

    let command = fields.get("command").unwrap_or_default();
    if fields.get("command_shell") == Some("true") {
        if !command.trim().is_empty() {
            body.insert("command".into(), command.replace("\r\n", "\n").into());
        }
    } else {
        let args: Vec<Value> = lines(command).map(|(_, l)| Value::from(l)).collect();
        if !args.is_empty() {
            body.insert("command".into(), Value::Array(args));
        }
    }

    let mut ports = Vec::new();
    for (n, line) in lines(fields.get("ports").unwrap_or_default()) {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '/')
            .filter(|w| !w.is_empty())
            .collect();
        let port = words.first().and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
        match (port, words.len()) {
            (Some(port), 1) => ports.push(json!({"port": port})),
            (Some(port), 2) => ports.push(json!({"port": port, "protocol": words[1].to_ascii_lowercase()})),
            (None, _) => {
                errors.entry("ports".into()).or_insert_with(|| {
                    format!(
                        "line {n}: `{}` is not a port number: give 1-65535, then the protocol, e.g. `80 http`",
                        words.first().unwrap_or(&"")
                    )
                });
                continue;
            }
            _ => {
                errors
                    .entry("ports".into())
                    .or_insert_with(|| format!("line {n}: write a port and its protocol, e.g. `80 http`"));
                continue;
            }
        }
        parsed.lines.insert(("ports", ports.len() - 1), n);
    }
    body.insert("ports".into(), ports.into());

    let mut env = Vec::new();
    for (n, line) in lines(fields.get("env").unwrap_or_default()) {
        let Some((name, value)) = line.split_once('=') else {
            errors
                .entry("env".into())
                .or_insert_with(|| format!("line {n}: write NAME=value, e.g. `LOG_LEVEL=info`"));
            continue;
        };
        env.push(json!({"name": name.trim(), "value": value}));
        parsed.lines.insert(("env", env.len() - 1), n);
    }
    body.insert("env".into(), env.into());

    let mut volumes = Vec::new();
    for (n, line) in lines(fields.get("volumes").unwrap_or_default()) {
        let Some((name, path)) = line.split_once(':') else {
            errors
                .entry("volumes".into())
                .or_insert_with(|| format!("line {n}: write name:/path, e.g. `logs:/var/log/app`"));
            continue;
        };
        volumes.push(json!({"name": name.trim(), "path": path.trim()}));
        parsed.lines.insert(("volumes", volumes.len() - 1), n);
    }
    body.insert("volumes".into(), volumes.into());

    for (field, what) in [
        ("memory_mib", "MiB"),
        ("cpu_millis", "millicores"),
        ("replicas", "replicas"),
    ] {
        let Some(text) = fields.text(field) else { continue };
        match text.parse::<u32>() {
            Ok(n) => {
                body.insert(field.into(), n.into());
            }
            Err(_) => {
                errors.insert(field.into(), format!("`{text}` is not a whole number of {what}"));
            }
        }
    }

    let deps: Vec<Value> = fields
        .all("depends_on")
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(Value::from)
        .collect();
    for (i, _) in deps.iter().enumerate() {
        parsed.lines.insert(("depends_on", i), i + 1);
    }
    body.insert("depends_on".into(), deps.into());

    if errors.is_empty() {
        parsed.body = Value::Object(body);
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// Splits an API field path into its first name and the list index after it:
/// `ports[1].protocol` → (`ports`, Some(1)).
fn head(path: &str) -> (&str, Option<usize>) {
    let end = path.find(['[', '.']).unwrap_or(path.len());
    let name = &path[..end];
    let index = path[end..]
        .strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse().ok());
    (name, index)
}

/// The field path a refusal names, and its message without the path: the API's `field` (its
/// message starts with it), or for a body that did not fit the schema (`field` is `body`) the
/// path the rest starts with (`body: ports[0].protocol: …`), without serde's
/// `at line 1 column 80`.
pub fn field_of(f: &Failure) -> (Option<String>, String) {
    let mut message = f.message.clone();
    if let Some(at) = message.rfind(" at line ")
        && message[at..].contains(" column ")
    {
        message.truncate(at);
    }
    let Some(field) = f.field.as_deref() else {
        return (None, message);
    };
    let message = message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&message)
        .to_owned();
    if field == "body"
        && let Some((path, rest)) = message.split_once(": ")
        && !path.is_empty()
        && !path.contains(' ')
    {
        return (Some(path.to_owned()), rest.to_owned());
    }
    (Some(field.to_owned()), message)
}

impl Parsed {
    /// The API's refusal as the error of a form field, with the line it came from.
    pub fn refusal(&self, f: &Failure) -> BTreeMap<String, String> {
        let (path, message) = field_of(f);
        let Some(path) = path else {
            return BTreeMap::from([("_form".to_owned(), message)]);
        };
        let (name, index) = head(&path);
        let Some(field) = TEXT_FIELDS.iter().chain(&["depends_on"]).find(|f| **f == name) else {
            return BTreeMap::from([("_form".to_owned(), format!("{path}: {message}"))]);
        };
        let message = match index.and_then(|i| self.lines.get(&(field, i))) {
            Some(line) if *field == "depends_on" => format!("choice {line}: {message}"),
            Some(line) => format!("line {line}: {message}"),
            None => message,
        };
        BTreeMap::from([((*field).to_owned(), message)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    fn refused(field: Option<&str>, message: &str) -> Failure {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid".into(),
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    #[test]
    fn text_areas_become_the_body() {
        let f = fields(&[
            ("image", " nginx:1.27 "),
            ("command", "nginx\r\n-g\n\ndaemon off;\n"),
            ("ports", "80 http\n\n3306 mysql\n9000"),
            ("env", "A=1\nB=x=y"),
            ("volumes", "logs:/var/log/nginx"),
            ("memory_mib", "256"),
            ("replicas", ""),
            ("depends_on", "db"),
            ("depends_on", "cache"),
        ]);
        let p = parse(&f, "web").unwrap();
        assert_eq!(
            p.body,
            json!({"name": "web", "image": "nginx:1.27", "command": ["nginx", "-g", "daemon off;"],
                "ports": [{"port": 80, "protocol": "http"}, {"port": 3306, "protocol": "mysql"}, {"port": 9000}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}],
                "volumes": [{"name": "logs", "path": "/var/log/nginx"}],
                "memory_mib": 256, "depends_on": ["db", "cache"]})
        );
        // The API's index 1 is the third line (a blank line is skipped).
        let e = p.refusal(&refused(
            Some("body"),
            "body: ports[1].protocol: unknown protocol `mysq` at line 1 column 99",
        ));
        assert_eq!(e["ports"], "line 3: unknown protocol `mysq`");
        let e = p.refusal(&refused(Some("env[1].name"), "env[1].name: bad name"));
        assert_eq!(e["env"], "line 2: bad name");
        let e = p.refusal(&refused(Some("memory_mib"), "memory_mib: is 1 MiB"));
        assert_eq!(e["memory_mib"], "is 1 MiB");
        let e = p.refusal(&refused(None, "component `web` already exists"));
        assert_eq!(e["_form"], "component `web` already exists");
    }

    #[test]
    fn unreadable_lines_are_refused_by_field() {
        let f = fields(&[("ports", "80 http\nweb http"), ("env", "A"), ("replicas", "two")]);
        let e = parse(&f, "web").unwrap_err();
        assert!(e["ports"].starts_with("line 2: `web` is not a port number"), "{e:?}");
        assert!(e["env"].starts_with("line 1: write NAME=value"), "{e:?}");
        assert!(e["replicas"].contains("`two`"), "{e:?}");
    }

    #[test]
    fn a_stored_component_reads_back_the_same() {
        let spec: ComponentSpec = serde_json::from_value(json!({"name": "web", "image": "nginx",
            "command": ["a", "b c"], "ports": [{"port": 80, "protocol": "http"}],
            "env": [{"name": "A", "value": "1=2"}], "volumes": [{"name": "v", "path": "/v"}],
            "memory_mib": 128, "replicas": 2, "depends_on": ["db"]}))
        .unwrap();
        let form = ComponentForm::of(&spec, vec!["db".into()]);
        let mut pairs: Vec<(String, String)> = TEXT_FIELDS
            .iter()
            .map(|k| ((*k).to_owned(), form.value(k).to_owned()))
            .collect();
        pairs.push(("depends_on".into(), "db".into()));
        let back = parse(&Fields(pairs), "web").unwrap();
        let again: ComponentSpec = serde_json::from_value(back.body).unwrap();
        assert_eq!(again, spec);
    }
}
