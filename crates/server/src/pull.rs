//! Pulled sources, joined: ingest's pull clients behind core's [`SourceOpener`]. Core names the
//! trait and ingest cannot import core, so the server adapts one to the other here and hands
//! the result to whoever opens URLs (`grab` now, pull jobs next).

use ingest::rtmp::client::{self, PullConfig, PullError, RtmpUrl};
use livesnap_core::source::{SourceError, SourceFuture, SourceOpener, SourceRequest};

/// Opens `rtmp://` URLs with ingest's RTMP client; refuses other schemes with a clear error.
#[derive(Debug, Clone, Default)]
pub struct PullOpener {
    rtmp: PullConfig,
}

impl PullOpener {
    /// An opener with these RTMP limits.
    pub fn new(rtmp: PullConfig) -> PullOpener {
        PullOpener { rtmp }
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
        Some("rtsp" | "rtsps") => Err(SourceError::Unsupported(
            "rtsp:// URLs are not supported yet (RTSP comes with issue 15)".into(),
        )),
        Some(other) => Err(SourceError::Unsupported(format!(
            "{other}:// URLs are not supported; livesnap pulls rtmp:// URLs"
        ))),
        None => Err(SourceError::BadUrl(format!(
            "{url:?} is not a URL (scheme://host/...)"
        ))),
    }
}

impl SourceOpener for PullOpener {
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
            let rtmp_url = RtmpUrl::parse(&url).map_err(source_error)?;
            let mut on_video = || connected.report();
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
        PullError::Refused { .. } => SourceError::Refused(text),
        PullError::Idle { .. } => SourceError::Stalled(text),
        PullError::Closed { .. } | PullError::Io { .. } => SourceError::Io(text),
        PullError::Protocol { .. } => SourceError::Protocol(text),
        PullError::Publish(refused) => SourceError::Publish(refused),
    }
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
        let rtsp = check_url("rtsp://cam/stream").unwrap_err();
        assert!(rtsp.is_permanent());
        assert!(rtsp.to_string().contains("issue 15"), "{rtsp}");
        assert!(check_url("http://x/y").unwrap_err().is_permanent());
        let bad = check_url("rtmp://host/onlyapp").unwrap_err();
        assert!(matches!(bad, SourceError::BadUrl(_)), "{bad:?}");
        assert!(bad.to_string().contains("app and a stream"), "{bad}");
    }
}
