//! The sans-IO core of an RTMP connection: bytes in, [`Event`]s and reply bytes out.
//!
//! It drives rml_rtmp's handshake and chunk serializer and our own [`ChunkReader`], and answers
//! the NetConnection and NetStream commands a publisher sends (connect, releaseStream,
//! FCPublish, createStream, publish, FCUnpublish, deleteStream) and those of a player (play),
//! whose video it then writes ([`Session::send_video`]). It is written here rather than using
//! rml_rtmp's `ServerSession` because that one hides the connect command's `tcUrl` (we need its
//! host for the domain) and decodes AMF0 without a nesting limit.

use bytes::{Bytes, BytesMut};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{
    MessagePayload, PeerBandwidthLimitType, RtmpMessage, UserControlEventType,
};
use rml_rtmp::time::RtmpTimestamp;
use std::collections::HashMap;
use std::sync::Arc;

use media::budget::MemoryBudget;

use super::chunk::{ChunkReader, Message};
use crate::amf0::{self, Amf0Value};
use crate::{Error, Result};

/// Chunk size we send with.
const OUT_CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size we announce.
const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// Largest chunk size a peer may set (the protocol allows 2^31 - 1).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Largest command or data message decoded as AMF0.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest message RTMP can carry (its length field is 24 bits).
pub const MAX_MESSAGE_BYTES: usize = (1 << 24) - 1;
/// The message stream id given to the one stream a publisher creates.
const STREAM_ID: u32 = 1;

/// RTMP message type ids (RTMP spec 5.4 and 7.1).
mod msg {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const COMMAND_AMF0: u8 = 20;
    pub const WINDOW_ACK_SIZE: u8 = 5;
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The publisher asks to publish `name` (the raw publish name, query string included) on
    /// `app`; answer with [`Session::accept_publish`] or [`Session::reject_publish`].
    PublishRequested {
        /// The app from the connect command.
        app: String,
        /// The publish name, with any `?query`.
        name: String,
        /// The tcUrl from the connect command, if any.
        tc_url: Option<String>,
    },
    /// A video message on the published stream: an FLV video tag body.
    Video {
        /// RTMP timestamp (ms), as the chunk stream gives it.
        timestamp: u32,
        /// The tag body: a slice of the buffer it was received in, shared with other messages
        /// (sequence headers excepted), so keep it only as long as its frame is needed.
        body: Bytes,
    },
    /// The publisher stopped publishing (FCUnpublish, deleteStream or closeStream).
    Unpublished,
    /// The peer asks to play `name` (query string included) of `app`; answer with
    /// [`Session::accept_play`] or [`Session::reject_play`].
    PlayRequested {
        /// The app from the connect command.
        app: String,
        /// The stream name, with any `?query`.
        name: String,
        /// The tcUrl from the connect command, if any.
        tc_url: Option<String>,
    },
    /// The player stopped playing (deleteStream or closeStream).
    PlayStopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

/// One RTMP publish connection's protocol state.
pub struct Session {
    /// The ingest budget partial messages are charged to once publishing.
    budget: Arc<MemoryBudget>,
    state: State,
    handshake: Handshake,
    reader: ChunkReader,
    serializer: ChunkSerializer,
    out: Vec<u8>,
    app: Option<String>,
    tc_url: Option<String>,
    publish_tx: f64,
    play_tx: f64,
    /// Bytes received, handshake included.
    received: u64,
    /// What the read buffer held after the last [`Session::process`].
    unread: usize,
    peer_window: u32,
    last_ack: u64,
    connected: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A new connection, waiting for the handshake, whose partial messages are not charged to
    /// any budget (tools and tests).
    pub fn new() -> Session {
        Self::with_budget(MemoryBudget::unlimited())
    }

    /// A new connection whose partial messages, once it publishes, are charged to `budget`.
    pub fn with_budget(budget: Arc<MemoryBudget>) -> Session {
        Session {
            budget,
            state: State::Handshaking,
            handshake: Handshake::new(PeerType::Server),
            reader: ChunkReader::new(),
            serializer: ChunkSerializer::new(),
            out: Vec::new(),
            app: None,
            tc_url: None,
            publish_tx: 0.0,
            play_tx: 0.0,
            received: 0,
            unread: 0,
            peer_window: 0,
            last_ack: 0,
            connected: false,
        }
    }

    /// True once the handshake is done.
    pub fn handshake_done(&self) -> bool {
        self.state != State::Handshaking
    }

    /// True while a publish is accepted and running.
    pub fn publishing(&self) -> bool {
        self.state == State::Publishing
    }

    /// Bytes to send to the peer; the caller writes them out and clears the buffer.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The buffer for bytes from the socket, with room for a read: append to it (tokio's
    /// `read_buf` reads into its spare capacity) and call [`Session::process`]. This saves the
    /// copy [`Session::feed`] makes.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        self.reader.read_buffer()
    }

    /// Feeds bytes from the socket, appending what happened to `events`.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<()> {
        self.reader.push(data);
        self.process(events)
    }

    /// Handles the bytes appended to [`Session::read_buffer`] since the last call, appending
    /// what happened to `events`.
    pub fn process(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let buffered = self.reader.buffered();
        self.received += buffered.saturating_sub(self.unread) as u64;
        let result = self.process_buffered(events);
        self.unread = self.reader.buffered();
        result
    }

    fn process_buffered(&mut self, events: &mut Vec<Event>) -> Result<()> {
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
                    self.state = State::Connected;
                    self.reader.push(&remaining_bytes);
                }
            }
        }
        while let Some(message) = self.reader.next_message()? {
            self.on_message(message, events)?;
        }
        if self.peer_window > 0 && self.received - self.last_ack >= u64::from(self.peer_window) {
            self.last_ack = self.received;
            self.acknowledge(self.received as u32);
        }
        Ok(())
    }

    /// Accepts the pending publish: the publisher gets NetStream.Publish.Start.
    pub fn accept_publish(&mut self) -> Result<()> {
        if self.state != State::PublishPending {
            return Err(Error::Protocol("no publish is pending".into()));
        }
        self.state = State::Publishing;
        self.user_control(UserControlEventType::StreamBegin)?;
        let tx = self.publish_tx;
        self.on_status(
            tx,
            "status",
            "NetStream.Publish.Start",
            "Publishing started.",
        )
    }

    /// Refuses the pending publish with an error status (e.g. `NetStream.Publish.BadName`).
    pub fn reject_publish(&mut self, code: &str, description: &str) -> Result<()> {
        self.state = State::Connected;
        let tx = self.publish_tx;
        self.on_status(tx, "error", code, description)
    }

    /// Accepts the pending play: the player gets NetStream.Play.Reset and .Start, then the
    /// video written with [`Session::send_video`].
    pub fn accept_play(&mut self) -> Result<()> {
        if self.state != State::PlayPending {
            return Err(Error::Protocol("no play is pending".into()));
        }
        self.state = State::Playing;
        self.user_control(UserControlEventType::StreamBegin)?;
        let tx = self.play_tx;
        self.on_status(
            tx,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting.",
        )?;
        self.on_status(tx, "status", "NetStream.Play.Start", "Started playing.")
    }

    /// Refuses the pending play with an error status (e.g. `NetStream.Play.StreamNotFound`).
    pub fn reject_play(&mut self, code: &str, description: &str) -> Result<()> {
        self.state = State::Connected;
        let tx = self.play_tx;
        self.on_status(tx, "error", code, description)
    }

    /// True while a play is accepted and running.
    pub fn playing(&self) -> bool {
        self.state == State::Playing
    }

    /// Writes one video message (an FLV video tag body) to the player; one over
    /// [`MAX_MESSAGE_BYTES`] is refused ([`Error::TooLarge`]) and nothing is written.
    pub fn send_video(&mut self, timestamp: u32, body: Bytes) -> Result<()> {
        if self.state != State::Playing {
            return Err(Error::Protocol(
                "video for a connection that does not play".into(),
            ));
        }
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(Error::TooLarge {
                what: "video message to a player",
                size: body.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(timestamp),
            type_id: msg::VIDEO,
            message_stream_id: STREAM_ID,
            data: body,
        };
        let packet = self
            .serializer
            .serialize(&payload, false, false)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }

    /// Ends the play with a status (`NetStream.Play.UnpublishNotify` when the publisher left,
    /// an error level and code otherwise), then StreamEOF.
    pub fn end_play(&mut self, level: &str, code: &str, description: &str) -> Result<()> {
        if self.state != State::Playing {
            return Ok(());
        }
        self.state = State::Connected;
        let tx = self.play_tx;
        self.on_status(tx, level, code, description)?;
        self.user_control(UserControlEventType::StreamEof)
    }

    fn user_control(&mut self, event_type: UserControlEventType) -> Result<()> {
        self.send(
            RtmpMessage::UserControl {
                event_type,
                stream_id: Some(STREAM_ID),
                buffer_length: None,
                timestamp: None,
            },
            0,
        )
    }

    fn on_message(&mut self, m: Message, events: &mut Vec<Event>) -> Result<()> {
        match m.type_id {
            msg::VIDEO => {
                // Also while the publish is pending: a client may send media right behind its
                // publish command, in the same read, and the first video message is usually the
                // only sequence header. The caller handles events in order, so it has accepted
                // (or refused) the publish before it sees these.
                let publishing = matches!(self.state, State::Publishing | State::PublishPending);
                if publishing && m.stream_id == STREAM_ID && !m.payload.is_empty() {
                    // A sequence header's parameter sets are kept as long as the stream: a slice
                    // would keep the whole slab it shares with frames (see `chunk`), so copy it.
                    let body = if is_sequence_header(&m.payload) {
                        Bytes::copy_from_slice(&m.payload)
                    } else {
                        m.payload
                    };
                    events.push(Event::Video {
                        timestamp: m.timestamp,
                        body,
                    });
                }
            }
            msg::AUDIO => {} // accepted and dropped
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
            _ => {} // data (onMetaData), acks, user control, AMF3: nothing we need
        }
        Ok(())
    }

    fn on_command(&mut self, values: Vec<Amf0Value>, events: &mut Vec<Event>) -> Result<()> {
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
            "connect" => {
                if self.connected {
                    return Err(Error::Protocol("second connect on one connection".into()));
                }
                let props = match object {
                    Some(Amf0Value::Object(p)) => p,
                    _ => return Err(Error::Protocol("connect without a command object".into())),
                };
                let text = |k: &str| match props.get(k) {
                    Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
                    _ => None,
                };
                let app = text("app").unwrap_or_default();
                // Some clients put the query on the app ("live?vhost=x"); keep it for the resolver.
                self.app = Some(app.trim_end_matches('/').to_string());
                self.tc_url = text("tcUrl");
                self.connected = true;
                self.send(
                    RtmpMessage::WindowAcknowledgement {
                        size: WINDOW_ACK_SIZE,
                    },
                    0,
                )?;
                self.send(
                    RtmpMessage::SetPeerBandwidth {
                        size: WINDOW_ACK_SIZE,
                        limit_type: PeerBandwidthLimitType::Dynamic,
                    },
                    0,
                )?;
                let packet = self
                    .serializer
                    .set_max_chunk_size(OUT_CHUNK_SIZE, RtmpTimestamp::new(0))
                    .map_err(|e| Error::Chunk(e.to_string()))?;
                self.out.extend_from_slice(&packet.bytes);
                let mut server = HashMap::new();
                server.insert(
                    "fmsVer".to_string(),
                    Amf0Value::Utf8String("FMS/3,0,1,123".into()),
                );
                server.insert("capabilities".to_string(), Amf0Value::Number(31.0));
                let mut info = HashMap::new();
                info.insert("level".to_string(), Amf0Value::Utf8String("status".into()));
                info.insert(
                    "code".to_string(),
                    Amf0Value::Utf8String("NetConnection.Connect.Success".into()),
                );
                info.insert(
                    "description".to_string(),
                    Amf0Value::Utf8String("Connection succeeded.".into()),
                );
                info.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
                self.command(
                    "_result",
                    tx,
                    Amf0Value::Object(server),
                    vec![Amf0Value::Object(info)],
                    0,
                )?;
            }
            "releaseStream" | "FCPublish" => {
                self.require_connected(&name)?;
                self.command(
                    "_result",
                    tx,
                    Amf0Value::Null,
                    vec![Amf0Value::Undefined],
                    0,
                )?;
            }
            "createStream" => {
                self.require_connected(&name)?;
                self.command(
                    "_result",
                    tx,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(STREAM_ID))],
                    0,
                )?;
            }
            "publish" => {
                self.require_connected(&name)?;
                if self.state != State::Connected {
                    return Err(Error::Protocol("publish while already publishing".into()));
                }
                let stream_name = match args.first() {
                    Some(Amf0Value::Utf8String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(Error::Protocol("publish without a stream name".into())),
                };
                self.publish_tx = tx;
                self.state = State::PublishPending;
                // Media may follow in the same read: from here on it is a publisher's.
                self.reader.publishing(self.budget.clone());
                events.push(Event::PublishRequested {
                    app: self.app.clone().unwrap_or_default(),
                    name: stream_name,
                    tc_url: self.tc_url.clone(),
                });
            }
            "deleteStream" | "closeStream"
                if matches!(self.state, State::Playing | State::PlayPending) =>
            {
                // A pending play is answered first: its event came before this one.
                if self.state == State::Playing {
                    self.state = State::Connected;
                }
                events.push(Event::PlayStopped);
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if self.state == State::Publishing {
                    self.state = State::Connected;
                    events.push(Event::Unpublished);
                    if name == "FCUnpublish" {
                        self.on_status(
                            tx,
                            "status",
                            "NetStream.Unpublish.Success",
                            "Stream unpublished.",
                        )?;
                    }
                }
            }
            "play" => {
                self.require_connected(&name)?;
                if self.state != State::Connected {
                    return Err(Error::Protocol("play while publishing or playing".into()));
                }
                // play(null, name, start, duration, reset): only the name matters for live.
                let stream_name = match args.first() {
                    Some(Amf0Value::Utf8String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(Error::Protocol("play without a stream name".into())),
                };
                self.play_tx = tx;
                self.state = State::PlayPending;
                events.push(Event::PlayRequested {
                    app: self.app.clone().unwrap_or_default(),
                    name: stream_name,
                    tc_url: self.tc_url.clone(),
                });
            }
            _ => {} // getStreamLength, _checkbw, ...: ignored, as other servers do
        }
        Ok(())
    }

    fn require_connected(&self, name: &str) -> Result<()> {
        if self.connected {
            Ok(())
        } else {
            Err(Error::Protocol(format!("{name:?} before connect")))
        }
    }

    fn on_status(&mut self, tx: f64, level: &str, code: &str, description: &str) -> Result<()> {
        let mut info = HashMap::new();
        info.insert("level".to_string(), Amf0Value::Utf8String(level.into()));
        info.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
        info.insert(
            "description".to_string(),
            Amf0Value::Utf8String(description.into()),
        );
        self.command(
            "onStatus",
            tx,
            Amf0Value::Null,
            vec![Amf0Value::Object(info)],
            STREAM_ID,
        )
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
        self.send_payload(msg::COMMAND_AMF0, Bytes::from(data), stream)
    }

    /// Sends an Acknowledgement (spec 5.4.3) of `sequence` bytes: one chunk with a full header
    /// on chunk stream 2, written here because rml_rtmp's serializer allocates four times per
    /// message and this one recurs as long as the stream runs.
    fn acknowledge(&mut self, sequence: u32) {
        // fmt 0, csid 2 | timestamp 0 | length 4 | type | message stream 0 (little endian)
        self.out
            .extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, msg::ACKNOWLEDGEMENT, 0, 0, 0, 0]);
        self.out.extend_from_slice(&sequence.to_be_bytes());
    }

    /// Sends a protocol control message (chunk stream 2).
    fn send(&mut self, message: RtmpMessage, stream: u32) -> Result<()> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), stream)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        // A full header, so that the acknowledgements written by hand on the same chunk stream
        // leave nothing for a compressed header to depend on.
        let packet = self
            .serializer
            .serialize(&payload, true, false)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }

    fn send_payload(&mut self, type_id: u8, data: Bytes, stream: u32) -> Result<()> {
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(0),
            type_id,
            message_stream_id: stream,
            data,
        };
        let packet = self
            .serializer
            .serialize(&payload, false, false)
            .map_err(|e| Error::Chunk(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    //! Drives the session with rml_rtmp's client: an RTMP implementation we did not write.
    use super::*;
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };

    struct Pair {
        client: ClientSession,
        server: Session,
        client_events: Vec<ClientSessionEvent>,
        server_events: Vec<Event>,
    }

    impl Pair {
        fn new(tc_url: &str) -> Pair {
            Pair::with_config(tc_url, ClientSessionConfig::new())
        }

        fn with_config(tc_url: &str, mut config: ClientSessionConfig) -> Pair {
            let mut hs = Handshake::new(PeerType::Client);
            let mut server = Session::new();
            let mut ev = Vec::new();
            let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
            server.feed(&c0c1, &mut ev).unwrap();
            let s = std::mem::take(server.output());
            let c2 = match hs.process_bytes(&s).unwrap() {
                HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
                HandshakeProcessResult::InProgress { .. } => {
                    panic!("client handshake not complete")
                }
            };
            server.feed(&c2, &mut ev).unwrap();
            assert!(server.handshake_done());
            config.tc_url = Some(tc_url.to_string());
            let (client, _) = ClientSession::new(config).unwrap();
            Pair {
                client,
                server,
                client_events: Vec::new(),
                server_events: Vec::new(),
            }
        }

        /// Sends client results to the server and server output back until quiet.
        fn pump(&mut self, results: Vec<ClientSessionResult>) {
            let mut pending = results;
            for _ in 0..20 {
                for r in pending.drain(..) {
                    match r {
                        ClientSessionResult::OutboundResponse(p) => {
                            // As the server reads: into the session's buffer, no copy.
                            self.server.read_buffer().extend_from_slice(&p.bytes);
                            self.server.process(&mut self.server_events).unwrap()
                        }
                        ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                        ClientSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
                let out = std::mem::take(self.server.output());
                if out.is_empty() {
                    return;
                }
                pending = self.client.handle_input(&out).unwrap();
            }
        }
    }

    #[test]
    fn publish_flow_with_an_independent_client() {
        let mut p = Pair::new("rtmp://cams.example.com:1935/live");
        let r = p.client.request_connection("live".into()).unwrap();
        p.pump(vec![r]);
        assert!(p
            .client_events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted)));
        let r = p
            .client
            .request_publishing("cam1?token=x".into(), PublishRequestType::Live)
            .unwrap();
        p.pump(vec![r]);
        assert_eq!(
            p.server_events.drain(..).collect::<Vec<_>>(),
            vec![Event::PublishRequested {
                app: "live".into(),
                name: "cam1?token=x".into(),
                tc_url: Some("rtmp://cams.example.com:1935/live".into()),
            }]
        );
        p.server.accept_publish().unwrap();
        p.pump(Vec::new());
        assert!(p
            .client_events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted)));
        assert!(p.server.publishing());
        let body = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
        let r = p
            .client
            .publish_video_data(body.clone(), RtmpTimestamp::new(40), false)
            .unwrap();
        p.pump(vec![r]);
        assert_eq!(
            p.server_events,
            vec![Event::Video {
                timestamp: 40,
                body
            }]
        );
    }

    #[test]
    fn play_flow_with_an_independent_client() {
        let mut p = Pair::new("rtmp://127.0.0.1:1935/live");
        let r = p.client.request_connection("live".into()).unwrap();
        p.pump(vec![r]);
        let r = p.client.request_playback("cam1?x=1".into()).unwrap();
        p.pump(vec![r]);
        assert_eq!(
            p.server_events.drain(..).collect::<Vec<_>>(),
            vec![Event::PlayRequested {
                app: "live".into(),
                name: "cam1?x=1".into(),
                tc_url: Some("rtmp://127.0.0.1:1935/live".into()),
            }]
        );
        // Video before the play is accepted is a caller's mistake, refused.
        assert!(p.server.send_video(0, Bytes::from_static(&[0x17])).is_err());
        p.server.accept_play().unwrap();
        assert!(p.server.playing());
        let bodies = [
            Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            Bytes::from(vec![0x27; 9000]), // over the chunk size: sent in chunks
        ];
        for (i, body) in bodies.iter().enumerate() {
            p.server.send_video(40 * i as u32, body.clone()).unwrap();
        }
        p.pump(Vec::new());
        assert!(p
            .client_events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted)));
        let got: Vec<(u32, Bytes)> = p
            .client_events
            .iter()
            .filter_map(|e| match e {
                ClientSessionEvent::VideoDataReceived { data, timestamp } => {
                    Some((timestamp.value, data.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![(0, bodies[0].clone()), (40, bodies[1].clone())]);
        // The stream ends: the player is told, and the session no longer plays.
        p.server
            .end_play("status", "NetStream.Play.UnpublishNotify", "gone")
            .unwrap();
        assert!(!p.server.playing());
        assert!(!p.server.output().is_empty());
    }

    #[test]
    fn a_refused_play_reaches_the_client_as_an_error() {
        let mut p = Pair::new("rtmp://127.0.0.1/live");
        let r = p.client.request_connection("live".into()).unwrap();
        p.pump(vec![r]);
        let r = p.client.request_playback("nope".into()).unwrap();
        p.pump(vec![r]);
        p.server
            .reject_play("NetStream.Play.StreamNotFound", "nope is not live")
            .unwrap();
        assert!(!p.server.playing());
        p.pump(Vec::new());
        assert!(!p
            .client_events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted)));
    }

    #[test]
    fn acknowledgements_are_read_by_an_independent_client() {
        // A small window: the server acknowledges at once, between messages on the same chunk
        // stream (2) as the serializer's control messages.
        let mut config = ClientSessionConfig::new();
        config.window_ack_size = 1000;
        let mut p = Pair::with_config("rtmp://127.0.0.1/live", config);
        let r = p.client.request_connection("live".into()).unwrap();
        p.pump(vec![r]);
        let r = p
            .client
            .request_publishing("cam1".into(), PublishRequestType::Live)
            .unwrap();
        p.pump(vec![r]);
        p.server.accept_publish().unwrap();
        p.pump(Vec::new());
        let body = Bytes::from(vec![0x27; 1500]);
        let r = p
            .client
            .publish_video_data(body, RtmpTimestamp::new(40), false)
            .unwrap();
        p.pump(vec![r]);
        let acks: Vec<u32> = p
            .client_events
            .iter()
            .filter_map(|e| match e {
                ClientSessionEvent::AcknowledgementReceived { bytes_received } => {
                    Some(*bytes_received)
                }
                _ => None,
            })
            .collect();
        assert!(acks.len() >= 2, "{acks:?}");
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
        assert!(p
            .client_events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted)));
    }

    #[test]
    fn rejected_publish_reaches_the_client_as_an_error() {
        let mut p = Pair::new("rtmp://127.0.0.1/live");
        let r = p.client.request_connection("live".into()).unwrap();
        p.pump(vec![r]);
        let r = p
            .client
            .request_publishing("cam1".into(), PublishRequestType::Live)
            .unwrap();
        p.pump(vec![r]);
        p.server
            .reject_publish("NetStream.Publish.BadName", "already live")
            .unwrap();
        p.pump(Vec::new());
        assert!(!p.server.publishing());
        assert!(!p
            .client_events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut s = Session::new();
        let mut ev = Vec::new();
        assert!(s.feed(&[0x47; 3000], &mut ev).is_err());
        // A valid C0/C1 then garbage chunks.
        let mut hs = Handshake::new(PeerType::Client);
        let mut s = Session::new();
        s.feed(&hs.generate_outbound_p0_and_p1().unwrap(), &mut ev)
            .unwrap();
        let out = std::mem::take(s.output());
        if let HandshakeProcessResult::Completed { response_bytes, .. } =
            hs.process_bytes(&out).unwrap()
        {
            s.feed(&response_bytes, &mut ev).unwrap();
        }
        let mut junk = Vec::new();
        for i in 0..5000u32 {
            junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
        let _ = s.feed(&junk, &mut ev); // may or may not be an error; must not panic
    }
}
