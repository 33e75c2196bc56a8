//! The `grid` scenario: what the console's grid of live streams costs the server. 20 RTMP
//! publishers on one server; the console page (`http://HTTP/`, whose live grid polls
//! `GET /v1/streams` every 2 s and asks `snapshot.jpg?width=480&ask_keyframe=false` of a stream
//! once per new keyframe) is opened in headless Chromium, one window with no browser, one with
//! 1 and one with 3 browsers open, back to back on the same server and streams.
//!
//! Over each window: the deltas of `counters.pictures_made`, `cache_hits` and `on_demand` of
//! `GET /v1/pictures`, and of every stream's `keyframes` in `GET /v1/streams`; the server's CPU
//! from /proc. The grid may cost at most one decode per stream per keyframe, whatever the number
//! of browsers: pictures made <= keyframes, plus at most one per stream for the window's edge
//! (a keyframe that came just before the window pictured just inside it).
//!
//! Chromium is Debian's (`/usr/bin/chromium`, or `chromium` on PATH), run directly as a child
//! process in a process group of its own, with an empty profile in the run's temp dir; it is
//! killed (the group, then any process left that names its profile) when dropped.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flv::VideoTag;
use crate::harness::{measure, Load, Server};
use crate::report::{GridFigures, Kind, Row};
use crate::Ctx;

/// Streams in the grid (the figure).
pub const GRID_STREAMS: usize = 20;
/// Browsers open in each measured window after the first (none).
const BROWSERS: [usize; 3] = [0, 1, 3];
/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a browser gets to start and ask for every stream's first picture.
const LOAD_WAIT: Duration = Duration::from_secs(45);
/// How long a killed browser's processes get to go.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The three windows (0, 1 and 3 browsers); rows for the main table and the grid's figures.
pub fn run(
    ctx: &Ctx,
    tag: &str,
    tags: &Arc<Vec<VideoTag>>,
) -> Result<(Vec<Row>, Vec<GridFigures>), String> {
    let bin = chromium()?;
    let n = GRID_STREAMS;
    let server = Server::start(&ctx.livesnap, &ctx.tmp.join(format!("{tag}-grid")))?;
    let mut browsers: Vec<Browser> = Vec::new();
    let result = (|| {
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        let url = format!("http://{}/", server.http);
        let mut rows = Vec::new();
        let mut figures: Vec<GridFigures> = Vec::new();
        for want in BROWSERS {
            if browsers.len() < want {
                let opened = want - browsers.len();
                // What the grids already open ask for meanwhile, at the last window's rate.
                let rate = figures
                    .last()
                    .map_or(0.0, |f| f.requests as f64 / f.window_s);
                let before = (counters(&server)?, Instant::now());
                while browsers.len() < want {
                    let dir = ctx.tmp.join(format!("{tag}-chromium-{}", browsers.len()));
                    browsers.push(Browser::open(&bin, &url, &dir, ctx.keep)?);
                }
                wait_loaded(&server, before, opened * n, rate, &browsers)?;
                // A poll period and more: every open grid has shown its first pictures.
                std::thread::sleep(ctx.warmup);
            }
            let (row, fig) = window(ctx, &server, &load, n, want)?;
            eprintln!(
                "[bench] {tag} grid, {want} browser(s): {} pictures made for {} keyframes, {} cache hits, server {:.1} % CPU",
                fig.made, fig.keyframes, fig.hits, fig.cpu_pct
            );
            rows.push(row);
            figures.push(fig);
        }
        load.stop(&ctx.rt);
        Ok((rows, figures))
    })();
    drop(browsers);
    server.stop(ctx.keep);
    result
}

/// Chromium's path, or why the scenario cannot run.
fn chromium() -> Result<PathBuf, String> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(PathBuf::from(CHROMIUM));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "the grid scenario needs Chromium ({CHROMIUM} or chromium on PATH), and there is none: install Debian's chromium (scripts/test does: apt-get install chromium)"
            )
        })
}

/// The picture service's counters the scenario reads.
#[derive(Clone, Copy)]
struct Counters {
    made: u64,
    hits: u64,
    on_demand: u64,
}

fn counters(server: &Server) -> Result<Counters, String> {
    let v = server.get_json("/v1/pictures")?;
    let c = &v["counters"];
    let field = |name: &str| {
        c[name]
            .as_u64()
            .ok_or_else(|| format!("/v1/pictures has no counters.{name}: {v}"))
    };
    Ok(Counters {
        made: field("pictures_made")?,
        hits: field("cache_hits")?,
        on_demand: field("on_demand")?,
    })
}

/// Each live stream's `keyframes`, by name.
fn keyframes(server: &Server) -> Result<HashMap<String, u64>, String> {
    let v = server.get_json("/v1/streams")?;
    let streams = v["streams"]
        .as_array()
        .ok_or_else(|| format!("/v1/streams has no streams array: {v}"))?;
    Ok(streams
        .iter()
        .map(|s| {
            (
                format!("{}/{}/{}", s["domain"], s["app"], s["stream"]),
                s["keyframes"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// Waits until the browsers just opened have asked for `requests` pictures (a first picture of
/// every stream each), beyond what the grids open before them ask for at `rate` per second.
fn wait_loaded(
    server: &Server,
    (before, start): (Counters, Instant),
    requests: usize,
    rate: f64,
    browsers: &[Browser],
) -> Result<(), String> {
    loop {
        let now = counters(server)?;
        let asked = now.on_demand.saturating_sub(before.on_demand);
        let others = (rate * start.elapsed().as_secs_f64()) as u64;
        if asked >= requests as u64 + others {
            return Ok(());
        }
        if let Some(b) = browsers.iter().find(|b| b.exited()) {
            return Err(format!(
                "Chromium exited before the grid loaded; see {}",
                b.log.display()
            ));
        }
        if start.elapsed() > LOAD_WAIT {
            return Err(format!(
                "the console's grid asked for {asked} of {requests} first pictures within {} s (Chromium's log: {})",
                LOAD_WAIT.as_secs(),
                browsers.last().map_or(String::new(), |b| b.log.display().to_string())
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One window with `browsers` grids open.
fn window(
    ctx: &Ctx,
    server: &Server,
    load: &Load,
    n: usize,
    browsers: usize,
) -> Result<(Row, GridFigures), String> {
    let (c0, k0) = (counters(server)?, keyframes(server)?);
    let m = measure(&[server.pid()], ctx.window, ctx.tck);
    let (c1, k1) = (counters(server)?, keyframes(server)?);
    let pacing = load.check(n)?;
    if k1.len() != n {
        return Err(format!(
            "{} of {n} streams live at the end of the window",
            k1.len()
        ));
    }
    let keyframes: u64 = k1
        .iter()
        .map(|(name, k)| k.saturating_sub(k0.get(name).copied().unwrap_or(0)))
        .sum();
    let fig = GridFigures {
        browsers,
        streams: n,
        window_s: ctx.window.as_secs_f64(),
        made: c1.made.saturating_sub(c0.made),
        hits: c1.hits.saturating_sub(c0.hits),
        requests: c1.on_demand.saturating_sub(c0.on_demand),
        keyframes,
        cpu_pct: m.cpu_pct,
        other_pct: m.other_pct,
    };
    let name = match browsers {
        0 => format!("livesnap, {n} RTMP streams, no browser (grid scenario)"),
        1 => format!("livesnap, {n} RTMP streams, the console's grid open in 1 headless Chromium"),
        b => {
            format!("livesnap, {n} RTMP streams, the console's grid open in {b} headless Chromiums")
        }
    };
    let row = Row {
        name,
        kind: Kind::Grid,
        streams: n,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: None,
        note: format!(
            "{} pictures made for {} keyframes, {} cache hits, {} pictures answered; {pacing}; {} (Chromium's in other processes)",
            fig.made,
            fig.keyframes,
            fig.hits,
            fig.requests,
            m.note()
        ),
        auto: None,
        on_demand: None,
    };
    Ok((row, fig))
}

/// A headless Chromium showing one page, in a process group of its own; killed when dropped.
struct Browser {
    child: Child,
    /// Its profile (`--user-data-dir`): a name no other process has.
    dir: PathBuf,
    log: PathBuf,
    keep: bool,
}

impl Browser {
    fn open(bin: &Path, url: &str, dir: &Path, keep: bool) -> Result<Browser, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.with_extension("log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1600,2400",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg(url)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        Ok(Browser {
            child,
            dir: dir.to_path_buf(),
            log,
            keep,
        })
    }

    fn exited(&self) -> bool {
        // A zombie until waited for: look at its state rather than reaping it here.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        stat.map_or(true, |s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next())
                .is_none_or(|state| state == "Z" || state == "X")
        })
    }

    /// Processes (other than this one) whose command line names the profile directory.
    fn leftovers(&self) -> Vec<i32> {
        let needle = format!("--user-data-dir={}", self.dir.display());
        let me = std::process::id() as i32;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == needle.as_bytes()))
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with the negated id of the process group this child leads (made by
        // `process_group(0)` at spawn); no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A helper that left the group (none does today) still names the profile.
        let until = Instant::now() + EXIT_WAIT;
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                break;
            }
            if Instant::now() > until {
                eprintln!(
                    "[bench] warning: Chromium processes {left:?} of {} did not exit",
                    self.dir.display()
                );
                break;
            }
            for pid in left {
                // SAFETY: as above, for a process found by its command line naming our profile.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
