//! Just enough FLV reading for the load generator: the video tags of a file, in order.

use bytes::Bytes;

/// One FLV video tag: its decode timestamp (ms) and its body (the RTMP video message payload).
pub struct VideoTag {
    pub ts_ms: u32,
    pub data: Bytes,
    /// AVC sequence header (AVCPacketType 0): sent once, not repeated when the input loops.
    pub is_sequence_header: bool,
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
            tags.push(VideoTag {
                ts_ms: ts,
                is_sequence_header: body[0] & 0x0f == 7 && body[1] == 0,
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
