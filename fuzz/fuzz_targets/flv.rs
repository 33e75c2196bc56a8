//! FLV: `read_file` on arbitrary files, and `parse_video_tag` on arbitrary tag bodies, followed
//! the way a file grab or an RTMP publish follows them (sequence header -> AVC/HEVC config -> SPS;
//! frames -> Annex B with the configured length size; script data -> AMF0).
#![no_main]

use bytes::Bytes;
use ingest::flv::{parse_video_tag, read_file, VideoTag, MAX_FILE_TAG_BYTES};
use libfuzzer_sys::fuzz_target;
use media::avc::{append_annexb, AvcConfig};
use media::hevc::HevcConfig;
use media::{Codec, VideoConfig};

/// Parses a sequence header the way `VideoFeed` does.
fn parse_config(codec: Codec, record: &Bytes) -> Option<VideoConfig> {
    match codec {
        Codec::H265 => HevcConfig::parse(record).ok().map(Into::into),
        _ => AvcConfig::parse(record).ok().map(Into::into),
    }
}

fn on_video(body: &Bytes, config: &mut Option<VideoConfig>) {
    match parse_video_tag(body) {
        Ok(VideoTag::Config { codec, record }) => {
            if let Some(c) = parse_config(codec, &record) {
                let _ = c.info();
                *config = Some(c);
            }
        }
        Ok(VideoTag::Frame { data, .. }) => {
            if let Some(c) = config {
                let _ = c.is_keyframe(&data);
                if let Some(n) = c.nal_length_size() {
                    let _ = append_annexb(&data, n, &mut Vec::new());
                }
            }
        }
        Ok(VideoTag::Unsupported(name)) => assert!(!name.is_empty()),
        Ok(VideoTag::End | VideoTag::Info) | Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    // As an RTMP video message body.
    on_video(&bytes, &mut None);
    // As a whole FLV file.
    if let Ok(tags) = read_file(&bytes) {
        let mut config = None;
        for tag in &tags {
            assert!(tag.body.len() <= MAX_FILE_TAG_BYTES);
            match tag.tag_type {
                9 => on_video(&tag.body, &mut config),
                18 => {
                    let _ = ingest::amf0::decode_all(&tag.body);
                }
                _ => {}
            }
        }
    }
});
