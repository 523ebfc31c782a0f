//! JSON shapes the API answers with. Secret values never leave through here.

use std::borrow::Cow;

use kato_model::{Installation, PluginSpec, Version, VersionStatus};
use kato_store::{InstallationRecord, PluginRecord, PluginSummary, VersionRecord};
use serde_json::{Value, json};

/// A plug-in's draft as clients see it: the defaults of secret items replaced by the list of
/// their `group.item` names, as secret values are.
pub fn plugin(r: &PluginRecord) -> Value {
    let mut v = plugin_spec(&r.spec);
    v["created_at"] = r.created_at.clone().into();
    v["updated_at"] = r.updated_at.clone().into();
    v
}

/// The team's list of plug-ins as JSON: each entry is the draft as [`plugin`] shows it, with
/// `latest_version` (`{number, status}` of the newest version, `null` before the first) and
/// `used_by` (how many components install it). Written straight to bytes, without a `Value`
/// tree per entry: a team of 1,000 plug-ins is ~0.5 MB.
/// `GET …/plugins?view=brief`: what a list shows of each plug-in.
pub fn plugin_briefs(list: &[kato_store::PluginBrief]) -> serde_json::Result<Vec<u8>> {
    let entries: Vec<Value> = list
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "description": b.description,
                "kind": b.kind,
                "memory_mib": b.memory_mib,
                "latest_version": b.latest_version.map(|(number, status)| json!({"number": number, "status": status})),
                "used_by": b.used_by,
            })
        })
        .collect();
    serde_json::to_vec(&entries)
}

pub fn plugin_list(list: &[PluginSummary]) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Latest {
        number: u32,
        status: VersionStatus,
    }
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        #[serde(flatten)]
        spec: Cow<'a, PluginSpec>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        secret_defaults_set: Vec<String>,
        created_at: &'a str,
        updated_at: &'a str,
        latest_version: Option<Latest>,
        used_by: u64,
    }
    let entries: Vec<Entry> = list
        .iter()
        .map(|s| {
            let spec = &s.plugin.spec;
            let secret = spec
                .config_groups
                .iter()
                .flat_map(|g| &g.items)
                .any(|i| i.secret && i.default.is_some());
            // Only a draft with a secret default needs the redacted copy.
            let (spec, secret_defaults_set) = if secret {
                let (shown, hidden) = spec.redacted();
                (Cow::Owned(shown), hidden)
            } else {
                (Cow::Borrowed(spec), Vec::new())
            };
            Entry {
                spec,
                secret_defaults_set,
                created_at: &s.plugin.created_at,
                updated_at: &s.plugin.updated_at,
                latest_version: s.latest_version.map(|(number, status)| Latest { number, status }),
                used_by: s.used_by,
            }
        })
        .collect();
    serde_json::to_vec(&entries)
}

/// A version with when and by whom it was created (`created_by`: `admin`, `token <name>`, or
/// `null` for versions from before authors were recorded).
pub fn version(r: &VersionRecord) -> Value {
    let mut v = version_body(&r.version);
    v["created_at"] = r.created_at.clone().into();
    v["created_by"] = r.created_by.clone().into();
    v["finished_at"] = r.finished_at.clone().into();
    v["provenance"] = serde_json::to_value(&r.provenance).unwrap_or_default();
    v
}

fn version_body(v: &Version) -> Value {
    json!({
        "number": v.number,
        "status": v.status,
        "image": v.image,
        "error": v.error,
        "plugin": plugin_spec(&v.spec),
    })
}

fn plugin_spec(spec: &PluginSpec) -> Value {
    let (shown, secret_defaults) = spec.redacted();
    let mut v = serde_json::to_value(&shown).unwrap_or_default();
    if !secret_defaults.is_empty() {
        v["secret_defaults_set"] = secret_defaults.into();
    }
    v
}

/// An installation as clients see it: secret values replaced by the list of their names.
pub fn installation(i: &Installation, version: &Version) -> Value {
    let (values, secrets) = i.values.redacted(&version.spec);
    let listen: serde_json::Map<String, Value> = i
        .listen_ports
        .iter()
        .map(|(p, l)| (p.to_string(), Value::from(*l)))
        .collect();
    json!({
        "plugin": i.plugin,
        "kind": version.spec.kind,
        "version": i.version,
        "image": version.image,
        "enabled": i.enabled,
        "memory_mib": i.memory_mib,
        "cpu_millis": i.cpu_millis,
        "privileged": i.privileged,
        "values": values,
        "secret_values_set": secrets,
        "listen_ports": listen,
        "revision": i.revision,
    })
}

pub fn installation_record(r: &InstallationRecord, version: &Version) -> Value {
    installation(&r.installation, version)
}

/// Adds what the plug-in's pods reported applying (see `discovery::pod_reports`).
pub fn with_pods(mut v: Value, pods: Option<Value>) -> Value {
    v["pods"] = pods.unwrap_or_else(|| Value::Array(Vec::new()));
    v
}
