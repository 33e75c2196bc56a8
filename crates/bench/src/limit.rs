//! The limit: the decoder's own time for one keyframe plus the encoder's own time for one
//! picture, measured in this process with livesnap-media (no server, no I/O), on the same
//! machine and input as the server's scenarios. `cores / (decode + encode)` is the most pictures
//! per second any server built on these libraries could make here.
//!
//! Run while nothing else of the benchmark runs (no server, no publishers, no ffmpeg).

use std::hint::black_box;
use std::time::{Duration, Instant};

use media::avc::AvcConfig;
use media::decode::Decoder;
use media::picture::{EncodeOptions, ImageFormat};
use media::sps::SpsInfo;
use media::VideoConfig;

use crate::flv::{self, VideoTag};
use crate::stats::median;

/// Untimed runs first (caches, lazily allocated buffers).
const WARMUP: usize = 2;
/// Timed runs; the median is reported.
const ITERATIONS: usize = 15;

/// What one keyframe costs the libraries.
#[derive(Clone, Debug)]
pub struct Limit {
    pub width: u32,
    pub height: u32,
    /// Median wall time of one keyframe decode (a reused decoder, as the server pools them).
    pub decode_ms: f64,
    /// Median wall time of one full-size JPEG (quality 85) from the decoded picture.
    pub encode_ms: f64,
    /// Median process CPU time per decode: above `decode_ms` when the backend uses threads,
    /// below it when other processes took the core meanwhile.
    pub decode_cpu_ms: f64,
    /// Median process CPU time per encode.
    pub encode_cpu_ms: f64,
    /// Compressed size of the keyframe.
    pub keyframe_bytes: usize,
    pub jpeg_bytes: usize,
    pub iterations: usize,
    /// The decoder backend's name.
    pub decoder: &'static str,
}

impl Limit {
    /// The decoder's own time: the lower of wall and CPU time. On a quiet machine with a
    /// single-threaded backend both agree; a backend using threads has more CPU than wall time
    /// (wall counts, as specified); when other processes take the core, wall time grows and CPU
    /// time does not (the benchmark machine is shared).
    pub fn decode_own_ms(&self) -> f64 {
        self.decode_ms.min(self.decode_cpu_ms)
    }

    /// The encoder's own time, as [`Limit::decode_own_ms`].
    pub fn encode_own_ms(&self) -> f64 {
        self.encode_ms.min(self.encode_cpu_ms)
    }

    /// Decode + encode, own times.
    pub fn sum_ms(&self) -> f64 {
        self.decode_own_ms() + self.encode_own_ms()
    }

    /// `cores / (decode + encode)`: pictures per second with every core decoding and encoding.
    pub fn pictures_per_s(&self, cores: usize) -> f64 {
        cores as f64 * 1000.0 / self.sum_ms()
    }

    /// The same from CPU time, the true bound when a backend spreads one picture over threads.
    pub fn cpu_pictures_per_s(&self, cores: usize) -> f64 {
        cores as f64 * 1000.0 / (self.decode_cpu_ms + self.encode_cpu_ms)
    }
}

/// The decoder the server uses: the fastest backend compiled in.
fn new_decoder() -> media::Result<Box<dyn Decoder>> {
    media::decode::default_decoder()
}

/// Measures the `nth` keyframe of `tags` (with the sequence header before it).
pub fn measure(tags: &[VideoTag], nth: usize) -> Result<Limit, String> {
    let (record, frame) = flv::keyframe(tags, nth)?;
    let keyframe_bytes = frame.data.len();
    let avc = AvcConfig::parse(&record).map_err(|e| format!("AVC config: {e}"))?;
    let sps = SpsInfo::parse(avc.sps.first().ok_or("no SPS in the AVC config")?)
        .map_err(|e| format!("SPS: {e}"))?;
    let config = VideoConfig::from(avc);
    let display = (sps.width, sps.height);
    let mut decoder = new_decoder().map_err(|e| format!("cannot create a decoder: {e}"))?;
    let frames = [frame];

    // As the server's pooled decoders do: the picture where the decoder leaves it (libavcodec's
    // own frame; openh264 copies into one reused picture), nothing done with it here.
    let mut scratch = media::decode::Picture::empty();
    let (decode_ms, decode_cpu_ms, ()) = time(
        || (),
        |()| {
            decoder
                .decode_then(&config, &frames, display, &mut scratch, &mut |_| Ok(()))
                .map_err(|e| format!("decode: {e}"))
        },
    )?;
    // The picture to encode, outside the timing.
    let mut picture = media::decode::Picture::empty();
    decoder
        .decode_into(&config, &frames, display, &mut picture)
        .map_err(|e| format!("decode: {e}"))?;
    let options = EncodeOptions::new(ImageFormat::Jpeg);
    // Each run encodes the picture as decoded: encoding may convert it in place (limited range
    // to full), and the server encodes each decoded picture once.
    let (encode_ms, encode_cpu_ms, jpeg) = time(
        || picture.clone(),
        |mut decoded| {
            media::picture::encode(black_box(&mut decoded), sps.colour, &options)
                .map_err(|e| format!("encode: {e}"))
        },
    )?;
    Ok(Limit {
        width: picture.width,
        height: picture.height,
        decode_ms,
        encode_ms,
        decode_cpu_ms,
        encode_cpu_ms,
        jpeg_bytes: jpeg.len(),
        keyframe_bytes,
        iterations: ITERATIONS,
        decoder: media::decode::default_decoder_name(),
    })
}

/// The mean of several keyframes' figures (the limit over a mix of keyframes); `None` if empty.
pub fn mean(limits: &[Limit]) -> Option<Limit> {
    let first = limits.first()?;
    let n = limits.len() as f64;
    let avg = |f: fn(&Limit) -> f64| limits.iter().map(f).sum::<f64>() / n;
    Some(Limit {
        decode_ms: avg(|l| l.decode_ms),
        encode_ms: avg(|l| l.encode_ms),
        decode_cpu_ms: avg(|l| l.decode_cpu_ms),
        encode_cpu_ms: avg(|l| l.encode_cpu_ms),
        keyframe_bytes: avg(|l| l.keyframe_bytes as f64) as usize,
        jpeg_bytes: avg(|l| l.jpeg_bytes as f64) as usize,
        ..first.clone()
    })
}

/// Runs `f` on what `setup` made (untimed), WARMUP + ITERATIONS times; returns the median wall
/// ms, the median process CPU ms of the timed runs, and the last result.
fn time<S, T>(
    mut setup: impl FnMut() -> S,
    mut f: impl FnMut(S) -> Result<T, String>,
) -> Result<(f64, f64, T), String> {
    let mut last = None;
    for _ in 0..WARMUP {
        last = Some(black_box(f(setup())?));
    }
    let mut walls = Vec::with_capacity(ITERATIONS);
    let mut cpus = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let input = setup();
        let (t, c) = (Instant::now(), process_cpu());
        last = Some(black_box(f(input)?));
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
        cpus.push(process_cpu().saturating_sub(c).as_secs_f64() * 1000.0);
    }
    let last = last.ok_or("no iterations")?;
    Ok((median(&walls), median(&cpus), last))
}

/// CPU time of this whole process (all threads, including any a decoder backend starts).
#[allow(unsafe_code)]
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
