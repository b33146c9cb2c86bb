//! The trainer: data → model → momentum SGD → per-epoch evaluation.
//!
//! It knows nothing of tokio or the database: it takes a [`RunConfig`], a [`Dataset`], a
//! [`MetricSink`] it reports each epoch to, and a stop flag it checks before every step.
//! Exact semantics (loss reduction, momentum form, initialisation, evaluation, divergence) are
//! documented in docs/trainer.md.

pub mod data;
pub mod eval_head;
pub mod instrument;
pub mod isa;
pub mod memory;
pub mod model;
pub mod ops;
pub mod optim;
pub mod rng;
mod sgemm;
pub mod thin;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::config::{Budget, RunConfig};
use crate::error::{Error, Result};
use data::Dataset;
use model::Network;
use optim::MomentumSgd;
use rng::{Stream, stream};

/// Rows per forward pass when evaluating (no graph, large batches).
pub const EVAL_CHUNK: usize = 4096;

/// Metrics of one epoch, recorded after it (epoch 0 is the evaluation at initialisation).
/// Losses are mean cross-entropy (nats); accuracies are fractions. Non-finite values are kept
/// as they are (a diverged run's loss may be NaN or infinite).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number: 0 before training, then 1, 2, … (the last may be partial with a step budget).
    pub epoch: u32,
    /// Parameter updates taken so far.
    pub step: u64,
    /// Training examples processed so far.
    pub samples: u64,
    /// Learning rate in force during this epoch.
    pub lr: f64,
    /// Batch size in force during this epoch.
    pub batch_size: u64,
    /// Mean loss over the whole training subset, at the end of the epoch.
    #[serde(with = "nonfinite")]
    pub train_loss: f64,
    /// Accuracy over the whole training subset.
    #[serde(with = "nonfinite")]
    pub train_acc: f64,
    /// Mean loss over the test set.
    #[serde(with = "nonfinite")]
    pub test_loss: f64,
    /// Accuracy over the test set.
    #[serde(with = "nonfinite")]
    pub test_acc: f64,
    /// Seconds since the run started (training and evaluation).
    pub wall_s: f64,
    /// Gradient noise scale instrument (when on, at its epochs): EMA of the |G|² estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_sq: Option<f64>,
    /// EMA of the tr(Σ) estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_sigma: Option<f64>,
    /// B_simple = tr(Σ)/|G|² (McCandlish et al. 2018).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_simple: Option<f64>,
    /// With `b_noise` on: average of the GᵀHG estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_h_grad: Option<f64>,
    /// Average of the tr(HΣ) estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_h_sigma: Option<f64>,
    /// B_noise = tr(HΣ)/(GᵀHG) (McCandlish et al. 2018).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_noise: Option<f64>,
}

/// Where the trainer sends each epoch's metrics (a database writer, stdout, a vector).
pub trait MetricSink {
    /// Records one epoch; an error stops the run.
    fn record(&mut self, m: &EpochMetrics) -> Result<()>;
}

impl<F: FnMut(&EpochMetrics) -> Result<()>> MetricSink for F {
    fn record(&mut self, m: &EpochMetrics) -> Result<()> {
        self(m)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RunState {
    /// The budget was used up.
    Completed,
    /// The loss became non-finite or exceeded `divergence_factor` × the initial loss.
    Diverged {
        /// The epoch (1-based) during which it diverged.
        epoch: u32,
        /// What was seen.
        reason: String,
    },
    /// The stop flag was raised; the run is incomplete and should be retried from scratch.
    Stopped,
}

/// The result of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOutcome {
    /// How it ended.
    #[serde(flatten)]
    pub state: RunState,
    /// Epochs trained (including a partial last one).
    pub epochs: u32,
    /// Parameter updates taken.
    pub steps: u64,
    /// Training examples processed.
    pub samples: u64,
    /// Mean training loss at initialisation.
    pub initial_train_loss: f64,
    /// Test accuracy after the last epoch.
    pub final_test_acc: Option<f64>,
    /// Best test accuracy over epochs ≥ 1.
    pub best_test_acc: Option<f64>,
    /// Seconds from start to end.
    pub wall_s: f64,
    /// Of which: seconds spent evaluating (the full training and test passes after each epoch).
    pub eval_s: f64,
    /// Of which: seconds spent in the instruments (noise scale, curvature).
    #[serde(default)]
    pub instruments_s: f64,
    /// Curvature of the training loss at the initial weights, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curvature_init: Option<instrument::Curvature>,
    /// Curvature at the final weights, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curvature_final: Option<instrument::Curvature>,
}

/// A loss in a divergence message: 4 decimals, or scientific notation from a million on (a
/// threshold of 1e300 × the initial loss would otherwise print 300 digits).
fn short(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1e6 {
        format!("{x:.4e}")
    } else {
        format!("{x:.4}")
    }
}

/// One epoch's batches: the epoch's permutation of the training examples cut into consecutive
/// runs of `batch` indices, the last holding the N mod B left over when B does not divide N
/// (PyTorch's `drop_last=False`). Public so that tests/torch_crosscheck.rs replays PyTorch's
/// `BatchSampler` through the trainer's own cut.
pub fn epoch_batches(perm: &[u32], batch: usize) -> std::slice::Chunks<'_, u32> {
    perm.chunks(batch.max(1))
}

/// Mean loss and accuracy of a network over `(x, y)`, in chunks of [`EVAL_CHUNK`] rows. `xt`,
/// when given, holds the same inputs transposed (`D × y.len()`, as `Dataset::train_x_t`): a
/// network that [`Network::reads_transposed`] reads each chunk from there, with the same result
/// (one that does not ignores it); a copy of another length is not used.
pub fn evaluate(
    net: &mut dyn Network,
    x: &Tensor,
    xt: Option<&[f32]>,
    y: &[u32],
) -> Result<(f64, f64)> {
    let n = y.len();
    let d = x.dims().get(1..).map_or(1, |s| s.iter().product::<usize>());
    let mut loss = 0.0;
    let mut correct = 0usize;
    let xt = xt.filter(|t| Some(t.len()) == n.checked_mul(d));
    ops::with_f32(x, |xs| -> Result<()> {
        for (i, (xc, yc)) in xs
            .chunks(EVAL_CHUNK * d)
            .zip(y.chunks(EVAL_CHUNK))
            .enumerate()
        {
            let s = match xt {
                // Columns i·EVAL_CHUNK … of the D × n transpose: a view from that column on.
                Some(t) => {
                    let view = ops::MatRef {
                        data: &t[i * EVAL_CHUNK..],
                        rows: d,
                        cols: yc.len(),
                        row_stride: n,
                        col_stride: 1,
                    };
                    net.eval_loss_t(xc, view, yc)?
                }
                None => net.eval_loss(xc, yc)?,
            };
            loss += s.loss;
            correct += s.correct;
        }
        Ok(())
    })??;
    let n = n.max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// Sets how many threads candle's CPU kernels use (the `RAYON_NUM_THREADS` it reads at every
/// matmul). scalelab runs one compute thread per job; call this once at start-up, before any
/// other thread exists.
pub fn set_compute_threads(n: usize) {
    // SAFETY: called from `main` before the runtime or any thread is started, so no other thread
    // can read the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string()) };
}

/// Makes the calling thread flush subnormal floats to zero (x86-64: MXCSR FTZ and DAZ;
/// aarch64: FPCR.FZ). A momentum buffer whose gradient is zero (a dead ReLU unit) decays
/// geometrically into the subnormal range, where every multiply takes a microcode assist: the
/// reference MLP step at B = 16 measured 8.7 ms without this and 2.5 ms with it. Values below
/// 1.2e-38 then count as 0, as with PyTorch's `torch.set_flush_denormal(True)`. The setting
/// belongs to the thread; the trainer calls this before every run.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads and writes this thread's SSE control register; only the FTZ (bit 15) and
    // DAZ (bit 6) flags change, which affect rounding of subnormals only.
    unsafe {
        let mut csr: u32 = 0;
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: sets FPCR.FZ (bit 24) of this thread; other fields are kept.
    unsafe {
        let mut fpcr: u64;
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
        fpcr |= 1 << 24;
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack));
    }
}

/// Trains one run to the end of its budget, to divergence, or until `stop` is raised.
///
/// Same config, same data and same seed give bit-identical metrics (on the same machine and
/// build; see docs/trainer.md).
pub fn train(
    cfg: &RunConfig,
    data: &Dataset,
    sink: &mut dyn MetricSink,
    stop: &AtomicBool,
) -> Result<RunOutcome> {
    cfg.validate()?;
    flush_denormals();
    let n = data.train_len();
    if n as u64 != cfg.data.train_size {
        return Err(Error::config(
            "train_size",
            format!(
                "the data set holds {n} training examples, the config asks for {}",
                cfg.data.train_size
            ),
        ));
    }
    // A network no machine here could hold is refused before anything is allocated.
    let rows = cfg
        .largest_batch()
        .max(EVAL_CHUNK.min(n.max(data.test_y.len())) as u64) as usize;
    memory::check(
        "hidden",
        &format!(
            "{} of widths {:?} on inputs of shape {:?}, trained and evaluated {rows} examples \
             at a time,",
            match cfg.model.kind {
                crate::config::ModelKind::Mlp => "an MLP",
                crate::config::ModelKind::Cnn => "a CNN",
            },
            cfg.model.hidden,
            data.input_shape
        ),
        model::memory_needed(&cfg.model, &data.input_shape, data.classes, rows),
    )?;
    let start = Instant::now();
    let mut net = model::build(&cfg.model, &data.input_shape, data.classes, cfg.seed)?;
    let params = net.params();
    let mut opt = MomentumSgd::new(&params, cfg.momentum, cfg.nesterov, cfg.weight_decay);
    let mut order = stream(cfg.seed, Stream::DataOrder);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut labels: Vec<u32> = Vec::with_capacity(n);
    let mut xbatch: Vec<f32> = Vec::new();
    let mut grads = model::Grads::for_params(&params);

    // Inputs transposed for a network that evaluates transposed, made once per data set.
    let (train_t, test_t) = if net.reads_transposed() {
        (data.train_x_t(), data.test_x_t())
    } else {
        (None, None)
    };
    let eval_time = std::cell::Cell::new(0.0f64);
    let eval = |net: &mut dyn Network,
                epoch: u32,
                step: u64,
                samples: u64,
                lr: f64,
                batch_size: u64|
     -> Result<EpochMetrics> {
        let t = Instant::now();
        let (train_loss, train_acc) = evaluate(net, &data.train_x, train_t, &data.train_y)?;
        let (test_loss, test_acc) = evaluate(net, &data.test_x, test_t, &data.test_y)?;
        eval_time.set(eval_time.get() + t.elapsed().as_secs_f64());
        Ok(EpochMetrics {
            epoch,
            step,
            samples,
            lr,
            batch_size,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            wall_s: start.elapsed().as_secs_f64(),
            grad_sq: None,
            trace_sigma: None,
            b_simple: None,
            grad_h_grad: None,
            trace_h_sigma: None,
            b_noise: None,
        })
    };
    let inst = cfg.instruments;
    let mut probe = (inst.noise_scale_every > 0)
        .then(|| instrument::NoiseProbe::new(cfg.seed, n, inst.b_noise));
    let mut inst_s = 0.0;
    let mut measure_noise =
        |net: &mut dyn Network, m: &mut EpochMetrics, batch: u64| -> Result<f64> {
            let Some(p) = probe.as_mut() else {
                return Ok(0.0);
            };
            if !m.epoch.is_multiple_of(inst.noise_scale_every) || !m.train_loss.is_finite() {
                return Ok(0.0);
            }
            let t = Instant::now();
            let r = p.measure(net, data, batch as usize)?;
            m.grad_sq = r.grad_sq;
            m.trace_sigma = r.trace_sigma;
            m.b_simple = r.b_simple;
            m.grad_h_grad = r.grad_h_grad;
            m.trace_h_sigma = r.trace_h_sigma;
            m.b_noise = r.b_noise;
            Ok(t.elapsed().as_secs_f64())
        };

    let mut m0 = eval(&mut *net, 0, 0, 0, cfg.lr, cfg.batch_size)?;
    let initial_loss = m0.train_loss;
    let threshold = cfg.divergence_factor * initial_loss;
    let curvature_init = if inst.curvature.is_off() {
        None
    } else {
        let t = Instant::now();
        let c = instrument::measure_curvature(&mut *net, data, cfg.seed)?;
        inst_s += t.elapsed().as_secs_f64();
        Some(c)
    };
    inst_s += measure_noise(&mut *net, &mut m0, cfg.batch_size)?;
    m0.wall_s = start.elapsed().as_secs_f64();
    sink.record(&m0)?;
    let mut outcome = RunOutcome {
        state: RunState::Completed,
        epochs: 0,
        steps: 0,
        samples: 0,
        initial_train_loss: initial_loss,
        final_test_acc: None,
        best_test_acc: None,
        wall_s: 0.0,
        eval_s: 0.0,
        instruments_s: 0.0,
        curvature_init,
        curvature_final: None,
    };

    let (max_epochs, max_steps) = match cfg.budget {
        Budget::Epochs(e) => (e, u64::MAX),
        Budget::Steps(s) => (u64::MAX, s),
    };
    let mut epoch: u64 = 0;
    while epoch < max_epochs && outcome.steps < max_steps {
        epoch += 1;
        let (scheduled, batch) = cfg.epoch_hyper(epoch, outcome.steps);
        let warming = outcome.steps < cfg.warmup_steps();
        // During warmup the epoch's stored rate is the mean of its updates' rates.
        let (mut lr, mut lr_sum, mut updates) = (scheduled, 0.0, 0u32);
        perm.shuffle(&mut order);
        let mut diverged = None;
        for chunk in epoch_batches(&perm, batch as usize) {
            if stop.load(Ordering::Relaxed) {
                outcome.state = RunState::Stopped;
                outcome.wall_s = start.elapsed().as_secs_f64();
                outcome.eval_s = eval_time.get();
                outcome.instruments_s = inst_s;
                return Ok(outcome);
            }
            data.gather_train(chunk, &mut xbatch, &mut labels)?;
            let sum = net.loss_and_grads(&xbatch, &labels, &mut grads)?;
            let loss = sum.loss / sum.count.max(1) as f64;
            if !loss.is_finite() || loss > threshold {
                diverged = Some(format!(
                    "batch loss {} at step {} (initial loss {}, threshold {})",
                    short(loss),
                    outcome.steps + 1,
                    short(initial_loss),
                    short(threshold)
                ));
                break;
            }
            if warming {
                lr = scheduled * cfg.warmup_factor(outcome.steps);
                lr_sum += lr;
                updates += 1;
            }
            opt.step(lr, &params, &grads)?;
            outcome.steps += 1;
            outcome.samples += chunk.len() as u64;
            if outcome.steps >= max_steps {
                break;
            }
        }
        outcome.epochs = epoch as u32;
        if warming && updates > 0 {
            lr = lr_sum / f64::from(updates);
        }
        let mut m = eval(
            &mut *net,
            epoch as u32,
            outcome.steps,
            outcome.samples,
            lr,
            batch,
        )?;
        if diverged.is_none() {
            inst_s += measure_noise(&mut *net, &mut m, batch)?;
            m.wall_s = start.elapsed().as_secs_f64();
        }
        sink.record(&m)?;
        outcome.final_test_acc = Some(m.test_acc);
        if m.test_acc.is_finite() {
            let best = outcome.best_test_acc.unwrap_or(f64::NEG_INFINITY);
            outcome.best_test_acc = Some(best.max(m.test_acc));
        }
        if diverged.is_none() && (!m.train_loss.is_finite() || m.train_loss > threshold) {
            diverged = Some(format!(
                "training loss {} after epoch {epoch} (initial loss {}, threshold {})",
                short(m.train_loss),
                short(initial_loss),
                short(threshold)
            ));
        }
        if let Some(reason) = diverged {
            outcome.state = RunState::Diverged {
                epoch: epoch as u32,
                reason,
            };
            break;
        }
    }
    if inst.curvature == crate::config::CurvatureWhen::InitAndFinal
        && outcome.state == RunState::Completed
    {
        let t = Instant::now();
        outcome.curvature_final = Some(instrument::measure_curvature(&mut *net, data, cfg.seed)?);
        inst_s += t.elapsed().as_secs_f64();
    }
    outcome.wall_s = start.elapsed().as_secs_f64();
    outcome.eval_s = eval_time.get();
    outcome.instruments_s = inst_s;
    Ok(outcome)
}

/// Serialises non-finite floats as the strings "nan", "inf", "-inf" (JSON has no such numbers),
/// and reads them back.
pub mod nonfinite {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialise `v`, as a string when it is not finite.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    /// Deserialise a number or one of "nan", "inf", "-inf".
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Num {
            F(f64),
            S(String),
        }
        match Num::deserialize(d)? {
            Num::F(v) => Ok(v),
            Num::S(s) => match s.as_str() {
                "nan" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("not a number: {other:?}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::train::data::Dataset;
    use crate::train::model::Mlp;

    /// Evaluation from a data set's transposed inputs gives the bits it gives from the rows,
    /// across the chunks it is cut into (the second chunk's view starts mid-row), for a network
    /// that reads them (the quickstart's) and one that does not.
    #[test]
    fn evaluation_from_the_transposed_inputs_has_the_same_bits() {
        let (n, d) = (EVAL_CHUNK + 904, 32);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919) % 2003) as f32 / 500.0 - 2.0)
            .collect();
        let y: Vec<u32> = (0..n as u32).map(|r| r * 3 % 10).collect();
        let data = Dataset::from_vecs(vec![d], 10, x, y, vec![0.5; 3 * d], vec![1, 2, 3]).unwrap();
        let xt = data.train_x_t().unwrap();
        let flat = ops::with_f32(&data.train_x, <[f32]>::to_vec).unwrap();
        assert_eq!(xt.len(), n * d);
        assert_eq!(
            (xt[5 * n + 7], xt[31 * n + n - 1]),
            (flat[7 * d + 5], flat[n * d - 1])
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for hidden in [&[128][..], &[256, 128]] {
            let mut net = Mlp::new(d, hidden, 10, &mut rng).unwrap();
            let rows = evaluate(&mut net, &data.train_x, None, &data.train_y).unwrap();
            let cols = evaluate(&mut net, &data.train_x, Some(xt), &data.train_y).unwrap();
            assert_eq!(rows.0.to_bits(), cols.0.to_bits(), "hidden {hidden:?}");
            assert_eq!(rows.1.to_bits(), cols.1.to_bits(), "hidden {hidden:?}");
            assert!(rows.0 > 0.0 && rows.1 > 0.0);
        }
        // A transpose of the wrong size (another split's) is not read.
        let mut net = Mlp::new(d, &[128], 10, &mut rng).unwrap();
        let other = data.test_x_t().unwrap();
        let rows = evaluate(&mut net, &data.train_x, None, &data.train_y).unwrap();
        let wrong = evaluate(&mut net, &data.train_x, Some(other), &data.train_y).unwrap();
        assert_eq!(rows.0.to_bits(), wrong.0.to_bits());
    }

    /// A divergence message with `divergence_factor = 1e300` printed its threshold as a
    /// 300-digit integer.
    #[test]
    fn divergence_messages_stay_short() {
        assert_eq!(short(2.301234), "2.3012");
        assert_eq!(short(2.301234e300), "2.3012e300");
        assert_eq!(short(-1.5e7), "-1.5000e7");
        assert_eq!(short(f64::NAN), "NaN");
        assert_eq!(short(f64::INFINITY), "inf");
    }
}
