//! RTMP publish ingest: a sans-IO session ([`session`]) and the tokio server around it ([`server`]).

pub mod chunk;
pub mod server;
pub mod session;
pub mod url;
