//! What a stream's sequence parameter set says about its pictures: display size after cropping,
//! profile and level, frame rate, and the colour description (matrix and range) from the VUI.
//!
//! The size is checked against [`MAX_PIXELS`] and [`MAX_SIDE`] here, before anything is
//! allocated for a picture: a hostile SPS can claim 2^32 macroblocks.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::BitReader;

use crate::{Codec, Error, Result};

/// Largest decoded width or height accepted (8K is 7680).
pub const MAX_SIDE: u32 = 8192;
/// Largest decoded picture accepted, in pixels (8192 x 4352 covers DCI 8K).
pub const MAX_PIXELS: u64 = 8192 * 4352;

/// The YUV -> RGB matrix of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Matrix {
    /// ITU-R BT.601 (SD; also what an untagged stream below 720 lines is assumed to use).
    Bt601,
    /// ITU-R BT.709 (HD).
    Bt709,
    /// ITU-R BT.2020 non-constant luminance.
    Bt2020,
}

/// Colour description needed to turn decoded YUV into RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Colour {
    /// Matrix coefficients.
    pub matrix: Matrix,
    /// True for full-range (0-255) luma and chroma, false for limited (16-235).
    pub full_range: bool,
}

impl Colour {
    /// The colour of a stream whose VUI says nothing: limited range BT.601, whatever the size.
    /// That is what ffmpeg (libswscale) assumes and what it used to make the YUV of untagged
    /// streams in the first place; guessing BT.709 for HD, as some players do, tints ffmpeg-made
    /// streams (measured: 26 dB instead of 40+ dB against the source).
    pub fn untagged() -> Colour {
        Colour {
            matrix: Matrix::Bt601,
            full_range: false,
        }
    }

    /// Short name for the API (`bt709/limited`).
    pub fn describe(&self) -> String {
        let m = match self.matrix {
            Matrix::Bt601 => "bt601",
            Matrix::Bt709 => "bt709",
            Matrix::Bt2020 => "bt2020",
        };
        format!("{m}/{}", if self.full_range { "full" } else { "limited" })
    }
}

/// What livesnap needs to know from an SPS.
#[derive(Debug, Clone, PartialEq)]
pub struct SpsInfo {
    /// The codec whose SPS this is (profile numbers differ between H.264 and H.265).
    pub codec: Codec,
    /// profile_idc (H.264: 66 baseline, 77 main, 100 high; H.265: 1 Main, 2 Main 10, ...).
    pub profile_idc: u8,
    /// level_idc (31 = 3.1).
    pub level_idc: u8,
    /// Display width after cropping.
    pub width: u32,
    /// Display height after cropping (1080 for a stream coded 1088 high).
    pub height: u32,
    /// Frames per second from the VUI timing info, when present.
    pub fps: Option<f64>,
    /// Matrix and range.
    pub colour: Colour,
}

impl SpsInfo {
    /// Parses an SPS NAL unit (header byte included) and checks its size against the limits.
    pub fn parse(nal: &[u8]) -> Result<SpsInfo> {
        // h264-reader's decode_nal underflows on fewer than two bytes (found by fuzzing).
        if nal.len() < 4 {
            return Err(Error::Sps(format!(
                "{} bytes is too short for an SPS",
                nal.len()
            )));
        }
        let rbsp = h264_reader::rbsp::decode_nal(nal).map_err(|e| Error::Sps(e.to_string()))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
            .map_err(|e| Error::Sps(format!("{e:?}")))?;
        // Check the coded size before asking h264-reader for the cropped one: the fields are
        // u32 and a hostile SPS makes them overflow.
        let coded_w = u64::from(sps.pic_width_in_mbs_minus1) + 1;
        let map_units = u64::from(sps.pic_height_in_map_units_minus1) + 1;
        let coded_h = match sps.frame_mbs_flags {
            h264_reader::nal::sps::FrameMbsFlags::Frames => map_units,
            _ => map_units * 2,
        };
        let (cw, ch) = (coded_w * 16, coded_h * 16);
        if cw > u64::from(MAX_SIDE) || ch > u64::from(MAX_SIDE) || cw * ch > MAX_PIXELS {
            return Err(Error::PictureTooLarge {
                width: cw.min(u64::from(u32::MAX)) as u32,
                height: ch.min(u64::from(u32::MAX)) as u32,
                max_pixels: MAX_PIXELS,
                max_side: MAX_SIDE,
            });
        }
        if sps.chroma_info.bit_depth_luma_minus8 != 0
            || sps.chroma_info.bit_depth_chroma_minus8 != 0
        {
            return Err(Error::Unsupported(format!(
                "{}-bit video",
                8 + sps.chroma_info.bit_depth_luma_minus8
            )));
        }
        if sps.chroma_info.chroma_format != h264_reader::nal::sps::ChromaFormat::YUV420 {
            return Err(Error::Unsupported(format!(
                "chroma format {:?}",
                sps.chroma_info.chroma_format
            )));
        }
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|e| Error::Sps(format!("{e:?}")))?;
        if width == 0 || height == 0 {
            return Err(Error::Sps("cropping leaves no picture".into()));
        }
        let signal = sps
            .vui_parameters
            .as_ref()
            .and_then(|v| v.video_signal_type.as_ref());
        let full_range = signal.is_some_and(|s| s.video_full_range_flag);
        let matrix = match signal
            .and_then(|s| s.colour_description.as_ref())
            .map(|c| c.matrix_coefficients)
        {
            Some(1) => Some(Matrix::Bt709),
            Some(5) | Some(6) => Some(Matrix::Bt601),
            Some(9) | Some(10) => Some(Matrix::Bt2020),
            _ => None, // 2 = unspecified, and anything we do not map
        };
        let colour = Colour {
            matrix: matrix.unwrap_or(Matrix::Bt601),
            full_range,
        };
        let fps = sps
            .fps()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < 1000.0);
        Ok(SpsInfo {
            codec: Codec::H264,
            profile_idc: sps.profile_idc.into(),
            level_idc: sps.level_idc,
            width,
            height,
            fps,
            colour,
        })
    }

    /// Profile name for the API.
    pub fn profile_name(&self) -> &'static str {
        if self.codec == Codec::H265 {
            return match self.profile_idc {
                1 => "Main",
                2 => "Main 10",
                3 => "Main Still Picture",
                4 => "Range Extensions",
                _ => "Other",
            };
        }
        match self.profile_idc {
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4",
            _ => "Other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS of a 64x64 baseline stream from x264 (no colour description).
    const SPS_64: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x04, 0x26, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
        0x00, 0x03, 0x00, 0xc8, 0x3c, 0x48, 0x99, 0x20,
    ];

    #[test]
    fn reads_size_profile_and_default_colour() {
        let info = SpsInfo::parse(SPS_64).unwrap();
        assert_eq!((info.width, info.height), (64, 64));
        assert_eq!(info.profile_name(), "Baseline");
        assert_eq!(info.colour, Colour::untagged());
        assert_eq!(info.fps, Some(25.0));
    }

    #[test]
    fn refuses_empty_and_tiny_input() {
        // fuzz/regressions/sps/empty_nal: h264-reader panicked on this.
        for n in 0..4 {
            assert!(SpsInfo::parse(&SPS_64[..n]).is_err());
        }
    }

    #[test]
    fn refuses_absurd_sizes_before_allocating() {
        // Baseline SPS 600 x 50 macroblocks (9600 x 800 pixels): within h264-reader's own
        // frame-size limit (level 6.2 MaxFS) but wider than MAX_SIDE. Written by hand:
        // written by hand with exp-Golomb codes.
        let mut bits = String::new();
        bits.push_str("1"); // seq_parameter_set_id ue(0)
        bits.push_str("1"); // log2_max_frame_num_minus4 ue(0)
        bits.push_str("1"); // pic_order_cnt_type ue(0)
        bits.push_str("1"); // log2_max_pic_order_cnt_lsb_minus4 ue(0)
        bits.push_str("010"); // max_num_ref_frames ue(1)
        bits.push('0'); // gaps
        let ue = |v: u32| {
            let b = format!("{:b}", v + 1); // exp-Golomb: v+1 in binary after len-1 zeros
            format!("{}{}", "0".repeat(b.len() - 1), b)
        };
        bits.push_str(&ue(599));
        bits.push_str(&ue(49));
        bits.push('1'); // frame_mbs_only
        bits.push('1'); // direct_8x8
        bits.push('0'); // cropping
        bits.push('0'); // vui
        bits.push('1'); // rbsp stop bit
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let mut nal = vec![0x67, 66, 0, 62]; // level 6.2, so h264-reader allows the frame size
        for chunk in bits.as_bytes().chunks(8) {
            nal.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        match SpsInfo::parse(&nal) {
            Err(Error::PictureTooLarge { .. }) => {}
            other => panic!("expected PictureTooLarge, got {other:?}"),
        }
    }
}
