//! The scenarios, each on a fresh server: ingest only, automatic pictures on a template
//! (periodic), on demand (HTTP clients), and the one-ffmpeg-per-stream baseline.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flv::VideoTag;
use crate::harness::{measure, Load, Measured, Server};
use crate::ondemand;
use crate::report::{AutoFigures, Kind, OnDemandFigures, Row};
use crate::stats::percentile;
use crate::Ctx;

/// Interval of the periodic template and of the ffmpeg baseline, seconds.
pub const PICTURE_INTERVAL_S: u32 = 5;
/// The light on-demand load: one client, this many requests per second.
const LIGHT_RATE_PER_S: u32 = 10;
/// Unmeasured on-demand requests before the windows, so the decoder pool is filled.
const ON_DEMAND_PREWARM: Duration = Duration::from_secs(1);
/// ffmpeg's `-progress` reports every 0.5 s: wait for one more report after the window.
const PROGRESS_SETTLE: Duration = Duration::from_millis(600);

/// The idle server (no streams), and the decoder and JPEG encoder it reports using.
pub fn idle(ctx: &Ctx) -> Result<(Row, Option<(String, String)>), String> {
    let server = Server::start(&ctx.livesnap, &ctx.tmp.join("idle"))?;
    std::thread::sleep(Duration::from_secs(1));
    let m = measure(&[server.pid()], ctx.idle_window, ctx.tck);
    let backends = server.backends();
    server.stop(ctx.keep);
    let row = Row {
        name: "livesnap idle (no streams)".into(),
        kind: Kind::Idle,
        streams: 0,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: None,
        note: m.note(),
        auto: None,
        on_demand: None,
    };
    Ok((row, backends))
}

/// N publishers, no pictures.
pub fn ingest(ctx: &Ctx, tag: &str, tags: &Arc<Vec<VideoTag>>, n: usize) -> Result<Row, String> {
    let server = Server::start(&ctx.livesnap, &ctx.tmp.join(format!("{tag}-ingest")))?;
    let result = (|| {
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        let m = measure(&[server.pid()], ctx.window, ctx.tck);
        let note = load.check(n);
        load.stop(&ctx.rt);
        Ok(Row {
            name: "livesnap ingest only".into(),
            kind: Kind::Ingest,
            streams: n,
            cpu_pct: m.cpu_pct,
            pss_mib: m.pss_mib,
            pictures: None,
            note: format!("{}; {}", note?, m.note()),
            auto: None,
            on_demand: None,
        })
    })();
    server.stop(ctx.keep);
    result
}

/// What [`auto_run`] measured.
pub struct AutoRun {
    pub measured: Measured,
    pub made: u64,
    pub missed: u64,
    /// Frames the server received from all streams within the window.
    pub frames: u64,
    pub lag: Option<crate::harness::Lag>,
    pub note: String,
}

/// A fresh server with `template` (JSON) bound to app `live`, `n` publishers of `tags`, one
/// window of `window`.
pub fn auto_run(
    ctx: &Ctx,
    dir: &str,
    template: &str,
    tags: &Arc<Vec<VideoTag>>,
    n: usize,
    window: Duration,
) -> Result<AutoRun, String> {
    let server = Server::start(&ctx.livesnap, &ctx.tmp.join(dir))?;
    let result = (|| {
        server.post("/v1/templates", template)?;
        server.post("/v1/bindings", r#"{"app":"live","template":"b"}"#)?;
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        let (a0, s0) = (server.automation()?, server.stream_totals()?);
        let m = measure(&[server.pid()], window, ctx.tck);
        let (a1, s1) = (server.automation()?, server.stream_totals()?);
        let note = load.check(n);
        load.stop(&ctx.rt);
        if s1.live < n {
            return Err(format!(
                "only {} of {n} streams were live at the end",
                s1.live
            ));
        }
        Ok(AutoRun {
            measured: m,
            made: a1.stored.saturating_sub(a0.stored),
            missed: s1.missed.saturating_sub(s0.missed),
            frames: s1.frames.saturating_sub(s0.frames),
            lag: a1.lag,
            note: note?,
        })
    })();
    server.stop(ctx.keep);
    result
}

/// Automatic JPEGs every `interval_s` through a template bound to the app, local storage.
pub fn periodic(
    ctx: &Ctx,
    dir: &str,
    name: &str,
    tags: &Arc<Vec<VideoTag>>,
    n: usize,
    interval_s: u32,
) -> Result<Row, String> {
    let template = format!(
        r#"{{"name":"b","interval_s":{interval_s},"format":"jpg","storage":"local","modes":["sequence"]}}"#
    );
    let r = auto_run(ctx, dir, &template, tags, n, ctx.window)?;
    let window_s = ctx.window.as_secs_f64();
    let due = n as f64 * window_s / f64::from(interval_s);
    Ok(Row {
        name: name.into(),
        kind: Kind::Periodic,
        streams: n,
        cpu_pct: r.measured.cpu_pct,
        pss_mib: r.measured.pss_mib,
        pictures: Some((r.made as f64, due)),
        note: format!("{}; {}", r.note, r.measured.note()),
        auto: Some(AutoFigures {
            trigger: format!("interval {interval_s} s"),
            interval_s: f64::from(interval_s),
            window_s,
            made: r.made,
            due,
            missed: r.missed,
            lag: r.lag,
        }),
        on_demand: None,
    })
}

/// N publishers, no template; first a light load (one paced client), then `clients` clients
/// back to back, each for one window on the same server.
pub fn on_demand(
    ctx: &Ctx,
    tag: &str,
    tags: &Arc<Vec<VideoTag>>,
    n: usize,
    clients: usize,
) -> Result<Vec<Row>, String> {
    let server = Server::start(&ctx.livesnap, &ctx.tmp.join(format!("{tag}-ondemand")))?;
    let result = (|| {
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        let prewarm = ondemand::Plan {
            clients: ctx.cores,
            streams: n,
            pace: None,
            auth: None,
            source: None,
        };
        let warm = ondemand::start(&server.http, prewarm, ON_DEMAND_PREWARM).finish();
        if warm.ok() == 0 {
            return Err(format!(
                "on demand: no picture during the pre-warm: {}",
                warm.first_error.unwrap_or_default()
            ));
        }
        let mut rows = Vec::new();
        let plans = [
            (
                format!("livesnap on demand, light (1 client, {LIGHT_RATE_PER_S}/s)"),
                ondemand::Plan {
                    clients: 1,
                    streams: n,
                    pace: Some(Duration::from_secs(1) / LIGHT_RATE_PER_S),
                    auth: None,
                    source: None,
                },
            ),
            (
                format!("livesnap on demand, {clients} clients back to back"),
                ondemand::Plan {
                    clients,
                    streams: n,
                    pace: None,
                    auth: None,
                    source: None,
                },
            ),
        ];
        for (name, plan) in plans {
            let running = ondemand::start(&server.http, plan, ctx.window);
            let m = measure(&[server.pid()], ctx.window, ctx.tck);
            let o = running.finish();
            let note = load.check(n)?;
            rows.push(on_demand_row(name, n, plan, &o, &m, note));
        }
        load.stop(&ctx.rt);
        Ok(rows)
    })();
    server.stop(ctx.keep);
    result
}

/// The row of one on-demand window.
fn on_demand_row(
    name: String,
    n: usize,
    plan: ondemand::Plan,
    o: &ondemand::Outcome,
    m: &Measured,
    note: String,
) -> Row {
    let window_s = o.elapsed.max(1e-3);
    let ok = o.ok();
    let all: Vec<f64> = o.hits.iter().chain(&o.misses).copied().collect();
    Row {
        name,
        kind: Kind::OnDemand,
        streams: n,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: None,
        note: format!("{note}; {}", m.note()),
        auto: None,
        on_demand: Some(OnDemandFigures {
            clients: plan.clients,
            pace_per_s: plan.pace.map(|p| 1.0 / p.as_secs_f64()),
            window_s,
            ok,
            hits: o.hits.len() as u64,
            misses: o.misses.len() as u64,
            errors: o.errors,
            first_error: o.first_error.clone(),
            hit_p50: percentile(&o.hits, 50.0),
            hit_p99: percentile(&o.hits, 99.0),
            miss_p50: percentile(&o.misses, 50.0),
            miss_p99: percentile(&o.misses, 99.0),
            all_p99: percentile(&all, 99.0),
            mean_kib: if ok > 0 {
                o.bytes as f64 / ok as f64 / 1024.0
            } else {
                0.0
            },
        }),
    }
}

/// Clients of the abuse scenario that ask for the largest picture the server makes (DCI 8K
/// PNG) and hang up after [`ABUSE_HANG_UP`], again and again.
const ABUSE_HUGE_CLIENTS: usize = 4;
const ABUSE_HANG_UP: Duration = Duration::from_millis(300);
/// The largest picture: `media::picture::MAX_OUTPUT_PIXELS` (DCI 8K), a few pixels narrower
/// each time, so that no request is served from another's cached picture.
const ABUSE_HUGE_PATH: &str = "snapshot.png?height=4320&width=";
/// Clients asking back to back for `precision=latest` at full size (every frame of the GOP so
/// far decoded).
const ABUSE_LATEST_CLIENTS: usize = 2;
/// Publishers of GOP floods: one keyframe, then [`FLOOD_FRAMES`] frames of
/// [`FLOOD_FRAME_BYTES`] each at 30 fps (7.5 MiB/s each), looping.
const ABUSE_FLOODERS: usize = 4;
const FLOOD_FRAMES: usize = 299;
const FLOOD_FRAME_BYTES: usize = 256 << 10;
/// The server's `picture_requests_per_s` in the abuse scenario: twice the honest client's rate.
/// The abusers all come from 127.0.0.1, the honest client from [`HONEST_SOURCE`], as they would
/// from different machines.
const ABUSE_PICTURE_RATE: u32 = 2 * LIGHT_RATE_PER_S;
const HONEST_SOURCE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const PREWARM_SOURCE: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
/// Time the abusers get before the honest client's window (GOPs fill, decodes pile up).
const ABUSE_RAMP: Duration = Duration::from_secs(2);

/// What an abuser thread did.
#[derive(Default)]
struct AbuseCounts {
    /// Requests sent (hung up or answered).
    sent: AtomicU64,
    /// 200 answers.
    ok: AtomicU64,
    /// Other answers (503 busy...).
    refused: AtomicU64,
}

/// The honest on-demand client under abuse: on one server with N honest publishers, the light
/// load (one client, 10 requests/s) for one window alone, then for one window beside
/// [`ABUSE_HUGE_CLIENTS`] clients asking for DCI 8K PNGs and hanging up, [`ABUSE_LATEST_CLIENTS`]
/// clients asking for `precision=latest`, and [`ABUSE_FLOODERS`] GOP floods. Two rows: before
/// and under the abuse; the report sets their p99 side by side.
pub fn abuse(
    ctx: &Ctx,
    tag: &str,
    tags: &Arc<Vec<VideoTag>>,
    n: usize,
) -> Result<Vec<Row>, String> {
    let rate = ABUSE_PICTURE_RATE.to_string();
    let server = Server::start_env(
        &ctx.livesnap,
        &ctx.tmp.join(format!("{tag}-abuse")),
        &[("LIVESNAP_PICTURE_REQUESTS_PER_S", &rate)],
    )?;
    let result = (|| {
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        // From an address of its own: paced with the abusers' it would warm nothing.
        let prewarm = ondemand::Plan {
            clients: ctx.cores,
            streams: n,
            pace: None,
            auth: None,
            source: Some(PREWARM_SOURCE),
        };
        ondemand::start(&server.http, prewarm, ON_DEMAND_PREWARM).finish();
        let light = ondemand::Plan {
            clients: 1,
            streams: n,
            pace: Some(Duration::from_secs(1) / LIGHT_RATE_PER_S),
            auth: None,
            source: Some(HONEST_SOURCE),
        };
        let mut rows = vec![light_window(
            ctx,
            &server,
            &load,
            n,
            light,
            format!("livesnap on demand, light (1 client, {LIGHT_RATE_PER_S}/s), before the abuse"),
        )?];

        let flood = Arc::new(flood_tags(tags)?);
        let stats = Arc::new(crate::publisher::Stats::default());
        let flooders: Vec<_> = (0..ABUSE_FLOODERS)
            .map(|i| {
                let (addr, flood, stats) = (server.rtmp.clone(), flood.clone(), stats.clone());
                ctx.rt.spawn(crate::publisher::publish(
                    addr,
                    "flood".into(),
                    format!("f{i}"),
                    flood,
                    stats,
                    Duration::ZERO,
                ))
            })
            .collect();
        let deadline = Instant::now() + ABUSE_RAMP + ctx.window + Duration::from_secs(1);
        let (huge, latest) = (
            Arc::new(AbuseCounts::default()),
            Arc::new(AbuseCounts::default()),
        );
        let mut threads = Vec::new();
        for i in 0..ABUSE_HUGE_CLIENTS {
            let (addr, counts) = (server.http.clone(), huge.clone());
            let path = format!("/v1/streams/live/s{}/{ABUSE_HUGE_PATH}", i % n.max(1));
            threads.push(std::thread::spawn(move || {
                hang_up_loop(&addr, &path, deadline, &counts)
            }));
        }
        for i in 0..ABUSE_LATEST_CLIENTS {
            let (addr, counts) = (server.http.clone(), latest.clone());
            let path = format!(
                "/v1/streams/live/s{}/snapshot.jpg?precision=latest",
                (i + 1) % n.max(1)
            );
            threads.push(std::thread::spawn(move || {
                let mut conn = crate::http::Conn::new(&addr);
                while Instant::now() < deadline {
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                    match conn.get(&path) {
                        Ok(r) if r.status == 200 => counts.ok.fetch_add(1, Ordering::Relaxed),
                        _ => counts.refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        std::thread::sleep(ABUSE_RAMP);
        let under = light_window(
            ctx,
            &server,
            &load,
            n,
            light,
            format!(
                "livesnap on demand, light, under abuse ({ABUSE_HUGE_CLIENTS} x DCI 8K PNG hung up at {} ms, {ABUSE_LATEST_CLIENTS} x precision=latest, {ABUSE_FLOODERS} GOP floods)",
                ABUSE_HANG_UP.as_millis()
            ),
        );
        for t in threads {
            let _ = t.join();
        }
        for f in &flooders {
            f.abort();
        }
        let mut under = under?;
        let count = |c: &AbuseCounts| {
            (
                c.sent.load(Ordering::Relaxed),
                c.ok.load(Ordering::Relaxed),
                c.refused.load(Ordering::Relaxed),
            )
        };
        let (h, l) = (count(&huge), count(&latest));
        under.note = format!(
            "{}; picture_requests_per_s {ABUSE_PICTURE_RATE}, the honest client from {HONEST_SOURCE}, the abusers from 127.0.0.1; abusers: {} huge requests hung up, latest {} sent ({} pictures, {} refused), {} flood frames sent",
            under.note,
            h.0,
            l.0,
            l.1,
            l.2,
            stats.tags_sent.load(Ordering::Relaxed)
        );
        rows.push(under);
        load.stop(&ctx.rt);
        Ok(rows)
    })();
    server.stop(ctx.keep);
    result
}

/// The API key of the auth scenario's server (at least 16 printable characters, as the server
/// asks).
pub const BENCH_ADMIN_KEY: &str = "livesnap-bench-admin-key-0123456789";

/// On-demand latency with API keys on and off: N publishers and the light on-demand load (one
/// client, [`LIGHT_RATE_PER_S`] requests/s, keep-alive) on a server without `admin_key`, then
/// on one with it, every request carrying the key. Two rows; the report sets their p50 and p99
/// side by side (the goal: within the noise).
pub fn auth(ctx: &Ctx, tag: &str, tags: &Arc<Vec<VideoTag>>, n: usize) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (label, key) in [("off", None), ("on", Some(BENCH_ADMIN_KEY))] {
        let env: Vec<(&str, &str)> = key.map(|k| ("LIVESNAP_ADMIN_KEY", k)).into_iter().collect();
        let server = Server::start_env(
            &ctx.livesnap,
            &ctx.tmp.join(format!("{tag}-auth-{label}")),
            &env,
        )?;
        let result = (|| -> Result<Row, String> {
            let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
            let prewarm = ondemand::Plan {
                clients: ctx.cores,
                streams: n,
                pace: None,
                auth: key,
                source: None,
            };
            ondemand::start(&server.http, prewarm, ON_DEMAND_PREWARM).finish();
            let light = ondemand::Plan {
                clients: 1,
                streams: n,
                pace: Some(Duration::from_secs(1) / LIGHT_RATE_PER_S),
                auth: key,
                source: None,
            };
            let mut row = light_window(
                ctx,
                &server,
                &load,
                n,
                light,
                format!(
                    "livesnap on demand, light (1 client, {LIGHT_RATE_PER_S}/s), API key {label}"
                ),
            )?;
            row.kind = Kind::Auth;
            Ok(row)
        })();
        server.stop(ctx.keep);
        rows.push(result?);
    }
    Ok(rows)
}

/// One window of `plan` on `server`, as a row of [`Kind::Abuse`].
fn light_window(
    ctx: &Ctx,
    server: &Server,
    load: &Load,
    n: usize,
    plan: ondemand::Plan,
    name: String,
) -> Result<Row, String> {
    let running = ondemand::start(&server.http, plan, ctx.window);
    let m = measure(&[server.pid()], ctx.window, ctx.tck);
    let o = running.finish();
    let note = load.check(n)?;
    let mut row = on_demand_row(name, n, plan, &o, &m, note);
    row.kind = Kind::Abuse;
    Ok(row)
}

/// Connects, asks for `path`, hangs up after [`ABUSE_HANG_UP`]; until `deadline`.
fn hang_up_loop(addr: &str, path: &str, deadline: Instant, counts: &AbuseCounts) {
    use std::io::Write;
    let mut k: u32 = 0;
    while Instant::now() < deadline {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        k = k.wrapping_add(1);
        let width = 8192 - 2 * (k % 512);
        let req = format!("GET {path}{width} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        if s.write_all(req.as_bytes()).is_ok() {
            counts.sent.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(ABUSE_HANG_UP);
    }
}

/// A GOP flood: the input's sequence header and first keyframe, then [`FLOOD_FRAMES`] frames of
/// [`FLOOD_FRAME_BYTES`] of noise (one length-prefixed NAL unit each) at 30 fps.
fn flood_tags(tags: &[VideoTag]) -> Result<Vec<VideoTag>, String> {
    let header = tags
        .iter()
        .find(|t| t.is_sequence_header)
        .ok_or("the input has no sequence header")?;
    let key = tags
        .iter()
        .find(|t| t.is_keyframe())
        .ok_or("the input has no keyframe")?;
    let tag = |t: &VideoTag| VideoTag {
        ts_ms: 0,
        data: t.data.clone(),
        is_sequence_header: t.is_sequence_header,
        is_end_of_sequence: false,
    };
    let mut out = vec![tag(header), tag(key)];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 1..=FLOOD_FRAMES {
        let nal = FLOOD_FRAME_BYTES - 9;
        let mut data = Vec::with_capacity(FLOOD_FRAME_BYTES);
        data.extend_from_slice(&[0x27, 1, 0, 0, 0]);
        data.extend_from_slice(&(nal as u32).to_be_bytes());
        data.push(0x41);
        while data.len() < FLOOD_FRAME_BYTES {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(FLOOD_FRAME_BYTES);
        out.push(VideoTag {
            ts_ms: (i * 1000 / 30) as u32,
            data: data.into(),
            is_sequence_header: false,
            is_end_of_sequence: false,
        });
    }
    Ok(out)
}

/// How long the ffmpeg publishers of the protocol scenario get to be live.
const FFMPEG_PUBLISH_WAIT: Duration = Duration::from_secs(20);

/// Ingest by protocol: the same N ffmpeg publishers (`-re -stream_loop -1 -i input.flv -c copy`)
/// over RTMP, RTSP with TCP and RTSP with UDP, each on a fresh server, no pictures; the
/// server's CPU and PSS over one window each. ffmpeg publishes on both sides, so the ratio
/// compares the protocols, not two load generators.
pub fn protocols(ctx: &Ctx, tag: &str, input: &Path, n: usize) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (label, format, transport) in [
        ("RTMP", "flv", None),
        ("RTSP over TCP", "rtsp", Some("tcp")),
        ("RTSP over UDP", "rtsp", Some("udp")),
    ] {
        let dir = ctx.tmp.join(format!(
            "{tag}-protocol-{format}-{}",
            transport.unwrap_or("")
        ));
        let server = Server::start(&ctx.livesnap, &dir)?;
        let mut children = Vec::new();
        let result = (|| {
            for i in 0..n {
                let url = match transport {
                    None => format!("rtmp://{}/live/s{i}", server.rtmp),
                    Some(_) => format!("rtsp://{}/live/s{i}", server.rtsp),
                };
                let mut cmd = Command::new("ffmpeg");
                cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"]);
                cmd.args(["-stream_loop", "-1", "-i"]).arg(input);
                cmd.args(["-c", "copy", "-f", format]);
                if let Some(t) = transport {
                    cmd.args(["-rtsp_transport", t]);
                }
                cmd.arg(&url);
                let child = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
                children.push(child);
                // Spread over one GOP, as the RTMP load generator does.
                std::thread::sleep(Duration::from_secs(2) / n.max(1) as u32);
            }
            let start = Instant::now();
            loop {
                let live = server.stream_totals()?.live;
                if live == n {
                    break;
                }
                if start.elapsed() > FFMPEG_PUBLISH_WAIT {
                    return Err(format!(
                        "{label}: only {live} of {n} ffmpeg publishers are live"
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(ctx.warmup);
            let before = server.stream_totals()?.frames;
            let m = measure(&[server.pid()], ctx.window, ctx.tck);
            let after = server.stream_totals()?;
            if after.live != n {
                return Err(format!(
                    "{label}: {} of {n} streams left during the window",
                    n - after.live
                ));
            }
            let fps = (after.frames - before) as f64 / ctx.window.as_secs_f64() / n as f64;
            Ok(Row {
                name: format!("livesnap ingest only, {n} ffmpeg publishers over {label}"),
                kind: Kind::Protocol,
                streams: n,
                cpu_pct: m.cpu_pct,
                pss_mib: m.pss_mib,
                pictures: None,
                note: format!("{fps:.1} fps received per stream; {}", m.note()),
                auto: None,
                on_demand: None,
            })
        })();
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        server.stop(ctx.keep);
        rows.push(result?);
    }
    Ok(rows)
}

/// Where a baseline ffmpeg reads its stream from.
#[derive(Clone, Copy)]
pub enum BaselineInput<'a> {
    /// Over RTMP, as peers document it (`ffmpeg -i rtmp://...`): each ffmpeg listens
    /// (`-listen 1`) and the load generator publishes the same tags to it as to livesnap. No
    /// media server sits between them, so the baseline pays for demuxing RTMP but not for a
    /// server's relay: still the conservative side of the usual setup.
    Rtmp(&'a Arc<Vec<VideoTag>>),
    /// From the FLV file, `-re -stream_loop -1`: no network input at all.
    File(&'a Path),
}

/// How long a baseline's ffmpeg listeners get to come up before the publishers give up.
const LISTEN_WAIT: Duration = Duration::from_secs(10);
/// How long every ffmpeg reading RTMP gets to make its first picture.
const FIRST_PICTURE_WAIT: Duration = Duration::from_secs(20);
/// After its first picture, time for an ffmpeg reading RTMP to decode what it buffered while
/// probing (5 s of stream, decoded at several times real time even for (a)).
const BACKLOG_SETTLE: Duration = Duration::from_secs(3);

/// A free loopback port for an ffmpeg listener (which must be told a port, unlike a socket we
/// bind ourselves): bound, read and released.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// One ffmpeg process per stream, as peers document it; counts pictures via `-progress`.
pub fn ffmpeg_baseline(
    ctx: &Ctx,
    tag: &str,
    label: &str,
    skip: bool,
    input: BaselineInput<'_>,
    n: usize,
) -> Result<Row, String> {
    let dir = ctx.tmp.join(format!(
        "{tag}-{}-{}",
        if skip { "ffmpeg-b" } else { "ffmpeg-a" },
        match input {
            BaselineInput::Rtmp(_) => "rtmp",
            BaselineInput::File(_) => "file",
        }
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut children = Vec::new();
    let frames: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let interval = PICTURE_INTERVAL_S.to_string();
    let fps = format!("fps=1/{interval}");
    let mut addrs = Vec::new();
    let mut spawn_all = || -> Result<(), String> {
        for (i, counter) in frames.iter().enumerate() {
            let mut cmd = Command::new("ffmpeg");
            cmd.args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostats",
                "-progress",
                "pipe:1",
            ]);
            // An input option: it applies to the input named next.
            if skip {
                cmd.args(["-skip_frame", "nokey"]);
            }
            match input {
                BaselineInput::Rtmp(_) => {
                    let addr = format!("127.0.0.1:{}", free_port()?);
                    cmd.args(["-listen", "1"]);
                    cmd.arg("-i").arg(format!("rtmp://{addr}/live/s{i}"));
                    addrs.push(addr);
                }
                BaselineInput::File(path) => {
                    cmd.arg("-re");
                    cmd.args(["-stream_loop", "-1", "-i"]).arg(path);
                }
            }
            cmd.args([
                "-vf", &fps, "-q:v", "3", "-f", "image2", "-update", "1", "-y",
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
        Ok(())
    };
    let spawned = spawn_all();
    let result = spawned.and_then(|()| {
        let load = match input {
            BaselineInput::Rtmp(tags) => {
                let load =
                    Load::start_each(&ctx.rt, addrs, tags.clone(), ctx.warmup, LISTEN_WAIT)?;
                // ffmpeg probes a live input (up to its 5 s analyzeduration: the FLV header
                // over RTMP announces audio, which never comes) before it decodes, then catches
                // up on what it buffered: measured from the first publisher, the window would
                // count that backlog too. So it starts once every ffmpeg has made its first
                // picture and the backlog is done.
                let started = Instant::now();
                while frames.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
                    if started.elapsed() > FIRST_PICTURE_WAIT {
                        load.stop(&ctx.rt);
                        return Err(format!(
                            "{label}: not every ffmpeg made a picture within {} s of publishing",
                            FIRST_PICTURE_WAIT.as_secs()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!(
                    "[bench] {label}: every ffmpeg made its first picture {:.1} s after the warm-up",
                    started.elapsed().as_secs_f64()
                );
                std::thread::sleep(BACKLOG_SETTLE);
                Some(load)
            }
            BaselineInput::File(_) => {
                std::thread::sleep(ctx.warmup);
                None
            }
        };
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let before: u64 = frames.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let m = measure(&pids, ctx.window, ctx.tck);
        std::thread::sleep(PROGRESS_SETTLE);
        let after: u64 = frames.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let pacing = load.map(|load| {
            let note = load.check(n);
            load.stop(&ctx.rt);
            note
        });
        Ok((m, after.saturating_sub(before), pacing))
    });
    let alive = children
        .iter_mut()
        .filter_map(|c| c.try_wait().ok())
        .filter(|status| status.is_none())
        .count();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    if !ctx.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (m, made, pacing) = result?;
    let pacing = pacing.transpose()?;
    if alive < n {
        return Err(format!(
            "{label}: only {alive} of {n} ffmpeg processes ran through the window"
        ));
    }
    let window_s = ctx.window.as_secs_f64();
    let due = n as f64 * window_s / f64::from(PICTURE_INTERVAL_S);
    // Pictures come every 5 s: only a long window tells falling behind from rounding.
    let measured = match pacing {
        Some(p) => format!("{p}; {}", m.note()),
        None => m.note(),
    };
    // With publishers spread over a GOP, a stream's pictures fall anywhere in the window, so
    // one picture per stream more or less is phase, not lateness.
    let note = if window_s >= f64::from(2 * PICTURE_INTERVAL_S)
        && (made as f64) + (n as f64) < crate::report::KEEP_UP_MADE * due
    {
        format!("falls behind real time; {measured}")
    } else {
        measured
    };
    Ok(Row {
        name: label.into(),
        kind: Kind::Baseline,
        streams: n,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: Some((made as f64, due)),
        note,
        auto: None,
        on_demand: None,
    })
}
