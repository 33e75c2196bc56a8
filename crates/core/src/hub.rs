//! The hub: every live stream's parameter sets, its newest keyframe and the frames after it
//! (compressed, in decode order), and its statistics. Nothing is decoded here: a frame that
//! nobody pictures costs a lock, a push and a few counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use media::budget::MemoryBudget;
use media::sps::SpsInfo;
use media::stream::{
    PlayItem, PlayNext, PublishRefused, PublisherInfo, StreamKey, StreamPlayer, StreamSink,
    StreamSource, StreamWriter,
};
use media::{Codec, Frame, VideoConfig};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::schedule::{Clock, Due, Schedule, SystemClock};
use crate::snapshot::Precision;
use crate::template::Template;
use crate::{Error, Result};

/// Limits of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Most live streams at once.
    pub max_streams: usize,
    /// Most bytes buffered for one stream's current GOP; frames past it are dropped until the
    /// next keyframe (the keyframe itself is always kept).
    pub max_gop_bytes: usize,
    /// The one ingest memory budget the GOPs of all streams are charged to (and the front ends'
    /// partial messages): past it the largest GOPs are trimmed to their keyframe.
    pub budget: Arc<MemoryBudget>,
}

/// Most live streams at once by default.
pub const DEFAULT_MAX_STREAMS: usize = 1000;
/// Most bytes buffered per stream's GOP by default.
pub const DEFAULT_MAX_GOP_BYTES: usize = 32 * 1024 * 1024;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_streams: DEFAULT_MAX_STREAMS,
            max_gop_bytes: DEFAULT_MAX_GOP_BYTES,
            budget: MemoryBudget::unlimited(),
        }
    }
}

/// A stream's decoder configuration with what its SPS says.
#[derive(Debug)]
pub struct StreamParams {
    /// Codec.
    pub codec: Codec,
    /// Parameter sets.
    pub config: VideoConfig,
    /// Size, profile, colour.
    pub sps: SpsInfo,
}

/// One buffered frame with where it stands in the stream.
#[derive(Debug, Clone)]
pub struct StoredFrame {
    /// The frame.
    pub frame: Frame,
    /// Number of the frame in this publish session, from 0.
    pub seq: u64,
    /// Wall-clock time it arrived.
    pub arrived: SystemTime,
}

/// A copy of what is needed to picture the stream now: parameters and the current GOP.
#[derive(Debug, Clone)]
pub struct GopView {
    /// Parameters in force for the GOP.
    pub params: Arc<StreamParams>,
    /// Keyframe first, then what followed, in decode order.
    pub frames: Vec<StoredFrame>,
}

/// Frame rate and bitrate measured over windows of about a second of the stream's own
/// timestamps, so that network bursts do not skew them.
#[derive(Debug, Default)]
struct RateWindow {
    start_dts: Option<i64>,
    frames: u64,
    bytes: u64,
    fps: f64,
    bitrate: f64,
}

/// How much stream time one rate window covers.
const RATE_WINDOW_MS: i64 = 1000;

impl RateWindow {
    fn add(&mut self, dts_ms: i64, len: usize) {
        match self.start_dts {
            Some(start) if dts_ms >= start => {
                let span = dts_ms - start;
                if span >= RATE_WINDOW_MS {
                    self.fps = self.frames as f64 * 1000.0 / span as f64;
                    self.bitrate = self.bytes as f64 * 8000.0 / span as f64;
                    self.start_dts = Some(dts_ms);
                    self.frames = 0;
                    self.bytes = 0;
                }
            }
            // First frame, or timestamps went back: start over.
            _ => {
                self.start_dts = Some(dts_ms);
                self.frames = 0;
                self.bytes = 0;
            }
        }
        self.frames += 1;
        self.bytes += len as u64;
    }
}

/// A stream's [`media::stream::KeyframeRequester`] (a closure, shown by name only).
#[derive(Clone)]
struct Requester(media::stream::KeyframeRequester);

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyframeRequester")
    }
}

#[derive(Debug, Default)]
struct StreamState {
    params: Option<Arc<StreamParams>>,
    params_error: Option<String>,
    unsupported: Option<String>,
    gop: Vec<StoredFrame>,
    gop_bytes: usize,
    gop_overflowed: bool,
    next_seq: u64,
    frames_total: u64,
    bytes_total: u64,
    frames_dropped: u64,
    keyframes: u64,
    last_keyframe_dts: Option<i64>,
    keyframe_interval_ms: Option<i64>,
    /// When the last keyframe arrived, on the stream's clock.
    last_keyframe_at: Option<Duration>,
    rates: RateWindow,
    schedule: Option<Schedule>,
    shots_dropped: u64,
    /// `tcp` or `udp`, for front ends that say (RTSP).
    transport: Option<&'static str>,
    /// RTP packets lost and access units the depacketizers dropped, as last reported.
    packets_lost: u64,
    depacketizer_drops: u64,
    /// Asks the sender for a keyframe (WHIP publishers), if it can be asked.
    keyframe_requester: Option<Requester>,
    /// Keyframes asked for.
    keyframe_requests: u64,
}

impl StreamState {
    /// Bytes of the GOP after its keyframe (what a trim frees).
    fn gop_bytes_past_keyframe(&self) -> usize {
        self.gop
            .first()
            .map_or(0, |k| self.gop_bytes - k.frame.data.len())
    }

    fn problem(&self) -> Option<String> {
        self.unsupported
            .as_ref()
            .map(|c| format!("unsupported video codec {c}"))
            .or_else(|| self.params_error.clone())
    }
}

/// One live stream.
#[derive(Debug)]
pub struct LiveStream {
    /// `{domain}/{app}/{stream}`.
    pub key: StreamKey,
    /// Unique per publish: a republished stream gets a new id, so nothing cached survives it.
    pub id: u64,
    /// Who publishes it.
    pub publisher: PublisherInfo,
    /// When the publish started.
    pub started: SystemTime,
    /// Pictures made of this stream.
    pub snapshots: AtomicU64,
    state: Mutex<StreamState>,
    keyframe_tx: watch::Sender<u64>,
    /// The newest buffered frame's number, sent only while players listen (a frame nobody
    /// plays costs one atomic load here).
    frames_tx: watch::Sender<u64>,
    closed: AtomicBool,
    clock: Arc<dyn Clock>,
}

/// The stream as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamStats {
    pub domain: String,
    pub app: String,
    pub stream: String,
    pub codec: Option<String>,
    pub profile: Option<String>,
    pub level: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub colour: Option<String>,
    pub fps: f64,
    pub bitrate_kbps: f64,
    pub keyframe_interval_ms: Option<i64>,
    pub last_keyframe_age_ms: Option<u64>,
    pub gop_frames: usize,
    pub gop_bytes: usize,
    pub frames: u64,
    pub keyframes: u64,
    /// Frames not kept: broken chains in the hub, and access units the RTP depacketizers
    /// dropped (lost packets, waiting for a keyframe after a loss).
    pub frames_dropped: u64,
    /// `tcp` or `udp` for RTSP, else absent.
    pub transport: Option<String>,
    /// RTP packets lost in transit (RTSP over UDP; 0 otherwise).
    pub packets_lost: u64,
    pub bytes: u64,
    pub snapshots: u64,
    /// Keyframes asked of the publisher before pictures (WHIP streams; `keyframe_request_after_ms`).
    pub keyframe_requests: u64,
    pub template: Option<String>,
    pub auto_triggered: u64,
    pub auto_missed: u64,
    pub publisher: String,
    pub protocol: String,
    pub started_at: String,
    pub error: Option<String>,
    /// The pull job whose stream this is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Where a pull job's stream comes from (its URL, password hidden).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl LiveStream {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic while holding the lock leaves counters, not invariants, half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True after the publisher went away.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Parameters and the current GOP, if a keyframe has arrived. `whole` copies every frame of
    /// the GOP (for `precision=latest`); otherwise only the keyframe. Frames are `Bytes`, so a
    /// copy is a reference count.
    pub fn gop(&self, whole: bool) -> Option<GopView> {
        let s = self.lock();
        let params = s.params.clone()?;
        let first = s.gop.first()?;
        let frames = if whole {
            s.gop.clone()
        } else {
            vec![first.clone()]
        };
        Some(GopView { params, frames })
    }

    /// How long ago the newest keyframe arrived (`None`: none yet).
    pub fn keyframe_age(&self) -> Option<Duration> {
        let at = self.lock().last_keyframe_at?;
        Some(self.clock.now().saturating_sub(at))
    }

    /// Asks the stream's sender for a keyframe when it can be asked (WHIP publishers) and
    /// the newest keyframe is older than `older_than` (or there is none). True when the
    /// request went out.
    pub fn request_keyframe(&self, older_than: Duration) -> bool {
        let requester = {
            let s = self.lock();
            let fresh = s
                .last_keyframe_at
                .is_some_and(|at| self.clock.now().saturating_sub(at) <= older_than);
            match s.keyframe_requester.clone() {
                Some(r) if !fresh => r.0,
                _ => return false,
            }
        };
        // Outside the lock: the requester only queues the request for its front end.
        let sent = requester();
        if sent {
            self.lock().keyframe_requests += 1;
        }
        sent
    }

    /// A receiver that changes whenever a keyframe arrives (or the stream closes).
    pub fn keyframes(&self) -> watch::Receiver<u64> {
        self.keyframe_tx.subscribe()
    }

    /// An identifier of this publish session, unique across restarts (start time and id).
    pub fn media_session_id(&self) -> String {
        let ms = self
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!("{ms:x}-{}", self.id)
    }

    /// Puts the stream on `template`'s schedule (first picture at the next keyframe), or takes
    /// it off with `None`. Keeps the schedule's counters when the template does not change.
    pub fn set_template(&self, template: Option<Arc<Template>>) {
        let now = self.clock.now();
        let mut s = self.lock();
        s.schedule = match (template, s.schedule.take()) {
            (Some(t), Some(old)) if *old.template == *t => Some(old),
            (Some(t), _) => Some(Schedule::new(t, now)),
            (None, _) => None,
        };
    }

    /// The template the stream is scheduled with.
    pub fn template(&self) -> Option<Arc<Template>> {
        self.lock().schedule.as_ref().map(|s| s.template.clone())
    }

    /// Wall-clock time now, on the clock the stream's schedule runs on (what `Shot::due` is on).
    pub fn wall_now(&self) -> SystemTime {
        self.clock.wall()
    }

    /// Why this stream cannot be pictured, if it cannot.
    /// Counts a due picture that was not taken (coalesced behind a newer one, or dropped), in
    /// the stream's `auto_missed`.
    pub fn count_missed(&self) {
        self.lock().shots_dropped += 1;
    }

    pub fn problem(&self) -> Option<String> {
        self.lock().problem()
    }

    /// Statistics for the API.
    pub fn stats(&self) -> StreamStats {
        let s = self.lock();
        let p = s.params.as_deref();
        let job = s
            .schedule
            .as_ref()
            .and_then(|sc| sc.template.job.as_deref());
        StreamStats {
            domain: self.key.domain.clone(),
            app: self.key.app.clone(),
            stream: self.key.stream.clone(),
            codec: p
                .map(|p| p.codec.name().to_string())
                .or_else(|| s.unsupported.clone()),
            profile: p.map(|p| p.sps.profile_name().to_string()),
            level: p.map(|p| f64::from(p.sps.level_idc) / 10.0),
            width: p.map(|p| p.sps.width),
            height: p.map(|p| p.sps.height),
            colour: p.map(|p| p.sps.colour.describe()),
            fps: (s.rates.fps * 100.0).round() / 100.0,
            bitrate_kbps: (s.rates.bitrate / 10.0).round() / 100.0,
            keyframe_interval_ms: s.keyframe_interval_ms,
            last_keyframe_age_ms: s
                .last_keyframe_at
                .map(|at| self.clock.now().saturating_sub(at).as_millis() as u64),
            gop_frames: s.gop.len(),
            gop_bytes: s.gop_bytes,
            frames: s.frames_total,
            keyframes: s.keyframes,
            frames_dropped: s.frames_dropped + s.depacketizer_drops,
            transport: s.transport.map(str::to_string),
            packets_lost: s.packets_lost,
            bytes: s.bytes_total,
            snapshots: self.snapshots.load(Ordering::Relaxed),
            keyframe_requests: s.keyframe_requests,
            template: s.schedule.as_ref().map(|sc| sc.template.spec.name.clone()),
            auto_triggered: s.schedule.as_ref().map_or(0, |sc| sc.triggered),
            auto_missed: s
                .schedule
                .as_ref()
                .map_or(0, |sc| sc.missed_now(self.clock.now()))
                + s.shots_dropped,
            publisher: self.publisher.addr.to_string(),
            protocol: self.publisher.protocol.to_string(),
            started_at: humantime::format_rfc3339_millis(self.started).to_string(),
            error: s.problem(),
            job: job.map(|j| j.id.clone()),
            source: job.map(|j| j.source.clone()),
        }
    }
}

/// Every live stream.
pub struct Hub {
    streams: RwLock<HashMap<StreamKey, Arc<LiveStream>>>,
    config: HubConfig,
    next_id: AtomicU64,
    clock: Arc<dyn Clock>,
    observer: OnceLock<Arc<dyn HubObserver>>,
    shots: OnceLock<tokio::sync::mpsc::Sender<Shot>>,
    /// Frames and bytes of the streams that have ended, per protocol (for totals since start).
    ended: Mutex<HashMap<&'static str, IngestTotals>>,
    trims: AtomicU64,
    /// Domain -> (the account owning it, its `max_streams`), when it has one.
    quota: OnceLock<Quota>,
}

/// Who owns a domain and how many live streams its domains may hold: `None` when no limit.
pub type Quota = Arc<dyn Fn(&str) -> Option<(String, usize)> + Send + Sync>;

/// What one front end (protocol) has taken in since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestTotals {
    /// Streams live now.
    pub live: u64,
    /// Video frames received.
    pub frames: u64,
    /// Video bytes received.
    pub bytes: u64,
}

/// Told when streams come and go (automatic snapshots, callbacks).
pub trait HubObserver: Send + Sync {
    /// A stream started; called after it is in the hub.
    fn published(&self, stream: &Arc<LiveStream>);
    /// A stream ended; called after it left the hub.
    fn unpublished(&self, stream: &Arc<LiveStream>);
}

/// A picture a schedule asked for, with the frames to make it from, taken when it was due.
#[derive(Debug)]
pub struct Shot {
    /// The stream.
    pub stream: Arc<LiveStream>,
    /// Parameters and frames (the keyframe alone, or the GOP up to the due frame).
    pub view: GopView,
    /// Which frame of `view`.
    pub precision: Precision,
    /// The template that asked.
    pub template: Arc<Template>,
    /// Wall-clock time it was due.
    pub due: SystemTime,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// An empty hub on another clock (tests).
    pub fn with_clock(config: HubConfig, clock: Arc<dyn Clock>) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            streams: RwLock::new(HashMap::new()),
            config,
            next_id: AtomicU64::new(1),
            clock,
            observer: OnceLock::new(),
            shots: OnceLock::new(),
            ended: Mutex::new(HashMap::new()),
            trims: AtomicU64::new(0),
            quota: OnceLock::new(),
        });
        let weak = Arc::downgrade(&hub);
        hub.config.budget.set_reclaimer(Box::new(move |need| {
            weak.upgrade().map_or(0, |hub| hub.trim_largest(need))
        }));
        hub
    }

    /// The ingest memory budget.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.config.budget
    }

    /// GOPs trimmed to their keyframe to keep within the ingest budget, since start.
    pub fn trims(&self) -> u64 {
        self.trims.load(Ordering::Relaxed)
    }

    /// Trims the largest GOPs to their keyframe until `need` bytes are freed or none is left to
    /// trim; returns the bytes freed. Frames of a trimmed stream are dropped until its next
    /// keyframe (the chain to them is gone). Takes each stream's lock in turn, never two.
    fn trim_largest(&self, need: u64) -> u64 {
        let streams: Vec<Arc<LiveStream>> = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut freed = 0u64;
        while freed < need {
            // The largest holder past its keyframe.
            let largest = streams
                .iter()
                .map(|st| (st.lock().gop_bytes_past_keyframe(), st))
                .filter(|(n, _)| *n > 0)
                .max_by_key(|(n, _)| *n);
            let Some((_, stream)) = largest else { break };
            let mut s = stream.lock();
            let n = s.gop_bytes_past_keyframe();
            if n == 0 {
                continue;
            }
            s.gop.truncate(1);
            s.gop_bytes -= n;
            s.gop_overflowed = true;
            s.frames_dropped += 1;
            drop(s);
            self.config.budget.release(n as u64);
            freed += n as u64;
            self.trims.fetch_add(1, Ordering::Relaxed);
            warn!(stream = %stream.key, freed = n, budget = self.config.budget.limit(), "ingest memory budget reached: GOP trimmed to its keyframe; frames until the next keyframe are not buffered");
        }
        freed
    }

    /// Sets who owns each domain and its live-stream limit (the accounts' `max_streams`).
    pub fn set_quota(&self, quota: Quota) {
        let _ = self.quota.set(quota);
    }

    /// The clock streams are scheduled by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Sets who is told about streams, and where due pictures go. Once; later calls are ignored.
    pub fn set_automation(
        &self,
        observer: Arc<dyn HubObserver>,
        shots: tokio::sync::mpsc::Sender<Shot>,
    ) {
        let _ = self.observer.set(observer);
        let _ = self.shots.set(shots);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<StreamKey, Arc<LiveStream>>> {
        self.streams.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every live stream, sorted by key.
    pub fn list(&self) -> Vec<Arc<LiveStream>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Per protocol: streams live now, and frames and bytes received since start (ended
    /// streams included), sorted by protocol.
    pub fn ingest_totals(&self) -> Vec<(&'static str, IngestTotals)> {
        let mut totals = self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for s in self.read().values() {
            let stats = s.stats();
            let t = totals.entry(s.publisher.protocol).or_default();
            t.live += 1;
            t.frames += stats.frames;
            t.bytes += stats.bytes;
        }
        let mut v: Vec<_> = totals.into_iter().collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// The stream with exactly this key.
    pub fn get(&self, key: &StreamKey) -> Option<Arc<LiveStream>> {
        self.read().get(key).cloned()
    }

    /// Finds a stream by `stream`, `app/stream` or `domain/app/stream`. A name that matches
    /// several live streams is [`Error::Ambiguous`].
    pub fn find(&self, name: &str) -> Result<Arc<LiveStream>> {
        self.find_among(name, |_| true)
    }

    /// [`Hub::find`] among the streams `visible` admits only (an account's): the others are
    /// neither found nor named as candidates.
    pub fn find_among(
        &self,
        name: &str,
        visible: impl Fn(&StreamKey) -> bool,
    ) -> Result<Arc<LiveStream>> {
        let parts: Vec<&str> = name.split('/').collect();
        let streams = self.read();
        let matches: Vec<&Arc<LiveStream>> = streams
            .values()
            .filter(|s| visible(&s.key))
            .filter(|s| match parts[..] {
                [stream] => s.key.stream == stream,
                [app, stream] => s.key.app == app && s.key.stream == stream,
                [domain, app, stream] => {
                    s.key.domain == domain && s.key.app == app && s.key.stream == stream
                }
                _ => false,
            })
            .collect();
        match matches.len() {
            0 => Err(Error::NotLive(name.to_string())),
            1 => Ok(matches[0].clone()),
            _ => {
                let mut candidates: Vec<String> =
                    matches.iter().map(|s| s.key.to_string()).collect();
                candidates.sort();
                Err(Error::Ambiguous {
                    name: name.to_string(),
                    candidates,
                })
            }
        }
    }

    /// Starts a stream (see [`StreamSink`]).
    pub fn start(
        self: &Arc<Self>,
        key: StreamKey,
        publisher: PublisherInfo,
    ) -> std::result::Result<HubWriter, PublishRefused> {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        if streams.contains_key(&key) {
            return Err(PublishRefused::AlreadyLive(key.to_string()));
        }
        if streams.len() >= self.config.max_streams {
            return Err(PublishRefused::TooManyStreams(self.config.max_streams));
        }
        if let Some(quota) = self.quota.get() {
            if let Some((account, max)) = quota(&key.domain) {
                let live = streams
                    .keys()
                    .filter(|k| quota(&k.domain).is_some_and(|(a, _)| a == account))
                    .count();
                if live >= max {
                    return Err(PublishRefused::AccountFull { account, max });
                }
            }
        }
        let (keyframe_tx, _) = watch::channel(0);
        let (frames_tx, _) = watch::channel(0);
        let stream = Arc::new(LiveStream {
            key: key.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            publisher,
            started: self.clock.wall(),
            snapshots: AtomicU64::new(0),
            state: Mutex::new(StreamState::default()),
            keyframe_tx,
            frames_tx,
            closed: AtomicBool::new(false),
            clock: self.clock.clone(),
        });
        streams.insert(key, stream.clone());
        drop(streams);
        if let Some(o) = self.observer.get() {
            o.published(&stream);
        }
        Ok(HubWriter {
            hub: self.clone(),
            stream,
            max_gop_bytes: self.config.max_gop_bytes,
            budget: self.config.budget.clone(),
        })
    }

    fn remove(&self, stream: &Arc<LiveStream>) {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        if streams.get(&stream.key).is_some_and(|s| s.id == stream.id) {
            streams.remove(&stream.key);
        }
        drop(streams);
        let stats = stream.stats();
        {
            let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            let t = ended.entry(stream.publisher.protocol).or_default();
            t.frames += stats.frames;
            t.bytes += stats.bytes;
        }
        if let Some(o) = self.observer.get() {
            o.unpublished(stream);
        }
    }
}

/// The hub as the sink that protocol front ends publish into.
pub struct HubSink(pub Arc<Hub>);

impl StreamSink for HubSink {
    fn publish(
        &self,
        key: StreamKey,
        info: PublisherInfo,
    ) -> std::result::Result<Box<dyn StreamWriter>, PublishRefused> {
        Ok(Box::new(self.0.start(key, info)?))
    }
}

impl StreamSource for HubSink {
    fn play(&self, key: &StreamKey) -> Option<Box<dyn StreamPlayer>> {
        Some(Box::new(HubPlayer::new(self.0.get(key)?)))
    }
}

/// A player's cursor in a stream's buffered GOP: it starts at the newest keyframe, follows the
/// frames as they are buffered, and jumps to the newest keyframe when the frames it wanted are
/// gone (it fell a GOP behind, or the GOP was trimmed).
pub struct HubPlayer {
    stream: Arc<LiveStream>,
    frames: watch::Receiver<u64>,
    /// The number of the frame to send next; `None` before the first.
    next_seq: Option<u64>,
    /// The parameters the player was last given.
    sent: Option<Arc<StreamParams>>,
}

/// What a look at the buffered GOP found for a player.
enum Look {
    Item(PlayItem),
    Wait,
    Ended,
}

impl HubPlayer {
    /// A player of `stream` from its newest keyframe.
    pub fn new(stream: Arc<LiveStream>) -> HubPlayer {
        let frames = stream.frames_tx.subscribe();
        HubPlayer {
            stream,
            frames,
            next_seq: None,
            sent: None,
        }
    }

    fn look(&mut self) -> Look {
        // Marked seen before the look: a frame buffered after it wakes the next wait.
        self.frames.borrow_and_update();
        if self.stream.is_closed() {
            return Look::Ended;
        }
        let s = self.stream.lock();
        let (Some(params), Some(first), Some(last)) = (&s.params, s.gop.first(), s.gop.last())
        else {
            return Look::Wait;
        };
        let want = match self.next_seq {
            Some(n) if n > last.seq => return Look::Wait,
            Some(n) if n >= first.seq => n,
            // The first frame, or the frames wanted are gone: from the GOP's keyframe.
            _ => first.seq,
        };
        if self.sent.as_ref().is_none_or(|p| !Arc::ptr_eq(p, params)) {
            self.sent = Some(params.clone());
            // The GOP was cleared when the configuration came: it starts at a keyframe.
            self.next_seq = Some(first.seq);
            return Look::Item(PlayItem::Config(params.config.clone()));
        }
        // Buffered frames have consecutive numbers (a GOP stops buffering at its first gap).
        match s.gop.get((want - first.seq) as usize) {
            Some(f) if f.seq == want => {
                self.next_seq = Some(want + 1);
                Look::Item(PlayItem::Frame(f.frame.clone()))
            }
            _ => {
                self.next_seq = Some(first.seq + 1);
                Look::Item(PlayItem::Frame(first.frame.clone()))
            }
        }
    }
}

impl StreamPlayer for HubPlayer {
    fn codec(&self) -> Option<Codec> {
        self.stream.lock().params.as_ref().map(|p| p.codec)
    }

    fn next(&mut self) -> PlayNext<'_> {
        Box::pin(async move {
            loop {
                match self.look() {
                    Look::Item(item) => return Some(item),
                    Look::Ended => return None,
                    Look::Wait => {
                        if self.frames.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            }
        })
    }
}

/// Feeds one stream; dropping it ends the stream.
pub struct HubWriter {
    hub: Arc<Hub>,
    stream: Arc<LiveStream>,
    max_gop_bytes: usize,
    budget: Arc<MemoryBudget>,
}

impl HubWriter {
    /// The stream being written.
    pub fn stream(&self) -> &Arc<LiveStream> {
        &self.stream
    }
}

impl StreamWriter for HubWriter {
    fn config(&mut self, config: VideoConfig) {
        let codec = config.codec();
        let parsed = config
            .info()
            .map_err(|e| e.to_string())
            .and_then(|sps| media::decode::cannot_decode(codec).map_or(Ok(sps), Err));
        let mut s = self.stream.lock();
        // A new configuration invalidates the buffered GOP: its frames need the old one.
        s.gop.clear();
        self.budget.release(std::mem::take(&mut s.gop_bytes) as u64);
        match parsed {
            Ok(sps) => {
                if s.params.as_ref().is_none_or(|p| p.config != config) {
                    info!(stream = %self.stream.key, codec = codec.display_name(), width = sps.width, height = sps.height, profile = sps.profile_name(), colour = %sps.colour.describe(), "video configuration");
                }
                s.params = Some(Arc::new(StreamParams { codec, config, sps }));
                s.params_error = None;
            }
            Err(e) => {
                warn!(stream = %self.stream.key, codec = codec.display_name(), error = %e, "video configuration refused; no pictures until a valid one arrives");
                s.params = None;
                s.params_error = Some(e);
            }
        }
    }

    fn frame(&mut self, frame: Frame) {
        let len = frame.data.len();
        let keyframe = frame.keyframe;
        let mut over_budget = false;
        let mut guard = self.stream.lock();
        let s = &mut *guard;
        s.frames_total += 1;
        s.bytes_total += len as u64;
        s.rates.add(frame.dts_ms, len);
        let seq = s.next_seq;
        s.next_seq += 1;
        let stored = if s.params.is_none() {
            false // nothing can be pictured without parameters
        } else if keyframe {
            s.keyframes += 1;
            if let Some(prev) = s.last_keyframe_dts {
                s.keyframe_interval_ms = Some(frame.dts_ms - prev);
            }
            s.last_keyframe_dts = Some(frame.dts_ms);
            s.last_keyframe_at = Some(self.stream.clock.now());
            s.gop.clear();
            self.budget.release(std::mem::take(&mut s.gop_bytes) as u64);
            s.gop_overflowed = false;
            if self.budget.try_charge(len as u64) {
                true
            } else {
                // Over the ingest budget even with this stream's GOP gone: room is made by
                // trimming the largest GOPs once this stream's lock is let go.
                s.frames_dropped += 1;
                s.gop_overflowed = true;
                over_budget = true;
                false
            }
        } else if s.gop.is_empty() {
            false // no keyframe yet: nothing before one is decodable
        } else if s.gop_overflowed {
            s.frames_dropped += 1; // the chain to this frame is broken
            false
        } else if s.gop_bytes + len > self.max_gop_bytes {
            s.frames_dropped += 1;
            if !s.gop_overflowed {
                s.gop_overflowed = true;
                warn!(stream = %self.stream.key, limit = self.max_gop_bytes, frames = s.gop.len(), "GOP exceeds max_gop_bytes; frames until the next keyframe are not buffered (precision=latest sees the last one kept)");
            }
            false
        } else if !self.budget.try_charge(len as u64) {
            s.frames_dropped += 1;
            s.gop_overflowed = true;
            over_budget = true;
            false
        } else {
            true
        };
        if stored {
            s.gop_bytes += len;
            s.gop.push(StoredFrame {
                frame,
                seq,
                arrived: self.stream.clock.wall(),
            });
        }
        // Automatic pictures: a comparison or a counter per frame; frames are copied (reference
        // counts) only when a picture is due.
        let shot = match s.schedule.as_mut() {
            Some(sched) => {
                let due = sched.on_frame(
                    self.stream.clock.now(),
                    keyframe && stored,
                    !s.gop.is_empty(),
                );
                let frames = match due {
                    Due::No => None,
                    Due::Keyframe => s
                        .gop
                        .first()
                        .map(|f| (vec![f.clone()], Precision::Keyframe)),
                    Due::Latest => Some((s.gop.clone(), Precision::Latest)),
                };
                match (frames, s.params.clone()) {
                    (Some((frames, precision)), Some(params)) => Some(Shot {
                        stream: self.stream.clone(),
                        view: GopView { params, frames },
                        precision,
                        template: sched.template.clone(),
                        due: self.stream.clock.wall(),
                    }),
                    _ => None,
                }
            }
            None => None,
        };
        if let Some(shot) = shot {
            let sent = self
                .hub
                .shots
                .get()
                .is_some_and(|tx| tx.try_send(shot).is_ok());
            if !sent {
                s.shots_dropped += 1;
                warn!(stream = %self.stream.key, "automatic snapshot dropped: the snapshot queue is full");
            }
        }
        drop(guard);
        if over_budget {
            self.hub.trim_largest(len as u64);
        }
        if keyframe && stored {
            self.stream.keyframe_tx.send_modify(|n| *n = seq);
        }
        if stored && self.stream.frames_tx.receiver_count() > 0 {
            self.stream.frames_tx.send_replace(seq);
        }
    }

    fn unsupported(&mut self, name: &str) {
        self.stream.lock().unsupported = Some(name.to_string());
    }

    fn transport(&mut self, transport: &'static str, packets_lost: u64, frames_dropped: u64) {
        let mut s = self.stream.lock();
        s.transport = Some(transport);
        s.packets_lost = packets_lost;
        s.depacketizer_drops = frames_dropped;
    }

    fn keyframe_requests(&mut self, request: media::stream::KeyframeRequester) {
        self.stream.lock().keyframe_requester = Some(Requester(request));
    }
}

impl Drop for HubWriter {
    fn drop(&mut self) {
        {
            let mut s = self.stream.lock();
            s.gop.clear();
            self.budget.release(std::mem::take(&mut s.gop_bytes) as u64);
        }
        self.stream.closed.store(true, Ordering::Release);
        self.hub.remove(&self.stream);
        // Wake anyone waiting for a keyframe or a frame so they see the stream is gone.
        self.stream.keyframe_tx.send_modify(|_| {});
        self.stream.frames_tx.send_modify(|_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn info() -> PublisherInfo {
        PublisherInfo {
            addr: "127.0.0.1:5000".parse().unwrap(),
            protocol: "test",
        }
    }

    fn key(d: &str, a: &str, s: &str) -> StreamKey {
        StreamKey::new(d, a, s).unwrap()
    }

    #[test]
    fn refuses_duplicate_and_frees_on_drop() {
        let hub = Hub::new(HubConfig::default());
        let w = hub
            .start(key("_default", "live", "a"), info())
            .ok()
            .unwrap();
        assert!(matches!(
            hub.start(key("_default", "live", "a"), info()),
            Err(PublishRefused::AlreadyLive(_))
        ));
        drop(w);
        assert!(hub.start(key("_default", "live", "a"), info()).is_ok());
    }

    #[test]
    fn finds_bare_qualified_and_ambiguous_names() {
        let hub = Hub::new(HubConfig::default());
        let _a = hub
            .start(key("_default", "live", "cam"), info())
            .ok()
            .unwrap();
        let _b = hub
            .start(key("x.example", "live", "cam"), info())
            .ok()
            .unwrap();
        let _c = hub
            .start(key("_default", "live", "solo"), info())
            .ok()
            .unwrap();
        assert_eq!(hub.find("solo").unwrap().key.stream, "solo");
        assert!(
            matches!(hub.find("cam"), Err(Error::Ambiguous { candidates, .. }) if candidates.len() == 2)
        );
        assert_eq!(
            hub.find("x.example/live/cam").unwrap().key.domain,
            "x.example"
        );
        assert!(matches!(hub.find("nope"), Err(Error::NotLive(_))));
    }

    #[test]
    fn limits_streams() {
        let hub = Hub::new(HubConfig {
            max_streams: 1,
            ..HubConfig::default()
        });
        let _a = hub
            .start(key("_default", "live", "a"), info())
            .ok()
            .unwrap();
        assert!(matches!(
            hub.start(key("_default", "live", "b"), info()),
            Err(PublishRefused::TooManyStreams(1))
        ));
    }

    /// A writer for `name` whose parameters are accepted.
    fn configured(hub: &Arc<Hub>, name: &str) -> HubWriter {
        let mut w = hub
            .start(key("_default", "live", name), info())
            .ok()
            .unwrap();
        // The SPS and PPS of a 64x64 baseline stream made by x264 so the parameters are accepted.
        let sps = Bytes::from_static(&[
            0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x04, 0x26, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04,
            0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x48, 0x99, 0x20,
        ]);
        let pps = Bytes::from_static(&[0x68, 0xcb, 0x83, 0xcb, 0x20]);
        w.config(
            media::avc::AvcConfig {
                profile: 66,
                level: 10,
                nal_length_size: 4,
                sps: vec![sps],
                pps: vec![pps],
            }
            .into(),
        );
        assert_eq!(w.stream().problem(), None);
        w
    }

    fn f(dts: i64, key: bool, n: usize) -> Frame {
        Frame {
            dts_ms: dts,
            pts_ms: dts,
            keyframe: key,
            data: Bytes::from(vec![0u8; n]),
        }
    }

    /// Waits for a player's next item, failing the test after a second.
    async fn next(p: &mut Box<dyn StreamPlayer>) -> Option<PlayItem> {
        tokio::time::timeout(Duration::from_secs(1), p.next())
            .await
            .expect("the player waited for an item that was there")
    }

    fn dts(item: Option<PlayItem>) -> (i64, bool) {
        match item {
            Some(PlayItem::Frame(f)) => (f.dts_ms, f.keyframe),
            other => panic!("want a frame, got {other:?}"),
        }
    }

    /// A player starts with the configuration and the newest keyframe, follows the frames as
    /// they come, skips to the newest keyframe when the frames it wanted are gone, is given a
    /// new configuration when it changes, and ends with the stream.
    #[tokio::test]
    async fn a_player_follows_the_stream_from_its_newest_keyframe() {
        let hub = Hub::new(HubConfig::default());
        let sink = HubSink(hub.clone());
        assert!(sink.play(&key("_default", "live", "p")).is_none());
        let mut w = configured(&hub, "p");
        w.frame(f(0, true, 10));
        w.frame(f(40, false, 10));
        w.frame(f(80, true, 10)); // the newest keyframe: a player starts here
        w.frame(f(120, false, 10));
        let mut p = sink.play(&key("_default", "live", "p")).unwrap();
        assert!(matches!(
            next(&mut p).await,
            Some(PlayItem::Config(VideoConfig::Avc(_)))
        ));
        assert_eq!(dts(next(&mut p).await), (80, true));
        assert_eq!(dts(next(&mut p).await), (120, false));
        // Nothing new: it waits, and a frame buffered meanwhile wakes it.
        let waiting = tokio::time::timeout(Duration::from_millis(50), p.next()).await;
        assert!(waiting.is_err(), "a player with nothing new must wait");
        w.frame(f(160, false, 10));
        assert_eq!(dts(next(&mut p).await), (160, false));
        // Two GOPs pass while the player is away: it resumes at the newest keyframe.
        for (t, k) in [(200, true), (240, false), (280, true), (320, false)] {
            w.frame(f(t, k, 10));
        }
        assert_eq!(dts(next(&mut p).await), (280, true));
        assert_eq!(dts(next(&mut p).await), (320, false));
        // A new configuration comes first, then the keyframe after it.
        let cfg = w.stream().gop(false).unwrap().params.config.clone();
        w.config(cfg);
        w.frame(f(360, true, 10));
        assert!(matches!(next(&mut p).await, Some(PlayItem::Config(_))));
        assert_eq!(dts(next(&mut p).await), (360, true));
        drop(w);
        assert!(next(&mut p).await.is_none(), "the stream ended");
    }

    #[test]
    fn gop_starts_at_keyframe_and_respects_byte_limit() {
        let hub = Hub::new(HubConfig {
            max_streams: 10,
            max_gop_bytes: 100,
            ..HubConfig::default()
        });
        let mut w = configured(&hub, "a");
        w.frame(f(0, false, 10)); // before any keyframe: not buffered
        assert!(w.stream().gop(true).is_none());
        w.frame(f(40, true, 60));
        w.frame(f(80, false, 30));
        w.frame(f(120, false, 30)); // over 100 bytes: dropped
        let gop = w.stream().gop(true).unwrap();
        assert_eq!(gop.frames.len(), 2);
        assert_eq!(gop.frames[0].frame.dts_ms, 40);
        assert_eq!(w.stream().stats().frames_dropped, 1);
        w.frame(f(160, true, 60));
        assert_eq!(w.stream().gop(true).unwrap().frames.len(), 1);
        assert_eq!(w.stream().stats().keyframe_interval_ms, Some(120));
    }

    /// Two streams within one ingest budget of 1000 bytes: when the second needs room, the
    /// largest GOP (the first's) is trimmed to its keyframe, and its frames until its next
    /// keyframe are dropped; what the budget holds never passes it, and ended streams give
    /// their bytes back.
    #[test]
    fn the_ingest_budget_trims_the_largest_gop_to_its_keyframe() {
        let budget = MemoryBudget::new(1000);
        let hub = Hub::new(HubConfig {
            budget: budget.clone(),
            ..HubConfig::default()
        });
        let mut a = configured(&hub, "a");
        let mut b = configured(&hub, "b");
        a.frame(f(0, true, 100));
        for i in 1..=7 {
            a.frame(f(i * 40, false, 100)); // a holds 800
        }
        b.frame(f(0, true, 100));
        assert_eq!(budget.used(), 900);
        b.frame(f(40, false, 150)); // does not fit: a is trimmed, this frame is dropped
        assert_eq!(hub.trims(), 1);
        assert_eq!(a.stream().gop(true).unwrap().frames.len(), 1);
        assert_eq!(b.stream().gop(true).unwrap().frames.len(), 1);
        assert_eq!(budget.used(), 200);
        b.frame(f(80, false, 150)); // b's chain is broken: dropped until its next keyframe
        a.frame(f(320, false, 100)); // a's too
        assert_eq!(budget.used(), 200);
        assert_eq!(b.stream().stats().frames_dropped, 2);
        assert_eq!(a.stream().stats().frames_dropped, 2); // the trim and the one after
        b.frame(f(120, true, 100)); // b's next GOP starts
        b.frame(f(160, false, 150));
        assert_eq!(b.stream().gop(true).unwrap().frames.len(), 2);
        assert_eq!(budget.used(), 350);
        // A keyframe larger than the whole budget is not kept, and nothing wraps.
        a.frame(f(360, true, 5000));
        assert!(a.stream().gop(true).is_none());
        assert!(budget.used() <= budget.limit());
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0, "ended streams give their bytes back");
    }
}

#[cfg(test)]
mod rate_tests {
    use super::RateWindow;

    #[test]
    fn rates_follow_stream_time_not_arrival() {
        let mut w = RateWindow::default();
        // 25 fps, 1000 bytes a frame, all arriving at once (a burst).
        for i in 0..51 {
            w.add(i * 40, 1000);
        }
        assert!((w.fps - 25.0).abs() < 0.01, "fps {}", w.fps);
        assert!((w.bitrate - 200_000.0).abs() < 1.0, "bitrate {}", w.bitrate);
    }
}
