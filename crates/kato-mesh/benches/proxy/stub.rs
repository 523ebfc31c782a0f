//! A discovery server for kato-mesh: one document, Kato's long-poll, acks recorded.

use super::*;

// ---- a discovery server for kato-mesh ----

/// Serves one document with Kato's long-poll (`?revision=N&wait=S`) and records acks.
#[derive(Clone)]
pub(crate) struct Stub {
    port: u16,
    doc: watch::Sender<serde_json::Value>,
    acks: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    pub(crate) async fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stub");
        let port = listener.local_addr().expect("address").port();
        let stub = Stub {
            port,
            doc: watch::Sender::new(serde_json::json!({"revision": 0})),
            acks: Arc::default(),
        };
        let served = stub.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let stub = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let stub = stub.clone();
                        async move { Ok::<_, Infallible>(stub.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        stub
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/discovery/v1/bench/backend/inbound-net", self.port)
    }

    pub(crate) fn publish(&self, doc: serde_json::Value) {
        self.doc.send_replace(doc);
    }

    pub(crate) fn acks(&self) -> Vec<String> {
        self.acks.lock().expect("acks").clone()
    }

    pub(crate) async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == hyper::Method::POST {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let ack: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            self.acks.lock().expect("acks").push(format!(
                "{} {}",
                ack["revision"],
                ack["status"].as_str().unwrap_or("?")
            ));
            return Response::new(Full::new(Bytes::from_static(b"{}")));
        }
        let query = req.uri().query().unwrap_or("");
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut rx = self.doc.subscribe();
        if let (Some(known), Some(wait)) = (param("revision"), param("wait")) {
            let changed = tokio::time::timeout(
                Duration::from_secs(wait),
                rx.wait_for(|d| d["revision"].as_u64() != Some(known)),
            )
            .await;
            if changed.is_err() {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::NOT_MODIFIED;
                return res;
            }
        }
        let doc = rx.borrow().clone();
        let mut res = Response::new(Full::new(Bytes::from(doc.to_string())));
        res.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        res
    }
}
