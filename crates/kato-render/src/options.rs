//! Render options: where the workload runs and how sidecars are placed.

use std::fmt;
use std::str::FromStr;

/// Where rendered workloads run (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A cluster: a Deployment in the team's namespace.
    Kubernetes,
    /// The local podman engine: a `kind: Pod` for `podman kube play`.
    Podman,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::Podman => "podman",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sidecar plug-ins are placed in the pod (DESIGN §5 rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SidecarMode {
    /// Sidecars are `initContainers` with `restartPolicy: Always` (Kubernetes ≥ 1.29).
    Native,
    /// Sidecars are ordinary `containers`: net plug-ins before the app, the others after.
    Classic,
}

impl SidecarMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Classic => "classic",
        }
    }
}

impl fmt::Display for SidecarMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target or sidecar mode name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`: use one of {expected}")]
pub struct ParseOptionError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Target {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kubernetes" => Ok(Self::Kubernetes),
            "podman" => Ok(Self::Podman),
            _ => Err(ParseOptionError {
                what: "target",
                value: s.to_owned(),
                expected: "kubernetes, podman",
            }),
        }
    }
}

impl FromStr for SidecarMode {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Self::Native),
            "classic" => Ok(Self::Classic),
            _ => Err(ParseOptionError {
                what: "sidecars mode",
                value: s.to_owned(),
                expected: "native, classic",
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub target: Target,
    /// `None` takes the target's default: `native` on kubernetes, `classic` on podman.
    pub sidecars: Option<SidecarMode>,
    /// Where plug-ins reach the discovery API, e.g. `http://kato.kato-system:7070`.
    pub discovery_base_url: String,
    /// Write `<redacted>` instead of secret values (what the API shows).
    pub redact_secrets: bool,
}

impl RenderOptions {
    /// The mode actually rendered: podman 4.x does not run native sidecars (a pod whose
    /// init container never ends never starts), so podman always gets `classic`.
    pub fn effective_sidecars(&self) -> SidecarMode {
        match self.target {
            Target::Podman => SidecarMode::Classic,
            Target::Kubernetes => self.sidecars.unwrap_or(SidecarMode::Native),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(target: Target, sidecars: Option<SidecarMode>) -> RenderOptions {
        RenderOptions {
            target,
            sidecars,
            discovery_base_url: String::new(),
            redact_secrets: false,
        }
    }

    #[test]
    fn names_round_trip() {
        for t in [Target::Kubernetes, Target::Podman] {
            assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
        }
        for m in [SidecarMode::Native, SidecarMode::Classic] {
            assert_eq!(m.to_string().parse::<SidecarMode>().unwrap(), m);
        }
        let e = "docker".parse::<Target>().unwrap_err();
        assert_eq!(e.to_string(), "unknown target `docker`: use one of kubernetes, podman");
        assert!("Native".parse::<SidecarMode>().is_err());
    }

    #[test]
    fn sidecar_defaults_and_podman_override() {
        use SidecarMode::*;
        assert_eq!(opts(Target::Kubernetes, None).effective_sidecars(), Native);
        assert_eq!(opts(Target::Kubernetes, Some(Classic)).effective_sidecars(), Classic);
        assert_eq!(opts(Target::Podman, None).effective_sidecars(), Classic);
        assert_eq!(opts(Target::Podman, Some(Native)).effective_sidecars(), Classic);
    }
}
