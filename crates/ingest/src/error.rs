//! The one error type of the ingest crate.

/// Why a connection or a file was refused. Each variant is one thing a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RTMP handshake failed (wrong version byte, garbage).
    #[error("RTMP handshake: {0}")]
    Handshake(String),
    /// The RTMP chunk stream could not be read.
    #[error("RTMP chunk stream: {0}")]
    Chunk(String),
    /// An AMF0 value could not be read.
    #[error("AMF0: {0}")]
    Amf0(&'static str),
    /// A command arrived that makes no sense at this point.
    #[error("RTMP protocol: {0}")]
    Protocol(String),
    /// A message larger than the configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An RTSP message or SDP could not be read, or made no sense at this point.
    #[error("RTSP: {0}")]
    Rtsp(String),
    /// An FLV file or tag could not be read.
    #[error("FLV: {0}")]
    Flv(String),
    /// An RTP packet whose header cannot be read (RFC 3550 5.1).
    #[error("RTP packet: {0}")]
    RtpHeader(&'static str),
    /// An RTP payload that breaks its codec's packetization rules (RFC 6184, RFC 7798).
    #[error("RTP {codec} payload: {what}")]
    RtpPayload {
        /// The codec's display name.
        codec: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// A packetization or codec the RTP depacketizers do not handle (interleaved mode, DONL,
    /// STAP-B, MTAP, FU-B, PACI).
    #[error("RTP: {0} is not supported")]
    RtpUnsupported(String),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the ingest [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
