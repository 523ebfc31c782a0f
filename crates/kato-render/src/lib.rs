//! Kato's renderer: a component and its plug-in installations → Kubernetes objects (DESIGN §5).
//!
//! [`render`] is pure and deterministic: the same input gives byte-identical YAML. It does no
//! I/O; the podman engine plays the objects it returns and a cluster applies them.
#![forbid(unsafe_code)]

mod containers;
mod env;
mod error;
mod expand;
pub mod names;
mod objects;
mod options;
mod plan;
mod probe;
mod text;
mod yaml;

use kato_model::{ComponentSpec, Installation, PluginKind, TeamName, Version, VersionStatus};

pub use error::RenderError;
pub use expand::{expand_dependent_into, expand_vars};
pub use objects::{LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_TEAM, Object};
pub use options::{ParseOptionError, RenderOptions, SidecarMode, Target};

/// An installation with the version it pins and its discovery token.
#[derive(Debug, Clone, Copy)]
pub struct PluginInstance<'a> {
    pub installation: &'a Installation,
    pub version: &'a Version,
    pub discovery_token: &'a str,
}

/// Everything one component's workload is rendered from.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub team: &'a TeamName,
    pub component: &'a ComponentSpec,
    /// Specs of the components in `component.depends_on`. Downstream values only reach the
    /// plug-in through discovery, so they do not change the objects.
    pub downstream: Vec<&'a ComponentSpec>,
    /// Installations in install order, disabled ones included.
    pub plugins: Vec<PluginInstance<'a>>,
}

/// The objects of a workload: Secrets sorted by name, the Service (when the component has
/// ports), then the Deployment (kubernetes) or Pod (podman).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub objects: Vec<Object>,
}

impl Rendered {
    /// Multi-document YAML, documents separated by `---`.
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml(&self.objects, yaml::Writer::Direct)
    }
    /// [`Rendered::to_yaml`] with every object written through serde, which the direct writer
    /// must match byte for byte.
    #[doc(hidden)]
    pub fn to_yaml_through_serde(&self) -> String {
        yaml::to_yaml(&self.objects, yaml::Writer::Serde)
    }
    /// A JSON array of the objects.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.objects
                .iter()
                .map(|o| serde_json::to_value(o).expect("Kubernetes objects serialize to JSON"))
                .collect(),
        )
    }
}

/// A plug-in that gets a container: enabled, its version succeeded, with its image.
struct Active<'w> {
    inst: &'w PluginInstance<'w>,
    image: &'w str,
    kind: PluginKind,
}

/// Checks the installations and keeps the ones that run, in install order.
fn active_plugins<'w>(w: &'w Workload<'w>) -> Result<Vec<Active<'w>>, RenderError> {
    let component = w.component.name.as_str();
    let mut active = Vec::with_capacity(w.plugins.len());
    for (i, p) in w.plugins.iter().enumerate() {
        let (inst, version) = (p.installation, p.version);
        if inst.plugin != version.spec.name {
            return Err(RenderError::PluginMismatch {
                component: component.to_owned(),
                installed: inst.plugin.to_string(),
                given: version.spec.name.to_string(),
                version: version.number,
            });
        }
        if inst.version != version.number {
            return Err(RenderError::VersionMismatch {
                component: component.to_owned(),
                plugin: inst.plugin.to_string(),
                pinned: inst.version,
                given: version.number,
            });
        }
        if w.plugins[..i].iter().any(|o| o.installation.plugin == inst.plugin) {
            return Err(RenderError::DuplicatePlugin {
                component: component.to_owned(),
                plugin: inst.plugin.to_string(),
            });
        }
        if !inst.enabled || version.status != VersionStatus::Succeeded {
            continue;
        }
        let Some(image) = version.image.as_deref() else {
            return Err(RenderError::MissingImage {
                component: component.to_owned(),
                plugin: inst.plugin.to_string(),
                version: version.number,
            });
        };
        active.push(Active {
            inst: p,
            image,
            kind: version.spec.kind,
        });
    }
    Ok(active)
}

/// Renders a component and its installations into Kubernetes objects (DESIGN §5).
pub fn render(w: &Workload<'_>, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    Ok(plan::plan(w, opts)?.into_objects())
}

/// The YAML of [`render`]'s objects (what [`Rendered::to_yaml`] gives), written straight from
/// the model without building the objects: the manifests endpoint's path.
pub fn render_yaml(w: &Workload<'_>, opts: &RenderOptions) -> Result<String, RenderError> {
    Ok(yaml::write_plan(&plan::plan(w, opts)?))
}
