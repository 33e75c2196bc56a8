//! The contract every front end (RTMP now; RTSP and WHIP next) is built on, so each protocol
//! only speaks its protocol:
//! - [`FrontEnd`]: a bound listener the server starts from its list and stops with itself;
//! - [`ConnectionLimit`]: the connection limit and the counts `/metrics` shows;
//! - [`Publication`]: one live stream from publish to unpublish: the name is resolved with
//!   [`crate::name::resolve`] (the `domain=` query, configured domains), a name already live is
//!   refused, timestamps are unwrapped ([`TimestampUnwrap`]), FLV video tags (RTMP, FLV pulls)
//!   become parameter sets and frames ([`crate::flv::VideoFeed`]), an unsupported codec is
//!   reported once, and dropping it unpublishes the stream.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use media::stream::{PublishRefused, PublisherInfo, StreamKey, StreamSink, StreamWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::flv::{Fed, VideoFeed};

/// A front end's listener, bound and ready to serve.
pub trait FrontEnd: Send {
    /// The protocol's name (`rtmp`, `rtsp`, `whip`), as metrics and logs show it.
    fn protocol(&self) -> &'static str;
    /// The address it listens on.
    fn local_addr(&self) -> SocketAddr;
    /// Its connection counts.
    fn stats(&self) -> Arc<ConnectionStats>;
    /// Serves until `shutdown` is cancelled, publishing into `sink`, with every connection's
    /// task on `tasks`. On shutdown it stops accepting and ends its connections (their streams
    /// are unpublished).
    fn serve(
        self: Box<Self>,
        sink: Arc<dyn StreamSink>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Connections of a front end.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Open now.
    pub open: AtomicU64,
    /// Accepted since start.
    pub accepted: AtomicU64,
    /// Refused at the connection limit.
    pub refused: AtomicU64,
}

/// At most so many connections at once, counted.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    stats: Arc<ConnectionStats>,
}

/// One admitted connection: its slot is given back (and `open` counted down) when dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionLimit {
    /// A limit of `max` connections, counted in `stats`.
    pub fn new(max: usize, stats: Arc<ConnectionStats>) -> ConnectionLimit {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            stats,
        }
    }

    /// Admits one more connection, or refuses it (counted and logged) at the limit.
    pub fn admit(&self, protocol: &'static str, addr: SocketAddr) -> Option<Admitted> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                self.stats.open.fetch_add(1, Ordering::Relaxed);
                Some(Admitted {
                    _permit: permit,
                    stats: self.stats.clone(),
                })
            }
            Err(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(%addr, protocol, limit = self.max, "connection refused: connection limit reached");
                None
            }
        }
    }
}

/// Makes 32-bit millisecond timestamps (RTMP's, FLV's; wrapping every 49.7 days) monotonic
/// 64-bit ones.
#[derive(Debug, Default)]
pub struct TimestampUnwrap {
    base: i64,
    last: Option<u32>,
}

impl TimestampUnwrap {
    /// The unwrapped value of `ts`.
    pub fn next(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            if ts < last && last - ts > u32::MAX / 2 {
                self.base += 1 << 32;
            }
        }
        self.last = Some(ts);
        self.base + i64::from(ts)
    }
}

/// One live stream from publish to unpublish (dropping it unpublishes).
pub struct Publication {
    writer: Box<dyn StreamWriter>,
    feed: VideoFeed,
    clock: TimestampUnwrap,
    unsupported_reported: bool,
    key: StreamKey,
    info: PublisherInfo,
}

impl Publication {
    /// Publishes `key` into `sink`; refused when the name is already live or the server is
    /// full (the caller tells its peer in its protocol's words).
    pub fn start(
        sink: &dyn StreamSink,
        key: StreamKey,
        info: PublisherInfo,
    ) -> Result<Publication, PublishRefused> {
        match sink.publish(key.clone(), info.clone()) {
            Ok(writer) => {
                info!(addr = %info.addr, protocol = info.protocol, stream = %key, "publish started");
                Ok(Publication {
                    writer,
                    feed: VideoFeed::default(),
                    clock: TimestampUnwrap::default(),
                    unsupported_reported: false,
                    key,
                    info,
                })
            }
            Err(refused) => {
                warn!(addr = %info.addr, protocol = info.protocol, stream = %key, reason = %refused, "publish refused");
                Err(refused)
            }
        }
    }

    /// The stream's name.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// The stream's writer, for front ends that make frames themselves (RTP depacketizers).
    pub fn writer(&mut self) -> &mut dyn StreamWriter {
        self.writer.as_mut()
    }

    /// One FLV video tag body (an RTMP video message) with its 32-bit timestamp. A bad tag or
    /// sequence header is dropped and logged; the stream goes on.
    pub fn flv_video(&mut self, timestamp: u32, body: &Bytes) {
        let dts_ms = self.clock.next(timestamp);
        match self.feed.feed(dts_ms, body, self.writer.as_mut()) {
            Ok(Fed::BeforeConfig) => {
                debug!(stream = %self.key, "frame before the sequence header dropped")
            }
            Ok(Fed::Unsupported(name)) => {
                if !self.unsupported_reported {
                    self.unsupported_reported = true;
                    warn!(stream = %self.key, codec = %name, "video codec not supported; no pictures for this stream");
                    self.writer.unsupported(&name);
                }
            }
            Ok(_) => {}
            Err(e) => warn!(stream = %self.key, error = %e, "bad video tag dropped"),
        }
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        info!(addr = %self.info.addr, protocol = self.info.protocol, stream = %self.key, "publish stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_unwrap_across_the_32_bit_wrap_and_tolerate_reordering() {
        let mut u = TimestampUnwrap::default();
        assert_eq!(u.next(u32::MAX - 10), i64::from(u32::MAX) - 10);
        assert_eq!(u.next(5), (1i64 << 32) + 5, "wrapped");
        // A B-frame a little behind is not a wrap.
        assert_eq!(u.next(3), (1i64 << 32) + 3);
        assert_eq!(u.next(40), (1i64 << 32) + 40);
    }

    #[test]
    fn the_limit_admits_counts_and_gives_slots_back() {
        let stats = Arc::new(ConnectionStats::default());
        let limit = ConnectionLimit::new(2, stats.clone());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = limit.admit("rtmp", addr).unwrap();
        let b = limit.admit("rtmp", addr).unwrap();
        assert!(limit.admit("rtmp", addr).is_none());
        assert_eq!(stats.open.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
        let _c = limit.admit("rtmp", addr).unwrap();
        drop(b);
        let counts = (
            stats.accepted.load(Ordering::Relaxed),
            stats.refused.load(Ordering::Relaxed),
            stats.open.load(Ordering::Relaxed),
        );
        assert_eq!(counts, (3, 1, 1));
    }
}
