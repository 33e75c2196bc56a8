//! End-to-end: `livesnap grab INPUT -o FILE` on local FLV and raw Annex-B H.264 files.

mod common;
#[path = "common/rtmp_peer.rs"]
mod rtmp_peer;

use std::path::Path;
use std::process::{Command, Stdio};

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

// ---------------------------------------------------------------------------------------------
// rtmp:// URLs: from ffmpeg as an RTMP server (`ffmpeg -i SRC -c copy -f flv -listen 1 URL`;
// `-listen` is an option of the output URL, so it comes after the input), and from livesnap's
// own RTMP port with `rtmp_play` on.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use rtmp_peer::{free_port, FfmpegRtmpServer};

/// Runs `grab URL -o OUT extra...` and returns the picture and what grab said.
fn grab_url_ok(url: &str, out: &Path, extra: &[&str]) -> (Image, String) {
    let o = grab(Path::new(url), out, extra);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        o.status.success(),
        "livesnap grab {url} {extra:?} failed ({}):\n{stderr}",
        o.status
    );
    let bytes =
        std::fs::read(out).unwrap_or_else(|e| panic!("grab wrote no {}: {e}", out.display()));
    (decode_image(&bytes), stderr)
}

/// The pts grab reports for the frame it pictured ("... from the frame at pts N ms ...").
fn pictured_pts(stderr: &str) -> i64 {
    stderr
        .split("from the frame at pts ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("grab did not say which frame it pictured:\n{stderr}"))
}

/// Runs a grab that must fail; returns its message.
fn grab_fails(url: &str, extra: &[&str], dir: &Path) -> String {
    let o = grab(Path::new(url), &dir.join("never.jpg"), extra);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "grab of {url} succeeded");
    assert!(
        !stderr.contains("panicked"),
        "grab of {url} panicked instead of reporting an error:\n{stderr}"
    );
    assert!(
        !dir.join("never.jpg").exists(),
        "grab of {url} wrote a file"
    );
    stderr
}

/// The picture of a pulled stream is its source's frame: the keyframe (the source has one) as
/// a JPEG, and with `--precision latest` the frame grab says it pictured.
#[test]
fn grab_pulls_an_rtmp_stream_and_matches_the_source() {
    require_ffmpeg();
    let dir = workdir();
    let d = dir.path();
    let src = Source::generate(d, "pull", SourceSpec::testsrc(640, 360, 2.0, 1000));
    assert_eq!(src.frames.iter().filter(|f| f.key).count(), 1);

    let server = FfmpegRtmpServer::start(&src.path, d, "keyframe");
    let (jpg, stderr) = grab_url_ok(&server.url, &d.join("out.jpg"), &[]);
    assert_eq!(
        (jpg.kind, jpg.width, jpg.height),
        (ImageKind::Jpeg, 640, 360),
        "{stderr}"
    );
    src.assert_matches(&jpg, 0, 30.0, 6.0, &format!("grab {}", server.url));
    drop(server);

    let server = FfmpegRtmpServer::start(&src.path, d, "latest");
    let (png, stderr) = grab_url_ok(
        &server.url,
        &d.join("latest.png"),
        &["--precision", "latest", "--timeout-s", "20"],
    );
    assert_eq!(
        (png.kind, png.width, png.height),
        (ImageKind::Png, 640, 360)
    );
    let index = src.frame_index_at(pictured_pts(&stderr));
    src.assert_matches(
        &png,
        index,
        30.0,
        6.0,
        &format!("grab {} --precision latest (frame {index})", server.url),
    );
}

/// Nobody listening: a quick failure that names the address, long before the timeout. A server
/// that accepts the connection and says nothing: a failure at the timeout, naming what never
/// came.
#[test]
fn grab_of_an_absent_or_silent_rtmp_server_fails_with_a_clear_error() {
    let dir = workdir();
    let d = dir.path();
    let port = free_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/cam");
    let started = Instant::now();
    let stderr = grab_fails(&url, &["--timeout-s", "600"], d);
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "refused: {stderr}"
    );
    // Refused at once, not after the 600 s timeout (the bound is loose on purpose).
    assert!(
        started.elapsed() < WAIT,
        "a refused connection took {:?}",
        started.elapsed()
    );

    // The kernel completes the TCP handshake for the backlog; nothing ever answers RTMP.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let url = format!("rtmp://127.0.0.1:{port}/live/cam");
    let stderr = grab_fails(&url, &["--timeout-s", "1"], d);
    assert!(
        stderr.contains(&url) && stderr.contains("did not play the stream within 1 s"),
        "silent server: {stderr}"
    );
    drop(silent);
}

#[test]
fn grab_rejects_bad_urls_with_a_message() {
    let dir = workdir();
    let d = dir.path();
    // A port nobody listens on (bound, read, released).
    let rtsp_closed = format!("rtsp://127.0.0.1:{}/cam", free_port());
    for (url, extra, says) in [
        ("rtmp://", &[][..], "no host"),
        (
            "rtmp://127.0.0.1/live",
            &[],
            "it needs an app and a stream name",
        ),
        ("rtmp://127.0.0.1:99999/live/cam", &[], "not a port"),
        ("rtmp://[::1/live/cam", &[], "closing ]"),
        ("rtmp://user:pw@127.0.0.1/live/cam", &[], "not supported"),
        (
            "rtmp://127.0.0.1/live/cam",
            &["--timeout-s", "0"],
            "--timeout-s",
        ),
        (&rtsp_closed, &[], "Connection refused"),
        ("rtsp:///cam", &[], "not an rtsp://host"),
        ("http://127.0.0.1/cam.flv", &[], "not supported"),
        ("not a scheme://x/y", &[], "not a URL"),
    ] {
        let stderr = grab_fails(url, extra, d);
        assert!(stderr.contains(says), "{url}: want {says:?} in:\n{stderr}");
    }
}

/// With `rtmp_play` on, livesnap's own RTMP port plays its live streams: `grab rtmp://` (the
/// pull client every rtmp:// pull job uses) and ffmpeg as a player both picture the publisher's
/// keyframe (the source has one, at its start, so every loop's keyframe is frame 0); ffmpeg
/// reads to the end when the publisher leaves. A name not live, and any play while `rtmp_play`
/// is off, are refused with the reason.
#[test]
fn grab_and_ffmpeg_play_from_livesnaps_own_rtmp_port() {
    require_ffmpeg();
    let dir = workdir();
    let d = dir.path();
    let src = Source::generate(d, "own", SourceSpec::testsrc(640, 360, 2.0, 1000));
    assert_eq!(src.frames.iter().filter(|f| f.key).count(), 1);
    let s = Server::start_with(&[], &["--rtmp-play", "true"]);
    let mut publisher = Publisher::start(&src.path, &s.rtmp_url("live", "cam1"));
    s.wait_keyframes("live", "cam1", None, 1);
    let url = s.rtmp_url("live", "cam1");

    let (jpg, stderr) = grab_url_ok(&url, &d.join("own.jpg"), &[]);
    assert_eq!(
        (jpg.kind, jpg.width, jpg.height),
        (ImageKind::Jpeg, 640, 360),
        "{stderr}"
    );
    src.assert_matches(&jpg, 0, 30.0, 6.0, &format!("grab {url}"));

    // ffmpeg as the player, decoding: it is sent the GOP so far, then the frames as they come,
    // so its frames in presentation order are the source's from its keyframe on (B-frames and
    // composition times included); frames 0, 17 and 39 (of 50 a loop) are checked.
    const PLAYED: usize = 40;
    let rgb = run(ffmpeg_cmd().args([
        "-rw_timeout",
        "20000000",
        "-i",
        &url,
        "-frames:v",
        &PLAYED.to_string(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]));
    let size = 640 * 360 * 3;
    assert_eq!(rgb.len(), PLAYED * size, "ffmpeg decoded too few frames");
    for index in [0, 17, PLAYED - 1] {
        let img = Image {
            kind: ImageKind::Png,
            width: 640,
            height: 360,
            rgb: rgb[index * size..(index + 1) * size].to_vec(),
        };
        src.assert_matches(
            &img,
            index,
            30.0,
            6.0,
            &format!("ffmpeg -i {url}, frame {index}"),
        );
    }
    let log = s.log_text();
    assert!(
        log.matches("rtmp play started").count() >= 2,
        "{}",
        s.log_tail(20)
    );

    // A name nobody publishes: refused, naming it.
    let msg = grab_fails(&s.rtmp_url("live", "nobody"), &["--timeout-s", "10"], d);
    assert!(msg.contains("is not live"), "{msg}");

    // A player reading to the end: it ends when the publisher leaves.
    let mut player = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-rw_timeout",
            "20000000",
        ])
        .args(["-i", &url, "-c", "copy", "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    poll(WAIT, "a third play to start", || {
        (s.log_text().matches("rtmp play started").count() >= 3).then_some(())
    });
    publisher.kill();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = player.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the player did not end with the stream"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "ffmpeg's play ended {status}");
    poll(WAIT, "the server to log the end of the play", || {
        s.log_text()
            .contains("rtmp play ended: the stream ended")
            .then_some(())
    });

    // Playback is off by default: the play is refused with the setting's name.
    let off = Server::start();
    let _p = Publisher::start(&src.path, &off.rtmp_url("live", "cam1"));
    off.wait_keyframes("live", "cam1", None, 1);
    let msg = grab_fails(&off.rtmp_url("live", "cam1"), &["--timeout-s", "10"], d);
    assert!(msg.contains("rtmp_play"), "{msg}");
}

/// With `publish_secret`, playing takes the signed URL `POST /v1/publish-urls` gives, as
/// publishing does: unsigned is refused, signed plays.
#[test]
fn playing_from_livesnap_needs_the_signature_publishing_does() {
    require_ffmpeg();
    let dir = workdir();
    let d = dir.path();
    let src = Source::generate(d, "signed", SourceSpec::testsrc(320, 240, 2.0, 1000));
    let s = Server::start_with(
        &[("LIVESNAP_PUBLISH_SECRET", "e2e-play-secret-of-some-length")],
        &["--rtmp-play", "true"],
    );
    let urls = s.expect(
        s.post_json(
            "/v1/publish-urls",
            &serde_json::json!({"app": "live", "stream": "cam1", "ttl_s": 600}),
        ),
        200,
        "POST /v1/publish-urls",
    );
    let publish = urls["rtmp"].as_str().unwrap().to_string();
    let play = urls["rtmp_play"].as_str().unwrap().to_string();
    let (_, port) = s.rtmp.rsplit_once(':').unwrap();
    assert!(
        play.contains(&format!(":{port}/live/cam1?expires=")),
        "{urls}"
    );
    let _p = Publisher::start(&src.path, &publish);
    s.wait_keyframes("live", "cam1", None, 1);

    // Unsigned, or signed for publishing: refused.
    for url in [s.rtmp_url("live", "cam1"), publish.clone()] {
        let msg = grab_fails(&url, &["--timeout-s", "10"], d);
        assert!(msg.contains("Unauthorized"), "{url}: {msg}");
    }
    let (img, _) = grab_url_ok(&play, &d.join("signed.png"), &[]);
    src.assert_matches(&img, 0, 30.0, 6.0, "grab of the URL signed for playing");
    // ... and a play URL does not publish (cam2: a name nobody publishes yet).
    let urls2 = s.expect(
        s.post_json(
            "/v1/publish-urls",
            &serde_json::json!({"app": "live", "stream": "cam2", "ttl_s": 600}),
        ),
        200,
        "POST /v1/publish-urls",
    );
    let mut intruder = Publisher::start_once(&src.path, urls2["rtmp_play"].as_str().unwrap());
    let status = intruder.wait_exit(WAIT);
    assert!(!status.success(), "a play URL published");
    assert!(s.stream("live", "cam2").is_none());
    assert!(
        s.log_text().contains("rtmp publish refused"),
        "{}",
        s.log_tail(10)
    );
    for url in [&publish, &play] {
        let sign = url.rsplit("sign=").next().unwrap();
        assert!(
            !s.log_text().contains(sign),
            "a signature reached the log:\n{}",
            s.log_tail(20)
        );
    }
}
