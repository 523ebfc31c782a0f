//! The platform registry: where Kato pushes what it builds and copies what plug-ins run.

use std::fmt;
use std::path::{Path, PathBuf};

/// `HOST[:PORT][/namespace]`, with optional credentials. Plain HTTP only on loopback.
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformRegistry {
    pub host: String,
    pub namespace: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for PlatformRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformRegistry")
            .field("host", &self.host)
            .field("namespace", &self.namespace)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("--registry `{given}`: {why}: write it as HOST[:PORT][/namespace], e.g. registry.example.com/kato")]
pub struct RegistryParseError {
    given: String,
    why: &'static str,
}

impl std::str::FromStr for PlatformRegistry {
    type Err = RegistryParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| RegistryParseError {
            given: s.to_owned(),
            why,
        };
        let s = s.trim().trim_end_matches('/');
        if s.contains("://") {
            return Err(err(
                "leave out the scheme (Kato uses HTTPS, plain HTTP on loopback only)",
            ));
        }
        let (host, namespace) = match s.split_once('/') {
            Some((h, n)) => (h, Some(n)),
            None => (s, None),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(err("the host is missing"));
        }
        if let Some(n) = namespace {
            let ok = n.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
            if !ok {
                return Err(err(
                    "the namespace may hold lowercase letters, digits, `.`, `_`, `-` and `/`",
                ));
            }
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            namespace: namespace.map(str::to_owned),
            username: None,
            password: None,
        })
    }
}

impl PlatformRegistry {
    /// `host[/namespace]`: what image names in this registry start with.
    pub fn prefix(&self) -> String {
        match &self.namespace {
            Some(n) => format!("{}/{n}", self.host),
            None => self.host.clone(),
        }
    }

    /// What keeps each team to its own directory, `prefix()/TEAM/…`, of this registry.
    pub fn scope(&self) -> kato_build::PlatformScope {
        kato_build::PlatformScope::new(&self.host, self.namespace.as_deref())
    }

    /// Writes a podman auth file for the credentials (mode 0600), if there are any.
    pub fn write_authfile(&self, data_dir: &Path) -> std::io::Result<Option<PathBuf>> {
        let (Some(u), Some(p)) = (&self.username, &self.password) else {
            return Ok(None);
        };
        let path = data_dir.join("registry-auth.json");
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{u}:{p}"));
        let doc = serde_json::json!({"auths": {self.host.clone(): {"auth": auth}}});
        crate::write_private(&path, &doc.to_string())?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_parse_with_an_optional_namespace() {
        let r: PlatformRegistry = "127.0.0.1:5000/kato/plugins".parse().unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.prefix(), "127.0.0.1:5000/kato/plugins");
        assert_eq!("ghcr.io".parse::<PlatformRegistry>().unwrap().prefix(), "ghcr.io");
        for bad in ["https://ghcr.io", "", "ghcr.io/Bad", "ghcr.io//x"] {
            assert!(bad.parse::<PlatformRegistry>().is_err(), "{bad}");
        }
    }
}
