//! The tokio side of RTSP ingest: accepts connections, runs a [`Session`] per connection,
//! publishes what it ANNOUNCEs, and turns each video track's RTP into frames with the
//! depacketizers of [`crate::rtp`].
//!
//! A connection must have started recording within [`RtspConfig::handshake_timeout`] of its
//! accept (an absolute deadline, like RTMP's publish); then any bytes (RTP, RTCP, a request)
//! count as life and [`RtspConfig::idle_timeout`] of silence ends it: ffmpeg sends no
//! keep-alive while recording, and GStreamer may leave without TEARDOWN.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media::stream::{PublisherInfo, StreamSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::sdp::Sdp;
use super::session::{Event, Host, Session};
use crate::frontend::{
    AcceptBackoff, Admitted, ConnectionLimit, ConnectionStats, FrontEnd, Limits, Publication,
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
    /// Connection counts, for metrics.
    pub stats: Arc<ConnectionStats>,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            domains: Vec::new(),
            limits: Limits::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            stats: Arc::default(),
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
    while let Some((socket, addr, accepted_at)) = backoff.accept(&listener, &shutdown).await {
        let Some(admitted) = limit.admit(PROTOCOL, addr) else {
            drop(socket);
            continue;
        };
        let (sink, config, shutdown) = (sink.clone(), config.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _ = socket.set_nodelay(true);
            let publish_by = accepted_at + config.handshake_timeout;
            let mut conn = Connection::new(addr, sink, config, admitted);
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

/// One connection: its RTSP session and what it publishes.
struct Connection {
    addr: SocketAddr,
    admitted: Admitted,
    session: Session,
    publisher: Publisher,
    idle_timeout: Duration,
}

/// The [`Host`] of a session: publishes the announced stream and depacketizes its tracks.
struct Publisher {
    addr: SocketAddr,
    sink: Arc<dyn StreamSink>,
    domains: Vec<String>,
    publication: Option<Publication>,
    /// Per `m=` section: the depacketizer of a video track this server reads.
    tracks: Vec<Option<Depacketizer>>,
}

impl Connection {
    fn new(
        addr: SocketAddr,
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
                sink,
                domains: config.domains.clone(),
                publication: None,
                tracks: Vec::new(),
            },
            idle_timeout: config.idle_timeout,
        }
    }

    async fn run(&mut self, mut socket: TcpStream, publish_by: Instant) -> Result<()> {
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            let deadline = if self.session.recording() {
                Instant::now() + self.idle_timeout
            } else {
                publish_by
            };
            let n = match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                Ok(r) => r?,
                Err(_) if self.session.recording() => {
                    return Err(Error::Rtsp(format!(
                        "nothing received for {} s",
                        self.idle_timeout.as_secs()
                    )))
                }
                Err(_) => return Err(Error::Rtsp("not recording by the deadline".into())),
            };
            if n == 0 {
                return Ok(());
            }
            let events = self.session.feed(&buf[..n], &mut self.publisher)?;
            for event in events {
                match event {
                    Event::Send(bytes) => socket.write_all(&bytes).await?,
                    Event::Recording => {
                        self.admitted.establish();
                        info!(addr = %self.addr, tracks = self.publisher.tracks.iter().flatten().count(), "rtsp recording");
                    }
                    Event::Rtp { track, packet } => self.publisher.rtp(track, packet),
                    Event::Rtcp => {}
                    Event::Teardown => return Ok(()),
                }
            }
        }
    }
}

impl Host for Publisher {
    fn announce(&mut self, url: &str, sdp: &Sdp) -> std::result::Result<(), String> {
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
            .ok_or_else(|| format!("the URL names no app/stream: {url:?}"))?;
        let name = if query.is_empty() {
            stream.to_string()
        } else {
            format!("{stream}?{query}")
        };
        let key = crate::name::resolve(app, &name, Some(url), &self.domains)
            .map_err(|e| e.to_string())?;
        let info = PublisherInfo {
            addr: self.addr,
            protocol: PROTOCOL,
        };
        let mut publication =
            Publication::start(self.sink.as_ref(), key, info).map_err(|r| r.to_string())?;
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
}

impl Publisher {
    /// One RTP packet of `track`: whole frames go to the stream.
    fn rtp(&mut self, track: usize, packet: Bytes) {
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
