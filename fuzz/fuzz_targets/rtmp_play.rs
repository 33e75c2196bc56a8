//! The sans-IO RTMP play session (`rtmp::client::PlaySession`, what `livesnap grab rtmp://` and
//! pull jobs speak) fed an arbitrary server stream in arbitrary splits, and `RtmpUrl::parse` on
//! an arbitrary URL.
//!
//! Input: one mode byte, then the bytes the server sends.
//! - mode bit 7 clear: the server's S0, S1 and S2 are put in front (a plain handshake: S0 =
//!   0x03, S1 and S2 of 1536 bytes), so the fuzzer works on the chunk stream; set: the input
//!   is the whole server stream, handshake included.
//! - mode bits 0-6: 0 feeds everything in one call; otherwise they seed the sizes of the pieces
//!   the stream is cut into (1 byte up to 64 KiB, as socket reads would cut it).
//! - The first line of the input (up to a newline, at most 256 bytes) is also parsed as a URL.
#![no_main]

use ingest::rtmp::client::{PlayEvent, PlaySession, RtmpUrl, MAX_VIDEO_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;

/// The handshake size of S1 and S2.
const PACKET: usize = 1536;

fn server_handshake() -> Vec<u8> {
    let mut h = Vec::with_capacity(1 + 2 * PACKET);
    h.push(3);
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    h.extend((0..PACKET - 8).map(|i| (i * 11 + 5) as u8));
    // S2 echoes C1; the client does not check it.
    h.extend(std::iter::repeat_n(0u8, PACKET));
    h
}

#[path = "common/split.rs"]
mod split;
use split::Splitter;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Some(line) = rest.split(|&b| b == b'\n').next() {
        if line.len() <= 256 {
            if let Ok(text) = std::str::from_utf8(line) {
                if let Ok(url) = RtmpUrl::parse(text) {
                    assert!(!url.target().is_empty());
                }
            }
        }
    }
    let url = RtmpUrl::parse("rtmp://127.0.0.1/live/cam").expect("a valid URL");
    let Ok(mut session) = PlaySession::new(&url, MAX_VIDEO_MESSAGE_BYTES) else {
        return;
    };
    let mut stream = Vec::new();
    if mode & 0x80 == 0 {
        stream.extend(server_handshake());
    }
    stream.extend_from_slice(rest);
    let mut splitter = Splitter(u32::from(mode & 0x7f).wrapping_mul(0x9E37_79B9) | 1);
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let n = if mode & 0x7f == 0 {
            stream.len() - pos
        } else {
            splitter.next().min(stream.len() - pos)
        };
        if session.feed(&stream[pos..pos + n], &mut events).is_err() {
            return;
        }
        pos += n;
        session.output().clear();
        for event in events.drain(..) {
            match event {
                PlayEvent::Video { body, .. } => assert!(body.len() <= MAX_VIDEO_MESSAGE_BYTES),
                PlayEvent::Refused { .. } | PlayEvent::Ended { .. } => return,
                PlayEvent::Playing => assert!(session.playing()),
            }
        }
    }
});
