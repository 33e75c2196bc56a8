//! Webhooks: `snapshot.stored`, `stream.published`, `stream.unpublished`, POSTed as JSON to a
//! template's `callback_url` and/or the global one, signed, retried with exponential backoff,
//! and kept in a delivery log. Nothing here runs on the ingest or snapshot path: events are
//! queued without waiting, and a full queue drops (and counts) rather than blocks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use livesnap_core::auto::EventSink;
use livesnap_core::hub::LiveStream;
use livesnap_store::index::SnapshotRow;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

/// Events waiting to be sent; past this, new ones are dropped and counted.
pub const QUEUE: usize = 10_000;
/// Deliveries kept in the log.
pub const LOG_ENTRIES: usize = 1000;
/// Deliveries in flight at once.
pub const CONCURRENCY: usize = 16;
/// Time allowed for one POST.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the callbacks.
#[derive(Debug, Clone)]
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
}

/// One delivery as the log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Delivery id.
    pub id: u64,
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
    id: u64,
    url: String,
    body: Arc<String>,
}

/// The webhook sender.
pub struct Callbacks {
    config: CallbackConfig,
    tx: mpsc::Sender<Job>,
    log: Mutex<VecDeque<Delivery>>,
    next_id: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
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

impl Callbacks {
    /// Starts the sender.
    pub fn start(config: CallbackConfig) -> Arc<Callbacks> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let cb = Arc::new(Callbacks {
            config,
            tx,
            log: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(cb.clone().run(rx));
        cb
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

    fn update(&self, id: u64, f: impl FnOnce(&mut Delivery)) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = log.iter_mut().rev().find(|d| d.id == id) {
            f(d);
        }
    }

    /// Queues `data` as event `event` to `template_url` and the global URL.
    pub fn emit(&self, event: &str, data: Value, template_url: Option<&str>) {
        let mut urls: Vec<&str> = template_url.into_iter().collect();
        if let Some(g) = self.config.global_url.as_deref() {
            if !urls.contains(&g) {
                urls.push(g);
            }
        }
        if urls.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let body = json!({
            "event": event,
            "time": humantime::format_rfc3339_millis(now).to_string(),
            "data": data,
        });
        let text = Arc::new(body.to_string());
        for url in urls {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let delivery = Delivery {
                id,
                event: event.to_string(),
                url: url.to_string(),
                state: "pending",
                attempts: 0,
                last_status: None,
                last_error: None,
                created_at: humantime::format_rfc3339_millis(now).to_string(),
                body: body.clone(),
            };
            {
                let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
                if log.len() >= LOG_ENTRIES {
                    log.pop_front();
                }
                log.push_back(delivery);
            }
            if self
                .tx
                .try_send(Job {
                    id,
                    url: url.to_string(),
                    body: text.clone(),
                })
                .is_err()
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.update(id, |d| {
                    d.state = "failed";
                    d.last_error = Some("callback queue full".into());
                });
                warn!(event, url, "callback dropped: the queue is full");
            }
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot build the HTTP client; callbacks are off");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        while let Some(job) = rx.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            let client = client.clone();
            tokio::spawn(async move {
                me.deliver(&client, job).await;
                drop(permit);
            });
        }
    }

    async fn deliver(&self, client: &reqwest::Client, job: Job) {
        let mut backoff = self.config.first_backoff;
        for attempt in 1..=self.config.max_attempts.max(1) {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut req = client
                .post(&job.url)
                .header("content-type", "application/json")
                .header(
                    "user-agent",
                    concat!("livesnap/", env!("CARGO_PKG_VERSION")),
                )
                .body(job.body.to_string());
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
            self.update(job.id, |d| {
                d.attempts = attempt;
                d.last_status = status;
                d.last_error = error.clone();
                if ok {
                    d.state = "delivered";
                }
            });
            if ok {
                debug!(url = %job.url, attempt, "callback delivered");
                return;
            }
            warn!(url = %job.url, attempt, error = ?error, "callback failed");
            if attempt < self.config.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
        self.update(job.id, |d| d.state = "failed");
    }
}

/// The JSON of a snapshot row in an event, with a URL to fetch the picture.
pub fn snapshot_json(row: &SnapshotRow, public_url: &str) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["url"] = json!(format!(
        "{}/v1/snapshots/{}/image",
        public_url.trim_end_matches('/'),
        row.id
    ));
    v
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
    fn snapshot_stored(&self, row: &SnapshotRow, callback_url: Option<&str>) {
        self.emit(
            "snapshot.stored",
            snapshot_json(row, &self.config.public_url),
            callback_url,
        );
    }

    fn stream_published(&self, stream: &LiveStream) {
        let url = stream.template().and_then(|t| t.spec.callback_url.clone());
        self.emit("stream.published", stream_json(stream), url.as_deref());
    }

    fn stream_unpublished(&self, stream: &LiveStream) {
        let url = stream.template().and_then(|t| t.spec.callback_url.clone());
        self.emit("stream.unpublished", stream_json(stream), url.as_deref());
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
