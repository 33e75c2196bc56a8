//! Pulling `rtsp://` with `livesnap grab`, from a third-party RTSP server this project did not
//! write: GStreamer's gst-rtsp-server (tests/peers/gst_rtsp_server.py, on Debian's python3 with
//! python3-gi and gir1.2-gst-rtsp-server-1.0, which scripts/test installs). The picture must
//! match GStreamer's own rendering of the pattern it serves, over TCP and UDP, with and without
//! credentials; a wrong password and a missing stream fail with a clear error and a non-zero
//! exit.

mod common;
#[path = "common/rtsp_peer.rs"]
mod rtsp_peer;

use std::path::Path;

use common::*;
use rtsp_peer::{reference, GstRtspServer};

fn grab_url(url: &str, out: &Path) -> std::process::Output {
    grab(Path::new(url), out, &["--timeout-s", "20"])
}

#[test]
fn grab_pulls_rtsp_from_gstreamers_server_over_tcp_and_udp() {
    let dir = workdir();
    let reference = reference(dir.path());
    let server = GstRtspServer::start(None);
    for (what, url) in [
        ("TCP", server.url("", "/test")),
        ("UDP", server.url("", "/test?transport=udp")),
    ] {
        let out = dir.path().join(format!("{what}.png"));
        let o = grab_url(&url, &out);
        let said = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success(),
            "grab {url} failed ({}):\n{said}",
            o.status
        );
        let img = decode_image(&std::fs::read(&out).unwrap());
        assert_eq!((img.width, img.height), (320, 240));
        // As for the RTMP publish of the same pattern: the reference never went through 4:2:0.
        let db = psnr(&img.rgb, &reference.rgb);
        eprintln!("grab over {what}: {db:.1} dB; {}", said.trim());
        assert!(
            db > 27.0,
            "grab over {what}: {db:.1} dB against GStreamer's rendering"
        );
    }
    // A stream the server does not have: an error naming it, non-zero exit, quickly.
    let o = grab_url(&server.url("", "/nothing"), &dir.path().join("x.png"));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("404") || said.contains("Not Found"), "{said}");
}

#[test]
fn grab_pulls_rtsp_with_credentials_and_refuses_a_wrong_password() {
    let dir = workdir();
    let reference = reference(dir.path());
    let server = GstRtspServer::start(Some(("cam", "s3cret")));
    let out = dir.path().join("auth.png");
    let o = grab_url(&server.url("cam:s3cret@", "/test"), &out);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    let img = decode_image(&std::fs::read(&out).unwrap());
    assert!(psnr(&img.rgb, &reference.rgb) > 27.0);

    let o = grab_url(
        &server.url("cam:wrong@", "/test"),
        &dir.path().join("no.png"),
    );
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("401") || said.contains("Unauthorized"),
        "{said}"
    );
    assert!(!said.contains("wrong"), "the password is shown: {said}");
}
