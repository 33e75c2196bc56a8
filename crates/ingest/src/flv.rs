//! FLV: video tag bodies as RTMP and FLV files carry them (legacy AVC, and enhanced RTMP's
//! FourCC tags for H.265 and H.264), and a reader for FLV files.

use bytes::Bytes;
use media::avc::AvcConfig;
use media::hevc::HevcConfig;
use media::stream::StreamWriter;
use media::{Codec, Frame, VideoConfig};

use crate::{Error, Result};

/// What one FLV video tag body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    /// Sequence header: an AVCDecoderConfigurationRecord or HEVCDecoderConfigurationRecord.
    Config {
        /// H.264 or H.265.
        codec: Codec,
        /// The record.
        record: Bytes,
    },
    /// Length-prefixed NAL units of one access unit.
    Frame {
        /// H.264 or H.265.
        codec: Codec,
        /// The FLV frame type said "keyframe".
        keyframe: bool,
        /// Composition time offset (pts - dts) in milliseconds.
        composition_ms: i32,
        /// The access unit.
        data: Bytes,
    },
    /// End of sequence.
    End,
    /// Video we do not handle: the legacy codec id or the enhanced-RTMP FourCC.
    Unsupported(String),
    /// A command, info or metadata frame, which carries no picture.
    Info,
}

/// Enhanced RTMP packet types (E-RTMP v1/v2, "VideoPacketType").
mod packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    /// Coded frames with no composition time (it is zero).
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
}

/// FLV frame type 5: a video info / command frame.
const FRAME_TYPE_COMMAND: u8 = 5;
/// Frame type 1: a keyframe.
pub(crate) const FRAME_TYPE_KEY: u8 = 1;

/// The frame type of a video tag, from its first byte: bits 4-6 in the legacy header (whose
/// frame types stop at 5, so bit 7 is clear) and in the enhanced-RTMP one (bit 7 set).
pub(crate) fn frame_type(first: u8) -> u8 {
    (first >> 4) & 0x07
}

/// Reads a signed 24-bit big-endian composition time.
fn composition_time(b: &[u8]) -> i32 {
    let cts = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (cts << 8) >> 8
}

/// Parses the body of an FLV/RTMP video tag, legacy or enhanced RTMP.
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag> {
    let first = *body
        .first()
        .ok_or_else(|| Error::Flv("empty video tag".into()))?;
    if first & 0x80 != 0 {
        return parse_enhanced(first, body);
    }
    let frame_type = frame_type(first);
    let codec_id = first & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Info);
    }
    if codec_id != 7 {
        let name = match codec_id {
            2 => "Sorenson H.263",
            3 => "Screen video",
            4 => "VP6",
            5 => "VP6 alpha",
            6 => "Screen video 2",
            12 => "HEVC (legacy id 12; send it as enhanced RTMP hvc1)",
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
    let composition_ms = composition_time(&body[2..5]);
    let payload = body.slice(5..);
    let codec = Codec::H264;
    match body[1] {
        0 => Ok(VideoTag::Config {
            codec,
            record: payload,
        }),
        1 => Ok(VideoTag::Frame {
            codec,
            keyframe: frame_type == FRAME_TYPE_KEY,
            composition_ms,
            data: payload,
        }),
        2 => Ok(VideoTag::End),
        t => Err(Error::Flv(format!("unknown AVC packet type {t}"))),
    }
}

/// Enhanced RTMP: `[1 | frame type(3) | packet type(4)] FourCC [SI24 cts] data`.
fn parse_enhanced(first: u8, body: &Bytes) -> Result<VideoTag> {
    let frame_type = frame_type(first);
    let packet_type = first & 0x0f;
    if packet_type > packet::METADATA {
        // Not a single-track packet of the layout below (multitrack puts its FourCC elsewhere).
        return Ok(VideoTag::Info);
    }
    let fourcc = body
        .get(1..5)
        .ok_or_else(|| Error::Flv("enhanced video tag without FourCC".into()))?;
    let codec = match fourcc {
        b"hvc1" => Codec::H265,
        b"avc1" => Codec::H264,
        other => {
            return Ok(VideoTag::Unsupported(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    };
    if frame_type == FRAME_TYPE_COMMAND || packet_type == packet::METADATA {
        return Ok(VideoTag::Info);
    }
    let keyframe = frame_type == FRAME_TYPE_KEY;
    match packet_type {
        packet::SEQUENCE_START => Ok(VideoTag::Config {
            codec,
            record: body.slice(5..),
        }),
        packet::CODED_FRAMES => {
            let cts = body.get(5..8).ok_or_else(|| {
                Error::Flv("enhanced coded frames without composition time".into())
            })?;
            Ok(VideoTag::Frame {
                codec,
                keyframe,
                composition_ms: composition_time(cts),
                data: body.slice(8..),
            })
        }
        packet::CODED_FRAMES_X => Ok(VideoTag::Frame {
            codec,
            keyframe,
            composition_ms: 0,
            data: body.slice(5..),
        }),
        packet::SEQUENCE_END => Ok(VideoTag::End),
        // MPEG-2 TS sequence start, multitrack, ModEx and later types: nothing to picture in
        // them, and one of them must not mark an otherwise picturable stream unsupported.
        _ => Ok(VideoTag::Info),
    }
}

/// Legacy FLV codec id of AVC (H.264).
const CODEC_ID_AVC: u8 = 7;
/// FLV frame type 2: an inter frame.
const FRAME_TYPE_INTER: u8 = 2;
/// Composition times are signed 24-bit.
const MAX_COMPOSITION_MS: i64 = (1 << 23) - 1;
/// The longest header [`frame_tag`] puts before the NAL units (enhanced: byte, FourCC, SI24).
const FRAME_TAG_HEADER: usize = 8;

/// True for the codecs [`config_tag`] and [`frame_tag`] write: H.264 and H.265.
pub fn carries(codec: Codec) -> bool {
    matches!(codec, Codec::H264 | Codec::H265)
}

/// The video tag body of a decoder configuration, as a player is sent it: a legacy AVC
/// sequence header for H.264, an enhanced-RTMP `hvc1` SequenceStart for H.265; `None` for the
/// codecs RTMP does not carry here (VP8, VP9, AV1).
pub fn config_tag(config: &VideoConfig) -> Option<Bytes> {
    let (head, record): (&[u8], Vec<u8>) = match config {
        VideoConfig::Avc(c) => (
            &[(FRAME_TYPE_KEY << 4) | CODEC_ID_AVC, 0, 0, 0, 0],
            c.to_record(),
        ),
        VideoConfig::Hevc(c) => (
            &[
                0x80 | (FRAME_TYPE_KEY << 4) | packet::SEQUENCE_START,
                b'h',
                b'v',
                b'c',
                b'1',
            ],
            c.to_record(),
        ),
        VideoConfig::Framed(_) => return None,
    };
    let mut body = Vec::with_capacity(head.len() + record.len());
    body.extend_from_slice(head);
    body.extend_from_slice(&record);
    Some(Bytes::from(body))
}

/// The video tag body of one H.264 or H.265 frame (its length-prefixed NAL units as they are
/// buffered), with its composition time; `None` for other codecs.
pub fn frame_tag(codec: Codec, frame: &Frame) -> Option<Bytes> {
    let kind = if frame.keyframe {
        FRAME_TYPE_KEY
    } else {
        FRAME_TYPE_INTER
    };
    let cts =
        (frame.pts_ms - frame.dts_ms).clamp(-MAX_COMPOSITION_MS - 1, MAX_COMPOSITION_MS) as i32;
    let cts = &cts.to_be_bytes()[1..];
    let mut body = Vec::with_capacity(frame.data.len() + FRAME_TAG_HEADER);
    match codec {
        Codec::H264 => body.extend_from_slice(&[(kind << 4) | CODEC_ID_AVC, 1]),
        Codec::H265 => {
            body.push(0x80 | (kind << 4) | packet::CODED_FRAMES);
            body.extend_from_slice(b"hvc1");
        }
        _ => return None,
    }
    body.extend_from_slice(cts);
    body.extend_from_slice(&frame.data);
    Some(Bytes::from(body))
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
    config: Option<VideoConfig>,
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
            VideoTag::Config { codec, record } => {
                let config: VideoConfig = match codec {
                    Codec::H265 => HevcConfig::parse(&record).map(Into::into),
                    _ => AvcConfig::parse(&record).map(Into::into),
                }
                .map_err(|e| Error::Flv(e.to_string()))?;
                self.config = Some(config.clone());
                writer.config(config);
                Ok(Fed::Config)
            }
            VideoTag::Frame {
                codec,
                keyframe,
                composition_ms,
                data,
            } => {
                let Some(config) = &self.config else {
                    return Ok(Fed::BeforeConfig);
                };
                if config.codec() != codec {
                    return Err(Error::Flv(format!(
                        "{} frame in a {} stream",
                        codec.display_name(),
                        config.codec().display_name()
                    )));
                }
                // Trust the bitstream over the FLV flag: only an IDR / IRAP starts a decodable
                // GOP.
                let keyframe = keyframe && config.is_keyframe(&data);
                writer.frame(Frame {
                    dts_ms,
                    pts_ms: dts_ms + i64::from(composition_ms),
                    keyframe,
                    data,
                });
                Ok(Fed::Frame)
            }
            VideoTag::Unsupported(name) => Ok(Fed::Unsupported(name)),
            VideoTag::End | VideoTag::Info => Ok(Fed::Nothing),
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

    /// What a player is sent reads back, through the parser publishers go through, as what
    /// was buffered: configurations, keyframes, composition times (negative too).
    #[test]
    fn tags_written_for_players_parse_back_the_same() {
        let sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9]);
        let pps = Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb]);
        let avc = AvcConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap();
        let tag = config_tag(&VideoConfig::Avc(avc.clone())).unwrap();
        match parse_video_tag(&tag).unwrap() {
            VideoTag::Config {
                codec: Codec::H264,
                record,
            } => assert_eq!(AvcConfig::parse(&record).unwrap(), avc),
            other => panic!("{other:?}"),
        }
        for codec in [Codec::H264, Codec::H265] {
            for (keyframe, cts) in [(true, 0), (false, 80), (false, -40)] {
                let frame = Frame {
                    dts_ms: 1000,
                    pts_ms: 1000 + cts,
                    keyframe,
                    data: Bytes::from_static(&[0, 0, 0, 2, 0x26, 0x01]),
                };
                let tag = frame_tag(codec, &frame).unwrap();
                assert_eq!(
                    parse_video_tag(&tag).unwrap(),
                    VideoTag::Frame {
                        codec,
                        keyframe,
                        composition_ms: cts as i32,
                        data: frame.data.clone()
                    }
                );
            }
        }
        assert!(frame_tag(
            Codec::Vp8,
            &Frame {
                dts_ms: 0,
                pts_ms: 0,
                keyframe: true,
                data: Bytes::new()
            }
        )
        .is_none());
    }

    #[test]
    fn parses_avc_frame_with_negative_composition_time() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        match parse_video_tag(&body).unwrap() {
            VideoTag::Frame {
                codec: Codec::H264,
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
    fn reads_enhanced_rtmp_hvc1_and_reports_other_fourccs() {
        let start = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2]);
        assert_eq!(
            parse_video_tag(&start).unwrap(),
            VideoTag::Config {
                codec: Codec::H265,
                record: Bytes::from_static(&[1, 2])
            }
        );
        let coded = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 40, 9, 9]);
        assert_eq!(
            parse_video_tag(&coded).unwrap(),
            VideoTag::Frame {
                codec: Codec::H265,
                keyframe: true,
                composition_ms: 40,
                data: Bytes::from_static(&[9, 9])
            }
        );
        let x = Bytes::from_static(&[0xa3, b'h', b'v', b'c', b'1', 7]);
        assert_eq!(
            parse_video_tag(&x).unwrap(),
            VideoTag::Frame {
                codec: Codec::H265,
                keyframe: false,
                composition_ms: 0,
                data: Bytes::from_static(&[7])
            }
        );
        assert!(parse_video_tag(&Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0])).is_err());
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x91, b'a', b'v', b'0', b'1', 0])).unwrap(),
            VideoTag::Unsupported("av01".into())
        );
        // A multitrack packet (type 6) in an hvc1 stream is ignored, not "unsupported".
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x96, 0, b'h', b'v', b'c', b'1'])).unwrap(),
            VideoTag::Info
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
