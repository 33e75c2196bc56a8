//! The on-demand clients: K threads, each with one keep-alive connection, asking
//! `GET /v1/streams/live/s{i}/snapshot.jpg` for a random stream i, either back to back (the
//! throughput) or paced (latency at light load). Latency is taken from sending the request to
//! having read the whole body; `X-Livesnap-Cache` (`hit` / `miss`) sorts it.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::Conn;

/// How the clients ask.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub clients: usize,
    pub streams: usize,
    /// `None`: back to back. `Some(d)`: each client sends one request every `d`.
    pub pace: Option<Duration>,
    /// The API key each request carries, if the server wants one.
    pub auth: Option<&'static str>,
    /// The local address the clients connect from (`None`: the system's choice, 127.0.0.1).
    pub source: Option<std::net::IpAddr>,
}

/// What the clients saw.
#[derive(Default, Debug)]
pub struct Outcome {
    /// Latencies (ms) of 200 responses that said `hit`.
    pub hits: Vec<f64>,
    /// Latencies (ms) of 200 responses that said `miss`.
    pub misses: Vec<f64>,
    /// 200 responses with no or an unknown `X-Livesnap-Cache`.
    pub unlabelled: u64,
    /// Failed requests and non-200 responses.
    pub errors: u64,
    pub first_error: Option<String>,
    pub bytes: u64,
    /// Seconds from the start to the last client's end.
    pub elapsed: f64,
}

impl Outcome {
    pub fn ok(&self) -> u64 {
        self.hits.len() as u64 + self.misses.len() as u64 + self.unlabelled
    }

    fn merge(&mut self, o: Outcome) {
        self.hits.extend(o.hits);
        self.misses.extend(o.misses);
        self.unlabelled += o.unlabelled;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.bytes += o.bytes;
    }
}

/// Clients running until their deadline.
pub struct Running {
    threads: Vec<JoinHandle<Outcome>>,
    started: Instant,
}

/// Starts the clients against `addr` for `duration`.
pub fn start(addr: &str, plan: Plan, duration: Duration) -> Running {
    let started = Instant::now();
    let deadline = started + duration;
    let threads = (0..plan.clients)
        .map(|c| {
            let addr = addr.to_string();
            std::thread::spawn(move || client(&addr, plan, c, deadline))
        })
        .collect();
    Running { threads, started }
}

impl Running {
    /// Waits for the clients (they stop at the deadline) and merges what they saw.
    pub fn finish(self) -> Outcome {
        let mut all = Outcome::default();
        for t in self.threads {
            match t.join() {
                Ok(o) => all.merge(o),
                Err(_) => {
                    all.errors += 1;
                    all.first_error
                        .get_or_insert("a client thread panicked".into());
                }
            }
        }
        all.elapsed = self.started.elapsed().as_secs_f64();
        all
    }
}

fn client(addr: &str, plan: Plan, index: usize, deadline: Instant) -> Outcome {
    let mut out = Outcome::default();
    let mut conn = Conn::with_auth(addr, plan.auth).from_source(plan.source);
    let mut rng = XorShift::new(index as u64);
    // Paced clients start spread over one period, not all at once.
    let mut next = Instant::now()
        + plan.pace.map_or(Duration::ZERO, |p| {
            p * index as u32 / plan.clients.max(1) as u32
        });
    loop {
        if let Some(pace) = plan.pace {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += pace;
        }
        if Instant::now() >= deadline {
            break;
        }
        let stream = rng.below(plan.streams.max(1) as u64);
        let path = format!("/v1/streams/live/s{stream}/snapshot.jpg");
        let t = Instant::now();
        let result = conn.get(&path);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(r) if r.status == 200 => {
                out.bytes += r.body.len() as u64;
                match r.header("x-livesnap-cache") {
                    Some("hit") => out.hits.push(ms),
                    Some("miss") => out.misses.push(ms),
                    _ => out.unlabelled += 1,
                }
            }
            Ok(r) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| {
                    format!(
                        "GET {path}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )
                });
            }
            Err(e) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("GET {path}: {e}"));
                // Do not spin on a dead server.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    out
}

/// xorshift64*: enough randomness to pick streams, no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        XorShift((seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
