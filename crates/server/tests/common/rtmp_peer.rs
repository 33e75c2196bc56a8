//! An RTMP server for the pull clients to play from: ffmpeg with `-listen 1` (livesnap's own
//! RTMP port takes publishers only). `ffmpeg -i SRC -c copy -f flv -listen 1 URL` serves one
//! play of SRC.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::common::*;

/// A port nothing listens on now (bound and let go).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// True when a socket listens on 127.0.0.1:`port` (read from /proc, so that the check does not
/// take the one connection an `-listen 1` server accepts).
pub fn listening(port: u16) -> bool {
    let needle = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == needle && f[3] == "0A"
        })
}

/// ffmpeg serving one play of `src` as `rtmp://127.0.0.1:PORT/live/cam`; killed when dropped.
pub struct FfmpegRtmpServer {
    child: Child,
    log: std::path::PathBuf,
    pub url: String,
}

impl FfmpegRtmpServer {
    pub fn start(src: &Path, dir: &Path, name: &str) -> FfmpegRtmpServer {
        FfmpegRtmpServer::start_with(src, dir, name, &[])
    }

    /// [`FfmpegRtmpServer::start`] with input options (`-re -stream_loop -1` for a live loop).
    pub fn start_with(
        src: &Path,
        dir: &Path,
        name: &str,
        input_options: &[&str],
    ) -> FfmpegRtmpServer {
        require_ffmpeg();
        let port = free_port();
        let url = format!("rtmp://127.0.0.1:{port}/live/cam");
        let log = dir.join(format!("{name}.ffmpeg-server.log"));
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
            .args(input_options)
            .arg("-i")
            .arg(src)
            .args(["-c", "copy", "-f", "flv", "-listen", "1", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("server log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ffmpeg: {e}"));
        let mut server = FfmpegRtmpServer { child, log, url };
        poll(WAIT, &format!("ffmpeg to listen on port {port}"), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "ffmpeg serving {} exited ({status}) before listening:\n{}",
                    server.url,
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            }
            listening(port).then_some(())
        });
        server
    }
}

impl Drop for FfmpegRtmpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
