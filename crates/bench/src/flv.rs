//! Just enough FLV reading for the load generator and the limit: the video tags of a file, in
//! order, and its first keyframe with the decoder configuration before it.

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
