//! `SpsInfo::parse` on arbitrary SPS NAL units: no panic, and an accepted SPS respects the
//! size limits that protect every later allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::sps::{SpsInfo, MAX_PIXELS, MAX_SIDE};

#[path = "common/known.rs"]
mod known;

/// Known: `SpsInfo::parse(&[])` panics in h264-reader's `decode_nal` (`nal_unit.len() - 2`
/// underflows; a release build panics with "capacity overflow" on the same line).
// h264-reader 0.9.0 rbsp.rs:294 underflowed on inputs under two bytes; SpsInfo::parse now
// refuses those first (regression: fuzz/regressions/sps/empty_nal, a unit test in sps.rs).
const KNOWN: &[known::Site] = &[];

fuzz_target!(|data: &[u8]| {
    let Some(Ok(info)) = known::tolerate(KNOWN, || SpsInfo::parse(data)) else {
        return;
    };
    assert!(
        info.width > 0 && info.height > 0,
        "{}x{}",
        info.width,
        info.height
    );
    assert!(
        info.width <= MAX_SIDE && info.height <= MAX_SIDE,
        "{}x{}",
        info.width,
        info.height
    );
    assert!(
        u64::from(info.width) * u64::from(info.height) <= MAX_PIXELS,
        "{}x{}",
        info.width,
        info.height
    );
    if let Some(fps) = info.fps {
        assert!(fps.is_finite() && fps > 0.0, "fps {fps}");
    }
    let _ = info.profile_name();
    let _ = info.colour.describe();
});
