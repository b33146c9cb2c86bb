//! Steps to a target and the critical batch size (McCandlish, Kaplan, Amodei et al. 2018,
//! arXiv 1812.06162 §2.2 and App. D; Shallue et al. 2018, arXiv 1811.03600; docs/science.md §3).
//!
//! For each target value of the metric and each batch size, the fastest run at that B (any ε,
//! any m: hyperparameters are tuned per B, as both papers do) reaches the target after S steps
//! and E examples. The curve is smoothed first by its running best (running max for accuracies,
//! running min for losses): "reached" means "reached at some earlier evaluation", which is
//! Shallue et al.'s first-step-at-which-the-goal-is-met and McCandlish et al.'s smoothing in
//! spirit. S and E are interpolated linearly between the two evaluations that bracket the
//! crossing. A crossing at the very first evaluation is left-censored (steps unknown) and
//! dropped, unless that evaluation is epoch 0 at step 0 (then the target is trivial, S = 0, and
//! the point is dropped too). So is a crossing between initialisation (step 0) and the first
//! evaluation after it: the loss falls fastest and most convexly there, and a straight line
//! from step 0 put S up to 4× too late (on the noisy quadratic model evaluated once per epoch of
//! 1,024 examples, B_crit came out 208 with an interval of 143–301 against a true 40); all that
//! is known is S ≤ the first evaluation's step. A batch size with such a run is left out of
//! that target's fit (its fastest run is the censored one), and the fit says how many were.
//! Automatic targets lie beyond every run's first evaluation after initialisation, so that no
//! run reaches them in its first interval.
//!
//! Fit: S(B) = S_min·(1 + B_crit/B), i.e. (S/S_min − 1)(E/E_min − 1) = 1 with E = B·S and
//! E_min = B_crit·S_min, by Levenberg–Marquardt on ln S with θ = (ln S_min, ln B_crit) (so both
//! stay positive); standard errors from the Jacobian at the optimum, carried to S_min and B_crit
//! by the delta method. Regime per B from the fitted slope d ln S/d ln B = −B_crit/(B + B_crit):
//! below −2/3 (B < B_crit/2) "perfect scaling" (S ∝ 1/B nearly), above −1/3 (B > 2·B_crit)
//! "maximal parallelism" (S nearly flat), "diminishing returns" between (Shallue et al.'s three
//! regimes; the cut-offs are ours: the slope's thirds).
//!
//! Runs are grouped by N (each training set is its own task) and only constant-schedule runs
//! enter (a schedule that changes B has no single batch size).

use std::collections::BTreeMap;

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::nls;
use super::stats::{finite, median, t_quantile};
use super::{Ctx, EpochPoint, Interval, MetricKind, Outcome, RunInput};

/// Automatic targets, as fractions of the way from the typical first value to the best value
/// that at least `MIN_B` batch sizes reach.
const AUTO_FRACTIONS: [f64; 3] = [0.5, 0.8, 0.95];
const MIN_B: usize = 3;

/// Shallue et al.'s regimes, from the fitted slope of ln S against ln B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    PerfectScaling,
    DiminishingReturns,
    MaximalParallelism,
}

impl Regime {
    /// The regime of a slope d ln S/d ln B ∈ (−1, 0).
    pub fn of_slope(slope: f64) -> Regime {
        if slope < -2.0 / 3.0 {
            Regime::PerfectScaling
        } else if slope > -1.0 / 3.0 {
            Regime::MaximalParallelism
        } else {
            Regime::DiminishingReturns
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Regime::PerfectScaling => "perfect scaling",
            Regime::DiminishingReturns => "diminishing returns",
            Regime::MaximalParallelism => "maximal parallelism",
        }
    }
}

/// The fastest run at one batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyPoint {
    pub batch_size: u64,
    pub run_id: String,
    pub lr: f64,
    pub steps: f64,
    pub examples: f64,
    pub fitted_steps: f64,
    /// d ln S/d ln B of the fit at this B.
    pub slope: f64,
    pub regime: Regime,
}

/// The fit for one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetFit {
    pub train_size: u64,
    pub target: f64,
    pub s_min: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s_min_se: Option<f64>,
    pub b_crit: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_crit_se: Option<f64>,
    /// exp(ln B_crit ± t·se(ln B_crit)), t with n − 2 degrees of freedom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_crit_interval: Option<Interval>,
    /// E_min = B_crit·S_min.
    pub e_min: f64,
    /// Delta-method standard error of E_min (with the covariance of ln S_min and ln B_crit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_min_se: Option<f64>,
    pub dof: usize,
    /// √(RSS/n) in ln S.
    pub rms_log_residual: f64,
    pub points: Vec<EfficiencyPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What can be said of a B_crit that lies far outside the batch sizes measured: the fitted
/// value there is an extrapolation of a curve that barely bends (1e17 with an interval of zero
/// width is what the fit returns), so tables and figures show the bound instead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BcritBound {
    /// S falls almost as 1/B over the whole grid: B_crit ≳ the largest batch size.
    AtLeast(u64),
    /// S barely changes over the grid: B_crit ≲ the smallest batch size.
    AtMost(u64),
}

impl BcritBound {
    /// "≳ 64 (lower bound)" or "≲ 8 (upper bound)".
    pub fn describe(&self) -> String {
        match self {
            BcritBound::AtLeast(b) => format!("≳ {b} (lower bound)"),
            BcritBound::AtMost(b) => format!("≲ {b} (upper bound)"),
        }
    }
}

impl TargetFit {
    /// A table's S_min, B_crit, B_crit interval and E_min cells, drawn with the table's own
    /// formatters (`value` and `e_min` take a value and its standard error): where B_crit is a
    /// bound it shows the bound, no interval, and "—" for whichever of S_min and E_min the data
    /// do not determine.
    pub fn cells(
        &self,
        value: impl Fn(f64, Option<f64>) -> String,
        e_min: impl Fn(f64, Option<f64>) -> String,
        interval: impl Fn(&Option<Interval>) -> String,
    ) -> [String; 4] {
        let dash = || "—".to_string();
        let bound = self.b_crit_bound();
        // Far beyond the grid (S ∝ 1/B throughout) only E_min = S_min·B_crit is determined;
        // far below it (S flat) only S_min.
        [
            if !matches!(bound, Some(BcritBound::AtLeast(_))) {
                value(self.s_min, self.s_min_se)
            } else {
                dash()
            },
            bound.map_or_else(|| value(self.b_crit, self.b_crit_se), |b| b.describe()),
            if bound.is_some() {
                dash()
            } else {
                interval(&self.b_crit_interval)
            },
            if !matches!(bound, Some(BcritBound::AtMost(_))) {
                e_min(self.e_min, self.e_min_se)
            } else {
                dash()
            },
        ]
    }

    /// `Some` when B_crit is more than ten times beyond the batch sizes of the fit.
    pub fn b_crit_bound(&self) -> Option<BcritBound> {
        let lo = self.points.iter().map(|p| p.batch_size).min()?;
        let hi = self.points.iter().map(|p| p.batch_size).max()?;
        if self.b_crit > hi as f64 * 10.0 {
            Some(BcritBound::AtLeast(hi))
        } else if self.b_crit < lo as f64 / 10.0 {
            Some(BcritBound::AtMost(lo))
        } else {
            None
        }
    }
}

/// A target (or N) that could not be fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedTarget {
    pub train_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    pub reason: String,
}

/// Where one training-set size's automatic targets lie: `AUTO_FRACTIONS` of the way from
/// `first_evaluated` to `top`. Everything between `initial` and `first_evaluated` some run
/// reached inside its first evaluation interval, where its steps are unknown, so automatic
/// targets describe only the rest of the progress ([`AutoRange::measurable`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoRange {
    pub train_size: u64,
    /// The runs' median value at initialisation (step 0), if evaluated there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<f64>,
    /// The best value any run had at its first evaluation after initialisation.
    pub first_evaluated: f64,
    /// The best value that at least `MIN_B` batch sizes reach.
    pub top: f64,
}

impl AutoRange {
    /// The share of the progress from initialisation to `top` that lies beyond every run's
    /// first evaluation: the part automatic targets can measure (`None` without a step-0
    /// value, or if `top` is no better than it).
    pub fn measurable(&self) -> Option<f64> {
        let initial = self.initial?;
        let whole = self.top - initial;
        (whole != 0.0 && whole.is_finite())
            .then(|| ((self.top - self.first_evaluated) / whole).clamp(0.0, 1.0))
    }

    /// One sentence on where the targets lie, with the values drawn by `value`.
    pub fn describe(&self, value: impl Fn(f64) -> String) -> String {
        let mut s = format!(
            "N = {}: automatic targets lie between {} (the best value any run had at its first \
             evaluation) and {} (the best that {MIN_B} batch sizes reach)",
            self.train_size,
            value(self.first_evaluated),
            value(self.top)
        );
        if let (Some(initial), Some(share)) = (self.initial, self.measurable()) {
            s.push_str(&format!(
                "; from {} at initialisation, that is the last {:.0}% of the progress",
                value(initial),
                100.0 * share
            ));
            if share < 0.5 {
                s.push_str(
                    ": earlier values are reached inside the first epoch, where steps are \
                     unknown, so these B_crit describe late training (a lower --target leaves \
                     out the batch sizes that reach it in their first epoch)",
                );
            }
        }
        s
    }
}

/// The efficiency section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EfficiencySection {
    pub targets_auto: bool,
    pub smoothing: String,
    pub fits: Vec<TargetFit>,
    pub skipped: Vec<SkippedTarget>,
    /// Where the automatic targets lie, per N (empty when targets were given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_ranges: Vec<AutoRange>,
}

/// Finite (epoch, step, samples, running best) of a curve, in epoch order.
fn smoothed(curve: &[EpochPoint], metric: MetricKind) -> Vec<(u32, f64, f64, f64)> {
    let mut pts: Vec<&EpochPoint> = curve
        .iter()
        .filter(|p| p.value.is_some_and(f64::is_finite))
        .collect();
    pts.sort_by_key(|p| p.epoch);
    let mut best: Option<f64> = None;
    pts.into_iter()
        .filter_map(|p| {
            let v = p.value?;
            let b = best.map_or(v, |b| metric.best_of(b, v));
            best = Some(b);
            Some((p.epoch, p.step as f64, p.samples as f64, b))
        })
        .collect()
}

/// Where a curve first reaches a target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Crossing {
    /// (steps, examples), interpolated linearly between the bracketing evaluations.
    At(f64, f64),
    /// Reached at the first evaluation, or between initialisation (step 0) and the next
    /// evaluation: the steps are unknown (at most that evaluation's).
    Censored,
    /// Never reached (or not computable).
    Never,
}

/// Where the smoothed curve first reaches `target` (see [`Crossing`] and the module docs).
pub(crate) fn crossing(curve: &[EpochPoint], target: f64, metric: MetricKind) -> Crossing {
    let reached = |v: f64| {
        if metric.higher_is_better() {
            v >= target
        } else {
            v <= target
        }
    };
    let s = smoothed(curve, metric);
    let Some(k) = s.iter().position(|p| reached(p.3)) else {
        return Crossing::Never;
    };
    // At the first evaluation, or right after initialisation: the steps are unknown.
    let Some(&a) = k.checked_sub(1).map(|i| &s[i]).filter(|a| a.1 > 0.0) else {
        return Crossing::Censored;
    };
    let b = s[k];
    let frac = (target - a.3) / (b.3 - a.3);
    let steps = a.1 + frac * (b.1 - a.1);
    let examples = a.2 + frac * (b.2 - a.2);
    match (finite(steps), finite(examples)) {
        (Some(st), Some(ex)) if st > 0.0 && ex > 0.0 => Crossing::At(st, ex),
        _ => Crossing::Never,
    }
}

/// Fits S(B) = S_min(1 + B_crit/B) to (B, S) on ln S; returns (θ, fit).
pub(crate) fn fit_hyperbola(b: &[f64], s: &[f64]) -> Option<nls::NlsFit> {
    let n = b.len();
    let ln_s: Vec<f64> = s.iter().map(|v| v.ln()).collect();
    let model = |t: &[f64]| -> Option<(Vec<f64>, DMatrix<f64>)> {
        let bc = t[1].exp();
        let r = (0..n)
            .map(|i| t[0] + (1.0 + bc / b[i]).ln() - ln_s[i])
            .collect::<Vec<_>>();
        let j = DMatrix::from_fn(n, 2, |i, k| if k == 0 { 1.0 } else { bc / (b[i] + bc) });
        (r.iter().all(|v| v.is_finite()) && j.iter().all(|v| v.is_finite())).then_some((r, j))
    };
    // Start from the best ln B_crit on a grid from B_min/100 to 100·B_max, with ln S_min in
    // closed form for each (the mean residual).
    let (lo, hi) = (
        b.iter().copied().fold(f64::INFINITY, f64::min),
        b.iter().copied().fold(0.0, f64::max),
    );
    let (l0, l1) = ((lo / 100.0).ln(), (hi * 100.0).ln());
    let mut start = None;
    for g in 0..=200 {
        let lbc = l0 + (l1 - l0) * g as f64 / 200.0;
        let bc = lbc.exp();
        let c = (0..n)
            .map(|i| ln_s[i] - (1.0 + bc / b[i]).ln())
            .sum::<f64>()
            / n as f64;
        let rss: f64 = (0..n)
            .map(|i| (c + (1.0 + bc / b[i]).ln() - ln_s[i]).powi(2))
            .sum();
        if rss.is_finite() && start.is_none_or(|(r, _, _)| rss < r) {
            start = Some((rss, c, lbc));
        }
    }
    let (_, c, lbc) = start?;
    nls::fit(&[c, lbc], &model)
}

/// The target fit from the fastest run per batch size.
fn fit_target(
    n_train: u64,
    target: f64,
    runs: &[&RunInput],
    metric: MetricKind,
    level: f64,
) -> Result<TargetFit, String> {
    // batch size → (steps, examples, run)
    let mut fastest: BTreeMap<u64, (f64, f64, &RunInput)> = BTreeMap::new();
    // Batch sizes whose fastest run reached the target in its first interval: S unknown.
    let mut censored = std::collections::BTreeSet::new();
    for r in runs {
        let (s, e) = match crossing(&r.curve, target, metric) {
            Crossing::At(s, e) => (s, e),
            Crossing::Censored => {
                censored.insert(r.batch_size);
                continue;
            }
            Crossing::Never => continue,
        };
        let slot = fastest.entry(r.batch_size).or_insert((s, e, r));
        if s < slot.0 {
            *slot = (s, e, r);
        }
    }
    fastest.retain(|b, _| !censored.contains(b));
    let censored_note = (!censored.is_empty()).then(|| {
        format!(
            "{} batch size(s) ({}) left out: a run reached the target before its first \
             evaluation after initialisation, so its steps are unknown",
            censored.len(),
            censored
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    if fastest.len() < MIN_B {
        return Err(format!(
            "{} batch size(s) reach the target: S(B) needs at least {MIN_B}{}",
            fastest.len(),
            censored_note
                .as_ref()
                .map_or(String::new(), |n| format!(" ({n})"))
        ));
    }
    let b: Vec<f64> = fastest.keys().map(|&b| b as f64).collect();
    let s: Vec<f64> = fastest.values().map(|v| v.0).collect();
    let fit = fit_hyperbola(&b, &s).ok_or("the Levenberg–Marquardt fit failed")?;
    let (s_min, b_crit) = (fit.theta[0].exp(), fit.theta[1].exp());
    let (s_min, b_crit) = (
        finite(s_min).ok_or("S_min is not finite")?,
        finite(b_crit).ok_or("B_crit is not finite")?,
    );
    let se = fit.std_errors.clone();
    let t = t_quantile(0.5 + level / 2.0, fit.dof as f64);
    let b_crit_interval = se.as_ref().zip(t).and_then(|(se, t)| {
        Some(Interval {
            lo: finite((fit.theta[1] - t * se[1]).exp())?,
            hi: finite((fit.theta[1] + t * se[1]).exp())?,
            level,
        })
    });
    let points = fastest
        .iter()
        .map(|(&bs, &(steps, examples, r))| {
            let slope = -b_crit / (bs as f64 + b_crit);
            EfficiencyPoint {
                batch_size: bs,
                run_id: r.run_id.clone(),
                lr: r.lr,
                steps,
                examples,
                fitted_steps: s_min * (1.0 + b_crit / bs as f64),
                slope,
                regime: Regime::of_slope(slope),
            }
        })
        .collect();
    let mut target_fit = TargetFit {
        train_size: n_train,
        target,
        s_min,
        s_min_se: se.as_ref().and_then(|v| finite(s_min * v[0])),
        b_crit,
        b_crit_se: se.as_ref().and_then(|v| finite(b_crit * v[1])),
        b_crit_interval,
        e_min: finite(b_crit * s_min).ok_or("E_min is not finite")?,
        e_min_se: fit.cov.as_ref().and_then(|c| {
            let var = c[(0, 0)] + c[(1, 1)] + 2.0 * c[(0, 1)];
            finite(b_crit * s_min * var.max(0.0).sqrt())
        }),
        dof: fit.dof,
        rms_log_residual: (fit.rss / b.len() as f64).sqrt(),
        points,
        note: None,
    };
    let bound_note = target_fit.b_crit_bound().map(|bound| match bound {
        BcritBound::AtLeast(hi) => format!(
            "S falls almost as 1/B over the whole grid: B_crit is beyond the batch sizes measured \
             (a lower bound, ≳ {hi})"
        ),
        BcritBound::AtMost(lo) => format!(
            "S barely changes over the grid: B_crit is below the batch sizes measured \
             (an upper bound, ≲ {lo})"
        ),
    });
    target_fit.note = match (bound_note, censored_note) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    Ok(target_fit)
}

/// The axes other than ε, m and g in which one task's runs (one N) differ, from their cells'
/// labels ("hidden=[64] lr=0.01"): the fastest run at a batch size is taken over all of them,
/// as McCandlish et al. take it over ε and m, so the fit pools whatever else the sweep varied
/// (a model, a data set, weight decay). Says which, or `None`.
fn pooled_axes(runs: &[&RunInput]) -> Option<String> {
    let mut values: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for r in runs {
        for (key, value) in super::pooled_axis_pairs(&r.cell) {
            values.entry(key).or_default().insert(value);
        }
    }
    let pooled: Vec<&str> = values
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(&k, _)| k)
        .collect();
    (!pooled.is_empty()).then(|| {
        format!(
            "the fastest run at each B is taken over runs that differ in {} as well as in ε and \
             m: fit a sweep per {} value to keep them apart",
            pooled.join(", "),
            pooled.join("/")
        )
    })
}

/// Automatic targets for one task (see `AUTO_FRACTIONS`), and where they lie.
fn auto_targets(
    train_size: u64,
    runs: &[&RunInput],
    metric: MetricKind,
) -> Result<(Vec<f64>, AutoRange), String> {
    let mut best_per_b: BTreeMap<u64, f64> = BTreeMap::new();
    let mut initial: Vec<f64> = Vec::new();
    // The best value any run had at its first evaluation after initialisation: a target no
    // better than it is reached in some run's first interval, where its steps are unknown.
    let mut first_trained: Option<f64> = None;
    for r in runs {
        let s = smoothed(&r.curve, metric);
        if let Some(last) = s.last() {
            let e = best_per_b.entry(r.batch_size).or_insert(last.3);
            *e = metric.best_of(*e, last.3);
        }
        if let Some(p) = s.iter().find(|p| p.1 > 0.0) {
            first_trained = Some(first_trained.map_or(p.3, |b| metric.best_of(b, p.3)));
        }
        if let Some(p) = s.first().filter(|p| p.1 == 0.0) {
            initial.push(p.3);
        }
    }
    if best_per_b.len() < MIN_B {
        return Err(format!(
            "{} batch size(s) with values: S(B) needs at least {MIN_B}",
            best_per_b.len()
        ));
    }
    let mut bests: Vec<f64> = best_per_b.into_values().collect();
    bests.sort_by(|a, b| {
        if metric.higher_is_better() {
            b.total_cmp(a)
        } else {
            a.total_cmp(b)
        }
    });
    let top = bests[MIN_B - 1];
    let start = first_trained.ok_or("no evaluation after initialisation")?;
    if !metric.better(top, start) {
        return Err(format!(
            "no target to fit: {MIN_B} batch sizes do not get beyond the best value after the \
             first evaluation ({start:.4}), so any target they reach some run reached in its \
             first interval, where its steps are unknown (give --target)"
        ));
    }
    let targets = AUTO_FRACTIONS
        .iter()
        .map(|f| start + f * (top - start))
        .collect();
    Ok((
        targets,
        AutoRange {
            train_size,
            initial: median(&initial),
            first_evaluated: start,
            top,
        },
    ))
}

/// Steps-to-target fits, per N and target.
pub(crate) fn fit_efficiency(ctx: &Ctx) -> Outcome<EfficiencySection> {
    let metric = ctx.metric();
    let mut tasks: BTreeMap<u64, Vec<&RunInput>> = BTreeMap::new();
    for r in &ctx.runs {
        if r.schedule == "constant" && r.batch_size > 0 {
            tasks.entry(r.train_size).or_default().push(r);
        }
    }
    if tasks.is_empty() {
        return Outcome::skipped(if ctx.runs.is_empty() {
            "no runs to fit"
        } else {
            "no constant-schedule runs: steps-to-target needs one batch size per run"
        });
    }
    let mut fits = Vec::new();
    let mut skipped = Vec::new();
    let mut auto_ranges = Vec::new();
    for (&n, runs) in &tasks {
        let targets = match &ctx.opts.targets {
            Some(t) => t.clone(),
            None => match auto_targets(n, runs, metric) {
                Ok((t, range)) => {
                    auto_ranges.push(range);
                    t
                }
                Err(reason) => {
                    skipped.push(SkippedTarget {
                        train_size: n,
                        target: None,
                        reason,
                    });
                    continue;
                }
            },
        };
        let pooled = pooled_axes(runs);
        for target in targets {
            match fit_target(n, target, runs, metric, ctx.opts.confidence) {
                Ok(mut f) => {
                    if let Some(p) = &pooled {
                        f.note = Some(match f.note.take() {
                            Some(n) => format!("{n}; {p}"),
                            None => p.clone(),
                        });
                    }
                    fits.push(f)
                }
                Err(reason) => skipped.push(SkippedTarget {
                    train_size: n,
                    target: Some(target),
                    reason,
                }),
            }
        }
    }
    if fits.is_empty() {
        let first = skipped
            .first()
            .map_or(String::new(), |s| format!(" ({})", s.reason));
        return Outcome::skipped(format!(
            "no target is reached by {MIN_B} batch sizes{first}"
        ));
    }
    Outcome::Fitted(EfficiencySection {
        targets_auto: ctx.opts.targets.is_none(),
        smoothing: format!(
            "running {} of each curve; steps and examples interpolated linearly between the \
             bracketing evaluations",
            if metric.higher_is_better() {
                "max"
            } else {
                "min"
            }
        ),
        fits,
        skipped,
        auto_ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::{Gauss, assert_json_finite, flat_run};
    use crate::fit::{FitOptions, fit_all};

    /// A run whose accuracy rises linearly in steps from 0.1 and crosses 0.5 at step `s`.
    fn linear_run(b: u64, lr: f64, s: f64, id: &str) -> RunInput {
        let n = 50_000u64;
        let per_epoch = n.div_ceil(b);
        let epochs = ((2.0 * s) / per_epoch as f64).ceil() as u32 + 1;
        RunInput {
            instruments: Default::default(),
            run_id: id.into(),
            cell: format!("lr{lr}"),
            schedule_group: "g".into(),
            lr,
            batch_size: b,
            max_batch_size: None,
            noise_scale: None,
            momentum: 0.0,
            train_size: n,
            test_size: 10_000,
            classes: 10,
            seed: 0,
            schedule: "constant".into(),
            diverged: false,
            steps: per_epoch * epochs as u64,
            curve: (0..=epochs)
                .map(|e| {
                    let step = per_epoch * e as u64;
                    EpochPoint {
                        epoch: e,
                        step,
                        samples: step * b,
                        value: Some((0.1 + 0.4 * step as f64 / s).min(0.99)),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn closed_form_steps_recover_b_crit_within_two_standard_errors() {
        // S(B) = 1000·(1 + 256/B)·exp(0.05 z), B = 8 … 4096; a slower lr (1.5 S) at every B.
        let (s_min, b_crit) = (1000.0, 256.0);
        let mut g = Gauss::new(5);
        let mut runs = Vec::new();
        for k in 3..=12 {
            let b = 1u64 << k;
            let s = s_min * (1.0 + b_crit / b as f64) * (0.05 * g.next()).exp();
            runs.push(linear_run(b, 0.1, s, &format!("fast{b}")));
            runs.push(linear_run(b, 0.01, 1.5 * s, &format!("slow{b}")));
        }
        let opts = FitOptions {
            targets: Some(vec![0.5]),
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        let e = rep.efficiency.fitted().unwrap();
        let f = &e.fits[0];
        let se = f.b_crit_se.unwrap();
        assert!(
            (f.b_crit - b_crit).abs() < 2.0 * se,
            "B_crit {} ± {se}",
            f.b_crit
        );
        assert!(
            (f.s_min - s_min).abs() < 2.0 * f.s_min_se.unwrap(),
            "S_min {}",
            f.s_min
        );
        assert!(f.points.iter().all(|p| p.run_id.starts_with("fast")));
        assert_eq!(f.points[0].regime, Regime::PerfectScaling); // B = 8 ≪ 256
        assert_eq!(f.points[9].regime, Regime::MaximalParallelism); // B = 4096
        assert!((f.e_min - f.b_crit * f.s_min).abs() < 1e-6 * f.e_min);
        assert_json_finite(&rep);
    }

    /// E_min's standard error is the delta method on ln E_min = θ₀ + θ₁ (ln S_min + ln B_crit),
    /// whose two estimates are strongly anti-correlated. Checked against the spread of ln E_min
    /// over 400 noisy data sets drawn from one planted hyperbola: the stated error must match
    /// it (0.0264 against a spread of 0.0271; 0.94–1.01 of it with seeds 1–4). Dropping
    /// the covariance, or adding it with the wrong sign, gives an error 2.0 and 2.7 times too
    /// large here (measured on the same data sets).
    #[test]
    fn e_min_standard_error_matches_the_spread_over_replicated_data_sets() {
        let (s_min, b_crit, sigma) = (1000.0, 256.0, 0.05);
        let mut g = Gauss::new(11);
        let (mut ln_e, mut rel_se, mut rel_no_cov, mut rel_flipped) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..400 {
            let runs: Vec<RunInput> = (3..=12)
                .map(|k| {
                    let b = 1u64 << k;
                    let s = s_min * (1.0 + b_crit / b as f64) * (sigma * g.next()).exp();
                    linear_run(b, 0.1, s, &format!("r{b}"))
                })
                .collect();
            let refs: Vec<&RunInput> = runs.iter().collect();
            let f = fit_target(50_000, 0.5, &refs, MetricKind::TestAcc, 0.95).unwrap();
            ln_e.push(f.e_min.ln());
            rel_se.push(f.e_min_se.unwrap() / f.e_min);
            // The same fit's covariance, combined the two wrong ways.
            let b: Vec<f64> = f.points.iter().map(|p| p.batch_size as f64).collect();
            let s: Vec<f64> = f.points.iter().map(|p| p.steps).collect();
            let c = fit_hyperbola(&b, &s).unwrap().cov.unwrap();
            rel_no_cov.push((c[(0, 0)] + c[(1, 1)]).sqrt());
            rel_flipped.push((c[(0, 0)] + c[(1, 1)] - 2.0 * c[(0, 1)]).sqrt());
        }
        let mean = ln_e.iter().sum::<f64>() / ln_e.len() as f64;
        let spread =
            (ln_e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (ln_e.len() - 1) as f64).sqrt();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (stated, no_cov, flipped) = (
            median(&mut rel_se),
            median(&mut rel_no_cov),
            median(&mut rel_flipped),
        );
        assert!(
            (stated / spread - 1.0).abs() < 0.15,
            "stated relative error {stated:.4}, spread of ln E_min {spread:.4}"
        );
        // The wrong combinations are far outside that tolerance: the test can tell them apart.
        assert!(no_cov / spread > 1.5, "{no_cov:.4} vs {spread:.4}");
        assert!(flipped / spread > 2.0, "{flipped:.4} vs {spread:.4}");
        // And the planted E_min = 256,000 is recovered on average.
        assert!(
            (mean - (s_min * b_crit).ln()).abs() < 0.02,
            "{}",
            mean.exp()
        );
    }

    /// Regression: runs of two models at one N were pooled without a word (the regression
    /// said so of its cells, the efficiency fit did not). Pooling over ε and m, as the paper
    /// does, still goes without a note.
    #[test]
    fn a_task_pooled_over_another_axis_says_which() {
        let mut runs = Vec::new();
        for k in 3..=8 {
            let b = 1u64 << k;
            for (hidden, lr, slow) in [("[64]", 0.1, 1.0), ("[64]", 0.01, 1.5), ("[128]", 0.1, 2.0)]
            {
                let mut r = linear_run(b, lr, slow * 1000.0 * (1.0 + 64.0 / b as f64), "r");
                r.run_id = format!("{hidden}/{lr}/{b}");
                r.cell = format!("hidden={hidden} lr={lr}");
                runs.push(r);
            }
        }
        let opts = FitOptions {
            targets: Some(vec![0.5]),
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        let note = rep.efficiency.fitted().unwrap().fits[0].note.clone();
        let note = note.unwrap_or_default();
        assert!(
            note.contains("differ in hidden as well as in ε and m"),
            "{note}"
        );
        // One model: only ε varies, and the note is not there.
        runs.retain(|r| r.cell.starts_with("hidden=[64]"));
        let rep = fit_all(&runs, &opts);
        let note = rep.efficiency.fitted().unwrap().fits[0].note.clone();
        assert!(
            note.as_deref().is_none_or(|n| !n.contains("differ in")),
            "{note:?}"
        );
    }

    /// Steps that halve with every doubling of B over the whole grid put B_crit far beyond it:
    /// the fit's extrapolated value is not shown, its bound is.
    #[test]
    fn a_b_crit_far_beyond_the_grid_is_shown_as_a_bound() {
        let runs: Vec<_> = (2..=6)
            .map(|k| {
                let b = 1u64 << k;
                linear_run(b, 0.1, 64_000.0 / b as f64, &format!("r{b}"))
            })
            .collect();
        let opts = FitOptions {
            targets: Some(vec![0.5]),
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        let f = &rep.efficiency.fitted().unwrap().fits[0];
        assert!(f.b_crit > 640.0, "{}", f.b_crit);
        assert_eq!(f.b_crit_bound(), Some(BcritBound::AtLeast(64)));
        let text = crate::fit::table::render_tables(&rep);
        assert!(text.contains("≳ 64 (lower bound)"), "{text}");
        assert!(!text.contains(&crate::fit::table::num(f.b_crit)), "{text}");
        // S_min alone is not pinned down there either; E_min = S_min·B_crit is.
        assert!(!text.contains(&crate::fit::table::num(f.s_min)), "{text}");
        assert!(text.contains(&crate::fit::table::num(f.e_min)), "{text}");
        // Inside the grid there is no bound.
        let mut inside = f.clone();
        inside.b_crit = 30.0;
        assert_eq!(inside.b_crit_bound(), None);
        inside.b_crit = 0.3;
        assert_eq!(inside.b_crit_bound(), Some(BcritBound::AtMost(4)));
    }

    #[test]
    fn exact_hyperbola_is_recovered_exactly_and_auto_targets_fit() {
        let runs: Vec<_> = (3..=12)
            .map(|k| {
                let b = 1u64 << k;
                linear_run(b, 0.1, 500.0 * (1.0 + 100.0 / b as f64), &format!("r{b}"))
            })
            .collect();
        let opts = FitOptions {
            targets: Some(vec![0.5]),
            ..FitOptions::default()
        };
        let f = &fit_all(&runs, &opts).efficiency.fitted().unwrap().fits[0].clone();
        assert!((f.b_crit - 100.0).abs() < 1e-6, "{}", f.b_crit);
        assert!((f.s_min - 500.0).abs() < 1e-6, "{}", f.s_min);
        let auto = fit_all(&runs, &FitOptions::default());
        let e = auto.efficiency.fitted().unwrap();
        assert!(e.targets_auto);
        assert_eq!(e.fits.len(), 3);
    }

    #[test]
    fn crossing_interpolates_and_censors_the_first_evaluation() {
        let c = |vals: &[(u32, u64, f64)]| -> Vec<EpochPoint> {
            vals.iter()
                .map(|&(e, s, v)| EpochPoint {
                    epoch: e,
                    step: s,
                    samples: 10 * s,
                    value: Some(v),
                })
                .collect()
        };
        let acc = MetricKind::TestAcc;
        // 0.2 → 0.6 between steps 100 and 200: 0.5 is reached at 175; the dip at epoch 3 is
        // smoothed away by the running max.
        let curve = c(&[(0, 0, 0.1), (1, 100, 0.2), (2, 200, 0.6), (3, 300, 0.3)]);
        assert_eq!(crossing(&curve, 0.5, acc), Crossing::At(175.0, 1750.0));
        assert_eq!(crossing(&curve, 0.7, acc), Crossing::Never);
        // Reached at the first evaluation (no epoch 0): unknown.
        assert_eq!(crossing(&c(&[(1, 100, 0.9)]), 0.5, acc), Crossing::Censored);
        // Reached between initialisation and the first evaluation after it: unknown (at most
        // 100 steps), not the 62.5 a straight line from step 0 would say.
        assert_eq!(crossing(&curve, 0.15, acc), Crossing::Censored);
        // Losses go down.
        let loss = c(&[(0, 0, 2.3), (1, 100, 1.3), (2, 200, 0.3)]);
        assert_eq!(
            crossing(&loss, 0.8, MetricKind::TestLoss),
            Crossing::At(150.0, 1500.0)
        );
    }

    /// Noisy quadratic model (Zhang et al. 2019, arXiv 1907.04164; docs/science.md §6): h_i = 1/i,
    /// gradient-noise covariance C = H/B, so E[w_i²] evolves in closed form:
    /// m_i ← (1 − ε h_i)² m_i + ε² h_i/B, and E[L] = ½ Σ h_i m_i. Steps to `target` (linearly
    /// interpolated between steps), or None.
    fn nqm_steps(b: f64, lr: f64, target: f64, d: usize, max_steps: usize) -> Option<f64> {
        let h: Vec<f64> = (1..=d).map(|i| 1.0 / i as f64).collect();
        let mut m = vec![1.0; d];
        let loss = |m: &[f64]| 0.5 * h.iter().zip(m).map(|(h, m)| h * m).sum::<f64>();
        let mut prev = loss(&m);
        for t in 1..=max_steps {
            for (mi, hi) in m.iter_mut().zip(&h) {
                *mi = (1.0 - lr * hi).powi(2) * *mi + lr * lr * hi / b;
            }
            let l = loss(&m);
            if l <= target {
                return Some((t - 1) as f64 + (prev - target) / (prev - l));
            }
            // Diverging, or stuck on a noise floor above the target.
            if l.is_nan() || l >= 1e6 || prev - l < 1e-12 * l {
                return None;
            }
            prev = l;
        }
        None
    }

    /// The NQM's steps to target at batch size b with the learning rate tuned on a 2^(k/4) grid.
    fn nqm_best(b: f64, target: f64) -> Option<f64> {
        (-48..=4)
            .filter_map(|k| nqm_steps(b, 2f64.powf(k as f64 / 4.0), target, 20, 200_000))
            .reduce(f64::min)
    }

    /// The NQM's expected loss after every step (0 … at most `steps`), stopping if it diverges.
    fn nqm_losses(b: f64, lr: f64, steps: usize) -> Vec<f64> {
        let h: Vec<f64> = (1..=20).map(|i| 1.0 / i as f64).collect();
        let mut m = vec![1.0; 20];
        let loss = |m: &[f64]| 0.5 * h.iter().zip(m).map(|(h, m)| h * m).sum::<f64>();
        let mut out = vec![loss(&m)];
        for _ in 0..steps {
            for (mi, hi) in m.iter_mut().zip(&h) {
                *mi = (1.0 - lr * hi).powi(2) * *mi + lr * lr * hi / b;
            }
            out.push(loss(&m));
            if !out[out.len() - 1].is_finite() || out[out.len() - 1] > 1e6 {
                break;
            }
        }
        out
    }

    /// The NQM evaluated once per epoch of N = 1,024 examples, as a sweep would, ε tuned per B:
    /// at small B the target is crossed within the first epoch, where a straight line from
    /// step 0 put S far too late — B_crit came out 208 (interval 143–301) against the per-step
    /// truth of 40. Those batch sizes are now left out, and said to be; the fit on the rest
    /// (B ≥ 8, mostly past B_crit, so its interval is wide: 8–430 around 60) must hold the
    /// truth, within a factor 2.
    #[test]
    fn crossings_in_the_first_epoch_are_left_out() {
        let target = 0.1;
        let bs: Vec<u64> = (0..=10).map(|k| 1u64 << k).collect();
        let lrs: Vec<f64> = (-48..=4).map(|k| 2f64.powf(k as f64 / 4.0)).collect();
        let truth_s: Vec<f64> = bs
            .iter()
            .map(|&b| nqm_best(b as f64, target).unwrap())
            .collect();
        let bf: Vec<f64> = bs.iter().map(|&b| b as f64).collect();
        let truth = fit_hyperbola(&bf, &truth_s).unwrap().theta[1].exp();
        let n = 1024u64;
        let mut runs = Vec::new();
        for &b in &bs {
            for &lr in &lrs {
                let per = n.div_ceil(b);
                let l = nqm_losses(b as f64, lr, 20_000);
                let epochs = ((l.len() - 1) as u64 / per) as u32;
                if epochs == 0 {
                    continue;
                }
                let mut r = flat_run("c", lr, n, 0.0, b, 0, 0.0, epochs);
                r.run_id = format!("B{b}/lr{lr}");
                r.cell = format!("lr{lr}");
                for p in r.curve.iter_mut() {
                    let st = per * p.epoch as u64;
                    p.step = st;
                    p.samples = st * b;
                    p.value = Some(l[st as usize]);
                }
                runs.push(r);
            }
        }
        let opts = FitOptions {
            metric: MetricKind::TestLoss,
            targets: Some(vec![target]),
            bootstrap: 0,
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        let f = &rep.efficiency.fitted().unwrap().fits[0];
        let iv = f.b_crit_interval.unwrap();
        assert!(
            iv.lo <= truth && truth <= iv.hi && (f.b_crit / truth).ln().abs() < 2f64.ln(),
            "B_crit {} {iv:?} against the per-step truth {truth}",
            f.b_crit
        );
        let note = f.note.as_deref().unwrap_or_default();
        assert!(note.contains("left out"), "{note}");
        assert!(f.points.iter().all(|p| p.batch_size >= 8), "{:?}", f.points);
        // Automatic targets lie beyond every run's first evaluation: nothing is left out.
        let auto = fit_all(
            &runs,
            &FitOptions {
                metric: MetricKind::TestLoss,
                bootstrap: 0,
                ..FitOptions::default()
            },
        );
        let sec = auto.efficiency.fitted().unwrap();
        for f in &sec.fits {
            assert!(
                f.note.as_deref().is_none_or(|n| !n.contains("left out")),
                "{f:?}"
            );
        }
        // ...and so lie late in training: the loss falls from E[L0] = ½·H_20 ≈ 1.80 (the median
        // run at step 0) to about 0.02, and 1.7% of that is beyond the first epoch. The fit says so.
        let [range] = sec.auto_ranges[..] else {
            panic!("{:?}", sec.auto_ranges)
        };
        assert_eq!(range.train_size, n);
        let h20: f64 = (1..=20).map(|i| 1.0 / f64::from(i)).sum();
        assert!(
            (range.initial.unwrap() - h20 / 2.0).abs() < 1e-9,
            "{range:?}"
        );
        let share = range.measurable().unwrap();
        assert!(share > 0.005 && share < 0.05, "{share} {range:?}");
        let text = crate::fit::table::render_tables(&auto);
        assert!(
            text.contains(&format!("the last {:.0}% of the progress", 100.0 * share))
                && text.contains("describe late training"),
            "{text}"
        );
        // Given targets have no automatic range.
        assert!(rep.efficiency.fitted().unwrap().auto_ranges.is_empty());
    }

    #[test]
    fn noisy_quadratic_model_follows_the_hyperbola_and_its_asymptotes() {
        // NQM with d = 20, E[L0] = ½·H_20 ≈ 1.80, target E[L] = 0.1, B = 1/16 … 1024 (B only
        // scales the noise here, so fractional B is allowed). Ground truth from the model's own
        // asymptotes: S_min = S(B → ∞) (B = 1e9) and E_min = lim B·S(B) as B → 0 (B = 0.01),
        // B_crit = E_min/S_min (McCandlish et al. 2018 §2.2). The NQM is not exactly hyperbolic,
        // so the fit is checked against those to 10% (measured when this test was written:
        // fitted B_crit 41.1, asymptotic 39.3; S_min 5.73 vs 6.10; rms log residual 0.032).
        let target = 0.1;
        let bs: Vec<f64> = (-4..=10).map(|k| 2f64.powi(k)).collect();
        let s: Vec<f64> = bs.iter().map(|&b| nqm_best(b, target).unwrap()).collect();
        assert!(
            s.windows(2).all(|w| w[1] < w[0]),
            "S(B) must fall with B: {s:?}"
        );
        let f = fit_hyperbola(&bs, &s).unwrap();
        let (s_min, b_crit) = (f.theta[0].exp(), f.theta[1].exp());
        let s_inf = nqm_best(1e9, target).unwrap();
        let e_min = 0.01 * nqm_best(0.01, target).unwrap();
        let truth = e_min / s_inf;
        assert!(
            (b_crit / truth).ln().abs() < 0.1,
            "B_crit {b_crit} vs E_min/S_min {truth}"
        );
        assert!((s_min / s_inf).ln().abs() < 0.1, "S_min {s_min} vs {s_inf}");
        assert!((f.rss / bs.len() as f64).sqrt() < 0.05, "rms log residual");
        let slope = |b: f64| -b_crit / (b + b_crit);
        assert_eq!(Regime::of_slope(slope(bs[0])), Regime::PerfectScaling);
        assert_eq!(Regime::of_slope(slope(bs[14])), Regime::MaximalParallelism);
    }
}
