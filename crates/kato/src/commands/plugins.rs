//! `kato plugin …`: drafts and versions.

use anyhow::{Result, anyhow, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{CREATED, NAME, read_documents, team_of};
use crate::cli::{Global, PluginCmd, PluginFields};
use crate::client::Client;
use crate::output::{Column, field, print};

const PLUGIN_COLUMNS: [Column; 5] = [
    NAME,
    ("KIND", |v| field(v, "kind")),
    ("SOURCE", |v| {
        let s = &v["source"];
        s["image"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| s["dockerfile"]["repo"].as_str().map(|r| format!("dockerfile {r}")))
            .unwrap_or_default()
    }),
    ("MEMORY", |v| format!("{}Mi", field(v, "memory_mib"))),
    ("UPDATED", |v| field(v, "updated_at")),
];

const VERSION_COLUMNS: [Column; 6] = [
    ("VERSION", |v| field(v, "number")),
    ("STATUS", |v| field(v, "status")),
    ("IMAGE", |v| field(v, "image")),
    ("ERROR", |v| field(v, "error")),
    ("BY", built_by),
    CREATED,
];

const DEFAULTS_COLUMNS: [Column; 5] = [
    NAME,
    ("KIND", |v| field(v, "kind")),
    ("STATE", |v| field(v, "state")),
    ("VERSION", |v| field(&v["version"], "number")),
    ("STATUS", |v| field(&v["version"], "status")),
];

/// Who created a version: `admin`, `token <name>`, or `unknown` for one from before servers
/// recorded it.
fn built_by(v: &Value) -> String {
    v["created_by"].as_str().unwrap_or("unknown").to_owned()
}

pub async fn run(g: &Global, c: PluginCmd) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let base = format!("/teams/{team}/plugins");
    match c {
        PluginCmd::Create(f) => {
            let body = fields_body(&f, true)?;
            print(
                &client.call(Method::POST, &base, Some(&body)).await?,
                g.output,
                &PLUGIN_COLUMNS,
            );
        }
        PluginCmd::Update(f) => {
            let mut body = fields_body(&f, false)?;
            let name = body
                .as_object_mut()
                .and_then(|o| o.remove("name"))
                .and_then(|n| n.as_str().map(str::to_owned));
            let name = f
                .name
                .clone()
                .or(name)
                .ok_or_else(|| anyhow!("name the plug-in to update"))?;
            print(
                &client
                    .call(Method::PATCH, &format!("{base}/{name}"), Some(&body))
                    .await?,
                g.output,
                &PLUGIN_COLUMNS,
            );
        }
        PluginCmd::List => print(&client.get(&base).await?, g.output, &PLUGIN_COLUMNS),
        PluginCmd::Get { name } => print(&client.get(&format!("{base}/{name}")).await?, g.output, &PLUGIN_COLUMNS),
        PluginCmd::Delete { name, force } => {
            let v = client
                .call(Method::DELETE, &format!("{base}/{name}?force={force}"), None)
                .await?;
            let from = field(&v, "uninstalled_from");
            eprintln!(
                "plug-in {name} deleted{}",
                if from == "-" {
                    String::new()
                } else {
                    format!(" (uninstalled from {from})")
                }
            );
        }
        PluginCmd::Build { name, follow } => {
            let v = client
                .call(Method::POST, &format!("{base}/{name}/versions"), None)
                .await?;
            let number = field(&v, "number");
            if follow && matches!(v["status"].as_str(), Some("queued" | "building")) {
                eprintln!(
                    "version {number} of {name} is {}: following its build log",
                    field(&v, "status")
                );
                client
                    .follow(&format!("{base}/{name}/versions/{number}/log?follow=true"))
                    .await?;
                let v = client.get(&format!("{base}/{name}/versions/{number}")).await?;
                return finished(&name, &v, g);
            }
            print(&v, g.output, &VERSION_COLUMNS);
            if matches!(v["status"].as_str(), Some("failed" | "cancelled")) {
                bail!(
                    "version {number} of {name} {}: {}",
                    field(&v, "status"),
                    field(&v, "error")
                );
            }
        }
        PluginCmd::Cancel { name, number } => {
            let v = client
                .call(Method::POST, &format!("{base}/{name}/versions/{number}/cancel"), None)
                .await?;
            print(&v, g.output, &VERSION_COLUMNS);
        }
        PluginCmd::Log { name, number, follow } => {
            let path = format!("{base}/{name}/versions/{number}/log");
            if follow {
                client.follow(&format!("{path}?follow=true")).await?;
                let v = client.get(&format!("{base}/{name}/versions/{number}")).await?;
                return finished(&name, &v, g);
            }
            print!("{}", client.raw(Method::GET, &path, None).await?);
        }
        PluginCmd::Versions { name } => print(
            &client.get(&format!("{base}/{name}/versions")).await?,
            g.output,
            &VERSION_COLUMNS,
        ),
        PluginCmd::Version { name, number } => print(
            &client.get(&format!("{base}/{name}/versions/{number}")).await?,
            g.output,
            &VERSION_COLUMNS,
        ),
        PluginCmd::InstallDefaults => {
            let v = client.call(Method::POST, &format!("{base}/defaults"), None).await?;
            if g.output == crate::cli::Format::Table {
                print(&v["plugins"], g.output, &DEFAULTS_COLUMNS);
                eprintln!("builds run in the background: `kato plugin log NAME VERSION -f` follows one");
            } else {
                print(&v, g.output, &DEFAULTS_COLUMNS);
            }
        }
        PluginCmd::DeleteVersion { name, number } => {
            client
                .call(Method::DELETE, &format!("{base}/{name}/versions/{number}"), None)
                .await?;
            eprintln!("version {number} of {name} deleted");
        }
    }
    Ok(())
}

/// The end of a followed build: a progress line, and an error unless it succeeded.
fn finished(name: &str, v: &Value, g: &Global) -> Result<()> {
    let number = field(v, "number");
    match v["status"].as_str() {
        Some("succeeded") => {
            eprintln!("version {number} of {name} succeeded: {}", field(v, "image"));
            if g.output != crate::cli::Format::Table {
                print(v, g.output, &VERSION_COLUMNS);
            }
            Ok(())
        }
        _ => bail!(
            "version {number} of {name} {}: {}",
            field(v, "status"),
            field(v, "error")
        ),
    }
}

/// The request body from a file and/or flags (flags win).
fn fields_body(f: &PluginFields, create: bool) -> Result<Value> {
    let mut body = match &f.file {
        Some(path) => {
            let mut docs = read_documents(path)?;
            if docs.len() != 1 {
                bail!("{} must hold exactly one plug-in", path.display());
            }
            let doc = docs.remove(0);
            // Accept an apply-style document too.
            if doc["kind"] == "Plugin" && doc["spec"].is_object() {
                let mut spec = doc["spec"].clone();
                spec["name"] = doc["metadata"]["name"].clone();
                spec
            } else {
                doc
            }
        }
        None => Value::Object(Map::new()),
    };
    let obj = body
        .as_object_mut()
        .ok_or_else(|| anyhow!("the file must hold a mapping"))?;
    if let Some(n) = &f.name {
        obj.insert("name".into(), json!(n));
    }
    if let Some(k) = &f.kind {
        obj.insert("kind".into(), json!(k));
    }
    if let Some(i) = &f.image {
        obj.insert("source".into(), json!({"image": i}));
    }
    if let Some(r) = &f.repo {
        let mut d = json!({"repo": r});
        if let Some(git_ref) = &f.git_ref {
            d["ref"] = json!(git_ref);
        }
        if let Some(p) = &f.dockerfile {
            d["path"] = json!(p);
        }
        obj.insert("source".into(), json!({"dockerfile": d}));
    }
    if let Some(m) = f.memory {
        obj.insert("memory_mib".into(), json!(m));
    }
    if let Some(d) = &f.description {
        obj.insert("description".into(), json!(d));
    }
    if let Some(c) = &f.command {
        obj.insert("command".into(), json!(c));
    }
    if create && !obj.contains_key("name") {
        bail!("name the plug-in: `kato plugin create NAME --kind general --image REF`, or -f FILE");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_from_before_authors_were_recorded_is_by_unknown() {
        assert_eq!(built_by(&json!({"created_by": "token ci job"})), "token ci job");
        assert_eq!(built_by(&json!({"created_by": null})), "unknown");
        assert_eq!(built_by(&json!({})), "unknown", "an older server answers none");
    }
}
