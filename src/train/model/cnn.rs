//! A small convolutional network for image data: two blocks of conv(5×5, padding 2) + ReLU +
//! maxpool(2), then one dense layer to the classes, with a hand-written backward pass.
//!
//! Each image goes through forward *and* backward before the next one starts (the gradient of
//! the mean loss with respect to one image's logits depends on that image alone), so every
//! intermediate lives in a few hundred kilobytes of per-image scratch that stays in cache and
//! is reused, and the weight gradients accumulate image by image in a fixed order
//! (deterministic). Batch-sized intermediates — tens of megabytes at B = 256 — made the same
//! products run 2–3× slower.
//!
//! Per image (c → c₁ → c₂ channels, P₁ = h·w and P₂ = h/2·w/2 pixels, K = c·25 and c₁·25):
//! - conv 1: patches as columns, `cols₁` (K₁, P₁) in (c, kh, kw) order; z₁ = W₁·cols₁,
//!   (c₁, P₁) = CHW.
//! - pool 1: ReLU(z₁ + b₁), 2×2 max, argmax recorded → a₁ (c₁, h/2, w/2), CHW; then copied
//!   into a zero-padded HWC image.
//! - conv 2: patches as rows, `cols₂` (P₂, K₂) in (kh, kw, c) order; z₂ = cols₂·W₂ᵀ,
//!   (P₂, c₂) = HWC.
//! - pool 2 → a₂ (c₂, h/4, w/4), CHW: PyTorch's flatten order, so the dense weight is used
//!   as PyTorch stores it; logits = W₃·a₂ + b₃.
//!
//! Backward, from dlogits: ∂W₃ += dlogits ⊗ a₂, da₂ = W₃ᵀ·dlogits; unpool 2 puts da₂ at the
//! argmaxes the ReLU passed (∂b₂ += the same values) → dz₂; ∂W₂ += dz₂ᵀ·cols₂;
//! dcols₂ = dz₂·W₂ (into `cols₂`'s buffer), col2im → da₁; unpool 1 → dz₁ (∂b₁);
//! ∂W₁ += dz₁·cols₁ᵀ. The input's gradient is not needed.
//!
//! Layouts are the ones measured fastest. The matmul kernel vectorises along the contiguous
//! dimension of its output, so conv 1 (8 output channels, 25 taps) computes CHW, pixels along
//! the vector: 4× faster than pixels × channels. For conv 2, (kh, kw, c) patch rows make
//! im2col and col2im copy runs of 5·c₁ adjacent values instead of 5 (2.5× and 6× faster), and
//! the weight gradient runs about twice as fast from patch rows as from patch columns.
//!
//! Parameters and gradients keep PyTorch's layouts — conv weights `(out, in, 5, 5)`, the dense
//! weight `(classes, c₂·h/4·w/4)` — so `params()` reads like a PyTorch `state_dict`. Conv 2's
//! weight is repacked to `(out, 5, 5, in)` once per step (c₂·c₁·25 values) and its gradient
//! packed back.

use candle_core::{Device, Tensor};
use rand::Rng;

use super::{Grads, Network, check_batch, kaiming_uniform};
use crate::error::{Error, Result};
use crate::train::ops::{
    ConvGeometry, LossSum, MatRef, PoolInput, chw_to_padded_hwc, col2im_padded_hwc, f32_data,
    im2col_padded_hwc, im2col_patch_cols, matmul_into, max_pool2_bias_relu, max_unpool2_relu,
    padded_hwc_to_chw, softmax_xent_r_row, softmax_xent_row, transpose_into,
};

const KERNEL: usize = 5;

/// Weights of one kernel per input channel (`KERNEL`²).
pub(crate) const KERNEL_TAPS: usize = KERNEL * KERNEL;
const PAD: usize = 2;

/// conv(c₁) → pool → conv(c₂) → pool → dense(classes).
pub struct Cnn {
    shapes: Shapes,
    /// conv1 weight and bias, conv2 weight and bias, dense weight and bias (PyTorch layouts).
    params: Vec<Tensor>,
    /// Working memory of the training step.
    scratch: Scratch,
    macs: u64,
}

/// The sizes of every stage.
#[derive(Clone, Copy, Debug)]
struct Shapes {
    conv1: ConvGeometry,
    conv2: ConvGeometry,
    c1: usize,
    c2: usize,
    /// c₂ · h/4 · w/4.
    features: usize,
    classes: usize,
}

impl Shapes {
    fn pool1(&self) -> PoolInput {
        PoolInput {
            channels: self.c1,
            height: self.conv1.height,
            width: self.conv1.width,
            channels_last: false,
        }
    }

    fn pool2(&self) -> PoolInput {
        PoolInput {
            channels: self.c2,
            height: self.conv2.height,
            width: self.conv2.width,
            channels_last: true,
        }
    }
}

/// One image's intermediates (see the module docs for the layouts), and conv 2's weight in
/// the layout its product reads.
struct Scratch {
    /// W₂ as `(out, kh, kw, in)`.
    w2: Vec<f32>,
    /// W₂'s gradient in the same layout.
    gw2: Vec<f32>,
    cols1: Vec<f32>,
    /// z₁, then its gradient.
    z1: Vec<f32>,
    a1: Vec<f32>,
    arg1: Vec<u32>,
    /// a₁ as a zero-padded HWC image, then its gradient.
    a1_hwc: Vec<f32>,
    da1: Vec<f32>,
    /// cols₂, then its gradient.
    cols2: Vec<f32>,
    /// z₂, then its gradient.
    z2: Vec<f32>,
    a2: Vec<f32>,
    arg2: Vec<u32>,
    da2: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
}

impl Scratch {
    fn new(s: &Shapes) -> Self {
        let (g1, g2) = (s.conv1, s.conv2);
        Scratch {
            w2: vec![0.0; s.c2 * g2.patch()],
            gw2: vec![0.0; s.c2 * g2.patch()],
            cols1: vec![0.0; g1.cols_len()],
            z1: vec![0.0; s.c1 * g1.pixels()],
            a1: vec![0.0; g2.input_len()],
            arg1: vec![0; g2.input_len()],
            a1_hwc: vec![0.0; g2.padded_len()],
            da1: vec![0.0; g2.input_len()],
            cols2: vec![0.0; g2.cols_len()],
            z2: vec![0.0; g2.pixels() * s.c2],
            a2: vec![0.0; s.features],
            arg2: vec![0; s.features],
            da2: vec![0.0; s.features],
            logits: vec![0.0; s.classes],
            dlogits: vec![0.0; s.classes],
        }
    }
}

/// The parameters' values, in [`Cnn::params`] order (read in place).
struct Weights<'a> {
    w1: &'a [f32],
    b1: &'a [f32],
    w2: &'a [f32],
    b2: &'a [f32],
    w3: &'a [f32],
    b3: &'a [f32],
}

impl Cnn {
    /// A network for `(channels, height, width)` images, initialised as PyTorch's layers.
    pub fn new(
        input: (usize, usize, usize),
        channels: (usize, usize),
        classes: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let (c, h, w) = input;
        let (c1, c2) = channels;
        let (h4, w4) = (h / 4, w / 4);
        if h4 == 0 || w4 == 0 {
            return Err(Error::config(
                "model",
                format!("cnn needs images of at least 4×4 pixels, got {h}×{w}"),
            ));
        }
        let fan1 = c * KERNEL * KERNEL;
        let fan2 = c1 * KERNEL * KERNEL;
        let fan3 = c2 * h4 * w4;
        let params = vec![
            kaiming_uniform(rng, &[c1, c, KERNEL, KERNEL], fan1)?,
            kaiming_uniform(rng, &[c1], fan1)?,
            kaiming_uniform(rng, &[c2, c1, KERNEL, KERNEL], fan2)?,
            kaiming_uniform(rng, &[c2], fan2)?,
            kaiming_uniform(rng, &[classes, fan3], fan3)?,
            kaiming_uniform(rng, &[classes], fan3)?,
        ];
        let geometry = |channels, height, width| ConvGeometry {
            channels,
            height,
            width,
            kernel: KERNEL,
            pad: PAD,
        };
        let shapes = Shapes {
            conv1: geometry(c, h, w),
            conv2: geometry(c1, h / 2, w / 2),
            c1,
            c2,
            features: fan3,
            classes,
        };
        let macs = (h * w * c1 * fan1 + (h / 2) * (w / 2) * c2 * fan2 + classes * fan3) as u64;
        Ok(Cnn {
            shapes,
            params,
            scratch: Scratch::new(&shapes),
            macs,
        })
    }
}

/// Runs `f` on the parameters' values (read in place, no copy), after repacking conv 2's weight
/// into `m.w2`.
fn with_weights<R>(
    params: &[Tensor],
    s: &Shapes,
    m: &mut Scratch,
    f: impl FnOnce(&Weights, &mut Scratch) -> Result<R>,
) -> Result<R> {
    let guards: Vec<_> = params.iter().map(Tensor::storage_and_layout).collect();
    let p = guards
        .iter()
        .map(|(s, l)| f32_data(s, l))
        .collect::<Result<Vec<_>>>()?;
    let w = Weights {
        w1: p[0],
        b1: p[1],
        w2: p[2],
        b2: p[3],
        w3: p[4],
        b3: p[5],
    };
    channels_last(w.w2, s.c1, KERNEL * KERNEL, &mut m.w2);
    f(&w, m)
}

/// `(out, in, taps)` → `(out, taps, in)`: a transpose of each output channel's block.
fn channels_last(src: &[f32], cin: usize, taps: usize, dst: &mut [f32]) {
    for (s, d) in src
        .chunks_exact(cin * taps)
        .zip(dst.chunks_exact_mut(cin * taps))
    {
        transpose_into(s, cin, taps, d);
    }
}

/// The inverse of [`channels_last`].
fn channels_first(src: &[f32], cin: usize, taps: usize, dst: &mut [f32]) {
    channels_last(src, taps, cin, dst);
}

/// One image's forward pass, `x` its CHW pixels; leaves every intermediate and the logits in `m`.
fn forward_image(s: &Shapes, w: &Weights, x: &[f32], m: &mut Scratch) -> Result<()> {
    let (g1, g2) = (s.conv1, s.conv2);
    im2col_patch_cols(x, g1, &mut m.cols1)?;
    matmul_into(
        &mut m.z1,
        MatRef::row_major(w.w1, s.c1, g1.patch()),
        MatRef::row_major(&m.cols1, g1.patch(), g1.pixels()),
        false,
    )?;
    max_pool2_bias_relu(&m.z1, s.pool1(), w.b1, &mut m.a1, &mut m.arg1)?;
    chw_to_padded_hwc(&m.a1, g2, &mut m.a1_hwc)?;
    im2col_padded_hwc(&m.a1_hwc, g2, &mut m.cols2)?;
    matmul_into(
        &mut m.z2,
        MatRef::row_major(&m.cols2, g2.pixels(), g2.patch()),
        MatRef::row_major(&m.w2, s.c2, g2.patch()).t(),
        false,
    )?;
    max_pool2_bias_relu(&m.z2, s.pool2(), w.b2, &mut m.a2, &mut m.arg2)?;
    let rows = w.w3.chunks_exact(s.features);
    for ((z, row), b) in m.logits.iter_mut().zip(rows).zip(w.b3) {
        *z = dot(row, &m.a2) + b;
    }
    Ok(())
}

/// The gradient accumulators of one step, conv 2's weight in `Scratch::w2`'s layout.
struct GradsMut<'a> {
    w1: &'a mut [f32],
    b1: &'a mut [f32],
    w2: &'a mut [f32],
    b2: &'a mut [f32],
    w3: &'a mut [f32],
    b3: &'a mut [f32],
}

/// One image's backward pass from `m.dlogits`, after [`forward_image`] on the same image;
/// adds the parameter gradients into `g`.
fn backward_image(s: &Shapes, w: &Weights, m: &mut Scratch, g: &mut GradsMut) -> Result<()> {
    let (g1, g2) = (s.conv1, s.conv2);
    m.da2.fill(0.0);
    let rows = w.w3.chunks_exact(s.features);
    let grad_rows = g.w3.chunks_exact_mut(s.features);
    for (((&d, row), grad_row), gb) in m
        .dlogits
        .iter()
        .zip(rows)
        .zip(grad_rows)
        .zip(g.b3.iter_mut())
    {
        axpy(d, &m.a2, grad_row);
        axpy(d, row, &mut m.da2);
        *gb += d;
    }
    max_unpool2_relu(&m.da2, &m.a2, &m.arg2, &mut m.z2, g.b2)?;
    let dz2 = MatRef::row_major(&m.z2, g2.pixels(), s.c2);
    matmul_into(
        g.w2,
        dz2.t(),
        MatRef::row_major(&m.cols2, g2.pixels(), g2.patch()),
        true,
    )?;
    matmul_into(
        &mut m.cols2,
        dz2,
        MatRef::row_major(&m.w2, s.c2, g2.patch()),
        false,
    )?;
    col2im_padded_hwc(&m.cols2, g2, &mut m.a1_hwc)?;
    padded_hwc_to_chw(&m.a1_hwc, g2, &mut m.da1)?;
    max_unpool2_relu(&m.da1, &m.a1, &m.arg1, &mut m.z1, g.b1)?;
    matmul_into(
        g.w1,
        MatRef::row_major(&m.z1, s.c1, g1.pixels()),
        MatRef::row_major(&m.cols1, g1.patch(), g1.pixels()).t(),
        true,
    )?;
    Ok(())
}

/// Σ aᵢbᵢ with eight running sums, so the loop vectorises (a fixed order: deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    s + tail
}

/// `y ← y + α·x`.
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (d, s) in y.iter_mut().zip(x) {
        *d += alpha * s;
    }
}

impl Network for Cnn {
    fn params(&self) -> Vec<Tensor> {
        self.params.clone()
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let s = &self.shapes;
        let d = s.conv1.input_len();
        let (rows, cols) = x.dims2()?;
        if cols != d {
            return Err(candle_core::Error::Msg(format!(
                "cnn: inputs of {cols} values, expected {}×{}×{} = {d}",
                s.conv1.channels, s.conv1.height, s.conv1.width
            ))
            .into());
        }
        let x = x.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let xs = f32_data(&xs, xl)?;
        let mut m = Scratch::new(s);
        let out = with_weights(&self.params, s, &mut m, |w, m| {
            let mut out = vec![0f32; rows * s.classes];
            for (xi, zi) in xs.chunks_exact(d).zip(out.chunks_exact_mut(s.classes)) {
                forward_image(s, w, xi, m)?;
                zi.copy_from_slice(&m.logits);
            }
            Ok(out)
        })?;
        Ok(Tensor::from_vec(out, (rows, s.classes), &Device::Cpu)?)
    }

    fn loss_and_grads(&mut self, x: &[f32], y: &[u32], grads: &mut Grads) -> Result<LossSum> {
        let Cnn {
            shapes: s,
            params,
            scratch,
            ..
        } = self;
        let d = s.conv1.input_len();
        check_batch("cnn", x, y, d)?;
        grads.check(params.iter().map(Tensor::elem_count))?;
        let [w1, b1, w2, b2, w3, b3] = grads.bufs_mut() else {
            return Err(
                candle_core::Error::Msg("cnn: six gradient buffers expected".into()).into(),
            );
        };
        for b in [&mut *w1, &mut *b1, &mut *b2, &mut *w3, &mut *b3] {
            b.fill(0.0);
        }
        scratch.gw2.fill(0.0);
        let Scratch { gw2, .. } = scratch;
        let mut gw2 = std::mem::take(gw2);
        let mut g = GradsMut {
            w1,
            b1,
            w2: &mut gw2,
            b2,
            w3,
            b3,
        };
        let sum = with_weights(params, s, scratch, |w, m| {
            let mut sum = LossSum::new(y.len());
            let scale = 1.0 / y.len().max(1) as f32;
            for (xi, &label) in x.chunks_exact(d).zip(y) {
                forward_image(s, w, xi, m)?;
                sum.add(softmax_xent_row(
                    &m.logits,
                    label,
                    scale,
                    Some(&mut m.dlogits),
                ));
                backward_image(s, w, m, &mut g)?;
            }
            Ok(sum)
        });
        channels_first(&gw2, s.c1, KERNEL * KERNEL, w2);
        scratch.gw2 = gw2;
        sum
    }

    fn eval_loss(&mut self, x: &[f32], y: &[u32]) -> Result<LossSum> {
        let Cnn {
            shapes: s,
            params,
            scratch,
            ..
        } = self;
        let d = s.conv1.input_len();
        check_batch("cnn", x, y, d)?;
        with_weights(params, s, scratch, |w, m| {
            let mut sum = LossSum::new(y.len());
            for (xi, &label) in x.chunks_exact(d).zip(y) {
                forward_image(s, w, xi, m)?;
                sum.add(softmax_xent_row(&m.logits, label, 1.0, None));
            }
            Ok(sum)
        })
    }

    fn forward_macs(&self) -> u64 {
        self.macs
    }

    fn loss_hessian_vector(
        &mut self,
        x: &[f32],
        y: &[u32],
        v: &Grads,
        out: &mut Grads,
    ) -> Result<bool> {
        let Cnn {
            shapes: s,
            params,
            scratch,
            ..
        } = self;
        let d = s.conv1.input_len();
        check_batch("cnn", x, y, d)?;
        v.check(params.iter().map(Tensor::elem_count))?;
        out.check(params.iter().map(Tensor::elem_count))?;
        let six = || candle_core::Error::Msg("cnn: six parameter buffers expected".into());
        let [vw1, vb1, vw2, vb2, vw3, vb3] = v.bufs() else {
            return Err(six().into());
        };
        let [w1, b1, w2, b2, w3, b3] = out.bufs_mut() else {
            return Err(six().into());
        };
        for b in [&mut *w1, &mut *b1, &mut *b2, &mut *w3, &mut *b3] {
            b.fill(0.0);
        }
        // The directional derivatives' intermediates, in the layouts of the forward pass's;
        // the direction's conv 2 weight repacked as W₂ is.
        let mut r = Scratch::new(s);
        channels_last(vw2, s.c1, KERNEL_TAPS, &mut r.w2);
        let dir = Weights {
            w1: vw1,
            b1: vb1,
            w2: &[],
            b2: vb2,
            w3: vw3,
            b3: vb3,
        };
        let mut hw2 = vec![0.0; s.c2 * s.conv2.patch()];
        let mut spare = RSpare {
            p: Vec::with_capacity(s.classes),
            bias: vec![0.0; s.c1.max(s.c2)],
        };
        let mut hv = GradsMut {
            w1,
            b1,
            w2: &mut hw2,
            b2,
            w3,
            b3,
        };
        with_weights(params, s, scratch, |w, m| {
            let scale = 1.0 / y.len().max(1) as f64;
            for (xi, &label) in x.chunks_exact(d).zip(y) {
                forward_image(s, w, xi, m)?;
                hessian_vector_image(s, w, &dir, label, scale, m, &mut r, &mut hv, &mut spare)?;
            }
            Ok(())
        })?;
        channels_first(&hw2, s.c1, KERNEL_TAPS, w2);
        Ok(true)
    }
}

/// Small buffers of [`hessian_vector_image`], kept from image to image: the softmax of a row
/// of logits, and a bias gradient of the plain backward pass that the product does not need.
struct RSpare {
    p: Vec<f64>,
    bias: Vec<f32>,
}

/// `out ← R{pool(ReLU(z + b))}` with the pattern held: each output's window maximum (`arg`, into
/// `rz`'s layout) and whether the ReLU passed it (`a` > 0) are those of the forward pass, so the
/// directional derivative is `rz` at the maximum plus the bias direction, or 0. `a`, `out` CHW.
fn pool_direction(rz: &[f32], rb: &[f32], a: &[f32], arg: &[u32], out: &mut [f32]) -> Result<()> {
    let per = out.len() / rb.len().max(1);
    for (k, ((o, &ak), &i)) in out.iter_mut().zip(a).zip(arg).enumerate() {
        *o = if ak > 0.0 {
            let z = rz.get(i as usize).ok_or_else(|| {
                candle_core::Error::Msg(format!("cnn: pooling index {i} out of range"))
            })?;
            z + rb[k / per]
        } else {
            0.0
        };
    }
    Ok(())
}

/// One image's contribution to H·v by Pearlmutter's R-operator, after [`forward_image`] on it:
/// R{·} = ∂/∂r at w + r·v of every intermediate, with the ReLU pattern and the pooling maxima
/// held (the Hessian of the smooth piece of the loss that holds w), `dir` the direction (its
/// conv 2 weight already repacked into `r.w2`). Forward: R{z₁} = V₁·cols₁; R{a₁} = R{z₁} at
/// the maxima + v_b₁ where passed; R{z₂} = R{cols₂}·W₂ᵀ + cols₂·V₂ᵀ; R{a₂} likewise;
/// R{f} = W₃·R{a₂} + V₃·a₂ + v_b₃. At the logits δ = (p − onehot)·scale and
/// R{δ} = p ⊙ (R{f} − pᵀR{f})·scale. Backward, each step of [`backward_image`] and its R{}:
/// R{dW₃} = R{δ}⊗a₂ + δ⊗R{a₂}, R{da₂} = W₃ᵀR{δ} + V₃ᵀδ, unpool; R{dW₂} = R{dz₂}ᵀcols₂ +
/// dz₂ᵀR{cols₂}, R{dcols₂} = R{dz₂}·W₂ + dz₂·V₂, col2im, unpool; R{dW₁} = R{dz₁}·cols₁ᵀ.
/// Adds into `hv` (conv 2's weight in `Scratch::w2`'s layout); the bias parts come from the
/// unpooling of the R{} gradients.
#[allow(clippy::too_many_arguments)]
fn hessian_vector_image(
    s: &Shapes,
    w: &Weights,
    dir: &Weights,
    label: u32,
    scale: f64,
    m: &mut Scratch,
    r: &mut Scratch,
    hv: &mut GradsMut,
    spare: &mut RSpare,
) -> Result<()> {
    let (g1, g2) = (s.conv1, s.conv2);
    // Forward.
    matmul_into(
        &mut r.z1,
        MatRef::row_major(dir.w1, s.c1, g1.patch()),
        MatRef::row_major(&m.cols1, g1.patch(), g1.pixels()),
        false,
    )?;
    pool_direction(&r.z1, dir.b1, &m.a1, &m.arg1, &mut r.a1)?;
    chw_to_padded_hwc(&r.a1, g2, &mut r.a1_hwc)?;
    im2col_padded_hwc(&r.a1_hwc, g2, &mut r.cols2)?;
    matmul_into(
        &mut r.z2,
        MatRef::row_major(&r.cols2, g2.pixels(), g2.patch()),
        MatRef::row_major(&m.w2, s.c2, g2.patch()).t(),
        false,
    )?;
    matmul_into(
        &mut r.z2,
        MatRef::row_major(&m.cols2, g2.pixels(), g2.patch()),
        MatRef::row_major(&r.w2, s.c2, g2.patch()).t(),
        true,
    )?;
    pool_direction(&r.z2, dir.b2, &m.a2, &m.arg2, &mut r.a2)?;
    let rows = w.w3.chunks_exact(s.features);
    let dir_rows = dir.w3.chunks_exact(s.features);
    for (((rz, row), dir_row), rb) in r.logits.iter_mut().zip(rows).zip(dir_rows).zip(dir.b3) {
        *rz = dot(row, &r.a2) + dot(dir_row, &m.a2) + rb;
    }

    // δ and R{δ} at the logits, the softmax in f64.
    softmax_xent_r_row(
        &m.logits,
        &r.logits,
        label,
        scale,
        &mut spare.p,
        &mut m.dlogits,
        &mut r.dlogits,
    );

    // Backward.
    m.da2.fill(0.0);
    r.da2.fill(0.0);
    let rows = w.w3.chunks_exact(s.features);
    let dir_rows = dir.w3.chunks_exact(s.features);
    let hv_rows = hv.w3.chunks_exact_mut(s.features);
    for (((((&dk, &rdk), row), dir_row), hv_row), hb) in m
        .dlogits
        .iter()
        .zip(&r.dlogits)
        .zip(rows)
        .zip(dir_rows)
        .zip(hv_rows)
        .zip(hv.b3.iter_mut())
    {
        axpy(rdk, &m.a2, hv_row);
        axpy(dk, &r.a2, hv_row);
        *hb += rdk;
        axpy(dk, row, &mut m.da2);
        axpy(rdk, row, &mut r.da2);
        axpy(dk, dir_row, &mut r.da2);
    }
    let unused = &mut spare.bias;
    max_unpool2_relu(&m.da2, &m.a2, &m.arg2, &mut m.z2, &mut unused[..s.c2])?;
    max_unpool2_relu(&r.da2, &m.a2, &m.arg2, &mut r.z2, hv.b2)?;
    let dz2 = MatRef::row_major(&m.z2, g2.pixels(), s.c2);
    let rdz2 = MatRef::row_major(&r.z2, g2.pixels(), s.c2);
    let cols2 = MatRef::row_major(&m.cols2, g2.pixels(), g2.patch());
    matmul_into(hv.w2, rdz2.t(), cols2, true)?;
    matmul_into(
        hv.w2,
        dz2.t(),
        MatRef::row_major(&r.cols2, g2.pixels(), g2.patch()),
        true,
    )?;
    let w2 = MatRef::row_major(&m.w2, s.c2, g2.patch());
    matmul_into(&mut r.cols2, rdz2, w2, false)?;
    matmul_into(
        &mut r.cols2,
        dz2,
        MatRef::row_major(&r.w2, s.c2, g2.patch()),
        true,
    )?;
    matmul_into(&mut m.cols2, dz2, w2, false)?;
    col2im_padded_hwc(&m.cols2, g2, &mut m.a1_hwc)?;
    padded_hwc_to_chw(&m.a1_hwc, g2, &mut m.da1)?;
    col2im_padded_hwc(&r.cols2, g2, &mut r.a1_hwc)?;
    padded_hwc_to_chw(&r.a1_hwc, g2, &mut r.da1)?;
    max_unpool2_relu(&m.da1, &m.a1, &m.arg1, &mut m.z1, &mut unused[..s.c1])?;
    max_unpool2_relu(&r.da1, &m.a1, &m.arg1, &mut r.z1, hv.b1)?;
    matmul_into(
        hv.w1,
        MatRef::row_major(&r.z1, s.c1, g1.pixels()),
        MatRef::row_major(&m.cols1, g1.patch(), g1.pixels()).t(),
        true,
    )?;
    Ok(())
}
