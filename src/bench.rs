//! `scalelab bench`: steady-state training throughput of the reference workload, side by side
//! with `bench/torch_reference.py` (same model, same optimiser, same batch gathering), and the
//! machine's own f32 matmul peak, so each step's FLOPs can be read as a fraction of it.
//!
//! Method (docs/performance.md): MLP 784 → hidden → 10, momentum SGD 0.9, 8192 random inputs in
//! [0, 1), batches gathered by index from a fixed permutation, up to 20 warm-up steps (which
//! also calibrate how many steps fill the time budget), then the timed steps; one compute thread
//! unless `--threads` says otherwise.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::Rng;
use serde::Serialize;

use crate::error::Result;
use crate::train::model::{Cnn, Grads, Mlp, Network};
use crate::train::ops::gather_rows;
use crate::train::optim::MomentumSgd;
use crate::train::rng::{Stream, stream};

/// Examples in the synthetic pool the batches are drawn from (as torch_reference.py).
pub const POOL: usize = 8192;
/// Untimed steps before measuring (fewer when they take longer than [`WARMUP_SECONDS`]).
pub const WARMUP: usize = 20;
/// Time after which the warm-up stops even if [`WARMUP`] steps are not done (at least 3 are).
pub const WARMUP_SECONDS: f64 = 0.5;
/// Bounds on the timed steps per batch size.
pub const TIMED_STEPS: (usize, usize) = (10, 2000);

/// One line of `scalelab bench --format json`; the first six fields match torch_reference.py.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// "scalelab".
    pub engine: &'static str,
    /// Compute threads.
    pub threads: usize,
    /// Hidden width (mlp) or the first conv block's channels (cnn).
    pub hidden: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Training steps per second.
    pub steps_per_s: f64,
    /// Training examples per second.
    pub samples_per_s: f64,
    /// The model.
    pub model: &'static str,
    /// Model FLOPs of one training step (forward, weight gradients, hidden-layer input gradients).
    pub step_gflop: f64,
    /// Achieved model GFLOP/s.
    pub gflops: f64,
    /// `gflops` as a fraction of the measured matmul peak.
    pub peak_fraction: f64,
}

/// The machine's f32 matmul throughput (GFLOP/s) through candle, best of several runs of a
/// square-ish product of the size a large training step uses.
pub fn matmul_peak() -> Result<f64> {
    crate::train::flush_denormals();
    let (m, k, n) = (1024, 784, 800);
    let mut rng = stream(0, Stream::TrainSamples);
    let a: Vec<f32> = (0..m * k).map(|_| rng.random()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.random()).collect();
    let a = Tensor::from_vec(a, (m, k), &Device::Cpu)?;
    let b = Tensor::from_vec(b, (k, n), &Device::Cpu)?;
    let flop = 2.0 * (m * k * n) as f64;
    let mut best = 0f64;
    // Best of several rounds: a shared machine's noise only ever slows a round down.
    for _ in 0..8 {
        let reps = 8;
        let t = Instant::now();
        for _ in 0..reps {
            let c = a.matmul(&b)?;
            std::hint::black_box(c);
        }
        best = best.max(flop * reps as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    Ok(best)
}

/// The synthetic pool: inputs in [0, 1) and random labels, as torch_reference.py.
fn pool(d: usize) -> Result<(Tensor, Vec<u32>, Vec<u32>)> {
    let mut rng = stream(0, Stream::TrainSamples);
    let xs: Vec<f32> = (0..POOL * d).map(|_| rng.random()).collect();
    let ys: Vec<u32> = (0..POOL).map(|_| rng.random_range(0..10)).collect();
    let mut perm: Vec<u32> = (0..POOL as u32).collect();
    rand::seq::SliceRandom::shuffle(perm.as_mut_slice(), &mut rng);
    Ok((Tensor::from_vec(xs, (POOL, d), &Device::Cpu)?, ys, perm))
}

/// Times training steps of `net` at batch size `b` for about `seconds` after the warm-up;
/// returns the number of timed steps and their wall time.
fn time_steps(net: &mut dyn Network, d: usize, b: usize, seconds: f64) -> Result<(usize, f64)> {
    crate::train::flush_denormals();
    let (x, ys, perm) = pool(d)?;
    let params = net.params();
    let mut opt = MomentumSgd::new(&params, 0.9, false, 0.0);
    let mut idx = vec![0u32; b];
    let mut labels = vec![0u32; b];
    let mut xb = Vec::new();
    let mut grads = Grads::for_params(&params);
    let mut step = |s: usize| -> Result<()> {
        for (i, slot) in idx.iter_mut().enumerate() {
            *slot = perm[(s * b + i) % POOL];
        }
        for (l, &i) in labels.iter_mut().zip(&idx) {
            *l = ys[i as usize];
        }
        gather_rows(&x, &idx, &mut xb)?;
        net.loss_and_grads(&xb, &labels, &mut grads)?;
        opt.step(0.01, &params, &grads)
    };
    // The first steps allocate and fault pages in; the later warm-up steps calibrate.
    step(0)?;
    let t = Instant::now();
    let mut warm = 1;
    while warm < WARMUP && (warm < 3 || t.elapsed().as_secs_f64() < WARMUP_SECONDS) {
        step(warm)?;
        warm += 1;
    }
    let per_step = t.elapsed().as_secs_f64() / (warm - 1) as f64;
    let steps = timed_steps(seconds, per_step);
    let t = Instant::now();
    for s in 0..steps {
        step(warm + s)?;
    }
    Ok((steps, t.elapsed().as_secs_f64()))
}

/// How many steps of `per_step` seconds fill `seconds`, within [`TIMED_STEPS`].
pub fn timed_steps(seconds: f64, per_step: f64) -> usize {
    let n = if per_step > 0.0 {
        seconds / per_step
    } else {
        f64::INFINITY
    };
    (n.min(TIMED_STEPS.1 as f64) as usize).max(TIMED_STEPS.0)
}

/// Throughput of the MLP `784 → hidden → 10` at batch size `b`.
pub fn bench_mlp(
    hidden: usize,
    b: usize,
    seconds: f64,
    peak: f64,
    threads: usize,
) -> Result<BenchRow> {
    let d = 784;
    let mut net = Mlp::new(d, &[hidden], 10, &mut stream(1, Stream::Init))?;
    let (steps, secs) = time_steps(&mut net, d, b, seconds)?;
    // Forward 2·B·P, weight gradients 2·B·P, input gradient of the hidden layer 2·B·hidden·10.
    let params = (d * hidden + hidden * 10) as f64;
    let step_flop = 2.0 * b as f64 * (2.0 * params + (hidden * 10) as f64);
    Ok(row("mlp", hidden, b, steps, secs, step_flop, peak, threads))
}

/// Throughput of the CNN on 28×28 single-channel inputs (channels `c1`, 2·`c1`).
pub fn bench_cnn(c1: usize, b: usize, seconds: f64, peak: f64, threads: usize) -> Result<BenchRow> {
    let mut net = Cnn::new((1, 28, 28), (c1, 2 * c1), 10, &mut stream(1, Stream::Init))?;
    let macs = net.forward_macs() as f64;
    let (steps, secs) = time_steps(&mut net, 784, b, seconds)?;
    // Forward, weight gradients and input gradients (of all but the first layer): ≈ 3× forward.
    let step_flop = 3.0 * 2.0 * macs * b as f64;
    Ok(row("cnn", c1, b, steps, secs, step_flop, peak, threads))
}

#[allow(clippy::too_many_arguments)]
fn row(
    model: &'static str,
    hidden: usize,
    b: usize,
    steps: usize,
    secs: f64,
    step_flop: f64,
    peak: f64,
    threads: usize,
) -> BenchRow {
    let steps_per_s = steps as f64 / secs;
    let gflops = step_flop * steps_per_s / 1e9;
    BenchRow {
        engine: "scalelab",
        threads,
        hidden,
        batch_size: b,
        steps_per_s,
        samples_per_s: steps_per_s * b as f64,
        model,
        step_gflop: step_flop / 1e9,
        gflops,
        peak_fraction: if peak > 0.0 { gflops / peak } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_steps_fill_the_budget_within_bounds() {
        assert_eq!(timed_steps(2.0, 0.01), 200);
        assert_eq!(timed_steps(2.0, 0.5), TIMED_STEPS.0);
        assert_eq!(timed_steps(2.0, 1e-6), TIMED_STEPS.1);
        assert_eq!(timed_steps(2.0, 0.0), TIMED_STEPS.1);
    }
}
