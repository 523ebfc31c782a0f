//! Rendered components for the Kubernetes driver's tests, from the same YAML shape the renderer's
//! fixtures use: a team, a component and its installations.
#![allow(dead_code)]

use kato_model::{ComponentSpec, Installation, TeamName, Version};
use kato_render::{PluginInstance, RenderOptions, Rendered, SidecarMode, Target, Workload};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub team: TeamName,
    pub component: ComponentSpec,
    #[serde(default)]
    pub plugins: Vec<FixturePlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixturePlugin {
    pub token: String,
    pub version: Version,
    pub installation: Installation,
}

/// Parses a workload, checks it as the API would, and renders it for Kubernetes.
pub fn render(yaml: &str) -> Rendered {
    let mut f: Fixture = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad fixture: {e}"));
    f.component.validate().unwrap_or_else(|e| panic!("component: {e}"));
    for p in &mut f.plugins {
        p.version.spec.validate().unwrap_or_else(|e| panic!("plugin: {e}"));
        p.installation.values = p
            .installation
            .values
            .validate(&p.version.spec, &f.component, &[])
            .unwrap_or_else(|e| panic!("values: {e}"));
    }
    let workload = Workload {
        team: &f.team,
        component: &f.component,
        downstream: Vec::new(),
        plugins: f
            .plugins
            .iter()
            .map(|p| PluginInstance {
                installation: &p.installation,
                version: &p.version,
                discovery_token: &p.token,
            })
            .collect(),
    };
    let opts = RenderOptions {
        target: Target::Kubernetes,
        sidecars: Some(SidecarMode::Native),
        discovery_base_url: "http://kato.kato-system:7070".into(),
        redact_secrets: false,
    };
    kato_render::render(&workload, &opts).unwrap_or_else(|e| panic!("render: {e}"))
}

/// `web` in team `shop`, with one port and, when `exporter_memory` is set, a general plug-in
/// `exporter` (which renders a Secret).
pub fn web(exporter_memory: Option<u32>) -> Rendered {
    let mut yaml = String::from(
        "team: shop
component:
  name: web
  image: nginx:1.27
  ports: [{port: 8080, protocol: http}]
  memory_mib: 256
",
    );
    if let Some(mib) = exporter_memory {
        yaml.push_str(&format!(
            "plugins:
  - token: tok-exporter-0001
    version:
      number: 5
      status: succeeded
      image: registry.kato.local/shop/exporter@sha256:f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6
      spec:
        name: exporter
        kind: general
        source: {{image: \"registry.kato.local/tools/exporter:0.9\"}}
    installation:
      plugin: exporter
      version: 5
      enabled: true
      memory_mib: {mib}
      revision: 1
"
        ));
    }
    render(&yaml)
}
