//! Planted ground truths for the tests (docs/science.md §6). Test-only.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{EpochPoint, RunInput};

/// A seeded standard-normal source (Box–Muller, so that the planted data sets never change with
/// a rand_distr release).
pub struct Gauss(ChaCha8Rng);

impl Gauss {
    pub fn new(seed: u64) -> Self {
        Gauss(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn next(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.0.random::<f64>(); // (0, 1]
        let u2: f64 = self.0.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A bare run with the given per-epoch values (epoch e at step 10e, 100e samples).
pub fn run_with_curve(id: &str, diverged: bool, vals: &[Option<f64>]) -> RunInput {
    RunInput {
        instruments: Default::default(),
        run_id: id.to_string(),
        cell: "cell".to_string(),
        schedule_group: "group".to_string(),
        lr: 0.1,
        batch_size: 64,
        max_batch_size: None,
        noise_scale: None,
        momentum: 0.9,
        train_size: 10_000,
        test_size: 10_000,
        classes: 10,
        seed: 0,
        schedule: "constant".to_string(),
        diverged,
        steps: 10 * vals.len().saturating_sub(1) as u64,
        curve: vals
            .iter()
            .enumerate()
            .map(|(e, v)| EpochPoint {
                epoch: e as u32,
                step: 10 * e as u64,
                samples: 100 * e as u64,
                value: *v,
            })
            .collect(),
    }
}

/// A run whose test accuracy is `value` at every trained epoch (0.1 = chance at epoch 0).
#[allow(clippy::too_many_arguments)]
pub fn flat_run(
    cell: &str,
    lr: f64,
    n: u64,
    m: f64,
    b: u64,
    seed: u64,
    value: f64,
    epochs: u32,
) -> RunInput {
    let steps_per_epoch = n.div_ceil(b);
    RunInput {
        instruments: Default::default(),
        run_id: format!("{cell}/B{b}/s{seed}"),
        cell: cell.to_string(),
        schedule_group: cell.to_string(),
        lr,
        batch_size: b,
        max_batch_size: None,
        noise_scale: None,
        momentum: m,
        train_size: n,
        test_size: 10_000,
        classes: 10,
        seed,
        schedule: "constant".to_string(),
        diverged: false,
        steps: steps_per_epoch * epochs as u64,
        curve: (0..=epochs)
            .map(|e| EpochPoint {
                epoch: e,
                step: steps_per_epoch * e as u64,
                samples: n * e as u64,
                value: Some(if e == 0 { 0.1 } else { value }),
            })
            .collect(),
    }
}

/// Power-of-two batch grid 8 … 4096 (10 sizes).
pub fn pow2_grid() -> Vec<u64> {
    (3..=12).map(|k| 1u64 << k).collect()
}

/// Planted scaling data (docs/science.md §6): B_opt = k·ε·N^n_power/(1−m); the test accuracy of a run
/// is max(0, 0.9 − 0.03·(log2 B − log2 B_opt)² + noise_sd·z), for every (ε, N, m) cell, pow2 B
/// grid and seed.
#[allow(clippy::too_many_arguments)] // a test generator: one argument per planted axis
pub fn planted_bopt_runs(
    lrs: &[f64],
    ns: &[u64],
    ms: &[f64],
    k: f64,
    n_power: f64,
    seeds: u64,
    noise_sd: f64,
    rng_seed: u64,
) -> Vec<RunInput> {
    let mut g = Gauss::new(rng_seed);
    let mut runs = Vec::new();
    for &lr in lrs {
        for &n in ns {
            for &m in ms {
                let b_opt = k * lr * (n as f64).powf(n_power) / (1.0 - m);
                let cell = format!("lr{lr}_N{n}_m{m}");
                for b in pow2_grid() {
                    for seed in 0..seeds {
                        let x = (b as f64).log2() - b_opt.log2();
                        // Clipped at 0 far from the peak (an accuracy); the vertex only sees
                        // the argmax and its neighbours.
                        let v = (0.9 - 0.03 * x * x + noise_sd * g.next()).max(0.0);
                        runs.push(flat_run(&cell, lr, n, m, b, seed, v, 3));
                    }
                }
            }
        }
    }
    runs
}

/// Two cells whose planted peaks (B_opt = 0.1·ε·N, 3 seeds) lie off the grid 8…4096: 10,000
/// beyond its largest B and 0.8 below its smallest, so the fit censors one high and one low.
pub fn edge_peak_runs() -> Vec<RunInput> {
    let mut runs = planted_bopt_runs(&[0.1], &[1_000_000], &[0.0], 0.1, 1.0, 3, 0.005, 2);
    runs.extend(planted_bopt_runs(
        &[0.001],
        &[8000],
        &[0.0],
        0.1,
        1.0,
        3,
        0.005,
        3,
    ));
    runs
}

/// The B_opt section and the scaling regression alone, as `fit_all` computes them (the other
/// estimators skipped): for simulations that fit many planted data sets.
pub fn fit_bopt_and_scaling(
    runs: &[RunInput],
    opts: &super::FitOptions,
) -> (
    super::Outcome<super::BoptSection>,
    super::Outcome<super::ScalingSection>,
) {
    let kept: Vec<&RunInput> = runs.iter().collect();
    let selection = super::select::select_all(&kept, opts);
    let ctx = super::Ctx {
        runs: kept,
        sel: selection.per_run,
        opts: opts.clone(),
    };
    let bopt = super::bopt::fit_bopt(&ctx);
    let scaling = super::regression::fit_scaling(&bopt, opts);
    (bopt, scaling)
}

/// Asserts that the JSON of a report holds no `null`: every `Option` is skipped when `None`,
/// so a `null` can only be a NaN or an infinity that serde_json wrote as null.
pub fn assert_json_finite(report: &super::FitReport) {
    let json = serde_json::to_string(report).expect("report serialises");
    assert!(!json.contains("null"), "NaN/inf reached the JSON: {json}");
    let _back: super::FitReport = serde_json::from_str(&json).expect("report deserialises");
}
