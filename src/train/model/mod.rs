//! Networks: a config, a constructor from our seeded RNG, a no-graph forward pass for
//! evaluation, and a training step that returns the mean cross-entropy loss and the gradient of
//! every parameter.
//!
//! The `mlp` back-propagates by hand over candle matmuls on transposed views (no autograd graph,
//! no copies for transposes, no gradient for the input layer's input); the `cnn` back-propagates
//! by hand one image at a time (im2col, max pooling with argmax, col2im). Both are checked against
//! central finite differences in the tests. Both also have the exact Hessian-vector product
//! (Pearlmutter's R-operator, [`Network::loss_hessian_vector`]) for the curvature instrument.

mod cnn;
mod mlp;

use candle_core::Tensor;
use rand::Rng;

pub use cnn::Cnn;
use cnn::KERNEL_TAPS;
pub use mlp::Mlp;

use crate::config::{ModelConfig, ModelKind};
use crate::error::{Error, ParamsError, Result};
use crate::train::ops::{Assign, LossSum, MatRef, transpose_into, with_f32};
use crate::train::rng::{Stream, stream};

/// A network the trainer can train.
pub trait Network: Send {
    /// The parameters, in a fixed order (per layer: weight, then bias). Updating these tensors
    /// in place updates the network.
    fn params(&self) -> Vec<Tensor>;

    /// Logits `(rows, classes)` of a batch of flattened inputs `(rows, D)`, without gradient
    /// bookkeeping.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;

    /// One training step's forward and backward pass on the batch `x` (`y.len()` rows of `D`
    /// values, row-major) with labels `y`: returns the sum of the loss over the batch and the
    /// correct predictions, and overwrites every buffer of `grads` with the gradient of the
    /// *mean* cross-entropy loss with respect to its parameter. Nothing batch- or layer-sized
    /// is allocated once the network has seen the batch size: intermediates live in the network's scratch,
    /// gradients in buffers the caller owns (and may hold while it asks for another set).
    fn loss_and_grads(&mut self, x: &[f32], y: &[u32], grads: &mut Grads) -> Result<LossSum>;

    /// The loss summed over the batch and the correct predictions, forward only (evaluation),
    /// with the arithmetic of [`Network::loss_and_grads`]'s forward pass and nothing batch-sized allocated once
    /// the network has seen a batch this large.
    fn eval_loss(&mut self, x: &[f32], y: &[u32]) -> Result<LossSum>;

    /// Whether [`Network::eval_loss_t`] reads the batch from its transposed copy (evaluation
    /// then passes the data set's transposed inputs, `Dataset::train_x_t`).
    fn reads_transposed(&self) -> bool {
        false
    }

    /// [`Network::eval_loss`] with the batch also given transposed: `xt` is `D × y.len()`
    /// (feature-major, any row stride). A network that [`Network::reads_transposed`] reads its
    /// inputs from `xt`, with the same result bit for bit; the default reads `x`.
    fn eval_loss_t(&mut self, x: &[f32], xt: MatRef<'_>, y: &[u32]) -> Result<LossSum> {
        let _ = xt;
        self.eval_loss(x, y)
    }

    /// Multiply–add count of one example's forward pass (for FLOP accounting).
    fn forward_macs(&self) -> u64;

    /// For each parameter, in [`Network::params`] order, whether it is stored as the transpose
    /// of its PyTorch layout (the `mlp` keeps its weights `(in, out)`: see its module docs);
    /// every other parameter is stored as PyTorch's `state_dict` holds it. Read by
    /// [`load_torch_params`] and [`to_torch_layout`].
    fn transposed_params(&self) -> Vec<bool> {
        vec![false; self.params().len()]
    }

    /// The exact product H·v of the Hessian of the *mean* cross-entropy loss over the batch
    /// (`x`, `y` as in [`Network::loss_and_grads`]) with a direction `v` (one buffer per
    /// parameter, laid out as the gradients), written into `out`; `Ok(false)` when the network
    /// has no exact product, and the instruments then take central differences of gradients.
    ///
    /// Pearlmutter's R-operator (1994): a forward and a backward pass of the directional
    /// derivatives along `v`, at the cost of about two gradients. For a ReLU network it is the
    /// Hessian of the smooth piece of the loss that holds the current weights (the activation
    /// pattern held at `w`): the Hessian wherever no pre-activation is exactly 0. The network's
    /// weights and training scratch are left as they were.
    fn loss_hessian_vector(
        &mut self,
        x: &[f32],
        y: &[u32],
        v: &Grads,
        out: &mut Grads,
    ) -> Result<bool> {
        let _ = (x, y, v, out);
        Ok(false)
    }
}

/// One gradient buffer per parameter, in [`Network::params`] order and of the same sizes
/// (row-major in each parameter's shape), reused from step to step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grads {
    bufs: Vec<Vec<f32>>,
}

impl Grads {
    /// Zeroed buffers shaped like `params`.
    pub fn for_params(params: &[Tensor]) -> Self {
        Grads {
            bufs: params.iter().map(|p| vec![0.0; p.elem_count()]).collect(),
        }
    }

    /// The buffers.
    pub fn bufs(&self) -> &[Vec<f32>] {
        &self.bufs
    }

    /// The buffers, to write.
    pub fn bufs_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.bufs
    }

    /// Squared Euclidean norm of all gradients, accumulated in f64.
    pub fn sq_norm(&self) -> f64 {
        self.bufs
            .iter()
            .flatten()
            .map(|&g| g as f64 * g as f64)
            .sum()
    }

    /// Checks that the buffers match `sizes` (a network's parameter sizes).
    pub(crate) fn check(&self, sizes: impl IntoIterator<Item = usize>) -> Result<()> {
        let mut count = 0;
        let mut ok = true;
        for (i, n) in sizes.into_iter().enumerate() {
            count = i + 1;
            ok &= self.bufs.get(i).is_some_and(|b| b.len() == n);
        }
        if ok && count == self.bufs.len() {
            Ok(())
        } else {
            Err(candle_core::Error::Msg(
                "gradient buffers do not match the network's parameters".into(),
            )
            .into())
        }
    }
}

/// Sets every parameter of `net` to values given in PyTorch's layout, to start scalelab from
/// the very point another engine starts from (tests/torch_crosscheck.rs): one slice per
/// tensor in [`Network::params`] order — PyTorch's `named_parameters()` order for the same
/// architecture, per layer the weight, then the bias — each row-major in PyTorch's shape
/// (`nn.Linear` `(out, in)`, `nn.Conv2d` `(out, in, kh, kw)`).
///
/// Every size is checked before anything is written: on an error the network is unchanged.
pub fn load_torch_params(net: &dyn Network, values: &[&[f32]]) -> Result<()> {
    let params = net.params();
    check_sizes(&params, values.iter().map(|v| v.len()))?;
    let mut buf = Vec::new();
    for ((p, &v), transposed) in params.iter().zip(values).zip(net.transposed_params()) {
        let src = if transposed {
            // Stored (in, out); given (out, in).
            let (fan_in, out) = p.dims2()?;
            buf.resize(v.len(), 0.0);
            transpose_into(v, out, fan_in, &mut buf);
            &buf[..]
        } else {
            v
        };
        p.inplace_op1(&Assign { src })?;
    }
    Ok(())
}

/// Values laid out as `net`'s parameters — its parameters' own values or a [`Grads`]'s buffers,
/// in [`Network::params`] order — rearranged into PyTorch's layout (the inverse of what
/// [`load_torch_params`] does), to compare them with PyTorch's `state_dict` or gradients.
pub fn to_torch_layout(net: &dyn Network, bufs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let params = net.params();
    check_sizes(&params, bufs.iter().map(Vec::len))?;
    let mut out = Vec::with_capacity(bufs.len());
    for ((p, v), transposed) in params.iter().zip(bufs).zip(net.transposed_params()) {
        if transposed {
            let (fan_in, units) = p.dims2()?;
            let mut t = vec![0.0; v.len()];
            transpose_into(v, fan_in, units, &mut t);
            out.push(t);
        } else {
            out.push(v.clone());
        }
    }
    Ok(out)
}

/// The parameters of `net`, each row-major in PyTorch's layout ([`to_torch_layout`] of their
/// values).
pub fn torch_params(net: &dyn Network) -> Result<Vec<Vec<f32>>> {
    let values = net
        .params()
        .iter()
        .map(|p| with_f32(p, <[f32]>::to_vec))
        .collect::<Result<Vec<_>>>()?;
    to_torch_layout(net, &values)
}

/// Checks that `sizes` are one per parameter and as many values as each holds.
fn check_sizes(params: &[Tensor], sizes: impl ExactSizeIterator<Item = usize>) -> Result<()> {
    if sizes.len() != params.len() {
        return Err(ParamsError::Count {
            given: sizes.len(),
            expected: params.len(),
        }
        .into());
    }
    for (index, (p, given)) in params.iter().zip(sizes).enumerate() {
        if given != p.elem_count() {
            return Err(ParamsError::Size {
                index,
                given,
                expected: p.elem_count(),
            }
            .into());
        }
    }
    Ok(())
}

/// Checks a batch's shape: `x` holds `y.len()` rows of `d` values.
pub(crate) fn check_batch(what: &str, x: &[f32], y: &[u32], d: usize) -> Result<()> {
    if x.len() == y.len() * d {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(format!(
            "{what}: {} input values for {} labels of {d} values each",
            x.len(),
            y.len()
        ))
        .into())
    }
}

/// At least how many bytes a network of `cfg` for inputs of `input_shape` and `classes`
/// outputs takes to train on batches of up to `rows` examples: its parameters three times
/// (weights, gradients, momentum) and a batch's activations and their gradients, f32 each (the
/// CNN's per-image scratch too). A lower bound, for refusing a network no machine here could
/// hold ([`memory::check`](super::memory::check)) instead of aborting on an allocation.
pub fn memory_needed(
    cfg: &ModelConfig,
    input_shape: &[usize],
    classes: usize,
    rows: usize,
) -> u128 {
    let u = |x: usize| x as u128;
    let (k, rows) = (u(classes), u(rows));
    match cfg.kind {
        ModelKind::Mlp => {
            let mut widths = vec![u(input_shape.iter().product())];
            widths.extend(cfg.hidden.iter().map(|&h| u128::from(h)));
            widths.push(k);
            let params: u128 = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
            let units: u128 = widths.iter().sum();
            4 * (3 * params + 2 * rows * units)
        }
        ModelKind::Cnn => {
            let [c, h, w] = input_shape[..] else {
                return 0;
            };
            let (c, h, w) = (u(c), u(h), u(w));
            let c1 = cfg.hidden.first().map_or(0, |&x| u128::from(x));
            let c2 = cfg.hidden.get(1).map_or(0, |&x| u128::from(x));
            let taps = (KERNEL_TAPS) as u128;
            let features = c2 * (h / 4) * (w / 4);
            let params = c1 * c * taps + c1 + c2 * c1 * taps + c2 + k * features + k;
            // One image's columns and maps (conv 1 at full size, conv 2 at half).
            let scratch = h * w * (c * taps + 2 * c1) + (h / 2) * (w / 2) * (c1 * taps + 2 * c2);
            4 * (3 * params + 2 * scratch + 2 * rows * (c * h * w + features + k))
        }
    }
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
