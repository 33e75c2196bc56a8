//! H.265 framing: the HEVCDecoderConfigurationRecord ("hvcC") that enhanced FLV and MP4 carry,
//! IRAP detection, what the SPS says about the picture size, and grouping an Annex B stream into
//! access units. Length-prefixed NAL units are the same as H.264's, so [`crate::avc`]'s
//! conversions serve both codecs.

use std::num::NonZeroUsize;

use bytes::Bytes;
use h264_reader::rbsp::{BitRead, BitReader, ByteReader};

use crate::avc::{split_annexb, AvccNals, MAX_PARAMETER_SETS};
use crate::sps::{Colour, SpsInfo, MAX_PIXELS, MAX_SIDE};
use crate::{Codec, Error, Frame, Result};

/// NAL unit types this crate looks at (ITU-T H.265 table 7-1).
pub mod nal_type {
    /// First IRAP type (BLA_W_LP); IRAP pictures are 16..=23.
    pub const IRAP_FIRST: u8 = 16;
    /// Last IRAP type (reserved IRAP 23).
    pub const IRAP_LAST: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// Prefix SEI.
    pub const PREFIX_SEI: u8 = 39;
    /// Suffix SEI.
    pub const SUFFIX_SEI: u8 = 40;
}

/// Bytes of an H.265 NAL unit header.
const NAL_HEADER_LEN: usize = 2;
/// Annex B start code.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The type of an H.265 NAL unit from its two-byte header.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    (nal.len() >= NAL_HEADER_LEN).then(|| (nal[0] >> 1) & 0x3f)
}

/// True for a coded slice of a picture (types 0..=31).
fn is_vcl(t: u8) -> bool {
    t < 32
}

/// An H.265 stream's decoder configuration: parameter sets and the NAL length prefix size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    /// Bytes in each NAL length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    /// Video parameter sets, each a whole NAL unit (two-byte header included).
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

impl HevcConfig {
    /// Parses an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1).
    pub fn parse(record: &Bytes) -> Result<HevcConfig> {
        const HEADER: usize = 23;
        let b = &record[..];
        if b.len() < HEADER {
            return Err(Error::HevcConfig("shorter than 23 bytes"));
        }
        if b[0] != 1 {
            return Err(Error::HevcConfig("configurationVersion is not 1"));
        }
        let nal_length_size = usize::from(b[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(Error::HevcConfig("lengthSizeMinusOne is 2"));
        }
        let arrays = usize::from(b[22]);
        let mut at = HEADER;
        let mut config = HevcConfig {
            nal_length_size,
            vps: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
        };
        let take = |at: &mut usize, n: usize| -> Result<usize> {
            let start = *at;
            if b.len() - start < n {
                return Err(Error::HevcConfig("truncated NAL array"));
            }
            *at += n;
            Ok(start)
        };
        for _ in 0..arrays {
            let s = take(&mut at, 3)?;
            let array_type = b[s] & 0x3f;
            let count = usize::from(u16::from_be_bytes([b[s + 1], b[s + 2]]));
            for _ in 0..count {
                let s = take(&mut at, 2)?;
                let len = usize::from(u16::from_be_bytes([b[s], b[s + 1]]));
                let s = take(&mut at, len)?;
                let nal = record.slice(s..s + len);
                if nal_unit_type(&nal) != Some(array_type) {
                    return Err(Error::HevcConfig(
                        "a NAL unit's type differs from its array's",
                    ));
                }
                let list = match array_type {
                    nal_type::VPS => &mut config.vps,
                    nal_type::SPS => &mut config.sps,
                    nal_type::PPS => &mut config.pps,
                    _ => continue, // SEI arrays: not needed to decode
                };
                if list.len() >= MAX_PARAMETER_SETS {
                    return Err(Error::HevcConfig("too many parameter sets"));
                }
                list.push(nal);
            }
        }
        config.check()?;
        Ok(config)
    }

    /// Builds a configuration from parameter sets found in an Annex B stream.
    pub fn from_parameter_sets(vps: Vec<Bytes>, sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<Self> {
        let config = HevcConfig {
            nal_length_size: 4,
            vps,
            sps,
            pps,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.vps.is_empty() {
            return Err(Error::HevcConfig("no VPS"));
        }
        if self.sps.is_empty() {
            return Err(Error::HevcConfig("no SPS"));
        }
        if self.pps.is_empty() {
            return Err(Error::HevcConfig("no PPS"));
        }
        Ok(())
    }

    /// An HEVCDecoderConfigurationRecord holding these parameter sets (what an enhanced-RTMP
    /// publisher sends as its sequence start). The profile/level fields are copied from the SPS's
    /// profile_tier_level; the rest are the "unknown" values the format allows.
    pub fn to_record(&self) -> Vec<u8> {
        // general_profile_space..general_level_idc: the 12 RBSP bytes after the SPS's NAL header
        // and its first byte (vps id, max sub layers, nesting).
        let mut ptl = [0u8; 12];
        if let Some(sps) = self.sps.first() {
            let rbsp = rbsp_prefix(sps.get(NAL_HEADER_LEN..).unwrap_or_default(), 13);
            if rbsp.len() == 13 {
                ptl.copy_from_slice(&rbsp[1..]);
            }
        }
        let mut r = vec![1u8];
        r.extend_from_slice(&ptl);
        r.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0]);
        // constantFrameRate 0, numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne.
        r.push(0x0c | ((self.nal_length_size as u8 - 1) & 0x03));
        r.push(3);
        for (t, sets) in [
            (nal_type::VPS, &self.vps),
            (nal_type::SPS, &self.sps),
            (nal_type::PPS, &self.pps),
        ] {
            r.push(0x80 | t);
            r.extend_from_slice(&(sets.len() as u16).to_be_bytes());
            for s in sets {
                r.extend_from_slice(&(s.len() as u16).to_be_bytes());
                r.extend_from_slice(s);
            }
        }
        r
    }

    /// The parameter sets in Annex B form, to put before a keyframe.
    pub fn annexb_parameter_sets(&self, out: &mut Vec<u8>) {
        for set in self.vps.iter().chain(&self.sps).chain(&self.pps) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
    }

    /// What the first SPS says (size, profile, level), checked against the size limits.
    pub fn info(&self) -> Result<SpsInfo> {
        parse_sps(self.sps.first().ok_or(Error::HevcConfig("no SPS"))?)
    }
}

/// The first `n` bytes of a NAL payload with emulation-prevention bytes (`00 00 03`) removed.
fn rbsp_prefix(payload: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut zeros = 0;
    for &b in payload {
        if out.len() == n {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// True when a length-prefixed access unit holds an IRAP picture (IDR, CRA or BLA): decodable
/// with no earlier frame.
pub fn contains_irap(data: &[u8], length_size: usize) -> bool {
    AvccNals::new(data, length_size).any(|nal| {
        nal.ok()
            .and_then(nal_unit_type)
            .is_some_and(|t| (nal_type::IRAP_FIRST..=nal_type::IRAP_LAST).contains(&t))
    })
}

/// Reads the picture size, bit depth and chroma format of an H.265 SPS (H.265 7.3.2.2).
///
/// The colour description sits in the VUI behind the reference picture sets, which take a parser
/// of their own; it is left untagged here and the `ffmpeg` decoder reports the real one with each
/// picture.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    if nal.len() < 4 || nal_unit_type(nal) != Some(nal_type::SPS) {
        return Err(Error::Sps("not an H.265 SPS NAL unit".into()));
    }
    let skip = NonZeroUsize::new(NAL_HEADER_LEN).expect("non-zero");
    let mut r = BitReader::new(ByteReader::skipping_bytes(nal, skip));
    let e = |e: h264_reader::rbsp::BitReaderError| Error::Sps(format!("{e:?}"));
    r.skip(4, "sps_video_parameter_set_id").map_err(e)?;
    let max_sub_layers_minus1: u8 = r.read::<3, u8>("sps_max_sub_layers_minus1").map_err(e)?;
    r.skip(1, "sps_temporal_id_nesting_flag").map_err(e)?;
    // profile_tier_level(1, max_sub_layers_minus1)
    r.skip(2 + 1, "general_profile_space, general_tier_flag")
        .map_err(e)?;
    let profile_idc: u8 = r.read::<5, u8>("general_profile_idc").map_err(e)?;
    r.skip(32 + 48, "compatibility and constraint flags")
        .map_err(e)?;
    let level_idc: u8 = r.read::<8, u8>("general_level_idc").map_err(e)?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(usize::from(max_sub_layers_minus1)) {
        *p = (
            r.read_bit("sub_layer_profile_present_flag").map_err(e)?,
            r.read_bit("sub_layer_level_present_flag").map_err(e)?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            2 * (8 - u32::from(max_sub_layers_minus1)),
            "reserved_zero_2bits",
        )
        .map_err(e)?;
    }
    for &(profile, level) in present.iter().take(usize::from(max_sub_layers_minus1)) {
        if profile {
            r.skip(88, "sub_layer profile").map_err(e)?;
        }
        if level {
            r.skip(8, "sub_layer_level_idc").map_err(e)?;
        }
    }
    r.read_ue("sps_seq_parameter_set_id").map_err(e)?;
    let chroma_format_idc = r.read_ue("chroma_format_idc").map_err(e)?;
    if chroma_format_idc == 3 {
        r.skip(1, "separate_colour_plane_flag").map_err(e)?;
    }
    let coded_w = u64::from(r.read_ue("pic_width_in_luma_samples").map_err(e)?);
    let coded_h = u64::from(r.read_ue("pic_height_in_luma_samples").map_err(e)?);
    if coded_w > u64::from(MAX_SIDE)
        || coded_h > u64::from(MAX_SIDE)
        || coded_w * coded_h > MAX_PIXELS
    {
        return Err(Error::PictureTooLarge {
            width: coded_w.min(u64::from(u32::MAX)) as u32,
            height: coded_h.min(u64::from(u32::MAX)) as u32,
            max_pixels: MAX_PIXELS,
            max_side: MAX_SIDE,
        });
    }
    let (mut width, mut height) = (coded_w, coded_h);
    if r.read_bit("conformance_window_flag").map_err(e)? {
        let (sub_w, sub_h) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let mut offset = |name| r.read_ue(name).map(u64::from).map_err(e);
        let horizontal =
            (offset("conf_win_left_offset")? + offset("conf_win_right_offset")?) * sub_w;
        let vertical = (offset("conf_win_top_offset")? + offset("conf_win_bottom_offset")?) * sub_h;
        width = width.saturating_sub(horizontal);
        height = height.saturating_sub(vertical);
    }
    if width == 0 || height == 0 {
        return Err(Error::Sps("cropping leaves no picture".into()));
    }
    // The raw value is checked, not 8 + it: ue(v) reaches 2^32 - 2 in a hostile SPS.
    let depth_minus8 = r.read_ue("bit_depth_luma_minus8").map_err(e)?;
    if depth_minus8 != 0 {
        return Err(Error::Unsupported(format!(
            "{}-bit video",
            8 + u64::from(depth_minus8)
        )));
    }
    if chroma_format_idc != 1 {
        return Err(Error::Unsupported(format!(
            "chroma format idc {chroma_format_idc} (only 4:2:0 is decoded)"
        )));
    }
    Ok(SpsInfo {
        codec: Codec::H265,
        profile_idc,
        level_idc,
        width: width as u32,
        height: height as u32,
        fps: None,
        colour: Colour::untagged(),
    })
}

/// Groups an H.265 Annex B stream into a configuration and length-prefixed access units in
/// decode order, for pictures of raw `.h265` files. An access unit starts at an AUD, parameter
/// set or prefix SEI after a slice, or at a slice whose first_slice_segment_in_pic_flag is set.
pub fn annexb_to_frames(stream: &[u8]) -> Result<(HevcConfig, Vec<Frame>)> {
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    let mut frames = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut has_slice = false;
    let mut irap = false;
    let push = |current: &mut Vec<u8>, irap: bool, frames: &mut Vec<Frame>| {
        let n = frames.len() as i64;
        frames.push(Frame {
            dts_ms: n * 40,
            pts_ms: n * 40,
            keyframe: irap,
            data: Bytes::from(std::mem::take(current)),
        });
    };
    for nal in split_annexb(stream) {
        let Some(t) = nal_unit_type(nal) else {
            continue;
        };
        let first_slice = is_vcl(t) && nal.get(2).is_some_and(|b| b & 0x80 != 0);
        let starts_au = matches!(
            t,
            nal_type::AUD | nal_type::VPS | nal_type::SPS | nal_type::PPS | nal_type::PREFIX_SEI
        ) || first_slice;
        if starts_au && has_slice {
            push(&mut current, irap, &mut frames);
            has_slice = false;
            irap = false;
        }
        let list = match t {
            nal_type::VPS => Some(&mut vps),
            nal_type::SPS => Some(&mut sps),
            nal_type::PPS => Some(&mut pps),
            _ => None,
        };
        if let Some(list) = list {
            if list.len() < MAX_PARAMETER_SETS {
                list.push(Bytes::copy_from_slice(nal));
            }
        }
        if is_vcl(t) {
            has_slice = true;
            irap |= (nal_type::IRAP_FIRST..=nal_type::IRAP_LAST).contains(&t);
        }
        if is_vcl(t) || t == nal_type::PREFIX_SEI || t == nal_type::SUFFIX_SEI {
            current.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            current.extend_from_slice(nal);
        }
    }
    if has_slice {
        push(&mut current, irap, &mut frames);
    }
    Ok((HevcConfig::from_parameter_sets(vps, sps, pps)?, frames))
}

/// True when an Annex B stream looks like H.265 rather than H.264: its first NAL unit is an
/// H.265 VPS, SPS, AUD, prefix SEI or IRAP slice with a valid two-byte header. (An H.264 stream starts
/// with an SPS `0x67`, AUD `0x09` or SEI `0x06`, whose second byte is not a valid H.265
/// nuh_temporal_id_plus1 pattern for those types.)
pub fn looks_like_annexb_hevc(stream: &[u8]) -> bool {
    let Some(first) = split_annexb(stream).into_iter().next() else {
        return false;
    };
    let Some(t) = nal_unit_type(first) else {
        return false;
    };
    let forbidden_zero = first[0] & 0x80 == 0;
    let layer_zero = (first[0] & 0x01) == 0 && (first[1] >> 3) == 0;
    let tid_plus1 = first[1] & 0x07;
    forbidden_zero
        && layer_zero
        && tid_plus1 == 1
        && (matches!(
            t,
            nal_type::VPS | nal_type::SPS | nal_type::AUD | nal_type::PREFIX_SEI
        ) || (nal_type::IRAP_FIRST..=nal_type::IRAP_LAST).contains(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter sets of a 64x48 Main-profile stream from x265
    /// (`ffmpeg -f lavfi -i testsrc=s=64x48 -c:v libx265 -frames 1 -f hevc`).
    fn sample() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/64x48.h265"
        ))
        .expect("testdata/64x48.h265")
    }

    #[test]
    fn annexb_hevc_groups_frames_and_reads_the_sps() {
        let data = sample();
        assert!(looks_like_annexb_hevc(&data));
        let (config, frames) = annexb_to_frames(&data).unwrap();
        assert_eq!(config.nal_length_size, 4);
        assert!(frames[0].keyframe);
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().skip(1).all(|f| !f.keyframe));
        assert!(contains_irap(&frames[0].data, 4));
        let info = config.info().unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        assert_eq!(info.codec, Codec::H265);
        assert_eq!(info.profile_name(), "Main");
    }

    #[test]
    fn hvcc_record_round_trips() {
        let (config, _) = annexb_to_frames(&sample()).unwrap();
        let rec = config.to_record();
        assert_eq!(
            rec.len(),
            23 + 3 * 5 + config.vps[0].len() + config.sps[0].len() + config.pps[0].len()
        );
        assert_eq!(rec[1] & 0x1f, 1, "general_profile_idc: Main");
        // x265 puts an emulation-prevention byte in the SPS's compatibility flags; the record
        // has the RBSP: level 3.0 (30) at byte 12.
        assert_eq!(rec[12], 30, "general_level_idc");
        assert_eq!(rec[12], config.info().unwrap().level_idc);
        let parsed = HevcConfig::parse(&Bytes::from(rec.clone())).unwrap();
        assert_eq!(parsed, config);
        // Every truncation is an error, never a panic.
        for n in 0..rec.len() {
            assert!(
                HevcConfig::parse(&Bytes::from(rec[..n].to_vec())).is_err(),
                "len {n}"
            );
        }
    }

    #[test]
    fn h264_is_not_taken_for_hevc() {
        let h264 = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/720p.h264"
        ))
        .unwrap();
        assert!(!looks_like_annexb_hevc(&h264));
    }

    /// Packs a string of '0'/'1' into an SPS NAL unit, with emulation prevention.
    fn sps_nal(bits: &str) -> Vec<u8> {
        let mut bits = bits.to_string();
        bits.push('1'); // rbsp_stop_one_bit
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let mut nal = vec![0x42, 0x01];
        let mut zeros = 0;
        for chunk in bits.as_bytes().chunks(8) {
            let b = chunk.iter().fold(0u8, |acc, &c| (acc << 1) | (c - b'0'));
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    fn ue(v: u64) -> String {
        let code = format!("{:b}", v + 1);
        "0".repeat(code.len() - 1) + &code
    }

    #[test]
    fn a_huge_bit_depth_is_an_error_not_an_overflow() {
        // vps id, max_sub_layers_minus1 0, nesting; profile_tier_level (Main, level 3.0);
        // sps id, 4:2:0, 64x48, no conformance window, then bit_depth_luma_minus8.
        let head = format!(
            "00000001{}{}{}{}{}{}{}0",
            "00000001",
            "1".repeat(80),
            "00011110",
            ue(0),
            ue(1),
            ue(64),
            ue(48)
        );
        let ok = parse_sps(&sps_nal(&(head.clone() + &ue(0)))).unwrap();
        assert_eq!((ok.width, ok.height, ok.level_idc), (64, 48, 30));
        let err = parse_sps(&sps_nal(&(head.clone() + &ue(2))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("10-bit"), "{err}");
        let err = parse_sps(&sps_nal(&(head + &ue(u64::from(u32::MAX) - 1))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("4294967302-bit"), "{err}");
    }

    #[test]
    fn hostile_sps_sizes_are_refused() {
        assert!(parse_sps(&[0x42, 0x01]).is_err());
        assert!(parse_sps(&[0x42, 0x01, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
