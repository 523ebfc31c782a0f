//! Test fixtures: a team, a component and its installations, read from `tests/fixtures/*.yaml`.
#![allow(dead_code)]

pub mod objects;

use kato_model::{ComponentSpec, Installation, TeamName, Version};
use kato_render::{PluginInstance, RenderOptions, SidecarMode, Target, Workload};
use serde::Deserialize;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
pub const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub team: TeamName,
    pub component: ComponentSpec,
    #[serde(default)]
    pub downstream: Vec<ComponentSpec>,
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

impl Fixture {
    /// Parses a fixture and checks it obeys the model's rules, so tests render only what the
    /// API could have stored.
    pub fn parse(yaml: &str) -> Fixture {
        let mut f: Fixture = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad fixture: {e}"));
        f.component.validate().unwrap_or_else(|e| panic!("component: {e}"));
        let downstream: Vec<&ComponentSpec> = f.downstream.iter().collect();
        for p in &mut f.plugins {
            let name = p.installation.plugin.to_string();
            p.version.spec.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            p.installation.values = p
                .installation
                .values
                .validate(&p.version.spec, &f.component, &downstream)
                .unwrap_or_else(|e| panic!("{name} values: {e}"));
        }
        f
    }

    pub fn load(name: &str) -> Fixture {
        let path = format!("{FIXTURES}/{name}.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Self::parse(&text)
    }

    pub fn workload(&self) -> Workload<'_> {
        Workload {
            team: &self.team,
            component: &self.component,
            downstream: self.downstream.iter().collect(),
            plugins: self
                .plugins
                .iter()
                .map(|p| PluginInstance {
                    installation: &p.installation,
                    version: &p.version,
                    discovery_token: &p.token,
                })
                .collect(),
        }
    }
}

pub fn options(target: Target, sidecars: SidecarMode) -> RenderOptions {
    RenderOptions {
        target,
        sidecars: Some(sidecars),
        discovery_base_url: "http://kato.kato-system:7070".into(),
        redact_secrets: false,
    }
}

/// Every fixture under `tests/fixtures`, by name, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixtures directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

pub const COMBINATIONS: [(SidecarMode, Target); 4] = [
    (SidecarMode::Native, Target::Kubernetes),
    (SidecarMode::Classic, Target::Kubernetes),
    (SidecarMode::Native, Target::Podman),
    (SidecarMode::Classic, Target::Podman),
];

/// [`kato_render::render`], checking on the way that [`kato_render::render_yaml`] writes the
/// same YAML straight from the model (or fails with the same error): every test that renders
/// checks both paths.
pub fn render(w: &Workload<'_>, opts: &RenderOptions) -> Result<kato_render::Rendered, kato_render::RenderError> {
    let objects = kato_render::render(w, opts);
    let yaml = kato_render::render_yaml(w, opts);
    match (&objects, &yaml) {
        (Ok(r), Ok(y)) => {
            let from_objects = r.to_yaml();
            if &from_objects != y {
                let line = y.lines().zip(from_objects.lines()).position(|(a, b)| a != b);
                panic!("render_yaml differs at line {line:?}\nfrom the model:\n{y}\nfrom the objects:\n{from_objects}");
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!(
            "render and render_yaml disagree: {:?} / {:?}",
            objects.as_ref().map(|_| "objects"),
            yaml.as_ref().map(|_| "yaml")
        ),
    }
    objects
}
