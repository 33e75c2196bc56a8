//! What the WHIP front end reads itself, on arbitrary bytes: the STUN USERNAME that names a
//! session (every datagram from a new address) and the codecs of an offer's video section.
//! Never panic; a username found is a prefix of the bytes' text.
#![no_main]

use ingest::whip::{offered_video_codecs, stun_local_ufrag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = stun_local_ufrag(data) {
        assert!(!ufrag.contains(':'));
        assert!(ufrag.len() + 20 <= data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let codecs = offered_video_codecs(text);
        let mut seen = codecs.clone();
        seen.dedup();
        assert_eq!(seen.len(), codecs.len(), "a codec listed twice: {codecs:?}");
    }
});
