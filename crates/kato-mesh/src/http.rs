//! HTTP/1.1 proxying for inbound and outbound listeners: rate limit, route, circuit breaking,
//! one retry on another endpoint when a connect fails, outlier accounting, and WebSocket
//! (upgrade) passthrough.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::cluster::{Cluster, ConnectError, Endpoint, Unavailable};
use crate::limits::{GateGuard, TokenBucket};
use crate::listener::{ConnSignal, Phase};
use crate::metrics::ListenerMetrics;
use crate::route::{Table, request_host};

const X_KATO_MESH: HeaderName = HeaderName::from_static("x-kato-mesh");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const MAX_CLIENT_IDLE: Duration = Duration::from_secs(60);
/// Attempts on pooled connections that closed before the request was written.
const MAX_STALE: usize = 4;

/// What an HTTP listener does at one revision.
#[derive(Debug)]
pub struct HttpService {
    pub routes: Table<Arc<Cluster>>,
    pub limiter: Option<Arc<TokenBucket>>,
    pub max_requests_per_connection: Option<u64>,
    pub client_idle: Duration,
    pub metrics: ListenerMetrics,
}

/// The body of a proxied or locally made response.
pub enum ProxyBody {
    Upstream { body: Incoming, back: Option<Returner> },
    Local(Option<Bytes>),
}

/// What goes back when the upstream response is complete: the connection to its pool, and
/// the request's place in MaxRequests.
pub struct Returner {
    sender: SendRequest<Incoming>,
    endpoint: Arc<Endpoint>,
    _gate: GateGuard,
}

impl Returner {
    fn give_back(self) {
        self.endpoint.put_back(self.sender);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream { body, back } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                // The server stops polling once `is_end_stream` says so, usually right after
                // the last data frame: the connection goes back as soon as the upstream's
                // response is complete, not on a last poll that may never come (it was
                // dropped then, and every request opened a new upstream connection).
                let complete = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    _ => false,
                };
                if complete && let Some(r) = back.take() {
                    r.give_back();
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(b) => b.is_none(),
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}

fn local(status: StatusCode, reason: &'static str, body: &'static str) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::Local(Some(Bytes::from_static(body.as_bytes()))));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if !reason.is_empty() {
        h.insert(X_KATO_MESH, HeaderValue::from_static(reason));
    }
    res
}

/// Serves one client connection until it closes, the listener drains it, or it is killed.
pub async fn serve(
    stream: TcpStream,
    slot: Arc<crate::Shared<crate::listener::Service>>,
    at_accept: Arc<HttpService>,
    mut signal: ConnSignal,
) {
    let _ = stream.set_nodelay(true);
    let served = Arc::new(AtomicU64::new(0));
    let svc = hyper::service::service_fn(move |req| {
        let current = match &*slot.load() {
            crate::listener::Service::Http(h) => h.clone(),
            _ => at_accept.clone(),
        };
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let mut res = handle(req, &current).await;
            if current.max_requests_per_connection.is_some_and(|max| n >= max) {
                res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(res)
        }
    });
    let idle = match &*signal.service() {
        crate::listener::Service::Http(h) => h.client_idle,
        _ => MAX_CLIENT_IDLE,
    };
    // Half-closed clients are served: `nc`, and HTTP/1.0 clients that shut their side down
    // once the request is sent, still get the answer (hyper drops it by default).
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(idle.min(MAX_CLIENT_IDLE))
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended");
                }
                return;
            }
            phase = signal.changed() => match phase {
                Phase::Draining if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                Phase::Killed => return,
                _ => {}
            }
        }
    }
}

async fn handle(mut req: Request<Incoming>, svc: &HttpService) -> Response<ProxyBody> {
    if let Some(bucket) = &svc.limiter
        && let Err(wait) = bucket.take(Instant::now())
    {
        svc.metrics.rate_limited.inc();
        let mut res = local(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "rate limit exceeded\n");
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        return res;
    }
    let host = request_host(req.uri(), req.headers());
    let Some(cluster) = svc.routes.select(host, req.uri().path(), req.headers(), rand::random()) else {
        return local(StatusCode::NOT_FOUND, "no-route", "no route matches this request\n");
    };
    let cluster = cluster.clone();
    let settings = cluster.settings();
    let started = Instant::now();
    let Some(gate) = cluster
        .requests
        .enter(settings.limits.max_requests, settings.limits.max_pending_requests)
        .await
    else {
        cluster.metrics.overflow.inc();
        cluster.metrics.status(503);
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "overflow",
            "too many requests in flight\n",
        );
    };
    strip_hop_by_hop(&mut req);
    let upgrade = req
        .headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let forwarded = forward(req, &cluster, &settings, gate);
    let res = match settings.timeouts.request {
        Some(t) => match tokio::time::timeout(t, forwarded).await {
            Ok(r) => r,
            Err(_) => {
                cluster.metrics.timeouts.inc();
                local(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "the upstream did not answer in time\n",
                )
            }
        },
        None => forwarded.await,
    };
    cluster.metrics.status(res.status().as_u16());
    cluster.metrics.latency.observe(started.elapsed().as_secs_f64());
    match upgrade {
        Some(client) if res.status() == StatusCode::SWITCHING_PROTOCOLS => splice_upgrade(client, res),
        _ => res,
    }
}

/// Sends the request to an endpoint; on a connect failure, once more to another endpoint
/// (nothing was sent, so any method is safe), within MaxActiveRetries.
async fn forward(
    mut req: Request<Incoming>,
    cluster: &Arc<Cluster>,
    settings: &crate::cluster::Settings,
    gate: GateGuard,
) -> Response<ProxyBody> {
    let mut avoid = None;
    let mut _retry = None;
    let mut stale = 0;
    loop {
        let ep = match cluster.pick(avoid) {
            Ok(ep) => ep,
            Err(why) => return unavailable(cluster, why),
        };
        let mut sender = match cluster.http_connection(&ep, settings).await {
            Ok(s) => s,
            Err(ConnectError::Overflow) => {
                cluster.metrics.overflow.inc();
                return local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overflow",
                    "too many upstream connections\n",
                );
            }
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, error = %e, "connect failed");
                cluster.metrics.connect_errors.inc();
                cluster.record(&ep, false);
                cluster.resolve_soon();
                if avoid.is_none()
                    && let Some(g) = cluster.retries.try_open(settings.limits.max_active_retries)
                {
                    _retry = Some(g);
                    avoid = Some(ep.addr);
                    continue;
                }
                return local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "connect-failure",
                    "cannot connect to the upstream\n",
                );
            }
        };
        match sender.try_send_request(req).await {
            Ok(mut res) => {
                cluster.record(&ep, res.status().as_u16() < 500);
                if res.status() != StatusCode::SWITCHING_PROTOCOLS {
                    let h = res.headers_mut();
                    h.remove(CONNECTION);
                    h.remove(KEEP_ALIVE);
                }
                let back = Returner {
                    sender,
                    endpoint: ep,
                    _gate: gate,
                };
                return res.map(|body| {
                    if body.is_end_stream() {
                        back.give_back();
                        ProxyBody::Upstream { body, back: None }
                    } else {
                        ProxyBody::Upstream { body, back: Some(back) }
                    }
                });
            }
            Err(mut e) => match e.take_message() {
                // The pooled connection closed before the request went out: another one.
                Some(r) if stale < MAX_STALE => {
                    stale += 1;
                    req = r;
                }
                _ => {
                    tracing::debug!(cluster = %cluster.name, error = %e.error(), "upstream request failed");
                    cluster.metrics.upstream_errors.inc();
                    cluster.record(&ep, false);
                    return local(
                        StatusCode::BAD_GATEWAY,
                        "upstream-error",
                        "the upstream closed the connection\n",
                    );
                }
            },
        }
    }
}

fn unavailable(cluster: &Cluster, why: Unavailable) -> Response<ProxyBody> {
    cluster.metrics.unavailable.inc();
    let body = match why {
        Unavailable::NoEndpoint => "no endpoint for this upstream\n",
        Unavailable::Ejected => "every endpoint is ejected\n",
        Unavailable::Unhealthy => "every endpoint fails its health check\n",
    };
    local(StatusCode::SERVICE_UNAVAILABLE, why.header(), body)
}

/// Hop-by-hop headers end here; `Connection: upgrade` and `Upgrade` go on for WebSocket.
fn strip_hop_by_hop(req: &mut Request<Incoming>) {
    let headers = req.headers_mut();
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .filter(|n| *n != UPGRADE)
            .collect();
        let upgrade = headers.contains_key(UPGRADE);
        for n in named {
            headers.remove(n);
        }
        headers.remove(CONNECTION);
        if upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
}

/// After a 101, both sides upgrade and bytes flow between them.
fn splice_upgrade(client: hyper::upgrade::OnUpgrade, mut res: Response<ProxyBody>) -> Response<ProxyBody> {
    let upstream = hyper::upgrade::on(&mut res);
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                let mut c = TokioIo::new(c);
                let mut u = TokioIo::new(u);
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    res
}
