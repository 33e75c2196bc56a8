//! RTSP ingest: publishers push with ANNOUNCE / SETUP / RECORD (RFC 2326), RTP over the TCP
//! connection (interleaved). [`session`] is the sans-IO protocol core, [`sdp`] reads the
//! publisher's description, [`server`] is the tokio glue and the front end.

pub mod client;
pub mod sdp;
pub mod server;
pub mod session;
