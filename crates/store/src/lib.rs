//! livesnap's storage layer: named storage locations (a local folder or any S3-compatible
//! store, through `object_store`), the index of stored pictures (SQLite or PostgreSQL, one
//! migration set, through `sqlx`), the on-disk spool that holds pictures while a location is
//! down, and the queries that retention sweeps are built on.
//!
//! Nothing here decides *what* to store or *when*; the snapshot service and the sweeper in
//! `livesnap-core` do, and call in here.

mod error;
pub mod index;
pub mod location;
pub mod spool;
pub mod time;

pub use error::{Error, Result};
pub use index::{Index, ListFilter, Mode, NewSnapshot, SnapshotRow};
pub use location::{Location, LocationConfig, LocationKind};
pub use spool::{Spool, SpoolEntry, SpoolStats};
