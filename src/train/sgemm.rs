//! A packed AVX-512 `f32` matrix product for the one case the gemm crate runs slowly: `dst ← a·b`
//! with `a` column-major (the transposed view of a row-major matrix) and `b` row-major, a long
//! inner dimension and a wide result. That is a dense layer's weight gradient `xᵀ·∂z` at a large
//! batch (the batch is the inner dimension).
//!
//! Timed alone (best of 60 calls, one thread, the MLP's first layer, 784×B · B×800): at B = 1024
//! the gemm crate runs this product at 81–93 GFLOP/s and this kernel at 98–103; at B = 512,
//! 82–93 and 94–103 (docs/performance.md). The gemm crate stays in charge of every other shape,
//! and of this one on CPUs without AVX-512.
//!
//! The blocking is BLIS's, with the loops over the two operands swapped: for each block of
//! [`KC`] inner indices the whole of `a` is packed into panels of [`MR`] rows (the panel in use
//! stays in L1), then `b` in column blocks of [`NC`] packed into panels of [`NR`] columns (the
//! block stays in L2), and a micro-kernel keeps an `MR × NR` tile of `dst` in 28 vector
//! registers over the `KC` products. Each element of `dst` is a sum over the inner index in a
//! fixed order (ascending within a block, blocks in order), so results are the same from call
//! to call; they differ from the gemm crate's in the last bits.

use std::cell::RefCell;

use super::isa::Isa;
use super::ops::MatRef;

/// Rows of a micro-tile.
const MR: usize = 14;
/// 16-lane vectors per micro-tile row.
const NV: usize = 2;
/// Columns of a micro-tile.
const NR: usize = 16 * NV;
/// Inner indices per packed block.
const KC: usize = 256;
/// Columns of `b` packed at once (a multiple of [`NR`], so only the last block has a partial panel).
const NC: usize = 480;
// The tile, one row of `b` and a broadcast value must fit in the 32 vector registers.
const _: () = assert!(NC.is_multiple_of(NR) && MR * NV + NV < 32);
/// The smallest shape served (rows of `dst`, columns of `dst`, inner dimension). From 512 inner
/// indices on, the gemm crate packs blocks of at least 512 (its `kernel_params`), too many for its
/// 64-row panels to stay in L1, and this kernel's blocks of 256 run faster; below, the two run
/// level. Packing `a` costs one strided pass per product, which narrow products cannot repay: at
/// 784 × 1024 · 1024 × n this kernel is 10–40% slower than the gemm crate for n = 64 and 128,
/// level at 256 and 512, and 10–20% faster at 384 and 800 (timed alone, best of 60 calls).
const MIN_ROWS: usize = 128;
const MIN_COLS: usize = 384;
const MIN_INNER: usize = 512;

/// A 64-byte-aligned run of 16 values, the unit of the packing buffers.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Each thread's packing buffers for `a` and `b`, grown to the largest product seen.
    static PACKED: RefCell<(Vec<Line>, Vec<Line>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `len` values of `lines`, grown if needed.
fn values(lines: &mut Vec<Line>, len: usize) -> &mut [f32] {
    let need = len.div_ceil(16);
    if lines.len() < need {
        lines.resize(need, Line([0.0; 16]));
    }
    // SAFETY: a Line is exactly 16 f32s (repr(C), no padding), and `need` lines hold ≥ len.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), len) }
}

/// `dst ← a·b` (`dst ← dst + a·b` with `accumulate`) when this kernel serves the shape: a
/// column-major `a`, a row-major `b`, every side large enough, and AVX-512 on this CPU.
/// Returns `false`, touching nothing, otherwise.
///
/// Shapes that do not agree (`a.cols ≠ b.rows`, `dst` not `a.rows × b.cols`) are not served either;
/// views that reach outside their slices panic in the packing (`ops::matmul_into` rejects both
/// first, with an error).
pub(crate) fn try_matmul(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if a.row_stride != 1
        || b.col_stride != 1
        || b.rows != k
        || m.checked_mul(n) != Some(dst.len())
        || m < MIN_ROWS
        || n < MIN_COLS
        || k < MIN_INNER
        || !avx512()
    {
        return false;
    }
    PACKED.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let (a_lines, b_lines) = &mut *bufs;
        let panels = m.div_ceil(MR);
        let kc_max = KC.min(k);
        let pa = values(a_lines, panels * MR * kc_max);
        let pb = values(b_lines, NC.min(n).div_ceil(NR) * NR * kc_max);
        let mut tile = [0.0f32; MR * NR];
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            // Later inner blocks add to what the earlier ones wrote.
            let acc = accumulate || p0 > 0;
            pack_a(&mut pa[..panels * MR * kc], &a, p0, kc);
            let mut j0 = 0;
            while j0 < n {
                let nc = NC.min(n - j0);
                let pb = &mut pb[..nc.div_ceil(NR) * NR * kc];
                pack_b(pb, &b, p0, kc, j0, nc);
                for (ip, a_panel) in pa.chunks_exact(MR * kc).take(panels).enumerate() {
                    let r0 = ip * MR;
                    let rows = MR.min(m - r0);
                    for (jp, b_panel) in pb.chunks_exact(NR * kc).enumerate() {
                        let c0 = j0 + jp * NR;
                        let cols = NR.min(n - c0);
                        let at = r0 * n + c0;
                        if rows == MR && cols == NR {
                            // SAFETY: AVX-512 is present (checked above); the panels hold MR·kc
                            // and NR·kc values; the tile's last row ends at (r0+MR−1)·n + c0 + NR
                            // ≤ m·n = dst.len(), so the slice from `at` holds (MR−1)·n + NR.
                            unsafe { kernel(kc, a_panel, b_panel, &mut dst[at..], n, acc) };
                        } else {
                            // SAFETY: as above, into a full MR × NR scratch tile (stride NR).
                            unsafe { kernel(kc, a_panel, b_panel, &mut tile, NR, false) };
                            for (i, t) in tile.chunks_exact(NR).take(rows).enumerate() {
                                let d = &mut dst[at + i * n..at + i * n + cols];
                                if acc {
                                    d.iter_mut().zip(t).for_each(|(d, t)| *d += t);
                                } else {
                                    d.copy_from_slice(&t[..cols]);
                                }
                            }
                        }
                    }
                }
                j0 += nc;
            }
            p0 += kc;
        }
    });
    true
}

/// Whether this build runs AVX-512 kernels on this CPU ([`Isa::detected`]).
fn avx512() -> bool {
    Isa::detected() == Isa::Avx512
}

/// Packs inner indices `p0..p0+kc` of the column-major `a` into panels of [`MR`] rows: panel
/// `ip` holds, for each inner index in turn, its MR rows (zeros past the last row).
fn pack_a(pa: &mut [f32], a: &MatRef, p0: usize, kc: usize) {
    let m = a.rows;
    for (ip, panel) in pa.chunks_exact_mut(MR * kc).enumerate() {
        let r0 = ip * MR;
        let rows = MR.min(m - r0);
        for (p, d) in panel.chunks_exact_mut(MR).enumerate() {
            let s = r0 + (p0 + p) * a.col_stride;
            d[..rows].copy_from_slice(&a.data[s..s + rows]);
            d[rows..].fill(0.0);
        }
    }
}

/// Packs inner indices `p0..p0+kc` of columns `j0..j0+nc` of the row-major `b` into panels of
/// [`NR`] columns (zeros past the last column).
fn pack_b(pb: &mut [f32], b: &MatRef, p0: usize, kc: usize, j0: usize, nc: usize) {
    for (jp, panel) in pb.chunks_exact_mut(NR * kc).enumerate() {
        let c0 = j0 + jp * NR;
        let cols = NR.min(j0 + nc - c0);
        for (p, d) in panel.chunks_exact_mut(NR).enumerate() {
            let s = (p0 + p) * b.row_stride + c0;
            d[..cols].copy_from_slice(&b.data[s..s + cols]);
            d[cols..].fill(0.0);
        }
    }
}

/// The `MR × NR` micro-kernel: `c ← Σₚ a[p]·b[p]ᵀ` (`c ← c + …` with `acc`), where `a` holds kc
/// packed columns of MR values, `b` kc packed rows of NR values, and `c` is row-major with row
/// stride `ldc`.
///
/// # Safety
/// The CPU must support AVX-512F. (The slices' lengths, at least MR·kc, NR·kc and
/// (MR − 1)·ldc + NR values, are asserted.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, acc: bool) {
    use std::arch::x86_64::*;
    // Checked in every build (a few comparisons per MR·NR·kc multiply-adds): every pointer below
    // stays inside these slices only if they are this long.
    assert!(a.len() >= MR * kc && b.len() >= NR * kc && c.len() >= (MR - 1) * ldc + NR);
    let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
    let pc = c.as_mut_ptr();
    let mut r = [_mm512_setzero_ps(); MR * NV];
    // One inner index: broadcast each of the MR values of a against the NV vectors of b.
    let step = |r: &mut [__m512; MR * NV], pa: *const f32, pb: *const f32| {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: pb points at NR values inside b (the caller's length guarantee).
            *x = unsafe { _mm512_loadu_ps(pb.add(16 * v)) };
        }
        for i in 0..MR {
            // SAFETY: pa points at MR values inside a.
            let ai = _mm512_set1_ps(unsafe { *pa.add(i) });
            for v in 0..NV {
                r[NV * i + v] = _mm512_fmadd_ps(ai, bv[v], r[NV * i + v]);
            }
        }
    };
    const UNROLL: usize = 4;
    let mut p = 0;
    // SAFETY (pointer steps): p + UNROLL ≤ kc, so every step stays within the kc packed rows.
    unsafe {
        while p + UNROLL <= kc {
            for u in 0..UNROLL {
                step(&mut r, pa.add(u * MR), pb.add(u * NR));
            }
            pa = pa.add(UNROLL * MR);
            pb = pb.add(UNROLL * NR);
            p += UNROLL;
        }
        while p < kc {
            step(&mut r, pa, pb);
            pa = pa.add(MR);
            pb = pb.add(NR);
            p += 1;
        }
        for i in 0..MR {
            for v in 0..NV {
                let d = pc.add(i * ldc + 16 * v);
                let x = if acc {
                    _mm512_add_ps(_mm512_loadu_ps(d), r[NV * i + v])
                } else {
                    r[NV * i + v]
                };
                _mm512_storeu_ps(d, x);
            }
        }
    }
}

/// Never called: [`avx512`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(_: usize, _: &[f32], _: &[f32], _: &mut [f32], _: usize, _: bool) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference product, summed in f64.
    fn naive(a: &MatRef, b: &MatRef) -> Vec<f64> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let at =
            |m: &MatRef, i: usize, j: usize| m.data[i * m.row_stride + j * m.col_stride] as f64;
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| at(a, i, p) * at(b, p, j)).sum();
            }
        }
        out
    }

    /// Deterministic values in [−1, 1).
    fn filled(len: usize, salt: u64) -> Vec<f32> {
        (0..len as u64)
            .map(|i| ((i.wrapping_mul(2654435761) ^ salt) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_a_reference_product_on_edge_and_block_shapes() {
        if !avx512() {
            eprintln!("no AVX-512 on this CPU: the gemm crate serves every product");
            return;
        }
        // Rows not a multiple of MR, columns not a multiple of NR or NC, inner not of KC; and
        // an `a` that is a transposed view with a padded stride.
        for &(m, k, n) in &[
            (128, 512, 384),
            (130, 700, 397),
            (150, 1025, 800),
            (141, 515, 481),
        ] {
            let lda = m + 3;
            let x = filled(k * lda, 1);
            let a = MatRef {
                data: &x,
                rows: m,
                cols: k,
                row_stride: 1,
                col_stride: lda,
            };
            let y = filled(k * n, 2);
            let b = MatRef::row_major(&y, k, n);
            let want = naive(&a, &b);
            let mut got = vec![f32::NAN; m * n];
            assert!(try_matmul(&mut got, a, b, false), "{m}×{k}×{n} not served");
            let tol = 1e-5 * k as f64;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= tol,
                    "{m}×{k}×{n} at {i}: {g} vs {w}"
                );
            }
            // Accumulating adds the product to what is there.
            let before = got.clone();
            assert!(try_matmul(&mut got, a, b, true));
            for ((g, b), w) in got.iter().zip(&before).zip(&want) {
                assert!((*g as f64 - (*b as f64 + w)).abs() <= 2.0 * tol);
            }
        }
    }

    #[test]
    fn leaves_other_shapes_to_the_gemm_crate() {
        let (m, k, n) = (MIN_ROWS, MIN_INNER, MIN_COLS);
        let x = filled(k * m, 3);
        let y = filled(k * n, 4);
        let a = MatRef::row_major(&x, k, m).t(); // column-major m × k
        let b = MatRef::row_major(&y, k, n); // row-major k × n
        let mut out = vec![0.0; m * n];
        // The served layouts at the smallest served shape (where the CPU has AVX-512)…
        assert_eq!(try_matmul(&mut out, a, b, false), avx512());
        out.fill(0.0);
        // …but not a row-major left operand or a column-major right one…
        let a_rows = MatRef::row_major(&x, m, k);
        let b_cols = MatRef::row_major(&y, n, k).t();
        assert!(!try_matmul(&mut out, a_rows, b, false));
        assert!(!try_matmul(&mut out, a, b_cols, false));
        // …nor one side short of the threshold.
        let short = |rows, inner, cols| {
            let a = MatRef::row_major(&x[..inner * rows], inner, rows).t();
            let b = MatRef::row_major(&y[..inner * cols], inner, cols);
            let mut out = vec![0.0; rows * cols];
            try_matmul(&mut out, a, b, false)
        };
        assert!(!short(m - 1, k, n));
        assert!(!short(m, k - 1, n));
        assert!(!short(m, k, n - 1));
        assert!(out.iter().all(|&v| v == 0.0), "a product not served wrote");
    }
}
