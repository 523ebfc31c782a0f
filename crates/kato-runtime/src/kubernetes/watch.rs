//! A component's status as it changes: one list of its pods, then a watch from that list's
//! resource version, re-listing when the API server says the version is too old (410 Gone).

use std::collections::BTreeMap;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

use super::{KubernetesRuntime, api_error, pod_selector, status};
use crate::{ComponentRef, ComponentStatus, RuntimeError};

/// How long the API server keeps one watch open before the driver opens the next.
const WATCH_SECONDS: u32 = 290;

type Events = BoxStream<'static, kube::Result<WatchEvent<Pod>>>;

struct Watch {
    rt: KubernetesRuntime,
    team: String,
    component: String,
    pods: BTreeMap<String, Pod>,
    /// The resource version to watch from; `None` until listed (again).
    version: Option<String>,
    events: Option<Events>,
    last: Option<ComponentStatus>,
    done: bool,
}

impl Watch {
    async fn deployment(&mut self) -> Result<Option<Deployment>, RuntimeError> {
        let api: Api<Deployment> = Api::namespaced(self.rt.client.clone(), &self.team);
        // Borrows of the fields only: the stream must be Send, and a watch is not Sync.
        let c = ComponentRef {
            team: &self.team,
            component: &self.component,
        };
        self.rt
            .call(
                || format!("read deployment {}/{}", c.team, c.component),
                api.get_opt(c.component),
            )
            .await
    }

    async fn relist(&mut self) -> Result<(), RuntimeError> {
        let api: Api<Pod> = Api::namespaced(self.rt.client.clone(), &self.team);
        // Borrows of the fields only: the stream must be Send, and a watch is not Sync.
        let c = ComponentRef {
            team: &self.team,
            component: &self.component,
        };
        let lp = ListParams::default().labels(&pod_selector(c));
        let list = self
            .rt
            .call(|| format!("list pods of {}/{}", c.team, c.component), api.list(&lp))
            .await?;
        self.version = Some(list.metadata.resource_version.unwrap_or_default());
        self.pods = list
            .items
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
            .collect();
        Ok(())
    }

    async fn open(&mut self, version: &str) -> Result<(), RuntimeError> {
        let api: Api<Pod> = Api::namespaced(self.rt.client.clone(), &self.team);
        // Borrows of the fields only: the stream must be Send, and a watch is not Sync.
        let c = ComponentRef {
            team: &self.team,
            component: &self.component,
        };
        let wp = WatchParams::default().labels(&pod_selector(c)).timeout(WATCH_SECONDS);
        let events = self
            .rt
            .call(
                || format!("watch pods of {}/{}", c.team, c.component),
                api.watch(&wp, version),
            )
            .await?;
        self.events = Some(events.boxed());
        Ok(())
    }

    /// Waits for the next change of the pods; `Ok(false)` when the watch must be re-opened.
    async fn next_change(&mut self) -> Result<bool, RuntimeError> {
        let Some(events) = self.events.as_mut() else {
            return Ok(false);
        };
        let c = format!("watch pods of {}/{}", self.team, self.component);
        match events.next().await {
            // The API server closed the watch (its timeout): resume from the last version.
            None => {
                self.events = None;
                Ok(false)
            }
            Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                self.version = p.metadata.resource_version.clone().or(self.version.take());
                self.pods.insert(p.metadata.name.clone().unwrap_or_default(), p);
                Ok(true)
            }
            Some(Ok(WatchEvent::Deleted(p))) => {
                self.version = p.metadata.resource_version.clone().or(self.version.take());
                self.pods.remove(p.metadata.name.as_deref().unwrap_or_default());
                Ok(true)
            }
            Some(Ok(WatchEvent::Bookmark(b))) => {
                self.version = Some(b.metadata.resource_version);
                Ok(false)
            }
            // Too old a version: list again.
            Some(Ok(WatchEvent::Error(s))) if s.code == 410 => {
                self.version = None;
                self.events = None;
                Ok(false)
            }
            Some(Ok(WatchEvent::Error(s))) => Err(api_error(&c, kube::Error::Api(s))),
            Some(Err(e)) => Err(api_error(&c, e)),
        }
    }

    /// The next status that differs from the last one yielded.
    async fn next_status(&mut self) -> Result<ComponentStatus, RuntimeError> {
        loop {
            let changed = match self.version.clone() {
                None => {
                    self.relist().await?;
                    true
                }
                Some(version) if self.events.is_none() => {
                    self.open(&version).await?;
                    false
                }
                Some(_) => self.next_change().await?,
            };
            if !changed {
                continue;
            }
            let deployment = self.deployment().await?;
            let pods: Vec<Pod> = self.pods.values().cloned().collect();
            let status = status::component_status(deployment.as_ref(), &pods);
            if self.last.as_ref() != Some(&status) {
                self.last = Some(status.clone());
                return Ok(status);
            }
        }
    }
}

impl KubernetesRuntime {
    /// The component's status now, then each time it changes, from a watch of its pods. The
    /// stream ends after the first error.
    pub fn watch_status(
        &self,
        c: ComponentRef<'_>,
    ) -> impl Stream<Item = Result<ComponentStatus, RuntimeError>> + Send + 'static {
        let watch = Watch {
            rt: self.clone(),
            team: c.team.to_owned(),
            component: c.component.to_owned(),
            pods: BTreeMap::new(),
            version: None,
            events: None,
            last: None,
            done: false,
        };
        futures::stream::unfold(watch, |mut w| async move {
            if w.done {
                return None;
            }
            let next = w.next_status().await;
            w.done = next.is_err();
            Some((next, w))
        })
    }
}
