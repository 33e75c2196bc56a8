//! livesnap's media layer: what a frame is, how H.264 parameter sets are read, and how a picture
//! is made from compressed frames (decode, colour conversion, scaling, JPEG/PNG encoding).
//!
//! Nothing here does I/O; every protocol front end produces [`Frame`]s and every consumer of
//! pictures goes through [`picture`].
#![deny(unsafe_code)]

#[cfg(feature = "ffmpeg")]
pub mod ffmpeg;

pub mod avc;
pub mod budget;
pub mod config;
pub mod decode;
pub mod error;
pub mod frame;
pub mod framed;
pub mod hevc;
pub mod picture;
pub mod range;
pub mod sps;
pub mod stream;
#[cfg(feature = "turbojpeg")]
pub mod turbo;

pub use config::VideoConfig;
pub use error::{Error, Result};
pub use frame::{Codec, Frame};
