//! livesnap-bench: runs the real `livesnap` binary and the one-ffmpeg-per-stream baseline on the
//! same generated input and stream count, and measures both from the kernel's accounting (/proc).
//!
//! Per resolution (720p, 1080p): the limit (decode + encode in-process), ingest only, periodic
//! pictures (template every 5 s), on demand (HTTP clients, cache hits and misses apart), RTSP
//! pull jobs of one shared mount of a third-party RTSP server (`jobs`), ingest over WHIP
//! against RTMP of the same video (`whip`), the console's grid of 20 streams open in headless
//! Chromium (`grid`), one RTMP player per stream against ingest only on a server with
//! `rtmp_play` on (`play`), the
//! ffmpeg baseline (a) `-vf fps=1/5` and (b) the same with `-skip_frame nokey`, each reading the
//! stream over RTMP (from the load generator, as peers document it) and from the file, and
//! saturation (pictures/s when asked for more than the server can make, and the largest N at
//! 5 s). Writes
//! a Markdown report (see `report`).

mod flv;
mod grid;
mod harness;
mod http;
mod input;
mod jobs;
mod limit;
mod ondemand;
mod play;
mod procstat;
mod publisher;
mod report;
mod saturation;
mod scenarios;
mod stats;
mod whip;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use input::Resolution;
use report::{ResolutionResult, RunInfo};
use scenarios::BaselineInput;

/// Seconds publishers run before a window starts (connect, first keyframe, first picture).
const WARMUP_S: u64 = 3;
/// Seconds the idle server is measured.
const IDLE_S: u64 = 3;
/// Full run defaults: streams, window (a multiple of 10 s, so that pictures due at 5 s with a
/// 2 s GOP come out exact), saturation step window, stream cap.
const STREAMS: usize = 8;
const WINDOW_S: u64 = 20;
/// Rounds of the windows the CPU ratios need (`--rounds`).
const ROUNDS: usize = 3;
const STEP_WINDOW_S: u64 = 10;
const MAX_STREAMS: usize = 64;
/// Short (CI) mode: every scenario, briefly.
const SHORT_STREAMS: usize = 2;
const SHORT_WINDOW_S: u64 = 4;
const SHORT_STEP_WINDOW_S: u64 = 3;
const SHORT_MAX_STREAMS: usize = 4;
/// RTSP pull jobs of the jobs scenario: issue 15's goal is about 50 (the server's default
/// `max_jobs` is 100).
const JOBS: usize = 50;
const SHORT_JOBS: usize = 4;
/// Frames of the all-intra input whose mean limit the saturation is held against.
const INTRA_LIMIT_FRAMES: usize = 5;

#[derive(Parser, Debug)]
#[command(about = "Benchmark livesnap against one ffmpeg process per stream")]
struct Args {
    /// Path of the livesnap binary (built with --release).
    #[arg(long)]
    livesnap: PathBuf,
    /// Short mode for CI: 2 streams, 720p only, 4 s windows, two saturation steps, at most 4
    /// streams in the 5 s check. Asserts nothing about the figures.
    #[arg(long)]
    short: bool,
    /// Number of streams (default 8, or 2 with --short).
    #[arg(long)]
    streams: Option<usize>,
    /// Number of RTSP pull jobs of the jobs scenario (default 50, or 4 with --short).
    #[arg(long)]
    jobs: Option<usize>,
    /// Measurement window per scenario in seconds (default 20, or 4 with --short).
    #[arg(long)]
    seconds: Option<u64>,
    /// Window of each saturation step in seconds (default 10, or 3 with --short).
    #[arg(long)]
    step_seconds: Option<u64>,
    /// Input resolution(s) (default both, or 720p with --short).
    #[arg(long, value_enum)]
    resolution: Option<ResolutionArg>,
    /// Concurrent HTTP clients of the on-demand scenario.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Rounds of ingest, periodic and both baselines for the CPU ratios (default 3, or 1 with
    /// --short): the first is the main run; the others follow back to back, so each round's
    /// ratio compares windows a minute apart, and the report gives every round and the median.
    /// The whip scenario measures this many RTMP / WHIP pairs, alternating which goes first.
    #[arg(long)]
    rounds: Option<usize>,
    /// Most streams any scenario publishes (saturation and the 5 s check); default 64, or 4
    /// with --short.
    #[arg(long)]
    max_streams: Option<usize>,
    /// Scenarios to run, comma-separated (default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the temporary directory (inputs, server logs, pictures).
    #[arg(long)]
    keep: bool,
    /// How the binaries were built, for the report (scripts/bench passes its --features).
    #[arg(long, hide = true)]
    build_features: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ResolutionArg {
    #[value(name = "720p")]
    P720,
    #[value(name = "1080p")]
    P1080,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Ingest,
    Periodic,
    OnDemand,
    Abuse,
    Protocols,
    Jobs,
    Auth,
    Whip,
    Grid,
    Play,
    Baseline,
    Limit,
    Saturation,
}

/// What every scenario needs.
pub struct Ctx {
    pub livesnap: PathBuf,
    pub tmp: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub tck: f64,
    pub warmup: Duration,
    pub window: Duration,
    pub idle_window: Duration,
    pub keep: bool,
    pub cores: usize,
    /// Pull jobs of the jobs scenario.
    pub jobs: usize,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("livesnap-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let t0 = Instant::now();
    let n = args
        .streams
        .unwrap_or(if args.short { SHORT_STREAMS } else { STREAMS })
        .max(1);
    let window_s = args
        .seconds
        .unwrap_or(if args.short { SHORT_WINDOW_S } else { WINDOW_S })
        .max(1);
    let step_window_s = args
        .step_seconds
        .unwrap_or(if args.short {
            SHORT_STEP_WINDOW_S
        } else {
            STEP_WINDOW_S
        })
        .max(1);
    let max_streams = args
        .max_streams
        .unwrap_or(if args.short {
            SHORT_MAX_STREAMS
        } else {
            MAX_STREAMS
        })
        .max(1);
    let resolutions = match args.resolution.unwrap_or(if args.short {
        ResolutionArg::P720
    } else {
        ResolutionArg::Both
    }) {
        ResolutionArg::P720 => vec![Resolution::P720],
        ResolutionArg::P1080 => vec![Resolution::P1080],
        ResolutionArg::Both => vec![Resolution::P720, Resolution::P1080],
    };
    let wants = |s: Scenario| args.scenarios.is_empty() || args.scenarios.contains(&s);

    let tmp = std::env::temp_dir().join(format!("livesnap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let livesnap = std::fs::canonicalize(&args.livesnap)
        .map_err(|e| format!("livesnap binary {}: {e}", args.livesnap.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ctx = Ctx {
        livesnap,
        tmp: tmp.clone(),
        rt,
        tck: procstat::clk_tck(),
        warmup: Duration::from_secs(WARMUP_S),
        window: Duration::from_secs(window_s),
        idle_window: Duration::from_secs(IDLE_S),
        keep: args.keep,
        cores,
        jobs: args
            .jobs
            .unwrap_or(if args.short { SHORT_JOBS } else { JOBS })
            .max(1),
    };

    let (idle, server_backends) = scenarios::idle(&ctx)?;
    eprintln!(
        "[bench] idle server: {:.1}% CPU, {:.1} MiB PSS",
        idle.cpu_pct, idle.pss_mib
    );
    let mut results = Vec::new();
    for res in resolutions {
        let plan = saturation::Plan {
            min_streams: n,
            max_streams,
            short: args.short,
            step_window: Duration::from_secs(step_window_s),
        };
        let rounds = args
            .rounds
            .unwrap_or(if args.short { 1 } else { ROUNDS })
            .max(1);
        results.push(run_resolution(
            &ctx,
            res,
            n,
            args.clients,
            rounds,
            &plan,
            &wants,
        )?);
    }

    let own = (
        media::decode::default_decoder_name().to_string(),
        media::picture::jpeg_encoder_name().to_string(),
    );
    let server = match &server_backends {
        Some(b) if *b == own => "the same".to_string(),
        Some((d, j)) => format!(
            "decoder {d}, JPEG {j} (**differs from the limit's**: build both with the same --features)"
        ),
        None => "not found in its log".to_string(),
    };
    let build = format!(
        "features `{}` (livesnap-bench: {}); limit measured with decoder {}, JPEG {}; server: {server}",
        args.build_features.as_deref().unwrap_or("default"),
        bench_features(),
        own.0,
        own.1
    );
    let info = RunInfo {
        streams: n,
        window_s,
        step_window_s,
        clients: args.clients,
        max_streams,
        cores,
        machine: machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        build,
        idle: Some(idle),
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    let text = report::render(&info, &results);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("[bench] wrote {}", out.display());
    }
    if args.keep {
        eprintln!("[bench] kept {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    eprintln!("[bench] done in {:.1}s", t0.elapsed().as_secs_f64());
    let failures: usize = results.iter().map(|r| r.failures.len()).sum();
    if failures > 0 {
        return Err(format!("{failures} scenario(s) failed; see the report"));
    }
    Ok(())
}

/// One resolution: the limit first (while nothing else runs), then the server scenarios, the
/// baselines, and saturation. A failing scenario is reported and the others still run.
fn run_resolution(
    ctx: &Ctx,
    res: Resolution,
    n: usize,
    clients: usize,
    rounds: usize,
    plan: &saturation::Plan,
    wants: &dyn Fn(Scenario) -> bool,
) -> Result<ResolutionResult, String> {
    let tag = res.name();
    let t = Instant::now();
    let camera = input::camera(res, &ctx.tmp.join(format!("{tag}.flv")))?;
    eprintln!(
        "[bench] {tag} input: {} ({:.1}s)",
        camera.info,
        t.elapsed().as_secs_f64()
    );
    let mut out = ResolutionResult {
        res,
        input: camera.info.clone(),
        rows: Vec::new(),
        limit: None,
        limit_all: None,
        saturation: None,
        extra_rounds: Vec::new(),
        grid: Vec::new(),
        failures: Vec::new(),
    };
    let record = |out: &mut ResolutionResult, what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            eprintln!("[bench] {tag} {what} FAILED: {e}");
            out.failures.push(format!("{what}: {e}"));
        }
    };

    let periodic_name = format!(
        "livesnap periodic (JPEG every {} s)",
        scenarios::PICTURE_INTERVAL_S
    );
    if wants(Scenario::Limit) || wants(Scenario::Saturation) {
        // The first keyframe (as specified), and every keyframe: publishers loop the input, so
        // the server pictures all of them in turn (the clip's length is not a multiple of the
        // 5 s interval), and their sizes differ somewhat.
        let r = (0..camera.keyframes)
            .map(|k| limit::measure(&camera.tags, k).map_err(|e| format!("keyframe {k}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(|all| {
                let mean = limit::mean(&all);
                for (what, l) in [("first keyframe", all.first()), ("mean", mean.as_ref())] {
                    if let Some(l) = l {
                        eprintln!(
                            "[bench] {tag} limit ({what}): decode {:.2} ms + encode {:.2} ms = {:.1} pictures/s on {} cores",
                            l.decode_own_ms(),
                            l.encode_own_ms(),
                            l.pictures_per_s(ctx.cores),
                            ctx.cores
                        );
                    }
                }
                out.limit = all.into_iter().next();
                out.limit_all = mean;
            });
        record(&mut out, "limit", r);
    }
    if wants(Scenario::Ingest) {
        let r = scenarios::ingest(ctx, tag, &camera.tags, n).map(|row| out.rows.push(row));
        record(&mut out, "ingest only", r);
    }
    if wants(Scenario::Periodic) {
        let r = scenarios::periodic(
            ctx,
            &format!("{tag}-periodic"),
            &periodic_name,
            &camera.tags,
            n,
            scenarios::PICTURE_INTERVAL_S,
        )
        .map(|row| out.rows.push(row));
        record(&mut out, "periodic", r);
    }
    if wants(Scenario::OnDemand) {
        let r = scenarios::on_demand(ctx, tag, &camera.tags, n, clients)
            .map(|rows| out.rows.extend(rows));
        record(&mut out, "on demand", r);
    }
    if wants(Scenario::Protocols) {
        let r = scenarios::protocols(ctx, tag, &camera.path, n).map(|rows| out.rows.extend(rows));
        record(&mut out, "protocols", r);
    }
    if wants(Scenario::Jobs) {
        let r = jobs::run(ctx, tag, &camera.path, ctx.jobs).map(|row| out.rows.push(row));
        record(&mut out, "jobs", r);
    }
    if wants(Scenario::Auth) {
        let r = scenarios::auth(ctx, tag, &camera.tags, n).map(|rows| out.rows.extend(rows));
        record(&mut out, "auth", r);
    }
    if wants(Scenario::Whip) {
        let r = whip::run(ctx, tag, &camera.tags, n, rounds).map(|rows| out.rows.extend(rows));
        record(&mut out, "whip", r);
    }
    if wants(Scenario::Grid) {
        let r = grid::run(ctx, tag, &camera.tags).map(|(rows, figures)| {
            out.rows.extend(rows);
            out.grid = figures;
        });
        record(&mut out, "grid", r);
    }
    if wants(Scenario::Play) {
        let r = play::run(ctx, tag, &camera.tags, n).map(|rows| out.rows.extend(rows));
        record(&mut out, "play", r);
    }
    if wants(Scenario::Abuse) {
        let r = scenarios::abuse(ctx, tag, &camera.tags, n).map(|rows| out.rows.extend(rows));
        record(&mut out, "abuse", r);
    }
    // Over RTMP as peers document it, and from the file as the previous runs measured it (no
    // network input: the cheapest a baseline can be).
    let rtmp = BaselineInput::Rtmp(&camera.tags);
    let file = BaselineInput::File(&camera.path);
    let baselines = [
        ("ffmpeg (a) -i rtmp:// -vf fps=1/5", false, rtmp),
        (
            "ffmpeg (b) -skip_frame nokey -i rtmp:// -vf fps=1/5",
            true,
            rtmp,
        ),
        ("ffmpeg (a) -re -i file -vf fps=1/5", false, file),
        (
            "ffmpeg (b) -skip_frame nokey -re -i file -vf fps=1/5",
            true,
            file,
        ),
    ];
    if wants(Scenario::Baseline) {
        for (label, skip, input) in baselines {
            let r = scenarios::ffmpeg_baseline(ctx, tag, label, skip, input, n)
                .map(|row| out.rows.push(row));
            record(&mut out, label, r);
        }
    }
    if wants(Scenario::Ingest) && wants(Scenario::Periodic) && wants(Scenario::Baseline) {
        // The machine's speed drifts (other VMs on the host; no steal time shows it), so the
        // ratios are measured again in tight rounds of the four windows they need.
        for round in 2..=rounds {
            eprintln!(
                "[bench] {tag} round {round} of {rounds}: ingest, periodic, (a) and (b) over RTMP"
            );
            let r = (|| {
                let mut rows = vec![scenarios::ingest(ctx, tag, &camera.tags, n)?];
                rows.push(scenarios::periodic(
                    ctx,
                    &format!("{tag}-periodic-{round}"),
                    &periodic_name,
                    &camera.tags,
                    n,
                    scenarios::PICTURE_INTERVAL_S,
                )?);
                // The file-fed baselines are the reference of earlier runs; one round of them
                // is enough to compare, the rounds are for the ratios that count.
                let rtmp_only = baselines
                    .iter()
                    .filter(|(_, _, input)| matches!(input, BaselineInput::Rtmp(_)));
                for &(label, skip, input) in rtmp_only {
                    rows.push(scenarios::ffmpeg_baseline(ctx, tag, label, skip, input, n)?);
                }
                out.extra_rounds.push(rows);
                Ok(())
            })();
            record(&mut out, &format!("round {round}"), r);
        }
    }
    if wants(Scenario::Saturation) {
        let r = (|| {
            let intra = input::all_intra(
                res,
                camera.mean_keyframe_bytes,
                &ctx.tmp.join(format!("{tag}-intra.flv")),
            )?;
            eprintln!("[bench] {tag} all-intra input: {}", intra.info);
            // Frames spread over the file, not the first: x264 gives it extra bits.
            let samples = (1..=INTRA_LIMIT_FRAMES)
                .map(|i| {
                    limit::measure(&intra.tags, i * intra.keyframes / (INTRA_LIMIT_FRAMES + 1))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let intra_limit = limit::mean(&samples).ok_or("no all-intra frame measured")?;
            let sat = saturation::run(ctx, tag, plan, &intra, intra_limit, &camera.tags)?;
            out.saturation = Some(sat);
            Ok(())
        })();
        record(&mut out, "saturation", r);
    }
    Ok(out)
}

fn bench_features() -> String {
    let on: Vec<&str> = [
        ("ffmpeg", cfg!(feature = "ffmpeg")),
        ("turbojpeg", cfg!(feature = "turbojpeg")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(", ")
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!(
        "{cores} cores (nproc), {model}, {:.1} GiB RAM, Linux {kernel}",
        mem_kib / 1024.0 / 1024.0
    )
}
