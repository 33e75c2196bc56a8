//! RTSP push against the real binary, with ffmpeg as the publisher (ANNOUNCE, SETUP over TCP,
//! RECORD, RTP interleaved): the stream is live as `rtsp`, and its pictures show the source
//! (PSNR against every second of it). Hostile peers alone: garbage, a name already live, a
//! connection that never records, an endless header; each ends alone and the honest stream
//! goes on.

#[path = "common/auto.rs"]
mod auto;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use auto::*;
use common::*;

fn push(src: &Source, url: &str, transport: &str) -> Publisher {
    Publisher::start_args(
        &[
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            src.path.to_str().unwrap(),
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            transport,
            url,
        ],
        url,
    )
}

fn push_tcp(src: &Source, url: &str) -> Publisher {
    push(src, url, "tcp")
}

/// Sends `request` on a fresh connection and reads until the server closes it or `wait`
/// passes; returns what came back.
fn exchange(addr: &str, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn ffmpeg_pushes_h264_over_rtsp_tcp_and_pictures_show_the_source() {
    let work = workdir();
    let src = per_second_source(work.path(), "rtsp", 6);
    let s = Server::start();
    let mut publisher = push_tcp(&src, &s.rtsp_url("live", "cam"));
    let live = s.wait_live("live", "cam", None);
    assert_eq!(live["protocol"], "rtsp", "{live}");
    let info = s.wait_keyframes("live", "cam", None, 2);
    assert_eq!(info["transport"], "tcp", "{info}");
    assert_eq!(info["packets_lost"], 0, "{info}");
    for precision in ["keyframe", "latest"] {
        let shot = s.snapshot_get("live", "cam", "png", &format!("precision={precision}"));
        assert_shows_source(
            &src,
            &shot.resp.body,
            30.0,
            &format!("RTSP push, precision={precision}"),
        );
    }
    let jpeg = s.snapshot_get("live", "cam", "jpg", "width=160");
    assert_eq!(image_info(&jpeg.resp.body), (ImageKind::Jpeg, 160, 90));
    publisher.assert_running();
    drop(publisher);
    s.wait_gone("live", "cam", None);
}

#[test]
fn ffmpeg_pushes_h264_over_rtsp_udp_and_pictures_show_the_source() {
    let work = workdir();
    let src = per_second_source(work.path(), "rtsp-udp", 6);
    let s = Server::start();
    let mut publisher = push(&src, &s.rtsp_url("live", "udp"), "udp");
    let live = s.wait_live("live", "udp", None);
    assert_eq!(live["protocol"], "rtsp", "{live}");
    let info = s.wait_keyframes("live", "udp", None, 2);
    assert_eq!(info["transport"], "udp", "{info}");
    // Loopback loses nothing at this rate.
    assert_eq!(info["packets_lost"], 0, "{info}");
    let shot = s.snapshot_get("live", "udp", "png", "precision=keyframe");
    assert_shows_source(&src, &shot.resp.body, 30.0, "RTSP push over UDP");
    publisher.assert_running();
    assert!(
        !s.log_text().contains("foreign address"),
        "{}",
        s.log_tail(20)
    );
}

#[test]
fn hostile_rtsp_peers_end_alone() {
    let work = workdir();
    let src = per_second_source(work.path(), "honest", 8);
    let s = Server::start_with(&[], &["--rtmp-handshake-timeout-s", "2"]);
    let _honest = push_tcp(&src, &s.rtsp_url("live", "honest"));
    s.wait_keyframes("live", "honest", None, 1);

    // Garbage: the connection is closed.
    let got = exchange(
        &s.rtsp,
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(got.is_empty(), "{got:?}");
    // An ANNOUNCE for the name already live: 403 naming why, CSeq echoed.
    let sdp = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";
    let announce = format!(
        "ANNOUNCE rtsp://{}/live/honest RTSP/1.0\r\nCSeq: 41\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        s.rtsp,
        sdp.len()
    );
    let got = exchange(&s.rtsp, announce.as_bytes(), Duration::from_secs(3));
    assert!(got.starts_with("RTSP/1.0 403"), "{got:?}");
    assert!(got.contains("CSeq: 41"), "{got:?}");
    // A connection that never records is cut at the deadline (2 s here).
    let t = std::time::Instant::now();
    let got = exchange(
        &s.rtsp,
        b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(got.starts_with("RTSP/1.0 200"), "{got:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    // An endless header: cut once it passes the message limit.
    let mut s2 = TcpStream::connect(&s.rtsp).unwrap();
    s2.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Long: ")
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut cut = false;
    for _ in 0..16 {
        if s2.write_all(&chunk).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !cut {
        s2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        cut = matches!(s2.read(&mut b), Ok(0) | Err(_));
    }
    assert!(cut, "an endless header was not cut off");

    // A publisher that set up UDP from port A: datagrams to its server port from port B are
    // dropped and logged once; garbage from A is dropped too.
    let mut c = TcpStream::connect(&s.rtsp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ask = |req: String| -> String {
        c.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let base = format!("rtsp://{}/live/udpforeign", s.rtsp);
    let got = ask(format!(
        "ANNOUNCE {base} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    assert!(got.starts_with("RTSP/1.0 200"), "{got:?}");
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let pa = a.local_addr().unwrap().port();
    let got = ask(format!(
        "SETUP {base}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n\
         Transport: RTP/AVP/UDP;unicast;client_port={pa}-{};mode=record\r\n\r\n",
        pa + 1
    ));
    let server_port: u16 = got
        .split("server_port=")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no server_port in {got:?}"));
    let got = ask(format!("RECORD {base} RTSP/1.0\r\nCSeq: 3\r\n\r\n"));
    assert!(got.starts_with("RTSP/1.0 200"), "{got:?}");
    let to = format!("127.0.0.1:{server_port}");
    for _ in 0..20 {
        b.send_to(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x65, 1, 2], &to)
            .unwrap();
        a.send_to(b"not RTP at all", &to).unwrap();
    }
    poll(WAIT, "the foreign datagrams to be logged", || {
        (s.log_text()
            .matches("UDP datagrams from a foreign address ignored")
            .count()
            == 1)
            .then_some(())
    });
    let v = s.get("/v1/streams/live/udpforeign").json();
    assert_eq!(v["keyframes"], 0, "{v}");
    drop(c);

    // The honest stream went on through all of it.
    let kf = s.get("/v1/streams/live/honest").json()["keyframes"]
        .as_u64()
        .unwrap();
    s.wait_keyframes("live", "honest", None, kf + 1);
    let shot = s.snapshot_get("live", "honest", "png", "precision=keyframe");
    assert_shows_source(
        &src,
        &shot.resp.body,
        30.0,
        "honest RTSP stream after the abuse",
    );
    assert!(s.log_text().contains("rtsp connection ended"));
}

/// ffmpeg re-encodes the per-second source with x265 on the fly and pushes it over RTSP (RFC
/// 7798 packets): with the `ffmpeg` feature the stream is pictured, and the picture shows its
/// second of the source; without it, the stream says which feature is missing.
fn push_h265_tcp(src: &Source, url: &str) -> Publisher {
    Publisher::start_args(
        &[
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            src.path.to_str().unwrap(),
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=25:log-level=error",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            url,
        ],
        url,
    )
}

#[cfg(feature = "ffmpeg")]
#[test]
fn ffmpeg_pushes_h265_over_rtsp_and_pictures_show_the_source() {
    let work = workdir();
    let src = per_second_source(work.path(), "hevc", 6);
    let s = Server::start();
    let _p = push_h265_tcp(&src, &s.rtsp_url("live", "hevc"));
    let info = s.wait_keyframes("live", "hevc", None, 2);
    assert_eq!(info["codec"], "h265", "{info}");
    assert_eq!(info["protocol"], "rtsp", "{info}");
    let shot = s.snapshot_get("live", "hevc", "png", "precision=keyframe");
    assert_shows_source(&src, &shot.resp.body, 30.0, "H.265 over RTSP");
}

#[cfg(not(feature = "ffmpeg"))]
#[test]
fn h265_over_rtsp_without_the_ffmpeg_feature_names_it() {
    let work = workdir();
    let src = per_second_source(work.path(), "hevc", 6);
    let s = Server::start_env(&[("LIVESNAP_SNAPSHOT_TAKING_INTERVAL_MS", "1000")]);
    let _p = push_h265_tcp(&src, &s.rtsp_url("live", "hevc"));
    let info = poll(WAIT, "the H.265 stream to report its error", || {
        let v = s.get("/v1/streams/live/hevc").json();
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("--features ffmpeg"))
            .then_some(v)
    });
    assert!(info["error"].as_str().unwrap().contains("H.265"), "{info}");
    let r = s.get("/v1/streams/live/hevc/snapshot.png");
    assert_eq!(r.status, 503, "{}", r.text());
}
