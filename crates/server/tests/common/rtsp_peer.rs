//! The third-party RTSP server the pull tests play from: GStreamer's gst-rtsp-server
//! (tests/peers/gst_rtsp_server.py, on Debian's python3 with python3-gi and
//! gir1.2-gst-rtsp-server-1.0, which scripts/test installs), serving videotestsrc's smpte75
//! pattern at 320x240; and GStreamer's own rendering of that pattern to compare pictures with.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::common::*;

/// Debian's python3, which has `gi` (another python3 on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// A running gst-rtsp-server; killed on drop.
pub struct GstRtspServer {
    child: Child,
    pub port: u16,
}

impl GstRtspServer {
    pub fn start(credentials: Option<(&str, &str)>) -> GstRtspServer {
        GstRtspServer::start_on(credentials, 0)
    }

    /// Starts on `port` (0: one the system picks); the same port again is a restart of the
    /// camera.
    pub fn start_on(credentials: Option<(&str, &str)>, port: u16) -> GstRtspServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/gst_rtsp_server.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script).env("RTSP_PORT", port.to_string());
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

    pub fn url(&self, auth: &str, path: &str) -> String {
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
pub fn reference(dir: &Path) -> Image {
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
