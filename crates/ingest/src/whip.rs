//! WebRTC publish (WHIP, RFC 9725): browsers, OBS and other WebRTC senders publish here.
//!
//! The HTTP side (the server crate's `/whip/...` routes) hands each offer to a [`WhipHandle`];
//! this front end answers it and runs every session on one UDP socket (`webrtc_udp`), ICE-lite:
//! the publisher checks connectivity, we only answer. str0m does ICE, DTLS, SRTP, RTCP
//! (receiver reports, NACKs) and gives whole access units in Annex B form; the RTP
//! [`Depacketizer`] turns those into parameter sets and frames, as for RTSP.
//!
//! One task owns every session (str0m's `Rtc` is sans-IO): it reads the socket, sends to
//! whichever session the datagram belongs to (its nominated address, else the STUN username),
//! fires str0m's timers from a heap, and takes commands (offers, deletes, keyframe requests)
//! from a channel. A session ends when its publisher deletes it, when ICE consent expires
//! (about 30 s after the peer went silent), when no video came for `idle_timeout`, or when it
//! did not connect within `connect_timeout`; its stream ends with it.
//!
//! Sessions are counted like connections ([`ConnectionLimit`]): pending from the offer until
//! ICE and DTLS are up, so a flood of offers that never connect takes only the pending pool.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use media::stream::{PublishRefused, PublisherInfo, StreamKey, StreamSink};
use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{
    Candidate, Event as RtcEvent, IceConnectionState, Input, Output, Rtc, RtcConfig, RtcError,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::frontend::{Admitted, ConnectionLimit, ConnectionStats, FrontEnd, Limits, Publication};
use crate::publish_auth::{AuthError, PublishAuth};
use crate::rtp::{Depacketizer, Event as RtpEvent};

/// The protocol's name in logs, metrics and `/v1/streams`.
pub const PROTOCOL: &str = "whip";
/// Largest SDP offer taken (browsers send 5-10 KiB; a few hundred codecs would not fit).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// A session that has not connected (ICE and DTLS) this long after its offer is dropped.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connected session that sent no video this long is ended.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most sessions at once by default, connected or not.
pub const DEFAULT_MAX_SESSIONS: usize = 500;
/// Most sessions at once not yet connected, by default (one address gets 1/8 of them).
pub const DEFAULT_MAX_PENDING_SESSIONS: usize = 64;
/// Keyframe requests to one publisher are at least this far apart: a sender answers each with
/// a keyframe, which costs it bandwidth.
pub const KEYFRAME_REQUEST_MIN_INTERVAL: Duration = Duration::from_millis(300);
/// Logged with a DTLS failure: the one cause seen in practice.
#[cfg(not(feature = "webrtc-openssl"))]
const DTLS_HINT: &str = "a publisher whose DTLS certificate is RSA (GStreamer's webrtcbin) needs \
    livesnap built with the webrtc-openssl feature (in full); ECDSA ones need nothing";
#[cfg(feature = "webrtc-openssl")]
const DTLS_HINT: &str = "see the publisher's log for its side of the handshake";
/// How often sessions are checked against their timeouts and their stats reported.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// Loss-driven keyframe requests that brought no usable keyframe back off, doubling up to this.
pub const KEYFRAME_REQUEST_MAX_INTERVAL: Duration = Duration::from_secs(10);
/// Source addresses remembered per session (its peer's candidates; a few are real): more
/// push out the oldest, so one admitted peer cannot grow the map.
const ADDRESSES_PER_SESSION: usize = 8;
/// str0m timers handled per turn of the loop, so that one session always due cannot keep the
/// socket, commands and the sweep waiting.
const TIMERS_PER_TURN: usize = 256;
/// Largest datagram read (WebRTC keeps packets under the path MTU, about 1200 bytes).
const DATAGRAM_BYTES: usize = 2048;
/// Commands (offers, deletes) waiting for the session task.
const COMMAND_QUEUE: usize = 64;
/// Keyframe requests waiting for the session task; more are dropped (the next comes soon).
const KEYFRAME_QUEUE: usize = 256;

/// Settings of the WHIP front end.
#[derive(Debug, Clone)]
pub struct WhipConfig {
    /// Host names that are domains when they appear in a URL.
    pub domains: Vec<String>,
    /// The addresses advertised to publishers as ICE candidates; empty: the UDP socket's own
    /// address (which must then be a specific one).
    pub candidates: Vec<SocketAddr>,
    /// Session limits (total, per address, not yet connected).
    pub limits: Limits,
    /// Time from the offer to ICE and DTLS connected.
    pub connect_timeout: Duration,
    /// Time without video that ends a session.
    pub idle_timeout: Duration,
    /// Largest access unit put together.
    pub max_access_unit_bytes: usize,
    /// Ask for keyframes with FIR as well as PLI (for senders that answer only FIR).
    pub keyframe_fir: bool,
    /// Codecs taken besides H.264 (those this build's decoder pictures: H.265, VP8, VP9, AV1
    /// with the `ffmpeg` feature).
    pub codecs: Vec<media::Codec>,
    /// Session counts, for metrics.
    pub stats: Arc<ConnectionStats>,
    /// Signed publish URLs (`publish_secret`).
    pub publish_auth: PublishAuth,
}

impl Default for WhipConfig {
    fn default() -> Self {
        WhipConfig {
            domains: Vec::new(),
            candidates: Vec::new(),
            limits: Limits::new(
                DEFAULT_MAX_SESSIONS,
                crate::frontend::DEFAULT_MAX_PER_ADDRESS,
                DEFAULT_MAX_PENDING_SESSIONS,
            ),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_access_unit_bytes: crate::rtp::DEFAULT_MAX_ACCESS_UNIT_BYTES,
            keyframe_fir: false,
            codecs: Vec::new(),
            stats: Arc::default(),
            publish_auth: PublishAuth::default(),
        }
    }
}

/// Why an offer or a delete was refused; the HTTP side turns each into its status.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// The offer is not SDP str0m can read, or is too large.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// The offer has no video livesnap can take.
    #[error("the offer has no video livesnap can take: {0}")]
    NoVideo(String),
    /// The publish signature is missing, wrong or expired.
    #[error("publish refused: {0}")]
    Unauthorized(AuthError),
    /// The name is taken, bad, or the server or account holds its most streams.
    #[error("{0}")]
    Refused(PublishRefused),
    /// The session limits are reached (in total, or for this address).
    #[error("too many WebRTC sessions at once; try again later")]
    Busy,
    /// No such session (or not this stream's).
    #[error("no such WHIP session")]
    NoSession,
    /// The front end is stopping.
    #[error("the WebRTC front end is shutting down")]
    Stopped,
}

/// An offer as the HTTP side received it.
#[derive(Debug, Clone)]
pub struct Offer {
    /// `{app}` of `/whip/{app}/{stream}`.
    pub app: String,
    /// `{stream}`.
    pub stream: String,
    /// The URL's query (without `?`): `domain=`, `expires=`, `sign=`.
    pub query: String,
    /// The bearer token, if any: a publish signature as a query (`expires=..&sign=..`), the
    /// form WHIP clients such as OBS send it in.
    pub token: Option<String>,
    /// The request's URL with its host (for domains named by host).
    pub url: String,
    /// The SDP offer.
    pub sdp: String,
    /// Who sent it.
    pub peer: SocketAddr,
}

/// The answer to an accepted offer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The session's id (the last segment of its resource URL).
    pub session: String,
    /// The SDP answer.
    pub sdp: String,
    /// The stream published.
    pub key: StreamKey,
}

enum Command {
    Offer(Box<Offer>, oneshot::Sender<Result<Answer, WhipError>>),
    Delete {
        session: String,
        app: String,
        stream: String,
        reply: oneshot::Sender<Result<(), WhipError>>,
    },
}

/// What the HTTP side holds: sends offers and deletes to the session task.
#[derive(Clone)]
pub struct WhipHandle {
    commands: mpsc::Sender<Command>,
}

impl WhipHandle {
    /// Answers an offer: publishes the stream and starts its session.
    pub async fn offer(&self, offer: Offer) -> Result<Answer, WhipError> {
        if offer.sdp.len() > MAX_OFFER_BYTES {
            return Err(WhipError::BadOffer(format!(
                "{} bytes is more than the {MAX_OFFER_BYTES} taken",
                offer.sdp.len()
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Offer(Box::new(offer), reply))
            .await
            .map_err(|_| WhipError::Stopped)?;
        answer.await.map_err(|_| WhipError::Stopped)?
    }

    /// Ends session `session` of `/whip/{app}/{stream}` (its domain is the session's).
    pub async fn delete(&self, app: &str, stream: &str, session: &str) -> Result<(), WhipError> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Delete {
                session: session.to_string(),
                app: app.to_string(),
                stream: stream.to_string(),
                reply,
            })
            .await
            .map_err(|_| WhipError::Stopped)?;
        done.await.map_err(|_| WhipError::Stopped)?
    }
}

/// The WHIP front end: its UDP socket, bound, and the commands the HTTP side sends.
pub struct WhipFrontEnd {
    socket: UdpSocket,
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    config: WhipConfig,
    commands: mpsc::Receiver<Command>,
}

impl WhipFrontEnd {
    /// Binds the UDP socket every session uses, and returns the handle the HTTP side offers to.
    pub async fn bind(
        addr: SocketAddr,
        config: WhipConfig,
    ) -> std::io::Result<(WhipFrontEnd, WhipHandle)> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let candidates = if config.candidates.is_empty() {
            vec![local]
        } else {
            config
                .candidates
                .iter()
                .map(|c| {
                    if c.port() == 0 {
                        SocketAddr::new(c.ip(), local.port())
                    } else {
                        *c
                    }
                })
                .collect()
        };
        if let Some(c) = candidates.iter().find(|c| c.ip().is_unspecified()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{c} cannot be a WebRTC candidate: bind webrtc_udp to a specific address or name the advertised ones in webrtc_candidates"
                ),
            ));
        }
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let handle = WhipHandle { commands: tx };
        Ok((
            WhipFrontEnd {
                socket,
                local,
                candidates,
                config,
                commands: rx,
            },
            handle,
        ))
    }

    /// The ICE candidates advertised.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }
}

impl FrontEnd for WhipFrontEnd {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn stats(&self) -> Arc<ConnectionStats> {
        self.config.stats.clone()
    }

    fn serve(
        self: Box<Self>,
        sink: Arc<dyn StreamSink>,
        shutdown: CancellationToken,
        _tasks: TaskTracker,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let this = *self;
            info!(udp = %this.local, candidates = ?this.candidates, "WHIP (WebRTC) sessions on UDP");
            let mut host = match Host::new(this.config, this.candidates, sink) {
                Ok(host) => host,
                Err(e) => {
                    warn!(error = %e, "WebRTC crypto could not start; WHIP publishes are refused");
                    return;
                }
            };
            host.run(this.socket, this.commands, shutdown).await;
        })
    }
}

/// One publisher's session.
struct Session {
    id: String,
    key: StreamKey,
    rtc: Rtc,
    publication: Publication,
    admitted: Admitted,
    video: Option<Mid>,
    feed: Option<Feed>,
    unsupported: bool,
    created: Instant,
    connected: bool,
    last_video: Instant,
    last_keyframe_request: Option<Instant>,
    /// str0m's next timer, and the earliest entry of this session in the timer heap.
    timeout: StdInstant,
    scheduled: Option<StdInstant>,
    /// Why it ends, once it does.
    ended: Option<String>,
    /// Our ICE username fragment.
    ufrag: String,
    /// Source addresses it took datagrams from, oldest first.
    addrs: std::collections::VecDeque<SocketAddr>,
    /// Loss-driven keyframe requests since the last keyframe (their spacing doubles).
    loss_requests: u32,
    /// What the feed made of the access unit in hand (kept for the next one).
    events: Vec<RtpEvent>,
}

/// Every session, and what finds them.
struct Host {
    config: WhipConfig,
    candidates: Vec<SocketAddr>,
    sink: Arc<dyn StreamSink>,
    limit: ConnectionLimit,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    cert: str0m::crypto::dtls::DtlsCert,
    sessions: HashMap<u64, Session>,
    by_id: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    /// Our ICE username fragment of each session: a STUN check names its session by it.
    by_ufrag: HashMap<String, u64>,
    timers: BinaryHeap<Reverse<(StdInstant, u64)>>,
    next_seq: u64,
    keyframes_tx: mpsc::Sender<u64>,
    keyframes_rx: Option<mpsc::Receiver<u64>>,
    /// Datagrams no session took (garbage, strays, late packets of ended sessions).
    strays: u64,
}

impl Host {
    fn new(
        config: WhipConfig,
        candidates: Vec<SocketAddr>,
        sink: Arc<dyn StreamSink>,
    ) -> Result<Host, String> {
        // OpenSSL's DTLS takes RSA and ECDSA certificates; str0m's own (dimpl), ECDSA only.
        #[cfg(feature = "webrtc-openssl")]
        let crypto = str0m_openssl::default_provider();
        #[cfg(not(feature = "webrtc-openssl"))]
        let crypto = str0m::crypto::from_feature_flags();
        // One certificate for every session: generating one per offer costs a key pair.
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| "no DTLS certificate could be made".to_string())?;
        let (keyframes_tx, keyframes_rx) = mpsc::channel(KEYFRAME_QUEUE);
        Ok(Host {
            limit: ConnectionLimit::new(config.limits, config.stats.clone()),
            config,
            candidates,
            sink,
            crypto: Arc::new(crypto),
            cert,
            sessions: HashMap::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            keyframes_tx,
            keyframes_rx: Some(keyframes_rx),
            strays: 0,
        })
    }

    async fn run(
        &mut self,
        socket: UdpSocket,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut keyframes = self.keyframes_rx.take().expect("run once");
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        let mut sweep = tokio::time::interval(SWEEP_PERIOD);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Vec::new();
        loop {
            let next_timer = self.next_timer();
            // Timers, commands and the sweep before datagrams: a socket kept busy (a flood, or
            // just load) must not stall str0m's timers, timeouts or offers.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until_std(next_timer) => self.timers_due(&socket),
                Some(command) = commands.recv() => self.command(&socket, command),
                Some(seq) = keyframes.recv() => self.request_keyframe(&socket, seq, true),
                _ = sweep.tick() => self.sweep(&socket, &mut pending),
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, source)) => self.datagram(&socket, source, &buf[..n]),
                    // ICMP port unreachable from a peer that left, and the like.
                    Err(e) => debug!(error = %e, "WebRTC socket read failed"),
                },
            }
        }
        let n = self.sessions.len();
        for (_, mut session) in self.sessions.drain() {
            session.rtc.disconnect();
            info!(session = %session.id, stream = %session.key, "WHIP session ended: shutting down");
        }
        if n > 0 {
            info!(sessions = n, "WHIP front end stopped");
        }
    }

    fn takes(&self, codec: media::Codec) -> bool {
        self.config.codecs.contains(&codec)
    }

    fn next_timer(&self) -> Option<StdInstant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn command(&mut self, socket: &UdpSocket, command: Command) {
        match command {
            Command::Offer(offer, reply) => {
                let result = self.offer(socket, *offer);
                let made = result.as_ref().ok().map(|a| a.session.clone());
                // The caller went away (its request timed out, its client left): nobody knows
                // the session, so it must not hold the name until its connect timeout.
                if let (Err(_), Some(id)) = (reply.send(result), made) {
                    if let Some(seq) = self.by_id.get(&id).copied() {
                        self.end(seq, "its offer's request was gone before the answer");
                    }
                }
            }
            Command::Delete {
                session,
                app,
                stream,
                reply,
            } => {
                // The id is the secret; the path must name the session's stream too.
                let found = self.by_id.get(&session).copied().filter(|seq| {
                    self.sessions
                        .get(seq)
                        .is_some_and(|s| s.key.app == app && s.key.stream == stream)
                });
                let result = match found {
                    Some(seq) => {
                        self.end(seq, "deleted by its publisher");
                        Ok(())
                    }
                    None => Err(WhipError::NoSession),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn offer(&mut self, socket: &UdpSocket, offer: Offer) -> Result<Answer, WhipError> {
        let key = crate::name::resolve_path(
            &offer.app,
            &offer.stream,
            &offer.query,
            &offer.url,
            &self.config.domains,
        )
        .map_err(|e| WhipError::Refused(PublishRefused::BadName(e.to_string())))?;
        let queries = [
            offer.query.as_str(),
            offer.token.as_deref().unwrap_or(""),
            "",
        ];
        self.config
            .publish_auth
            .check_from(
                offer.peer.ip(),
                &key,
                &queries,
                crate::publish_auth::unix_now(),
            )
            .map_err(|why| {
                warn!(addr = %offer.peer, stream = %key, %why, "whip publish refused");
                WhipError::Unauthorized(why)
            })?;
        let sdp = SdpOffer::from_sdp_string(&offer.sdp)
            .map_err(|e| WhipError::BadOffer(e.to_string()))?;
        if !has_video(&offer.sdp) {
            return Err(WhipError::NoVideo("no m=video section".into()));
        }
        let admitted = self
            .limit
            .admit(PROTOCOL, offer.peer)
            .ok_or(WhipError::Busy)?;
        let now = Instant::now();
        // Only what is pictured, in the publisher's order of preference (str0m answers in the
        // order its codecs were enabled): an offer whose first choice is not pictured here (a
        // browser's VP8, in a build without libavcodec) gets the first one that is, and an
        // offer with none is refused at once.
        let mut config = RtcConfig::new()
            .set_crypto_provider(self.crypto.clone())
            .set_dtls_cert(self.cert.clone())
            .set_ice_lite(true)
            .clear_codecs();
        for codec in offered_video_codecs(&offer.sdp) {
            if codec != media::Codec::H264 && !self.takes(codec) {
                continue;
            }
            config = match codec {
                media::Codec::H264 => config.enable_h264(true),
                media::Codec::H265 => config.enable_h265(true),
                media::Codec::Vp8 => config.enable_vp8(true),
                media::Codec::Vp9 => config.enable_vp9(true),
                media::Codec::Av1 => config.enable_av1(true),
            };
        }
        // Audio is taken and ignored: a publisher whose audio is refused may give up.
        let mut rtc = config.enable_opus(true, false).build(now.into_std());
        for c in &self.candidates {
            match Candidate::host(*c, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(candidate = %c, error = %e, "WebRTC candidate refused"),
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| WhipError::BadOffer(e.to_string()))?
            .to_sdp_string();
        if !has_video(&answer) {
            let names: Vec<&str> = std::iter::once("H.264 (packetization-mode 1)")
                .chain(self.config.codecs.iter().map(|c| c.display_name()))
                .collect();
            return Err(WhipError::NoVideo(format!(
                "none of its video codecs is one this server pictures: {}",
                names.join(", ")
            )));
        }
        let info = PublisherInfo {
            addr: offer.peer,
            protocol: PROTOCOL,
        };
        let mut publication = Publication::start(self.sink.as_ref(), key.clone(), info)
            .map_err(WhipError::Refused)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let requests = self.keyframes_tx.clone();
        publication.writer().keyframe_requests(Arc::new(move || {
            // Full: requests are already waiting, and the next picture asks again.
            requests.try_send(seq).is_ok()
        }));
        let id = session_id();
        let ufrag = answer
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
            .unwrap_or("")
            .to_string();
        info!(addr = %offer.peer, stream = %key, session = %id, "WHIP offer answered");
        let session = Session {
            id: id.clone(),
            key: key.clone(),
            rtc,
            publication,
            admitted,
            video: None,
            feed: None,
            unsupported: false,
            created: now,
            connected: false,
            last_video: now,
            last_keyframe_request: None,
            timeout: now.into_std(),
            scheduled: None,
            ended: None,
            ufrag: ufrag.clone(),
            addrs: std::collections::VecDeque::new(),
            loss_requests: 0,
            events: Vec::new(),
        };
        self.sessions.insert(seq, session);
        self.by_id.insert(id.clone(), seq);
        self.by_ufrag.insert(ufrag, seq);
        self.drain(socket, seq);
        Ok(Answer {
            session: id,
            sdp: answer,
            key,
        })
    }

    fn datagram(&mut self, socket: &UdpSocket, source: SocketAddr, data: &[u8]) {
        let destination = self.destination_for(source);
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
            self.stray(source, "not STUN, DTLS or RTP");
            return;
        };
        let input = Input::Receive(Instant::now().into_std(), receive);
        let known = self.by_addr.get(&source).copied().filter(|seq| {
            self.sessions
                .get(seq)
                .is_some_and(|s| s.rtc.accepts(&input))
        });
        // A new address: only a STUN check can name its session, by our username fragment
        // in its USERNAME; anything else from an unknown address is dropped unread.
        let seq = known.or_else(|| {
            let seq = *self.by_ufrag.get(stun_local_ufrag(data)?)?;
            self.sessions
                .get(&seq)
                .is_some_and(|s| s.rtc.accepts(&input))
                .then_some(seq)
        });
        let Some(seq) = seq else {
            self.stray(source, "no session takes it");
            return;
        };
        if known.is_none() {
            self.remember(seq, source);
        }
        let session = self.sessions.get_mut(&seq).expect("found above");
        match session.rtc.handle_input(input) {
            Ok(()) => {}
            // A failed handshake is fatal to the session: say why now rather than at its
            // timeout. Once connected, a bad record is dropped like any stray (one spoofed
            // datagram must not end a publish).
            Err(RtcError::Dtls(e)) if !session.connected => {
                warn!(session = %session.id, error = %e, hint = DTLS_HINT, "WebRTC DTLS failed");
                session.ended = Some(format!("DTLS failed: {e}"));
            }
            Err(e) => debug!(session = %session.id, error = %e, "WebRTC datagram refused"),
        }
        self.drain(socket, seq);
    }

    /// The address a datagram from `source` was sent to, as str0m wants it: one of the
    /// advertised candidates. A socket bound to one address gets exactly that; one bound to
    /// all addresses takes the candidate of the source's family (loopback for loopback).
    fn destination_for(&self, source: SocketAddr) -> SocketAddr {
        let same_family = |c: &&SocketAddr| c.is_ipv4() == source.is_ipv4();
        self.candidates
            .iter()
            .filter(same_family)
            .find(|c| c.ip().is_loopback() == source.ip().is_loopback())
            .or_else(|| self.candidates.iter().find(same_family))
            .or(self.candidates.first())
            .copied()
            .unwrap_or(source)
    }

    /// `source` sends for session `seq` (at most [`ADDRESSES_PER_SESSION`] kept per session).
    fn remember(&mut self, seq: u64, source: SocketAddr) {
        if let Some(old) = self.by_addr.insert(source, seq).filter(|old| *old != seq) {
            if let Some(s) = self.sessions.get_mut(&old) {
                s.addrs.retain(|a| *a != source);
            }
        }
        let Some(session) = self.sessions.get_mut(&seq) else {
            return;
        };
        if !session.addrs.contains(&source) {
            session.addrs.push_back(source);
        }
        while session.addrs.len() > ADDRESSES_PER_SESSION {
            if let Some(oldest) = session.addrs.pop_front() {
                if self.by_addr.get(&oldest) == Some(&seq) {
                    self.by_addr.remove(&oldest);
                }
            }
        }
    }

    fn stray(&mut self, source: SocketAddr, why: &str) {
        self.strays += 1;
        // Powers of two: a flood shows in the log without filling it.
        if self.strays.is_power_of_two() {
            debug!(%source, why, strays = self.strays, "WebRTC datagram dropped");
        }
    }

    /// Runs str0m's output of session `seq` until it waits: sends its datagrams, handles its
    /// events, schedules its next timer. Ends it if it ended.
    fn drain(&mut self, socket: &UdpSocket, seq: u64) {
        let Some(session) = self.sessions.get_mut(&seq) else {
            return;
        };
        let fir = self.config.keyframe_fir;
        let max_au = self.config.max_access_unit_bytes;
        loop {
            if !session.rtc.is_alive() {
                session.ended.get_or_insert_with(|| "closed".into());
                break;
            }
            match session.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    // A deadline at or before now is due at once; a millisecond later keeps a
                    // subsystem that stays due from spinning this loop.
                    session.timeout = t.max(StdInstant::now() + Duration::from_millis(1));
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    // UDP: a full send buffer loses the datagram, as the network could.
                    if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                        debug!(session = %session.id, error = %e, "WebRTC send failed");
                    }
                }
                Ok(Output::Event(event)) => session.event(event, max_au, fir),
                Err(e) => {
                    session.ended = Some(format!("WebRTC error: {e}"));
                    break;
                }
            }
        }
        if !session.rtc.is_alive() {
            session
                .ended
                .get_or_insert_with(|| "closed by the publisher".into());
        }
        if session.ended.is_some() {
            self.end(seq, "");
            return;
        }
        if session.scheduled.is_none_or(|s| session.timeout < s) {
            session.scheduled = Some(session.timeout);
            self.timers.push(Reverse((session.timeout, seq)));
        }
    }

    fn timers_due(&mut self, socket: &UdpSocket) {
        for _ in 0..TIMERS_PER_TURN {
            let now = Instant::now().into_std();
            let Some(Reverse((t, seq))) = self.timers.peek().copied() else {
                break;
            };
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(session) = self.sessions.get_mut(&seq) else {
                continue;
            };
            if session.scheduled != Some(t) {
                continue; // Superseded by an earlier entry.
            }
            session.scheduled = None;
            if session.timeout <= now {
                if let Err(e) = session.rtc.handle_input(Input::Timeout(now)) {
                    session.ended = Some(format!("WebRTC error: {e}"));
                }
            }
            self.drain(socket, seq);
        }
    }

    /// Asks session `seq`'s publisher for a keyframe (at most once per
    /// [`KEYFRAME_REQUEST_MIN_INTERVAL`]).
    fn request_keyframe(&mut self, socket: &UdpSocket, seq: u64, asked: bool) {
        let Some(session) = self.sessions.get_mut(&seq) else {
            return;
        };
        if session.ask_keyframe(self.config.keyframe_fir, asked) {
            self.drain(socket, seq);
        }
    }

    /// Ends sessions past their timeouts; reports stats; asks for keyframes where lost.
    fn sweep(&mut self, socket: &UdpSocket, ended: &mut Vec<(u64, String)>) {
        let now = Instant::now();
        ended.clear();
        for (seq, s) in &mut self.sessions {
            if !s.connected && now.duration_since(s.created) >= self.config.connect_timeout {
                ended.push((
                    *seq,
                    format!(
                        "not connected within {} s (webrtc_connect_timeout_s)",
                        self.config.connect_timeout.as_secs()
                    ),
                ));
            } else if s.connected && now.duration_since(s.last_video) >= self.config.idle_timeout {
                ended.push((
                    *seq,
                    format!(
                        "no video for {} s (webrtc_idle_timeout_s)",
                        self.config.idle_timeout.as_secs()
                    ),
                ));
            } else if let Some(f) = &s.feed {
                // Packets lost are repaired or counted inside str0m; what shows here is the
                // access units that could not be pictured.
                s.publication
                    .writer()
                    .transport("udp", 0, f.frames_dropped());
            }
        }
        for (seq, why) in std::mem::take(ended) {
            if let Some(s) = self.sessions.get_mut(&seq) {
                s.ended = Some(why);
            }
            self.end(seq, "");
        }
        // Sessions waiting for a keyframe after a loss ask again, spaced out.
        let waiting: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.feed.as_ref().is_some_and(Feed::awaits_keyframe))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in waiting {
            self.request_keyframe(socket, seq, false);
        }
    }

    /// Removes session `seq`; its stream ends (the publication is dropped).
    fn end(&mut self, seq: u64, why: &str) {
        let Some(mut session) = self.sessions.remove(&seq) else {
            return;
        };
        session.rtc.disconnect();
        self.by_id.remove(&session.id);
        self.by_ufrag.remove(&session.ufrag);
        for a in &session.addrs {
            if self.by_addr.get(a) == Some(&seq) {
                self.by_addr.remove(a);
            }
        }
        let why = session.ended.take().unwrap_or_else(|| why.to_string());
        info!(session = %session.id, stream = %session.key, reason = %why, connected = session.connected, "WHIP session ended");
        drop(session.admitted);
    }
}

impl Session {
    fn event(&mut self, event: RtcEvent, max_au: usize, fir: bool) {
        match event {
            RtcEvent::Connected => {
                self.connected = true;
                self.last_video = Instant::now();
                self.admitted.establish();
                info!(session = %self.id, stream = %self.key, "WHIP session connected");
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.ended = Some("ICE consent expired (the publisher went away)".into());
            }
            RtcEvent::Closed => {
                self.ended
                    .get_or_insert_with(|| "closed by the publisher".into());
            }
            RtcEvent::MediaAdded(m) if m.kind == MediaKind::Video && self.video.is_none() => {
                self.video = Some(m.mid);
            }
            RtcEvent::MediaData(data) if Some(data.mid) == self.video => {
                self.media(data, max_au, fir);
            }
            _ => {}
        }
    }

    fn media(&mut self, data: MediaData, max_au: usize, fir: bool) {
        self.last_video = Instant::now();
        let codec = match data.params.spec().codec {
            RtcCodec::H264 => media::Codec::H264,
            RtcCodec::H265 => media::Codec::H265,
            RtcCodec::Vp8 => media::Codec::Vp8,
            RtcCodec::Vp9 => media::Codec::Vp9,
            RtcCodec::Av1 => media::Codec::Av1,
            other => {
                if !std::mem::replace(&mut self.unsupported, true) {
                    let name = format!("{other:?}").to_uppercase();
                    warn!(session = %self.id, stream = %self.key, codec = %name, "WebRTC video codec not pictured; no pictures for this stream");
                    self.publication.writer().unsupported(&name);
                }
                return;
            }
        };
        if self.feed.as_ref().is_none_or(|f| f.codec() != codec) {
            match Feed::new(codec, max_au) {
                Ok(f) => self.feed = Some(f),
                Err(e) => {
                    warn!(session = %self.id, error = %e, "no depacketizer");
                    return;
                }
            }
        }
        let feed = self.feed.as_mut().expect("made above");
        // The session's buffer: no allocation per access unit.
        let mut events = std::mem::take(&mut self.events);
        match feed.push(data.time.numer(), &data.data, data.contiguous, &mut events) {
            Ok(()) => {}
            // What this server cannot picture (a VP9 profile, a size past the limits) shows on
            // the stream, once, as for RTMP.
            Err(crate::Error::RtpUnsupported(what)) => {
                if !std::mem::replace(&mut self.unsupported, true) {
                    warn!(session = %self.id, stream = %self.key, %what, "WebRTC video not pictured");
                    self.publication.writer().unsupported(&what);
                }
            }
            Err(e) => debug!(session = %self.id, error = %e, "access unit dropped"),
        }
        let awaits = feed.awaits_keyframe();
        for event in events.drain(..) {
            match event {
                RtpEvent::Config(c) => self.publication.writer().config(c),
                RtpEvent::Frame(f) => {
                    if f.keyframe {
                        self.loss_requests = 0;
                    }
                    self.publication.writer().frame(f)
                }
            }
        }
        self.events = events;
        if awaits {
            self.ask_keyframe(fir, false);
        }
    }

    /// Asks the publisher for a keyframe unless one was asked for lately. `asked`: a picture
    /// wants it (logged), else the stream lost data. True when a request went out.
    fn ask_keyframe(&mut self, fir: bool, asked: bool) -> bool {
        let now = Instant::now();
        // A picture's request waits the least; requests for a loss that brought no usable
        // keyframe back off (an encoder answering each with a keyframe too large to take
        // would otherwise be asked forever).
        let spacing = if asked {
            KEYFRAME_REQUEST_MIN_INTERVAL
        } else {
            KEYFRAME_REQUEST_MIN_INTERVAL
                .saturating_mul(1 << self.loss_requests.min(16))
                .min(KEYFRAME_REQUEST_MAX_INTERVAL)
        };
        if self
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < spacing)
        {
            return false;
        }
        let Some(mid) = self.video else {
            return false;
        };
        let Some(mut writer) = self.rtc.writer(mid) else {
            return false;
        };
        if let Err(e) = writer.request_keyframe(None, KeyframeRequestKind::Pli) {
            debug!(session = %self.id, error = %e, "keyframe request not sent");
            return false;
        }
        if fir {
            if let Some(mut writer) = self.rtc.writer(mid) {
                let _ = writer.request_keyframe(None, KeyframeRequestKind::Fir);
            }
        }
        self.last_keyframe_request = Some(now);
        if !asked {
            self.loss_requests = self.loss_requests.saturating_add(1);
        }
        if asked {
            debug!(session = %self.id, stream = %self.key, "keyframe asked of the publisher");
        }
        true
    }
}

/// A video track's access units, as str0m hands them whole, turned into configurations and
/// frames for the hub.
enum Feed {
    /// H.264, H.265: the RTP depacketizer's parameter-set and keyframe handling.
    Nal(Box<Depacketizer>),
    /// VP8, VP9, AV1.
    Framed(FramedFeed),
}

impl Feed {
    fn new(codec: media::Codec, max_au: usize) -> crate::Result<Feed> {
        Ok(match codec {
            media::Codec::H264 | media::Codec::H265 => {
                let mut d = Depacketizer::new(codec, "")?;
                d.set_max_access_unit_bytes(max_au);
                Feed::Nal(Box::new(d))
            }
            _ => Feed::Framed(FramedFeed::new(codec, max_au)),
        })
    }

    fn codec(&self) -> media::Codec {
        match self {
            Feed::Nal(d) => d.codec(),
            Feed::Framed(f) => f.codec,
        }
    }

    fn awaits_keyframe(&self) -> bool {
        match self {
            Feed::Nal(d) => d.awaits_keyframe(),
            Feed::Framed(f) => f.need_keyframe,
        }
    }

    fn frames_dropped(&self) -> u64 {
        match self {
            Feed::Nal(d) => d.counters().frames_dropped,
            Feed::Framed(f) => f.frames_dropped,
        }
    }

    /// One access unit at `time` (90 kHz, extended to 64 bits by str0m).
    fn push(
        &mut self,
        time: u64,
        data: &[u8],
        contiguous: bool,
        out: &mut Vec<RtpEvent>,
    ) -> crate::Result<()> {
        match self {
            // The low 32 bits, as in RTP: the depacketizer unwraps them itself.
            Feed::Nal(d) => d.push_annexb(time as u32, data, contiguous, out),
            Feed::Framed(f) => f.push(time, data, contiguous, out),
        }
    }
}

/// VP8, VP9 and AV1 frames: the configuration read off each keyframe (a new one when the size
/// or colour changes), nothing handed out before the first keyframe, nor after a loss until
/// the next one; timestamps in ms from the first frame, decode time never going back.
struct FramedFeed {
    codec: media::Codec,
    max_bytes: usize,
    config: Option<media::framed::FrameConfig>,
    need_keyframe: bool,
    first: Option<u64>,
    last_dts: i64,
    frames_dropped: u64,
}

impl FramedFeed {
    fn new(codec: media::Codec, max_bytes: usize) -> FramedFeed {
        FramedFeed {
            codec,
            max_bytes,
            config: None,
            need_keyframe: true,
            first: None,
            last_dts: 0,
            frames_dropped: 0,
        }
    }

    fn push(
        &mut self,
        time: u64,
        data: &[u8],
        contiguous: bool,
        out: &mut Vec<RtpEvent>,
    ) -> crate::Result<()> {
        if !contiguous {
            self.need_keyframe = true;
        }
        if data.len() > self.max_bytes {
            self.drop_frame();
            return Err(crate::Error::TooLarge {
                what: "access unit",
                size: data.len(),
                limit: self.max_bytes,
            });
        }
        let keyframe = media::framed::is_keyframe(self.codec, data);
        if keyframe {
            match media::framed::keyframe_config(self.codec, data) {
                Ok(Some(c)) if self.config != Some(c) => {
                    self.config = Some(c);
                    out.push(RtpEvent::Config(c.into()));
                }
                Ok(_) => {}
                Err(e) => {
                    self.drop_frame();
                    return Err(match e {
                        media::Error::Unsupported(_) | media::Error::PictureTooLarge { .. } => {
                            crate::Error::RtpUnsupported(e.to_string())
                        }
                        _ => crate::Error::RtpPayload {
                            codec: self.codec.display_name(),
                            what: "unreadable keyframe header",
                        },
                    });
                }
            }
        }
        if self.config.is_none() || (self.need_keyframe && !keyframe) {
            self.drop_frame();
            return Ok(());
        }
        self.need_keyframe = false;
        let first = *self.first.get_or_insert(time);
        // 90 kHz ticks since the first frame; a frame from before it (reordered) is at 0.
        let pts_ms = i64::try_from(time.saturating_sub(first) / 90).unwrap_or(i64::MAX);
        let dts_ms = self.last_dts.max(pts_ms);
        self.last_dts = dts_ms;
        out.push(RtpEvent::Frame(media::Frame {
            dts_ms,
            pts_ms,
            keyframe,
            data: bytes::Bytes::copy_from_slice(data),
        }));
        Ok(())
    }

    fn drop_frame(&mut self) {
        self.frames_dropped += 1;
        self.need_keyframe = true;
    }
}

/// STUN's magic cookie (RFC 5389 6) and its USERNAME attribute (15.3).
const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

/// Our username fragment in a STUN message's USERNAME (`ours:theirs`, RFC 8445 7.2.2), if it
/// is a STUN message with one. Read by hand: str0m keeps its parser to itself, and this is
/// the one attribute demultiplexing needs.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != STUN_MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let n = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + n)?;
        if kind == STUN_USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return Some(name.split(':').next().unwrap_or(name));
        }
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

/// The video codecs of an offer's first video section, in its order of preference (the order
/// of the payload types on its `m=video` line), each once.
pub fn offered_video_codecs(sdp: &str) -> Vec<media::Codec> {
    let mut lines = sdp.lines().map(str::trim);
    let Some(m) = lines.find(|l| l.starts_with("m=video ")) else {
        return Vec::new();
    };
    let pts: Vec<&str> = m.split(' ').skip(3).collect();
    let mut names: HashMap<&str, &str> = HashMap::new();
    for l in lines.take_while(|l| !l.starts_with("m=")) {
        if let Some((pt, rest)) = l.strip_prefix("a=rtpmap:").and_then(|r| r.split_once(' ')) {
            names.insert(pt, rest.split('/').next().unwrap_or(""));
        }
    }
    let mut out = Vec::new();
    for pt in pts {
        let codec = match names.get(pt).map(|n| n.to_ascii_uppercase()).as_deref() {
            Some("H264") => media::Codec::H264,
            Some("H265") => media::Codec::H265,
            Some("VP8") => media::Codec::Vp8,
            Some("VP9") => media::Codec::Vp9,
            Some("AV1") => media::Codec::Av1,
            _ => continue,
        };
        if !out.contains(&codec) {
            out.push(codec);
        }
    }
    out
}

/// True when `sdp` has a video section that is not refused (port 0).
fn has_video(sdp: &str) -> bool {
    sdp.lines().any(|l| {
        l.strip_prefix("m=video ")
            .and_then(|rest| rest.split(' ').next())
            .is_some_and(|port| port != "0")
    })
}

/// A session id: 128 random bits in hex, so that a session's resource cannot be guessed.
fn session_id() -> String {
    let mut bytes = [0u8; 16];
    // The system's randomness does not fail on the platforms we build for; a failure would
    // leave zeros, which the next id would repeat: better to stop.
    getrandom::getrandom(&mut bytes).expect("system randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn sleep_until_std(t: Option<StdInstant>) {
    match t {
        Some(t) => tokio::time::sleep_until(Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// The addresses of this machine that a publisher could reach: for `webrtc_candidates` when
/// the socket listens on every address. Loopback is left out unless it is all there is.
pub fn advertised(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = ips
        .iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(*ip, port))
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_sections_count_unless_refused() {
        assert!(has_video(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        ));
        assert!(!has_video("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert!(!has_video("v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n"));
    }

    #[test]
    fn the_local_ufrag_is_read_from_a_stun_username() {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend_from_slice(&STUN_MAGIC);
        m.extend_from_slice(&[7; 12]);
        // A PRIORITY attribute first, then USERNAME "abcd:wxyz1" (10 bytes, padded to 12).
        m.extend_from_slice(&[0x00, 0x24, 0, 4, 1, 2, 3, 4]);
        m.extend_from_slice(&[0x00, 0x06, 0, 10]);
        m.extend_from_slice(b"abcd:wxyz1\0\0");
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(stun_local_ufrag(&m), Some("abcd"));
        // Truncated, not STUN, RTP: nothing.
        assert_eq!(stun_local_ufrag(&m[..30]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let mut bad = m.clone();
        bad[4] = 0;
        assert_eq!(stun_local_ufrag(&bad), None);
        // An attribute claiming more than there is.
        let mut long = m.clone();
        long[30] = 0xff;
        assert_eq!(stun_local_ufrag(&long), None);
    }

    fn vp8_frame(key: bool, width: u16) -> Vec<u8> {
        let mut f = if key {
            vec![0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a]
        } else {
            vec![0x31, 0x00, 0x00]
        };
        if key {
            f.extend_from_slice(&width.to_le_bytes());
            f.extend_from_slice(&240u16.to_le_bytes());
        }
        f.extend_from_slice(&[0x11; 30]);
        f
    }

    #[test]
    fn framed_frames_wait_for_a_keyframe_and_give_its_configuration() {
        let mut feed = FramedFeed::new(media::Codec::Vp8, 1 << 20);
        let mut out = Vec::new();
        // An inter frame first: nothing, counted.
        feed.push(1000, &vp8_frame(false, 0), true, &mut out)
            .unwrap();
        assert!(out.is_empty() && feed.frames_dropped == 1);
        // The keyframe: its configuration, then itself at 0 ms.
        feed.push(90_000, &vp8_frame(true, 320), true, &mut out)
            .unwrap();
        feed.push(93_000, &vp8_frame(false, 0), true, &mut out)
            .unwrap();
        assert!(
            matches!(&out[0], RtpEvent::Config(media::VideoConfig::Framed(c)) if c.width == 320 && c.height == 240)
        );
        assert!(matches!(&out[1], RtpEvent::Frame(f) if f.keyframe && f.pts_ms == 0));
        assert!(matches!(&out[2], RtpEvent::Frame(f) if !f.keyframe && f.pts_ms == 33));
        out.clear();
        // A loss: nothing until the next keyframe; the same size gives no new configuration,
        // a new size does.
        feed.push(96_000, &vp8_frame(false, 0), false, &mut out)
            .unwrap();
        assert!(out.is_empty() && feed.need_keyframe);
        feed.push(99_000, &vp8_frame(true, 320), true, &mut out)
            .unwrap();
        assert!(matches!(out.as_slice(), [RtpEvent::Frame(f)] if f.keyframe));
        feed.push(102_000, &vp8_frame(true, 640), true, &mut out)
            .unwrap();
        assert!(
            matches!(&out[1], RtpEvent::Config(media::VideoConfig::Framed(c)) if c.width == 640)
        );
        // A keyframe whose header cannot be read is dropped, and too large a frame.
        assert!(feed
            .push(105_000, &[0x50, 0, 0, 1], true, &mut out)
            .is_err());
        let mut small = FramedFeed::new(media::Codec::Vp8, 8);
        assert!(small
            .push(0, &vp8_frame(true, 320), true, &mut out)
            .is_err());
    }

    #[test]
    fn offered_codecs_come_in_the_offers_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 45\r\na=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\na=rtpmap:45 AV1/90000\r\n";
        assert_eq!(
            offered_video_codecs(sdp),
            vec![media::Codec::Vp8, media::Codec::H264, media::Codec::Av1]
        );
        assert!(offered_video_codecs("v=0\r\n").is_empty());
    }

    #[test]
    fn session_ids_are_long_and_differ() {
        let a = session_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, session_id());
    }

    #[test]
    fn advertised_addresses_leave_out_loopback_unless_alone() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.1.2.3".parse().unwrap()];
        assert_eq!(
            advertised(&ips, 8189),
            vec!["10.1.2.3:8189".parse().unwrap()]
        );
        assert_eq!(
            advertised(&ips[..1], 8189),
            vec!["127.0.0.1:8189".parse::<SocketAddr>().unwrap()]
        );
    }
}
