//! The discovery API plug-ins call (DESIGN §6): the document with long-poll, acks, Rainbond's
//! ResourceSpec; and token rotation under `/api/v1`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kato_model::{ComponentName, PluginName, TeamName};
use kato_store::{AckRecord, AckStatus, InstallationKey};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::discovery::{Entry, Snapshot};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long a long-poll waits when `wait` is not given, and at most.
pub const DEFAULT_WAIT_SECS: u64 = 30;
pub const MAX_WAIT_SECS: u64 = 300;
pub(crate) const REVISION_HEADER: &str = "x-kato-revision";
const MAX_POD_LEN: usize = 253;
const MAX_MESSAGE_LEN: usize = 4096;

/// Paths plug-ins call, outside `/api/v1`.
pub fn plugin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/discovery/v1/{team}/{component}/{plugin}", get(document))
        .route("/discovery/v1/{team}/{component}/{plugin}/ack", post(ack))
        .route("/v1/resources/{team}/{component}/{plugin}", get(resource_spec))
}

/// Paths under `/api/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/teams/{team}/components/{component}/plugins/{plugin}/rotate-token",
        post(rotate_token),
    )
}

fn no_document() -> ApiError {
    ApiError::NotFound(
        "no discovery document at this path: check the team, component and plug-in (the plug-in gets them as KATO_TEAM, KATO_COMPONENT and KATO_PLUGIN)".into(),
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_value(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization: Bearer <token>` header's value.
pub(crate) fn bearer_value(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The installation at the path, if `token` is its own. Another installation's token gets 403
/// when the path names an installation and otherwise the same 404 whichever part is wrong.
async fn authorize(
    state: &AppState,
    token: Option<&str>,
    (team, component, plugin): &(String, String, String),
) -> ApiResult<InstallationKey> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::Unauthorized("missing discovery token: send `Authorization: Bearer $KATO_DISCOVERY_TOKEN`".into())
    })?;
    let owner = state
        .discovery
        .installation_of(&state.store, token)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "unknown or revoked discovery token: the plug-in was uninstalled or its token rotated (a redeploy hands it the current one)".into(),
            )
        })?;
    if owner.team.as_str() == team && owner.component.as_str() == component && owner.plugin.as_str() == plugin {
        return Ok(owner);
    }
    let exists = match (
        team.parse::<TeamName>(),
        component.parse::<ComponentName>(),
        plugin.parse::<PluginName>(),
    ) {
        (Ok(t), Ok(c), Ok(p)) => state.store.get_installation(&t, &c, &p).await?.is_some(),
        _ => false,
    };
    if exists {
        Err(ApiError::Forbidden(
            "this discovery token belongs to another installation: a plug-in reads only its own document".into(),
        ))
    } else {
        Err(no_document())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PollQuery {
    pub revision: Option<u64>,
    pub wait: Option<u64>,
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(format!(
        "{}: `revision` and `wait` are whole numbers, e.g. ?revision=3&wait=30",
        e.body_text()
    ))
}

fn revision_header(revision: u64) -> (header::HeaderName, HeaderValue) {
    (
        header::HeaderName::from_static(REVISION_HEADER),
        HeaderValue::from(revision),
    )
}

fn document_response(s: &Snapshot) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            revision_header(s.revision),
        ],
        s.body.clone(),
    )
        .into_response()
}

fn not_modified(revision: u64) -> Response {
    (StatusCode::NOT_MODIFIED, [revision_header(revision)]).into_response()
}

/// What a document request answers once its checks passed.
pub(crate) enum Answer {
    /// 200 with the document of this revision.
    Document(Arc<Snapshot>),
    /// 304: the plug-in's revision is still the current one.
    NotModified(u64),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Document(s) => document_response(&s),
            Answer::NotModified(revision) => not_modified(revision),
        }
    }
}

/// A document request after its checks: answered at once, or a long-poll to wait out.
pub(crate) enum Poll {
    Now(Answer),
    Wait(Waiter),
}

/// What a waiting long-poll holds: two channel receivers, its deadline and the revision the
/// plug-in has. Kept apart from the checks (token, store reads) so that the state held for
/// the whole wait, by thousands of plug-ins at once, is only this.
pub(crate) struct Waiter {
    rx: watch::Receiver<Entry>,
    closing: watch::Receiver<bool>,
    known: u64,
    wait: Duration,
}

/// `GET /discovery/v1/{team}/{component}/{plugin}[?revision=N&wait=S]`.
async fn document(
    State(state): State<Arc<AppState>>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(bad_query)?;
    let poll = Box::pin(start_poll(&state, bearer(&headers), &path, q)).await?;
    drop(headers);
    match poll {
        Poll::Now(answer) => Ok(answer.into_response()),
        Poll::Wait(w) => w.finish().await.map(IntoResponse::into_response),
    }
}

/// Checks the token and answers at once when the plug-in's revision is not the current one.
pub(crate) async fn start_poll(
    state: &AppState,
    token: Option<&str>,
    path: &(String, String, String),
    q: PollQuery,
) -> ApiResult<Poll> {
    let key = authorize(state, token, path).await?;
    let (snapshot, rx) = state
        .discovery
        .hub
        .current(&state.store, &key)
        .await?
        .ok_or_else(no_document)?;
    let Some(known) = q.revision.filter(|r| *r == snapshot.revision) else {
        return Ok(Poll::Now(Answer::Document(snapshot)));
    };
    Ok(Poll::Wait(Waiter {
        rx,
        closing: state.discovery.hub.closing(),
        known,
        wait: Duration::from_secs(q.wait.unwrap_or(DEFAULT_WAIT_SECS).min(MAX_WAIT_SECS)),
    }))
}

impl Waiter {
    /// The document as soon as its revision changes, else 304 at the deadline or when the
    /// server stops; 404 when the plug-in is uninstalled meanwhile.
    pub(crate) async fn finish(mut self) -> ApiResult<Answer> {
        let deadline = tokio::time::sleep(self.wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return Err(no_document());
                    }
                    let entry = self.rx.borrow_and_update().clone();
                    match entry {
                        Entry::Present(s) if s.revision != self.known => return Ok(Answer::Document(s)),
                        Entry::Gone => return Err(no_document()),
                        _ => {}
                    }
                }
                () = &mut deadline => return Ok(Answer::NotModified(self.known)),
                _ = self.closing.wait_for(|c| *c) => return Ok(Answer::NotModified(self.known)),
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    revision: u64,
    pod: String,
    status: AckStatus,
    #[serde(default)]
    message: String,
}

fn parse_ack(body: &[u8]) -> ApiResult<AckBody> {
    let ack: AckBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "malformed ack ({e}): send {{\"revision\": N, \"pod\": \"<pod name>\", \"status\": \"applied\" | \"rejected\", \"message\": \"...\"}}"
        ))
    })?;
    if ack.pod.trim().is_empty() || ack.pod.len() > MAX_POD_LEN || ack.pod.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "`pod` must name the pod (1 to {MAX_POD_LEN} printable characters; $HOSTNAME in a container)"
        )));
    }
    if ack.message.len() > MAX_MESSAGE_LEN {
        return Err(ApiError::BadRequest(format!(
            "`message` is longer than {MAX_MESSAGE_LEN} bytes: shorten it"
        )));
    }
    Ok(ack)
}

/// `POST /discovery/v1/{team}/{component}/{plugin}/ack`.
async fn ack(
    State(state): State<Arc<AppState>>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let key = authorize(&state, bearer(&headers), &path).await?;
    let ack = parse_ack(&body)?;
    let (current, _) = state
        .discovery
        .hub
        .current(&state.store, &key)
        .await?
        .ok_or_else(no_document)?;
    if ack.revision == 0 || ack.revision > current.revision {
        return Err(ApiError::BadRequest(format!(
            "revision {} was never served: the current revision is {}",
            ack.revision, current.revision
        )));
    }
    let record = AckRecord {
        plugin: key.plugin.clone(),
        pod: ack.pod,
        revision: ack.revision,
        status: ack.status,
        message: ack.message,
        at: String::new(),
    };
    let mut tx = state.begin().await?;
    tx.put_ack(&key.team, &key.component, &record).await?;
    state.commit(tx).await?;
    state.discovery.announce();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct CompatQuery {
    token: Option<String>,
}

/// `GET /v1/resources/{team}/{component}/{plugin}?token=…`: Rainbond's ResourceSpec.
async fn resource_spec(
    State(state): State<Arc<AppState>>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Query<CompatQuery>,
) -> ApiResult<Json<Value>> {
    let token = q.token.as_deref().or_else(|| bearer(&headers));
    let key = authorize(&state, token, &path).await?;
    let (snapshot, _) = state
        .discovery
        .hub
        .current(&state.store, &key)
        .await?
        .ok_or_else(no_document)?;
    Ok(Json(
        snapshot
            .document
            .to_resource_spec(key.team.as_str(), key.component.as_str()),
    ))
}

/// `POST /api/v1/teams/{team}/components/{c}/plugins/{plugin}/rotate-token`: the old token
/// stops working at once.
async fn rotate_token(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component, plugin)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let key = InstallationKey {
        team: team.parse()?,
        component: component.parse()?,
        plugin: plugin.parse()?,
    };
    who.check_team(&key.team)?;
    let credential = state.discovery.key.new_credential(&key);
    let mut tx = state.begin().await?;
    if !tx
        .set_discovery_credential(&key.team, &key.component, &key.plugin, &credential)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "plug-in `{}` is not installed on component `{}` of team `{}`",
            key.plugin, key.component, key.team
        )));
    }
    state.commit(tx).await?;
    // The running pods still hold the old token: the runtime redeploys the component here so
    // they get the new one (rendered into KATO_DISCOVERY_TOKEN and DISCOVER_URL).
    Ok(Json(json!({
        "team": key.team,
        "component": key.component,
        "plugin": key.plugin,
        "rotated": true,
        "redeploy": "the component's pods get the new token when redeployed",
    })))
}
