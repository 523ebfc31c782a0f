//! Where a plug-in's image comes from: an image reference, or a Dockerfile in a git repo; and the
//! rules that keep a Dockerfile build inside its own checkout.

use serde::{Deserialize, Serialize};

use crate::names::ImageRef;
use crate::{Invalid, invalid};

/// How the plug-in's image is obtained: `{image: REF}` or `{dockerfile: {repo, ref, path}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SourceRepr", into = "SourceRepr")]
pub enum Source {
    Image(ImageRef),
    Dockerfile(DockerfileSource),
}

/// The wire form of [`Source`]: a map with exactly one key, in JSON and YAML alike.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dockerfile: Option<DockerfileSource>,
}

impl TryFrom<SourceRepr> for Source {
    type Error = &'static str;
    fn try_from(r: SourceRepr) -> Result<Self, Self::Error> {
        match (r.image, r.dockerfile) {
            (Some(i), None) => Ok(Source::Image(i)),
            (None, Some(d)) => Ok(Source::Dockerfile(d)),
            _ => Err("give exactly one of `image: REF` or `dockerfile: {repo, ref, path}`"),
        }
    }
}

impl From<Source> for SourceRepr {
    fn from(s: Source) -> Self {
        match s {
            Source::Image(i) => SourceRepr {
                image: Some(i),
                dockerfile: None,
            },
            Source::Dockerfile(d) => SourceRepr {
                image: None,
                dockerfile: Some(d),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerfileSource {
    /// An https or ssh URL, a `file://` URL or a local directory.
    pub repo: String,
    /// Branch, tag or commit; the repo's default branch when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The Dockerfile, relative to the repo root.
    #[serde(default = "default_dockerfile")]
    pub path: String,
    /// The build context, relative to the repo root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "indexmap::IndexMap::is_empty")]
    pub build_args: indexmap::IndexMap<String, String>,
}

fn default_dockerfile() -> String {
    "Dockerfile".into()
}

/// How a repo is reached, which decides whose identity the clone uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKind {
    /// `https://`, `http://` or `git://`: over the network, with the team's credential if any.
    Remote { host: String },
    /// `ssh://…` or `user@host:path`: only with the team's SSH key for `host`.
    Ssh { host: String },
    /// A directory on the server or a `file://` URL: it reads the server's own disk.
    Local,
}

impl RepoKind {
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local)
    }
}

impl DockerfileSource {
    /// How the repo is reached; an error for transports Kato does not clone from (`ext::`,
    /// remote helpers, options).
    pub fn repo_kind(&self) -> Result<RepoKind, Invalid> {
        repo_kind(&self.repo)
    }

    /// The rules a source obeys before any clone: a repo Kato can clone, and a Dockerfile and
    /// a context that are relative paths inside the repo.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.repo.trim().is_empty() {
            return Err(invalid(
                "source.dockerfile.repo",
                "is empty: give a git URL or a local directory",
            ));
        }
        self.repo_kind()?;
        if self.path.trim().is_empty() {
            return Err(invalid(
                "source.dockerfile.path",
                "is empty: give the Dockerfile's path inside the repo, e.g. `Dockerfile`",
            ));
        }
        check_inside(
            "source.dockerfile.path",
            &self.path,
            "`Dockerfile` or `docker/Dockerfile`",
        )?;
        if let Some(c) = &self.context {
            check_inside("source.dockerfile.context", c, "`docker`, or omit it for the repo root")?;
        }
        Ok(())
    }
}

/// A path relative to the repo root that cannot leave it by its words alone (symlinks are
/// checked after the clone, by the builder).
fn check_inside(field: &str, path: &str, example: &str) -> Result<(), Invalid> {
    if path.starts_with('/') || path.starts_with('~') {
        return Err(invalid(
            field,
            format!("`{path}` is an absolute path: give a path relative to the repo root, e.g. {example}"),
        ));
    }
    if path.split(['/', '\\']).any(|p| p == "..") {
        return Err(invalid(
            field,
            format!("`{path}` goes up with `..`: give a path inside the repo, e.g. {example}"),
        ));
    }
    if path.contains('\0') {
        return Err(invalid(field, "holds a NUL byte"));
    }
    Ok(())
}

fn repo_kind(repo: &str) -> Result<RepoKind, Invalid> {
    let field = "source.dockerfile.repo";
    let repo = repo.trim();
    let refused = |why: &str| {
        Err(invalid(
            field,
            format!("`{repo}` {why}: give an https:// or ssh:// URL, user@host:path, a file:// URL or a directory"),
        ))
    };
    if repo.starts_with('-') {
        return refused("starts with `-`");
    }
    if repo.contains("::") {
        return refused("names a git transport helper (`…::`), which Kato does not run");
    }
    if let Some((scheme, rest)) = repo.split_once("://") {
        let host = || {
            let authority = rest.split('/').next().unwrap_or("");
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, h)| h)
                .to_ascii_lowercase()
        };
        return match scheme.to_ascii_lowercase().as_str() {
            "https" | "http" | "git" if !host().is_empty() => Ok(RepoKind::Remote { host: host() }),
            "ssh" | "git+ssh" | "ssh+git" if !host().is_empty() => Ok(RepoKind::Ssh { host: host() }),
            "file" => Ok(RepoKind::Local),
            "https" | "http" | "git" | "ssh" | "git+ssh" | "ssh+git" => refused("names no host"),
            _ => refused("uses a transport Kato does not clone from"),
        };
    }
    // git's own rule: a colon before any slash makes `[user@]host:path` an ssh address.
    if let Some((head, _)) = repo.split_once(':')
        && !head.contains('/')
    {
        let host = head.rsplit_once('@').map_or(head, |(_, h)| h);
        if host.is_empty() {
            return refused("names no host");
        }
        return Ok(RepoKind::Ssh {
            host: host.to_ascii_lowercase(),
        });
    }
    Ok(RepoKind::Local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(repo: &str, path: &str, context: Option<&str>) -> DockerfileSource {
        DockerfileSource {
            repo: repo.into(),
            git_ref: None,
            path: path.into(),
            context: context.map(str::to_owned),
            build_args: Default::default(),
        }
    }

    #[test]
    fn repos_are_classified_by_whose_identity_clones_them() {
        let kind = |r: &str| repo_kind(r).map_err(|e| e.message);
        let remote = |h: &str| Ok(RepoKind::Remote { host: h.into() });
        let ssh = |h: &str| Ok(RepoKind::Ssh { host: h.into() });
        assert_eq!(kind("https://git.example.com/a/b.git"), remote("git.example.com"));
        assert_eq!(
            kind("https://bot@Git.Example.com:8443/a"),
            remote("git.example.com:8443")
        );
        assert_eq!(
            kind("ssh://git@git.example.com:2222/a.git"),
            ssh("git.example.com:2222")
        );
        assert_eq!(kind("git@github.com:team/agent.git"), ssh("github.com"));
        assert_eq!(kind("file:///srv/repo"), Ok(RepoKind::Local));
        assert_eq!(kind("/srv/repo"), Ok(RepoKind::Local));
        assert_eq!(kind("."), Ok(RepoKind::Local));
        assert_eq!(kind("./a:b"), Ok(RepoKind::Local));
        for bad in [
            "ext::sh -c id",
            "fd::3",
            "-uhelp",
            "ftp://x/y",
            "https:///nohost",
            ":path",
        ] {
            assert!(kind(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn the_dockerfile_and_the_context_stay_inside_the_repo() {
        assert!(source("/r", "Dockerfile", Some("docker/ctx")).check().is_ok());
        for (path, context, field) in [
            ("/etc/passwd", None, "source.dockerfile.path"),
            ("../x/Dockerfile", None, "source.dockerfile.path"),
            ("a/../../Dockerfile", None, "source.dockerfile.path"),
            ("Dockerfile", Some("/"), "source.dockerfile.context"),
            ("Dockerfile", Some("../x"), "source.dockerfile.context"),
            ("Dockerfile", Some("a/.."), "source.dockerfile.context"),
            ("Dockerfile", Some("~root"), "source.dockerfile.context"),
        ] {
            let e = source("/r", path, context).check().unwrap_err();
            assert_eq!(e.field, field, "{path} {context:?}: {e}");
        }
    }
}
