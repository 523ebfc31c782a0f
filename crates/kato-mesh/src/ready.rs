//! The readiness state file behind `kato-mesh ready`: written once a revision is applied with
//! every listener bound, removed when draining starts. The plug-in's `ready` check runs
//! `kato-mesh ready` in the container (an exec probe), so on Kubernetes the app starts only
//! after the proxy listens; a file works in a `FROM scratch` image, where no shell or HTTP
//! client exists to ask the admin port, and needs no port number from the document.

use std::io;
use std::path::{Path, PathBuf};

/// Where the file is unless `KATO_MESH_READY_FILE` says otherwise; `/tmp` is in the container's
/// writable layer, which starts empty with each container.
pub const DEFAULT_PATH: &str = "/tmp/kato-mesh/ready";
/// Overrides [`DEFAULT_PATH`] (tests run several proxies on one machine).
pub const PATH_ENV: &str = "KATO_MESH_READY_FILE";

#[derive(Debug, Clone)]
pub struct ReadyFile {
    path: PathBuf,
}

impl ReadyFile {
    /// The file at `$KATO_MESH_READY_FILE`, or [`DEFAULT_PATH`].
    pub fn from_env() -> ReadyFile {
        let path = std::env::var_os(PATH_ENV).filter(|p| !p.is_empty());
        ReadyFile::at(path.map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from))
    }

    pub fn at(path: impl Into<PathBuf>) -> ReadyFile {
        ReadyFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `revision` is applied. Written beside and renamed into place, so `ready`
    /// never reads half a file.
    pub fn mark_ready(&self, revision: u64) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut partial = self.path.clone().into_os_string();
        partial.push(".partial");
        std::fs::write(&partial, format!("{revision}\n"))?;
        std::fs::rename(&partial, &self.path)
    }

    /// Not ready any more (draining, or a fresh start); no file is fine.
    pub fn clear(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The applied revision, or why the proxy is not ready, in one line.
    pub fn check(&self) -> Result<u64, String> {
        let path = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "not ready: no revision applied yet, or draining ({path} is absent)"
                ));
            }
            Err(e) => return Err(format!("not ready: cannot read {path}: {e}")),
        };
        text.trim().parse().map_err(|_| {
            format!(
                "not ready: {path} holds `{}`, not a revision",
                text.trim().escape_debug()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_marking_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReadyFile::at(dir.path().join("kato-mesh").join("ready"));
        let e = file.check().unwrap_err();
        assert!(e.starts_with("not ready: no revision applied yet"), "{e}");
        file.mark_ready(3).unwrap();
        assert_eq!(file.check(), Ok(3), "the missing directory is created");
        file.mark_ready(4).unwrap();
        assert_eq!(file.check(), Ok(4));
        file.clear().unwrap();
        assert!(file.check().is_err());
        file.clear().expect("clearing twice is fine");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("kato-mesh")).unwrap().collect();
        assert!(left.is_empty(), "no partial file is left behind");
    }

    #[test]
    fn a_garbled_file_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReadyFile::at(dir.path().join("ready"));
        std::fs::write(file.path(), "").unwrap();
        let e = file.check().unwrap_err();
        assert!(e.contains("not a revision") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn an_unreadable_path_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReadyFile::at(dir.path());
        let e = file.check().unwrap_err();
        assert!(e.starts_with("not ready: cannot read"), "{e}");
        assert!(file.mark_ready(1).is_err(), "a directory is in the way");
    }
}
