//! Webhooks: `snapshot.stored`, `stream.published`, `stream.unpublished`, `job.state_changed`, POSTed as JSON to a
//! template's `callback_url` and/or the global one, signed, retried with exponential backoff,
//! and kept in a delivery log. Nothing here runs on the ingest or snapshot path: events are
//! queued without waiting, and a full queue drops (and counts) rather than blocks.
//!
//! At least once, across restarts: each delivery is written to the index's callback queue
//! before its first try and removed once it is delivered or out of tries. At shutdown the
//! deliveries still waiting are written there too, and the next start sends them, with the
//! same delivery id (`X-Livesnap-Delivery`) and body (whose `id` names the event), so a
//! receiver that saw one before the restart can tell it is the same.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use livesnap_core::auto::EventSink;
use livesnap_core::clock::Clock;
use livesnap_core::hub::LiveStream;
use livesnap_core::jobs::{self, JobState};
use livesnap_core::lifecycle::Lifecycle;
use livesnap_store::index::{new_id, Index, QueuedDelivery, SnapshotRow};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

/// Events waiting to be sent; past this, new ones are dropped and counted.
pub const QUEUE: usize = 10_000;
/// Deliveries kept in the log.
pub const LOG_ENTRIES: usize = 1000;
/// Deliveries in flight at once.
pub const CONCURRENCY: usize = 16;
/// Time allowed for one POST.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Settings of the callbacks.
#[derive(Clone)]
pub struct CallbackConfig {
    /// Receives every event, besides templates' own URLs.
    pub global_url: Option<String>,
    /// HMAC-SHA256 key for `X-Livesnap-Signature`; unsigned when `None`.
    pub secret: Option<String>,
    /// Tries per delivery (the first included).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub first_backoff: Duration,
    /// Base URL put in `snapshot.stored` events for fetching the picture.
    pub public_url: String,
    /// Event times, signatures and backoff run on this clock.
    pub clock: Arc<dyn Clock>,
}

/// One delivery as the log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Delivery id, also sent as `X-Livesnap-Delivery`; the same across restarts.
    pub id: String,
    /// Event type.
    pub event: String,
    /// Target URL.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: &'static str,
    /// Tries so far.
    pub attempts: u32,
    /// HTTP status of the last try.
    pub last_status: Option<u16>,
    /// Error of the last try.
    pub last_error: Option<String>,
    /// When the event was queued (RFC 3339).
    pub created_at: String,
    /// The event body.
    pub body: Value,
}

struct Job {
    delivery: QueuedDelivery,
    /// Already in the index's callback queue (loaded from it at start).
    persisted: bool,
}

/// Deliveries by outcome, for the API and metrics.
#[derive(Debug, Default, Serialize)]
pub struct DeliveryCounters {
    /// Delivered (a 2xx answer).
    pub delivered: AtomicU64,
    /// Tries that failed and were retried.
    pub retried: AtomicU64,
    /// Gave up after the last try.
    pub failed: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Left in the index's queue at shutdown, for the next start.
    pub left_for_next_start: AtomicU64,
}

/// The webhook sender.
pub struct Callbacks {
    config: CallbackConfig,
    tx: mpsc::Sender<Job>,
    log: Mutex<VecDeque<Delivery>>,
    index: Arc<Index>,
    /// Deliveries by outcome.
    pub counters: DeliveryCounters,
}

/// Computes the signature header value: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn sign(secret: &str, unix: u64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{unix}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix},v1={hex}")
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Callbacks {
    /// Starts the sender on `life`, first queueing the deliveries an earlier run left in the
    /// index. When `life`'s token is cancelled, the deliveries still waiting (and those being
    /// tried) stay in the index for the next start.
    pub async fn start(
        config: CallbackConfig,
        index: Arc<Index>,
        life: &Lifecycle,
    ) -> Result<Arc<Callbacks>, livesnap_store::Error> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let left = index.queued_deliveries(QUEUE as u32).await?;
        let cb = Arc::new(Callbacks {
            config,
            tx,
            log: Mutex::new(VecDeque::new()),
            index,
            counters: DeliveryCounters::default(),
        });
        if !left.is_empty() {
            info!(
                deliveries = left.len(),
                "callbacks: sending the deliveries left by the last run"
            );
        }
        for delivery in left {
            let body = serde_json::from_str(&delivery.body).unwrap_or(Value::Null);
            cb.log_queued(&delivery, body);
            let job = Job {
                delivery,
                persisted: true,
            };
            // The channel holds QUEUE jobs and at most QUEUE were loaded.
            let _ = cb.tx.try_send(job);
        }
        life.spawn(cb.clone().run(rx, life.clone()));
        Ok(cb)
    }

    fn log_queued(&self, d: &QueuedDelivery, body: Value) {
        let created = UNIX_EPOCH + Duration::from_millis(u64::try_from(d.created_ms).unwrap_or(0));
        let delivery = Delivery {
            id: d.id.clone(),
            event: d.event.clone(),
            url: d.url.clone(),
            state: "pending",
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: humantime::format_rfc3339_millis(created).to_string(),
            body,
        };
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= LOG_ENTRIES {
            log.pop_front();
        }
        log.push_back(delivery);
    }

    /// The delivery log, newest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Delivery)) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = log.iter_mut().rev().find(|d| d.id == id) {
            f(d);
        }
    }

    /// Queues `data` as event `event` to `template_url` and the global URL.
    pub fn emit(&self, event: &str, data: Value, template_url: Option<&str>) {
        let deliveries = self.deliveries_of(event, data, template_url);
        self.send(deliveries, false);
    }

    /// The deliveries of one event: one body (with the event's id) to the template's URL and
    /// the global one.
    fn deliveries_of(
        &self,
        event: &str,
        data: Value,
        template_url: Option<&str>,
    ) -> Vec<QueuedDelivery> {
        let mut urls: Vec<&str> = template_url.into_iter().collect();
        if let Some(g) = self.config.global_url.as_deref() {
            if !urls.contains(&g) {
                urls.push(g);
            }
        }
        if urls.is_empty() {
            return Vec::new();
        }
        let now = self.config.clock.wall();
        let body = json!({
            "id": new_id(unix_ms(now)),
            "event": event,
            "time": humantime::format_rfc3339_millis(now).to_string(),
            "data": data,
        });
        let text = body.to_string();
        urls.into_iter()
            .map(|url| QueuedDelivery {
                id: new_id(unix_ms(now)),
                event: event.to_string(),
                url: url.to_string(),
                body: text.clone(),
                created_ms: unix_ms(now),
            })
            .collect()
    }

    /// Hands deliveries to the sender; `persisted` when they are in the index's queue already.
    fn send(&self, deliveries: Vec<QueuedDelivery>, persisted: bool) {
        for delivery in deliveries {
            let body = serde_json::from_str(&delivery.body).unwrap_or(Value::Null);
            self.log_queued(&delivery, body);
            let (id, event, url) = (
                delivery.id.clone(),
                delivery.event.clone(),
                delivery.url.clone(),
            );
            if self
                .tx
                .try_send(Job {
                    delivery,
                    persisted,
                })
                .is_err()
            {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.update(&id, |d| {
                    d.state = "failed";
                    d.last_error = Some("callback queue full".into());
                });
                if persisted {
                    // Still in the index's queue: the next start sends it.
                    warn!(%event, %url, "callback queue full; the delivery waits in the index for the next start");
                } else {
                    warn!(%event, %url, "callback dropped: the queue is full");
                }
            }
        }
    }

    /// Writes a delivery to the index's queue unless it is there already.
    async fn persist(&self, job: &mut Job) {
        if job.persisted {
            return;
        }
        match self.index.queue_delivery(&job.delivery).await {
            Ok(()) => job.persisted = true,
            Err(e) => {
                warn!(id = %job.delivery.id, error = %e, "callback not recorded in the index; a restart before it is delivered loses it")
            }
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Job>, life: Lifecycle) {
        let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot build the HTTP client; callbacks are off");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let token = life.token.clone();
        loop {
            let mut job = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
            };
            self.persist(&mut job).await;
            let permit = tokio::select! {
                biased;
                _ = token.cancelled() => {
                    self.left(&job);
                    break;
                }
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let me = self.clone();
            let client = client.clone();
            let token = token.clone();
            life.spawn(async move {
                tokio::select! {
                    // A try cut off here stays queued in the index: sent again next start.
                    _ = token.cancelled() => me.left(&job),
                    _ = me.deliver(&client, &job) => {}
                }
                drop(permit);
            });
        }
        // Shutdown: what is still waiting goes to the index for the next start.
        rx.close();
        while let Ok(mut job) = rx.try_recv() {
            self.persist(&mut job).await;
            self.left(&job);
        }
        let left = self.counters.left_for_next_start.load(Ordering::Relaxed);
        if left > 0 {
            info!(
                deliveries = left,
                "callbacks: left in the index's queue; the next start delivers them"
            );
        }
    }

    fn left(&self, job: &Job) {
        if job.persisted {
            self.counters
                .left_for_next_start
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(id = %job.delivery.id, url = %job.delivery.url, "callback lost at shutdown: it could not be recorded in the index");
        }
    }

    async fn deliver(&self, client: &reqwest::Client, job: &Job) {
        let job = &job.delivery;
        let mut backoff = self.config.first_backoff;
        for attempt in 1..=self.config.max_attempts.max(1) {
            let unix = u64::try_from(self.config.clock.unix_ms() / 1000).unwrap_or(0);
            let mut req = client
                .post(&job.url)
                .header("content-type", "application/json")
                .header(
                    "user-agent",
                    concat!("livesnap/", env!("CARGO_PKG_VERSION")),
                )
                .header("x-livesnap-delivery", &job.id)
                .body(job.body.clone());
            if let Some(secret) = &self.config.secret {
                req = req.header("x-livesnap-signature", sign(secret, unix, &job.body));
            }
            let (status, error) = match req.send().await {
                Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
                Ok(r) => (
                    Some(r.status().as_u16()),
                    Some(format!("HTTP {}", r.status())),
                ),
                Err(e) => (None, Some(e.to_string())),
            };
            let ok = error.is_none();
            self.update(&job.id, |d| {
                d.attempts = attempt;
                d.last_status = status;
                d.last_error = error.clone();
                if ok {
                    d.state = "delivered";
                }
            });
            if ok {
                debug!(url = %job.url, attempt, "callback delivered");
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                self.done(&job.id).await;
                return;
            }
            warn!(url = %job.url, attempt, error = ?error, "callback failed");
            if attempt < self.config.max_attempts {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                self.config.clock.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        self.update(&job.id, |d| d.state = "failed");
        self.done(&job.id).await;
    }

    async fn done(&self, id: &str) {
        if let Err(e) = self.index.delivery_done(id).await {
            warn!(id, error = %e, "callback done but still queued in the index; the next start sends it again");
        }
    }
}

/// The JSON of a snapshot row in an event, with a URL to fetch the picture.
pub fn snapshot_json(row: &SnapshotRow, public_url: &str) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["url"] = json!(snapshot_url(public_url, &row.id));
    v
}

/// Where a stored picture is fetched: `{public_url}/v1/snapshots/{id}/image`.
pub fn snapshot_url(public_url: &str, id: &str) -> String {
    format!(
        "{}/v1/snapshots/{id}/image",
        public_url.trim_end_matches('/')
    )
}

fn stream_json(stream: &LiveStream) -> Value {
    json!({
        "domain": stream.key.domain,
        "app": stream.key.app,
        "stream": stream.key.stream,
        "publisher": stream.publisher.addr.to_string(),
        "protocol": stream.publisher.protocol,
        "media_session_id": stream.media_session_id(),
    })
}

impl EventSink for Callbacks {
    fn stored_deliveries(
        &self,
        row: &SnapshotRow,
        callback_url: Option<&str>,
    ) -> Vec<QueuedDelivery> {
        self.deliveries_of(
            "snapshot.stored",
            snapshot_json(row, &self.config.public_url),
            callback_url,
        )
    }

    fn send_queued(&self, deliveries: Vec<QueuedDelivery>) {
        self.send(deliveries, true);
    }

    fn stream_published(&self, stream: &LiveStream) {
        let url = stream.template().and_then(|t| t.spec.callback_url.clone());
        self.emit("stream.published", stream_json(stream), url.as_deref());
    }

    fn stream_unpublished(&self, stream: &LiveStream) {
        let url = stream.template().and_then(|t| t.spec.callback_url.clone());
        self.emit("stream.unpublished", stream_json(stream), url.as_deref());
    }

    fn job_state_changed(&self, job: &jobs::Job, previous: JobState, callback_url: Option<&str>) {
        let mut data = serde_json::to_value(job).unwrap_or_default();
        data["previous_state"] = json!(previous.as_str());
        self.emit("job.state_changed", data, callback_url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // Expected value from Python: hmac.new(b"secret", b'1700000000.{"a":1}', sha256).hexdigest()
        assert_eq!(
            sign("secret", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
