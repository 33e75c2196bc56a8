//! The RTSP server's SDP reader on arbitrary bytes: never panics, and what it returns keeps
//! its limits and the payload types it reads.
#![no_main]

use ingest::rtsp::sdp::{parse, MAX_MEDIA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = parse(data) else {
        return;
    };
    assert!(sdp.media.len() <= MAX_MEDIA);
    for m in &sdp.media {
        assert!(m.payload_type < 128);
        for (k, _) in &m.fmtp {
            assert!(!k.contains(';') && !k.contains('='), "{k:?}");
        }
    }
});
