//! The openh264 backend on real High-profile streams with B-frames (testdata/), reused the way
//! the decoder pool reuses it: keyframe-only and whole-GOP decodes, one after another.

use livesnap_media as media;
use media::avc::annexb_to_frames;
use media::decode::{Decoder, OpenH264Decoder, Picture};

fn load(name: &str) -> (media::avc::AvcConfig, Vec<media::Frame>) {
    let path = format!("{}/../../testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    annexb_to_frames(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_reused_decoder_decodes_whole_gops_again_and_again() {
    let (config, frames) = load("720p.h264");
    let mut d = OpenH264Decoder::new().unwrap();
    let display = (1280, 720);
    let key = d.decode(&config, &frames[..1], display).unwrap();
    let mut latest: Option<Picture> = None;
    // Whole GOP, keyframe, whole GOP, part of the GOP, whole GOP: every call must succeed, and
    // the same input must give the same picture (openh264 ran out of picture buffers on the
    // second whole-GOP call of a reused decoder before the fix).
    for (n, take) in [frames.len(), 1, frames.len(), 9, frames.len()]
        .into_iter()
        .enumerate()
    {
        let pic = d
            .decode(&config, &frames[..take], display)
            .unwrap_or_else(|e| panic!("call {n}: {e}"));
        assert_eq!((pic.width, pic.height), display);
        if take == 1 {
            assert_eq!(
                pic, key,
                "keyframe picture changed after a whole-GOP decode"
            );
        }
        if take == frames.len() {
            if let Some(prev) = &latest {
                assert_eq!(&pic, prev, "call {n}: same GOP, different picture");
            }
            assert_ne!(pic, key);
            latest = Some(pic);
        }
    }
}

#[test]
fn decoding_must_start_at_a_keyframe() {
    let (config, frames) = load("720p.h264");
    let mut d = OpenH264Decoder::new().unwrap();
    assert!(d.decode(&config, &frames[1..3], (1280, 720)).is_err());
    assert!(d.decode(&config, &[], (1280, 720)).is_err());
    // And the decoder still works afterwards.
    assert!(d.decode(&config, &frames[..1], (1280, 720)).is_ok());
}
