//! Decoders behind one trait, and the decoded picture they hand back.
//!
//! A decoder is expensive to create and cheap to reuse, and a keyframe needs no earlier state, so
//! the caller pools decoders and gives any of them any stream's keyframe with its parameter sets.
//! Each call starts clean: whatever a previous call left in the decoder is flushed and dropped.

use openh264::decoder::{DecodeOptions, Decoder as OpenH264, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::avc;
use crate::sps::Colour;
use crate::{Error, Frame, Result, VideoConfig};

/// A decoded 8-bit 4:2:0 picture with its own planes (tightly packed: stride = width).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma, `width * height` bytes.
    pub y: Vec<u8>,
    /// Cb, `ceil(width/2) * ceil(height/2)` bytes.
    pub u: Vec<u8>,
    /// Cr, same size as `u`.
    pub v: Vec<u8>,
    /// The colour the decoder found in the bitstream, when it reports one; otherwise the
    /// stream's SPS says (see [`crate::sps::SpsInfo::colour`]).
    pub colour: Option<Colour>,
}

impl Picture {
    /// A picture with no pixels, to copy planes into.
    pub fn empty() -> Picture {
        Picture {
            width: 0,
            height: 0,
            y: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
            colour: None,
        }
    }

    /// Width of the chroma planes.
    pub fn chroma_width(&self) -> u32 {
        self.width.div_ceil(2)
    }

    /// Copies planes given with strides, keeping at most `width` x `height` (the display size).
    pub fn from_planes(
        width: u32,
        height: u32,
        y: (&[u8], usize),
        u: (&[u8], usize),
        v: (&[u8], usize),
    ) -> Result<Picture> {
        let mut p = Picture::empty();
        p.copy_planes(width, height, y, u, v)?;
        Ok(p)
    }

    /// Like [`Picture::from_planes`], reusing this picture's buffers. The colour is reset to
    /// unknown: a decoder that reports one sets it afterwards.
    pub fn copy_planes(
        &mut self,
        width: u32,
        height: u32,
        (y, y_stride): (&[u8], usize),
        (u, u_stride): (&[u8], usize),
        (v, v_stride): (&[u8], usize),
    ) -> Result<()> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        fn copy(out: &mut Vec<u8>, plane: &[u8], stride: usize, w: usize, h: usize) -> Result<()> {
            if h > 0 && (stride < w || plane.len() < stride * (h - 1) + w) {
                return Err(Error::Decode(
                    "decoder returned a plane smaller than its size".into(),
                ));
            }
            out.clear();
            for row in 0..h {
                out.extend_from_slice(&plane[row * stride..row * stride + w]);
            }
            Ok(())
        }
        copy(&mut self.y, y, y_stride, w, h)?;
        copy(&mut self.u, u, u_stride, cw, ch)?;
        copy(&mut self.v, v, v_stride, cw, ch)?;
        self.width = width;
        self.height = height;
        self.colour = None;
        Ok(())
    }
}

impl Picture {
    /// Copies `planes` (pixels and colour) into this picture, reusing its buffers.
    pub fn copy_from(&mut self, planes: &Planes<'_>) -> Result<()> {
        let [y, u, v] = planes.rows();
        self.copy_planes(planes.width, planes.height, y, u, v)?;
        self.colour = planes.colour;
        Ok(())
    }

    /// This picture's planes, as a decoder hands them to [`Decoder::decode_then`].
    pub fn planes(&mut self) -> Planes<'_> {
        let (y_stride, c_stride) = (self.width as usize, self.chroma_width() as usize);
        Planes {
            width: self.width,
            height: self.height,
            y: (&mut self.y, y_stride),
            u: (&mut self.u, c_stride),
            v: (&mut self.v, c_stride),
            colour: self.colour,
        }
    }
}

/// A decoded 8-bit 4:2:0 picture's planes where they lie: in a [`Picture`], or in the decoder's
/// own frame (libavcodec), so that encoding needs no copy. Each plane is given with its stride
/// (bytes from one row to the next, at least the row's width); writable, since the JPEG path
/// stretches limited range in place.
pub struct Planes<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma and its stride.
    pub y: (&'a mut [u8], usize),
    /// Cb and its stride (`ceil(width/2)` x `ceil(height/2)` samples).
    pub u: (&'a mut [u8], usize),
    /// Cr and its stride.
    pub v: (&'a mut [u8], usize),
    /// The colour the decoder found in the bitstream, as in [`Picture::colour`].
    pub colour: Option<Colour>,
}

impl Planes<'_> {
    /// Width of the chroma planes.
    pub fn chroma_width(&self) -> u32 {
        self.width.div_ceil(2)
    }

    /// Height of the chroma planes.
    pub fn chroma_height(&self) -> u32 {
        self.height.div_ceil(2)
    }

    /// Y, U and V, each with its stride, to read.
    pub fn rows(&self) -> [(&[u8], usize); 3] {
        [
            (&self.y.0[..], self.y.1),
            (&self.u.0[..], self.u.1),
            (&self.v.0[..], self.v.1),
        ]
    }

    /// Fails unless every plane holds its rows at its stride: what the encoders rely on.
    pub fn check(&self) -> Result<()> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (self.chroma_width() as usize, self.chroma_height() as usize);
        let fits = |(plane, stride): &(&mut [u8], usize), w: usize, h: usize| {
            h == 0 || (*stride >= w && plane.len() >= stride * (h - 1) + w)
        };
        if fits(&self.y, w, h) && fits(&self.u, cw, ch) && fits(&self.v, cw, ch) {
            Ok(())
        } else {
            Err(Error::Decode(
                "decoded planes smaller than the picture's size".into(),
            ))
        }
    }

    /// A tightly packed copy of the picture.
    pub fn to_picture(&self) -> Result<Picture> {
        let mut p = Picture::empty();
        p.copy_from(self)?;
        Ok(p)
    }
}

/// Something that turns compressed access units into a picture.
pub trait Decoder: Send {
    /// Decodes `frames` (decode order, the first one a keyframe) with `config`'s parameter sets
    /// into `out` (reusing its buffers), the picture of the newest frame in presentation order,
    /// cropped to at most `display` (width, height). On error `out` holds no valid picture.
    fn decode_into(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
        out: &mut Picture,
    ) -> Result<()>;

    /// Decodes like [`Decoder::decode_into`] and hands the picture to `use_it` where the decoder
    /// holds it: a backend that keeps its own frame (libavcodec) hands that over, so a picture
    /// encoded here is never copied and `scratch` stays empty; the others decode into `scratch`
    /// (reusing its buffers). `use_it` is not called when decoding fails.
    fn decode_then(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
        scratch: &mut Picture,
        use_it: &mut dyn FnMut(Planes<'_>) -> Result<()>,
    ) -> Result<()> {
        self.decode_into(config, frames, display, scratch)?;
        use_it(scratch.planes())
    }

    /// Like [`Decoder::decode_into`], into a new picture.
    fn decode(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
    ) -> Result<Picture> {
        let mut out = Picture::empty();
        self.decode_into(config, frames, display, &mut out)?;
        Ok(out)
    }
}

/// Every backend's precondition: at least one frame, the first a keyframe.
pub(crate) fn starts_at_keyframe(frames: &[Frame]) -> Result<()> {
    let first = frames
        .first()
        .ok_or_else(|| Error::Decode("no frames to decode".into()))?;
    if !first.keyframe {
        return Err(Error::Decode("decoding must start at a keyframe".into()));
    }
    Ok(())
}

/// The fastest decoder compiled in: libavcodec with the `ffmpeg` feature, else openh264.
pub fn default_decoder() -> Result<Box<dyn Decoder>> {
    #[cfg(feature = "ffmpeg")]
    {
        Ok(Box::new(crate::ffmpeg::FfmpegDecoder::new()?))
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        Ok(Box::new(OpenH264Decoder::new()?))
    }
}

/// Why [`default_decoder`] cannot decode `codec`, or `None` when it can.
pub fn cannot_decode(codec: crate::Codec) -> Option<String> {
    #[cfg(feature = "ffmpeg")]
    {
        (!crate::ffmpeg::FfmpegDecoder::supports(codec)).then(|| {
            format!(
                "this system's libavcodec has no {} decoder",
                codec.display_name()
            )
        })
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        (codec != crate::Codec::H264).then(|| {
            format!(
                "{} needs the libavcodec decoder (build livesnap with --features ffmpeg)",
                codec.display_name()
            )
        })
    }
}

/// The name of [`default_decoder`]'s backend, for logs and `/healthz`.
pub fn default_decoder_name() -> &'static str {
    if cfg!(feature = "ffmpeg") {
        "libavcodec"
    } else {
        "openh264"
    }
}

/// The default H.264 decoder: Cisco's openh264, built from source by the `openh264` crate.
pub struct OpenH264Decoder {
    inner: OpenH264,
    annexb: Vec<u8>,
    /// The last call left reordering state behind (it decoded past the keyframe, or failed).
    dirty: bool,
}

impl OpenH264Decoder {
    /// Creates a decoder. Costs more than decoding a keyframe: pool it.
    pub fn new() -> Result<Self> {
        Ok(OpenH264Decoder {
            inner: Self::create()?,
            annexb: Vec::new(),
            dirty: false,
        })
    }

    fn create() -> Result<OpenH264> {
        // Without NoFlush, openh264 flushes after every access unit and fails on most frames
        // that follow a B-frame; we flush once, at the end of each call.
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        OpenH264::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| Error::Decode(format!("cannot create openh264 decoder: {e}")))
    }

    fn copy_out(yuv: &impl YUVSource, display: (u32, u32), out: &mut Picture) -> Result<()> {
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let width = (w as u32).min(display.0);
        let height = (h as u32).min(display.1);
        out.copy_planes(width, height, (yuv.y(), sy), (yuv.u(), su), (yuv.v(), sv))
    }
}

impl Decoder for OpenH264Decoder {
    fn decode_into(
        &mut self,
        config: &VideoConfig,
        frames: &[Frame],
        display: (u32, u32),
        out: &mut Picture,
    ) -> Result<()> {
        let VideoConfig::Avc(config) = config else {
            return Err(Error::Unsupported(format!(
                "{} needs the libavcodec decoder (build with --features ffmpeg)",
                config.codec().display_name()
            )));
        };
        starts_at_keyframe(frames)?;
        // openh264 keeps pictures of a call that decoded past the keyframe referenced in its
        // reordering queue even after flushing, and the next such call then runs out of picture
        // buffers ("Native:16384", dsOutOfMemory, on B-frame streams). A keyframe-only call
        // leaves nothing behind, so only after the other kind is the decoder made anew.
        if self.dirty {
            self.inner = Self::create()?;
            self.dirty = false;
        }
        self.dirty = frames.len() > 1;
        let no_flush = || DecodeOptions::new().flush_after_decode(Flush::NoFlush);
        // Pictures come out in presentation order, so the last one out is the newest. Each is
        // copied into the same buffers (the decoder's own are reused on the next call).
        let mut have = false;
        for (i, frame) in frames.iter().enumerate() {
            self.annexb.clear();
            if i == 0 {
                config.annexb_parameter_sets(&mut self.annexb);
            }
            avc::append_annexb(&frame.data, config.nal_length_size, &mut self.annexb)?;
            let decoded = self
                .inner
                .decode_with_options(&self.annexb, no_flush())
                .map_err(|e| Error::Decode(format!("frame {i} (dts {} ms): {e}", frame.dts_ms)));
            let decoded = match decoded {
                Ok(d) => d,
                Err(e) => {
                    self.dirty = true;
                    return Err(e);
                }
            };
            if let Some(yuv) = decoded {
                Self::copy_out(&yuv, display, out)?;
                have = true;
            }
        }
        let remaining = self
            .inner
            .flush_remaining()
            .map_err(|e| Error::Decode(format!("flush: {e}")))?;
        if let Some(yuv) = remaining.last() {
            Self::copy_out(yuv, display, out)?;
            have = true;
        }
        if !have {
            return Err(Error::Decode("the decoder produced no picture".into()));
        }
        Ok(())
    }
}
