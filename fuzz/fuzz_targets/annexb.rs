//! Annex B and AVCC framing: `split_annexb` / `annexb_to_frames` on arbitrary byte streams (raw
//! `.h264` files given to grab), and `append_annexb` / `contains_idr` on arbitrary access units
//! with every allowed NAL length size (what RTMP and FLV deliver).
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::avc::{annexb_to_frames, append_annexb, contains_idr, split_annexb, AvccNals};

fuzz_target!(|data: &[u8]| {
    for nal in split_annexb(data) {
        assert!(!nal.is_empty());
    }
    if let Ok((config, frames)) = annexb_to_frames(data) {
        assert_eq!(config.nal_length_size, 4);
        assert!(!config.sps.is_empty() && !config.pps.is_empty());
        let mut out = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            assert!(!frame.data.is_empty(), "frame {i} is empty");
            // What annexb_to_frames built must convert back without error ...
            append_annexb(&frame.data, config.nal_length_size, &mut out).unwrap_or_else(|e| {
                panic!("frame {i} built by annexb_to_frames does not convert back: {e}")
            });
            // ... and its keyframe flag must agree with the bitstream.
            assert_eq!(
                frame.keyframe,
                contains_idr(&frame.data, config.nal_length_size),
                "frame {i}"
            );
        }
    }
    for length_size in [1, 2, 4] {
        let mut out = Vec::new();
        let _ = append_annexb(data, length_size, &mut out);
        let _ = contains_idr(data, length_size);
        let _ = AvccNals::new(data, length_size).count();
    }
});
