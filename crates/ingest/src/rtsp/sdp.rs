//! What the RTSP server reads of an ANNOUNCE's SDP (RFC 8866): each media section's type,
//! payload type, `rtpmap` encoding and clock rate, `fmtp` parameters and `control` URL.
//!
//! Written by hand: the server needs these few attributes of a publisher's own description, and
//! nothing else of SDP (no offer/answer, no session-level negotiation). Lines it does not know
//! are skipped; a line that is not `x=...` is an error.

use crate::{Error, Result};

/// Largest SDP accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most media sections accepted.
pub const MAX_MEDIA: usize = 16;

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Media {
    /// `video`, `audio`, `application`...
    pub kind: String,
    /// The first payload type of the `m=` line.
    pub payload_type: u8,
    /// Encoding name from `a=rtpmap` (`H264`, `H265`), as written.
    pub encoding: String,
    /// Clock rate from `a=rtpmap` (90000 for video).
    pub clock_rate: u32,
    /// `a=fmtp` parameters of the payload type, `key=value` pairs in order.
    pub fmtp: Vec<(String, String)>,
    /// `a=control`: a URL, absolute or relative to the session's.
    pub control: Option<String>,
}

impl Media {
    /// The value of an `fmtp` parameter (names compare case-insensitively).
    pub fn fmtp(&self, name: &str) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A session description: its media sections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdp {
    /// Session-level `a=control`, if any.
    pub control: Option<String>,
    /// The `m=` sections in order.
    pub media: Vec<Media>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Rtsp(format!("SDP: {}", what.into()))
}

/// Parses an SDP body.
pub fn parse(body: &[u8]) -> Result<Sdp> {
    if body.len() > MAX_SDP_BYTES {
        return Err(Error::TooLarge {
            what: "SDP",
            size: body.len(),
            limit: MAX_SDP_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    let mut sdp = Sdp::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (kind, value) = line
            .split_once('=')
            .filter(|(k, _)| k.len() == 1)
            .ok_or_else(|| bad(format!("not a line of the form x=...: {line:?}")))?;
        match kind {
            "m" => {
                if sdp.media.len() == MAX_MEDIA {
                    return Err(bad(format!("more than {MAX_MEDIA} media sections")));
                }
                // m=<media> <port> <proto> <fmt> ...
                let mut parts = value.split_ascii_whitespace();
                let media = parts.next().unwrap_or_default().to_string();
                let payload_type = parts
                    .nth(2)
                    .and_then(|pt| pt.parse::<u8>().ok())
                    .filter(|pt| *pt < 128)
                    .ok_or_else(|| bad(format!("m= line without a payload type: {line:?}")))?;
                sdp.media.push(Media {
                    kind: media,
                    payload_type,
                    ..Media::default()
                });
            }
            "a" => {
                let (name, rest) = value.split_once(':').unwrap_or((value, ""));
                let current = sdp.media.last_mut();
                match (name, current) {
                    ("control", None) => sdp.control = Some(rest.trim().to_string()),
                    ("control", Some(m)) => m.control = Some(rest.trim().to_string()),
                    ("rtpmap", Some(m)) => {
                        // a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]
                        let (pt, enc) = rest.split_once(' ').unwrap_or((rest, ""));
                        if pt.trim().parse::<u8>().ok() == Some(m.payload_type) {
                            let mut e = enc.trim().split('/');
                            m.encoding = e.next().unwrap_or_default().to_string();
                            m.clock_rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                        }
                    }
                    ("fmtp", Some(m)) => {
                        // a=fmtp:<pt> k=v;k=v
                        let (pt, params) = rest.split_once(' ').unwrap_or((rest, ""));
                        if pt.trim().parse::<u8>().ok() == Some(m.payload_type) {
                            m.fmtp = params
                                .split(';')
                                .filter_map(|kv| {
                                    let (k, v) = kv.trim().split_once('=')?;
                                    Some((k.trim().to_string(), v.trim().to_string()))
                                })
                                .collect();
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(sdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg 6 sends in its ANNOUNCE for `-c:v libx264 -f rtsp`.
    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\na=tool:libavformat 60.16.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:200\r\n\
        a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; \
        sprop-parameter-sets=Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA; profile-level-id=64000C\r\n\
        a=control:streamid=0\r\n";

    #[test]
    fn reads_ffmpegs_announce() {
        let sdp = parse(FFMPEG.as_bytes()).unwrap();
        assert_eq!(sdp.media.len(), 1);
        let m = &sdp.media[0];
        assert_eq!(
            (m.kind.as_str(), m.payload_type, m.encoding.as_str()),
            ("video", 96, "H264")
        );
        assert_eq!(m.clock_rate, 90000);
        assert_eq!(m.control.as_deref(), Some("streamid=0"));
        assert_eq!(m.fmtp("PACKETIZATION-MODE"), Some("1"));
        assert_eq!(
            m.fmtp("sprop-parameter-sets"),
            Some("Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA")
        );
    }

    #[test]
    fn refuses_garbage_and_bounds_its_size() {
        assert!(parse(b"hello world").is_err());
        assert!(parse(b"m=video 0 RTP/AVP\r\n").is_err(), "no payload type");
        assert!(parse(&[0xff, 0xfe]).is_err());
        let many = "m=video 0 RTP/AVP 96\r\n".repeat(MAX_MEDIA + 1);
        assert!(parse(many.as_bytes()).is_err());
        assert!(parse(&vec![b'a'; MAX_SDP_BYTES + 1]).is_err());
        // Attributes before any media section, and unknown ones, are fine.
        let sdp = parse(b"v=0\r\na=control:*\r\na=x-whatever\r\nm=audio 0 RTP/AVP 97\r\n").unwrap();
        assert_eq!(sdp.control.as_deref(), Some("*"));
        assert_eq!(sdp.media[0].kind, "audio");
    }
}
