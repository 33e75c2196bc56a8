//! The snapshot service: from a live stream's current GOP to image bytes.
//!
//! Decoders are pooled (creating one costs more than decoding a keyframe) and the pool is bounded
//! by the worker count, so memory does not grow with the number of streams. A picture of a given
//! frame, precision and output is made once: concurrent and later requests for it share one
//! cache cell, filled by whichever request came first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::decode::{Decoder, Picture};
use media::picture::{self, EncodeOptions};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::clock::{Clock, SystemClock};
use crate::hub::{GopView, LiveStream};
use crate::work::{Priority, WorkGate};
use crate::{Error, Result};

/// Which frame of the GOP to picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// The newest keyframe: one decode.
    #[default]
    Keyframe,
    /// The newest frame in presentation order: decode from the keyframe on.
    Latest,
}

impl Precision {
    /// Parses `keyframe` or `latest`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "keyframe" => Some(Precision::Keyframe),
            "latest" => Some(Precision::Latest),
            _ => None,
        }
    }
}

/// Settings of the snapshot service.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Decodes at once, and so decoders alive at most.
    pub workers: usize,
    /// How long a request may wait for a picture (`snapshot_taking_interval_ms`).
    pub interval: Duration,
    /// How many keyframes a request may try before it gives up (`snapshot_taking_attempts`).
    pub attempts: u32,
    /// Pictures kept in the cache.
    pub cache_entries: usize,
    /// Bytes of pictures kept in the cache.
    pub cache_bytes: usize,
    /// Memory all picture work at once may take (`picture_memory_bytes`), as estimated by
    /// [`work_bytes`]; work that would pass it waits, work that alone passes it is refused.
    pub memory: u64,
    /// A stream whose sender can be asked for a keyframe (WHIP) and whose newest keyframe is
    /// older than this is asked for one before an on-demand picture (`keyframe_request_after_ms`).
    pub keyframe_request_after: Duration,
}

/// Default of [`SnapshotConfig::keyframe_request_after`]: browsers send a keyframe only when
/// asked (or every few minutes), so without asking a picture of their stream may be that old.
pub const DEFAULT_KEYFRAME_REQUEST_AFTER: Duration = Duration::from_millis(1000);
/// Of an on-demand picture's time (`interval`), the share it waits for the keyframe it asked
/// for (1/n) before it pictures the newest it has: the rest is left for the decode.
pub const KEYFRAME_ANSWER_SHARE: u32 = 2;

/// How long an on-demand picture may wait by default (WCS's `snapshot_taking_interval_ms`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(3000);
/// How many keyframes an on-demand picture may try by default (WCS's `snapshot_taking_attempts`).
pub const DEFAULT_ATTEMPTS: u32 = 30;
/// Pictures kept in the cache by default.
pub const DEFAULT_CACHE_ENTRIES: usize = 256;
/// Bytes of pictures kept in the cache by default.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Memory for picture work by default: room for several 4K pictures at once, or one of the
/// largest outputs (DCI 8K from a DCI 8K source, about 580 MiB by [`work_bytes`]).
pub const DEFAULT_PICTURE_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;
/// Most frames decoded for one `latest` picture: past it, the newest frame among the first
/// this many of the GOP is pictured (a 32 MiB GOP took over 20 s of CPU per picture).
pub const MAX_LATEST_FRAMES: usize = 250;
/// Most bytes of coded frames decoded for one `latest` picture, likewise.
pub const MAX_LATEST_BYTES: usize = 8 * 1024 * 1024;
/// Decoded pictures a decoder may hold per source pixel (the picture being decoded and its
/// references, 4:2:0 at 1.5 bytes a pixel): the estimate for [`work_bytes`].
const DECODER_BYTES_PER_PIXEL: u64 = 6 * 3 / 2;
/// Bytes per output pixel while encoding: RGB (3), a scaled copy (3) and the encoded image's
/// worst case (2, PNG of noise), for [`work_bytes`].
const OUTPUT_BYTES_PER_PIXEL: u64 = 8;

/// How many frames of a GOP (their sizes in decode order) a `latest` picture decodes: all of
/// them within [`MAX_LATEST_FRAMES`] and [`MAX_LATEST_BYTES`], and at least the keyframe.
fn latest_within(sizes: impl Iterator<Item = usize>) -> usize {
    let mut bytes = 0;
    sizes
        .take(MAX_LATEST_FRAMES)
        .take_while(|n| {
            bytes += n;
            bytes <= MAX_LATEST_BYTES
        })
        .count()
        .max(1)
}

/// The memory one picture's work is charged: its decoder's pictures and its output's buffers.
pub fn work_bytes(source: (u32, u32), output: (u32, u32)) -> u64 {
    let px = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
    px(source) * DECODER_BYTES_PER_PIXEL + px(output) * OUTPUT_BYTES_PER_PIXEL
}

/// The cost of one picture's work, for [`crate::work::HEAVY_WORK_PIXELS`]: pixels decoded
/// (every frame) plus pixels encoded.
pub fn work_pixels(frames: usize, source: (u32, u32), output: (u32, u32)) -> u64 {
    let px = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
    (frames as u64).saturating_mul(px(source)) + px(output)
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            interval: DEFAULT_INTERVAL,
            attempts: DEFAULT_ATTEMPTS,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            memory: DEFAULT_PICTURE_MEMORY_BYTES,
            keyframe_request_after: DEFAULT_KEYFRAME_REQUEST_AFTER,
        }
    }
}

/// What a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotRequest {
    /// Format, size, quality.
    pub options: EncodeOptions,
    /// Which frame.
    pub precision: Precision,
}

/// A picture and which frame it shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The encoded image.
    pub image: Bytes,
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// When the pictured frame arrived.
    pub frame_arrived: SystemTime,
    /// The pictured frame's presentation timestamp (ms, stream clock).
    pub frame_pts_ms: i64,
    /// Whether the pictured frame is a keyframe.
    pub keyframe: bool,
    /// True when this came from the cache without waiting for a decode.
    pub cache_hit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    stream_id: u64,
    frame_seq: u64,
    request: SnapshotRequest,
}

type Cell = Arc<OnceCell<Arc<Snapshot>>>;

/// A small cache of cells, evicting the least recently used when it holds more than `capacity`
/// entries or `max_bytes` of pictures. Hand-written: it is a map and a counter, and the cells
/// double as the single-flight for concurrent requests.
struct Cache {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    cells: HashMap<CacheKey, CacheEntry>,
}

struct CacheEntry {
    cell: Cell,
    used: u64,
    bytes: usize,
}

impl Cache {
    fn new(capacity: usize, max_bytes: usize) -> Cache {
        Cache {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            tick: 0,
            cells: HashMap::new(),
        }
    }

    fn cell(&mut self, key: &CacheKey) -> Cell {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.cells.get_mut(key) {
            entry.used = tick;
            return entry.cell.clone();
        }
        let cell: Cell = Arc::new(OnceCell::new());
        self.cells.insert(
            key.clone(),
            CacheEntry {
                cell: cell.clone(),
                used: tick,
                bytes: 0,
            },
        );
        self.evict(key);
        cell
    }

    /// Records the size of a filled cell, then evicts to stay within the limits.
    ///
    /// Requests always target a stream's newest keyframe or frame, so once a newer frame of a
    /// stream is pictured, pictures of its older frames for the same request are never asked for
    /// again: they go at once instead of holding memory until the LRU reaches them (scheduled
    /// pictures of many streams would otherwise fill the whole byte budget).
    fn filled(&mut self, key: &CacheKey, bytes: usize) {
        if let Some(entry) = self.cells.get_mut(key) {
            self.bytes = self.bytes - entry.bytes + bytes;
            entry.bytes = bytes;
        }
        let mut freed = 0;
        self.cells.retain(|k, e| {
            let stale = k.stream_id == key.stream_id
                && k.request == key.request
                && k.frame_seq < key.frame_seq;
            if stale {
                freed += e.bytes;
            }
            !stale
        });
        self.bytes -= freed;
        self.evict(key);
    }

    fn evict(&mut self, keep: &CacheKey) {
        while self.cells.len() > self.capacity
            || (self.bytes > self.max_bytes && self.cells.len() > 1)
        {
            let oldest = self
                .cells
                .iter()
                .filter(|(k, _)| *k != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(e) = self.cells.remove(&oldest) {
                self.bytes -= e.bytes;
            }
        }
    }
}

/// Makes a decoder for the pool.
pub type DecoderFactory = Arc<dyn Fn() -> media::Result<Box<dyn Decoder>> + Send + Sync>;

/// Counters for metrics and the benchmark.
#[derive(Debug, Default, serde::Serialize)]
pub struct SnapshotCounters {
    /// Requests answered from the cache.
    pub cache_hits: AtomicU64,
    /// Requests that had to make their picture.
    pub cache_misses: AtomicU64,
    /// On-demand pictures answered (made or from the cache).
    pub on_demand: AtomicU64,
    /// Time to decode a picture (its frames up to the target).
    #[serde(skip)]
    pub decode_time: crate::stats::TimeHistogram,
    /// Time to scale and encode a decoded picture.
    #[serde(skip)]
    pub encode_time: crate::stats::TimeHistogram,
    /// Pictures made (decode + encode).
    pub pictures_made: AtomicU64,
    /// Decodes that failed.
    pub decode_errors: AtomicU64,
    /// Decoders created.
    pub decoders_created: AtomicU64,
    /// Decoders released after [`DECODER_IDLE_LIMIT`] unused.
    pub decoders_released: AtomicU64,
    /// `latest` pictures of a GOP longer than [`MAX_LATEST_FRAMES`] / [`MAX_LATEST_BYTES`],
    /// which show the newest frame within those limits.
    pub latest_limited: AtomicU64,
    /// On-demand requests that ran out of time waiting for a decoder or for their decode.
    pub timed_out_busy: AtomicU64,
}

/// A pooled decoder unused this long is released (all but the one used last), with its frame
/// pool and tables: a second decoder is made when two pictures overlap, which a few streams
/// pictured every few seconds do now and then, and it would then hold about one decoded picture
/// of memory for good (1.4 MiB at 720p, 3 MiB at 1080p). Making one again costs a new context
/// and fresh pages for its first picture, once per burst rather than per picture.
pub const DECODER_IDLE_LIMIT: Duration = Duration::from_secs(10);

/// A pooled decoder with the picture it decodes into: both keep their buffers between pictures,
/// so a busy server reuses memory instead of faulting fresh pages in for every picture. A backend
/// that hands over its own frame (libavcodec) never touches the picture, which stays empty.
struct Worker {
    decoder: Box<dyn Decoder>,
    picture: Picture,
    /// When it was last checked in.
    idle_since: Duration,
}

/// Turns live streams into pictures.
pub struct Snapshotter {
    config: SnapshotConfig,
    gate: Arc<WorkGate>,
    decoders: Mutex<Vec<Worker>>,
    factory: DecoderFactory,
    cache: Mutex<Cache>,
    clock: Arc<dyn Clock>,
    /// Counters.
    pub counters: SnapshotCounters,
}

impl Snapshotter {
    /// A service with the fastest decoder compiled in ([`media::decode::default_decoder`]).
    pub fn new(config: SnapshotConfig) -> Arc<Snapshotter> {
        let factory: DecoderFactory = Arc::new(media::decode::default_decoder);
        Self::with_factory(config, factory)
    }

    /// A service with another decoder backend.
    pub fn with_factory(config: SnapshotConfig, factory: DecoderFactory) -> Arc<Snapshotter> {
        Self::build(config, factory, Arc::new(SystemClock::default()))
    }

    /// A service whose timeouts and idle decoders run on `clock`.
    pub fn with_clock(config: SnapshotConfig, clock: Arc<dyn Clock>) -> Arc<Snapshotter> {
        Self::build(config, Arc::new(media::decode::default_decoder), clock)
    }

    fn build(
        config: SnapshotConfig,
        factory: DecoderFactory,
        clock: Arc<dyn Clock>,
    ) -> Arc<Snapshotter> {
        let workers = config.workers.max(1);
        Arc::new(Snapshotter {
            gate: WorkGate::new(workers, config.memory),
            decoders: Mutex::new(Vec::with_capacity(workers)),
            cache: Mutex::new(Cache::new(config.cache_entries, config.cache_bytes)),
            factory,
            config,
            clock,
            counters: SnapshotCounters::default(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &SnapshotConfig {
        &self.config
    }

    /// The work gate's load now (decodes running, bytes, waiters by priority).
    pub fn load(&self) -> crate::work::GateLoad {
        self.gate.load()
    }

    /// Takes a picture of `stream`, waiting up to the interval for a keyframe and trying at most
    /// `attempts` keyframes. Fails with [`Error::Timeout`] when none could be pictured in time.
    pub async fn take(
        self: &Arc<Self>,
        stream: &Arc<LiveStream>,
        request: SnapshotRequest,
    ) -> Result<Snapshot> {
        self.take_asking(stream, request, true).await
    }

    /// [`Snapshotter::take`]; `ask_keyframe: false` never asks the publisher for a fresh
    /// keyframe (viewers refreshing a grid must not cost publishers keyframes).
    pub async fn take_asking(
        self: &Arc<Self>,
        stream: &Arc<LiveStream>,
        request: SnapshotRequest,
        ask_keyframe: bool,
    ) -> Result<Snapshot> {
        // Check the size against the limits before waiting for anything.
        request
            .options
            .check()
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let deadline = self.clock.now() + self.config.interval;
        let mut keyframes = stream.keyframes();
        if ask_keyframe && stream.request_keyframe(self.config.keyframe_request_after) {
            // A sender asked answers within a frame or two and a round trip; without an
            // answer in time, the newest keyframe there is will do.
            let answer_by = self.clock.now() + self.config.interval / KEYFRAME_ANSWER_SHARE;
            tokio::select! {
                _ = keyframes.changed() => {}
                () = self.clock.sleep_until(answer_by) => {
                    debug!(stream = %stream.key, "no keyframe answered the request in time; picturing the newest");
                }
            }
            keyframes.mark_unchanged();
        }
        let mut attempts = 0u32;
        let mut last_error: Option<String> = None;
        let mut tried_seq: Option<u64> = None;
        loop {
            if stream.is_closed() {
                return Err(Error::NotLive(stream.key.to_string()));
            }
            let view = stream.gop(request.precision == Precision::Latest);
            if let Some(view) = view.filter(|v| Some(v.frames[0].seq) != tried_seq) {
                tried_seq = Some(view.frames[0].seq);
                attempts += 1;
                // The whole request, decode included, ends at the deadline. A decode that has
                // begun goes on and fills the cache for the next request.
                let made = tokio::select! {
                    made = self.picture(stream, view, request, Priority::OnDemand, None) => made,
                    () = self.clock.sleep_until(deadline) => {
                        self.counters.timed_out_busy.fetch_add(1, Ordering::Relaxed);
                        let load = self.gate.load();
                        return Err(Error::Timeout(format!(
                            "no picture within {} ms: the picture workers are busy ({} decoding, {} on-demand and {} scheduled waiting)",
                            self.config.interval.as_millis(),
                            load.running,
                            load.waiting_on_demand,
                            load.waiting_scheduled
                        )));
                    }
                };
                match made {
                    Ok(s) => {
                        self.counters.on_demand.fetch_add(1, Ordering::Relaxed);
                        return Ok(s);
                    }
                    Err(Error::BadRequest(e)) => return Err(Error::BadRequest(e)),
                    Err(e) => {
                        self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                        warn!(stream = %stream.key, attempt = attempts, error = %e, "snapshot attempt failed");
                        last_error = Some(e.to_string());
                    }
                }
                if attempts >= self.config.attempts {
                    break;
                }
            }
            // Wait for a (newer) keyframe until the deadline.
            tokio::select! {
                changed = keyframes.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return Err(Error::NotLive(stream.key.to_string())),
                },
                () = self.clock.sleep_until(deadline) => break,
            }
        }
        let why = last_error.or_else(|| stream.problem()).unwrap_or_else(|| {
            "no keyframe arrived (audio only, or the publisher sends no video)".to_string()
        });
        Err(Error::Timeout(why))
    }

    /// Pictures a given view of a stream (what a schedule captured when the picture was due),
    /// through the same cache and work gate as [`Snapshotter::take`]. `superseded`, when it
    /// fires before the decode has begun, abandons the picture with [`Error::Superseded`].
    pub async fn picture(
        self: &Arc<Self>,
        stream: &Arc<LiveStream>,
        mut view: GopView,
        request: SnapshotRequest,
        priority: Priority,
        superseded: Option<&CancellationToken>,
    ) -> Result<Snapshot> {
        match request.precision {
            Precision::Keyframe => view.frames.truncate(1),
            Precision::Latest => {
                let within = latest_within(view.frames.iter().map(|f| f.frame.data.len()));
                if within < view.frames.len() {
                    self.counters.latest_limited.fetch_add(1, Ordering::Relaxed);
                    view.frames.truncate(within);
                }
            }
        }
        // The target: the keyframe, or the newest frame in presentation order.
        let target = view
            .frames
            .iter()
            .max_by_key(|f| (f.frame.pts_ms, f.seq))
            .unwrap_or(&view.frames[0]);
        let key = CacheKey {
            stream_id: stream.id,
            frame_seq: target.seq,
            request,
        };
        let (frame_arrived, frame_pts_ms, keyframe) =
            (target.arrived, target.frame.pts_ms, target.frame.keyframe);
        let cell = self.cache().cell(&key);
        if let Some(s) = cell.get() {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Snapshot {
                cache_hit: true,
                ..(**s).clone()
            });
        }
        let source = (view.params.sps.width, view.params.sps.height);
        let output = request
            .options
            .output_size(source.0, source.1)
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let need = work_bytes(source, output);
        let heavy = work_pixels(view.frames.len(), source, output) > crate::work::HEAVY_WORK_PIXELS;
        let mut waited = true;
        let made = cell
            .get_or_try_init(|| async {
                waited = false;
                self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                let admitted = self.gate.acquire(priority, need, heavy);
                let permit = match superseded {
                    None => admitted.await,
                    Some(token) => tokio::select! {
                        biased;
                        () = token.cancelled() => return Err(Error::Superseded),
                        permit = admitted => permit,
                    },
                }
                .map_err(|too| {
                    Error::BadRequest(format!(
                        "a {}x{} picture of a {}x{} stream needs about {} MiB of picture memory, more than picture_memory_bytes ({} MiB)",
                        output.0,
                        output.1,
                        source.0,
                        source.1,
                        too.need >> 20,
                        too.budget >> 20
                    ))
                })?;
                let options = request.options;
                let me = self.clone();
                let (fill, fill_key, counted) = (cell.clone(), key.clone(), stream.clone());
                // The permit, the decoder and the work go to the blocking thread together: a
                // caller that gives up drops this future, not the decode, which keeps its slot
                // until it ends and then checks its decoder back in. Heavy work runs at a lower
                // CPU priority.
                let made = crate::work::run(heavy, move || {
                    let _permit = permit;
                    let mut worker = me.checkout()?;
                    // Durations for /metrics only: no decision depends on them.
                    let started = std::time::Instant::now();
                    let mut encode_took = Duration::ZERO;
                    let params = &view.params;
                    let frames: Vec<media::Frame> =
                        view.frames.iter().map(|f| f.frame.clone()).collect();
                    let Worker {
                        decoder,
                        picture: scratch,
                        ..
                    } = &mut worker;
                    // Encoded where the decoder left it: with libavcodec, its own frame.
                    let mut made = None;
                    let result = decoder
                        .decode_then(
                            &params.config,
                            &frames,
                            (params.sps.width, params.sps.height),
                            scratch,
                            &mut |mut planes| {
                                let encode_started = std::time::Instant::now();
                                let size = options.output_size(planes.width, planes.height)?;
                                let bytes =
                                    picture::encode_planes(&mut planes, params.sps.colour, &options)?;
                                made = Some((bytes, size));
                                encode_took = encode_started.elapsed();
                                Ok(())
                            },
                        )
                        .and_then(|()| {
                            made.ok_or_else(|| media::Error::Encode("nothing was encoded".into()))
                        })
                        .map_err(|e| match e {
                            media::Error::BadOutputSize { .. }
                            | media::Error::TooManyOutputPixels { .. } => {
                                Error::BadRequest(e.to_string())
                            }
                            e => Error::Internal(e.to_string()),
                        });
                    me.checkin(worker);
                    let (bytes, (width, height)) = result?;
                    me.counters
                        .decode_time
                        .observe(started.elapsed().saturating_sub(encode_took));
                    me.counters.encode_time.observe(encode_took);
                    me.counters.pictures_made.fetch_add(1, Ordering::Relaxed);
                    counted.snapshots.fetch_add(1, Ordering::Relaxed);
                    let snapshot = Arc::new(Snapshot {
                        image: Bytes::from(bytes),
                        width,
                        height,
                        frame_arrived,
                        frame_pts_ms,
                        keyframe,
                        cache_hit: false,
                    });
                    // A request that gave up while the work ran (its deadline passed) no longer
                    // fills the cell: the picture does it here, for the next request, instead of
                    // being lost. While a request still waits, the cell is its to fill.
                    if fill.set(snapshot.clone()).is_ok() {
                        me.cache().filled(&fill_key, snapshot.image.len());
                    }
                    Ok::<_, Error>(snapshot)
                })
                .await
                .map_err(Error::Internal)??;
                debug!(stream = %stream.key, bytes = made.image.len(), "picture made");
                Ok::<_, Error>(made)
            })
            .await?;
        if waited {
            // Another request made it while this one waited: a hit that shared the decode.
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Snapshot {
                cache_hit: true,
                ..(**made).clone()
            });
        }
        self.cache().filled(&key, made.image.len());
        Ok((**made).clone())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The decoder checked in last (its buffers are the most likely to be resident), or a new
    /// one.
    fn checkout(&self) -> Result<Worker> {
        let (worker, released) = {
            let mut pool = self.decoders.lock().unwrap_or_else(|p| p.into_inner());
            let worker = pool.pop();
            (worker, self.release_idle(&mut pool, self.clock.now()))
        };
        drop(released);
        if let Some(worker) = worker {
            return Ok(worker);
        }
        self.counters
            .decoders_created
            .fetch_add(1, Ordering::Relaxed);
        let decoder = (self.factory)().map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Worker {
            decoder,
            picture: Picture::empty(),
            idle_since: self.clock.now(),
        })
    }

    fn checkin(&self, mut worker: Worker) {
        let now = self.clock.now();
        worker.idle_since = now;
        let released = {
            let mut pool = self.decoders.lock().unwrap_or_else(|p| p.into_inner());
            pool.push(worker);
            self.release_idle(&mut pool, now)
        };
        // Freed outside the lock: a libavcodec context takes a moment to tear down.
        drop(released);
    }

    /// Takes out of `pool` the decoders idle for longer than [`DECODER_IDLE_LIMIT`], except the
    /// one checked in last. The pool is a stack, so they are at its bottom.
    fn release_idle(&self, pool: &mut Vec<Worker>, now: Duration) -> Vec<Worker> {
        let keep_from = pool[..pool.len().saturating_sub(1)]
            .iter()
            .position(|w| now.saturating_sub(w.idle_since) <= DECODER_IDLE_LIMIT)
            .unwrap_or(pool.len().saturating_sub(1));
        let released: Vec<Worker> = pool.drain(..keep_from).collect();
        if !released.is_empty() {
            self.counters
                .decoders_released
                .fetch_add(released.len() as u64, Ordering::Relaxed);
            debug!(released = released.len(), "idle decoders released");
        }
        released
    }

    /// Decoders in the pool now (not counting those at work).
    #[cfg(test)]
    fn pooled_decoders(&self) -> usize {
        self.decoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::picture::ImageFormat;

    fn key_of(stream_id: u64, seq: u64) -> CacheKey {
        CacheKey {
            stream_id,
            frame_seq: seq,
            request: SnapshotRequest {
                options: EncodeOptions::new(ImageFormat::Jpeg),
                precision: Precision::Keyframe,
            },
        }
    }

    /// Different streams, so that only the LRU evicts.
    fn key(n: u64) -> CacheKey {
        key_of(n, 0)
    }

    /// Idle decoders past the limit are released, oldest first, all but the one used last; a
    /// busy pool keeps them all.
    #[test]
    fn decoders_idle_past_the_limit_are_released_but_the_last_one_used() {
        let clock = Arc::new(crate::clock::ManualClock::default());
        clock.advance(Duration::from_secs(7200));
        let snap = Snapshotter::with_clock(
            SnapshotConfig {
                workers: 3,
                ..SnapshotConfig::default()
            },
            clock.clone(),
        );
        let workers: Vec<Worker> = (0..3).map(|_| snap.checkout().unwrap()).collect();
        for w in workers {
            snap.checkin(w);
        }
        assert_eq!(snap.pooled_decoders(), 3);
        assert_eq!(snap.counters.decoders_created.load(Ordering::Relaxed), 3);
        // Checked out and in again at once: nothing is idle.
        let w = snap.checkout().unwrap();
        snap.checkin(w);
        assert_eq!(snap.pooled_decoders(), 3);
        assert_eq!(snap.counters.decoders_released.load(Ordering::Relaxed), 0);

        // The bottom one has been idle past the limit, the middle one just under it.
        let ago = |d: Duration| clock.now() - d;
        {
            let mut pool = snap.decoders.lock().unwrap();
            pool[0].idle_since = ago(DECODER_IDLE_LIMIT + Duration::from_secs(1));
            pool[1].idle_since = ago(DECODER_IDLE_LIMIT - Duration::from_secs(1));
        }
        let w = snap.checkout().unwrap();
        assert_eq!(snap.pooled_decoders(), 1, "the idle one went at checkout");
        snap.checkin(w);
        assert_eq!(snap.pooled_decoders(), 2);
        assert_eq!(snap.counters.decoders_released.load(Ordering::Relaxed), 1);

        // Everything idle for an hour: only the last one used stays.
        {
            let mut pool = snap.decoders.lock().unwrap();
            for w in pool.iter_mut() {
                w.idle_since = ago(Duration::from_secs(3600));
            }
        }
        let w = snap.checkout().unwrap();
        snap.checkin(w);
        assert_eq!(snap.pooled_decoders(), 1);
        assert_eq!(snap.counters.decoders_released.load(Ordering::Relaxed), 2);
        let w = snap.checkout().unwrap();
        assert_eq!(snap.pooled_decoders(), 0);
        snap.checkin(w);
        assert_eq!(snap.counters.decoders_created.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn latest_decodes_within_the_frame_and_byte_limits() {
        let n = |sizes: Vec<usize>| latest_within(sizes.into_iter());
        assert_eq!(n(vec![1000; 25]), 25);
        assert_eq!(n(vec![1000; MAX_LATEST_FRAMES + 50]), MAX_LATEST_FRAMES);
        // 2 MiB frames: four fit in 8 MiB, the fifth would pass it.
        assert_eq!(n(vec![2 << 20; 10]), 4);
        // A keyframe alone over the byte limit is still decoded (it was buffered).
        assert_eq!(n(vec![MAX_LATEST_BYTES + 1, 10]), 1);
    }

    #[test]
    fn work_bytes_charges_decoder_and_output() {
        // 720p to 720p: about 15 MiB; DCI 8K to DCI 8K: about 580 MiB, inside the default.
        let hd = work_bytes((1280, 720), (1280, 720));
        assert!((14 << 20..16 << 20).contains(&hd), "{hd}");
        let dci8k = work_bytes((8192, 4352), (8192, 4352));
        assert!(
            dci8k < DEFAULT_PICTURE_MEMORY_BYTES && dci8k > 500 << 20,
            "{dci8k}"
        );
    }

    #[test]
    fn cache_evicts_least_recently_used_by_count_and_bytes() {
        let mut c = Cache::new(2, 1000);
        let a = c.cell(&key(1));
        c.cell(&key(2));
        assert!(Arc::ptr_eq(&a, &c.cell(&key(1))), "same key, same cell");
        c.cell(&key(3)); // evicts 2, the least recently used
        assert!(c.cells.contains_key(&key(1)) && !c.cells.contains_key(&key(2)));
        c.filled(&key(1), 600);
        c.filled(&key(3), 600); // 1200 bytes > 1000: evicts 1
        assert!(!c.cells.contains_key(&key(1)) && c.cells.contains_key(&key(3)));
        assert_eq!(c.bytes, 600);
    }

    #[test]
    fn a_newer_frame_of_a_stream_replaces_its_older_pictures() {
        let mut c = Cache::new(100, 1 << 20);
        let mut png = key_of(7, 10);
        png.request.options.format = ImageFormat::Png;
        for k in [key_of(7, 10), key_of(7, 20), key_of(8, 10), png.clone()] {
            c.cell(&k);
            c.filled(&k, 100);
        }
        // Stream 7's frame 10 JPEG went when frame 20 was filled; stream 8 and the PNG of
        // frame 10 (another request) stay.
        assert!(!c.cells.contains_key(&key_of(7, 10)));
        assert!(c.cells.contains_key(&key_of(7, 20)) && c.cells.contains_key(&key_of(8, 10)));
        assert!(c.cells.contains_key(&png));
        assert_eq!(c.bytes, 300);
    }
}
