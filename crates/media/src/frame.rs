//! A compressed video frame as every ingest front end hands it to the hub.

use bytes::Bytes;

/// The video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC (decoded with the `ffmpeg` feature).
    H265,
    /// VP8 (decoded with the `ffmpeg` feature).
    Vp8,
    /// VP9 (decoded with the `ffmpeg` feature).
    Vp9,
    /// AV1 (decoded with the `ffmpeg` feature).
    Av1,
}

impl Codec {
    /// Short lowercase name used in the API (`h264`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
            Codec::Av1 => "av1",
        }
    }

    /// Display name for logs and errors (`H.264`).
    pub fn display_name(self) -> &'static str {
        match self {
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
            Codec::Av1 => "AV1",
        }
    }
}

/// One access unit, compressed, in decode order.
///
/// For H.264 and H.265, `data` holds the NAL units with big-endian length prefixes of the size
/// given by the stream's [`crate::config::VideoConfig`] (the form FLV and MP4 carry); it is
/// converted to Annex B only when somebody asks for a picture.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode timestamp in milliseconds of the stream's clock.
    pub dts_ms: i64,
    /// Presentation timestamp in milliseconds (dts + composition offset).
    pub pts_ms: i64,
    /// True when the access unit is decodable with no earlier frame (H.264 IDR, H.265 IRAP).
    pub keyframe: bool,
    /// Length-prefixed NAL units (see above).
    pub data: Bytes,
}
