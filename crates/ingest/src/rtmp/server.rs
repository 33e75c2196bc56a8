//! The tokio side of RTMP ingest: accepts connections, runs a [`Session`] per connection, and
//! turns published video into frames for a [`StreamSink`].
//!
//! A connection that sends garbage, stalls or dies is dropped alone and logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use media::stream::{PublishRefused, PublisherInfo, StreamSink, StreamWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::session::{Event, Session};
use crate::flv::{Fed, VideoFeed};
use crate::{Error, Result};

/// Settings of the RTMP server.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// Host names that are domains when they appear in a tcUrl.
    pub domains: Vec<String>,
    /// Most connections at once; more are closed at once.
    pub max_connections: usize,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Largest video access unit accepted, in bytes.
    pub max_access_unit_bytes: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            domains: Vec::new(),
            max_connections: 2000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_access_unit_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Accepts connections until the listener fails; each runs in its own task.
pub async fn serve(listener: TcpListener, sink: Arc<dyn StreamSink>, config: RtmpConfig) {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let (socket, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%addr, limit = config.max_connections, "rtmp connection refused: connection limit reached");
            drop(socket);
            continue;
        };
        let sink = sink.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            match Connection::new(addr, sink, config).run(socket).await {
                Ok(()) => debug!(%addr, "rtmp connection closed"),
                Err(e) => warn!(%addr, error = %e, "rtmp connection dropped"),
            }
        });
    }
}

/// Makes RTMP millisecond timestamps (32 bits, wrapping) monotonic 64-bit ones.
#[derive(Default)]
struct Unwrap {
    base: i64,
    last: Option<u32>,
}

impl Unwrap {
    fn next(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            if ts < last && last - ts > u32::MAX / 2 {
                self.base += 1 << 32;
            }
        }
        self.last = Some(ts);
        self.base + i64::from(ts)
    }
}

/// One live stream being received on a connection.
struct Publishing {
    writer: Box<dyn StreamWriter>,
    feed: VideoFeed,
    clock: Unwrap,
    unsupported_reported: bool,
    key: String,
}

struct Connection {
    addr: SocketAddr,
    sink: Arc<dyn StreamSink>,
    config: Arc<RtmpConfig>,
    session: Session,
    publishing: Option<Publishing>,
}

impl Connection {
    fn new(addr: SocketAddr, sink: Arc<dyn StreamSink>, config: Arc<RtmpConfig>) -> Self {
        Connection {
            addr,
            sink,
            config,
            session: Session::new(),
            publishing: None,
        }
    }

    async fn run(mut self, mut socket: TcpStream) -> Result<()> {
        let mut events = Vec::new();
        loop {
            let limit = if self.session.handshake_done() {
                self.config.idle_timeout
            } else {
                self.config.handshake_timeout
            };
            // Straight into the session's reusable buffer: no copy, no allocation per read.
            let read = socket.read_buf(self.session.read_buffer());
            let n = match tokio::time::timeout(limit, read).await {
                Ok(r) => r?,
                Err(_) => {
                    let stage = if self.session.handshake_done() {
                        "sent nothing"
                    } else {
                        "stalled in the handshake"
                    };
                    return Err(Error::Protocol(format!(
                        "{stage} for {} s",
                        limit.as_secs()
                    )));
                }
            };
            if n == 0 {
                return Ok(());
            }
            self.session.process(&mut events)?;
            let mut close = false;
            for event in events.drain(..) {
                close |= self.on_event(event)?;
            }
            let out = self.session.output();
            if !out.is_empty() {
                socket.write_all(out).await?;
                out.clear();
            }
            if close {
                socket.shutdown().await.ok();
                return Ok(());
            }
        }
    }

    /// Handles one event; true when the connection should close.
    fn on_event(&mut self, event: Event) -> Result<bool> {
        match event {
            Event::PublishRequested { app, name, tc_url } => {
                let key =
                    match super::url::resolve(&app, &name, tc_url.as_deref(), &self.config.domains)
                    {
                        Ok(k) => k,
                        Err(why) => {
                            warn!(addr = %self.addr, %app, %name, %why, "rtmp publish refused");
                            self.session
                                .reject_publish("NetStream.Publish.BadName", &why)?;
                            return Ok(true);
                        }
                    };
                let info = PublisherInfo {
                    addr: self.addr,
                    protocol: "rtmp",
                };
                match self.sink.publish(key.clone(), info) {
                    Ok(writer) => {
                        info!(addr = %self.addr, stream = %key, "rtmp publish started");
                        self.session.accept_publish()?;
                        self.publishing = Some(Publishing {
                            writer,
                            feed: VideoFeed::default(),
                            clock: Unwrap::default(),
                            unsupported_reported: false,
                            key: key.to_string(),
                        });
                    }
                    Err(refused) => {
                        warn!(addr = %self.addr, stream = %key, reason = %refused, "rtmp publish refused");
                        let code = match refused {
                            PublishRefused::AlreadyLive(_) => "NetStream.Publish.BadName",
                            PublishRefused::TooManyStreams(_) => "NetStream.Publish.Rejected",
                            PublishRefused::BadName(_) => "NetStream.Publish.BadName",
                        };
                        self.session.reject_publish(code, &refused.to_string())?;
                        return Ok(true);
                    }
                }
            }
            Event::Video { timestamp, body } => {
                if body.len() > self.config.max_access_unit_bytes {
                    return Err(Error::TooLarge {
                        what: "video message",
                        size: body.len(),
                        limit: self.config.max_access_unit_bytes,
                    });
                }
                if let Some(p) = self.publishing.as_mut() {
                    p.on_video(timestamp, &body)?;
                }
            }
            Event::Unpublished => {
                if let Some(p) = self.publishing.take() {
                    info!(addr = %self.addr, stream = %p.key, "rtmp publish stopped");
                }
            }
            Event::Refused(why) => {
                info!(addr = %self.addr, %why, "rtmp request refused");
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(p) = self.publishing.take() {
            info!(addr = %self.addr, stream = %p.key, "rtmp publisher disconnected");
        }
    }
}

impl Publishing {
    fn on_video(&mut self, timestamp: u32, body: &bytes::Bytes) -> Result<()> {
        let dts_ms = self.clock.next(timestamp);
        match self.feed.feed(dts_ms, body, self.writer.as_mut()) {
            Ok(Fed::BeforeConfig) => {
                debug!(stream = %self.key, "frame before the sequence header dropped")
            }
            Ok(Fed::Unsupported(name)) => {
                if !self.unsupported_reported {
                    self.unsupported_reported = true;
                    warn!(stream = %self.key, codec = %name, "video codec not supported; no pictures for this stream");
                    self.writer.unsupported(&name);
                }
            }
            Ok(_) => {}
            // A bad tag or sequence header is dropped; the stream goes on.
            Err(e) => warn!(stream = %self.key, error = %e, "bad video tag dropped"),
        }
        Ok(())
    }
}
