//! A webhook receiver (axum) on 127.0.0.1:0 that records every request and answers it as
//! scripted: the n-th request with the n-th status, or the first tries of each body with a
//! failure (a delivery and its retries).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use crate::background_runtime;

/// Longest [`Receiver::wait_event`] waits.
pub const WAIT: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// The body as JSON (panics, naming the body, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "callback body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a [`Receiver`] answers.
enum Answer {
    /// The n-th request gets the n-th status, then `then`.
    Script(Mutex<VecDeque<u16>>, u16),
    /// The first `n` requests with a given body get `status`, later ones 200.
    PerBody(Mutex<HashMap<Vec<u8>, usize>>, usize, u16),
}

impl Answer {
    fn status(&self, body: &[u8]) -> u16 {
        match self {
            Answer::Script(script, then) => script
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
                .unwrap_or(*then),
            Answer::PerBody(seen, fails, status) => {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                let n = seen.entry(body.to_vec()).or_insert(0);
                *n += 1;
                if *n <= *fails {
                    *status
                } else {
                    200
                }
            }
        }
    }
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Answer>,
}

/// The receiver; it serves until the test process ends.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Every request so far, in arrival order.
    pub requests: Arc<Mutex<Vec<Received>>>,
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let status = shared.answer.status(&body);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Received {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
            headers,
            body: body.to_vec(),
            at: Instant::now(),
            status,
        });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "ok",
    )
}

impl Receiver {
    /// Answers the n-th request with `script[n]`, then every one with `then`.
    pub fn start(script: Vec<u16>, then: u16) -> Receiver {
        Receiver::start_with(Answer::Script(Mutex::new(VecDeque::from(script)), then))
    }

    /// Answers `status` to the first `fails` requests with a given body (a delivery and its
    /// retries), then 200 to that body.
    pub fn flaky(fails: usize, status: u16) -> Receiver {
        Receiver::start_with(Answer::PerBody(Mutex::new(HashMap::new()), fails, status))
    }

    fn start_with(answer: Answer) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let shared = Shared {
            requests: Arc::default(),
            answer: Arc::new(answer),
        };
        let requests = shared.requests.clone();
        let app = axum::Router::new().fallback(record).with_state(shared);
        background_runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        Receiver { base, requests }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Received> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests grouped by body, in arrival order.
    pub fn by_body(&self) -> Vec<Vec<Received>> {
        let mut groups: Vec<Vec<Received>> = vec![];
        for r in self.all() {
            match groups.iter_mut().find(|g| g[0].body == r.body) {
                Some(g) => g.push(r),
                None => groups.push(vec![r]),
            }
        }
        groups
    }

    /// Requests whose JSON `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| {
                serde_json::from_slice::<Value>(&r.body)
                    .map(|v| v["event"] == event)
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Waits (up to [`WAIT`]) for an `event` request, on `path` if given.
    pub fn wait_event(&self, event: &str, path: Option<&str>, what: &str) -> Received {
        let give_up = Instant::now() + WAIT;
        loop {
            if let Some(r) = self
                .events(event)
                .into_iter()
                .find(|r| path.is_none_or(|p| r.path == p))
            {
                return r;
            }
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
