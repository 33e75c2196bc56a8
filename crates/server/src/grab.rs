//! `livesnap grab`: one picture of a live `rtmp://` stream, or of a local FLV or raw H.264 /
//! H.265 (Annex B) file.
//!
//! Either way the video goes into a one-stream hub and is pictured by the same snapshot service
//! as a live stream. A file is replayed into the hub as if it were published: `keyframe`
//! pictures its last keyframe, `latest` its last frame in presentation order (what a live
//! request at the end of the file would get). A URL is pulled through the opener pull jobs use
//! ([`crate::pull::PullOpener`], ingest's client behind core's `SourceOpener`) until its first
//! keyframe, at most `--timeout-s`: `keyframe` pictures that keyframe, `latest` the newest frame
//! by then.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use ingest::flv::{self, Fed, VideoFeed};
use livesnap_core::clock::{Clock, SystemClock};
use livesnap_core::hub::{Hub, HubConfig, HubWriter, LiveStream};
use livesnap_core::snapshot::{Precision, Snapshot, SnapshotConfig, SnapshotRequest, Snapshotter};
use livesnap_core::source::{Connected, SourceError, SourceOpener, SourceRequest};
use media::picture::{EncodeOptions, ImageFormat, DEFAULT_JPEG_QUALITY};
use media::stream::{
    PublishRefused, PublisherInfo, StreamKey, StreamSink, StreamWriter, DEFAULT_DOMAIN,
};
use media::{avc, hevc, Frame, VideoConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pull::{url_scheme, PullOpener};

/// Largest input file read.
pub const MAX_INPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// How long a URL grab waits for the first keyframe by default, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 10;
/// The longest `--timeout-s` accepted.
pub const MAX_TIMEOUT_S: u64 = 3600;
/// Keyframes a URL grab tries when one cannot be pictured (a broken one), within the timeout.
pub const URL_ATTEMPTS: u32 = 3;

/// Flags of `livesnap grab`.
#[derive(Debug, Args)]
pub struct GrabArgs {
    /// Input: rtmp://HOST[:PORT]/APP/STREAM, a local .flv, or a raw H.264 or H.265 Annex B
    /// file (H.265 needs the ffmpeg feature).
    pub input: PathBuf,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// jpg or png [default: from the output's extension, else jpg].
    #[arg(long)]
    pub format: Option<String>,
    /// Output width (alone: keeps the aspect ratio).
    #[arg(long)]
    pub width: Option<u32>,
    /// Output height (alone: keeps the aspect ratio).
    #[arg(long)]
    pub height: Option<u32>,
    /// JPEG quality 1-100.
    #[arg(long, default_value_t = DEFAULT_JPEG_QUALITY)]
    pub quality: u8,
    /// keyframe (a file's last keyframe, a URL's first) or latest (the newest frame).
    #[arg(long, default_value = "keyframe")]
    pub precision: String,
    /// For a URL: how many seconds to wait for the first keyframe (1-3600).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S)]
    pub timeout_s: u64,
}

fn feed_flv(data: &Bytes, writer: &mut dyn StreamWriter) -> Result<usize, String> {
    let mut feed = VideoFeed::default();
    let mut frames = 0;
    for tag in flv::read_file(data).map_err(|e| e.to_string())? {
        if tag.tag_type != 9 {
            continue;
        }
        match feed
            .feed(i64::from(tag.timestamp_ms), &tag.body, writer)
            .map_err(|e| e.to_string())?
        {
            Fed::Frame => frames += 1,
            Fed::Unsupported(name) => return Err(format!("unsupported video codec {name}")),
            _ => {}
        }
    }
    Ok(frames)
}

fn feed_annexb(data: &[u8], writer: &mut dyn StreamWriter) -> Result<usize, String> {
    let (config, frames): (VideoConfig, _) = if hevc::looks_like_annexb_hevc(data) {
        let (c, f) = hevc::annexb_to_frames(data).map_err(|e| e.to_string())?;
        (c.into(), f)
    } else {
        let (c, f) = avc::annexb_to_frames(data).map_err(|e| e.to_string())?;
        (c.into(), f)
    };
    writer.config(config);
    let n = frames.len();
    for f in frames {
        writer.frame(f);
    }
    Ok(n)
}

/// Runs `grab`; the error is the message for the user.
pub async fn run(args: GrabArgs) -> Result<(), String> {
    let format = match args.format.as_deref() {
        Some(f) => ImageFormat::parse(f)
            .ok_or_else(|| format!("--format must be jpg or png, got {f:?}"))?,
        None => args
            .output
            .extension()
            .and_then(|e| e.to_str())
            .and_then(ImageFormat::parse)
            .unwrap_or(ImageFormat::Jpeg),
    };
    let precision = Precision::parse(&args.precision).ok_or_else(|| {
        format!(
            "--precision must be keyframe or latest, got {:?}",
            args.precision
        )
    })?;
    if !(1..=100).contains(&args.quality) {
        return Err("--quality must be 1..=100".into());
    }
    let request = SnapshotRequest {
        options: EncodeOptions {
            format,
            width: args.width,
            height: args.height,
            quality: args.quality,
        },
        precision,
    };
    // Anything of the form scheme://... is a URL; a file is named without one.
    let url = args
        .input
        .to_str()
        .filter(|s| url_scheme(s).is_some() || s.contains("://"));
    let snap = match url {
        Some(url) => grab_url(url, &args, request).await?,
        None => grab_file(&args.input, request).await?,
    };
    std::fs::write(&args.output, &snap.image)
        .map_err(|e| format!("{}: {e}", args.output.display()))?;
    eprintln!(
        "livesnap grab: {}x{} {} from the frame at pts {} ms ({}), {} bytes -> {}",
        snap.width,
        snap.height,
        format.extension(),
        snap.frame_pts_ms,
        if snap.keyframe {
            "keyframe"
        } else {
            "not a keyframe"
        },
        snap.image.len(),
        args.output.display()
    );
    Ok(())
}

/// A one-stream hub: a grab pictures one stream.
fn one_stream_hub(clock: Arc<dyn Clock>) -> Arc<Hub> {
    Hub::with_clock(
        HubConfig {
            max_streams: 1,
            ..HubConfig::default()
        },
        clock,
    )
}

/// The name a grabbed stream has in its hub (it is never shown).
fn grab_key(stream: &str) -> Result<StreamKey, String> {
    StreamKey::new(DEFAULT_DOMAIN, "grab", stream).map_err(|e| e.to_string())
}

/// How long the picture of a file may take: its one keyframe is there already, so this bounds
/// only the decode and encode (the largest output of a DCI 8K source takes seconds).
const FILE_PICTURE_TIMEOUT: Duration = Duration::from_secs(120);

/// Pictures `stream` with the snapshot service, waiting at most `interval` and trying at most
/// `attempts` keyframes: the one path of files and URLs.
async fn picture(
    clock: Arc<dyn Clock>,
    stream: &Arc<LiveStream>,
    request: SnapshotRequest,
    interval: Duration,
    attempts: u32,
) -> Result<Snapshot, String> {
    let snapshots = Snapshotter::with_clock(
        SnapshotConfig {
            workers: 1,
            interval,
            attempts,
            cache_entries: 1,
            cache_bytes: usize::MAX,
            // One picture, whatever its size: grab is the only work.
            memory: u64::MAX,
            keyframe_request_after: livesnap_core::snapshot::DEFAULT_KEYFRAME_REQUEST_AFTER,
        },
        clock,
    );
    snapshots
        .take(stream, request)
        .await
        .map_err(|e| e.to_string())
}

async fn grab_file(input: &Path, request: SnapshotRequest) -> Result<Snapshot, String> {
    let meta = std::fs::metadata(input).map_err(|e| format!("{}: {e}", input.display()))?;
    if meta.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "{}: larger than {} bytes",
            input.display(),
            MAX_INPUT_BYTES
        ));
    }
    let data = Bytes::from(std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?);

    // A whole file is one GOP-buffer's worth of stream at a time; no byte limit is needed
    // beyond the file size check above.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let hub = Hub::with_clock(
        HubConfig {
            max_streams: 1,
            max_gop_bytes: usize::MAX,
            ..HubConfig::default()
        },
        clock.clone(),
    );
    let info = PublisherInfo {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        protocol: "file",
    };
    let mut writer = hub
        .start(grab_key("file")?, info)
        .map_err(|e| e.to_string())?;
    let frames = if data.starts_with(b"FLV") {
        feed_flv(&data, &mut writer)?
    } else {
        feed_annexb(&data, &mut writer)?
    };
    let stream = writer.stream().clone();
    if let Some(problem) = stream.problem() {
        return Err(problem);
    }
    if stream.gop(false).is_none() {
        return Err(format!(
            "{}: no decodable H.264 keyframe found ({frames} frames read)",
            input.display()
        ));
    }
    // The whole file is in the hub: nothing more will come, so one attempt, whose decode may
    // take as long as a large picture takes.
    let snap = picture(clock, &stream, request, FILE_PICTURE_TIMEOUT, 1).await;
    drop(writer);
    snap
}

async fn grab_url(
    url: &str,
    args: &GrabArgs,
    request: SnapshotRequest,
) -> Result<Snapshot, String> {
    if !(1..=MAX_TIMEOUT_S).contains(&args.timeout_s) {
        return Err(format!("--timeout-s must be 1..={MAX_TIMEOUT_S}"));
    }
    let timeout = Duration::from_secs(args.timeout_s);
    crate::pull::check_url(url).map_err(|e| e.to_string())?;
    // Errors name the URL without its password.
    let shown = crate::pull::shown(url);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let deadline = clock.now() + timeout;
    let sink = Arc::new(HeldSink::new(one_stream_hub(clock.clone())));
    let mut streams = sink.streams();
    let opener = PullOpener::default();
    let mut pull = opener.open(SourceRequest {
        url: url.to_string(),
        sink: sink.clone(),
        key: grab_key("url")?,
        cancel: CancellationToken::new(),
        connected: Connected::ignored(),
    });
    let mut expired = clock.sleep_until(deadline);
    let mut ended: Option<Result<(), SourceError>> = None;
    let stream = loop {
        let current = streams.borrow_and_update().clone();
        // Subscribed before looking, so that a keyframe arriving in between still wakes us.
        let mut keyframes = current.as_ref().map(|s| s.keyframes());
        if let Some(s) = &current {
            if s.gop(false).is_some() {
                break s.clone();
            }
        }
        if let Some(result) = &ended {
            return Err(ended_early(&shown, result, current.as_deref()));
        }
        tokio::select! {
            biased;
            result = &mut pull, if ended.is_none() => ended = Some(result),
            _ = streams.changed() => {}
            _ = keyframe(&mut keyframes) => {}
            () = &mut expired => return Err(never_came(&shown, timeout, current.as_deref())),
        }
    };
    // The pull goes on while the picture is made: a keyframe that cannot be pictured is
    // followed by the next one, until the deadline.
    let left = deadline.saturating_sub(clock.now());
    let take = picture(
        clock,
        &stream,
        request,
        left.max(Duration::from_millis(1)),
        URL_ATTEMPTS,
    );
    tokio::pin!(take);
    loop {
        tokio::select! {
            biased;
            snap = &mut take => return snap.map_err(|e| format!("{shown}: {e}")),
            result = &mut pull, if ended.is_none() => ended = Some(result),
        }
    }
}

/// Resolves when a keyframe arrives on `keyframes` (never without a stream, or once it closed).
async fn keyframe(keyframes: &mut Option<watch::Receiver<u64>>) {
    let changed = match keyframes {
        Some(rx) => rx.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// The error for a URL whose first keyframe did not come in time, naming what never came.
fn never_came(url: &str, timeout: Duration, stream: Option<&LiveStream>) -> String {
    let secs = timeout.as_secs();
    match stream {
        None => {
            format!("{url}: the server did not play the stream within {secs} s (see --timeout-s)")
        }
        Some(s) => {
            let frames = s.stats().frames;
            match s.problem() {
                Some(problem) => format!("{url}: no picture: {problem}"),
                None if frames == 0 => format!(
                    "{url}: the server plays the stream but sent no video within {secs} s (see --timeout-s)"
                ),
                None => format!(
                    "{url}: no keyframe within {secs} s ({frames} frames of video came; see --timeout-s)"
                ),
            }
        }
    }
}

/// The error for a URL whose pull stopped before its first keyframe.
fn ended_early(url: &str, result: &Result<(), SourceError>, stream: Option<&LiveStream>) -> String {
    match (result, stream) {
        (Err(e), _) => format!("{url}: {e}"),
        (Ok(()), Some(s)) => match s.problem() {
            Some(problem) => format!("{url}: no picture: {problem}"),
            None => format!(
                "{url}: the stream ended before a keyframe ({} frames of video came)",
                s.stats().frames
            ),
        },
        (Ok(()), None) => format!("{url}: the server closed the connection before playing"),
    }
}

/// The sink of a URL grab. The pull publishes into the hub through it, and it keeps the
/// stream's writer: when the source ends (a short clip, played faster than real time), the
/// stream stays in the hub until it is pictured, as a file's stream does.
struct HeldSink {
    hub: Arc<Hub>,
    writer: Mutex<Option<Arc<Mutex<HubWriter>>>>,
    stream: watch::Sender<Option<Arc<LiveStream>>>,
}

impl HeldSink {
    fn new(hub: Arc<Hub>) -> HeldSink {
        HeldSink {
            hub,
            writer: Mutex::new(None),
            stream: watch::channel(None).0,
        }
    }

    /// The stream, once published.
    fn streams(&self) -> watch::Receiver<Option<Arc<LiveStream>>> {
        self.stream.subscribe()
    }
}

impl StreamSink for HeldSink {
    fn publish(
        &self,
        key: StreamKey,
        info: PublisherInfo,
    ) -> Result<Box<dyn StreamWriter>, PublishRefused> {
        let writer = self.hub.start(key, info)?;
        let stream = writer.stream().clone();
        let shared = Arc::new(Mutex::new(writer));
        *lock(&self.writer) = Some(shared.clone());
        self.stream.send_replace(Some(stream));
        Ok(Box::new(Forward(shared)))
    }
}

/// A writer that hands everything to the held one, and leaves it in place when dropped.
struct Forward(Arc<Mutex<HubWriter>>);

impl StreamWriter for Forward {
    fn config(&mut self, config: VideoConfig) {
        lock(&self.0).config(config);
    }
    fn frame(&mut self, frame: Frame) {
        lock(&self.0).frame(frame);
    }
    fn unsupported(&mut self, name: &str) {
        lock(&self.0).unsupported(name);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it leaves a writer that is only dropped afterwards.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
