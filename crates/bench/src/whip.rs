//! The `whip` scenario: N streams published over WHIP (WebRTC: ICE, DTLS, SRTP, RTP H.264)
//! against N published over RTMP, the same pre-encoded video (the camera input's tags), each on
//! a fresh server with no pictures; the server's CPU per stream over one window each, and the
//! ratio WHIP / RTMP.
//!
//! The WHIP publisher is a str0m client in this process, one thread per stream: a UDP socket on
//! 127.0.0.1:0 with its host candidate, a send-only video m-line with H.264 only, the offer
//! POSTed as `application/sdp` to `/whip/bench/s{i}` (201, the answer, `Location`), then str0m's
//! run loop. Once connected, it writes each access unit at its timestamp's pace, as the RTMP
//! publisher does (looping the input with increasing timestamps): the tag's length-prefixed NAL
//! units in Annex B form, the parameter sets in front of every keyframe, with the payload type
//! whose fmtp says `packetization-mode=1`. Its own CPU (packetizing, SRTP) is this process's,
//! noted as the load generator's, never the server's.
//!
//! Before each window every stream must be live over its protocol (`GET /v1/streams`) and give
//! a picture (`GET /v1/streams/{app}/{stream}/snapshot.jpg`), on both sides alike; the WHIP
//! sessions are ended with `DELETE` of their `Location` afterwards.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::flv::VideoTag;
use crate::harness::{measure, Load, Server};
use crate::publisher::Stats;
use crate::report::{Kind, Row};
use crate::Ctx;

/// The app every WHIP publisher publishes to (RTMP publishers use `live`).
pub const WHIP_APP: &str = "bench";
/// Publisher starts are spread over one GOP, as the RTMP load generator's.
const STAGGER: Duration = Duration::from_secs(2);
/// How long every WHIP publisher gets to connect (ICE and DTLS) after its start.
const CONNECT_WAIT: Duration = Duration::from_secs(15);
/// How long every stream gets to show in `GET /v1/streams` once its publisher is up.
const LIVE_WAIT: Duration = Duration::from_secs(10);
/// Longest a publisher thread blocks on its socket, so that it sees the stop flag.
const MAX_BLOCK: Duration = Duration::from_millis(100);
/// Largest datagram read (str0m's MTU is far below).
const DATAGRAM_BYTES: usize = 2048;

/// One access unit of the input, ready to write: Annex B, the parameter sets before keyframes.
pub struct AccessUnit {
    /// Decode time, ms, from the input's first frame.
    pub dts_ms: u32,
    /// Presentation time minus decode time, ms.
    pub cts_ms: i32,
    pub keyframe: bool,
    pub data: Arc<[u8]>,
}

/// The input's frames as Annex B access units, as a WebRTC camera sends them (SPS and PPS before
/// every IDR; RTMP sends them once, in the sequence header).
pub fn access_units(tags: &[VideoTag]) -> Result<Vec<AccessUnit>, String> {
    let header = tags
        .iter()
        .find(|t| t.is_sequence_header)
        .ok_or("the input has no AVC sequence header")?;
    let config = media::avc::AvcConfig::parse(&header.payload())
        .map_err(|e| format!("the input's AVC sequence header: {e}"))?;
    let first = tags.iter().find(|t| t.is_frame()).map_or(0, |t| t.ts_ms);
    let mut out = Vec::new();
    for t in tags.iter().filter(|t| t.is_frame()) {
        let mut data = Vec::with_capacity(t.data.len() + 64);
        let keyframe = t.is_keyframe();
        if keyframe {
            config.annexb_parameter_sets(&mut data);
        }
        media::avc::append_annexb(&t.payload(), config.nal_length_size, &mut data)
            .map_err(|e| format!("the input's frame at {} ms: {e}", t.ts_ms))?;
        out.push(AccessUnit {
            dts_ms: t.ts_ms.saturating_sub(first),
            cts_ms: t.composition_ms(),
            keyframe,
            data: data.into(),
        });
    }
    if !out.iter().any(|a| a.keyframe) {
        return Err("the input has no keyframe".into());
    }
    Ok(out)
}

/// N RTMP publishers against N WHIP publishers of the same video, each on a fresh server, one
/// window each, no pictures in the windows; `rounds` pairs back to back, in alternating order
/// (RTMP then WHIP, WHIP then RTMP, ...), so that the machine's drift weighs on both sides
/// alike. Rows in the order measured, named by protocol and round.
pub fn run(
    ctx: &Ctx,
    tag: &str,
    tags: &Arc<Vec<VideoTag>>,
    n: usize,
    rounds: usize,
) -> Result<Vec<Row>, String> {
    let aus = Arc::new(access_units(tags)?);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for over_whip in order {
            let row = if over_whip {
                whip_window(ctx, tag, &aus, n, round)?
            } else {
                rtmp_window(ctx, tag, tags, n, round)?
            };
            let (label, what) = if over_whip {
                ("WHIP", "SRTP, RTP H.264")
            } else {
                ("RTMP", "the same video")
            };
            eprintln!(
                "[bench] {tag} whip round {round}: {n} publishers over {label}: server {:.2} % CPU per stream",
                row.cpu_pct / n.max(1) as f64
            );
            rows.push(Row {
                name: format!(
                    "livesnap ingest only, {n} publishers over {label} ({what}), whip round {round}"
                ),
                ..row
            });
        }
    }
    Ok(rows)
}

fn rtmp_window(
    ctx: &Ctx,
    tag: &str,
    tags: &Arc<Vec<VideoTag>>,
    n: usize,
    round: usize,
) -> Result<Row, String> {
    let dir = ctx.tmp.join(format!("{tag}-whip-rtmp-{round}"));
    let server = Server::start(&ctx.livesnap, &dir)?;
    let result = (|| {
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        let r = window(ctx, &server, "live", "rtmp", n, || load.check(n));
        load.stop(&ctx.rt);
        r
    })();
    server.stop(ctx.keep);
    result
}

fn whip_window(
    ctx: &Ctx,
    tag: &str,
    aus: &Arc<Vec<AccessUnit>>,
    n: usize,
    round: usize,
) -> Result<Row, String> {
    let dir = ctx.tmp.join(format!("{tag}-whip-{round}"));
    let server = Server::start(&ctx.livesnap, &dir)?;
    let result = (|| {
        let load = WhipLoad::start(&server.http, n, aus.clone(), ctx.warmup)?;
        let r = window(ctx, &server, WHIP_APP, "whip", n, || load.check(n));
        let ended = load.stop(&server.http);
        let (mut row, ended) = (r?, ended?);
        row.note = format!("{}; {ended}", row.note);
        Ok(row)
    })();
    server.stop(ctx.keep);
    result
}

/// Checks that the `n` streams of `app` are live over `protocol` and that each gives a picture,
/// lets the server settle for the warm-up, then measures one window.
fn window(
    ctx: &Ctx,
    server: &Server,
    app: &str,
    protocol: &str,
    n: usize,
    check: impl Fn() -> Result<String, String>,
) -> Result<Row, String> {
    wait_live(server, app, protocol, n)?;
    let mut conn = crate::http::Conn::new(&server.http);
    for i in 0..n {
        let path = format!("/v1/streams/{app}/s{i}/snapshot.jpg");
        let r = conn.get(&path)?;
        if r.status != 200 || !r.body.starts_with(&[0xFF, 0xD8]) {
            return Err(format!(
                "GET {path}: {} ({} bytes, not a JPEG): {}",
                r.status,
                r.body.len(),
                String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
            ));
        }
    }
    std::thread::sleep(ctx.warmup);
    let before = totals(server)?;
    let m = measure(&[server.pid()], ctx.window, ctx.tck);
    let after = totals(server)?;
    let pacing = check()?;
    if after.live != n {
        return Err(format!(
            "{protocol}: {} of {n} streams live at the end of the window",
            after.live
        ));
    }
    let delta = |f: fn(&Totals) -> u64| f(&after).saturating_sub(f(&before));
    let fps = delta(|t| t.frames) as f64 / ctx.window.as_secs_f64() / n as f64;
    Ok(Row {
        name: String::new(),
        kind: Kind::Whip,
        streams: n,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: None,
        note: format!(
            "{fps:.1} fps received per stream, {} frames dropped, {} keyframes asked of the publishers; {pacing}; a picture of every stream before the window; {}",
            delta(|t| t.dropped),
            delta(|t| t.keyframe_requests),
            m.note()
        ),
        auto: None,
        on_demand: None,
    })
}

/// Sums over the live streams of `GET /v1/streams`.
struct Totals {
    live: usize,
    frames: u64,
    /// Frames not kept (the RTP depacketizer's drops after a loss among them).
    dropped: u64,
    /// Keyframes the server asked of WHIP publishers.
    keyframe_requests: u64,
}

fn totals(server: &Server) -> Result<Totals, String> {
    let v = server.get_json("/v1/streams")?;
    let streams = v["streams"]
        .as_array()
        .ok_or_else(|| format!("/v1/streams has no streams array: {v}"))?;
    let sum = |field: &str| streams.iter().filter_map(|s| s[field].as_u64()).sum();
    Ok(Totals {
        live: streams.len(),
        frames: sum("frames"),
        dropped: sum("frames_dropped"),
        keyframe_requests: sum("keyframe_requests"),
    })
}

/// Waits until `GET /v1/streams` lists `n` streams of `app`, all over `protocol`.
fn wait_live(server: &Server, app: &str, protocol: &str, n: usize) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let v = server.get_json("/v1/streams")?;
        let streams = v["streams"].as_array().cloned().unwrap_or_default();
        let ours: Vec<&serde_json::Value> = streams.iter().filter(|s| s["app"] == app).collect();
        let live = ours.iter().filter(|s| s["protocol"] == protocol).count();
        if live == n && ours.len() == n {
            return Ok(());
        }
        if start.elapsed() > LIVE_WAIT {
            let seen: Vec<String> = ours
                .iter()
                .map(|s| format!("{} over {}", s["stream"], s["protocol"]))
                .collect();
            return Err(format!(
                "only {live} of {n} streams of app {app} are live over {protocol} after {} s: {seen:?}",
                LIVE_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// N WHIP publishers (`bench/s0` .. `bench/s{N-1}`), one thread each.
pub struct WhipLoad {
    threads: Vec<JoinHandle<Result<(), String>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    /// Each publisher's session resource (`Location`), once answered.
    locations: Vec<Arc<Mutex<Option<String>>>>,
    started: Instant,
    step: Duration,
}

impl WhipLoad {
    /// Starts `n` publishers to the server at `http`, spread over [`STAGGER`], and waits until
    /// every one is connected and `warmup` (from the first start, at least the stagger plus one
    /// second) has passed.
    pub fn start(
        http: &str,
        n: usize,
        aus: Arc<Vec<AccessUnit>>,
        warmup: Duration,
    ) -> Result<WhipLoad, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let step = STAGGER / n.max(1) as u32;
        let mut locations = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let location = Arc::new(Mutex::new(None));
            locations.push(location.clone());
            let (http, aus, stats, stop) =
                (http.to_string(), aus.clone(), stats.clone(), stop.clone());
            let publisher = Publisher {
                http,
                path: format!("/whip/{WHIP_APP}/s{i}"),
                aus,
                stats,
                stop,
                location,
            };
            let thread = std::thread::Builder::new()
                .name(format!("whip-s{i}"))
                .spawn(move || {
                    std::thread::sleep(step * i as u32);
                    publisher.run()
                })
                .map_err(|e| format!("cannot start a publisher thread: {e}"))?;
            threads.push(thread);
        }
        let mut load = WhipLoad {
            threads,
            stop,
            stats,
            locations,
            started: Instant::now(),
            step,
        };
        let settle = warmup.max(STAGGER + Duration::from_secs(1));
        loop {
            let up = load.stats.publishing.load(Ordering::Relaxed) as usize;
            let elapsed = load.started.elapsed();
            if up == n && elapsed >= settle {
                return Ok(load);
            }
            if let Some(i) = load.threads.iter().position(|t| t.is_finished()) {
                let t = load.threads.swap_remove(i);
                let why = match t.join() {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "ended".into(),
                    Err(_) => "panicked".into(),
                };
                let _ = load.stop("");
                return Err(format!("a WHIP publisher failed: {why}"));
            }
            if elapsed > STAGGER + CONNECT_WAIT {
                let _ = load.stop("");
                return Err(format!(
                    "only {up} of {n} WHIP publishers connected after {:.0} s",
                    elapsed.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails when a publisher died; otherwise describes the pacing.
    pub fn check(&self, n: usize) -> Result<String, String> {
        let dead = self.threads.iter().filter(|t| t.is_finished()).count();
        if dead > 0 {
            return Err(format!(
                "{dead} of {n} WHIP publishers stopped during the window"
            ));
        }
        let mean_delay = self.step.as_secs_f64() * (n as f64 - 1.0) / 2.0;
        let fps = self.stats.tags_sent.load(Ordering::Relaxed) as f64
            / (self.started.elapsed().as_secs_f64() - mean_delay)
            / n as f64;
        Ok(format!(
            "{fps:.1} fps sent per stream, max lateness {} ms",
            self.stats.max_late_ms.load(Ordering::Relaxed)
        ))
    }

    /// Stops the publishers, then ends their sessions with `DELETE` of each `Location` on the
    /// server at `http` (none when empty). Says how many sessions were ended.
    pub fn stop(self, http: &str) -> Result<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        if http.is_empty() {
            return Ok(String::new());
        }
        let mut ended = 0;
        for l in &self.locations {
            let Some(location) = l.lock().map_or(None, |l| l.clone()) else {
                continue;
            };
            let (status, body) = crate::http::request(http, "DELETE", &location, None)?;
            if !(200..300).contains(&status) {
                return Err(format!("DELETE {location}: {status} {body}"));
            }
            ended += 1;
        }
        Ok(format!("{ended} WHIP sessions ended with DELETE"))
    }
}

/// One WHIP publisher.
struct Publisher {
    http: String,
    path: String,
    aus: Arc<Vec<AccessUnit>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    location: Arc<Mutex<Option<String>>>,
}

impl Publisher {
    /// Offers, connects, and writes the access units at their pace until stopped.
    fn run(self) -> Result<(), String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("UDP bind: {e}"))?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        let mut ev = Events::default();
        drain(&mut rtc, &socket, &mut ev)?;
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().ok_or("str0m made no offer")?;
        drain(&mut rtc, &socket, &mut ev)?;

        let (status, headers, body) = crate::http::request_typed(
            &self.http,
            "POST",
            &self.path,
            "application/sdp",
            Some(&offer.to_sdp_string()),
        )?;
        if status != 201 {
            return Err(format!("POST {}: {status} {body}", self.path));
        }
        let location = headers
            .iter()
            .find(|(n, _)| n == "location")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("POST {}: 201 without Location", self.path))?;
        if let Ok(mut l) = self.location.lock() {
            *l = Some(location);
        }
        let answer = SdpAnswer::from_sdp_string(&body)
            .map_err(|e| format!("POST {}: the answer: {e}: {body}", self.path))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("accept_answer: {e}"))?;
        self.stream(rtc, socket, local, mid, ev)
    }

    /// str0m's run loop: every mutation (a datagram, a timeout, a write) is followed by a drain
    /// of `poll_output` to its `Timeout`; access units are written at their due times once
    /// connected.
    fn stream(
        &self,
        mut rtc: Rtc,
        socket: UdpSocket,
        local: SocketAddr,
        mid: Mid,
        mut ev: Events,
    ) -> Result<(), String> {
        let aus = &self.aus;
        let last = aus.iter().map(|a| a.dts_ms).max().unwrap_or(0);
        // One loop lasts the input's duration plus one frame interval (30 fps), as RTMP's.
        let loop_ms = u64::from(last) + 33;
        let give_up = Instant::now() + CONNECT_WAIT;
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        let mut started: Option<(Instant, Pt)> = None;
        let (mut next, mut lap) = (0usize, 0u64);
        loop {
            let timeout = drain(&mut rtc, &socket, &mut ev)?;
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if ev.closed || !rtc.is_alive() {
                return Err(format!("{}: the WebRTC session closed", self.path));
            }
            let now = Instant::now();
            if started.is_none() && ev.connected {
                let pt = h264_pt(&mut rtc, mid)?;
                started = Some((now, pt));
                self.stats.publishing.fetch_add(1, Ordering::Relaxed);
            }
            if started.is_none() && now > give_up {
                return Err(format!(
                    "{}: not connected within {} s",
                    self.path,
                    CONNECT_WAIT.as_secs()
                ));
            }
            let mut wake = timeout.min(now + MAX_BLOCK);
            if let Some((start, pt)) = started {
                let au = &aus[next];
                let dts = lap * loop_ms + u64::from(au.dts_ms);
                let due = start + Duration::from_millis(dts);
                if now >= due {
                    let late = now.duration_since(due).as_millis() as u64;
                    self.stats.max_late_ms.fetch_max(late, Ordering::Relaxed);
                    let pts_ms = (dts as i64 + i64::from(au.cts_ms)).max(0) as u64;
                    let writer = rtc.writer(mid).ok_or("no writer for the video")?;
                    writer
                        .write(pt, due, MediaTime::from_90khz(pts_ms * 90), au.data.clone())
                        .map_err(|e| format!("write: {e}"))?;
                    self.stats.tags_sent.fetch_add(1, Ordering::Relaxed);
                    next += 1;
                    if next == aus.len() {
                        next = 0;
                        lap += 1;
                    }
                    continue;
                }
                wake = wake.min(due);
            }
            if timeout <= now {
                rtc.handle_input(Input::Timeout(now))
                    .map_err(|e| format!("str0m: {e}"))?;
                continue;
            }
            let wait = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            socket
                .set_read_timeout(Some(wait))
                .map_err(|e| e.to_string())?;
            match socket.recv_from(&mut buf) {
                Ok((len, source)) => {
                    let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..len])
                    else {
                        continue; // Not STUN, DTLS or RTP: nothing a peer should send.
                    };
                    rtc.handle_input(Input::Receive(Instant::now(), receive))
                        .map_err(|e| format!("str0m: {e}"))?;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    rtc.handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| format!("str0m: {e}"))?;
                }
                Err(e) => return Err(format!("UDP receive: {e}")),
            }
        }
    }
}

/// What the drains saw.
#[derive(Default)]
struct Events {
    connected: bool,
    closed: bool,
}

/// Drains `poll_output` until its `Timeout` (the single-mutation invariant): sends the
/// datagrams, notes the events. Returns the deadline, at least 1 ms ahead (a subsystem that
/// stays due would otherwise spin the loop).
fn drain(rtc: &mut Rtc, socket: &UdpSocket, ev: &mut Events) -> Result<Instant, String> {
    loop {
        match rtc.poll_output().map_err(|e| format!("str0m: {e}"))? {
            Output::Timeout(t) => return Ok(t.max(Instant::now() + Duration::from_millis(1))),
            Output::Transmit(t) => {
                // UDP: a full send buffer loses the datagram, as the network could.
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Output::Event(Event::Connected) => ev.connected = true,
            Output::Event(Event::Closed) => ev.closed = true,
            // Keyframe requests (the input is replayed, it cannot make one), stats...
            Output::Event(_) => {}
        }
    }
}

/// The answer's H.264 payload type with `packetization-mode=1`.
fn h264_pt(rtc: &mut Rtc, mid: Mid) -> Result<Pt, String> {
    let writer = rtc.writer(mid).ok_or("no writer for the video")?;
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::H264 && p.spec().format.packetization_mode == Some(1))
        .map(|p| p.pt());
    pt.ok_or_else(|| "the answer has no H.264 with packetization-mode=1".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn access_units_are_annexb_with_parameter_sets_before_keyframes() {
        // avcC: version 1, High, level 3.1, 4-byte lengths, one SPS, one PPS.
        let mut record = vec![
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 1, 2, 3, 1, 0, 2, 0x68, 9,
        ];
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.append(&mut record);
        let frame = |first: u8, cts: u8, nal: &[u8]| {
            let mut d = vec![first, 1, 0, 0, cts];
            d.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            d.extend_from_slice(nal);
            Bytes::from(d)
        };
        let tag = |ts_ms, data, is_sequence_header| VideoTag {
            ts_ms,
            data,
            is_sequence_header,
            is_end_of_sequence: false,
        };
        let tags = vec![
            tag(100, Bytes::from(header), true),
            tag(100, frame(0x17, 66, &[0x65, 7]), false),
            tag(133, frame(0x27, 0, &[0x41, 8]), false),
        ];
        let aus = access_units(&tags).unwrap();
        assert_eq!(aus.len(), 2);
        assert!(aus[0].keyframe && !aus[1].keyframe);
        assert_eq!((aus[0].dts_ms, aus[0].cts_ms), (0, 66));
        assert_eq!(aus[1].dts_ms, 33);
        assert_eq!(
            &aus[0].data[..],
            &[0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 9, 0, 0, 0, 1, 0x65, 7]
        );
        assert_eq!(&aus[1].data[..], &[0, 0, 0, 1, 0x41, 8]);
    }
}
