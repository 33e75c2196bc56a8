//! A compressed video frame as every ingest front end hands it to the hub.

use bytes::Bytes;

/// The video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
}

impl Codec {
    /// Short lowercase name used in the API (`h264`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
        }
    }
}

/// One access unit, compressed, in decode order.
///
/// `data` holds the NAL units with big-endian length prefixes of the size given by the stream's
/// [`crate::avc::AvcConfig`] (AVCC form, as FLV and MP4 carry them); it is converted to Annex B
/// only when somebody asks for a picture.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode timestamp in milliseconds of the stream's clock.
    pub dts_ms: i64,
    /// Presentation timestamp in milliseconds (dts + composition offset).
    pub pts_ms: i64,
    /// True when the access unit holds an IDR picture: decodable with no earlier frame.
    pub keyframe: bool,
    /// Length-prefixed NAL units (see above).
    pub data: Bytes,
}
