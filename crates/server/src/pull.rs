//! Pulled sources, joined: ingest's pull clients behind core's [`SourceOpener`]. Core names the
//! trait and ingest cannot import core, so the server adapts one to the other here and hands
//! the result to whoever opens URLs (`grab` now, pull jobs next).

use ingest::rtmp::client::{self, PullConfig, PullError, RtmpUrl};
use ingest::rtsp::client::{self as rtsp, RtspPullConfig, RtspPullError};
use livesnap_core::source::{SourceError, SourceFuture, SourceOpener, SourceRequest};

/// Opens `rtmp://` URLs with ingest's RTMP client and `rtsp://` URLs with its RTSP client
/// (retina); refuses other schemes with a clear error.
#[derive(Debug, Clone, Default)]
pub struct PullOpener {
    rtmp: PullConfig,
    rtsp: RtspPullConfig,
}

impl PullOpener {
    /// An opener with these RTMP limits (RTSP's follow them).
    pub fn new(rtmp: PullConfig) -> PullOpener {
        let rtsp = RtspPullConfig {
            connect_timeout: rtmp.connect_timeout,
            idle_timeout: rtmp.idle_timeout,
        };
        PullOpener { rtmp, rtsp }
    }
}

/// The scheme of `url`, lowercased, if it has the form `scheme://...`.
pub fn url_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Checks that `url` is one this build can open, without opening it.
pub fn check_url(url: &str) -> Result<(), SourceError> {
    match url_scheme(url).as_deref() {
        Some("rtmp") => RtmpUrl::parse(url).map(|_| ()).map_err(source_error),
        Some("rtsp") => url::Url::parse(url)
            .ok()
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
            .map(|_| ())
            .ok_or_else(|| {
                SourceError::BadUrl(format!(
                    "{} is not an rtsp://host[:port]/path URL",
                    shown(url)
                ))
            }),
        Some(other) => Err(SourceError::Unsupported(format!(
            "{other}:// URLs are not supported; livesnap pulls rtmp:// and rtsp:// URLs"
        ))),
        // Not echoed: with no scheme there is no telling where a password would be.
        None => Err(SourceError::BadUrl(
            "the input is not a URL (scheme://host/...)".into(),
        )),
    }
}

impl SourceOpener for PullOpener {
    fn check(&self, url: &str) -> Result<(), SourceError> {
        check_url(url)
    }

    fn redact(&self, url: &str) -> String {
        shown(url)
    }

    fn open(&self, request: SourceRequest) -> SourceFuture<'_> {
        Box::pin(async move {
            let SourceRequest {
                url,
                sink,
                key,
                cancel,
                mut connected,
            } = request;
            check_url(&url)?;
            let mut on_video = || connected.report();
            if url_scheme(&url).as_deref() == Some("rtsp") {
                return tokio::select! {
                    _ = cancel.cancelled() => Ok(()),
                    result = rtsp::pull(&url, &self.rtsp, sink.as_ref(), key, &mut on_video) => {
                        result.map_err(rtsp_error)
                    }
                };
            }
            let rtmp_url = RtmpUrl::parse(&url).map_err(source_error)?;
            tokio::select! {
                // Stopping is not a failure: the stream is unpublished as the pull is dropped.
                _ = cancel.cancelled() => Ok(()),
                result = client::pull(&rtmp_url, &self.rtmp, sink.as_ref(), key, &mut on_video) => {
                    result.map_err(source_error)
                }
            }
        })
    }
}

/// The kind of failure core's supervisor acts on, with ingest's words for it.
fn source_error(e: PullError) -> SourceError {
    let text = e.to_string();
    match e {
        PullError::BadUrl { .. } => SourceError::BadUrl(text),
        PullError::Connect { .. } | PullError::Timeout { .. } => SourceError::Unreachable(text),
        PullError::Refused { ref code, .. } if code.ends_with("StreamNotFound") => {
            SourceError::NotFound(text)
        }
        PullError::Refused { .. } => SourceError::Refused(text),
        PullError::Idle { .. } => SourceError::Stalled(text),
        PullError::Closed { .. } | PullError::Io { .. } => SourceError::Io(text),
        PullError::Protocol { .. } => SourceError::Protocol(text),
        PullError::Publish(refused) => SourceError::Publish(refused),
    }
}

/// The kind of failure of an RTSP pull.
fn rtsp_error(e: RtspPullError) -> SourceError {
    let text = e.to_string();
    match e {
        RtspPullError::BadUrl { .. } => SourceError::BadUrl(text),
        RtspPullError::Unreachable(_) => SourceError::Unreachable(text),
        RtspPullError::Refused(_) => SourceError::Refused(text),
        RtspPullError::Unauthorized(_) => SourceError::Unauthorized(text),
        RtspPullError::NotFound(_) => SourceError::NotFound(text),
        RtspPullError::Unsupported(_) => SourceError::Unsupported(text),
        RtspPullError::Protocol(_) => SourceError::Protocol(text),
        RtspPullError::Idle(_) => SourceError::Stalled(text),
    }
}

/// A URL as it may be shown: its password hidden.
pub fn shown(url: &str) -> String {
    rtsp::redact_text(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_by_scheme() {
        assert_eq!(url_scheme("RTMP://h/a/b").as_deref(), Some("rtmp"));
        assert_eq!(url_scheme("/tmp/x.flv"), None);
        assert_eq!(url_scheme("://x"), None);
        assert!(check_url("rtmp://127.0.0.1/live/cam").is_ok());
        assert!(check_url("rtsp://cam/stream").is_ok());
        assert!(check_url("rtsp://user:pw@cam:8554/stream?transport=udp").is_ok());
        let bad = check_url("rtsp:///nohost").unwrap_err();
        assert!(matches!(bad, SourceError::BadUrl(_)), "{bad:?}");
        assert!(check_url("http://x/y").unwrap_err().is_permanent());
        let bad = check_url("rtmp://host/onlyapp").unwrap_err();
        assert!(matches!(bad, SourceError::BadUrl(_)), "{bad:?}");
        assert!(bad.to_string().contains("app and a stream"), "{bad}");
    }

    #[test]
    fn passwords_are_never_shown() {
        for (url, want) in [
            ("rtsp://admin:hunter2@cam/s", "rtsp://admin:***@cam/s"),
            (
                "rtsp://cam/s?user=admin&password=hunter2",
                "rtsp://cam/s?user=admin&password=***",
            ),
            (
                "rtmp://cam/bcs/ch0?user=admin&pwd=hunter2",
                "rtmp://cam/bcs/ch0?user=admin&pwd=***",
            ),
            (
                "rtmp://cam/live/s?token=hunter2&x=1",
                "rtmp://cam/live/s?token=***&x=1",
            ),
            (
                "rtmp://admin:hunter2@cam/live/s",
                "rtmp://admin:***@cam/live/s",
            ),
            ("rtmp://admin:hunter2@/live/s", "rtmp://***@/live/s"),
            ("admin:hunter2@cam/live", "admin:hunter2@cam/live"),
        ] {
            assert_eq!(shown(url), want, "{url}");
        }
        // The errors of a URL that does not parse hide it too.
        for url in [
            "rtmp://admin:hunter2@cam/live/s",
            "rtmp://cam/live?password=hunter2",
            "rtsp://u:hunter2@/x",
            "nourl:hunter2@x?key=hunter2",
        ] {
            if let Err(e) = check_url(url) {
                assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
            }
        }
    }
}
