//! The VP8, VP9 and AV1 frame-header readers (WHIP ingest) on arbitrary bytes: never panic, and
//! a configuration they accept is within the picture size limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::framed::{is_keyframe, keyframe_config};
use media::Codec;

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::Vp8, Codec::Vp9, Codec::Av1] {
        let key = is_keyframe(codec, data);
        if let Ok(Some(c)) = keyframe_config(codec, data) {
            assert!(
                key,
                "{codec:?}: a configuration from a frame that is no keyframe"
            );
            let info = c
                .info()
                .expect("accepted configurations are within the limits");
            assert!(info.width >= 1 && info.height >= 1);
        }
    }
});
