//! How a protocol front end hands a live stream to whoever keeps it (the hub), without either
//! crate knowing the other.

use std::fmt;
use std::net::SocketAddr;

use crate::{Frame, VideoConfig};

/// The domain used when a publisher names none.
pub const DEFAULT_DOMAIN: &str = "_default";
/// Longest domain, app or stream name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// `{domain}/{app}/{stream}`: the identity of a live stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Virtual host.
    pub domain: String,
    /// Application name.
    pub app: String,
    /// Stream name.
    pub stream: String,
}

impl StreamKey {
    /// Builds a key after checking each part with [`check_name`].
    pub fn new(domain: &str, app: &str, stream: &str) -> crate::Result<StreamKey> {
        check_name("domain", domain)?;
        check_name("app", app)?;
        check_name("stream", stream)?;
        Ok(StreamKey {
            domain: domain.to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
        })
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.domain, self.app, self.stream)
    }
}

/// Refuses names that are empty, too long, contain `/`, `\`, control characters, or are `.`/`..`.
/// Names still go through path escaping wherever they become file names; this only keeps
/// nonsense out of the hub and the API.
pub fn check_name(what: &str, name: &str) -> crate::Result<()> {
    let bad = |why: String| Err(crate::Error::BadName(why));
    if name.is_empty() {
        return bad(format!("{what} name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return bad(format!("{what} name is longer than {MAX_NAME_LEN} bytes"));
    }
    if name == "." || name == ".." {
        return bad(format!("{what} name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || *c == '/' || *c == '\\')
    {
        return bad(format!("{what} name contains the character {c:?}"));
    }
    Ok(())
}

/// Who is publishing.
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    /// Remote address.
    pub addr: SocketAddr,
    /// Protocol name (`rtmp`).
    pub protocol: &'static str,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRefused {
    /// The stream is already being published.
    AlreadyLive(String),
    /// The publisher limit is reached.
    TooManyStreams(usize),
    /// The name is not acceptable.
    BadName(String),
    /// The account owning the stream's domain has its `max_streams` live.
    AccountFull {
        /// The account.
        account: String,
        /// Its limit.
        max: usize,
    },
}

impl fmt::Display for PublishRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishRefused::AlreadyLive(k) => write!(f, "stream {k} is already being published"),
            PublishRefused::TooManyStreams(n) => {
                write!(f, "the limit of {n} live streams is reached")
            }
            PublishRefused::BadName(why) => write!(f, "bad stream name: {why}"),
            PublishRefused::AccountFull { account, max } => write!(
                f,
                "account {account} has its limit of {max} live streams (max_streams)"
            ),
        }
    }
}

/// Takes in live streams.
pub trait StreamSink: Send + Sync {
    /// Starts a stream; the returned writer receives its frames and ends it when dropped.
    fn publish(
        &self,
        key: StreamKey,
        info: PublisherInfo,
    ) -> Result<Box<dyn StreamWriter>, PublishRefused>;
}

/// Receives one live stream's configuration and frames, in decode order.
pub trait StreamWriter: Send {
    /// A new decoder configuration (sequence header). Frames after it use it.
    fn config(&mut self, config: VideoConfig);
    /// One compressed frame.
    fn frame(&mut self, frame: Frame);
    /// The stream carries video this server cannot picture (`name` says which).
    fn unsupported(&mut self, name: &str);
    /// How the stream's packets travel (`tcp`, `udp`) and, for RTP, what its depacketizers
    /// counted so far: packets lost, and access units dropped whole (lost parts, or waiting for
    /// a keyframe after a loss). Front ends without packets never call it.
    fn transport(&mut self, _transport: &'static str, _packets_lost: u64, _frames_dropped: u64) {}
    /// The stream's sender makes a keyframe when asked (a WebRTC PLI): `request` asks it.
    /// Front ends whose senders cannot be asked never call it.
    fn keyframe_requests(&mut self, _request: KeyframeRequester) {}
}

/// Asks a stream's sender for a keyframe; returns at once (the keyframe comes with the stream),
/// false when the request could not be queued.
pub type KeyframeRequester = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// Hands out live streams to players (RTMP play): the other direction of [`StreamSink`].
pub trait StreamSource: Send + Sync {
    /// The live stream `key` as a player reads it, from its newest keyframe on; `None` when it
    /// is not live.
    fn play(&self, key: &StreamKey) -> Option<Box<dyn StreamPlayer>>;
}

/// What a player is given next.
#[derive(Debug, Clone)]
pub enum PlayItem {
    /// The decoder configuration of the frames that follow (first, and whenever it changes).
    Config(VideoConfig),
    /// One frame, in decode order; the first after a configuration or a gap is a keyframe.
    Frame(Frame),
}

/// A future a player awaits: boxed, so the trait stays object-safe.
pub type PlayNext<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<PlayItem>> + Send + 'a>>;

/// One player's cursor in a live stream. A player too slow to keep up skips to the newest
/// keyframe rather than holding frames for it.
pub trait StreamPlayer: Send {
    /// The next configuration or frame, waiting for it; `None` once the stream ended.
    fn next(&mut self) -> PlayNext<'_>;
    /// The stream's codec now, if its configuration has come.
    fn codec(&self) -> Option<crate::Codec>;
}
