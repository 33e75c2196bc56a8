//! A recorded RTMP publish for tests and benchmarks: the bytes rml_rtmp's client sends to publish
//! testdata/720p.h264 (one GOP, looped with increasing timestamps) in 4096-byte chunks, and a
//! driver that feeds them to a [`Session`] the way `rtmp::server` does, in socket-sized reads.
#![allow(dead_code)] // each test or bench binary uses part of it

use bytes::Bytes;
use livesnap_ingest::flv::VideoFeed;
use livesnap_ingest::rtmp::session::{Event, Session};
use media::avc::AvcConfig;
use media::stream::StreamWriter;
use media::{Frame, VideoConfig};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

/// Milliseconds between frames (25 fps, as the file was made).
const FRAME_MS: u32 = 40;

/// Sizes of the reads the stream is cut into, in turn: a TCP segment, a few, a full socket read.
pub const READS: [usize; 5] = [1448, 4096, 16 * 1024, 64 * 1024, 7000];

/// What a publisher sent, split where a test wants to start measuring.
pub struct Recording {
    /// Handshake, connect, createStream, publish and the AVC sequence header.
    pub setup: Vec<u8>,
    /// The video messages of each GOP.
    pub gops: Vec<Vec<u8>>,
    /// Where each frame's message ends in its GOP's bytes.
    pub frame_ends: Vec<usize>,
    /// Frames per GOP.
    pub frames_per_gop: usize,
}

/// The AVCDecoderConfigurationRecord of a configuration with one SPS and one PPS.
fn avcc_record(config: &AvcConfig) -> Vec<u8> {
    let (sps, pps) = (&config.sps[0], &config.pps[0]);
    let mut r = vec![1, sps[1], sps[2], sps[3], 0xfc | 3, 0xe0 | 1];
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(pps);
    r
}

fn outbound(results: Vec<ClientSessionResult>, to: &mut Vec<u8>) -> Vec<ClientSessionEvent> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => to.extend_from_slice(&p.bytes),
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    events
}

/// Records a publish of `gops` GOPs, talking to our own [`Session`] for the replies.
pub fn record(gops: usize) -> Recording {
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/720p.h264"
    ))
    .expect("testdata/720p.h264");
    let (config, frames) = media::avc::annexb_to_frames(&file).expect("720p.h264 parses");

    let mut server = Session::new();
    let mut events = Vec::new();
    let mut setup = Vec::new();
    // Handshake.
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
    setup.extend_from_slice(&c0c1);
    server.feed(&c0c1, &mut events).unwrap();
    let s0s1s2 = std::mem::take(server.output());
    let c2 = match hs.process_bytes(&s0s1s2).unwrap() {
        HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
        HandshakeProcessResult::InProgress { .. } => panic!("client handshake not complete"),
    };
    setup.extend_from_slice(&c2);
    server.feed(&c2, &mut events).unwrap();

    // connect, createStream, publish: send, feed the server, hand its replies back, until live.
    let mut cfg = ClientSessionConfig::new();
    cfg.tc_url = Some("rtmp://127.0.0.1/live".into());
    cfg.chunk_size = 4096;
    let (mut client, initial) = ClientSession::new(cfg).unwrap();
    let mut pending = initial;
    pending.push(client.request_connection("live".into()).unwrap());
    let mut live = false;
    for _ in 0..20 {
        let start = setup.len();
        let client_events = outbound(std::mem::take(&mut pending), &mut setup);
        server.feed(&setup[start..], &mut events).unwrap();
        for e in events.drain(..) {
            if let Event::PublishRequested { .. } = e {
                server.accept_publish().unwrap();
            }
        }
        for e in client_events {
            match e {
                ClientSessionEvent::ConnectionRequestAccepted => pending.push(
                    client
                        .request_publishing("cam1".into(), PublishRequestType::Live)
                        .unwrap(),
                ),
                ClientSessionEvent::PublishRequestAccepted => live = true,
                _ => {}
            }
        }
        if live {
            break;
        }
        let out = std::mem::take(server.output());
        pending.extend(client.handle_input(&out).unwrap());
    }
    assert!(live, "the publish was not accepted");

    let mut tag = |body: Vec<u8>, ts: u32, to: &mut Vec<u8>| {
        let r = client
            .publish_video_data(Bytes::from(body), RtmpTimestamp::new(ts), false)
            .unwrap();
        outbound(vec![r], to);
    };
    let mut header = vec![0x17, 0, 0, 0, 0];
    header.extend_from_slice(&avcc_record(&config));
    tag(header, 0, &mut setup);
    let mut recorded = Vec::with_capacity(gops);
    let mut frame_ends = Vec::new();
    let mut n = 0u32;
    for _ in 0..gops {
        let mut gop = Vec::new();
        frame_ends.clear();
        for f in &frames {
            let mut body = vec![if f.keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend_from_slice(&f.data);
            tag(body, n * FRAME_MS, &mut gop);
            frame_ends.push(gop.len());
            n += 1;
        }
        recorded.push(gop);
    }
    Recording {
        setup,
        gops: recorded,
        frame_ends,
        frames_per_gop: frames.len(),
    }
}

/// Keeps the current GOP's frames and drops them at the next keyframe, like the hub.
#[derive(Default)]
pub struct GopKeeper {
    pub gop: Vec<Frame>,
    pub frames: usize,
    pub bytes: usize,
}

impl StreamWriter for GopKeeper {
    fn config(&mut self, _config: VideoConfig) {
        self.gop.clear();
    }
    fn frame(&mut self, frame: Frame) {
        if frame.keyframe {
            self.gop.clear();
        }
        self.frames += 1;
        self.bytes += frame.data.len();
        self.gop.push(frame);
    }
    fn unsupported(&mut self, name: &str) {
        panic!("unsupported {name}");
    }
}

/// One publishing connection on the server side: the session and the video feed behind it.
pub struct Receiver<W: StreamWriter> {
    pub session: Session,
    feed: VideoFeed,
    events: Vec<Event>,
    read: usize,
    pub writer: W,
}

impl<W: StreamWriter> Receiver<W> {
    pub fn new(writer: W) -> Self {
        Receiver {
            session: Session::new(),
            feed: VideoFeed::default(),
            events: Vec::new(),
            read: 0,
            writer,
        }
    }

    /// Feeds `data` in reads of the sizes of [`READS`], handling events as the server does.
    pub fn receive(&mut self, data: &[u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let n = READS[self.read % READS.len()].min(data.len() - pos);
            self.read += 1;
            self.session
                .feed(&data[pos..pos + n], &mut self.events)
                .expect("the recorded publish is valid");
            pos += n;
            for e in self.events.drain(..) {
                match e {
                    Event::PublishRequested { .. } => self.session.accept_publish().unwrap(),
                    Event::Video { timestamp, body } => {
                        self.feed
                            .feed(i64::from(timestamp), &body, &mut self.writer)
                            .expect("valid video tag");
                    }
                    Event::Unpublished | Event::Refused(_) => panic!("unexpected {e:?}"),
                }
            }
            self.session.output().clear();
        }
    }
}
