//! A small HTTP client for the Kato API: bearer auth, JSON in and out, server errors as text.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde_json::Value;

use crate::cli::Global;

pub struct Client {
    http: reqwest::Client,
    /// For streams that stay open as long as a build runs: no overall timeout.
    streaming: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(g: &Global) -> Result<Client> {
        let token = match &g.token {
            Some(t) => t.clone(),
            None => {
                let path = g.data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|_| anyhow!("no API token: set KATO_TOKEN, or run where the server's data dir is (--data-dir; looked for {})", path.display()))?
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            streaming,
            base: format!("{}/api/v1", g.server.trim_end_matches('/')),
            token,
        })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let text = self.raw(method, path, body).await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("the server answered something that is not JSON: {text}"))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Copies a streamed answer (a followed log) to `out` as it arrives; no overall time limit,
    /// so `--follow` lasts.
    pub async fn stream(&self, path: &str, out: &mut (impl std::io::Write + Send)) -> Result<()> {
        let res = self.send(&self.streaming, Method::GET, path, None).await?;
        let mut res = check(res).await?;
        while let Some(chunk) = res.chunk().await.context("the stream broke off")? {
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Copies a streamed answer to stdout as it arrives.
    pub async fn follow(&self, path: &str) -> Result<()> {
        self.stream(path, &mut std::io::stdout()).await
    }

    /// The body as text, for non-JSON answers (manifests).
    pub async fn raw(&self, method: Method, path: &str, body: Option<&Value>) -> Result<String> {
        let res = self.send(&self.http, method, path, body).await?;
        let res = check(res).await?;
        res.text().await.context("cannot read the server's answer")
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!("cannot reach the Kato server at {url}: {e} (start it with `kato serve`, or point --server / KATO_SERVER at it)")
            } else {
                anyhow!("request to {url} failed: {e}")
            }
        })?;
        Ok(res)
    }
}

/// The answer, or its error message as an error.
async fn check(res: reqwest::Response) -> Result<reqwest::Response> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let text = res.text().await.context("cannot read the server's answer")?;
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    bail!("{message} ({status})")
}
