//! How a downstream's host name becomes endpoints: DNS in a pod, a fixed map in tests.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

pub type Resolved<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns `{component}.{team}` and a port into the downstream's endpoints.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolved<'a>;
}

/// The system resolver (tokio's `lookup_host`): what runs in a pod, where `{component}.{team}`
/// resolves on both podman and Kubernetes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dns;

impl Resolver for Dns {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolved<'a> {
        Box::pin(async move {
            let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs)
        })
    }
}

/// Fixed endpoints per host name, port included (the document's port is ignored): for tests
/// and benches that point downstreams at local servers.
#[derive(Debug, Default, Clone)]
pub struct HostMap(pub HashMap<String, Vec<SocketAddr>>);

impl HostMap {
    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> HostMap {
        self.0.insert(host.to_owned(), addrs.into_iter().collect());
        self
    }
}

impl Resolver for HostMap {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> Resolved<'a> {
        let found = self.0.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} is not in the host map")))
        })
    }
}
