//! The one error type of the core crate.

/// Why a stream could not be found or pictured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such stream is live.
    #[error("stream {0} is not live")]
    NotLive(String),
    /// A bare stream name matches more than one live stream.
    #[error("stream name {name:?} is ambiguous: {candidates:?}")]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// Every live stream it matches, as `domain/app/stream`.
        candidates: Vec<String>,
    },
    /// No picture could be made within the configured interval and attempts.
    #[error("snapshot response timeout: {0}")]
    Timeout(String),
    /// A scheduled picture gave way, before its decode began, to a newer one of the same stream
    /// and template.
    #[error("superseded by a newer picture of the same stream and template")]
    Superseded,
    /// The request itself is wrong (size, format).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The index or a storage location failed (its kind, not found or transient, is kept).
    #[error(transparent)]
    Store(#[from] livesnap_store::Error),
    /// Something failed that the caller cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with the core [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
