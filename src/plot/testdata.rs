//! A synthetic sweep with planted ground truths, rich enough for every figure (test-only).
//!
//! - Final test accuracy: peak(N) − 0.03·(log₂ B − log₂ B_opt)² + noise, with
//!   B_opt = 0.4·εN/(1−m) (Smith & Le 2017) and peak(N) = 1 − (3·N^−0.45 + 0.04) (a Hestness
//!   et al. 2017 learning curve).
//! - Per-epoch accuracy rises as 1 − exp(−3·step/S(B)) with S(B) = 6·(1 + 256/B) steps
//!   (McCandlish et al. 2018's trade-off, B_crit = 256 planted).
//! - ε = 0.1, m = 0.9, B = 8 diverges at every N (all seeds).
//! - One schedule group (decay-lr, increase-batch, hybrid × 3 seeds) at N = 4000.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fit::{EpochPoint, FitOptions, FitReport, RunInput, fit_all};

/// A seeded standard-normal source (Box–Muller).
pub struct Gauss(ChaCha8Rng);

impl Gauss {
    pub fn new(seed: u64) -> Self {
        Gauss(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn next(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.0.random::<f64>();
        let u2: f64 = self.0.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

pub const LRS: [f64; 3] = [0.025, 0.05, 0.1];
pub const NS: [u64; 4] = [1000, 2000, 4000, 8000];
pub const MS: [f64; 2] = [0.0, 0.9];
pub const SEEDS: u64 = 3;
pub const EPOCHS: u32 = 8;
pub const B_CRIT: f64 = 256.0;
pub const S_MIN: f64 = 6.0;

pub fn batch_grid() -> Vec<u64> {
    (3..=12).map(|k| 1u64 << k).collect()
}

pub fn cell_name(lr: f64, n: u64, m: f64) -> String {
    format!("lr{lr}_N{n}_m{m}")
}

pub fn planted_b_opt(lr: f64, n: u64, m: f64) -> f64 {
    0.4 * lr * n as f64 / (1.0 - m)
}

pub fn peak_acc(n: u64) -> f64 {
    1.0 - (3.0 * (n as f64).powf(-0.45) + 0.04)
}

/// One run whose accuracy rises from 0.1 to `final_acc` with time constant S(B)/3 steps.
#[allow(clippy::too_many_arguments)] // a generator: one argument per planted setting
pub fn rising_run(
    cell: &str,
    lr: f64,
    n: u64,
    m: f64,
    b: u64,
    seed: u64,
    final_acc: f64,
    diverged: bool,
) -> RunInput {
    let per_epoch = n.div_ceil(b);
    let s_b = S_MIN * (1.0 + B_CRIT / b as f64);
    let curve: Vec<EpochPoint> = (0..=EPOCHS)
        .map(|e| {
            let step = per_epoch * e as u64;
            let v = 0.1 + (final_acc - 0.1) * (1.0 - (-3.0 * step as f64 / s_b).exp());
            EpochPoint {
                epoch: e,
                step,
                samples: n * e as u64,
                value: if diverged && e >= 2 { None } else { Some(v) },
            }
        })
        .collect();
    // Instruments (planted): B_simple grows as the accuracy rises (the loss falls), and the
    // curvature at initialisation depends on the seed only.
    let b_simple: Vec<crate::fit::BSimplePoint> = curve
        .iter()
        .filter(|p: &&EpochPoint| p.value.is_some())
        .map(|p| {
            let v = p.value.unwrap_or(0.1);
            crate::fit::BSimplePoint {
                epoch: p.epoch,
                step: p.step,
                b_simple: 40.0 * (1.0 + 20.0 * (v - 0.1)),
                train_loss: Some(2.3 * (1.0 - v)),
            }
        })
        .collect();
    // B_noise three quarters of B_simple: GᵀHG = 2|G|², tr(HΣ) = 1.5·tr(Σ).
    let curved = b_simple
        .iter()
        .map(|p| crate::fit::CurvedReading {
            epoch: p.epoch,
            grad_sq: 1.0,
            trace_sigma: p.b_simple,
            grad_h_grad: 2.0,
            trace_h_sigma: 1.5 * p.b_simple,
        })
        .collect();
    let instruments = crate::fit::RunInstruments {
        curved,
        b_simple,
        init_top_eigenvalue: Some(1.0 + 0.1 * seed as f64),
        init_trace: Some(20.0 + seed as f64),
        b_simple_withheld: Vec::new(),
    };
    RunInput {
        instruments,
        diverged,
        steps: per_epoch * if diverged { 2 } else { EPOCHS as u64 },
        curve,
        ..crate::fit::testdata::flat_run(cell, lr, n, m, b, seed, final_acc, EPOCHS)
    }
}

/// The schedule runs: identical per-epoch curves, different update counts (Smith et al. 2017).
fn schedule_runs(g: &mut Gauss) -> Vec<RunInput> {
    let n = 4000u64;
    let mut runs = Vec::new();
    // (mode, batch size per epoch)
    let modes: [(&str, [u64; 8]); 3] = [
        ("decay-lr", [128; 8]),
        ("increase-batch", [128, 128, 128, 640, 640, 640, 3200, 3200]),
        ("hybrid", [128, 128, 128, 640, 640, 640, 640, 640]),
    ];
    for (mode, bs) in modes {
        for seed in 0..SEEDS {
            let z = 0.003 * g.next();
            let mut step = 0u64;
            let mut curve = vec![EpochPoint {
                epoch: 0,
                step: 0,
                samples: 0,
                value: Some(0.1),
            }];
            for e in 1..=EPOCHS {
                step += n.div_ceil(bs[e as usize - 1]);
                let v = 0.1 + (0.87 + z - 0.1) * (1.0 - (-(e as f64) / 1.8).exp());
                curve.push(EpochPoint {
                    epoch: e,
                    step,
                    samples: n * e as u64,
                    value: Some(v),
                });
            }
            runs.push(RunInput {
                instruments: Default::default(),
                run_id: format!("sched/{mode}/s{seed}"),
                cell: format!("sched/{mode}"),
                schedule_group: "N4000_lr0.1_m0.9_B128".into(),
                lr: 0.1,
                batch_size: 128,
                max_batch_size: bs.iter().max().copied(),
                momentum: 0.9,
                noise_scale: None,
                train_size: n,
                test_size: 10_000,
                classes: 10,
                seed,
                schedule: mode.into(),
                diverged: false,
                steps: step,
                curve,
            });
        }
    }
    runs
}

/// The whole synthetic sweep (3 ε × 4 N × 2 m × 10 B × 3 seeds + 9 schedule runs).
pub fn synthetic_runs() -> Vec<RunInput> {
    let mut g = Gauss::new(11);
    let mut runs = Vec::new();
    for &lr in &LRS {
        for &n in &NS {
            for &m in &MS {
                let cell = cell_name(lr, n, m);
                let b_opt = planted_b_opt(lr, n, m);
                for b in batch_grid() {
                    let diverged = lr == 0.1 && m == 0.9 && b == 8;
                    for seed in 0..SEEDS {
                        let x = (b as f64).log2() - b_opt.log2();
                        let v = (peak_acc(n) - 0.03 * x * x + 0.004 * g.next()).max(0.1);
                        runs.push(rising_run(&cell, lr, n, m, b, seed, v, diverged));
                    }
                }
            }
        }
    }
    runs.extend(schedule_runs(&mut g));
    runs
}

/// Fit options for tests: fewer bootstrap resamples (fast), otherwise the defaults.
pub fn test_options() -> FitOptions {
    FitOptions {
        bootstrap: 200,
        ..FitOptions::default()
    }
}

/// The synthetic runs and their fit.
pub fn synthetic() -> (Vec<RunInput>, FitReport) {
    let runs = synthetic_runs();
    let fit = fit_all(&runs, &test_options());
    (runs, fit)
}

/// Decodes a PNG and checks that it has the size asked for and is not blank: the luminance
/// varies (variance above a threshold) and more than a few distinct colours appear (text,
/// lines, fills).
pub fn assert_png(path: &std::path::Path, size: (u32, u32)) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    assert_eq!((info.width, info.height), size, "{}", path.display());
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for p in px.chunks(channels) {
        let rgb = (p[0], p[1 % channels], p[2 % channels]);
        colours.insert(rgb);
        let l = (rgb.0 as f64 + rgb.1 as f64 + rgb.2 as f64) / 3.0;
        sum += l;
        sum2 += l * l;
        n += 1.0;
    }
    let var = sum2 / n - (sum / n).powi(2);
    assert!(var > 50.0, "{}: luminance variance {var}", path.display());
    assert!(
        colours.len() > 20,
        "{}: {} colours",
        path.display(),
        colours.len()
    );
}
