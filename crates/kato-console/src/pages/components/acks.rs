//! An installation's discovery revision and, per pod, the revision its plug-in applied or
//! rejected: a fragment of the plug-ins tab, and the server-sent events that replace it as
//! acks and revisions come in.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kato_model::Values;
use serde::Deserialize;

use crate::api::enc;
use crate::{Console, Session};

pub fn routes() -> Router<Console> {
    Router::new().route("/teams/{team}/components/{c}/plugins/{p}/acks/events", get(events))
}

/// An installation as the API answers it (secret values left out).
#[derive(Debug, Clone, Deserialize)]
pub struct Installed {
    pub plugin: String,
    pub kind: String,
    pub version: u32,
    #[serde(default)]
    pub image: Option<String>,
    pub enabled: bool,
    pub memory_mib: u32,
    #[serde(default)]
    pub values: Values,
    /// `base.KEY`, `ports.80.KEY`…: secret items that have a value.
    #[serde(default)]
    pub secret_values_set: Vec<String>,
    pub revision: u64,
    #[serde(default)]
    pub pods: Vec<PodReport>,
}

/// What one pod reported: the revision it applied last, and those it rejected since.
#[derive(Debug, Clone, Deserialize)]
pub struct PodReport {
    pub pod: String,
    pub applied_revision: Option<u64>,
    #[serde(default)]
    pub applied_at: Option<String>,
    /// What the plug-in said with that ack (empty when nothing).
    #[serde(default)]
    pub applied_message: Option<String>,
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rejected {
    pub revision: u64,
    pub message: String,
    #[serde(default)]
    pub at: String,
}

#[derive(askama::Template)]
#[template(path = "components/acks.html")]
struct Fragment<'a> {
    revision: u64,
    pods: &'a [PodReport],
    enabled: bool,
}

/// The fragment's HTML for an installation.
pub fn fragment(i: &Installed) -> String {
    let t = Fragment {
        revision: i.revision,
        pods: &i.pods,
        enabled: i.enabled,
    };
    askama::Template::render(&t).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the acks fragment failed to render");
        String::new()
    })
}

/// The API path of an installation.
pub fn installation_path(team: &str, c: &str, p: &str) -> String {
    format!("/teams/{}/components/{}/plugins/{}", enc(team), enc(c), enc(p))
}

/// Where the page's `[data-live]` box follows an installation's acks.
pub fn events_url(team: &str, c: &str, p: &str) -> String {
    format!("{}/acks/events", installation_path(team, c, p))
}

/// What the event stream holds between events.
struct Follow {
    console: Console,
    token: String,
    path: String,
    activity: tokio::sync::watch::Receiver<u64>,
    /// Resolves when the server begins to stop.
    stopping: futures_util::future::BoxFuture<'static, ()>,
    /// The installation as read when the stream opened, sent first.
    first: Option<Installed>,
    last: Option<String>,
    queued: VecDeque<Event>,
    done: bool,
}

impl Follow {
    /// Waits for a change (announced, or the periodic look), then the fragment if it differs
    /// from the last one sent; the stream ends when the server stops or the plug-in is gone.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            if self.last.is_some() {
                tokio::select! {
                    _ = self.activity.changed() => {}
                    () = tokio::time::sleep(self.console.options.ack_recheck) => {}
                    () = &mut self.stopping => {
                        self.done = true;
                        self.queued.push_back(Event::default().event("end").data("the server is stopping"));
                        continue;
                    }
                }
            }
            let read = match self.first.take() {
                Some(i) => Ok(i),
                None => self.console.api.get::<Installed>(&self.token, &self.path).await,
            };
            match read {
                Ok(i) => {
                    let html = fragment(&i);
                    if self.last.as_deref() != Some(html.as_str()) {
                        self.last = Some(html.clone());
                        self.queued.push_back(Event::default().event("html").data(html));
                    }
                }
                Err(f) => {
                    self.done = true;
                    let gone = if f.status == StatusCode::NOT_FOUND {
                        "<p class=\"muted\">This plug-in is no longer installed: reload the page.</p>".to_owned()
                    } else {
                        format!("<p class=\"error\">{}</p>", escape_html(&f.to_string()))
                    };
                    self.queued.push_back(Event::default().event("html").data(gone));
                    self.queued.push_back(Event::default().event("end").data(f.message));
                }
            }
        }
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `html` events with the fragment: one at once, then one whenever it changes.
async fn events(
    session: Session,
    State(console): State<Console>,
    Path((team, c, p)): Path<(String, String, String)>,
) -> Response {
    let path = installation_path(&team, &c, &p);
    // A refusal (another team's, no such installation) is an answer, not a stream.
    let first = match console.api.get::<Installed>(&session.token, &path).await {
        Ok(i) => i,
        Err(f) => return (f.status, f.to_string()).into_response(),
    };
    let follow = Follow {
        activity: console.state.discovery.activity(),
        stopping: Box::pin(console.state.builds.stopping.clone().cancelled_owned()),
        console,
        token: session.token,
        path,
        first: Some(first),
        last: None,
        queued: VecDeque::new(),
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let e = f.next().await?;
        Some((Ok::<_, Infallible>(e), f))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
