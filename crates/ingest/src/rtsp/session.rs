//! One RTSP publisher's connection (RFC 2326, RECORD), sans-IO: bytes in, events and response
//! bytes out. Requests and interleaved `$` frames are read with `rtsp-types`; the answers are
//! written here.
//!
//! The order is OPTIONS (any time), ANNOUNCE with an SDP naming the stream, one SETUP per
//! track, RECORD; then RTP and RTCP arrive interleaved on the TCP connection, mixed with
//! requests (GET_PARAMETER / SET_PARAMETER keep-alives, TEARDOWN), or in UDP datagrams to
//! ports the host allocated. What the session cannot decide alone (may this stream be
//! published? which UDP ports?) it asks its [`Host`].
//!
//! Interop, as other servers' trackers report it: the Transport `mode` is `record` (ffmpeg) or
//! `RECORD` (GStreamer), quoted or not, and may be absent; SETUP URLs are the track's control
//! (`streamid=0`, `stream=0`, `trackID=1`) relative to the ANNOUNCE URL or absolute, with or
//! without the query; `$` frames follow RECORD's response at once; CSeq is always echoed.

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::headers::{self, RtpLowerTransport, Transport, TransportMode, Transports};
use rtsp_types::{Message, Method, ParseError, Request};

use super::sdp::{self, Sdp};
use crate::{Error, Result};

/// Largest RTSP message buffered (a request with its body, or an interleaved frame, which is at
/// most 65 539 bytes); a peer that sends more without completing one is cut off.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// How long a session lives without any request or packet, as announced in `Session:`.
pub const SESSION_TIMEOUT_S: u64 = 60;
/// What OPTIONS answers.
const PUBLIC: &str = "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// What the session asks of the server it runs in.
pub trait Host {
    /// ANNOUNCE of `url` described by `sdp`: publish it, or say why not.
    fn announce(&mut self, url: &str, sdp: &Sdp) -> std::result::Result<(), Refusal>;
    /// SETUP of `track` over UDP, the publisher sending from its `client` RTP and RTCP ports:
    /// the server's RTP and RTCP ports for it, or why not (answered `461`, and clients then try
    /// TCP).
    fn setup_udp(
        &mut self,
        track: usize,
        client: (u16, u16),
    ) -> std::result::Result<(u16, u16), String>;
}

/// Why the host refused an ANNOUNCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not this stream (its name is live already, the server is full, a bad name): `403`.
    Forbidden(String),
    /// The publish is not signed as `publish_secret` asks: `401`.
    Unauthorized(String),
}

/// What happened, for the glue to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes to send to the publisher (responses), in order.
    Send(Vec<u8>),
    /// RECORD was accepted: the publish is live.
    Recording,
    /// An RTP packet of track `track` (the index of its `m=` section).
    Rtp {
        /// Track index.
        track: usize,
        /// The packet.
        packet: Bytes,
    },
    /// An RTCP packet: the publisher is alive; its content is not read.
    Rtcp,
    /// TEARDOWN: the publish ends.
    Teardown,
}

/// Where a track's packets arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// In `$` frames on these channels of the TCP connection.
    Interleaved { rtp: u8, rtcp: u8 },
    /// In UDP datagrams to ports the host allocated.
    Udp,
}

impl Setup {
    fn channels(self) -> Option<(u8, u8)> {
        match self {
            Setup::Interleaved { rtp, rtcp } => Some((rtp, rtcp)),
            Setup::Udp => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing announced yet.
    Init,
    /// ANNOUNCE accepted: tracks may be set up.
    Announced,
    /// RECORD accepted: media flows.
    Recording,
}

/// One connection's RTSP state.
#[derive(Debug)]
pub struct Session {
    buf: BytesMut,
    state: State,
    id: String,
    sdp: Sdp,
    /// Per `m=` section of the SDP: where its packets arrive, once set up.
    setups: Vec<Option<Setup>>,
    /// `$` frames on channels no track set up, since the start.
    stray_frames: u64,
}

impl Session {
    /// A session whose `Session:` id is `id` (chosen by the glue: unique per connection).
    pub fn new(id: String) -> Session {
        Session {
            buf: BytesMut::new(),
            state: State::Init,
            id,
            sdp: Sdp::default(),
            setups: Vec::new(),
            stray_frames: 0,
        }
    }

    /// The SDP of the ANNOUNCE (empty before it).
    pub fn sdp(&self) -> &Sdp {
        &self.sdp
    }

    /// Whether RECORD was accepted.
    pub fn recording(&self) -> bool {
        self.state == State::Recording
    }

    /// Interleaved frames that arrived on a channel no SETUP named.
    pub fn stray_frames(&self) -> u64 {
        self.stray_frames
    }

    /// Takes bytes from the connection; returns what they made happen. An error ends the
    /// connection (after the bytes of any `Send` before it, which the caller may still write).
    pub fn feed(&mut self, data: &[u8], host: &mut dyn Host) -> Result<Vec<Event>> {
        self.buf.extend_from_slice(data);
        let mut events = Vec::new();
        loop {
            if self.buf.is_empty() {
                break;
            }
            let parsed = Message::<Vec<u8>>::parse(&self.buf[..]);
            let (message, used) = match parsed {
                Ok(m) => m,
                Err(ParseError::Incomplete(_)) => {
                    if self.buf.len() > MAX_MESSAGE_BYTES {
                        return Err(Error::TooLarge {
                            what: "RTSP message",
                            size: self.buf.len(),
                            limit: MAX_MESSAGE_BYTES,
                        });
                    }
                    break;
                }
                Err(ParseError::Error) => {
                    let head = &self.buf[..self.buf.len().min(16)];
                    return Err(Error::Rtsp(format!(
                        "not an RTSP message or interleaved frame (starts {:?})",
                        String::from_utf8_lossy(head)
                    )));
                }
            };
            self.buf.advance(used);
            match message {
                Message::Request(request) => {
                    let (response, event) = self.request(&request, host);
                    events.push(Event::Send(response));
                    events.extend(event);
                }
                Message::Data(data) => {
                    let channel = data.channel_id();
                    let channels = |t: usize| self.setups[t].and_then(Setup::channels);
                    let track = (0..self.setups.len())
                        .find(|&t| channels(t).is_some_and(|(a, b)| a == channel || b == channel));
                    match track {
                        Some(t) if channels(t).is_some_and(|(a, _)| a == channel) => {
                            events.push(Event::Rtp {
                                track: t,
                                packet: Bytes::from(data.into_body()),
                            })
                        }
                        Some(_) => events.push(Event::Rtcp),
                        None => self.stray_frames += 1,
                    }
                }
                // A response from a publisher (to nothing we asked): ignored.
                Message::Response(_) => {}
            }
        }
        Ok(events)
    }

    /// Answers one request; the response's bytes and what it made happen.
    fn request(&mut self, req: &Request<Vec<u8>>, host: &mut dyn Host) -> (Vec<u8>, Option<Event>) {
        let Some(cseq) = req
            .header(&headers::CSEQ)
            .map(|v| v.as_str().trim().to_string())
        else {
            return (response(400, "Bad Request", None, &[], ""), None);
        };
        let reply = |status: u16, reason: &str, extra: &[(&str, String)]| {
            response(status, reason, Some(&cseq), extra, "")
        };
        let session = (
            "Session",
            format!("{};timeout={SESSION_TIMEOUT_S}", self.id),
        );
        match req.method() {
            Method::Options => (reply(200, "OK", &[("Public", PUBLIC.into())]), None),
            Method::Announce => {
                if self.state != State::Init {
                    return (reply(455, "Method Not Valid in This State", &[]), None);
                }
                let Some(url) = req.request_uri().map(|u| u.to_string()) else {
                    return (reply(400, "Bad Request", &[]), None);
                };
                let sdp = match sdp::parse(req.body()) {
                    Ok(s) => s,
                    Err(e) => return (reply(400, &format!("Bad Request ({e})"), &[]), None),
                };
                if !sdp
                    .media
                    .iter()
                    .any(|m| m.kind.eq_ignore_ascii_case("video"))
                {
                    return (reply(415, "Unsupported Media Type (no video)", &[]), None);
                }
                match host.announce(&url, &sdp) {
                    Ok(()) => {}
                    Err(Refusal::Forbidden(why)) => {
                        return (reply(403, &format!("Forbidden ({why})"), &[]), None)
                    }
                    // RFC 2326 asks a 401 to name a scheme; the signed URL is what is missing,
                    // so it names a realm no credentials satisfy.
                    Err(Refusal::Unauthorized(why)) => {
                        let challenge = (
                            "WWW-Authenticate",
                            "Basic realm=\"livesnap signed publish URL\"".into(),
                        );
                        return (
                            reply(401, &format!("Unauthorized ({why})"), &[challenge]),
                            None,
                        );
                    }
                }
                self.setups = vec![None; sdp.media.len()];
                self.sdp = sdp;
                self.state = State::Announced;
                (reply(200, "OK", &[]), None)
            }
            Method::Setup => {
                if self.state != State::Announced {
                    return (reply(455, "Method Not Valid in This State", &[]), None);
                }
                let uri = req.request_uri().map(|u| u.to_string()).unwrap_or_default();
                let Some(track) = self.track_for(&uri) else {
                    return (reply(404, "Not Found (no such track)", &[]), None);
                };
                let transports = match req.typed_header::<Transports>() {
                    Ok(Some(t)) => t,
                    _ => return (reply(400, "Bad Request (Transport)", &[]), None),
                };
                // The first transport offered that this server takes: interleaved TCP, or UDP
                // with the publisher's ports.
                let mut refused = "use RTP/AVP/TCP or RTP/AVP/UDP with client_port".to_string();
                for t in transports.iter() {
                    let Transport::Rtp(rtp) = t else { continue };
                    if !rtp.params.mode.iter().all(is_record) {
                        continue;
                    }
                    match rtp.lower_transport {
                        Some(RtpLowerTransport::Tcp) => {
                            let (a, b) = rtp
                                .params
                                .interleaved
                                .unwrap_or(((2 * track) as u8, Some((2 * track + 1) as u8)));
                            let (rtp_ch, rtcp_ch) = (a, b.unwrap_or(a.wrapping_add(1)));
                            let taken = self
                                .setups
                                .iter()
                                .flatten()
                                .filter_map(|s| s.channels())
                                .any(|(x, y)| [x, y].iter().any(|c| *c == rtp_ch || *c == rtcp_ch));
                            if taken {
                                refused = "interleaved channels in use".into();
                                continue;
                            }
                            self.setups[track] = Some(Setup::Interleaved {
                                rtp: rtp_ch,
                                rtcp: rtcp_ch,
                            });
                            let transport = format!(
                                "RTP/AVP/TCP;unicast;interleaved={rtp_ch}-{rtcp_ch};mode=record"
                            );
                            return (reply(200, "OK", &[("Transport", transport), session]), None);
                        }
                        None | Some(RtpLowerTransport::Udp) => {
                            let Some((a, b)) = rtp.params.client_port else {
                                continue;
                            };
                            let client = (a, b.unwrap_or(a.wrapping_add(1)));
                            match host.setup_udp(track, client) {
                                Ok((x, y)) => {
                                    self.setups[track] = Some(Setup::Udp);
                                    let transport = format!(
                                        "RTP/AVP/UDP;unicast;client_port={}-{};server_port={x}-{y};mode=record",
                                        client.0, client.1
                                    );
                                    return (
                                        reply(200, "OK", &[("Transport", transport), session]),
                                        None,
                                    );
                                }
                                Err(why) => refused = why,
                            }
                        }
                        Some(_) => {}
                    }
                }
                (
                    reply(461, &format!("Unsupported Transport ({refused})"), &[]),
                    None,
                )
            }
            Method::Record => {
                if self.state != State::Announced || self.setups.iter().all(Option::is_none) {
                    return (reply(455, "Method Not Valid in This State", &[]), None);
                }
                self.state = State::Recording;
                (reply(200, "OK", &[session]), Some(Event::Recording))
            }
            Method::Teardown => (reply(200, "OK", &[session]), Some(Event::Teardown)),
            Method::GetParameter | Method::SetParameter => (reply(200, "OK", &[session]), None),
            Method::Describe | Method::Play | Method::Pause => (
                reply(405, "Method Not Allowed", &[("Allow", PUBLIC.into())]),
                None,
            ),
            _ => (reply(501, "Not Implemented", &[]), None),
        }
    }

    /// The track a SETUP URL names: the `m=` section whose control it ends with (absolute or
    /// relative, query ignored), else the next one not yet set up.
    fn track_for(&self, uri: &str) -> Option<usize> {
        let path = uri.split('?').next().unwrap_or(uri).trim_end_matches('/');
        let by_control = self.sdp.media.iter().position(|m| {
            m.control.as_deref().is_some_and(|c| {
                let c = c.split('?').next().unwrap_or(c).trim_end_matches('/');
                let tail = format!("/{c}");
                !c.is_empty()
                    && c != "*"
                    && (path == c || path.ends_with(&tail) || uri.ends_with(&tail))
            })
        });
        by_control.or_else(|| self.setups.iter().position(Option::is_none))
    }
}

/// `mode` compared without case (`record`, `RECORD`, `Record`).
fn is_record(mode: &TransportMode) -> bool {
    match mode {
        TransportMode::Record => true,
        TransportMode::Other(m) => m.trim_matches('"').eq_ignore_ascii_case("record"),
        TransportMode::Play => false,
    }
}

/// An RTSP/1.0 response.
fn response(
    status: u16,
    reason: &str,
    cseq: Option<&str>,
    headers: &[(&str, String)],
    body: &str,
) -> Vec<u8> {
    // Reasons carry parts of what the peer sent (an SDP error): one line, no control bytes.
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let mut out = format!("RTSP/1.0 {status} {reason}\r\n");
    if let Some(cseq) = cseq {
        out.push_str(&format!("CSeq: {cseq}\r\n"));
    }
    out.push_str("Server: livesnap\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        announced: Vec<String>,
        refuse: bool,
        unsigned: bool,
        udp: Vec<(usize, (u16, u16))>,
        no_udp: bool,
    }

    impl Host for Fake {
        fn announce(&mut self, url: &str, _: &Sdp) -> std::result::Result<(), Refusal> {
            if self.refuse {
                return Err(Refusal::Forbidden("already live".into()));
            }
            if self.unsigned {
                return Err(Refusal::Unauthorized("not signed".into()));
            }
            self.announced.push(url.to_string());
            Ok(())
        }

        fn setup_udp(
            &mut self,
            track: usize,
            client: (u16, u16),
        ) -> std::result::Result<(u16, u16), String> {
            if self.no_udp {
                return Err("no free UDP ports".into());
            }
            self.udp.push((track, client));
            Ok((30000, 30001))
        }
    }

    const SDP: &str =
        "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";

    fn announce(cseq: u32) -> Vec<u8> {
        format!(
            "ANNOUNCE rtsp://127.0.0.1:8554/live/cam1?domain=a.example RTSP/1.0\r\nCSeq: {cseq}\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        )
        .into_bytes()
    }

    fn sent(events: &[Event]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ffmpegs_publish_over_tcp_then_interleaved_frames() {
        let mut s = Session::new("abc".into());
        let mut host = Fake::default();
        let ev = s
            .feed(
                b"OPTIONS rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 1\r\n\r\n",
                &mut host,
            )
            .unwrap();
        assert!(
            sent(&ev).starts_with("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"),
            "{}",
            sent(&ev)
        );
        assert!(sent(&ev).contains("ANNOUNCE"));
        let ev = s.feed(&announce(2), &mut host).unwrap();
        assert!(sent(&ev).contains("200 OK\r\nCSeq: 2"));
        assert_eq!(
            host.announced,
            ["rtsp://127.0.0.1:8554/live/cam1?domain=a.example"]
        );
        // ffmpeg's SETUP: the control URL appended to the ANNOUNCE URL, query and all.
        let setup =
            b"SETUP rtsp://127.0.0.1:8554/live/cam1?domain=a.example/streamid=0 RTSP/1.0\r\n\
            Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\nCSeq: 3\r\n\r\n";
        let ev = s.feed(setup, &mut host).unwrap();
        let text = sent(&ev);
        assert!(text.contains("200 OK\r\nCSeq: 3"), "{text}");
        assert!(text.contains("interleaved=0-1"), "{text}");
        assert!(text.contains("Session: abc;timeout=60"), "{text}");
        // RECORD, with the first RTP frame in the same read.
        let mut bytes =
            b"RECORD rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 4\r\nSession: abc\r\n\r\n"
                .to_vec();
        bytes.extend_from_slice(&[b'$', 0, 0, 3, 0x80, 0x60, 0x01]);
        bytes.extend_from_slice(&[b'$', 1, 0, 2, 0x81, 0xc8]);
        bytes.extend_from_slice(&[b'$', 9, 0, 1, 0xff]);
        let ev = s.feed(&bytes, &mut host).unwrap();
        assert!(sent(&ev).contains("200 OK\r\nCSeq: 4"));
        assert!(ev.contains(&Event::Recording));
        assert!(ev.contains(&Event::Rtp {
            track: 0,
            packet: Bytes::from_static(&[0x80, 0x60, 0x01])
        }));
        assert!(ev.contains(&Event::Rtcp));
        assert_eq!(s.stray_frames(), 1);
        // A keep-alive mixed with frames, split at odd places.
        let ka = b"GET_PARAMETER rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 5\r\n\r\n$\x00\x00\x01\x80";
        let (a, b) = ka.split_at(20);
        assert!(s.feed(a, &mut host).unwrap().is_empty());
        let ev = s.feed(b, &mut host).unwrap();
        assert!(sent(&ev).contains("CSeq: 5"));
        assert_eq!(ev.len(), 2);
        let ev = s
            .feed(
                b"TEARDOWN rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 6\r\n\r\n",
                &mut host,
            )
            .unwrap();
        assert!(ev.contains(&Event::Teardown));
    }

    /// What ffmpeg really sends (testdata/rtsp/ffmpeg_record_tcp.bin), in reads of every size:
    /// it records, every interleaved frame is an RTP packet of track 0 or RTCP, and it ends with
    /// TEARDOWN.
    #[test]
    fn ffmpegs_captured_publish_in_any_split() {
        let capture = include_bytes!("../../../../testdata/rtsp/ffmpeg_record_tcp.bin");
        for piece in [1, 7, 100, 1500, capture.len()] {
            let mut s = Session::new("cap".into());
            let mut host = Fake::default();
            let (mut rtp, mut rtcp, mut recording, mut sends, mut teardown) =
                (0, 0, false, 0, false);
            for chunk in capture.chunks(piece) {
                for e in s.feed(chunk, &mut host).unwrap() {
                    match e {
                        Event::Rtp { track: 0, packet } => {
                            assert_eq!(packet[0] >> 6, 2, "RTP version 2");
                            rtp += 1;
                        }
                        Event::Rtcp => rtcp += 1,
                        Event::Recording => recording = true,
                        Event::Teardown => teardown = true,
                        Event::Send(b) => {
                            assert!(
                                b.starts_with(b"RTSP/1.0 200 OK"),
                                "{}",
                                String::from_utf8_lossy(&b)
                            );
                            sends += 1;
                        }
                        e => panic!("{e:?}"),
                    }
                }
            }
            assert!(recording && teardown);
            assert_eq!(sends, 5, "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN");
            assert!(rtp > 50, "{rtp} RTP packets");
            assert!(rtcp >= 1);
            assert_eq!(s.stray_frames(), 0);
            assert_eq!(
                host.announced,
                [format!("rtsp://127.0.0.1:36639/live/cam1")]
            );
        }
    }

    #[test]
    fn gstreamers_uppercase_mode_and_absolute_control_urls() {
        let sdp = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                   a=control:rtsp://127.0.0.1:8554/live/cam1/stream=0\r\n";
        let mut s = Session::new("x".into());
        let mut host = Fake::default();
        let ann = format!(
            "ANNOUNCE rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        s.feed(ann.as_bytes(), &mut host).unwrap();
        let setup = b"SETUP rtsp://127.0.0.1:8554/live/cam1/stream=0 RTSP/1.0\r\nCSeq: 2\r\n\
            Transport: RTP/AVP/TCP;unicast;interleaved=4-5;mode=\"RECORD\"\r\n\r\n";
        let text = sent(&s.feed(setup, &mut host).unwrap());
        assert!(
            text.contains("200 OK") && text.contains("interleaved=4-5"),
            "{text}"
        );
    }

    #[test]
    fn udp_setup_gets_the_hosts_server_ports() {
        let mut s = Session::new("u".into());
        let mut host = Fake::default();
        s.feed(&announce(1), &mut host).unwrap();
        let setup = b"SETUP rtsp://127.0.0.1:8554/live/cam1/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n\
            Transport: RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record\r\n\r\n";
        let text = sent(&s.feed(setup, &mut host).unwrap());
        assert!(text.starts_with("RTSP/1.0 200 OK"), "{text}");
        assert!(
            text.contains("Transport: RTP/AVP/UDP;unicast;client_port=5000-5001;server_port=30000-30001;mode=record"),
            "{text}"
        );
        assert_eq!(host.udp, [(0, (5000, 5001))]);
        let ev = s
            .feed(
                b"RECORD rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 3\r\n\r\n",
                &mut host,
            )
            .unwrap();
        assert!(ev.contains(&Event::Recording));
        // No channel was set up: a `$` frame is stray.
        s.feed(&[b'$', 0, 0, 1, 0x80], &mut host).unwrap();
        assert_eq!(s.stray_frames(), 1);
    }

    #[test]
    fn refusals_name_their_reason_and_echo_cseq() {
        let mut s = Session::new("x".into());
        let mut host = Fake {
            refuse: true,
            ..Fake::default()
        };
        let text = sent(&s.feed(&announce(7), &mut host).unwrap());
        assert!(
            text.starts_with("RTSP/1.0 403 Forbidden (already live)\r\nCSeq: 7"),
            "{text}"
        );
        // Unsigned: 401 with a challenge, as RFC 2326 asks of a 401.
        let mut unsigned = Fake {
            unsigned: true,
            ..Fake::default()
        };
        let text = sent(
            &Session::new("z".into())
                .feed(&announce(3), &mut unsigned)
                .unwrap(),
        );
        assert!(
            text.starts_with("RTSP/1.0 401 Unauthorized (not signed)\r\nCSeq: 3"),
            "{text}"
        );
        assert!(text.contains("WWW-Authenticate: Basic realm="), "{text}");
        // No ANNOUNCE accepted: RECORD and SETUP are out of order.
        let text = sent(
            &s.feed(
                b"RECORD rtsp://h/live/cam1 RTSP/1.0\r\nCSeq: 8\r\n\r\n",
                &mut host,
            )
            .unwrap(),
        );
        assert!(text.starts_with("RTSP/1.0 455"), "{text}");
        // UDP without ports left: 461 naming why, so that clients fall back to TCP.
        let mut s = Session::new("y".into());
        let mut host = Fake {
            no_udp: true,
            ..Fake::default()
        };
        s.feed(&announce(1), &mut host).unwrap();
        let setup = b"SETUP rtsp://127.0.0.1:8554/live/cam1/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n\
            Transport: RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record\r\n\r\n";
        let text = sent(&s.feed(setup, &mut host).unwrap());
        assert!(
            text.starts_with("RTSP/1.0 461 Unsupported Transport (no free UDP ports)"),
            "{text}"
        );
        // An SDP with no video.
        let mut s = Session::new("z".into());
        let audio = "v=0\r\nm=audio 0 RTP/AVP 97\r\n";
        let ann = format!(
            "ANNOUNCE rtsp://h/live/a RTSP/1.0\r\nCSeq: 3\r\nContent-Length: {}\r\n\r\n{audio}",
            audio.len()
        );
        assert!(sent(&s.feed(ann.as_bytes(), &mut host).unwrap()).starts_with("RTSP/1.0 415"));
        // No CSeq.
        assert!(
            sent(&s.feed(b"OPTIONS * RTSP/1.0\r\n\r\n", &mut host).unwrap())
                .starts_with("RTSP/1.0 400")
        );
    }

    #[test]
    fn garbage_and_endless_messages_end_the_connection() {
        let mut host = Fake::default();
        assert!(Session::new("g".into())
            .feed(b"\x16\x03\x01\x02\x00 TLS hello", &mut host)
            .is_err());
        let mut s = Session::new("h".into());
        let head = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: ";
        assert!(s.feed(head, &mut host).unwrap().is_empty());
        let endless = vec![b'a'; MAX_MESSAGE_BYTES];
        assert!(matches!(
            s.feed(&endless, &mut host),
            Err(Error::TooLarge { .. })
        ));
        // A Content-Length far beyond what is sent is cut at the same bound.
        let mut s = Session::new("i".into());
        assert!(s
            .feed(
                b"ANNOUNCE rtsp://h/a/b RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999999\r\n\r\n",
                &mut host
            )
            .unwrap()
            .is_empty());
        assert!(s.feed(&vec![b'v'; MAX_MESSAGE_BYTES], &mut host).is_err());
    }
}
