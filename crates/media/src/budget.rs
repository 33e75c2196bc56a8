//! One memory budget for everything ingest holds: the hub's GOPs and every front end's partial
//! messages. Limits per stream and per connection do not multiply out (60 full GOPs took 2.4 GB);
//! this one does. A charge past the limit first asks the reclaimer (the hub, which trims the
//! largest GOPs to their keyframe) to make room, and fails only if that cannot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Frees up to the asked bytes (by trimming the largest holders) and says how many it freed.
pub type Reclaimer = Box<dyn Fn(u64) -> u64 + Send + Sync>;

/// The ingest memory budget.
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Charges refused even after reclaiming.
    refused: AtomicU64,
    reclaimer: OnceLock<Reclaimer>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            reclaimer: OnceLock::new(),
        })
    }

    /// A budget nothing reaches, for tools and tests that do not share one.
    pub fn unlimited() -> Arc<MemoryBudget> {
        Self::new(u64::MAX)
    }

    /// Sets who frees memory when a charge does not fit (once; later calls are ignored).
    pub fn set_reclaimer(&self, reclaimer: Reclaimer) {
        let _ = self.reclaimer.set(reclaimer);
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Charges `n` bytes if they fit, without reclaiming (for a caller that holds a lock the
    /// reclaimer takes); false when they do not.
    pub fn try_charge(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Charges `n` bytes, asking the reclaimer for room when they do not fit; false (and
    /// counted) when there is none even then. Must not be called with a lock the reclaimer
    /// takes.
    pub fn charge(&self, n: u64) -> bool {
        if self.try_charge(n) {
            return true;
        }
        if let Some(reclaim) = self.reclaimer.get() {
            let short = (self.used() + n).saturating_sub(self.limit);
            reclaim(short);
            if self.try_charge(n) {
                return true;
            }
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Gives `n` charged bytes back.
    pub fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Asks the reclaimer to free `n` bytes (after a [`MemoryBudget::try_charge`] that failed
    /// under a lock); returns what it freed.
    pub fn reclaim(&self, n: u64) -> u64 {
        self.reclaimer.get().map_or(0, |r| r(n))
    }
}

/// A machine's total memory from `/proc/meminfo`, when it can be read.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn charges_fit_the_limit_and_reclaiming_makes_room() {
        let b = MemoryBudget::new(100);
        assert!(b.charge(60));
        assert!(!b.try_charge(50));
        assert_eq!(b.used(), 60);
        // Without a reclaimer a charge past the limit is refused and counted.
        assert!(!b.charge(50));
        assert_eq!(b.refused(), 1);
        // A reclaimer that frees what it is asked (here by releasing 10 of the 60).
        let held = Arc::new(Mutex::new(60u64));
        let (h, bb) = (held.clone(), Arc::downgrade(&b));
        b.set_reclaimer(Box::new(move |n| {
            let mut h = h.lock().unwrap();
            let freed = n.min(*h);
            *h -= freed;
            if let Some(b) = bb.upgrade() {
                b.release(freed);
            }
            freed
        }));
        assert!(b.charge(50));
        assert_eq!(b.used(), 100);
        assert_eq!(*held.lock().unwrap(), 50);
        b.release(1000);
        assert_eq!(b.used(), 0, "release saturates");
        assert!(!MemoryBudget::new(10).try_charge(u64::MAX), "no wrap");
    }

    #[test]
    fn machine_memory_is_read() {
        let m = machine_memory().expect("/proc/meminfo on Linux");
        assert!(m > 64 << 20, "{m}");
    }
}
