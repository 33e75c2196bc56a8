//! RTP to frames, sans-IO: one [`Depacketizer`] per H.264 (RFC 6184) or H.265 (RFC 7798) video
//! track turns its RTP packets into parameter sets ([`media::VideoConfig`]) and whole access
//! units ([`media::Frame`]).
//!
//! The RTSP server and pull clients do the I/O: they read each UDP datagram or interleaved `$`
//! frame, parse it with [`Packet::parse`] and [`Depacketizer::push`] it; they build the
//! depacketizer from the SDP's codec and `a=fmtp` line ([`Depacketizer::new`]).
//!
//! What a depacketizer does with a packet, in order:
//! 1. keeps the first SSRC it sees; packets of another are discarded (a stray sender);
//! 2. puts packets back in sequence order within a small window ([`REORDER_PACKETS`]), drops
//!    duplicates and counts gaps as lost;
//! 3. gathers NAL units into an access unit, which ends at the marker bit or, for senders
//!    that omit it, when the timestamp changes. Parameter sets (from the SDP's `sprop-*`, then
//!    in-band ones, which win) become [`Event::Config`], not part of frames, as on the RTMP path;
//!    AUDs and filler data are dropped;
//! 4. hands an access unit out only when it is whole and decodable: once one is dropped (packets
//!    lost, a fragment whose start is missing, malformed, past a limit) every access unit up to
//!    the next keyframe (IDR, IRAP) is dropped too, so nothing broken is ever pictured.
//!
//! Timestamps: 90 kHz RTP timestamps are unwrapped (32-bit wrap, B-frames going back) into
//! milliseconds since the first packet: that is `pts_ms`. RTP carries no decode time, so
//! `dts_ms` is the largest `pts_ms` so far: it never decreases (what the hub's rates and
//! keyframe intervals need), equals `pts_ms` in streams without B-frames, and with B-frames
//! runs ahead of a B-frame's `pts_ms` by at most the reorder depth.

mod h264;
mod h265;
mod reorder;

use bytes::Bytes;
use media::{Codec, Frame, VideoConfig};
use tracing::{debug, warn};

use crate::{Error, Result};
use reorder::{Gap, Reorder};
pub use reorder::{REORDER_PACKETS, REORDER_WAIT};

/// The RTP clock of H.264 and H.265 video (RFC 6184 8.2.1, RFC 7798 7.1).
pub const CLOCK_RATE: u32 = 90_000;
/// Largest access unit put together, by default (the RTMP front end's default too).
pub const DEFAULT_MAX_ACCESS_UNIT_BYTES: usize = 8 * 1024 * 1024;
/// Most NAL units kept in one access unit (slices and SEI; encoders use a few, 8K tiles some dozens).
pub const MAX_NALS_PER_ACCESS_UNIT: usize = 1024;
/// Largest parameter set kept (real ones are tens to a few hundred bytes).
pub const MAX_PARAMETER_SET_BYTES: usize = 16 * 1024;
/// A buffer grown past this for a large access unit is let go after it, not kept for the next.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;
/// Fixed part of the RTP header (RFC 3550 5.1).
const HEADER_LEN: usize = 12;
/// RTCP packet types 200-204 read as RTP payload types 72-76 (RFC 5761 4): a packet of the
/// RTCP port or of a muxed session given here by mistake.
const RTCP_PAYLOAD_TYPES: std::ops::RangeInclusive<u8> = 72..=76;
/// Slots of the parameter sets in [`ParameterSets`].
const VPS: usize = 0;
const SPS: usize = 1;
const PPS: usize = 2;

/// One RTP packet: the header fields a depacketizer needs, and the payload without CSRCs,
/// header extension or padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Set on the last packet of an access unit.
    pub marker: bool,
    /// Payload type (from the SDP's `a=rtpmap`).
    pub payload_type: u8,
    /// Sequence number (16 bits, wrapping).
    pub sequence: u16,
    /// Timestamp in [`CLOCK_RATE`] ticks (32 bits, wrapping, random start).
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// The payload.
    pub payload: Bytes,
}

impl Packet {
    /// Reads an RTP packet (RFC 3550 5.1); the payload is a slice of `data`.
    pub fn parse(data: Bytes) -> Result<Packet> {
        let b = &data[..];
        if b.len() < HEADER_LEN {
            return Err(Error::RtpHeader("shorter than 12 bytes"));
        }
        if b[0] >> 6 != 2 {
            return Err(Error::RtpHeader("version is not 2"));
        }
        let payload_type = b[1] & 0x7f;
        if RTCP_PAYLOAD_TYPES.contains(&payload_type) {
            return Err(Error::RtpHeader("an RTCP packet (payload type 72-76)"));
        }
        let mut start = HEADER_LEN + 4 * usize::from(b[0] & 0x0f);
        if start > b.len() {
            return Err(Error::RtpHeader("CSRC list runs past the end"));
        }
        if b[0] & 0x10 != 0 {
            let ext = b
                .get(start..start + 4)
                .ok_or(Error::RtpHeader("header extension runs past the end"))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            if start > b.len() {
                return Err(Error::RtpHeader("header extension runs past the end"));
            }
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            // The last byte counts the padding, itself included.
            let padding = usize::from(b[end - 1]);
            if padding == 0 || padding > end - start {
                return Err(Error::RtpHeader("padding longer than the payload"));
            }
            end -= padding;
        }
        Ok(Packet {
            marker: b[1] & 0x80 != 0,
            payload_type,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: data.slice(start..end),
        })
    }
}

/// What a depacketizer hands out.
#[derive(Debug, Clone)]
pub enum Event {
    /// Parameter sets became known or changed; the frames after it use them.
    Config(VideoConfig),
    /// One whole access unit, NAL units with 4-byte length prefixes.
    Frame(Frame),
}

/// What happened to a track's packets and access units (for the stream's stats).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Packets pushed.
    pub packets: u64,
    /// Packets missing from the sequence (gaps given up on).
    pub packets_lost: u64,
    /// Duplicates, packets that came after their place was given up, packets of another SSRC.
    pub packets_discarded: u64,
    /// Packets whose payload was malformed or of a packetization not supported.
    pub packets_refused: u64,
    /// Access units handed out.
    pub frames: u64,
    /// Access units not handed out: incomplete, malformed, past a limit, before the parameter
    /// sets are known, or not a keyframe while one is awaited (at the start, after a drop).
    pub frames_dropped: u64,
    /// Of `frames_dropped`, those past [`MAX_NALS_PER_ACCESS_UNIT`] or the byte limit.
    pub frames_oversized: u64,
}

/// What the depacketizer does with one whole NAL unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NalKind {
    /// A parameter set, kept in this slot of [`ParameterSets`].
    ParameterSet(usize),
    /// A coded slice.
    Picture,
    /// Kept in the frame (SEI and the like).
    Other,
    /// Not kept (AUD, filler data).
    Skip,
}

/// The latest parameter set of each kind (VPS, SPS, PPS); H.264 leaves the VPS slot empty. One
/// of each is what encoders and cameras send.
#[derive(Debug, Default)]
struct ParameterSets {
    sets: [Option<Bytes>; 3],
    changed: bool,
}

impl ParameterSets {
    fn set(&mut self, slot: usize, nal: &[u8]) -> Result<()> {
        if nal.len() > MAX_PARAMETER_SET_BYTES {
            return Err(Error::TooLarge {
                what: "parameter set",
                size: nal.len(),
                limit: MAX_PARAMETER_SET_BYTES,
            });
        }
        if self.sets[slot].as_deref() != Some(nal) {
            self.sets[slot] = Some(Bytes::copy_from_slice(nal));
            self.changed = true;
        }
        Ok(())
    }
}

/// Gathers the NAL units of the access unit in progress, in the form [`Frame`] documents.
#[derive(Debug)]
struct Assembler {
    codec: Codec,
    max_bytes: usize,
    params: ParameterSets,
    /// RTP timestamp of the access unit in progress; `None` between access units.
    timestamp: Option<u32>,
    pts_ms: i64,
    /// Length-prefixed NAL units.
    data: Vec<u8>,
    nals: usize,
    /// A coded slice is among them.
    picture: bool,
    /// Where the length prefix of the fragmented NAL unit being gathered is.
    fragment: Option<usize>,
    /// Something of it is missing or wrong: it is dropped at its end.
    broken: bool,
    oversized: bool,
}

impl Assembler {
    fn classify(&self, nal: &[u8]) -> Result<NalKind> {
        let kind = match self.codec {
            Codec::H265 => h265::classify(nal),
            _ => h264::classify(nal),
        };
        kind.ok_or(Error::RtpPayload {
            codec: self.codec.display_name(),
            what: "NAL unit shorter than its header",
        })
    }

    /// Room for `more` bytes and, when `nal`, one more NAL unit.
    fn reserve(&self, more: usize, nal: bool) -> Result<()> {
        if nal && self.nals >= MAX_NALS_PER_ACCESS_UNIT {
            return Err(Error::TooLarge {
                what: "NAL units in an access unit",
                size: self.nals + 1,
                limit: MAX_NALS_PER_ACCESS_UNIT,
            });
        }
        let size = self.data.len().saturating_add(more);
        if size > self.max_bytes {
            return Err(Error::TooLarge {
                what: "access unit",
                size,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// A whole NAL unit.
    fn nal(&mut self, nal: &[u8]) -> Result<()> {
        if self.fragment.is_some() {
            return Err(self.bad("a NAL unit inside a fragmented one"));
        }
        let nal = without_trailing_zeros(nal);
        match self.classify(nal)? {
            NalKind::ParameterSet(slot) => self.params.set(slot, nal),
            NalKind::Skip => Ok(()),
            kind => {
                self.reserve(4 + nal.len(), true)?;
                self.data
                    .extend_from_slice(&(nal.len() as u32).to_be_bytes());
                self.data.extend_from_slice(nal);
                self.nals += 1;
                self.picture |= kind == NalKind::Picture;
                Ok(())
            }
        }
    }

    /// The first fragment of a NAL unit: its reconstructed header.
    fn fu_start(&mut self, header: &[u8]) -> Result<()> {
        if self.fragment.is_some() {
            return Err(self.bad("a fragment start before the last fragment ended"));
        }
        self.reserve(4 + header.len(), true)?;
        self.fragment = Some(self.data.len());
        self.data.extend_from_slice(&[0; 4]);
        self.data.extend_from_slice(header);
        Ok(())
    }

    fn fu_data(&mut self, body: &[u8]) -> Result<()> {
        if self.fragment.is_none() {
            return Err(self.bad("a fragment whose start is missing"));
        }
        self.reserve(body.len(), false)?;
        self.data.extend_from_slice(body);
        Ok(())
    }

    /// The last fragment came: the NAL unit is whole.
    fn fu_end(&mut self) -> Result<()> {
        let Some(at) = self.fragment.take() else {
            return Err(self.bad("a fragment whose start is missing"));
        };
        let len = without_trailing_zeros(&self.data[at + 4..]).len();
        self.data.truncate(at + 4 + len);
        let nal = &self.data[at + 4..];
        match self.classify(nal)? {
            NalKind::ParameterSet(slot) => {
                let result = self.params.set(slot, &self.data[at + 4..]);
                self.data.truncate(at);
                result
            }
            NalKind::Skip => {
                self.data.truncate(at);
                Ok(())
            }
            kind => {
                self.data[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
                self.nals += 1;
                self.picture |= kind == NalKind::Picture;
                Ok(())
            }
        }
    }

    fn bad(&self, what: &'static str) -> Error {
        Error::RtpPayload {
            codec: self.codec.display_name(),
            what,
        }
    }

    /// Ready for the next access unit.
    fn clear(&mut self) {
        self.timestamp = None;
        self.data.clear();
        if self.data.capacity() > KEEP_BUFFER_BYTES {
            self.data = Vec::new();
        }
        self.nals = 0;
        self.picture = false;
        self.fragment = None;
        self.broken = false;
        self.oversized = false;
    }
}

/// A NAL unit never ends in a zero byte (its last byte holds the RBSP stop bit); zeros there are
/// the byte stream's (a 4-byte start code, trailing_zero_8bits) that a sender splitting an
/// Annex B stream left on (ffmpeg does, for H.265).
fn without_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &nal[..end]
}

/// Unwraps 32-bit RTP timestamps into ticks since the first packet.
#[derive(Debug, Default)]
struct Clock {
    last: Option<u32>,
    ticks: i64,
}

impl Clock {
    fn ms(&mut self, timestamp: u32) -> i64 {
        if let Some(last) = self.last {
            // The signed difference: forward across the wrap, or back a little for B-frames.
            self.ticks += i64::from(timestamp.wrapping_sub(last) as i32);
        }
        self.last = Some(timestamp);
        self.ticks.div_euclid(i64::from(CLOCK_RATE / 1000))
    }

    /// The sender restarted: its timestamps start from a new base, ours go on from here.
    fn rebase(&mut self) {
        self.last = None;
    }
}

/// Turns one video track's RTP packets into [`Event`]s; see the module documentation.
#[derive(Debug)]
pub struct Depacketizer {
    au: Assembler,
    reorder: Reorder,
    ready: Vec<(Packet, Gap)>,
    ssrc: Option<u32>,
    /// Packets of another SSRC (part of [`Counters::packets_discarded`]).
    foreign: u64,
    clock: Clock,
    config: Option<VideoConfig>,
    need_keyframe: bool,
    last_dts: Option<i64>,
    counters: Counters,
}

impl Depacketizer {
    /// A depacketizer for `codec` (H.264 or H.265) configured by the SDP's `a=fmtp` parameters
    /// (`packetization-mode=1;sprop-parameter-sets=...`, with or without the leading payload
    /// type). Refused when the codec or the packetization is not supported (H.264
    /// interleaved mode, H.265 with DONL); broken `sprop-*` parameter sets are logged and
    /// ignored: in-band ones will do.
    pub fn new(codec: Codec, fmtp: &str) -> Result<Depacketizer> {
        if !matches!(codec, Codec::H264 | Codec::H265) {
            return Err(Error::RtpUnsupported(format!(
                "{} over RTP",
                codec.display_name()
            )));
        }
        let mut d = Depacketizer {
            au: Assembler {
                codec,
                max_bytes: DEFAULT_MAX_ACCESS_UNIT_BYTES,
                params: ParameterSets::default(),
                timestamp: None,
                pts_ms: 0,
                data: Vec::new(),
                nals: 0,
                picture: false,
                fragment: None,
                broken: false,
                oversized: false,
            },
            reorder: Reorder::default(),
            ready: Vec::new(),
            ssrc: None,
            foreign: 0,
            clock: Clock::default(),
            config: None,
            need_keyframe: true,
            last_dts: None,
            counters: Counters::default(),
        };
        for (key, value) in fmtp_parameters(fmtp) {
            let unsupported =
                |what: &str| Err(Error::RtpUnsupported(format!("{what} ({key}={value})")));
            match (codec, key.to_ascii_lowercase().as_str()) {
                (Codec::H264, "packetization-mode") if value.trim() == "2" => {
                    return unsupported("H.264 interleaved packetization");
                }
                (Codec::H264, "sprop-parameter-sets") => d.sprop(value),
                (Codec::H265, "sprop-vps" | "sprop-sps" | "sprop-pps") => d.sprop(value),
                (Codec::H265, "sprop-max-don-diff" | "sprop-depack-buf-nalus")
                    if value.trim() != "0" =>
                {
                    return unsupported("H.265 with decoding order numbers");
                }
                _ => {}
            }
        }
        Ok(d)
    }

    /// Sets the largest access unit put together (default [`DEFAULT_MAX_ACCESS_UNIT_BYTES`]).
    pub fn set_max_access_unit_bytes(&mut self, bytes: usize) {
        self.au.max_bytes = bytes;
    }

    /// The codec of the track.
    pub fn codec(&self) -> Codec {
        self.au.codec
    }

    /// The configuration last handed out in an [`Event::Config`].
    pub fn config(&self) -> Option<&VideoConfig> {
        self.config.as_ref()
    }

    /// What happened so far.
    pub fn counters(&self) -> Counters {
        Counters {
            packets_discarded: self.foreign + self.reorder.discarded,
            ..self.counters
        }
    }

    /// Takes one packet and appends what it completes to `out`. An error says why this packet
    /// (or one held back for reordering that it released) was refused; it is counted, its
    /// access unit is dropped and the depacketizer goes on.
    pub fn push(&mut self, packet: Packet, out: &mut Vec<Event>) -> Result<()> {
        self.counters.packets += 1;
        if *self.ssrc.get_or_insert(packet.ssrc) != packet.ssrc {
            self.foreign += 1;
            return Ok(());
        }
        let mut ready = std::mem::take(&mut self.ready);
        self.reorder.push(packet, &mut ready);
        let result = self.take_all(&mut ready, out);
        self.ready = ready;
        result
    }

    /// True while packets are held back waiting for a missing one. The window is counted in
    /// packets; an I/O loop that sees this for [`REORDER_WAIT`] gives up with [`Self::flush`].
    pub fn waiting(&self) -> bool {
        self.reorder.waiting()
    }

    /// Gives up waiting for missing packets (after [`REORDER_WAIT`], or at the end of the
    /// stream): the packets held back are taken, the gaps before them counted as lost.
    pub fn flush(&mut self, out: &mut Vec<Event>) -> Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        self.reorder.flush(&mut ready);
        let result = self.take_all(&mut ready, out);
        self.ready = ready;
        result
    }

    fn take_all(&mut self, ready: &mut Vec<(Packet, Gap)>, out: &mut Vec<Event>) -> Result<()> {
        let mut first_error = None;
        for (packet, gap) in ready.drain(..) {
            if let Err(e) = self.take(packet, gap, out) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One whole access unit in Annex B form (start codes between NAL units) with its 90 kHz
    /// RTP timestamp, put together by a stack that did the RTP part itself (WebRTC's, which
    /// also repairs losses with NACKs). `contiguous: false` says access units before it were
    /// lost: nothing is handed out until the next keyframe. Parameter sets, keyframes and the
    /// limits are handled as for packets.
    pub fn push_annexb(
        &mut self,
        timestamp: u32,
        annexb: &[u8],
        contiguous: bool,
        out: &mut Vec<Event>,
    ) -> Result<()> {
        self.counters.packets += 1;
        if !contiguous {
            self.need_keyframe = true;
        }
        self.au.timestamp = Some(timestamp);
        self.au.pts_ms = self.clock.ms(timestamp);
        let mut result = Ok(());
        for nal in media::avc::split_annexb(annexb) {
            if let Err(e) = self.au.nal(nal) {
                self.counters.packets_refused += 1;
                self.au.broken = true;
                self.au.oversized |= matches!(e, Error::TooLarge { .. });
                result = Err(e);
                break;
            }
        }
        self.finish(out);
        result
    }

    /// True when access units are being dropped until a keyframe comes (at the start, and
    /// after a loss): the moment to ask the sender for one.
    pub fn awaits_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// One packet in sequence order.
    fn take(&mut self, packet: Packet, gap: Gap, out: &mut Vec<Event>) -> Result<()> {
        match gap {
            Gap::None => {}
            Gap::Lost(n) => self.counters.packets_lost += u64::from(n),
            Gap::Restart => self.clock.rebase(),
        }
        let pts_ms = self.clock.ms(packet.timestamp);
        let gap = gap != Gap::None;
        // What was lost may be the end of the access unit in progress...
        self.au.broken |= gap;
        if self.au.timestamp.is_some_and(|t| t != packet.timestamp) {
            self.finish(out);
        }
        // ... or the start of this one.
        self.au.broken |= gap;
        if self.au.timestamp.is_none() {
            self.au.timestamp = Some(packet.timestamp);
            self.au.pts_ms = pts_ms;
        }
        let mut result = Ok(());
        if !self.au.broken {
            result = match self.au.codec {
                Codec::H265 => h265::depacketize(&packet.payload, &mut self.au),
                _ => h264::depacketize(&packet.payload, &mut self.au),
            };
            if let Err(e) = &result {
                self.counters.packets_refused += 1;
                self.au.broken = true;
                self.au.oversized |= matches!(e, Error::TooLarge { .. });
                // What was gathered is dropped anyway: let its memory go now.
                self.au.data.clear();
                self.au.fragment = None;
            }
        }
        if packet.marker {
            self.finish(out);
        }
        result
    }

    /// The access unit in progress ended: hand it out, or drop it.
    fn finish(&mut self, out: &mut Vec<Event>) {
        let au = &mut self.au;
        if au.timestamp.is_none() || (!au.broken && au.fragment.is_none() && !au.picture) {
            // Nothing, or parameter sets and SEI with no picture: nothing to decode.
            au.clear();
            return;
        }
        if au.broken || au.fragment.is_some() {
            debug!(
                pts_ms = au.pts_ms,
                "incomplete or malformed access unit dropped"
            );
            self.counters.frames_oversized += u64::from(au.oversized);
            return self.drop_au();
        }
        self.update_config(out);
        let Some(config) = &self.config else {
            return self.drop_au();
        };
        let keyframe = config.is_keyframe(&self.au.data);
        if self.need_keyframe && !keyframe {
            return self.drop_au();
        }
        self.need_keyframe = false;
        let pts_ms = self.au.pts_ms;
        let dts_ms = self.last_dts.map_or(pts_ms, |d| d.max(pts_ms));
        self.last_dts = Some(dts_ms);
        out.push(Event::Frame(Frame {
            dts_ms,
            pts_ms,
            keyframe,
            data: Bytes::copy_from_slice(&self.au.data),
        }));
        self.counters.frames += 1;
        self.au.clear();
    }

    /// Drops the access unit in progress; the next ones up to a keyframe may refer to it.
    fn drop_au(&mut self) {
        self.counters.frames_dropped += 1;
        self.need_keyframe = true;
        self.au.clear();
    }

    /// Hands out the parameter sets if they changed into a new, usable configuration.
    fn update_config(&mut self, out: &mut Vec<Event>) {
        let params = &mut self.au.params;
        if !std::mem::take(&mut params.changed) {
            return;
        }
        let config = match self.au.codec {
            Codec::H265 => h265::config(&params.sets),
            _ => h264::config(&params.sets),
        };
        match config {
            Some(Ok(config)) if self.config.as_ref() != Some(&config) => {
                self.config = Some(config.clone());
                out.push(Event::Config(config));
            }
            // Not a warning: a sender could repeat them with every frame.
            Some(Err(e)) => debug!(error = %e, "unusable in-band parameter sets ignored"),
            _ => {}
        }
    }

    /// Takes parameter sets from an SDP `sprop-*` value (comma-separated base64 NAL units).
    fn sprop(&mut self, value: &str) {
        use base64::Engine as _;
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let nal = match base64::engine::general_purpose::STANDARD.decode(item) {
                Ok(nal) => nal,
                Err(e) => {
                    warn!(sprop = item, error = %e, "SDP parameter set is not base64; ignored");
                    continue;
                }
            };
            match self.au.classify(&nal) {
                Ok(NalKind::ParameterSet(slot)) if nal[0] & 0x80 == 0 => {
                    if let Err(e) = self.au.params.set(slot, &nal) {
                        warn!(error = %e, "SDP parameter set ignored");
                    }
                }
                _ => warn!(
                    sprop = item,
                    "SDP parameter set is not a VPS, SPS or PPS; ignored"
                ),
            }
        }
    }
}

/// The `key=value` pairs of an `a=fmtp` value, without the leading payload type if present.
fn fmtp_parameters(fmtp: &str) -> impl Iterator<Item = (&str, &str)> {
    let fmtp = fmtp.trim();
    let fmtp = match fmtp.split_once(' ') {
        Some((pt, rest)) if pt.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => fmtp,
    };
    fmtp.split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

#[cfg(test)]
mod tests;
