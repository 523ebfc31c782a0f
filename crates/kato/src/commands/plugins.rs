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

const VERSION_COLUMNS: [Column; 5] = [
    ("VERSION", |v| field(v, "number")),
    ("STATUS", |v| field(v, "status")),
    ("IMAGE", |v| field(v, "image")),
    ("ERROR", |v| field(v, "error")),
    CREATED,
];

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
        PluginCmd::Build { name } => {
            let v = client
                .call(Method::POST, &format!("{base}/{name}/versions"), None)
                .await?;
            print(&v, g.output, &VERSION_COLUMNS);
            if v["status"] != "succeeded" {
                bail!(
                    "version {} of {name} {}: {}",
                    field(&v, "number"),
                    field(&v, "status"),
                    field(&v, "error")
                );
            }
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
        PluginCmd::DeleteVersion { name, number } => {
            client
                .call(Method::DELETE, &format!("{base}/{name}/versions/{number}"), None)
                .await?;
            eprintln!("version {number} of {name} deleted");
        }
    }
    Ok(())
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
