//! livesnap-bench: runs the real `livesnap` binary and the one-ffmpeg-per-stream baseline on the
//! same generated input and stream count, and measures both from the kernel's accounting (/proc).
//!
//! Scenarios: idle server, ingest only, periodic pictures (template every 5 s), and the ffmpeg
//! baseline (a) `-vf fps=1/5` and (b) the same with `-skip_frame nokey`. Writes a Markdown table.

mod flv;
mod http;
mod procstat;
mod publisher;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use procstat::CpuSample;

/// Seconds publishers run before a window starts (connect, first keyframe, first picture).
const WARMUP_S: u64 = 3;
/// Seconds the idle server is measured.
const IDLE_S: u64 = 3;
/// Interval of the periodic template and of the ffmpeg baseline, seconds.
const PICTURE_INTERVAL_S: f64 = 5.0;

#[derive(Parser, Debug)]
#[command(about = "Benchmark livesnap against one ffmpeg process per stream")]
struct Args {
    /// Path of the livesnap binary (built with --release).
    #[arg(long)]
    livesnap: PathBuf,
    /// Short mode for CI: 2 streams, 6 s windows.
    #[arg(long)]
    short: bool,
    /// Number of streams (default 8, or 2 with --short).
    #[arg(long)]
    streams: Option<usize>,
    /// Measurement window per scenario in seconds (default 20, or 6 with --short).
    #[arg(long)]
    seconds: Option<u64>,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the temporary directory (input, server logs, pictures).
    #[arg(long)]
    keep: bool,
}

/// What one scenario measured.
struct Row {
    name: String,
    streams: usize,
    cpu_pct: f64,
    pss_mib: f64,
    /// Pictures made and due within the window, where the scenario makes pictures.
    pictures: Option<(f64, f64)>,
    note: String,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("livesnap-bench: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let n = args.streams.unwrap_or(if args.short { 2 } else { 8 });
    let window = args.seconds.unwrap_or(if args.short { 6 } else { 20 });
    let tck = procstat::clk_tck();
    let tmp = std::env::temp_dir().join(format!("livesnap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let livesnap = std::fs::canonicalize(&args.livesnap)
        .map_err(|e| format!("livesnap binary {}: {e}", args.livesnap.display()))?;

    let t0 = Instant::now();
    let input = tmp.join("input.flv");
    eprintln!("[bench] preparing input with ffmpeg: {}", input.display());
    prepare_input(&input)?;
    let file = std::fs::read(&input).map_err(|e| e.to_string())?;
    let tags = Arc::new(flv::video_tags(&file)?);
    let input_info = describe_input(&tags, file.len());
    eprintln!(
        "[bench] input: {input_info} ({:.1}s)",
        t0.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let mut rows = Vec::new();
    let idle_note;

    // (0) + (1): idle server, then ingest only.
    {
        let server = Server::start(&livesnap, &tmp.join("ingest"))?;
        std::thread::sleep(Duration::from_secs(1));
        let (cpu, pss) = measure(&[server.pid()], IDLE_S, tck);
        rows.push(Row {
            name: "livesnap idle (no streams)".into(),
            streams: 0,
            cpu_pct: cpu,
            pss_mib: pss,
            pictures: None,
            note: String::new(),
        });
        idle_note = format!("idle server: {cpu:.1}% CPU, {pss:.1} MiB PSS");
        eprintln!("[bench] {idle_note}");
        let load = Load::start(&rt, &server.rtmp, n, tags.clone())?;
        let (cpu, pss) = measure(&[server.pid()], window, tck);
        let note = load.check(n)?;
        rows.push(Row {
            name: "livesnap ingest only".into(),
            streams: n,
            cpu_pct: cpu,
            pss_mib: pss,
            pictures: None,
            note,
        });
        load.stop(&rt);
        server.stop();
    }

    // (2) periodic pictures through a template bound to the app.
    {
        let server = Server::start(&livesnap, &tmp.join("periodic"))?;
        http::post_ok(
            &server.http,
            "/v1/templates",
            r#"{"name":"b","interval_s":5,"format":"jpg","storage":"local","modes":["sequence"]}"#,
        )?;
        http::post_ok(
            &server.http,
            "/v1/bindings",
            r#"{"app":"live","template":"b"}"#,
        )?;
        let load = Load::start(&rt, &server.rtmp, n, tags.clone())?;
        let before = stored(&server.http)?;
        let (cpu, pss) = measure(&[server.pid()], window, tck);
        let after = stored(&server.http)?;
        let note = load.check(n)?;
        let due = n as f64 * window as f64 / PICTURE_INTERVAL_S;
        rows.push(Row {
            name: "livesnap periodic (JPEG every 5 s)".into(),
            streams: n,
            cpu_pct: cpu,
            pss_mib: pss,
            pictures: Some(((after - before) as f64, due)),
            note,
        });
        load.stop(&rt);
        server.stop();
    }

    // (3) the baseline: one ffmpeg per stream.
    for (label, skip) in [
        ("ffmpeg (a) -vf fps=1/5", false),
        ("ffmpeg (b) -skip_frame nokey -vf fps=1/5", true),
    ] {
        let row = ffmpeg_baseline(label, skip, &input, &tmp, n, window, tck)?;
        rows.push(row);
    }

    let report = report(args, n, window, &rows, &input_info, &idle_note);
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("[bench] wrote {}", out.display());
    }
    if args.keep {
        eprintln!("[bench] kept {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    eprintln!("[bench] done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// 720p30, keyframe every 2 s, High profile with B-frames, ~2.5 Mbit/s, testsrc2 + temporal
/// noise (not trivially compressible), 10 s, FLV.
fn prepare_input(out: &Path) -> Result<(), String> {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-t",
            "10",
        ])
        .args(["-vf", "noise=alls=12:allf=t+u,format=yuv420p"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            "2",
        ])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args([
            "-b:v", "2500k", "-maxrate", "3000k", "-bufsize", "5000k", "-an", "-f", "flv",
        ])
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !status.success() {
        return Err(format!("ffmpeg could not prepare the input: {status}"));
    }
    Ok(())
}

fn describe_input(tags: &[flv::VideoTag], bytes: usize) -> String {
    let frames = tags.iter().filter(|t| !t.is_sequence_header).count();
    let keys = tags
        .iter()
        .filter(|t| !t.is_sequence_header && t.data[0] >> 4 == 1)
        .count();
    let dur = tags.last().map_or(0, |t| t.ts_ms) as f64 / 1000.0 + 1.0 / 30.0;
    format!(
        "1280x720 H.264 High, 30 fps, GOP 2 s, B-frames, testsrc2+noise, {dur:.1} s, {frames} frames, {keys} keyframes, {:.2} Mbit/s",
        bytes as f64 * 8.0 / dur / 1e6
    )
}

/// CPU % over `secs` seconds and PSS (MiB) at the end, summed over `pids`.
fn measure(pids: &[u32], secs: u64, tck: f64) -> (f64, f64) {
    let s = CpuSample::take(pids);
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = s.percent_since(pids, tck);
    (cpu, procstat::pss_mib(pids))
}

fn stored(http_addr: &str) -> Result<u64, String> {
    let (status, body) = http::request(http_addr, "GET", "/v1/automation", None)?;
    if status != 200 {
        return Err(format!("GET /v1/automation: {status} {body}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/v1/automation: {e}"))?;
    v["counters"]["stored"]
        .as_u64()
        .ok_or_else(|| format!("/v1/automation has no counters.stored: {body}"))
}

/// A running `livesnap serve` on loopback ports chosen by the OS.
struct Server {
    child: Child,
    http: String,
    rtmp: String,
}

impl Server {
    fn start(bin: &Path, data_dir: &Path) -> Result<Server, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(data_dir.with_extension("log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--rtmp",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
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
        let v: serde_json::Value = serde_json::from_str(first.trim()).map_err(|_| {
            let _ = child.kill();
            format!(
                "livesnap did not print its listening line (got {first:?}); see {}",
                data_dir.with_extension("log").display()
            )
        })?;
        let (Some(http), Some(rtmp)) = (v["http"].as_str(), v["rtmp"].as_str()) else {
            return Err(format!("unexpected first line: {first}"));
        };
        Ok(Server {
            http: http.to_string(),
            rtmp: rtmp.to_string(),
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// N publishers running on the benchmark's tokio runtime.
struct Load {
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    stats: Arc<publisher::Stats>,
    started: Instant,
}

impl Load {
    fn start(
        rt: &tokio::runtime::Runtime,
        rtmp: &str,
        n: usize,
        tags: Arc<Vec<flv::VideoTag>>,
    ) -> Result<Load, String> {
        let stats = Arc::new(publisher::Stats::default());
        let tasks = (0..n)
            .map(|i| {
                rt.spawn(publisher::publish(
                    rtmp.to_string(),
                    "live".into(),
                    format!("s{i}"),
                    tags.clone(),
                    stats.clone(),
                ))
            })
            .collect();
        let mut load = Load {
            tasks,
            stats,
            started: Instant::now(),
        };
        std::thread::sleep(Duration::from_secs(WARMUP_S));
        let up = load.stats.publishing.load(Ordering::Relaxed) as usize;
        if up < n {
            let err = load.first_error(rt);
            return Err(format!(
                "only {up} of {n} publishers are publishing after {WARMUP_S} s: {err}"
            ));
        }
        Ok(load)
    }

    /// The error of the first publisher that has ended (they run until aborted, so it failed).
    fn first_error(&mut self, rt: &tokio::runtime::Runtime) -> String {
        match self.tasks.iter().position(|t| t.is_finished()) {
            Some(i) => {
                let t = self.tasks.swap_remove(i);
                format!("{:?}", rt.block_on(t))
            }
            None => "no publisher has failed yet".into(),
        }
    }

    /// Fails when a publisher died; otherwise describes the pacing.
    fn check(&self, n: usize) -> Result<String, String> {
        let dead = self.tasks.iter().filter(|t| t.is_finished()).count();
        if dead > 0 {
            return Err(format!(
                "{dead} of {n} publishers stopped during the window"
            ));
        }
        let fps = self.stats.tags_sent.load(Ordering::Relaxed) as f64
            / self.started.elapsed().as_secs_f64()
            / n as f64;
        Ok(format!(
            "{fps:.1} fps sent per stream, max lateness {} ms",
            self.stats.max_late_ms.load(Ordering::Relaxed)
        ))
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
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

/// One ffmpeg process per stream, as peers document it; counts pictures via `-progress`.
fn ffmpeg_baseline(
    label: &str,
    skip: bool,
    input: &Path,
    tmp: &Path,
    n: usize,
    window: u64,
    tck: f64,
) -> Result<Row, String> {
    let dir = tmp.join(if skip { "ffmpeg-b" } else { "ffmpeg-a" });
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    let frames: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, counter) in frames.iter().enumerate() {
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostats",
            "-progress",
            "pipe:1",
            "-re",
        ]);
        if skip {
            cmd.args(["-skip_frame", "nokey"]);
        }
        cmd.args(["-stream_loop", "-1", "-i"]).arg(input);
        cmd.args([
            "-vf", "fps=1/5", "-q:v", "3", "-f", "image2", "-update", "1", "-y",
        ]);
        cmd.arg(dir.join(format!("out_{i}.jpg")));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let counter = counter.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(v) = line
                    .strip_prefix("frame=")
                    .and_then(|v| v.trim().parse().ok())
                {
                    counter.store(v, Ordering::Relaxed);
                }
            }
        });
        children.push(child);
    }
    std::thread::sleep(Duration::from_secs(WARMUP_S));
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let before: u64 = frames.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let (cpu, pss) = measure(&pids, window, tck);
    // -progress reports every 0.5 s; wait for one more report so the count covers the window.
    std::thread::sleep(Duration::from_millis(600));
    let after: u64 = frames.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let alive = children
        .iter_mut()
        .filter_map(|c| c.try_wait().ok())
        .filter(|s| s.is_none())
        .count();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    if alive < n {
        return Err(format!(
            "{label}: only {alive} of {n} ffmpeg processes ran through the window"
        ));
    }
    let due = n as f64 * window as f64 / PICTURE_INTERVAL_S;
    Ok(Row {
        name: label.into(),
        streams: n,
        cpu_pct: cpu,
        pss_mib: pss,
        pictures: Some(((after - before) as f64, due)),
        note: String::new(),
    })
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0);
    format!(
        "{cores} cores (nproc), {model}, {:.1} GiB RAM",
        mem / 1024.0 / 1024.0
    )
}

fn report(args: &Args, n: usize, window: u64, rows: &[Row], input: &str, idle: &str) -> String {
    let mut s = String::new();
    let w = &mut s;
    let cmd: Vec<String> = std::env::args().collect();
    let _ = writeln!(
        w,
        "## livesnap-bench: {n} streams, {window} s window per scenario\n"
    );
    let _ = writeln!(w, "- machine: {}", machine());
    let _ = writeln!(w, "- command: `{}`", cmd.join(" "));
    let _ = writeln!(w, "- input: {input}");
    let _ = writeln!(w, "- {idle}; \"per stream\" below divides the whole process's figure by N (idle cost included); \"minus idle\" subtracts the idle server first");
    let _ = writeln!(w, "- CPU % = utime+stime from /proc/<pid>/stat over the window (100 % = one core); PSS from /proc/<pid>/smaps_rollup at the end of the window, summed over processes");
    let _ = writeln!(w, "- the load generator (one process, {n} rml_rtmp publishers) runs on the same 2 cores and is not counted\n");
    let idle = rows.iter().find(|r| r.streams == 0);
    let _ = writeln!(w, "| scenario | N | CPU % total | CPU % / stream | CPU % / stream minus idle | PSS MiB total | PSS MiB / stream | PSS MiB / stream minus idle | pictures made / due | notes |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let per = |v: f64| {
            if r.streams == 0 {
                "-".to_string()
            } else {
                format!("{:.2}", v / r.streams as f64)
            }
        };
        let minus = |v: f64, base: f64| {
            if r.streams == 0 || !r.name.starts_with("livesnap") {
                "-".to_string()
            } else {
                format!("{:.2}", (v - base) / r.streams as f64)
            }
        };
        let pics = r
            .pictures
            .map_or("-".to_string(), |(m, d)| format!("{m:.0} / {d:.0}"));
        let _ = writeln!(
            w,
            "| {} | {} | {:.1} | {} | {} | {:.1} | {} | {} | {} | {} |",
            r.name,
            r.streams,
            r.cpu_pct,
            per(r.cpu_pct),
            minus(r.cpu_pct, idle.map_or(0.0, |i| i.cpu_pct)),
            r.pss_mib,
            per(r.pss_mib),
            minus(r.pss_mib, idle.map_or(0.0, |i| i.pss_mib)),
            pics,
            r.note
        );
    }
    let periodic = rows
        .iter()
        .find(|r| r.name.starts_with("livesnap periodic"));
    if let Some(p) = periodic {
        let _ = writeln!(w, "\nRatios, baseline / livesnap periodic, per stream (livesnap's idle cost included, i.e. the conservative figure):\n");
        let _ = writeln!(w, "| baseline | CPU ratio | PSS ratio |");
        let _ = writeln!(w, "|---|---|---|");
        for b in rows.iter().filter(|r| r.name.starts_with("ffmpeg")) {
            let ratio = |x: f64, y: f64| {
                if y > 0.0 {
                    format!("{:.1}x", x / y)
                } else {
                    "n/a".into()
                }
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} |",
                b.name,
                ratio(b.cpu_pct, p.cpu_pct),
                ratio(b.pss_mib, p.pss_mib)
            );
        }
    }
    let _ = args;
    s
}
