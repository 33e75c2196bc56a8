//! JPEG with libjpeg-turbo (feature `turbojpeg`), straight from the decoder's YUV planes.
//!
//! JPEG (JFIF) stores full-range BT.601 YCbCr 4:2:0, which is what a decoder hands out for most
//! streams up to a range change: a BT.601 picture skips the RGB round trip entirely (limited
//! range is stretched in place by [`crate::range`], scaling is done per plane). Other matrices
//! go through RGB, since turning BT.709 YCbCr into BT.601 mixes the planes; libjpeg-turbo still
//! encodes them.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use turbojpeg::{Compressor, PixelFormat, Subsamp, YuvPlanesImage};

use crate::decode::Planes;
use crate::picture::{packed, scale_rgb, yuv_to_rgb};
use crate::range;
use crate::sps::{Colour, Matrix};
use crate::{Error, Result};

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

/// Stretches limited-range Y, U and V (each with its stride) to full range in place, over the
/// `luma` and `chroma` (width, height) of the picture.
fn stretch_all([y, u, v]: [(&mut [u8], usize); 3], luma: (usize, usize), chroma: (usize, usize)) {
    range::stretch(y.0, y.1, luma, range::Plane::Luma);
    range::stretch(u.0, u.1, chroma, range::Plane::Chroma);
    range::stretch(v.0, v.1, chroma, range::Plane::Chroma);
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

/// Encodes `planes` (checked by the caller) as a `size` JPEG. A limited-range BT.601 picture
/// encoded at its own size is stretched to full range in place (its `colour` then says so): one
/// pass, no copy.
pub fn encode_jpeg(
    planes: &mut Planes<'_>,
    colour: Colour,
    size: (u32, u32),
    quality: u8,
) -> Result<Vec<u8>> {
    let (w, h) = size;
    let src = (planes.width, planes.height);
    if colour.matrix != Matrix::Bt601 {
        let rgb = yuv_to_rgb(src, planes.rows(), colour)?;
        let rgb = scale_rgb(rgb, src, size)?;
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
    let luma = (src.0 as usize, src.1 as usize);
    let src_c = (planes.chroma_width(), planes.chroma_height());
    let chroma = (src_c.0 as usize, src_c.1 as usize);
    let dst_c = (w.div_ceil(2), h.div_ceil(2));
    let mut scaled: [Vec<u8>; 3];
    // (plane, stride) of what is encoded.
    let encoded: [(&[u8], usize); 3] = if size == src {
        if !colour.full_range {
            let Planes { y, u, v, .. } = planes;
            stretch_all(
                [(&mut *y.0, y.1), (&mut *u.0, u.1), (&mut *v.0, v.1)],
                luma,
                chroma,
            );
            planes.colour = Some(Colour {
                full_range: true,
                ..colour
            });
        }
        planes.rows()
    } else {
        // Scaled first: the stretch then runs over the smaller planes.
        scaled = [
            scale_plane(&packed(planes.y.0, planes.y.1, luma), src, size)?,
            scale_plane(&packed(planes.u.0, planes.u.1, chroma), src_c, dst_c)?,
            scale_plane(&packed(planes.v.0, planes.v.1, chroma), src_c, dst_c)?,
        ];
        if !colour.full_range {
            let [y, u, v] = &mut scaled;
            let (cw, ch) = (dst_c.0 as usize, dst_c.1 as usize);
            stretch_all(
                [(y, w as usize), (u, cw), (v, cw)],
                (w as usize, h as usize),
                (cw, ch),
            );
        }
        [
            (&scaled[0][..], w as usize),
            (&scaled[1][..], dst_c.0 as usize),
            (&scaled[2][..], dst_c.0 as usize),
        ]
    };
    // libjpeg-turbo reads whole 2x2 blocks: an odd-sized luma plane gets its last column and
    // row repeated.
    let padded;
    let (y_plane, y_stride) = if w & 1 == 1 || h & 1 == 1 {
        padded = pad_luma(encoded[0].0, encoded[0].1, w as usize, h as usize);
        (&padded[..], (w + (w & 1)) as usize)
    } else {
        encoded[0]
    };
    let image = YuvPlanesImage {
        y_plane,
        u_plane: encoded[1].0,
        v_plane: encoded[2].0,
        width: w as usize,
        height: h as usize,
        y_stride,
        u_stride: encoded[1].1,
        v_stride: encoded[2].1,
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

/// Pads a `w` x `h` plane (rows `stride` apart) to even width and height, tightly packed, by
/// repeating the last column and row.
fn pad_luma(plane: &[u8], stride: usize, w: usize, h: usize) -> Vec<u8> {
    let (pw, ph) = (w + (w & 1), h + (h & 1));
    let mut out = Vec::with_capacity(pw * ph);
    for row in 0..ph {
        let src = &plane[row.min(h - 1) * stride..][..w];
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
    use crate::decode::Picture;

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
        let mut planes = p.planes();
        let first = encode_jpeg(&mut planes, limited, (w, h), 85).unwrap();
        p.colour = planes.colour;
        assert_eq!(
            p.colour,
            Some(Colour {
                full_range: true,
                ..limited
            })
        );
        assert_eq!(p.y[0], range::LUMA_TO_FULL[usize::from(original.y[0])]);
        assert_eq!(p.u[5], range::CHROMA_TO_FULL[usize::from(original.u[5])]);
        // Encoded again through the public path, the picture's own colour now says full range.
        let options = crate::picture::EncodeOptions::new(crate::picture::ImageFormat::Jpeg);
        let again = crate::picture::encode(&mut p, limited, &options).unwrap();
        assert_eq!(first, again);
    }

    /// Planes with rows wider than the picture (as libavcodec's frames have) encode to the same
    /// bytes as the packed picture: full size, scaled, and odd sizes (the luma gets padded).
    #[test]
    fn strided_planes_encode_as_packed_ones() {
        for (w, h) in [(64u32, 48u32), (63, 47), (64, 47), (63, 48)] {
            let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
            let noise = |i: usize, k: usize| (16 + (i * 7919 + k * 104729) % 220) as u8;
            let packed = Picture {
                width: w,
                height: h,
                y: (0..(w * h) as usize).map(|i| noise(i, 1)).collect(),
                u: (0..cw * ch).map(|i| noise(i, 2)).collect(),
                v: (0..cw * ch).map(|i| noise(i, 3)).collect(),
                colour: None,
            };
            // The same picture with 32 bytes of junk after each row and 3 junk rows below.
            let widen = |plane: &[u8], pw: usize, rows: usize| -> Vec<u8> {
                let mut out = Vec::new();
                for r in 0..rows + 3 {
                    match plane.chunks(pw).nth(r) {
                        Some(row) => out.extend_from_slice(row),
                        None => out.extend(std::iter::repeat_n(0xee, pw)),
                    }
                    out.extend(std::iter::repeat_n(0x11, 32));
                }
                out
            };
            let (y, u, v) = (
                widen(&packed.y, w as usize, h as usize),
                widen(&packed.u, cw, ch),
                widen(&packed.v, cw, ch),
            );
            let limited = Colour {
                matrix: Matrix::Bt601,
                full_range: false,
            };
            for size in [(w, h), (32, 24)] {
                let mut p = packed.clone();
                let expected = encode_jpeg(&mut p.planes(), limited, size, 85).unwrap();
                let mut strided = Planes {
                    width: w,
                    height: h,
                    y: (&mut y.clone()[..], w as usize + 32),
                    u: (&mut u.clone()[..], cw + 32),
                    v: (&mut v.clone()[..], cw + 32),
                    colour: None,
                };
                strided.check().unwrap();
                let got = encode_jpeg(&mut strided, limited, size, 85).unwrap();
                assert!(got == expected, "{w}x{h} -> {size:?}");
            }
        }
    }
}
