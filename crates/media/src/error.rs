//! The one error type of the media crate.

/// Everything that can go wrong while reading parameter sets or making a picture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AVCDecoderConfigurationRecord (the FLV/MP4 "avcC" box) could not be read.
    #[error("invalid AVC decoder configuration record: {0}")]
    AvcConfig(&'static str),
    /// An HEVCDecoderConfigurationRecord (the FLV/MP4 "hvcC" box) could not be read.
    #[error("invalid HEVC decoder configuration record: {0}")]
    HevcConfig(&'static str),
    /// A length-prefixed NAL unit ran past the end of its access unit.
    #[error("truncated NAL unit: length {len} but only {remaining} bytes remain")]
    TruncatedNal { len: usize, remaining: usize },
    /// The sequence parameter set could not be parsed.
    #[error("invalid SPS: {0}")]
    Sps(String),
    /// The SPS claims a size we refuse to allocate for.
    #[error("picture size {width}x{height} exceeds the limit of {max_pixels} pixels ({max_side} per side)")]
    PictureTooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
        max_side: u32,
    },
    /// The stream uses something we do not decode (4:2:2, 10-bit, ...).
    #[error("unsupported stream: {0}")]
    Unsupported(String),
    /// The decoder rejected the bitstream or produced no picture.
    #[error("decode failed: {0}")]
    Decode(String),
    /// The requested output size is zero or absurd.
    #[error("invalid output size {width}x{height}: each side must be 1..={max}")]
    BadOutputSize { width: u32, height: u32, max: u32 },
    /// The requested output has more pixels than any picture is allowed.
    #[error("output size {width}x{height} is {pixels} pixels; at most {max} are made (8192x4352, DCI 8K)")]
    TooManyOutputPixels {
        width: u32,
        height: u32,
        pixels: u64,
        max: u64,
    },
    /// A domain, app or stream name is refused (empty, too long, `/`, control characters...).
    #[error("{0}")]
    BadName(String),
    /// Colour conversion, scaling or encoding failed.
    #[error("encode failed: {0}")]
    Encode(String),
}

/// Result with the media [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
