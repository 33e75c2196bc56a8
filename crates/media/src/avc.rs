//! H.264 framing: the AVCDecoderConfigurationRecord ("avcC") that FLV and MP4 carry, length-prefixed
//! NAL units (AVCC), Annex B start-code streams, and the conversion between them.

use bytes::Bytes;

use crate::{Error, Result};

/// NAL unit types this crate looks at (ITU-T H.264 table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// At most this many SPS or PPS in one record; the syntax allows 31 and 255, real encoders send one.
pub const MAX_PARAMETER_SETS: usize = 32;

/// The Annex B start code put before every NAL unit handed to a decoder.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The type of a NAL unit from its first byte.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// A stream's decoder configuration: parameter sets and the size of NAL length prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Profile indication from the record.
    pub profile: u8,
    /// Level indication from the record.
    pub level: u8,
    /// Bytes in each NAL length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    /// Sequence parameter sets, each a whole NAL unit (header byte included).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, each a whole NAL unit.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
    pub fn parse(record: &Bytes) -> Result<AvcConfig> {
        let b = &record[..];
        if b.len() < 7 {
            return Err(Error::AvcConfig("shorter than 7 bytes"));
        }
        if b[0] != 1 {
            return Err(Error::AvcConfig("configurationVersion is not 1"));
        }
        let nal_length_size = usize::from(b[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(Error::AvcConfig(
                "NAL length size of 3 bytes is not allowed",
            ));
        }
        let mut pos = 5;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Bytes>> {
            let mut sets = Vec::with_capacity(count.min(MAX_PARAMETER_SETS));
            for _ in 0..count {
                let len_bytes = b
                    .get(*pos..*pos + 2)
                    .ok_or(Error::AvcConfig("parameter set length runs past the end"))?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                *pos += 2;
                if len == 0 || *pos + len > b.len() {
                    return Err(Error::AvcConfig("parameter set runs past the end"));
                }
                if sets.len() < MAX_PARAMETER_SETS {
                    sets.push(record.slice(*pos..*pos + len));
                }
                *pos += len;
            }
            Ok(sets)
        };
        let sps_count = usize::from(b[5] & 0x1f);
        pos += 1;
        let sps = read_sets(sps_count, &mut pos)?;
        let pps_count = usize::from(*b.get(pos).ok_or(Error::AvcConfig("no PPS count"))?);
        pos += 1;
        let pps = read_sets(pps_count, &mut pos)?;
        if sps.is_empty() {
            return Err(Error::AvcConfig("no SPS"));
        }
        if pps.is_empty() {
            return Err(Error::AvcConfig("no PPS"));
        }
        if sps.iter().any(|s| nal_unit_type(s) != Some(nal_type::SPS)) {
            return Err(Error::AvcConfig("an SPS entry is not an SPS NAL unit"));
        }
        if pps.iter().any(|s| nal_unit_type(s) != Some(nal_type::PPS)) {
            return Err(Error::AvcConfig("a PPS entry is not a PPS NAL unit"));
        }
        Ok(AvcConfig {
            profile: b[1],
            level: b[3],
            nal_length_size,
            sps,
            pps,
        })
    }

    /// Builds a record from parameter sets found in an Annex B stream (for `grab` of raw files).
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<AvcConfig> {
        let first = sps
            .first()
            .ok_or(Error::AvcConfig("no SPS in the stream"))?;
        if pps.is_empty() {
            return Err(Error::AvcConfig("no PPS in the stream"));
        }
        if first.len() < 4 {
            return Err(Error::AvcConfig("SPS shorter than 4 bytes"));
        }
        Ok(AvcConfig {
            profile: first[1],
            level: first[3],
            nal_length_size: 4,
            sps,
            pps,
        })
    }

    /// The AVCDecoderConfigurationRecord of these parameter sets (what RTMP and MP4 carry;
    /// [`AvcConfig::parse`] reads it back). Without the high-profile extension, which decoders
    /// read from the SPS anyway.
    pub fn to_record(&self) -> Vec<u8> {
        // The record's counts: 5 bits of SPS, 8 of PPS.
        const MAX_SPS: usize = 31;
        const MAX_PPS: usize = 255;
        let compat = self
            .sps
            .first()
            .and_then(|s| s.get(2))
            .copied()
            .unwrap_or(0);
        let mut out = vec![
            1,
            self.profile,
            compat,
            self.level,
            0xfc | (self.nal_length_size.clamp(1, 4) as u8 - 1),
            0xe0 | self.sps.len().min(MAX_SPS) as u8,
        ];
        let put = |out: &mut Vec<u8>, set: &Bytes| {
            out.extend_from_slice(&(set.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
            out.extend_from_slice(&set[..set.len().min(usize::from(u16::MAX))]);
        };
        for set in self.sps.iter().take(MAX_SPS) {
            put(&mut out, set);
        }
        out.push(self.pps.len().min(MAX_PPS) as u8);
        for set in self.pps.iter().take(MAX_PPS) {
            put(&mut out, set);
        }
        out
    }

    /// The parameter sets in Annex B form, to put before a keyframe.
    pub fn annexb_parameter_sets(&self, out: &mut Vec<u8>) {
        for set in self.sps.iter().chain(self.pps.iter()) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
    }
}

/// Iterates over the NAL units of a length-prefixed access unit.
pub struct AvccNals<'a> {
    data: &'a [u8],
    length_size: usize,
}

impl<'a> AvccNals<'a> {
    /// Reads `data` with `length_size`-byte prefixes.
    pub fn new(data: &'a [u8], length_size: usize) -> Self {
        AvccNals { data, length_size }
    }
}

impl<'a> Iterator for AvccNals<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        if self.data.len() < self.length_size {
            let remaining = self.data.len();
            self.data = &[];
            return Some(Err(Error::TruncatedNal {
                len: self.length_size,
                remaining,
            }));
        }
        let (prefix, rest) = self.data.split_at(self.length_size);
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > rest.len() {
            self.data = &[];
            return Some(Err(Error::TruncatedNal {
                len,
                remaining: rest.len(),
            }));
        }
        let (nal, rest) = rest.split_at(len);
        self.data = rest;
        Some(Ok(nal))
    }
}

/// True when a length-prefixed access unit holds an IDR slice. Reads only NAL headers.
pub fn contains_idr(data: &[u8], length_size: usize) -> bool {
    AvccNals::new(data, length_size)
        .map_while(|n| n.ok())
        .any(|nal| nal_unit_type(nal) == Some(nal_type::IDR))
}

/// Appends an access unit in Annex B form (start codes instead of length prefixes). Parameter
/// sets and AUDs inside the access unit are kept: a decoder handles them.
pub fn append_annexb(data: &[u8], length_size: usize, out: &mut Vec<u8>) -> Result<()> {
    for nal in AvccNals::new(data, length_size) {
        let nal = nal?;
        if nal.is_empty() {
            continue;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    Ok(())
}

/// Splits an Annex B byte stream into NAL units (without start codes).
pub fn split_annexb(stream: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            if let Some(s) = start {
                let mut end = i;
                // A four-byte start code (or trailing zeros) belongs to no NAL unit.
                while end > s && stream[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    nals.push(&stream[s..end]);
                }
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        if s < stream.len() {
            nals.push(&stream[s..]);
        }
    }
    nals
}

/// Groups an Annex B stream into a configuration and length-prefixed access units in decode
/// order, for pictures of raw `.h264` files. An access unit starts at an AUD, SPS, PPS or SEI
/// after a slice, or at a slice whose first_mb_in_slice is 0.
pub fn annexb_to_frames(stream: &[u8]) -> Result<(AvcConfig, Vec<crate::Frame>)> {
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    let mut frames = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut current_has_slice = false;
    let mut current_idr = false;
    let push = |current: &mut Vec<u8>, idr: bool, frames: &mut Vec<crate::Frame>| {
        let n = frames.len() as i64;
        frames.push(crate::Frame {
            dts_ms: n * 40,
            pts_ms: n * 40,
            keyframe: idr,
            data: Bytes::from(std::mem::take(current)),
        });
    };
    for nal in split_annexb(stream) {
        let Some(t) = nal_unit_type(nal) else {
            continue;
        };
        let is_slice = t == nal_type::SLICE || t == nal_type::IDR;
        let first_mb_zero = is_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts_au = matches!(
            t,
            nal_type::AUD | nal_type::SPS | nal_type::PPS | nal_type::SEI
        ) || first_mb_zero;
        if starts_au && current_has_slice {
            push(&mut current, current_idr, &mut frames);
            current_has_slice = false;
            current_idr = false;
        }
        match t {
            nal_type::SPS if sps.len() < MAX_PARAMETER_SETS => {
                sps.push(Bytes::copy_from_slice(nal))
            }
            nal_type::PPS if pps.len() < MAX_PARAMETER_SETS => {
                pps.push(Bytes::copy_from_slice(nal))
            }
            _ => {}
        }
        if is_slice {
            current_has_slice = true;
            current_idr |= t == nal_type::IDR;
        }
        if is_slice || t == nal_type::SEI {
            current.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            current.extend_from_slice(nal);
        }
    }
    if current_has_slice {
        push(&mut current, current_idr, &mut frames);
    }
    Ok((AvcConfig::from_parameter_sets(sps, pps)?, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sps: &[u8], pps: &[u8]) -> Bytes {
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(pps);
        Bytes::from(r)
    }

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

    #[test]
    fn parses_record() {
        let c = AvcConfig::parse(&record(SPS, PPS)).unwrap();
        assert_eq!(c.profile, 0x64);
        assert_eq!(c.level, 0x1f);
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(&c.sps[0][..], SPS);
        assert_eq!(&c.pps[0][..], PPS);
    }

    #[test]
    fn a_record_written_reads_back_the_same() {
        let c = AvcConfig::parse(&record(SPS, PPS)).unwrap();
        let written = c.to_record();
        assert_eq!(AvcConfig::parse(&Bytes::from(written.clone())).unwrap(), c);
        // Byte for byte what an encoder writes, but for the reserved bits it sets to 1.
        assert_eq!(written, &record(SPS, PPS)[..]);
    }

    #[test]
    fn rejects_every_truncation() {
        let full = record(SPS, PPS);
        for n in 0..full.len() {
            assert!(
                AvcConfig::parse(&full.slice(..n)).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
    }

    #[test]
    fn avcc_to_annexb_and_idr() {
        let au = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
        assert!(contains_idr(&au, 4));
        let mut out = Vec::new();
        append_annexb(&au, 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x06]);
        assert!(!contains_idr(&[0, 0, 0, 1, 0x41], 4));
        assert!(matches!(
            append_annexb(&[0, 0, 0, 9, 0x65], 4, &mut Vec::new()),
            Err(Error::TruncatedNal {
                len: 9,
                remaining: 1
            })
        ));
    }

    #[test]
    fn splits_annexb_and_groups_access_units() {
        let mut s = Vec::new();
        for nal in [
            SPS,
            PPS,
            &[0x65, 0x88, 1][..],
            &[0x41, 0x9a, 2][..],
            &[0x41, 0x9a, 3][..],
        ] {
            s.extend_from_slice(&[0, 0, 0, 1]);
            s.extend_from_slice(nal);
        }
        assert_eq!(split_annexb(&s).len(), 5);
        let (config, frames) = annexb_to_frames(&s).unwrap();
        assert_eq!(config.sps.len(), 1);
        assert_eq!(frames.len(), 3);
        assert!(frames[0].keyframe && !frames[1].keyframe);
    }
}
