//! What a picture costs, step by step, at 720p and 1080p.
//!
//! Inputs are the raw H.264 files in `testdata/` (High profile, B-frames, noisy content; see
//! `testdata/README.md`). Only frame 0, the IDR, is decoded: that is what a keyframe snapshot
//! does.
//!
//! Groups (each with a `720p` and a `1080p` entry):
//! - `decode_keyframe/reused`: a keyframe decoded by one long-lived `OpenH264Decoder`.
//! - `decode_keyframe/new_decoder`: creating a decoder and then decoding (why the service pools).
//! - `to_rgb`: YUV 4:2:0 -> packed RGB8 with the stream's matrix and range.
//! - `encode_jpeg_q85` / `encode_png`: RGB8 -> image bytes at full size.
//! - `range_stretch/table` / `range_stretch/stretch`: limited to full range over the three
//!   planes, in place, with the lookup table alone and as the JPEG encoder does it.
//! - `scale_to_360p`: RGB8 full size -> 640x360.
//! - `full_picture_jpeg_q85`: decode (reused decoder) + `picture::encode`, i.e. one cache miss
//!   without the service around it.
//! - `cache_hit_clone`: taking a `Bytes` of an encoded JPEG out of a `Mutex<HashMap>`, the way a
//!   cache lookup does. (The service's real cache hit, `Snapshotter::take`, is measured in
//!   `crates/core/benches/snapshot.rs`.)
//!
//! Run with `cargo bench -p livesnap-media`; a run takes about a minute.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use livesnap_media as media;
use media::avc::annexb_to_frames;
use media::decode::{Decoder, OpenH264Decoder, Picture};
use media::picture::{self, EncodeOptions, ImageFormat};
use media::range;
use media::sps::{Colour, SpsInfo};
use media::{Frame, VideoConfig};

/// One test input, decoded once up front so the later stages have real pixels.
struct Input {
    name: &'static str,
    config: VideoConfig,
    keyframe: Vec<Frame>,
    display: (u32, u32),
    colour: Colour,
    picture: Picture,
    rgb: Vec<u8>,
}

fn load(name: &'static str, file: &str) -> Input {
    let path = format!("{}/../../testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    let stream = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let (config, frames) = annexb_to_frames(&stream).expect("testdata parses");
    assert!(frames[0].keyframe, "{file}: frame 0 is not a keyframe");
    let sps = SpsInfo::parse(&config.sps[0]).expect("testdata SPS parses");
    let config = VideoConfig::from(config);
    let display = (sps.width, sps.height);
    let keyframe = vec![frames[0].clone()];
    let picture = OpenH264Decoder::new()
        .unwrap()
        .decode(&config, &keyframe, display)
        .expect("testdata decodes");
    assert_eq!((picture.width, picture.height), display);
    let rgb = picture::to_rgb(&picture, sps.colour).unwrap();
    Input {
        name,
        config,
        keyframe,
        display,
        colour: sps.colour,
        picture,
        rgb,
    }
}

fn inputs() -> Vec<Input> {
    vec![load("720p", "720p.h264"), load("1080p", "1080p.h264")]
}

fn pixels(i: &Input) -> Throughput {
    Throughput::Elements(u64::from(i.display.0) * u64::from(i.display.1))
}

fn benches(c: &mut Criterion) {
    let inputs = inputs();

    {
        let mut g = c.benchmark_group("decode_keyframe");
        // Tens of milliseconds an iteration: one iteration per sample keeps the run short.
        g.sampling_mode(SamplingMode::Flat);
        g.measurement_time(Duration::from_secs(4));
        for i in &inputs {
            g.throughput(pixels(i));
            let mut decoder = OpenH264Decoder::new().unwrap();
            g.bench_with_input(BenchmarkId::new("reused", i.name), i, |b, i| {
                b.iter(|| decoder.decode(&i.config, &i.keyframe, i.display).unwrap())
            });
            #[cfg(feature = "ffmpeg")]
            {
                let mut decoder = media::ffmpeg::FfmpegDecoder::new().unwrap();
                g.bench_with_input(BenchmarkId::new("libavcodec_reused", i.name), i, |b, i| {
                    b.iter(|| decoder.decode(&i.config, &i.keyframe, i.display).unwrap())
                });
            }
            g.bench_with_input(BenchmarkId::new("new_decoder", i.name), i, |b, i| {
                b.iter(|| {
                    OpenH264Decoder::new()
                        .unwrap()
                        .decode(&i.config, &i.keyframe, i.display)
                        .unwrap()
                })
            });
        }
        g.finish();
    }

    // Creating a decoder alone, to split the `new_decoder` figure.
    c.bench_function("decoder_create", |b| {
        b.iter(|| OpenH264Decoder::new().unwrap())
    });

    {
        let mut g = c.benchmark_group("to_rgb");
        for i in &inputs {
            g.throughput(pixels(i));
            g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
                b.iter(|| picture::to_rgb(&i.picture, i.colour).unwrap())
            });
        }
        g.finish();
    }

    for (group, format) in [
        ("encode_jpeg_q85", ImageFormat::Jpeg),
        ("encode_png", ImageFormat::Png),
    ] {
        let mut g = c.benchmark_group(group);
        g.sampling_mode(SamplingMode::Flat);
        for i in &inputs {
            g.throughput(pixels(i));
            g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
                b.iter(|| {
                    picture::encode_rgb(&i.rgb, i.display.0, i.display.1, format, 85).unwrap()
                })
            });
        }
        g.finish();
    }

    {
        // The whole encode as the service runs it: YUV in, JPEG out (libjpeg-turbo straight from
        // YUV with the turbojpeg feature; colour conversion + jpeg-encoder otherwise).
        let mut g = c.benchmark_group("encode_picture_jpeg_q85");
        g.sampling_mode(SamplingMode::Flat);
        let options = EncodeOptions::new(ImageFormat::Jpeg);
        for i in &inputs {
            g.throughput(pixels(i));
            g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
                // encode may convert the picture in place: each run gets the decoded one.
                b.iter_batched(
                    || i.picture.clone(),
                    |mut p| picture::encode(&mut p, i.colour, &options).unwrap(),
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }

    {
        // Limited to full range over the three planes of a picture, in place: the lookup table
        // alone (`table`, the baseline) and the path the JPEG encoder takes (`stretch`: 32
        // samples at a time with AVX2, the table for each row's tail).
        let mut g = c.benchmark_group("range_stretch");
        for i in &inputs {
            g.throughput(pixels(i));
            let (w, h) = (i.picture.width as usize, i.picture.height as usize);
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let planes = |p: &mut Picture| {
                [
                    (std::mem::take(&mut p.y), (w, h), range::Plane::Luma),
                    (std::mem::take(&mut p.u), (cw, ch), range::Plane::Chroma),
                    (std::mem::take(&mut p.v), (cw, ch), range::Plane::Chroma),
                ]
            };
            g.bench_with_input(BenchmarkId::new("table", i.name), i, |b, i| {
                b.iter_batched(
                    || planes(&mut i.picture.clone()),
                    |mut planes| {
                        for (plane, _, which) in &mut planes {
                            range::stretch_with_table(plane, *which);
                        }
                        planes
                    },
                    BatchSize::LargeInput,
                )
            });
            g.bench_with_input(BenchmarkId::new("stretch", i.name), i, |b, i| {
                b.iter_batched(
                    || planes(&mut i.picture.clone()),
                    |mut planes| {
                        for (plane, size, which) in &mut planes {
                            range::stretch(plane, size.0, *size, *which);
                        }
                        planes
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("scale_to_360p");
        for i in &inputs {
            g.throughput(pixels(i));
            g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
                // scale_rgb takes the buffer by value: the copy is made outside the timing.
                b.iter_batched(
                    || i.rgb.clone(),
                    |rgb| picture::scale_rgb(rgb, i.display, (640, 360)).unwrap(),
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("full_picture_jpeg_q85");
        g.sampling_mode(SamplingMode::Flat);
        g.measurement_time(Duration::from_secs(4));
        for i in &inputs {
            g.throughput(pixels(i));
            let mut decoder = media::decode::default_decoder().unwrap();
            let mut pic = media::decode::Picture::empty();
            let options = EncodeOptions::new(ImageFormat::Jpeg);
            g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
                b.iter(|| {
                    decoder
                        .decode_into(&i.config, &i.keyframe, i.display, &mut pic)
                        .unwrap();
                    picture::encode(&mut pic, i.colour, &options).unwrap()
                })
            });
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("cache_hit_clone");
        for i in &inputs {
            let jpeg = picture::encode_rgb(&i.rgb, i.display.0, i.display.1, ImageFormat::Jpeg, 85)
                .unwrap();
            // A cache of a realistic size, keyed like the service's (stream, frame, request).
            let cache: Arc<Mutex<HashMap<(u64, u64, u32), Bytes>>> =
                Arc::new(Mutex::new(HashMap::new()));
            for n in 0..256u64 {
                cache
                    .lock()
                    .unwrap()
                    .insert((n, n * 25, 85), Bytes::from(jpeg.clone()));
            }
            let key = (7u64, 175u64, 85u32);
            g.bench_with_input(BenchmarkId::from_parameter(i.name), &key, |b, key| {
                b.iter(|| cache.lock().unwrap().get(black_box(key)).cloned().unwrap())
            });
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = picture_benches;
    config = config();
    targets = benches
}
criterion_main!(picture_benches);
