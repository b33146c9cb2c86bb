//! Networks: a config, a constructor from our seeded RNG, a no-graph forward pass for
//! evaluation, and a training step that returns the mean cross-entropy loss and the gradient of
//! every parameter.
//!
//! The `mlp` back-propagates by hand over candle matmuls on transposed views (no autograd graph,
//! no copies for transposes, no gradient for the input layer's input); the `cnn` back-propagates
//! by hand one image at a time (im2col, max pooling with argmax, col2im). Both are checked against
//! central finite differences in the tests.

mod cnn;
mod mlp;

use candle_core::Tensor;
use rand::Rng;

pub use cnn::Cnn;
pub use mlp::Mlp;

use crate::config::{ModelConfig, ModelKind};
use crate::error::{Error, Result};
use crate::train::ops::LossSum;
use crate::train::rng::{Stream, stream};

/// A network the trainer can train.
pub trait Network: Send {
    /// The parameters, in a fixed order (per layer: weight, then bias). Updating these tensors
    /// in place updates the network.
    fn params(&self) -> Vec<Tensor>;

    /// Logits `(rows, classes)` of a batch of flattened inputs `(rows, D)`, without gradient
    /// bookkeeping.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;

    /// Sum of the loss over the batch, correct predictions, and the gradient of the *mean*
    /// cross-entropy loss with respect to each parameter (same order as [`Network::params`]).
    fn loss_and_grads(&mut self, x: &Tensor, y: &[u32]) -> Result<(LossSum, Vec<Tensor>)>;

    /// Multiply–add count of one example's forward pass (for FLOP accounting).
    fn forward_macs(&self) -> u64;
}

/// Builds the network a config describes for inputs of `input_shape` and `classes` outputs,
/// initialised from `seed`.
pub fn build(
    cfg: &ModelConfig,
    input_shape: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Box<dyn Network>> {
    let hidden: Vec<usize> = cfg.hidden.iter().map(|&h| h as usize).collect();
    let mut rng = stream(seed, Stream::Init);
    match cfg.kind {
        ModelKind::Mlp => {
            let d: usize = input_shape.iter().product();
            Ok(Box::new(Mlp::new(d, &hidden, classes, &mut rng)?))
        }
        ModelKind::Cnn => {
            let [c, h, w] = input_shape[..] else {
                return Err(Error::config(
                    "model",
                    format!(
                        "cnn needs image inputs [channels, height, width], got {input_shape:?}"
                    ),
                ));
            };
            let [c1, c2] = hidden[..] else {
                return Err(Error::config(
                    "hidden",
                    format!("the cnn takes two channel counts, got {:?}", cfg.hidden),
                ));
            };
            Ok(Box::new(Cnn::new((c, h, w), (c1, c2), classes, &mut rng)?))
        }
    }
}

/// PyTorch's default initialisation of `nn.Linear` and `nn.Conv2d`: weights from
/// kaiming_uniform(a = √5), i.e. U(−1/√fan_in, 1/√fan_in), and biases from the same bound.
/// Values are drawn in order (weight, then bias) from the run's `Init` stream.
pub(crate) fn kaiming_uniform(
    rng: &mut impl Rng,
    shape: &[usize],
    fan_in: usize,
) -> Result<Tensor> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Ok(Tensor::from_vec(v, shape, &candle_core::Device::Cpu)?)
}
