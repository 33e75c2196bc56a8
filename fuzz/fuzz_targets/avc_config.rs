//! `AvcConfig::parse` on arbitrary AVCDecoderConfigurationRecords (the FLV/RTMP sequence header),
//! then what the hub does with an accepted one: SPS parsing and the Annex B parameter sets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::avc::{nal_type, nal_unit_type, AvcConfig, MAX_PARAMETER_SETS};
use media::sps::SpsInfo;

fuzz_target!(|data: &[u8]| {
    let record = Bytes::copy_from_slice(data);
    let Ok(config) = AvcConfig::parse(&record) else {
        return;
    };
    assert!(
        matches!(config.nal_length_size, 1 | 2 | 4),
        "nal_length_size {}",
        config.nal_length_size
    );
    assert!((1..=MAX_PARAMETER_SETS).contains(&config.sps.len()));
    assert!((1..=MAX_PARAMETER_SETS).contains(&config.pps.len()));
    assert!(config
        .sps
        .iter()
        .all(|s| nal_unit_type(s) == Some(nal_type::SPS)));
    assert!(config
        .pps
        .iter()
        .all(|p| nal_unit_type(p) == Some(nal_type::PPS)));
    let mut out = Vec::new();
    config.annexb_parameter_sets(&mut out);
    let expected: usize = config
        .sps
        .iter()
        .chain(&config.pps)
        .map(|s| s.len() + 4)
        .sum();
    assert_eq!(out.len(), expected);
    let _ = SpsInfo::parse(&config.sps[0]);
});
