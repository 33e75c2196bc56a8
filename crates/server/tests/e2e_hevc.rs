//! End-to-end: H.265. With the `ffmpeg` feature, `livesnap grab` of a raw H.265 (Annex B) file
//! made by x265 with B-frames gives the right frame, checked by PSNR against ffmpeg's own decode
//! of the same file; without it, the same command says which feature is missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const W: u32 = 640;
const H: u32 = 360;
/// Frames in the source (one keyframe, then P and B frames; content changes every frame).
const FRAMES: usize = 25;

/// Makes `name.h265`: testsrc2 with noise, x265, a single keyframe, B-frames.
fn make_h265(dir: &Path) -> std::path::PathBuf {
    require_ffmpeg();
    let out = dir.join("src.h265");
    run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size={W}x{H}:rate=25,noise=alls=8:allf=t"))
        .args(["-frames:v", &FRAMES.to_string()])
        .args([
            "-c:v", "libx265", "-preset", "fast", "-crf", "20", "-pix_fmt", "yuv420p",
        ])
        .args([
            "-x265-params",
            "keyint=1000:min-keyint=1000:bframes=3:log-level=error",
        ])
        .args(["-f", "hevc"])
        .arg(&out));
    out
}

/// Frames 0, the middle one and the last of `file` as ffmpeg decodes them: the right one must
/// score far above the others.
#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
fn references(file: &Path) -> Vec<Vec<u8>> {
    [0, FRAMES / 2, FRAMES - 1]
        .iter()
        .map(|&i| reference(file, i))
        .collect()
}

/// Frame `index` (presentation order) of `file` as ffmpeg decodes it, rgb24.
#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
fn reference(file: &Path, index: usize) -> Vec<u8> {
    let rgb = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
        .arg(file)
        .args(["-vf", &format!("select=eq(n\\,{index})"), "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]));
    assert_eq!(rgb.len(), (W * H * 3) as usize, "reference frame {index}");
    rgb
}

#[cfg(feature = "ffmpeg")]
#[test]
fn grab_h265_gives_the_right_frame() {
    let dir = workdir();
    let src = make_h265(dir.path());
    let refs = references(&src);
    for (precision, want, ext) in [
        ("keyframe", 0, "png"),
        ("latest", 2, "png"),
        ("keyframe", 0, "jpg"),
    ] {
        let out = dir.path().join(format!("{precision}.{ext}"));
        let o = grab(&src, &out, &["--precision", precision]);
        assert!(
            o.status.success(),
            "grab --precision {precision}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let img = decode_image(&std::fs::read(&out).unwrap());
        assert_eq!((img.width, img.height), (W, H));
        let scores: Vec<f64> = refs.iter().map(|r| psnr(&img.rgb, r)).collect();
        eprintln!("{precision}.{ext}: PSNR against frames 0, middle, last: {scores:.1?}");
        // PNG is the decoder's picture up to the colour conversion; JPEG adds its own loss.
        let floor = if ext == "png" { 38.0 } else { 30.0 };
        assert!(
            scores[want] >= floor,
            "{precision}.{ext}: {:.1} dB against its frame (scores {scores:.1?})",
            scores[want]
        );
        for (i, s) in scores.iter().enumerate() {
            if i != want {
                assert!(
                    *s < scores[want] - 6.0,
                    "{precision}.{ext}: frame {i} scores {s:.1} dB, too close to the right one's {:.1}",
                    scores[want]
                );
            }
        }
    }
}

#[cfg(not(feature = "ffmpeg"))]
#[test]
fn grab_h265_without_the_ffmpeg_feature_names_it() {
    let dir = workdir();
    let src = make_h265(dir.path());
    let out = dir.path().join("x.png");
    let o = grab(&src, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "grab of H.265 succeeded without a decoder"
    );
    assert!(
        stderr.contains("H.265") && stderr.contains("--features ffmpeg"),
        "unclear error: {stderr}"
    );
    assert!(!out.exists());
}

/// Publishes `src` (raw H.265) as `live/hevc` over enhanced RTMP: an `hvc1` sequence start,
/// then coded frames. No publisher installable here sends `hvc1` (ffmpeg 5.1 and GStreamer 1.22
/// predate it), so the test publisher sends it.
fn publish_hvc1(server: &Server, src: &Path) -> rtmp::Publisher {
    let (config, frames) = media::hevc::annexb_to_frames(&std::fs::read(src).unwrap()).unwrap();
    let mut p = rtmp::Publisher::start(&server.rtmp, "live", "hevc");
    let mut start = vec![0x90, b'h', b'v', b'c', b'1'];
    start.extend_from_slice(&config.to_record());
    p.video(&start, 0).expect("send the hvc1 sequence start");
    for (i, f) in frames.iter().enumerate() {
        // CodedFrames with a zero composition time: x265's raw output carries no timestamps, so
        // decode order stands for presentation order here (the keyframe is what is checked).
        let frame_type = if f.keyframe { 1 } else { 2 };
        let mut body = vec![
            0x80 | (frame_type << 4) | 1,
            b'h',
            b'v',
            b'c',
            b'1',
            0,
            0,
            0,
        ];
        body.extend_from_slice(&f.data);
        p.video(&body, i as u32 * 40).expect("send a coded frame");
    }
    p
}

/// Without the `ffmpeg` feature, an `hvc1` publish is accepted and listed with an error that
/// names the feature, and a snapshot says the same instead of failing obscurely.
#[cfg(not(feature = "ffmpeg"))]
#[test]
fn enhanced_rtmp_hvc1_without_the_ffmpeg_feature_names_it() {
    let dir = workdir();
    let src = make_h265(dir.path());
    let server = Server::start_env(&[("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS", "1000")]);
    let _p = publish_hvc1(&server, &src);
    let info = poll(WAIT, "the H.265 stream to report its error", || {
        let v = server.get("/v1/streams/live/hevc").json();
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("--features ffmpeg"))
            .then_some(v)
    });
    assert!(info["error"].as_str().unwrap().contains("H.265"), "{info}");
    let r = server.get("/v1/streams/live/hevc/snapshot.png");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("--features ffmpeg"), "{}", r.text());
}

/// An H.265 stream published over enhanced RTMP (`hvc1` sequence start and coded frames) to the
/// real server: the stream reports codec h265 and its size, and the direct snapshot is the
/// right frame by PSNR.
#[cfg(feature = "ffmpeg")]
#[test]
fn enhanced_rtmp_hvc1_publish_is_pictured() {
    let dir = workdir();
    let src = make_h265(dir.path());
    let refs = references(&src);
    let server = Server::start_with(&[], &["--rtmp-play", "true"]);
    let _p = publish_hvc1(&server, &src);
    let info = server.wait_keyframes("live", "hevc", None, 1);
    assert_eq!(info["codec"], "h265", "{info}");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(640), Some(360)),
        "{info}"
    );
    assert_eq!(info["profile"], "Main", "{info}");
    let shot = server.snapshot_get("live", "hevc", "png", "precision=keyframe");
    assert!(shot.keyframe);
    let scores: Vec<f64> = refs.iter().map(|r| psnr(&shot.image.rgb, r)).collect();
    eprintln!("hvc1 keyframe snapshot: PSNR against frames 0, middle, last: {scores:.1?}");
    assert!(
        scores[0] >= 38.0 && scores[1] < scores[0] - 6.0,
        "{scores:.1?}"
    );
    let jpg = server.snapshot_get("live", "hevc", "jpg", "precision=keyframe&width=320");
    assert_eq!((jpg.image.width, jpg.image.height), (320, 180));

    // Played back from the RTMP port (enhanced RTMP `hvc1` out) and pulled by grab's client.
    let out = dir.path().join("played.png");
    let url = server.rtmp_url("live", "hevc");
    let o = Command::new(BIN)
        .args(["grab", &url, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "grab {url}: {said}");
    let img = decode_image(&std::fs::read(&out).unwrap());
    let scores: Vec<f64> = refs.iter().map(|r| psnr(&img.rgb, r)).collect();
    eprintln!("grab of the hvc1 stream played by livesnap: PSNR {scores:.1?}");
    assert!(
        scores[0] >= 38.0 && scores[1] < scores[0] - 6.0,
        "{scores:.1?}"
    );
}
