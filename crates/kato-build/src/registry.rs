//! How a registry is reached: HTTPS, or plain HTTP for loopback hosts only; and with which credentials.

use std::fmt;
use std::net::IpAddr;

use oci_client::client::ClientProtocol;
use oci_client::secrets::RegistryAuth;

/// A username and password for one registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The registry host as written in image references (`ghcr.io`, `127.0.0.1:5000`, `docker.io`);
    /// a URL such as `https://index.docker.io/v1/` is accepted too.
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// True when `registry` (`host[:port]`) is a loopback address: 127.0.0.0/8, `::1` or `localhost`.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The protocol for a call to `registry` (the host the reference resolves to): plain HTTP is allowed
/// for that registry only when it is on loopback, where no one else can read or alter the traffic.
pub fn protocol_for(registry: &str) -> ClientProtocol {
    if is_loopback_registry(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    }
}

/// The host of `host[:port]`, also for bracketed IPv6 (`[::1]:5000`).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match registry.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, _port)) if !host.contains(':') => host,
        _ => registry,
    }
}

/// The credential for `registry` (as in the reference: `docker.io`, `127.0.0.1:5000`), if any.
pub(crate) fn auth_for(credentials: &[RegistryCredential], registry: &str) -> RegistryAuth {
    let wanted = normalise(registry);
    credentials
        .iter()
        .find(|c| normalise(&c.registry) == wanted)
        .map_or(RegistryAuth::Anonymous, |c| {
            RegistryAuth::Basic(c.username.clone(), c.password.clone())
        })
}

/// Lets a credential be written the ways `docker login` config files spell registries.
fn normalise(registry: &str) -> String {
    let bare = registry.trim();
    let bare = bare
        .strip_prefix("https://")
        .or_else(|| bare.strip_prefix("http://"))
        .unwrap_or(bare);
    let bare = bare.split('/').next().unwrap_or(bare).to_ascii_lowercase();
    match bare.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => bare,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_may_use_plain_http() {
        for registry in [
            "127.0.0.1:5000",
            "127.0.0.1",
            "127.9.8.7:80",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "::1",
        ] {
            assert_eq!(
                protocol_for(registry),
                ClientProtocol::HttpsExcept(vec![registry.to_owned()]),
                "{registry}"
            );
        }
    }

    #[test]
    fn every_other_registry_is_reached_over_https() {
        for registry in [
            "index.docker.io",
            "ghcr.io",
            "registry.example.com:5000",
            "10.0.0.1:5000",
            "192.168.1.10",
            "0.0.0.0:5000",
            "128.0.0.1:5000",
            "[fe80::1]:5000",
            "127.0.0.1.nip.io:5000",
            "localhost.example.com",
            "mylocalhost:5000",
        ] {
            assert!(!is_loopback_registry(registry), "{registry}");
            assert_eq!(protocol_for(registry), ClientProtocol::Https, "{registry}");
        }
    }

    #[test]
    fn credentials_match_the_references_registry() {
        let creds = vec![
            RegistryCredential {
                registry: "https://index.docker.io/v1/".into(),
                username: "hub".into(),
                password: "p1".into(),
            },
            RegistryCredential {
                registry: "127.0.0.1:5001".into(),
                username: "local".into(),
                password: "p2".into(),
            },
        ];
        assert_eq!(
            auth_for(&creds, "docker.io"),
            RegistryAuth::Basic("hub".into(), "p1".into())
        );
        assert_eq!(
            auth_for(&creds, "127.0.0.1:5001"),
            RegistryAuth::Basic("local".into(), "p2".into())
        );
        assert_eq!(auth_for(&creds, "127.0.0.1:5000"), RegistryAuth::Anonymous);
        assert_eq!(auth_for(&[], "ghcr.io"), RegistryAuth::Anonymous);
    }

    #[test]
    fn debug_hides_the_password() {
        let cred = RegistryCredential {
            registry: "ghcr.io".into(),
            username: "bot".into(),
            password: "hunter2-secret".into(),
        };
        let shown = format!("{cred:?}");
        assert!(!shown.contains("hunter2-secret") && shown.contains("bot"), "{shown}");
    }
}
