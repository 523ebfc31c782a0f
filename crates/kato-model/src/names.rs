//! Validated names: teams, components, plug-ins, env variables and image references.
//!
//! Each newtype can only hold a valid value; every edge (HTTP, CLI, YAML, database row) builds
//! them through `FromStr` or serde, so the rest of the code never re-checks a name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

const DNS_LABEL_RULE: &str = "use 1-63 lowercase letters, digits or '-', starting with a letter and \
     ending with a letter or digit (a DNS-1123 label, e.g. `log-collector`)";

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

const ENV_RULE: &str = "use letters, digits and '_', not starting with a digit (e.g. `LOG_LEVEL`)";

fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                if $check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(NameError { what: $what, value: s.to_owned(), rule: $rule })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A team: a tenant, and a namespace on a cluster.
    TeamName, "team name", is_dns_label, DNS_LABEL_RULE
);
name_type!(
    /// A component (an application) of a team.
    ComponentName, "component name", is_dns_label, DNS_LABEL_RULE
);
const PLUGIN_RULE: &str = "use 1-56 lowercase letters, digits or '-', starting with a letter and \
     ending with a letter or digit (a DNS-1123 label short enough for its container `plugin-<name>`)";

fn is_plugin_name(s: &str) -> bool {
    s.len() <= 56 && is_dns_label(s)
}

name_type!(
    /// A plug-in of a team; its container is `plugin-<name>`, so at most 56 characters.
    PluginName, "plug-in name", is_plugin_name, PLUGIN_RULE
);
name_type!(
    /// A volume of a component.
    VolumeName, "volume name", is_dns_label, DNS_LABEL_RULE
);
name_type!(
    /// An environment variable or config item name.
    EnvName, "env variable name", is_env_name, ENV_RULE
);

/// An OCI image reference as the user wrote it (`nginx:1.27`, `registry:5000/team/app@sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    text: String,
    parsed: oci_spec::distribution::Reference,
}

impl ImageRef {
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The fully qualified reference (`docker.io/library/nginx:latest`).
    pub fn reference(&self) -> &oci_spec::distribution::Reference {
        &self.parsed
    }
    /// True when the reference already names a digest.
    pub fn is_pinned(&self) -> bool {
        self.parsed.digest().is_some()
    }
}

impl FromStr for ImageRef {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let refused = |rule| NameError {
            what: "image reference",
            value: s.to_owned(),
            rule,
        };
        if s.trim() != s || s.is_empty() {
            return Err(refused(
                "write it as [registry/]repository[:tag][@sha256:digest], with no spaces",
            ));
        }
        let parsed = crate::reference::parse(s).map_err(|e| refused(e.rule()))?;
        Ok(Self {
            text: s.to_owned(),
            parsed,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "web", "log-collector", "a1", &"a".repeat(63)] {
            assert!(ok.parse::<TeamName>().is_ok(), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "1a", "a_b", "a.b", &"a".repeat(64)] {
            let err = bad.parse::<PluginName>().unwrap_err();
            assert!(err.to_string().contains("DNS-1123"), "{err}");
            assert!(bad.parse::<TeamName>().is_err() || bad.len() == 64, "{bad}");
        }
    }

    #[test]
    fn plugin_names_leave_room_for_the_container_prefix() {
        assert!("a".repeat(56).parse::<PluginName>().is_ok());
        assert!("a".repeat(57).parse::<PluginName>().is_err());
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_x", "LOG_LEVEL", "a1"] {
            assert!(ok.parse::<EnvName>().is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A.B"] {
            assert!(bad.parse::<EnvName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn image_refs() {
        let r: ImageRef = "nginx".parse().unwrap();
        assert_eq!(r.reference().whole(), "docker.io/library/nginx:latest");
        assert!(!r.is_pinned());
        let d = format!("127.0.0.1:5000/t/p@sha256:{}", "a".repeat(64));
        assert!(d.parse::<ImageRef>().unwrap().is_pinned());
        for bad in ["", "Nginx", "nginx:", "a b", "x@sha256:12", " nginx"] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_parses_at_the_edge() {
        let err = serde_json::from_str::<ComponentName>("\"Bad_Name\"").unwrap_err();
        assert!(err.to_string().contains("invalid component name `Bad_Name`"), "{err}");
    }
}
