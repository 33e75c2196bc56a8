//! Just enough FLV for the load generator and the limit: the video tags of a file, in order, its
//! first keyframe with the decoder configuration before it, and writing a video-only file back
//! (to trim the encoder's warm-up off an input).

use bytes::Bytes;

/// One FLV video tag: its decode timestamp (ms) and its body (the RTMP video message payload).
pub struct VideoTag {
    pub ts_ms: u32,
    pub data: Bytes,
    /// AVC sequence header (AVCPacketType 0): sent once, not repeated when the input loops.
    pub is_sequence_header: bool,
    /// AVC end of sequence (AVCPacketType 2, which ffmpeg's FLV muxer writes last, flagged as a
    /// keyframe): not a frame, and never sent (a live camera does not end its sequence).
    pub is_end_of_sequence: bool,
}

/// Bytes of the AVC video tag header before the payload: frame type/codec, AVCPacketType, and
/// the 24-bit composition time.
const AVC_TAG_HEADER: usize = 5;

impl VideoTag {
    /// A coded frame (AVCPacketType 1), not the sequence header or end of sequence.
    pub fn is_frame(&self) -> bool {
        !self.is_sequence_header && !self.is_end_of_sequence
    }

    /// A coded frame that is a keyframe (FLV frame type 1).
    pub fn is_keyframe(&self) -> bool {
        self.is_frame() && self.data[0] >> 4 == 1
    }

    /// The payload after the AVC tag header: the configuration record of a sequence header, or
    /// the length-prefixed NAL units of a frame.
    pub fn payload(&self) -> Bytes {
        self.data.slice(AVC_TAG_HEADER.min(self.data.len())..)
    }

    /// The composition time offset (pts - dts) in ms, sign-extended from 24 bits.
    pub fn composition_ms(&self) -> i32 {
        if self.data.len() < AVC_TAG_HEADER {
            return 0;
        }
        let cts = i32::from_be_bytes([0, self.data[2], self.data[3], self.data[4]]);
        (cts << 8) >> 8
    }
}

/// The first sequence header's configuration record and the first keyframe after it.
pub fn first_keyframe(tags: &[VideoTag]) -> Result<(Bytes, media::Frame), String> {
    keyframe(tags, 0)
}

/// The first sequence header's configuration record and the `nth` (from 0) keyframe after it.
pub fn keyframe(tags: &[VideoTag], nth: usize) -> Result<(Bytes, media::Frame), String> {
    let header = tags
        .iter()
        .position(|t| t.is_sequence_header)
        .ok_or("the input has no AVC sequence header")?;
    let key = tags[header..]
        .iter()
        .filter(|t| t.is_keyframe())
        .nth(nth)
        .ok_or_else(|| format!("the input has no keyframe {nth} after its sequence header"))?;
    let dts = i64::from(key.ts_ms);
    Ok((
        tags[header].payload(),
        media::Frame {
            dts_ms: dts,
            pts_ms: dts + i64::from(key.composition_ms()),
            keyframe: true,
            data: key.payload(),
        },
    ))
}

/// Reads every video tag of an FLV file. Audio and script tags are skipped.
pub fn video_tags(file: &[u8]) -> Result<Vec<VideoTag>, String> {
    if file.len() < 13 || &file[..3] != b"FLV" {
        return Err("not an FLV file".into());
    }
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    let mut pos = header_len + 4; // header, then PreviousTagSize0
    let mut tags = Vec::new();
    while pos + 11 <= file.len() {
        let tag_type = file[pos] & 0x1f;
        let size = u32::from_be_bytes([0, file[pos + 1], file[pos + 2], file[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([file[pos + 7], file[pos + 4], file[pos + 5], file[pos + 6]]);
        let start = pos + 11;
        let end = start + size;
        if end > file.len() {
            break; // truncated last tag
        }
        if tag_type == 9 && size >= 2 {
            let body = &file[start..end];
            let avc = body[0] & 0x0f == 7;
            tags.push(VideoTag {
                ts_ms: ts,
                is_sequence_header: avc && body[1] == 0,
                is_end_of_sequence: avc && body[1] == 2,
                data: Bytes::copy_from_slice(body),
            });
        }
        pos = end + 4;
    }
    if tags.is_empty() {
        return Err("FLV file has no video tags".into());
    }
    Ok(tags)
}

/// Tags from the `nth` (from 0) keyframe on, with their timestamps moved back so that keyframe is
/// at 0; the sequence header and end of sequence are kept. A clean cut at an IDR: nothing after
/// it refers to a frame before it.
pub fn from_keyframe(tags: &[VideoTag], nth: usize) -> Result<Vec<VideoTag>, String> {
    let cut = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_keyframe())
        .nth(nth)
        .map(|(i, _)| i)
        .ok_or_else(|| format!("the input has no keyframe {nth}"))?;
    let base = tags[cut].ts_ms;
    Ok(tags
        .iter()
        .enumerate()
        .filter(|(i, t)| *i >= cut || !t.is_frame())
        .map(|(_, t)| VideoTag {
            ts_ms: if t.is_sequence_header {
                0
            } else {
                t.ts_ms.saturating_sub(base)
            },
            data: t.data.clone(),
            is_sequence_header: t.is_sequence_header,
            is_end_of_sequence: t.is_end_of_sequence,
        })
        .collect())
}

/// An FLV file of `tags` alone (video only, no metadata: ffmpeg probes the stream).
pub fn write(tags: &[VideoTag]) -> Vec<u8> {
    const HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 9, 0, 0, 0, 0];
    let mut out = HEADER.to_vec();
    for t in tags {
        let size = (t.data.len() as u32).to_be_bytes();
        let ts = t.ts_ms.to_be_bytes();
        out.push(9);
        out.extend_from_slice(&size[1..]);
        out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0], 0, 0, 0]);
        out.extend_from_slice(&t.data);
        out.extend_from_slice(&(11 + t.data.len() as u32).to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(ts_ms: u32, first: u8, kind: u8, body: &[u8]) -> VideoTag {
        let mut data = vec![first, kind, 0, 0, 0];
        data.extend_from_slice(body);
        VideoTag {
            ts_ms,
            is_sequence_header: kind == 0,
            is_end_of_sequence: kind == 2,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn a_trimmed_file_starts_at_the_keyframe_and_reads_back() {
        let tags = vec![
            tag(0, 0x17, 0, b"config"),
            tag(0, 0x17, 1, b"key0"),
            tag(33, 0x27, 1, b"p"),
            tag(0x0100_0000 + 66, 0x17, 1, b"key1"),
            tag(0x0100_0000 + 99, 0x27, 1, b"p1"),
            tag(0x0100_0000 + 99, 0x17, 2, b""),
        ];
        let cut = from_keyframe(&tags, 1).unwrap();
        let back = video_tags(&write(&cut)).unwrap();
        let seen: Vec<_> = back.iter().map(|t| (t.ts_ms, t.data.clone())).collect();
        assert_eq!(
            seen,
            vec![
                (0, tags[0].data.clone()),
                (0, tags[3].data.clone()),
                (33, tags[4].data.clone()),
                (33, tags[5].data.clone()),
            ]
        );
        assert!(back[0].is_sequence_header && back[1].is_keyframe() && back[3].is_end_of_sequence);
        assert!(from_keyframe(&tags, 2).is_err());
    }
}
