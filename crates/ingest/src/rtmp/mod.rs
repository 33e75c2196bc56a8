//! RTMP publish ingest: a sans-IO session ([`session`]) and the tokio server around it ([`server`]).

pub mod chunk;
pub mod client;
pub mod server;
pub mod session;

/// The name resolution RTMP uses, under its old path (it is shared by every front end now).
pub mod url {
    pub use crate::name::{is_domain_name, resolve};
}
