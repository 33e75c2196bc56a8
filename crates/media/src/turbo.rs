//! JPEG with libjpeg-turbo (feature `turbojpeg`), straight from the decoder's YUV planes.
//!
//! JPEG (JFIF) stores full-range BT.601 YCbCr 4:2:0, which is what a decoder hands out for most
//! streams up to a range change: a BT.601 picture skips the RGB round trip entirely (limited range
//! is stretched with two lookup tables, scaling is done per plane). Other matrices go through RGB,
//! since turning BT.709 YCbCr into BT.601 mixes the planes; libjpeg-turbo still encodes them.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use turbojpeg::{Compressor, PixelFormat, Subsamp, YuvPlanesImage};

use crate::decode::Picture;
use crate::picture::{scale_rgb, to_rgb};
use crate::sps::{Colour, Matrix};
use crate::{Error, Result};

/// Limited (16-235 / 16-240) to full (0-255) range, rounded: luma.
const LUMA_TO_FULL: [u8; 256] = range_table(16, 219, 0);
/// Limited to full range: chroma, around 128.
const CHROMA_TO_FULL: [u8; 256] = range_table(128, 224, 128);

const fn range_table(centre: i32, span: i32, offset: i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        // (i - centre) * 255 / span, rounded half away from zero.
        let num = (i as i32 - centre) * 255;
        let scaled = if num >= 0 {
            (2 * num + span) / (2 * span)
        } else {
            -((-2 * num + span) / (2 * span))
        };
        let v = scaled + offset;
        t[i] = if v < 0 {
            0
        } else if v > 255 {
            255
        } else {
            v as u8
        };
        i += 1;
    }
    t
}

thread_local! {
    /// One compressor per thread: making one allocates libjpeg-turbo's state.
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

fn with_compressor<T>(quality: u8, f: impl FnOnce(&mut Compressor) -> Result<T>) -> Result<T> {
    let err = |e: turbojpeg::Error| Error::Encode(format!("libjpeg-turbo: {e}"));
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Compressor::new().map_err(err)?);
        }
        let c = slot.as_mut().expect("just made");
        c.set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(err)?;
        c.set_subsamp(Subsamp::Sub2x2).map_err(err)?;
        f(c)
    })
}

/// Scales one 8-bit plane.
fn scale_plane(src: &[u8], from: (u32, u32), to: (u32, u32)) -> Result<Vec<u8>> {
    let err = |e: &dyn std::fmt::Display| Error::Encode(format!("scale plane: {e}"));
    let src = ImageRef::new(from.0, from.1, src, PixelType::U8).map_err(|e| err(&e))?;
    let mut dst = Image::new(to.0, to.1, PixelType::U8);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
        fast_image_resize::FilterType::Bilinear,
    ));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| err(&e))?;
    Ok(dst.into_vec())
}

/// Encodes `picture` as a `size` JPEG.
pub fn encode_jpeg(
    picture: &Picture,
    colour: Colour,
    size: (u32, u32),
    quality: u8,
) -> Result<Vec<u8>> {
    let err = |e: turbojpeg::Error| Error::Encode(format!("libjpeg-turbo: {e}"));
    let (w, h) = size;
    if colour.matrix != Matrix::Bt601 {
        let rgb = to_rgb(picture, colour)?;
        let rgb = scale_rgb(rgb, (picture.width, picture.height), size)?;
        let image = turbojpeg::Image {
            pixels: &rgb[..],
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: PixelFormat::RGB,
        };
        return with_compressor(quality, |c| c.compress_to_vec(image).map_err(err));
    }
    let src = (picture.width, picture.height);
    let src_c = (picture.chroma_width(), picture.height.div_ceil(2));
    let dst_c = (w.div_ceil(2), h.div_ceil(2));
    // Planes are borrowed when nothing changes, else made anew (scaled and/or range-stretched).
    let mut planes: [std::borrow::Cow<[u8]>; 3] = [
        picture.y.as_slice().into(),
        picture.u.as_slice().into(),
        picture.v.as_slice().into(),
    ];
    if size != src {
        planes = [
            scale_plane(&picture.y, src, size)?.into(),
            scale_plane(&picture.u, src_c, dst_c)?.into(),
            scale_plane(&picture.v, src_c, dst_c)?.into(),
        ];
    }
    if !colour.full_range {
        for (i, plane) in planes.iter_mut().enumerate() {
            let table = if i == 0 {
                &LUMA_TO_FULL
            } else {
                &CHROMA_TO_FULL
            };
            // One pass either way: a borrowed plane is mapped into a new buffer, a scaled one
            // in place.
            match plane {
                std::borrow::Cow::Borrowed(src) => {
                    *plane = src
                        .iter()
                        .map(|&b| table[usize::from(b)])
                        .collect::<Vec<u8>>()
                        .into()
                }
                std::borrow::Cow::Owned(v) => {
                    v.iter_mut().for_each(|b| *b = table[usize::from(*b)])
                }
            }
        }
    }
    // libjpeg-turbo reads whole 2x2 blocks: an odd-sized luma plane gets its last column and
    // row repeated.
    let y_stride = (w + (w & 1)) as usize;
    if y_stride != w as usize || h & 1 == 1 {
        planes[0] = pad_luma(&planes[0], w as usize, h as usize).into();
    }
    let image = YuvPlanesImage {
        y_plane: &planes[0][..],
        u_plane: &planes[1][..],
        v_plane: &planes[2][..],
        width: w as usize,
        height: h as usize,
        y_stride,
        u_stride: dst_c.0 as usize,
        v_stride: dst_c.0 as usize,
        subsamp: Subsamp::Sub2x2,
    };
    with_compressor(quality, |c| {
        c.compress_yuv_planes_to_vec(&image).map_err(err)
    })
}

/// Pads a `w` x `h` plane to even width and height by repeating the last column and row.
fn pad_luma(plane: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (pw, ph) = (w + (w & 1), h + (h & 1));
    let mut out = Vec::with_capacity(pw * ph);
    for row in 0..ph {
        let src = &plane[row.min(h - 1) * w..][..w];
        out.extend_from_slice(src);
        if pw > w {
            out.push(src[w - 1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_tables_stretch_limited_to_full() {
        assert_eq!(LUMA_TO_FULL[16], 0);
        assert_eq!(LUMA_TO_FULL[235], 255);
        assert_eq!(LUMA_TO_FULL[0], 0);
        assert_eq!(LUMA_TO_FULL[255], 255);
        assert_eq!(LUMA_TO_FULL[126], 128); // (126-16)*255/219 = 128.08
        assert_eq!(CHROMA_TO_FULL[128], 128);
        assert_eq!(CHROMA_TO_FULL[16], 0);
        assert_eq!(CHROMA_TO_FULL[240], 255);
        assert_eq!(CHROMA_TO_FULL[72], 64); // 128 - 56 * 255 / 224 = 64.25
    }
}
