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
    /// A number (or other value) of the request, in its query or body, is refused; the answer
    /// names it in `field`.
    #[error("{0}")]
    Field(livesnap_core::template::FieldError),
    /// Nothing at this path.
    #[error("{0}")]
    NotFound(String),
    /// A template or binding change was refused.
    #[error(transparent)]
    Config(#[from] livesnap_core::auto::ConfigError),
    /// The index or a storage location failed.
    #[error(transparent)]
    Store(#[from] livesnap_store::Error),
    /// The request (its body, or the whole answer) took longer than its timeout.
    #[error("{0}")]
    RequestTimeout(String),
    /// The request body is larger than `max_request_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The request's headers are too many or too large.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// No API key, or a wrong one (`invalid`), where one is needed.
    #[error("{message}")]
    Unauthorized {
        /// What to do.
        message: String,
        /// A key was sent, and it is not valid.
        invalid: bool,
    },
    /// The caller's address sent too many wrong keys this minute.
    #[error(
        "too many requests with a wrong API key from this address; try again in {retry_after_s} s"
    )]
    TooManyAuthFailures {
        /// Seconds until its minute is over.
        retry_after_s: u64,
    },
    /// The client asked for pictures faster than `picture_requests_per_s`, past a second of
    /// waiting its turn.
    #[error("more than {per_s} picture requests a second from this client (picture_requests_per_s); try again in {retry_after_s} s")]
    TooManyPictureRequests {
        /// The limit.
        per_s: u32,
        /// Seconds until a request would go.
        retry_after_s: u64,
    },
    /// The caller's key may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// An account or key request was refused.
    #[error(transparent)]
    Accounts(#[from] livesnap_core::accounts::AccountError),
    /// A pull job request was refused.
    #[error(transparent)]
    Jobs(#[from] livesnap_core::jobs::JobsError),
    /// What was asked for exists but cannot answer now (a job's source not connected).
    #[error("{0}")]
    Unavailable(String),
    /// The server is at a limit (connections); try again later.
    #[error("{0}")]
    Overloaded(String),
    /// A WHIP offer or delete was refused.
    #[error(transparent)]
    Whip(#[from] ingest::whip::WhipError),
    /// Any other refusal from the router or a layer (405 for a method a path does not serve),
    /// with its status.
    #[error("{message}")]
    Refused {
        /// The status the router or layer chose.
        status: StatusCode,
        /// What it said, or the status's reason.
        message: String,
    },
}

impl AppError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        use livesnap_core::auto::ConfigError;
        use livesnap_core::Error as C;
        match self {
            AppError::Core(C::NotLive(_)) | AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Core(C::Ambiguous { .. }) => StatusCode::CONFLICT,
            AppError::Core(C::BadRequest(_)) | AppError::BadRequest(_) | AppError::Field(_) => {
                StatusCode::BAD_REQUEST
            }
            // No picture in time: the service is up but cannot answer now.
            AppError::Core(C::Timeout(_)) => StatusCode::SERVICE_UNAVAILABLE,
            // Superseded is the scheduled path's own; it never answers a request.
            AppError::Core(C::Internal(_) | C::Superseded) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Core(C::Store(e)) | AppError::Store(e) => store_status(e),
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Accounts(e) => {
                use livesnap_core::accounts::AccountError as A;
                match e {
                    A::Field { .. } => StatusCode::BAD_REQUEST,
                    A::NotFound(_) => StatusCode::NOT_FOUND,
                    A::Conflict(_) | A::TooMany { .. } => StatusCode::CONFLICT,
                    A::Save(_) => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            AppError::TooManyAuthFailures { .. } | AppError::TooManyPictureRequests { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            AppError::Overloaded(_) | AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Jobs(e) => {
                use livesnap_core::jobs::JobsError as J;
                match e {
                    J::Field { .. } => StatusCode::BAD_REQUEST,
                    J::NotFound(_) => StatusCode::NOT_FOUND,
                    J::TooManyRunning { .. } => StatusCode::TOO_MANY_REQUESTS,
                    J::TooManyKept { .. } => StatusCode::CONFLICT,
                    J::Save(_) => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            AppError::Refused { status, .. } => *status,
            AppError::Whip(e) => {
                use ingest::publish_auth::AuthError;
                use ingest::whip::WhipError as W;
                use media::stream::PublishRefused as P;
                match e {
                    W::BadOffer(_) | W::NoVideo(_) | W::Refused(P::BadName(_)) => {
                        StatusCode::BAD_REQUEST
                    }
                    W::Unauthorized(AuthError::TooManyFailures { .. })
                    | W::Refused(P::AccountFull { .. }) => StatusCode::TOO_MANY_REQUESTS,
                    W::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                    W::Refused(P::AlreadyLive(_)) => StatusCode::CONFLICT,
                    W::Refused(_) | W::Busy | W::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                    W::NoSession => StatusCode::NOT_FOUND,
                }
            }
            AppError::Config(e) => match e {
                ConfigError::Field(_) => StatusCode::BAD_REQUEST,
                ConfigError::NotFound(_) => StatusCode::NOT_FOUND,
                // A count limit is a conflict with what is kept, like a name that exists.
                ConfigError::Conflict(_) | ConfigError::TooMany { .. } => StatusCode::CONFLICT,
                ConfigError::Save(_) | ConfigError::Load(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The error for an answer a layer or the router made with `status` and `message` (plain
    /// text or nothing), so that it is answered with the one error body.
    pub fn from_layer(status: StatusCode, message: String) -> AppError {
        match status {
            StatusCode::REQUEST_TIMEOUT => AppError::RequestTimeout(message),
            StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(message),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => AppError::HeadersTooLarge(message),
            StatusCode::SERVICE_UNAVAILABLE => AppError::Overloaded(message),
            StatusCode::NOT_FOUND => AppError::NotFound(message),
            status => AppError::Refused { status, message },
        }
    }

    /// The error body, as JSON: `{"error": ..., "status": ...}` and the fields some errors add.
    pub fn body(&self) -> serde_json::Value {
        let status = self.status();
        let mut body = json!({ "error": self.to_string(), "status": status.as_u16() });
        if let AppError::Core(livesnap_core::Error::Ambiguous { candidates, .. }) = self {
            body["candidates"] = json!(candidates);
        }
        if let AppError::Config(livesnap_core::auto::ConfigError::Field(f)) | AppError::Field(f) =
            self
        {
            body["field"] = json!(f.field);
        }
        if let AppError::Jobs(livesnap_core::jobs::JobsError::Field { field, .. })
        | AppError::Accounts(livesnap_core::accounts::AccountError::Field { field, .. }) = self
        {
            body["field"] = json!(field);
        }
        body
    }

    /// The whole HTTP/1.1 answer as bytes, closing the connection: for a connection refused
    /// before any request is read, where there is no router to answer.
    pub fn raw_http1(&self) -> Vec<u8> {
        let status = self.status();
        let body = self.body().to_string();
        let retry = if status == StatusCode::SERVICE_UNAVAILABLE {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes()
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
        let body = self.body();
        // A job's source not connected is its state, not the server failing.
        if status.is_server_error() && !matches!(self, AppError::Unavailable(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        match &self {
            AppError::Unauthorized { invalid, .. } => {
                let challenge = if *invalid {
                    r#"Bearer realm="livesnap", error="invalid_token""#
                } else {
                    r#"Bearer realm="livesnap""#
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            AppError::TooManyAuthFailures { retry_after_s }
            | AppError::TooManyPictureRequests { retry_after_s, .. }
            | AppError::Whip(ingest::whip::WhipError::Unauthorized(
                ingest::publish_auth::AuthError::TooManyFailures { retry_after_s },
            )) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            AppError::Whip(ingest::whip::WhipError::Unauthorized(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="livesnap-publish""#),
                );
            }
            _ => {}
        }
        response
    }
}
