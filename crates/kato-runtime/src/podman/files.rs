//! The files the podman target keeps in the data dir (`podman/`): readable by Kato's user only,
//! whatever mode a file or directory had before, like everything else in the data dir.
//!
//! The pod YAML that `kube play` reads lives only for the play: it holds no secret (those are in
//! podman secrets), but it is the component's whole pod spec, and nothing reads it again.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) as 0700, and narrows it to 0700 if it existed.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes `bytes` to `path` as 0600: a file that existed with a wider mode is narrowed before
/// it is emptied, so the new content is never readable by others, not even for a moment.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path)?;
    #[cfg(unix)]
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.set_len(0)?;
    f.write_all(bytes)
}

/// [`write_private`] off the async runtime's threads.
pub(super) async fn write_private_async(path: PathBuf, bytes: Vec<u8>) -> io::Result<()> {
    tokio::task::spawn_blocking(move || write_private(&path, &bytes))
        .await
        .map_err(io::Error::other)?
}

/// Removes the pod YAML files an older Kato kept after playing them (they held the discovery
/// token in clear); the volume records stay, deploys and stops read them.
pub(super) fn remove_played_yaml(pods_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_dirs_are_private_whatever_existed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("podman").join("pods");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let fresh = tmp.path().join("a").join("b");
        create_private_dir(&fresh).unwrap();
        assert_eq!((mode(&fresh), mode(&tmp.path().join("a"))), (0o700, 0o700));

        let file = dir.join("p.volumes.json");
        std::fs::write(&file, "an older, longer content").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&file, b"[]").unwrap();
        assert_eq!(
            (mode(&file), std::fs::read_to_string(&file).unwrap()),
            (0o600, "[]".into())
        );
    }

    #[test]
    fn played_yaml_files_are_removed_and_volume_records_kept() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["p.yaml", "p.volumes.json"] {
            std::fs::write(tmp.path().join(name), "x").unwrap();
        }
        remove_played_yaml(tmp.path());
        remove_played_yaml(&tmp.path().join("missing"));
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["p.volumes.json"]);
    }
}
