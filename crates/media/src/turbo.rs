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

/// What each thread keeps between pictures: making a compressor allocates libjpeg-turbo's state,
/// and a JPEG written into a fresh buffer grows it by doubling (a copy per step, fresh pages
/// each time).
struct Scratch {
    compressor: Compressor,
    /// Sized for the largest picture seen (libjpeg-turbo's worst case); only the pages written
    /// are ever touched.
    output: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn err(e: turbojpeg::Error) -> Error {
    Error::Encode(format!("libjpeg-turbo: {e}"))
}

/// Runs `f` with this thread's compressor set to `quality` and 4:2:0.
fn with_scratch<T>(quality: u8, f: impl FnOnce(&mut Scratch) -> Result<T>) -> Result<T> {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Scratch {
                compressor: Compressor::new().map_err(err)?,
                output: Vec::new(),
            });
        }
        let scratch = slot.as_mut().expect("just made");
        let c = &mut scratch.compressor;
        c.set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(err)?;
        c.set_subsamp(Subsamp::Sub2x2).map_err(err)?;
        f(scratch)
    })
}

/// Stretches limited-range planes to full range in place.
fn stretch(y: &mut [u8], u: &mut [u8], v: &mut [u8]) {
    y.iter_mut()
        .for_each(|b| *b = LUMA_TO_FULL[usize::from(*b)]);
    for b in u.iter_mut().chain(v.iter_mut()) {
        *b = CHROMA_TO_FULL[usize::from(*b)];
    }
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

/// Encodes `picture` as a `size` JPEG. A limited-range BT.601 picture encoded at its own size is
/// stretched to full range in place (its `colour` then says so): one pass, no copy.
pub fn encode_jpeg(
    picture: &mut Picture,
    colour: Colour,
    size: (u32, u32),
    quality: u8,
) -> Result<Vec<u8>> {
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
        return with_scratch(quality, |s| {
            s.compressor.compress_to_vec(image).map_err(err)
        });
    }
    let src = (picture.width, picture.height);
    let src_c = (picture.chroma_width(), picture.height.div_ceil(2));
    let dst_c = (w.div_ceil(2), h.div_ceil(2));
    let mut scaled: [Vec<u8>; 3];
    let planes: [&[u8]; 3] = if size == src {
        if !colour.full_range {
            stretch(&mut picture.y, &mut picture.u, &mut picture.v);
            picture.colour = Some(Colour {
                full_range: true,
                ..colour
            });
        }
        [&picture.y, &picture.u, &picture.v]
    } else {
        // Scaled first: the stretch then runs over the smaller planes.
        scaled = [
            scale_plane(&picture.y, src, size)?,
            scale_plane(&picture.u, src_c, dst_c)?,
            scale_plane(&picture.v, src_c, dst_c)?,
        ];
        if !colour.full_range {
            let [y, u, v] = &mut scaled;
            stretch(y, u, v);
        }
        [&scaled[0], &scaled[1], &scaled[2]]
    };
    // libjpeg-turbo reads whole 2x2 blocks: an odd-sized luma plane gets its last column and
    // row repeated.
    let y_stride = (w + (w & 1)) as usize;
    let padded;
    let y_plane = if y_stride != w as usize || h & 1 == 1 {
        padded = pad_luma(planes[0], w as usize, h as usize);
        &padded[..]
    } else {
        planes[0]
    };
    let image = YuvPlanesImage {
        y_plane,
        u_plane: planes[1],
        v_plane: planes[2],
        width: w as usize,
        height: h as usize,
        y_stride,
        u_stride: dst_c.0 as usize,
        v_stride: dst_c.0 as usize,
        subsamp: Subsamp::Sub2x2,
    };
    with_scratch(quality, |s| {
        let need = s.compressor.buf_len(w as usize, h as usize).map_err(err)?;
        if s.output.len() < need {
            // calloc'd: pages are mapped as libjpeg-turbo writes them, not here.
            s.output = vec![0; need];
        }
        let len = s
            .compressor
            .compress_yuv_planes_to_slice(&image, &mut s.output)
            .map_err(err)?;
        Ok(s.output[..len].to_vec())
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
    fn a_picture_stretched_in_place_encodes_the_same_again() {
        let (w, h) = (64u32, 48u32);
        let mut p = Picture {
            width: w,
            height: h,
            y: (0..w * h).map(|i| (16 + i % 220) as u8).collect(),
            u: (0..w * h / 4).map(|i| (16 + i % 225) as u8).collect(),
            v: vec![150; (w * h / 4) as usize],
            colour: None,
        };
        let original = p.clone();
        let limited = Colour {
            matrix: Matrix::Bt601,
            full_range: false,
        };
        let first = encode_jpeg(&mut p, limited, (w, h), 85).unwrap();
        assert_eq!(
            p.colour,
            Some(Colour {
                full_range: true,
                ..limited
            })
        );
        assert_eq!(p.y[0], LUMA_TO_FULL[usize::from(original.y[0])]);
        assert_eq!(p.u[5], CHROMA_TO_FULL[usize::from(original.u[5])]);
        // Encoded again through the public path, the picture's own colour now says full range.
        let options = crate::picture::EncodeOptions::new(crate::picture::ImageFormat::Jpeg);
        let again = crate::picture::encode(&mut p, limited, &options).unwrap();
        assert_eq!(first, again);
    }

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
