//! The libavcodec decoder backend (feature `ffmpeg`, through ffmpeg-next): H.264 and H.265 here,
//! and whatever else the system's libavcodec decodes (VP8, VP9, AV1) once a front end hands such
//! frames over. About twice as fast on keyframes as openh264 built without assembly (see
//! docs/performance.md), so it is the default decoder when compiled in.
//!
//! A decoder keeps its libavcodec context between calls (reopened when the codec changes, or
//! after a call that failed), so a busy server reuses the context's frame pool instead of
//! faulting in fresh pages for every picture (the profile of a fresh context per call showed
//! `clear_page`, page faults and `munmap` at ~15 % of the server's CPU). Reuse must not carry one
//! stream's state into the next, since the pool hands any stream to any decoder:
//! - each call starts from a keyframe with the stream's parameter sets in-band, and ends with a
//!   drain and a flush, so no reference picture survives it;
//! - the colour fields of the context are reset before each call: the H.264 decoder writes them
//!   only when an SPS describes its colour, so an untagged stream decoded after a BT.709 one came
//!   out tagged BT.709 (test `one_decoder_switches_between_codecs`).

use std::sync::Once;

use ffmpeg_next as ff;

use crate::decode::{Decoder, Picture, Planes};
use crate::sps::{Colour, Matrix};
use crate::{Codec, Error, Frame, Result, VideoConfig};

/// The libavcodec backend: one context, kept between calls for the same codec.
pub struct FfmpegDecoder {
    open: Option<(Codec, ff::decoder::Video)>,
    annexb: Vec<u8>,
}

static INIT: Once = Once::new();

fn init() {
    INIT.call_once(|| {
        // libavcodec writes its complaints about broken streams to stderr; we report errors
        // through Result instead.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn codec_id(codec: Codec) -> ff::codec::Id {
    match codec {
        Codec::H264 => ff::codec::Id::H264,
        Codec::H265 => ff::codec::Id::HEVC,
        Codec::Vp8 => ff::codec::Id::VP8,
        Codec::Vp9 => ff::codec::Id::VP9,
        Codec::Av1 => ff::codec::Id::AV1,
    }
}

/// Software AV1 decoders, in order of preference: libavcodec's own `av1` decodes only with
/// hardware, so it is never taken.
const AV1_DECODERS: [&str; 2] = ["libdav1d", "libaom-av1"];

/// The decoder of `codec` this libavcodec has, if any.
fn find(codec: Codec) -> Option<ff::Codec> {
    match codec {
        Codec::Av1 => AV1_DECODERS
            .iter()
            .find_map(|n| ff::decoder::find_by_name(n)),
        _ => ff::decoder::find(codec_id(codec)),
    }
}

fn av_error(what: &str) -> impl Fn(ff::Error) -> Error + '_ {
    move |e| Error::Decode(format!("{what}: {e}"))
}

impl FfmpegDecoder {
    /// Creates a decoder; its libavcodec context is opened on first use.
    pub fn new() -> Result<Self> {
        init();
        Ok(FfmpegDecoder {
            open: None,
            annexb: Vec::new(),
        })
    }

    /// True when the system's libavcodec can decode `codec`.
    pub fn supports(codec: Codec) -> bool {
        init();
        find(codec).is_some()
    }

    fn open(codec: Codec) -> Result<ff::decoder::Video> {
        let found = find(codec).ok_or_else(|| {
            Error::Unsupported(format!(
                "this libavcodec has no {} decoder",
                codec.display_name()
            ))
        })?;
        let mut ctx = ff::codec::Context::new_with_codec(found);
        // One thread per decoder: the snapshot service runs one decoder per core already, and a
        // frame-threaded decoder would hold frames back.
        ctx.set_threading(ff::threading::Config {
            kind: ff::threading::Type::None,
            count: 1,
            ..Default::default()
        });
        ctx.decoder()
            .video()
            .map_err(av_error("cannot open the libavcodec decoder"))
    }

    /// The context of the call under way.
    fn decoder(&mut self) -> Result<&mut ff::decoder::Video> {
        self.open
            .as_mut()
            .map(|(_, d)| d)
            .ok_or_else(|| Error::Decode("no decoder context".into()))
    }

    /// Opens a context for `codec`, or readies the one kept from the last call.
    #[allow(unsafe_code)]
    fn ready(&mut self, codec: Codec) -> Result<()> {
        if !matches!(&self.open, Some((c, _)) if *c == codec) {
            self.open = None;
            self.open = Some((codec, Self::open(codec)?));
        }
        let decoder = self.decoder()?;
        // SAFETY: the context is open and owned by `decoder`; these are plain enum fields the
        // decoder reads and writes only inside the calls made by this thread (ffmpeg-next has
        // setters for them on encoders only).
        unsafe {
            let ctx = decoder.as_mut_ptr();
            (*ctx).color_range = ff::ffi::AVColorRange::AVCOL_RANGE_UNSPECIFIED;
            (*ctx).colorspace = ff::ffi::AVColorSpace::AVCOL_SPC_UNSPECIFIED;
            (*ctx).color_primaries = ff::ffi::AVColorPrimaries::AVCOL_PRI_UNSPECIFIED;
            (*ctx).color_trc = ff::ffi::AVColorTransferCharacteristic::AVCOL_TRC_UNSPECIFIED;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let packet = ff::Packet::copy(&self.annexb);
        self.decoder()?
            .send_packet(&packet)
            .map_err(av_error("send packet"))
    }

    /// Takes every picture the decoder has ready into `newest` (pictures come out in
    /// presentation order, so the last one out is the newest); `spare` is the frame written into.
    fn receive(&mut self, spare: &mut ff::frame::Video, newest: &mut ff::frame::Video) -> bool {
        let Some((_, decoder)) = self.open.as_mut() else {
            return false;
        };
        let mut have = false;
        while decoder.receive_frame(spare).is_ok() {
            std::mem::swap(spare, newest);
            have = true;
        }
        have
    }

    /// Decodes `frames` and returns the newest picture's frame, which holds the only reference
    /// to its buffers (the context is flushed); on error the context is dropped.
    fn decode_frame(&mut self, config: &VideoConfig, frames: &[Frame]) -> Result<ff::frame::Video> {
        crate::decode::starts_at_keyframe(frames)?;
        let result = self.run(config, frames);
        if result.is_err() {
            // Whatever state a broken stream left behind goes with the context.
            self.open = None;
        }
        result
    }

    fn run(&mut self, config: &VideoConfig, frames: &[Frame]) -> Result<ff::frame::Video> {
        self.ready(config.codec())?;
        // Two frames, swapped: only the newest picture is kept.
        let (mut spare, mut newest) = (ff::frame::Video::empty(), ff::frame::Video::empty());
        let mut have = false;
        for (i, frame) in frames.iter().enumerate() {
            self.annexb.clear();
            if i == 0 {
                config.annexb_parameter_sets(&mut self.annexb);
            }
            config.append_for_decoder(&frame.data, &mut self.annexb)?;
            self.send()
                .map_err(|e| Error::Decode(format!("frame {i} (dts {} ms): {e}", frame.dts_ms)))?;
            have |= self.receive(&mut spare, &mut newest);
        }
        self.decoder()?.send_eof().map_err(av_error("drain"))?;
        have |= self.receive(&mut spare, &mut newest);
        // Ends the drain (a drained context takes no more input) and drops every reference
        // picture; the frame buffers go back to the context's pool for the next call.
        self.decoder()?.flush();
        if !have {
            return Err(Error::Decode("the decoder produced no picture".into()));
        }
        Ok(newest)
    }
}

impl Decoder for FfmpegDecoder {
    fn decode_into(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
        out: &mut Picture,
    ) -> Result<()> {
        let mut frame = self.decode_frame(config, frames)?;
        out.copy_from(&planes_of(&mut frame, display)?)
    }

    /// Hands over libavcodec's own frame: no copy, and `scratch` is left alone. The frame's
    /// buffers go back to the context's pool when `use_it` returns.
    fn decode_then(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
        _scratch: &mut Picture,
        use_it: &mut dyn FnMut(Planes<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut frame = self.decode_frame(config, frames)?;
        use_it(planes_of(&mut frame, display)?)
    }
}

/// The planes of a decoded 8-bit 4:2:0 frame, cropped to at most `display`, with the colour it
/// reports; made writable first (a copy only if libavcodec still shares the buffers, which it
/// does not once flushed).
#[allow(unsafe_code)]
fn planes_of(frame: &mut ff::frame::Video, display: (u32, u32)) -> Result<Planes<'_>> {
    use ff::format::Pixel;
    let full_range_format = match frame.format() {
        Pixel::YUV420P => false,
        Pixel::YUVJ420P => true,
        other => {
            return Err(Error::Unsupported(format!(
                "decoded pixel format {other:?} (only 8-bit 4:2:0 is pictured)"
            )))
        }
    };
    let colour = frame_colour(frame, full_range_format);
    let width = frame.width().min(display.0);
    let height = frame.height().min(display.1);
    let rows = [
        frame.height(),
        frame.height().div_ceil(2),
        frame.height().div_ceil(2),
    ];
    // SAFETY: the frame is a decoded, reference-counted picture owned by `frame`, which this
    // borrow keeps alive and unaliased. av_frame_make_writable leaves it with buffers of its
    // own (copying them if shared). For YUV420P the three planes are disjoint regions of
    // `rows[i]` lines of `linesize[i]` bytes each, so three mutable slices over them do not
    // overlap.
    unsafe {
        let ptr = frame.as_mut_ptr();
        if ff::ffi::av_frame_make_writable(ptr) < 0 {
            return Err(Error::Decode(
                "cannot make the decoded frame writable".into(),
            ));
        }
        let planes = Planes {
            width,
            height,
            y: plane(ptr, 0, rows[0])?,
            u: plane(ptr, 1, rows[1])?,
            v: plane(ptr, 2, rows[2])?,
            colour,
        };
        planes.check()?;
        Ok(planes)
    }
}

/// Plane `i` of a frame: `rows` lines at the frame's stride.
///
/// # Safety
/// `frame` must be a valid frame whose plane `i` holds `rows` lines, not otherwise borrowed for
/// `'a`.
#[allow(unsafe_code)]
unsafe fn plane<'a>(
    frame: *mut ff::ffi::AVFrame,
    i: usize,
    rows: u32,
) -> Result<(&'a mut [u8], usize)> {
    // SAFETY: as the caller promises.
    unsafe {
        let stride = usize::try_from((*frame).linesize[i])
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| Error::Decode("decoded frame with a negative stride".into()))?;
        let data = (*frame).data[i];
        if data.is_null() {
            return Err(Error::Decode("decoded frame without a plane".into()));
        }
        Ok((
            std::slice::from_raw_parts_mut(data, stride * rows as usize),
            stride,
        ))
    }
}

/// The colour a decoded frame reports, when it reports one.
fn frame_colour(frame: &ff::frame::Video, full_range_format: bool) -> Option<Colour> {
    let matrix = match frame.color_space() {
        ff::color::Space::BT709 => Some(Matrix::Bt709),
        ff::color::Space::BT470BG | ff::color::Space::SMPTE170M => Some(Matrix::Bt601),
        ff::color::Space::BT2020NCL => Some(Matrix::Bt2020),
        _ => None,
    };
    let full_range = full_range_format || frame.color_range() == ff::color::Range::JPEG;
    // Only what the bitstream states overrides the SPS reading; an unspecified matrix keeps it.
    match matrix {
        Some(matrix) => Some(Colour { matrix, full_range }),
        None if full_range => Some(Colour {
            matrix: Matrix::Bt601,
            full_range,
        }),
        None => None,
    }
}
