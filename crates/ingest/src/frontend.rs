//! The contract every front end (RTMP now; RTSP and WHIP next) is built on, so each protocol
//! only speaks its protocol:
//! - [`FrontEnd`]: a bound listener the server starts from its list and stops with itself;
//! - [`ConnectionLimit`]: the connection limits of a listener ([`Limits`]: in total, per
//!   address, and for connections not yet publishing) and the counts `/metrics` shows;
//! - [`AcceptBackoff`]: an accept loop that survives running out of file descriptors;
//! - [`Publication`]: one live stream from publish to unpublish: the name is resolved with
//!   [`crate::name::resolve`] (the `domain=` query, configured domains), a name already live is
//!   refused, timestamps are unwrapped ([`TimestampUnwrap`]), FLV video tags (RTMP, FLV pulls)
//!   become parameter sets and frames ([`crate::flv::VideoFeed`]), an unsupported codec is
//!   reported once, and dropping it unpublishes the stream.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use media::stream::{PublishRefused, PublisherInfo, StreamKey, StreamSink, StreamWriter};
use tokio::time::Instant;
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
    /// Refused at a connection limit (total, per address, or the pending pool).
    pub refused: AtomicU64,
}

/// The connection limits of one listener. A connection is *pending* from its accept until it
/// has shown it is a real client (an RTMP publish accepted, an HTTP request read whole), then
/// *established*. Pending connections come out of a smaller pool, so a flood of half-open
/// connections cannot take the slots of real clients, and one address may hold only a share of
/// each pool, so other addresses still get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections at once.
    pub total: usize,
    /// Most connections at once from one address.
    pub per_address: usize,
    /// Most pending connections at once.
    pub pending: usize,
    /// Most pending connections at once from one address.
    pub pending_per_address: usize,
}

/// One address may hold at most this fraction (1/n) of the pending pool: a flood from one
/// address leaves 7/8 of it to everyone else.
pub const PENDING_SHARE_PER_ADDRESS: usize = 8;
/// Most connections from one address by default, on each listener.
pub const DEFAULT_MAX_PER_ADDRESS: usize = 100;
/// Most pending connections by default, on each listener.
pub const DEFAULT_MAX_PENDING: usize = 256;
/// IPv6 clients are counted per /64: one host commonly holds a whole /64.
const IPV6_PREFIX_BITS: u32 = 64;

impl Limits {
    /// Limits from the three settings; each smaller limit is capped by the larger ones, and one
    /// address gets at most 1/[`PENDING_SHARE_PER_ADDRESS`] of the pending pool (at least 1).
    pub fn new(total: usize, per_address: usize, pending: usize) -> Limits {
        let total = total.max(1);
        let per_address = per_address.clamp(1, total);
        let pending = pending.clamp(1, total);
        Limits {
            total,
            per_address,
            pending,
            pending_per_address: (pending / PENDING_SHARE_PER_ADDRESS).clamp(1, per_address),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(
            crate::rtmp::server::DEFAULT_MAX_CONNECTIONS,
            DEFAULT_MAX_PER_ADDRESS,
            DEFAULT_MAX_PENDING,
        )
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its most connections.
    Full,
    /// The address holds its most connections.
    AddressFull,
    /// The pending pool is full.
    PendingFull,
    /// The address holds its most pending connections.
    AddressPendingFull,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Full => "connection limit reached",
            Refusal::AddressFull => "per-address connection limit reached",
            Refusal::PendingFull => "limit of connections not yet publishing or requesting reached",
            Refusal::AddressPendingFull => {
                "per-address limit of connections not yet publishing or requesting reached"
            }
        })
    }
}

/// The counts behind [`ConnectionLimit`], without locks or sockets: admit, establish, release.
#[derive(Debug, Default)]
pub struct Counts {
    open: usize,
    pending: usize,
    /// (open, pending) per source; an address leaves the map when it holds nothing.
    by_source: HashMap<IpAddr, (usize, usize)>,
}

/// The key a connection is counted under: the IPv4 address (an IPv4-mapped IPv6 one too), or
/// the IPv6 /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

impl Counts {
    /// Counts a new (pending) connection from `source`, or says which limit refuses it.
    pub fn admit(&mut self, limits: &Limits, source: IpAddr) -> Result<(), Refusal> {
        let (open, pending) = self.by_source.get(&source).copied().unwrap_or((0, 0));
        if self.open >= limits.total {
            return Err(Refusal::Full);
        }
        if open >= limits.per_address {
            return Err(Refusal::AddressFull);
        }
        if self.pending >= limits.pending {
            return Err(Refusal::PendingFull);
        }
        if pending >= limits.pending_per_address {
            return Err(Refusal::AddressPendingFull);
        }
        self.open += 1;
        self.pending += 1;
        self.by_source.insert(source, (open + 1, pending + 1));
        Ok(())
    }

    /// A pending connection from `source` is established: it leaves the pending pool.
    pub fn establish(&mut self, source: IpAddr) {
        if let Some((_, pending)) = self.by_source.get_mut(&source) {
            *pending = pending.saturating_sub(1);
            self.pending = self.pending.saturating_sub(1);
        }
    }

    /// A connection from `source` closed (`pending`: before it was established).
    pub fn release(&mut self, source: IpAddr, pending: bool) {
        let Some(entry) = self.by_source.get_mut(&source) else {
            return;
        };
        entry.0 = entry.0.saturating_sub(1);
        self.open = self.open.saturating_sub(1);
        if pending {
            entry.1 = entry.1.saturating_sub(1);
            self.pending = self.pending.saturating_sub(1);
        }
        if entry.0 == 0 {
            self.by_source.remove(&source);
        }
    }

    /// Connections open now, and how many of them are pending.
    pub fn totals(&self) -> (usize, usize) {
        (self.open, self.pending)
    }
}

/// A listener's [`Limits`] applied to its connections, counted in [`ConnectionStats`].
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    counts: Mutex<Counts>,
    stats: Arc<ConnectionStats>,
    refusals: Mutex<Episodes>,
}

/// One admitted connection, pending until [`Admitted::establish`]: its slot is given back (and
/// `open` counted down) when dropped.
#[derive(Debug)]
pub struct Admitted {
    shared: Arc<Shared>,
    source: IpAddr,
    pending: AtomicBool,
}

impl Admitted {
    /// The connection has shown it is a real client: it leaves the pending pool (once).
    pub fn establish(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            self.shared.lock().establish(self.source);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let pending = *self.pending.get_mut();
        self.shared.lock().release(self.source, pending);
        self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: each update is one step.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Refusals are logged at most once per this period (with how many there were since), so a
/// flood does not flood the log.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

impl ConnectionLimit {
    /// `limits` on one listener, counted in `stats`.
    pub fn new(limits: Limits, stats: Arc<ConnectionStats>) -> ConnectionLimit {
        ConnectionLimit {
            shared: Arc::new(Shared {
                limits,
                counts: Mutex::new(Counts::default()),
                stats,
                refusals: Mutex::new(Episodes::default()),
            }),
        }
    }

    /// The limits applied.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// Admits one more (pending) connection, or refuses it (counted, and logged at most once
    /// per [`REFUSAL_LOG_PERIOD`]).
    pub fn admit(&self, protocol: &'static str, addr: SocketAddr) -> Option<Admitted> {
        let source = source_of(addr.ip());
        let result = self.shared.lock().admit(&self.shared.limits, source);
        let stats = &self.shared.stats;
        match result {
            Ok(()) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                stats.open.fetch_add(1, Ordering::Relaxed);
                Some(Admitted {
                    shared: self.shared.clone(),
                    source,
                    pending: AtomicBool::new(true),
                })
            }
            Err(why) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                let mut refusals = self
                    .shared
                    .refusals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(since) = refusals.hit(Instant::now(), REFUSAL_LOG_PERIOD) {
                    let l = self.shared.limits;
                    warn!(%addr, protocol, reason = %why, refused_since_last_line = since, total = l.total, per_address = l.per_address, pending = l.pending, pending_per_address = l.pending_per_address, "connection refused");
                }
                None
            }
        }
    }
}

/// Rate-limits a repeated log line: the first hit logs, then at most one per period, each
/// saying how many hits it stands for.
#[derive(Debug, Default)]
struct Episodes {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Episodes {
    /// A hit at `now`: `Some(hits since the last line, this one included)` when it is logged.
    fn hit(&mut self, now: Instant, period: Duration) -> Option<u64> {
        self.unlogged += 1;
        match self.last_logged {
            Some(t) if now.saturating_duration_since(t) < period => None,
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

/// First wait after a failed accept; doubled per failure up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between accept attempts while accepting fails.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// An accept loop's answer to failing accepts (EMFILE, ENFILE, ENOBUFS...): the connection
/// stays in the kernel's queue and the listener stays readable, so retrying at once would spin.
/// It backs off (exponentially, capped) and logs once when an episode of failures starts and
/// once when it ends, never per failure.
#[derive(Debug)]
pub struct AcceptBackoff {
    protocol: &'static str,
    failures: u64,
    since: Option<Instant>,
}

impl AcceptBackoff {
    /// For the accept loop of `protocol`.
    pub fn new(protocol: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            protocol,
            failures: 0,
            since: None,
        }
    }

    /// An accept failed at `now`: how long to wait before the next one.
    pub fn failed(&mut self, error: &std::io::Error, now: Instant) -> Duration {
        if self.since.is_none() {
            self.since = Some(now);
            warn!(protocol = self.protocol, %error, "accept failing (out of file descriptors?); backing off until it works again");
        }
        self.failures += 1;
        let shift = u32::try_from(self.failures - 1).unwrap_or(u32::MAX).min(16);
        ACCEPT_BACKOFF_MIN
            .saturating_mul(1 << shift)
            .min(ACCEPT_BACKOFF_MAX)
    }

    /// An accept worked at `now`: ends an episode of failures (logged once, with its count).
    pub fn accepted(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            let failures = std::mem::take(&mut self.failures);
            let ms = now.saturating_duration_since(since).as_millis() as u64;
            warn!(protocol = self.protocol, failures, ms, "accepting again");
        }
    }

    /// Failures in the current episode.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The accept loop's next connection, with the time it was accepted; failing accepts are
    /// waited out with [`AcceptBackoff::failed`]. `None` once `shutdown` is cancelled.
    pub async fn accept(
        &mut self,
        listener: &tokio::net::TcpListener,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<(tokio::net::TcpStream, SocketAddr, Instant)> {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return None,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((socket, addr)) => {
                    let now = Instant::now();
                    self.accepted(now);
                    return Some((socket, addr, now));
                }
                Err(e) => {
                    let wait = self.failed(&e, Instant::now());
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// The next connection of `listener` that `limit` admits, with its accept time: failing
/// accepts are waited out with `backoff`, and a connection over a limit is closed at once.
/// `None` once `shutdown` is cancelled. (HTTP answers its refusals, so it has its own loop.)
pub async fn accept_admitted(
    listener: &tokio::net::TcpListener,
    protocol: &'static str,
    limit: &ConnectionLimit,
    backoff: &mut AcceptBackoff,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<(tokio::net::TcpStream, SocketAddr, Instant, Admitted)> {
    loop {
        let (socket, addr, accepted_at) = backoff.accept(listener, shutdown).await?;
        if let Some(admitted) = limit.admit(protocol, addr) {
            return Some((socket, addr, accepted_at, admitted));
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
        let limits = Limits {
            total: 2,
            per_address: 2,
            pending: 2,
            pending_per_address: 2,
        };
        let limit = ConnectionLimit::new(limits, stats.clone());
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_keep_each_pool_within_the_larger_ones() {
        let l = Limits::new(100, 10, 40);
        assert_eq!((l.total, l.per_address, l.pending), (100, 10, 40));
        assert_eq!(l.pending_per_address, 40 / PENDING_SHARE_PER_ADDRESS);
        // Nonsense settings still make usable limits.
        let l = Limits::new(3, 50, 0);
        assert_eq!(
            (l.total, l.per_address, l.pending, l.pending_per_address),
            (3, 3, 1, 1)
        );
    }

    #[test]
    fn one_address_at_its_limit_leaves_room_for_others() {
        let limits = Limits::new(10, 3, 8);
        assert_eq!(limits.pending_per_address, 1);
        let limits = Limits {
            pending_per_address: 3,
            ..limits
        };
        let mut c = Counts::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            c.admit(&limits, a).unwrap();
        }
        assert_eq!(c.admit(&limits, a), Err(Refusal::AddressFull));
        // Established connections still count against the address.
        c.establish(a);
        assert_eq!(c.admit(&limits, a), Err(Refusal::AddressFull));
        // Another address gets in.
        c.admit(&limits, b).unwrap();
        assert_eq!(c.totals(), (4, 3));
        c.release(a, false);
        c.admit(&limits, a).unwrap();
        assert_eq!(c.totals(), (4, 4));
    }

    #[test]
    fn half_open_connections_cannot_take_the_slots_of_established_ones() {
        // 6 slots, at most 2 pending: 4 are kept for clients that got through.
        let limits = Limits {
            total: 6,
            per_address: 6,
            pending: 2,
            pending_per_address: 1,
        };
        let mut c = Counts::default();
        let floods = ["10.1.0.1", "10.1.0.2", "10.1.0.3"].map(ip);
        c.admit(&limits, floods[0]).unwrap();
        assert_eq!(
            c.admit(&limits, floods[0]),
            Err(Refusal::AddressPendingFull)
        );
        c.admit(&limits, floods[1]).unwrap();
        assert_eq!(c.admit(&limits, floods[2]), Err(Refusal::PendingFull));
        // A publisher that got in before the flood establishes; a pending slot frees up for the
        // next one.
        c.release(floods[1], true);
        let honest = ip("10.2.0.1");
        for _ in 0..4 {
            c.admit(&limits, honest).unwrap();
            c.establish(honest);
        }
        assert_eq!(c.totals(), (5, 1));
        c.admit(&limits, floods[1]).unwrap();
        assert_eq!(c.admit(&limits, ip("10.3.0.1")), Err(Refusal::Full));
        // Releasing everything leaves nothing behind.
        for _ in 0..4 {
            c.release(honest, false);
        }
        c.release(floods[0], true);
        c.release(floods[1], true);
        assert_eq!(c.totals(), (0, 0));
        assert!(c.by_source.is_empty());
    }

    #[test]
    fn ipv6_hosts_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn admitted_connections_establish_once_and_give_their_slot_back() {
        let stats = Arc::new(ConnectionStats::default());
        let limit = ConnectionLimit::new(
            Limits {
                total: 4,
                per_address: 4,
                pending: 1,
                pending_per_address: 1,
            },
            stats.clone(),
        );
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = limit.admit("rtmp", addr).unwrap();
        assert!(
            limit.admit("rtmp", addr).is_none(),
            "the pending pool holds one"
        );
        a.establish();
        a.establish();
        let b = limit.admit("rtmp", addr).unwrap();
        drop(b);
        let _c = limit.admit("rtmp", addr).unwrap();
        drop(a);
        assert_eq!(limit.shared.lock().totals(), (1, 1));
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn repeated_refusals_are_logged_once_per_period() {
        let mut e = Episodes::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        assert_eq!(e.hit(t0, period), Some(1));
        for i in 1..100 {
            assert_eq!(e.hit(t0 + Duration::from_millis(i), period), None);
        }
        assert_eq!(e.hit(t0 + period, period), Some(100));
    }

    #[test]
    fn failing_accepts_back_off_up_to_a_cap_and_start_over_once_one_works() {
        let mut b = AcceptBackoff::new("rtmp");
        let now = Instant::now();
        let emfile = std::io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..12).map(|_| b.failed(&emfile, now)).collect();
        assert_eq!(waits[0], ACCEPT_BACKOFF_MIN);
        assert_eq!(waits[1], ACCEPT_BACKOFF_MIN * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
        assert_eq!(b.failures(), 12);
        b.accepted(now);
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(&emfile, now), ACCEPT_BACKOFF_MIN);
    }
}
