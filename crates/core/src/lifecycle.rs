//! One shutdown for the whole server: every long-running loop selects on the [`Lifecycle`]'s
//! token, and every task is spawned on its tracker, so that shutdown can stop them all and wait
//! until they have finished what they were doing. Nothing in livesnap is spawned detached.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A cancellation token and the tasks that answer it.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// Cancelled when the tasks should wind down.
    pub token: CancellationToken,
    /// The tasks; [`TaskTracker::wait`] returns once all have ended (after `close`).
    pub tracker: TaskTracker,
}

impl Lifecycle {
    /// A fresh lifecycle.
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }

    /// Runs `task` on the tracker.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Runs `task` on the tracker until it ends or the token is cancelled, whichever is first
    /// (for loops that have nothing to finish: dropping them at an await point is safe).
    pub fn spawn_until_cancelled<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        })
    }

    /// Whether shutdown has begun.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Cancels the token, closes the tracker and waits for every task to end.
    pub async fn stop(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
