//! `kato deploy`, `stop`, `status` and `logs`.

use anyhow::{Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::team_of;
use super::wait::{self, Waited, failure};
use crate::cli::{ComponentArg, Deploy, Format, Global, Logs};
use crate::client::Client;
use crate::output::{Column, field, print};

/// Deploys; with `--wait`, waits until the component runs. Exits non-zero, with the reason,
/// when the status it ends with tells of a failure.
pub async fn deploy(g: &Global, d: Deploy) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let base = format!("/teams/{team}/components/{}", d.component);
    let status = client.call(Method::POST, &format!("{base}/deploy"), None).await?;
    if !d.wait {
        print_status(&status, g.output);
        return match failure(&status) {
            Some(why) => bail!("deploy of {} failed: {why}", d.component),
            None => Ok(()),
        };
    }
    let path = format!("{base}/status");
    let waited = wait::until_running(
        &d.component,
        status,
        d.timeout,
        wait::INTERVAL,
        || client.get(&path),
        |line| eprintln!("{line}"),
    )
    .await?;
    match waited {
        Waited::Running(status) => {
            print_status(&status, g.output);
            Ok(())
        }
        Waited::Failed(status, why) => {
            print_status(&status, g.output);
            bail!("deploy of {} failed: {why}", d.component)
        }
        Waited::TimedOut(status) => {
            print_status(&status, g.output);
            bail!(
                "{} is not running after {}s: {}",
                d.component,
                d.timeout.as_secs(),
                wait::progress(&d.component, &status)
            )
        }
    }
}

pub async fn stop(g: &Global, c: ComponentArg) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let path = format!("/teams/{team}/components/{}/stop", c.component);
    let status = client.call(Method::POST, &path, None).await?;
    print_status(&status, g.output);
    match failure(&status) {
        Some(why) => bail!("stop of {} failed: {why}", c.component),
        None => Ok(()),
    }
}

/// Prints the status; exits non-zero when it tells of a failure (running, starting and
/// stopped do not), so that scripts can check a component with `kato status`.
pub async fn status(g: &Global, c: ComponentArg) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let status = client
        .get(&format!("/teams/{team}/components/{}/status", c.component))
        .await?;
    print_status(&status, g.output);
    match failure(&status) {
        Some(why) => bail!("{} has failed: {why}", c.component),
        None => Ok(()),
    }
}

pub async fn logs(g: &Global, l: Logs) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let mut path = format!("/teams/{team}/components/{}/logs?follow={}", l.component, l.follow);
    if let Some(c) = &l.container {
        path.push_str(&format!("&container={c}"));
    }
    if let Some(n) = l.tail {
        path.push_str(&format!("&tail={n}"));
    }
    client.stream(&path, &mut std::io::stdout()).await
}

/// One row per container, under a line with the component's state; then one row per plug-in
/// and pod with the discovery revision the pod applied and those it rejected.
fn print_status(status: &Value, format: Format) {
    if format != Format::Table {
        print(status, format, &[]);
        return;
    }
    let state = field(status, "state");
    let mut head = format!("{} {}: {state}", field(status, "component"), field(status, "target"));
    if let Some(m) = status["message"].as_str() {
        head.push_str(&format!(" ({m})"));
    }
    println!("{head}");
    if let Some(e) = status["error"].as_str()
        && status["message"].as_str() != Some(e)
    {
        println!("last deploy failed: {e}");
    }
    let retry = &status["deploy"];
    if let Some(n) = retry["attempts"].as_u64() {
        println!(
            "retrying: {n} failed attempts, next try at {}",
            field(retry, "next_try_at")
        );
    }
    let rows: Vec<Value> = status["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pod| {
            pod["containers"].as_array().into_iter().flatten().map(move |c| {
                let mut row = c.clone();
                row["pod"] = pod["name"].clone();
                row
            })
        })
        .collect();
    if !rows.is_empty() {
        print(&Value::Array(rows), Format::Table, &CONTAINER_COLUMNS);
    }
    let acks = ack_rows(status);
    if !acks.is_empty() {
        println!();
        print(&Value::Array(acks), Format::Table, &ACK_COLUMNS);
    }
}

/// Per installed plug-in, one row per pod that reported (or one row without a pod).
fn ack_rows(status: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for plugin in status["plugins"].as_array().into_iter().flatten() {
        let pods = plugin["acks"].as_array().map(Vec::as_slice).unwrap_or_default();
        if pods.is_empty() {
            rows.push(plugin.clone());
        }
        for pod in pods {
            let mut row = plugin.clone();
            row["pod"] = pod["pod"].clone();
            row["applied_revision"] = pod["applied_revision"].clone();
            row["rejected"] = json!(super::rejections(pod));
            rows.push(row);
        }
    }
    rows
}

const ACK_COLUMNS: [Column; 7] = [
    ("PLUGIN", |v| field(v, "name")),
    ("VERSION", |v| field(v, "version")),
    ("REVISION", |v| field(v, "revision")),
    ("ENABLED", |v| field(v, "enabled")),
    ("POD", |v| field(v, "pod")),
    ("APPLIED", |v| field(v, "applied_revision")),
    ("REJECTED", |v| field(v, "rejected")),
];

const CONTAINER_COLUMNS: [Column; 9] = [
    ("POD", |v| field(v, "pod")),
    ("CONTAINER", |v| field(v, "name")),
    ("KIND", |v| {
        if v["init"].as_bool() == Some(true) {
            "init".into()
        } else {
            field(v, "role")
        }
    }),
    ("STATE", |v| field(v, "state")),
    ("RESTARTS", |v| field(v, "restarts")),
    ("EXIT", |v| field(v, "exit_code")),
    ("REASON", |v| field(v, "reason")),
    ("VERSION", |v| field(&v["plugin"], "version")),
    ("REVISION", |v| field(&v["plugin"], "revision")),
];
