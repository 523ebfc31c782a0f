//! The discovery document: an installation's live config, served to the plug-in (DESIGN §6).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::install::Installation;
use crate::value::{Effective, Resolved};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryPort {
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryDownstream {
    pub component: String,
    pub port: u16,
    pub protocol: String,
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryDocument {
    pub revision: u64,
    pub plugin: String,
    pub version: u32,
    pub base: Map<String, Value>,
    pub ports: Vec<DiscoveryPort>,
    pub downstream: Vec<DiscoveryDownstream>,
}

fn options(values: &Effective) -> Map<String, Value> {
    values.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

impl DiscoveryDocument {
    /// `base` carries only `discovery`-injected values: env-injected ones are the container's.
    pub fn new(inst: &Installation, resolved: &Resolved) -> Self {
        let base = if resolved.base_is_env {
            Map::new()
        } else {
            options(&resolved.base)
        };
        DiscoveryDocument {
            revision: inst.revision,
            plugin: inst.plugin.to_string(),
            version: inst.version,
            base,
            ports: resolved
                .ports
                .iter()
                .map(|p| DiscoveryPort {
                    port: p.port.port,
                    protocol: p.port.protocol.to_string(),
                    listen_port: inst.listen_ports.get(&p.port.port).copied(),
                    options: options(&p.values),
                })
                .collect(),
            downstream: resolved
                .downstream
                .iter()
                .map(|d| DiscoveryDownstream {
                    component: d.component.to_string(),
                    port: d.port.port,
                    protocol: d.port.protocol.to_string(),
                    options: options(&d.values),
                })
                .collect(),
        }
    }

    /// Rainbond's ResourceSpec JSON, so existing Kato/Rainbond plug-ins work unchanged.
    pub fn to_resource_spec(&self, team: &str, component: &str) -> Value {
        let base_ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                serde_json::json!({
                    "service_alias": component, "service_id": component, "port": p.port,
                    "listen_port": p.listen_port.unwrap_or(p.port), "protocol": p.protocol,
                    "options": p.options,
                })
            })
            .collect();
        let base_services: Vec<Value> = self
            .downstream
            .iter()
            .map(|d| {
                serde_json::json!({
                    "service_alias": component, "service_id": component,
                    "depend_service_alias": d.component, "depend_service_id": d.component,
                    "port": d.port, "protocol": d.protocol, "options": d.options,
                })
            })
            .collect();
        serde_json::json!({
            "base_ports": base_ports,
            "base_services": base_services,
            "base_normal": {"options": self.base},
            "tenant_id": team,
        })
    }
}
