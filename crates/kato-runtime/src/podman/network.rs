//! The network `podman kube play` puts pods on, and the address on it where pods reach the host.
//!
//! Pods played without a network of their own join `podman-default-kube-network` (podman creates
//! it on the first play). Its gateway is the host's address on that bridge: a server that listens
//! there is reachable from every pod and from nothing outside this machine.

use std::ffi::OsString;
use std::net::IpAddr;

use super::{ENGINE, PodmanConfig, PodmanRuntime};
use crate::RuntimeError;

/// The network `podman kube play` joins pods to when the Pod names none.
pub const KUBE_NETWORK: &str = "podman-default-kube-network";

impl PodmanRuntime {
    /// Makes sure [`KUBE_NETWORK`] exists (once per server, unless a play misses it): deploys
    /// name it to give the pod its `{component}.{team}` alias, and podman creates a network it is
    /// told to join only when it chooses it itself.
    pub(super) async fn ensure_network(&self) -> Result<(), RuntimeError> {
        if self.network_ready.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.pod_gateway().await?;
        self.network_ready.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The gateway of [`KUBE_NETWORK`], creating the network as `kube play` would when it does
    /// not exist yet, so that the address is known before the first pod runs.
    pub async fn pod_gateway(&self) -> Result<IpAddr, RuntimeError> {
        let limit = self.config.call_timeout;
        let exists: Vec<OsString> = ["network", "exists", KUBE_NETWORK].map(OsString::from).to_vec();
        if !self.output(&exists, None, limit).await?.0 {
            let create: Vec<OsString> = ["network", "create", KUBE_NETWORK].map(OsString::from).to_vec();
            // Another process may have created it meanwhile: the inspect below decides.
            let _ = self.output(&create, None, limit).await?;
        }
        let inspect: Vec<OsString> = [
            "network",
            "inspect",
            "--format",
            "{{range .Subnets}}{{.Gateway}} {{end}}",
            KUBE_NETWORK,
        ]
        .map(OsString::from)
        .to_vec();
        let out = self.run(&inspect, None, limit).await?;
        gateway_of(&out).ok_or_else(|| RuntimeError::Engine {
            engine: ENGINE,
            message: format!(
                "the network {KUBE_NETWORK} has no IPv4 gateway (podman network inspect says `{}`)",
                out.trim()
            ),
        })
    }
}

/// Asks podman for the gateway pods reach the host on (see [`PodmanRuntime::pod_gateway`]).
pub async fn kube_network_gateway(config: &PodmanConfig) -> Result<IpAddr, RuntimeError> {
    let runtime = PodmanRuntime::new(config.clone()).map_err(|e| RuntimeError::Engine {
        engine: ENGINE,
        message: format!("cannot write containers.conf into {}: {e}", config.data_dir.display()),
    })?;
    runtime.pod_gateway().await
}

/// The first IPv4 gateway of `podman network inspect`'s list; an IPv6 one only when there is
/// no IPv4 one.
fn gateway_of(listed: &str) -> Option<IpAddr> {
    let all: Vec<IpAddr> = listed.split_whitespace().filter_map(|g| g.parse().ok()).collect();
    all.iter().find(|g| g.is_ipv4()).or(all.first()).copied()
}

#[cfg(test)]
mod tests {
    use super::gateway_of;

    #[test]
    fn the_ipv4_gateway_is_preferred() {
        assert_eq!(gateway_of("fd00::1 10.89.0.1 \n"), Some("10.89.0.1".parse().unwrap()));
        assert_eq!(gateway_of("fd00::1 "), Some("fd00::1".parse().unwrap()));
        assert_eq!(gateway_of("<no value> \n"), None);
        assert_eq!(gateway_of(""), None);
    }
}
