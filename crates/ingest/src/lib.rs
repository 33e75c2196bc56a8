//! livesnap's protocol front ends. Each turns a connection or a file into [`media::Frame`]s and
//! hands them to a [`media::stream::StreamSink`].
//!
//! Protocol cores are sans-IO (bytes in, events and bytes out) so they can be fuzzed and tested
//! without sockets; only the tokio glue (`rtmp::server`, the I/O half of `rtmp::client`) touches
//! sockets. What every front end shares is in [`frontend`] and [`name`].
#![deny(missing_docs, unsafe_code)]

pub mod amf0;
pub mod error;
pub mod flv;
pub mod frontend;
pub mod name;
pub mod publish_auth;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod whip;

pub use error::{Error, Result};
