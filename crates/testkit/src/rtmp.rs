//! The one RTMP test publisher: rml_rtmp's client session over any byte stream (a TCP socket to
//! a running server, or an in-memory loop to a session under test), plus the FLV reader that
//! feeds it. ffmpeg stays the real-world client of the end-to-end tests; this publisher is for
//! what ffmpeg cannot do: names no URL can carry, media sent exactly when a test says, messages
//! cut short on purpose, enhanced-RTMP codecs, and a recording of the bytes for benchmarks.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

/// The chunk size the publisher announces (ffmpeg and OBS use 4096 as well).
pub const CHUNK_SIZE: u32 = 4096;

/// How long the publisher waits for the server's answer to the handshake and the publish.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket reads and writes of a blocked server fail after this long instead of hanging a test.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// One FLV tag: its type (8 audio, 9 video, 18 script data), timestamp in ms and body.
#[derive(Clone, Debug)]
pub struct Tag {
    pub kind: u8,
    pub ts: u32,
    pub data: Vec<u8>,
}

impl Tag {
    pub fn is_video(&self) -> bool {
        self.kind == 9
    }
    /// A legacy AVC keyframe (frame type 1), sequence header or not.
    pub fn is_keyframe(&self) -> bool {
        self.is_video() && self.data.first().is_some_and(|b| b >> 4 == 1)
    }
    /// An AVC or AAC sequence header (packet type 0), which a looping sender sends only once.
    pub fn is_sequence_header(&self) -> bool {
        (self.kind == 8 || self.kind == 9) && self.data.get(1) == Some(&0)
    }
}

/// The tags of an FLV file, in file order; a truncated last tag is left out.
pub fn flv_tags(path: &Path) -> Vec<Tag> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(b.starts_with(b"FLV"), "{} is not FLV", path.display());
    let mut i = u32::from_be_bytes(b[5..9].try_into().unwrap()) as usize + 4;
    let mut out = vec![];
    while i + 11 <= b.len() {
        let kind = b[i] & 0x1f;
        let size = u32::from_be_bytes([0, b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let ts = u32::from_be_bytes([b[i + 7], b[i + 4], b[i + 5], b[i + 6]]);
        let start = i + 11;
        if start + size > b.len() {
            break;
        }
        out.push(Tag {
            kind,
            ts,
            data: b[start..start + size].to_vec(),
        });
        i = start + size + 4;
    }
    out
}

/// Opens a TCP connection with timeouts, so a stuck server fails the test instead of hanging it.
pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads (and discards) until the server closes `s`; false if it is still open after `wait`.
pub fn read_until_closed(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if waiting(&e) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The client side of the RTMP handshake; returns the bytes the server sent past it.
pub fn handshake<S: Read + Write>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut hs = Handshake::new(PeerType::Client);
    stream.write_all(&hs.generate_outbound_p0_and_p1().map_err(other)?)?;
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(io::Error::other("server closed during the handshake")),
            Ok(n) => n,
            Err(e) if waiting(&e) && Instant::now() < deadline => continue,
            Err(e) => return Err(e),
        };
        match hs.process_bytes(&buf[..n]).map_err(other)? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes)?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes)?;
                return Ok(remaining_bytes);
            }
        }
    }
}

fn other(e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("{e:?}"))
}

fn waiting(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A publishing RTMP client on `S`.
pub struct Publisher<S = TcpStream> {
    stream: S,
    session: ClientSession,
}

impl Publisher<TcpStream> {
    /// Publishes `app/name` to the server at `addr` (tcUrl `rtmp://{addr}/{app}`); panics with
    /// the server's answer when it is refused.
    pub fn start(addr: &str, app: &str, name: &str) -> Publisher {
        Self::try_start(addr, &format!("rtmp://{addr}/{app}"), app, name)
            .unwrap_or_else(|why| panic!("publish of {app}/{name} to {addr} refused: {why}"))
    }

    /// Publishes `app/name` with exactly this tcUrl; `Err` says how the server refused it.
    pub fn try_start(addr: &str, tc_url: &str, app: &str, name: &str) -> Result<Publisher, String> {
        let sock = connect(addr);
        // Short reads while waiting for answers; the deadline is ANSWER_TIMEOUT.
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let p = Publisher::over(sock, tc_url, app, name)?;
        p.stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
        Ok(p)
    }

    /// Sends `tags` in real time on a thread, looped with timestamps kept increasing (sequence
    /// headers only the first time, script data never), until the feeder is stopped or dropped.
    pub fn feed_looped(self, tags: Vec<Tag>) -> Feeder {
        let tags: Vec<Tag> = tags.into_iter().filter(|t| t.kind != 18).collect();
        let period = tags.iter().map(|t| t.ts).max().unwrap_or(0) + 40;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let mut p = self;
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut base = 0u32;
            let mut first = true;
            'outer: while !st.load(Ordering::Relaxed) {
                for tag in &tags {
                    if !first && tag.is_sequence_header() {
                        continue;
                    }
                    let t = base + tag.ts;
                    let due = start + Duration::from_millis(u64::from(t));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    if st.load(Ordering::Relaxed) || p.send(tag.kind, &tag.data, t).is_err() {
                        break 'outer;
                    }
                }
                first = false;
                base += period;
            }
            let _ = p.stream.shutdown(Shutdown::Both);
        });
        Feeder {
            stop,
            handle: Some(handle),
        }
    }
}

impl<S: Read + Write> Publisher<S> {
    /// Handshake, connect(`app`, `tc_url`), createStream and publish(`name`, live) on `stream`,
    /// answering the server until it says NetStream.Publish.Start. Reads that time out or
    /// would block are retried until [`ANSWER_TIMEOUT`].
    pub fn over(mut stream: S, tc_url: &str, app: &str, name: &str) -> Result<Self, String> {
        let mut input = handshake(&mut stream).map_err(|e| format!("handshake: {e}"))?;
        let mut cfg = ClientSessionConfig::new();
        cfg.tc_url = Some(tc_url.to_string());
        cfg.chunk_size = CHUNK_SIZE;
        let (mut session, mut pending) =
            ClientSession::new(cfg).map_err(|e| format!("client session: {e:?}"))?;
        pending.push(
            session
                .request_connection(app.to_string())
                .map_err(|e| format!("connect: {e:?}"))?,
        );
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            for e in write_out(&mut stream, std::mem::take(&mut pending))
                .map_err(|e| format!("send: {e}"))?
            {
                match e {
                    ClientSessionEvent::ConnectionRequestAccepted => pending.push(
                        session
                            .request_publishing(name.to_string(), PublishRequestType::Live)
                            .map_err(|e| format!("publish: {e:?}"))?,
                    ),
                    ClientSessionEvent::PublishRequestAccepted => {
                        return Ok(Publisher { stream, session })
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(format!("connect rejected: {description}"))
                    }
                    ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                        return Err(format!("onStatus {code}"))
                    }
                    _ => {}
                }
            }
            if !pending.is_empty() {
                continue;
            }
            if !input.is_empty() {
                pending = session
                    .handle_input(&std::mem::take(&mut input))
                    .map_err(|e| format!("server answered with an error: {e:?}"))?;
                continue;
            }
            match stream.read(&mut buf) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => input.extend_from_slice(&buf[..n]),
                Err(e) if waiting(&e) && Instant::now() < deadline => {}
                Err(e) if waiting(&e) => {
                    return Err(format!(
                        "no NetStream.Publish.Start within {ANSWER_TIMEOUT:?}"
                    ))
                }
                Err(e) => return Err(format!("connection error: {e}")),
            }
        }
    }

    /// Sends one video tag body (legacy or enhanced FLV) at `ts` ms.
    pub fn video(&mut self, body: &[u8], ts: u32) -> io::Result<()> {
        let bytes = self.video_bytes(body, ts);
        self.stream.write_all(&bytes)
    }

    /// The bytes of one video message as they would go on the wire, without sending them (for
    /// a test that sends only part of a message).
    pub fn video_bytes(&mut self, body: &[u8], ts: u32) -> Vec<u8> {
        let r = self
            .session
            .publish_video_data(Bytes::copy_from_slice(body), RtmpTimestamp::new(ts), false)
            .expect("a publishing session serialises video");
        packet(r)
    }

    /// Sends one tag: audio (8) and video (9); anything else is not sent.
    pub fn send(&mut self, kind: u8, body: &[u8], ts: u32) -> io::Result<()> {
        let r = match kind {
            9 => return self.video(body, ts),
            8 => self
                .session
                .publish_audio_data(Bytes::copy_from_slice(body), RtmpTimestamp::new(ts), false)
                .expect("a publishing session serialises audio"),
            _ => return Ok(()),
        };
        self.stream.write_all(&packet(r))
    }

    /// Sends the audio and video `tags` at once, at their own timestamps.
    pub fn send_tags(&mut self, tags: &[Tag]) -> io::Result<()> {
        tags.iter()
            .try_for_each(|t| self.send(t.kind, &t.data, t.ts))
    }

    /// The byte stream under the session, for raw writes and for what a loop recorded.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The byte stream alone, e.g. to hold a connection open without its session.
    pub fn into_stream(self) -> S {
        self.stream
    }
}

fn packet(r: ClientSessionResult) -> Vec<u8> {
    match r {
        ClientSessionResult::OutboundResponse(p) => p.bytes,
        _ => unreachable!("publishing media yields a packet"),
    }
}

/// Writes the session's packets; returns its events.
fn write_out<S: Write>(
    stream: &mut S,
    results: Vec<ClientSessionResult>,
) -> io::Result<Vec<ClientSessionEvent>> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => stream.write_all(&p.bytes)?,
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(events)
}

/// A publisher sending in real time on its own thread; stops (and closes) on `stop` or drop.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Feeder {
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop();
    }
}
