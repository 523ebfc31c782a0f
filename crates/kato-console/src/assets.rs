//! The console's own stylesheet and script, compiled into the binary. Their URLs carry a hash of
//! their content, so browsers keep them until they change.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::Console;

const CSS: &str = include_str!("../static/console.css");
const JS: &str = include_str!("../static/console.js");

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    h.update(CSS);
    h.update(JS);
    hex::encode(&h.finalize()[..6])
});

/// The URL of the stylesheet, as pages link it.
pub fn css_url() -> String {
    format!("/static/{}/console.css", *VERSION)
}

/// The URL of the script, as pages load it.
pub fn js_url() -> String {
    format!("/static/{}/console.js", *VERSION)
}

pub fn routes() -> Router<Console> {
    Router::new().route("/static/{version}/{file}", get(asset))
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    // An old page asking for an old version gets today's file, but not for keeps.
    let cache = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)], body).into_response()
}
