//! Where time comes from: monotonic time, wall-clock time, and sleeping, behind one trait that
//! the server injects into the hub, the snapshot service, automation (schedules, lag, retention,
//! the spool's backoff) and callbacks. Tests run on a [`ManualClock`], moved by hand, so a whole
//! path from a due picture to its retention runs without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// A future a clock hands out for a sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where time comes from. Tests use [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic time since some fixed start.
    fn now(&self) -> Duration;
    /// Wall-clock time.
    fn wall(&self) -> SystemTime;
    /// Resolves once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> Sleep;
    /// Resolves once `d` has passed.
    fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(self.now().saturating_add(d))
    }
    /// Wall-clock time as Unix milliseconds.
    fn unix_ms(&self) -> i64 {
        self.wall()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The real clocks (tokio's timer for sleeping).
#[derive(Debug)]
pub struct SystemClock {
    start: tokio::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.start + deadline))
    }
}

/// A clock moved by hand: sleepers wake when [`ManualClock::advance`] reaches their deadline.
/// Its wall clock starts at 2023-11-14T22:13:20Z (Unix 1 700 000 000).
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            now: tokio::sync::watch::channel(Duration::ZERO).0,
        }
    }
}

/// The wall-clock time of a [`ManualClock`] at zero.
pub const MANUAL_EPOCH: Duration = Duration::from_secs(1_700_000_000);

impl ManualClock {
    /// Moves the clock forward, waking the sleepers whose deadline has come.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.borrow()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + MANUAL_EPOCH + self.now()
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < deadline {
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever wake this sleeper.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_reaches_them() {
        let clock = Arc::new(ManualClock::default());
        let c = clock.clone();
        // The deadline is fixed when the sleep is made, not when it is first polled.
        let sleep = clock.sleep(Duration::from_secs(5));
        let sleeper = tokio::spawn(async move {
            sleep.await;
            c.now()
        });
        clock.advance(Duration::from_secs(3));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke at 3 s of 5");
        clock.advance(Duration::from_secs(3));
        assert_eq!(sleeper.await.unwrap(), Duration::from_secs(6));
        // A deadline already passed resolves at once.
        clock.sleep_until(Duration::from_secs(1)).await;
        assert_eq!(
            clock.wall(),
            SystemTime::UNIX_EPOCH + MANUAL_EPOCH + Duration::from_secs(6)
        );
    }
}
