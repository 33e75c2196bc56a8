//! The decode glue: a real SPS/PPS (from `testdata/320x240.flv`) and fuzzed access units through
//! a pooled `OpenH264Decoder` and `picture::encode`, the way a snapshot is made. Catches panics in
//! our code around openh264 (plane copies, cropping, size changes mid-stream, colour conversion,
//! scaling, encoding) and crashes inside openh264 itself.
//!
//! Input: `flags`, display width (u16 BE), display height (u16 BE), then access units, each a
//! u32 BE length and that many bytes of length-prefixed (4-byte) NAL units; a length running past
//! the end takes the rest. At most 8 access units; the first is given as the keyframe.
//! - flags bit 0: crop to the display size in the input instead of the SPS's.
//! - flags bits 1-2: output: full JPEG, full PNG, JPEG 100 wide, PNG 33 high.
//! - flags bit 3: a new decoder for this input instead of the pooled one.
#![no_main]

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::Bytes;
use ingest::flv::{parse_video_tag, read_file, VideoTag};
use libfuzzer_sys::fuzz_target;
use media::avc::{contains_idr, AvcConfig};
use media::decode::{Decoder, OpenH264Decoder, Picture};
use media::picture::{self, EncodeOptions, ImageFormat};
use media::sps::SpsInfo;
use media::Frame;
use media::VideoConfig;

const MAX_FRAMES: usize = 8;

fn stream_config() -> &'static (VideoConfig, SpsInfo) {
    static CONFIG: OnceLock<(VideoConfig, SpsInfo)> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let flv = Bytes::from_static(include_bytes!("../../testdata/320x240.flv"));
        for tag in read_file(&flv).expect("testdata FLV reads") {
            if tag.tag_type == 9 {
                if let Ok(VideoTag::Config { record, .. }) = parse_video_tag(&tag.body) {
                    let config = AvcConfig::parse(&record).expect("testdata avcC parses");
                    let sps = SpsInfo::parse(&config.sps[0]).expect("testdata SPS parses");
                    return (config.into(), sps);
                }
            }
        }
        panic!("no AVC sequence header in testdata/320x240.flv");
    })
}

thread_local! {
    static DECODER: RefCell<OpenH264Decoder> = RefCell::new(OpenH264Decoder::new().expect("openh264 decoder"));
    static PICTURE: RefCell<Picture> = RefCell::new(Picture::empty());
}

fuzz_target!(|data: &[u8]| {
    let (config, sps) = stream_config();
    if data.len() < 5 {
        return;
    }
    let flags = data[0];
    let display = if flags & 1 != 0 {
        (
            u32::from(u16::from_be_bytes([data[1], data[2]])),
            u32::from(u16::from_be_bytes([data[3], data[4]])),
        )
    } else {
        (sps.width, sps.height)
    };
    let mut rest = &data[5..];
    let mut frames = Vec::new();
    while !rest.is_empty() && frames.len() < MAX_FRAMES {
        let len = match rest.get(..4) {
            Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => rest.len(),
        };
        rest = &rest[rest.len().min(4)..];
        let len = len.min(rest.len());
        let (au, tail) = rest.split_at(len);
        rest = tail;
        let n = frames.len() as i64;
        frames.push(Frame {
            dts_ms: n * 40,
            pts_ms: n * 40,
            keyframe: n == 0 || contains_idr(au, config.nal_length_size().unwrap_or(4)),
            data: Bytes::copy_from_slice(au),
        });
    }
    if frames.is_empty() {
        return;
    }
    let result = if flags & 8 != 0 {
        OpenH264Decoder::new()
            .expect("openh264 decoder")
            .decode(config, &frames, display)
    } else {
        // The pooled decoder writes into one reused picture, as the snapshot service's do.
        DECODER.with(|d| {
            PICTURE.with(|p| {
                let mut p = p.borrow_mut();
                d.borrow_mut()
                    .decode_into(config, &frames, display, &mut p)
                    .map(|()| p.clone())
            })
        })
    };
    let Ok(mut pic) = result else { return };
    assert!(
        pic.width <= display.0 && pic.height <= display.1,
        "{}x{} outside display {display:?}",
        pic.width,
        pic.height
    );
    assert_eq!(pic.y.len(), pic.width as usize * pic.height as usize);
    let chroma = pic.width.div_ceil(2) as usize * pic.height.div_ceil(2) as usize;
    assert_eq!((pic.u.len(), pic.v.len()), (chroma, chroma));
    let options = match (flags >> 1) & 3 {
        0 => EncodeOptions::new(ImageFormat::Jpeg),
        1 => EncodeOptions::new(ImageFormat::Png),
        2 => EncodeOptions {
            width: Some(100),
            ..EncodeOptions::new(ImageFormat::Jpeg)
        },
        _ => EncodeOptions {
            height: Some(33),
            ..EncodeOptions::new(ImageFormat::Png)
        },
    };
    if pic.width == 0 || pic.height == 0 {
        // A zero display size: encode must refuse it, not panic.
        assert!(picture::encode(&mut pic, sps.colour, &options).is_err());
        return;
    }
    let image = picture::encode(&mut pic, sps.colour, &options).expect("a decoded picture encodes");
    assert!(!image.is_empty());
});
