//! `GET /teams/{team}/components/{c}/plugins/{p}/perf`: the performance analyser's summary of a
//! component (DESIGN §12), proxied from its pod: the plug-in serves it at `GET /summary` on its
//! `PERF_PORT`, and the server reaches the pod at the address its target reports (podman: the
//! pod's address on the pod network; Kubernetes: the pod IP).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use kato_model::{ComponentName, PluginKind, PluginName, TeamName};
use kato_runtime::{ComponentRef, ComponentState, ContainerState};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ops::component_context;
use crate::state::AppState;

/// kato-perf's port when the installation does not say.
const DEFAULT_PERF_PORT: u16 = 65532;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A summary is a few KB; more is not one.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/teams/{team}/components/{component}/plugins/{plugin}/perf", get(perf))
}

async fn perf(
    State(state): State<Arc<AppState>>,
    who: Principal,
    Path((team, component, plugin)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (team, component, plugin): (TeamName, ComponentName, PluginName) =
        (team.parse()?, component.parse()?, plugin.parse()?);
    who.check_team(&team)?;
    let ctx = component_context(&mut &state.store, &team, &component).await?;
    let Some((record, version)) = ctx.installs.iter().find(|(r, _)| r.installation.plugin == plugin) else {
        return Err(ApiError::NotFound(format!(
            "plug-in `{plugin}` is not installed on component `{component}`: install a perf-analysis plug-in \
             (the default catalog's is `perf-analysis`) with POST /teams/{team}/components/{component}/plugins/<plugin>"
        )));
    };
    if version.spec.kind != PluginKind::PerfAnalysis {
        return Err(ApiError::Conflict(format!(
            "plug-in `{plugin}` is a `{}` plug-in: only a perf-analysis plug-in has a performance summary",
            version.spec.kind.as_str()
        )));
    }
    if !record.installation.enabled {
        return Err(ApiError::Conflict(format!(
            "plug-in `{plugin}` is disabled on component `{component}`: enable it and deploy the component"
        )));
    }
    let doc = crate::discovery::document(&record.installation, version, &ctx.spec, &ctx.downstream_refs());
    let port = doc
        .base
        .get("PERF_PORT")
        .and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_PERF_PORT);
    let c = ComponentRef {
        team: team.as_str(),
        component: component.as_str(),
    };
    let status = state.runtime.status(c).await?;
    let container = format!("plugin-{plugin}");
    let pod = status.pods.iter().find(|p| {
        p.ip.is_some()
            && p.containers
                .iter()
                .any(|c| c.name == container && c.state == ContainerState::Running)
    });
    let Some(pod) = pod.filter(|_| status.state == ComponentState::Running) else {
        let state_word = serde_json::to_value(status.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        return Err(ApiError::Conflict(format!(
            "component `{component}` is not running with plug-in `{plugin}` (it is {}): deploy it \
             (POST /teams/{team}/components/{component}/deploy) and ask again once it runs",
            state_word.unwrap_or_else(|| "not running".into())
        )));
    };
    let addr = SocketAddr::new(pod.ip.expect("filtered on an address"), port);
    let summary = fetch_summary(addr).await.map_err(|why| {
        ApiError::BadGateway(format!(
            "the perf plug-in `{plugin}` of pod {} did not answer at {addr}/summary: {why}",
            pod.name
        ))
    })?;
    Ok(Json(json!({
        "team": team,
        "component": component,
        "plugin": plugin,
        "pod": pod.name,
        "address": addr.to_string(),
        "summary": summary,
    })))
}

/// `GET /summary` from kato-perf at `addr`: its JSON, or why not.
async fn fetch_summary(addr: SocketAddr) -> Result<Value, String> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET /summary HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await
    };
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err("the answer is not HTTP".into()),
    };
    let code = res.code.unwrap_or(0);
    if code != 200 {
        return Err(format!("it answered {code}"));
    }
    serde_json::from_slice(&raw[head..]).map_err(|e| format!("the answer is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::fetch_summary;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server answering `answer` to the first request.
    async fn once(answer: &'static str) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn the_summary_is_read_and_bad_answers_are_refused() {
        let ok = once("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"ports\": []}")
            .await;
        assert_eq!(fetch_summary(ok).await.unwrap(), serde_json::json!({"ports": []}));
        let missing = once("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(fetch_summary(missing).await.unwrap_err(), "it answered 404");
        let garbage = once("SSH-2.0-OpenSSH\r\n").await;
        assert_eq!(fetch_summary(garbage).await.unwrap_err(), "the answer is not HTTP");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(fetch_summary(closed).await.unwrap_err().contains("refused"));
    }
}
