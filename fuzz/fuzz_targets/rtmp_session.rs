//! The sans-IO RTMP publish session fed arbitrary bytes in arbitrary splits, with events handled
//! the way `rtmp::server` handles them (stream key resolution, accept/reject, video tag parsing,
//! sequence header -> AVC/HEVC config -> SPS, frames -> Annex B).
//!
//! Input: one mode byte, then the bytes the client sends after its handshake.
//! - mode bit 7 clear: a valid handshake (C0 = 0x03, C1 and C2 of 1536 bytes) is put in front,
//!   so the fuzzer works on the chunk stream; set: the input is the whole client stream,
//!   handshake included (fuzzes the handshake).
//! - mode bits 0-6: 0 feeds everything in one call; otherwise they seed the sizes of the pieces
//!   the stream is cut into (1 byte up to 64 KiB, as socket reads would cut it).
#![no_main]

use bytes::Bytes;
use ingest::flv::{parse_video_tag, VideoTag};
use ingest::name::resolve;
use ingest::rtmp::session::{Event, Session};
use libfuzzer_sys::fuzz_target;
use media::avc::{append_annexb, AvcConfig};
use media::hevc::HevcConfig;
use media::{Codec, VideoConfig};

#[path = "common/known.rs"]
mod known;

/// The crashes this target found were in rml_rtmp 0.8.0's chunk deserializer (interleaved chunk
/// streams, a header shrinking a half-read message, an extended timestamp below the escape);
/// livesnap now reads chunks with its own `rtmp::chunk::ChunkReader`. Reproducers stay in
/// fuzz/regressions/rtmp_session/ and are replayed by crates/ingest/tests/fuzz_regressions.rs.
const KNOWN: &[known::Site] = &[];

/// The handshake size of C1 and C2.
const PACKET: usize = 1536;
/// What the server accepts as one video message.
const MAX_ACCESS_UNIT_BYTES: usize = 8 * 1024 * 1024;

fn handshake() -> Vec<u8> {
    let mut h = Vec::with_capacity(1 + 2 * PACKET);
    h.push(3);
    // C1: time, zero, "random" bytes (no Flash digest: the plain handshake of the spec).
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    h.extend((0..PACKET - 8).map(|i| (i * 7 + 3) as u8));
    // C2: the server does not check it.
    h.extend(std::iter::repeat_n(0u8, PACKET));
    h
}

#[path = "common/split.rs"]
mod split;
use split::Splitter;

struct Publish {
    config: Option<VideoConfig>,
}

/// Returns false when the server would close the connection.
fn on_event(session: &mut Session, publish: &mut Option<Publish>, event: Event) -> bool {
    match event {
        Event::PublishRequested { app, name, tc_url } => {
            match resolve(
                &app,
                &name,
                tc_url.as_deref(),
                &["cams.example.com".to_string()],
            ) {
                Ok(_key) => {
                    session
                        .accept_publish()
                        .expect("accept right after PublishRequested");
                    assert!(session.publishing());
                    *publish = Some(Publish { config: None });
                }
                Err(why) => {
                    let _ = session.reject_publish("NetStream.Publish.BadName", &why.to_string());
                    return false;
                }
            }
        }
        Event::Video { body, .. } => {
            if body.len() > MAX_ACCESS_UNIT_BYTES {
                return false;
            }
            if let Some(p) = publish.as_mut() {
                on_video(p, &body);
            }
        }
        Event::Unpublished => *publish = None,
        Event::PlayRequested { app, name, tc_url } => {
            // Played: every byte after it must still be handled, and video written to it.
            if resolve(&app, &name, tc_url.as_deref(), &[]).is_err() {
                let _ = session.reject_play("NetStream.Play.StreamNotFound", "bad name");
                return false;
            }
            session
                .accept_play()
                .expect("accept right after PlayRequested");
            assert!(session.playing());
            session
                .send_video(0, Bytes::from_static(&[0x17, 1, 0, 0, 0]))
                .expect("video to a player");
        }
        Event::PlayStopped => return false,
    }
    true
}

fn on_video(p: &mut Publish, body: &Bytes) {
    match parse_video_tag(body) {
        Ok(VideoTag::Config { codec, record }) => {
            let config: Option<VideoConfig> = match codec {
                Codec::H265 => HevcConfig::parse(&record).ok().map(Into::into),
                _ => AvcConfig::parse(&record).ok().map(Into::into),
            };
            if let Some(config) = config {
                let _ = config.info();
                p.config = Some(config);
            }
        }
        Ok(VideoTag::Frame { data, .. }) => {
            if let Some(c) = &p.config {
                let _ = c.is_keyframe(&data);
                if let Some(n) = c.nal_length_size() {
                    let _ = append_annexb(&data, n, &mut Vec::new());
                }
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut stream = Vec::new();
    if mode & 0x80 == 0 {
        stream.extend(handshake());
    }
    stream.extend_from_slice(rest);
    let mut splitter = Splitter(u32::from(mode & 0x7f).wrapping_mul(0x9E37_79B9) | 1);
    let mut session = Session::new();
    let mut publish = None;
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let n = if mode & 0x7f == 0 {
            stream.len() - pos
        } else {
            splitter.next().min(stream.len() - pos)
        };
        let piece = &stream[pos..pos + n];
        pos += n;
        let Some(Ok(())) = known::tolerate(KNOWN, || session.feed(piece, &mut events)) else {
            return;
        };
        // Like the server: every event of the read is handled, then the connection may close.
        let mut open = true;
        for event in events.drain(..) {
            open &= on_event(&mut session, &mut publish, event);
        }
        session.output().clear();
        if !open {
            return;
        }
    }
    if mode & 0x80 == 0 {
        assert!(
            session.handshake_done(),
            "a valid handshake did not complete"
        );
    }
});
