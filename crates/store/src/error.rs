//! The crate's error type: one variant per failure a user (or an operator) can act on.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A storage location's configuration is unusable (unknown kind, missing field, bad URL...).
    #[error("storage location {name:?}: {reason}")]
    InvalidLocation {
        /// Location name from the config.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The root folder of a local location could not be created.
    #[error("storage location {name:?}: cannot create root folder {path}: {source}")]
    CreateRoot {
        /// Location name.
        name: String,
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An object key was refused before touching the store (empty, absolute, `..`, `\`, NUL...).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The refused key.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No object under this key.
    #[error("storage location {location:?}: no object {key:?}")]
    NotFound {
        /// Location name.
        location: String,
        /// Object key.
        key: String,
    },
    /// No row in the index has this id.
    #[error("snapshot {0} not found")]
    RowNotFound(String),
    /// The store answered with an error or could not be reached.
    #[error("storage location {location:?}: {op} {key:?} failed: {source}")]
    Storage {
        /// Location name.
        location: String,
        /// `put`, `get` or `delete`.
        op: &'static str,
        /// Object key.
        key: String,
        /// The store's error (boxed: it is large, and errors travel through every `Result`).
        #[source]
        source: Box<object_store::Error>,
    },
    /// The index URL is neither `sqlite://...` nor `postgres://...`, or could not be parsed.
    #[error("invalid index URL {url:?}: {reason}")]
    InvalidIndexUrl {
        /// The URL with any password removed.
        url: String,
        /// Why.
        reason: String,
    },
    /// The index database failed (connection, query, constraint).
    #[error("index database: {0}")]
    Database(#[from] sqlx::Error),
    /// The index migrations could not be applied (e.g. the database is from a newer livesnap).
    #[error("index migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A list request was malformed (limit out of range, inverted time range).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A pagination cursor that this index did not hand out.
    #[error("invalid cursor {0:?}")]
    InvalidCursor(String),
    /// A number does not fit the index's 64-bit signed columns.
    #[error("{field} {value} is out of range")]
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A row in the index holds a value this version cannot read (edited by hand?).
    #[error("index row {id:?} is corrupt: {reason}")]
    CorruptRow {
        /// Row id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The spool has no room for this picture: it is dropped (and counted).
    #[error("spool is full: {needed} bytes needed, {used} of {max} used")]
    SpoolFull {
        /// Size of the refused entry.
        needed: u64,
        /// Bytes already spooled.
        used: u64,
        /// The spool's limit.
        max: u64,
    },
    /// A spooled picture that no retry can deliver (its location is gone, its metadata is
    /// unreadable): its entry is moved aside for an operator.
    #[error("cannot be delivered: {0}")]
    Undeliverable(String),
    /// The spool folder could not be read or written.
    #[error("spool {path}: {source}")]
    SpoolIo {
        /// File or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying later may succeed (the store or the database was unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Storage { source, .. } => !matches!(
                **source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotImplemented { .. }
            ),
            Error::Database(e) => matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            Error::SpoolIo { .. } => true,
            _ => false,
        }
    }

    /// Whether this error is about the picture itself (its key, its metadata, its location's
    /// existence, a value the index cannot hold), so that delivering it again cannot succeed.
    /// Any other failure, of the store or of the index, may pass.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidKey { .. }
                | Error::InvalidLocation { .. }
                | Error::Undeliverable(_)
                | Error::OutOfRange { .. }
                | Error::CorruptRow { .. }
        )
    }
}
