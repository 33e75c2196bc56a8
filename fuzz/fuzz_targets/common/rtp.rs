//! Drives an RTP depacketizer the way the RTSP server does (each packet read with
//! `Packet::parse`, then pushed; flushed when the reorder wait expires and at the end) and checks
//! what comes out.
//!
//! Input: one mode byte, then records, each a big-endian u16 length and that many bytes (a
//! length past the end takes what is left): the packets.
//! - mode bit 0: the first record is the SDP's `a=fmtp` value (`sprop-*` parameter sets) the
//!   depacketizer is made with; clear: an empty one (in-band parameter sets only);
//! - mode bit 1: a 4 KiB access unit limit, so that the limits are reached;
//! - mode bit 2: a flush after every packet (an I/O loop whose reorder wait always expires).

use bytes::Bytes;
use ingest::rtp::{
    Depacketizer, Event, Packet, DEFAULT_MAX_ACCESS_UNIT_BYTES, MAX_NALS_PER_ACCESS_UNIT,
};
use media::avc::AvccNals;
use media::{Codec, VideoConfig};

const SMALL_LIMIT: usize = 4096;

pub fn run(codec: Codec, data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut fmtp = String::new();
    if mode & 1 != 0 {
        fmtp = String::from_utf8_lossy(record(&mut rest)).into_owned();
    }
    let Ok(mut d) = Depacketizer::new(codec, &fmtp) else {
        return; // a packetization not supported: the RTSP server refuses the SETUP
    };
    let limit = if mode & 2 != 0 {
        SMALL_LIMIT
    } else {
        DEFAULT_MAX_ACCESS_UNIT_BYTES
    };
    d.set_max_access_unit_bytes(limit);
    let mut events = Vec::new();
    let mut parsed = 0;
    while !rest.is_empty() {
        let packet = record(&mut rest);
        if let Ok(p) = Packet::parse(Bytes::copy_from_slice(packet)) {
            parsed += 1;
            let _ = d.push(p, &mut events);
        }
        if mode & 4 != 0 {
            let _ = d.flush(&mut events);
            assert!(!d.waiting(), "packets held after a flush");
        }
    }
    let _ = d.flush(&mut events);
    assert!(!d.waiting(), "packets held after a flush");
    let counters = d.counters();
    assert_eq!(counters.packets, parsed);
    let frames = check(codec, limit, &events);
    assert_eq!(counters.frames, frames);
}

/// The next record of the input.
fn record<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let [hi, lo, tail @ ..] = *rest else {
        *rest = &[];
        return &[];
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
    let (record, next) = tail.split_at(len);
    *rest = next;
    record
}

/// Checks the events; returns the number of frames.
fn check(codec: Codec, limit: usize, events: &[Event]) -> u64 {
    let mut config: Option<&VideoConfig> = None;
    let mut last_dts = i64::MIN;
    let mut frames = 0;
    for event in events {
        match event {
            Event::Config(c) => {
                assert_eq!(c.codec(), codec);
                assert_eq!(c.nal_length_size(), Some(4));
                assert_ne!(config, Some(c), "a Config that changes nothing");
                config = Some(c);
            }
            Event::Frame(f) => {
                let c = config.expect("a frame before any config");
                assert!(f.data.len() <= limit, "frame of {} bytes", f.data.len());
                let mut nals = 0;
                for nal in AvccNals::new(&f.data, 4) {
                    let nal = nal.expect("length prefixes that add up");
                    assert!(
                        nal.last().is_some_and(|&b| b != 0),
                        "empty or zero-ended NAL unit"
                    );
                    assert!(!is_parameter_set(codec, nal), "a parameter set in a frame");
                    nals += 1;
                }
                assert!(
                    (1..=MAX_NALS_PER_ACCESS_UNIT).contains(&nals),
                    "{nals} NAL units"
                );
                assert_eq!(f.keyframe, c.is_keyframe(&f.data));
                assert!(
                    frames > 0 || f.keyframe,
                    "the first frame is not a keyframe"
                );
                assert!(f.dts_ms >= last_dts, "dts decreased");
                assert!(f.pts_ms <= f.dts_ms, "pts after dts");
                last_dts = f.dts_ms;
                frames += 1;
            }
        }
    }
    frames
}

fn is_parameter_set(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H265 => media::hevc::nal_unit_type(nal).is_some_and(|t| (32..=34).contains(&t)),
        _ => media::avc::nal_unit_type(nal).is_some_and(|t| t == 7 || t == 8),
    }
}
