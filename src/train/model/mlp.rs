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
//! except the logit layer's weight gradient (out < 32), computed as dZᵀ·a, whose shape the kernel
//! prefers, and transposed (a few thousand values).

use candle_core::Tensor;
use rand::Rng;

use super::{Network, kaiming_uniform};
use crate::error::Result;
use crate::train::ops::{BiasAct, LossSum, ReluBackward, softmax_xent, sum_rows};

/// A multilayer perceptron `D → hidden… → classes`.
pub struct Mlp {
    /// Wᵀ per layer, `(in, out)` contiguous.
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
}

/// Layers narrower than this get their weight gradient as (dZᵀ·a)ᵀ (see the module docs).
const NARROW: usize = 32;

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
        Ok(Mlp { weights, biases })
    }

    /// Forward pass keeping every layer's activation (the input first, the logits last).
    fn forward_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let last = self.weights.len() - 1;
        let mut acts = Vec::with_capacity(self.weights.len() + 1);
        acts.push(x.clone());
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let z = acts[l].matmul(w)?;
            z.inplace_op2(b, &BiasAct { relu: l < last })?;
            acts.push(z);
        }
        Ok(acts)
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

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let mut acts = self.forward_all(x)?;
        Ok(acts.pop().unwrap_or_else(|| x.clone()))
    }

    fn loss_and_grads(&mut self, x: &Tensor, y: &[u32]) -> Result<(LossSum, Vec<Tensor>)> {
        let acts = self.forward_all(x)?;
        let layers = self.weights.len();
        let (sum, dz) = softmax_xent(&acts[layers], y, true)?;
        let mut dz = dz.ok_or_else(|| candle_core::Error::Msg("no logits gradient".into()))?;
        let mut grads = vec![None; 2 * layers];
        for l in (0..layers).rev() {
            let a_prev = &acts[l];
            let out = dz.dim(1)?;
            grads[2 * l] = Some(if out < NARROW {
                dz.t()?.matmul(a_prev)?.t()?.contiguous()?
            } else {
                a_prev.t()?.matmul(&dz)?
            });
            grads[2 * l + 1] = Some(sum_rows(&dz)?);
            if l > 0 {
                let d_prev = dz.matmul(&self.weights[l].t()?)?;
                d_prev.inplace_op2(a_prev, &ReluBackward)?;
                dz = d_prev;
            }
        }
        let grads = grads.into_iter().flatten().collect();
        Ok((sum, grads))
    }

    fn forward_macs(&self) -> u64 {
        self.weights.iter().map(|w| w.elem_count() as u64).sum()
    }
}
