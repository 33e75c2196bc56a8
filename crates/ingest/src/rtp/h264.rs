//! H.264 RTP payloads (RFC 6184), non-interleaved mode: single NAL unit packets, STAP-A and
//! FU-A. STAP-B, MTAP and FU-B exist only in interleaved mode, which is refused at setup.

use bytes::Bytes;
use media::avc::{nal_type, AvcConfig};
use media::VideoConfig;

use super::{Assembler, NalKind, PPS, SPS};
use crate::{Error, Result};

const STAP_A: u8 = 24;
const STAP_B: u8 = 25;
const MTAP16: u8 = 26;
const MTAP24: u8 = 27;
const FU_A: u8 = 28;
const FU_B: u8 = 29;
/// Filler data: padding a decoder skips, not worth keeping in a GOP.
const FILLER: u8 = 12;

fn bad(what: &'static str) -> Error {
    Error::RtpPayload {
        codec: "H.264",
        what,
    }
}

/// Hands the NAL units (or the piece of one) of one packet's payload to `au`.
pub(super) fn depacketize(payload: &[u8], au: &mut Assembler) -> Result<()> {
    let Some(&header) = payload.first() else {
        return Err(bad("empty payload"));
    };
    if header & 0x80 != 0 {
        return Err(bad("forbidden_zero_bit is set"));
    }
    match header & 0x1f {
        1..=23 => au.nal(payload),
        STAP_A => {
            let mut rest = &payload[1..];
            if rest.is_empty() {
                return Err(bad("STAP-A with no NAL unit"));
            }
            while let [hi, lo, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                if len == 0 || len > tail.len() {
                    return Err(bad("STAP-A NAL unit runs past the end"));
                }
                au.nal(&tail[..len])?;
                rest = &tail[len..];
            }
            if rest.is_empty() {
                Ok(())
            } else {
                Err(bad("STAP-A ends inside a NAL unit size"))
            }
        }
        FU_A => {
            let [_, fu, body @ ..] = payload else {
                return Err(bad("FU-A shorter than 2 bytes"));
            };
            if fu & 0x80 != 0 {
                // The NAL header is the indicator's F and NRI with the FU header's type.
                au.fu_start(&[(header & 0xe0) | (fu & 0x1f)])?;
            }
            au.fu_data(body)?;
            if fu & 0x40 != 0 {
                au.fu_end()?;
            }
            Ok(())
        }
        t @ (STAP_B | MTAP16 | MTAP24 | FU_B) => Err(Error::RtpUnsupported(format!(
            "H.264 packet type {t} (interleaved packetization-mode 2)"
        ))),
        _ => Err(bad("reserved NAL unit type (0, 30 or 31)")),
    }
}

/// What to do with a whole NAL unit.
pub(super) fn classify(nal: &[u8]) -> Option<NalKind> {
    let t = media::avc::nal_unit_type(nal)?;
    Some(match t {
        nal_type::SPS => NalKind::ParameterSet(SPS),
        nal_type::PPS => NalKind::ParameterSet(PPS),
        // Access unit boundaries come from RTP; the config carries parameter sets.
        nal_type::AUD | FILLER => NalKind::Skip,
        nal_type::SLICE..=nal_type::IDR => NalKind::Picture,
        _ => NalKind::Other,
    })
}

/// The decoder configuration once both an SPS and a PPS are known.
pub(super) fn config(sets: &[Option<Bytes>; 3]) -> Option<media::Result<VideoConfig>> {
    let (Some(sps), Some(pps)) = (&sets[SPS], &sets[PPS]) else {
        return None;
    };
    Some(AvcConfig::from_parameter_sets(vec![sps.clone()], vec![pps.clone()]).map(Into::into))
}
