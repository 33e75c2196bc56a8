//! From a decoded [`Picture`] to image bytes: colour conversion honouring the stream's matrix and
//! range, optional scaling, and JPEG or PNG encoding.

use std::borrow::Cow;

use fast_image_resize::images::Image;
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use yuvutils_rs::{YuvPlanarImage, YuvRange, YuvStandardMatrix};

use crate::decode::{Picture, Planes};
use crate::sps::{Colour, Matrix};
use crate::{Error, Result};

/// Largest output width or height a caller may ask for.
pub const MAX_OUTPUT_SIDE: u32 = 8192;
/// Most pixels in an output picture: the largest decoded picture (DCI 8K). An 8192x8192 PNG
/// would need about 200 MiB of RGB before encoding, per request.
pub const MAX_OUTPUT_PIXELS: u64 = crate::sps::MAX_PIXELS;
/// JPEG quality used when none is given.
pub const DEFAULT_JPEG_QUALITY: u8 = 85;

/// The encoded image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG (baseline, 4:2:0).
    Jpeg,
    /// PNG, RGB, fast compression.
    Png,
}

impl ImageFormat {
    /// Parses `jpg`, `jpeg` or `png` (any case).
    pub fn parse(s: &str) -> Option<ImageFormat> {
        match s.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            "png" => Some(ImageFormat::Png),
            _ => None,
        }
    }

    /// File extension (`jpg` / `png`).
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    /// MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

/// What picture to make: format, optional size, JPEG quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodeOptions {
    /// Output format.
    pub format: ImageFormat,
    /// Output width; with only one of width/height the other keeps the aspect ratio.
    pub width: Option<u32>,
    /// Output height.
    pub height: Option<u32>,
    /// JPEG quality 1..=100 (ignored for PNG).
    pub quality: u8,
}

impl EncodeOptions {
    /// Full-size picture in `format` with the default quality.
    pub fn new(format: ImageFormat) -> Self {
        EncodeOptions {
            format,
            width: None,
            height: None,
            quality: DEFAULT_JPEG_QUALITY,
        }
    }

    /// Checks the sizes asked for, before any source size is known.
    pub fn check(&self) -> Result<()> {
        for side in [self.width, self.height].into_iter().flatten() {
            if side == 0 || side > MAX_OUTPUT_SIDE {
                return Err(Error::BadOutputSize {
                    width: self.width.unwrap_or(0),
                    height: self.height.unwrap_or(0),
                    max: MAX_OUTPUT_SIDE,
                });
            }
        }
        if let (Some(w), Some(h)) = (self.width, self.height) {
            check_pixels(w, h)?;
        }
        Ok(())
    }

    /// The output size for a source of `src_w` x `src_h`.
    pub fn output_size(&self, src_w: u32, src_h: u32) -> Result<(u32, u32)> {
        let scale = |given: u32, num: u32, den: u32| -> u32 {
            ((u64::from(given) * u64::from(num) + u64::from(den) / 2) / u64::from(den.max(1)))
                .max(1) as u32
        };
        let (w, h) = match (self.width, self.height) {
            (None, None) => (src_w, src_h),
            (Some(w), Some(h)) => (w, h),
            (Some(w), None) => (w, scale(w, src_h, src_w)),
            (None, Some(h)) => (scale(h, src_w, src_h), h),
        };
        if w == 0 || h == 0 || w > MAX_OUTPUT_SIDE || h > MAX_OUTPUT_SIDE {
            return Err(Error::BadOutputSize {
                width: w,
                height: h,
                max: MAX_OUTPUT_SIDE,
            });
        }
        check_pixels(w, h)?;
        Ok((w, h))
    }
}

fn check_pixels(width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_OUTPUT_PIXELS {
        return Err(Error::TooManyOutputPixels {
            width,
            height,
            pixels,
            max: MAX_OUTPUT_PIXELS,
        });
    }
    Ok(())
}

/// Converts 4:2:0 YUV to packed RGB8 with the given colour description.
pub fn to_rgb(picture: &Picture, colour: Colour) -> Result<Vec<u8>> {
    let cw = picture.chroma_width() as usize;
    let size = (picture.width, picture.height);
    yuv_to_rgb(
        size,
        [
            (&picture.y, size.0 as usize),
            (&picture.u, cw),
            (&picture.v, cw),
        ],
        colour,
    )
}

/// A plane's `w` x `h` picture, tightly packed: borrowed when it already is.
pub(crate) fn packed(plane: &[u8], stride: usize, (w, h): (usize, usize)) -> Cow<'_, [u8]> {
    if stride == w {
        return Cow::Borrowed(&plane[..w * h]);
    }
    let mut out = Vec::with_capacity(w * h);
    for row in plane.chunks(stride).take(h) {
        out.extend_from_slice(&row[..w]);
    }
    Cow::Owned(out)
}

/// [`to_rgb`] of planes given with their strides.
pub(crate) fn yuv_to_rgb(
    (w, h): (u32, u32),
    [y, u, v]: [(&[u8], usize); 3],
    colour: Colour,
) -> Result<Vec<u8>> {
    // With an odd width the conversion's output depends on the byte after each luma row (seen
    // as different JPEGs of equal planes: test `a_picture_encoded_where_the_decoder_left_it_is_
    // the_copy_encoded`). Packed, that byte is the next row's first wherever the planes came
    // from, so a picture converts the same from a decoder's frame as from a copy.
    if w & 1 == 1 && y.1 != w as usize {
        let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
        let luma = packed(y.0, y.1, (w as usize, h as usize));
        let (u, v) = (packed(u.0, u.1, (cw, ch)), packed(v.0, v.1, (cw, ch)));
        return yuv_to_rgb((w, h), [(&luma, w as usize), (&u, cw), (&v, cw)], colour);
    }
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    let stride = |s: usize| {
        u32::try_from(s).map_err(|_| Error::Encode(format!("plane stride {s} too large")))
    };
    let planar = YuvPlanarImage {
        y_plane: y.0,
        y_stride: stride(y.1)?,
        u_plane: u.0,
        u_stride: stride(u.1)?,
        v_plane: v.0,
        v_stride: stride(v.1)?,
        width: w,
        height: h,
    };
    let range = if colour.full_range {
        YuvRange::Full
    } else {
        YuvRange::Limited
    };
    let matrix = match colour.matrix {
        Matrix::Bt601 => YuvStandardMatrix::Bt601,
        Matrix::Bt709 => YuvStandardMatrix::Bt709,
        Matrix::Bt2020 => YuvStandardMatrix::Bt2020,
    };
    yuvutils_rs::yuv420_to_rgb(&planar, &mut rgb, w * 3, range, matrix)
        .map_err(|e| Error::Encode(format!("colour conversion: {e:?}")))?;
    Ok(rgb)
}

/// Scales packed RGB8 from `src` size to `dst` size (bilinear-quality convolution).
pub fn scale_rgb(rgb: Vec<u8>, src: (u32, u32), dst: (u32, u32)) -> Result<Vec<u8>> {
    if src == dst {
        return Ok(rgb);
    }
    let src_img = Image::from_vec_u8(src.0, src.1, rgb, PixelType::U8x3)
        .map_err(|e| Error::Encode(format!("scale source: {e}")))?;
    let mut dst_img = Image::new(dst.0, dst.1, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
        fast_image_resize::FilterType::Bilinear,
    ));
    Resizer::new()
        .resize(&src_img, &mut dst_img, &options)
        .map_err(|e| Error::Encode(format!("scale: {e}")))?;
    Ok(dst_img.into_vec())
}

/// Encodes packed RGB8 as JPEG or PNG.
pub fn encode_rgb(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    match format {
        ImageFormat::Jpeg => {
            let (w, h) = (u16::try_from(width), u16::try_from(height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(Error::Encode(format!("JPEG cannot hold {width}x{height}")));
            };
            let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
            enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| Error::Encode(format!("jpeg: {e}")))?;
        }
        ImageFormat::Png => {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let mut writer = enc
                .write_header()
                .map_err(|e| Error::Encode(format!("png: {e}")))?;
            writer
                .write_image_data(rgb)
                .map_err(|e| Error::Encode(format!("png: {e}")))?;
            writer
                .finish()
                .map_err(|e| Error::Encode(format!("png: {e}")))?;
        }
    }
    Ok(out)
}

/// The JPEG encoder compiled in, for logs.
pub fn jpeg_encoder_name() -> &'static str {
    if cfg!(feature = "turbojpeg") {
        "libjpeg-turbo (from YUV)"
    } else {
        "jpeg-encoder (from RGB)"
    }
}

/// The whole path from a decoded picture to image bytes. `colour` is the stream's (from its SPS);
/// a colour the decoder read from the bitstream takes precedence. The picture may be converted
/// in place on the way (with `turbojpeg`, limited range stretched to full for JPEG), its `colour`
/// updated to match, so it can be encoded again.
pub fn encode(picture: &mut Picture, colour: Colour, options: &EncodeOptions) -> Result<Vec<u8>> {
    let mut planes = picture.planes();
    let result = encode_planes(&mut planes, colour, options);
    picture.colour = planes.colour;
    result
}

/// [`encode`] of planes where the decoder left them ([`crate::decode::Decoder::decode_then`]).
pub fn encode_planes(
    planes: &mut Planes<'_>,
    colour: Colour,
    options: &EncodeOptions,
) -> Result<Vec<u8>> {
    planes.check()?;
    let colour = planes.colour.unwrap_or(colour);
    let (w, h) = options.output_size(planes.width, planes.height)?;
    #[cfg(feature = "turbojpeg")]
    if options.format == ImageFormat::Jpeg {
        return crate::turbo::encode_jpeg(planes, colour, (w, h), options.quality);
    }
    let rgb = yuv_to_rgb((planes.width, planes.height), planes.rows(), colour)?;
    let rgb = scale_rgb(rgb, (planes.width, planes.height), (w, h))?;
    encode_rgb(&rgb, w, h, options.format, options.quality)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(width: u32, height: u32, y: u8, u: u8, v: u8) -> Picture {
        let c = (width.div_ceil(2) * height.div_ceil(2)) as usize;
        Picture {
            width,
            height,
            y: vec![y; (width * height) as usize],
            u: vec![u; c],
            v: vec![v; c],
            colour: None,
        }
    }

    #[test]
    fn output_size_keeps_aspect() {
        let o = |w, h| EncodeOptions {
            width: w,
            height: h,
            ..EncodeOptions::new(ImageFormat::Jpeg)
        };
        assert_eq!(
            o(Some(640), None).output_size(1920, 1080).unwrap(),
            (640, 360)
        );
        assert_eq!(
            o(None, Some(360)).output_size(1920, 1080).unwrap(),
            (640, 360)
        );
        assert_eq!(
            o(Some(100), Some(50)).output_size(1920, 1080).unwrap(),
            (100, 50)
        );
        assert!(o(Some(0), None).output_size(1920, 1080).is_err());
        assert!(o(Some(100_000), None).output_size(1920, 1080).is_err());
        // Each side within bounds, but more pixels than DCI 8K: refused before and after the
        // source size is known; DCI 8K itself is allowed.
        let square = o(Some(MAX_OUTPUT_SIDE), Some(MAX_OUTPUT_SIDE));
        assert!(matches!(
            square.check(),
            Err(Error::TooManyOutputPixels { .. })
        ));
        assert!(matches!(
            o(Some(MAX_OUTPUT_SIDE), None).output_size(1280, 1280),
            Err(Error::TooManyOutputPixels { .. })
        ));
        assert_eq!(
            o(Some(8192), Some(4352)).output_size(1280, 720).unwrap(),
            (8192, 4352)
        );
    }

    #[test]
    fn limited_and_full_range_differ_as_they_should() {
        // Y=16 is black in limited range and dark grey in full range.
        let p = flat(4, 4, 16, 128, 128);
        let limited = to_rgb(
            &p,
            Colour {
                matrix: Matrix::Bt709,
                full_range: false,
            },
        )
        .unwrap();
        let full = to_rgb(
            &p,
            Colour {
                matrix: Matrix::Bt709,
                full_range: true,
            },
        )
        .unwrap();
        assert!(limited[0] <= 1, "limited Y=16 gave {}", limited[0]);
        assert!((14..=18).contains(&full[0]), "full Y=16 gave {}", full[0]);
    }

    #[test]
    fn matrix_matters_for_colour() {
        // A saturated red in BT.709 limited: Y=63 Cb=102 Cr=240.
        let p = flat(2, 2, 63, 102, 240);
        let bt709 = to_rgb(
            &p,
            Colour {
                matrix: Matrix::Bt709,
                full_range: false,
            },
        )
        .unwrap();
        let bt601 = to_rgb(
            &p,
            Colour {
                matrix: Matrix::Bt601,
                full_range: false,
            },
        )
        .unwrap();
        assert!(
            bt709[0] > 250 && bt709[1] < 8 && bt709[2] < 8,
            "bt709 red = {:?}",
            &bt709[..3]
        );
        assert!(
            bt601[0] < 245,
            "bt601 should read the BT.709 red differently: {:?}",
            &bt601[..3]
        );
    }

    #[test]
    fn encodes_odd_sizes() {
        let p = flat(33, 17, 120, 90, 200);
        for f in [ImageFormat::Jpeg, ImageFormat::Png] {
            let bytes = encode(&mut p.clone(), Colour::untagged(), &EncodeOptions::new(f)).unwrap();
            assert!(bytes.len() > 50);
        }
        let small = EncodeOptions {
            width: Some(10),
            ..EncodeOptions::new(ImageFormat::Png)
        };
        assert!(!encode(&mut p.clone(), Colour::untagged(), &small)
            .unwrap()
            .is_empty());
    }
}
