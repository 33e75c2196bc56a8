//! Pulled sources: live streams that livesnap fetches from a URL (RTMP now, RTSP next) instead
//! of waiting for a publisher to push them.
//!
//! Core does not know any protocol: it names what it needs, a [`SourceOpener`] ("open this URL
//! and publish its frames into this sink until it ends"), and the server hands it ingest's pull
//! clients. The [`SourceSupervisor`] keeps one pulled source running: it opens it, reopens it
//! with exponential backoff and jitter whenever it ends or fails, and reports what it is doing
//! ([`SourceState`]) on a watch channel. Every wait is on the injected [`Clock`], so the whole
//! cycle is tested on a [`crate::clock::ManualClock`] without sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use media::stream::{PublishRefused, StreamKey, StreamSink};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::lifecycle::Lifecycle;

/// The wait before the first reopen of a source that ended or failed.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two tries: the delay doubles after each failed run up to this.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Up to this fraction of each delay is taken off at random, so that sources that failed
/// together (their server restarted) do not all come back in the same instant. Taken off, not
/// added, so that [`MAX_RETRY_DELAY`] stays the longest wait.
pub const RETRY_JITTER: f64 = 0.2;
/// A run that delivered frames for at least this long counts as a success: the next failure
/// waits [`FIRST_RETRY_DELAY`] again instead of the doubled delay.
pub const STABLE_RUN: Duration = Duration::from_secs(30);
/// A source that answers "not found" this many times in a row has failed: a camera rebooting
/// or a publisher reconnecting upstream is back well within these tries (0.5 + 1 + 2 + 4 s),
/// a wrong path never is.
pub const NOT_FOUND_TRIES: u32 = 5;

/// Why a pulled source stopped or could not be opened. Each variant is one thing an operator can
/// act on; the text says what happened in the protocol's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The URL cannot be used: malformed, or missing a part. Retrying cannot help.
    #[error("{0}")]
    BadUrl(String),
    /// A kind of source this build does not open (a scheme with no client yet). Retrying cannot
    /// help.
    #[error("{0}")]
    Unsupported(String),
    /// The source could not be reached: name resolution, connection refused or unreachable, or
    /// no answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// The source answered but refused the stream (rejected for another reason than those
    /// below).
    #[error("{0}")]
    Refused(String),
    /// The source refused the credentials (RTSP 401 or 403). Retrying cannot help.
    #[error("{0}")]
    Unauthorized(String),
    /// The source has no such stream (RTSP 404, RTMP `NetStream.Play.StreamNotFound`): retried
    /// [`NOT_FOUND_TRIES`] times in a row, then failed.
    #[error("{0}")]
    NotFound(String),
    /// The source stopped sending for too long.
    #[error("{0}")]
    Stalled(String),
    /// The source sent something that is not the protocol, or that exceeds a limit.
    #[error("{0}")]
    Protocol(String),
    /// The connection broke.
    #[error("{0}")]
    Io(String),
    /// The stream could not be published here (its name is live already, or the hub is full).
    #[error("cannot publish the pulled stream: {0}")]
    Publish(PublishRefused),
    /// The source ended the stream (the opener returned without an error).
    #[error("the source ended the stream")]
    Ended,
}

impl SourceError {
    /// True when trying again cannot help (the URL itself is wrong or not supported).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SourceError::BadUrl(_) | SourceError::Unsupported(_) | SourceError::Unauthorized(_)
        )
    }
}

/// How an opener says "connected, frames are flowing", so that the supervisor can tell a source
/// that is still connecting from one that runs. Reporting more than once does nothing.
pub struct Connected(Option<Box<dyn FnOnce() + Send>>);

impl Connected {
    /// Runs `on_connected` at the first report.
    pub fn new(on_connected: impl FnOnce() + Send + 'static) -> Connected {
        Connected(Some(Box::new(on_connected)))
    }

    /// A report nobody listens to.
    pub fn ignored() -> Connected {
        Connected(None)
    }

    /// Frames are flowing.
    pub fn report(&mut self) {
        if let Some(on_connected) = self.0.take() {
            on_connected();
        }
    }
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Connected(waiting)"
        } else {
            "Connected(reported)"
        })
    }
}

/// What an opener is asked to do.
pub struct SourceRequest {
    /// The source, e.g. `rtmp://camera.example.com/live/cam1`.
    pub url: String,
    /// Where the stream is published.
    pub sink: Arc<dyn StreamSink>,
    /// The name it is published under.
    pub key: StreamKey,
    /// Cancelled when the source should stop; the opener then returns `Ok(())`.
    pub cancel: CancellationToken,
    /// Reported once frames flow.
    pub connected: Connected,
}

/// The future of one run of a source.
pub type SourceFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send + 'a>>;

/// Opens a URL and publishes its video, until the source ends or fails. The server fills this
/// with ingest's pull clients (core cannot import ingest).
pub trait SourceOpener: Send + Sync {
    /// Connects to `request.url`, publishes what it plays as `request.key` into
    /// `request.sink`, and calls `request.connected.report()` once frames flow. Returns `Ok(())`
    /// when the source ends the stream or `request.cancel` is cancelled, and the reason when it
    /// fails. Dropping the future stops the source too (its stream is unpublished).
    fn open(&self, request: SourceRequest) -> SourceFuture<'_>;

    /// Checks that `url` is one this opener can open, without opening it (a pull job's URL is
    /// checked when the job is submitted). Any URL, unless the opener says otherwise.
    fn check(&self, _url: &str) -> Result<(), SourceError> {
        Ok(())
    }

    /// `url` as it may be shown in the API and logs: its password hidden.
    fn redact(&self, url: &str) -> String {
        url.to_string()
    }
}

/// What a supervised source is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Opening the source; no frames yet.
    Connecting,
    /// Frames are flowing.
    Running {
        /// When they started, on the supervisor's clock ([`Clock::now`]).
        since: Duration,
        /// The same as Unix milliseconds ([`Clock::unix_ms`]).
        since_unix_ms: i64,
    },
    /// The last run ended or failed; the next try is waiting.
    Retrying {
        /// Why the last run stopped ([`SourceError::Ended`] when the source ended the stream).
        error: SourceError,
        /// How long the wait is.
        delay: Duration,
        /// When the next try is, on the supervisor's clock ([`Clock::now`]).
        next_try: Duration,
        /// The same as Unix milliseconds ([`Clock::unix_ms`]).
        next_try_unix_ms: i64,
    },
    /// The source cannot work (a [`SourceError::is_permanent`] error); nothing more is tried.
    Failed {
        /// Why.
        error: SourceError,
    },
    /// Stopped by its cancellation token.
    Stopped,
}

/// A supervised source's state and counters, as its watch channel carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// What it is doing.
    pub state: SourceState,
    /// How many times it was opened again after the first try.
    pub reconnects: u64,
}

/// The delay before the next try after `failures` consecutive runs that failed or were short:
/// [`FIRST_RETRY_DELAY`] doubled `failures` times, at most [`MAX_RETRY_DELAY`], less
/// `jitter` (0 to 1) times [`RETRY_JITTER`] of it, to the millisecond.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let factor = 1u32.checked_shl(failures).unwrap_or(u32::MAX);
    let base = FIRST_RETRY_DELAY
        .saturating_mul(factor)
        .min(MAX_RETRY_DELAY);
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    // Within 0..=base_ms: the fraction is clamped to 0..=1 and RETRY_JITTER is below 1.
    let off_ms = (base_ms as f64 * RETRY_JITTER * jitter.clamp(0.0, 1.0)).round() as u64;
    Duration::from_millis(base_ms.saturating_sub(off_ms))
}

/// Where the jitter comes from: a number from 0 to 1 per delay.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// Random jitter: SplitMix64 seeded from the process's random hash keys (no dependency; the
/// numbers only need to differ between sources and processes).
fn random_jitter() -> Jitter {
    use std::hash::{BuildHasher, Hasher};
    let mut state = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Box::new(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits as a fraction of 2^53: uniform in 0..1.
        (z >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Keeps one pulled source running (see the module docs).
pub struct SourceSupervisor {
    opener: Arc<dyn SourceOpener>,
    url: String,
    sink: Arc<dyn StreamSink>,
    key: StreamKey,
    clock: Arc<dyn Clock>,
    jitter: Jitter,
}

/// A running supervisor: its status, and how to stop it.
#[derive(Debug)]
pub struct SourceHandle {
    status: watch::Receiver<SourceStatus>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SourceHandle {
    /// A receiver of every change of the status.
    pub fn status(&self) -> watch::Receiver<SourceStatus> {
        self.status.clone()
    }

    /// The status now.
    pub fn current(&self) -> SourceStatus {
        self.status.borrow().clone()
    }

    /// Stops the source (its stream is unpublished) and waits until the supervisor has ended.
    pub async fn stop(self) {
        self.cancel.cancel();
        // The task only ends by returning; a panic in it has been logged by tokio already.
        let _ = self.task.await;
    }
}

impl SourceSupervisor {
    /// A supervisor that opens `url` with `opener` and publishes it as `key` into `sink`, with
    /// random jitter.
    pub fn new(
        opener: Arc<dyn SourceOpener>,
        url: impl Into<String>,
        sink: Arc<dyn StreamSink>,
        key: StreamKey,
        clock: Arc<dyn Clock>,
    ) -> SourceSupervisor {
        SourceSupervisor {
            opener,
            url: url.into(),
            sink,
            key,
            clock,
            jitter: random_jitter(),
        }
    }

    /// Takes the jitter from `jitter` instead (tests pin it).
    pub fn with_jitter(mut self, jitter: impl FnMut() -> f64 + Send + 'static) -> Self {
        self.jitter = Box::new(jitter);
        self
    }

    /// Runs the source on `lifecycle`'s tracker until `lifecycle`'s token or the handle stops it.
    pub fn spawn(self, lifecycle: &Lifecycle) -> SourceHandle {
        let (tx, status) = watch::channel(SourceStatus {
            state: SourceState::Connecting,
            reconnects: 0,
        });
        let cancel = lifecycle.token.child_token();
        let task = lifecycle.spawn(self.run(cancel.clone(), tx));
        SourceHandle {
            status,
            cancel,
            task,
        }
    }

    async fn run(mut self, cancel: CancellationToken, status: watch::Sender<SourceStatus>) {
        // Runs in a row that failed or were shorter than STABLE_RUN.
        let mut failures: u32 = 0;
        // "Not found" answers in a row (see NOT_FOUND_TRIES).
        let mut not_found: u32 = 0;
        let mut reconnects: u64 = 0;
        loop {
            status.send_replace(SourceStatus {
                state: SourceState::Connecting,
                reconnects,
            });
            info!(stream = %self.key, reconnects, "pulled source connecting");
            let connected = {
                let status = status.clone();
                let clock = self.clock.clone();
                let key = self.key.clone();
                Connected::new(move || {
                    let (since, since_unix_ms) = (clock.now(), clock.unix_ms());
                    info!(stream = %key, "pulled source running");
                    status.send_modify(|s| {
                        s.state = SourceState::Running {
                            since,
                            since_unix_ms,
                        }
                    });
                })
            };
            let request = SourceRequest {
                url: self.url.clone(),
                sink: self.sink.clone(),
                key: self.key.clone(),
                cancel: cancel.child_token(),
                connected,
            };
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                result = self.opener.open(request) => result,
            };
            // An opener that returned because it saw the token was stopped, not ended.
            if cancel.is_cancelled() {
                break;
            }
            let now = self.clock.now();
            if let SourceState::Running { since, .. } = status.borrow().state {
                if now.saturating_sub(since) >= STABLE_RUN {
                    failures = 0;
                }
            }
            let error = result.err().unwrap_or(SourceError::Ended);
            not_found = match error {
                SourceError::NotFound(_) => not_found.saturating_add(1),
                _ => 0,
            };
            if error.is_permanent() || not_found >= NOT_FOUND_TRIES {
                warn!(stream = %self.key, %error, "pulled source failed; not retrying");
                status.send_replace(SourceStatus {
                    state: SourceState::Failed { error },
                    reconnects,
                });
                return;
            }
            let delay = retry_delay(failures, (self.jitter)());
            failures = failures.saturating_add(1);
            let next_try = now.saturating_add(delay);
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            warn!(stream = %self.key, %error, retry_in_ms = delay_ms, "pulled source stopped; retrying");
            status.send_replace(SourceStatus {
                state: SourceState::Retrying {
                    error,
                    delay,
                    next_try,
                    next_try_unix_ms: self.clock.unix_ms().saturating_add(delay_ms),
                },
                reconnects,
            });
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                () = self.clock.sleep_until(next_try) => {}
            }
            reconnects += 1;
        }
        info!(stream = %self.key, "pulled source stopped");
        status.send_modify(|s| s.state = SourceState::Stopped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::hub::{Hub, HubConfig, HubSink};
    use tokio::sync::{mpsc, oneshot};

    /// One call of the fake opener: the test decides how it goes.
    struct Attempt {
        url: String,
        key: StreamKey,
        connected: Connected,
        finish: oneshot::Sender<Result<(), SourceError>>,
    }

    /// Hands every open to the test and runs until the test finishes it.
    struct FakeOpener {
        attempts: mpsc::UnboundedSender<Attempt>,
    }

    impl SourceOpener for FakeOpener {
        fn open(&self, request: SourceRequest) -> SourceFuture<'_> {
            let (finish, outcome) = oneshot::channel();
            let attempt = Attempt {
                url: request.url,
                key: request.key,
                connected: request.connected,
                finish,
            };
            let sent = self.attempts.send(attempt).is_ok();
            Box::pin(async move {
                assert!(sent, "the test stopped listening");
                outcome.await.unwrap_or(Ok(()))
            })
        }
    }

    struct Setup {
        clock: Arc<ManualClock>,
        life: Lifecycle,
        handle: SourceHandle,
        status: watch::Receiver<SourceStatus>,
        attempts: mpsc::UnboundedReceiver<Attempt>,
    }

    fn key() -> StreamKey {
        StreamKey::new("_default", "pull", "cam1").unwrap()
    }

    fn setup(jitter: f64) -> Setup {
        let clock = Arc::new(ManualClock::default());
        let (tx, attempts) = mpsc::unbounded_channel();
        let life = Lifecycle::new();
        let hub = Hub::with_clock(HubConfig::default(), clock.clone());
        let handle = SourceSupervisor::new(
            Arc::new(FakeOpener { attempts: tx }),
            "rtmp://cam.example.com/live/cam1",
            Arc::new(HubSink(hub)),
            key(),
            clock.clone(),
        )
        .with_jitter(move || jitter)
        .spawn(&life);
        let status = handle.status();
        Setup {
            clock,
            life,
            handle,
            status,
            attempts,
        }
    }

    impl Setup {
        async fn next_attempt(&mut self) -> Attempt {
            let a = self.attempts.recv().await.expect("an attempt");
            assert_eq!(a.url, "rtmp://cam.example.com/live/cam1");
            assert_eq!(a.key, key());
            a
        }

        async fn wait_for(&mut self, what: &str, f: impl Fn(&SourceState) -> bool) -> SourceStatus {
            let s = self
                .status
                .wait_for(|s| f(&s.state))
                .await
                .unwrap_or_else(|_| panic!("the supervisor ended before {what}"));
            s.clone()
        }

        async fn retrying(&mut self) -> SourceStatus {
            self.wait_for("retrying", |s| matches!(s, SourceState::Retrying { .. }))
                .await
        }

        /// Checks a Retrying status against the delay it should have, and moves the clock to
        /// just before the next try (no try yet), then to it.
        async fn expect_retry(&mut self, error: SourceError, delay: Duration, reconnects: u64) {
            let s = self.retrying().await;
            let now = self.clock.now();
            let now_unix = self.clock.unix_ms();
            assert_eq!(
                s,
                SourceStatus {
                    state: SourceState::Retrying {
                        error,
                        delay,
                        next_try: now + delay,
                        next_try_unix_ms: now_unix + delay.as_millis() as i64,
                    },
                    reconnects,
                }
            );
            self.clock.advance(delay - Duration::from_millis(1));
            settle().await;
            assert!(
                self.attempts.try_recv().is_err(),
                "reopened before the delay of {delay:?} had passed"
            );
            self.clock.advance(Duration::from_millis(1));
        }
    }

    /// Lets the supervisor run as far as it can without the clock moving.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// The delay the constants give for `failures` earlier failures, with jitter `r`.
    fn expected_delay(failures: u32, r: f64) -> Duration {
        let base = (FIRST_RETRY_DELAY * 2u32.pow(failures)).min(MAX_RETRY_DELAY);
        let base_ms = base.as_millis() as f64;
        Duration::from_millis((base_ms - (base_ms * RETRY_JITTER * r).round()) as u64)
    }

    #[test]
    fn delays_double_from_the_first_up_to_the_cap_less_the_jitter() {
        assert_eq!(retry_delay(0, 0.0), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(1, 0.0), FIRST_RETRY_DELAY * 2);
        assert_eq!(retry_delay(3, 0.0), FIRST_RETRY_DELAY * 8);
        assert_eq!(retry_delay(20, 0.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX, 0.0), MAX_RETRY_DELAY);
        // The jitter takes off at most RETRY_JITTER of the delay, never adds.
        let most_off = (MAX_RETRY_DELAY.as_millis() as f64 * (1.0 - RETRY_JITTER)).round();
        assert_eq!(retry_delay(20, 1.0).as_millis() as f64, most_off);
        assert_eq!(retry_delay(0, 0.5), expected_delay(0, 0.5));
        assert!(retry_delay(0, 0.5) < FIRST_RETRY_DELAY);
        // Out-of-range jitter is clamped.
        assert_eq!(retry_delay(0, -3.0), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(0, 7.0), retry_delay(0, 1.0));
        // The default jitter stays in range.
        let mut j = random_jitter();
        assert!((0..1000).map(|_| j()).all(|r| (0.0..1.0).contains(&r)));
    }

    #[tokio::test]
    async fn a_source_that_fails_twice_then_runs_is_retried_with_backoff() {
        let mut t = setup(0.5);
        let a = t.next_attempt().await;
        assert_eq!(
            t.handle.current(),
            SourceStatus {
                state: SourceState::Connecting,
                reconnects: 0
            }
        );
        let refused = SourceError::Unreachable("connection refused".into());
        a.finish.send(Err(refused.clone())).unwrap();
        t.expect_retry(refused, expected_delay(0, 0.5), 0).await;

        let b = t.next_attempt().await;
        assert_eq!(t.handle.current().state, SourceState::Connecting);
        assert_eq!(t.handle.current().reconnects, 1);
        let stalled = SourceError::Stalled("sent nothing for 20 s".into());
        b.finish.send(Err(stalled.clone())).unwrap();
        t.expect_retry(stalled, expected_delay(1, 0.5), 1).await;

        let mut c = t.next_attempt().await;
        assert_eq!(
            t.handle.current(),
            SourceStatus {
                state: SourceState::Connecting,
                reconnects: 2
            }
        );
        c.connected.report();
        let running = SourceState::Running {
            since: t.clock.now(),
            since_unix_ms: t.clock.unix_ms(),
        };
        assert_eq!(
            t.handle.current(),
            SourceStatus {
                state: running,
                reconnects: 2
            }
        );
        // It stays running while the source runs.
        t.clock.advance(MAX_RETRY_DELAY * 4);
        settle().await;
        assert!(t.attempts.try_recv().is_err());
        assert!(matches!(
            t.handle.current().state,
            SourceState::Running { .. }
        ));
        t.handle.stop().await;
        assert!(c.finish.is_closed(), "the running source was not dropped");
        assert_eq!(t.status.borrow().state, SourceState::Stopped);
        assert_eq!(t.status.borrow().reconnects, 2);
    }

    #[tokio::test]
    async fn a_source_that_ends_is_reopened_and_a_long_run_resets_the_backoff() {
        let mut t = setup(0.0);
        let boom = SourceError::Protocol("garbage".into());
        t.next_attempt()
            .await
            .finish
            .send(Err(boom.clone()))
            .unwrap();
        t.expect_retry(boom.clone(), FIRST_RETRY_DELAY, 0).await;
        t.next_attempt()
            .await
            .finish
            .send(Err(boom.clone()))
            .unwrap();
        t.expect_retry(boom, FIRST_RETRY_DELAY * 2, 1).await;

        // A run long enough to count as a success, then the source ends the stream.
        let mut a = t.next_attempt().await;
        a.connected.report();
        t.clock.advance(STABLE_RUN);
        a.finish.send(Ok(())).unwrap();
        t.expect_retry(SourceError::Ended, FIRST_RETRY_DELAY, 2)
            .await;

        // A short run does not reset it: the delay doubles on.
        let mut b = t.next_attempt().await;
        b.connected.report();
        t.clock.advance(STABLE_RUN - Duration::from_millis(1));
        b.finish.send(Ok(())).unwrap();
        t.expect_retry(SourceError::Ended, FIRST_RETRY_DELAY * 2, 3)
            .await;

        let c = t.next_attempt().await;
        assert_eq!(t.handle.current().reconnects, 4);
        t.life.stop().await;
        assert!(c.finish.is_closed());
        assert_eq!(t.status.borrow().state, SourceState::Stopped);
    }

    #[tokio::test]
    async fn cancellation_stops_it_while_connecting() {
        let mut t = setup(0.0);
        let a = t.next_attempt().await;
        assert_eq!(t.handle.current().state, SourceState::Connecting);
        t.handle.stop().await;
        assert!(
            a.finish.is_closed(),
            "the connecting source was not dropped"
        );
        assert_eq!(t.status.borrow().state, SourceState::Stopped);
    }

    #[tokio::test]
    async fn cancellation_stops_it_while_running() {
        let mut t = setup(0.0);
        let mut a = t.next_attempt().await;
        a.connected.report();
        assert!(matches!(
            t.handle.current().state,
            SourceState::Running { .. }
        ));
        // Through the server's lifecycle this time: its token, then its tracker drains.
        t.life.stop().await;
        assert!(a.finish.is_closed());
        assert_eq!(t.status.borrow().state, SourceState::Stopped);
    }

    #[tokio::test]
    async fn cancellation_stops_it_while_waiting_to_retry() {
        let mut t = setup(0.0);
        t.next_attempt()
            .await
            .finish
            .send(Err(SourceError::Io("reset".into())))
            .unwrap();
        t.retrying().await;
        t.handle.stop().await;
        assert_eq!(t.status.borrow().state, SourceState::Stopped);
        // The clock passing the retry time opens nothing.
        t.clock.advance(MAX_RETRY_DELAY);
        settle().await;
        assert!(t.attempts.try_recv().is_err());
        assert_eq!(t.status.borrow().reconnects, 0);
    }

    #[tokio::test]
    async fn a_bad_url_fails_without_retrying() {
        let mut t = setup(0.0);
        let bad = SourceError::BadUrl("no stream name".into());
        t.next_attempt()
            .await
            .finish
            .send(Err(bad.clone()))
            .unwrap();
        let s = t
            .wait_for("failed", |s| matches!(s, SourceState::Failed { .. }))
            .await;
        assert_eq!(s.state, SourceState::Failed { error: bad });
        t.clock.advance(MAX_RETRY_DELAY);
        settle().await;
        assert!(t.attempts.try_recv().is_err());
        // The task has ended; stopping it is still fine.
        t.handle.stop().await;
    }
}
