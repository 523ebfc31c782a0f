//! `kato component …`, installations, and `kato render`.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{NAME, read_documents, team_of};
use crate::cli::{ComponentCmd, ComponentFields, Global, Install, Render, Target2, Upgrade};
use crate::client::Client;
use crate::output::{Column, field, print};

const COMPONENT_COLUMNS: [Column; 5] = [
    NAME,
    ("IMAGE", |v| field(v, "image")),
    ("PORTS", |v| {
        v["ports"].as_array().map_or_else(String::new, |ps| {
            ps.iter()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("tcp")))
                .collect::<Vec<_>>()
                .join(",")
        })
    }),
    ("MEMORY", |v| format!("{}Mi", field(v, "memory_mib"))),
    ("DEPENDS ON", |v| field(v, "depends_on")),
];

const INSTALL_COLUMNS: [Column; 8] = [
    ("PLUGIN", |v| field(v, "plugin")),
    ("KIND", |v| field(v, "kind")),
    ("VERSION", |v| field(v, "version")),
    ("ENABLED", |v| field(v, "enabled")),
    ("MEMORY", |v| format!("{}Mi", field(v, "memory_mib"))),
    ("REVISION", |v| field(v, "revision")),
    ("IMAGE", |v| field(v, "image")),
    ("ACKS", |v| super::acks_summary(&v["pods"])),
];

pub async fn run(g: &Global, c: ComponentCmd) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let base = format!("/teams/{team}/components");
    match c {
        ComponentCmd::Create(f) => {
            let body = component_body(&f)?;
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            let v = if f.replace {
                client.call(Method::PUT, &format!("{base}/{name}"), Some(&body)).await?
            } else {
                client.call(Method::POST, &base, Some(&body)).await?
            };
            print(&v, g.output, &COMPONENT_COLUMNS);
        }
        ComponentCmd::List => print(&client.get(&base).await?, g.output, &COMPONENT_COLUMNS),
        ComponentCmd::Get { name } => print(
            &client.get(&format!("{base}/{name}")).await?,
            g.output,
            &COMPONENT_COLUMNS,
        ),
        ComponentCmd::Delete { name } => {
            client.call(Method::DELETE, &format!("{base}/{name}"), None).await?;
            eprintln!("component {name} deleted");
        }
        ComponentCmd::Plugins { name } => print(
            &client.get(&format!("{base}/{name}/plugins")).await?,
            g.output,
            &INSTALL_COLUMNS,
        ),
    }
    Ok(())
}

fn component_body(f: &ComponentFields) -> Result<Value> {
    let mut body = match &f.file {
        Some(path) => {
            let mut docs = read_documents(path)?;
            if docs.len() != 1 {
                bail!("{} must hold exactly one component", path.display());
            }
            docs.remove(0)
        }
        None => Value::Object(Map::new()),
    };
    let obj = body
        .as_object_mut()
        .ok_or_else(|| anyhow!("the file must hold a mapping"))?;
    if let Some(n) = &f.name {
        obj.insert("name".into(), json!(n));
    }
    if let Some(i) = &f.image {
        obj.insert("image".into(), json!(i));
    }
    if let Some(c) = &f.command {
        obj.insert("command".into(), json!(c));
    }
    if !f.ports.is_empty() {
        let ports: Result<Vec<Value>> = f
            .ports
            .iter()
            .map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let port: u16 = port
                    .parse()
                    .with_context(|| format!("--port {p}: give PORT[/PROTOCOL], e.g. 8080/http"))?;
                Ok(json!({"port": port, "protocol": proto}))
            })
            .collect();
        obj.insert("ports".into(), Value::Array(ports?));
    }
    if !f.env.is_empty() {
        let env: Result<Vec<Value>> = f
            .env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').ok_or_else(|| anyhow!("--env {e}: give NAME=VALUE"))?;
                Ok(json!({"name": k, "value": v}))
            })
            .collect();
        obj.insert("env".into(), Value::Array(env?));
    }
    if !f.volumes.is_empty() {
        let vols: Result<Vec<Value>> = f
            .volumes
            .iter()
            .map(|v| {
                let (n, p) = v
                    .split_once(':')
                    .ok_or_else(|| anyhow!("--volume {v}: give NAME:PATH, e.g. logs:/var/log/nginx"))?;
                Ok(json!({"name": n, "path": p}))
            })
            .collect();
        obj.insert("volumes".into(), Value::Array(vols?));
    }
    if let Some(m) = f.memory {
        obj.insert("memory_mib".into(), json!(m));
    }
    if let Some(r) = f.replicas {
        obj.insert("replicas".into(), json!(r));
    }
    if !f.depends_on.is_empty() {
        obj.insert("depends_on".into(), json!(f.depends_on));
    }
    if !obj.contains_key("name") {
        bail!("name the component: `kato component create NAME --image REF`, or -f FILE");
    }
    Ok(body)
}

fn path(team: &str, component: &str, plugin: &str) -> String {
    format!("/teams/{team}/components/{component}/plugins/{plugin}")
}

/// `SCOPE.ITEM=VALUE` (`--set-port 80.ITEM=…`, `--set-downstream db:5432.ITEM=…`) split at the
/// last dot before the `=`: the value may hold dots (a URL, a number).
fn split_scope(assignment: &str) -> Option<(&str, &str)> {
    let (key, _) = assignment.split_once('=')?;
    let (scope, _) = key.rsplit_once('.')?;
    Some((scope, &assignment[scope.len() + 1..]))
}

/// `KEY=VALUE` into a values map; `ITEM=a,b` stays text and the server splits `multi` items.
fn set_into(map: &mut Map<String, Value>, assignment: &str, flag: &str) -> Result<()> {
    let (k, v) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("{flag} {assignment}: give ITEM=VALUE"))?;
    map.insert(k.to_owned(), json!(v));
    Ok(())
}

pub async fn install(g: &Global, i: Install) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let url = path(team, &i.component, &i.plugin);
    let mut body = Map::new();
    if let Some(v) = i.version {
        body.insert("version".into(), json!(v));
    }
    if let Some(m) = i.memory {
        body.insert("memory_mib".into(), json!(m));
    }
    if let Some(c) = i.cpu {
        body.insert("cpu_millis".into(), json!(c));
    }
    if i.disabled {
        body.insert("enabled".into(), json!(false));
    }
    if i.privileged {
        body.insert("privileged".into(), json!(true));
    }
    if !(i.set.is_empty() && i.set_port.is_empty() && i.set_downstream.is_empty()) {
        // Merge into the current values so one --set does not reset the others.
        let current = client
            .get(&url)
            .await
            .ok()
            .map(|v| v["values"].clone())
            .unwrap_or_else(|| json!({}));
        let mut values = current.as_object().cloned().unwrap_or_default();
        for s in &i.set {
            let base = values.entry("base").or_insert_with(|| json!({}));
            set_into(base.as_object_mut().expect("an object"), s, "--set")?;
        }
        for (flags, key, name) in [
            (&i.set_port, "ports", "--set-port"),
            (&i.set_downstream, "downstream", "--set-downstream"),
        ] {
            for s in flags {
                let (scope, rest) = split_scope(s).ok_or_else(|| {
                    anyhow!(
                        "{name} {s}: give {}.ITEM=VALUE",
                        if key == "ports" { "PORT" } else { "COMPONENT:PORT" }
                    )
                })?;
                let group = values.entry(key).or_insert_with(|| json!({}));
                let entry = group
                    .as_object_mut()
                    .expect("an object")
                    .entry(scope)
                    .or_insert_with(|| json!({}));
                set_into(entry.as_object_mut().expect("an object"), rest, name)?;
            }
        }
        body.insert("values".into(), Value::Object(values));
    }
    let v = client.call(Method::PUT, &url, Some(&Value::Object(body))).await?;
    print(&v, g.output, &INSTALL_COLUMNS);
    Ok(())
}

pub async fn uninstall(g: &Global, t: Target2) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    client
        .call(Method::DELETE, &path(team, &t.component, &t.plugin), None)
        .await?;
    eprintln!("{} uninstalled from {}", t.plugin, t.component);
    Ok(())
}

pub async fn switch(g: &Global, t: Target2, on: bool) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let url = path(team, &t.component, &t.plugin);
    client
        .get(&url)
        .await
        .with_context(|| format!("{} is not installed on {}", t.plugin, t.component))?;
    let v = client.call(Method::PUT, &url, Some(&json!({"enabled": on}))).await?;
    print(&v, g.output, &INSTALL_COLUMNS);
    Ok(())
}

pub async fn rotate_token(g: &Global, t: Target2) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let v = client
        .call(
            Method::POST,
            &format!("{}/rotate-token", path(team, &t.component, &t.plugin)),
            None,
        )
        .await?;
    if g.output == crate::cli::Format::Table {
        println!(
            "{} on {}: discovery token rotated; the old token no longer works, the component's pods get the new one when it is redeployed",
            t.plugin, t.component
        );
    } else {
        print(&v, g.output, &[]);
    }
    Ok(())
}

pub async fn upgrade(g: &Global, u: Upgrade) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let version = match u.version {
        Some(v) => v,
        None => {
            let versions = client
                .get(&format!("/teams/{team}/plugins/{}/versions", u.plugin))
                .await?;
            versions
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["status"] == "succeeded")
                .filter_map(|v| v["number"].as_u64())
                .max()
                .ok_or_else(|| {
                    anyhow!(
                        "plug-in {} has no succeeded version: build one with `kato plugin build {}`",
                        u.plugin,
                        u.plugin
                    )
                })? as u32
        }
    };
    let url = path(team, &u.component, &u.plugin);
    client
        .get(&url)
        .await
        .with_context(|| format!("{} is not installed on {}", u.plugin, u.component))?;
    let v = client
        .call(Method::PUT, &url, Some(&json!({"version": version})))
        .await?;
    print(&v, g.output, &INSTALL_COLUMNS);
    Ok(())
}

pub async fn render(g: &Global, r: Render) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let mut url = format!("/teams/{team}/components/{}/manifests?target={}", r.component, r.target);
    if let Some(s) = &r.sidecars {
        url.push_str(&format!("&sidecars={s}"));
    }
    let yaml = client.raw(Method::GET, &url, None).await?;
    print!("{yaml}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_scope;

    #[test]
    fn a_scoped_value_may_hold_dots() {
        assert_eq!(
            split_scope("80.SINK_URL=http://log-sink.example:8080/in"),
            Some(("80", "SINK_URL=http://log-sink.example:8080/in"))
        );
        assert_eq!(split_scope("db:5432.TIMEOUT=1.5"), Some(("db:5432", "TIMEOUT=1.5")));
        assert_eq!(split_scope("80.LEVEL="), Some(("80", "LEVEL=")));
        assert_eq!(split_scope("LEVEL=a.b"), None);
        assert_eq!(split_scope("80.LEVEL"), None);
    }
}
