//! The load generator: one RTMP publisher per tokio task (rml_rtmp client session), replaying the
//! FLV's video tags at real-time pace and looping with timestamps kept increasing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::flv::VideoTag;

/// Counters shared by all publishers.
#[derive(Default)]
pub struct Stats {
    pub tags_sent: AtomicU64,
    pub publishing: AtomicU64,
    /// Largest lateness of a tag behind its real-time schedule, in ms.
    pub max_late_ms: AtomicU64,
}

/// Pause between two connection attempts to a listener that is not up yet.
const CONNECT_RETRY: Duration = Duration::from_millis(50);
/// How long a client waits for each step of the server's handshake.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// The client side of the RTMP handshake; returns the bytes read past its end.
pub async fn handshake(sock: &mut TcpStream, buf: &mut [u8]) -> Result<Vec<u8>, String> {
    let mut hs = Handshake::new(PeerType::Client);
    let p0p1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| format!("handshake: {e:?}"))?;
    sock.write_all(&p0p1).await.map_err(|e| e.to_string())?;
    loop {
        let n = tokio::time::timeout(HANDSHAKE_WAIT, sock.read(buf))
            .await
            .map_err(|_| format!("handshake: no answer within {} s", HANDSHAKE_WAIT.as_secs()))?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed during handshake".into());
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| format!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// Publishes `tags` to `rtmp://addr/app/stream` until the task is aborted, retrying a refused
/// connection for up to `connect_wait`.
pub async fn publish(
    addr: String,
    app: String,
    stream: String,
    tags: Arc<Vec<VideoTag>>,
    stats: Arc<Stats>,
    connect_wait: Duration,
) -> Result<(), String> {
    let give_up = Instant::now() + connect_wait;
    let mut sock = loop {
        match TcpStream::connect(&addr).await {
            Ok(sock) => break sock,
            Err(_) if Instant::now() < give_up => tokio::time::sleep(CONNECT_RETRY).await,
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];

    let leftover = handshake(&mut sock, &mut buf).await?;

    // connect, then createStream + publish.
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(format!("rtmp://{addr}/{app}"));
    let (mut session, initial) =
        ClientSession::new(config).map_err(|e| format!("session: {e:?}"))?;
    let mut events = Vec::new();
    send_results(&mut sock, initial, &mut events).await?;
    let r = session
        .request_connection(app.clone())
        .map_err(|e| format!("connect: {e:?}"))?;
    send_results(&mut sock, vec![r], &mut events).await?;
    let r = session
        .handle_input(&leftover)
        .map_err(|e| format!("rtmp: {e:?}"))?;
    send_results(&mut sock, r, &mut events).await?;
    let mut asked_publish = false;
    loop {
        for ev in events.drain(..) {
            match ev {
                ClientSessionEvent::ConnectionRequestAccepted if !asked_publish => {
                    asked_publish = true;
                    let r = session
                        .request_publishing(stream.clone(), PublishRequestType::Live)
                        .map_err(|e| format!("publish: {e:?}"))?;
                    let mut more = Vec::new();
                    send_results(&mut sock, vec![r], &mut more).await?;
                }
                ClientSessionEvent::ConnectionRequestRejected { description } => {
                    return Err(format!("connect rejected: {description}"));
                }
                ClientSessionEvent::PublishRequestAccepted => {
                    return stream_tags(sock, session, tags, stats).await;
                }
                _ => {}
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .map_err(|_| format!("no answer to connect/publish for {stream}"))?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "server closed before publish of {stream} was accepted"
            ));
        }
        let r = session
            .handle_input(&buf[..n])
            .map_err(|e| format!("rtmp: {e:?}"))?;
        send_results(&mut sock, r, &mut events).await?;
    }
}

/// Writes a session's outbound packets (commands, acknowledgements); collects its events.
pub async fn send_results(
    sock: &mut TcpStream,
    results: Vec<ClientSessionResult>,
    events: &mut Vec<ClientSessionEvent>,
) -> Result<(), String> {
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => sock
                .write_all(&p.bytes)
                .await
                .map_err(|e| format!("write: {e}"))?,
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(())
}

async fn stream_tags(
    mut sock: TcpStream,
    mut session: ClientSession,
    tags: Arc<Vec<VideoTag>>,
    stats: Arc<Stats>,
) -> Result<(), String> {
    stats.publishing.fetch_add(1, Ordering::Relaxed);
    let first_ts = tags.iter().find(|t| t.is_frame()).map_or(0, |t| t.ts_ms);
    let last_ts = tags
        .iter()
        .filter(|t| t.is_frame())
        .map(|t| t.ts_ms)
        .max()
        .unwrap_or(0);
    // One loop lasts the input's duration plus one frame interval (30 fps).
    let loop_ms = last_ts.saturating_sub(first_ts) + 33;
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut ignored = Vec::new();
    let mut sent_header = false;
    let mut lap: u32 = 0;
    loop {
        for t in tags.iter() {
            if t.is_end_of_sequence {
                continue;
            }
            if t.is_sequence_header {
                if sent_header {
                    continue;
                }
                sent_header = true;
            }
            let ts = lap * loop_ms + t.ts_ms.saturating_sub(first_ts);
            let due = start + Duration::from_millis(ts as u64);
            // Read (and answer) what the server sends while waiting for the tag's time.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    n = sock.read(&mut buf) => {
                        let n = n.map_err(|e| e.to_string())?;
                        if n == 0 {
                            return Err("server closed the publishing connection".into());
                        }
                        let r = session.handle_input(&buf[..n]).map_err(|e| format!("rtmp: {e:?}"))?;
                        send_results(&mut sock, r, &mut ignored).await?;
                        ignored.clear();
                    }
                }
            }
            let late = Instant::now().saturating_duration_since(due).as_millis() as u64;
            stats.max_late_ms.fetch_max(late, Ordering::Relaxed);
            let r = session
                .publish_video_data(t.data.clone(), RtmpTimestamp::new(ts), false)
                .map_err(|e| format!("video: {e:?}"))?;
            send_results(&mut sock, vec![r], &mut ignored).await?;
            stats.tags_sent.fetch_add(1, Ordering::Relaxed);
        }
        lap += 1;
    }
}
