//! `livesnap grab`: one picture from a local FLV or raw H.264 / H.265 (Annex B) file.
//!
//! The file is replayed into a hub as if it were published, then pictured through the same
//! snapshot service as a live stream: `keyframe` pictures the file's last keyframe, `latest` its
//! last frame in presentation order (what a live request at the end of the file would get).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use ingest::flv::{self, Fed, VideoFeed};
use livesnap_core::hub::{Hub, HubConfig};
use livesnap_core::snapshot::{Precision, SnapshotConfig, SnapshotRequest, Snapshotter};
use media::picture::{EncodeOptions, ImageFormat, DEFAULT_JPEG_QUALITY};
use media::stream::{PublisherInfo, StreamKey, StreamWriter};
use media::{avc, hevc, VideoConfig};

/// Largest input file read.
pub const MAX_INPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Flags of `livesnap grab`.
#[derive(Debug, Args)]
pub struct GrabArgs {
    /// Input: a local .flv, or a raw H.264 or H.265 Annex B file (H.265 needs the ffmpeg feature).
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
    /// keyframe (the last keyframe) or latest (the last frame).
    #[arg(long, default_value = "keyframe")]
    pub precision: String,
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
    let meta =
        std::fs::metadata(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    if meta.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "{}: larger than {} bytes",
            args.input.display(),
            MAX_INPUT_BYTES
        ));
    }
    let data = Bytes::from(
        std::fs::read(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?,
    );

    // A whole file is one GOP-buffer's worth of stream at a time; no byte limit is needed
    // beyond the file size check above.
    let hub = Hub::new(HubConfig {
        max_streams: 1,
        max_gop_bytes: usize::MAX,
    });
    let key = StreamKey::new("_default", "grab", "file").map_err(|e| e.to_string())?;
    let info = PublisherInfo {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        protocol: "file",
    };
    let mut writer = hub.start(key, info).map_err(|e| e.to_string())?;
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
            args.input.display()
        ));
    }
    let snapshots = Snapshotter::new(SnapshotConfig {
        workers: 1,
        interval: Duration::from_millis(1),
        attempts: 1,
        cache_entries: 1,
        cache_bytes: usize::MAX,
    });
    let request = SnapshotRequest {
        options: EncodeOptions {
            format,
            width: args.width,
            height: args.height,
            quality: args.quality,
        },
        precision,
    };
    let snap = snapshots
        .take(&stream, request)
        .await
        .map_err(|e| e.to_string())?;
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
    drop(writer);
    Ok(())
}
