//! Components: the applications plug-ins are installed on.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::names::{ComponentName, EnvName, ImageRef, VolumeName};
use crate::plugin::{Command, check_cpu, check_memory};
use crate::protocol::Protocol;
use crate::{Invalid, invalid};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: EnvName,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// Storage shared by the app and every plug-in container, mounted at the same path in each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: VolumeName,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    pub name: ComponentName,
    pub image: ImageRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub depends_on: Vec<ComponentName>,
}

pub const DEFAULT_COMPONENT_MEMORY_MIB: u32 = 512;

fn default_memory() -> u32 {
    DEFAULT_COMPONENT_MEMORY_MIB
}
fn one() -> u32 {
    1
}

impl ComponentSpec {
    /// The rules for a component on its own; dependencies are checked against the team's
    /// components by the caller.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.name.as_str().starts_with("plugin-") {
            return Err(invalid(
                "name",
                "must not start with `plugin-`: that prefix names plug-in containers",
            ));
        }
        check_memory("memory_mib", self.memory_mib)?;
        check_cpu("cpu_millis", self.cpu_millis)?;
        if self.replicas > 1000 {
            return Err(invalid("replicas", "give 0-1000"));
        }
        let mut ports = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.port == 0 {
                return Err(invalid(format!("ports[{i}].port"), "give a port between 1 and 65535"));
            }
            if !ports.insert(p.port) {
                return Err(invalid(
                    format!("ports[{i}].port"),
                    format!("port {} is listed twice", p.port),
                ));
            }
        }
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if !v.path.starts_with('/') || v.path.contains("..") || v.path.len() > 1024 {
                return Err(invalid(
                    format!("volumes[{i}].path"),
                    format!("`{}` must be an absolute path, e.g. /var/log/nginx", v.path),
                ));
            }
            if !names.insert(v.name.as_str()) {
                return Err(invalid(
                    format!("volumes[{i}].name"),
                    format!("volume `{}` is listed twice", v.name),
                ));
            }
            if !paths.insert(v.path.trim_end_matches('/')) {
                return Err(invalid(
                    format!("volumes[{i}].path"),
                    format!("`{}` is mounted twice", v.path),
                ));
            }
        }
        let mut deps = BTreeSet::new();
        for (i, d) in self.depends_on.iter().enumerate() {
            if *d == self.name {
                return Err(invalid(
                    format!("depends_on[{i}]"),
                    "a component cannot depend on itself",
                ));
            }
            if !deps.insert(d) {
                return Err(invalid(format!("depends_on[{i}]"), format!("`{d}` is listed twice")));
            }
        }
        if let Some(c) = &self.command
            && matches!(c, Command::Exec(v) if v.is_empty())
        {
            return Err(invalid("command", "is empty: omit it to use the image's own command"));
        }
        Ok(())
    }

    pub fn has_protocol(&self, wanted: &[Protocol]) -> bool {
        self.ports.iter().any(|p| wanted.contains(&p.protocol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(yaml: &str) -> ComponentSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults() {
        let web = c("{name: web, image: nginx}");
        assert_eq!((web.memory_mib, web.replicas), (512, 1));
        web.validate().unwrap();
    }

    #[test]
    fn port_range_and_protocols() {
        assert!(serde_yaml::from_str::<ComponentSpec>("{name: w, image: n, ports: [{port: 70000}]}").is_err());
        let e = serde_yaml::from_str::<ComponentSpec>("{name: w, image: n, ports: [{port: 80, protocol: ftp}]}")
            .unwrap_err();
        assert!(e.to_string().contains("unknown protocol `ftp`"), "{e}");
        assert_eq!(
            c("{name: w, image: n, ports: [{port: 0}]}")
                .validate()
                .unwrap_err()
                .field,
            "ports[0].port"
        );
        assert_eq!(
            c("{name: w, image: n, ports: [{port: 80}, {port: 80}]}")
                .validate()
                .unwrap_err()
                .field,
            "ports[1].port"
        );
    }

    #[test]
    fn volumes_and_dependencies() {
        assert_eq!(
            c("{name: w, image: n, volumes: [{name: a, path: rel}]}")
                .validate()
                .unwrap_err()
                .field,
            "volumes[0].path"
        );
        assert_eq!(
            c("{name: w, image: n, depends_on: [w]}").validate().unwrap_err().field,
            "depends_on[0]"
        );
        assert_eq!(c("{name: plugin-x, image: n}").validate().unwrap_err().field, "name");
    }
}
