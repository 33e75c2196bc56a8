//! What every scenario runs on: a `livesnap serve` on loopback ports, N publishers on the
//! benchmark's tokio runtime, CPU/PSS measurement of given processes, and the server's own
//! counters (`/v1/automation`, `/v1/streams`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flv::VideoTag;
use crate::procstat::{self, CpuSample};
use crate::{http, publisher};

/// Publisher starts are spread over this long (one GOP), so that streams' keyframes, and with
/// them due pictures and cache misses, do not all fall on the same instant as they would if
/// every camera had been switched on at once.
const STAGGER: Duration = Duration::from_secs(2);

/// What one window measured.
pub struct Measured {
    /// CPU % of `pids` (100 = one core).
    pub cpu_pct: f64,
    /// PSS of `pids` at the end of the window, MiB.
    pub pss_mib: f64,
    /// CPU % of the load generator (this process) and of everything else on the machine.
    pub bench_pct: f64,
    pub other_pct: f64,
}

impl Measured {
    /// For the notes column: what else used the cores meanwhile.
    pub fn note(&self) -> String {
        format!(
            "load generator {:.0} % CPU, other processes {:.0} %",
            self.bench_pct, self.other_pct
        )
    }
}

/// CPU over `window` and PSS at its end, summed over `pids`.
pub fn measure(pids: &[u32], window: Duration, tck: f64) -> Measured {
    let s = CpuSample::take(pids);
    std::thread::sleep(window);
    let cpu = s.since(pids, tck);
    Measured {
        cpu_pct: cpu.measured,
        pss_mib: procstat::pss_mib(pids),
        bench_pct: cpu.bench,
        other_pct: cpu.other,
    }
}

/// A running `livesnap serve` on loopback ports chosen by the OS.
pub struct Server {
    child: Child,
    pub http: String,
    pub rtmp: String,
    /// The RTSP listener (empty for a server that does not say it has one).
    pub rtsp: String,
    data_dir: PathBuf,
    log_path: PathBuf,
}

impl Server {
    /// Starts the server with its data in `data_dir` and its log beside it (`<dir>.log`).
    pub fn start(bin: &Path, data_dir: &Path) -> Result<Server, String> {
        Server::start_env(bin, data_dir, &[])
    }

    /// [`Server::start`] with environment variables (settings such as `LIVESNAP_ADMIN_KEY`).
    pub fn start_env(bin: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        let log_path = data_dir.with_extension("log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--rtmp",
                "127.0.0.1:0",
                "--rtsp",
                "127.0.0.1:0",
                "--rtsp-udp-ports",
                "any",
                "--webrtc-udp",
                "127.0.0.1:0",
                // Every publisher and client of the bench comes from 127.0.0.1.
                "--max-connections-per-address",
                "100000",
                "--max-pending-connections",
                "100000",
                "--data-dir",
            ])
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first).map_err(|e| e.to_string())?;
        // Drain the rest so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.lines() {});
        let parsed = serde_json::from_str::<serde_json::Value>(first.trim())
            .ok()
            .and_then(|v| {
                Some((
                    v["http"].as_str()?.to_string(),
                    v["rtmp"].as_str()?.to_string(),
                    v["rtsp"].as_str().unwrap_or_default().to_string(),
                ))
            });
        let Some((http, rtmp, rtsp)) = parsed else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "livesnap did not print its listening line (got {first:?}); see {}",
                log_path.display()
            ));
        };
        Ok(Server {
            http,
            rtmp,
            rtsp,
            child,
            data_dir: data_dir.to_path_buf(),
            log_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The decoder and JPEG encoder the server says it uses (`decoder=".." jpeg=".."` of its
    /// "livesnap ready" log line), to check they are the ones the limit was measured with.
    pub fn backends(&self) -> Option<(String, String)> {
        let log = std::fs::read_to_string(&self.log_path).ok()?;
        let line = strip_ansi(log.lines().find(|l| l.contains("livesnap ready"))?);
        let field = |name: &str| {
            let rest = &line[line.find(&format!("{name}=\""))? + name.len() + 2..];
            Some(rest[..rest.find('"')?].to_string())
        };
        Some((field("decoder")?, field("jpeg")?))
    }

    /// Stops the server; unless `keep`, removes its data (pictures can take gigabytes).
    pub fn stop(mut self, keep: bool) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !keep {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }

    /// POSTs JSON to the API and fails unless it answers 2xx.
    pub fn post(&self, path: &str, body: &str) -> Result<(), String> {
        http::post_ok(&self.http, path, body)
    }

    /// Sends one request to the API; the status and the body, whatever the status.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        http::request(&self.http, method, path, body)
    }

    /// GETs JSON from the API and fails unless it answers 200.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let (status, body) = http::request(&self.http, "GET", path, None)?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
    }

    /// `GET /v1/automation`: pictures stored so far and the lag figures, if the server has them.
    pub fn automation(&self) -> Result<AutoStatus, String> {
        let v = self.get_json("/v1/automation")?;
        let stored = v["counters"]["stored"]
            .as_u64()
            .ok_or_else(|| format!("/v1/automation has no counters.stored: {v}"))?;
        Ok(AutoStatus {
            stored,
            lag: Lag::parse(&v["lag_ms"]),
        })
    }

    /// `GET /v1/streams`, summed over the live streams.
    pub fn stream_totals(&self) -> Result<StreamTotals, String> {
        let v = self.get_json("/v1/streams")?;
        let streams = v["streams"]
            .as_array()
            .ok_or_else(|| format!("/v1/streams has no streams array: {v}"))?;
        let sum = |field: &str| streams.iter().filter_map(|s| s[field].as_u64()).sum();
        Ok(StreamTotals {
            live: streams.len(),
            missed: sum("auto_missed"),
            frames: sum("frames"),
        })
    }
}

/// `s` without ANSI colour sequences (ESC [ ... letter), which the server's log has.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The automation counters the benchmark reads.
pub struct AutoStatus {
    pub stored: u64,
    pub lag: Option<Lag>,
}

/// `lag_ms` of `/v1/automation`: due time to stored, over the most recent stored pictures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lag {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Lag {
    /// `None` when the server does not report lag (an older build).
    fn parse(v: &serde_json::Value) -> Option<Lag> {
        if !v.is_object() {
            return None;
        }
        Some(Lag {
            count: v["count"].as_u64().unwrap_or(0),
            p50: v["p50"].as_f64(),
            p99: v["p99"].as_f64(),
            max: v["max"].as_f64(),
        })
    }
}

/// Sums over the live streams of `/v1/streams`.
pub struct StreamTotals {
    pub live: usize,
    /// `auto_missed`: due pictures skipped (no keyframe in time) or dropped (queue full).
    pub missed: u64,
    /// Frames received.
    pub frames: u64,
}

/// N publishers (`live/s0` .. `live/s{N-1}`) running on the benchmark's tokio runtime.
pub struct Load {
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    stats: Arc<publisher::Stats>,
    started: Instant,
    /// Delay between two publishers' starts.
    step: Duration,
}

impl Load {
    /// Starts `n` publishers of `tags`, spread over [`STAGGER`], and waits `warmup` (counted
    /// from the first start; at least the stagger plus one second) for all to publish.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        rtmp: &str,
        n: usize,
        tags: Arc<Vec<VideoTag>>,
        warmup: Duration,
    ) -> Result<Load, String> {
        Self::start_each(rt, vec![rtmp.to_string(); n], tags, warmup, Duration::ZERO)
    }

    /// Like [`Load::start`], publisher i to `addrs[i]`, each retrying its connection for up to
    /// `connect_wait` (a listener that is still starting refuses it).
    pub fn start_each(
        rt: &tokio::runtime::Runtime,
        addrs: Vec<String>,
        tags: Arc<Vec<VideoTag>>,
        warmup: Duration,
        connect_wait: Duration,
    ) -> Result<Load, String> {
        let n = addrs.len();
        let stats = Arc::new(publisher::Stats::default());
        let step = STAGGER / n.max(1) as u32;
        let tasks = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| {
                let (tags, stats) = (tags.clone(), stats.clone());
                rt.spawn(async move {
                    tokio::time::sleep(step * i as u32).await;
                    let stream = format!("s{i}");
                    publisher::publish(addr, "live".into(), stream, tags, stats, connect_wait).await
                })
            })
            .collect();
        let mut load = Load {
            tasks,
            stats,
            started: Instant::now(),
            step,
        };
        std::thread::sleep(warmup.max(STAGGER + Duration::from_secs(1)));
        let up = load.stats.publishing.load(Ordering::Relaxed) as usize;
        if up < n {
            let err = load.first_error(rt);
            let waited = load.started.elapsed().as_secs_f64();
            load.stop(rt);
            return Err(format!(
                "only {up} of {n} publishers are publishing after {waited:.0} s: {err}"
            ));
        }
        Ok(load)
    }

    /// The error of the first publisher that has ended (they run until aborted, so it failed).
    fn first_error(&mut self, rt: &tokio::runtime::Runtime) -> String {
        match self.tasks.iter().position(|t| t.is_finished()) {
            Some(i) => {
                let t = self.tasks.swap_remove(i);
                match rt.block_on(t) {
                    Ok(Err(e)) => e,
                    other => format!("{other:?}"),
                }
            }
            None => "no publisher has failed yet".into(),
        }
    }

    /// Fails when a publisher died; otherwise describes the pacing.
    pub fn check(&self, n: usize) -> Result<String, String> {
        let dead = self.tasks.iter().filter(|t| t.is_finished()).count();
        if dead > 0 {
            return Err(format!(
                "{dead} of {n} publishers stopped during the window"
            ));
        }
        // Publishers started `step` apart: on average they have run this much less.
        let mean_delay = self.step.as_secs_f64() * (n as f64 - 1.0) / 2.0;
        let fps = self.stats.tags_sent.load(Ordering::Relaxed) as f64
            / (self.started.elapsed().as_secs_f64() - mean_delay)
            / n as f64;
        Ok(format!(
            "{fps:.1} fps sent per stream, max lateness {} ms",
            self.stats.max_late_ms.load(Ordering::Relaxed)
        ))
    }

    pub fn stop(self, rt: &tokio::runtime::Runtime) {
        for t in &self.tasks {
            t.abort();
        }
        rt.block_on(async {
            for t in self.tasks {
                let _ = t.await;
            }
        });
    }
}
