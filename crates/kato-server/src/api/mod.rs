//! The HTTP surface: `/api/v1` resources, the discovery API plug-ins call, health, metrics and
//! the OpenAPI document.

mod builds;
mod catalog;
mod components;
mod credentials;
pub mod discovery;
mod meta;
mod perf;
mod plugins;
mod runtime;
mod teams;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

pub use components::render_objects;
pub(crate) use meta::count_response;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The API with `pages` (the console's, given by the binary) served beside it; a path neither
/// knows gets the API's 404, or a page for a browser.
pub fn router_with(state: Arc<AppState>, pages: Router) -> Router {
    let api = Router::new()
        .merge(teams::routes())
        .merge(plugins::routes())
        .merge(catalog::routes())
        .merge(builds::routes())
        .merge(credentials::routes())
        .merge(components::routes())
        .merge(runtime::routes())
        .merge(perf::routes())
        .merge(discovery::routes())
        .route("/openapi.json", axum::routing::get(meta::openapi));
    Router::new()
        .nest("/api/v1", api)
        .merge(meta::routes())
        .merge(discovery::plugin_routes())
        .with_state(state)
        .merge(pages)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(meta::count_requests))
}

/// What the address pods reach serves: the discovery API (and its Rainbond-compatible path)
/// only, so that the admin API stays on the address the operator chose.
pub fn discovery_router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(discovery::plugin_routes())
        .fallback(only_discovery)
        .layer(axum::middleware::from_fn(meta::count_requests))
        .with_state(state)
}

async fn only_discovery() -> ApiError {
    ApiError::NotFound(
        "this address serves plug-ins the discovery API only (/discovery/v1/…, /v1/resources/…): the API is on the server's --listen address".into(),
    )
}

async fn not_found(headers: axum::http::HeaderMap) -> axum::response::Response {
    let browser = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser {
        return (
            StatusCode::NOT_FOUND,
            axum::response::Html(
                "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Not found · Kato</title>\
                 <main><h1>Not found</h1><p>No page at this address. <a href=\"/\">Go to the console</a>.</p></main></html>",
            ),
        )
            .into_response();
    }
    ApiError::NotFound("no such path: see /api/v1/openapi.json for the API".into()).into_response()
}

async fn method_not_allowed(req: Request) -> impl IntoResponse {
    let path = req.uri().path();
    let why = if path.contains("/versions/") {
        "versions are immutable: create a new version instead of changing one"
    } else {
        "this method is not allowed on this path"
    };
    (
        StatusCode::METHOD_NOT_ALLOWED,
        ApiError::MethodNotAllowed(format!("{} {path}: {why}", req.method())),
    )
}

/// A JSON body whose errors come back in the API's error shape: malformed JSON is a 400, a
/// well-formed body that does not fit the schema a 422 naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                use std::error::Error;
                let detail = e.source().map_or_else(|| e.body_text(), |s| s.to_string());
                Err(ApiError::invalid("body", detail))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A JSON body that may be left out: an empty body is the type's default.
pub struct OrDefault<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|l| l == "0")
            || (!req.headers().contains_key(axum::http::header::CONTENT_TYPE)
                && !req.headers().contains_key(axum::http::header::TRANSFER_ENCODING)
                && req.headers().get(axum::http::header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(OrDefault(T::default()));
        }
        Body::<T>::from_request(req, state).await.map(|Body(v)| OrDefault(v))
    }
}
