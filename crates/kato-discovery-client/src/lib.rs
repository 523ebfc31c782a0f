//! A client for Kato's discovery API, for plug-in authors.
//!
//! A plug-in container gets `KATO_DISCOVERY_URL` (its document's URL) and
//! `KATO_DISCOVERY_TOKEN`. With them it can [`fetch`](Client::fetch) its document,
//! [`watch`](Client::watch) it (a long-poll loop that wakes within milliseconds of a change,
//! retries with backoff and jitter while the server is away, and keeps the last good document
//! meanwhile), and [`ack`](Client::ack) what it applied, which the component's status shows.
//!
//! ```no_run
//! use kato_discovery_client::{AckStatus, Client};
//!
//! # async fn run() -> Result<(), kato_discovery_client::Error> {
//! let client = Client::from_env()?;
//! let pod = std::env::var("HOSTNAME").unwrap_or_default();
//! let mut watch = client.watch();
//! loop {
//!     let doc = watch.next().await?;
//!     println!("revision {}: {:?}", doc.revision, doc.base);
//!     // ... apply the document ...
//!     client.ack(doc.revision, &pod, AckStatus::Applied, "").await?;
//! }
//! # }
//! ```
//!
//! Plug-ins written for Rainbond read `$DISCOVER_URL` instead; [`fetch_resource_spec`] fetches
//! that document (Rainbond's ResourceSpec JSON).
#![forbid(unsafe_code)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How long one long-poll waits on the server by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed beyond the long-poll's wait before a request counts as lost.
const SLACK: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long [`Client::follow`] waits after the server refused the watch before it looks again.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// A component port the plug-in serves (`meta: component-port` values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub port: u16,
    pub protocol: String,
    /// For inbound net plug-ins: listen here and forward to `127.0.0.1:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    pub options: Map<String, Value>,
}

/// A port of a component this one depends on (`meta: downstream-port` values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Downstream {
    pub component: String,
    pub port: u16,
    pub protocol: String,
    pub options: Map<String, Value>,
}

/// A plug-in's discovery document: its live configuration at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub revision: u64,
    pub plugin: String,
    pub version: u32,
    pub base: Map<String, Value>,
    pub ports: Vec<Port>,
    pub downstream: Vec<Downstream>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Applied,
    Rejected,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not set: the plug-in runs outside a Kato pod, or its environment was changed")]
    MissingEnv(&'static str),
    #[error("cannot reach the discovery server: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The server refused the request; `status` 401/403/404 will not heal by retrying (the
    /// plug-in was uninstalled, or its token rotated: a redeploy brings the new one).
    #[error("the discovery server answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the discovery server sent a document this client cannot read: {0}")]
    BadDocument(#[source] reqwest::Error),
}

impl Error {
    /// Whether retrying may help (the server is restarting or unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable(_) | Error::BadDocument(_) => true,
            Error::Refused { status, .. } => *status >= 500 || *status == 429,
            Error::MissingEnv(_) => false,
        }
    }
}

/// One installation's discovery endpoint and token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    wait: Duration,
}

impl Client {
    /// `url` is the document's URL (`…/discovery/v1/{team}/{component}/{plugin}`).
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Client {
        // An image without CA certificates (`FROM scratch`) has no roots to load, and reqwest
        // refuses to build a client then: such a plug-in still reaches an `http://` server
        // (the usual in-cluster one), and an `https://` one fails to verify, with the reason.
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .or_else(|_| {
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tls_certs_only([])
                    .build()
            })
            .expect("a client with no TLS roots always builds");
        Client {
            http,
            url: url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            wait: DEFAULT_WAIT,
        }
    }

    /// From `KATO_DISCOVERY_URL` and `KATO_DISCOVERY_TOKEN`, as Kato sets them.
    pub fn from_env() -> Result<Client, Error> {
        let var = |name| std::env::var(name).map_err(|_| Error::MissingEnv(name));
        Ok(Client::new(var("KATO_DISCOVERY_URL")?, var("KATO_DISCOVERY_TOKEN")?))
    }

    /// How long each long-poll of [`Client::watch`] waits on the server (the server caps it).
    pub fn with_wait(mut self, wait: Duration) -> Client {
        self.wait = wait;
        self
    }

    /// The current document.
    pub async fn fetch(&self) -> Result<Document, Error> {
        let res = self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .timeout(SLACK)
            .send()
            .await
            .map_err(Error::Unreachable)?;
        read(res).await?.ok_or_else(|| Error::Refused {
            status: 304,
            message: "not modified".into(),
        })
    }

    /// The document once its revision differs from `revision`; `None` if it did not change
    /// within `wait`.
    pub async fn poll(&self, revision: u64, wait: Duration) -> Result<Option<Document>, Error> {
        let res = self
            .http
            .get(format!("{}?revision={revision}&wait={}", self.url, wait.as_secs()))
            .bearer_auth(&self.token)
            .timeout(wait + SLACK)
            .send()
            .await
            .map_err(Error::Unreachable)?;
        read(res).await
    }

    /// Reports what this pod did with a revision.
    pub async fn ack(&self, revision: u64, pod: &str, status: AckStatus, message: &str) -> Result<(), Error> {
        let body = serde_json::json!({"revision": revision, "pod": pod, "status": status, "message": message});
        let res = self
            .http
            .post(format!("{}/ack", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .timeout(SLACK)
            .send()
            .await
            .map_err(Error::Unreachable)?;
        refused(res).await.map(|_| ())
    }

    /// A plug-in's main loop: watches the document, hands each revision to `apply`, and acks
    /// its answer for `pod` — `Ok(message)` when the revision is in effect (`applied`),
    /// `Err(reason)` when the plug-in refuses it and keeps its last good config (`rejected`).
    /// A refused watch (the installation removed, its token rotated) keeps the last config and
    /// is tried again after 30 s. Returns when `stop` completes; problems are logged with
    /// `tracing`.
    ///
    /// ```no_run
    /// # async fn run(client: kato_discovery_client::Client) {
    /// let mut applied = 0;
    /// client
    ///     .follow("pod-1", async |doc| {
    ///         applied += 1;
    ///         Ok(format!("revision {} in effect", doc.revision))
    ///     }, std::future::pending())
    ///     .await;
    /// # }
    /// ```
    pub async fn follow(
        &self,
        pod: &str,
        mut apply: impl AsyncFnMut(&Document) -> Result<String, String>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut watch = self.watch();
        loop {
            let next = tokio::select! {
                n = watch.next() => n,
                _ = &mut stop => return,
            };
            let doc = match next {
                Ok(doc) => doc,
                Err(e) => {
                    tracing::error!(error = %e, "discovery refused; keeping the last good config");
                    tokio::select! {
                        _ = tokio::time::sleep(REFUSED_RETRY) => {}
                        _ = &mut stop => return,
                    }
                    watch = self.watch();
                    continue;
                }
            };
            let (status, message) = match apply(&doc).await {
                Ok(m) => (AckStatus::Applied, m),
                Err(m) => {
                    tracing::warn!(revision = doc.revision, reason = %m, "rejected; the last good config stays");
                    (AckStatus::Rejected, m)
                }
            };
            if let Err(e) = self.ack(doc.revision, pod, status, &message).await {
                tracing::warn!(revision = doc.revision, error = %e, "ack failed");
            }
        }
    }

    /// Every new revision, as it comes: the first call returns the current document.
    pub fn watch(&self) -> Watch {
        Watch {
            client: self.clone(),
            last: None,
            backoff: FIRST_BACKOFF,
        }
    }
}

async fn refused(res: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = res.status();
    if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(res);
    }
    let text = res.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    Err(Error::Refused {
        status: status.as_u16(),
        message,
    })
}

async fn read(res: reqwest::Response) -> Result<Option<Document>, Error> {
    let res = refused(res).await?;
    if res.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    res.json().await.map(Some).map_err(Error::BadDocument)
}

/// A long-poll loop over one document. See [`Client::watch`].
#[derive(Debug)]
pub struct Watch {
    client: Client,
    last: Option<Document>,
    backoff: Duration,
}

impl Watch {
    /// The last document received: still there while the server is away.
    pub fn last(&self) -> Option<&Document> {
        self.last.as_ref()
    }

    /// Waits for the next revision. Transient failures (server restarting, unreachable,
    /// answering 5xx) are retried with exponential backoff and jitter, without end; other
    /// refusals (401, 403, 404) are returned.
    pub async fn next(&mut self) -> Result<Document, Error> {
        loop {
            let outcome = match &self.last {
                None => self.client.fetch().await.map(Some),
                Some(d) => self.client.poll(d.revision, self.client.wait).await,
            };
            match outcome {
                Ok(Some(doc)) => {
                    self.backoff = FIRST_BACKOFF;
                    self.last = Some(doc.clone());
                    return Ok(doc);
                }
                Ok(None) => self.backoff = FIRST_BACKOFF,
                Err(e) if e.is_transient() => {
                    // Full jitter over the upper half: thousands of plug-ins that lost the same
                    // server do not come back in step.
                    let ms = self.backoff.as_millis() as u64;
                    let sleep = rand::random_range(ms / 2..=ms);
                    tokio::time::sleep(Duration::from_millis(sleep)).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Fetches Rainbond's ResourceSpec from `$DISCOVER_URL` (it carries its token).
pub async fn fetch_resource_spec(discover_url: &str) -> Result<Value, Error> {
    let res = reqwest::Client::new()
        .get(discover_url)
        .timeout(SLACK)
        .send()
        .await
        .map_err(Error::Unreachable)?;
    refused(res).await?.json().await.map_err(Error::BadDocument)
}
