//! H.265 RTP payloads (RFC 7798) without DONL (sprop-max-don-diff 0, what cameras and ffmpeg
//! send): single NAL unit packets, aggregation packets (AP) and fragmentation units (FU). PACI
//! packets are refused.

use bytes::Bytes;
use media::hevc::{nal_type, HevcConfig};
use media::VideoConfig;

use super::{Assembler, NalKind, PPS, SPS, VPS};
use crate::{Error, Result};

const AP: u8 = 48;
const FU: u8 = 49;
const PACI: u8 = 50;
/// Filler data: padding a decoder skips, not worth keeping in a GOP.
const FILLER: u8 = 38;

fn bad(what: &'static str) -> Error {
    Error::RtpPayload {
        codec: "H.265",
        what,
    }
}

/// Hands the NAL units (or the piece of one) of one packet's payload to `au`.
pub(super) fn depacketize(payload: &[u8], au: &mut Assembler) -> Result<()> {
    let &[h0, h1, ..] = payload else {
        return Err(bad("shorter than the 2-byte payload header"));
    };
    if h0 & 0x80 != 0 {
        return Err(bad("forbidden_zero_bit is set"));
    }
    match (h0 >> 1) & 0x3f {
        0..=47 => au.nal(payload),
        AP => {
            let mut rest = &payload[2..];
            if rest.is_empty() {
                return Err(bad("AP with no NAL unit"));
            }
            while let [hi, lo, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                if len == 0 || len > tail.len() {
                    return Err(bad("AP NAL unit runs past the end"));
                }
                au.nal(&tail[..len])?;
                rest = &tail[len..];
            }
            if rest.is_empty() {
                Ok(())
            } else {
                Err(bad("AP ends inside a NAL unit size"))
            }
        }
        FU => {
            let [_, _, fu, body @ ..] = payload else {
                return Err(bad("FU shorter than 3 bytes"));
            };
            if fu & 0x80 != 0 {
                // The NAL header is the payload header with the FU header's type.
                au.fu_start(&[(h0 & 0x81) | ((fu & 0x3f) << 1), h1])?;
            }
            au.fu_data(body)?;
            if fu & 0x40 != 0 {
                au.fu_end()?;
            }
            Ok(())
        }
        PACI => Err(Error::RtpUnsupported("H.265 PACI packets".into())),
        _ => Err(bad("reserved NAL unit type (51-63)")),
    }
}

/// What to do with a whole NAL unit.
pub(super) fn classify(nal: &[u8]) -> Option<NalKind> {
    let t = media::hevc::nal_unit_type(nal)?;
    Some(match t {
        nal_type::VPS => NalKind::ParameterSet(VPS),
        nal_type::SPS => NalKind::ParameterSet(SPS),
        nal_type::PPS => NalKind::ParameterSet(PPS),
        // Access unit boundaries come from RTP; the config carries parameter sets.
        nal_type::AUD | FILLER => NalKind::Skip,
        0..=31 => NalKind::Picture,
        _ => NalKind::Other,
    })
}

/// The decoder configuration once a VPS, an SPS and a PPS are known.
pub(super) fn config(sets: &[Option<Bytes>; 3]) -> Option<media::Result<VideoConfig>> {
    let (Some(vps), Some(sps), Some(pps)) = (&sets[VPS], &sets[SPS], &sets[PPS]) else {
        return None;
    };
    Some(
        HevcConfig::from_parameter_sets(vec![vps.clone()], vec![sps.clone()], vec![pps.clone()])
            .map(Into::into),
    )
}
