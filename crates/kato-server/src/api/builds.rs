//! A version's build: its log (whole, or followed live until the build ends) and cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kato_model::{PluginName, TeamName};
use kato_store::LogLine;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ops;
use crate::state::AppState;
use crate::views;

/// How often a followed log looks for new lines when nothing on this server said there are
/// some (the build may run on another server).
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams/{team}/plugins/{plugin}/versions/{number}/log", get(log))
        .route("/teams/{team}/plugins/{plugin}/versions/{number}/cancel", post(cancel))
}

fn keys(team: &str, plugin: &str, n: &str) -> ApiResult<(TeamName, PluginName, u32)> {
    let n = n
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("version `{n}` is not a number: versions are 1, 2, 3…")))?;
    Ok((team.parse()?, plugin.parse()?, n))
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin, number)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, plugin, n) = keys(&team, &plugin, &number)?;
    who.check_team(&team)?;
    let record = ops::cancel_version(&state, &team, &plugin, n).await?;
    Ok(Json(views::version(&record)))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

/// `text/plain`, one line per output line: `<RFC 3339 time> <line>`. With `follow`, the
/// response stays open and gets each new line until the build ends, or the server shuts down.
async fn log(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, plugin, number)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let (team, plugin, n) = keys(&team, &plugin, &number)?;
    who.check_team(&team)?;
    if state.store.get_version(&team, &plugin, n).await?.is_none() {
        return Err(ApiError::NotFound(format!("plug-in `{plugin}` has no version {n}")));
    }
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        let lines = state.store.build_log(&team, &plugin, n, 0).await?;
        return Ok((text, render(&lines)).into_response());
    }
    let follow = Follow {
        progress: state.builds.progress(),
        state,
        team,
        plugin,
        n,
        after: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let chunk = f.next().await?;
        Some((chunk, f))
    });
    Ok((text, [(header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream)).into_response())
}

fn render(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&l.at);
        out.push(' ');
        out.push_str(&l.line);
        out.push('\n');
    }
    out
}

struct Follow {
    state: Arc<AppState>,
    progress: tokio::sync::watch::Receiver<u64>,
    team: TeamName,
    plugin: PluginName,
    n: u32,
    after: i64,
    done: bool,
}

impl Follow {
    /// The next chunk of lines; `None` once the build ended and every line was sent.
    async fn next(&mut self) -> Option<Result<String, std::io::Error>> {
        let store = &self.state.store;
        loop {
            if self.done {
                return None;
            }
            // Whatever is stored from here on wakes the wait below.
            self.progress.borrow_and_update();
            // Read the status before the lines: lines written before the build ended are then
            // all seen by the read that follows.
            let finished = match store.get_version(&self.team, &self.plugin, self.n).await {
                Ok(Some(v)) => v.version.status.is_final(),
                Ok(None) => true,
                Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
            };
            let lines = match store.build_log(&self.team, &self.plugin, self.n, self.after).await {
                Ok(l) => l,
                Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
            };
            // A server shutting down sends what it has and ends the stream.
            self.done = finished || self.state.builds.stopping.is_cancelled();
            if let Some(last) = lines.last() {
                self.after = last.seq;
                return Some(Ok(render(&lines)));
            }
            if !self.done {
                tokio::select! {
                    () = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = self.progress.changed() => {}
                    () = self.state.builds.stopping.cancelled() => {}
                }
            }
        }
    }
}
