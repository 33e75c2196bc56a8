//! A stream's decoder configuration, whatever its codec: what the hub keeps per stream and what
//! every [`crate::decode::Decoder`] is given with the frames.

use crate::avc::{self, AvcConfig};
use crate::framed::{self, FrameConfig};
use crate::hevc::{self, HevcConfig};
use crate::sps::SpsInfo;
use crate::{Codec, Result};

/// Parameter sets of an H.264 or H.265 stream, or what the keyframes of a VP8, VP9 or AV1
/// stream say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoConfig {
    /// H.264.
    Avc(AvcConfig),
    /// H.265.
    Hevc(HevcConfig),
    /// VP8, VP9, AV1: frames carry their own headers.
    Framed(FrameConfig),
}

impl From<FrameConfig> for VideoConfig {
    fn from(c: FrameConfig) -> Self {
        VideoConfig::Framed(c)
    }
}

impl From<AvcConfig> for VideoConfig {
    fn from(c: AvcConfig) -> Self {
        VideoConfig::Avc(c)
    }
}

impl From<HevcConfig> for VideoConfig {
    fn from(c: HevcConfig) -> Self {
        VideoConfig::Hevc(c)
    }
}

impl VideoConfig {
    /// The codec.
    pub fn codec(&self) -> Codec {
        match self {
            VideoConfig::Avc(_) => Codec::H264,
            VideoConfig::Hevc(_) => Codec::H265,
            VideoConfig::Framed(c) => c.codec,
        }
    }

    /// Bytes in each NAL length prefix of the stream's frames (`None`: frames are not NAL
    /// units).
    pub fn nal_length_size(&self) -> Option<usize> {
        match self {
            VideoConfig::Avc(c) => Some(c.nal_length_size),
            VideoConfig::Hevc(c) => Some(c.nal_length_size),
            VideoConfig::Framed(_) => None,
        }
    }

    /// Appends the parameter sets in Annex B form (nothing for framed codecs).
    pub fn annexb_parameter_sets(&self, out: &mut Vec<u8>) {
        match self {
            VideoConfig::Avc(c) => c.annexb_parameter_sets(out),
            VideoConfig::Hevc(c) => c.annexb_parameter_sets(out),
            VideoConfig::Framed(_) => {}
        }
    }

    /// Appends one frame the way a decoder takes it: NAL units in Annex B form, or a framed
    /// codec's frame as it is.
    pub fn append_for_decoder(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self.nal_length_size() {
            Some(n) => avc::append_annexb(frame, n, out),
            None => {
                out.extend_from_slice(frame);
                Ok(())
            }
        }
    }

    /// What the (first) SPS says, checked against the size limits before anything is allocated.
    pub fn info(&self) -> Result<SpsInfo> {
        match self {
            VideoConfig::Avc(c) => SpsInfo::parse(
                c.sps
                    .first()
                    .ok_or_else(|| crate::Error::Sps("no SPS".into()))?,
            ),
            VideoConfig::Hevc(c) => c.info(),
            VideoConfig::Framed(c) => c.info(),
        }
    }

    /// True when a length-prefixed access unit of this stream is decodable on its own.
    pub fn is_keyframe(&self, data: &[u8]) -> bool {
        match self {
            VideoConfig::Avc(c) => avc::contains_idr(data, c.nal_length_size),
            VideoConfig::Hevc(c) => hevc::contains_irap(data, c.nal_length_size),
            VideoConfig::Framed(c) => framed::is_keyframe(c.codec, data),
        }
    }
}
