//! Pulling an `rtsp://` source: retina plays it (DESCRIBE, SETUP, PLAY; interleaved TCP by
//! default, `?transport=udp` for UDP; credentials from the URL, basic or digest) and its first
//! H.264 or H.265 video stream is published into a [`StreamSink`] like any publisher's.

use std::time::Duration;

use futures_util::StreamExt;
use media::stream::{PublisherInfo, StreamKey, StreamSink};
use media::{Codec, Frame, VideoConfig};
use retina::client::{Credentials, PlayOptions, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, ParametersRef};
use tokio::time::timeout;

use crate::frontend::Publication;

/// The protocol's name in logs and `/v1/streams`.
pub const PROTOCOL: &str = "rtsp-pull";
/// Time until the server plays, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that sends nothing this long while playing is dropped, by default.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a pull failed, in the words its supervisor acts on.
#[derive(Debug, thiserror::Error)]
pub enum RtspPullError {
    /// The URL cannot be used.
    #[error("{url} is not a usable RTSP URL: {why}")]
    BadUrl {
        /// The URL, credentials removed.
        url: String,
        /// Why.
        why: String,
    },
    /// No connection, or no answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// The server answered no, for another reason than those below.
    #[error("{0}")]
    Refused(String),
    /// The server refused the credentials (401, 403).
    #[error("{0}")]
    Unauthorized(String),
    /// The server has no such stream (404).
    #[error("{0}")]
    NotFound(String),
    /// No H.264 or H.265 video in what the server offers.
    #[error("{0}")]
    Unsupported(String),
    /// The session broke off or sent what could not be read.
    #[error("{0}")]
    Protocol(String),
    /// Nothing arrived for this long while playing.
    #[error("nothing received for {0:?}")]
    Idle(Duration),
}

/// Settings of RTSP pulls.
#[derive(Debug, Clone)]
pub struct RtspPullConfig {
    /// Time until the server plays.
    pub connect_timeout: Duration,
    /// Silence that ends a playing session.
    pub idle_timeout: Duration,
}

impl Default for RtspPullConfig {
    fn default() -> Self {
        RtspPullConfig {
            connect_timeout: CONNECT_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    // Cameras and servers that take credentials in the query (`?user=admin&password=...`,
    // `?token=...`) get those values hidden too.
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_QUERY_KEYS
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s));
                let v = if secret { "***".into() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.set_query(None);
        u.query_pairs_mut().extend_pairs(pairs);
    }
    u.to_string()
}

/// `url` as it may be shown, whether or not it parses: the first 200 characters, with a
/// password before `@` and the values of secret-looking query keys ([`SECRET_QUERY_KEYS`])
/// replaced by `***`.
pub fn redact_text(url: &str) -> String {
    if let Ok(u) = url::Url::parse(url) {
        if u.has_host() {
            return redact(&u).chars().take(200).collect();
        }
    }
    let mut out = url.to_string();
    // userinfo: between "://" and the first '@' before the path.
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@') {
            out.replace_range(start..start + at, "***");
        }
    }
    if let Some((head, query)) = out.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if SECRET_QUERY_KEYS
                        .iter()
                        .any(|s| k.to_ascii_lowercase().contains(s)) =>
                {
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}?{}", query.join("&"));
    }
    out.chars().take(200).collect()
}

/// Query keys whose values are hidden when a URL is shown (matched as parts of the key, in
/// any case).
pub const SECRET_QUERY_KEYS: [&str; 7] = ["pass", "pwd", "token", "key", "secret", "auth", "sign"];

/// Plays `url` and publishes its video as `key` into `sink` until the server ends the stream
/// (`Ok`) or something fails. `on_video` is called once, when the first frame has been handed
/// on. Dropping the future ends the session and unpublishes the stream.
pub async fn pull(
    url: &str,
    config: &RtspPullConfig,
    sink: &dyn StreamSink,
    key: StreamKey,
    on_video: &mut (dyn FnMut() + Send),
) -> Result<(), RtspPullError> {
    let mut parsed = url::Url::parse(url).map_err(|e| RtspPullError::BadUrl {
        url: url.chars().take(200).collect(),
        why: e.to_string(),
    })?;
    let shown = redact(&parsed);
    if !matches!(parsed.scheme(), "rtsp") || parsed.host_str().is_none() {
        return Err(RtspPullError::BadUrl {
            url: shown,
            why: "it must be rtsp://host[:port]/path".into(),
        });
    }
    // `transport=udp` is ours, not the server's: taken off the URL.
    let udp = parsed
        .query_pairs()
        .any(|(k, v)| k == "transport" && v.eq_ignore_ascii_case("udp"));
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "transport")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed.set_query(None);
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    let creds = (!parsed.username().is_empty()).then(|| Credentials {
        username: percent_decode(parsed.username()),
        password: percent_decode(parsed.password().unwrap_or("")),
    });
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let addr = parsed
        .socket_addrs(|| Some(554))
        .ok()
        .and_then(|a| a.into_iter().next())
        .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());

    let options = SessionOptions::default()
        .creds(creds)
        .user_agent("livesnap".to_string());
    let playing = timeout(config.connect_timeout, async {
        let mut session = retina::client::Session::describe(parsed.clone(), options)
            .await
            .map_err(|e| classify(&e))?;
        let video = session
            .streams()
            .iter()
            .position(|s| {
                s.media() == "video"
                    && matches!(
                        s.encoding_name().to_ascii_lowercase().as_str(),
                        "h264" | "h265"
                    )
            })
            .ok_or_else(|| {
                RtspPullError::Unsupported(format!(
                    "{shown} offers no H.264 or H.265 video ({})",
                    session
                        .streams()
                        .iter()
                        .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let transport = if udp {
            Transport::Udp(Default::default())
        } else {
            Transport::Tcp(Default::default())
        };
        session
            .setup(video, SetupOptions::default().transport(transport))
            .await
            .map_err(|e| classify(&e))?;
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| classify(&e))?;
        let demuxed = playing
            .demuxed()
            .map_err(|e| RtspPullError::Protocol(e.to_string()))?;
        Ok::<_, RtspPullError>((video, demuxed))
    })
    .await
    .map_err(|_| {
        RtspPullError::Unreachable(format!(
            "no answer from {shown} within {:?}",
            config.connect_timeout
        ))
    })??;
    let (video, mut demuxed) = playing;
    let info = PublisherInfo {
        addr,
        protocol: PROTOCOL,
    };
    let mut publication = Publication::start(sink, key, info)
        .map_err(|r| RtspPullError::Refused(format!("cannot publish {shown}: {r}")))?;
    let transport = if udp { "udp" } else { "tcp" };
    publication.writer().transport(transport, 0, 0);
    // Packets retina saw lost before the frames it handed over.
    let mut lost: u64 = 0;
    let mut first = true;
    let mut codec: Option<Codec> = None;
    let mut broken_said = false;
    loop {
        let item = match timeout(config.idle_timeout, demuxed.next()).await {
            Err(_) => return Err(RtspPullError::Idle(config.idle_timeout)),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(RtspPullError::Protocol(e.to_string())),
            Ok(Some(Ok(item))) => item,
        };
        let CodecItem::VideoFrame(frame) = item else {
            continue;
        };
        if frame.stream_id() != video {
            continue;
        }
        if frame.loss() > 0 {
            lost += u64::from(frame.loss());
            publication.writer().transport(transport, lost, 0);
        }
        if frame.has_new_parameters() || codec.is_none() {
            let params = demuxed.streams()[video].parameters();
            let Some(ParametersRef::Video(v)) = params else {
                continue;
            };
            match config_of(v.rfc6381_codec(), v.extra_data()) {
                Ok(c) => {
                    codec = Some(c.codec());
                    publication.writer().config(c);
                }
                Err(ConfigProblem::Unsupported(why)) => {
                    publication.writer().unsupported(&why);
                    return Err(RtspPullError::Unsupported(format!("{shown}: {why}")));
                }
                // Parameter sets that do not parse (a broken sprop): frames wait for the next
                // ones the server sends in band, which retina hands over as new parameters.
                Err(ConfigProblem::Broken(why)) => {
                    if !broken_said {
                        broken_said = true;
                        tracing::warn!(source = %shown, %why, "parameter sets unreadable; waiting for new ones");
                    }
                    codec = None;
                    continue;
                }
            }
        }
        let ts = frame.timestamp();
        let pts_ms = ts.elapsed() * 1000 / i64::from(ts.clock_rate().get());
        let keyframe = frame.is_random_access_point();
        publication.writer().frame(Frame {
            dts_ms: pts_ms,
            pts_ms,
            keyframe,
            data: bytes::Bytes::from(frame.into_data()),
        });
        if first {
            first = false;
            on_video();
        }
    }
}

/// The decoder configuration from retina's parameters: the `avcC` / `hvcC` record it builds.
fn config_of(rfc6381: &str, extra: &[u8]) -> Result<VideoConfig, ConfigProblem> {
    let record = bytes::Bytes::copy_from_slice(extra);
    if rfc6381.starts_with("avc1") {
        media::avc::AvcConfig::parse(&record)
            .map(VideoConfig::Avc)
            .map_err(|e| ConfigProblem::Broken(e.to_string()))
    } else if rfc6381.starts_with("hvc1") || rfc6381.starts_with("hev1") {
        media::hevc::HevcConfig::parse(&record)
            .map(VideoConfig::Hevc)
            .map_err(|e| ConfigProblem::Broken(e.to_string()))
    } else {
        Err(ConfigProblem::Unsupported(format!("video codec {rfc6381}")))
    }
}

/// Why parameters give no decoder configuration.
enum ConfigProblem {
    /// A codec livesnap does not picture: the pull fails for good.
    Unsupported(String),
    /// Parameter sets that do not parse: new ones may come.
    Broken(String),
}

/// Sorts a retina error into what retrying can fix or not, by the RTSP status of a refusal
/// (the text also holds addresses and times, whose digits may read like a status).
fn classify(e: &retina::Error) -> RtspPullError {
    let t = e.to_string();
    let text = t.as_str();
    match e.status_code() {
        Some(401 | 403) => return RtspPullError::Unauthorized(t),
        Some(404) => return RtspPullError::NotFound(t),
        Some(_) => return RtspPullError::Refused(t),
        None => {}
    }
    if text.contains("connect") || text.contains("refused") || text.contains("resolve") {
        RtspPullError::Unreachable(t)
    } else {
        RtspPullError::Protocol(t)
    }
}

/// `%xx` sequences of a URL's user or password decoded.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
