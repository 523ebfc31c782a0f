//! Resolving an image reference against its registry and pinning it as `registry/repository@digest`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kato_model::ImageRef;
use oci_client::Client;
use oci_client::client::ClientConfig;
use oci_client::secrets::RegistryAuth;

use crate::error::{Call, ResolveError};
use crate::process::BuildLog;
use crate::registry::{RegistryCredential, auth_for, protocol_for};
use crate::retry::{Attempt, RetryPolicy, retrying};

const USER_AGENT: &str = concat!("kato/", env!("CARGO_PKG_VERSION"));

/// How the [`Resolver`] talks to registries.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Bound on one attempt at a resolution, all its requests to the registry included (10 s by default).
    pub timeout: Duration,
    /// Credentials per registry; references to other registries are resolved anonymously.
    pub credentials: Vec<RegistryCredential>,
    /// Retries of calls that failed for a passing reason (connection refused, HTTP 503…).
    pub retry: RetryPolicy,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            credentials: Vec::new(),
            retry: RetryPolicy::default(),
        }
    }
}

/// An image pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `registry/repository@sha256:<64 hex>`, normalised the way `docker` does
    /// (`docker.io/library/nginx@sha256:…` for `nginx`).
    pub reference: String,
    /// `sha256:<64 hex>`: the manifest's digest, or the index's for a multi-arch image.
    pub digest: String,
}

/// Resolves image references to digests. Cheap to clone; build one per server so connections and
/// registry tokens are reused.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
    /// Where retries are told, besides the server's own log.
    log: Option<BuildLog>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the credentials.
        f.debug_struct("Resolver")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    timeout: Duration,
    credentials: Vec<RegistryCredential>,
    retry: RetryPolicy,
    /// One client per registry host: the protocol is decided per host, and a client remembers the
    /// first credentials it is given for a registry, so clients are never shared across registries.
    clients: Mutex<HashMap<String, Client>>,
}

impl Resolver {
    pub fn new(cfg: ResolverConfig) -> Resolver {
        Resolver {
            inner: Arc::new(Inner {
                timeout: cfg.timeout,
                credentials: cfg.credentials,
                retry: cfg.retry,
                clients: Mutex::new(HashMap::new()),
            }),
            log: None,
        }
    }

    /// The same resolver (clients and tokens shared) telling its retries in `log` too.
    pub fn logging_to(&self, log: BuildLog) -> Resolver {
        Resolver {
            inner: self.inner.clone(),
            log: Some(log),
        }
    }

    /// Asks the image's registry for the digest of its manifest (or of its index, for a multi-arch
    /// image: what `docker pull` pins). A reference that already names a digest is checked to exist.
    pub async fn resolve(&self, image: &ImageRef) -> Result<Pinned, ResolveError> {
        let reference = image.reference();
        let (auth, call, client) = self.call_for(image);
        let started = Instant::now();
        tracing::debug!(image = %image, registry = call.registry, "resolving image");

        let outcome = self
            .retrying(|| async {
                match tokio::time::timeout(self.inner.timeout, client.fetch_manifest_digest(reference, &auth)).await {
                    Err(_elapsed) => Err(call.attempt_timed_out()),
                    Ok(Err(e)) => Err(call.attempt(e)),
                    Ok(Ok(digest)) => pin(image, digest, &call).map_err(Attempt::fatal),
                }
            })
            .await;
        let elapsed_ms = started.elapsed().as_millis();
        match &outcome {
            Ok(pinned) => tracing::debug!(image = %image, pinned = %pinned.reference, elapsed_ms, "resolved image"),
            Err(e) => tracing::debug!(image = %image, error = %e, elapsed_ms, "could not resolve image"),
        }
        outcome
    }

    /// The annotations of an image's manifest (empty for an index or a manifest without any):
    /// what a builder recorded there, such as the digest of the base it built on.
    pub async fn annotations(&self, image: &ImageRef) -> Result<BTreeMap<String, String>, ResolveError> {
        let reference = image.reference();
        let (auth, call, client) = self.call_for(image);
        let (bytes, _) = self
            .retrying(|| async {
                let pull = client.pull_manifest_raw(reference, &auth, &crate::copy::ACCEPTED);
                match tokio::time::timeout(self.inner.timeout, pull).await {
                    Err(_elapsed) => Err(call.attempt_timed_out()),
                    Ok(Err(e)) => Err(call.attempt(e)),
                    Ok(Ok(got)) => Ok(got),
                }
            })
            .await?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ResolveError::Registry {
            image: image.as_str().to_owned(),
            detail: format!("its manifest is not JSON ({e})"),
        })?;
        let annotations = doc["annotations"].as_object().into_iter().flatten();
        Ok(annotations
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect())
    }

    /// What one call about `image` needs: the credentials for its registry, what its errors
    /// say, and the registry's client.
    fn call_for<'i>(&self, image: &'i ImageRef) -> (RegistryAuth, Call<'i>, Client) {
        let reference = image.reference();
        let auth = auth_for(&self.inner.credentials, reference.registry());
        let call = Call {
            image: image.as_str(),
            registry: reference.registry(),
            credentials_given: auth != RegistryAuth::Anonymous,
            timeout: self.inner.timeout,
        };
        (auth, call, self.client_for(reference.resolve_registry()))
    }

    /// Runs one call with the resolver's retry policy.
    pub(crate) async fn retrying<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T, ResolveError>
    where
        Fut: Future<Output = Result<T, Attempt<ResolveError>>>,
    {
        retrying(&self.inner.retry, self.log.as_ref(), op).await
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) fn credentials(&self) -> &[RegistryCredential] {
        &self.inner.credentials
    }

    pub(crate) fn client_for(&self, registry: &str) -> Client {
        let mut clients = self.inner.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(registry.to_owned())
            .or_insert_with(|| {
                Client::new(ClientConfig {
                    protocol: protocol_for(registry),
                    connect_timeout: Some(self.inner.timeout),
                    read_timeout: Some(self.inner.timeout),
                    user_agent: USER_AGENT,
                    // Resolution pins the index itself, never one platform's manifest.
                    platform_resolver: None,
                    // A copied blob goes up in one PUT of known length (streamed from the pull)
                    // rather than 4 MiB PATCHes: fewer round trips.
                    use_monolithic_push: true,
                    ..ClientConfig::default()
                })
            })
            .clone()
    }
}

/// Builds the pinned reference, refusing a digest that would not make a valid reference.
fn pin(image: &ImageRef, digest: String, call: &Call<'_>) -> Result<Pinned, ResolveError> {
    let reference = image.reference();
    let text = format!("{}/{}@{}", reference.registry(), reference.repository(), digest);
    if !is_sha256(&digest) || text.parse::<ImageRef>().is_err() {
        return Err(ResolveError::Registry {
            image: call.image.to_owned(),
            detail: format!("it answered the digest `{digest}`, which is not sha256:<64 hex digits>"),
        });
    }
    Ok(Pinned {
        reference: text,
        digest,
    })
}

fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_keep_the_registry_and_repository_docker_would() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let call = Call {
            image: "nginx",
            registry: "docker.io",
            credentials_given: false,
            timeout: Duration::from_secs(1),
        };
        let nginx: ImageRef = "nginx".parse().unwrap();
        let pinned = pin(&nginx, digest.clone(), &call).unwrap();
        assert_eq!(pinned.reference, format!("docker.io/library/nginx@{digest}"));
        let tagged_and_pinned: ImageRef = format!("127.0.0.1:5000/team/app:1@{digest}").parse().unwrap();
        let pinned = pin(&tagged_and_pinned, digest.clone(), &call).unwrap();
        assert_eq!(pinned.reference, format!("127.0.0.1:5000/team/app@{digest}"));
    }

    #[test]
    fn odd_digests_are_refused() {
        let call = Call {
            image: "nginx",
            registry: "docker.io",
            credentials_given: false,
            timeout: Duration::from_secs(1),
        };
        let nginx: ImageRef = "nginx".parse().unwrap();
        for bad in [
            "sha256:abc",
            &format!("sha512:{}", "a".repeat(128)),
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(
                matches!(pin(&nginx, bad.to_owned(), &call), Err(ResolveError::Registry { .. })),
                "{bad}"
            );
        }
    }
}
