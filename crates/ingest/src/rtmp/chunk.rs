//! The RTMP chunk stream reader (RTMP spec 5.3): bytes in, whole messages out.
//!
//! Written here rather than using rml_rtmp's `ChunkDeserializer` because that one keeps a single
//! payload buffer for all chunk streams: legal interleaving (an audio message between two chunks
//! of a video message, spec 5.3.1) mixes their bytes or panics on an unchecked subtraction, and a
//! header that shrinks a half-read message panics too (found by the `rtmp_session` fuzz target).
//! Here each chunk stream has its own partial message, and every size is checked against a limit
//! before anything is allocated.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

use crate::{Error, Result};

/// Largest message accepted (the length field is 24 bits, so 16 MiB - 1 at most anyway).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024 - 1;
/// Most bytes of partial messages held at once, over all chunk streams of a connection.
pub const MAX_PARTIAL_BYTES: usize = 32 * 1024 * 1024;
/// Most chunk streams one connection may use (ffmpeg and OBS use fewer than 10).
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Chunk size before the peer sets one.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// What is preallocated for a message's payload before its bytes arrive.
const MAX_PREALLOC: usize = 64 * 1024;

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

#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: Option<BytesMut>,
}

/// Reads chunks into messages.
#[derive(Debug)]
pub struct ChunkReader {
    buf: BytesMut,
    chunk_size: usize,
    streams: HashMap<u32, ChunkStream>,
    partial_bytes: usize,
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
            streams: HashMap::new(),
            partial_bytes: 0,
        }
    }

    /// The peer's new chunk size (from its SetChunkSize message).
    pub fn set_chunk_size(&mut self, size: usize) {
        self.chunk_size = size.max(1);
    }

    /// Bytes from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
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
        let h = h.to_vec();
        pos += header_len;
        if !self.streams.contains_key(&csid) {
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
        let prev_extended = self.streams.get(&csid).is_some_and(|s| s.extended);
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
        let s = self.streams.get(&csid);
        let continuing = s.is_some_and(|s| s.partial.is_some());
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
        let have = s.and_then(|s| s.partial.as_ref()).map_or(0, |p| p.len());
        let take = (length - have).min(self.chunk_size);
        if b.len() < pos + take {
            return Ok(Chunk::Incomplete);
        }
        if !continuing && self.partial_bytes + length > MAX_PARTIAL_BYTES {
            return Err(Error::TooLarge {
                what: "buffered partial messages",
                size: self.partial_bytes + length,
                limit: MAX_PARTIAL_BYTES,
            });
        }
        // Commit: consume the chunk and update the stream.
        self.buf.advance(pos);
        let data = self.buf.split_to(take);
        let s = self.streams.entry(csid).or_default();
        s.timestamp = timestamp;
        s.delta = delta;
        s.length = length;
        s.type_id = type_id;
        s.stream_id = stream_id;
        s.extended = extended;
        if !continuing {
            self.partial_bytes += length;
        }
        let partial = s
            .partial
            .get_or_insert_with(|| BytesMut::with_capacity(length.min(MAX_PREALLOC)));
        partial.extend_from_slice(&data);
        if partial.len() < length {
            return Ok(Chunk::Partial);
        }
        let payload = s.partial.take().map(BytesMut::freeze).unwrap_or_default();
        self.partial_bytes -= length;
        Ok(Chunk::Done(Message {
            timestamp,
            type_id,
            stream_id,
            payload,
        }))
    }
}

enum Chunk {
    Incomplete,
    Partial,
    Done(Message),
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Three messages claiming 16 MiB each, all begun: over the partial-bytes limit.
        let mut r = ChunkReader::new();
        for csid in [5u8, 6, 7] {
            r.push(&[csid, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
            r.push(&[0; 128]); // the first chunk of each
        }
        assert!(matches!(
            r.next_message(),
            Err(Error::TooLarge {
                what: "buffered partial messages",
                ..
            })
        ));
    }
}
