//! Picture-work abuse against the real binary, each case bounded in count and time, loopback
//! only. Every case samples the server's RSS and thread count (from /proc) and the picture-work
//! gauges while it runs, and asserts that at most `workers` pictures are worked on at once (by
//! the gauge, and by the threads seen from outside), that the estimated picture memory stays
//! within `picture_memory_bytes`, that RSS stays within the idle RSS plus `picture_memory_bytes`
//! plus a fixed margin, and that an honest client still gets its picture (its own source frame,
//! by PSNR) from a server that is alive at the end:
//! - aborted huge requests: 30 requests for the largest output (DCI 8K), each given up by its
//!   client after 0.3 s;
//! - many sizes at once: 40 concurrent requests from 64 px wide to DCI 8K, each answered with a
//!   picture of its size or the documented busy answer (503, WCS 500) within
//!   `snapshot_taking_interval_ms` plus a margin;
//! - `precision=latest` on a full 720p GOP (300 frames, past the 250 a `latest` picture may
//!   decode) from 8 clients at once, while an honest client asks for keyframe pictures of
//!   another stream.
//! - a picture whose work outlasts its request is kept for the next request (a cache hit), not
//!   made and thrown away.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Decodes at once (`--workers`).
const WORKERS: usize = 2;
/// `--snapshot-taking-interval-ms`: the bound of an on-demand request's whole time.
const INTERVAL_MS: u64 = 3000;
/// How much later than the interval an answer may arrive here. The server answers at the
/// interval; this covers the harness and the loopback transfer of a picture of up to ~20 MB on
/// a 2-core machine whose cores are both decoding. A bound on behaviour, not a benchmark: a
/// request queued behind others (what the issue measured: p50 20 s, max 56 s) is far past it.
const LATE: Duration = Duration::from_secs(5);
/// `--cache-bytes`: made pictures kept, part of the margin below.
const CACHE_BYTES: u64 = 32 << 20;
/// RSS a running server may take beyond its idle RSS and its picture budget here: the snapshot
/// cache (CACHE_BYTES), pictures being answered, decoders kept per worker, the blocking threads'
/// stacks and the allocator's slack (a debug build). The estimate per picture (decoder pictures
/// and 8 bytes per output pixel) is meant to cover the work itself; 128 MiB is about half of one
/// DCI 8K picture's estimate, so a single picture escaping the gate, or the estimate falling
/// short by half a picture, fails the bound.
const MARGIN: u64 = CACHE_BYTES + (128 << 20);
/// The largest output the API accepts: DCI 8K (`media::picture::MAX_OUTPUT_PIXELS`).
const MAX_W: u32 = 8192;
const MAX_H: u32 = 4352;

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident memory now, in bytes.
fn rss(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:").expect("VmRSS") * 1024
}

/// The highest resident memory of the process's whole life, in bytes: catches a peak that falls
/// between two samples.
fn rss_peak(pid: u32) -> u64 {
    proc_status(pid, "VmHWM:").expect("VmHWM") * 1024
}

/// One series of `/metrics` text, e.g. `livesnap_picture_work_running` or
/// `livesnap_picture_work_waiting{priority="on_demand"}`.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = server.get("/metrics").text();
    series(&text, name).unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

const RUNNING: &str = "livesnap_picture_work_running";
const WAITING_ON_DEMAND: &str = "livesnap_picture_work_waiting{priority=\"on_demand\"}";
const WAITING_SCHEDULED: &str = "livesnap_picture_work_waiting{priority=\"scheduled\"}";
const MEMORY: &str = "livesnap_picture_memory_bytes";
/// Heavy pictures among those running (at most all workers but one), when the server says.
const HEAVY: &str = "livesnap_picture_work_running_heavy";

/// The server before the abuse.
#[derive(Debug, Clone, Copy)]
struct Idle {
    rss: u64,
    threads: u64,
}

fn idle(server: &Server) -> Idle {
    Idle {
        rss: rss(server.pid()),
        threads: proc_status(server.pid(), "Threads:").expect("Threads"),
    }
}

/// The highest figures seen while sampling.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    rss: u64,
    threads: u64,
    running: f64,
    /// None when the server has no such gauge.
    heavy: Option<f64>,
    memory: f64,
    waiting: f64,
    rss_samples: u32,
    metric_samples: u32,
}

/// Samples RSS and thread count every 20 ms and the picture-work gauges as often as `/metrics`
/// answers, until finished.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Peaks>>,
}

impl Sampler {
    fn start(server: &Server) -> Sampler {
        let pid = server.pid();
        let url = server.url("/metrics");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let rss_thread = {
            let st = stop.clone();
            thread::spawn(move || {
                let mut p = Peaks::default();
                while !st.load(Ordering::SeqCst) {
                    if let Some(kib) = proc_status(pid, "VmRSS:") {
                        p.rss = p.rss.max(kib * 1024);
                        p.rss_samples += 1;
                    }
                    if let Some(n) = proc_status(pid, "Threads:") {
                        p.threads = p.threads.max(n);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                p
            })
        };
        let handle = thread::spawn(move || {
            let mut p = Peaks::default();
            while !st.load(Ordering::SeqCst) {
                if let Ok(r) = http_get(&url) {
                    let t = r.text();
                    let v = |s| series(&t, s).unwrap_or_else(|| panic!("no {s} in /metrics"));
                    p.running = p.running.max(v(RUNNING));
                    if let Some(h) = series(&t, HEAVY) {
                        p.heavy = Some(p.heavy.unwrap_or(0.0).max(h));
                    }
                    p.memory = p.memory.max(v(MEMORY));
                    p.waiting = p.waiting.max(v(WAITING_ON_DEMAND) + v(WAITING_SCHEDULED));
                    p.metric_samples += 1;
                }
                thread::sleep(Duration::from_millis(30));
            }
            let r = rss_thread.join().expect("RSS sampler");
            Peaks {
                rss: r.rss,
                threads: r.threads,
                rss_samples: r.rss_samples,
                ..p
            }
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Peaks {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("sampler thread")
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The real binary with `WORKERS` decoders, the interval, a `budget` for picture work, the cache
/// held to `CACHE_BYTES`, and room for every test connection from 127.0.0.1 to be pending at
/// once (the connection limits are another suite's subject; here a refusal at accept would
/// look like a busy answer).
fn start_server(budget: u64) -> Server {
    let (workers, interval, budget, cache) = (
        WORKERS.to_string(),
        INTERVAL_MS.to_string(),
        budget.to_string(),
        CACHE_BYTES.to_string(),
    );
    Server::start_with(
        &[],
        &[
            "--workers",
            &workers,
            "--snapshot-taking-interval-ms",
            &interval,
            "--picture-memory-bytes",
            &budget,
            "--cache-bytes",
            &cache,
            "--max-pending-connections",
            "4096",
        ],
    )
}

/// Asserts the sampled and lifetime peaks against the bounds, prints the figures and returns
/// the RSS peak.
fn assert_within_bounds(server: &Server, what: &str, idle: Idle, budget: u64, p: &Peaks) -> u64 {
    let (idle, idle_threads) = (idle.rss, idle.threads);
    let hwm = rss_peak(server.pid());
    let peak = p.rss.max(hwm);
    eprintln!(
        "{what}: RSS idle {} MiB, peak {} MiB (sampled {} MiB over {} samples, VmHWM {} MiB); \
         bound {} MiB (budget {} MiB + margin {} MiB); threads idle {idle_threads}, peak {}; picture work: running \
         peak {}, heavy peak {:?}, waiting peak {}, estimated memory peak {} MiB ({} samples)",
        idle >> 20,
        peak >> 20,
        p.rss >> 20,
        p.rss_samples,
        hwm >> 20,
        (idle + budget + MARGIN) >> 20,
        budget >> 20,
        MARGIN >> 20,
        p.threads,
        p.running,
        p.heavy,
        p.waiting,
        p.memory as u64 >> 20,
        p.metric_samples,
    );
    assert!(
        p.metric_samples >= 5,
        "{what}: /metrics answered only {} times while sampling",
        p.metric_samples
    );
    assert!(
        p.running <= WORKERS as f64,
        "{what}: {} pictures worked on at once with --workers {WORKERS}",
        p.running
    );
    if let Some(heavy) = p.heavy {
        assert!(
            heavy <= (WORKERS - 1).max(1) as f64,
            "{what}: {heavy} heavy pictures at once with --workers {WORKERS}: one worker must \
             stay free for ordinary pictures"
        );
    }
    // The same bound seen from outside the gate: each picture's work runs on a blocking thread
    // of its own, so more pictures at once than workers show as more threads (the issue saw 23
    // at once; these cases ask for 9 to 40 at once). Four threads of slack: the blocking pool
    // starts a new thread when the one just finished has not yet said it is idle, and the
    // server has other blocking work.
    assert!(
        p.threads <= idle_threads + WORKERS as u64 + 4,
        "{what}: {} threads at the peak, {idle_threads} idle, with --workers {WORKERS}",
        p.threads
    );
    assert!(
        p.memory <= budget as f64,
        "{what}: picture work estimated at {} MiB at once, past --picture-memory-bytes {} MiB",
        p.memory as u64 >> 20,
        budget >> 20
    );
    assert!(
        peak <= idle + budget + MARGIN,
        "{what}: RSS peak {} MiB, past idle {} MiB + picture budget {} MiB + margin {} MiB",
        peak >> 20,
        idle >> 20,
        budget >> 20,
        MARGIN >> 20
    );
    peak
}

/// Waits until no picture work runs or waits, and none is charged to the budget: whatever
/// was given up gave its slot back.
fn wait_drained(server: &Server, what: &str) -> Duration {
    let start = Instant::now();
    poll(WAIT, &format!("{what}: picture work to drain"), || {
        let t = server.get("/metrics").text();
        let v = |s| series(&t, s).unwrap_or_else(|| panic!("no {s} in /metrics"));
        (v(RUNNING) == 0.0
            && v(WAITING_ON_DEMAND) == 0.0
            && v(WAITING_SCHEDULED) == 0.0
            && v(MEMORY) == 0.0)
            .then_some(())
    });
    start.elapsed()
}

/// Sends a GET on a fresh connection and gives up after `after`, closing the connection
/// whatever came back. Returns the status line when an answer began within that time.
fn aborted_get(addr: &str, path: &str, after: Duration) -> Option<String> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(after)).unwrap();
    let mut buf = [0u8; 512];
    let answer = match s.read(&mut buf) {
        Ok(n) if n > 0 => Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        _ => None,
    };
    // Closed here, with the request unanswered (or its answer unread): the client gave up.
    drop(s);
    answer
}

/// Asserts that `r` is the documented busy answer of the image API: 503 with the JSON error
/// body saying the workers are busy, and a Retry-After.
fn assert_busy(r: &Resp, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], 503, "{what}: {v}");
    let e = v["error"].as_str().unwrap_or("");
    assert!(
        e.contains("busy"),
        "{what}: a 503 that is not the busy answer: {v}"
    );
    assert!(r.header("retry-after").is_some(), "{what}: no Retry-After");
}

/// Asserts that `r` is WCS's own timeout answer: 500 with its body.
fn assert_wcs_timeout(r: &Resp, what: &str) {
    assert_eq!(r.status, 500, "{what}: {}", r.text());
    let v = r.json();
    assert_eq!(v["message"], "Snapshot response timeout", "{what}: {v}");
    assert_eq!(v["status"], 500, "{what}: {v}");
}

/// Asserts that `r` is a keyframe picture of `src`: the keyframe its headers name, by PSNR.
fn assert_honest(src: &Source, r: &Resp, what: &str) {
    assert_eq!(r.header("x-livesnap-keyframe"), Some("true"), "{what}");
    let pts: i64 = r
        .header("x-livesnap-frame-pts-ms")
        .unwrap()
        .parse()
        .unwrap();
    let idx = src.frame_index_at(pts);
    assert!(
        src.is_keyframe(idx),
        "{what}: frame {idx} is not a keyframe"
    );
    src.assert_matches(&decode_image(&r.body), idx, 30.0, 6.0, what);
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// p50 and max of durations, in ms.
fn p50_max(mut ds: Vec<Duration>) -> (u128, u128) {
    if ds.is_empty() {
        return (0, 0);
    }
    ds.sort();
    (millis(ds[ds.len() / 2]), millis(*ds.last().unwrap()))
}

#[test]
fn aborted_huge_requests_hold_at_most_workers_decodes_within_the_budget() {
    const BUDGET: u64 = 600 << 20;
    const REQUESTS: u64 = 30;
    const ABORT_AFTER: Duration = Duration::from_millis(300);
    let dir = workdir();
    let src = Source::generate(dir.path(), "small", SourceSpec::testsrc(320, 180, 4.0, 25));
    let mut server = start_server(BUDGET);
    let mut publisher = Publisher::start(&src.path, &server.rtmp_url("live", "small"));
    server.wait_keyframes("live", "small", None, 2);
    let idle = idle(&server);

    // The largest output is accepted: one whole request for it is a picture of that size (or,
    // when its work takes longer than the interval, as in a debug build, the busy answer), not
    // a 400. How long its work goes on after the answer shows what one such picture costs.
    let probe = server.get(&format!(
        "/v1/streams/live/small/snapshot.png?width={MAX_W}&height={MAX_H}"
    ));
    match probe.status {
        200 => assert_eq!(
            image_info(&probe.body),
            (ImageKind::Png, MAX_W, MAX_H),
            "the largest PNG"
        ),
        _ => assert_busy(&probe, "the largest PNG"),
    }
    eprintln!(
        "one {MAX_W}x{MAX_H} PNG of a 320x180 stream: {} in {} ms ({} bytes)",
        probe.status,
        millis(probe.elapsed),
        probe.body.len()
    );
    let probe_drained = wait_drained(&server, "after the probe");
    eprintln!(
        "its picture work ended {} ms after the answer",
        millis(probe_drained)
    );
    let misses_before = metric(&server, "livesnap_cache_misses_total");

    // One request every 100 ms, each given up after 0.3 s, so that about three are in flight
    // at any time and each one's decode outlives its client. Each asks for a different size
    // (and every other one JPEG), so that no two share a decode through the cache.
    let sampler = Sampler::start(&server);
    let started = Instant::now();
    let clients: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let addr = server.http.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100 * i));
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                let path = format!(
                    "/v1/streams/live/small/snapshot.{ext}?width={}&height={MAX_H}",
                    MAX_W - i as u32
                );
                aborted_get(&addr, &path, ABORT_AFTER)
            })
        })
        .collect();
    let answers: Vec<Option<String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let fired = started.elapsed();
    // The decodes the clients left behind end, and every slot comes back.
    let drained = wait_drained(&server, "after the aborted requests");
    let peaks = sampler.finish();
    let misses = metric(&server, "livesnap_cache_misses_total") - misses_before;
    let answered: Vec<&String> = answers.iter().flatten().collect();
    eprintln!(
        "{REQUESTS} aborted {MAX_W}x{MAX_H} requests fired in {} ms; {} answered within {} ms \
         ({:?}); {misses} cache misses (decodes asked for); drained {} ms after the last",
        millis(fired),
        answered.len(),
        millis(ABORT_AFTER),
        answered,
        millis(drained)
    );
    // None was refused as a bad request: they were real work.
    for a in &answered {
        assert!(!a.contains(" 400 "), "an aborted request was refused: {a}");
    }
    assert!(
        peaks.running >= 1.0,
        "no picture work was seen while {REQUESTS} huge requests came in"
    );
    assert_within_bounds(&server, "aborted huge requests", idle, BUDGET, &peaks);

    // An honest client's ordinary picture arrives in time and is its own frame.
    let shot = check_keyframe_snapshot(&server, &src, "live", "small", "");
    eprintln!(
        "honest picture after the abuse: {} ms, cache {}",
        millis(shot.resp.elapsed),
        shot.cache
    );
    assert!(
        shot.resp.elapsed <= Duration::from_millis(INTERVAL_MS) + LATE,
        "the honest picture took {:?}",
        shot.resp.elapsed
    );
    publisher.assert_running();
    server.assert_alive();
    assert_eq!(server.get("/healthz").status, 200);
}

/// `n` output sizes from 64 px wide to DCI 8K, growing geometrically, in several aspect ratios,
/// all different and all within the output limits.
fn sizes(n: usize) -> Vec<(u32, u32)> {
    let aspects = [9.0 / 16.0, 3.0 / 4.0, 1.0, 17.0 / 32.0];
    let max_px = u64::from(MAX_W) * u64::from(MAX_H);
    let mut out: Vec<(u32, u32)> = (0..n)
        .map(|i| {
            let w = (64.0 * 128f64.powf(i as f64 / (n - 1) as f64)).round() as u32;
            let w = w.clamp(64, MAX_W);
            let h = ((f64::from(w) * aspects[i % aspects.len()]).round() as u32)
                .clamp(1, MAX_W)
                .min((max_px / u64::from(w)) as u32);
            (w, h)
        })
        .collect();
    *out.last_mut().unwrap() = (MAX_W, MAX_H);
    out.sort();
    out.dedup();
    assert_eq!(out.len(), n, "sizes are not all different: {out:?}");
    out
}

#[test]
fn many_sizes_at_once_get_their_size_or_the_busy_answer_in_time() {
    const BUDGET: u64 = 400 << 20;
    const REQUESTS: usize = 40;
    let dir = workdir();
    let src = Source::generate(dir.path(), "sizes", SourceSpec::testsrc(640, 360, 4.0, 25));
    let mut server = start_server(BUDGET);
    let mut publisher = Publisher::start(&src.path, &server.rtmp_url("live", "sizes"));
    server.wait_keyframes("live", "sizes", None, 2);
    let idle = idle(&server);

    // 40 requests at once: every fifth one the WCS call (JPEG, with its own busy answer), the
    // others the JPEG of the image API.
    let sampler = Sampler::start(&server);
    let barrier = Arc::new(Barrier::new(REQUESTS));
    let clients: Vec<_> = sizes(REQUESTS)
        .into_iter()
        .enumerate()
        .map(|(i, (w, h))| {
            let barrier = barrier.clone();
            let (get, post) = (
                server.url(&format!(
                    "/v1/streams/live/sizes/snapshot.jpg?width={w}&height={h}"
                )),
                server.url("/rest-api/stream/snapshot"),
            );
            let wcs = i % 5 == 4;
            thread::spawn(move || {
                barrier.wait();
                let r = if wcs {
                    let body = json!({"streamName": "live/sizes", "format": "jpg",
                        "width": w, "height": h});
                    http_post(&post, &body.to_string())
                } else {
                    http_get(&get)
                };
                (w, h, wcs, r)
            })
        })
        .collect();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let drained = wait_drained(&server, "after the many sizes");
    let peaks = sampler.finish();

    let bound = Duration::from_millis(INTERVAL_MS) + LATE;
    let (mut pictures, mut busy) = (vec![], vec![]);
    let mut times = vec![];
    let mut to_match = vec![];
    for (w, h, wcs, r) in answers {
        let what = format!("{} {w}x{h}", if wcs { "WCS" } else { "GET" });
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert!(
            r.elapsed <= bound,
            "{what}: answered {} after {:?}",
            r.status,
            r.elapsed
        );
        times.push(r.elapsed);
        match (wcs, r.status) {
            (false, 200) => {
                assert_eq!(image_info(&r.body), (ImageKind::Jpeg, w, h), "{what}");
                assert_eq!(
                    r.header("x-livesnap-size"),
                    Some(format!("{w}x{h}").as_str())
                );
                pictures.push((w, h, millis(r.elapsed)));
                if (160..=1280).contains(&w) {
                    to_match.push((what, r));
                }
            }
            (true, 200) => {
                let data = r.json()["data"].as_str().expect("data").to_string();
                assert_eq!(
                    image_info(&decode_base64(&data)),
                    (ImageKind::Jpeg, w, h),
                    "{what}"
                );
                pictures.push((w, h, millis(r.elapsed)));
            }
            (false, _) => {
                assert_busy(&r, &what);
                busy.push((w, h, millis(r.elapsed)));
            }
            (true, _) => {
                assert_wcs_timeout(&r, &what);
                busy.push((w, h, millis(r.elapsed)));
            }
        }
    }
    let (p50, max) = p50_max(times);
    eprintln!(
        "{REQUESTS} sizes at once: {} pictures {:?}; {} busy {:?}; answer p50 {p50} ms, max \
         {max} ms; drained {} ms after the last answer",
        pictures.len(),
        pictures,
        busy.len(),
        busy,
        millis(drained)
    );
    // Not every burst gets a picture: in a debug build a DCI 8K output takes about 4 s of a
    // worker, longer than the interval, and two large ones at the head of the queue hold both
    // workers past every waiter's deadline (0 pictures of 40 has been seen). What must hold is
    // that the burst was real work and every answer above was a right one, in time.
    assert!(
        peaks.running >= 1.0,
        "no picture work was seen while {REQUESTS} requests came in"
    );
    // Pictures are of the stream itself: the frame their headers name, at their size.
    for (what, r) in to_match.iter().take(3) {
        let img = decode_image(&r.body);
        let pts: i64 = r
            .header("x-livesnap-frame-pts-ms")
            .unwrap()
            .parse()
            .unwrap();
        src.assert_matches(&img, src.frame_index_at(pts), JPEG_SCALED_DB, 6.0, what);
    }
    assert_within_bounds(&server, "many sizes at once", idle, BUDGET, &peaks);

    let shot = check_keyframe_snapshot(&server, &src, "live", "sizes", "");
    assert!(
        shot.resp.elapsed <= bound,
        "the honest picture took {:?}",
        shot.resp.elapsed
    );
    publisher.assert_running();
    server.assert_alive();
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn latest_on_full_gops_leaves_another_streams_keyframe_picture_in_time() {
    const BUDGET: u64 = 600 << 20;
    const HAMMERS: usize = 8;
    /// The hammered stream's GOP: 300 frames of 720p at 25 fps (12 s), past the 250 frames a
    /// `latest` picture may decode.
    const GOP: u32 = 300;
    /// How long the honest client asks, from a keyframe of the hammered stream: its whole GOP.
    /// The hammering lasts until the honest client's last picture.
    const ASKING: Duration = Duration::from_secs(12);
    /// Each hammering client's requests at most (bounded count; the honest client ends them
    /// first).
    const PER_HAMMER: usize = 60;
    let dir = workdir();
    let long = Source::generate(
        dir.path(),
        "long",
        SourceSpec::testsrc(1280, 720, f64::from(GOP) / 25.0, GOP),
    );
    let honest = Source::generate(dir.path(), "honest", SourceSpec::testsrc(320, 180, 4.0, 25));
    let mut server = start_server(BUDGET);
    let mut pub_honest = Publisher::start(&honest.path, &server.rtmp_url("live", "honest"));
    server.wait_keyframes("live", "honest", None, 2);
    // The honest client's answer time with nothing else to do, to report beside the loaded one.
    let idle_times: Vec<u128> = (0..3)
        .map(|n| {
            thread::sleep(Duration::from_millis(1000));
            let r = server.get("/v1/streams/live/honest/snapshot.png?precision=keyframe");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_honest(&honest, &r, &format!("idle honest picture {n}"));
            millis(r.elapsed)
        })
        .collect();
    // The hammering starts at the long stream's first keyframe, so that it sees its GOP grow
    // from one frame to past the limit.
    let mut pub_long = Publisher::start(&long.path, &server.rtmp_url("live", "long"));
    server.wait_keyframes("live", "long", None, 1);
    let idle = idle(&server);
    let limited_before = metric(&server, "livesnap_latest_limited_total");

    let sampler = Sampler::start(&server);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (0..HAMMERS)
        .map(|i| {
            let stop = stop.clone();
            // A different width each, so that no two share a decode through the cache.
            let url = server.url(&format!(
                "/v1/streams/live/long/snapshot.jpg?precision=latest&width={}",
                1280 - 16 * i
            ));
            thread::spawn(move || {
                let mut got = vec![];
                while !stop.load(Ordering::SeqCst) && got.len() < PER_HAMMER {
                    got.push(http_get(&url));
                }
                got
            })
        })
        .collect();

    // The honest client asks for a keyframe picture of its own stream, again and again for the
    // whole hammered GOP (from one frame to past the 250 decoded per `latest` picture), and gets
    // each one at its first try, in time. Heavy work (a `latest` picture of more than a few
    // 720p frames) may hold all workers but one, so an ordinary picture always finds one.
    // (With one first-come-first-served queue, it waited about 4 `latest` decodes: 1.3-3.0 s
    // here, and the busy answer about one time in three near a full GOP; before the bound on a
    // request's time, 60 s behind 4 of them.)
    let bound = Duration::from_millis(INTERVAL_MS) + LATE;
    let mut honest_times = vec![];
    let mut to_picture = vec![];
    let mut last_kf = 0;
    while started.elapsed() < ASKING {
        // A newer keyframe of the honest stream than its last picture's (one a second), so
        // that no answer is a cache hit: each is a picture to make.
        last_kf = poll(WAIT, "a new keyframe of the honest stream", || {
            let k = server.get("/v1/streams/live/honest").json()["keyframes"].as_u64()?;
            (k > last_kf).then_some(k)
        });
        let at = millis(started.elapsed());
        let what = format!("honest picture asked {at} ms into the hammered GOP");
        let r = server.get("/v1/streams/live/honest/snapshot.png?precision=keyframe");
        assert_eq!(
            r.status,
            200,
            "{what}: {} after {:?} (honest pictures so far (asked at ms, ms, cache): \
             {to_picture:?})",
            r.text(),
            r.elapsed
        );
        assert!(r.elapsed <= bound, "{what}: answered after {:?}", r.elapsed);
        assert_honest(&honest, &r, &what);
        honest_times.push(r.elapsed);
        let cache = r.header("x-livesnap-cache").unwrap_or("").to_string();
        to_picture.push((at, millis(r.elapsed), cache));
    }
    stop.store(true, Ordering::SeqCst);
    let hammered = started.elapsed();
    let answers: Vec<_> = hammers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let drained = wait_drained(&server, "after the latest hammering");
    let peaks = sampler.finish();

    let (mut ok, mut busy, mut times) = (0, 0, vec![]);
    let mut furthest = None::<(usize, Resp)>;
    for r in answers {
        let r = r.unwrap_or_else(|e| panic!("a latest request got no answer: {e}"));
        assert!(
            r.elapsed <= bound,
            "a latest request answered {} after {:?}",
            r.status,
            r.elapsed
        );
        times.push(r.elapsed);
        if r.status == 200 {
            ok += 1;
            let pts: i64 = r
                .header("x-livesnap-frame-pts-ms")
                .unwrap()
                .parse()
                .unwrap();
            let idx = long.frame_index_at(pts);
            if furthest.as_ref().is_none_or(|(i, _)| idx > *i) {
                furthest = Some((idx, r));
            }
        } else {
            assert_busy(&r, "latest");
            busy += 1;
        }
    }
    let limited = metric(&server, "livesnap_latest_limited_total") - limited_before;
    let (p50, max) = p50_max(times);
    let (hp50, hmax) = p50_max(honest_times);
    eprintln!(
        "{HAMMERS} latest hammers for {} ms: {ok} pictures, {busy} busy, answer p50 {p50} ms, \
         max {max} ms, {limited} limited to 250 frames; honest answers p50 {hp50} ms, max \
         {hmax} ms (asked at ms, ms, cache): {to_picture:?}; idle honest answers {idle_times:?} ms; drained {} ms after",
        millis(hammered),
        millis(drained)
    );
    // The latest picture furthest into its GOP is that frame (not the keyframe), and the GOP's
    // frames past the limit were never pictured: it is among the first 250 in decoding order
    // (with 3 B-frames, at most 3 more in presentation order).
    let (idx, r) = furthest.expect("not one precision=latest request got a picture");
    let img = decode_image(&r.body);
    long.assert_matches(
        &img,
        idx,
        JPEG_SCALED_DB,
        6.0,
        "the furthest latest picture",
    );
    assert!(
        idx > 0 && idx < 250 + 3,
        "a latest picture of frame {idx} of a {GOP}-frame GOP: past the 250-frame limit"
    );
    assert!(
        limited >= 1.0,
        "the GOP passed 250 frames while hammered, but no latest picture was limited"
    );
    assert_within_bounds(&server, "latest on full GOPs", idle, BUDGET, &peaks);
    pub_long.assert_running();
    pub_honest.assert_running();
    server.assert_alive();
    assert_eq!(server.get("/healthz").status, 200);
}

/// A picture whose work outlasts its request is still made (its worker slot is held to the
/// end) and fills the cache for the next request. Once, the result was dropped with the
/// request's future: the same picture asked again was decoded again, and a picture whose work
/// takes longer than the interval could never be answered, however often it was asked for, each
/// try costing a worker for the whole work. With an interval of 50 ms every build's DCI 8K
/// picture outlasts its request (release: about 0.16 s; debug: about 4 s); the stream's only
/// keyframe in 12 s keeps it the same picture.
#[test]
fn a_picture_finished_after_its_request_gave_up_answers_the_next_request() {
    let dir = workdir();
    let src = Source::generate(dir.path(), "slow", SourceSpec::testsrc(640, 360, 12.0, 300));
    let server = Server::start_with(
        &[],
        &["--workers", "2", "--snapshot-taking-interval-ms", "50"],
    );
    let _publisher = Publisher::start(&src.path, &server.rtmp_url("live", "slow"));
    let kf = server.wait_keyframes("live", "slow", None, 1)["keyframes"]
        .as_u64()
        .unwrap();
    let path = format!("/v1/streams/live/slow/snapshot.jpg?width={MAX_W}&height={MAX_H}");
    let first = server.get(&path);
    assert_busy(&first, "the first request, given 50 ms");
    let drained = wait_drained(&server, "after the first request");
    let second = server.get(&path);
    let misses = metric(&server, "livesnap_cache_misses_total");
    let still = server.get("/v1/streams/live/slow").json()["keyframes"]
        .as_u64()
        .unwrap();
    eprintln!(
        "first: {} in {} ms, its work ended {} ms later; second: {} in {} ms, cache {:?}; \
         cache misses {misses}",
        first.status,
        millis(first.elapsed),
        millis(drained),
        second.status,
        millis(second.elapsed),
        second.header("x-livesnap-cache")
    );
    assert_eq!(
        still, kf,
        "a new keyframe came in between: the test proves nothing"
    );
    assert_eq!(
        second.status,
        200,
        "the picture made after the first request gave up was not kept: asked again, {}",
        second.text()
    );
    assert_eq!(second.header("x-livesnap-cache"), Some("hit"));
    assert_eq!(image_info(&second.body), (ImageKind::Jpeg, MAX_W, MAX_H));
}
