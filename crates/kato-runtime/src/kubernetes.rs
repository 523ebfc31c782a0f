//! `--target kubernetes`: server-side apply into the team's namespace (DESIGN §9).
//!
//! Every object of a component is applied under one field manager (`kato`, forced), in the
//! namespace named after the team, which is created when missing. Objects the component rendered
//! before but no longer renders are found by the labels every rendered object carries
//! (`app.kubernetes.io/managed-by=kato`, `kato/team`, `kato/component`) and deleted. Status is read
//! from the component's pods, logs from the pod log endpoint. Every API call is bounded by a
//! timeout; the API server's refusals come back with its own message.

mod status;
mod watch;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kato_render::{LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_TEAM, Object, Rendered};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ComponentRef, ComponentStatus, LogStream, LogsRequest, Runtime, RuntimeError, TargetKind};

const ENGINE: &str = "kubernetes";

/// Runs components on a Kubernetes cluster.
#[derive(Clone)]
pub struct KubernetesRuntime {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for KubernetesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRuntime")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KubernetesRuntime {
    /// The field manager of every apply.
    pub const FIELD_MANAGER: &str = "kato";
    /// How long one API call may take unless [`KubernetesRuntime::with_timeout`] says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Connects with the kubeconfig at `kubeconfig` (its current context), or, without one, with
    /// the default configuration: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster service
    /// account.
    pub async fn from_config(kubeconfig: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(&path)
                    .map_err(|e| engine(format!("cannot read the kubeconfig {}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| engine(format!("kubeconfig {}: {e}", path.display())))?
            }
            None => Config::infer().await.map_err(|e| {
                engine(format!(
                    "no cluster configuration ({e}): pass --kubeconfig PATH, set KUBECONFIG, or run inside a cluster"
                ))
            })?,
        };
        // Followed logs may stay quiet for long; every other call has its own deadline.
        config.read_timeout = None;
        let client = Client::try_from(config).map_err(|e| engine(format!("cannot build a cluster client: {e}")))?;
        Ok(Self::from_client(client))
    }

    /// Drives the cluster `client` talks to.
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Bounds every API call by `timeout` instead of [`Self::DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Asks the API server its version (`v1.33.1`): a cheap check, at start, that the cluster
    /// answers and accepts the credentials.
    pub async fn server_version(&self) -> Result<String, RuntimeError> {
        let info = self
            .call(
                || "read the API server's version".into(),
                self.client.apiserver_version(),
            )
            .await?;
        Ok(info.git_version)
    }

    /// Runs one API call within the timeout; `what` names it in errors.
    async fn call<T>(
        &self,
        what: impl Fn() -> String,
        fut: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, RuntimeError> {
        self.timed(fut).await?.map_err(|e| api_error(&what(), e))
    }

    /// Runs one API call within the timeout, leaving its own error to the caller.
    async fn timed<T>(&self, fut: impl Future<Output = kube::Result<T>>) -> Result<kube::Result<T>, RuntimeError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| RuntimeError::Timeout {
                engine: ENGINE,
                seconds: self.timeout.as_secs_f64().ceil() as u64,
            })
    }

    /// The label selector of every object Kato applied for the component (what garbage
    /// collection and stop delete).
    pub fn owned_selector(c: ComponentRef<'_>) -> String {
        owned_selector(c)
    }

    async fn ensure_namespace(&self, name: &str) -> Result<(), RuntimeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = self
            .call(|| format!("read namespace {name}"), api.get_opt(name))
            .await?;
        if let Some(ns) = found {
            // Kato's permissions are cluster-wide: a team named like a system namespace must not
            // get to apply (forcibly) into it.
            let managed = ns.metadata.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED_BY));
            if managed.map(String::as_str) != Some("kato") {
                return Err(engine(format!(
                    "namespace `{name}` exists and is not managed by Kato: label it \
                     {LABEL_MANAGED_BY}=kato to let team `{name}` run components there, or use another team name"
                )));
            }
            return Ok(());
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([(LABEL_MANAGED_BY.to_owned(), "kato".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match self.timed(api.create(&PostParams::default(), &ns)).await? {
            Ok(_) => Ok(()),
            // Created meanwhile by another deploy of the same team.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_error(&format!("create namespace {name}"), e)),
        }
    }

    async fn apply<K>(&self, namespace: &str, object: &K) -> Result<(), RuntimeError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let name = object.meta().name.clone().unwrap_or_default();
        let params = PatchParams::apply(Self::FIELD_MANAGER).force();
        self.call(
            || format!("apply {} {namespace}/{name}", K::kind(&())),
            api.patch(&name, &params, &Patch::Apply(object)),
        )
        .await?;
        Ok(())
    }

    /// Deletes the component's objects of kind `K` whose names are not in `keep`.
    async fn delete_except<K>(&self, c: ComponentRef<'_>, keep: &BTreeSet<&str>) -> Result<(), RuntimeError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), c.team);
        let lp = ListParams::default().labels(&owned_selector(c));
        let list = self
            .call(
                || format!("list {}s of {}/{}", K::kind(&()), c.team, c.component),
                api.list_metadata(&lp),
            )
            .await?;
        for item in list.items {
            let Some(name) = item.metadata.name else { continue };
            if keep.contains(name.as_str()) {
                continue;
            }
            match self.timed(api.delete(&name, &DeleteParams::background())).await? {
                // Already gone: what we wanted.
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error(&format!("delete {} {}/{name}", K::kind(&()), c.team), e)),
            }
        }
        Ok(())
    }

    async fn pods(&self, c: ComponentRef<'_>) -> Result<Vec<Pod>, RuntimeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), c.team);
        let lp = ListParams::default().labels(&pod_selector(c));
        let list = self
            .call(|| format!("list pods of {}/{}", c.team, c.component), api.list(&lp))
            .await?;
        Ok(list.items)
    }
}

/// The labels every object the component rendered carries.
fn owned_selector(c: ComponentRef<'_>) -> String {
    format!(
        "{LABEL_MANAGED_BY}=kato,{LABEL_TEAM}={},{LABEL_COMPONENT}={}",
        c.team, c.component
    )
}

/// The labels of the component's pods (the Deployment's selector).
fn pod_selector(c: ComponentRef<'_>) -> String {
    format!("{LABEL_TEAM}={},{LABEL_COMPONENT}={}", c.team, c.component)
}

fn engine(message: String) -> RuntimeError {
    RuntimeError::Engine {
        engine: ENGINE,
        message,
    }
}

/// The API server's refusal in its own words, with what was being done.
fn api_error(what: &str, e: kube::Error) -> RuntimeError {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                "Failure"
            } else {
                s.reason.as_str()
            };
            let message = if s.message.is_empty() {
                "no message"
            } else {
                s.message.as_str()
            };
            engine(format!("{what}: {message} ({} {reason})", s.code))
        }
        other => engine(format!("{what}: {other}")),
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn kind(&self) -> TargetKind {
        TargetKind::Kubernetes
    }

    async fn deploy(&self, c: ComponentRef<'_>, rendered: &Rendered) -> Result<(), RuntimeError> {
        // Check everything before changing anything.
        for o in &rendered.objects {
            if let Object::Pod(_) = o {
                return Err(engine(format!(
                    "{} `{}` was rendered for podman: render the component for the kubernetes target",
                    o.kind(),
                    o.name()
                )));
            }
            let ns = o.metadata().namespace.as_deref();
            if ns.is_some_and(|ns| ns != c.team) {
                return Err(engine(format!(
                    "{} `{}` is in namespace `{}`, not the team's namespace `{}`",
                    o.kind(),
                    o.name(),
                    ns.unwrap_or_default(),
                    c.team
                )));
            }
        }
        self.ensure_namespace(c.team).await?;

        let (mut secrets, mut services, mut deployments) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for o in &rendered.objects {
            match o {
                Object::Secret(s) => {
                    self.apply(c.team, s).await?;
                    secrets.insert(o.name());
                }
                Object::Service(s) => {
                    self.apply(c.team, s).await?;
                    services.insert(o.name());
                }
                Object::Deployment(d) => {
                    self.apply(c.team, d).await?;
                    deployments.insert(o.name());
                }
                Object::Pod(_) => unreachable!("refused above"),
            }
        }
        // Garbage: what an earlier render held and this one does not. The workload first, so no
        // pod is left referring to a deleted Secret.
        self.delete_except::<Deployment>(c, &deployments).await?;
        self.delete_except::<Service>(c, &services).await?;
        self.delete_except::<Secret>(c, &secrets).await?;
        Ok(())
    }

    async fn stop(&self, c: ComponentRef<'_>) -> Result<(), RuntimeError> {
        let none = BTreeSet::new();
        self.delete_except::<Deployment>(c, &none).await?;
        self.delete_except::<Service>(c, &none).await?;
        self.delete_except::<Secret>(c, &none).await?;
        Ok(())
    }

    async fn status(&self, c: ComponentRef<'_>) -> Result<ComponentStatus, RuntimeError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), c.team);
        // Both at once: a status costs one round trip.
        let (pods, deployment) = tokio::try_join!(
            self.pods(c),
            self.call(
                || format!("read deployment {}/{}", c.team, c.component),
                api.get_opt(c.component)
            )
        )?;
        // The Deployment named after the component counts only when its labels say it is Kato's
        // for this component, as the pods (listed by those labels) are.
        let deployment = deployment.filter(|d| {
            let labels = d.metadata.labels.as_ref();
            let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
            label(LABEL_TEAM) == Some(c.team) && label(LABEL_COMPONENT) == Some(c.component)
        });
        Ok(status::component_status(deployment.as_ref(), &pods))
    }

    async fn logs(&self, c: ComponentRef<'_>, request: LogsRequest) -> Result<LogStream, RuntimeError> {
        let pods = self.pods(c).await?;
        let pod = status::log_pod(&pods).ok_or_else(|| RuntimeError::NotRunning(c.component.to_owned()))?;
        let container = request.container.unwrap_or_else(|| c.component.to_owned());
        let known = status::container_names(pod);
        if !known.contains(&container) {
            return Err(RuntimeError::NoSuchContainer {
                name: container,
                known: known.join(", "),
            });
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let params = LogParams {
            container: Some(container.clone()),
            follow: request.follow,
            tail_lines: request.tail.map(i64::from),
            ..Default::default()
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), c.team);
        let what = || format!("read logs of {}/{pod_name} container {container}", c.team);
        if !request.follow {
            // The whole answer within the deadline.
            let text = self.call(what, api.logs(&pod_name, &params)).await?;
            let lines: Vec<Result<Bytes, RuntimeError>> = text
                .split_inclusive('\n')
                .map(|l| Ok(Bytes::copy_from_slice(l.as_bytes())))
                .collect();
            return Ok(futures::stream::iter(lines).boxed());
        }
        let reader = self.call(what, api.log_stream(&pod_name, &params)).await?;
        let stream = reader
            .lines()
            .map_ok(|mut line| {
                line.push('\n');
                Bytes::from(line)
            })
            .map_err(|e| engine(format!("log stream: {e}")));
        Ok(stream.boxed())
    }
}
