//! The `jobs` scenario (issue 15): N pull jobs (`POST /v1/jobs`) of ONE shared mount of a
//! third-party RTSP server, each picturing through a template `interval_s: 5` (JPEG, sequence
//! mode, local storage); pictures made / due per job from the index, and livesnap's CPU and PSS
//! per job.
//!
//! The RTSP server is GStreamer's gst-rtsp-server (`peers/rtsp_file_server.py`, on Debian's
//! python3 with python3-gi): it serves the bench's camera-like input at the run's resolution,
//! pre-encoded, looped at real-time pace, one shared media for every client (no transcoding),
//! so the machine's cores go to livesnap. Its own CPU is measured apart and is not livesnap's.
//!
//! Pictures due, exactly. A job's pictures are due every 5 s from its start, and each is taken
//! at the first keyframe at or after its due time and stamped with that keyframe's arrival
//! (`time_ms` of the index row; `core::schedule`). The input has a keyframe every 2 s, so a
//! job's picture times repeat every 10 s (lcm of 5 and 2), two per period, whatever the job's
//! phase: a window of a whole number of periods holds exactly window / 5 of each job's
//! pictures, unless a picture falls on an edge. So, once every job is `running` and after the
//! warm-up, the window is `[start, start + W)`: W is `--seconds` rounded up to a multiple of
//! 10 s, and `start` lies half a GOP (1 s) after a keyframe, as the newest picture's `time_ms`
//! shows, so that every picture is about 1 s from either edge. Per job, due = W / 5 and made =
//! the job's index rows (`GET /v1/snapshots?job=ID`) with `start <= time_ms < start + W`;
//! the total made / due is held against the goal of 99 %. The server's CPU and PSS are measured
//! over the same window.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::harness::{measure, Server};
use crate::input::{FPS, GOP_FRAMES};
use crate::procstat::CpuSample;
use crate::report::{AutoFigures, Kind, Row};
use crate::scenarios::PICTURE_INTERVAL_S;
use crate::Ctx;

/// Debian's python3, which has `gi` (another python3 on PATH may not).
const PYTHON: &str = "/usr/bin/python3";
/// The RTSP server script, written into the run's temp dir so the binary runs from anywhere.
const RTSP_SERVER_PY: &str = include_str!("../peers/rtsp_file_server.py");
/// The shared mount the script serves.
const MOUNT: &str = "/test";
/// Name of the template every job pictures with.
const TEMPLATE: &str = "bench-jobs";
/// Due pictures' spacing and the input's keyframe spacing, ms.
const INTERVAL_MS: i64 = PICTURE_INTERVAL_S as i64 * 1000;
const GOP_MS: i64 = (GOP_FRAMES * 1000 / FPS) as i64;
/// How long every job gets to reach `running`.
const RUNNING_WAIT: Duration = Duration::from_secs(30);
/// How long after the warm-up the first picture of any job may take.
const FIRST_PICTURE_WAIT: Duration = Duration::from_secs(10);
/// Between two polls of the jobs' states or of the first picture.
const POLL: Duration = Duration::from_millis(500);
/// Least time from placing the window to its start: the jobs' counters are read in between.
const MIN_LEAD_MS: i64 = 1000;
/// Rows per page of `GET /v1/snapshots` (the API's maximum).
const PAGE_ROWS: u32 = 1000;
/// Pages read per job at most: a cursor that never ends is a server bug, not a reason to hang.
const MAX_PAGES: usize = 100;
/// Characters of a response quoted in an error.
const EXCERPT_CHARS: usize = 300;

/// N pull jobs of one shared RTSP mount serving `input`, one window; see the module doc.
pub fn run(ctx: &Ctx, tag: &str, input: &Path, n: usize) -> Result<Row, String> {
    let peer = RtspPeer::start(&ctx.tmp, input, tag)?;
    let server = Server::start(&ctx.livesnap, &ctx.tmp.join(format!("{tag}-jobs")))?;
    let result = measure_jobs(ctx, &server, &peer, n);
    server.stop(ctx.keep);
    result
}

fn measure_jobs(ctx: &Ctx, server: &Server, peer: &RtspPeer, n: usize) -> Result<Row, String> {
    let template = json!({
        "name": TEMPLATE,
        "interval_s": PICTURE_INTERVAL_S,
        "format": "jpg",
        "storage": "local",
        "modes": ["sequence"],
    });
    server.post("/v1/templates", &template.to_string())?;
    let url = format!("rtsp://127.0.0.1:{}{MOUNT}", peer.port);
    // Back to back, as an operator's script would: the mount is shared, so every job sees the
    // same keyframes whenever it starts.
    let jobs = (0..n)
        .map(|i| create(server, i, &url))
        .collect::<Result<Vec<_>, _>>()?;
    wait_running(server, &jobs)?;
    std::thread::sleep(ctx.warmup);

    let newest = wait_first_picture(server)?;
    let window = window_ms(ctx.window.as_millis() as i64, INTERVAL_MS, GOP_MS);
    let start = window_start(newest, unix_ms() + MIN_LEAD_MS, GOP_MS);
    eprintln!(
        "[bench] jobs: {n} running; window of {} s from {start} (Unix ms), 1 s after a keyframe",
        window / 1000
    );
    let before = states(server, &jobs)?;
    sleep_until(start);
    let peer_cpu = CpuSample::take(&[peer.pid()]);
    let m = measure(
        &[server.pid()],
        Duration::from_millis(window as u64),
        ctx.tck,
    );
    let peer_pct = peer_cpu.since(&[peer.pid()], ctx.tck).measured;
    let after = states(server, &jobs)?;
    let auto = server.automation()?;
    let missed = server.stream_totals()?.missed;

    let times = jobs
        .iter()
        .map(|j| picture_times(server, &j.id, start))
        .collect::<Result<Vec<_>, _>>()?;
    let t = tally(&times, start, window, INTERVAL_MS);
    let window_s = window as f64 / 1000.0;

    let mut note = String::new();
    match counters_delta(&before, &after) {
        Some(d) => {
            let _ = write!(
                note,
                "{:.1} fps received per job, {} reconnects, job counters +{} pictures",
                d.frames as f64 / window_s / n as f64,
                d.reconnects,
                d.pictures
            );
        }
        None => note.push_str("job counters not reported"),
    }
    let _ = write!(
        note,
        "; {} of {n} jobs made fewer than {} (fewest {}); nearest picture to a window edge {} ms",
        t.short_jobs,
        t.due_per_job,
        t.min_made,
        t.edge_ms.map_or("-".into(), |e| e.to_string())
    );
    let stopped: Vec<String> = after
        .iter()
        .filter(|j| j.state != "running")
        .map(|j| format!("{} {}", j.name, j.state))
        .collect();
    if !stopped.is_empty() {
        let _ = write!(note, "; not running at the end: {}", stopped.join(", "));
    }
    let _ = write!(
        note,
        "; RTSP server (gst-rtsp-server, one shared media) {peer_pct:.1} % CPU, in other processes; {}",
        m.note()
    );
    Ok(Row {
        name: format!(
            "livesnap {n} RTSP pull jobs of one shared mount (JPEG every {PICTURE_INTERVAL_S} s)"
        ),
        kind: Kind::Jobs,
        streams: n,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: Some((t.made as f64, t.due as f64)),
        note,
        auto: Some(AutoFigures {
            trigger: format!("interval {PICTURE_INTERVAL_S} s, pull jobs"),
            interval_s: f64::from(PICTURE_INTERVAL_S),
            window_s,
            made: t.made,
            due: t.due as f64,
            missed,
            lag: auto.lag,
        }),
        on_demand: None,
    })
}

/// The third-party RTSP server, killed on drop.
struct RtspPeer {
    child: Child,
    port: u16,
}

impl RtspPeer {
    /// Writes the script into `dir`, starts it on `input` and reads the port it prints.
    fn start(dir: &Path, input: &Path, tag: &str) -> Result<RtspPeer, String> {
        let script = dir.join("rtsp_file_server.py");
        std::fs::write(&script, RTSP_SERVER_PY)
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let log_path = dir.join(format!("{tag}-rtsp-server.log"));
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .arg(input)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {PYTHON} (the jobs scenario needs it): {e}"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        // Made before the port is known, so that a failed start kills the child too.
        let mut peer = RtspPeer { child, port: 0 };
        match line.trim().parse() {
            Ok(port) => {
                peer.port = port;
                Ok(peer)
            }
            Err(_) => Err(format!(
                "gst-rtsp-server did not start (python3-gi and gir1.2-gst-rtsp-server-1.0 are \
                 needed; scripts/test installs them): printed {line:?}; {}",
                excerpt(&std::fs::read_to_string(&log_path).unwrap_or_default())
            )),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RtspPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A job as `POST /v1/jobs` and `GET /v1/jobs/{id}` answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub name: String,
    /// `pending`, `running`, `retrying`, `failed` or `stopped`.
    pub state: String,
    /// `None` when the server does not give all four.
    pub counters: Option<Counters>,
    /// The start of the JSON, for errors.
    pub json: String,
}

/// A job's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames: u64,
    pub keyframes: u64,
    pub pictures: u64,
    pub reconnects: u64,
}

impl Job {
    pub fn parse(body: &str) -> Result<Job, String> {
        let v: Value =
            serde_json::from_str(body).map_err(|e| format!("job JSON: {e}: {}", excerpt(body)))?;
        let text = |key: &str| {
            v[key]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("job JSON has no {key}: {}", excerpt(body)))
        };
        let c = &v["counters"];
        let count = |key: &str| c[key].as_u64();
        let counters = (|| {
            Some(Counters {
                frames: count("frames")?,
                keyframes: count("keyframes")?,
                pictures: count("pictures")?,
                reconnects: count("reconnects")?,
            })
        })();
        Ok(Job {
            id: text("id")?,
            name: text("name")?,
            state: text("state")?,
            counters,
            json: excerpt(body),
        })
    }
}

/// Creates job `bench-{i}` pulling `url`.
fn create(server: &Server, i: usize, url: &str) -> Result<Job, String> {
    let body = json!({"name": format!("bench-{i}"), "input_url": url, "template": TEMPLATE});
    let (status, resp) = server.request("POST", "/v1/jobs", Some(&body.to_string()))?;
    match status {
        201 => Job::parse(&resp),
        // The router's fallback: the route itself is missing.
        404 if resp.contains("no such endpoint") => Err(format!(
            "POST /v1/jobs answered 404 ({}): this livesnap has no jobs API (issue 15's pull \
             jobs); build one that has it",
            excerpt(&resp)
        )),
        _ => Err(format!(
            "POST /v1/jobs (job bench-{i}): {status} {}",
            excerpt(&resp)
        )),
    }
}

/// Every job as the server has it now.
fn states(server: &Server, jobs: &[Job]) -> Result<Vec<Job>, String> {
    jobs.iter()
        .map(|j| {
            let path = format!("/v1/jobs/{}", escape(&j.id));
            let (status, body) = server.request("GET", &path, None)?;
            if status != 200 {
                return Err(format!("GET {path}: {status} {}", excerpt(&body)));
            }
            Job::parse(&body)
        })
        .collect()
}

/// Waits until every job is `running`; fails at once on a `failed` or `stopped` one.
fn wait_running(server: &Server, jobs: &[Job]) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let now = states(server, jobs)?;
        if let Some(j) = now
            .iter()
            .find(|j| j.state == "failed" || j.state == "stopped")
        {
            return Err(format!(
                "job {} is {} before the window: {}",
                j.name, j.state, j.json
            ));
        }
        let running = now.iter().filter(|j| j.state == "running").count();
        if running == jobs.len() {
            return Ok(());
        }
        if started.elapsed() > RUNNING_WAIT {
            return Err(format!(
                "only {running} of {} jobs are running after {} s ({})",
                jobs.len(),
                RUNNING_WAIT.as_secs(),
                state_counts(&now)
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// `pending 3, running 47`.
fn state_counts(jobs: &[Job]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for j in jobs {
        match counts.iter_mut().find(|(s, _)| *s == j.state) {
            Some((_, c)) => *c += 1,
            None => counts.push((&j.state, 1)),
        }
    }
    counts.sort();
    counts
        .iter()
        .map(|(s, c)| format!("{s} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `time_ms` of the newest picture of any job, waiting for the first.
fn wait_first_picture(server: &Server) -> Result<i64, String> {
    let started = Instant::now();
    loop {
        let page = server.get_json("/v1/snapshots?limit=1")?;
        if let Some(&t) = parse_page(&page, None)?.0.iter().max() {
            return Ok(t);
        }
        if started.elapsed() > FIRST_PICTURE_WAIT {
            return Err(format!(
                "no job made a picture within {} s of the warm-up",
                FIRST_PICTURE_WAIT.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// `time_ms` of job `id`'s pictures, newest first, paging back until one older than `since_ms`.
fn picture_times(server: &Server, id: &str, since_ms: i64) -> Result<Vec<i64>, String> {
    let mut times = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut path = format!("/v1/snapshots?job={}&limit={PAGE_ROWS}", escape(id));
        if let Some(c) = &cursor {
            let _ = write!(path, "&cursor={}", escape(c));
        }
        let (page, next) = parse_page(&server.get_json(&path)?, Some(id))?;
        let reached = page.iter().any(|&t| t < since_ms);
        times.extend(page);
        match next {
            Some(c) if !reached => cursor = Some(c),
            _ => return Ok(times),
        }
    }
    Err(format!(
        "GET /v1/snapshots?job={id}: still more after {MAX_PAGES} pages"
    ))
}

/// The rows' `time_ms` and `next_cursor` of one page of `GET /v1/snapshots`; with `job`, fails
/// on a row of another job (a filter the server ignored would count others' pictures).
pub fn parse_page(v: &Value, job: Option<&str>) -> Result<(Vec<i64>, Option<String>), String> {
    let bad = |what: &str| format!("GET /v1/snapshots: {what}: {}", excerpt(&v.to_string()));
    let items = v["items"].as_array().ok_or_else(|| bad("no items array"))?;
    let times = items
        .iter()
        .map(|row| {
            if let Some(job) = job {
                if row["job"].as_str() != Some(job) {
                    return Err(bad(&format!("a row not of job {job}")));
                }
            }
            row["time_ms"]
                .as_i64()
                .ok_or_else(|| bad("a row without time_ms"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let next = match &v["next_cursor"] {
        Value::Null => None,
        Value::String(c) => Some(c.clone()),
        _ => return Err(bad("next_cursor is neither a string nor null")),
    };
    Ok((times, next))
}

/// Counters after minus before, summed over the jobs; `None` when any job lacks them.
fn counters_delta(before: &[Job], after: &[Job]) -> Option<Counters> {
    before
        .iter()
        .zip(after)
        .try_fold(Counters::default(), |sum, (b, a)| {
            let (b, a) = (b.counters?, a.counters?);
            Some(Counters {
                frames: sum.frames + a.frames.saturating_sub(b.frames),
                keyframes: sum.keyframes + a.keyframes.saturating_sub(b.keyframes),
                pictures: sum.pictures + a.pictures.saturating_sub(b.pictures),
                // A restarted counter would read as a huge reconnect count, not as none.
                reconnects: sum.reconnects + a.reconnects.saturating_sub(b.reconnects),
            })
        })
}

/// `want_ms` rounded up to a whole number of periods of the pictures' pattern, lcm(interval,
/// GOP): such a window holds exactly window / interval pictures of a job that keeps up.
pub fn window_ms(want_ms: i64, interval_ms: i64, gop_ms: i64) -> i64 {
    let period = lcm(interval_ms, gop_ms);
    let periods = (want_ms.max(1) + period - 1) / period;
    periods * period
}

/// The first instant at or after `earliest_ms` that lies half a GOP after a keyframe, given a
/// keyframe's arrival `keyframe_ms` (the time of a picture).
pub fn window_start(keyframe_ms: i64, earliest_ms: i64, gop_ms: i64) -> i64 {
    let first = keyframe_ms + gop_ms / 2;
    let gops = (earliest_ms - first + gop_ms - 1).div_euclid(gop_ms);
    first + gops * gop_ms
}

/// Pictures made and due in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Pictures of all the jobs with `start <= time_ms < start + window`.
    pub made: u64,
    /// jobs x `due_per_job`.
    pub due: u64,
    /// window / interval.
    pub due_per_job: u64,
    /// Jobs that made fewer than `due_per_job`.
    pub short_jobs: usize,
    /// The fewest any job made.
    pub min_made: u64,
    /// The least distance of any picture from either edge of the window, ms: about half a GOP
    /// when the count is unambiguous, near 0 when a picture's side of an edge is luck.
    pub edge_ms: Option<i64>,
}

/// Made and due over `[start_ms, start_ms + window_ms)` for each job's picture times.
pub fn tally(times: &[Vec<i64>], start_ms: i64, window_ms: i64, interval_ms: i64) -> Tally {
    let due_per_job = (window_ms / interval_ms).max(0) as u64;
    let end = start_ms + window_ms;
    let made: Vec<u64> = times
        .iter()
        .map(|t| t.iter().filter(|&&t| t >= start_ms && t < end).count() as u64)
        .collect();
    Tally {
        made: made.iter().sum(),
        due: due_per_job * times.len() as u64,
        due_per_job,
        short_jobs: made.iter().filter(|&&m| m < due_per_job).count(),
        min_made: made.iter().copied().min().unwrap_or(0),
        edge_ms: times
            .iter()
            .flatten()
            .map(|&t| (t - start_ms).abs().min((t - end).abs()))
            .min(),
    }
}

fn lcm(a: i64, b: i64) -> i64 {
    let (mut x, mut y) = (a.abs(), b.abs());
    while y != 0 {
        (x, y) = (y, x % y);
    }
    if x == 0 {
        0
    } else {
        a.abs() / x * b.abs()
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sleeps until the wall clock reads `at_ms` (the clock the server stamps pictures with).
fn sleep_until(at_ms: i64) {
    let wait = at_ms - unix_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
}

/// `s` percent-encoded for a URL's path segment or query value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"id":"j-01HX","name":"bench-3","input_url":"rtsp://127.0.0.1:8554/test",
        "template":"bench-jobs","state":"running",
        "counters":{"frames":900,"keyframes":15,"pictures":6,"reconnects":0},
        "created":"2026-12-05T10:00:00Z"}"#;

    #[test]
    fn parses_the_contracts_job() {
        let j = Job::parse(JOB).unwrap();
        assert_eq!(j.id, "j-01HX");
        assert_eq!(j.name, "bench-3");
        assert_eq!(j.state, "running");
        assert_eq!(
            j.counters,
            Some(Counters {
                frames: 900,
                keyframes: 15,
                pictures: 6,
                reconnects: 0
            })
        );
    }

    #[test]
    fn a_job_without_counters_parses_without_them_and_without_an_id_fails() {
        let j = Job::parse(r#"{"id":"a","name":"b","state":"pending","counters":{"frames":1}}"#)
            .unwrap();
        assert_eq!(j.counters, None);
        let e = Job::parse(r#"{"name":"b","state":"pending"}"#).unwrap_err();
        assert!(e.contains("no id"), "{e}");
        assert!(Job::parse("not json").is_err());
    }

    #[test]
    fn counters_add_up_over_the_jobs() {
        let at = |frames, pictures, reconnects| Job {
            counters: Some(Counters {
                frames,
                keyframes: 0,
                pictures,
                reconnects,
            }),
            ..Job::parse(JOB).unwrap()
        };
        let d = counters_delta(
            &[at(100, 1, 0), at(50, 2, 1)],
            &[at(700, 5, 0), at(650, 6, 2)],
        );
        assert_eq!(
            d.map(|d| (d.frames, d.pictures, d.reconnects)),
            Some((1200, 8, 1))
        );
        let none = Job {
            counters: None,
            ..at(0, 0, 0)
        };
        assert_eq!(counters_delta(&[at(0, 0, 0)], &[none]), None);
    }

    #[test]
    fn pages_give_times_and_the_cursor_and_refuse_other_jobs() {
        let page: Value = serde_json::from_str(
            r#"{"items":[{"id":"2","job":"j1","time_ms":2000},{"id":"1","job":"j1","time_ms":1000}],
                "next_cursor":"1000.1"}"#,
        )
        .unwrap();
        assert_eq!(
            parse_page(&page, Some("j1")).unwrap(),
            (vec![2000, 1000], Some("1000.1".to_string()))
        );
        assert!(parse_page(&page, Some("j2")).is_err());
        let last: Value = serde_json::from_str(r#"{"items":[],"next_cursor":null}"#).unwrap();
        assert_eq!(parse_page(&last, None).unwrap(), (vec![], None));
        assert!(parse_page(&json!({"items":[{"job":"j1"}]}), None).is_err());
    }

    #[test]
    fn windows_are_whole_periods_of_interval_and_gop() {
        assert_eq!(lcm(5000, 2000), 10_000);
        assert_eq!(window_ms(20_000, 5000, 2000), 20_000);
        assert_eq!(window_ms(4000, 5000, 2000), 10_000);
        assert_eq!(window_ms(20_001, 5000, 2000), 30_000);
        assert_eq!(window_ms(0, 5000, 2000), 10_000);
    }

    #[test]
    fn the_window_starts_half_a_gop_after_a_keyframe() {
        // Keyframe at 100_000: mid-GOP instants at 101_000, 103_000, 105_000 ...
        assert_eq!(window_start(100_000, 100_500, 2000), 101_000);
        assert_eq!(window_start(100_000, 101_000, 2000), 101_000);
        assert_eq!(window_start(100_000, 101_001, 2000), 103_000);
        assert_eq!(window_start(100_000, 106_400, 2000), 107_000);
        // A keyframe stamped a little ahead of the bench's clock still gives a later start.
        assert_eq!(window_start(100_000, 98_000, 2000), 99_000);
    }

    /// Pictures of a job that keeps up: due every 5 s from `phase`, each at the first keyframe
    /// (every 2 s from `key0`) at or after its due time.
    fn schedule(phase: i64, key0: i64, until: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut due = phase;
        while due < until {
            let k = key0 + (due - key0 + GOP_MS - 1).div_euclid(GOP_MS) * GOP_MS;
            out.push(k);
            due += INTERVAL_MS;
        }
        out
    }

    #[test]
    fn a_job_that_keeps_up_makes_exactly_what_is_due_whatever_its_phase() {
        let key0 = 1_000_000;
        let window = window_ms(20_000, INTERVAL_MS, GOP_MS);
        // Jobs started at every 100 ms over 10 s: every phase against the GOP and the interval.
        let jobs: Vec<Vec<i64>> = (0..100)
            .map(|i| schedule(key0 + i * 100, key0, key0 + 120_000))
            .collect();
        let start = window_start(key0 + 30_000, key0 + 40_300, GOP_MS);
        assert_eq!(start, key0 + 41_000);
        let t = tally(&jobs, start, window, INTERVAL_MS);
        assert_eq!(t.due_per_job, 4);
        assert_eq!((t.made, t.due, t.short_jobs, t.min_made), (400, 400, 0, 4));
        assert_eq!(t.edge_ms, Some(GOP_MS / 2));
    }

    #[test]
    fn a_missing_picture_counts_against_its_job() {
        let key0 = 0;
        let mut jobs: Vec<Vec<i64>> = (0..3).map(|i| schedule(i * 700, key0, 60_000)).collect();
        let start = window_start(20_000, 20_000, GOP_MS);
        let window = 20_000;
        // Job 1 loses one picture inside the window.
        let inside = jobs[1]
            .iter()
            .position(|&t| t >= start && t < start + window)
            .unwrap();
        jobs[1].remove(inside);
        let t = tally(&jobs, start, window, INTERVAL_MS);
        assert_eq!((t.made, t.due, t.short_jobs, t.min_made), (11, 12, 1, 3));
        assert_eq!(tally(&[], start, window, INTERVAL_MS).due, 0);
    }

    #[test]
    fn escapes_query_values() {
        assert_eq!(escape("1000.01HX-_~"), "1000.01HX-_~");
        assert_eq!(escape("a b/c+d=&"), "a%20b%2Fc%2Bd%3D%26");
    }
}
