//! The H.265 RTP depacketizer (RFC 7798) fed arbitrary packet sequences; input format and
//! checks in `common/rtp.rs`. Seeds: what ffmpeg sent in `crates/ingest/tests/rtp_ffmpeg.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::Codec;

#[path = "common/rtp.rs"]
mod rtp;

fuzz_target!(|data: &[u8]| rtp::run(Codec::H265, data));
