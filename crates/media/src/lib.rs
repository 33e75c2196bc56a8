//! livesnap's media layer: what a frame is, how H.264 parameter sets are read, and how a picture
//! is made from compressed frames (decode, colour conversion, scaling, JPEG/PNG encoding).
//!
//! Nothing here does I/O; every protocol front end produces [`Frame`]s and every consumer of
//! pictures goes through [`picture`].
#![deny(unsafe_code)]

pub mod avc;
pub mod decode;
pub mod error;
pub mod frame;
pub mod picture;
pub mod sps;
pub mod stream;

pub use error::{Error, Result};
pub use frame::{Codec, Frame};
