//! The inputs, made with ffmpeg (libx264) in the run's temp dir:
//!
//! - the camera-like stream per resolution: 30 fps, keyframe every 2 s, High profile with
//!   B-frames, testsrc2 + temporal noise (not trivially compressible), 12 s, FLV; 720p at
//!   ~2.5 Mbit/s and 1080p at ~5 Mbit/s, like real cameras. The encoder's first two GOPs are cut
//!   off: x264's rate control gives its first keyframe about twice the bits of a steady one at
//!   1080p and the second fewer, and a looped clip would repeat that start-up every loop, which
//!   a camera that has been on for a while does not;
//! - for the saturation scenario, an all-intra variant (every frame an IDR) whose frames are
//!   about the size of the camera stream's keyframe, so that any frame a schedule picks is one
//!   keyframe decode of the same cost (see `saturation`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::flv::{self, VideoTag};

/// Frames per second of every input.
pub const FPS: u32 = 30;
/// Frames between keyframes of the camera-like input (2 s).
pub const GOP_FRAMES: u32 = 60;
/// Seconds of the camera-like input (publishers loop it). Not a multiple of the periodic
/// scenario's 5 s interval: over a minute every stream pictures each of the clip's keyframes
/// in turn, not the same two.
const INPUT_SECONDS: u32 = 12;
/// GOPs encoded before the camera-like input and cut off (the encoder's start-up).
const WARMUP_GOPS: u32 = 2;
/// Seconds of the all-intra input (publishers loop it).
const INTRA_SECONDS: u32 = 4;
/// Noise added to testsrc2, changing every frame.
const NOISE_FILTER: &str = "noise=alls=12:allf=t+u,format=yuv420p";

/// A picture size of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    #[value(name = "720p")]
    P720,
    #[value(name = "1080p")]
    P1080,
}

impl Resolution {
    pub fn name(self) -> &'static str {
        match self {
            Resolution::P720 => "720p",
            Resolution::P1080 => "1080p",
        }
    }

    pub fn size(self) -> (u32, u32) {
        match self {
            Resolution::P720 => (1280, 720),
            Resolution::P1080 => (1920, 1080),
        }
    }

    /// Average bitrate of the camera-like input, kbit/s.
    pub fn kbps(self) -> u32 {
        match self {
            Resolution::P720 => 2500,
            Resolution::P1080 => 5000,
        }
    }
}

/// A generated input, read into memory.
pub struct Input {
    pub path: PathBuf,
    pub tags: Arc<Vec<VideoTag>>,
    /// One line for the report.
    pub info: String,
    /// Keyframes in the file.
    pub keyframes: usize,
    /// Mean size of the keyframes.
    pub mean_keyframe_bytes: usize,
}

/// Makes the camera-like input for `res` at `out` and reads it.
pub fn camera(res: Resolution, out: &Path) -> Result<Input, String> {
    let kbps = res.kbps();
    let rate = [
        "-b:v".to_string(),
        format!("{kbps}k"),
        "-maxrate".into(),
        format!("{}k", kbps * 6 / 5),
        "-bufsize".into(),
        format!("{}k", kbps * 2),
    ];
    let gop = GOP_FRAMES.to_string();
    let x264 = [
        "-bf",
        "2",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
    ];
    let encoded = out.with_extension("x264.flv");
    ffmpeg(
        res,
        INPUT_SECONDS + WARMUP_GOPS * GOP_FRAMES / FPS,
        &x264,
        &rate,
        &encoded,
    )?;
    let file = std::fs::read(&encoded).map_err(|e| format!("{}: {e}", encoded.display()))?;
    let steady = flv::from_keyframe(&flv::video_tags(&file)?, WARMUP_GOPS as usize)?;
    std::fs::write(out, flv::write(&steady)).map_err(|e| format!("{}: {e}", out.display()))?;
    load(
        out,
        &format!(
            "GOP {} s, B-frames, the encoder's first {WARMUP_GOPS} GOPs cut off",
            GOP_FRAMES / FPS
        ),
    )
}

/// Makes the all-intra input for `res` at `out`, its frames about `frame_bytes` each (the
/// camera input's mean keyframe), and reads it. Fails unless every frame is a keyframe.
pub fn all_intra(res: Resolution, frame_bytes: usize, out: &Path) -> Result<Input, String> {
    let kbps = frame_bytes as u64 * 8 * u64::from(FPS) / 1000;
    let rate = [
        "-b:v".to_string(),
        format!("{kbps}k"),
        "-maxrate".into(),
        format!("{kbps}k"),
        // Two frames of buffer: every frame gets about the same share.
        "-bufsize".into(),
        format!("{}k", kbps * 2 / u64::from(FPS)),
    ];
    let x264 = [
        "-bf",
        "0",
        "-g",
        "1",
        "-keyint_min",
        "1",
        "-sc_threshold",
        "0",
    ];
    ffmpeg(res, INTRA_SECONDS, &x264, &rate, out)?;
    let input = load(out, "all-intra (every frame an IDR)")?;
    let (frames, keys) = count(&input.tags);
    if frames != keys {
        return Err(format!(
            "{}: only {keys} of {frames} frames are keyframes",
            out.display()
        ));
    }
    Ok(input)
}

fn ffmpeg(
    res: Resolution,
    seconds: u32,
    x264: &[&str],
    rate: &[String],
    out: &Path,
) -> Result<(), String> {
    let (w, h) = res.size();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .arg("-i")
        .arg(format!("testsrc2=size={w}x{h}:rate={FPS}"))
        .args(["-t", &seconds.to_string(), "-vf", NOISE_FILTER])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .args(x264)
        .args(rate)
        .args(["-an", "-f", "flv"])
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !status.success() {
        return Err(format!("ffmpeg could not make {}: {status}", out.display()));
    }
    Ok(())
}

fn count(tags: &[VideoTag]) -> (usize, usize) {
    let frames = tags.iter().filter(|t| t.is_frame()).count();
    let keys = tags.iter().filter(|t| t.is_keyframe()).count();
    (frames, keys)
}

fn load(path: &Path, structure: &str) -> Result<Input, String> {
    let file = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tags = flv::video_tags(&file)?;
    let (record, _) = flv::first_keyframe(&tags)?;
    let config = media::avc::AvcConfig::parse(&record)
        .map_err(|e| format!("{}: AVC config: {e}", path.display()))?;
    let sps = config
        .sps
        .first()
        .ok_or_else(|| format!("{}: no SPS", path.display()))?;
    let sps =
        media::sps::SpsInfo::parse(sps).map_err(|e| format!("{}: SPS: {e}", path.display()))?;
    let (frames, keys) = count(&tags);
    let key_bytes: Vec<usize> = tags
        .iter()
        .filter(|t| t.is_keyframe())
        .map(|t| t.payload().len())
        .collect();
    let mean_keyframe_bytes = key_bytes.iter().sum::<usize>() / key_bytes.len().max(1);
    let last = tags.iter().filter(|t| t.is_frame()).map(|t| t.ts_ms).max();
    let dur = last.unwrap_or(0) as f64 / 1000.0 + 1.0 / f64::from(FPS);
    let info = format!(
        "{}x{} H.264 {}, {FPS} fps, {structure}, testsrc2+noise, {dur:.1} s, {frames} frames, {keys} keyframes, {:.2} Mbit/s, keyframes {:.0} KiB mean ({:.0} to {:.0})",
        sps.width,
        sps.height,
        sps.profile_name(),
        file.len() as f64 * 8.0 / dur / 1e6,
        mean_keyframe_bytes as f64 / 1024.0,
        key_bytes.iter().min().copied().unwrap_or(0) as f64 / 1024.0,
        key_bytes.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
    );
    Ok(Input {
        path: path.to_path_buf(),
        keyframes: keys,
        mean_keyframe_bytes,
        tags: Arc::new(tags),
        info,
    })
}
