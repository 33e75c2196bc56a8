//! Checks of the end-to-end harness itself (no livesnap involved): the PSNR comparison tells
//! one frame from its neighbours and a wrong colour conversion from the right one, and the
//! published timeline maps pts to frames. If these fail, the other tests prove nothing.

mod common;

use std::process::Command;

use common::*;

/// ffmpeg's own picture of frame `n` of `src`, as PNG bytes (what a correct server returns).
fn ffmpeg_png(src: &Source, n: usize, matrix: &str, range: &str) -> Vec<u8> {
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
        .arg(&src.path)
        .args([
            "-vf",
            &format!("select=eq(n\\,{n}),scale=in_color_matrix={matrix}:in_range={range}:flags=bilinear+full_chroma_int,format=rgb24"),
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-c:v",
            "png",
            "-f",
            "image2pipe",
            "-",
        ]))
}

#[test]
fn psnr_tells_frames_and_colour_conversions_apart() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "h", SourceSpec::testsrc(320, 180, 4.0, 25));
    // Timeline: 100 frames, the first at 80 ms (two B-frames of delay), 40 ms apart, period 4 s.
    assert_eq!(src.frame_count(), 100);
    assert_eq!(src.period_ms, 4000);
    for (i, f) in src.frames.iter().enumerate() {
        assert_eq!(src.frame_index_at(f.pts_ms), i);
        assert_eq!(src.frame_index_at(f.pts_ms + 3 * src.period_ms), i);
    }
    assert_eq!(src.keyframes_between(0, 4079), vec![0, 25, 50, 75]);

    // The right frame scores high (even with another chroma upsampling); the next one doesn't.
    let img = decode_image(&ffmpeg_png(&src, 40, "bt601", "tv"));
    let p = src.assert_matches(&img, 40, 30.0, 6.0, "ffmpeg's own frame 40");
    let next = src.psnr_to(&img, 41);
    assert!(
        next < p - 6.0,
        "frame 41 scores {next:.1} dB against frame 40's {p:.1} dB"
    );

    // A wrong matrix or range loses clearly against the right one.
    let mut spec = SourceSpec::testsrc(320, 180, 1.0, 25);
    spec.extra = ["-colorspace", "bt709", "-x264-params", "colormatrix=bt709"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    spec.colour = BT709_TV;
    let s709 = Source::generate(dir.path(), "h709", spec);
    let right = decode_image(&ffmpeg_png(&s709, 3, "bt709", "tv"));
    let wrong = decode_image(&ffmpeg_png(&s709, 3, "bt601", "tv"));
    let full = decode_image(&ffmpeg_png(&s709, 3, "bt709", "pc"));
    let pr = s709.psnr_to(&right, 3);
    let pw = s709.psnr_to(&wrong, 3);
    let pf = s709.psnr_to(&full, 3);
    assert!(
        pr > 30.0 && pw < pr - 3.0 && pf < pr - 3.0,
        "right {pr:.1} dB, wrong matrix {pw:.1} dB, wrong range {pf:.1} dB"
    );
}

#[test]
fn image_header_parsing() {
    assert!(is_rfc3339("2024-05-01T12:00:00Z"));
    assert!(is_rfc3339("2024-05-01T12:00:00.123456+02:00"));
    assert!(!is_rfc3339("Wed, 01 May 2024 12:00:00 GMT"));
    let dir = workdir();
    let p = dir.path().join("x.jpg");
    run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=123x45",
            "-frames:v",
            "1",
        ])
        .arg(&p));
    let b = std::fs::read(&p).unwrap();
    assert_eq!(image_info(&b), (ImageKind::Jpeg, 123, 45));
    let img = decode_image(&b);
    assert_eq!(img.rgb.len(), 123 * 45 * 3);
}
