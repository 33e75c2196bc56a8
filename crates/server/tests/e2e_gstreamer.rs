//! End-to-end: a publisher livesnap's tests did not write and that is not ffmpeg: GStreamer's
//! `rtmp2sink` and `rtspclientsink` (RTSP RECORD over TCP) with `x264enc`. Its picture must
//! match GStreamer's own rendering of the same test pattern; a 10-bit stream must be refused
//! with a clear error, not a wrong picture.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;

struct Gst(Child);

impl Drop for Gst {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_gstreamer() {
    for (element, package) in [
        ("rtmp2sink", "gstreamer1.0-plugins-bad"),
        ("rtspclientsink", "gstreamer1.0-rtsp"),
    ] {
        let ok = Command::new("gst-inspect-1.0")
            .args([element])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "GStreamer with {element} ({package}) is needed: scripts/test installs it"
        );
    }
}

/// Publishes with rtmp2sink, or with rtspclientsink over `tcp` or `udp` when `url` is
/// `rtsp://...#tcp` / `#udp`.
fn publish(caps: &str, url: &str) -> Gst {
    let sink = if let Some((rtsp, protocols)) = url.split_once('#') {
        format!("rtspclientsink protocols={protocols} location={rtsp}")
    } else {
        format!("flvmux streamable=true ! rtmp2sink location={url}")
    };
    let pipeline = format!(
        "videotestsrc is-live=true pattern=smpte75 ! {caps} ! x264enc tune=zerolatency key-int-max=10 speed-preset=ultrafast ! h264parse ! {sink}"
    );
    let child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split(' '))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gst-launch-1.0");
    Gst(child)
}

#[test]
fn gstreamer_publish_is_pictured_like_gstreamer_renders_it() {
    require_ffmpeg();
    require_gstreamer();
    let dir = workdir();
    // GStreamer's own RGB rendering of the pattern: the reference.
    let reference = dir.path().join("ref.png");
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(
            format!(
                "videotestsrc num-buffers=1 pattern=smpte75 ! video/x-raw,format=RGB,width=320,height=240 ! pngenc ! filesink location={}",
                reference.display()
            )
            .split(' '),
        )
        .status()
        .expect("gst-launch-1.0");
    assert!(status.success());
    let reference = decode_image(&std::fs::read(&reference).unwrap());

    let server = Server::start();
    for (protocol, url) in [
        ("rtmp", server.rtmp_url("live", "gst")),
        ("rtsp", server.rtsp_url("live", "gst-rtsp-tcp#tcp")),
        ("rtsp", server.rtsp_url("live", "gst-rtsp-udp#udp")),
    ] {
        let stream = url.rsplit('/').next().unwrap().split('#').next().unwrap();
        let _gst = publish(
            "video/x-raw,format=I420,width=320,height=240,framerate=25/1",
            &url,
        );
        let info = server.wait_keyframes("live", stream, None, 1);
        assert_eq!(
            (info["width"].as_u64(), info["height"].as_u64()),
            (Some(320), Some(240)),
            "{info}"
        );
        assert_eq!(info["codec"], "h264");
        assert_eq!(info["protocol"], protocol, "{info}");
        let shot = server.snapshot_get("live", stream, "png", "");
        assert_eq!((shot.image.width, shot.image.height), (320, 240));
        // The reference never went through 4:2:0, so the sharp bar edges cost a few dB:
        // measured 29.6 dB here, and ffmpeg's own decode of the same stream scores the same.
        let db = psnr(&shot.image.rgb, &reference.rgb);
        eprintln!("GStreamer over {protocol} ({stream}): {db:.1} dB");
        assert!(
            db > 27.0,
            "GStreamer publish over {protocol} pictured at {db:.1} dB against GStreamer's own rendering"
        );
    }
}

#[test]
fn ten_bit_stream_is_refused_with_a_clear_error() {
    require_gstreamer();
    let server = Server::start_env(&[("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS", "1000")]);
    let _gst = publish(
        "video/x-raw,format=I420_10LE,width=320,height=240,framerate=25/1",
        &server.rtmp_url("live", "deep"),
    );
    server.wait_live("live", "deep", None);
    let info = poll(WAIT, "the 10-bit stream to report its error", || {
        let v = server.get("/v1/streams/live/deep").json();
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("10-bit"))
            .then_some(v)
    });
    assert!(info["codec"].is_null(), "{info}");
    let r = server.get("/v1/streams/live/deep/snapshot.png");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("10-bit"),
        "the error says why: {}",
        r.text()
    );
}
