//! The HTTP API's one error type; the status of every failure is chosen here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// From the hub or the snapshot service.
    #[error(transparent)]
    Core(#[from] livesnap_core::Error),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing at this path.
    #[error("{0}")]
    NotFound(String),
    /// A template or binding change was refused.
    #[error(transparent)]
    Config(#[from] livesnap_core::auto::ConfigError),
    /// The index or a storage location failed.
    #[error(transparent)]
    Store(#[from] livesnap_store::Error),
}

impl AppError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        use livesnap_core::auto::ConfigError;
        use livesnap_core::Error as C;
        match self {
            AppError::Core(C::NotLive(_)) | AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Core(C::Ambiguous { .. }) => StatusCode::CONFLICT,
            AppError::Core(C::BadRequest(_)) | AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // No picture in time: the service is up but cannot answer now.
            AppError::Core(C::Timeout(_)) => StatusCode::SERVICE_UNAVAILABLE,
            // Superseded is the scheduled path's own; it never answers a request.
            AppError::Core(C::Internal(_) | C::Superseded) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Core(C::Store(e)) | AppError::Store(e) => store_status(e),
            AppError::Config(e) => match e {
                ConfigError::Field(_) => StatusCode::BAD_REQUEST,
                ConfigError::NotFound(_) => StatusCode::NOT_FOUND,
                ConfigError::Conflict(_) => StatusCode::CONFLICT,
                ConfigError::Save(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

/// The status of a storage or index failure: what is missing is a 404, what may work again
/// later (storage or database unreachable) a 503 with `Retry-After`.
fn store_status(e: &livesnap_store::Error) -> StatusCode {
    use livesnap_store::Error as S;
    match e {
        S::NotFound { .. } | S::RowNotFound(_) => StatusCode::NOT_FOUND,
        S::InvalidFilter(_) | S::InvalidCursor(_) | S::OutOfRange { .. } | S::InvalidKey { .. } => {
            StatusCode::BAD_REQUEST
        }
        e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.to_string(), "status": status.as_u16() });
        if let AppError::Core(livesnap_core::Error::Ambiguous { candidates, .. }) = &self {
            body["candidates"] = json!(candidates);
        }
        if let AppError::Config(livesnap_core::auto::ConfigError::Field(f)) = &self {
            body["field"] = json!(f.field);
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
