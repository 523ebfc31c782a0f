//! The REST API, called in-process: the console's pages read and write only through it, with
//! the session's token, so that what a page shows and accepts is what the API shows and accepts.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

/// The API's router (with its state), answered without a socket.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// A request the API refused (or could not answer), in the API's error shape.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// The field the message names, as the API spells it (`config_groups[0].items[1].name`).
    pub field: Option<String>,
}

impl Failure {
    fn internal(message: impl Into<String>) -> Self {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: message.into(),
            field: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) if !self.message.contains(field.as_str()) => write!(f, "{field}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl Api {
    pub fn new(router: Router) -> Self {
        Api { router }
    }

    /// Sends one request under `/api/v1` (`path` starts after it) and returns the answer as is.
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<axum::response::Response, Failure> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).map_err(|e| Failure::internal(e.to_string()))?)
            }
            None => Body::empty(),
        };
        let req = req.body(body).map_err(|e| Failure::internal(e.to_string()))?;
        let res = self
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| Failure::internal(e.to_string()))?;
        if res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED {
            return Ok(res);
        }
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let error = serde_json::from_slice::<Value>(&bytes).unwrap_or_default();
        let error = &error["error"];
        Err(Failure {
            status,
            code: error["code"].as_str().unwrap_or("error").to_owned(),
            message: error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            field: error["field"].as_str().map(str::to_owned),
        })
    }

    /// A JSON answer, read into `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, Failure> {
        let res = self.call(token, method, path, body).await?;
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::internal(e.to_string()))?
            .to_bytes();
        if bytes.is_empty() {
            return serde_json::from_value(Value::Null).map_err(|e| Failure::internal(e.to_string()));
        }
        serde_json::from_slice(&bytes).map_err(|e| Failure::internal(format!("the API's answer to {path}: {e}")))
    }

    pub async fn get<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, Failure> {
        self.json(token, Method::GET, path, None).await
    }

    /// A text answer (manifests, a finished log).
    pub async fn text(&self, token: &str, path: &str) -> Result<String, Failure> {
        let res = self.call(token, Method::GET, path, None).await?;
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::internal(e.to_string()))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A streamed answer (`?follow=true` logs), its body as it comes.
    pub async fn stream(&self, token: &str, path: &str) -> Result<Body, Failure> {
        Ok(self.call(token, Method::GET, path, None).await?.into_body())
    }
}

/// Percent-encodes one path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
