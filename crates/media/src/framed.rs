//! Codecs whose frames carry their own headers (VP8, VP9, AV1): no parameter sets travel
//! apart, so a stream's configuration ([`FrameConfig`]) is read off its keyframes: the codec,
//! the size and, where the header says it, the colour. A frame is handed to the decoder as it
//! came (VP8 and VP9 frames; AV1 temporal units of OBUs with their size fields, RFC 9420's
//! "low overhead" form), and pictured with the `ffmpeg` feature.
//!
//! Each reader below takes only the few leading fields it needs, by hand: no crate reads
//! these headers without also decoding, and each is a handful of fixed-width fields.

use h264_reader::rbsp::{BitRead, BitReader, BitReaderError};

use crate::sps::{Colour, Matrix, SpsInfo, MAX_PIXELS, MAX_SIDE};
use crate::{Codec, Error, Result};

/// What a VP8, VP9 or AV1 keyframe says about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameConfig {
    /// VP8, VP9 or AV1.
    pub codec: Codec,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Matrix and range (VP9 says them; VP8 is BT.601 limited; AV1 is taken as untagged).
    pub colour: Colour,
}

impl FrameConfig {
    /// The stream's description, checked against the size limits.
    pub fn info(&self) -> Result<SpsInfo> {
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        if self.width == 0 || self.height == 0 {
            return Err(Error::Sps(format!(
                "{} keyframe of size {}x{}",
                self.codec.display_name(),
                self.width,
                self.height
            )));
        }
        if w > u64::from(MAX_SIDE) || h > u64::from(MAX_SIDE) || w * h > MAX_PIXELS {
            return Err(Error::PictureTooLarge {
                width: self.width,
                height: self.height,
                max_pixels: MAX_PIXELS,
                max_side: MAX_SIDE,
            });
        }
        Ok(SpsInfo {
            codec: self.codec,
            profile_idc: 0,
            level_idc: 0,
            width: self.width,
            height: self.height,
            fps: None,
            colour: self.colour,
        })
    }
}

/// True when `data`, a frame of `codec`, is decodable on its own.
pub fn is_keyframe(codec: Codec, data: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
        Codec::Vp9 => vp9_is_keyframe(data).unwrap_or(false),
        Codec::Av1 => av1_is_keyframe(data),
        Codec::H264 | Codec::H265 => false,
    }
}

/// The configuration a keyframe of `codec` gives (`None`: not a keyframe, or an AV1 keyframe
/// without a sequence header).
pub fn keyframe_config(codec: Codec, data: &[u8]) -> Result<Option<FrameConfig>> {
    let config = match codec {
        Codec::Vp8 => vp8_keyframe(data)?,
        Codec::Vp9 => vp9_header(data)?,
        Codec::Av1 => {
            if !av1_is_keyframe(data) {
                return Ok(None);
            }
            av1_sequence_size(data)?
        }
        Codec::H264 | Codec::H265 => {
            return Err(Error::Unsupported(format!(
                "{} carries parameter sets, not frame headers",
                codec.display_name()
            )))
        }
    };
    if let Some(c) = &config {
        c.info()?;
    }
    Ok(config)
}

fn bits_error(codec: Codec) -> impl Fn(BitReaderError) -> Error {
    move |e| Error::Sps(format!("{} frame header: {e:?}", codec.display_name()))
}

/// VP8 (RFC 6386 9.1): a 3-byte frame tag whose low bit is 0 for a keyframe, then the start
/// code 9d 01 2a and the width and height (14 bits each, little-endian, 2 bits of scale).
fn vp8_keyframe(data: &[u8]) -> Result<Option<FrameConfig>> {
    let Some(&tag) = data.first() else {
        return Err(Error::Sps("empty VP8 frame".into()));
    };
    if tag & 1 != 0 {
        return Ok(None);
    }
    if data.len() < 10 || data[3..6] != [0x9d, 0x01, 0x2a] {
        return Err(Error::Sps("VP8 keyframe without its start code".into()));
    }
    let width = u32::from(u16::from_le_bytes([data[6], data[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([data[8], data[9]]) & 0x3fff);
    Ok(Some(FrameConfig {
        codec: Codec::Vp8,
        width,
        height,
        colour: Colour::untagged(),
    }))
}

/// Whether a VP9 frame is a shown keyframe, whatever its profile (spec 6.2: frame_marker,
/// profile bits, show_existing_frame, frame_type).
fn vp9_is_keyframe(data: &[u8]) -> std::result::Result<bool, BitReaderError> {
    let mut r = BitReader::new(data);
    if r.read::<2, u8>("frame_marker")? != 2 {
        return Ok(false);
    }
    let low = u8::from(r.read_bit("profile_low_bit")?);
    let high = u8::from(r.read_bit("profile_high_bit")?);
    if (high << 1) | low == 3 {
        r.skip(1, "reserved_zero")?;
    }
    if r.read_bit("show_existing_frame")? {
        return Ok(false);
    }
    Ok(!r.read_bit("frame_type")?)
}

/// VP9 (bitstream spec 6.2, uncompressed_header): `Some` for a keyframe, with its size and
/// colour.
fn vp9_header(data: &[u8]) -> Result<Option<FrameConfig>> {
    let e = bits_error(Codec::Vp9);
    let mut r = BitReader::new(data);
    let marker: u8 = r.read::<2, u8>("frame_marker").map_err(&e)?;
    if marker != 2 {
        return Err(Error::Sps("VP9 frame without its frame marker".into()));
    }
    let low = u8::from(r.read_bit("profile_low_bit").map_err(&e)?);
    let high = u8::from(r.read_bit("profile_high_bit").map_err(&e)?);
    let profile = (high << 1) | low;
    if profile == 3 {
        r.skip(1, "reserved_zero").map_err(&e)?;
    }
    if r.read_bit("show_existing_frame").map_err(&e)? {
        return Ok(None);
    }
    let non_key = r.read_bit("frame_type").map_err(&e)?;
    if non_key {
        return Ok(None);
    }
    r.skip(2, "show_frame, error_resilient_mode").map_err(&e)?;
    let sync: u32 = r.read::<24, u32>("frame_sync_code").map_err(&e)?;
    if sync != 0x49_83_42 {
        return Err(Error::Sps("VP9 keyframe without its sync code".into()));
    }
    if profile >= 2 {
        r.skip(1, "ten_or_twelve_bit").map_err(&e)?;
        return Err(Error::Unsupported(
            "VP9 profile 2 or 3 (high bit depth)".into(),
        ));
    }
    let color_space: u8 = r.read::<3, u8>("color_space").map_err(&e)?;
    const CS_RGB: u8 = 7;
    let full_range = if color_space != CS_RGB {
        let full = r.read_bit("color_range").map_err(&e)?;
        if profile == 1 {
            r.skip(3, "subsampling_x, subsampling_y, reserved_zero")
                .map_err(&e)?;
            return Err(Error::Unsupported("VP9 profile 1 (4:2:2 or 4:4:4)".into()));
        }
        full
    } else {
        return Err(Error::Unsupported("VP9 in RGB".into()));
    };
    let matrix = match color_space {
        // CS_BT_709; CS_BT_2020; the rest (unknown, BT.601, SMPTE 170/240) as BT.601.
        2 => Matrix::Bt709,
        5 => Matrix::Bt2020,
        _ => Matrix::Bt601,
    };
    let width = u32::from(r.read::<16, u16>("frame_width_minus_1").map_err(&e)?) + 1;
    let height = u32::from(r.read::<16, u16>("frame_height_minus_1").map_err(&e)?) + 1;
    Ok(Some(FrameConfig {
        codec: Codec::Vp9,
        width,
        height,
        colour: Colour { matrix, full_range },
    }))
}

/// AV1 OBU types (spec 6.2.2).
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_FRAME: u8 = 6;

/// The OBUs of a temporal unit: (type, payload). Each must carry its size field, as RTP
/// depacketizers write them (RFC 9420 5).
fn av1_obus(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = *data.get(at)?;
        let kind = (header >> 3) & 0x0f;
        let ext = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        at += 1 + usize::from(ext);
        let (size, used) = if has_size {
            leb128(data.get(at..)?)?
        } else {
            (data.len().checked_sub(at)?, 0)
        };
        at += used;
        let payload = data.get(at..at.checked_add(size)?)?;
        at += size;
        Some((kind, payload))
    })
}

/// An unsigned LEB128 (spec 4.10.5): the value and the bytes it took (at most 8).
fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// True when the temporal unit's first frame header is of a shown KEY_FRAME (spec 5.9.2:
/// show_existing_frame = 0, frame_type = 0), as WebRTC senders send them (no reduced still
/// picture headers).
fn av1_is_keyframe(data: &[u8]) -> bool {
    av1_obus(data)
        .find(|(kind, _)| matches!(*kind, OBU_FRAME_HEADER | OBU_FRAME))
        .is_some_and(|(_, payload)| {
            let mut r = BitReader::new(payload);
            matches!(
                (
                    r.read_bit("show_existing_frame"),
                    r.read::<2, u8>("frame_type")
                ),
                (Ok(false), Ok(0))
            )
        })
}

/// The largest frame size of the temporal unit's sequence header (spec 5.5.1), which is the
/// frame size of streams that do not override it per frame (WebRTC's encoders).
fn av1_sequence_size(data: &[u8]) -> Result<Option<FrameConfig>> {
    let Some((_, seq)) = av1_obus(data).find(|(kind, _)| *kind == OBU_SEQUENCE_HEADER) else {
        return Ok(None);
    };
    let e = bits_error(Codec::Av1);
    let mut r = BitReader::new(seq);
    r.skip(3, "seq_profile").map_err(&e)?;
    r.skip(1, "still_picture").map_err(&e)?;
    if r.read_bit("reduced_still_picture_header").map_err(&e)? {
        r.skip(5, "seq_level_idx").map_err(&e)?;
    } else {
        let mut buffer_delay_bits = 0;
        let mut decoder_model = false;
        if r.read_bit("timing_info_present_flag").map_err(&e)? {
            r.skip(64, "num_units_in_display_tick, time_scale")
                .map_err(&e)?;
            if r.read_bit("equal_picture_interval").map_err(&e)? {
                uvlc(&mut r).map_err(&e)?;
            }
            // Only with timing info (spec 5.5.1).
            decoder_model = r.read_bit("decoder_model_info_present_flag").map_err(&e)?;
        }
        if decoder_model {
            buffer_delay_bits =
                u32::from(r.read::<5, u8>("buffer_delay_length_minus_1").map_err(&e)?) + 1;
            r.skip(32 + 5 + 5, "decoder model info").map_err(&e)?;
        }
        let initial_display_delay = r
            .read_bit("initial_display_delay_present_flag")
            .map_err(&e)?;
        let points = r
            .read::<5, u8>("operating_points_cnt_minus_1")
            .map_err(&e)?
            + 1;
        for _ in 0..points {
            r.skip(12, "operating_point_idc").map_err(&e)?;
            let level: u8 = r.read::<5, u8>("seq_level_idx").map_err(&e)?;
            if level > 7 {
                r.skip(1, "seq_tier").map_err(&e)?;
            }
            if decoder_model
                && r.read_bit("decoder_model_present_for_this_op")
                    .map_err(&e)?
            {
                r.skip(2 * buffer_delay_bits + 1, "operating_parameters_info")
                    .map_err(&e)?;
            }
            if initial_display_delay
                && r.read_bit("initial_display_delay_present_for_this_op")
                    .map_err(&e)?
            {
                r.skip(4, "initial_display_delay_minus_1").map_err(&e)?;
            }
        }
    }
    let wbits = u32::from(r.read::<4, u8>("frame_width_bits_minus_1").map_err(&e)?) + 1;
    let hbits = u32::from(r.read::<4, u8>("frame_height_bits_minus_1").map_err(&e)?) + 1;
    let width = r
        .read_var::<u32>(wbits, "max_frame_width_minus_1")
        .map_err(&e)?
        + 1;
    let height = r
        .read_var::<u32>(hbits, "max_frame_height_minus_1")
        .map_err(&e)?
        + 1;
    Ok(Some(FrameConfig {
        codec: Codec::Av1,
        width,
        height,
        colour: Colour::untagged(),
    }))
}

/// uvlc() (spec 4.10.3), read and dropped: leading zeros up to the 1; 32 or more of them mean
/// the largest value and no value bits follow.
fn uvlc(r: &mut impl BitRead) -> std::result::Result<(), BitReaderError> {
    let mut zeros = 0u32;
    while !r.read_bit("uvlc leading zero")? {
        zeros += 1;
    }
    if zeros >= 32 {
        return Ok(());
    }
    r.skip(zeros, "uvlc value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vp8_keyframe_gives_its_size() {
        // Frame tag (key, version 0, shown, partition size), start code, 640 and 480.
        let mut key = vec![0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a];
        key.extend_from_slice(&640u16.to_le_bytes());
        key.extend_from_slice(&480u16.to_le_bytes());
        key.extend_from_slice(&[0; 16]);
        let c = keyframe_config(Codec::Vp8, &key).unwrap().unwrap();
        assert_eq!((c.width, c.height), (640, 480));
        assert!(is_keyframe(Codec::Vp8, &key));
        let inter = [0x31, 0x00, 0x00, 0x00];
        assert!(!is_keyframe(Codec::Vp8, &inter));
        assert_eq!(keyframe_config(Codec::Vp8, &inter).unwrap(), None);
        assert!(keyframe_config(Codec::Vp8, &key[..8]).is_err());
        assert!(keyframe_config(Codec::Vp8, &[]).is_err());
    }

    /// Packs fields MSB first.
    fn bits(fields: &[(u32, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut acc: u64 = 0;
        let mut n = 0;
        for &(value, width) in fields {
            for i in (0..width).rev() {
                acc = (acc << 1) | u64::from((value >> i) & 1);
                n += 1;
                if n == 8 {
                    out.push(acc as u8);
                    acc = 0;
                    n = 0;
                }
            }
        }
        if n > 0 {
            out.push((acc << (8 - n)) as u8);
        }
        out.extend_from_slice(&[0; 8]);
        out
    }

    #[test]
    fn a_vp9_keyframe_gives_its_size_and_colour() {
        // marker 2, profile 0, shown, key, show_frame, not error resilient, sync code,
        // BT.709 limited, 1280x720.
        let key = bits(&[
            (2, 2),
            (0, 1),
            (0, 1),
            (0, 1),
            (0, 1),
            (1, 1),
            (0, 1),
            (0x49_83_42, 24),
            (2, 3),
            (0, 1),
            (1279, 16),
            (719, 16),
        ]);
        let c = keyframe_config(Codec::Vp9, &key).unwrap().unwrap();
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(
            c.colour,
            Colour {
                matrix: Matrix::Bt709,
                full_range: false
            }
        );
        assert!(is_keyframe(Codec::Vp9, &key));
        let inter = bits(&[(2, 2), (0, 1), (0, 1), (0, 1), (1, 1)]);
        assert!(!is_keyframe(Codec::Vp9, &inter));
        let huge = bits(&[
            (2, 2),
            (0, 1),
            (0, 1),
            (0, 1),
            (0, 1),
            (1, 1),
            (0, 1),
            (0x49_83_42, 24),
            (1, 3),
            (0, 1),
            (65535, 16),
            (65535, 16),
        ]);
        assert!(matches!(
            keyframe_config(Codec::Vp9, &huge),
            Err(Error::PictureTooLarge { .. })
        ));
        assert!(keyframe_config(Codec::Vp9, &[0x00, 0x00]).is_err());
    }

    #[test]
    fn an_av1_keyframe_with_its_sequence_header_gives_its_size() {
        // Sequence header: profile 0, not still, not reduced, no timing (so no decoder model
        // flag), no initial display delay, one operating point (idc 0, level 8 -> tier bit),
        // 11 bits for each side: 1920x1080.
        let seq = bits(&[
            (0, 3),
            (0, 1),
            (0, 1),
            (0, 1),
            (0, 1),
            (0, 5),
            (0, 12),
            (8, 5),
            (0, 1),
            (10, 4),
            (10, 4),
            (1919, 11),
            (1079, 11),
        ]);
        let frame = bits(&[(0, 1), (0, 2), (1, 1)]);
        let mut tu = vec![0x12, 0x00]; // temporal delimiter, size 0
        tu.push((OBU_SEQUENCE_HEADER << 3) | 0x02);
        tu.push(seq.len() as u8);
        tu.extend_from_slice(&seq);
        tu.push((OBU_FRAME << 3) | 0x02);
        tu.push(frame.len() as u8);
        tu.extend_from_slice(&frame);
        assert!(is_keyframe(Codec::Av1, &tu));
        let c = keyframe_config(Codec::Av1, &tu).unwrap().unwrap();
        assert_eq!((c.width, c.height), (1920, 1080));
        // An inter frame (frame_type 1) is no keyframe; a truncated unit is nothing.
        let inter = bits(&[(0, 1), (1, 2)]);
        let tu2 = [vec![(OBU_FRAME << 3) | 0x02, inter.len() as u8], inter].concat();
        assert!(!is_keyframe(Codec::Av1, &tu2));
        assert!(!is_keyframe(Codec::Av1, &tu[..5]));
        assert_eq!(keyframe_config(Codec::Av1, &tu2).unwrap(), None);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for seed in 0u32..2000 {
            let len = (seed % 40) as usize;
            let data: Vec<u8> = (0..len)
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i as u32 * 97) >> 13) as u8)
                .collect();
            for codec in [Codec::Vp8, Codec::Vp9, Codec::Av1] {
                let _ = keyframe_config(codec, &data);
                let _ = is_keyframe(codec, &data);
            }
        }
    }
}
