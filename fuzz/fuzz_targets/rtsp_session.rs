//! The sans-IO RTSP publish session fed arbitrary bytes in arbitrary splits (requests, SDP
//! bodies, interleaved `$` frames mixed), with a host that accepts every ANNOUNCE and gives UDP
//! ports to every other track. Checks that
//! it never panics, that every response it writes is one RTSP/1.0 status line with headers,
//! and that RTP events name a track of the SDP it accepted.
//!
//! Input: one split byte (0: everything in one call; else the seed of the piece sizes), then
//! the bytes a publisher sends.
#![no_main]

use ingest::rtsp::sdp::Sdp;
use ingest::rtsp::session::{Event, Host, Refusal, Session};
use libfuzzer_sys::fuzz_target;

#[path = "common/split.rs"]
mod split;

struct AcceptAll;

impl Host for AcceptAll {
    fn announce(&mut self, url: &str, _: &Sdp) -> Result<(), Refusal> {
        // Both refusals are exercised: 403 for an empty URL, 401 for an unsigned one.
        if url.is_empty() {
            return Err(Refusal::Forbidden("empty URL".into()));
        }
        if url.ends_with('!') {
            return Err(Refusal::Unauthorized("not signed".into()));
        }
        Ok(())
    }

    fn setup_udp(&mut self, track: usize, client: (u16, u16)) -> Result<(u16, u16), String> {
        // Every other track has no ports left: both answers are exercised.
        if track % 2 == 1 {
            return Err("no free UDP ports".into());
        }
        Ok((client.0 ^ 1, client.1 ^ 1))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let mut session = Session::new("fuzz".into());
    let mut host = AcceptAll;
    let mut pieces = split::Splitter(u32::from(mode) | 1);
    let mut rest = stream;
    while !rest.is_empty() {
        let n = if mode == 0 {
            rest.len()
        } else {
            pieces.next().min(rest.len())
        };
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let Ok(events) = session.feed(piece, &mut host) else {
            return;
        };
        for e in events {
            match e {
                Event::Send(bytes) => {
                    let text = String::from_utf8(bytes).expect("responses are text");
                    assert!(text.starts_with("RTSP/1.0 "), "{text:?}");
                    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
                    assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text:?}");
                }
                Event::Rtp { track, .. } => {
                    assert!(track < session.sdp().media.len(), "track {track}")
                }
                Event::Recording | Event::Rtcp | Event::Teardown => {}
            }
        }
    }
});
