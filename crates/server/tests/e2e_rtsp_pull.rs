//! Pulling `rtsp://` with `livesnap grab`, from a third-party RTSP server this project did not
//! write: GStreamer's gst-rtsp-server (tests/peers/gst_rtsp_server.py, on Debian's python3 with
//! python3-gi and gir1.2-gst-rtsp-server-1.0, which scripts/test installs). The picture must
//! match GStreamer's own rendering of the pattern it serves, over TCP and UDP, with and without
//! credentials; a wrong password and a missing stream fail with a clear error and a non-zero
//! exit.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

/// Debian's python3, which has `gi` (another python3 on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// A running gst-rtsp-server; killed on drop.
struct GstRtspServer {
    child: Child,
    port: u16,
}

impl GstRtspServer {
    fn start(credentials: Option<(&str, &str)>) -> GstRtspServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/gst_rtsp_server.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script);
        if let Some((user, pass)) = credentials {
            cmd.args([user, pass]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON} (the pull tests need it): {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!(
                "gst-rtsp-server did not start (python3-gi and gir1.2-gst-rtsp-server-1.0 are \
                 needed; scripts/test installs them): {line:?}\n{err}"
            )
        });
        GstRtspServer { child, port }
    }

    fn url(&self, auth: &str, path: &str) -> String {
        format!("rtsp://{auth}127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for GstRtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GStreamer's own RGB rendering of the pattern the server encodes.
fn reference(dir: &Path) -> Image {
    let path = dir.join("ref.png");
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(
            format!(
                "videotestsrc num-buffers=1 pattern=smpte75 ! video/x-raw,format=RGB,width=320,height=240 ! pngenc ! filesink location={}",
                path.display()
            )
            .split(' '),
        )
        .status()
        .expect("gst-launch-1.0");
    assert!(status.success());
    decode_image(&std::fs::read(&path).unwrap())
}

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
