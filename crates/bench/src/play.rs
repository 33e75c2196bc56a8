//! The `play` scenario: what RTMP players cost the server. One server with `rtmp_play` on
//! (`LIVESNAP_RTMP_PLAY=true`) and N publishers (`live/s0` .. `live/s{N-1}`); one window of
//! ingest only, then, on the same server and streams, one window with one RTMP player per
//! stream (N players).
//!
//! A player is an rml_rtmp client session in this process, one tokio task on the bench's
//! runtime: TCP to the server's RTMP port, the handshake, `connect` to app `live`, then
//! `createStream` + `play` of its stream (`request_playback`), and it reads until stopped,
//! acknowledging as the session asks and counting the video messages and their bytes. The
//! server sends a player the stream's config tag and its newest keyframe first (the buffered
//! GOP), then every frame as it arrives: each player must get the AVC sequence header, then a
//! keyframe, before the warm-up and the window start, so the GOP it is given at once is not in
//! the window. Its own CPU (reading, dechunking) is this process's, noted as the load
//! generator's, never the server's.
//!
//! Over each window: the server's CPU and PSS, the frames the server received from the
//! publishers (`frames` of `GET /v1/streams`, per stream) and, with players, the video messages
//! and bytes each player received, so that a reader can hold a player's messages against its
//! stream's frames. A player that received nothing in the window fails the scenario, by name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::flv::VideoTag;
use crate::harness::{measure, Load, Server};
use crate::publisher::{handshake, send_results};
use crate::report::{Kind, Row};
use crate::Ctx;

/// The app the load generator publishes to (`harness::Load`: `live/s{i}`).
const APP: &str = "live";
/// How long a player gets from its start to the config tag and the first keyframe (the server
/// sends both at once: the stream's GOP is buffered).
const PLAY_WAIT: Duration = Duration::from_secs(10);
/// How long a player waits for each answer to `connect` and `play`.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Pause between two looks at the players while they start.
const POLL: Duration = Duration::from_millis(50);
/// Largest read of a player's socket.
const READ_BYTES: usize = 64 * 1024;
/// The status the server sends before `NetStream.Play.Start` (which rml_rtmp handles itself);
/// rml_rtmp raises it as a code it does not know. Any other such code ends the player.
const PLAY_RESET: &str = "NetStream.Play.Reset";
/// FLV video tag: codec id 7 (AVC) in the low nibble, frame type 1 (key) in the high one;
/// AVCPacketType 0 is the sequence header, 1 a frame.
const CODEC_AVC: u8 = 7;
const FRAME_TYPE_KEY: u8 = 1;

/// The two windows on one server: ingest only, then the same publishers with one RTMP player
/// per stream.
pub fn run(ctx: &Ctx, tag: &str, tags: &Arc<Vec<VideoTag>>, n: usize) -> Result<Vec<Row>, String> {
    let dir = ctx.tmp.join(format!("{tag}-play"));
    // rtmp_max_players (default 200) is raised to N, so that a run with more streams than the
    // default still has a player per stream.
    let max_players = n.max(1).to_string();
    let server = Server::start_env(
        &ctx.livesnap,
        &dir,
        &[
            ("LIVESNAP_RTMP_PLAY", "true"),
            ("LIVESNAP_RTMP_MAX_PLAYERS", &max_players),
        ],
    )?;
    let result = (|| {
        let load = Load::start(&ctx.rt, &server.rtmp, n, tags.clone(), ctx.warmup)?;
        let r = (|| {
            let ingest = window(ctx, &server, &load, n, None)?;
            let mut players = Players::start(&ctx.rt, &server.rtmp, n);
            let r = players.wait_ready(&ctx.rt).and_then(|()| {
                // The players' first GOP came at once: the window starts in steady state.
                std::thread::sleep(ctx.warmup);
                window(ctx, &server, &load, n, Some(&mut players))
            });
            players.stop(&ctx.rt);
            Ok(vec![ingest, r?])
        })();
        load.stop(&ctx.rt);
        r
    })();
    server.stop(ctx.keep);
    if let Ok(rows) = &result {
        for row in rows {
            eprintln!(
                "[bench] {tag} play: {}: server {:.2} % CPU per stream",
                row.name,
                row.cpu_pct / n.max(1) as f64
            );
        }
    }
    result
}

/// One window: the server's CPU and PSS, the publishers' frames per stream and, with players,
/// what each received.
fn window(
    ctx: &Ctx,
    server: &Server,
    load: &Load,
    n: usize,
    mut players: Option<&mut Players>,
) -> Result<Row, String> {
    let f0 = frames(server)?;
    let p0 = players.as_deref().map(Players::counts);
    let m = measure(&[server.pid()], ctx.window, ctx.tck);
    let p1 = players.as_deref().map(Players::counts);
    let f1 = frames(server)?;
    let pacing = load.check(n)?;
    if let Some(dead) = players.as_deref_mut().and_then(|p| p.first_dead(&ctx.rt)) {
        return Err(format!("during the window: {dead}"));
    }
    let sent: Vec<u64> = (0..n)
        .map(|i| {
            let name = format!("s{i}");
            match (f0.get(&name), f1.get(&name)) {
                (Some(a), Some(b)) => Ok(b.saturating_sub(*a)),
                _ => Err(format!(
                    "{APP}/{name} was not live for the whole window ({} of {n} streams live at its end)",
                    f1.len()
                )),
            }
        })
        .collect::<Result<_, String>>()?;
    let frames_note = format!(
        "the server received {} frames from the publishers in the window ({}/stream); {pacing}",
        sent.iter().sum::<u64>(),
        spread(&sent)
    );
    let (name, note) = match (p0, p1) {
        (Some(p0), Some(p1)) => {
            let got: Vec<(u64, u64)> = p0
                .iter()
                .zip(&p1)
                .map(|(a, b)| (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1)))
                .collect();
            if let Some(i) = got.iter().position(|&(messages, _)| messages == 0) {
                return Err(format!(
                    "the RTMP player of {APP}/s{i} received no video message in the window"
                ));
            }
            let messages: Vec<u64> = got.iter().map(|g| g.0).collect();
            let bytes: u64 = got.iter().map(|g| g.1).sum();
            // Signed: a player may be a frame ahead of the server's counter read after it.
            let gap = messages
                .iter()
                .zip(&sent)
                .map(|(&m, &s)| s as i64 - m as i64)
                .max_by_key(|g| g.abs())
                .unwrap_or(0);
            (
                format!("livesnap ingest + 1 RTMP player per stream ({n} players)"),
                format!(
                    "{n} players received {} video messages, {:.1} MiB, in the window ({}/player; largest gap frames - messages of one stream {gap}); {frames_note}",
                    messages.iter().sum::<u64>(),
                    bytes as f64 / (1024.0 * 1024.0),
                    spread(&messages)
                ),
            )
        }
        _ => (
            "livesnap ingest only (play server)".to_string(),
            frames_note,
        ),
    };
    Ok(Row {
        name,
        kind: Kind::Ingest,
        streams: n,
        cpu_pct: m.cpu_pct,
        pss_mib: m.pss_mib,
        pictures: None,
        note: format!("{note}; rtmp_play on; {}", m.note()),
        auto: None,
        on_demand: None,
    })
}

/// `min..max` of `v` (or the one value when all are equal).
fn spread(v: &[u64]) -> String {
    let (min, max) = (
        v.iter().copied().min().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    );
    if min == max {
        min.to_string()
    } else {
        format!("{min}..{max}")
    }
}

/// The `frames` of each live stream of app `live` in `GET /v1/streams`, by stream name.
fn frames(server: &Server) -> Result<HashMap<String, u64>, String> {
    let v = server.get_json("/v1/streams")?;
    let streams = v["streams"]
        .as_array()
        .ok_or_else(|| format!("/v1/streams has no streams array: {v}"))?;
    Ok(streams
        .iter()
        .filter(|s| s["app"] == APP)
        .filter_map(|s| Some((s["stream"].as_str()?.to_string(), s["frames"].as_u64()?)))
        .collect())
}

/// What one player received so far.
#[derive(Default)]
struct PlayerStats {
    messages: AtomicU64,
    bytes: AtomicU64,
    /// The config tag and a keyframe after it have come.
    ready: AtomicBool,
}

/// N RTMP players, player i of `live/s{i}`, on the bench's runtime.
struct Players {
    tasks: Vec<JoinHandle<Result<(), String>>>,
    stats: Vec<Arc<PlayerStats>>,
}

impl Players {
    /// Starts `n` players of the server's RTMP port at `rtmp`, all at once (the server sends
    /// each its stream's buffered GOP, so their first messages do not wait for keyframes).
    fn start(rt: &tokio::runtime::Runtime, rtmp: &str, n: usize) -> Players {
        let stats: Vec<Arc<PlayerStats>> = (0..n).map(|_| Arc::default()).collect();
        let tasks = stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (addr, stream, s) = (rtmp.to_string(), format!("s{i}"), s.clone());
                rt.spawn(async move {
                    play(&addr, &stream, &s)
                        .await
                        .map_err(|e| format!("the RTMP player of {APP}/{stream}: {e}"))
                })
            })
            .collect();
        Players { tasks, stats }
    }

    /// Waits until every player has its stream's config tag and a keyframe.
    fn wait_ready(&mut self, rt: &tokio::runtime::Runtime) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(dead) = self.first_dead(rt) {
                return Err(dead);
            }
            let waiting: Vec<String> = (0..self.stats.len())
                .filter(|&i| !self.stats[i].ready.load(Ordering::Relaxed))
                .map(|i| format!("{APP}/s{i}"))
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if start.elapsed() > PLAY_WAIT {
                return Err(format!(
                    "{} of {} RTMP players had no config tag and keyframe after {} s: {}",
                    waiting.len(),
                    self.stats.len(),
                    PLAY_WAIT.as_secs(),
                    waiting.join(", ")
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Each player's (video messages, bytes) so far, in stream order.
    fn counts(&self) -> Vec<(u64, u64)> {
        self.stats
            .iter()
            .map(|s| {
                (
                    s.messages.load(Ordering::Relaxed),
                    s.bytes.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The error of the first player that has ended (they read until aborted, so it failed).
    fn first_dead(&mut self, rt: &tokio::runtime::Runtime) -> Option<String> {
        let i = self.tasks.iter().position(|t| t.is_finished())?;
        let t = self.tasks.swap_remove(i);
        Some(match rt.block_on(t) {
            Ok(Err(e)) => e,
            Ok(Ok(())) => "a player ended".into(),
            Err(e) => format!("a player task: {e}"),
        })
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

/// Plays `rtmp://addr/live/stream` until the task is aborted, counting into `stats`; returns
/// only on an error (a refusal, the end of the stream, the connection closed).
async fn play(addr: &str, stream: &str, stats: &PlayerStats) -> Result<(), String> {
    let mut sock = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; READ_BYTES];
    let leftover = handshake(&mut sock, &mut buf).await?;

    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(format!("rtmp://{addr}/{APP}"));
    let (mut session, initial) =
        ClientSession::new(config).map_err(|e| format!("session: {e:?}"))?;
    let mut events = Vec::new();
    send_results(&mut sock, initial, &mut events).await?;
    let r = session
        .request_connection(APP.into())
        .map_err(|e| format!("connect: {e:?}"))?;
    send_results(&mut sock, vec![r], &mut events).await?;
    let r = session
        .handle_input(&leftover)
        .map_err(|e| format!("rtmp: {e:?}"))?;
    send_results(&mut sock, r, &mut events).await?;

    let (mut asked, mut accepted) = (false, false);
    // The first two video messages, checked: the config tag, then a keyframe.
    let mut seen = 0u64;
    loop {
        // Until none is left: answering one event (the play request) may raise others.
        while !events.is_empty() {
            for ev in std::mem::take(&mut events) {
                match ev {
                    ClientSessionEvent::ConnectionRequestAccepted if !asked => {
                        asked = true;
                        let r = session
                            .request_playback(stream.into())
                            .map_err(|e| format!("play: {e:?}"))?;
                        send_results(&mut sock, vec![r], &mut events).await?;
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(format!("connect rejected: {description}"));
                    }
                    ClientSessionEvent::PlaybackRequestAccepted => accepted = true,
                    ClientSessionEvent::UnhandleableOnStatusCode { code } if code != PLAY_RESET => {
                        return Err(if accepted {
                            format!("the play ended: {code}")
                        } else {
                            format!("play refused: {code}")
                        });
                    }
                    ClientSessionEvent::VideoDataReceived { data, .. } => {
                        let (first, kind) = (
                            data.first().copied().unwrap_or(0),
                            data.get(1).copied().unwrap_or(u8::MAX),
                        );
                        let want = match seen {
                            0 => {
                                Some((first & 0x0f == CODEC_AVC && kind == 0, "the AVC config tag"))
                            }
                            1 => Some((
                                first >> 4 == FRAME_TYPE_KEY && kind == 1,
                                "a keyframe after the config tag",
                            )),
                            _ => None,
                        };
                        if let Some((false, what)) = want {
                            return Err(format!(
                                "video message {} is not {what} (starts {:02x?})",
                                seen + 1,
                                &data[..data.len().min(5)]
                            ));
                        }
                        seen += 1;
                        if seen == 2 {
                            stats.ready.store(true, Ordering::Relaxed);
                        }
                        stats.messages.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
        let read = sock.read(&mut buf);
        let n = if accepted {
            read.await.map_err(|e| e.to_string())?
        } else {
            tokio::time::timeout(ANSWER_WAIT, read)
                .await
                .map_err(|_| {
                    format!(
                        "no answer to {} within {} s",
                        if asked { "play" } else { "connect" },
                        ANSWER_WAIT.as_secs()
                    )
                })?
                .map_err(|e| e.to_string())?
        };
        if n == 0 {
            return Err(format!(
                "the server closed the connection after {seen} video messages"
            ));
        }
        let r = session
            .handle_input(&buf[..n])
            .map_err(|e| format!("rtmp: {e:?}"))?;
        send_results(&mut sock, r, &mut events).await?;
    }
}
