//! A matrix product without packing (AVX-512, or AVX2 with FMA), for the small products of small
//! networks: `dst ← a·b` (or `dst + a·b`) where `b` is row-major and small enough to stay in L1
//! (at most [`MAX_B`] values) and the inner dimension is at most [`MAX_INNER`].
//!
//! The gemm crate packs its operands on every call, and at the quickstart's shapes (32-128-10,
//! batches of 4 to 512) that copy and its set-up cost more than the products: a batch of 4's
//! forward product through the logit layer took 0.93 µs there and 0.22 µs here, the first layer's
//! 0.38 µs and 0.24 µs; at a batch of 512, 26 µs and 16 µs for the logit layer
//! (`examples/thinbench.rs`, docs/performance.md). Here a tile of up to 8 rows × 16 columns, or
//! 4 rows × 64, of `dst` stays in registers while the inner index runs: one broadcast value of
//! `a` times one row of `b` (read in place) per step. With AVX2 (16 registers of 8 lanes instead
//! of 32 of 16) the tiles are 8 rows × 8 columns or 6 × 16, and the row tiles run outside the
//! column blocks; on a CPU without AVX-512 this took the quickstart from 2.5 to 2.1 s with the
//! fused evaluation head's AVX2 form (docs/performance.md, "Machines without AVX-512").
//!
//! Each element of `dst` is formed as the gemm crate forms it for inner dimensions up to its
//! 512-deep block: fused multiply-adds from zero in ascending inner order, then added to `dst` if
//! accumulating. So the results are bit for bit the gemm crate's (a test compares them over
//! shapes on both sides of every tile edge), and a run computes what it computed before this
//! kernel existed, at either level (the gemm crate's AVX-512 and AVX2 kernels sum alike). Products
//! beyond the limits, and CPUs without AVX2 and FMA, go to the gemm crate.

use super::isa::Isa;
use super::ops::MatRef;

/// The deepest inner dimension served: the gemm crate's block, within which it sums in order.
pub const MAX_INNER: usize = 512;
/// The most values of `b` served (32 KiB: `b` stays in L1 while every row tile streams it).
pub const MAX_B: usize = 8192;

/// Whether a product of these shapes and strides goes to this kernel (on a CPU with AVX2 or
/// AVX-512F, and FMA). Measured against the gemm crate (one thread): products whose `b` is larger
/// than L1 or whose inner dimension is deeper ran 10–50% slower here (`examples/thinbench.rs`).
/// Products of one row or one column, or an inner dimension of 1 or 2, are left to the gemm
/// crate too: it computes them by other routines (matrix-vector, outer products) whose rounding
/// this kernel does not reproduce.
pub fn serves(a: &MatRef, b: &MatRef) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    b.col_stride == 1
        && (3..=MAX_INNER).contains(&k)
        && k.saturating_mul(n) <= MAX_B
        && m >= 2
        && n >= 2
}

/// Whether [`serves`] and this CPU runs the kernel (AVX-512F or AVX2, with FMA): a product of
/// these views passed to `ops::matmul_into` runs here.
pub fn takes(a: &MatRef, b: &MatRef) -> bool {
    serves(a, b) && Isa::detected() != Isa::Portable
}

/// `dst ← a·b`, or `dst ← dst + a·b` with `accumulate`, if [`serves`] and the CPU has AVX-512F or
/// AVX2, with FMA ([`Isa::detected`]); returns `false`, touching nothing, otherwise — also when
/// the shapes do not agree (`dst` not `a.rows × b.cols`, `a.cols ≠ b.rows`) or a view reaches
/// outside its slice (`ops::matmul_into` rejects both first, with an error).
pub(crate) fn try_matmul(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) -> bool {
    try_matmul_on(Isa::detected(), dst, a, b, accumulate)
}

/// [`try_matmul`] at the level `isa`, if this CPU runs it (`false` for [`Isa::Portable`]).
fn try_matmul_on(isa: Isa, dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) -> bool {
    if !serves(&a, &b)
        || b.rows != a.cols
        || a.rows.checked_mul(b.cols) != Some(dst.len())
        || !a.in_bounds()
        || !b.in_bounds()
        || !isa.runs_here()
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY (both): the CPU runs the level's instructions, the shapes agree and the views
        // lie inside their slices (all checked above).
        Isa::Avx512 => {
            unsafe { avx512::matmul(dst, &a, &b, accumulate) };
            return true;
        }
        Isa::Avx2 => {
            unsafe { avx2::matmul(dst, &a, &b, accumulate) };
            return true;
        }
        Isa::Portable => {}
    }
    let _ = accumulate;
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::MatRef;

    /// The product in column blocks of up to 64 and row tiles of 8 (one vector of columns) or 4.
    ///
    /// # Safety
    /// AVX-512F and FMA; `dst` holds `a.rows × b.cols` values, `a.cols = b.rows`, and every
    /// element the views name lies inside their slices.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn matmul(dst: &mut [f32], a: &MatRef, b: &MatRef, acc: bool) {
        let (m, n) = (a.rows, b.cols);
        let mut j0 = 0;
        while j0 < n {
            let width = (n - j0).min(64);
            let nv = width.div_ceil(16);
            let last = width - 16 * (nv - 1);
            let mask: __mmask16 = if last == 16 { 0xFFFF } else { (1 << last) - 1 };
            let t = Tile {
                a,
                b,
                j0,
                mask,
                acc,
            };
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min(if nv == 1 { 8 } else { 4 });
                macro_rules! by_rows {
                    ($nv:literal: $($r:literal)*) => {
                        match rows {
                            // SAFETY: (caller) rows r0 … r0 + rows − 1 and columns j0 … j0 +
                            // width − 1 lie inside the product.
                            $($r => unsafe { t.run::<$r, $nv>(dst, n, r0) },)*
                            _ => unreachable!("row tiles hold 1 to 8 rows"),
                        }
                    };
                }
                match nv {
                    1 => by_rows!(1: 1 2 3 4 5 6 7 8),
                    2 => by_rows!(2: 1 2 3 4),
                    3 => by_rows!(3: 1 2 3 4),
                    _ => by_rows!(4: 1 2 3 4),
                }
                r0 += rows;
            }
            j0 += width;
        }
    }

    /// One column block of the product.
    struct Tile<'t, 'd> {
        a: &'t MatRef<'d>,
        b: &'t MatRef<'d>,
        /// First column of the block.
        j0: usize,
        /// Lanes of the block's last vector that are columns.
        mask: __mmask16,
        acc: bool,
    }

    impl Tile<'_, '_> {
        /// Rows r0 … r0 + R − 1 of the block's `NV` vectors of columns.
        ///
        /// # Safety
        /// As [`matmul`], with those rows and the block's columns inside the product.
        #[inline(always)]
        unsafe fn run<const R: usize, const NV: usize>(
            &self,
            dst: &mut [f32],
            n: usize,
            r0: usize,
        ) {
            let (a, b) = (self.a, self.b);
            // SAFETY: (caller) every offset below names an element of a, b or dst: a's rows
            // r0 … r0 + R − 1 and columns 0 … k − 1, b's rows 0 … k − 1 and the block's columns
            // (the last vector masked to the columns that exist), dst's rows and columns likewise.
            unsafe {
                let mut t = [[_mm512_setzero_ps(); NV]; R];
                for p in 0..a.cols {
                    let row = b.data.as_ptr().add(p * b.row_stride + self.j0);
                    let mut bv = [_mm512_setzero_ps(); NV];
                    for (v, x) in bv.iter_mut().enumerate() {
                        *x = if v + 1 == NV {
                            _mm512_maskz_loadu_ps(self.mask, row.add(16 * v))
                        } else {
                            _mm512_loadu_ps(row.add(16 * v))
                        };
                    }
                    for (r, tr) in t.iter_mut().enumerate() {
                        let at = (r0 + r) * a.row_stride + p * a.col_stride;
                        let av = _mm512_set1_ps(*a.data.get_unchecked(at));
                        for (x, bx) in tr.iter_mut().zip(&bv) {
                            *x = _mm512_fmadd_ps(av, *bx, *x);
                        }
                    }
                }
                for (r, tr) in t.iter().enumerate() {
                    for (v, x) in tr.iter().enumerate() {
                        let out = dst.as_mut_ptr().add((r0 + r) * n + self.j0 + 16 * v);
                        let m = if v + 1 == NV { self.mask } else { 0xFFFF };
                        let x = if self.acc {
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), *x)
                        } else {
                            *x
                        };
                        _mm512_mask_storeu_ps(out, m, x);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::MatRef;

    /// The product in tiles of up to 8 rows × 8 columns, or 6 rows × 16: at most 12 accumulators
    /// of the 16 registers, as the gemm crate's AVX2 tiles. Wider tiles, with fewer rows, and
    /// column blocks outside the row tiles (as the AVX-512 kernel has them) ran slower
    /// (`examples/thinbench.rs`).
    ///
    /// # Safety
    /// AVX2 and FMA; `dst` holds `a.rows × b.cols` values, `a.cols = b.rows`, and every element
    /// the views name lies inside their slices.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matmul(dst: &mut [f32], a: &MatRef, b: &MatRef, acc: bool) {
        let (m, n) = (a.rows, b.cols);
        // The lanes of the last block's last vector that are columns (blocks start at multiples
        // of 16, so only the last one can end inside a vector).
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((n % 8) as i32), lanes);
        // Row tiles outside, column blocks inside: the tile's rows of `a` stay in L1 while
        // every block of `b` (at most MAX_B values, 32 KiB) passes.
        let tile_rows = if n <= 8 { 8 } else { 6 };
        let mut r0 = 0;
        while r0 < m {
            let rows = (m - r0).min(tile_rows);
            let mut j0 = 0;
            while j0 < n {
                let width = (n - j0).min(16);
                let nv = width.div_ceil(8);
                let last = width - 8 * (nv - 1);
                let t = Tile {
                    a,
                    b,
                    j0,
                    mask,
                    acc,
                };
                macro_rules! by_rows {
                    ($nv:literal, $masked:literal: $($r:literal)*) => {
                        match rows {
                            // SAFETY: (caller) rows r0 … r0 + rows − 1 and columns j0 … j0 +
                            // width − 1 lie inside the product.
                            $($r => unsafe { t.run::<$r, $nv, $masked>(dst, n, r0) },)*
                            _ => unreachable!("row tiles hold 1 to 8 rows"),
                        }
                    };
                }
                // Masked loads and stores only where the block ends inside a vector.
                match (nv, last < 8) {
                    (1, false) => by_rows!(1, false: 1 2 3 4 5 6 7 8),
                    (1, true) => by_rows!(1, true: 1 2 3 4 5 6 7 8),
                    (_, false) => by_rows!(2, false: 1 2 3 4 5 6),
                    (_, true) => by_rows!(2, true: 1 2 3 4 5 6),
                }
                j0 += width;
            }
            r0 += rows;
        }
    }

    /// One column block of the product.
    struct Tile<'t, 'd> {
        a: &'t MatRef<'d>,
        b: &'t MatRef<'d>,
        /// First column of the block.
        j0: usize,
        /// Lanes of the block's last vector that are columns (all bits set in each).
        mask: __m256i,
        acc: bool,
    }

    impl Tile<'_, '_> {
        /// Rows r0 … r0 + R − 1 of the block's `NV` vectors of columns, the last one masked if
        /// `MASKED`.
        ///
        /// # Safety
        /// As [`matmul`], with those rows and the block's columns inside the product.
        #[inline(always)]
        unsafe fn run<const R: usize, const NV: usize, const MASKED: bool>(
            &self,
            dst: &mut [f32],
            n: usize,
            r0: usize,
        ) {
            let (a, b) = (self.a, self.b);
            // SAFETY: (caller) every offset below names an element of a, b or dst: a's rows
            // r0 … r0 + R − 1 and columns 0 … k − 1, b's rows 0 … k − 1 and the block's columns
            // (the last vector masked to the columns that exist), dst's rows and columns likewise.
            unsafe {
                let mut t = [[_mm256_setzero_ps(); NV]; R];
                for p in 0..a.cols {
                    let row = b.data.as_ptr().add(p * b.row_stride + self.j0);
                    let mut bv = [_mm256_setzero_ps(); NV];
                    for (v, x) in bv.iter_mut().enumerate() {
                        *x = if MASKED && v + 1 == NV {
                            _mm256_maskload_ps(row.add(8 * v), self.mask)
                        } else {
                            _mm256_loadu_ps(row.add(8 * v))
                        };
                    }
                    for (r, tr) in t.iter_mut().enumerate() {
                        let at = (r0 + r) * a.row_stride + p * a.col_stride;
                        let av = _mm256_set1_ps(*a.data.get_unchecked(at));
                        for (x, bx) in tr.iter_mut().zip(&bv) {
                            *x = _mm256_fmadd_ps(av, *bx, *x);
                        }
                    }
                }
                for (r, tr) in t.iter().enumerate() {
                    for (v, x) in tr.iter().enumerate() {
                        let out = dst.as_mut_ptr().add((r0 + r) * n + self.j0 + 8 * v);
                        if MASKED && v + 1 == NV {
                            let x = if self.acc {
                                _mm256_add_ps(_mm256_maskload_ps(out, self.mask), *x)
                            } else {
                                *x
                            };
                            _mm256_maskstore_ps(out, self.mask, x);
                        } else {
                            let x = if self.acc {
                                _mm256_add_ps(_mm256_loadu_ps(out), *x)
                            } else {
                                *x
                            };
                            _mm256_storeu_ps(out, x);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::matmul_gemm_crate;

    fn values(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let v = (i.wrapping_mul(2_654_435_761).wrapping_add(salt * 7919) % 4001) as f32;
                v / 4001.0 - 0.5
            })
            .collect()
    }

    /// The levels whose kernel this CPU runs.
    fn levels() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.runs_here())
            .collect()
    }

    #[test]
    fn matches_the_gemm_crate_bit_for_bit_across_tile_edges() {
        let mut served = 0;
        for &m in &[2, 3, 4, 5, 7, 8, 9, 10, 17, 33, 100, 600] {
            for &k in &[3, 4, 31, 128, 500, 512] {
                for &n in &[2, 5, 10, 15, 16, 17, 33, 64, 65, 100, 128] {
                    for transposed in [false, true] {
                        if k * n > MAX_B {
                            continue;
                        }
                        let salt = (m * 1_000_000 + k * 1000 + n) as u64;
                        let av = values(m * k, salt);
                        let bv = values(k * n, salt + 1);
                        // a row-major, or the transposed view of a row-major k × m (as the
                        // weight gradients read the batch).
                        let a = if transposed {
                            MatRef::row_major(&av, k, m).t()
                        } else {
                            MatRef::row_major(&av, m, k)
                        };
                        let b = MatRef::row_major(&bv, k, n);
                        for accumulate in [false, true] {
                            let start = values(m * n, salt + 2);
                            let mut want = start.clone();
                            matmul_gemm_crate(&mut want, a, b, accumulate).unwrap();
                            let mut got = start.clone();
                            assert_eq!(
                                try_matmul(&mut got, a, b, accumulate),
                                Isa::detected() != Isa::Portable
                            );
                            for isa in levels() {
                                let mut got = start.clone();
                                assert!(try_matmul_on(isa, &mut got, a, b, accumulate));
                                let same = want
                                    .iter()
                                    .zip(&got)
                                    .all(|(x, y)| x.to_bits() == y.to_bits());
                                assert!(
                                    same,
                                    "{isa}: {m}×{k}·{k}×{n}, a transposed {transposed}, \
                                     accumulate {accumulate}"
                                );
                                served += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            served > 1000 * levels().len(),
            "{served} products compared at {:?}",
            levels()
        );
    }

    #[test]
    fn a_narrow_gradient_formed_in_place_is_the_transpose_of_the_gemm_crates() {
        // The mlp's logit-layer weight gradient at small batches: aᵀ·dZ here against (dZᵀ·a)ᵀ
        // by the gemm crate (the same sums with the factors swapped).
        for (isa, rows) in levels()
            .into_iter()
            .flat_map(|i| [3, 4, 7, 16, 33].map(|r| (i, r)))
        {
            let (fan_in, out) = (128, 10);
            let act = values(rows * fan_in, rows as u64);
            let dz = values(rows * out, 100 + rows as u64);
            let a = MatRef::row_major(&act, rows, fan_in);
            let d = MatRef::row_major(&dz, rows, out);
            let mut narrow = vec![0.0; out * fan_in];
            matmul_gemm_crate(&mut narrow, d.t(), a, false).unwrap();
            let mut got = vec![0.0; fan_in * out];
            assert!(try_matmul_on(isa, &mut got, a.t(), d, false));
            for i in 0..fan_in {
                for c in 0..out {
                    let (g, w) = (got[i * out + c], narrow[c * fan_in + i]);
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{isa}, rows {rows}, ({i}, {c}): {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn leaves_deep_wide_and_strided_products_to_the_gemm_crate() {
        let v = vec![1.0f32; 1 << 20];
        let rm = |r, c| MatRef::row_major(&v[..r * c], r, c);
        // The quickstart's step at any batch size, forward and weight gradients.
        assert!(serves(&rm(4, 32), &rm(32, 128)));
        assert!(serves(&rm(512, 128), &rm(128, 10)));
        assert!(serves(&rm(64, 10).t(), &rm(64, 128)));
        // Deeper than the gemm crate's block: its sums are blocked, so they would differ.
        assert!(!serves(&rm(16, 513), &rm(513, 10)));
        // Its matrix-vector and outer-product routines.
        assert!(!serves(&rm(1, 32), &rm(32, 128)));
        assert!(!serves(&rm(16, 32), &rm(32, 1)));
        assert!(!serves(&rm(16, 2), &rm(2, 128)));
        // b larger than L1, and b read along columns (the input gradient's Wᵀ).
        assert!(!serves(&rm(64, 512), &rm(512, 64)));
        assert!(!serves(&rm(16, 10), &rm(128, 10).t()));
        let mut dst = vec![0.0; 16 * 10];
        assert!(!try_matmul(&mut dst, rm(16, 513), rm(513, 10), false));
        assert!(dst.iter().all(|&x| x == 0.0));
        // A view reaching past its slice is refused, not read.
        let short = MatRef {
            rows: 16,
            ..rm(15, 32)
        };
        assert!(!try_matmul(
            &mut vec![0.0; 16 * 128],
            short,
            rm(32, 128),
            false
        ));
    }
}
