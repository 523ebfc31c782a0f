//! Copying an image into the platform registry over the OCI distribution API, blob by blob
//! (no engine pull): the manifest bytes are pushed unchanged, so the copy has the source's digest.

use std::collections::HashSet;
use std::time::Instant;

use futures_util::StreamExt;

use kato_model::ImageRef;
use oci_client::Reference;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use serde_json::Value;

use crate::error::{Call, ResolveError};
use crate::registry::auth_for;
use crate::resolve::{Pinned, Resolver};

pub(crate) const ACCEPTED: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A copied image: where it came from and where it is now, both pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub source: Pinned,
    /// `platform-registry/repository@sha256:…`.
    pub pinned: Pinned,
    /// Blobs uploaded (those the platform registry already had are skipped).
    pub blobs_pushed: usize,
}

impl Resolver {
    /// Copies `image` to `dest` (`host[/namespace]/repository:tag`) and pins the copy.
    pub async fn copy(&self, image: &ImageRef, dest: &str) -> Result<Copied, ResolveError> {
        let timeout = self.timeout().saturating_mul(6);
        match tokio::time::timeout(timeout, self.copy_inner(image, dest)).await {
            Ok(r) => r,
            Err(_) => Err(ResolveError::Timeout {
                registry: image.reference().registry().to_owned(),
                after: timeout,
            }),
        }
    }

    async fn copy_inner(&self, image: &ImageRef, dest: &str) -> Result<Copied, ResolveError> {
        let started = Instant::now();
        let src = image.reference();
        let dst: Reference = dest.parse().map_err(|e| ResolveError::InvalidReference {
            image: dest.to_owned(),
            detail: format!("{e}"),
        })?;
        let src_auth = auth_for(self.credentials(), src.registry());
        let dst_auth = auth_for(self.credentials(), dst.registry());
        let src_call = Call {
            image: image.as_str(),
            registry: src.registry(),
            credentials_given: src_auth != RegistryAuth::Anonymous,
            timeout: self.timeout(),
        };
        let dst_call = Call {
            image: dest,
            registry: dst.registry(),
            credentials_given: dst_auth != RegistryAuth::Anonymous,
            timeout: self.timeout(),
        };
        let from = self.client_for(src.resolve_registry());
        let to = self.client_for(dst.resolve_registry());
        to.store_auth_if_needed(dst.resolve_registry(), &dst_auth).await;
        self.retrying(|| async {
            to.auth(&dst, &dst_auth, oci_client::RegistryOperation::Push)
                .await
                .map_err(|e| dst_call.attempt(e))
        })
        .await?;

        let pull_manifest = |reference: Reference| {
            let (from, src_auth, src_call) = (&from, &src_auth, &src_call);
            self.retrying(move || {
                let reference = reference.clone();
                async move {
                    from.pull_manifest_raw(&reference, src_auth, &ACCEPTED)
                        .await
                        .map_err(|e| src_call.attempt(e))
                }
            })
        };
        let (bytes, digest) = pull_manifest(src.clone()).await?;
        let mut blobs_pushed = 0;
        let mut present = HashSet::new();
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| ResolveError::Registry {
            image: image.as_str().to_owned(),
            detail: format!("its manifest is not JSON ({e})"),
        })?;
        if let Some(children) = doc["manifests"].as_array() {
            for child in children {
                let Some(child_digest) = child["digest"].as_str() else {
                    continue;
                };
                let child_src = src.clone_with_digest(child_digest.to_owned());
                let (child_bytes, _) = pull_manifest(child_src.clone()).await?;
                let child_doc: Value = serde_json::from_slice(&child_bytes).unwrap_or_default();
                blobs_pushed += self
                    .copy_blobs(&child_doc, &child_src, &dst, &src_call, &dst_call, &mut present)
                    .await?;
                let child_dst = dst.clone_with_digest(child_digest.to_owned());
                self.push_manifest(&to, &child_dst, child_bytes, &child_doc, &dst_call)
                    .await?;
            }
        } else {
            blobs_pushed += self
                .copy_blobs(&doc, src, &dst, &src_call, &dst_call, &mut present)
                .await?;
        }
        self.push_manifest(&to, &dst, bytes, &doc, &dst_call).await?;
        let source_text = format!("{}/{}@{digest}", src.registry(), src.repository());
        let pinned_text = format!("{}/{}@{digest}", dst.registry(), dst.repository());
        tracing::debug!(image = %image, copy = %pinned_text, blobs_pushed, elapsed_ms = started.elapsed().as_millis(), "copied image");
        Ok(Copied {
            source: Pinned {
                reference: source_text,
                digest: digest.clone(),
            },
            pinned: Pinned {
                reference: pinned_text,
                digest,
            },
            blobs_pushed,
        })
    }

    /// Copies the blobs of one manifest that the platform registry lacks, all at once; each is
    /// streamed from the pull into the push (one `PUT` of known length), never held whole.
    /// `present` holds the digests this copy already knows the platform has (checked or sent):
    /// those are not asked about again.
    #[allow(clippy::too_many_arguments)]
    async fn copy_blobs(
        &self,
        manifest: &Value,
        src: &Reference,
        dst: &Reference,
        src_call: &Call<'_>,
        dst_call: &Call<'_>,
        present: &mut HashSet<String>,
    ) -> Result<usize, ResolveError> {
        let from = self.client_for(src.resolve_registry());
        let to = self.client_for(dst.resolve_registry());
        let mut descriptors: Vec<OciDescriptor> = Vec::new();
        for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().into_iter().flatten()) {
            if let Ok(desc) = serde_json::from_value::<OciDescriptor>(d.clone())
                && !present.contains(&desc.digest)
                && !descriptors.iter().any(|known| known.digest == desc.digest)
            {
                descriptors.push(desc);
            }
        }
        let (from, to) = (&from, &to);
        let copies = descriptors.iter().map(|desc| async move {
            let exists = self
                .retrying(|| async { to.blob_exists(dst, &desc.digest).await.map_err(|e| dst_call.attempt(e)) })
                .await?;
            if exists {
                return Ok(false);
            }
            // One attempt pulls and pushes: a failed transfer starts over from the source.
            self.retrying(|| async {
                let layer = from
                    .pull_blob_stream(src, desc)
                    .await
                    .map_err(|e| src_call.attempt(e))?;
                let size = layer.content_length.unwrap_or(u64::try_from(desc.size).unwrap_or(0));
                let body = layer.map(|chunk| chunk.map_err(OciDistributionError::from));
                to.push_blob_stream(dst, body, &desc.digest, Some(size))
                    .await
                    .map_err(|e| dst_call.attempt(e))
            })
            .await
            .map(|_| true)
        });
        let sent = futures_util::future::try_join_all(copies).await?;
        present.extend(descriptors.into_iter().map(|d| d.digest));
        Ok(sent.into_iter().filter(|s| *s).count())
    }

    async fn push_manifest(
        &self,
        to: &oci_client::Client,
        dst: &Reference,
        bytes: bytes::Bytes,
        doc: &Value,
        call: &Call<'_>,
    ) -> Result<(), ResolveError> {
        let media_type = doc["mediaType"].as_str().unwrap_or(if doc["manifests"].is_array() {
            ACCEPTED[1]
        } else {
            ACCEPTED[0]
        });
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| ResolveError::Registry {
            image: call.image.to_owned(),
            detail: format!("odd media type `{media_type}`"),
        })?;
        self.retrying(|| async {
            to.push_manifest_raw(dst, bytes.clone(), content_type.clone())
                .await
                .map_err(|e| call.attempt(e))
        })
        .await?;
        Ok(())
    }
}
