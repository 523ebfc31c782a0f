//! Which team's namespace an image reference reaches in the platform registry.
//!
//! Every team's builds, copies and deploys read the platform registry with the same credential
//! (or none: the local registry has no auth), so the registry cannot keep teams apart; Kato
//! does, by refusing any reference into `<prefix>/<other team>/…`. A reference may name the
//! registry under another name: on a loopback platform every loopback spelling (`localhost`,
//! `127.1`, `[::1]`, `0.0.0.0`…) and any host *name* on its port (a name may resolve to
//! loopback when the pull happens) count as the platform. A remote platform is matched by its
//! host only: the platform credential is sent to that exact host and no other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The platform registry as the tenancy check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformScope {
    /// `host[/namespace]` as configured.
    prefix: String,
    name: String,
    port: Option<u16>,
    loopback: bool,
    namespace: Vec<String>,
}

/// A reference into another team's namespace of the platform registry (or into no team's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is {whose} in the platform registry{alias}: a team can only use its own, `{own}/…`")]
pub struct Trespass {
    pub reference: String,
    /// `team teamb's repository`, or `in no team's namespace`.
    whose: String,
    alias: String,
    /// `<prefix>/<team>`.
    pub own: String,
}

/// Whether a registry host is the platform registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    No,
    Yes,
    /// A host name on the loopback platform's port: it may resolve to loopback.
    Maybe,
}

/// Who owns a repository path of the platform registry.
enum Owner<'a> {
    Outside,
    Team(&'a str),
    NoTeam,
}

impl PlatformScope {
    /// `host` as `HOST[:PORT]`, `namespace` as `a/b` (both as `--registry` takes them).
    pub fn new(host: &str, namespace: Option<&str>) -> Self {
        let host = host.to_ascii_lowercase();
        let (name, port) = split_host(&host);
        let loopback = is_loopback_name(&name);
        let namespace: Vec<String> = namespace
            .into_iter()
            .flat_map(|n| n.split('/'))
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let prefix = std::iter::once(host.clone())
            .chain(namespace.iter().cloned())
            .collect::<Vec<_>>()
            .join("/");
        Self {
            prefix,
            name: normalise_name(&name),
            port,
            loopback,
            namespace,
        }
    }

    /// `host[/namespace]`: where every team's repositories are, one directory per team.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The team a build pushing to `target` (`<prefix>/<team>/<plugin>:vN`) runs for.
    pub fn team_of<'a>(&self, target: &'a str) -> Option<&'a str> {
        let rest = target.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        rest.split('/').next().filter(|t| !t.is_empty())
    }

    /// Refuses a reference (as written, `[host/]path[:tag][@digest]`) into the platform
    /// registry anywhere but `<prefix>/<team>/…`.
    pub fn check(&self, team: &str, reference: &str) -> Result<(), Trespass> {
        let (host, path) = split_reference(reference);
        let reach = self.reaches(&host);
        if reach == Reach::No {
            return Ok(());
        }
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match self.owner(&path) {
            Owner::Outside => Ok(()),
            Owner::Team(t) if t == team => Ok(()),
            Owner::Team(t) => Err(self.trespass(team, reference, &host, reach, format!("team {t}'s repository"))),
            Owner::NoTeam => Err(self.trespass(team, reference, &host, reach, "in no team's namespace".into())),
        }
    }

    /// For a reference whose value is known only up to `known` (a variable follows): `Ok` when
    /// no value of the rest can make it another team's, else the trespass it is or may be
    /// (`None`: it may reach the platform, and whose repository depends on the unknown part).
    pub(crate) fn check_partial(&self, team: &str, known: &str) -> Result<(), Option<Trespass>> {
        let Some((first, rest)) = known.split_once('/') else {
            return if self.could_start_host(known) {
                Err(None)
            } else {
                Ok(())
            };
        };
        let host_like = first.contains(['.', ':']) || first == "localhost";
        let (host, complete) = if host_like {
            (first.to_ascii_lowercase(), rest)
        } else {
            ("docker.io".to_owned(), known)
        };
        let reach = self.reaches(&host);
        if reach == Reach::No {
            return Ok(());
        }
        // Path components followed by a `/` are whole; the last one may go on.
        let whole: Vec<&str> = complete.split('/').collect();
        let whole = &whole[..whole.len() - 1];
        let n = self.namespace.len();
        if whole.iter().zip(&self.namespace).any(|(a, b)| a != b) {
            return Ok(());
        }
        match whole.get(n) {
            Some(t) if *t == team => Ok(()),
            Some(t) => Err(Some(self.trespass(
                team,
                known,
                &host,
                reach,
                format!("team {t}'s repository"),
            ))),
            None => Err(None),
        }
    }

    /// Whether `url` (`http[s]://host[:port]/…`) is served by the platform registry.
    pub(crate) fn reaches_url(&self, url: &str) -> Reach {
        match url_host(url) {
            Some(host) => self.reaches(&host),
            None => Reach::No,
        }
    }

    /// Whether a URL known only up to `known` may be served by the platform registry.
    pub(crate) fn url_could_reach(&self, known: &str) -> bool {
        let lower = known.to_ascii_lowercase();
        let Some(after) = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://")) else {
            // Not a URL yet: could it still become one?
            return "http://".starts_with(&lower) || "https://".starts_with(&lower);
        };
        if after.contains(['/', '?', '#']) {
            return self.reaches_url(&lower) != Reach::No;
        }
        true
    }

    fn trespass(&self, team: &str, reference: &str, host: &str, reach: Reach, whose: String) -> Trespass {
        let (name, _) = split_host(host);
        let alias = match reach {
            Reach::Maybe => format!(
                " (`{host}` may be another name for the platform registry's `{}`)",
                self.host()
            ),
            _ if normalise_name(&name) != self.name => {
                format!(
                    " (`{host}` is the platform registry's `{}` under another name)",
                    self.host()
                )
            }
            _ => String::new(),
        };
        Trespass {
            reference: reference.to_owned(),
            whose,
            alias,
            own: format!("{}/{team}", self.prefix),
        }
    }

    fn host(&self) -> String {
        match self.port {
            Some(p) if self.name.contains(':') => format!("[{}]:{p}", self.name),
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        }
    }

    pub(crate) fn reaches(&self, host: &str) -> Reach {
        let (name, port) = split_host(host);
        let ports_match = port == self.port
            || (port.is_none() && matches!(self.port, Some(80 | 443)))
            || (self.port.is_none() && matches!(port, Some(80 | 443)));
        if !ports_match {
            return Reach::No;
        }
        if !self.loopback {
            return if normalise_name(&name) == self.name {
                Reach::Yes
            } else {
                Reach::No
            };
        }
        if is_loopback_name(&name) {
            Reach::Yes
        } else if ip_literal(&name).is_some() {
            Reach::No
        } else {
            Reach::Maybe
        }
    }

    fn owner<'a>(&self, path: &[&'a str]) -> Owner<'a> {
        let n = self.namespace.len();
        if path.len() < n || path.iter().zip(&self.namespace).any(|(a, b)| a != b) {
            return Owner::Outside;
        }
        match &path[n..] {
            [team, _, ..] => Owner::Team(team),
            _ => Owner::NoTeam,
        }
    }

    /// Whether a host written as `known…` may turn out to be the platform's.
    fn could_start_host(&self, known: &str) -> bool {
        let known = known.to_ascii_lowercase();
        if known.is_empty() || known.starts_with('[') {
            return true;
        }
        if !self.loopback {
            let with_port = format!("{}:{}", self.name, self.port.unwrap_or(443));
            let docker_hub = self.name == "docker.io" && !known.contains(['.', ':']);
            return docker_hub || self.host().starts_with(&known) || with_port.starts_with(&known);
        }
        // Any name may lead to loopback; only a port already written differently rules it out.
        match known.split_once(':') {
            None => true,
            Some((_, port)) => {
                let ports = match self.port {
                    Some(p) => vec![p.to_string()],
                    None => vec!["80".to_owned(), "443".to_owned()],
                };
                port.bytes().all(|b| b.is_ascii_digit()) && ports.iter().any(|p| p.starts_with(port))
            }
        }
    }
}

/// The registry host (lowercased, Docker Hub's aliases folded) and the repository path of a
/// reference, by Docker's rules: the first component is a host when it has a `.` or `:` or
/// is `localhost`; a one-component name on Docker Hub is `library/…`.
fn split_reference(reference: &str) -> (String, Vec<String>) {
    let name = reference.split('@').next().unwrap_or_default();
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let name = match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    };
    let parts: Vec<&str> = name.split('/').collect();
    let (host, path) = match parts.as_slice() {
        [first, rest @ ..] if !rest.is_empty() && (first.contains(['.', ':']) || *first == "localhost") => {
            (first.to_ascii_lowercase(), rest.to_vec())
        }
        [only] => ("docker.io".to_owned(), vec!["library", only]),
        _ => ("docker.io".to_owned(), parts.clone()),
    };
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    };
    (host, path.into_iter().map(str::to_owned).collect())
}

/// `host[:port]` of an `http://` or `https://` URL, with the scheme's port when none is written.
fn url_host(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let (rest, default_port) = match lower.strip_prefix("http://") {
        Some(r) => (r, 80),
        None => (lower.strip_prefix("https://")?, 443),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (_, port) = split_host(host);
    Some(match port {
        Some(_) => host.to_owned(),
        None => format!("{host}:{default_port}"),
    })
}

/// `name` and `port` of `name[:port]` or `[v6][:port]`.
fn split_host(host: &str) -> (String, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (name.to_owned(), after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name.to_owned(), port.parse().ok()),
        _ => (host.to_owned(), None),
    }
}

fn normalise_name(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match name.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => name,
    }
}

/// `localhost`, `*.localhost`, and every address of 127.0.0.0/8, 0.0.0.0/8, `::1` and `::`
/// (also as IPv4-mapped, and in the short forms a resolver accepts, such as `127.1`).
fn is_loopback_name(name: &str) -> bool {
    let name = normalise_name(name);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    match ip_literal(&name) {
        Some(IpAddr::V4(v4)) => matches!(v4.octets()[0], 127 | 0),
        Some(IpAddr::V6(v6)) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| matches!(v4.octets()[0], 127 | 0))
        }
        None => false,
    }
}

/// The address a host written as an IP literal names, in any form `inet_aton` takes
/// (`127.0.0.1`, `127.1`, `0x7f000001`, `017700000001`) or as IPv6.
fn ip_literal(name: &str) -> Option<IpAddr> {
    if let Ok(v6) = name.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    let parts: Vec<u64> = name.split('.').map(inet_number).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|p| *p > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let value = head.iter().fold(0u64, |acc, p| (acc << 8) | p) << room | last;
    Some(IpAddr::V4(Ipv4Addr::from(u32::try_from(value).ok()?)))
}

fn inet_number(part: &str) -> Option<u64> {
    if let Some(hex) = part.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    if part.len() > 1 && part.starts_with('0') {
        return u64::from_str_radix(&part[1..], 8).ok();
    }
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> PlatformScope {
        PlatformScope::new("127.0.0.1:7071", None)
    }

    #[test]
    fn a_team_reaches_only_its_own_directory_of_the_platform() {
        let p = local();
        for ok in [
            "127.0.0.1:7071/teama/x",
            "127.0.0.1:7071/teama/x/y:1",
            "localhost:7071/teama/x@sha256:0123",
            "127.0.0.1:5000/teamb/x",
            "teamb/x",
            "docker.io/library/busybox",
            "127.0.0.1/teamb/x",
            "10.0.0.5:7071/teamb/x",
        ] {
            assert_eq!(p.check("teama", ok), Ok(()), "{ok}");
        }
        let e = p.check("teama", "127.0.0.1:7071/teamb/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`127.0.0.1:7071/teamb/x` is team teamb's repository in the platform registry: a team can only \
             use its own, `127.0.0.1:7071/teama/…`"
        );
        let e = p.check("teama", "127.0.0.1:7071/teama").unwrap_err();
        assert!(e.to_string().contains("in no team's namespace"), "{e}");
    }

    #[test]
    fn the_loopback_platform_is_found_under_every_name() {
        let p = local();
        for other_name in [
            "localhost:7071/teamb/x",
            "LOCALHOST:7071/teamb/x",
            "localhost.:7071/teamb/x",
            "registry.localhost:7071/teamb/x",
            "127.1:7071/teamb/x",
            "127.0.0.2:7071/teamb/x",
            "0.0.0.0:7071/teamb/x",
            "0x7f000001:7071/teamb/x",
            "[::1]:7071/teamb/x",
            "[::]:7071/teamb/x",
            "[::ffff:127.0.0.1]:7071/teamb/x",
            "127.0.0.1.nip.io:7071/teamb/x",
        ] {
            let e = p.check("teama", other_name).unwrap_err();
            assert!(e.to_string().contains("team teamb's repository"), "{other_name}: {e}");
        }
        let e = p.check("teama", "localhost:7071/teamb/x").unwrap_err();
        assert!(e.to_string().contains("under another name"), "{e}");
        let e = p.check("teama", "evil.example:7071/teamb/x").unwrap_err();
        assert!(e.to_string().contains("may be another name"), "{e}");
    }

    #[test]
    fn a_namespace_and_a_remote_host_are_respected() {
        let p = PlatformScope::new("registry.example.com", Some("kato"));
        assert_eq!(p.prefix(), "registry.example.com/kato");
        assert_eq!(p.check("teama", "registry.example.com/kato/teama/x"), Ok(()));
        assert_eq!(p.check("teama", "registry.example.com/other/teamb/x"), Ok(()));
        assert_eq!(p.check("teama", "mirror.example.com/kato/teamb/x"), Ok(()));
        for bad in [
            "registry.example.com/kato/teamb/x",
            "REGISTRY.example.com:443/kato/teamb/x:1",
            "registry.example.com./kato/teamb/x",
        ] {
            assert!(p.check("teama", bad).is_err(), "{bad}");
        }
        let hub = PlatformScope::new("docker.io", Some("acme"));
        assert!(hub.check("teama", "acme/teamb/x").is_err());
        assert!(hub.check("teama", "index.docker.io/acme/teamb/x").is_err());
        assert_eq!(hub.check("teama", "acme/teama/x"), Ok(()));
    }

    #[test]
    fn the_team_of_a_build_is_read_from_its_target() {
        let p = PlatformScope::new("127.0.0.1:7071", Some("platform"));
        assert_eq!(p.team_of("127.0.0.1:7071/platform/teama/agent:v1"), Some("teama"));
        assert_eq!(p.team_of("127.0.0.1:7071/other/teama/agent:v1"), None);
    }

    #[test]
    fn partly_known_references_are_refused_when_they_may_reach_another_team() {
        let p = local();
        for safe in [
            "python:3.",
            "docker.io/library/",
            "ghcr.io/x",
            "127.0.0.1:7071/teama/",
            "alpine:1",
        ] {
            assert_eq!(p.check_partial("teama", safe), Ok(()), "{safe}");
        }
        for unknown in [
            "",
            "127.0.0.1:7071/",
            "127.0.0.1:7071/te",
            "alpine:",
            "alpine",
            "localhost:70",
        ] {
            assert_eq!(p.check_partial("teama", unknown), Err(None), "{unknown}");
        }
        assert!(matches!(
            p.check_partial("teama", "127.0.0.1:7071/teamb/"),
            Err(Some(_))
        ));
        let remote = PlatformScope::new("registry.example.com", None);
        assert_eq!(remote.check_partial("teama", "python:"), Ok(()));
        assert_eq!(remote.check_partial("teama", "registry."), Err(None));
    }

    #[test]
    fn urls_are_matched_by_their_host_and_port() {
        let p = local();
        for url in [
            "http://127.0.0.1:7071/v2/teamb/x/blobs/sha256:00",
            "http://user:pw@localhost:7071/v2/",
            "HTTP://[::1]:7071/",
        ] {
            assert_ne!(p.reaches_url(url), Reach::No, "{url}");
        }
        for url in ["http://127.0.0.1/x", "https://example.com/x", "http://127.0.0.1:5000/x"] {
            assert_eq!(p.reaches_url(url), Reach::No, "{url}");
        }
        assert!(p.url_could_reach(""));
        assert!(p.url_could_reach("http://127.0.0.1:70"));
        assert!(!p.url_could_reach("files/"));
        assert!(!p.url_could_reach("https://example.com/"));
    }
}
