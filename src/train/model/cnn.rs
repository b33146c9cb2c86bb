//! A small convolutional network for image data: two blocks of conv(5×5, padding 2) + ReLU +
//! maxpool(2), then one dense layer to the classes. Gradients come from candle's autograd.

use candle_core::{Tensor, Var};
use rand::Rng;

use super::{Network, kaiming_uniform};
use crate::error::{Error, Result};
use crate::train::ops::{LossSum, softmax_xent};

const KERNEL: usize = 5;
const PAD: usize = 2;

/// conv(c₁) → pool → conv(c₂) → pool → dense(classes).
pub struct Cnn {
    input: (usize, usize, usize),
    vars: Vec<Var>,
    /// The same storage as `vars`, without autograd tracking, for evaluation passes.
    plain: Vec<Tensor>,
    macs: u64,
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
        let tensors = [
            kaiming_uniform(rng, &[c1, c, KERNEL, KERNEL], fan1)?,
            kaiming_uniform(rng, &[c1], fan1)?,
            kaiming_uniform(rng, &[c2, c1, KERNEL, KERNEL], fan2)?,
            kaiming_uniform(rng, &[c2], fan2)?,
            kaiming_uniform(rng, &[classes, fan3], fan3)?,
            kaiming_uniform(rng, &[classes], fan3)?,
        ];
        let vars: Vec<Var> = tensors
            .into_iter()
            .map(|t| Var::from_tensor(&t))
            .collect::<candle_core::Result<_>>()?;
        let plain = vars.iter().map(|v| v.as_tensor().detach()).collect();
        let macs = (h * w * c1 * fan1 + (h / 2) * (w / 2) * c2 * fan2 + classes * fan3) as u64;
        Ok(Cnn {
            input,
            vars,
            plain,
            macs,
        })
    }

    fn forward(&self, p: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let (c, h, w) = self.input;
        let rows = x.dim(0)?;
        let x = x.reshape((rows, c, h, w))?;
        let block = |x: &Tensor, wt: &Tensor, b: &Tensor| -> Result<Tensor> {
            let z = x.conv2d(wt, PAD, 1, 1, 1)?;
            let z = z.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
            max_pool2(&z.relu()?)
        };
        let a1 = block(&x, &p[0], &p[1])?;
        let a2 = block(&a1, &p[2], &p[3])?;
        let flat = a2.flatten_from(1)?;
        Ok(flat.matmul(&p[4].t()?)?.broadcast_add(&p[5])?)
    }
}

/// 2×2 max pooling (stride 2, odd edges dropped) as two reductions over a reshaped view.
///
/// Not `Tensor::max_pool2d`: candle 0.11's backward pass for it scales every gradient by 1/k²
/// (it divides by the pooled mask, which is 1/k² when the maximum is unique); the reductions'
/// backward pass routes the whole gradient to the maximum, as PyTorch does. The finite-difference
/// test in tests/trainer.rs catches the difference.
fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?.contiguous()?
    } else {
        x.clone()
    };
    Ok(x.reshape((b, c, h2, 2, w2, 2))?.max(5)?.max(3)?)
}

impl Network for Cnn {
    fn params(&self) -> Vec<Tensor> {
        self.plain.clone()
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(&self.plain, x)
    }

    fn loss_and_grads(&mut self, x: &Tensor, y: &[u32]) -> Result<(LossSum, Vec<Tensor>)> {
        let tracked: Vec<Tensor> = self.vars.iter().map(|v| v.as_tensor().clone()).collect();
        let logits = self.forward(&tracked, x)?;
        let (sum, dl) = softmax_xent(&logits, y, true)?;
        let dl = dl.ok_or_else(|| candle_core::Error::Msg("no logits gradient".into()))?;
        // ∂/∂θ Σ (logits ⊙ D) with D = ∂L/∂logits held constant is exactly ∂L/∂θ.
        let proxy = (logits * dl)?.sum_all()?;
        let store = proxy.backward()?;
        let grads =
            self.vars
                .iter()
                .map(|v| {
                    store.get(v.as_tensor()).cloned().ok_or_else(|| {
                        Error::from(candle_core::Error::Msg("missing gradient".into()))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        Ok((sum, grads))
    }

    fn forward_macs(&self) -> u64 {
        self.macs
    }
}
