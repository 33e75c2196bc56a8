//! Inputs that once crashed the `rtmp_session` fuzz target (fuzz/regressions/rtmp_session):
//! interleaved chunk streams, a header that shrinks a half-read message, an extended timestamp
//! below the escape value. Each must now be handled without a panic, whole or byte by byte.

use livesnap_ingest::rtmp::session::{Event, Session};

fn handshake() -> Vec<u8> {
    let mut h = vec![3];
    h.extend_from_slice(&[0; 8]);
    h.extend((0..1536 - 8).map(|i| (i * 7 + 3) as u8));
    h.extend(std::iter::repeat_n(0u8, 1536));
    h
}

fn replay(data: &[u8], piece: usize) {
    let mut s = Session::new();
    let mut events = Vec::new();
    let mut input = handshake();
    input.extend_from_slice(data);
    for chunk in input.chunks(piece) {
        if s.feed(chunk, &mut events).is_err() {
            return; // an error drops the connection: fine, as long as nothing panicked
        }
        for e in events.drain(..) {
            if let Event::PublishRequested { .. } = e {
                s.accept_publish().expect("accept right after the request");
            }
        }
    }
}

#[test]
fn former_crashes_are_handled() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/rtmp_session"
    );
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/regressions/rtmp_session") {
        let path = entry.unwrap().path();
        // The fuzz input starts with a mode byte; the rest is what the client sends.
        let bytes = std::fs::read(&path).unwrap();
        let body = &bytes[1.min(bytes.len())..];
        for piece in [usize::MAX, 1, 7, 128] {
            replay(body, piece);
        }
        n += 1;
    }
    assert!(n >= 3, "expected the three reproducers, found {n}");
}
