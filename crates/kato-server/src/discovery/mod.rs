//! Discovery (DESIGN §6): the live document of each installation, its tokens, its change
//! notifications across replicas, and what plug-in pods report applying.

pub mod hub;
pub mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

use kato_model::{ComponentName, ComponentSpec, DiscoveryDocument, Installation, PluginName, TeamName, Version};
use kato_store::{AckStatus, DiscoveryEvent, InstallationKey, InstallationRecord, Store};
use serde_json::{Value, json};

use crate::auth::hash_token;
use crate::error::{ApiError, ApiResult};
use crate::ops::component_context;
pub use hub::{Entry, Hub, Snapshot};
pub use token::TokenKey;

/// The discovery key and the live documents.
pub struct Discovery {
    pub key: TokenKey,
    pub hub: Hub,
    /// Bumped after each commit that touched an installation and after each ack stored by this
    /// server (and on each change another replica announces): what pages showing revisions and
    /// acks wait on. Acks stored by another replica are not announced, so such pages also
    /// look again now and then.
    activity: tokio::sync::watch::Sender<u64>,
}

impl Discovery {
    pub fn new(key: TokenKey) -> Self {
        Discovery {
            key,
            hub: Hub::default(),
            activity: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Tells every [`Discovery::activity`] receiver that an installation or its acks changed.
    pub fn announce(&self) {
        self.activity.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes after each [`Discovery::announce`].
    pub fn activity(&self) -> tokio::sync::watch::Receiver<u64> {
        self.activity.subscribe()
    }

    /// The clear token of an installation, for rendering `KATO_DISCOVERY_TOKEN`.
    pub fn token(&self, team: &TeamName, component: &ComponentName, record: &InstallationRecord) -> String {
        let key = InstallationKey {
            team: team.clone(),
            component: component.clone(),
            plugin: record.installation.plugin.clone(),
        };
        self.key.token(&key, &record.discovery.nonce)
    }

    /// The installation a discovery token belongs to; `None` for an unknown or revoked token.
    pub async fn installation_of(&self, store: &Store, token: &str) -> ApiResult<Option<InstallationKey>> {
        let hash = hash_token(token);
        if let Some(k) = self.hub.cached_token(&hash) {
            return Ok(Some(k));
        }
        let found = store.installation_by_discovery_hash(&hash).await?;
        if let Some(k) = &found {
            self.hub.cache_token(hash, k.clone());
        }
        Ok(found)
    }
}

/// The document an installation serves, as the component and its dependencies are now.
pub fn document(
    inst: &Installation,
    version: &Version,
    component: &ComponentSpec,
    downstream: &[&ComponentSpec],
) -> DiscoveryDocument {
    let resolved = inst.values.resolve(&version.spec, component, downstream);
    DiscoveryDocument::new(inst, &resolved)
}

/// Whether two documents differ in anything but their revision.
pub fn same_content(a: &DiscoveryDocument, b: &DiscoveryDocument) -> bool {
    DiscoveryDocument {
        revision: 0,
        ..a.clone()
    } == DiscoveryDocument {
        revision: 0,
        ..b.clone()
    }
}

/// Reads an installation's document from the store; `None` if it is not installed.
pub async fn load(store: &Store, key: &InstallationKey) -> ApiResult<Option<DiscoveryDocument>> {
    let ctx = match component_context(&mut &*store, &key.team, &key.component).await {
        Ok(ctx) => ctx,
        Err(ApiError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(ctx
        .installs
        .iter()
        .find(|(r, _)| r.installation.plugin == key.plugin)
        .map(|(r, v)| document(&r.installation, v, &ctx.spec, &ctx.downstream_refs())))
}

/// Follows the store's change feed (PostgreSQL: changes committed by every replica) for as
/// long as the server runs. Nothing to follow on SQLite: this process makes every change.
pub async fn follow_changes(store: &Store, discovery: Arc<Discovery>) -> Result<(), kato_store::StoreError> {
    let Some(mut events) = store.listen_discovery().await? else {
        return Ok(());
    };
    let store = store.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                DiscoveryEvent::Changed(key) => discovery.hub.refresh(&store, &[key]).await,
                DiscoveryEvent::Resync => discovery.hub.resync(&store).await,
            }
            discovery.announce();
        }
    });
    Ok(())
}

/// Old rows whose tokens were kept in clear: their old token became the nonce; fill in the hash.
pub async fn backfill_hashes(store: &Store, key: &TokenKey) -> Result<usize, kato_store::StoreError> {
    let missing = store.unhashed_discovery_credentials().await?;
    if missing.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    for (k, nonce) in &missing {
        let cred = key.credential(k, nonce.clone());
        tx.set_discovery_credential(&k.team, &k.component, &k.plugin, &cred)
            .await?;
    }
    tx.commit().await?;
    Ok(missing.len())
}

/// Per plug-in of a component, what each pod reported: the revision it applied last (with the
/// plug-in's message, e.g. what it made of it) and the revisions it rejected since, with theirs. This is what the component's status and
/// the installation's view show.
pub async fn pod_reports(
    store: &Store,
    team: &TeamName,
    component: &ComponentName,
) -> ApiResult<BTreeMap<PluginName, Value>> {
    let mut out: BTreeMap<PluginName, BTreeMap<String, Value>> = BTreeMap::new();
    for ack in store.list_acks(team, component).await? {
        let pod = out
            .entry(ack.plugin.clone())
            .or_default()
            .entry(ack.pod.clone())
            .or_insert_with(|| {
                json!({"pod": ack.pod, "applied_revision": null, "applied_at": null, "applied_message": null, "rejected": []})
            });
        match ack.status {
            AckStatus::Applied => {
                pod["applied_revision"] = ack.revision.into();
                pod["applied_at"] = ack.at.into();
                pod["applied_message"] = ack.message.into();
            }
            AckStatus::Rejected => {
                if let Some(list) = pod["rejected"].as_array_mut() {
                    list.push(json!({"revision": ack.revision, "message": ack.message, "at": ack.at}));
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(plugin, pods)| (plugin, Value::Array(pods.into_values().collect())))
        .collect())
}
