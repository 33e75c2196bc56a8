//! Admission of picture work: at most `workers` decodes at once and at most `memory` bytes of
//! picture work among them, with on-demand pictures ahead of scheduled ones.
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
    grant: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    running: usize,
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
}

impl Drop for WorkPermit {
    fn drop(&mut self) {
        self.gate.release(self.need);
    }
}

/// Counts of the gate now, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateLoad {
    pub running: usize,
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
    /// priority. Cancel-safe: dropping the future leaves the queue.
    pub async fn acquire(
        self: &Arc<Self>,
        priority: Priority,
        need: u64,
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
            // Nobody of this priority or higher is ahead, and it fits: run now.
            let ahead = s.queues[..=q].iter().any(|w| !w.is_empty());
            if !ahead && self.fits(&s, need) {
                s.running += 1;
                s.bytes += need;
                return Ok(self.permit(need));
            }
            let (tx, rx) = oneshot::channel();
            s.next_id += 1;
            let id = s.next_id;
            s.queues[q].push_back(Waiter {
                id,
                need,
                grant: tx,
            });
            (id, rx)
        };
        let mut guard = Waiting {
            gate: self,
            id,
            need,
            rx: Some(rx),
        };
        let granted = guard.rx.as_mut().expect("set above").await;
        guard.rx = None;
        match granted {
            Ok(()) => Ok(self.permit(need)),
            // The sender is only dropped when granting fails, which drops the waiter too.
            Err(_) => unreachable!("a queued waiter is granted or removed by its own guard"),
        }
    }

    /// The load now.
    pub fn load(&self) -> GateLoad {
        let s = self.lock();
        GateLoad {
            running: s.running,
            bytes: s.bytes,
            waiting_on_demand: s.queues[0].len(),
            waiting_scheduled: s.queues[1].len(),
        }
    }

    fn permit(self: &Arc<Self>, need: u64) -> WorkPermit {
        WorkPermit {
            gate: self.clone(),
            need,
        }
    }

    fn fits(&self, s: &State, need: u64) -> bool {
        s.running < self.workers && s.bytes + need <= self.memory
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, need: u64) {
        let mut s = self.lock();
        s.running -= 1;
        s.bytes -= need;
        self.wake(&mut s);
    }

    /// Hands slots to the waiters at the head of the queues, on-demand first, while they fit.
    /// A head that does not fit stops the hand-out, so a large picture is not starved by
    /// smaller ones behind it.
    fn wake(&self, s: &mut State) {
        loop {
            let q = if s.queues[0].is_empty() { 1 } else { 0 };
            let Some(head) = s.queues[q].front() else {
                return;
            };
            if !self.fits(s, head.need) {
                return;
            }
            let w = s.queues[q].pop_front().expect("front exists");
            s.running += 1;
            s.bytes += w.need;
            if w.grant.send(()).is_err() {
                // Its future was dropped in between: take the slot back.
                s.running -= 1;
                s.bytes -= w.need;
            }
        }
    }
}

/// A queued acquire; on drop it leaves the queue, or gives back a slot it was handed unused.
struct Waiting<'a> {
    gate: &'a Arc<WorkGate>,
    id: u64,
    need: u64,
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
            s.running -= 1;
            s.bytes -= self.need;
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
        let first = gate.acquire(Priority::Scheduled, 10).await.unwrap();
        let mut scheduled = pin!(gate.acquire(Priority::Scheduled, 10));
        let mut on_demand = pin!(gate.acquire(Priority::OnDemand, 10));
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
            gate.acquire(Priority::OnDemand, 101).await.err(),
            Some(TooBig {
                need: 101,
                budget: 100
            })
        );
        let a = gate.acquire(Priority::OnDemand, 60).await.unwrap();
        let mut big = pin!(gate.acquire(Priority::OnDemand, 60));
        let mut small = pin!(gate.acquire(Priority::OnDemand, 10));
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
        let first = gate.acquire(Priority::OnDemand, 50).await.unwrap();
        {
            let mut gone = pin!(gate.acquire(Priority::OnDemand, 50));
            assert!(poll_once(gone.as_mut()).is_pending());
        }
        assert_eq!(gate.load().waiting_on_demand, 0);
        {
            let mut handed = pin!(gate.acquire(Priority::Scheduled, 50));
            assert!(poll_once(handed.as_mut()).is_pending());
            drop(first); // hands the slot to `handed`, which is dropped without looking
        }
        assert_eq!(gate.load(), GateLoad::default());
        let again = gate.acquire(Priority::Scheduled, 100).await.unwrap();
        assert_eq!(gate.load().running, 1);
        drop(again);
        assert_eq!(gate.load(), GateLoad::default());
    }
}
