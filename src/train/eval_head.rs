//! The evaluation's last layer and loss in one pass: logits `z = h·W + b` and their summed
//! cross-entropy and correct count, from activations held transposed (`hᵀ`, one row of `rows`
//! values per input unit), so that the batch runs along the vector lanes.
//!
//! The logit layer is narrow (10 classes): the gemm crate vectorises it along the classes and
//! fills 10 of 16 lanes, and the loss then walks the logits row by row. Here each 16 rows of the
//! batch are one vector (8 with AVX2, [`Isa`]): a tile of `classes` vectors accumulates `hᵀ`'s
//! rows times broadcast weights (the hidden layer's bias and ReLU applied as they are read), gets
//! its bias, and the row maxima, arg-maxima, exponentials and normalisers are taken across the
//! tile; no logits are written out. With the hidden layer's product transposed (`model::mlp`),
//! the whole evaluation of the quickstart's test set (2000 rows, 32-128-10) took 184 µs against
//! 271 µs for the row-major pass with AVX-512, timed alone (`examples/evalbench.rs`,
//! docs/performance.md).
//!
//! Each logit is the same sum in the same order as the gemm crate forms it for inner dimensions
//! up to its block of 512 (fused multiply-adds from zero in ascending order, then the bias), and
//! the loss is [`xent_rows`]'s arithmetic in its order (the same exponential, the normalisers
//! summed in f64 in class order and multiplied in row order), so up to 512 inputs the results
//! are bit for bit those of the row-major path, at either level (a test checks both); beyond,
//! the last bits can differ. Without AVX2 or AVX-512F, and FMA, or with more than
//! [`MAX_CLASSES`] classes, the row-major path runs.
//!
//! [`xent_rows`]: super::ops::xent_rows

use super::isa::Isa;
use super::ops::{LossSum, MatRef, bias_act, bias_relu_t, exp_f32, matmul_into, xent_rows};
use crate::error::Result;

/// The most classes the fused kernel takes (one vector of rows per class in a tile).
pub const MAX_CLASSES: usize = 16;

/// Σ cross-entropy and correct count of `rows` examples whose last hidden activations are `ht`
/// (`fan_in × rows`, row-major: activation `i` of example `r` at `ht[i·rows + r]`), for the
/// logit layer `w` (`fan_in × classes`, row-major) and `b` (`classes`). With `pre = Some(bias)`,
/// `ht` holds the hidden layer's products before their bias and ReLU, and each value read is
/// `ReLU(h + bias[i])` ([`bias_relu_t`]'s arithmetic, applied in the pass instead of before it;
/// the fallback applies it to `ht` in place). `z` is scratch for the row-major fallback.
pub fn logits_xent_t(
    ht: &mut [f32],
    rows: usize,
    w: &[f32],
    b: &[f32],
    pre: Option<&[f32]>,
    y: &[u32],
    z: &mut Vec<f32>,
) -> Result<LossSum> {
    let classes = b.len();
    let fan_in = w.len().checked_div(classes).unwrap_or(0);
    if classes == 0
        || w.len() != fan_in * classes
        || ht.len() < fan_in * rows
        || y.len() != rows
        || pre.is_some_and(|p| p.len() != fan_in)
    {
        return Err(candle_core::Error::Msg(format!(
            "eval head: {} weights for {classes} classes, {} activations for {rows} rows, {} \
             labels, {} hidden biases",
            w.len(),
            ht.len(),
            y.len(),
            pre.map_or(0, <[f32]>::len)
        ))
        .into());
    }
    logits_xent_t_on(Isa::detected(), ht, rows, fan_in, w, b, pre, y, z)
}

/// [`logits_xent_t`] with the fused kernel of level `isa` where this CPU runs it (shapes checked
/// by the caller).
#[allow(clippy::too_many_arguments)]
fn logits_xent_t_on(
    isa: Isa,
    ht: &mut [f32],
    rows: usize,
    fan_in: usize,
    w: &[f32],
    b: &[f32],
    pre: Option<&[f32]>,
    y: &[u32],
    z: &mut Vec<f32>,
) -> Result<LossSum> {
    let classes = b.len();
    if rows == 0 || classes > MAX_CLASSES || !isa.runs_here() {
        return fallback(ht, rows, fan_in, w, b, pre, y, z);
    }
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! dispatch {
            ($level:ident: $($c:literal)*) => {
                match classes {
                    // SAFETY: the CPU runs the level's instructions (checked above); the shapes
                    // were checked against the slices' lengths by the caller.
                    $($c => return Ok(unsafe { match pre {
                        Some(p) => $level::head::<$c, true>(ht, rows, fan_in, w, b, p, y),
                        None => $level::head::<$c, false>(ht, rows, fan_in, w, b, &[], y),
                    } }),)*
                    _ => {}
                }
            };
        }
        match isa {
            Isa::Avx512 => dispatch!(avx512: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16),
            Isa::Avx2 => dispatch!(avx2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16),
            Isa::Portable => {}
        }
    }
    fallback(ht, rows, fan_in, w, b, pre, y, z)
}

/// The row-major path: [`bias_relu_t`] if `pre`, the gemm crate's product into `z`,
/// [`bias_act`], [`xent_rows`] (shapes checked by the caller: `ht` holds `fan_in × rows`).
#[allow(clippy::too_many_arguments)]
fn fallback(
    ht: &mut [f32],
    rows: usize,
    fan_in: usize,
    w: &[f32],
    b: &[f32],
    pre: Option<&[f32]>,
    y: &[u32],
    z: &mut Vec<f32>,
) -> Result<LossSum> {
    let classes = b.len();
    let ht = &mut ht[..fan_in * rows];
    if let Some(p) = pre {
        bias_relu_t(ht, p, rows)?;
    }
    if z.len() < rows * classes {
        z.resize(rows * classes, 0.0);
    }
    let z = &mut z[..rows * classes];
    matmul_into(
        z,
        MatRef::row_major(ht, fan_in, rows).t(),
        MatRef::row_major(w, fan_in, classes),
        false,
    )?;
    bias_act(z, b, false)?;
    Ok(xent_rows(z, classes, y))
}

/// What [`xent_rows`] keeps across rows: summed in row order, as it sums them.
struct Totals {
    linear: f64,
    logs: f64,
    product: f64,
    correct: usize,
}

impl Totals {
    /// Nothing summed yet.
    fn new() -> Totals {
        Totals {
            linear: 0.0,
            logs: 0.0,
            product: 1.0,
            correct: 0,
        }
    }

    /// The summed loss and correct count of `rows` rows.
    fn sum(&self, rows: usize) -> LossSum {
        LossSum {
            loss: self.linear + self.logs + self.product.ln(),
            correct: self.correct,
            count: rows,
        }
    }

    /// The `L` rows of a tile, in row order, from their logits (`z[c]` = class c's logits) and
    /// the lanes of their maxima, normalisers and first arg-maxima.
    #[inline(always)]
    fn add_lanes<const C: usize, const L: usize>(
        &mut self,
        z: &[[f32; L]; C],
        y: &[u32],
        maxima: &[f32; L],
        normaliser: &[f64; L],
        firsts: &[i32; L],
    ) {
        for (l, &label) in y.iter().enumerate().take(L) {
            let label = label as usize;
            let at_label = z.get(label).map_or(f32::NAN, |row| row[l]);
            self.add(
                maxima[l],
                at_label,
                normaliser[l],
                firsts[l] as usize == label,
            );
        }
    }

    /// One row: its maximum logit, its label's logit, its normaliser Σ e^(z − max) and whether
    /// its first maximum is the label — [`xent_rows`]'s steps in its order.
    #[inline(always)]
    fn add(&mut self, max: f32, at_label: f32, normaliser: f64, hit: bool) {
        self.linear += max as f64 - at_label as f64;
        self.correct += usize::from(hit);
        if self.product > 1e200 {
            self.logs += self.product.ln();
            self.product = 1.0;
        }
        self.product *= normaliser;
    }

    /// Row `r` alone, with one lane's products and steps: the tails of the vector kernels
    /// (inlined into them, so `mul_add` is their fused multiply-add).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn row<const C: usize, const ACT: bool>(
        &mut self,
        ht: &[f32],
        rows: usize,
        r: usize,
        fan_in: usize,
        w: &[f32],
        b: &[f32],
        pre: &[f32],
        label: u32,
    ) {
        let mut zr = [0f32; C];
        for (c, v) in zr.iter_mut().enumerate() {
            let mut a = 0f32;
            for i in 0..fan_in {
                let h = ht[i * rows + r];
                let h = if ACT { (h + pre[i]).max(0.0) } else { h };
                a = h.mul_add(w[i * C + c], a);
            }
            *v = a + b[c];
        }
        let (mut best, mut max) = (0, f32::NEG_INFINITY);
        for (c, &v) in zr.iter().enumerate() {
            if v > max {
                max = v;
                best = c;
            }
        }
        let label = label as usize;
        let at_label = zr.get(label).copied().unwrap_or(f32::NAN);
        let normaliser: f64 = zr.iter().map(|&v| exp_f32(v - max) as f64).sum();
        self.add(max, at_label, normaliser, best == label);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Totals;
    use crate::train::ops::{LossSum, exp_in_place};

    /// The fused head for `C` classes (see [`super::logits_xent_t`]); shapes checked by the caller.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn head<const C: usize, const ACT: bool>(
        ht: &[f32],
        rows: usize,
        fan_in: usize,
        w: &[f32],
        b: &[f32],
        pre: &[f32],
        y: &[u32],
    ) -> LossSum {
        let mut t = Totals::new();
        let mut z = [[0f32; 16]; C];
        let mut z_next = [[0f32; 16]; C];
        let full = rows / 16 * 16;
        let mut r0 = 0;
        while r0 + 32 <= full {
            // SAFETY: rows r0 … r0 + 31 of every one of hᵀ's fan_in rows lie inside ht.
            unsafe { tile2::<C, ACT>(ht, rows, r0, fan_in, w, b, pre, &mut z, &mut z_next) };
            losses::<C>(&z, &y[r0..r0 + 16], &mut t);
            losses::<C>(&z_next, &y[r0 + 16..r0 + 32], &mut t);
            r0 += 32;
        }
        if r0 < full {
            // SAFETY: as above, for rows r0 … r0 + 15.
            unsafe { tile1::<C, ACT>(ht, rows, r0, fan_in, w, b, pre, &mut z) };
            losses::<C>(&z, &y[r0..r0 + 16], &mut t);
            r0 += 16;
        }
        // The last rows % 16, one at a time: the same products and steps as one lane.
        for (r, &label) in y.iter().enumerate().take(rows).skip(r0) {
            t.row::<C, ACT>(ht, rows, r, fan_in, w, b, pre, label);
        }
        t.sum(rows)
    }

    /// `ReLU(h + bias)` with [`bias_relu_t`](crate::train::ops::bias_relu_t)'s arithmetic
    /// (`f32::max`: a NaN sum gives 0, as `vmaxps` with the sum first).
    #[inline(always)]
    fn act(h: __m512, bias: f32) -> __m512 {
        // SAFETY: only reached from functions compiled with AVX-512F.
        unsafe { _mm512_max_ps(_mm512_add_ps(h, _mm512_set1_ps(bias)), _mm512_setzero_ps()) }
    }

    /// Logits of rows r0 … r0 + 31 into `z0` (the first 16) and `z1`.
    ///
    /// # Safety
    /// AVX-512F and FMA; `ht` holds `fan_in` rows of `rows` values with `r0 + 32 ≤ rows`; `w`
    /// holds `fan_in · C` values, `b` `C`, and `pre` `fan_in` if `ACT`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn tile2<const C: usize, const ACT: bool>(
        ht: &[f32],
        rows: usize,
        r0: usize,
        fan_in: usize,
        w: &[f32],
        b: &[f32],
        pre: &[f32],
        z0: &mut [[f32; 16]; C],
        z1: &mut [[f32; 16]; C],
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; C];
        for i in 0..fan_in {
            // SAFETY: (caller) row i of hᵀ has the 32 values from r0, and w the C from i·C.
            unsafe {
                let p = ht.as_ptr().add(i * rows + r0);
                let (mut h0, mut h1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                if ACT {
                    let bias = *pre.get_unchecked(i);
                    (h0, h1) = (act(h0, bias), act(h1, bias));
                }
                let wr = w.as_ptr().add(i * C);
                for (c, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*wr.add(c));
                    a[0] = _mm512_fmadd_ps(h0, wv, a[0]);
                    a[1] = _mm512_fmadd_ps(h1, wv, a[1]);
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            let bias = _mm512_set1_ps(b[c]);
            // SAFETY: each destination row holds 16 values.
            unsafe {
                _mm512_storeu_ps(z0[c].as_mut_ptr(), _mm512_add_ps(a[0], bias));
                _mm512_storeu_ps(z1[c].as_mut_ptr(), _mm512_add_ps(a[1], bias));
            }
        }
    }

    /// Logits of rows r0 … r0 + 15 into `z`.
    ///
    /// # Safety
    /// As [`tile2`], with `r0 + 16 ≤ rows`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn tile1<const C: usize, const ACT: bool>(
        ht: &[f32],
        rows: usize,
        r0: usize,
        fan_in: usize,
        w: &[f32],
        b: &[f32],
        pre: &[f32],
        z: &mut [[f32; 16]; C],
    ) {
        let mut acc = [_mm512_setzero_ps(); C];
        for i in 0..fan_in {
            // SAFETY: (caller) row i of hᵀ has the 16 values from r0, and w the C from i·C.
            unsafe {
                let mut h = _mm512_loadu_ps(ht.as_ptr().add(i * rows + r0));
                if ACT {
                    h = act(h, *pre.get_unchecked(i));
                }
                let wr = w.as_ptr().add(i * C);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(h, _mm512_set1_ps(*wr.add(c)), *a);
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: each destination row holds 16 values.
            unsafe { _mm512_storeu_ps(z[c].as_mut_ptr(), _mm512_add_ps(*a, _mm512_set1_ps(b[c]))) };
        }
    }

    /// The 16 rows of a tile of logits (`z[c]` = class c's logits) into the totals, in row order.
    #[target_feature(enable = "avx512f,fma")]
    fn losses<const C: usize>(z: &[[f32; 16]; C], y: &[u32], t: &mut Totals) {
        // Row maxima and first arg-maxima across the tile (NaN never compares greater).
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut best = _mm512_setzero_si512();
        let mut zv = [_mm512_setzero_ps(); C];
        for c in 0..C {
            // SAFETY: each row of the tile holds 16 values.
            zv[c] = unsafe { _mm512_loadu_ps(z[c].as_ptr()) };
            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(zv[c], max);
            max = _mm512_mask_mov_ps(max, gt, zv[c]);
            best = _mm512_mask_mov_epi32(best, gt, _mm512_set1_epi32(c as i32));
        }
        let mut e = [[0f32; 16]; C];
        for c in 0..C {
            // SAFETY: each row of e holds 16 values.
            unsafe { _mm512_storeu_ps(e[c].as_mut_ptr(), _mm512_sub_ps(zv[c], max)) };
        }
        exp_in_place(e.as_flattened_mut());
        // Normalisers in f64, summed in class order, eight rows per vector.
        let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for row in &e {
            // SAFETY: each row of e holds 16 values.
            let v = unsafe { _mm512_loadu_ps(row.as_ptr()) };
            lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            hi = _mm512_add_pd(
                hi,
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(v),
                ))),
            );
        }
        let mut normaliser = [0f64; 16];
        let mut maxima = [0f32; 16];
        let mut firsts = [0i32; 16];
        // SAFETY: the arrays hold 16 lanes of each vector.
        unsafe {
            _mm512_storeu_pd(normaliser.as_mut_ptr(), lo);
            _mm512_storeu_pd(normaliser.as_mut_ptr().add(8), hi);
            _mm512_storeu_ps(maxima.as_mut_ptr(), max);
            _mm512_storeu_si512(firsts.as_mut_ptr().cast(), best);
        }
        t.add_lanes(z, y, &maxima, &normaliser, &firsts);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Totals;
    use crate::train::ops::{LossSum, exp_in_place};

    /// The fused head for `C` classes with AVX2 and FMA: [`super::avx512`]'s steps, 8 rows per
    /// vector and one vector per class (up to 16 accumulators).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn head<const C: usize, const ACT: bool>(
        ht: &[f32],
        rows: usize,
        fan_in: usize,
        w: &[f32],
        b: &[f32],
        pre: &[f32],
        y: &[u32],
    ) -> LossSum {
        let mut t = Totals::new();
        let mut z = [[0f32; 8]; C];
        let mut r0 = 0;
        while r0 + 8 <= rows {
            // SAFETY: rows r0 … r0 + 7 of every one of hᵀ's fan_in rows lie inside ht.
            unsafe { tile::<C, ACT>(ht, rows, r0, fan_in, w, b, pre, &mut z) };
            losses::<C>(&z, &y[r0..r0 + 8], &mut t);
            r0 += 8;
        }
        // The last rows % 8, one at a time: the same products and steps as one lane.
        for (r, &label) in y.iter().enumerate().take(rows).skip(r0) {
            t.row::<C, ACT>(ht, rows, r, fan_in, w, b, pre, label);
        }
        t.sum(rows)
    }

    /// Logits of rows r0 … r0 + 7 into `z`.
    ///
    /// # Safety
    /// AVX2 and FMA; `ht` holds `fan_in` rows of `rows` values with `r0 + 8 ≤ rows`; `w` holds
    /// `fan_in · C` values, `b` `C`, and `pre` `fan_in` if `ACT`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const C: usize, const ACT: bool>(
        ht: &[f32],
        rows: usize,
        r0: usize,
        fan_in: usize,
        w: &[f32],
        b: &[f32],
        pre: &[f32],
        z: &mut [[f32; 8]; C],
    ) {
        let mut acc = [_mm256_setzero_ps(); C];
        for i in 0..fan_in {
            // SAFETY: (caller) row i of hᵀ has the 8 values from r0, and w the C from i·C.
            unsafe {
                let mut h = _mm256_loadu_ps(ht.as_ptr().add(i * rows + r0));
                if ACT {
                    // ReLU(h + bias) as `bias_relu_t` forms it (`vmaxps` with the sum first: a
                    // NaN sum gives 0, as `f32::max` does).
                    let bias = _mm256_set1_ps(*pre.get_unchecked(i));
                    h = _mm256_max_ps(_mm256_add_ps(h, bias), _mm256_setzero_ps());
                }
                let wr = w.as_ptr().add(i * C);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(h, _mm256_set1_ps(*wr.add(c)), *a);
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: each destination row holds 8 values.
            unsafe { _mm256_storeu_ps(z[c].as_mut_ptr(), _mm256_add_ps(*a, _mm256_set1_ps(b[c]))) };
        }
    }

    /// The 8 rows of a tile of logits (`z[c]` = class c's logits) into the totals, in row order.
    #[target_feature(enable = "avx2,fma")]
    fn losses<const C: usize>(z: &[[f32; 8]; C], y: &[u32], t: &mut Totals) {
        // Row maxima and first arg-maxima across the tile (NaN never compares greater).
        let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut best = _mm256_setzero_ps();
        let mut zv = [_mm256_setzero_ps(); C];
        for c in 0..C {
            // SAFETY: each row of the tile holds 8 values.
            zv[c] = unsafe { _mm256_loadu_ps(z[c].as_ptr()) };
            let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(zv[c], max);
            max = _mm256_blendv_ps(max, zv[c], gt);
            let class = _mm256_castsi256_ps(_mm256_set1_epi32(c as i32));
            best = _mm256_blendv_ps(best, class, gt);
        }
        let mut e = [[0f32; 8]; C];
        for c in 0..C {
            // SAFETY: each row of e holds 8 values.
            unsafe { _mm256_storeu_ps(e[c].as_mut_ptr(), _mm256_sub_ps(zv[c], max)) };
        }
        exp_in_place(e.as_flattened_mut());
        // Normalisers in f64, summed in class order, four rows per vector.
        let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for row in &e {
            // SAFETY: each row of e holds 8 values.
            let v = unsafe { _mm256_loadu_ps(row.as_ptr()) };
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
        }
        let mut normaliser = [0f64; 8];
        let mut maxima = [0f32; 8];
        let mut firsts = [0i32; 8];
        // SAFETY: the arrays hold 8 lanes of each vector.
        unsafe {
            _mm256_storeu_pd(normaliser.as_mut_ptr(), lo);
            _mm256_storeu_pd(normaliser.as_mut_ptr().add(4), hi);
            _mm256_storeu_ps(maxima.as_mut_ptr(), max);
            _mm256_storeu_si256(firsts.as_mut_ptr().cast(), _mm256_castps_si256(best));
        }
        t.add_lanes(z, y, &maxima, &normaliser, &firsts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-major path on row-major activations: what the evaluation computed before.
    fn reference(h: &[f32], rows: usize, w: &[f32], b: &[f32], y: &[u32]) -> LossSum {
        let classes = b.len();
        let fan_in = w.len() / classes;
        let mut z = vec![0f32; rows * classes];
        matmul_into(
            &mut z,
            MatRef::row_major(h, rows, fan_in),
            MatRef::row_major(w, fan_in, classes),
            false,
        )
        .unwrap();
        bias_act(&mut z, b, false).unwrap();
        xent_rows(&mut z, classes, y)
    }

    /// Every level this CPU runs, the row-major path included.
    fn levels() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|i| i.runs_here())
            .collect()
    }

    fn values(n: usize, salt: u64, scale: f32) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let v = (i.wrapping_mul(2_654_435_761).wrapping_add(salt * 97) % 2003) as f32;
                (v / 2003.0 - 0.5) * scale
            })
            .collect()
    }

    fn transposed(h: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0f32; h.len()];
        crate::train::ops::transpose_into(h, rows, cols, &mut t);
        t
    }

    #[test]
    fn matches_the_row_major_path_bit_for_bit_on_every_tile_and_tail() {
        let mut z = Vec::new();
        for &classes in &[1, 2, 3, 10, 16, 17, 40] {
            for &fan_in in &[1, 7, 32, 128, 512] {
                for &rows in &[1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 100, 1000] {
                    for (fused, isa) in [false, true]
                        .into_iter()
                        .flat_map(|f| levels().into_iter().map(move |i| (f, i)))
                    {
                        let salt = (classes * 1000 + fan_in * 10 + rows) as u64;
                        let what = format!(
                            "{isa}: classes {classes}, fan-in {fan_in}, rows {rows}, fused ReLU \
                             {fused}"
                        );
                        // Products before the hidden layer's bias and ReLU, and its bias.
                        let raw = values(rows * fan_in, salt, 4.0);
                        let pre = values(fan_in, salt + 3, 1.0);
                        // The activations the row-major path sees: ReLU(raw + bias) when fused
                        // (exact zeros included), raw ≥ 0 otherwise.
                        let h: Vec<f32> = raw
                            .iter()
                            .enumerate()
                            .map(|(k, &v)| {
                                if fused {
                                    (v + pre[k % fan_in]).max(0.0)
                                } else {
                                    v.max(0.0)
                                }
                            })
                            .collect();
                        let fed = if fused { &raw } else { &h };
                        let w = values(fan_in * classes, salt + 1, 1.0);
                        let b = values(classes, salt + 2, 0.5);
                        let run = |y: &[u32], z: &mut Vec<f32>| {
                            let mut ht = transposed(fed, rows, fan_in);
                            let p = fused.then_some(&pre[..]);
                            logits_xent_t_on(isa, &mut ht, rows, fan_in, &w, &b, p, y, z).unwrap()
                        };
                        // Every label, and one beyond the classes (its loss is NaN on both paths).
                        let y: Vec<u32> = (0..rows as u32)
                            .map(|r| {
                                if r == 5 {
                                    classes as u32
                                } else {
                                    r * 7 % classes as u32
                                }
                            })
                            .collect();
                        let want = reference(&h, rows, &w, &b, &y);
                        let got = run(&y, &mut z);
                        assert_eq!(got.count, want.count, "{what}");
                        assert_eq!(got.correct, want.correct, "{what}");
                        assert_eq!(
                            got.loss.to_bits(),
                            want.loss.to_bits(),
                            "{what}: {got:?} {want:?}"
                        );
                        if rows > 5 {
                            assert!(got.loss.is_nan(), "{what}: a label beyond the classes");
                        }
                        // Without it the loss is a finite positive sum.
                        let y: Vec<u32> =
                            (0..rows as u32).map(|r| r * 7 % classes as u32).collect();
                        let want = reference(&h, rows, &w, &b, &y);
                        let got = run(&y, &mut z);
                        assert_eq!(got.loss.to_bits(), want.loss.to_bits(), "{what}");
                        assert_eq!(got.correct, want.correct, "{what}");
                        assert!(got.loss.is_finite() && got.loss >= 0.0, "{what}: {got:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn shapes_that_do_not_agree_are_an_error() {
        let mut z = Vec::new();
        let (w, b) = (vec![0.5f32; 8 * 10], vec![0.0f32; 10]);
        let mut ht = vec![1.0f32; 8 * 4];
        let y = [1u32, 2, 3, 4];
        assert!(logits_xent_t(&mut ht, 4, &w, &b, None, &y, &mut z).is_ok());
        // Too few activations, labels, weights or hidden biases; no classes.
        assert!(logits_xent_t(&mut ht, 5, &w, &b, None, &[0; 5], &mut z).is_err());
        assert!(logits_xent_t(&mut ht, 4, &w, &b, None, &y[..3], &mut z).is_err());
        assert!(logits_xent_t(&mut ht, 4, &w[..79], &b, None, &y, &mut z).is_err());
        assert!(logits_xent_t(&mut ht, 4, &w, &b, Some(&[0.0; 7]), &y, &mut z).is_err());
        assert!(logits_xent_t(&mut ht, 4, &w, &[], None, &y, &mut z).is_err());
    }

    #[test]
    fn agrees_with_a_direct_f64_cross_entropy_on_wide_inputs() {
        // 800 inputs (beyond the gemm crate's block the two paths may round differently).
        let (rows, fan_in, classes) = (333, 800, 10);
        let h: Vec<f32> = values(rows * fan_in, 3, 2.0)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let w = values(fan_in * classes, 4, 0.2);
        let b = values(classes, 5, 0.5);
        let y: Vec<u32> = (0..rows as u32).map(|r| r % 10).collect();
        let mut ht = transposed(&h, rows, fan_in);
        let got = logits_xent_t(&mut ht, rows, &w, &b, None, &y, &mut Vec::new()).unwrap();
        let (mut loss, mut correct) = (0f64, 0);
        for r in 0..rows {
            let z: Vec<f64> = (0..classes)
                .map(|c| {
                    b[c] as f64
                        + (0..fan_in)
                            .map(|i| h[r * fan_in + i] as f64 * w[i * classes + c] as f64)
                            .sum::<f64>()
                })
                .collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - z[y[r] as usize];
            let first = (0..classes).find(|&c| z[c] == max).unwrap();
            correct += usize::from(first == y[r] as usize);
        }
        assert!(
            (got.loss - loss).abs() <= 1e-5 * loss,
            "{} vs {loss}",
            got.loss
        );
        assert_eq!(got.correct, correct);
        assert_eq!(got.count, rows);
    }

    /// A NaN activation makes its row's logits all NaN: the loss is NaN, and the row has no
    /// maximum, so its first "maximum" is class 0, as `torch.argmax` gives for such a row. It
    /// counts as a hit where its label is 0 (row 10 here), a miss otherwise (row 17), on every
    /// level and in the row-major reference alike.
    #[test]
    fn nan_activations_give_a_nan_loss_and_rows_whose_first_maximum_is_class_0() {
        let (rows, fan_in, classes) = (40, 8, 10);
        let clean = values(rows * fan_in, 9, 2.0);
        let w = values(fan_in * classes, 10, 1.0);
        let b = values(classes, 11, 0.5);
        let y: Vec<u32> = (0..rows as u32).map(|r| r % 10).collect();
        let hits = |h: &[f32]| reference(h, rows, &w, &b, &y).correct;
        let clean_hits = hits(&clean);
        let mut h = clean.clone();
        h[17 * fan_in + 3] = f32::NAN; // row 17, label 7
        h[10 * fan_in + 5] = f32::NAN; // row 10, label 0
        // The clean rows' hits, less rows 10 and 17 as the clean data scores them, plus row 10
        // (label 0, first "maximum" 0).
        let row_hit = |r: usize| {
            let one = &clean[r * fan_in..(r + 1) * fan_in];
            reference(one, 1, &w, &b, &y[r..=r]).correct
        };
        let want_hits = clean_hits - row_hit(10) - row_hit(17) + 1;
        let want = reference(&h, rows, &w, &b, &y);
        assert!(want.loss.is_nan());
        assert_eq!(want.correct, want_hits);
        for isa in levels() {
            let mut ht = transposed(&h, rows, fan_in);
            let got = logits_xent_t_on(
                isa,
                &mut ht,
                rows,
                fan_in,
                &w,
                &b,
                None,
                &y,
                &mut Vec::new(),
            )
            .unwrap();
            assert!(got.loss.is_nan(), "{isa:?}");
            assert_eq!(got.correct, want_hits, "{isa:?}");
        }
    }
}
