//! RTMP ingest cost in steady state: a recorded publish of 720p H.264 (testdata/720p.h264 in
//! 4096-byte chunks, cut into socket-sized reads) fed again and again, 4 GOPs (100 frames) per
//! iteration, through one long-lived [`Session`] and the video feed into a writer that keeps
//! each GOP until the next keyframe, as the hub does. Throughput is in bytes of the video
//! messages; divide the time by 100 for the cost of one frame.
//!
//! With `INGEST_BENCH_RUNS=N` in the environment it skips criterion and feeds the 4 GOPs N
//! times, for instruction counts under `valgrind --tool=callgrind
//! --toggle-collect='*feed_video*'` (hardware counters are often missing on build machines).
//!
//! [`Session`]: livesnap_ingest::rtmp::session::Session

#[path = "../tests/common/mod.rs"]
mod common;

use common::{record, GopKeeper, Receiver};
use criterion::{criterion_group, Criterion, Throughput};

const GOPS: usize = 4;

/// The measured part: every GOP of the recording. Replaying them is a valid chunk stream: each
/// GOP opens with a header that carries the length and type.
#[inline(never)]
fn feed_video(rx: &mut Receiver<GopKeeper>, gops: &[Vec<u8>]) {
    for gop in gops {
        rx.receive(gop);
    }
}

/// A connection past its handshake and first GOPs, so buffers have their working size.
fn warm(rec: &common::Recording) -> Receiver<GopKeeper> {
    let mut rx = Receiver::new(GopKeeper::default());
    rx.receive(&rec.setup);
    feed_video(&mut rx, &rec.gops);
    rx
}

fn ingest(c: &mut Criterion) {
    let rec = record(GOPS);
    let video: usize = rec.gops.iter().map(Vec::len).sum();
    let mut rx = warm(&rec);
    let mut group = c.benchmark_group("rtmp_ingest");
    group.throughput(Throughput::Bytes(video as u64));
    group.bench_function("publish_720p_4096B_chunks", |b| {
        b.iter(|| feed_video(&mut rx, &rec.gops))
    });
    group.finish();
}

criterion_group!(benches, ingest);

fn main() {
    if let Some(runs) = std::env::var("INGEST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let rec = record(GOPS);
        let mut rx = warm(&rec);
        for _ in 0..runs {
            feed_video(&mut rx, &rec.gops);
        }
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
