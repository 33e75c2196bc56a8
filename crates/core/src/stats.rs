//! A duration histogram that the picture path updates without locks (a few atomic adds per
//! picture) and that `/metrics` reads as Prometheus buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 1 ms to 5 s, the range of a decode or an encode
/// from a small keyframe to an 8K PNG.
pub const BUCKETS_S: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Counts of durations per bucket, their sum and their number.
#[derive(Debug, Default)]
pub struct TimeHistogram {
    /// Observations at most `BUCKETS_S[i]` and above the bucket before (not cumulative).
    buckets: [AtomicU64; BUCKETS_S.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A histogram read once.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations in seconds.
    pub sum_s: f64,
    /// Number of observations.
    pub count: u64,
    /// (upper bound in seconds, observations in this bucket alone), ascending; the ones above
    /// the last bound are `count` minus their sum. Not cumulative: the Prometheus encoder sums.
    pub buckets: Vec<(f64, u64)>,
}

impl TimeHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now; observations above the last bound count only in `count` (+Inf).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets = BUCKETS_S
            .iter()
            .zip(&self.buckets)
            .map(|(&b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum_s: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_counts_its_own_and_overflow_counts_only_in_the_total() {
        let h = TimeHistogram::default();
        h.observe(Duration::from_micros(500)); // <= 1 ms
        h.observe(Duration::from_millis(1)); // <= 1 ms, on the bound
        h.observe(Duration::from_millis(30)); // <= 50 ms
        h.observe(Duration::from_secs(9)); // above 5 s
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert!((s.sum_s - 9.0315).abs() < 1e-9, "{}", s.sum_s);
        let at = |b: f64| s.buckets.iter().find(|x| x.0 == b).unwrap().1;
        assert_eq!((at(0.001), at(0.02), at(0.05), at(5.0)), (2, 0, 1, 0));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 3);
    }
}
