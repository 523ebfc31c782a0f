//! JSON shapes the API answers with. Secret values never leave through here.

use kato_model::{Installation, PluginSpec, Version};
use kato_store::{InstallationRecord, PluginRecord, VersionRecord};
use serde_json::{Value, json};

/// A plug-in's draft as clients see it: the defaults of secret items replaced by the list of
/// their `group.item` names, as secret values are.
pub fn plugin(r: &PluginRecord) -> Value {
    let mut v = plugin_spec(&r.spec);
    v["created_at"] = r.created_at.clone().into();
    v["updated_at"] = r.updated_at.clone().into();
    v
}

pub fn version(r: &VersionRecord) -> Value {
    let mut v = version_body(&r.version);
    v["created_at"] = r.created_at.clone().into();
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
