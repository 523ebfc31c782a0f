//! The API's one error type: every failure maps to a status code and a JSON body
//! `{"error": {"code", "message", "field"?}}`; internal details are logged, not returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kato_model::{Invalid, NameError};
use kato_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A field this token may not set (403, naming the field).
    #[error("{0}")]
    ForbiddenField(Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(Invalid),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Something the server proxies to (a plug-in in a pod) did not answer well.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Image(#[from] kato_build::ResolveError),
    #[error("{0}")]
    Runtime(#[from] kato_runtime::RuntimeError),
    #[error("internal error")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn forbidden_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::ForbiddenField(Invalid {
            field: field.into(),
            message: message.into(),
        })
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(Invalid {
            field: field.into(),
            message: message.into(),
        })
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) | ApiError::ForbiddenField(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            ApiError::Image(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            ApiError::Runtime(e) => {
                use kato_runtime::RuntimeError as R;
                match e {
                    R::NotSupported => (StatusCode::CONFLICT, "not_supported"),
                    R::NotRunning(_) => (StatusCode::CONFLICT, "not_running"),
                    R::NoSuchContainer { .. } => (StatusCode::NOT_FOUND, "no_such_container"),
                    R::Engine { .. } => (StatusCode::BAD_GATEWAY, "engine"),
                    R::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "engine_timeout"),
                }
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(m) | StoreError::InUse(m) => ApiError::Conflict(m),
            StoreError::Immutable(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let mut body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        if let ApiError::Invalid(i) | ApiError::ForbiddenField(i) = &self {
            body["error"]["field"] = i.field.clone().into();
        }
        (status, Json(body)).into_response()
    }
}
