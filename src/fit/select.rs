//! Reducing one run's curve to one number, and censoring diverged runs.
//!
//! Epoch 0 is the evaluation at initialisation (before any update), so it is never a training
//! result: all three rules look at epochs ≥ 1 only.
//!
//! Diverged runs are data, not missing (Smith & Le 2017, arXiv 1710.06451, as summarised in
//! docs/science.md §1: "censored at the worst value"). Their value is the *censor value*: the worst
//! finite value of the metric among
//!   (a) every epoch of every run that did not diverge, and
//!   (b) epoch 0 of every run (initialisation is untouched by a later divergence);
//! and only when (a) and (b) hold nothing, (c) any finite value of any run.
//! Why not any epoch of a diverged run: a loss that explodes to 1e30 just before turning into NaN
//! is finite, and censoring at it would let one run dominate every mean. For accuracies (bounded)
//! the rule makes no practical difference.

use super::stats::median;
use super::{EpochPoint, FitOptions, MetricKind, RunInput, Select};

/// The value one run contributes to the fits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Selected {
    pub value: f64,
    /// True for a diverged run set to the censor value.
    pub censored: bool,
}

/// Selected values of all runs, in input order.
pub(crate) struct Selection {
    pub per_run: Vec<Option<Selected>>,
    pub censor_value: Option<f64>,
    /// Non-diverged runs without any finite value at epochs ≥ 1.
    pub n_missing: usize,
}

/// Finite values at epochs ≥ 1, in epoch order (a later duplicate epoch replaces an earlier).
fn trained_values(curve: &[EpochPoint]) -> Vec<f64> {
    let mut pts: Vec<&EpochPoint> = curve.iter().filter(|p| p.epoch >= 1).collect();
    pts.sort_by_key(|p| p.epoch);
    let mut out: Vec<(u32, Option<f64>)> = Vec::with_capacity(pts.len());
    for p in pts {
        let v = p.value.filter(|v| v.is_finite());
        match out.last_mut() {
            Some(last) if last.0 == p.epoch => last.1 = v,
            _ => out.push((p.epoch, v)),
        }
    }
    out.into_iter().filter_map(|(_, v)| v).collect()
}

/// How many models (one per evaluated epoch) `select` compares to reduce a curve to its value:
/// 1 for final (the last model only), every epoch ≥ 1 with a value for best, and up to 5 for
/// median-last-5; at least 1 (a diverged run's censored value was compared too). Each was
/// scored on the same held-out examples, so each counts in a union bound over what was compared.
pub(crate) fn models_compared(curve: &[EpochPoint], select: Select) -> usize {
    let n = trained_values(curve).len();
    match select {
        Select::Final => 1,
        Select::Best => n.max(1),
        Select::MedianLast5 => n.clamp(1, 5),
    }
}

/// Reduces a curve by `select`:
/// final = the last epoch (≥ 1) with a value; best = the best value over epochs ≥ 1 (max for
/// accuracies, min for losses); median-last-5 = the median of the last 5 epochs with values
/// (Goyal et al. 2017, arXiv 1706.02677). `None` when no epoch ≥ 1 has a finite value.
pub fn select_value(curve: &[EpochPoint], select: Select, metric: MetricKind) -> Option<f64> {
    let vals = trained_values(curve);
    match select {
        Select::Final => vals.last().copied(),
        Select::Best => vals.into_iter().reduce(|a, b| metric.best_of(a, b)),
        Select::MedianLast5 => median(&vals[vals.len().saturating_sub(5)..]),
    }
}

/// The censor value (see the module doc for the rule).
pub(crate) fn censor_value(runs: &[&RunInput], metric: MetricKind) -> Option<f64> {
    let worst = |it: &mut dyn Iterator<Item = f64>| it.reduce(|a, b| metric.worst_of(a, b));
    let finite = |p: &EpochPoint| p.value.filter(|v| v.is_finite());
    let sane = runs.iter().flat_map(|r| {
        r.curve
            .iter()
            .filter(move |p| !r.diverged || p.epoch == 0)
            .filter_map(finite)
    });
    worst(&mut sane.into_iter()).or_else(|| {
        let mut any = runs.iter().flat_map(|r| r.curve.iter().filter_map(finite));
        worst(&mut any)
    })
}

/// Selects every run's value; diverged runs get the censor value.
pub(crate) fn select_all(runs: &[&RunInput], opts: &FitOptions) -> Selection {
    let censor = censor_value(runs, opts.metric);
    let mut n_missing = 0;
    let per_run = runs
        .iter()
        .map(|r| {
            if r.diverged {
                censor.map(|value| Selected {
                    value,
                    censored: true,
                })
            } else {
                let v = select_value(&r.curve, opts.select, opts.metric);
                if v.is_none() {
                    n_missing += 1;
                }
                v.map(|value| Selected {
                    value,
                    censored: false,
                })
            }
        })
        .collect();
    Selection {
        per_run,
        censor_value: censor,
        n_missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::run_with_curve;

    fn curve(vals: &[Option<f64>]) -> Vec<EpochPoint> {
        vals.iter()
            .enumerate()
            .map(|(e, v)| EpochPoint {
                epoch: e as u32,
                step: 10 * e as u64,
                samples: 100 * e as u64,
                value: *v,
            })
            .collect()
    }

    #[test]
    fn final_best_median_follow_their_definitions() {
        // epoch 0 = 0.99 must be ignored by every rule (initialisation, not a result).
        let c = curve(&[
            Some(0.99),
            Some(0.5),
            Some(0.7),
            None,
            Some(0.6),
            Some(f64::NAN),
            Some(0.65),
            Some(0.62),
        ]);
        let acc = MetricKind::TestAcc;
        assert_eq!(select_value(&c, Select::Final, acc), Some(0.62));
        assert_eq!(select_value(&c, Select::Best, acc), Some(0.7));
        assert_eq!(
            select_value(&c, Select::Best, MetricKind::TestLoss),
            Some(0.5)
        );
        // last five finite values at epochs ≥ 1: 0.5, 0.7, 0.6, 0.65, 0.62 → median 0.62
        assert_eq!(select_value(&c, Select::MedianLast5, acc), Some(0.62));
        assert_eq!(select_value(&curve(&[Some(0.1)]), Select::Final, acc), None);
        assert_eq!(select_value(&[], Select::Best, acc), None);
    }

    #[test]
    fn diverged_runs_are_censored_at_the_worst_sane_value() {
        let ok = run_with_curve("a", false, &[Some(0.1), Some(0.5), Some(0.8)]);
        // A diverged loss run whose finite epochs explode: only its epoch 0 counts.
        let bad = run_with_curve("b", true, &[Some(2.3), Some(1e30), None]);
        let runs = vec![&ok, &bad];
        assert_eq!(censor_value(&runs, MetricKind::TestAcc), Some(0.1));
        assert_eq!(censor_value(&runs, MetricKind::TestLoss), Some(2.3));
        let opts = FitOptions::default();
        let s = select_all(&runs, &opts);
        assert_eq!(
            s.per_run[1],
            Some(Selected {
                value: 0.1,
                censored: true
            })
        );
        assert_eq!(s.per_run[0].map(|s| s.value), Some(0.8));
        // Only diverged runs without epoch 0: fall back to any finite value.
        let only = run_with_curve("c", true, &[None, Some(0.3), Some(0.2)]);
        assert_eq!(censor_value(&[&only], MetricKind::TestAcc), Some(0.2));
        assert_eq!(censor_value(&[], MetricKind::TestAcc), None);
    }
}
