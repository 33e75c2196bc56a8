//! The tokio side of RTSP ingest: accepts connections, runs a [`Session`] per connection,
//! publishes what it ANNOUNCEs, and turns each video track's RTP into frames with the
//! depacketizers of [`crate::rtp`].
//!
//! A connection must have started recording within [`RtspConfig::handshake_timeout`] of its
//! accept (an absolute deadline, like RTMP's publish); then any bytes (RTP, RTCP, a request)
//! count as life and [`RtspConfig::idle_timeout`] of silence ends it: ffmpeg sends no
//! keep-alive while recording, and GStreamer may leave without TEARDOWN.
//!
//! A track set up over UDP gets two sockets of its own (RTP, RTCP) from
//! [`RtspConfig::udp_ports`]; only datagrams from the publisher's address and the ports it gave
//! in SETUP are read, others are counted and dropped. The sockets live as long as the
//! connection.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media::stream::{PublisherInfo, StreamSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::sdp::Sdp;
use super::session::{Event, Host, Refusal, Session};
use crate::frontend::{
    accept_admitted, AcceptBackoff, Admitted, ConnectionLimit, ConnectionStats, FrontEnd, Limits,
    Publication,
};
use crate::rtp::{self, Depacketizer, Packet};
use crate::{Error, Result};

/// The protocol's name in logs, metrics and `/v1/streams`.
pub const PROTOCOL: &str = "rtsp";
/// Time from the accept to RECORD accepted, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A publisher that sends nothing (no RTP, no RTCP, no request) this long is dropped.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from the socket at once.
const READ_BYTES: usize = 64 * 1024;
/// UDP ports of RTP and RTCP by default: a pair per track, RTP on the even port.
pub const DEFAULT_UDP_PORTS: (u16, u16) = (30000, 30999);
/// Largest UDP datagram read (RTP over UDP stays below the path MTU; this is IPv4's maximum).
const MAX_DATAGRAM_BYTES: usize = 65_536;
/// Datagrams read from a connection's UDP sockets and not yet depacketized.
const UDP_QUEUE: usize = 1024;

/// Settings of the RTSP server.
#[derive(Debug, Clone)]
pub struct RtspConfig {
    /// Host names that are domains when they appear in a URL.
    pub domains: Vec<String>,
    /// Connection limits (total, per address, not yet recording).
    pub limits: Limits,
    /// Time from the accept to RECORD accepted: an absolute deadline.
    pub handshake_timeout: Duration,
    /// Silence that ends a connection once it records.
    pub idle_timeout: Duration,
    /// The range UDP ports are taken from (RTP even, RTCP the next); `(0, 0)` lets the system
    /// choose any free ones.
    pub udp_ports: (u16, u16),
    /// Connection counts, for metrics.
    pub stats: Arc<ConnectionStats>,
    /// Signed publish URLs (`publish_secret`).
    pub publish_auth: crate::publish_auth::PublishAuth,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            domains: Vec::new(),
            limits: Limits::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            udp_ports: DEFAULT_UDP_PORTS,
            stats: Arc::default(),
            publish_auth: crate::publish_auth::PublishAuth::default(),
        }
    }
}

/// The RTSP listener, bound and ready to serve.
pub struct RtspFrontEnd {
    listener: TcpListener,
    config: RtspConfig,
}

impl RtspFrontEnd {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr, config: RtspConfig) -> std::io::Result<RtspFrontEnd> {
        let listener = TcpListener::bind(addr).await?;
        Ok(RtspFrontEnd { listener, config })
    }
}

impl FrontEnd for RtspFrontEnd {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    fn stats(&self) -> Arc<ConnectionStats> {
        self.config.stats.clone()
    }

    fn serve(
        self: Box<Self>,
        sink: Arc<dyn StreamSink>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(serve(self.listener, sink, self.config, shutdown, tasks))
    }
}

/// Accepts connections until `shutdown` is cancelled; each runs in its own task on `tasks`.
pub async fn serve(
    listener: TcpListener,
    sink: Arc<dyn StreamSink>,
    config: RtspConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let limit = ConnectionLimit::new(config.limits, config.stats.clone());
    let config = Arc::new(config);
    let mut backoff = AcceptBackoff::new(PROTOCOL);
    while let Some((socket, addr, accepted_at, admitted)) =
        accept_admitted(&listener, PROTOCOL, &limit, &mut backoff, &shutdown).await
    {
        let (sink, config, shutdown) = (sink.clone(), config.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _ = socket.set_nodelay(true);
            let publish_by = accepted_at + config.handshake_timeout;
            let local_ip = socket
                .local_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
            let mut conn = Connection::new(addr, local_ip, sink, config, admitted);
            tokio::select! {
                r = conn.run(socket, publish_by) => match r {
                    Ok(()) => debug!(%addr, "rtsp connection closed"),
                    Err(e) => info!(%addr, error = %e, "rtsp connection ended"),
                },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// Session ids: unique per process.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// One connection: its RTSP session, what it publishes, and its tracks' UDP readers.
struct Connection {
    addr: SocketAddr,
    admitted: Admitted,
    session: Session,
    publisher: Publisher,
    idle_timeout: Duration,
    /// The readers of the UDP sockets, ended with the connection.
    udp_readers: JoinSet<()>,
    datagrams: (mpsc::Sender<Datagram>, mpsc::Receiver<Datagram>),
}

/// A datagram from a track's UDP socket.
struct Datagram {
    track: usize,
    rtcp: bool,
    data: Bytes,
}

/// A track's UDP sockets, bound at SETUP, read once the connection starts their reader.
struct UdpTrack {
    track: usize,
    rtp: std::net::UdpSocket,
    rtcp: std::net::UdpSocket,
    /// The publisher's RTP and RTCP addresses: datagrams from anywhere else are dropped.
    from: (SocketAddr, SocketAddr),
}

/// The [`Host`] of a session: publishes the announced stream and depacketizes its tracks.
struct Publisher {
    addr: SocketAddr,
    local_ip: IpAddr,
    udp_ports: (u16, u16),
    sink: Arc<dyn StreamSink>,
    domains: Vec<String>,
    publish_auth: crate::publish_auth::PublishAuth,
    publication: Option<Publication>,
    /// Per `m=` section: the depacketizer of a video track this server reads.
    tracks: Vec<Option<Depacketizer>>,
    /// UDP sockets bound by SETUPs and not yet read.
    new_udp: Vec<UdpTrack>,
    /// What the stream was last told of its transport and RTP losses.
    reported: Option<(&'static str, u64, u64)>,
}

impl Connection {
    fn new(
        addr: SocketAddr,
        local_ip: IpAddr,
        sink: Arc<dyn StreamSink>,
        config: Arc<RtspConfig>,
        admitted: Admitted,
    ) -> Connection {
        let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        Connection {
            addr,
            admitted,
            session: Session::new(format!("{n:016X}")),
            publisher: Publisher {
                addr,
                local_ip,
                udp_ports: config.udp_ports,
                sink,
                domains: config.domains.clone(),
                publish_auth: config.publish_auth.clone(),
                publication: None,
                tracks: Vec::new(),
                new_udp: Vec::new(),
                reported: None,
            },
            idle_timeout: config.idle_timeout,
            udp_readers: JoinSet::new(),
            datagrams: mpsc::channel(UDP_QUEUE),
        }
    }

    /// Starts reading the UDP sockets SETUP bound.
    fn start_udp_readers(&mut self) -> Result<()> {
        for t in self.publisher.new_udp.drain(..) {
            for (socket, from, rtcp) in [(t.rtp, t.from.0, false), (t.rtcp, t.from.1, true)] {
                let socket = UdpSocket::from_std(socket)?;
                let tx = self.datagrams.0.clone();
                let (track, publisher) = (t.track, self.addr);
                self.udp_readers.spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
                    let mut foreign = 0u64;
                    loop {
                        let Ok((n, sender)) = socket.recv_from(&mut buf).await else {
                            return;
                        };
                        if sender != from {
                            foreign += 1;
                            if foreign == 1 {
                                warn!(%publisher, %sender, expected = %from, "UDP datagrams from a foreign address ignored");
                            }
                            continue;
                        }
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(Datagram { track, rtcp, data }).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Ok(())
    }

    async fn run(&mut self, mut socket: TcpStream, publish_by: Instant) -> Result<()> {
        let mut buf = vec![0u8; READ_BYTES];
        // Since when a depacketizer holds packets back for a missing one (UDP): after
        // `rtp::REORDER_WAIT` it is given up on, so that the frames behind it go out.
        let mut waiting_since: Option<Instant> = None;
        loop {
            waiting_since = match (waiting_since, self.publisher.waiting()) {
                (_, false) => None,
                (None, true) => Some(Instant::now()),
                (since, true) => since,
            };
            let give_up = waiting_since.map(|t| t + rtp::REORDER_WAIT);
            let deadline = if self.session.recording() {
                Instant::now() + self.idle_timeout
            } else {
                publish_by
            };
            let n = tokio::select! {
                read = tokio::time::timeout_at(deadline, socket.read(&mut buf)) => match read {
                    Ok(r) => r?,
                    Err(_) if self.session.recording() => {
                        return Err(Error::Rtsp(format!(
                            "nothing received for {} s",
                            self.idle_timeout.as_secs()
                        )))
                    }
                    Err(_) => return Err(Error::Rtsp("not recording by the deadline".into())),
                },
                () = tokio::time::sleep_until(give_up.unwrap_or(deadline)), if give_up.is_some() => {
                    self.publisher.flush();
                    waiting_since = None;
                    continue;
                }
                Some(d) = self.datagrams.1.recv() => {
                    // RTCP is life only; RTP before RECORD is dropped.
                    if !d.rtcp && self.session.recording() {
                        self.publisher.rtp(d.track, d.data, "udp");
                    }
                    continue;
                }
            };
            if n == 0 {
                return Ok(());
            }
            let events = self.session.feed(&buf[..n], &mut self.publisher)?;
            self.start_udp_readers()?;
            for event in events {
                match event {
                    Event::Send(bytes) => socket.write_all(&bytes).await?,
                    Event::Recording => {
                        self.admitted.establish();
                        info!(addr = %self.addr, tracks = self.publisher.tracks.iter().flatten().count(), "rtsp recording");
                    }
                    Event::Rtp { track, packet } => self.publisher.rtp(track, packet, "tcp"),
                    Event::Rtcp => {}
                    Event::Teardown => return Ok(()),
                }
            }
        }
    }
}

impl Host for Publisher {
    fn announce(&mut self, url: &str, sdp: &Sdp) -> std::result::Result<(), Refusal> {
        // rtsp://host[:port]/{app}/{stream}[?query]: the path's last segment is the stream.
        let after_host = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split_once('/')
            .map_or("", |(_, path)| path);
        let (path, query) = after_host.split_once('?').unwrap_or((after_host, ""));
        let (app, stream) = path
            .trim_matches('/')
            .rsplit_once('/')
            .ok_or_else(|| Refusal::Forbidden(format!("the URL names no app/stream: {url:?}")))?;
        let key = crate::name::resolve_path(app, stream, query, url, &self.domains)
            .map_err(|e| Refusal::Forbidden(e.to_string()))?;
        // The query once: the stream name carries the URL's.
        let queries = [query, "", ""];
        let now = crate::publish_auth::unix_now();
        if let Err(why) = self
            .publish_auth
            .check_from(self.addr.ip(), &key, &queries, now)
        {
            warn!(addr = %self.addr, stream = %key, %why, "rtsp publish refused");
            return Err(Refusal::Unauthorized(why.to_string()));
        }
        let info = PublisherInfo {
            addr: self.addr,
            protocol: PROTOCOL,
        };
        let mut publication = Publication::start(self.sink.as_ref(), key, info)
            .map_err(|r| Refusal::Forbidden(r.to_string()))?;
        self.tracks = sdp
            .media
            .iter()
            .map(|m| {
                if !m.kind.eq_ignore_ascii_case("video") {
                    return None;
                }
                match depacketizer(m) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        warn!(addr = %self.addr, stream = %publication.key(), encoding = %m.encoding, error = %e, "video track not read");
                        publication.writer().unsupported(&m.encoding);
                        None
                    }
                }
            })
            .collect();
        self.publication = Some(publication);
        Ok(())
    }

    fn setup_udp(
        &mut self,
        track: usize,
        client: (u16, u16),
    ) -> std::result::Result<(u16, u16), String> {
        let (rtp, rtcp) = bind_pair(self.local_ip, self.udp_ports)?;
        let port = |s: &std::net::UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        let ports = (port(&rtp), port(&rtcp));
        let ip = self.addr.ip();
        self.new_udp.push(UdpTrack {
            track,
            rtp,
            rtcp,
            from: (SocketAddr::new(ip, client.0), SocketAddr::new(ip, client.1)),
        });
        Ok(ports)
    }
}

/// Where the next search for a free pair of UDP ports starts, so that sessions spread over the
/// range instead of all trying its first ports.
static NEXT_UDP_PORT: AtomicU64 = AtomicU64::new(0);

/// Two UDP sockets on `ip`: RTP on an even port of `range` and RTCP on the next (or any two free
/// ports when the range is `(0, 0)`), non-blocking for tokio.
fn bind_pair(
    ip: IpAddr,
    (min, max): (u16, u16),
) -> std::result::Result<(std::net::UdpSocket, std::net::UdpSocket), String> {
    let bind = |port: u16| -> std::io::Result<std::net::UdpSocket> {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    if min == 0 && max == 0 {
        return bind(0)
            .and_then(|a| Ok((a, bind(0)?)))
            .map_err(|e| format!("no free UDP ports: {e}"));
    }
    let first = min + min % 2;
    let pairs = u64::from(max.saturating_sub(first).saturating_add(1) / 2);
    for _ in 0..pairs {
        let k = NEXT_UDP_PORT.fetch_add(1, Ordering::Relaxed) % pairs.max(1);
        let port = first + 2 * k as u16;
        if let (Ok(a), Ok(b)) = (bind(port), bind(port + 1)) {
            return Ok((a, b));
        }
    }
    Err(format!("no free UDP ports in {min}-{max}"))
}

impl Publisher {
    /// Whether a depacketizer holds packets back for a missing one.
    fn waiting(&self) -> bool {
        self.tracks.iter().flatten().any(Depacketizer::waiting)
    }

    /// Gives up on missing packets: what was held back goes out (the gaps counted as lost).
    fn flush(&mut self) {
        let Some(publication) = self.publication.as_mut() else {
            return;
        };
        for depacketizer in self.tracks.iter_mut().flatten() {
            let mut out = Vec::new();
            let flushed = depacketizer.flush(&mut out);
            for event in out {
                match event {
                    rtp::Event::Config(c) => publication.writer().config(c),
                    rtp::Event::Frame(f) => publication.writer().frame(f),
                }
            }
            if let Err(e) = flushed {
                debug!(addr = %self.addr, stream = %publication.key(), error = %e, "RTP packets dropped at a flush");
            }
        }
    }

    /// One RTP packet of `track`, received over `transport`: whole frames go to the stream,
    /// and the stream hears of losses when they change.
    fn rtp(&mut self, track: usize, packet: Bytes, transport: &'static str) {
        let (Some(Some(depacketizer)), Some(publication)) =
            (self.tracks.get_mut(track), self.publication.as_mut())
        else {
            return;
        };
        let mut out = Vec::new();
        let pushed = Packet::parse(packet).and_then(|p| depacketizer.push(p, &mut out));
        for event in out {
            match event {
                rtp::Event::Config(c) => publication.writer().config(c),
                rtp::Event::Frame(f) => publication.writer().frame(f),
            }
        }
        if let Err(e) = pushed {
            debug!(addr = %self.addr, stream = %publication.key(), error = %e, "RTP packet dropped");
        }
        let (lost, dropped) = self
            .tracks
            .iter()
            .flatten()
            .map(|d| d.counters())
            .fold((0, 0), |(l, f), c| {
                (l + c.packets_lost, f + c.frames_dropped)
            });
        let now = Some((transport, lost, dropped));
        if self.reported != now {
            self.reported = now;
            publication.writer().transport(transport, lost, dropped);
        }
    }
}

/// The depacketizer of a video section: H.264 or H.265, configured by its `fmtp`.
fn depacketizer(m: &super::sdp::Media) -> Result<Depacketizer> {
    let codec = match m.encoding.to_ascii_uppercase().as_str() {
        "H264" => media::Codec::H264,
        "H265" => media::Codec::H265,
        other => {
            return Err(Error::Rtsp(format!(
                "video encoding {other:?} is not H.264 or H.265"
            )))
        }
    };
    let fmtp: Vec<String> = m.fmtp.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Depacketizer::new(codec, &fmtp.join(";"))
}
