//! Test image contents: a one-file layer tarball, its OCI config and manifest, and multi-arch indexes.

use kato_model::ImageRef;
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image (or multi-arch index) pushed into a [`crate::TestRegistry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The tagged reference, e.g. `127.0.0.1:41234/team/app:1`.
    pub image: ImageRef,
    /// The digest of the manifest (or index) bytes pushed, `sha256:<64 hex>`.
    pub digest: String,
}

impl PushedImage {
    /// The reference pinned by digest, e.g. `127.0.0.1:41234/team/app@sha256:…`.
    pub fn pinned(&self) -> String {
        let r = self.image.reference();
        format!("{}/{}@{}", r.registry(), r.repository(), self.digest)
    }
}

/// Bytes to upload, with their media type and digest.
pub(crate) struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        let digest = sha256_digest(&bytes);
        Self {
            media_type,
            bytes,
            digest,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// One single-platform image: its layer, config and manifest.
pub(crate) struct ImageParts {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

/// Builds an image whose only file holds `label`, so distinct labels give distinct digests.
pub(crate) fn image_parts(label: &str, arch: &str) -> ImageParts {
    let layer = Blob::new(LAYER_MEDIA_TYPE, tar_with_one_file("kato-test.txt", label.as_bytes()));
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": ["/kato-test.txt"] },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    });
    let config = Blob::new(CONFIG_MEDIA_TYPE, to_json(&config));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    let manifest = Blob::new(MANIFEST_MEDIA_TYPE, to_json(&manifest));
    ImageParts {
        layer,
        config,
        manifest,
    }
}

/// An OCI image index over `(manifest, architecture)` pairs, as `docker buildx` pushes for multi-arch.
pub(crate) fn index(entries: &[(&Blob, &str)]) -> Blob {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(manifest, arch)| {
            let mut d = manifest.descriptor();
            d["platform"] = json!({ "architecture": arch, "os": "linux" });
            d
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests });
    Blob::new(INDEX_MEDIA_TYPE, to_json(&index))
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value always serialises")
}

/// A POSIX ustar archive holding one regular file: enough for a layer a runtime can unpack.
fn tar_with_one_file(name: &str, contents: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    let mut header = [0u8; BLOCK];
    let mut put = |offset: usize, value: &[u8]| header[offset..offset + value.len()].copy_from_slice(value);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", contents.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());

    let padded = contents.len().div_ceil(BLOCK) * BLOCK;
    let mut tar = Vec::with_capacity(BLOCK + padded + 2 * BLOCK);
    tar.extend_from_slice(&header);
    tar.extend_from_slice(contents);
    tar.resize(BLOCK + padded + 2 * BLOCK, 0);
    tar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_is_a_tarball_tar_can_list() {
        let tar = tar_with_one_file("kato-test.txt", b"hello");
        assert_eq!(tar.len(), 512 * 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar");
        std::fs::write(&path, &tar).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn distinct_labels_give_distinct_manifests() {
        let a = image_parts("team/app:1 #1", "amd64");
        let b = image_parts("team/app:1 #2", "amd64");
        assert_ne!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.manifest.digest, sha256_digest(&a.manifest.bytes));
        let idx = index(&[(&a.manifest, "amd64"), (&b.manifest, "arm64")]);
        let parsed: serde_json::Value = serde_json::from_slice(&idx.bytes).unwrap();
        assert_eq!(parsed["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(parsed["manifests"][0]["digest"], a.manifest.digest.as_str());
    }
}
