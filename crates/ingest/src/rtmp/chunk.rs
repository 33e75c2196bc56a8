//! The RTMP chunk stream reader (RTMP spec 5.3): bytes in, whole messages out.
//!
//! Written here rather than using rml_rtmp's `ChunkDeserializer` because that one keeps a single
//! payload buffer for all chunk streams: legal interleaving (an audio message between two chunks
//! of a video message, spec 5.3.1) mixes their bytes or panics on an unchecked subtraction, and a
//! header that shrinks a half-read message panics too (found by the `rtmp_session` fuzz target).
//! Here each chunk stream has its own partial message, and every size is checked against a limit
//! before anything is allocated.
//!
//! Buffers, so that a steady stream allocates nothing per message: socket reads go into one
//! reusable read buffer ([`ChunkReader::read_buffer`]); each chunk's payload is copied once, into
//! its chunk stream's slab, where the message becomes contiguous (chunk headers sit between the
//! pieces); a whole message is split off the slab as [`Bytes`], so messages share the slab's
//! allocation and whatever is cut from them later (a frame) is a slice of it. A slab is written
//! over again once every message cut from it has been dropped, so a new one is allocated only
//! while the consumer still holds messages of the last two (the hub holds a GOP); a slab holds
//! some 16 average messages, so even then allocations are rare, and a keyframe after a GOP of 8
//! messages or more starts a slab of its own, so the GOP before it goes whole when the hub lets
//! it go. A slice kept for long keeps
//! its whole slab: what a consumer keeps for the life of a stream (a sequence header) should be
//! copied out, as [`super::session`] does.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use media::budget::MemoryBudget;

use crate::{flv, Error, Result};

/// Largest message accepted (the length field is 24 bits, so 16 MiB - 1 at most anyway).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024 - 1;
/// Most bytes of partial messages held at once, over all chunk streams of a publishing
/// connection (and charged to the ingest budget).
pub const MAX_PARTIAL_BYTES: usize = 32 * 1024 * 1024;
/// Most bytes of partial messages a connection may hold before it publishes: its commands are a
/// few hundred bytes; 20 connections that only handshook and began two 16 MiB messages each
/// held 740 MB.
pub const MAX_PARTIAL_BYTES_BEFORE_PUBLISH: usize = 64 * 1024;
/// Most chunk streams one connection may use (ffmpeg and OBS use fewer than 10).
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Chunk size before the peer sets one.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// Size of the read buffer that [`ChunkReader::read_buffer`] keeps for socket reads.
pub const READ_BYTES: usize = 64 * 1024;
/// Below this much room the read buffer is compacted (or grown) before a read.
const MIN_READ_ROOM: usize = 16 * 1024;
/// The first slab of a chunk stream. It is also all that a header can make us allocate before
/// the stream has delivered anything: a 16 MiB length costs nothing until its bytes arrive.
const MIN_SLAB_BYTES: usize = 16 * 1024;
/// Largest slab allocated ahead of the bytes that fill it, and kept for the next messages (one
/// grown for a longer message is let go with it): a chunk stream keeps two at most.
const MAX_SLAB_BYTES: usize = 4 * 1024 * 1024;
/// A new slab holds about this many messages of the chunk stream's average length, so
/// allocations are amortized over many frames. Not more: what a stream keeps beyond its GOP
/// grows with the slab (the slab being filled; before keyframes started slabs of their own, also
/// the frames before the keyframe in the GOP's first slab). Measured with 8 streams: 32 messages
/// kept 2.5-4 MiB more PSS than 16 (0.3-0.4 MiB a stream at 720p and 1080p); 8 hardly less than
/// 16.
const MESSAGES_PER_SLAB: usize = 16;
/// ... and at least this many of the largest recent message (a keyframe, which starts a slab of
/// its own when it does not fit in the room left): where keyframes are far larger than the
/// average, slabs of 16 average messages would hold little besides one keyframe and allocations
/// would come every few frames.
const PEAKS_PER_SLAB: usize = 2;
/// A keyframe starts a slab of its own only after a GOP of at least this many messages: with
/// shorter ones (all-intra streams at the extreme) the GOP before it pins little, and a slab per
/// keyframe would forgo the amortization.
const MIN_GOP_FOR_OWN_SLAB: usize = MESSAGES_PER_SLAB / 2;
/// Messages the average length is taken over (moving).
const AVERAGE_OVER: usize = 32;
/// The largest recent message length loses 1/PEAK_DECAY a message: a keyframe still counts a GOP
/// later.
const PEAK_DECAY: usize = 256;

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Timestamp in milliseconds (32 bits, wrapping).
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The payload.
    pub payload: Bytes,
}

/// A buffer that messages are written into and split off, with the size it was allocated with.
#[derive(Debug, Default)]
struct Slab {
    buf: BytesMut,
    size: usize,
}

impl Slab {
    fn with_capacity(size: usize) -> Slab {
        Slab {
            buf: BytesMut::with_capacity(size),
            size,
        }
    }

    /// Room left after the message being written.
    fn room(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }

    /// Starts over at the front of the allocation, keeping the message being written, if every
    /// message split off the slab has been dropped and `additional` more bytes then fit.
    fn reclaim(&mut self, additional: usize) -> bool {
        let len = self.buf.len();
        // Asking for the whole allocation makes `try_reclaim` move to the front rather than
        // grant only the room left at the end.
        len + additional <= self.size && self.buf.try_reclaim(self.size - len)
    }
}

/// Where one chunk stream's messages are made contiguous: the message being read is at the end
/// of `slab` and is split off it when whole.
#[derive(Debug, Default)]
struct Assembler {
    slab: Slab,
    /// The slab before this one, reused once the messages cut from it are all dropped.
    spare: Option<Slab>,
    /// Average message length (moving, over about `AVERAGE_OVER` messages) and the largest
    /// recent one (decaying); they size new slabs.
    average: usize,
    peak: usize,
    /// Messages since the last one that began with `own_slab`.
    since_own_slab: usize,
}

impl Assembler {
    /// Bytes of the message being read.
    fn len(&self) -> usize {
        self.slab.buf.len()
    }

    fn slab_size(&self) -> usize {
        (self.average * MESSAGES_PER_SLAB)
            .max(self.peak * PEAKS_PER_SLAB)
            .clamp(MIN_SLAB_BYTES, MAX_SLAB_BYTES)
    }

    /// Makes room for a message of `length` bytes, or for as much of it as a slab holds; with
    /// `own_slab`, on a slab that holds no earlier message (see [`starts_gop`]), unless fewer
    /// than [`MIN_GOP_FOR_OWN_SLAB`] messages came since the last such one.
    fn begin(&mut self, length: usize, own_slab: bool) {
        let want = length.min(self.slab_size());
        if own_slab {
            let long_gop = self.since_own_slab >= MIN_GOP_FOR_OWN_SLAB;
            self.since_own_slab = 0;
            // Nothing split off and nothing written: the slab is at its front already.
            let used = self.slab.room() < self.slab.size;
            if long_gop && used && !self.slab.reclaim(want) {
                self.next_slab(want);
                return;
            }
        } else {
            self.since_own_slab += 1;
        }
        self.reserve(want);
    }

    /// Appends one chunk's payload to the message of `length` bytes being read.
    fn append(&mut self, data: &[u8], length: usize) {
        if self.slab.room() < data.len() {
            // Longer than a slab: grow by at least the length so far (copying stays linear in
            // the message), but never ahead of its bytes by more than a slab.
            let have = self.len();
            let grow = (length - have).min(have.max(self.slab_size()));
            self.reserve(grow.max(data.len()));
        }
        self.slab.buf.extend_from_slice(data);
    }

    /// The whole message.
    fn finish(&mut self) -> Bytes {
        if self.slab.buf.is_empty() {
            return Bytes::new();
        }
        let message = self.slab.buf.split().freeze();
        if self.slab.size > MAX_SLAB_BYTES {
            // Grown for one huge message: goes with it instead of staying with the stream.
            self.slab = Slab::default();
        }
        self.average = (self.average * (AVERAGE_OVER - 1) + message.len()) / AVERAGE_OVER;
        self.peak = message.len().max(self.peak - self.peak / PEAK_DECAY);
        message
    }

    /// Makes room for `additional` bytes after those of the message being read.
    fn reserve(&mut self, additional: usize) {
        if self.slab.room() >= additional || self.slab.reclaim(additional) {
            return;
        }
        self.next_slab(additional);
    }

    /// Moves the message being read, and `additional` more bytes, to the spare slab if it is
    /// free, else to a new one; the slab left becomes the spare.
    fn next_slab(&mut self, additional: usize) {
        if self.len() == 0 {
            if let Some(spare) = self.spare.as_mut() {
                if spare.reclaim(additional) {
                    std::mem::swap(&mut self.slab, spare);
                    return;
                }
            }
        }
        let mut slab = Slab::with_capacity(self.slab_size().max(self.len() + additional));
        slab.buf.extend_from_slice(&self.slab.buf);
        let mut old = std::mem::replace(&mut self.slab, slab);
        // The slab just filled becomes the spare; the spare before is let go (what still holds
        // its messages keeps it alive), so one long-lived slice cannot pin the spare for good.
        if old.size <= MAX_SLAB_BYTES {
            old.buf.clear();
            self.spare = Some(old);
        }
    }
}

#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    /// A message has begun and not ended; its bytes so far are in `assembler`.
    in_message: bool,
    assembler: Assembler,
}

/// Reads chunks into messages.
#[derive(Debug)]
pub struct ChunkReader {
    /// Bytes from the socket not read as chunks yet.
    buf: BytesMut,
    chunk_size: usize,
    /// A handful at most: a list beats hashing.
    streams: Vec<ChunkStream>,
    partial_bytes: usize,
    /// [`MAX_PARTIAL_BYTES_BEFORE_PUBLISH`], then [`MAX_PARTIAL_BYTES`] once publishing.
    partial_limit: usize,
    /// Where partial messages are charged once publishing.
    budget: Option<Arc<MemoryBudget>>,
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.partial_bytes as u64);
        }
    }
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new()
    }
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl ChunkReader {
    /// A reader with the default chunk size.
    pub fn new() -> ChunkReader {
        ChunkReader {
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            partial_bytes: 0,
            partial_limit: MAX_PARTIAL_BYTES_BEFORE_PUBLISH,
            budget: None,
        }
    }

    /// The connection publishes: it may hold up to [`MAX_PARTIAL_BYTES`] of partial messages,
    /// each charged to `budget` from its first chunk to its last.
    pub fn publishing(&mut self, budget: Arc<MemoryBudget>) {
        if self.budget.is_none() {
            self.partial_limit = MAX_PARTIAL_BYTES;
            // What is partial now was not charged; it is from now on.
            if !budget.charge(self.partial_bytes as u64) {
                self.partial_limit = self.partial_bytes;
            }
            self.budget = Some(budget);
        }
    }

    /// The peer's new chunk size (from its SetChunkSize message).
    pub fn set_chunk_size(&mut self, size: usize) {
        self.chunk_size = size.max(1);
    }

    /// Bytes from the socket, copied into the read buffer.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The read buffer, with room for a socket read: append to it (tokio's `read_buf` fills the
    /// spare capacity in place) instead of [`ChunkReader::push`]ing a copy. It stays at
    /// [`READ_BYTES`] unless a larger chunk is being received.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            // Moves the unread tail (part of a chunk) to the front, or grows for a huge chunk.
            let room = READ_BYTES.saturating_sub(self.buf.len()).max(MIN_READ_ROOM);
            self.buf.reserve(room);
        }
        &mut self.buf
    }

    /// Bytes received and not yet read as chunks.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The read buffer as it is, for the handshake that comes before any chunk.
    pub(crate) fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next whole message, if its last chunk has arrived. Call until `None`.
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        loop {
            match self.next_chunk()? {
                Chunk::Incomplete => return Ok(None),
                Chunk::Partial => continue,
                Chunk::Done(m) => return Ok(Some(m)),
            }
        }
    }

    fn next_chunk(&mut self) -> Result<Chunk> {
        let b = &self.buf[..];
        let Some(&b0) = b.first() else {
            return Ok(Chunk::Incomplete);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(Chunk::Incomplete),
            },
            1 => match b.get(1..3) {
                Some(x) => (64 + u32::from(x[0]) + 256 * u32::from(x[1]), 3),
                None => return Ok(Chunk::Incomplete),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = b.get(pos..pos + header_len) else {
            return Ok(Chunk::Incomplete);
        };
        pos += header_len;
        let index = self.streams.iter().position(|s| s.csid == csid);
        let s = index.map(|i| &self.streams[i]);
        if s.is_none() {
            if fmt != 0 {
                return Err(Error::Chunk(format!(
                    "chunk stream {csid} starts with a type {fmt} header"
                )));
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(Error::TooLarge {
                    what: "chunk stream count",
                    size: self.streams.len() + 1,
                    limit: MAX_CHUNK_STREAMS,
                });
            }
        }
        let prev_extended = s.is_some_and(|s| s.extended);
        // The 24-bit time field (absent for type 3); 0xFFFFFF means a 32-bit one follows.
        let time_field = if fmt < 3 { Some(be24(&h[0..3])) } else { None };
        let extended = match time_field {
            Some(t) => t == 0xFF_FFFF,
            None => prev_extended,
        };
        let ext_value = if extended {
            let Some(e) = b.get(pos..pos + 4) else {
                return Ok(Chunk::Incomplete);
            };
            pos += 4;
            Some(be32(e))
        } else {
            None
        };
        // Work out the message this chunk belongs to before touching any state, so an error or
        // an incomplete chunk leaves the reader as it was.
        let continuing = s.is_some_and(|s| s.in_message);
        if continuing && fmt != 3 {
            return Err(Error::Chunk(format!(
                "chunk stream {csid}: a new message header before the last message ended"
            )));
        }
        let (timestamp, delta, length, type_id, stream_id) = match fmt {
            0 => {
                let ts = ext_value.unwrap_or(be24(&h[0..3]));
                let len = be24(&h[3..6]) as usize;
                let sid = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
                (ts, 0, len, h[6], sid)
            }
            1 | 2 => {
                let s = s.ok_or_else(|| {
                    Error::Chunk(format!("chunk stream {csid}: no earlier header"))
                })?;
                let delta = ext_value.unwrap_or(be24(&h[0..3]));
                let (len, ty) = if fmt == 1 {
                    (be24(&h[3..6]) as usize, h[6])
                } else {
                    (s.length, s.type_id)
                };
                (s.timestamp.wrapping_add(delta), delta, len, ty, s.stream_id)
            }
            _ => {
                let s = s.ok_or_else(|| {
                    Error::Chunk(format!("chunk stream {csid}: no earlier header"))
                })?;
                // A type 3 chunk starting a new message repeats the last delta.
                let ts = if continuing {
                    s.timestamp
                } else {
                    s.timestamp.wrapping_add(s.delta)
                };
                (ts, s.delta, s.length, s.type_id, s.stream_id)
            }
        };
        if length > MAX_MESSAGE_BYTES {
            return Err(Error::TooLarge {
                what: "RTMP message",
                size: length,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let have = match s {
            Some(s) if continuing => s.assembler.len(),
            _ => 0,
        };
        let take = (length - have).min(self.chunk_size);
        if b.len() < pos + take {
            return Ok(Chunk::Incomplete);
        }
        if !continuing && self.partial_bytes + length > self.partial_limit {
            return Err(Error::TooLarge {
                what: if self.budget.is_some() {
                    "buffered partial messages"
                } else {
                    "buffered partial messages before publishing"
                },
                size: self.partial_bytes + length,
                limit: self.partial_limit,
            });
        }
        if !continuing {
            if let Some(b) = &self.budget {
                if !b.charge(length as u64) {
                    return Err(Error::TooLarge {
                        what: "ingest memory budget (ingest_memory_bytes)",
                        size: b.used() as usize + length,
                        limit: b.limit() as usize,
                    });
                }
            }
        }
        // Commit: update the stream and move the chunk's payload into its message.
        let s = match index {
            Some(i) => &mut self.streams[i],
            None => {
                self.streams.push(ChunkStream {
                    csid,
                    timestamp,
                    delta,
                    length,
                    type_id,
                    stream_id,
                    extended,
                    in_message: false,
                    assembler: Assembler::default(),
                });
                let last = self.streams.len() - 1;
                &mut self.streams[last]
            }
        };
        s.timestamp = timestamp;
        s.delta = delta;
        s.length = length;
        s.type_id = type_id;
        s.stream_id = stream_id;
        s.extended = extended;
        if !continuing {
            self.partial_bytes += length;
            s.in_message = true;
            let first = self.buf.get(pos).copied().filter(|_| take > 0);
            s.assembler.begin(length, starts_gop(type_id, first));
        }
        s.assembler.append(&self.buf[pos..pos + take], length);
        self.buf.advance(pos + take);
        if s.assembler.len() < length {
            return Ok(Chunk::Partial);
        }
        s.in_message = false;
        self.partial_bytes -= length;
        if let Some(b) = &self.budget {
            b.release(length as u64);
        }
        Ok(Chunk::Done(Message {
            timestamp,
            type_id,
            stream_id,
            payload: s.assembler.finish(),
        }))
    }
}

/// True for a video message whose first byte says keyframe (FLV's frame type), which starts a
/// GOP.
///
/// After a GOP of at least `MIN_GOP_FOR_OWN_SLAB` messages, such a message begins a slab of its
/// own: the hub drops the GOP before it as soon as it arrives, and the frames that shared its
/// slab would otherwise stay allocated for the whole of the new GOP, pinned by the keyframe:
/// half a slab a stream on average, 80-170 KiB at 720p and 1080p. Measured with 8 streams, ingest only, alternated: 28.5-28.9 against 29.2-29.4 MiB
/// PSS at 720p, 30.9-31.2 against 31.5-32.0 MiB at 1080p. Only an allocation choice: a wrong
/// guess costs one slab change.
fn starts_gop(type_id: u8, first_byte: Option<u8>) -> bool {
    const VIDEO: u8 = 9;
    type_id == VIDEO && first_byte.is_some_and(|b| flv::frame_type(b) == flv::FRAME_TYPE_KEY)
}

enum Chunk {
    Incomplete,
    Partial,
    Done(Message),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of a connection that publishes (the large-message limits), on no budget.
    fn publishing_reader() -> ChunkReader {
        let mut r = ChunkReader::new();
        r.publishing(MemoryBudget::unlimited());
        r
    }

    fn type0(csid: u8, ts: u32, ty: u8, sid: u32, payload: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = vec![csid];
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(ty);
        out.extend_from_slice(&sid.to_le_bytes());
        for (i, part) in payload.chunks(chunk).enumerate() {
            if i > 0 {
                out.push(0xc0 | csid);
            }
            out.extend_from_slice(part);
        }
        out
    }

    fn all(r: &mut ChunkReader) -> Vec<Message> {
        let mut v = Vec::new();
        while let Some(m) = r.next_message().unwrap() {
            v.push(m);
        }
        v
    }

    #[test]
    fn interleaved_chunk_streams_keep_their_bytes_apart() {
        // Video (csid 6, 300 bytes in 128-byte chunks) with a whole audio message (csid 4)
        // between its first and second chunks: legal per spec 5.3.1.
        let video: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let whole = type0(6, 40, 9, 1, &video, 128);
        let first = &whole[..12 + 128];
        let rest = &whole[12 + 128..];
        let audio = type0(4, 40, 8, 1, &[0xaf; 10], 128);
        let mut r = ChunkReader::new();
        for part in [first, &audio[..], rest] {
            r.push(part);
        }
        let got = all(&mut r);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].type_id, &got[0].payload[..]), (8, &[0xaf; 10][..]));
        assert_eq!((got[1].type_id, &got[1].payload[..]), (9, &video[..]));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_messages() {
        let mut stream = type0(6, 0, 9, 1, &[1; 500], 128);
        // A type 1 header (new length and type, delta 40), then a type 3 starting a new message.
        stream.extend_from_slice(&[0x46, 0, 0, 40, 0, 0, 3, 9, 7, 7, 7]);
        stream.extend_from_slice(&[0xc6, 8, 8, 8]);
        let mut r = ChunkReader::new();
        let mut got = Vec::new();
        for b in &stream {
            r.push(&[*b]);
            got.extend(all(&mut r));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].payload.len(), 500);
        assert_eq!(
            (got[1].timestamp, &got[1].payload[..]),
            (40, &[7, 7, 7][..])
        );
        assert_eq!(
            (got[2].timestamp, &got[2].payload[..]),
            (80, &[8, 8, 8][..]),
            "type 3 repeats the delta"
        );
    }

    #[test]
    fn extended_timestamps() {
        let mut m = vec![0x06, 0xff, 0xff, 0xff, 0, 0, 2, 9, 1, 0, 0, 0];
        m.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        m.extend_from_slice(&[5, 6]);
        let mut r = ChunkReader::new();
        r.push(&m);
        assert_eq!(all(&mut r)[0].timestamp, 0x0100_0000);
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        // A type 1 header that shrinks a half-read message.
        let mut r = ChunkReader::new();
        r.push(&type0(6, 0, 9, 1, &[0; 300], 128)[..140]);
        assert!(r.next_message().unwrap().is_none());
        r.push(&[0x46, 0, 0, 0, 0, 0, 10, 9]);
        assert!(r.next_message().is_err());
        // A type 2 header on a stream never seen.
        let mut r = ChunkReader::new();
        r.push(&[0x86, 0, 0, 1]);
        assert!(r.next_message().is_err());
        // More chunk streams than the limit.
        let mut r = ChunkReader::new();
        let mut results = Vec::new();
        for n in 0..70u8 {
            let mut m = vec![0x00, n]; // two-byte basic header: csid 64 + n
            m.extend_from_slice(&[0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0xaa]);
            r.push(&m);
            results.push(r.next_message().map(|m| m.is_some()));
        }
        assert!(results[..MAX_CHUNK_STREAMS]
            .iter()
            .all(|r| matches!(r, Ok(true))));
        assert!(matches!(
            results[MAX_CHUNK_STREAMS],
            Err(Error::TooLarge { .. })
        ));
        // Before publishing, one message claiming 16 MiB is over the small pre-publish limit.
        let begin_16mib = |r: &mut ChunkReader, csid: u8| {
            r.push(&[csid, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
            r.push(&[0; 128]); // its first chunk
        };
        let mut r = ChunkReader::new();
        begin_16mib(&mut r, 5);
        assert!(matches!(
            r.next_message(),
            Err(Error::TooLarge {
                what: "buffered partial messages before publishing",
                limit: MAX_PARTIAL_BYTES_BEFORE_PUBLISH,
                ..
            })
        ));
        // Publishing, three begun: over the partial-bytes limit of a connection.
        let mut r = ChunkReader::new();
        r.publishing(MemoryBudget::unlimited());
        for csid in [5u8, 6, 7] {
            begin_16mib(&mut r, csid);
        }
        let err = (0..3).find_map(|_| r.next_message().err());
        assert!(
            matches!(
                err,
                Some(Error::TooLarge {
                    what: "buffered partial messages",
                    limit: MAX_PARTIAL_BYTES,
                    ..
                })
            ),
            "{err:?}"
        );
    }

    /// A publishing connection's partial messages are charged to the ingest budget while they
    /// are partial, given back when whole or when the connection goes, and one that does not
    /// fit is an error.
    #[test]
    fn partial_messages_are_charged_to_the_ingest_budget() {
        let budget = MemoryBudget::new(1000);
        let mut r = ChunkReader::new();
        r.publishing(budget.clone());
        let m = type0(6, 0, 9, 1, &[1; 600], 128);
        r.push(&m[..300]);
        assert!(r.next_message().unwrap().is_none());
        assert_eq!(budget.used(), 600);
        r.push(&m[300..]);
        assert_eq!(r.next_message().unwrap().unwrap().payload.len(), 600);
        assert_eq!(budget.used(), 0);
        // Another connection holds 700; this one's 600 does not fit.
        assert!(budget.try_charge(700));
        r.push(&m[..300]);
        assert!(matches!(
            r.next_message(),
            Err(Error::TooLarge {
                what: "ingest memory budget (ingest_memory_bytes)",
                ..
            })
        ));
        assert_eq!(budget.used(), 700);
        budget.release(700);
        let mut r = ChunkReader::new();
        r.publishing(budget.clone());
        r.push(&m[..300]);
        assert!(r.next_message().unwrap().is_none());
        assert_eq!(budget.used(), 600);
        drop(r);
        assert_eq!(
            budget.used(),
            0,
            "a connection that goes gives its partials back"
        );
    }

    #[test]
    fn messages_share_a_slab_that_is_reused_once_they_are_dropped() {
        let mut r = ChunkReader::new();
        let next = |r: &mut ChunkReader, len: usize| {
            r.push(&type0(6, 0, 9, 1, &vec![len as u8; len], 128));
            let m = r.next_message().unwrap().expect("a whole message");
            assert_eq!(m.payload.len(), len);
            assert!(m.payload.iter().all(|&b| b == len as u8));
            m.payload
        };
        // Three messages, each over several chunks, one after the other in one allocation.
        let a = next(&mut r, 1000);
        let b = next(&mut r, 2000);
        let c = next(&mut r, 300);
        assert_eq!(b.as_ptr(), a[1000..].as_ptr());
        assert_eq!(c.as_ptr(), b[2000..].as_ptr());
        let start = a.as_ptr();
        drop((a, b, c));
        // Filling the slab then starts over at its front, as nothing holds the old messages.
        let wrapped = (0..=MIN_SLAB_BYTES / 3000).any(|_| next(&mut r, 3000).as_ptr() == start);
        assert!(wrapped, "the slab was not reused");
        // While a message is held, its slab is not written over.
        let held = next(&mut r, 5000);
        let copy = held.to_vec();
        for _ in 0..MIN_SLAB_BYTES / 1000 {
            next(&mut r, 1000);
        }
        assert_eq!(&held[..], &copy[..]);
    }

    #[test]
    fn a_keyframe_starts_a_slab_so_the_gop_before_it_is_not_pinned() {
        const INTER: u8 = 0x27; // frame type 2, AVC
        const KEY: u8 = 0x17; // frame type 1, AVC
        const EX_KEY: u8 = 0x91; // enhanced RTMP: IsExHeader, frame type 1, coded frames
        let next = |r: &mut ChunkReader, type_id: u8, first: u8, len: usize| {
            r.push(&type0(6, 0, type_id, 1, &vec![first; len], 128));
            let m = r.next_message().unwrap().expect("a whole message");
            assert_eq!(m.payload.len(), len);
            m.payload
        };
        let gop = |r: &mut ChunkReader| -> Vec<Bytes> {
            (0..MIN_GOP_FOR_OWN_SLAB)
                .map(|_| next(r, 9, INTER, 100))
                .collect()
        };
        let mut r = ChunkReader::new();
        let old = gop(&mut r);
        assert_eq!(
            old[1].as_ptr(),
            old[0][100..].as_ptr(),
            "inter frames share a slab"
        );
        let end = old.last().unwrap()[100..].as_ptr();
        let k = next(&mut r, 9, KEY, 1000);
        assert_ne!(k.as_ptr(), end, "a keyframe followed the GOP before it");
        let c = next(&mut r, 9, INTER, 1000);
        assert_eq!(
            c.as_ptr(),
            k[1000..].as_ptr(),
            "the frames after a keyframe follow it"
        );
        // The old GOP dropped while the new one is held: its slab is the next one filled.
        let start = old[0].as_ptr();
        drop(old);
        let reused =
            (0..=MIN_SLAB_BYTES / 3000 + 1).any(|_| next(&mut r, 9, INTER, 3000).as_ptr() == start);
        assert!(reused, "the old GOP's slab was not reused");
        drop((k, c));

        // After a short GOP (all-intra, at the extreme) a keyframe follows like any frame.
        let mut r = ChunkReader::new();
        let k1 = next(&mut r, 9, KEY, 1000);
        let k2 = next(&mut r, 9, KEY, 1000);
        assert_eq!(
            k2.as_ptr(),
            k1[1000..].as_ptr(),
            "keyframes of an all-intra stream"
        );
        let frames = gop(&mut r);
        let end = frames.last().unwrap()[100..].as_ptr();
        // Audio whose first byte reads like a keyframe's stays on the slab...
        let audio = next(&mut r, 8, KEY, 500);
        assert_eq!(audio.as_ptr(), end);
        // ... and a keyframe in an enhanced-RTMP tag moves on.
        let e = next(&mut r, 9, EX_KEY, 1000);
        assert_ne!(
            e.as_ptr(),
            audio[500..].as_ptr(),
            "an enhanced-RTMP keyframe"
        );
    }

    #[test]
    fn the_read_buffer_keeps_its_size() {
        let mut r = publishing_reader();
        r.set_chunk_size(4096);
        let stream = type0(6, 0, 9, 1, &[3; 100_000], 4096);
        let mut got = 0;
        // Ten messages in TCP-segment-sized reads, straight into the read buffer.
        for piece in stream.chunks(1448).cycle().take(10 * stream.len() / 1448) {
            let buf = r.read_buffer();
            assert!(buf.capacity() - buf.len() >= MIN_READ_ROOM);
            buf.extend_from_slice(piece);
            while let Some(m) = r.next_message().unwrap() {
                assert_eq!(m.payload.len(), 100_000);
                got += 1;
            }
            assert!(r.buf.capacity() <= READ_BYTES, "the read buffer grew");
        }
        assert!(got >= 9);
    }

    #[test]
    fn announced_lengths_allocate_only_as_bytes_arrive() {
        // A 16 MiB message announced, one chunk sent: only the first slab is allocated.
        let mut r = publishing_reader();
        r.push(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
        r.push(&[7; 128]);
        assert!(r.next_message().unwrap().is_none());
        assert_eq!(r.streams[0].assembler.slab.size, MIN_SLAB_BYTES);
        // A message much longer than a slab still arrives whole, its slab grown as it came.
        let long: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = publishing_reader();
        r.push(&type0(6, 0, 9, 1, &long, 128));
        assert_eq!(&r.next_message().unwrap().unwrap().payload[..], &long[..]);
        assert!(r.streams[0].assembler.slab.size <= 2 * long.len());
    }
}
