//! Where plug-ins on the podman target reach the discovery API when `--public-url` is not given.
//!
//! Inside a pod, `127.0.0.1` is the pod itself, so the server's loopback `--listen` address does
//! not reach plug-ins. The host's address on podman's pod network (its gateway) does, from every
//! pod and from nothing outside this machine. There the server serves the discovery API only,
//! so the admin API stays on loopback unless the operator listens elsewhere.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::{Config, StartError, TargetKind, choose_target};

/// The address plug-ins are told, and the listener the server opens there (if any).
pub struct PodAddress {
    pub listener: Option<TcpListener>,
    pub why: &'static str,
}

/// Sets `config.public_url` to the pod network's gateway on the podman target when none was
/// given, and opens the discovery-only listener there when `--listen` does not cover it.
pub async fn choose(config: &mut Config) -> Result<Option<PodAddress>, StartError> {
    if config.public_url.is_some() || choose_target(config.target) != TargetKind::Podman {
        return Ok(None);
    }
    let listen = config.listen;
    if !listen.ip().is_loopback() && !listen.ip().is_unspecified() {
        // The operator chose an address of this host: plug-ins are told that one.
        return Ok(None);
    }
    let podman = kato_runtime::PodmanConfig::new(&config.data_dir);
    let gateway = match kato_runtime::kube_network_gateway(&podman).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot find podman's pod network: plug-ins will not reach the discovery API (run `kato doctor`, or give --public-url)"
            );
            return Ok(None);
        }
    };
    let (listener, at, why) = if listen.ip().is_unspecified() {
        (
            None,
            SocketAddr::new(gateway, listen.port()),
            "podman's pod network gateway, within --listen",
        )
    } else {
        let addr = SocketAddr::new(gateway, listen.port());
        let tcp = bind_ahead(addr).map_err(|source| StartError::PodListen { addr, source })?;
        let at = tcp
            .local_addr()
            .map_err(|source| StartError::PodListen { addr, source })?;
        (Some(tcp), at, "discovery only, on podman's pod network gateway")
    };
    config.public_url = Some(format!("http://{at}"));
    Ok(Some(PodAddress { listener, why }))
}

/// Binds `addr` even while no pod runs: podman brings the bridge that carries the gateway's
/// address up with the first pod, and takes it down after the last.
fn bind_ahead(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(target_os = "linux")]
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
