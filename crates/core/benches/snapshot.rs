//! `Snapshotter::take` end to end, at 720p and 1080p: a live stream in a `Hub` fed from
//! `testdata/`, and a tokio runtime like the server's.
//!
//! - `snapshot_take/cache_hit`: the same keyframe and request again: a lookup and a clone.
//! - `snapshot_take/cache_miss`: a new keyframe arrived (same bytes, new sequence number), so
//!   the picture is made: pooled decoder, decode on the blocking pool, JPEG q85, cache fill.
//!
//! Run with `cargo bench -p livesnap-core`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use livesnap_core::hub::{Hub, HubConfig};
use livesnap_core::snapshot::{Precision, SnapshotConfig, SnapshotRequest, Snapshotter};
use media::avc::annexb_to_frames;
use media::picture::{EncodeOptions, ImageFormat};
use media::stream::{PublisherInfo, StreamKey, StreamWriter};

fn bench_take(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub = Hub::new(HubConfig::default());
    let snapshotter = Snapshotter::new(SnapshotConfig::default());
    let request = SnapshotRequest {
        options: EncodeOptions::new(ImageFormat::Jpeg),
        precision: Precision::Keyframe,
    };

    let mut g = c.benchmark_group("snapshot_take");
    for (name, file) in [("720p", "720p.h264"), ("1080p", "1080p.h264")] {
        let path = format!("{}/../../testdata/{file}", env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let (config, frames) = annexb_to_frames(&data).expect("testdata parses");
        let keyframe = frames[0].clone();
        assert!(keyframe.keyframe);

        let info = PublisherInfo {
            addr: "127.0.0.1:1935".parse().unwrap(),
            protocol: "bench",
        };
        let mut writer = hub
            .start(StreamKey::new("_default", "bench", name).unwrap(), info)
            .ok()
            .unwrap();
        writer.config(config.into());
        let mut dts = 0i64;
        let mut push_keyframe = |writer: &mut dyn StreamWriter| {
            let mut f = keyframe.clone();
            f.dts_ms = dts;
            f.pts_ms = dts;
            dts += 1000;
            writer.frame(f);
        };
        push_keyframe(&mut writer);
        let stream = writer.stream().clone();
        assert_eq!(stream.problem(), None);

        // Fill the cache for this keyframe, then every take is a hit.
        let first = rt
            .block_on(snapshotter.take(&stream, request))
            .expect("first snapshot");
        assert!(!first.cache_hit);
        g.sampling_mode(SamplingMode::Auto);
        g.measurement_time(Duration::from_secs(2));
        g.bench_function(BenchmarkId::new("cache_hit", name), |b| {
            b.iter(|| {
                let s = rt.block_on(snapshotter.take(&stream, request)).unwrap();
                debug_assert!(s.cache_hit);
                s
            })
        });

        // Each iteration: a new keyframe, so the take must make the picture.
        g.sampling_mode(SamplingMode::Flat);
        g.measurement_time(Duration::from_secs(4));
        g.bench_function(BenchmarkId::new("cache_miss", name), |b| {
            b.iter(|| {
                push_keyframe(&mut writer);
                let s = rt.block_on(snapshotter.take(&stream, request)).unwrap();
                assert!(!s.cache_hit);
                s
            })
        });
        drop(writer);
    }
    g.finish();
    let counters = &snapshotter.counters;
    eprintln!(
        "snapshotter counters: pictures_made={} cache_hits={} decoders_created={} decode_errors={}",
        counters
            .pictures_made
            .load(std::sync::atomic::Ordering::Relaxed),
        counters
            .cache_hits
            .load(std::sync::atomic::Ordering::Relaxed),
        counters
            .decoders_created
            .load(std::sync::atomic::Ordering::Relaxed),
        counters
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let _keep: Arc<Hub> = hub;
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = snapshot_benches;
    config = config();
    targets = bench_take
}
criterion_main!(snapshot_benches);
