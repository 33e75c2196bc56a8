//! Admission of picture work: at most `workers` decodes at once and at most `memory` bytes of
//! picture work among them, with on-demand pictures ahead of scheduled ones, and heavy work
//! (many frames, or huge pictures: [`HEAVY_WORK_PIXELS`]) on at most all workers but one, so
//! that an ordinary picture always finds a worker that no heavy request can take.
//!
//! A [`WorkPermit`] is moved into the blocking decode itself, so it is held exactly as long as the
//! work runs: a client that disconnects drops its future, not the decode, and the decode keeps
//! its slot until it ends. Waiters are served in priority order, first come first served within
//! a priority; a waiter that is dropped leaves the queue (and gives back a slot it was handed but
//! never used).
//!
//! Hand-written: tokio's `Semaphore` is FIFO with no priorities, and a weighted semaphore per
//! resource would let a decode hold workers while waiting for memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Picture work above this cost (pixels decoded plus pixels encoded) is heavy: a 4K UHD
/// keyframe pictured at full size. `precision=latest` over a long GOP and outputs near DCI 8K
/// are heavy; an ordinary keyframe picture of a 4K camera is not.
pub const HEAVY_WORK_PIXELS: u64 = 2 * 3840 * 2160;
/// The nice value heavy work runs at: on a busy machine the kernel gives an ordinary picture's
/// thread (nice 0) about nine times the CPU of a heavy one.
pub const HEAVY_NICE: i32 = 10;

/// Who asked for a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A client is waiting: served first.
    OnDemand,
    /// A template's picture: served when no on-demand picture waits.
    Scheduled,
}

/// Work that can never be admitted: it alone needs more than the whole budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig {
    /// Bytes it needs.
    pub need: u64,
    /// The whole budget.
    pub budget: u64,
}

struct Waiter {
    id: u64,
    need: u64,
    heavy: bool,
    grant: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    running: usize,
    running_heavy: usize,
    bytes: u64,
    next_id: u64,
    /// Index 0: on demand; 1: scheduled.
    queues: [VecDeque<Waiter>; 2],
}

/// The gate all picture work passes.
pub struct WorkGate {
    workers: usize,
    memory: u64,
    state: Mutex<State>,
}

/// Leave to run one piece of picture work; gives its slot and bytes back when dropped.
pub struct WorkPermit {
    gate: Arc<WorkGate>,
    need: u64,
    heavy: bool,
}

impl Drop for WorkPermit {
    fn drop(&mut self) {
        self.gate.release(self.need, self.heavy);
    }
}

/// Counts of the gate now, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateLoad {
    pub running: usize,
    /// Heavy work among `running`.
    pub running_heavy: usize,
    pub bytes: u64,
    pub waiting_on_demand: usize,
    pub waiting_scheduled: usize,
}

impl WorkGate {
    /// A gate for `workers` pieces of work at once (at least one) within `memory` bytes.
    pub fn new(workers: usize, memory: u64) -> Arc<WorkGate> {
        Arc::new(WorkGate {
            workers: workers.max(1),
            memory,
            state: Mutex::new(State::default()),
        })
    }

    /// The memory budget.
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Waits for a worker and `need` bytes, behind every waiter of the same or a higher
    /// priority, except heavy ones whose lane is full when this work is light. Cancel-safe:
    /// dropping the future leaves the queue.
    pub async fn acquire(
        self: &Arc<Self>,
        priority: Priority,
        need: u64,
        heavy: bool,
    ) -> Result<WorkPermit, TooBig> {
        if need > self.memory {
            return Err(TooBig {
                need,
                budget: self.memory,
            });
        }
        let q = match priority {
            Priority::OnDemand => 0,
            Priority::Scheduled => 1,
        };
        let (id, rx) = {
            let mut s = self.lock();
            let (tx, rx) = oneshot::channel();
            s.next_id += 1;
            let id = s.next_id;
            s.queues[q].push_back(Waiter {
                id,
                need,
                heavy,
                grant: tx,
            });
            // Runs now when nothing that must go first is waiting and it fits.
            self.wake(&mut s);
            (id, rx)
        };
        let mut guard = Waiting {
            gate: self,
            id,
            need,
            heavy,
            rx: Some(rx),
        };
        let granted = guard.rx.as_mut().expect("set above").await;
        guard.rx = None;
        match granted {
            Ok(()) => Ok(WorkPermit {
                gate: self.clone(),
                need,
                heavy,
            }),
            // The sender is only dropped when granting fails, which drops the waiter too.
            Err(_) => unreachable!("a queued waiter is granted or removed by its own guard"),
        }
    }

    /// The load now.
    pub fn load(&self) -> GateLoad {
        let s = self.lock();
        GateLoad {
            running: s.running,
            running_heavy: s.running_heavy,
            bytes: s.bytes,
            waiting_on_demand: s.queues[0].len(),
            waiting_scheduled: s.queues[1].len(),
        }
    }

    /// Slots heavy work may hold: all workers but one (one, when there is one).
    fn heavy_slots(&self) -> usize {
        self.workers.saturating_sub(1).max(1)
    }

    fn fits(&self, s: &State, need: u64) -> bool {
        s.running < self.workers && s.bytes + need <= self.memory
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, need: u64, heavy: bool) {
        let mut s = self.lock();
        Self::undo(&mut s, need, heavy);
        self.wake(&mut s);
    }

    fn undo(s: &mut State, need: u64, heavy: bool) {
        s.running -= 1;
        s.running_heavy -= usize::from(heavy);
        s.bytes -= need;
    }

    /// Hands slots to the waiters in order, on-demand first, while they fit. Heavy work whose
    /// lane is full is passed over by work behind it (it cannot run anyway); any other waiter
    /// that does not fit stops the hand-out, so a large picture is not starved by smaller ones
    /// behind it, nor an on-demand one by scheduled ones.
    fn wake(&self, s: &mut State) {
        for q in 0..s.queues.len() {
            let mut i = 0;
            while i < s.queues[q].len() {
                let (need, heavy) = (s.queues[q][i].need, s.queues[q][i].heavy);
                if heavy && s.running_heavy >= self.heavy_slots() {
                    i += 1;
                    continue;
                }
                if !self.fits(s, need) {
                    return;
                }
                let w = s.queues[q].remove(i).expect("index in range");
                s.running += 1;
                s.running_heavy += usize::from(heavy);
                s.bytes += need;
                if w.grant.send(()).is_err() {
                    // Its future was dropped in between: take the slot back.
                    Self::undo(s, need, heavy);
                }
            }
        }
    }
}

/// Runs picture work `f` off the async threads and waits for it. Light work runs on tokio's
/// blocking pool. Heavy work runs on a thread of its own that first lowers its priority to
/// [`HEAVY_NICE`]: lowering needs no privilege, and the thread ends with the work, so nothing
/// has to raise it back (a pooled thread left niced would slow the light work it runs next).
/// Like a blocking task, the work runs to its end even when the caller stops waiting (it holds
/// its [`WorkPermit`] until then).
pub async fn run<T: Send + 'static>(
    heavy: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if !heavy {
        return tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| format!("picture task: {e}"));
    }
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("livesnap-heavy".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(|e| format!("heavy picture thread: {e}"))?;
    rx.await
        .map_err(|_| "heavy picture work panicked".to_string())
}

/// Lowers the calling thread's CPU priority to [`HEAVY_NICE`] (on Linux the nice value is per
/// thread); where that fails, the work runs at the normal priority.
#[allow(unsafe_code)] // two libc calls; the crate has no other unsafe code
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority and gettid take plain integers and touch no memory of ours.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, HEAVY_NICE);
    }
}

/// A queued acquire; on drop it leaves the queue, or gives back a slot it was handed unused.
struct Waiting<'a> {
    gate: &'a Arc<WorkGate>,
    id: u64,
    need: u64,
    heavy: bool,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let mut s = self.gate.lock();
        for q in s.queues.iter_mut() {
            if let Some(i) = q.iter().position(|w| w.id == self.id) {
                q.remove(i);
                // Its leaving may let the next one in (a head that did not fit).
                self.gate.wake(&mut s);
                return;
            }
        }
        if rx.try_recv().is_ok() {
            WorkGate::undo(&mut s, self.need, self.heavy);
            self.gate.wake(&mut s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn at_most_workers_run_and_on_demand_goes_first() {
        let gate = WorkGate::new(1, 100);
        let first = gate.acquire(Priority::Scheduled, 10, false).await.unwrap();
        let mut scheduled = pin!(gate.acquire(Priority::Scheduled, 10, false));
        let mut on_demand = pin!(gate.acquire(Priority::OnDemand, 10, false));
        assert!(poll_once(scheduled.as_mut()).is_pending());
        assert!(poll_once(on_demand.as_mut()).is_pending());
        assert_eq!(gate.load().running, 1);
        assert_eq!(gate.load().waiting_scheduled, 1);
        assert_eq!(gate.load().waiting_on_demand, 1);
        drop(first);
        // The on-demand one came later but runs first.
        let Poll::Ready(Ok(p)) = poll_once(on_demand.as_mut()) else {
            panic!("on-demand not admitted")
        };
        assert!(poll_once(scheduled.as_mut()).is_pending());
        drop(p);
        assert!(matches!(poll_once(scheduled.as_mut()), Poll::Ready(Ok(_))));
    }

    #[tokio::test]
    async fn memory_bounds_the_work_and_too_big_is_refused() {
        let gate = WorkGate::new(8, 100);
        assert_eq!(
            gate.acquire(Priority::OnDemand, 101, false).await.err(),
            Some(TooBig {
                need: 101,
                budget: 100
            })
        );
        let a = gate.acquire(Priority::OnDemand, 60, false).await.unwrap();
        let mut big = pin!(gate.acquire(Priority::OnDemand, 60, false));
        let mut small = pin!(gate.acquire(Priority::OnDemand, 10, false));
        assert!(poll_once(big.as_mut()).is_pending());
        // A small one behind a waiting big one waits too (the big one is not starved).
        assert!(poll_once(small.as_mut()).is_pending());
        assert_eq!(gate.load().bytes, 60);
        drop(a);
        let Poll::Ready(Ok(_big)) = poll_once(big.as_mut()) else {
            panic!("the big one was not admitted")
        };
        let Poll::Ready(Ok(_small)) = poll_once(small.as_mut()) else {
            panic!("the small one was not admitted")
        };
        assert_eq!(gate.load().bytes, 70);
    }

    /// A waiter whose client went away leaves the queue; one that was handed a slot and then
    /// dropped gives it back; nothing leaks.
    #[tokio::test]
    async fn dropped_waiters_leave_no_trace() {
        let gate = WorkGate::new(1, 100);
        let first = gate.acquire(Priority::OnDemand, 50, false).await.unwrap();
        {
            let mut gone = pin!(gate.acquire(Priority::OnDemand, 50, false));
            assert!(poll_once(gone.as_mut()).is_pending());
        }
        assert_eq!(gate.load().waiting_on_demand, 0);
        {
            let mut handed = pin!(gate.acquire(Priority::Scheduled, 50, false));
            assert!(poll_once(handed.as_mut()).is_pending());
            drop(first); // hands the slot to `handed`, which is dropped without looking
        }
        assert_eq!(gate.load(), GateLoad::default());
        let again = gate.acquire(Priority::Scheduled, 100, false).await.unwrap();
        assert_eq!(gate.load().running, 1);
        drop(again);
        assert_eq!(gate.load(), GateLoad::default());
    }

    /// Heavy work takes at most all workers but one: light work behind a waiting heavy one
    /// runs on the worker left, and the heavy one runs when a heavy slot is free.
    #[tokio::test]
    async fn heavy_work_leaves_a_worker_for_light_work() {
        let gate = WorkGate::new(2, 100);
        let heavy = gate.acquire(Priority::OnDemand, 10, true).await.unwrap();
        let mut heavy2 = pin!(gate.acquire(Priority::OnDemand, 10, true));
        assert!(poll_once(heavy2.as_mut()).is_pending());
        // Light, and behind it: runs at once on the worker left.
        let light = gate.acquire(Priority::OnDemand, 10, false).await.unwrap();
        assert_eq!(gate.load().running, 2);
        assert_eq!(gate.load().running_heavy, 1);
        // Both workers busy: the next light one waits like anyone.
        let mut light2 = pin!(gate.acquire(Priority::Scheduled, 10, false));
        assert!(poll_once(light2.as_mut()).is_pending());
        drop(light);
        // The freed worker is not heavy work's to take: the scheduled light one gets it.
        assert!(poll_once(heavy2.as_mut()).is_pending());
        let Poll::Ready(Ok(light2)) = poll_once(light2.as_mut()) else {
            panic!("light work was not admitted")
        };
        drop(heavy);
        let Poll::Ready(Ok(heavy2)) = poll_once(heavy2.as_mut()) else {
            panic!("the second heavy one was not admitted")
        };
        drop((heavy2, light2));
        assert_eq!(gate.load(), GateLoad::default());

        // One worker: heavy work may take it.
        let one = WorkGate::new(1, 100);
        let h = one.acquire(Priority::OnDemand, 10, true).await.unwrap();
        assert_eq!(one.load().running_heavy, 1);
        drop(h);
    }

    /// Heavy work runs at nice HEAVY_NICE on a thread of its own; light work on the blocking
    /// pool at the caller's priority.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn heavy_work_runs_at_a_lower_priority() {
        #[allow(unsafe_code)]
        fn nice() -> i32 {
            // SAFETY: plain integers in and out.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }
        let base = nice();
        assert_eq!(run(false, nice).await.unwrap(), base);
        assert_eq!(run(true, nice).await.unwrap(), HEAVY_NICE.max(base));
        assert_eq!(
            run(true, || std::thread::current().name().map(str::to_string))
                .await
                .unwrap()
                .as_deref(),
            Some("livesnap-heavy")
        );
    }
}
