//! The H.264 RTP depacketizer (RFC 6184) fed arbitrary packet sequences; input format and
//! checks in `common/rtp.rs`. Seeds: what ffmpeg sent in `crates/ingest/tests/rtp_ffmpeg.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::Codec;

#[path = "common/rtp.rs"]
mod rtp;

fuzz_target!(|data: &[u8]| rtp::run(Codec::H264, data));
