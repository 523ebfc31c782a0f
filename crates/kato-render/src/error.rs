//! Why a workload could not be rendered; each message names the component, the plug-in and the fix.

/// A workload that cannot be turned into Kubernetes objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "version {version} of plug-in `{plugin}` on component `{component}` succeeded but records no image: \
         build a new version of the plug-in, or install another version"
    )]
    MissingImage {
        component: String,
        plugin: String,
        version: u32,
    },
    #[error(
        "installation of `{installed}` on component `{component}` was given version {version} of plug-in \
         `{given}`: pass the version of the installed plug-in"
    )]
    PluginMismatch {
        component: String,
        installed: String,
        given: String,
        version: u32,
    },
    #[error(
        "installation of `{plugin}` on component `{component}` pins version {pinned}, but version {given} was \
         given: pass the pinned version"
    )]
    VersionMismatch {
        component: String,
        plugin: String,
        pinned: u32,
        given: u32,
    },
    #[error("plug-in `{plugin}` is installed twice on component `{component}`: keep one installation")]
    DuplicatePlugin { component: String, plugin: String },
}
