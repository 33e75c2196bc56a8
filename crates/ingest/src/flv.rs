//! FLV: video tag bodies as RTMP and FLV files carry them, and a reader for FLV files.

use bytes::Bytes;
use media::avc::{self, AvcConfig};
use media::stream::StreamWriter;
use media::Frame;

use crate::{Error, Result};

/// What one FLV video tag body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    /// AVC sequence header: an AVCDecoderConfigurationRecord.
    AvcConfig(Bytes),
    /// AVC NAL units (length-prefixed) of one access unit.
    AvcFrame {
        /// The FLV frame type said "keyframe".
        keyframe: bool,
        /// Composition time offset (pts - dts) in milliseconds.
        composition_ms: i32,
        /// The access unit.
        data: Bytes,
    },
    /// AVC end of sequence.
    AvcEnd,
    /// Video we do not handle yet: the legacy codec id or the enhanced-RTMP FourCC.
    Unsupported(String),
    /// A command or info frame (frame type 5), which carries no picture.
    Info,
}

/// Parses the body of an FLV/RTMP video tag, legacy or enhanced RTMP.
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag> {
    let first = *body
        .first()
        .ok_or_else(|| Error::Flv("empty video tag".into()))?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: [1 | frame type(3) | packet type(4)] FourCC ...
        let fourcc = body
            .get(1..5)
            .ok_or_else(|| Error::Flv("enhanced video tag without FourCC".into()))?;
        return Ok(VideoTag::Unsupported(
            String::from_utf8_lossy(fourcc).into_owned(),
        ));
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == 5 {
        return Ok(VideoTag::Info);
    }
    if codec_id != 7 {
        let name = match codec_id {
            2 => "Sorenson H.263",
            3 => "Screen video",
            4 => "VP6",
            5 => "VP6 alpha",
            6 => "Screen video 2",
            12 => "HEVC (legacy id 12)",
            _ => "unknown",
        };
        return Ok(VideoTag::Unsupported(format!(
            "{name} (codec id {codec_id})"
        )));
    }
    if body.len() < 5 {
        return Err(Error::Flv(format!(
            "AVC video tag of {} bytes, need at least 5",
            body.len()
        )));
    }
    let cts = (i32::from(body[2]) << 16) | (i32::from(body[3]) << 8) | i32::from(body[4]);
    // Sign-extend the 24-bit composition time.
    let composition_ms = (cts << 8) >> 8;
    let payload = body.slice(5..);
    match body[1] {
        0 => Ok(VideoTag::AvcConfig(payload)),
        1 => Ok(VideoTag::AvcFrame {
            keyframe: frame_type == 1,
            composition_ms,
            data: payload,
        }),
        2 => Ok(VideoTag::AvcEnd),
        t => Err(Error::Flv(format!("unknown AVC packet type {t}"))),
    }
}

/// What one video tag did to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fed {
    /// A new decoder configuration was handed on.
    Config,
    /// A frame was handed on.
    Frame,
    /// A frame came before any sequence header and was dropped (nothing can decode it).
    BeforeConfig,
    /// Video this server cannot picture (the codec's name); nothing was handed on.
    Unsupported(String),
    /// End of sequence or an info frame: nothing to do.
    Nothing,
}

/// Turns the video tags of one stream (RTMP messages or FLV file tags) into configurations and
/// frames for a [`StreamWriter`]. Shared by RTMP ingest and `grab` of FLV files.
#[derive(Debug, Default)]
pub struct VideoFeed {
    config: Option<AvcConfig>,
}

impl VideoFeed {
    /// Handles one tag body with its decode timestamp.
    pub fn feed(
        &mut self,
        dts_ms: i64,
        body: &Bytes,
        writer: &mut dyn StreamWriter,
    ) -> Result<Fed> {
        match parse_video_tag(body)? {
            VideoTag::AvcConfig(record) => {
                let config = AvcConfig::parse(&record).map_err(|e| Error::Flv(e.to_string()))?;
                self.config = Some(config.clone());
                writer.config(config);
                Ok(Fed::Config)
            }
            VideoTag::AvcFrame {
                keyframe,
                composition_ms,
                data,
            } => {
                let Some(config) = &self.config else {
                    return Ok(Fed::BeforeConfig);
                };
                // Trust the bitstream over the FLV flag: only an IDR starts a decodable GOP.
                let keyframe = keyframe && avc::contains_idr(&data, config.nal_length_size);
                writer.frame(Frame {
                    dts_ms,
                    pts_ms: dts_ms + i64::from(composition_ms),
                    keyframe,
                    data,
                });
                Ok(Fed::Frame)
            }
            VideoTag::Unsupported(name) => Ok(Fed::Unsupported(name)),
            VideoTag::AvcEnd | VideoTag::Info => Ok(Fed::Nothing),
        }
    }
}

/// One tag of an FLV file.
#[derive(Debug, Clone)]
pub struct FileTag {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    /// Timestamp in milliseconds.
    pub timestamp_ms: u32,
    /// The tag body.
    pub body: Bytes,
}

/// Largest tag accepted from a file (the format allows 16 MiB).
pub const MAX_FILE_TAG_BYTES: usize = 16 * 1024 * 1024;

/// Reads every tag of an FLV file held in memory. A truncated last tag ends the list (as a
/// recording cut off mid-write would be) instead of failing the whole file.
pub fn read_file(data: &Bytes) -> Result<Vec<FileTag>> {
    if data.len() < 9 || &data[..3] != b"FLV" {
        return Err(Error::Flv("not an FLV file (no FLV signature)".into()));
    }
    let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    if header_len < 9 || header_len > data.len() {
        return Err(Error::Flv(format!("bad FLV header length {header_len}")));
    }
    let mut pos = header_len + 4; // PreviousTagSize0
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let h = &data[pos..pos + 11];
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let timestamp_ms = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let start = pos + 11;
        if size > MAX_FILE_TAG_BYTES || start + size > data.len() {
            break;
        }
        tags.push(FileTag {
            tag_type: h[0] & 0x1f,
            timestamp_ms,
            body: data.slice(start..start + size),
        });
        pos = start + size + 4;
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_avc_frame_with_negative_composition_time() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        match parse_video_tag(&body).unwrap() {
            VideoTag::AvcFrame {
                keyframe,
                composition_ms,
                data,
            } => {
                assert!(!keyframe);
                assert_eq!(composition_ms, -40);
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x41]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_enhanced_rtmp_fourcc() {
        let body = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0]);
        assert_eq!(
            parse_video_tag(&body).unwrap(),
            VideoTag::Unsupported("hvc1".into())
        );
    }

    #[test]
    fn refuses_short_tags() {
        assert!(parse_video_tag(&Bytes::new()).is_err());
        assert!(parse_video_tag(&Bytes::from_static(&[0x17, 1, 0])).is_err());
    }

    #[test]
    fn reads_file_and_stops_at_truncation() {
        let mut f = b"FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        f.extend_from_slice(&[9, 0, 0, 2, 0, 0, 40, 0, 0, 0, 0, 0x17, 2, 0, 0, 0, 13]);
        f.extend_from_slice(&[9, 0, 0, 9, 0, 0]);
        let tags = read_file(&Bytes::from(f)).unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].timestamp_ms, 40);
        assert!(read_file(&Bytes::from_static(b"GIF89a")).is_err());
    }
}
