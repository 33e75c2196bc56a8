//! RTMP pull: plays `rtmp://host[:port]/app/stream[?query]` from an RTMP server and publishes
//! its video as a live stream, through the same front-end contract ([`Publication`]) as a
//! publisher's.
//!
//! [`RtmpUrl`] reads the URL; [`PlaySession`] is the protocol, sans-IO (bytes in, [`PlayEvent`]s
//! and bytes out): the handshake, then `connect`, `createStream` and `play`, acknowledgements
//! and pings, until the server plays, refuses or ends the stream; [`pull`] is the tokio side,
//! with the limits ([`PullConfig`]). Audio and metadata are ignored.
//!
//! The session drives rml_rtmp's handshake and chunk serializer with our own [`ChunkReader`] and
//! AMF0 reader, as the publish [`super::session`] does, rather than rml_rtmp's `ClientSession`.
//! That one reads with rml_rtmp's `ChunkDeserializer`, which mixes the bytes of interleaved chunk
//! streams and panics on some headers (see [`super::chunk`]): a server we pull from is as much
//! outside input as a publisher. It also decodes AMF0 without a nesting limit, and drops media
//! that is not on the stream id its `createStream` returned, which is how ffmpeg's `-listen`
//! server sends it (on message stream 0).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use media::stream::{PublishRefused, PublisherInfo, StreamKey, StreamSink};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, info, trace};

use super::chunk::{ChunkReader, Message};
use super::session::{MAX_CHUNK_SIZE, MAX_COMMAND_BYTES};
use crate::amf0::{self, Amf0Value};
use crate::frontend::Publication;
use crate::{Error, Result};

/// The port of an `rtmp://` URL that names none.
pub const DEFAULT_PORT: u16 = 1935;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 4096;
/// Time allowed from the TCP connect until the server plays the stream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that sends nothing this long while playing is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest video message accepted (the RTMP server's default for publishers, too).
pub const MAX_VIDEO_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// The protocol's name in the stream list and metrics.
pub const PROTOCOL: &str = "rtmp-pull";

/// Chunk size we send with.
const OUT_CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size we announce.
const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// The buffer we tell the server we keep (SetBufferLength), as ffmpeg and Flash do.
const BUFFER_MS: u32 = 1000;
/// `play`'s start argument: live or recorded, whichever the server has.
const PLAY_LIVE_OR_RECORDED: f64 = -2.0;
/// Transaction ids of our two requests.
const CONNECT_TX: f64 = 1.0;
const CREATE_STREAM_TX: f64 = 2.0;

/// RTMP message type ids (RTMP spec 5.4, 6.2, 7.1).
mod msg {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// User control event: the server pings (RTMP spec 7.1.7).
const PING_REQUEST: u16 = 6;

/// An `rtmp://` URL, split the way RTMP needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The application: the path up to its last `/`.
    pub app: String,
    /// What `play` asks for: the last path segment, with the URL's query (tokens often ride
    /// there).
    pub stream: String,
    /// `rtmp://host[:port]/app`, as `connect` sends it.
    pub tc_url: String,
}

impl RtmpUrl {
    /// Reads `rtmp://host[:port]/app/stream[?query]`. An app of several segments
    /// (`app/instance`) is kept whole; the stream is the last segment.
    pub fn parse(url: &str) -> std::result::Result<RtmpUrl, PullError> {
        let bad = |why: &str| PullError::BadUrl {
            url: crate::rtsp::client::redact_text(url),
            why: why.to_string(),
        };
        if url.len() > MAX_URL_LEN {
            return Err(bad(&format!("longer than {MAX_URL_LEN} bytes")));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("contains spaces or control characters"));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if !scheme.eq_ignore_ascii_case("rtmp") {
            return Err(bad(&format!("the scheme is {scheme:?}, not rtmp")));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad(
                "user names and passwords in RTMP URLs are not supported",
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|why| bad(&why))?;
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path, ""),
        };
        let path = path.trim_matches('/');
        let Some((app, stream)) = path.rsplit_once('/') else {
            return Err(bad(
                "it needs an app and a stream name: rtmp://host[:port]/app/stream",
            ));
        };
        let app = app.trim_end_matches('/');
        if app.is_empty() || stream.is_empty() {
            return Err(bad(
                "it needs an app and a stream name: rtmp://host[:port]/app/stream",
            ));
        }
        let stream = if query.is_empty() {
            stream.to_string()
        } else {
            format!("{stream}?{query}")
        };
        Ok(RtmpUrl {
            tc_url: format!("rtmp://{authority}/{app}"),
            host,
            port,
            app: app.to_string(),
            stream,
        })
    }

    /// `host:port` (`[v6]:port`), for messages.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address without its closing ]")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let host_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if !host.chars().all(host_chars) {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port (1-65535)")),
        },
    };
    Ok((host.to_string(), port))
}

/// Why a pull stopped. Each variant is one thing to act on.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The URL cannot be used.
    #[error("{url} is not a usable RTMP URL: {why}")]
    BadUrl {
        /// The URL (its first 200 characters).
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The TCP connection could not be made (name resolution, refused, unreachable).
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// `host:port`.
        target: String,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The server did not get as far as playing within [`PullConfig::connect_timeout`].
    #[error("no answer from {target} to {stage} within {limit:?}")]
    Timeout {
        /// `host:port`.
        target: String,
        /// What it did not answer: `the TCP connection`, `the RTMP handshake`, `connect`,
        /// `createStream` or `play`.
        stage: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The server sent nothing for [`PullConfig::idle_timeout`] while playing.
    #[error("{target} sent nothing for {limit:?}")]
    Idle {
        /// `host:port`.
        target: String,
        /// The limit.
        limit: Duration,
    },
    /// The server refused the connection, the stream or the play.
    #[error("{target} refused {what}: {code} {description}")]
    Refused {
        /// `host:port`.
        target: String,
        /// `the connection`, `createStream` or `to play the stream`.
        what: &'static str,
        /// Its status code (`NetStream.Play.StreamNotFound`), or `_error`.
        code: String,
        /// Its description, if any.
        description: String,
    },
    /// The server closed the connection before playing.
    #[error("{target} closed the connection during {stage}")]
    Closed {
        /// `host:port`.
        target: String,
        /// How far it had got.
        stage: &'static str,
    },
    /// The connection broke.
    #[error("connection to {target} lost: {source}")]
    Io {
        /// `host:port`.
        target: String,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The server sent something that is not RTMP, or that exceeds a limit.
    #[error("{target}: {source}")]
    Protocol {
        /// `host:port`.
        target: String,
        /// What was wrong.
        source: Error,
    },
    /// The stream could not be published here.
    #[error("cannot publish the pulled stream: {0}")]
    Publish(PublishRefused),
}

/// What happened on a play connection.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayEvent {
    /// The server plays the stream (`NetStream.Play.Start` or `Reset`, or video before either,
    /// as some servers send it).
    Playing,
    /// A video message: an FLV video tag body.
    Video {
        /// RTMP timestamp (ms).
        timestamp: u32,
        /// The tag body (a sequence header is copied out of the receive buffer, frames are
        /// slices of it; see [`super::chunk`]).
        body: Bytes,
    },
    /// The server refused; the connection should close.
    Refused {
        /// `the connection`, `createStream` or `to play the stream`.
        what: &'static str,
        /// Status code, or `_error` when the server gave none.
        code: String,
        /// Description, if any.
        description: String,
    },
    /// The server ended the stream (`NetStream.Play.Stop`, `UnpublishNotify`, `Complete`).
    Ended {
        /// The status code.
        code: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connecting,
    CreatingStream,
    PlayRequested,
    Playing,
    /// Refused or ended: nothing more is read.
    Done,
}

/// One RTMP play connection's protocol state, sans-IO.
pub struct PlaySession {
    state: State,
    handshake: Handshake,
    reader: ChunkReader,
    serializer: ChunkSerializer,
    out: Vec<u8>,
    app: String,
    stream: String,
    tc_url: String,
    max_video_bytes: usize,
    /// Bytes received, handshake included.
    received: u64,
    /// What the read buffer held after the last [`PlaySession::process`].
    unread: usize,
    peer_window: u32,
    last_ack: u64,
    window_sent: bool,
}

impl PlaySession {
    /// A session that will play `url`'s stream; its first bytes (C0 and C1) are in
    /// [`PlaySession::output`]. Video messages larger than `max_video_bytes` are an error.
    pub fn new(url: &RtmpUrl, max_video_bytes: usize) -> Result<PlaySession> {
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| Error::Handshake(format!("{e:?}")))?;
        Ok(PlaySession {
            state: State::Handshaking,
            handshake,
            reader: ChunkReader::new(),
            serializer: ChunkSerializer::new(),
            out: c0c1,
            app: url.app.clone(),
            stream: url.stream.clone(),
            tc_url: url.tc_url.clone(),
            max_video_bytes,
            received: 0,
            unread: 0,
            peer_window: 0,
            last_ack: 0,
            window_sent: false,
        })
    }

    /// What the session waits for the server to answer, for error messages.
    pub fn stage(&self) -> &'static str {
        match self.state {
            State::Handshaking => "the RTMP handshake",
            State::Connecting => "connect",
            State::CreatingStream => "createStream",
            State::PlayRequested => "play",
            State::Playing | State::Done => "playing",
        }
    }

    /// True once the server plays the stream.
    pub fn playing(&self) -> bool {
        self.state == State::Playing
    }

    /// Bytes to send to the server; the caller writes them out and clears the buffer.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The buffer for bytes from the socket: append to it and call [`PlaySession::process`].
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        self.reader.read_buffer()
    }

    /// Feeds bytes from the socket, appending what happened to `events`.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<PlayEvent>) -> Result<()> {
        self.reader.push(data);
        self.process(events)
    }

    /// Handles the bytes appended to [`PlaySession::read_buffer`] since the last call,
    /// appending what happened to `events`.
    pub fn process(&mut self, events: &mut Vec<PlayEvent>) -> Result<()> {
        let buffered = self.reader.buffered();
        self.received += buffered.saturating_sub(self.unread) as u64;
        let result = self.process_buffered(events);
        self.unread = self.reader.buffered();
        result
    }

    fn process_buffered(&mut self, events: &mut Vec<PlayEvent>) -> Result<()> {
        if self.state == State::Handshaking {
            // rml_rtmp's handshake keeps what it has not used yet; only what follows it is ours.
            let buf = self.reader.buffer_mut();
            let result = self.handshake.process_bytes(buf);
            buf.clear();
            match result.map_err(|e| Error::Handshake(format!("{e:?}")))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.out.extend_from_slice(&response_bytes);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.out.extend_from_slice(&response_bytes);
                    self.reader.push(&remaining_bytes);
                    self.send_connect()?;
                }
            }
        }
        while self.state != State::Done {
            let Some(message) = self.reader.next_message()? else {
                break;
            };
            self.on_message(message, events)?;
        }
        if self.peer_window > 0 && self.received - self.last_ack >= u64::from(self.peer_window) {
            self.last_ack = self.received;
            // The sequence number is the byte count, wrapping at 32 bits (RTMP spec 5.4.3).
            self.send(
                RtmpMessage::Acknowledgement {
                    sequence_number: self.received as u32,
                },
                0,
            )?;
        }
        Ok(())
    }

    fn send_connect(&mut self) -> Result<()> {
        self.state = State::Connecting;
        let packet = self
            .serializer
            .set_max_chunk_size(OUT_CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| Error::Chunk(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        let text = |s: &str| Amf0Value::Utf8String(s.to_string());
        let mut props = HashMap::new();
        props.insert("app".to_string(), text(&self.app));
        props.insert("type".to_string(), text("nonprivate"));
        props.insert("flashVer".to_string(), text("LNX 9,0,124,2"));
        props.insert("tcUrl".to_string(), text(&self.tc_url));
        props.insert("fpad".to_string(), Amf0Value::Boolean(false));
        props.insert("capabilities".to_string(), Amf0Value::Number(15.0));
        // Every audio codec (we drop audio anyway), and H.264 among the video codecs.
        props.insert("audioCodecs".to_string(), Amf0Value::Number(4071.0));
        props.insert("videoCodecs".to_string(), Amf0Value::Number(252.0));
        props.insert("videoFunction".to_string(), Amf0Value::Number(1.0));
        props.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        // Enhanced RTMP: the FourCCs we read, so a server may send H.265 as `hvc1`.
        props.insert(
            "fourCcList".to_string(),
            Amf0Value::StrictArray(vec![text("avc1"), text("hvc1")]),
        );
        self.command("connect", CONNECT_TX, Amf0Value::Object(props), vec![], 0)
    }

    fn on_message(&mut self, m: Message, events: &mut Vec<PlayEvent>) -> Result<()> {
        trace!(
            type_id = m.type_id,
            stream_id = m.stream_id,
            len = m.payload.len(),
            "rtmp pull: message"
        );
        match m.type_id {
            // Any message stream: a play connection carries one stream, and ffmpeg's `-listen`
            // server sends it on stream 0 whatever createStream said.
            msg::VIDEO => self.on_video(m.timestamp, m.payload, events)?,
            msg::AGGREGATE => {
                for (timestamp, body) in aggregate_video(m.timestamp, &m.payload)? {
                    self.on_video(timestamp, body, events)?;
                }
            }
            msg::AUDIO => {} // ignored
            msg::SET_CHUNK_SIZE => {
                let b = &m.payload[..];
                if b.len() < 4 {
                    return Err(Error::Protocol("SetChunkSize shorter than 4 bytes".into()));
                }
                let size = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(Error::TooLarge {
                        what: "chunk size",
                        size: size as usize,
                        limit: MAX_CHUNK_SIZE as usize,
                    });
                }
                self.reader.set_chunk_size(size as usize);
            }
            msg::WINDOW_ACK_SIZE => {
                if let Some(b) = m.payload.get(..4) {
                    self.peer_window = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            // Answered with our window, once (RTMP spec 5.4.5).
            msg::SET_PEER_BANDWIDTH if !self.window_sent => {
                self.window_sent = true;
                self.send(
                    RtmpMessage::WindowAcknowledgement {
                        size: WINDOW_ACK_SIZE,
                    },
                    0,
                )?;
            }
            msg::USER_CONTROL => {
                let b = &m.payload[..];
                if b.len() >= 6 && u16::from_be_bytes([b[0], b[1]]) == PING_REQUEST {
                    let t = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
                    self.send(
                        RtmpMessage::UserControl {
                            event_type: UserControlEventType::PingResponse,
                            stream_id: None,
                            buffer_length: None,
                            timestamp: Some(RtmpTimestamp::new(t)),
                        },
                        0,
                    )?;
                }
            }
            msg::COMMAND_AMF0 => {
                if m.payload.len() > MAX_COMMAND_BYTES {
                    return Err(Error::TooLarge {
                        what: "command message",
                        size: m.payload.len(),
                        limit: MAX_COMMAND_BYTES,
                    });
                }
                let values = amf0::decode_all(&m.payload)?;
                self.on_command(values, events)?;
            }
            _ => {} // acknowledgements, metadata, AMF3: nothing we need
        }
        Ok(())
    }

    fn on_video(&mut self, timestamp: u32, body: Bytes, events: &mut Vec<PlayEvent>) -> Result<()> {
        if !matches!(self.state, State::PlayRequested | State::Playing) || body.is_empty() {
            return Ok(());
        }
        if body.len() > self.max_video_bytes {
            return Err(Error::TooLarge {
                what: "video message",
                size: body.len(),
                limit: self.max_video_bytes,
            });
        }
        if self.state == State::PlayRequested {
            self.state = State::Playing;
            events.push(PlayEvent::Playing);
        }
        // A sequence header's parameter sets are kept as long as the stream: a slice would keep
        // the whole receive slab it shares with frames (see `chunk`), so copy it.
        let body = if is_sequence_header(&body) {
            Bytes::copy_from_slice(&body)
        } else {
            body
        };
        events.push(PlayEvent::Video { timestamp, body });
        Ok(())
    }

    fn on_command(&mut self, values: Vec<Amf0Value>, events: &mut Vec<PlayEvent>) -> Result<()> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Amf0Value::Utf8String(s)) => s,
            _ => return Err(Error::Protocol("command without a name".into())),
        };
        let tx = match it.next() {
            Some(Amf0Value::Number(n)) => n,
            _ => 0.0,
        };
        let object = it.next();
        let args: Vec<Amf0Value> = it.collect();
        match name.as_str() {
            "_result" if tx == CONNECT_TX && self.state == State::Connecting => {
                self.state = State::CreatingStream;
                self.command("createStream", CREATE_STREAM_TX, Amf0Value::Null, vec![], 0)?;
            }
            "_result" if tx == CREATE_STREAM_TX && self.state == State::CreatingStream => {
                let stream_id = match args.first() {
                    Some(Amf0Value::Number(n))
                        if n.is_finite() && *n >= 0.0 && *n <= f64::from(u32::MAX) =>
                    {
                        *n as u32
                    }
                    _ => {
                        return Err(Error::Protocol(
                            "createStream answered without a stream id".into(),
                        ))
                    }
                };
                self.state = State::PlayRequested;
                let name = Amf0Value::Utf8String(self.stream.clone());
                self.command(
                    "play",
                    0.0,
                    Amf0Value::Null,
                    vec![name, Amf0Value::Number(PLAY_LIVE_OR_RECORDED)],
                    stream_id,
                )?;
                self.send(
                    RtmpMessage::UserControl {
                        event_type: UserControlEventType::SetBufferLength,
                        stream_id: Some(stream_id),
                        buffer_length: Some(BUFFER_MS),
                        timestamp: None,
                    },
                    0,
                )?;
            }
            "_error" => {
                // Our two requests have their transaction ids; play has none (0), and some
                // servers refuse it with an `_error` rather than an error status.
                let what = if tx == CONNECT_TX {
                    "the connection"
                } else if tx == CREATE_STREAM_TX {
                    "createStream"
                } else if matches!(self.state, State::PlayRequested | State::Playing) {
                    "to play the stream"
                } else {
                    return Ok(()); // an answer to nothing we asked
                };
                let (code, description) = status_info(object.as_ref(), &args);
                self.state = State::Done;
                events.push(PlayEvent::Refused {
                    what,
                    code: code.unwrap_or_else(|| "_error".into()),
                    description,
                });
            }
            "onStatus" => {
                let (code, description) = status_info(object.as_ref(), &args);
                let level = info_text(object.as_ref(), &args, "level");
                let code = code.unwrap_or_default();
                self.on_status(&code, level.as_deref(), description, events);
            }
            _ => {} // onBWDone, _checkbw, |RtmpSampleAccess, onFCSubscribe, ...: nothing to do
        }
        Ok(())
    }

    fn on_status(
        &mut self,
        code: &str,
        level: Option<&str>,
        description: String,
        events: &mut Vec<PlayEvent>,
    ) {
        if !matches!(self.state, State::PlayRequested | State::Playing) {
            return;
        }
        match code {
            "NetStream.Play.Start" | "NetStream.Play.Reset"
                if self.state == State::PlayRequested =>
            {
                self.state = State::Playing;
                events.push(PlayEvent::Playing);
            }
            "NetStream.Play.Start" | "NetStream.Play.Reset" => {} // already playing
            "NetStream.Play.Stop"
            | "NetStream.Play.UnpublishNotify"
            | "NetStream.Play.Complete" => {
                self.state = State::Done;
                events.push(PlayEvent::Ended {
                    code: code.to_string(),
                });
            }
            _ if level == Some("error")
                || code.ends_with(".Failed")
                || code.ends_with(".StreamNotFound") =>
            {
                self.state = State::Done;
                events.push(PlayEvent::Refused {
                    what: "to play the stream",
                    code: code.to_string(),
                    description,
                });
            }
            _ => {} // PublishNotify, Data.Start, warnings
        }
    }

    fn command(
        &mut self,
        name: &str,
        tx: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream: u32,
    ) -> Result<()> {
        let mut values = vec![
            Amf0Value::Utf8String(name.into()),
            Amf0Value::Number(tx),
            object,
        ];
        values.extend(args);
        let data = amf0::encode(&values)?;
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(0),
            type_id: msg::COMMAND_AMF0,
            message_stream_id: stream,
            data: Bytes::from(data),
        };
        let packet = self
            .serializer
            .serialize(&payload, false, false)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }

    /// Sends a protocol control message (chunk stream 2), with a full header.
    fn send(&mut self, message: RtmpMessage, stream: u32) -> Result<()> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), stream)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        let packet = self
            .serializer
            .serialize(&payload, true, false)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }
}

/// A text property of a status's info object: the first argument, or (some servers) the
/// command object.
fn info_text(object: Option<&Amf0Value>, args: &[Amf0Value], key: &str) -> Option<String> {
    [args.first(), object]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            Amf0Value::Object(props) => match props.get(key) {
                Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
}

/// A status's code and description.
fn status_info(object: Option<&Amf0Value>, args: &[Amf0Value]) -> (Option<String>, String) {
    (
        info_text(object, args, "code"),
        info_text(object, args, "description").unwrap_or_default(),
    )
}

/// True for an FLV video tag body that is a decoder configuration: an AVC or legacy HEVC
/// sequence header, or an enhanced-RTMP SequenceStart.
fn is_sequence_header(body: &[u8]) -> bool {
    match *body {
        [first, ..] if first & 0x80 != 0 => first & 0x0f == 0,
        [first, packet_type, ..] => matches!(first & 0x0f, 7 | 12) && packet_type == 0,
        _ => false,
    }
}

/// The video tags of an aggregate message (RTMP spec 7.1.6): FLV tags back to back, each
/// followed by its size; the first tag's time is the message's, later ones keep their offset
/// from it. Bodies are slices of `payload`.
fn aggregate_video(timestamp: u32, payload: &Bytes) -> Result<Vec<(u32, Bytes)>> {
    const TAG_HEADER: usize = 11;
    const BACK_POINTER: usize = 4;
    let mut out = Vec::new();
    let mut pos = 0;
    let mut first_time: Option<u32> = None;
    while pos < payload.len() {
        let h = payload
            .get(pos..pos + TAG_HEADER)
            .ok_or_else(|| Error::Protocol("aggregate message: truncated tag header".into()))?;
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let time = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + TAG_HEADER;
        let end = start + size;
        // The last tag's back pointer may be left out; a tag cut short may not.
        if end > payload.len() {
            return Err(Error::Protocol(format!(
                "aggregate message: a tag of {size} bytes past its end"
            )));
        }
        let first = *first_time.get_or_insert(time);
        if h[0] == msg::VIDEO {
            out.push((
                timestamp.wrapping_add(time.wrapping_sub(first)),
                payload.slice(start..end),
            ));
        }
        pos = end + BACK_POINTER;
    }
    Ok(out)
}

/// Limits of a pull.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Time from the TCP connect until the server plays.
    pub connect_timeout: Duration,
    /// A server that sends nothing this long while playing is dropped.
    pub idle_timeout: Duration,
    /// Largest video message accepted.
    pub max_video_bytes: usize,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            connect_timeout: CONNECT_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_video_bytes: MAX_VIDEO_MESSAGE_BYTES,
        }
    }
}

/// Plays `url` and publishes its video as `key` into `sink` until the server ends the stream or
/// closes the connection (`Ok`), or something fails. `on_video` is called once, when the first
/// video message has been handed on. Dropping the future closes the connection and unpublishes
/// the stream.
pub async fn pull(
    url: &RtmpUrl,
    config: &PullConfig,
    sink: &dyn StreamSink,
    key: StreamKey,
    on_video: &mut (dyn FnMut() + Send),
) -> std::result::Result<(), PullError> {
    let target = url.target();
    let deadline = Instant::now() + config.connect_timeout;
    let connect = TcpStream::connect((url.host.as_str(), url.port));
    let mut socket = match timeout_at(deadline, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(PullError::Connect { target, source }),
        Err(_) => {
            return Err(PullError::Timeout {
                target,
                stage: "the TCP connection",
                limit: config.connect_timeout,
            })
        }
    };
    let _ = socket.set_nodelay(true);
    let io = |source| PullError::Io {
        target: url.target(),
        source,
    };
    let protocol = |source| PullError::Protocol {
        target: url.target(),
        source,
    };
    let addr = socket.peer_addr().map_err(io)?;
    let mut session = PlaySession::new(url, config.max_video_bytes).map_err(protocol)?;
    let mut publication: Option<Publication> = None;
    let mut flowing = false;
    let mut events = Vec::new();
    loop {
        let out = session.output();
        if !out.is_empty() {
            match timeout(config.idle_timeout, socket.write_all(out)).await {
                Ok(r) => r.map_err(io)?,
                Err(_) => {
                    let stalled = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the server read nothing we sent for {:?}",
                            config.idle_timeout
                        ),
                    );
                    return Err(io(stalled));
                }
            }
            out.clear();
        }
        let playing = session.playing();
        let stage = session.stage();
        // Until the server plays, the connect deadline; then the idle limit for each read.
        let limit = if playing {
            Instant::now() + config.idle_timeout
        } else {
            deadline
        };
        let read = socket.read_buf(session.read_buffer());
        let n = match timeout_at(limit, read).await {
            Ok(r) => r.map_err(io)?,
            Err(_) if playing => {
                return Err(PullError::Idle {
                    target,
                    limit: config.idle_timeout,
                })
            }
            Err(_) => {
                return Err(PullError::Timeout {
                    target,
                    stage,
                    limit: config.connect_timeout,
                })
            }
        };
        if n == 0 {
            if playing {
                debug!(%target, stream = %key, "rtmp pull: the server closed the connection");
                return Ok(());
            }
            return Err(PullError::Closed { target, stage });
        }
        session.process(&mut events).map_err(protocol)?;
        for event in events.drain(..) {
            match event {
                PlayEvent::Playing => {
                    info!(%target, stream = %key, "rtmp pull playing");
                    let info = PublisherInfo {
                        addr,
                        protocol: PROTOCOL,
                    };
                    let p =
                        Publication::start(sink, key.clone(), info).map_err(PullError::Publish)?;
                    publication = Some(p);
                }
                PlayEvent::Video { timestamp, body } => {
                    if let Some(p) = publication.as_mut() {
                        p.flv_video(timestamp, &body);
                        if !flowing {
                            flowing = true;
                            on_video();
                        }
                    }
                }
                PlayEvent::Refused {
                    what,
                    code,
                    description,
                } => {
                    return Err(PullError::Refused {
                        target,
                        what,
                        code,
                        description,
                    })
                }
                PlayEvent::Ended { code } => {
                    debug!(%target, stream = %key, ?code, "rtmp pull: the server ended the stream");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Drives the session against rml_rtmp's server session: an RTMP implementation we did not
    //! write.
    use super::*;
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };

    fn url(s: &str) -> RtmpUrl {
        RtmpUrl::parse(s).unwrap()
    }

    #[test]
    fn urls_split_into_host_port_app_and_stream() {
        assert_eq!(
            url("rtmp://cams.example.com/live/cam1"),
            RtmpUrl {
                host: "cams.example.com".into(),
                port: 1935,
                app: "live".into(),
                stream: "cam1".into(),
                tc_url: "rtmp://cams.example.com/live".into(),
            }
        );
        let u = url("RTMP://127.0.0.1:19350/live/_definst_/cam1?token=a&x=1");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 19350));
        assert_eq!(u.app, "live/_definst_");
        assert_eq!(u.stream, "cam1?token=a&x=1");
        assert_eq!(u.tc_url, "rtmp://127.0.0.1:19350/live/_definst_");
        let u = url("rtmp://[::1]:1936/live/cam/");
        assert_eq!(
            (u.host.as_str(), u.port, u.target()),
            ("::1", 1936, "[::1]:1936".into())
        );
        assert_eq!(u.stream, "cam");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (u, why) in [
            ("rtmp://", "no host"),
            ("rtmp:///live/cam", "no host"),
            ("rtmp://host", "an app and a stream"),
            ("rtmp://host/live", "an app and a stream"),
            ("rtmp://host//cam", "an app and a stream"),
            ("rtmp://host:0/live/cam", "not a port"),
            ("rtmp://host:99999/live/cam", "not a port"),
            ("rtmp://host:x/live/cam", "not a port"),
            ("rtmp://[::1/live/cam", "closing ]"),
            ("rtmp://[zz]/live/cam", "not an IPv6"),
            ("rtmp://u:p@host/live/cam", "passwords"),
            ("rtmp://ho st/live/cam", "spaces"),
            ("rtmp://h%st/live/cam", "not a host"),
            ("http://host/live/cam", "not rtmp"),
            ("host/live/cam", "no scheme"),
        ] {
            let e = RtmpUrl::parse(u).expect_err(u).to_string();
            assert!(e.contains(why), "{u}: {e}");
        }
        let long = format!("rtmp://h/live/{}", "x".repeat(MAX_URL_LEN));
        assert!(RtmpUrl::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer"));
    }

    /// Our client and rml_rtmp's server, connected in memory.
    struct Pair {
        client: PlaySession,
        server: ServerSession,
        handshake: Handshake,
        events: Vec<PlayEvent>,
        server_events: Vec<ServerSessionEvent>,
    }

    impl Pair {
        fn new(u: &str) -> Pair {
            let mut client = PlaySession::new(&url(u), MAX_VIDEO_MESSAGE_BYTES).unwrap();
            let mut handshake = Handshake::new(PeerType::Server);
            let mut events = Vec::new();
            let c0c1 = std::mem::take(client.output());
            let s0s1s2 = match handshake.process_bytes(&c0c1).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => response_bytes,
                HandshakeProcessResult::Completed { .. } => panic!("server done after C1"),
            };
            // Split S0S1 from S2, as a server may send them.
            client.feed(&s0s1s2[..1537], &mut events).unwrap();
            client.feed(&s0s1s2[1537..], &mut events).unwrap();
            assert_eq!(client.stage(), "connect");
            let after_handshake = std::mem::take(client.output());
            // C2, then the chunk size and connect.
            let rest = match handshake.process_bytes(&after_handshake).unwrap() {
                HandshakeProcessResult::Completed {
                    remaining_bytes, ..
                } => remaining_bytes,
                HandshakeProcessResult::InProgress { .. } => panic!("server handshake not done"),
            };
            let (server, results) = ServerSession::new(ServerSessionConfig::new()).unwrap();
            let mut p = Pair {
                client,
                server,
                handshake,
                events,
                server_events: Vec::new(),
            };
            p.server_results(results);
            let results = p.server.handle_input(&rest).unwrap();
            p.server_results(results);
            p
        }

        /// Hands server output to the client and client output to the server until quiet.
        fn server_results(&mut self, results: Vec<ServerSessionResult>) {
            let mut pending = results;
            for _ in 0..20 {
                for r in pending.drain(..) {
                    match r {
                        ServerSessionResult::OutboundResponse(p) => {
                            self.client.feed(&p.bytes, &mut self.events).unwrap()
                        }
                        ServerSessionResult::RaisedEvent(e) => self.server_events.push(e),
                        ServerSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
                let out = std::mem::take(self.client.output());
                if out.is_empty() {
                    return;
                }
                pending = self.server.handle_input(&out).unwrap();
            }
        }

        /// The id of the last request the server raised.
        fn request(&mut self) -> u32 {
            match self.server_events.pop() {
                Some(ServerSessionEvent::ConnectionRequested { request_id, .. }) => request_id,
                Some(ServerSessionEvent::PlayStreamRequested { request_id, .. }) => request_id,
                other => panic!("expected a request, got {other:?}"),
            }
        }

        fn accept(&mut self) {
            let id = self.request();
            let results = self.server.accept_request(id).unwrap();
            self.server_results(results);
        }
    }

    #[test]
    fn plays_from_an_independent_server() {
        let mut p = Pair::new("rtmp://127.0.0.1/live/cam1?token=x");
        let _ = &p.handshake;
        assert!(matches!(
            p.server_events.last(),
            Some(ServerSessionEvent::ConnectionRequested { app_name, .. }) if app_name == "live"
        ));
        p.accept();
        // createStream is answered by the server session itself; play is a request.
        match p.server_events.last() {
            Some(ServerSessionEvent::PlayStreamRequested {
                app_name,
                stream_key,
                stream_id,
                ..
            }) => {
                assert_eq!(
                    (app_name.as_str(), stream_key.as_str()),
                    ("live", "cam1?token=x")
                );
                assert_eq!(*stream_id, 1);
            }
            other => panic!("expected a play request, got {other:?}"),
        }
        assert_eq!(p.client.stage(), "play");
        p.accept();
        assert!(p.client.playing());
        assert_eq!(
            p.events.drain(..).collect::<Vec<_>>(),
            vec![PlayEvent::Playing]
        );

        let header = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
        let frame = Bytes::from(vec![0x27; 10_000]);
        for (t, body) in [(0, header.clone()), (40, frame.clone())] {
            let packet = p
                .server
                .send_video_data(1, body, RtmpTimestamp::new(t), false)
                .unwrap();
            p.client.feed(&packet.bytes, &mut p.events).unwrap();
        }
        let audio = p
            .server
            .send_audio_data(
                1,
                Bytes::from_static(&[0xaf, 1, 2]),
                RtmpTimestamp::new(60),
                false,
            )
            .unwrap();
        p.client.feed(&audio.bytes, &mut p.events).unwrap();
        assert_eq!(
            p.events,
            vec![
                PlayEvent::Video {
                    timestamp: 0,
                    body: header
                },
                PlayEvent::Video {
                    timestamp: 40,
                    body: frame
                },
            ]
        );
        let end = p.server.finish_playing(1).unwrap();
        p.events.clear();
        p.client.feed(&end.bytes, &mut p.events).unwrap();
        assert_eq!(
            p.events,
            vec![PlayEvent::Ended {
                code: "NetStream.Play.Complete".into()
            }]
        );
    }

    #[test]
    fn a_refused_play_is_an_event_with_the_servers_words() {
        let mut p = Pair::new("rtmp://127.0.0.1/live/nothing");
        p.accept();
        let id = p.request();
        let results = p
            .server
            .reject_request(id, "NetStream.Play.StreamNotFound", "no such stream")
            .unwrap();
        p.server_results(results);
        assert_eq!(
            p.events,
            vec![PlayEvent::Refused {
                what: "to play the stream",
                code: "NetStream.Play.StreamNotFound".into(),
                description: "no such stream".into(),
            }]
        );
        assert!(!p.client.playing());
    }

    #[test]
    fn a_refused_connect_is_an_event_too() {
        let mut p = Pair::new("rtmp://127.0.0.1/private/cam");
        let id = p.request();
        let results = p
            .server
            .reject_request(id, "NetConnection.Connect.Rejected", "go away")
            .unwrap();
        p.server_results(results);
        assert_eq!(
            p.events,
            vec![PlayEvent::Refused {
                what: "the connection",
                code: "NetConnection.Connect.Rejected".into(),
                description: "go away".into(),
            }]
        );
    }

    #[test]
    fn pings_are_answered_and_large_video_is_refused() {
        let mut p = Pair::new("rtmp://127.0.0.1/live/cam");
        p.accept();
        p.accept();
        let (ping, _) = p.server.send_ping_request().unwrap();
        p.client.feed(&ping.bytes, &mut p.events).unwrap();
        let pong = std::mem::take(p.client.output());
        let results = p.server.handle_input(&pong).unwrap();
        assert!(results.iter().any(|r| matches!(
            r,
            ServerSessionResult::RaisedEvent(ServerSessionEvent::PingResponseReceived { .. })
        )));

        let mut small = p;
        small.client.max_video_bytes = 100;
        let packet = small
            .server
            .send_video_data(
                1,
                Bytes::from(vec![0x27; 101]),
                RtmpTimestamp::new(0),
                false,
            )
            .unwrap();
        let e = small
            .client
            .feed(&packet.bytes, &mut small.events)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::TooLarge {
                    size: 101,
                    limit: 100,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn aggregate_messages_carry_video_tags_with_offset_times() {
        let mut payload = Vec::new();
        for (ty, time, body) in [
            (9u8, 1000u32, &[0x17u8, 1, 0, 0, 0][..]),
            (8, 1010, &[0xaf, 1][..]),
            (9, 1040, &[0x27, 1, 0, 0, 0, 9][..]),
        ] {
            let len = body.len() as u32;
            payload.push(ty);
            payload.extend_from_slice(&len.to_be_bytes()[1..]);
            payload.extend_from_slice(&time.to_be_bytes()[1..]);
            payload.push((time >> 24) as u8);
            payload.extend_from_slice(&[0, 0, 0]);
            payload.extend_from_slice(body);
            payload.extend_from_slice(&(len + 11).to_be_bytes());
        }
        let payload = Bytes::from(payload);
        let tags = aggregate_video(5000, &payload).unwrap();
        assert_eq!(
            tags,
            vec![
                (5000, Bytes::from_static(&[0x17, 1, 0, 0, 0])),
                (5040, Bytes::from_static(&[0x27, 1, 0, 0, 0, 9])),
            ]
        );
        // Truncated anywhere: an error, never a panic.
        for cut in 0..payload.len() {
            let _ = aggregate_video(0, &payload.slice(..cut));
        }
        assert!(aggregate_video(0, &payload.slice(..14)).is_err());
        assert!(aggregate_video(0, &payload.slice(..7)).is_err());
    }

    #[test]
    fn garbage_from_the_server_is_an_error_not_a_panic() {
        let mut s = PlaySession::new(&url("rtmp://h/live/cam"), MAX_VIDEO_MESSAGE_BYTES).unwrap();
        let mut ev = Vec::new();
        assert!(s.feed(&[0x47; 3000], &mut ev).is_err());
        // A valid handshake, then garbage chunks.
        let mut p = Pair::new("rtmp://h/live/cam");
        let mut junk = Vec::new();
        for i in 0..5000u32 {
            junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
        let _ = p.client.feed(&junk, &mut p.events); // may or may not be an error; must not panic
    }
}
