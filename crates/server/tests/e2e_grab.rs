//! End-to-end: `livesnap grab INPUT -o FILE` on local FLV and raw Annex-B H.264 files.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn grab_ok(input: &Path, out: &Path, extra: &[&str]) -> Image {
    let o = grab(input, out, extra);
    assert!(
        o.status.success(),
        "livesnap grab {} {extra:?} failed ({}):\n{}",
        input.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes =
        std::fs::read(out).unwrap_or_else(|e| panic!("grab wrote no {}: {e}", out.display()));
    decode_image(&bytes)
}

/// One keyframe (frame 0) followed by P and B frames with content that changes every frame:
/// with precision=keyframe the picture must be frame 0, with latest the last frame.
#[test]
fn grab_flv_and_annexb_match_the_source() {
    require_ffmpeg();
    let dir = workdir();
    let d = dir.path();
    let src = Source::generate(d, "g", SourceSpec::testsrc(640, 360, 2.0, 1000));
    assert_eq!(
        src.frames.iter().filter(|f| f.key).count(),
        1,
        "the grab source must have a single keyframe"
    );
    let h264 = d.join("g.h264");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&src.path)
        .args(["-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264"])
        .arg(&h264));
    let last = src.frame_count() - 1;

    for input in [&src.path, &h264] {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let png = grab_ok(input, &d.join(format!("{name}.png")), &[]);
        assert_eq!(png.kind, ImageKind::Png, "{name}: default format");
        assert_eq!((png.width, png.height), (640, 360), "{name}");
        src.assert_matches(&png, 0, 30.0, 6.0, &format!("grab {name}"));

        let png = grab_ok(
            input,
            &d.join(format!("{name}.k.png")),
            &["--format", "png", "--precision", "keyframe"],
        );
        src.assert_matches(
            &png,
            0,
            30.0,
            6.0,
            &format!("grab {name} --precision keyframe"),
        );

        let jpg = grab_ok(
            input,
            &d.join(format!("{name}.jpg")),
            &["--format", "jpg", "--width", "320"],
        );
        assert_eq!(
            (jpg.kind, jpg.width, jpg.height),
            (ImageKind::Jpeg, 320, 180),
            "{name} --width 320"
        );
        src.assert_matches(
            &jpg,
            0,
            JPEG_SCALED_DB,
            6.0,
            &format!("grab {name} jpg 320"),
        );

        let jpg = grab_ok(
            input,
            &d.join(format!("{name}.h.jpg")),
            &["--format", "jpg", "--height", "90"],
        );
        assert_eq!((jpg.width, jpg.height), (160, 90), "{name} --height 90");

        let latest = grab_ok(
            input,
            &d.join(format!("{name}.latest.png")),
            &["--precision", "latest"],
        );
        src.assert_matches(
            &latest,
            last,
            30.0,
            6.0,
            &format!("grab {name} --precision latest (the last frame)"),
        );
    }
}

#[test]
fn grab_rejects_garbage_with_a_message() {
    require_ffmpeg();
    let dir = workdir();
    let d = dir.path();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("random.flv".into(), pseudo_random(11, 100_000)),
        ("random.h264".into(), pseudo_random(12, 100_000)),
        ("empty.flv".into(), vec![]),
        ("empty.h264".into(), vec![]),
    ];
    // A valid FLV header followed by garbage tags.
    let mut flv = b"FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    flv.extend(pseudo_random(13, 50_000));
    cases.push(("header-then-garbage.flv".into(), flv));
    // Annex-B start codes around garbage NAL units.
    let mut annexb = vec![];
    for i in 0..50u64 {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend(pseudo_random(100 + i, 500));
    }
    cases.push(("startcodes.h264".into(), annexb));

    for (name, bytes) in &cases {
        let input = d.join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = d.join(format!("{name}.png"));
        let o = grab(&input, &out, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "grab of {name} succeeded on garbage");
        assert!(
            !stderr.trim().is_empty(),
            "grab of {name} failed without a message on stderr"
        );
        assert!(
            !stderr.contains("panicked"),
            "grab of {name} panicked instead of reporting an error:\n{stderr}"
        );
    }

    let o = grab(&d.join("does-not-exist.flv"), &d.join("x.png"), &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "grab of a missing file succeeded");
    assert!(
        !stderr.trim().is_empty() && !stderr.contains("panicked"),
        "missing file: {stderr}"
    );
}
