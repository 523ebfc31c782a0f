//! The data dir is the server's alone: the files Kato writes there are 0600 and its directories
//! 0700, whatever mode a file had before (an older version, a restored backup, another umask).

use std::fs::{File, OpenOptions};
use std::io::Write;
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` and a newline to `path`, readable by this user only.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

/// Writes `bytes` to `path`, readable by this user only.
pub(crate) fn write_private_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private(path)?.write_all(bytes)
}

/// Creates or empties `path` for writing, readable by this user only: a file that existed with
/// a wider mode is narrowed before anything is written to it.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    options.mode(0o600);
    let f = options.open(path)?;
    #[cfg(unix)]
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.set_len(0)?;
    Ok(f)
}

/// Creates `path` empty if it does not exist, readable by this user only; an existing file
/// keeps its content (and its mode, which [`make_private`] narrows at start).
pub(crate) fn touch_private(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).map(drop)
}

/// Takes every permission of group and others from `dir` and everything under it (files become
/// 0600 or, if executable, 0700; directories 0700). Symlinks are left alone, not followed.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let meta = std::fs::symlink_metadata(dir)?;
        narrow(dir, &meta)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    make_private(&entry.path())?;
                } else if meta.is_file() {
                    narrow(&entry.path(), &meta)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn narrow(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let mode = meta.permissions().mode();
    if meta.file_type().is_symlink() || mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)) {
        // Gone since it was listed (a build's scratch dir removed meanwhile).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Another user's (a rootful engine's): not ours to change, and no reason not to start.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(path = %path.display(), "cannot make a file of the data dir private: {e}");
            Ok(())
        }
        other => other,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_narrow_files_that_existed_with_a_wider_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "a much longer old content").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_bytes(&path, b"new").unwrap();
        assert_eq!(
            (mode(&path), std::fs::read_to_string(&path).unwrap()),
            (0o600, "new".into())
        );
        write_private(&dir.path().join("g"), "t").unwrap();
        assert_eq!(mode(&dir.path().join("g")), 0o600);
    }

    #[test]
    fn the_whole_tree_is_made_private_but_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("shared");
        std::fs::write(&target, "x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sub = dir.path().join("podman/pods");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(sub.join("p.yaml"), "x").unwrap();
        std::fs::set_permissions(sub.join("p.yaml"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(dir.path().join("run.sh"), "x").unwrap();
        std::fs::set_permissions(dir.path().join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link")).unwrap();
        make_private(dir.path()).unwrap();
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("p.yaml")), 0o600);
        assert_eq!(mode(&dir.path().join("run.sh")), 0o700);
        assert_eq!(mode(&target), 0o644, "a symlink's target outside is not ours to change");
    }
}
