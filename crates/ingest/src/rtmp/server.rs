//! The tokio side of RTMP: accepts connections, runs a [`Session`] per connection, turns
//! published video into frames for a [`StreamSink`], and, when playback is on
//! ([`RtmpConfig::playback`]), plays live streams to RTMP players (ffmpeg, VLC, another
//! livesnap's pull) from a [`StreamSource`].
//!
//! A connection that sends garbage, stalls or dies is dropped alone and logged. A connection
//! must have published within [`RtmpConfig::handshake_timeout`] of its accept, however it
//! trickles its bytes; until then it counts against the listener's pending pool
//! ([`Limits`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use media::stream::{
    PlayItem, PublishRefused, PublisherInfo, StreamPlayer, StreamSink, StreamSource,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::session::{Event, Session};
use crate::frontend::{
    accept_admitted, AcceptBackoff, Admitted, ConnectionLimit, ConnectionStats, FrontEnd, Limits,
    Publication,
};
use crate::publish_auth::Purpose;
use crate::{Error, Result};

/// Settings of the RTMP server.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// Host names that are domains when they appear in a tcUrl.
    pub domains: Vec<String>,
    /// Connection limits (total, per address, not yet publishing); more are closed at once.
    pub limits: Limits,
    /// Time from the accept to the publish accepted: an absolute deadline, not extended by
    /// bytes that trickle in (a byte every few seconds would otherwise hold a slot for ever).
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Largest video access unit accepted, in bytes.
    pub max_access_unit_bytes: usize,
    /// Merged read: once a connection publishes, its socket is read on the ticks of a
    /// process-wide grid of this period instead of whenever bytes arrive, so one wakeup takes in
    /// several frames of every publisher (SRS's `mr` pauses publishers likewise). Costs up to
    /// this much latency; zero reads as soon as bytes arrive.
    pub merge_read: Duration,
    /// Connection counts, for metrics.
    pub stats: Arc<ConnectionStats>,
    /// The ingest memory budget publishers' partial messages are charged to.
    pub budget: Arc<media::budget::MemoryBudget>,
    /// Signed publish URLs (`publish_secret`); a signed URL also lets its holder play.
    pub publish_auth: crate::publish_auth::PublishAuth,
    /// Where players' streams come from; off (every play refused) by default.
    pub playback: Playback,
    /// Most players at once, so that they never take every connection slot from publishers.
    pub max_players: usize,
}

/// Most RTMP players at once by default.
pub const DEFAULT_MAX_PLAYERS: usize = 200;
/// A player's output buffer is given back after a flush when it grew past this (a big
/// keyframe), so that a thousand idle players do not each keep one.
const PLAYER_BUFFER_KEEP: usize = 256 * 1024;

/// The live streams RTMP players may play (`rtmp_play`), or none.
#[derive(Clone, Default)]
pub struct Playback(pub Option<Arc<dyn StreamSource>>);

impl std::fmt::Debug for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "on" } else { "off" })
    }
}

/// Most RTMP connections at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2000;
/// Time from the accept to the publish accepted, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest handshake timeout accepted.
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(300);
/// A publisher that sends nothing this long is dropped, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest video access unit accepted by default.
pub const DEFAULT_MAX_ACCESS_UNIT_BYTES: usize = 8 * 1024 * 1024;

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            domains: Vec::new(),
            limits: Limits::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_access_unit_bytes: DEFAULT_MAX_ACCESS_UNIT_BYTES,
            merge_read: DEFAULT_MERGE_READ,
            stats: Arc::default(),
            budget: media::budget::MemoryBudget::unlimited(),
            publish_auth: crate::publish_auth::PublishAuth::default(),
            playback: Playback::default(),
            max_players: DEFAULT_MAX_PLAYERS,
        }
    }
}

/// The default merged-read period: off. At 40 ms it cut context switches 3x and ingest CPU by
/// about 40 % with 8 ffmpeg publishers, but the bursts it makes (every stream's frames, and so
/// its due pictures, on the same tick) cost about 5 points of saturation (76 % against 80-82 %
/// of the limit, 720p, alternated twice; docs/performance.md): a setting for many light
/// publishers, not a default.
pub const DEFAULT_MERGE_READ: Duration = Duration::ZERO;
/// Longest merged-read period accepted.
pub const MAX_MERGE_READ: Duration = Duration::from_secs(1);

/// Waits until the next multiple of `period` since a process-wide epoch: connections pausing
/// with the same period wake together, so the runtime wakes once for all of them.
async fn merged_read_pause(period: Duration) {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    tokio::time::sleep_until(next_tick(epoch, Instant::now(), period)).await;
}

/// The first multiple of `period` after `epoch` that is later than `now`.
fn next_tick(epoch: Instant, now: Instant, period: Duration) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let since_ns = now.saturating_duration_since(epoch).as_nanos();
    let next_ns = (since_ns / period_ns + 1) * period_ns;
    epoch + Duration::from_nanos(u64::try_from(next_ns).unwrap_or(u64::MAX))
}

/// Most socket reads a merged-read connection makes per tick (each fills up to the read
/// buffer, 64 KiB): 4 MiB per 40 ms tick, far above any camera, and one connection cannot hold
/// the runtime thread for long.
const MAX_READS_PER_TICK: usize = 64;
/// Most replies a merged-read connection holds back while its peer does not read them.
const MAX_PENDING_OUTPUT: usize = 1024 * 1024;

/// One non-blocking read into the spare capacity of `buffer`.
fn read_nonblocking(
    socket: &std::net::TcpStream,
    buffer: &mut bytes::BytesMut,
) -> std::io::Result<usize> {
    // socket2's recv takes uninitialized memory, which std's Read does not: no zeroing per read.
    let n = socket2::SockRef::from(socket).recv(buffer.spare_capacity_mut())?;
    // SAFETY: recv initialized the first n bytes of the spare capacity.
    #[allow(unsafe_code)]
    unsafe {
        buffer.set_len(buffer.len() + n);
    }
    Ok(n)
}

/// Writes as much of `out` as the socket takes now and keeps the rest for later.
fn write_nonblocking(socket: &std::net::TcpStream, out: &mut Vec<u8>) -> Result<()> {
    use std::io::Write;
    let mut written = 0;
    while written < out.len() {
        match (&*socket).write(&out[written..]) {
            Ok(0) => return Err(Error::Protocol("the peer closed its side".into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.drain(..written);
    if out.len() > MAX_PENDING_OUTPUT {
        return Err(Error::TooLarge {
            what: "replies the peer does not read",
            size: out.len(),
            limit: MAX_PENDING_OUTPUT,
        });
    }
    Ok(())
}

/// The RTMP front end: a bound listener and its settings.
pub struct RtmpFrontEnd {
    listener: TcpListener,
    config: RtmpConfig,
}

impl RtmpFrontEnd {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr, config: RtmpConfig) -> std::io::Result<RtmpFrontEnd> {
        Ok(RtmpFrontEnd {
            listener: TcpListener::bind(addr).await?,
            config,
        })
    }
}

impl FrontEnd for RtmpFrontEnd {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
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

/// The protocol's name in metrics and logs.
pub const PROTOCOL: &str = "rtmp";

/// Accepts connections until `shutdown` is cancelled; each runs in its own task on `tasks`.
/// On shutdown the listener closes at once and every connection ends: its stream leaves the
/// hub (unpublished, as if the publisher had left) and its socket is shut down.
pub async fn serve(
    listener: TcpListener,
    sink: Arc<dyn StreamSink>,
    config: RtmpConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let limit = ConnectionLimit::new(config.limits, config.stats.clone());
    let players = Arc::new(tokio::sync::Semaphore::new(config.max_players));
    let config = Arc::new(config);
    let mut backoff = AcceptBackoff::new(PROTOCOL);
    while let Some((socket, addr, accepted_at, admitted)) =
        accept_admitted(&listener, PROTOCOL, &limit, &mut backoff, &shutdown).await
    {
        let sink = sink.clone();
        let config = config.clone();
        let shutdown = shutdown.clone();
        let players = players.clone();
        tasks.spawn(async move {
            let _ = socket.set_nodelay(true);
            // Dropping the connection at an await point ends its stream (the writer's drop
            // unpublishes it), closes the socket and gives its slot back.
            let publish_by = accepted_at + config.handshake_timeout;
            let run =
                Connection::new(addr, sink, config, admitted, publish_by, players).run(socket);
            tokio::select! {
                _ = shutdown.cancelled() => debug!(%addr, "rtmp connection closed: shutting down"),
                result = run => match result {
                    Ok(()) => debug!(%addr, "rtmp connection closed"),
                    Err(e) => warn!(%addr, error = %e, "rtmp connection dropped"),
                },
            }
        });
    }
    debug!("rtmp listener closed");
}

/// An accepted play: the stream, its cursor, and the player's slot.
struct Playing {
    key: media::stream::StreamKey,
    player: Box<dyn StreamPlayer>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

struct Connection {
    addr: SocketAddr,
    sink: Arc<dyn StreamSink>,
    config: Arc<RtmpConfig>,
    session: Session,
    publishing: Option<Publication>,
    /// The stream being played, once a play is accepted (handed to the play loop).
    player: Option<Playing>,
    /// Slots for players ([`RtmpConfig::max_players`]), shared by the listener's connections.
    players: Arc<tokio::sync::Semaphore>,
    /// Frames sent to the player.
    played: u64,
    /// Its slot in the listener's limits, established once a publish is accepted.
    admitted: Admitted,
    /// The absolute deadline for the first publish to be accepted; `None` once it was.
    publish_by: Option<Instant>,
}

/// True for the errors of a peer that closed or reset its connection.
fn peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), BrokenPipe | ConnectionAborted | ConnectionReset)
}

/// When the read now starting must have finished: before the first publish is accepted, by the
/// absolute deadline `publish_by` (bytes trickling in do not move it), and always within
/// `idle` of `now`.
fn read_deadline(publish_by: Option<Instant>, now: Instant, idle: Duration) -> Instant {
    let idle_at = now + idle;
    publish_by.map_or(idle_at, |deadline| deadline.min(idle_at))
}

impl Connection {
    fn new(
        addr: SocketAddr,
        sink: Arc<dyn StreamSink>,
        config: Arc<RtmpConfig>,
        admitted: Admitted,
        publish_by: Instant,
        players: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        Connection {
            addr,
            sink,
            session: Session::with_budget(config.budget.clone()),
            config,
            publishing: None,
            player: None,
            players,
            played: 0,
            admitted,
            publish_by: Some(publish_by),
        }
    }

    async fn run(mut self, mut socket: TcpStream) -> Result<()> {
        let mut events = Vec::new();
        loop {
            let deadline = read_deadline(self.publish_by, Instant::now(), self.config.idle_timeout);
            // Straight into the session's reusable buffer: no copy, no allocation per read.
            let read = socket.read_buf(self.session.read_buffer());
            let n = match tokio::time::timeout_at(deadline, read).await {
                Ok(r) => r?,
                Err(_) => return Err(self.timed_out()),
            };
            if n == 0 {
                return Ok(());
            }
            let close = self.handle(&mut events)?;
            let out = self.session.output();
            if !out.is_empty() {
                socket.write_all(out).await?;
                out.clear();
            }
            if close {
                socket.shutdown().await.ok();
                return Ok(());
            }
            if let Some(playing) = self.player.take() {
                let key = playing.key.clone();
                let result = self.run_playing(socket, playing, &mut events).await;
                return match result {
                    // A player closing its socket without a word is how most of them stop.
                    Err(Error::Io(e)) if peer_gone(&e) => {
                        info!(addr = %self.addr, stream = %key, frames = self.played, "rtmp play ended: the player left");
                        Ok(())
                    }
                    other => other,
                };
            }
            if self.publishing.is_some() && !self.config.merge_read.is_zero() {
                // Out of the reactor: from here on the socket is read on the merged-read ticks.
                let socket = socket.into_std()?;
                return self.run_merged(socket, &mut events).await;
            }
        }
    }

    /// Processes the bytes just read; true when the connection should close.
    fn handle(&mut self, events: &mut Vec<Event>) -> Result<bool> {
        self.session.process(events)?;
        let mut close = false;
        for event in events.drain(..) {
            close |= self.on_event(event)?;
        }
        Ok(close)
    }

    /// Merged read, for the rest of a publishing connection: wake on each tick of the
    /// process-wide grid, read whatever arrived since (non-blocking), and sleep again.
    ///
    /// The socket is taken out of tokio's reactor for this (`into_std`): while it is registered,
    /// every arriving packet wakes the runtime whether or not a task waits on it, which is why
    /// pausing a reactor-driven read between ticks measured worse than reading at once. Read
    /// this way, N publishers cost one wakeup per tick instead of N per frame, and a frame
    /// reaches the hub at most one period late. TCP flow control holds a publisher that sends
    /// faster than [`MAX_READS_PER_TICK`] reads take in.
    async fn run_merged(
        &mut self,
        socket: std::net::TcpStream,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let period = self.config.merge_read;
        let mut last_data = Instant::now();
        loop {
            merged_read_pause(period).await;
            let mut reads = 0;
            loop {
                let buffer = self.session.read_buffer();
                let room = buffer.capacity() - buffer.len();
                let n = match read_nonblocking(&socket, buffer) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                last_data = Instant::now();
                let close = self.handle(events)?;
                write_nonblocking(&socket, self.session.output())?;
                if close {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                reads += 1;
                // A read that did not fill the room emptied the socket for now.
                if n < room || reads == MAX_READS_PER_TICK {
                    break;
                }
            }
            // Replies (acknowledgements) a full send buffer held back go out on later ticks.
            write_nonblocking(&socket, self.session.output())?;
            if last_data.elapsed() > self.config.idle_timeout {
                return Err(self.timed_out());
            }
        }
    }

    /// The error for a peer that missed its deadline, in either read loop.
    fn timed_out(&self) -> Error {
        if self.publish_by.is_some() {
            let stage = if self.session.handshake_done() {
                "did not publish"
            } else {
                "did not finish the handshake"
            };
            let limit = self.config.handshake_timeout.as_secs();
            Error::Protocol(format!("{stage} within {limit} s of connecting"))
        } else {
            let limit = self.config.idle_timeout.as_secs();
            Error::Protocol(format!("sent nothing for {limit} s"))
        }
    }

    /// Handles one event; true when the connection should close.
    fn on_event(&mut self, event: Event) -> Result<bool> {
        match event {
            Event::PublishRequested { app, name, tc_url } => {
                let key = match crate::name::resolve(
                    &app,
                    &name,
                    tc_url.as_deref(),
                    &self.config.domains,
                ) {
                    Ok(k) => k,
                    Err(why) => {
                        // Debug-escaped: a name never starts a log line of its own.
                        // Without their queries (a `sign` is not for the log); Debug-escaped:
                        // a name never starts a log line of its own.
                        let app = app.split('?').next().unwrap_or("");
                        let name = name.split('?').next().unwrap_or("");
                        warn!(addr = %self.addr, ?app, ?name, %why, "rtmp publish refused");
                        self.session
                            .reject_publish("NetStream.Publish.BadName", &why.to_string())?;
                        return Ok(true);
                    }
                };
                let queries = crate::publish_auth::queries(&app, &name, tc_url.as_deref());
                let now = crate::publish_auth::unix_now();
                let checked =
                    self.config
                        .publish_auth
                        .check_from(self.addr.ip(), &key, &queries, now);
                if let Err(why) = checked {
                    warn!(addr = %self.addr, stream = %key, %why, "rtmp publish refused");
                    self.session
                        .reject_publish("NetStream.Publish.Unauthorized", &why.to_string())?;
                    return Ok(true);
                }
                let info = PublisherInfo {
                    addr: self.addr,
                    protocol: PROTOCOL,
                };
                match Publication::start(self.sink.as_ref(), key, info) {
                    Ok(publication) => {
                        self.session.accept_publish()?;
                        self.publishing = Some(publication);
                        self.admitted.establish();
                        self.publish_by = None;
                    }
                    Err(refused) => {
                        let code = match refused {
                            PublishRefused::AlreadyLive(_) => "NetStream.Publish.BadName",
                            PublishRefused::TooManyStreams(_)
                            | PublishRefused::AccountFull { .. } => "NetStream.Publish.Rejected",
                            PublishRefused::BadName(_) => "NetStream.Publish.BadName",
                        };
                        self.session.reject_publish(code, &refused.to_string())?;
                        return Ok(true);
                    }
                }
            }
            Event::Video { timestamp, body } => {
                if body.len() > self.config.max_access_unit_bytes {
                    return Err(Error::TooLarge {
                        what: "video message",
                        size: body.len(),
                        limit: self.config.max_access_unit_bytes,
                    });
                }
                if let Some(p) = self.publishing.as_mut() {
                    p.flv_video(timestamp, &body);
                }
            }
            Event::Unpublished => {
                // Dropping the publication unpublishes the stream.
                self.publishing = None;
            }
            Event::PlayRequested { app, name, tc_url } => {
                return self.on_play(&app, &name, tc_url.as_deref());
            }
            Event::PlayStopped => return Ok(true),
        }
        Ok(false)
    }

    /// Answers a play request; true when the connection should close (refused).
    fn on_play(&mut self, app: &str, name: &str, tc_url: Option<&str>) -> Result<bool> {
        // Without their queries (a `sign` is not for the log); Debug-escaped.
        let bare_app = app.split('?').next().unwrap_or("");
        let bare_name = name.split('?').next().unwrap_or("");
        let Some(source) = self.config.playback.0.clone() else {
            info!(addr = %self.addr, app = ?bare_app, name = ?bare_name, "rtmp play refused: playback is off (rtmp_play)");
            self.session.reject_play(
                "NetStream.Play.Failed",
                "playback is off on this server (rtmp_play)",
            )?;
            return Ok(true);
        };
        let key = match crate::name::resolve(app, name, tc_url, &self.config.domains) {
            Ok(k) => k,
            Err(why) => {
                warn!(addr = %self.addr, app = ?bare_app, name = ?bare_name, %why, "rtmp play refused");
                self.session
                    .reject_play("NetStream.Play.StreamNotFound", &why.to_string())?;
                return Ok(true);
            }
        };
        let queries = crate::publish_auth::queries(app, name, tc_url);
        let now = crate::publish_auth::unix_now();
        if let Err(why) = self.config.publish_auth.check_from_for(
            Purpose::Play,
            self.addr.ip(),
            &key,
            &queries,
            now,
        ) {
            warn!(addr = %self.addr, stream = %key, %why, "rtmp play refused");
            self.session
                .reject_play("NetStream.Play.Unauthorized", &why.to_string())?;
            return Ok(true);
        }
        let Some(player) = source.play(&key) else {
            info!(addr = %self.addr, stream = %key, "rtmp play refused: not live");
            self.session.reject_play(
                "NetStream.Play.StreamNotFound",
                &format!("{key} is not live"),
            )?;
            return Ok(true);
        };
        if let Some(codec) = player.codec().filter(|c| !crate::flv::carries(*c)) {
            let why = format!("{} cannot be played over RTMP", codec.display_name());
            info!(addr = %self.addr, stream = %key, %why, "rtmp play refused");
            self.session.reject_play("NetStream.Play.Failed", &why)?;
            return Ok(true);
        }
        let Ok(permit) = self.players.clone().try_acquire_owned() else {
            let why = format!(
                "too many players (rtmp_max_players: {})",
                self.config.max_players
            );
            warn!(addr = %self.addr, stream = %key, %why, "rtmp play refused");
            self.session.reject_play("NetStream.Play.Failed", &why)?;
            return Ok(true);
        };
        self.session.accept_play()?;
        info!(addr = %self.addr, stream = %key, "rtmp play started");
        self.player = Some(Playing {
            key,
            player,
            _permit: permit,
        });
        self.admitted.establish();
        self.publish_by = None;
        Ok(false)
    }

    /// The rest of a playing connection: the stream's configurations and frames out as video
    /// messages, the player's commands and acknowledgements in, until either side ends.
    async fn run_playing(
        &mut self,
        mut socket: TcpStream,
        playing: Playing,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let Playing {
            key, mut player, ..
        } = playing;
        let key = &key;
        let mut codec = None;
        // RTMP timestamps from 0 at the first frame sent, never going back.
        let mut base = None;
        let mut timestamp = 0u32;
        // After a frame too large for RTMP, the frames that need it are skipped.
        let mut skip_to_keyframe = false;
        loop {
            let item = tokio::select! {
                read = socket.read_buf(self.session.read_buffer()) => {
                    if read? == 0 {
                        info!(addr = %self.addr, stream = %key, frames = self.played, "rtmp play ended: the player left");
                        return Ok(());
                    }
                    if self.handle(events)? {
                        info!(addr = %self.addr, stream = %key, frames = self.played, "rtmp play ended: the player stopped");
                        self.flush(&mut socket).await?;
                        socket.shutdown().await.ok();
                        return Ok(());
                    }
                    None
                }
                item = player.next() => match item {
                    Some(item) => Some(item),
                    None => {
                        info!(addr = %self.addr, stream = %key, frames = self.played, "rtmp play ended: the stream ended");
                        self.session.end_play(
                            "status",
                            "NetStream.Play.UnpublishNotify",
                            "The stream's publisher left.",
                        )?;
                        self.flush(&mut socket).await?;
                        socket.shutdown().await.ok();
                        return Ok(());
                    }
                },
            };
            match item {
                Some(PlayItem::Config(config)) => match crate::flv::config_tag(&config) {
                    Some(tag) => {
                        codec = Some(config.codec());
                        self.session.send_video(timestamp, tag)?;
                    }
                    None => {
                        // The publisher changed to a codec RTMP does not carry here.
                        let why = format!(
                            "{} cannot be played over RTMP",
                            config.codec().display_name()
                        );
                        info!(addr = %self.addr, stream = %key, %why, "rtmp play ended");
                        self.session
                            .end_play("error", "NetStream.Play.Failed", &why)?;
                        self.flush(&mut socket).await?;
                        return Ok(());
                    }
                },
                Some(PlayItem::Frame(frame)) => {
                    let Some(codec) = codec else { continue };
                    if skip_to_keyframe && !frame.keyframe {
                        continue;
                    }
                    let base = *base.get_or_insert(frame.dts_ms);
                    let since = (frame.dts_ms - base).clamp(0, i64::from(u32::MAX)) as u32;
                    timestamp = timestamp.max(since);
                    if let Some(tag) = crate::flv::frame_tag(codec, &frame) {
                        match self.session.send_video(timestamp, tag) {
                            Ok(()) => {
                                skip_to_keyframe = false;
                                self.played += 1;
                            }
                            Err(Error::TooLarge { size, limit, .. }) => {
                                debug!(addr = %self.addr, stream = %key, size, limit, "frame too large for RTMP: skipped with those that need it");
                                skip_to_keyframe = true;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                None => {}
            }
            self.flush(&mut socket).await?;
        }
    }

    /// Writes what the session has to send. A player whose socket takes nothing for the idle
    /// timeout is dropped; a slow one that keeps reading is not (it skips frames instead: see
    /// [`StreamPlayer`]).
    async fn flush(&mut self, socket: &mut TcpStream) -> Result<()> {
        let idle = self.config.idle_timeout;
        let out = self.session.output();
        let mut written = 0;
        while written < out.len() {
            match tokio::time::timeout(idle, socket.write(&out[written..])).await {
                Ok(Ok(0)) => return Err(Error::Io(std::io::ErrorKind::WriteZero.into())),
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(Error::Protocol(format!(
                        "the player took nothing for {} s",
                        idle.as_secs()
                    )))
                }
            }
        }
        out.clear();
        if out.capacity() > PLAYER_BUFFER_KEEP {
            *out = Vec::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_is_due_at_an_absolute_deadline_that_trickled_bytes_do_not_move() {
        let accept = Instant::now();
        let idle = Duration::from_secs(30);
        let publish_by = Some(accept + DEFAULT_HANDSHAKE_TIMEOUT);
        // A byte a second: each read still ends at the deadline set at the accept.
        for s in 0..10 {
            let now = accept + Duration::from_secs(s);
            assert_eq!(
                read_deadline(publish_by, now, idle),
                accept + DEFAULT_HANDSHAKE_TIMEOUT
            );
        }
        // A short idle timeout still applies before it.
        let short = Duration::from_secs(2);
        assert_eq!(read_deadline(publish_by, accept, short), accept + short);
        // Once publishing, only the idle timeout counts, from the last read.
        let later = accept + Duration::from_secs(100);
        assert_eq!(read_deadline(None, later, idle), later + idle);
    }

    #[test]
    fn merged_reads_of_all_connections_end_on_the_same_ticks() {
        let epoch = Instant::now();
        let period = Duration::from_millis(40);
        let at = |ms| epoch + Duration::from_millis(ms);
        assert_eq!(next_tick(epoch, at(0), period), at(40));
        // Connections that paused at different moments of one period wake together.
        assert_eq!(next_tick(epoch, at(13), period), at(40));
        assert_eq!(next_tick(epoch, at(39), period), at(40));
        // Always strictly later: a read ending on a tick waits for the next one.
        assert_eq!(next_tick(epoch, at(40), period), at(80));
        assert_eq!(next_tick(epoch, at(1_000_001), period), at(1_000_040));
    }
}
