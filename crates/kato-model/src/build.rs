//! What a version's image was made from: recorded by the build, shown on the version.

use serde::{Deserialize, Serialize};

/// Where a version's image came from. An `image` source has only `image` and `source_image`
/// (and `copied_from` when copied into the platform registry); a Dockerfile build has the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The git repo as the source names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The commit the ref resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The Dockerfile, relative to the repo root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The final stage's `FROM` image, and its digest when the builder knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_digest: Option<String>,
    /// The image as it was pulled from its source registry, pinned (image sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image: Option<String>,
    /// The digest pushed to (or found in) the platform registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
