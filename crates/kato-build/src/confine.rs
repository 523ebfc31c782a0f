//! Keeps a build inside its checkout: the Dockerfile and the context, after every symlink is
//! followed, must be within the cloned repo. The model refuses absolute paths and `..`; only a
//! symlink committed to the repo can still point out, and that is found here, after the clone.

use std::path::{Component, Path, PathBuf};

use crate::build_error::BuildError;

/// Where a path of the source (`field`, relative to the repo root) really is.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// Inside the checkout: the canonical path.
    Inside(PathBuf),
    /// Nothing is there (or it cannot be read).
    Missing,
}

/// Resolves `relative` under the checkout `root`, following symlinks; a path that leads out of
/// the checkout is a [`BuildError::OutsideRepo`] naming the symlink that leads there.
pub(crate) fn resolve_inside(root: &Path, field: &str, relative: &str) -> Result<Resolved, BuildError> {
    let root = root
        .canonicalize()
        .map_err(|e| BuildError::Tool(format!("cannot read the checkout {}: {e}", root.display())))?;
    let outside = |symlink: &Path, target: String| BuildError::OutsideRepo {
        field: field.to_owned(),
        path: relative.to_owned(),
        symlink: symlink.display().to_string(),
        target,
    };
    // Walk it one component at a time, so the symlink that leads out is the one named.
    let mut at = root.clone();
    let mut walked = PathBuf::new();
    for part in Path::new(relative).components() {
        match part {
            Component::Normal(p) => {
                at.push(p);
                walked.push(p);
            }
            Component::CurDir => continue,
            // The model refuses these; a source stored before that rule is held to it here.
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside(Path::new(relative), relative.to_owned()));
            }
        }
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            return Ok(Resolved::Missing);
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let link = std::fs::read_link(&at).map_or_else(|_| "?".to_owned(), |t| t.display().to_string());
        match at.canonicalize() {
            Ok(real) if real.starts_with(&root) => at = real,
            Ok(real) if real.display().to_string() == link => return Err(outside(&walked, link)),
            Ok(real) => return Err(outside(&walked, format!("{link}, which is {}", real.display()))),
            // A dangling symlink: nothing to read.
            Err(_) if !Path::new(&link).is_absolute() && !link.contains("..") => return Ok(Resolved::Missing),
            Err(_) => return Err(outside(&walked, link)),
        }
    }
    match at.canonicalize() {
        Ok(real) if real.starts_with(&root) => Ok(Resolved::Inside(real)),
        Ok(real) => Err(outside(&walked, real.display().to_string())),
        Err(_) => Ok(Resolved::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn checkout() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("docker/inner")).unwrap();
        std::fs::write(root.join("docker/Dockerfile"), "FROM x\n").unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret"), "s\n").unwrap();
        (dir, root)
    }

    #[test]
    fn paths_inside_the_checkout_resolve_and_symlinks_within_it_are_followed() {
        let (_dir, root) = checkout();
        symlink("docker", root.join("alias")).unwrap();
        symlink("../Dockerfile", root.join("docker/inner/Dockerfile")).unwrap();
        for p in ["docker/Dockerfile", "alias/Dockerfile", "./docker/inner/Dockerfile"] {
            let Resolved::Inside(real) = resolve_inside(&root, "source.dockerfile.path", p).unwrap() else {
                panic!("{p} resolves")
            };
            assert!(real.ends_with("docker/Dockerfile"), "{p}: {}", real.display());
        }
        assert!(matches!(
            resolve_inside(&root, "source.dockerfile.path", "nothing/here").unwrap(),
            Resolved::Missing
        ));
    }

    #[test]
    fn a_symlink_out_of_the_checkout_is_named() {
        let (dir, root) = checkout();
        symlink("/", root.join("ctx")).unwrap();
        symlink(dir.path().join("outside/secret"), root.join("docker/Leak")).unwrap();
        symlink("../..", root.join("docker/up")).unwrap();
        for (p, symlink_named) in [
            ("ctx", "ctx"),
            ("docker/Leak", "docker/Leak"),
            ("docker/up/outside", "docker/up"),
        ] {
            let e = resolve_inside(&root, "f", p).unwrap_err();
            let BuildError::OutsideRepo { symlink, .. } = &e else {
                panic!("{p}: {e}")
            };
            assert_eq!(symlink, symlink_named, "{e}");
        }
    }
}
