//! livesnap's core: the hub that keeps every live stream's current GOP, compressed, and the
//! snapshot service that turns it into pictures with a bounded pool of reused decoders.
#![deny(unsafe_code)]

pub mod accounts;
pub mod auto;
pub mod auto_rows;
pub mod clock;
pub mod error;
pub mod hub;
pub mod jobs;
pub mod lifecycle;
pub mod path;
pub mod schedule;
pub mod snapshot;
pub mod source;
pub mod stats;
pub mod template;
pub mod work;

pub use error::{Error, Result};
