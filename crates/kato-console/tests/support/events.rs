//! Server-sent events of a console page, read as they come (for the tests of live parts).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use tower::ServiceExt;

use crate::common::Console;

/// A console's server-sent events, read as they come.
pub struct Events {
    body: axum::body::BodyDataStream,
    buf: String,
}

impl Events {
    pub async fn open(c: &Console, token: &str, path: &str) -> (StatusCode, Events) {
        Self::resume(c, token, path, None).await
    }

    /// As an `EventSource` reconnecting after the event `last` asks.
    pub async fn resume(c: &Console, token: &str, path: &str, last: Option<u64>) -> (StatusCode, Events) {
        let mut req = Request::get(path)
            .header(header::COOKIE, format!("kato_session={token}"))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let req = req.body(Body::empty()).unwrap();
        let res = c.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        (
            status,
            Events {
                body: res.into_body().into_data_stream(),
                buf: String::new(),
            },
        )
    }

    /// The next event other than a keep-alive: (event, data), within `within`.
    pub async fn next(&mut self, within: Duration) -> (String, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in frame.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d.to_owned());
                    } else if line == "data:" {
                        data.push(String::new());
                    }
                }
                if frame.starts_with(':') {
                    continue;
                }
                return (event, data.join("\n"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no event within {within:?}; have {:?}", self.buf))
                .expect("the stream goes on")
                .unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
