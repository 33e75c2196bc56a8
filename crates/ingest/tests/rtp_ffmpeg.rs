//! RTP from a sender this project did not write: ffmpeg encodes a clip (lavfi testsrc2), then
//! packetizes it (`-c copy -f rtp`: H.264 with STAP-A and FU-A, H.265 with AP and FU) to a UDP
//! socket bound here. Every access unit of the clip, as `annexb_to_frames` reads the file, must
//! come out of the depacketizer built from ffmpeg's SDP: same count, order, keyframe flags and
//! bytes, and parameter sets equal to the clip's.
//!
//! With `LIVESNAP_WRITE_FUZZ_SEEDS=1` each test also captures a tiny clip in small packets and
//! writes it as seeds of the `rtp_h264` and `rtp_h265` fuzz targets (fuzz/seeds/).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use livesnap_ingest::rtp::{Depacketizer, Event, Packet};
use media::{Codec, Frame, VideoConfig};

/// Packet size ffmpeg is told to use: below the clip's larger NAL units, so they are
/// fragmented, above its parameter sets, so they are aggregated.
const PACKET_SIZE: usize = 1200;
/// The same for the tiny clip of the fuzz seeds.
const SEED_PACKET_SIZE: usize = 300;

/// Panics when ffmpeg is missing: this test never skips.
fn require_ffmpeg() {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`ffmpeg` is required by this test but was not found on PATH \
         (scripts/test installs it: apt-get install ffmpeg)"
    );
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rtp_ffmpeg_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Encodes `frames` frames of testsrc2 with `encoder` into MPEG-TS (which keeps timestamps,
/// B-frames' too, and in-band parameter sets), and copies its video out as a raw Annex B stream
/// of `format`. Returns both files.
fn encode(
    dir: &Path,
    format: &str,
    size: &str,
    frames: u32,
    encoder: &[&str],
) -> (PathBuf, PathBuf) {
    let ts = dir.join("clip.ts");
    let raw = dir.join(format!("clip.{format}"));
    run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-frames:v", &frames.to_string(), "-pix_fmt", "yuv420p"])
        .args(encoder)
        .arg(&ts));
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&ts)
        .args(["-c", "copy", "-f", format])
        .arg(&raw));
    (ts, raw)
}

/// A child process killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What ffmpeg sent: its SDP and every datagram, in arrival order.
struct Capture {
    sdp: String,
    datagrams: Vec<Bytes>,
}

/// Has ffmpeg send `clip` in real time as RTP to a socket bound here, and keeps what arrives.
fn send(dir: &Path, clip: &Path, packet_size: usize) -> Capture {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for a keyframe's burst: a loss here would be the test's, not the depacketizer's.
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let sdp_file = dir.join("stream.sdp");
    let mut ffmpeg = Reaped(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "rtp", "-sdp_file"])
            .arg(&sdp_file)
            .arg(format!("rtp://127.0.0.1:{port}?pkt_size={packet_size}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start ffmpeg"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut exited = None;
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => datagrams.push(Bytes::copy_from_slice(&buf[..n])),
            // Done once ffmpeg has exited and nothing more came for a read timeout.
            Err(_) if exited.is_some() => break,
            Err(_) => {}
        }
        if exited.is_none() {
            exited = ffmpeg.0.try_wait().expect("ffmpeg's status");
            assert!(
                Instant::now() < deadline,
                "ffmpeg is still sending after 60 s"
            );
        }
    }
    assert!(exited.is_some_and(|s| s.success()), "ffmpeg failed");
    let sdp = std::fs::read_to_string(&sdp_file).expect("ffmpeg's SDP");
    Capture { sdp, datagrams }
}

/// The `a=fmtp` value of the SDP's only track.
fn fmtp(sdp: &str) -> &str {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=fmtp:"))
        .expect("an a=fmtp line")
}

/// Depacketizes a capture; returns the last config, the frames and the depacketizer.
fn depacketize(codec: Codec, capture: &Capture) -> (VideoConfig, Vec<Frame>, Depacketizer) {
    let mut d = Depacketizer::new(codec, fmtp(&capture.sdp)).unwrap();
    let mut events = Vec::new();
    for datagram in &capture.datagrams {
        let packet = Packet::parse(datagram.clone()).unwrap();
        assert_eq!(packet.payload_type, 96);
        d.push(packet, &mut events).unwrap();
    }
    d.flush(&mut events).unwrap();
    let mut config = None;
    let mut frames = Vec::new();
    for e in events {
        match e {
            Event::Config(c) => config = Some(c),
            Event::Frame(f) => {
                assert!(config.is_some(), "a frame before the config");
                frames.push(f);
            }
        }
    }
    (config.expect("a config"), frames, d)
}

/// Packet types of the payloads, H.264's (5 bits) or H.265's (6 bits).
fn packet_types(codec: Codec, capture: &Capture) -> Vec<u8> {
    capture
        .datagrams
        .iter()
        .map(|d| {
            let payload = Packet::parse(d.clone()).unwrap().payload;
            match codec {
                Codec::H265 => (payload[0] >> 1) & 0x3f,
                _ => payload[0] & 0x1f,
            }
        })
        .collect()
}

fn count(types: &[u8]) -> std::collections::BTreeMap<u8, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for &t in types {
        *counts.entry(t).or_default() += 1;
    }
    counts
}

/// Frames must be the clip's, in order; timestamps 40 ms apart in presentation order.
fn same_as_source(source: &[Frame], got: &[Frame]) {
    assert_eq!(got.len(), source.len(), "access units");
    for (i, (s, g)) in source.iter().zip(got).enumerate() {
        assert_eq!(g.keyframe, s.keyframe, "keyframe flag of access unit {i}");
        if g.data != s.data {
            let types = |d: &[u8]| {
                media::avc::AvccNals::new(d, 4)
                    .map(|n| {
                        let n = n.unwrap();
                        (n[0], n.len())
                    })
                    .collect::<Vec<_>>()
            };
            panic!(
                "bytes of access unit {i} differ: source {:?} got {:?}",
                types(&s.data),
                types(&g.data)
            );
        }
    }
    let mut pts: Vec<i64> = got.iter().map(|f| f.pts_ms).collect();
    pts.sort();
    let first = pts[0];
    let expected: Vec<i64> = (0..got.len() as i64).map(|i| first + 40 * i).collect();
    assert_eq!(pts, expected, "presentation times");
    assert!(
        got.windows(2).all(|w| w[0].dts_ms <= w[1].dts_ms),
        "dts decreases"
    );
    // The encoders' B-frames make presentation order differ from decode order.
    assert!(got.iter().any(|f| f.pts_ms < f.dts_ms), "no B-frames");
    eprintln!(
        "{} access units matched, {} keyframes",
        got.len(),
        got.iter().filter(|f| f.keyframe).count()
    );
}

/// With `LIVESNAP_WRITE_FUZZ_SEEDS` set: has ffmpeg send a tiny clip (10 frames, 2 GOPs) in
/// small packets, checks it like the others, and writes it as seeds of the fuzz target
/// (fuzz/fuzz_targets/common/rtp.rs has the format): packets alone (in-band parameter sets),
/// with the SDP's fmtp first, and with the fmtp, a small limit and a flush after every packet.
fn write_seeds(target: &str, format: &str, codec: Codec, encoder: &[&str]) {
    if std::env::var_os("LIVESNAP_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = workdir(target);
    let (clip, raw) = encode(&dir, format, "160x120", 10, encoder);
    let capture = send(&dir, &clip, SEED_PACKET_SIZE);
    let source = std::fs::read(&raw).unwrap();
    let source = match codec {
        Codec::H265 => media::hevc::annexb_to_frames(&source).unwrap().1,
        _ => media::avc::annexb_to_frames(&source).unwrap().1,
    };
    let (_, frames, _) = depacketize(codec, &capture);
    same_as_source(&source, &frames);

    let mut packets = Vec::new();
    for datagram in &capture.datagrams {
        packets.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        packets.extend_from_slice(datagram);
    }
    let fmtp = fmtp(&capture.sdp).as_bytes();
    let mut with_fmtp = (fmtp.len() as u16).to_be_bytes().to_vec();
    with_fmtp.extend_from_slice(fmtp);
    with_fmtp.extend_from_slice(&packets);
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    std::fs::create_dir_all(&seeds).unwrap();
    for (name, mode, body) in [
        ("in_band", 0u8, &packets),
        ("sdp", 1, &with_fmtp),
        ("sdp_small_limit_flushes", 7, &with_fmtp),
    ] {
        let mut file = vec![mode];
        file.extend_from_slice(body);
        std::fs::write(seeds.join(format!("ffmpeg_{name}")), file).unwrap();
    }
}

#[test]
fn ffmpeg_h264_over_rtp_comes_out_access_unit_for_access_unit() {
    require_ffmpeg();
    let dir = workdir("h264");
    let encoder = ["-c:v", "libx264", "-g", "25", "-crf", "20"];
    let (clip, raw) = encode(&dir, "h264", "1280x720", 50, &encoder);
    let (source_config, source) = media::avc::annexb_to_frames(&std::fs::read(&raw).unwrap())
        .expect("the clip's access units");
    let capture = send(&dir, &clip, PACKET_SIZE);
    let types = packet_types(Codec::H264, &capture);
    eprintln!("{} packets by type: {:?}", types.len(), count(&types));
    assert!(types.contains(&28), "no FU-A: {:?}", count(&types));
    assert!(types.contains(&24), "no STAP-A: {:?}", count(&types));

    let (config, frames, d) = depacketize(Codec::H264, &capture);
    let VideoConfig::Avc(config) = config else {
        panic!("not H.264: {config:?}");
    };
    // The clip repeats its parameter sets at each keyframe; `annexb_to_frames` keeps every copy.
    assert_eq!(
        (&config.sps[..], &config.pps[..]),
        (&source_config.sps[..1], &source_config.pps[..1])
    );
    same_as_source(&source, &frames);
    let c = d.counters();
    assert_eq!(c.packets, capture.datagrams.len() as u64);
    assert_eq!(
        (
            c.packets_lost,
            c.packets_discarded,
            c.packets_refused,
            c.frames_dropped
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(c.frames, 50);
    assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
    write_seeds(
        "rtp_h264",
        "h264",
        Codec::H264,
        &["-c:v", "libx264", "-g", "5"],
    );
}

#[test]
fn ffmpeg_h265_over_rtp_comes_out_access_unit_for_access_unit() {
    require_ffmpeg();
    let dir = workdir("h265");
    let (clip, raw) = encode(
        &dir,
        "hevc",
        "640x360",
        30,
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=15:min-keyint=15",
        ],
    );
    let (source_config, source) = media::hevc::annexb_to_frames(&std::fs::read(&raw).unwrap())
        .expect("the clip's access units");
    let capture = send(&dir, &clip, PACKET_SIZE);
    let types = packet_types(Codec::H265, &capture);
    eprintln!("{} packets by type: {:?}", types.len(), count(&types));
    assert!(types.contains(&49), "no FU: {:?}", count(&types));
    assert!(types.contains(&48), "no AP: {:?}", count(&types));

    let (config, frames, d) = depacketize(Codec::H265, &capture);
    let VideoConfig::Hevc(config) = config else {
        panic!("not H.265: {config:?}");
    };
    assert_eq!(
        (&config.vps[..], &config.sps[..], &config.pps[..]),
        (
            &source_config.vps[..1],
            &source_config.sps[..1],
            &source_config.pps[..1]
        )
    );
    same_as_source(&source, &frames);
    let c = d.counters();
    assert_eq!(
        (
            c.packets_lost,
            c.packets_discarded,
            c.packets_refused,
            c.frames_dropped
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(c.frames, 30);
    assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
    let x265 = "log-level=error:keyint=5:min-keyint=5";
    write_seeds(
        "rtp_h265",
        "hevc",
        Codec::H265,
        &["-c:v", "libx265", "-x265-params", x265],
    );
}
