//! A recorded RTMP publish for tests and benchmarks: the bytes the test publisher sends to publish
//! testdata/720p.h264 (one GOP, looped with increasing timestamps) in 4096-byte chunks, and a
//! driver that feeds them to a [`Session`] the way `rtmp::server` does, in socket-sized reads.
#![allow(dead_code)] // each test or bench binary uses part of it

use std::io::{self, Read, Write};

use livesnap_ingest::flv::VideoFeed;
use livesnap_ingest::rtmp::session::{Event, Session};
use livesnap_testkit::rtmp::Publisher;
use media::avc::AvcConfig;
use media::stream::StreamWriter;
use media::{Frame, VideoConfig};

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

/// An in-memory connection to a server [`Session`]: what the publisher writes is recorded and
/// fed to the session, which accepts the publish; the session's answers are what it reads.
struct Loopback {
    server: Session,
    events: Vec<Event>,
    sent: Vec<u8>,
    answers: Vec<u8>,
}

impl Write for Loopback {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.sent.extend_from_slice(b);
        self.server
            .feed(b, &mut self.events)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        for e in self.events.drain(..) {
            if let Event::PublishRequested { .. } = e {
                self.server.accept_publish().unwrap();
            }
        }
        self.answers.append(self.server.output());
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Loopback {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.answers.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.answers.len());
        buf[..n].copy_from_slice(&self.answers[..n]);
        self.answers.drain(..n);
        Ok(n)
    }
}

/// Records a publish of `gops` GOPs by the test publisher, talking to our own [`Session`].
pub fn record(gops: usize) -> Recording {
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/720p.h264"
    ))
    .expect("testdata/720p.h264");
    let (config, frames) = media::avc::annexb_to_frames(&file).expect("720p.h264 parses");

    let lo = Loopback {
        server: Session::new(),
        events: Vec::new(),
        sent: Vec::new(),
        answers: Vec::new(),
    };
    let mut p = Publisher::over(lo, "rtmp://127.0.0.1/live", "live", "cam1")
        .expect("the publish is accepted");
    let mut header = vec![0x17, 0, 0, 0, 0];
    header.extend_from_slice(&avcc_record(&config));
    p.video(&header, 0).unwrap();
    let setup = std::mem::take(&mut p.stream().sent);
    let mut recorded = Vec::with_capacity(gops);
    let mut frame_ends = Vec::new();
    let mut n = 0u32;
    for _ in 0..gops {
        frame_ends.clear();
        for f in &frames {
            let mut body = vec![if f.keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend_from_slice(&f.data);
            p.video(&body, n * FRAME_MS).unwrap();
            frame_ends.push(p.stream().sent.len());
            n += 1;
        }
        recorded.push(std::mem::take(&mut p.stream().sent));
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
                    Event::Unpublished | Event::PlayRequested { .. } | Event::PlayStopped => {
                        panic!("unexpected {e:?}")
                    }
                }
            }
            self.session.output().clear();
        }
    }
}
