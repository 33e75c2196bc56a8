//! The Markdown report: per resolution the scenario table (CPU and PSS from /proc), the periodic
//! and on-demand figures, baseline/livesnap ratios, the limit and the saturation steps; at the
//! top the machine, the build and the command line.

use std::fmt::Write as _;

use crate::harness::Lag;
use crate::input::Resolution;
use crate::limit::Limit;
use crate::stats::{median, opt};

/// Made pictures below this share of the due ones means the server fell behind.
pub const KEEP_UP_MADE: f64 = 0.95;
/// Lag p99 above this (or the interval, if longer) means the server fell behind: any picture
/// takes one decode + encode + store, so a lag shorter than that says nothing.
pub const KEEP_UP_LAG_MS: f64 = 1000.0;
/// The targets, printed beside the figures.
const TARGET_MISS_RATIO: f64 = 1.3;
const TARGET_HIT_MS: f64 = 1.0;
/// Target of the protocol scenario: RTSP ingest CPU per stream at most this many times RTMP's.
const TARGET_RTSP_RATIO: f64 = 1.5;
/// Goal of the abuse scenario: the honest client's p99 under abuse within this many times its
/// p99 before it.
const TARGET_ABUSE_P99_RATIO: f64 = 2.0;
/// Goal of the jobs scenario (issue 15): pictures made / due over all the pull jobs.
const TARGET_JOBS_MADE: f64 = 0.99;
const TARGET_SATURATION: f64 = 0.8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Idle,
    Ingest,
    Periodic,
    OnDemand,
    /// The light on-demand client before and under the abuse scenario's load.
    Abuse,
    /// Ingest by ffmpeg publishers over each protocol.
    Protocol,
    /// RTSP pull jobs of one shared mount, pictured every 5 s.
    Jobs,
    /// The light on-demand client with API keys off and on.
    Auth,
    /// Ingest of the same video over RTMP and over WHIP (the `whip` scenario).
    Whip,
    /// 20 RTMP streams with the console's grid open in 0, 1 and 3 browsers.
    Grid,
    Baseline,
}

/// One measured scenario.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub kind: Kind,
    pub streams: usize,
    pub cpu_pct: f64,
    pub pss_mib: f64,
    /// Pictures made and due within the window, where the scenario makes pictures on a schedule.
    pub pictures: Option<(f64, f64)>,
    pub note: String,
    pub auto: Option<AutoFigures>,
    pub on_demand: Option<OnDemandFigures>,
}

/// Automatic pictures within a window.
#[derive(Clone, Debug)]
pub struct AutoFigures {
    /// What triggers a picture (`interval 5 s`, `every 6 frames`).
    pub trigger: String,
    /// Seconds between two due pictures of one stream.
    pub interval_s: f64,
    pub window_s: f64,
    pub made: u64,
    pub due: f64,
    /// Sum of the streams' `auto_missed` over the window.
    pub missed: u64,
    /// At the end of the window; `None` when the server does not report it.
    pub lag: Option<Lag>,
}

impl AutoFigures {
    pub fn made_per_s(&self) -> f64 {
        self.made as f64 / self.window_s
    }

    /// Made at least [`KEEP_UP_MADE`] of due, and lag p99 within the interval (at least
    /// [`KEEP_UP_LAG_MS`]) when the server reports lag.
    pub fn keeps_up(&self) -> bool {
        let lag_ok = self
            .lag
            .and_then(|l| l.p99)
            .is_none_or(|p99| p99 <= (self.interval_s * 1000.0).max(KEEP_UP_LAG_MS));
        self.made as f64 >= KEEP_UP_MADE * self.due && lag_ok
    }
}

/// What the on-demand clients saw.
#[derive(Clone, Debug)]
pub struct OnDemandFigures {
    pub clients: usize,
    /// Requests per second per client when paced.
    pub pace_per_s: Option<f64>,
    pub window_s: f64,
    pub ok: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub hit_p50: Option<f64>,
    pub hit_p99: Option<f64>,
    pub miss_p50: Option<f64>,
    pub miss_p99: Option<f64>,
    /// p99 of every 200 answer, hit or miss.
    pub all_p99: Option<f64>,
    pub mean_kib: f64,
}

/// One window of the grid scenario.
#[derive(Clone, Debug)]
pub struct GridFigures {
    /// Browsers showing the console's grid.
    pub browsers: usize,
    pub streams: usize,
    pub window_s: f64,
    /// Deltas over the window: `counters.pictures_made`, `cache_hits` and `on_demand` of
    /// `GET /v1/pictures`, and the streams' `keyframes`, summed.
    pub made: u64,
    pub hits: u64,
    pub requests: u64,
    pub keyframes: u64,
    /// Server CPU % over the window, and everything else's (the browsers among it).
    pub cpu_pct: f64,
    pub other_pct: f64,
}

impl GridFigures {
    /// At most one decode per stream per keyframe, plus one per stream for the window's edge.
    pub fn within_bound(&self) -> bool {
        self.made <= self.keyframes + self.streams as u64
    }
}

/// One saturation step.
#[derive(Clone, Debug)]
pub struct Step {
    pub every_n: u32,
    pub cpu_pct: f64,
    /// CPU % of the load generator and of other processes during the step.
    pub bench_pct: f64,
    pub other_pct: f64,
    pub auto: AutoFigures,
}

impl Step {
    pub fn offered_per_s(&self) -> f64 {
        self.auto.due / self.auto.window_s
    }

    /// Server CPU (ingest included) per picture made, ms.
    pub fn cpu_ms_per_picture(&self) -> Option<f64> {
        (self.auto.made > 0)
            .then(|| self.cpu_pct / 100.0 * self.auto.window_s * 1000.0 / self.auto.made as f64)
    }
}

/// The saturation search and the 5 s verification.
#[derive(Clone, Debug)]
pub struct Saturation {
    pub streams: usize,
    pub input: String,
    pub limit: Limit,
    pub steps: Vec<Step>,
    /// The verification at interval 5 s with the camera-like input.
    pub verify: Option<Verify>,
}

impl Saturation {
    /// A step fell behind: the highest made/s is the saturation rate, not a lower bound.
    pub fn saturated(&self) -> bool {
        self.steps.iter().any(|s| !s.auto.keeps_up())
    }

    /// The highest made/s of any step.
    pub fn pictures_per_s(&self) -> f64 {
        self.steps
            .iter()
            .map(|s| s.auto.made_per_s())
            .fold(0.0, f64::max)
    }
}

#[derive(Clone, Debug)]
pub struct Verify {
    /// Saturation pictures/s x 5.
    pub derived: usize,
    pub capped: bool,
    pub row: Row,
}

/// Everything measured at one resolution.
pub struct ResolutionResult {
    pub res: Resolution,
    pub input: String,
    pub rows: Vec<Row>,
    /// The camera input's first keyframe.
    pub limit: Option<Limit>,
    /// The mean over all the camera input's keyframes (what the server pictures in turn).
    pub limit_all: Option<Limit>,
    pub saturation: Option<Saturation>,
    /// Rounds after the first of ingest, periodic, (a) and (b), back to back (`--rounds`).
    pub extra_rounds: Vec<Vec<Row>>,
    /// The grid scenario's windows (0, 1 and 3 browsers).
    pub grid: Vec<GridFigures>,
    /// Scenarios that failed, with why (the run goes on).
    pub failures: Vec<String>,
}

/// The run as a whole.
pub struct RunInfo {
    pub streams: usize,
    pub window_s: u64,
    pub step_window_s: u64,
    pub clients: usize,
    pub max_streams: usize,
    pub cores: usize,
    pub machine: String,
    pub command: String,
    pub build: String,
    pub idle: Option<Row>,
    pub elapsed_s: f64,
}

pub fn render(run: &RunInfo, results: &[ResolutionResult]) -> String {
    let mut s = String::new();
    let w = &mut s;
    let n = run.streams;
    let _ = writeln!(
        w,
        "## livesnap-bench: {n} streams, {} s window per scenario, {} on-demand clients\n",
        run.window_s, run.clients
    );
    let _ = writeln!(w, "- machine: {}", run.machine);
    let _ = writeln!(w, "- command: `{}`", run.command);
    let _ = writeln!(w, "- build: {}", run.build);
    let _ = writeln!(w, "- run took {:.0} s", run.elapsed_s);
    if let Some(idle) = &run.idle {
        let _ = writeln!(
            w,
            "- idle server (no streams, measured once): {:.1}% CPU, {:.1} MiB PSS; \"per stream\" divides the whole process's figure by N (idle cost included); \"minus idle\" subtracts the idle server first",
            idle.cpu_pct, idle.pss_mib
        );
    }
    let _ = writeln!(w, "- CPU % = utime+stime from /proc/<pid>/stat over the window (100 % = one core); PSS from /proc/<pid>/smaps_rollup at the end of the window, summed over processes; always of the server (or the ffmpeg processes), never of the load generator");
    let _ = writeln!(w, "- the load generator (one process: rml_rtmp publishers, HTTP clients) runs on the same {} cores and is not counted; publishers start spread over 2 s (one GOP), so streams' keyframes do not coincide", run.cores);
    let _ = writeln!(w, "- baselines: N ffmpeg processes `ffmpeg [-skip_frame nokey] INPUT -vf fps=1/5 -q:v 3 -f image2 -update 1 out_i.jpg`; INPUT is either `-listen 1 -i rtmp://127.0.0.1:PORT/live/s{{i}}`, each fed by the same load generator as livesnap (peers document `ffmpeg -i rtmp://...` against a media server; here there is no server in between, so its relay costs nothing), or `-re -stream_loop -1 -i input.flv` (no network input: the cheapest a baseline can be); pictures counted from `-progress`");
    let _ = writeln!(w, "- on demand: `GET /v1/streams/live/s{{i}}/snapshot.jpg` (full size, quality 85) for a random i, keep-alive connections; \"light\" is one client sending 10 requests/s, \"K clients\" send back to back; latency = request sent to body read, split by `X-Livesnap-Cache` (`hit` includes requests that waited for another request's decode)");
    let _ = writeln!(w, "- limit: in-process (livesnap-media, no server) median time of one keyframe decode (reused decoder) and one full-size JPEG q85 encode, for the input's first keyframe (as specified) and for each of its keyframes (their mean is what the server faces, as publishers loop the input); each op's own time is the lower of its median wall and median process CPU time (the same on a quiet machine; CPU time when other processes took the core); limit = cores / (decode + encode)");
    let _ = writeln!(w, "- saturation method: pictures are taken only at keyframes, so with a 2 s GOP a stream offers at most 0.5 pictures/s whatever the interval (>= 1 s), and saturating the decoder would take ~2 x limit streams whose publishers and ingest would use the very cores measured. Instead a fixed N publish an all-intra version of the input (every frame an IDR, about the size of the camera stream's mean keyframe; its limit is the mean over 5 of its frames) and a template `every_n_frames: k` offers N x 30 / k pictures/s; publishers and ingest cost the same at every step, only the picture rate changes. Steps at about 0.5, 0.8, 1, 1.25, 1.6 and 2 x the limit, each on a fresh server ({} s window), until one falls behind (made < {:.0} % of due, or lag p99 > max(interval, {:.0} s)); if the first does, the rate is halved, at most twice, to find one that keeps up. The largest N at interval 5 s is then derived as saturation pictures/s x 5 and checked with the camera-like input (capped at --max-streams {})",
        run.step_window_s, KEEP_UP_MADE * 100.0, KEEP_UP_LAG_MS / 1000.0, run.max_streams);
    let _ = writeln!(w, "- jobs (issue 15): `--jobs` RTSP pull jobs (`POST /v1/jobs`) of one shared mount of GStreamer's gst-rtsp-server serving the camera input pre-encoded and looped (no transcoding; its CPU is in other processes), template `interval_s: 5`, JPEG, sequence mode; once every job is running and after the warm-up, the window is --seconds rounded up to a multiple of 10 s (lcm of the 5 s interval and the 2 s GOP), starting 1 s after a keyframe (from the newest picture's time_ms), so no picture is near an edge; per job due = window / 5, made = its index rows (`GET /v1/snapshots?job=ID`) with time_ms in the window; goal: made / due >= {:.0} % over all jobs", TARGET_JOBS_MADE * 100.0);
    let _ = writeln!(w, "- whip: N publishers of the same video (the camera input's tags) over RTMP, then over WHIP (a str0m client in the load generator, one thread and UDP socket per stream: ICE, DTLS, SRTP, RTP H.264 packetization-mode 1, the tags' NAL units in Annex B with SPS and PPS before each keyframe, paced like the RTMP publishers), each on a fresh server with no pictures; every stream live over its protocol and pictured once before the window; the server's CPU per stream over one window each; `--rounds` pairs back to back, alternating which protocol goes first; ratio WHIP / RTMP per round, their median and the ratio of the means; the publishers' SRTP is the load generator's CPU, not the server's");
    let _ = writeln!(w, "- grid: {} RTMP publishers on one server; the console (`http://HTTP/`) open in headless Chromium, whose live grid polls `GET /v1/streams` every 2 s and asks `snapshot.jpg?width=480&ask_keyframe=false` of a stream once per new keyframe; windows with 0, 1 and 3 browsers back to back; pictures made = delta of `counters.pictures_made` (`GET /v1/pictures`), keyframes = delta of the streams' `keyframes`; bound: made <= keyframes + one per stream (window edge); Chromium's CPU is in other processes", crate::grid::GRID_STREAMS);
    let _ = writeln!(w, "- pictures due at interval 5 s: N x window / 5; with a 2 s GOP the pictures fall at 0, 6, 10, 16, 20 s..., so made/due is exact only for windows that are a multiple of 10 s");
    for r in results {
        section(w, run, r);
    }
    s
}

fn section(w: &mut String, run: &RunInfo, r: &ResolutionResult) {
    let _ = writeln!(w, "\n### {}\n", r.res.name());
    let _ = writeln!(w, "- input: {}", r.input);
    for f in &r.failures {
        let _ = writeln!(w, "- **failed**: {f}");
    }
    let idle = run.idle.as_ref();
    let mut rows: Vec<&Row> = idle.into_iter().collect();
    rows.extend(r.rows.iter());
    if let Some(v) = r.saturation.as_ref().and_then(|s| s.verify.as_ref()) {
        rows.push(&v.row);
    }
    main_table(w, &rows, idle);
    auto_table(w, r);
    on_demand_table(w, r);
    protocol_lines(w, r);
    whip_lines(w, r, idle);
    grid_lines(w, r);
    jobs_lines(w, r, idle);
    ratio_table(w, r, idle);
    limit_section(w, run, r);
}

fn main_table(w: &mut String, rows: &[&Row], idle: Option<&Row>) {
    let _ = writeln!(w, "\n| scenario | N | CPU % total | CPU % / stream | CPU % / stream minus idle | PSS MiB total | PSS MiB / stream | PSS MiB / stream minus idle | pictures made / due | notes |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    let (idle_cpu, idle_pss) = idle.map_or((0.0, 0.0), |i| (i.cpu_pct, i.pss_mib));
    for r in rows {
        let per = |v: f64| {
            if r.streams == 0 {
                "-".to_string()
            } else {
                format!("{:.2}", v / r.streams as f64)
            }
        };
        let minus = |v: f64, base: f64| {
            if r.streams == 0 || r.kind == Kind::Baseline {
                "-".to_string()
            } else {
                format!("{:.2}", (v - base) / r.streams as f64)
            }
        };
        let pics = match (&r.pictures, &r.on_demand) {
            (Some((m, d)), _) => format!("{m:.0} / {d:.0}"),
            (None, Some(o)) => format!("{} made (misses)", o.misses),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {:.1} | {} | {} | {:.1} | {} | {} | {} | {} |",
            r.name,
            r.streams,
            r.cpu_pct,
            per(r.cpu_pct),
            minus(r.cpu_pct, idle_cpu),
            r.pss_mib,
            per(r.pss_mib),
            minus(r.pss_mib, idle_pss),
            pics,
            r.note
        );
    }
}

fn auto_table(w: &mut String, r: &ResolutionResult) {
    let mut rows: Vec<&Row> = r.rows.iter().filter(|x| x.auto.is_some()).collect();
    if let Some(v) = r.saturation.as_ref().and_then(|s| s.verify.as_ref()) {
        rows.push(&v.row);
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(w, "\nAutomatic pictures (lag = due time to stored, over the server's last 4096 stored pictures, read at the end of the window; \"-\" when the server does not report it):\n");
    let _ = writeln!(w, "| scenario | N | trigger | made / due | missed | lag p50 ms | lag p99 ms | lag max ms | lag count | keeps up |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let Some(a) = &row.auto else { continue };
        let lag = a.lag.unwrap_or_default();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} / {:.0} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.streams,
            a.trigger,
            a.made,
            a.due,
            a.missed,
            opt(lag.p50, 0),
            opt(lag.p99, 0),
            opt(lag.max, 0),
            a.lag.map_or("-".to_string(), |l| l.count.to_string()),
            yes_no(a.keeps_up())
        );
    }
}

/// RTSP ingest against RTMP ingest, both from ffmpeg publishers.
fn protocol_lines(w: &mut String, r: &ResolutionResult) {
    let rows: Vec<&Row> = r.rows.iter().filter(|x| x.kind == Kind::Protocol).collect();
    let Some(rtmp) = rows.iter().find(|x| x.name.ends_with("over RTMP")) else {
        return;
    };
    let per = |x: &Row| x.cpu_pct / x.streams.max(1) as f64;
    let _ = writeln!(w);
    for x in rows.iter().filter(|x| !x.name.ends_with("over RTMP")) {
        let ratio = per(x) / per(rtmp).max(1e-9);
        let _ = writeln!(
            w,
            "- {}: {:.3} % CPU per stream = {ratio:.2} x RTMP's {:.3} % (target <= {TARGET_RTSP_RATIO}x): {}",
            x.name,
            per(x),
            per(rtmp),
            if ratio <= TARGET_RTSP_RATIO { "met" } else { "not met" }
        );
    }
}

/// WHIP ingest against RTMP ingest of the same video: CPU and PSS per stream by round, the
/// ratios WHIP / RTMP of each round, their median, and the ratio of the means.
fn whip_lines(w: &mut String, r: &ResolutionResult, idle: Option<&Row>) {
    let rows: Vec<&Row> = r.rows.iter().filter(|x| x.kind == Kind::Whip).collect();
    if rows.is_empty() {
        return;
    }
    let idle_pss = idle.map_or(0.0, |i| i.pss_mib);
    let per = |x: &Row, v: f64| v / x.streams.max(1) as f64;
    let round_of = |x: &Row| x.name.rsplit("whip round ").next().map(str::to_string);
    let side = |round: &str, what: &str| {
        rows.iter()
            .find(|x| x.name.contains(what) && round_of(x).as_deref() == Some(round))
            .copied()
    };
    let mut rounds: Vec<String> = rows.iter().filter_map(|x| round_of(x)).collect();
    rounds.dedup();
    let _ = writeln!(w, "\nWHIP ingest against RTMP ingest of the same video ({} streams each, fresh servers, no pictures in the windows; rounds back to back, alternating which goes first):\n", rows[0].streams);
    let _ = writeln!(w, "| round | RTMP CPU % / stream | WHIP CPU % / stream | CPU WHIP / RTMP | RTMP PSS MiB / stream minus idle | WHIP PSS MiB / stream minus idle | PSS WHIP / RTMP |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let (mut cpu, mut ratios) = ((0.0, 0.0, 0usize), Vec::new());
    for round in &rounds {
        let (Some(rtmp), Some(whip)) = (side(round, "over RTMP"), side(round, "over WHIP")) else {
            continue;
        };
        let (c_rtmp, c_whip) = (per(rtmp, rtmp.cpu_pct), per(whip, whip.cpu_pct));
        let (p_rtmp, p_whip) = (
            per(rtmp, rtmp.pss_mib - idle_pss),
            per(whip, whip.pss_mib - idle_pss),
        );
        if c_rtmp > 0.0 {
            ratios.push(c_whip / c_rtmp);
        }
        cpu = (cpu.0 + c_rtmp, cpu.1 + c_whip, cpu.2 + 1);
        let _ = writeln!(
            w,
            "| {round} | {c_rtmp:.3} | {c_whip:.3} | {} | {p_rtmp:.2} | {p_whip:.2} | {} |",
            ratio2(c_whip, c_rtmp),
            ratio2(p_whip, p_rtmp)
        );
    }
    if cpu.2 == 0 {
        return;
    }
    let k = cpu.2 as f64;
    let _ = writeln!(
        w,
        "\n- WHIP ingest CPU per stream {:.3} % against RTMP's {:.3} % (means over {} rounds): WHIP / RTMP = {}; median of the rounds' ratios {}",
        cpu.1 / k,
        cpu.0 / k,
        cpu.2,
        ratio2(cpu.1, cpu.0),
        if ratios.is_empty() { "n/a".to_string() } else { format!("{:.2}x", median(&ratios)) }
    );
}

/// The console's grid: pictures made against keyframes, and the server's CPU against no browser.
fn grid_lines(w: &mut String, r: &ResolutionResult) {
    let Some(none) = r.grid.iter().find(|g| g.browsers == 0) else {
        return;
    };
    let _ = writeln!(w, "\nThe console's grid ({} RTMP streams; made = pictures made over the window, keyframes = the streams' keyframes over it; bound = keyframes + one per stream for the window's edge):\n", none.streams);
    let _ = writeln!(w, "| browsers | window s | keyframes | pictures made | made / keyframes | bound | within | cache hits | pictures answered | server CPU % | CPU ratio to no browser | other processes CPU % |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for g in &r.grid {
        let _ = writeln!(
            w,
            "| {} | {:.0} | {} | {} | {:.2} | {} | {} | {} | {} | {:.1} | {} | {:.0} |",
            g.browsers,
            g.window_s,
            g.keyframes,
            g.made,
            g.made as f64 / g.keyframes.max(1) as f64,
            g.keyframes + g.streams as u64,
            yes_no(g.within_bound()),
            g.hits,
            g.requests,
            g.cpu_pct,
            ratio2(g.cpu_pct, none.cpu_pct),
            g.other_pct
        );
    }
    let _ = writeln!(
        w,
        "\n- the grid adds at most one decode per stream per keyframe, whatever the number of browsers: {}",
        if r.grid.iter().all(GridFigures::within_bound) { "met" } else { "not met" }
    );
}

/// Pull jobs against the goal, and their CPU and PSS per job beside RTMP periodic's per stream.
fn jobs_lines(w: &mut String, r: &ResolutionResult, idle: Option<&Row>) {
    let (idle_cpu, idle_pss) = idle.map_or((0.0, 0.0), |i| (i.cpu_pct, i.pss_mib));
    let per = |x: &Row, v: f64, base: f64| (v - base) / x.streams.max(1) as f64;
    let periodic = r
        .rows
        .iter()
        .find(|x| x.kind == Kind::Periodic && x.streams > 0);
    for x in r.rows.iter().filter(|x| x.kind == Kind::Jobs) {
        let Some(a) = &x.auto else { continue };
        let share = a.made as f64 / a.due.max(1e-9);
        let _ = writeln!(
            w,
            "\n- {}: pictures made / due {} / {:.0} = {:.1} % (goal >= {:.0} %): {}",
            x.name,
            a.made,
            a.due,
            share * 100.0,
            TARGET_JOBS_MADE * 100.0,
            if share >= TARGET_JOBS_MADE {
                "met"
            } else {
                "not met"
            }
        );
        let mut cpu = format!(
            "  livesnap CPU per job {:.3} % ({:.3} % minus idle), PSS per job {:.2} MiB ({:.2} minus idle)",
            per(x, x.cpu_pct, 0.0),
            per(x, x.cpu_pct, idle_cpu),
            per(x, x.pss_mib, 0.0),
            per(x, x.pss_mib, idle_pss)
        );
        if let Some(p) = periodic {
            let _ = write!(
                cpu,
                "; RTMP periodic (N = {}): CPU per stream {:.3} % ({:.3} % minus idle), PSS per stream {:.2} MiB ({:.2} minus idle); job / RTMP CPU minus idle = {}",
                p.streams,
                per(p, p.cpu_pct, 0.0),
                per(p, p.cpu_pct, idle_cpu),
                per(p, p.pss_mib, 0.0),
                per(p, p.pss_mib, idle_pss),
                ratio(per(x, x.cpu_pct, idle_cpu), per(p, p.cpu_pct, idle_cpu))
            );
        } else {
            cpu.push_str("; RTMP periodic not run in this invocation (add `periodic` to --scenarios to compare)");
        }
        let _ = writeln!(w, "{cpu}");
    }
}

fn on_demand_table(w: &mut String, r: &ResolutionResult) {
    let rows: Vec<&Row> = r.rows.iter().filter(|x| x.on_demand.is_some()).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(w, "\nOn demand:\n");
    let _ = writeln!(w, "| scenario | N | clients | requests/s | pictures made/s (misses) | hits | misses | hit p50 / p99 ms | miss p50 / p99 ms | mean KiB | errors | server CPU % |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let Some(o) = &row.on_demand else { continue };
        let _ = writeln!(
            w,
            "| {} | {} | {}{} | {:.1} | {:.2} | {} | {} | {} / {} | {} / {} | {:.0} | {} | {:.1} |",
            row.name,
            row.streams,
            o.clients,
            o.pace_per_s
                .map_or(String::new(), |p| format!(" x {p:.0}/s")),
            o.ok as f64 / o.window_s,
            o.misses as f64 / o.window_s,
            o.hits,
            o.misses,
            opt(o.hit_p50, 2),
            opt(o.hit_p99, 2),
            opt(o.miss_p50, 1),
            opt(o.miss_p99, 1),
            o.mean_kib,
            o.errors,
            row.cpu_pct
        );
        if let Some(e) = &o.first_error {
            let _ = writeln!(w, "\n  first error of {}: `{e}`\n", row.name);
        }
    }
    let auth: Vec<&OnDemandFigures> = r
        .rows
        .iter()
        .filter(|x| x.kind == Kind::Auth)
        .filter_map(|x| x.on_demand.as_ref())
        .collect();
    if let [off, on] = auth[..] {
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        let _ = writeln!(
            w,
            "\n- on-demand latency with API keys on against off (light load, same run): miss p50 {} / {} ms = {} x, hit p50 {} / {} ms = {} x, p99 {} / {} ms = {} x; errors {} on, {} off",
            opt(on.miss_p50, 1),
            opt(off.miss_p50, 1),
            opt(ratio(on.miss_p50, off.miss_p50), 2),
            opt(on.hit_p50, 1),
            opt(off.hit_p50, 1),
            opt(ratio(on.hit_p50, off.hit_p50), 2),
            opt(on.all_p99, 1),
            opt(off.all_p99, 1),
            opt(ratio(on.all_p99, off.all_p99), 2),
            on.errors,
            off.errors
        );
    }
    let abuse: Vec<&OnDemandFigures> = r
        .rows
        .iter()
        .filter(|x| x.kind == Kind::Abuse)
        .filter_map(|x| x.on_demand.as_ref())
        .collect();
    if let [before, under] = abuse[..] {
        let ratio = under.all_p99.zip(before.all_p99).map(|(u, b)| u / b);
        let _ = writeln!(
            w,
            "\n- honest on-demand p99 (light load, hits and misses) under abuse {} ms against {} ms before it = {} x (goal <= {TARGET_ABUSE_P99_RATIO}x): {}; errors {} under abuse, {} before",
            opt(under.all_p99, 1),
            opt(before.all_p99, 1),
            opt(ratio, 2),
            ratio.map_or("no answers", |r| if r <= TARGET_ABUSE_P99_RATIO { "met" } else { "not met" }),
            under.errors,
            before.errors
        );
    }
}

/// CPU % per stream of one round's ingest, periodic and baselines, and the ratios they give.
struct RoundCpu {
    ingest: Option<f64>,
    periodic: f64,
    /// (name, CPU % per stream) of each baseline.
    baselines: Vec<(String, f64)>,
}

impl RoundCpu {
    fn of(rows: &[Row]) -> Option<RoundCpu> {
        let per = |r: &Row| r.cpu_pct / r.streams.max(1) as f64;
        let p = rows
            .iter()
            .find(|x| x.kind == Kind::Periodic && x.streams > 0)?;
        Some(RoundCpu {
            ingest: rows
                .iter()
                .find(|x| x.kind == Kind::Ingest && x.streams > 0)
                .map(per),
            periodic: per(p),
            baselines: rows
                .iter()
                .filter(|x| x.kind == Kind::Baseline)
                .map(|b| (b.name.clone(), per(b)))
                .collect(),
        })
    }

    /// The CPU % per stream of a server with no overhead at all: this round's ingest alone plus
    /// one picture per 5 s at the limit (decode + encode of the mean keyframe).
    fn bound(&self, limit: Option<&Limit>) -> Option<f64> {
        Some(self.ingest? + limit?.sum_ms() / 50.0)
    }
}

fn ratio(b: f64, l: f64) -> String {
    if l > 0.0 {
        format!("{:.1}x", b / l)
    } else {
        "n/a".into()
    }
}

/// [`ratio`] with two decimals, for ratios near 1.
fn ratio2(b: f64, l: f64) -> String {
    if l > 0.0 {
        format!("{:.2}x", b / l)
    } else {
        "n/a".into()
    }
}

fn ratio_table(w: &mut String, r: &ResolutionResult, idle: Option<&Row>) {
    let Some(p) = r.rows.iter().find(|x| x.kind == Kind::Periodic) else {
        return;
    };
    let baselines: Vec<&Row> = r.rows.iter().filter(|x| x.kind == Kind::Baseline).collect();
    if baselines.is_empty() || p.streams == 0 {
        return;
    }
    let n = p.streams as f64;
    let (idle_cpu, idle_pss) = idle.map_or((0.0, 0.0), |i| (i.cpu_pct, i.pss_mib));
    let bound = RoundCpu::of(&r.rows).and_then(|c| c.bound(r.limit_all.as_ref()));
    let _ = writeln!(w, "\nRatios, baseline / livesnap periodic, per stream (whole process / N, idle cost included, is the conservative figure; minus idle subtracts livesnap's idle server first; the bound is the ratio a server with no overhead at all would reach: this run's ingest-only CPU per stream plus one picture per 5 s at the limit, mean keyframe):\n");
    let _ = writeln!(w, "| baseline | CPU ratio (whole / N) | CPU ratio (minus idle) | CPU ratio bound (ingest + limit) | PSS ratio (whole / N) | PSS ratio (minus idle) |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for b in baselines {
        let bn = b.streams.max(1) as f64;
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            b.name,
            ratio(b.cpu_pct / bn, p.cpu_pct / n),
            ratio(b.cpu_pct / bn, (p.cpu_pct - idle_cpu) / n),
            bound.map_or("n/a".into(), |l| ratio(b.cpu_pct / bn, l)),
            ratio(b.pss_mib / bn, p.pss_mib / n),
            ratio(b.pss_mib / bn, (p.pss_mib - idle_pss) / n),
        );
    }
    rounds_table(w, r);
}

/// Every round's CPU per stream and ratios, and the median ratio over the rounds.
fn rounds_table(w: &mut String, r: &ResolutionResult) {
    if r.extra_rounds.is_empty() {
        return;
    }
    let rounds: Vec<RoundCpu> = std::iter::once(&r.rows)
        .chain(r.extra_rounds.iter())
        .filter_map(|rows| RoundCpu::of(rows))
        .collect();
    let Some(first) = rounds.first() else {
        return;
    };
    let names: Vec<String> = first.baselines.iter().map(|(n, _)| n.clone()).collect();
    let _ = writeln!(w, "\nCPU % per stream by round (round 1 is the main run above; the others ran back to back after it; ratios are baseline / livesnap periodic; bound as above):\n");
    let mut head = "| round | ingest | periodic |".to_string();
    let mut rule = "|---|---|---|".to_string();
    for n in &names {
        head += &format!(" {n} | ratio | bound |");
        rule += "---|---|---|";
    }
    let _ = writeln!(w, "{head}\n{rule}");
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for (i, c) in rounds.iter().enumerate() {
        let mut line = format!(
            "| {} | {} | {:.2} |",
            i + 1,
            c.ingest.map_or("-".into(), |v| format!("{v:.2}")),
            c.periodic
        );
        let bound = c.bound(r.limit_all.as_ref());
        // By name: a later round may measure only some of the first round's baselines.
        for (name, v) in names.iter().zip(ratios.iter_mut()) {
            let Some((_, b)) = c.baselines.iter().find(|(n, _)| n == name) else {
                line += " - | - | - |";
                continue;
            };
            if c.periodic > 0.0 {
                v.push(b / c.periodic);
            }
            line += &format!(
                " {b:.2} | {} | {} |",
                ratio(*b, c.periodic),
                bound.map_or("n/a".into(), |l| ratio(*b, l))
            );
        }
        let _ = writeln!(w, "{line}");
    }
    for (n, v) in names.iter().zip(&ratios) {
        if !v.is_empty() {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            let _ = writeln!(
                w,
                "- CPU ratio vs {n}: median {:.1}x over {} rounds (range {lo:.1}x to {hi:.1}x)",
                median(v),
                v.len()
            );
        }
    }
}

fn limit_line(w: &mut String, label: &str, l: &Limit, cores: usize) {
    let _ = writeln!(
        w,
        "| {label} | {}x{} | {:.0} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {:.1} | {:.0} |",
        l.width,
        l.height,
        l.keyframe_bytes as f64 / 1024.0,
        l.decoder,
        l.decode_ms,
        l.decode_cpu_ms,
        l.encode_ms,
        l.encode_cpu_ms,
        l.sum_ms(),
        l.pictures_per_s(cores),
        l.jpeg_bytes as f64 / 1024.0
    );
}

fn limit_section(w: &mut String, run: &RunInfo, r: &ResolutionResult) {
    let sat = r.saturation.as_ref();
    if r.limit.is_none() && sat.is_none() {
        return;
    }
    let cores = run.cores;
    let _ = writeln!(
        w,
        "\nThe limit (in-process, {cores} cores; per keyframe the median of {} runs after 2 warm-up runs; \"mean\" rows average several keyframes' medians):\n",
        r.limit
            .as_ref()
            .or(sat.map(|s| &s.limit))
            .map_or(0, |l| l.iterations)
    );
    let _ = writeln!(w, "| keyframe | size | keyframe KiB | decoder | decode ms wall / CPU | encode ms (JPEG q85) wall / CPU | decode + encode ms (own) | limit pictures/s = cores / own | JPEG KiB |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    let mut limits = Vec::new();
    if let Some(l) = &r.limit {
        limit_line(w, "camera input, first keyframe", l, cores);
        limits.push(l);
    }
    if let Some(l) = &r.limit_all {
        limit_line(w, "camera input, mean of all its keyframes", l, cores);
        limits.push(l);
    }
    if let Some(s) = sat {
        limit_line(w, "all-intra input, mean of 5 frames", &s.limit, cores);
        limits.push(&s.limit);
    }
    let _ = writeln!(w);
    for l in limits {
        let cpu_ratio = (l.decode_cpu_ms + l.encode_cpu_ms) / l.sum_ms();
        if cpu_ratio > 1.2 {
            let _ = writeln!(w, "- {}x{} ({} KiB keyframe): the backends use {cpu_ratio:.1}x their wall time in CPU (threads): the throughput bound is cores / CPU time = {:.1} pictures/s", l.width, l.height, l.keyframe_bytes / 1024, l.cpu_pictures_per_s(cores));
        } else if cpu_ratio < 0.9 {
            let _ = writeln!(w, "- {}x{} ({} KiB keyframe): CPU time is {:.0} % of wall time: other processes took the core during the measurement; the own times are the CPU times", l.width, l.height, l.keyframe_bytes / 1024, cpu_ratio * 100.0);
        }
    }
    // Publishers loop the input, so misses decode all its keyframes in turn: compare with their
    // mean, not with the first keyframe alone (keyframes' sizes differ).
    if let Some(l) = r.limit_all.as_ref().or(r.limit.as_ref()) {
        let light = r
            .rows
            .iter()
            .filter_map(|x| x.on_demand.as_ref())
            .find(|o| o.pace_per_s.is_some());
        if let Some(o) = light {
            let miss = o.miss_p50.map(|m| m / l.sum_ms());
            let _ = writeln!(
                w,
                "- on-demand cache miss (light load) p50 {} ms = {} x (decode + encode, mean of the camera keyframes) (target <= {TARGET_MISS_RATIO}x): {}",
                opt(o.miss_p50, 1),
                opt(miss, 2),
                miss.map_or("no misses", |m| if m <= TARGET_MISS_RATIO { "met" } else { "not met" })
            );
            let _ =
                writeln!(
                w,
                "- on-demand cache hit (light load) p50 {} ms (target < {TARGET_HIT_MS} ms): {}",
                opt(o.hit_p50, 2),
                o.hit_p50.map_or("no hits", |h| if h < TARGET_HIT_MS { "met" } else { "not met" })
            );
        }
    }
    let Some(s) = sat else { return };
    let _ = writeln!(w, "\nSaturation: {} publishers of the all-intra input ({}), template `every_n_frames: k`, JPEG q85 full size, local storage:\n", s.streams, s.input);
    let _ = writeln!(w, "| k | offered pictures/s | made/s | made / due | missed | lag p50 / p99 ms | server CPU % | server CPU ms / picture | load generator / other CPU % | keeps up |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for st in &s.steps {
        let a = &st.auto;
        let lag = a.lag.unwrap_or_default();
        let _ = writeln!(
            w,
            "| {} | {:.1} | {:.1} | {} / {:.0} | {} | {} / {} | {:.0} | {} | {:.0} / {:.0} | {} |",
            st.every_n,
            st.offered_per_s(),
            a.made_per_s(),
            a.made,
            a.due,
            a.missed,
            opt(lag.p50, 0),
            opt(lag.p99, 0),
            st.cpu_pct,
            opt(st.cpu_ms_per_picture(), 1),
            st.bench_pct,
            st.other_pct,
            yes_no(a.keeps_up())
        );
    }
    let limit = s.limit.pictures_per_s(cores);
    let pps = s.pictures_per_s();
    let share = pps / limit;
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "- pictures/s at saturation: {}{pps:.1} = {:.0} % of the limit {limit:.1} (all-intra keyframe; target >= {:.0} %): {}",
        if s.saturated() { "" } else { ">= " },
        share * 100.0,
        TARGET_SATURATION * 100.0,
        if share >= TARGET_SATURATION { "met" } else if s.saturated() { "not met" } else { "not saturated: raise the steps" }
    );
    // Other processes take cores from the server as much as from the limit measurement; CPU
    // time per picture is the figure their load does not move.
    let at_sat = s
        .steps
        .iter()
        .max_by(|a, b| a.auto.made_per_s().total_cmp(&b.auto.made_per_s()));
    if let Some(ms) = at_sat.and_then(|st| st.cpu_ms_per_picture()) {
        let lib = s.limit.decode_cpu_ms + s.limit.encode_cpu_ms;
        let _ = writeln!(
            w,
            "- CPU per picture at the busiest step: server {ms:.1} ms (ingest of the {} streams, HTTP, storage and index included) vs decode + encode {lib:.1} ms CPU in-process: {:.0} % efficiency (not moved by other processes' load, unlike pictures/s)",
            s.streams,
            lib / ms * 100.0
        );
    }
    if let Some(v) = &s.verify {
        let a = v.row.auto.as_ref();
        let _ = writeln!(
            w,
            "- largest N at interval 5 s: derived {}{} (pictures/s at saturation x 5){}; measured at N = {}: {} / {:.0} made, {} missed, lag p99 {} ms, server CPU {:.0} %: {}",
            if s.saturated() { "" } else { ">= " },
            v.derived,
            if v.capped { format!(", capped by --max-streams {}", run.max_streams) } else { String::new() },
            v.row.streams,
            a.map_or(0, |a| a.made),
            a.map_or(0.0, |a| a.due),
            a.map_or(0, |a| a.missed),
            opt(a.and_then(|a| a.lag).and_then(|l| l.p99), 0),
            v.row.cpu_pct,
            if a.is_some_and(|a| a.keeps_up()) { "keeps up" } else { "falls behind" }
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
