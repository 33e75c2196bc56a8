//! H.265: `HevcConfig::parse` on arbitrary hvcC records (the enhanced-RTMP sequence header),
//! `parse_sps` on arbitrary SPS NAL units, and `annexb_to_frames` on arbitrary byte streams (raw
//! `.h265` files given to grab).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::avc::append_annexb;
use media::hevc::{annexb_to_frames, contains_irap, looks_like_annexb_hevc, parse_sps, HevcConfig};
use media::sps::{MAX_PIXELS, MAX_SIDE};

fuzz_target!(|data: &[u8]| {
    let record = Bytes::copy_from_slice(data);
    if let Ok(config) = HevcConfig::parse(&record) {
        assert!(!config.vps.is_empty() && !config.sps.is_empty() && !config.pps.is_empty());
        let _ = config.info();
        let mut out = Vec::new();
        config.annexb_parameter_sets(&mut out);
    }
    if let Ok(info) = parse_sps(data) {
        assert!(info.width >= 1 && info.height >= 1);
        assert!(info.width <= MAX_SIDE && info.height <= MAX_SIDE);
        assert!(u64::from(info.width) * u64::from(info.height) <= MAX_PIXELS);
    }
    let _ = looks_like_annexb_hevc(data);
    if let Ok((config, frames)) = annexb_to_frames(data) {
        let mut out = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            append_annexb(&frame.data, config.nal_length_size, &mut out)
                .unwrap_or_else(|e| panic!("frame {i} does not convert back: {e}"));
            assert_eq!(frame.keyframe, contains_irap(&frame.data, 4), "frame {i}");
        }
    }
});
