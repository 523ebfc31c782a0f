//! What the plug-in page tests share: fixtures made through the API, the draft form as a
//! browser posts it, and a reader of server-sent events.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::common::Console;

/// Creates a plug-in through the API (as another client would).
pub async fn plugin(c: &Console, token: &str, team: &str, spec: Value) {
    let (s, v) = c
        .api(token, Method::POST, &format!("/teams/{team}/plugins"), Some(spec))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

pub async fn draft(c: &Console, team: &str, name: &str) -> Value {
    let (s, v) = c
        .api(&c.admin, Method::GET, &format!("/teams/{team}/plugins/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// The draft form of plug-in `p` as a browser posts it: one group `base` with item `LEVEL`.
pub fn draft_form(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut f = vec![
        ("description", "collects logs"),
        ("kind", "general"),
        ("source", "image"),
        ("source.image", "busybox:1.36"),
        ("source.dockerfile.repo", ""),
        ("source.dockerfile.ref", ""),
        ("source.dockerfile.path", "Dockerfile"),
        ("memory_mib", "64"),
        ("cpu_millis", ""),
        ("command", ""),
        ("config_groups[0].name", "base"),
        ("config_groups[0].meta", "none"),
        ("config_groups[0].injection", "env"),
        ("config_groups[0].items[0].name", "LEVEL"),
        ("config_groups[0].items[0].type", "single"),
        ("config_groups[0].items[0].options", "debug, info"),
        ("config_groups[0].items[0].default", "info"),
        ("config_groups[0].items[0].changeable", "true"),
        ("config_groups[0].items[0].protocols", ""),
        ("config_groups[0].items[0].description", "how much to say"),
    ];
    for (k, v) in extra {
        match f.iter_mut().find(|(name, _)| name == k) {
            Some(pair) => pair.1 = v,
            None => f.push((k, v)),
        }
    }
    f
}

pub fn p_spec() -> Value {
    json!({"name": "p", "description": "collects logs", "kind": "general", "source": {"image": "busybox:1.36"},
    "config_groups": [{"name": "base", "items": [
        {"name": "LEVEL", "type": "single", "options": ["debug", "info"], "default": "info", "description": "how much to say"}
    ]}]})
}

/// The server-sent events of a response, read as they come.
pub struct Events {
    body: Body,
    buf: String,
}

#[derive(Debug, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl Events {
    pub async fn open(c: &Console, token: &str, path: &str, last_event_id: Option<&str>) -> Events {
        let mut req = Request::get(path)
            .header(header::COOKIE, format!("kato_session={token}"))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = c.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        Events {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next event; `None` when the stream ended. A stream silent for 30 s fails the test.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let mut e = Event {
                    event: String::new(),
                    id: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", v)) => e.event = v.trim_start().to_owned(),
                        Some(("id", v)) => e.id = v.trim_start().to_owned(),
                        Some(("data", v)) => e.data = v.strip_prefix(' ').unwrap_or(v).to_owned(),
                        _ => {}
                    }
                }
                if e.event.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(e);
            }
            let frame = tokio::time::timeout(Duration::from_secs(30), self.body.frame())
                .await
                .expect("an event within 30 s");
            match frame {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                _ => return None,
            }
        }
    }

    pub async fn all(mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// The table row that links to plug-in `name`.
pub fn row_of<'a>(body: &'a str, name: &str) -> &'a str {
    let at = body
        .find(&format!("<a href=\"/teams/alpha/plugins/{name}\">"))
        .unwrap_or_else(|| panic!("a row for {name}: {body}"));
    let end = body[at..].find("</tr>").unwrap() + at;
    &body[at..end]
}

/// The opening tag of the element with this id.
pub fn tag<'a>(body: &'a str, id: &str) -> &'a str {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("an element {id}"));
    let start = body[..at].rfind('<').unwrap();
    let end = body[at..].find('>').unwrap() + at;
    &body[start..=end]
}

pub async fn raw_get(c: &Console, token: &str, path: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = c.app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn validate(c: &Console, token: &str, extra: &[(&'static str, &'static str)]) -> Value {
    let page = c
        .post(token, "/teams/alpha/plugins/p/validate", &draft_form(extra))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let v: Value = serde_json::from_str(&page.body).unwrap();
    v["errors"].clone()
}
