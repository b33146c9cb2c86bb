//! The optimal batch size per cell (Smith & Le 2017, arXiv 1710.06451; docs/science.md §1).
//!
//! Per cell (fixed ε, N, m, schedule): the seed mean of the selected metric against B; the grid
//! argmax; the vertex of the quadratic in log2 B through the argmax and its two neighbours,
//! clamped to that bracket; a peak at the grid's edge is flagged censored and reported at the
//! edge (not extrapolated).
//!
//! The interval is a parametric bootstrap: each replicate draws every B's seed mean from a
//! normal around the observed mean with variance σ²/n_B, reruns the estimator, and the
//! (1 ± level)/2 percentiles of log2 B_opt are taken. σ² is the residual of the two-way layout
//! B × seed over the bracket the vertex comes from (the argmax and its neighbours) when those
//! ran the same seeds: a seed's deviation shared across B (same initial weights, same data
//! order) moves every mean alike and not the peak. Otherwise it is the within-B variance pooled
//! over the bracket (every B if those have one seed each); a B whose runs all diverged adds
//! nothing and stays at the censor value. Each
//! replicate draws σ² itself from s²·dof/χ²_dof, so the means' spread is a t with the pooled dof
//! rather than a normal at the estimated s². Why not resample the seeds within each B: with the
//! usual 3 seeds a resampled mean varies (n − 1)/n as much as the mean does and rests on 2 dof,
//! and the 95% intervals covered the planted B_opt about 80% of the time (docs/fits.md §2 has
//! the measured coverage). Why the bracket and not every B: far from the peak the seeds scatter
//! several times more (the shipped sweeps), which would widen every interval for points the
//! vertex never uses. The generator is ChaCha8 seeded with
//! `bootstrap_seed`, on a stream derived from the cell name, so a cell's interval does not
//! depend on which other cells are in the sweep and is reproducible bit for bit.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{ChiSquared, Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::stats::{finite, mean, percentile_sorted, t_interval};
use super::{Censor, Ctx, Interval, MetricKind, Outcome, RunInput};

/// Fewest batch sizes a cell needs for a vertex through the argmax and two neighbours.
const MIN_BATCH_SIZES: usize = 3;

/// Fewest bootstrap resamples for a percentile interval. The interval's ends are the
/// (1 ± level)/2 quantiles of the replicates: at 95% and 100 resamples each end already rests
/// on the 2–3 most extreme replicates, and with fewer an end is one or two draws (with 1, both
/// ends are the same replicate, an "interval" that need not contain the estimate). Percentile
/// intervals are usually given about 1,000 resamples (Efron & Tibshirani 1993, *An
/// Introduction to the Bootstrap*, ch. 13 and 19), the default of `scalelab fit`.
pub const MIN_BOOTSTRAP: usize = 100;

/// The most bootstrap resamples per cell: a hundred times the usual 1,000, beyond which the
/// percentile ends no longer move and a fit would only take minutes (or ask for more memory
/// than there is).
pub const MAX_BOOTSTRAP: usize = 100_000;

/// Grid steps either side of the argmax whose seeds give the pooled variance of the bootstrap:
/// the bracket of the vertex.
const POOL_STEPS: usize = 1;

/// Seed statistics of one batch size in one cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchPoint {
    pub batch_size: u64,
    /// Seed mean of the selected metric (diverged runs at the censor value).
    pub mean: f64,
    /// t interval of the seed mean; absent with one seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    pub n_seeds: usize,
    pub n_diverged: usize,
}

/// B_opt of one cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellBopt {
    pub cell: String,
    pub lr: f64,
    pub train_size: u64,
    pub momentum: f64,
    /// The schedule mode of the cell's runs ("constant", "decay-lr", "increase-batch",
    /// "hybrid"); only constant cells enter the scaling regression.
    #[serde(default = "constant_schedule")]
    pub schedule: String,
    pub points: Vec<BatchPoint>,
    /// The grid batch size with the best seed mean.
    pub argmax_batch: u64,
    /// The vertex estimate (or the edge value when censored).
    pub b_opt: f64,
    pub log2_b_opt: f64,
    /// The metric at `b_opt` on the fitted quadratic (the grid mean when censored).
    pub peak_value: f64,
    /// Set when the best mean sits on the grid's edge: `b_opt` is then only a bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censored: Option<Censor>,
    /// Percentile interval of B_opt (in batch-size units) from the parametric bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// Why there is no interval, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_note: Option<String>,
    /// Share of bootstrap replicates whose peak was on the grid's edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_censored_share: Option<f64>,
    /// g_opt = ε(N/B_opt − 1)/(1 − m) (Smith & Le 2017, with the −1 for sampling without
    /// replacement and ε/(1 − m) the effective learning rate; docs/science.md §1).
    pub g_opt: f64,
    /// εN/(B_opt(1 − m)), the B ≪ N form Smith & Le predict constant across cells.
    pub g_opt_approx: f64,
    pub n_runs: usize,
    pub n_diverged: usize,
    /// Runs in the cell without a value (not diverged, no finite epoch ≥ 1).
    pub n_missing: usize,
}

fn constant_schedule() -> String {
    "constant".into()
}

/// A cell, group or target that could not be fitted, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedItem {
    pub name: String,
    pub reason: String,
}

/// B_opt of every cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoptSection {
    pub cells: Vec<CellBopt>,
    pub skipped_cells: Vec<SkippedItem>,
    pub bootstrap: usize,
    pub bootstrap_seed: u64,
}

/// Where the optimum of one set of seed means lies, in log2 B.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Peak {
    pub log2_b: f64,
    pub value: f64,
    pub argmax: usize,
    pub censored: Option<Censor>,
}

/// Vertex of the parabola through three points, if it is a proper extremum in the direction of
/// `metric` (the middle point being the best of the three guarantees that, unless all three are
/// equal). Returns (x, y) of the vertex clamped to [x0, x2].
fn three_point_vertex(x: [f64; 3], y: [f64; 3]) -> Option<(f64, f64)> {
    let s1 = (y[1] - y[0]) / (x[1] - x[0]);
    let s2 = (y[2] - y[1]) / (x[2] - x[1]);
    let a = (s2 - s1) / (x[2] - x[0]);
    let b = s1 - a * (x[0] + x[1]);
    if a.is_nan() || a.abs() <= 1e-300 {
        return None;
    }
    let xv = (-b / (2.0 * a)).clamp(x[0], x[2]);
    let yv = y[1] + (xv - x[1]) * (s1 + a * (xv - x[0]));
    Some((finite(xv)?, finite(yv)?))
}

/// The B_opt estimator on seed means `y` at grid points `x = log2 B` (sorted, distinct, ≥ 3).
pub(crate) fn locate_peak(x: &[f64], y: &[f64], metric: MetricKind) -> Peak {
    let mut best = 0;
    for i in 1..y.len() {
        if metric.better(y[i], y[best]) {
            best = i;
        }
    }
    let last = y.len() - 1;
    if best == 0 || best == last {
        return Peak {
            log2_b: x[best],
            value: y[best],
            argmax: best,
            censored: Some(if best == 0 { Censor::Low } else { Censor::High }),
        };
    }
    let (xv, yv) = three_point_vertex(
        [x[best - 1], x[best], x[best + 1]],
        [y[best - 1], y[best], y[best + 1]],
    )
    .unwrap_or((x[best], y[best]));
    Peak {
        log2_b: xv,
        value: yv,
        argmax: best,
        censored: None,
    }
}

/// FNV-1a of the cell name: the bootstrap stream of that cell.
fn stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The variance that moves the argmax when the same seeds ran at every batch size of the
/// bracket (the argmax and its neighbours, leaving out a B whose runs all diverged): runs with
/// the same seed share their initial weights and data order, so a seed's deviation is largely
/// shared across B (ρ = 0.62 between neighbouring B on `sweeps/smith-le.toml`), and a shared
/// deviation shifts every mean alike without moving the peak. This is the residual of the
/// two-way layout B × seed, y − ȳ_B· − ȳ_·s + ȳ_··, with (n_B − 1)(n_s − 1) dof; the one-way
/// within-B variance ([`pooled_variance`]) counts the shared part as well, and made intervals
/// about 1.6× too wide at ρ = 0.6 (coverage 0.99 at a nominal 0.95). `None` when the bracket
/// has fewer than two such batch sizes, or they do not share the same two or more seeds once
/// each (`seeds[i]` sorted, parallel to `values[i]`).
fn seed_adjusted_variance(
    values: &[Vec<f64>],
    seeds: &[Vec<u64>],
    all_diverged: &[bool],
    argmax: usize,
) -> Option<(f64, usize)> {
    let rows: Vec<usize> = (0..values.len())
        .filter(|&i| !all_diverged[i] && i.abs_diff(argmax) <= POOL_STEPS)
        .collect();
    let first = &seeds[*rows.first()?];
    if rows.len() < 2
        || first.len() < 2
        || first.windows(2).any(|w| w[0] == w[1])
        || rows
            .iter()
            .any(|&i| seeds[i] != *first || values[i].len() != first.len())
    {
        return None;
    }
    let (nb, ns) = (rows.len(), first.len());
    let row_mean: Vec<f64> = rows
        .iter()
        .map(|&i| mean(&values[i]))
        .collect::<Option<_>>()?;
    let col_mean: Vec<f64> = (0..ns)
        .map(|j| rows.iter().map(|&i| values[i][j]).sum::<f64>() / nb as f64)
        .collect();
    let grand = row_mean.iter().sum::<f64>() / nb as f64;
    let ss: f64 = rows
        .iter()
        .zip(&row_mean)
        .map(|(&i, rm)| {
            values[i]
                .iter()
                .zip(&col_mean)
                .map(|(y, cm)| (y - rm - cm + grand).powi(2))
                .sum::<f64>()
        })
        .sum();
    let dof = (nb - 1) * (ns - 1);
    finite(ss / dof as f64).map(|s2| (s2, dof))
}

/// The within-B variance pooled over the batch sizes at most [`POOL_STEPS`] grid steps from
/// `argmax` that have two seeds or more, or over every such batch size when the bracket has
/// none. Batch sizes whose runs all diverged are left out: their seeds agree because they are
/// censored, not because the metric is precise there. Returns (s², dof), or `None` when no
/// batch size qualifies.
fn pooled_variance(
    values: &[Vec<f64>],
    all_diverged: &[bool],
    argmax: usize,
) -> Option<(f64, usize)> {
    let pool = |near: bool| {
        let (mut ss, mut dof) = (0.0, 0usize);
        for (i, (v, &div)) in values.iter().zip(all_diverged).enumerate() {
            if v.len() < 2 || div || (near && i.abs_diff(argmax) > POOL_STEPS) {
                continue;
            }
            let m = mean(v)?;
            ss += v.iter().map(|x| (x - m).powi(2)).sum::<f64>();
            dof += v.len() - 1;
        }
        if dof == 0 {
            return None;
        }
        finite(ss / dof as f64).map(|s2| (s2, dof))
    };
    pool(true).or_else(|| pool(false))
}

/// How the notes of a cell without an interval begin: the bootstrap is off, has too few
/// resamples, or the cell has one seed per batch size.
const NOTE_OFF: &str = "bootstrap off";
const NOTE_TOO_FEW: &str = "too few resamples";
const NOTE_ONE_SEED: &str = "one seed per batch size";

/// A cell's `interval_note` in a few words, for a table's narrow column: `bootstrap off`,
/// `too few`, `1 seed`, or `no interval` for the rarer reasons (the note says which).
pub(crate) fn note_label(note: &str) -> &'static str {
    if note.starts_with(NOTE_OFF) {
        "bootstrap off"
    } else if note.starts_with(NOTE_TOO_FEW) {
        "too few"
    } else if note.starts_with(NOTE_ONE_SEED) {
        "1 seed"
    } else {
        "no interval"
    }
}

/// Parametric bootstrap of log2 B_opt (see the module doc) on the seeds' values `values[i]` at
/// `x[i]` = log2 B; a batch size whose runs all diverged (`all_diverged[i]`) stays at its
/// censored mean in every replicate. Returns the percentile interval on the log2 scale and the
/// share of censored replicates, or a note saying why there is none.
#[allow(clippy::too_many_arguments)] // the cell's data, then the bootstrap's settings
pub(crate) fn bootstrap_log2(
    name: &str,
    x: &[f64],
    values: &[Vec<f64>],
    seeds: &[Vec<u64>],
    all_diverged: &[bool],
    metric: MetricKind,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Result<(f64, f64, f64), String> {
    if resamples == 0 {
        return Err(format!("{NOTE_OFF}: 0 resamples, point estimate only"));
    }
    if resamples < MIN_BOOTSTRAP {
        return Err(format!(
            "{NOTE_TOO_FEW}: {resamples} < {MIN_BOOTSTRAP} for a percentile interval, point \
             estimate only"
        ));
    }
    if resamples > MAX_BOOTSTRAP {
        return Err(format!(
            "{resamples} resamples > {MAX_BOOTSTRAP}, the most for an interval: point estimate only"
        ));
    }
    let centre: Vec<f64> = values
        .iter()
        .map(|v| mean(v))
        .collect::<Option<_>>()
        .ok_or("a seed mean is not finite")?;
    let argmax = locate_peak(x, &centre, metric).argmax;
    let Some((s2, dof)) = seed_adjusted_variance(values, seeds, all_diverged, argmax)
        .or_else(|| pooled_variance(values, all_diverged, argmax))
    else {
        return Err(format!(
            "{NOTE_ONE_SEED}: no bootstrap interval, point estimate only"
        ));
    };
    let chi2 = ChiSquared::new(dof as f64).map_err(|e| format!("χ² with {dof} dof: {e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream_of(name));
    let mut reps = Vec::with_capacity(resamples);
    let mut censored = 0usize;
    let mut means = vec![0.0; values.len()];
    for _ in 0..resamples {
        // σ² from its sampling distribution given s² (scaled inverse χ²), then the means.
        let var = s2 * dof as f64 / chi2.sample(&mut rng).max(f64::MIN_POSITIVE);
        for (((m, c), v), &div) in means.iter_mut().zip(&centre).zip(values).zip(all_diverged) {
            let z: f64 = StandardNormal.sample(&mut rng);
            *m = if div {
                *c
            } else {
                c + z * (var / v.len() as f64).sqrt()
            };
        }
        let p = locate_peak(x, &means, metric);
        censored += usize::from(p.censored.is_some());
        reps.push(p.log2_b);
    }
    reps.sort_by(f64::total_cmp);
    let lo = percentile_sorted(&reps, (1.0 - level) / 2.0);
    let hi = percentile_sorted(&reps, (1.0 + level) / 2.0);
    match (lo, hi) {
        (Some(lo), Some(hi)) => Ok((lo, hi, censored as f64 / resamples as f64)),
        _ => Err("the bootstrap produced no finite replicate".into()),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Fits one cell; `Err` is the human reason it was skipped.
fn fit_cell(ctx: &Ctx, name: &str, idx: &[usize]) -> Result<CellBopt, String> {
    let runs: Vec<&RunInput> = idx.iter().map(|&i| ctx.runs[i]).collect();
    let r0 = runs[0]; // idx is non-empty: cells are built from at least one run
    if runs.iter().any(|r| {
        !same(r.lr, r0.lr)
            || r.train_size != r0.train_size
            || !same(r.momentum, r0.momentum)
            || r.schedule != r0.schedule
    }) {
        // A noise-scale axis sets ε from B (ε = g·B(1−m)/N): a cell at one g has a learning
        // rate per batch size, and "the best B at fixed ε" is not a question it can answer.
        if let Some(g) = r0.noise_scale
            && runs.iter().any(|r| !same(r.lr, r0.lr))
        {
            return Err(format!(
                "its runs are placed at noise scale g = {g} (the sweep's noise_scale axis), so \
                 ε grows with B inside the cell: B_opt at a fixed ε needs a sweep over lr"
            ));
        }
        return Err("its runs disagree on ε, N, m or schedule: the cell key must fix them".into());
    }
    if !(r0.lr.is_finite() && r0.lr > 0.0) {
        return Err(format!("learning rate {} is not positive", r0.lr));
    }
    if !(r0.momentum.is_finite() && (0.0..1.0).contains(&r0.momentum)) {
        return Err(format!("momentum {} is outside [0, 1)", r0.momentum));
    }
    if runs.iter().all(|r| r.diverged) {
        return Err("every run in this cell diverged: no optimum to locate".into());
    }
    // batch size → (seed, run_id, value, diverged), sorted for a reproducible bootstrap
    let mut by_b: BTreeMap<u64, Vec<(u64, &str, f64, bool)>> = BTreeMap::new();
    let mut n_missing = 0;
    for &i in idx {
        let r = ctx.runs[i];
        match ctx.sel[i] {
            Some(s) if r.batch_size > 0 => by_b
                .entry(r.batch_size)
                .or_default()
                .push((r.seed, &r.run_id, s.value, r.diverged)),
            _ => n_missing += 1,
        }
    }
    if by_b.len() < MIN_BATCH_SIZES {
        return Err(format!(
            "{} batch size(s) with values: B_opt needs at least {MIN_BATCH_SIZES}",
            by_b.len()
        ));
    }
    let mut points = Vec::new();
    let mut x = Vec::new();
    let mut values = Vec::new();
    let mut seeds = Vec::new();
    let mut all_diverged = Vec::new();
    for (b, mut v) in by_b {
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
        let vals: Vec<f64> = v.iter().map(|t| t.2).collect();
        let Some(m) = mean(&vals) else {
            return Err("a seed mean is not finite".into());
        };
        points.push(BatchPoint {
            batch_size: b,
            mean: m,
            interval: t_interval(&vals, ctx.opts.confidence),
            n_seeds: vals.len(),
            n_diverged: v.iter().filter(|t| t.3).count(),
        });
        x.push((b as f64).log2());
        values.push(vals);
        seeds.push(v.iter().map(|t| t.0).collect::<Vec<u64>>());
        all_diverged.push(v.iter().all(|t| t.3));
    }
    let y: Vec<f64> = points.iter().map(|p| p.mean).collect();
    if y.iter().all(|&v| v == y[0]) {
        return Err("the seed-mean metric is the same at every batch size: no optimum".into());
    }
    let peak = locate_peak(&x, &y, ctx.metric());
    let opts = &ctx.opts;
    let boot = bootstrap_log2(
        name,
        &x,
        &values,
        &seeds,
        &all_diverged,
        ctx.metric(),
        opts.bootstrap,
        opts.bootstrap_seed,
        opts.confidence,
    );
    let (interval, interval_note, share) = match boot {
        Ok((lo, hi, share)) => (
            Some(Interval {
                lo: lo.exp2(),
                hi: hi.exp2(),
                level: opts.confidence,
            }),
            None,
            Some(share),
        ),
        Err(note) => (None, Some(note), None),
    };
    let b_opt = peak.log2_b.exp2();
    let (lr, n, m) = (r0.lr, r0.train_size as f64, r0.momentum);
    let g_opt = lr * (n / b_opt - 1.0) / (1.0 - m);
    let g_opt_approx = lr * n / (b_opt * (1.0 - m));
    Ok(CellBopt {
        cell: name.to_string(),
        lr,
        train_size: r0.train_size,
        momentum: m,
        schedule: r0.schedule.clone(),
        argmax_batch: points[peak.argmax].batch_size,
        points,
        b_opt: finite(b_opt).ok_or("B_opt is not finite")?,
        log2_b_opt: peak.log2_b,
        peak_value: peak.value,
        censored: peak.censored,
        interval,
        interval_note,
        bootstrap_censored_share: share,
        g_opt: finite(g_opt).ok_or("g_opt is not finite")?,
        g_opt_approx: finite(g_opt_approx).ok_or("g_opt is not finite")?,
        n_runs: runs.len(),
        n_diverged: runs.iter().filter(|r| r.diverged).count(),
        n_missing,
    })
}

/// B_opt for every cell of the sweep.
pub(crate) fn fit_bopt(ctx: &Ctx) -> Outcome<BoptSection> {
    if ctx.runs.is_empty() {
        return Outcome::skipped("no runs to fit");
    }
    if ctx.runs.iter().all(|r| r.diverged) {
        return Outcome::skipped("every run diverged: B_opt has no optimum to locate");
    }
    if ctx.sel.iter().all(Option::is_none) {
        return Outcome::skipped(format!(
            "no run has a finite {} at an epoch ≥ 1",
            ctx.metric()
        ));
    }
    let mut cells: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in ctx.runs.iter().enumerate() {
        cells.entry(r.cell.as_str()).or_default().push(i);
    }
    let mut fitted = Vec::new();
    let mut skipped = Vec::new();
    let mut max_b = 0;
    for (name, idx) in &cells {
        let nb = idx
            .iter()
            .filter(|&&i| ctx.sel[i].is_some())
            .map(|&i| ctx.runs[i].batch_size)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        max_b = max_b.max(nb);
        match fit_cell(ctx, name, idx) {
            Ok(c) => fitted.push(c),
            Err(reason) => skipped.push(SkippedItem {
                name: name.to_string(),
                reason,
            }),
        }
    }
    if fitted.is_empty() {
        let reason = if max_b < MIN_BATCH_SIZES {
            format!(
                "at most {max_b} batch size(s) per cell: B_opt needs at least {MIN_BATCH_SIZES}"
            )
        } else {
            format!(
                "no cell could be fitted (first: '{}': {})",
                skipped[0].name, skipped[0].reason
            )
        };
        return Outcome::skipped(reason);
    }
    Outcome::Fitted(BoptSection {
        cells: fitted,
        skipped_cells: skipped,
        bootstrap: ctx.opts.bootstrap,
        bootstrap_seed: ctx.opts.bootstrap_seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::{
        assert_json_finite, fit_bopt_and_scaling, flat_run, planted_bopt_runs, pow2_grid,
    };
    use crate::fit::{FitOptions, fit_all};

    /// The interval of a one-cell sweep's B_opt, `None` when its peak is censored at an edge.
    fn uncensored_interval(runs: &[RunInput], opts: &FitOptions) -> Option<Interval> {
        let (bopt, _) = fit_bopt_and_scaling(runs, opts);
        let cell = &bopt.fitted().unwrap().cells[0];
        cell.censored.is_none().then(|| cell.interval.unwrap())
    }

    /// Share of `trials` planted one-cell data sets (B_opt swept over 2^5 … 2^10 on the grid
    /// 8 … 4096) whose interval covers the planted B_opt, among the non-censored ones.
    fn planted_coverage(seeds: u64, noise_sd: f64, trials: u64) -> f64 {
        let opts = FitOptions {
            bootstrap: 400,
            ..FitOptions::default()
        };
        let (mut covered, mut fitted) = (0, 0);
        for t in 0..trials {
            // log2 B_opt spread evenly over [5, 10] (golden-ratio steps).
            let u = 5.0 + 5.0 * ((t as f64 * 0.618_033_988_75) % 1.0);
            let b_true = u.exp2();
            let runs = planted_bopt_runs(
                &[0.1],
                &[10_000],
                &[0.9],
                b_true / 10_000.0,
                1.0,
                seeds,
                noise_sd,
                1000 + t,
            );
            let Some(iv) = uncensored_interval(&runs, &opts) else {
                continue;
            };
            fitted += 1;
            covered += usize::from(iv.lo <= b_true && b_true <= iv.hi);
        }
        covered as f64 / fitted as f64
    }

    /// The two-way residual variance by hand: rows B, columns seeds.
    #[test]
    fn seed_adjusted_variance_is_the_two_way_residual() {
        let values = vec![
            vec![1.0, 2.0, 3.0],
            vec![2.0, 3.0, 4.0],
            vec![3.0, 4.0, 6.0],
        ];
        let seeds = vec![vec![0, 1, 2]; 3];
        let (s2, dof) = seed_adjusted_variance(&values, &seeds, &[false; 3], 1).unwrap();
        assert_eq!(dof, 4);
        assert!((s2 - 1.0 / 9.0).abs() < 1e-12, "{s2}");
        // Seed and batch effects alone leave nothing: the peak cannot move.
        let additive = vec![
            vec![1.0, 1.5, 0.5],
            vec![2.0, 2.5, 1.5],
            vec![1.2, 1.7, 0.7],
        ];
        let (s2, _) = seed_adjusted_variance(&additive, &seeds, &[false; 3], 1).unwrap();
        assert!(s2.abs() < 1e-12, "{s2}");
        // Other seeds at one B of the bracket, or a duplicate: the one-way pool instead.
        let mut other = seeds.clone();
        other[2] = vec![0, 1, 3];
        assert_eq!(
            seed_adjusted_variance(&values, &other, &[false; 3], 1),
            None
        );
        assert_eq!(
            seed_adjusted_variance(&values, &vec![vec![0, 0, 1]; 3], &[false; 3], 1),
            None
        );
        // A B whose runs all diverged stays out: two rows are left, (2 − 1)(3 − 1) dof.
        let (_, dof) = seed_adjusted_variance(&values, &seeds, &[true, false, false], 1).unwrap();
        assert_eq!(dof, 2);
        // At the grid's edge the bracket is the argmax and one neighbour.
        let (_, dof) = seed_adjusted_variance(&values, &seeds, &[false; 3], 0).unwrap();
        assert_eq!(dof, 2);
    }

    #[test]
    fn bootstrap_interval_covers_the_planted_b_opt_at_its_level_with_three_seeds() {
        // Resampling 3 seeds within each B covered 0.805 (noise 0.01) and 0.800 (0.02) of 200
        // such cells at 95%; the pooled parametric bootstrap covers 0.94 in a 1000-cell
        // simulation of the same settings (docs/fits.md §2).
        for noise_sd in [0.01, 0.02] {
            let c = planted_coverage(3, noise_sd, 300);
            assert!(
                (0.92..=0.985).contains(&c),
                "noise {noise_sd}: coverage {c}"
            );
        }
        // Two seeds: 2 dof per B were worse still (0.66).
        let c = planted_coverage(2, 0.01, 300);
        assert!((0.92..=0.985).contains(&c), "2 seeds: coverage {c}");
    }

    /// Seeds shared across batch sizes: each seed's runs carry one offset (sd 0.03, as the same
    /// initial weights and data order give) on top of independent noise (sd 0.01), so the
    /// seeds' deviations correlate at ρ = 0.9 across B. The shared offset moves every B's mean
    /// alike and cannot move the peak; the one-way within-B variance counted it and covered
    /// 1.0 of these cells at a nominal 0.95, with intervals several times too wide. The
    /// two-way residual covers at its level.
    #[test]
    fn a_seed_effect_shared_across_batch_sizes_does_not_widen_the_interval() {
        let opts = FitOptions {
            bootstrap: 400,
            ..FitOptions::default()
        };
        let mut g = crate::fit::testdata::Gauss::new(77);
        let (mut covered, mut fitted, mut widths) = (0, 0, Vec::new());
        for t in 0..300u64 {
            let u = 5.0 + 5.0 * ((t as f64 * 0.618_033_988_75) % 1.0);
            let offsets: Vec<f64> = (0..3).map(|_| 0.03 * g.next()).collect();
            let mut runs = Vec::new();
            for b in pow2_grid() {
                for seed in 0..3u64 {
                    let x = (b as f64).log2() - u;
                    let v = 0.9 - 0.03 * x * x + offsets[seed as usize] + 0.01 * g.next();
                    runs.push(flat_run("c", 0.1, 10_000, 0.9, b, seed, v.max(0.0), 3));
                }
            }
            let Some(iv) = uncensored_interval(&runs, &opts) else {
                continue;
            };
            fitted += 1;
            covered += usize::from(iv.lo <= u.exp2() && u.exp2() <= iv.hi);
            widths.push((iv.hi / iv.lo).log2());
        }
        let c = covered as f64 / fitted as f64;
        assert!((0.92..=0.985).contains(&c), "coverage {c} of {fitted}");
        // Not inflated by the offsets: a median width of 0.45 in log2 B here, against 1.06
        // with the one-way pool (which covered 1.0).
        widths.sort_by(f64::total_cmp);
        let median = widths[widths.len() / 2];
        assert!(median < 0.7, "median width {median} (log2 B)");
    }

    #[test]
    fn single_seed_batch_sizes_borrow_the_pooled_spread_and_diverged_ones_stay_put() {
        // 3 seeds at B = 8…64, one seed elsewhere: the one-seed B's still vary in the
        // replicates (at the pooled variance), so the interval has width.
        let mut runs = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 3, 0.01, 5);
        runs.retain(|r| r.seed == 0 || r.batch_size <= 64);
        let (bopt, _) = fit_bopt_and_scaling(&runs, &FitOptions::default());
        let cell = &bopt.fitted().unwrap().cells[0];
        let iv = cell.interval.expect("an interval");
        assert!(
            iv.lo < cell.b_opt && cell.b_opt < iv.hi,
            "{iv:?} vs {}",
            cell.b_opt
        );
        // Every run at B = 8 diverged (censored at 0.1), next to the argmax B = 16: their
        // agreement is censoring, not precision, so they stay out of the pool (which would
        // otherwise get 2 dof of zero spread and a narrower interval).
        let x = [3.0, 4.0, 5.0, 6.0, 7.0];
        let values = [
            vec![0.1, 0.1, 0.1],
            vec![0.81, 0.83, 0.79],
            vec![0.80, 0.82, 0.78],
            vec![0.75, 0.77, 0.73],
            vec![0.70, 0.72, 0.68],
        ];
        // Each B ran different seeds here: the one-way pool (the two-way layout needs the same
        // seeds across the bracket).
        let seeds: Vec<Vec<u64>> = (0..5u64)
            .map(|i| vec![3 * i, 3 * i + 1, 3 * i + 2])
            .collect();
        let boot = |div: [bool; 5]| {
            let (lo, hi, _) = bootstrap_log2(
                "c",
                &x,
                &values,
                &seeds,
                &div,
                MetricKind::TestAcc,
                2000,
                0,
                0.95,
            )
            .unwrap();
            hi - lo
        };
        let flagged = boot([true, false, false, false, false]);
        let unflagged = boot([false; 5]);
        assert!(flagged > unflagged, "{flagged} vs {unflagged}");
        // The bracket (argmax B = 2⁵ and its neighbours) all at one seed, three seeds only at the
        // ends: the pooled spread (about 0.01) must move the one-seed values in the replicates,
        // or the interval would be a point.
        let values = [
            vec![0.70, 0.72, 0.68],
            vec![0.80],
            vec![0.83],
            vec![0.79],
            vec![0.70, 0.71, 0.69],
        ];
        let seeds: Vec<Vec<u64>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (0..v.len() as u64).map(|s| 10 * i as u64 + s).collect())
            .collect();
        let (lo, hi, _) = bootstrap_log2(
            "c",
            &x,
            &values,
            &seeds,
            &[false; 5],
            MetricKind::TestAcc,
            2000,
            0,
            0.95,
        )
        .unwrap();
        assert!(hi - lo > 0.05, "[{lo}, {hi}] in log2 B");
    }

    #[test]
    fn noiseless_parabola_recovers_its_vertex_exactly() {
        // y = 0.9 − 0.03 (log2 B − 6.3)², grid 8…4096: the vertex is log2 B = 6.3 exactly.
        let x: Vec<f64> = pow2_grid().iter().map(|&b| (b as f64).log2()).collect();
        let y: Vec<f64> = x.iter().map(|v| 0.9 - 0.03 * (v - 6.3).powi(2)).collect();
        let p = locate_peak(&x, &y, MetricKind::TestAcc);
        assert!((p.log2_b - 6.3).abs() < 1e-12, "{}", p.log2_b);
        assert!((p.value - 0.9).abs() < 1e-12);
        assert_eq!(p.censored, None);
        // A loss minimum, on a non-uniform grid.
        let x2 = [3.0, 4.0, 6.0, 7.5];
        let y2: Vec<f64> = x2
            .iter()
            .map(|v| 1.0 + 0.2 * (v - 5.1f64).powi(2))
            .collect();
        let p2 = locate_peak(&x2, &y2, MetricKind::TestLoss);
        assert!((p2.log2_b - 5.1).abs() < 1e-12, "{}", p2.log2_b);
    }

    #[test]
    fn edge_peaks_are_censored_at_the_edge() {
        let x = [3.0, 4.0, 5.0, 6.0];
        let falling = [0.9, 0.8, 0.7, 0.6];
        let p = locate_peak(&x, &falling, MetricKind::TestAcc);
        assert_eq!((p.censored, p.log2_b), (Some(Censor::Low), 3.0));
        let p = locate_peak(&x, &falling, MetricKind::TestLoss);
        assert_eq!((p.censored, p.log2_b), (Some(Censor::High), 6.0));
    }

    #[test]
    fn fitted_cell_reports_g_opt_and_censoring() {
        // Accuracy rises with B up to the grid's end: censored high, B_opt = 4096.
        let runs: Vec<_> = pow2_grid()
            .into_iter()
            .flat_map(|b| {
                (0..3).map(move |s| {
                    flat_run(
                        "c",
                        0.1,
                        50_000,
                        0.9,
                        b,
                        s,
                        0.5 + 0.01 * (b as f64).log2(),
                        2,
                    )
                })
            })
            .collect();
        let rep = fit_all(&runs, &FitOptions::default());
        let cell = &rep.bopt.fitted().unwrap().cells[0];
        assert_eq!(cell.censored, Some(Censor::High));
        assert_eq!(cell.b_opt, 4096.0);
        // g = ε(N/B − 1)/(1 − m) = 0.1·(50000/4096 − 1)/0.1 = 11.20703125, worked by hand
        // (50000/4096 = 12.20703125); the approximate εN/(B(1 − m)) is 12.20703125.
        assert!((cell.g_opt - 11.207_031_25).abs() < 1e-9, "{}", cell.g_opt);
        assert!(
            (cell.g_opt_approx - 12.207_031_25).abs() < 1e-9,
            "{}",
            cell.g_opt_approx
        );
        assert_json_finite(&rep);
    }

    #[test]
    fn bootstrap_is_reproducible_and_depends_on_the_seed() {
        let runs = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 4, 0.02, 7);
        let opts = FitOptions {
            bootstrap: 400,
            ..FitOptions::default()
        };
        let a = fit_all(&runs, &opts);
        let b = fit_all(&runs, &opts);
        let ia = a.bopt.fitted().unwrap().cells[0].interval.unwrap();
        let ib = b.bopt.fitted().unwrap().cells[0].interval.unwrap();
        assert_eq!(ia.lo.to_bits(), ib.lo.to_bits());
        assert_eq!(ia.hi.to_bits(), ib.hi.to_bits());
        let c = fit_all(
            &runs,
            &FitOptions {
                bootstrap_seed: 1,
                ..opts.clone()
            },
        );
        let ic = c.bopt.fitted().unwrap().cells[0].interval.unwrap();
        assert!(ic.lo != ia.lo || ic.hi != ia.hi, "{ia:?} vs {ic:?}");
        // The planted B_opt = 0.01·0.1·10000/0.1 = 100 lies inside the interval.
        assert!(ia.lo < 100.0 && 100.0 < ia.hi, "{ia:?}");
        // Input order does not matter.
        let mut rev = runs.clone();
        rev.reverse();
        let d = fit_all(&rev, &opts);
        let id = d.bopt.fitted().unwrap().cells[0].interval.unwrap();
        assert_eq!(
            (id.lo.to_bits(), id.hi.to_bits()),
            (ia.lo.to_bits(), ia.hi.to_bits())
        );
    }

    #[test]
    fn one_seed_gives_a_point_estimate_and_says_why_there_is_no_interval() {
        let runs = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 1, 0.0, 1);
        let rep = fit_all(&runs, &FitOptions::default());
        let cell = &rep.bopt.fitted().unwrap().cells[0];
        assert!(cell.interval.is_none());
        assert!(cell.interval_note.as_deref().unwrap().contains("one seed"));
        assert!((cell.b_opt - 100.0).abs() < 1e-9, "{}", cell.b_opt);
        assert_json_finite(&rep);
    }

    #[test]
    fn fewer_than_three_batch_sizes_is_skipped_with_a_reason() {
        let runs: Vec<_> = [64, 128]
            .into_iter()
            .flat_map(|b| (0..3).map(move |s| flat_run("c", 0.1, 1000, 0.0, b, s, 0.8, 2)))
            .collect();
        let rep = fit_all(&runs, &FitOptions::default());
        let reason = rep.bopt.reason().unwrap();
        assert!(reason.contains("at most 2 batch size"), "{reason}");
    }
}
