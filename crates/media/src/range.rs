//! Limited-range (video) YCbCr to full-range (JPEG) YCbCr, in place, one plane at a time.
//!
//! JPEG stores full-range samples, most streams carry limited-range ones (luma 16-235, chroma
//! 16-240 around 128), so every limited-range picture is stretched before it is encoded from its
//! planes. Two forms, equal to the last bit (test `the_vector_path_equals_the_tables`):
//! - lookup tables, rounded half away from zero: the reference, and the tail of each row;
//! - fixed point, `((v - centre) * k + round) >> shift`, which one x86 instruction
//!   (`pmulhrsw`, a rounded high multiply of 16-bit lanes) computes for 16 samples at a time:
//!   luma `((y - 16) * 19077 + 2^13) >> 14`, chroma `((c - 128) * 9327 + 2^12) >> 13` (plus 128),
//!   saturated to 0-255.
//!
//! Written by hand: the colour-conversion crates convert between layouts (YUV to RGB, planar to
//! packed) but none stretches planes in place, and a table lookup per byte was 3-4 % of the
//! server's CPU with every picture pictured (docs/performance.md).

/// Which plane is stretched: luma and chroma have different ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// 16-235 to 0-255.
    Luma,
    /// 16-240 to 0-255, around 128.
    Chroma,
}

impl Plane {
    /// The lookup table of this plane.
    pub fn table(self) -> &'static [u8; 256] {
        match self {
            Plane::Luma => &LUMA_TO_FULL,
            Plane::Chroma => &CHROMA_TO_FULL,
        }
    }
}

/// Limited to full range, rounded: luma.
pub const LUMA_TO_FULL: [u8; 256] = range_table(16, 219, 0);
/// Limited to full range: chroma, around 128.
pub const CHROMA_TO_FULL: [u8; 256] = range_table(128, 224, 128);

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

/// Stretches the first `width` bytes of each of the first `height` rows of `plane` (rows
/// `stride` apart) to full range, with the fastest path this CPU has.
pub fn stretch(plane: &mut [u8], stride: usize, (width, height): (usize, usize), which: Plane) {
    let vector = vector::available();
    for row in plane.chunks_mut(stride.max(1)).take(height) {
        let row_len = width.min(row.len());
        let row = &mut row[..row_len];
        let done = if vector {
            vector::stretch(row, which)
        } else {
            0
        };
        stretch_with_table(&mut row[done..], which);
    }
}

/// Stretches every byte of `samples` through the lookup table.
pub fn stretch_with_table(samples: &mut [u8], which: Plane) {
    let table = which.table();
    samples.iter_mut().for_each(|b| *b = table[usize::from(*b)]);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vector {
    use std::arch::x86_64::*;

    use super::Plane;

    /// True when this CPU has AVX2 (std caches the answer).
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// Stretches the longest prefix of `row` that is a multiple of 32 bytes; returns its length.
    /// Call only when [`available`] says so.
    pub fn stretch(row: &mut [u8], which: Plane) -> usize {
        debug_assert!(available());
        // SAFETY: the caller checked that the CPU has AVX2.
        unsafe {
            match which {
                Plane::Luma => stretch_avx2::<true>(row),
                Plane::Chroma => stretch_avx2::<false>(row),
            }
        }
    }

    /// 32 samples per step: widened to 16-bit lanes, centred, scaled up so that `pmulhrsw`'s
    /// `(x * k + 2^14) >> 15` is the fixed-point form of the module's doc, re-centred, packed
    /// back with saturation to 0-255.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn stretch_avx2<const LUMA: bool>(row: &mut [u8]) -> usize {
        let (centre, k, offset) = if LUMA {
            (16, 19077, 0)
        } else {
            (128, 9327, 128)
        };
        let zero = _mm256_setzero_si256();
        let centre = _mm256_set1_epi16(centre);
        let k = _mm256_set1_epi16(k);
        let offset = _mm256_set1_epi16(offset);
        let done = row.len() / 32 * 32;
        for chunk in row[..done].chunks_exact_mut(32) {
            let p = chunk.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `chunk` is 32 writable bytes; the unaligned load and store need no more.
            let v = unsafe { _mm256_loadu_si256(p) };
            // Within each 128-bit lane: bytes 0-7 and 8-15 widened; packus undoes the split.
            let halves = [_mm256_unpacklo_epi8(v, zero), _mm256_unpackhi_epi8(v, zero)].map(|x| {
                let centred = _mm256_sub_epi16(x, centre);
                // Luma: x 2 (shift 14 = 15 - 1); chroma: x 4 (shift 13 = 15 - 2).
                let scaled = if LUMA {
                    _mm256_slli_epi16::<1>(centred)
                } else {
                    _mm256_slli_epi16::<2>(centred)
                };
                _mm256_add_epi16(_mm256_mulhrs_epi16(scaled, k), offset)
            });
            // SAFETY: as for the load.
            unsafe { _mm256_storeu_si256(p, _mm256_packus_epi16(halves[0], halves[1])) };
        }
        done
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod vector {
    use super::Plane;

    pub fn available() -> bool {
        false
    }

    pub fn stretch(_row: &mut [u8], _which: Plane) -> usize {
        0
    }
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

    /// The fixed-point forms the vector path computes equal the tables for every byte.
    #[test]
    fn the_fixed_point_forms_equal_the_tables() {
        for v in 0..=255i32 {
            let luma = (((v - 16) * 19077 + (1 << 13)) >> 14).clamp(0, 255);
            let chroma = ((((v - 128) * 9327 + (1 << 12)) >> 13) + 128).clamp(0, 255);
            assert_eq!(luma, i32::from(LUMA_TO_FULL[v as usize]), "luma {v}");
            assert_eq!(chroma, i32::from(CHROMA_TO_FULL[v as usize]), "chroma {v}");
        }
    }

    /// Every byte value at every position of a 32-byte step, rows whose width is not a multiple
    /// of 32 (the tail goes through the table), bytes past the width and rows past the height
    /// left alone: the same as the table alone.
    #[test]
    fn the_vector_path_equals_the_tables() {
        assert!(
            !cfg!(target_arch = "x86_64") || vector::available(),
            "this x86-64 CPU has no AVX2: the vector path would go untested"
        );
        for which in [Plane::Luma, Plane::Chroma] {
            for (width, stride, height) in [(256, 256, 9), (1000, 1024, 5), (31, 40, 3), (0, 8, 2)]
            {
                let original: Vec<u8> = (0..stride * (height + 1))
                    .map(|i| (i * 7 + i / 256) as u8)
                    .collect();
                let mut fast = original.clone();
                stretch(&mut fast, stride, (width, height), which);
                let mut expected = original.clone();
                for row in expected.chunks_mut(stride).take(height) {
                    stretch_with_table(&mut row[..width], which);
                }
                assert!(
                    fast == expected,
                    "{which:?} {width}x{height} stride {stride}"
                );
                assert_eq!(fast[stride * height..], original[stride * height..]);
            }
        }
    }

    /// A last row shorter than the stride (a plane cut right after its last pixel) is fine.
    #[test]
    fn a_short_last_row_is_stretched_to_its_end() {
        let mut plane = vec![16u8; 64 + 40];
        stretch(&mut plane, 64, (40, 2), Plane::Luma);
        assert!(plane[..40].iter().all(|&b| b == 0));
        assert!(plane[40..64].iter().all(|&b| b == 16));
        assert!(plane[64..].iter().all(|&b| b == 0));
    }
}
