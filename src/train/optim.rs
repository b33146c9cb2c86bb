//! Momentum SGD, PyTorch's form (torch.optim.SGD, dampening 0):
//! g ← g + λw;  u ← m·u + g;  w ← w − ε·u   (Nesterov: w ← w − ε·(g + m·u)).
//!
//! The loss is the mean over the batch, so at steady state the step is ε/(1−m) times the mean
//! gradient: ε/(1−m) is the effective learning rate (Smith & Le 2017, docs/science.md §1).
//! candle-nn's SGD has no momentum; this one updates each parameter in one fused in-place pass.

use std::cell::RefCell;

use candle_core::Tensor;

use crate::error::Result;
use crate::train::model::Grads;
use crate::train::ops::SgdUpdate;

/// The optimiser state: hyper-parameters and one momentum buffer per parameter tensor.
pub struct MomentumSgd {
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    bufs: Vec<Vec<f32>>,
}

impl MomentumSgd {
    /// An optimiser for `params`, with zeroed momentum buffers.
    pub fn new(params: &[Tensor], momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        MomentumSgd {
            momentum: momentum as f32,
            nesterov,
            weight_decay: weight_decay as f32,
            bufs: params.iter().map(|p| vec![0.0; p.elem_count()]).collect(),
        }
    }

    /// One update of every parameter with learning rate `lr`.
    pub fn step(&mut self, lr: f64, params: &[Tensor], grads: &Grads) -> Result<()> {
        for ((p, g), buf) in params.iter().zip(grads.bufs()).zip(self.bufs.iter_mut()) {
            let op = SgdUpdate {
                lr: lr as f32,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                nesterov: self.nesterov,
                grad: g,
                buf: RefCell::new(buf.as_mut_slice()),
            };
            p.inplace_op1(&op)?;
        }
        Ok(())
    }
}
