//! Fully connected ReLU network with a hand-written backward pass.
//!
//! Forward, per layer l: zₗ = aₗ₋₁·Wₗᵀ + bₗ, aₗ = ReLU(zₗ) except on the last layer, whose z
//! are the logits. Backward from dZ = ∂L/∂z: ∂Wᵀ = aₗ₋₁ᵀ·dZ, ∂b = Σ_rows dZ, and
//! dZₗ₋₁ = (dZ·Wₗ) ⊙ [aₗ₋₁ > 0]. The input layer's input gradient is skipped.
//!
//! Layout: each weight is stored transposed, `(in, out)` contiguous, so the forward product
//! a·Wᵀ reads both operands contiguously (the matmul kernel runs it about twice as fast at small
//! batches as on a transposed view). The values are PyTorch's `nn.Linear` weights, drawn in its
//! `(out, in)` order. Other transposes are strided views handed to the kernel, never copies —
//! except the logit layer's weight gradient (out < 32), computed as dZᵀ·a, whose shape the gemm
//! crate prefers, and transposed (a few thousand values) — unless the product is small enough for
//! the unpacked kernel (`train::thin`), which forms aᵀ·dZ in place with the same bits.
//!
//! The training step writes every product straight into buffers that live from step to step
//! (activations and dZ in the network's scratch, gradients in the caller's [`Grads`]): nothing
//! batch- or layer-sized is allocated (only a per-layer list of pointers to the weights), so no
//! zeroing of fresh matmul outputs and no page faults — 6% of a step at
//! B = 1024 when each product allocated its output. The buffers also outlive the network: a
//! network dropped leaves them to the next one built on the same thread (a slot's next run),
//! so a sweep's runs do not each fault in a fresh megabyte of evaluation activations.

use std::cell::RefCell;

use candle_core::{Device, Tensor};
use rand::Rng;

use super::{Grads, Network, check_batch, kaiming_uniform};
use crate::error::Result;
use crate::train::ops::{
    LossSum, MatRef, bias_act, bias_relu_t, f32_data, matmul_into, relu_backward,
    softmax_xent_r_row, softmax_xent_row, sum_rows_into, transpose_into, with_f32, xent_rows,
};
use crate::train::{eval_head, thin};

/// A multilayer perceptron `D → hidden… → classes`.
pub struct Mlp {
    /// Wᵀ per layer, `(in, out)` contiguous.
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
    /// Layer widths, the input first, the classes last.
    widths: Vec<usize>,
    /// Working memory of the training step.
    scratch: Scratch,
    /// Working memory of evaluation (its batches are larger: kept apart, so neither grows and
    /// shrinks in turn).
    eval_scratch: Scratch,
}

/// The training step's intermediates, sized for the last batch seen.
#[derive(Default)]
struct Scratch {
    /// Each layer's output: the hidden layers' ReLU activations, then the logits.
    acts: Vec<Vec<f32>>,
    /// ∂L/∂z of the layer being back-propagated, and of the one below it.
    dz: Vec<f32>,
    dz_prev: Vec<f32>,
    /// A narrow layer's weight gradient before its transpose.
    narrow: Vec<f32>,
}

thread_local! {
    /// The working memory of the last network dropped on this thread, for the next one built
    /// on it. Every buffer is written before it is read (as between steps of different batch
    /// sizes), so what a run computes does not depend on what ran before it.
    static SPARE: RefCell<Option<(Scratch, Scratch)>> = const { RefCell::new(None) };
}

impl Drop for Mlp {
    fn drop(&mut self) {
        let spare = (
            std::mem::take(&mut self.scratch),
            std::mem::take(&mut self.eval_scratch),
        );
        // A thread being torn down has no spare to keep.
        let _ = SPARE.try_with(|s| *s.borrow_mut() = Some(spare));
    }
}

/// Layers narrower than this get their weight gradient as (dZᵀ·a)ᵀ (see the module docs).
const NARROW: usize = 32;

/// Batches of at most this many rows get a narrow layer's weight gradient straight as aᵀ·dZ from
/// the unpacked kernel (`train::thin`, the same bits) where it takes the product. The quickstart
/// network's logit layer, timed alone (`examples/thinbench.rs`): 0.21, 0.34 and 0.59 µs at 4, 8
/// and 16 rows against 0.60, 0.65 and 0.80 µs for dZᵀ·a and its transpose; level at 32 rows,
/// 30% slower at 64 and twice as slow at 512.
const THIN_ROWS: usize = 16;

impl Mlp {
    /// A network with the given widths, initialised as PyTorch's `nn.Linear`.
    pub fn new(input: usize, hidden: &[usize], classes: usize, rng: &mut impl Rng) -> Result<Self> {
        let mut widths = vec![input];
        widths.extend_from_slice(hidden);
        widths.push(classes);
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for pair in widths.windows(2) {
            let (fan_in, out) = (pair[0], pair[1]);
            let w = kaiming_uniform(rng, &[out, fan_in], fan_in)?;
            weights.push(w.t()?.contiguous()?);
            biases.push(kaiming_uniform(rng, &[out], fan_in)?);
        }
        let (scratch, eval_scratch) = SPARE
            .try_with(|s| s.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_default();
        Ok(Mlp {
            weights,
            biases,
            widths,
            scratch,
            eval_scratch,
        })
    }

    /// [`Network::eval_loss`], reading the first layer's inputs from `xt` (the batch
    /// transposed) where evaluation runs transposed and `xt` is given.
    fn eval(&mut self, x: &[f32], xt: Option<MatRef<'_>>, y: &[u32]) -> Result<LossSum> {
        let Mlp {
            weights,
            biases,
            widths,
            eval_scratch: m,
            ..
        } = self;
        let rows = y.len();
        check_batch("mlp", x, y, widths[0])?;
        let layers = widths.len() - 1;
        if fused_head_pays(widths) {
            // Hidden layers transposed, then the fused logit layer and loss (see eval_head).
            return with_params(weights, biases, |w, b| {
                let (last_w, last_b) = (w[layers - 1], b[layers - 1]);
                // The last hidden layer's bias and ReLU are applied in the head's pass.
                let (hw, hb) = (&w[..layers - 1], &b[..layers - 1]);
                hidden_t(&mut m.acts, widths, hw, hb, x, xt, rows)?;
                let ht = m
                    .acts
                    .get_mut(layers - 2)
                    .and_then(|v| v.get_mut(..rows * widths[layers - 1]))
                    .ok_or_else(|| {
                        candle_core::Error::Msg(
                            "mlp: no activations after the hidden layers".into(),
                        )
                    })?;
                let pre = Some(b[layers - 2]);
                // dz (∂L/∂z, unused by evaluation) is the head's scratch for its fallback.
                eval_head::logits_xent_t(ht, rows, last_w, last_b, pre, y, &mut m.dz)
            });
        }
        with_params(weights, biases, |w, b| {
            forward_into(&mut m.acts, widths, w, b, x, rows)
        })?;
        let classes = widths[widths.len() - 1];
        let logits = m
            .acts
            .last_mut()
            .and_then(|v| v.get_mut(..rows * classes))
            .ok_or_else(|| {
                candle_core::Error::Msg("mlp: no logits after the forward pass".into())
            })?;
        Ok(xent_rows(logits, classes, y))
    }
}

impl Network for Mlp {
    fn params(&self) -> Vec<Tensor> {
        self.weights
            .iter()
            .zip(&self.biases)
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    fn transposed_params(&self) -> Vec<bool> {
        self.weights.iter().flat_map(|_| [true, false]).collect()
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        let rows = x.dim(0)?;
        let mut acts = Vec::new();
        with_f32(&x, |xs| {
            with_params(&self.weights, &self.biases, |w, b| {
                forward_into(&mut acts, &self.widths, w, b, xs, rows)
            })
        })??;
        let classes = self.widths[self.widths.len() - 1];
        let logits = acts.pop().unwrap_or_default();
        Ok(Tensor::from_vec(logits, (rows, classes), &Device::Cpu)?)
    }

    fn loss_and_grads(&mut self, x: &[f32], y: &[u32], grads: &mut Grads) -> Result<LossSum> {
        let Mlp {
            weights,
            biases,
            widths,
            scratch: m,
            ..
        } = self;
        let layers = weights.len();
        let rows = y.len();
        check_batch("mlp", x, y, widths[0])?;
        grads.check(
            weights
                .iter()
                .zip(biases.iter())
                .flat_map(|(w, b)| [w.elem_count(), b.elem_count()]),
        )?;
        with_params(weights, biases, |w, b| {
            forward_into(&mut m.acts, widths, w, b, x, rows)?;

            // Loss and ∂L/∂logits.
            let classes = widths[layers];
            grow(&mut m.dz, rows * classes);
            let mut sum = LossSum::new(rows);
            let scale = 1.0 / rows.max(1) as f32;
            let logits = &m.acts[layers - 1];
            for ((z, d), &label) in logits
                .chunks_exact(classes)
                .zip(m.dz.chunks_exact_mut(classes))
                .zip(y)
            {
                sum.add(softmax_xent_row(z, label, scale, Some(d)));
            }

            // Backward.
            let g = grads.bufs_mut();
            for l in (0..layers).rev() {
                let (fan_in, out) = (widths[l], widths[l + 1]);
                let a_prev = if l == 0 { x } else { &m.acts[l - 1] };
                let a = MatRef::row_major(a_prev, rows, fan_in);
                let dz_rows = &m.dz[..rows * out];
                let dz = MatRef::row_major(dz_rows, rows, out);
                // A narrow layer's gradient as (dZᵀ·a)ᵀ, unless small batches let the thin
                // kernel form aᵀ·dZ in place (see THIN_ROWS).
                if out < NARROW && !(rows <= THIN_ROWS && thin::takes(&a.t(), &dz)) {
                    m.narrow.resize(out * fan_in, 0.0);
                    matmul_into(&mut m.narrow, dz.t(), a, false)?;
                    transpose_into(&m.narrow, out, fan_in, &mut g[2 * l]);
                } else {
                    matmul_into(&mut g[2 * l], a.t(), dz, false)?;
                }
                sum_rows_into(dz_rows, &mut g[2 * l + 1]);
                if l > 0 {
                    let n = rows * fan_in;
                    grow(&mut m.dz_prev, n);
                    matmul_into(
                        &mut m.dz_prev[..n],
                        dz,
                        MatRef::row_major(w[l], fan_in, out).t(),
                        false,
                    )?;
                    relu_backward(&mut m.dz_prev[..n], a_prev);
                    std::mem::swap(&mut m.dz, &mut m.dz_prev);
                }
            }
            Ok(sum)
        })
    }

    fn eval_loss(&mut self, x: &[f32], y: &[u32]) -> Result<LossSum> {
        self.eval(x, None, y)
    }

    fn reads_transposed(&self) -> bool {
        fused_head_pays(&self.widths)
    }

    fn eval_loss_t(&mut self, x: &[f32], xt: MatRef<'_>, y: &[u32]) -> Result<LossSum> {
        self.eval(x, Some(xt), y)
    }

    fn forward_macs(&self) -> u64 {
        self.weights.iter().map(|w| w.elem_count() as u64).sum()
    }

    fn loss_hessian_vector(
        &mut self,
        x: &[f32],
        y: &[u32],
        v: &Grads,
        out: &mut Grads,
    ) -> Result<bool> {
        let sizes = || {
            self.weights
                .iter()
                .zip(&self.biases)
                .flat_map(|(w, b)| [w.elem_count(), b.elem_count()])
        };
        check_batch("mlp", x, y, self.widths[0])?;
        v.check(sizes())?;
        out.check(sizes())?;
        let widths = &self.widths;
        with_params(&self.weights, &self.biases, |w, b| {
            hessian_vector_into(widths, w, b, x, y, v.bufs(), out.bufs_mut())
        })?;
        Ok(true)
    }
}

/// H·v of the mean cross-entropy over the batch by Pearlmutter's R-operator, R{·} = ∂/∂r at
/// w + r·v, r = 0. With every weight stored transposed (Wᵀ, `(in, out)`), and vₗ, v_bₗ the
/// direction's parts for layer l's weight (same layout) and bias:
///
/// - forward: R{a₀} = 0; R{zₗ} = R{aₗ₋₁}·Wₗᵀ + aₗ₋₁·vₗ + v_bₗ; R{aₗ} = R{zₗ} ⊙ [aₗ > 0] on hidden
///   layers (the pattern is held: the ReLU's second derivative is 0 away from its kink);
/// - at the logits f, with p = softmax(f) per row and m rows: δ = (p − onehot)/m and
///   R{δ} = (p ⊙ (R{f} − pᵀR{f}))/m, the softmax Jacobian applied to R{f};
/// - backward: (H·v) for Wₗᵀ = aₗ₋₁ᵀ·R{δₗ} + R{aₗ₋₁}ᵀ·δₗ, for bₗ = Σ_rows R{δₗ};
///   δₗ₋₁ = (δₗ·Wₗ) ⊙ [aₗ₋₁ > 0] and R{δₗ₋₁} = (R{δₗ}·Wₗ + δₗ·vₗᵀ) ⊙ [aₗ₋₁ > 0].
///
/// f32 products (the training step's kernels) with the softmax terms in f64: rounding only, no
/// truncation. Instrument-only, so its buffers are allocated here, apart from the training
/// step's scratch.
fn hessian_vector_into(
    widths: &[usize],
    w: &[&[f32]],
    b: &[&[f32]],
    x: &[f32],
    y: &[u32],
    v: &[Vec<f32>],
    out: &mut [Vec<f32>],
) -> Result<()> {
    let layers = w.len();
    let rows = y.len();
    let mut acts = Vec::new();
    forward_into(&mut acts, widths, w, b, x, rows)?;
    // R{zₗ}, then R{aₗ} in place.
    let mut racts: Vec<Vec<f32>> = Vec::with_capacity(layers);
    for l in 0..layers {
        let (fan_in, width) = (widths[l], widths[l + 1]);
        let input = if l == 0 {
            x
        } else {
            &acts[l - 1][..rows * fan_in]
        };
        let mut rz = vec![0.0; rows * width];
        matmul_into(
            &mut rz,
            MatRef::row_major(input, rows, fan_in),
            MatRef::row_major(&v[2 * l], fan_in, width),
            false,
        )?;
        if l > 0 {
            matmul_into(
                &mut rz,
                MatRef::row_major(&racts[l - 1], rows, fan_in),
                MatRef::row_major(w[l], fan_in, width),
                true,
            )?;
        }
        for row in rz.chunks_exact_mut(width) {
            for (r, vb) in row.iter_mut().zip(&v[2 * l + 1]) {
                *r += vb;
            }
        }
        if l + 1 < layers {
            relu_backward(&mut rz, &acts[l][..rows * width]);
        }
        racts.push(rz);
    }

    // δ and R{δ} at the logits.
    let classes = widths[layers];
    let scale = 1.0 / rows.max(1) as f64;
    let mut dz = vec![0.0f32; rows * classes];
    let mut rdz = vec![0.0f32; rows * classes];
    let mut p = Vec::with_capacity(classes);
    for ((((f, rf), d), rd), &label) in acts[layers - 1]
        .chunks_exact(classes)
        .zip(racts[layers - 1].chunks_exact(classes))
        .zip(dz.chunks_exact_mut(classes))
        .zip(rdz.chunks_exact_mut(classes))
        .zip(y)
    {
        softmax_xent_r_row(f, rf, label, scale, &mut p, d, rd);
    }

    // Backward.
    for l in (0..layers).rev() {
        let (fan_in, width) = (widths[l], widths[l + 1]);
        let d = MatRef::row_major(&dz, rows, width);
        let rd = MatRef::row_major(&rdz, rows, width);
        let a_prev = if l == 0 {
            x
        } else {
            &acts[l - 1][..rows * fan_in]
        };
        matmul_into(
            &mut out[2 * l],
            MatRef::row_major(a_prev, rows, fan_in).t(),
            rd,
            false,
        )?;
        if l > 0 {
            matmul_into(
                &mut out[2 * l],
                MatRef::row_major(&racts[l - 1], rows, fan_in).t(),
                d,
                true,
            )?;
        }
        sum_rows_into(&rdz, &mut out[2 * l + 1]);
        if l > 0 {
            let wt = MatRef::row_major(w[l], fan_in, width).t();
            let mut dz_prev = vec![0.0; rows * fan_in];
            matmul_into(&mut dz_prev, d, wt, false)?;
            let mut rdz_prev = vec![0.0; rows * fan_in];
            matmul_into(&mut rdz_prev, rd, wt, false)?;
            matmul_into(
                &mut rdz_prev,
                d,
                MatRef::row_major(&v[2 * l], fan_in, width).t(),
                true,
            )?;
            relu_backward(&mut dz_prev, a_prev);
            relu_backward(&mut rdz_prev, a_prev);
            dz = dz_prev;
            rdz = rdz_prev;
        }
    }
    Ok(())
}

/// Runs `f` on the weights' and biases' values, read in place (no copy).
fn with_params<R>(
    weights: &[Tensor],
    biases: &[Tensor],
    f: impl FnOnce(&[&[f32]], &[&[f32]]) -> Result<R>,
) -> Result<R> {
    let wg: Vec<_> = weights.iter().map(Tensor::storage_and_layout).collect();
    let bg: Vec<_> = biases.iter().map(Tensor::storage_and_layout).collect();
    let w = wg
        .iter()
        .map(|(s, l)| f32_data(s, l))
        .collect::<Result<Vec<_>>>()?;
    let b = bg
        .iter()
        .map(|(s, l)| f32_data(s, l))
        .collect::<Result<Vec<_>>>()?;
    f(&w, &b)
}

/// Makes `buf` at least `n` long, never shorter: a buffer that lives from step to step (or pass to
/// pass) keeps the length of its largest batch, and its users take the first `n` values. Growing
/// zero-fills the new part; shrinking and growing back, as the epoch's last, smaller batch or the
/// evaluation's alternating training and test passes did, zero-filled it again every time (about
/// 2% of a quickstart's CPU). Every value a step reads is written first in that step.
fn grow(buf: &mut Vec<f32>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
}

/// Whether evaluation runs transposed with the fused logit layer ([`eval_head`]): when the network
/// has a hidden layer and its logit layer's products are at least 1/14 of the others'. The head
/// saves about two thirds of the logit layer, its bias and the loss, but the gemm crate forms
/// the transposed products 5–20% slower (it packs the batch instead of the weights). Timed
/// alone with the transposed path taken for every network (one thread, 4096 rows, 10 classes;
/// `examples/evalbench.rs`), against the row-major pass: widths 32-128 (2000 rows) 1.38×
/// faster, 64-256 1.17×, 128-128 1.01×, 32-128-128 1.03×, 256-128 0.85×, 784-800 0.95×,
/// 32-512-512 0.98×. The rule takes the first three.
fn fused_head_pays(widths: &[usize]) -> bool {
    let layers = widths.len().saturating_sub(1);
    if layers < 2 {
        return false;
    }
    let macs = |l: usize| widths[l] as u64 * widths[l + 1] as u64;
    let rest: u64 = (0..layers - 1).map(macs).sum();
    14 * macs(layers - 1) >= rest
}

/// The hidden layers' forward pass for evaluation, transposed, for the fused logit layer
/// ([`eval_head`]): `acts[l]` holds hidden layer l as `out × rows` (the batch contiguous), after
/// its bias and ReLU except on the last, which the head applies as it reads it. `w` and `b` are
/// the hidden layers' weights and biases, `x` the batch row-major, `xt` (if given) the same
/// batch transposed, which the first product then reads instead. Each product is the gemm
/// crate's on the transposed operands (the same sums in the same order as the row-major pass's
/// for the quickstart's shapes; see [`eval_head`]). Computing the row-major products and
/// transposing them instead took longer (2000 rows, 32 → 128: 103 µs and a 45–107 µs transpose
/// against 125 µs here, and 113 µs from the inputs transposed ahead, `xt`).
fn hidden_t(
    acts: &mut Vec<Vec<f32>>,
    widths: &[usize],
    w: &[&[f32]],
    b: &[&[f32]],
    x: &[f32],
    xt: Option<MatRef<'_>>,
    rows: usize,
) -> Result<()> {
    let layers = w.len();
    acts.resize_with(acts.len().max(layers), Vec::new);
    for l in 0..layers {
        let (fan_in, out) = (widths[l], widths[l + 1]);
        let (below, rest) = acts.split_at_mut(l);
        let input_t = if l == 0 {
            xt.unwrap_or_else(|| MatRef::row_major(x, rows, fan_in).t())
        } else {
            MatRef::row_major(&below[l - 1][..fan_in * rows], fan_in, rows)
        };
        let zt = &mut rest[0];
        grow(zt, out * rows);
        let zt = &mut zt[..out * rows];
        matmul_into(zt, MatRef::row_major(w[l], fan_in, out).t(), input_t, false)?;
        if l + 1 < layers {
            bias_relu_t(zt, b[l], rows)?;
        }
    }
    Ok(())
}

/// The forward pass into `acts` (one buffer per layer, its first `rows` rows: [`grow`]):
/// zₗ = aₗ₋₁·Wₗᵀ + bₗ, ReLU on every layer but the last.
fn forward_into(
    acts: &mut Vec<Vec<f32>>,
    widths: &[usize],
    w: &[&[f32]],
    b: &[&[f32]],
    x: &[f32],
    rows: usize,
) -> Result<()> {
    let layers = w.len();
    acts.resize_with(layers, Vec::new);
    for l in 0..layers {
        let (fan_in, out) = (widths[l], widths[l + 1]);
        let (below, rest) = acts.split_at_mut(l);
        let input = if l == 0 {
            x
        } else {
            &below[l - 1][..rows * fan_in]
        };
        let z = &mut rest[0];
        grow(z, rows * out);
        let z = &mut z[..rows * out];
        matmul_into(
            z,
            MatRef::row_major(input, rows, fan_in),
            MatRef::row_major(w[l], fan_in, out),
            false,
        )?;
        bias_act(z, b[l], l + 1 < layers)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_fused_head_is_taken_where_it_was_timed_faster() {
        assert!(fused_head_pays(&[32, 128, 10])); // the quickstart's network
        assert!(fused_head_pays(&[32, 64, 64, 10]));
        assert!(fused_head_pays(&[128, 128, 10]));
        assert!(!fused_head_pays(&[784, 800, 10]));
        assert!(!fused_head_pays(&[32, 128, 128, 10]));
        assert!(!fused_head_pays(&[32, 10])); // no hidden layer
    }

    #[test]
    fn evaluation_gives_the_row_major_passs_bits_on_either_path() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Fused with one and with two hidden layers (one hidden-to-hidden product transposed),
        // and the row-major path.
        for hidden in [&[128][..], &[64, 64], &[128, 128], &[]] {
            let mut net = Mlp::new(32, hidden, 10, &mut rng).unwrap();
            for rows in [1, 37, 1000] {
                let x: Vec<f32> = (0..rows * 32)
                    .map(|i| ((i * 7919) % 2003) as f32 / 500.0 - 2.0)
                    .collect();
                let y: Vec<u32> = (0..rows as u32).map(|r| r * 3 % 10).collect();
                let logits = net
                    .logits(&Tensor::from_vec(x.clone(), (rows, 32), &Device::Cpu).unwrap())
                    .unwrap();
                let mut z = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let want = xent_rows(&mut z, 10, &y);
                let got = net.eval_loss(&x, &y).unwrap();
                let what = format!("hidden {hidden:?}, rows {rows}");
                assert_eq!(got.loss.to_bits(), want.loss.to_bits(), "{what}");
                assert_eq!((got.correct, got.count), (want.correct, rows), "{what}");
                // The inputs also given transposed, as the trainer gives a chunk of a data
                // set's transpose: columns 3 … 3 + rows − 1 of a wider matrix.
                let stride = rows + 5;
                let mut wide = vec![f32::NAN; 32 * stride];
                for r in 0..rows {
                    for p in 0..32 {
                        wide[p * stride + 3 + r] = x[r * 32 + p];
                    }
                }
                let xt = MatRef {
                    data: &wide[3..],
                    rows: 32,
                    cols: rows,
                    row_stride: stride,
                    col_stride: 1,
                };
                assert_eq!(net.reads_transposed(), fused_head_pays(&net.widths));
                let got_t = net.eval_loss_t(&x, xt, &y).unwrap();
                assert_eq!(
                    got_t.loss.to_bits(),
                    want.loss.to_bits(),
                    "{what}, transposed"
                );
                assert_eq!(got_t.correct, want.correct, "{what}, transposed");
                // A transposed batch of another shape is an error where it is read.
                let short = MatRef {
                    cols: rows + 1,
                    ..xt
                };
                if net.reads_transposed() {
                    assert!(net.eval_loss_t(&x, short, &y).is_err(), "{what}");
                }
                assert!(
                    got.loss > 0.0 && got.correct > 0 || rows == 1,
                    "{what}: {got:?}"
                );
            }
        }
    }
}
