//! The RTMP server's merged read (`RtmpConfig::merge_read`) over real loopback sockets: a
//! recorded publish (testdata/720p.h264, see `common`) trickled into `rtmp::server::serve` in
//! TCP-segment-sized writes, frames timed where they reach the stream writer.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livesnap_ingest::rtmp::server::{serve, RtmpConfig};
use media::stream::{PublishRefused, PublisherInfo, StreamKey, StreamSink, StreamWriter};
use media::{Frame, VideoConfig};

/// What the server delivered for the one stream of a test.
#[derive(Default)]
struct Log {
    /// When each frame reached the writer.
    frames: Vec<Instant>,
    /// The writer was dropped: the stream ended.
    ended: bool,
}

struct Sink(Arc<Mutex<Log>>);
struct Writer(Arc<Mutex<Log>>);

impl StreamSink for Sink {
    fn publish(
        &self,
        _key: StreamKey,
        _info: PublisherInfo,
    ) -> Result<Box<dyn StreamWriter>, PublishRefused> {
        Ok(Box::new(Writer(self.0.clone())))
    }
}

impl StreamWriter for Writer {
    fn config(&mut self, _config: VideoConfig) {}
    fn frame(&mut self, _frame: Frame) {
        self.0.lock().unwrap().frames.push(Instant::now());
    }
    fn unsupported(&mut self, name: &str) {
        panic!("unsupported {name}");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.lock().unwrap().ended = true;
    }
}

/// A server on 127.0.0.1:0 with `config`, on its own runtime.
fn start(config: RtmpConfig) -> (SocketAddr, Arc<Mutex<Log>>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(serve(
        listener,
        Arc::new(Sink(log.clone())),
        config,
        tokio_util::sync::CancellationToken::new(),
        tokio_util::task::TaskTracker::new(),
    ));
    (addr, log, runtime)
}

/// Connects and sends the handshake, connect, publish and sequence header; drains the replies
/// on a thread so the server's writes never block.
fn publish(addr: SocketAddr, setup: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_nodelay(true).unwrap();
    let mut replies = socket.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(replies.read(&mut buf), Ok(n) if n > 0) {}
    });
    socket.write_all(setup).unwrap();
    socket
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Publishes `gops` GOPs a frame at a time, `pace` apart, and returns the number of distinct
/// moments frames reached the writer (frames less than `BURST` apart count as one), the frames
/// delivered and the frames sent.
fn trickle(merge_read: Duration, gops: usize, pace: Duration) -> (usize, usize, usize) {
    const BURST: Duration = Duration::from_millis(10);
    let rec = common::record(gops);
    let (addr, log, _runtime) = start(RtmpConfig {
        merge_read,
        ..RtmpConfig::default()
    });
    let mut socket = publish(addr, &rec.setup);
    for gop in &rec.gops {
        let mut start = 0;
        for &end in &rec.frame_ends {
            socket.write_all(&gop[start..end]).unwrap();
            start = end;
            std::thread::sleep(pace);
        }
    }
    let expected = gops * rec.frames_per_gop;
    wait_until("frames delivered", Duration::from_secs(10), || {
        log.lock().unwrap().frames.len() >= expected
    });
    let log = log.lock().unwrap();
    let moments = 1 + log
        .frames
        .windows(2)
        .filter(|w| w[1].duration_since(w[0]) >= BURST)
        .count();
    (moments, log.frames.len(), expected)
}

#[test]
fn merged_reads_deliver_every_frame_on_the_ticks_only() {
    const PERIOD: Duration = Duration::from_millis(200);
    const PACE: Duration = Duration::from_millis(40);
    const GOPS: usize = 2;
    let (moments, frames, expected) = trickle(PERIOD, GOPS, PACE);
    assert_eq!(frames, expected);
    let spread = PACE * expected as u32;
    let ticks = (spread.as_millis() / PERIOD.as_millis()) as usize + 1;
    // One burst per tick; twice that (plus one) leaves room for a burst the machine splits.
    assert!(
        moments <= 2 * ticks + 1,
        "{expected} frames reached the writer at {moments} distinct moments over {ticks} ticks: \
         read as they arrived, not on the ticks"
    );
    // The same publish read as bytes arrive: frames come one by one, so the count above does
    // tell merged reads apart.
    let (unmerged, frames, expected) = trickle(Duration::ZERO, GOPS, PACE);
    assert_eq!(frames, expected);
    println!("{expected} frames over {ticks} ticks: {moments} moments merged, {unmerged} not");
    assert!(
        unmerged > 2 * ticks + 1,
        "read at once, {expected} frames came at only {unmerged} moments: the test cannot tell"
    );
}

#[test]
fn a_merged_read_publisher_that_falls_silent_is_dropped_and_one_that_leaves_ends_at_once() {
    let rec = common::record(1);
    let config = RtmpConfig {
        merge_read: Duration::from_millis(40),
        idle_timeout: Duration::from_secs(1),
        ..RtmpConfig::default()
    };
    // Silent: the connection stays open and sends nothing after one GOP.
    let (addr, log, _runtime) = start(config.clone());
    let mut socket = publish(addr, &rec.setup);
    socket.write_all(&rec.gops[0]).unwrap();
    wait_until("frames delivered", Duration::from_secs(5), || {
        log.lock().unwrap().frames.len() >= rec.frames_per_gop
    });
    let silent = Instant::now();
    wait_until("silent publisher dropped", Duration::from_secs(10), || {
        log.lock().unwrap().ended
    });
    assert!(
        silent.elapsed() >= Duration::from_millis(900),
        "dropped {:?} after it fell silent, before the 1 s idle timeout",
        silent.elapsed()
    );
    // The server closed its side: a write now fails, sooner or later.
    let closed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        socket.write_all(&[0u8; 1024]).is_err()
    });
    assert!(closed, "the server kept the silent connection open");

    // Leaving: closing the socket ends the stream well before the idle timeout.
    let (addr, log, _runtime) = start(config);
    let socket = publish(addr, &rec.setup);
    (&socket).write_all(&rec.gops[0]).unwrap();
    wait_until("frames delivered", Duration::from_secs(5), || {
        log.lock().unwrap().frames.len() >= rec.frames_per_gop
    });
    let left = Instant::now();
    socket.shutdown(std::net::Shutdown::Both).unwrap();
    drop(socket);
    wait_until("stream ended", Duration::from_secs(5), || {
        log.lock().unwrap().ended
    });
    assert!(
        left.elapsed() < Duration::from_millis(900),
        "the stream ended {:?} after its publisher left: by the idle timeout, not at EOF",
        left.elapsed()
    );
}
