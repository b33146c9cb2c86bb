//! Scaling-law fits: pure functions from stored runs to a [`FitReport`].
//!
//! Every estimator here is a pure function of [`RunInput`]s (no database, no I/O), so each is
//! unit-tested against a planted ground truth (docs/science.md §6). The formulas and their
//! sources are cited next to the code; `docs/fits.md` explains each estimator for a reviewer.
//!
//! Data flow: [`fit_all`] deduplicates the runs, reduces each run's curve to one number
//! ([`select_value`]), then hands the same selection to every estimator. An estimator that
//! cannot run on the data returns [`Outcome::Skipped`] with one human sentence; none of them panics, and no
//! NaN or infinity reaches the report (JSON cannot hold them).

mod bopt;
mod bound;
mod collapse;
#[cfg(test)]
mod degenerate;
mod efficiency;
mod input;
mod instruments;
mod learning_curve;
mod learning_points;
mod nls;
mod profile;
mod regression;
mod schedules;
mod select;
mod stats;
mod table;
#[cfg(test)]
pub(crate) mod testdata;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub use bopt::{BatchPoint, BoptSection, CellBopt, MAX_BOOTSTRAP, MIN_BOOTSTRAP, SkippedItem};
pub use bound::ValidationBound;
pub use collapse::{CollapseMean, CollapsePoint, CollapseSection, CurvePoint, SmoothFit};
pub use efficiency::{
    AutoRange, BcritBound, EfficiencyPoint, EfficiencySection, Regime, SkippedTarget, TargetFit,
};
pub use input::{EpochPoint, FitOptions, MetricKind, ParseFitError, RunInput, Select};
pub use instruments::{
    BNoiseSummary, BSimplePoint, BSimpleSeries, CurvaturePoint, CurvatureSummary, CurvedReading,
    InstrumentsSection, NoiseScaleSummary, RunInstruments, WithheldReading, spearman,
};
pub use learning_curve::{BetaInterval, LearningCurvePoint, LearningCurveSection, Region};
pub use regression::{
    Coefficient, ConstantFit, HypothesisTest, LogLinearFit, RegressionPoint, ScalingSection,
    SlopeCheck, Verdict,
};
pub use schedules::{
    EpochMean, Equivalence, LargestGap, ScheduleGroupFit, ScheduleSummary, SchedulesSection, Tost,
    TostMethod, UpdateRatio,
};
pub use select::select_value;
pub use table::render_tables;

/// A section of the report: fitted, or skipped with one human sentence saying why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome<T> {
    Fitted(T),
    Skipped { reason: String },
}

impl<T> Outcome<T> {
    /// A skipped outcome.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Outcome::Skipped {
            reason: reason.into(),
        }
    }

    /// The fitted value, if any.
    pub fn fitted(&self) -> Option<&T> {
        match self {
            Outcome::Fitted(t) => Some(t),
            Outcome::Skipped { .. } => None,
        }
    }

    /// The reason, if skipped.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Fitted(_) => None,
            Outcome::Skipped { reason } => Some(reason),
        }
    }
}

/// A two-sided interval at `level` (e.g. 0.95).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
}

/// Which edge of the grid a peak sits on: a censored optimum is only a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Censor {
    Low,
    High,
}

impl Censor {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Censor::Low => "low",
            Censor::High => "high",
        }
    }

    /// An interval of a B_opt censored on this side, open where the peak left the grid:
    /// `[lo, ∞)` when the peak sits on the largest B, `(0, hi]` on the smallest. The clamped
    /// end is only where the grid stopped, not a bound on B_opt.
    pub fn open_interval(self, i: &Interval, f: impl Fn(f64) -> String) -> String {
        match self {
            Censor::Low => format!("(0, {}]", f(i.hi)),
            Censor::High => format!("[{}, ∞)", f(i.lo)),
        }
    }

    /// g = ε(N/B − 1)/(1 − m) falls as B grows: a B_opt censored high (B_opt ≥ the edge) makes
    /// g_opt at most the value computed at the edge, one censored low at least that value.
    pub fn g_bound(self) -> &'static str {
        match self {
            Censor::Low => "≥ ",
            Censor::High => "≤ ",
        }
    }
}

/// Everything `scalelab fit` computes; the JSON that `--format json` prints and the `fits`
/// table stores. `docs/fits.md` documents the shape field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// The options actually used (after replacing out-of-range ones, see `warnings`).
    pub options: FitOptions,
    /// Runs handed in (after dropping duplicate run ids).
    pub n_runs: usize,
    /// Runs flagged DIVERGED (censored at `censor_value`).
    pub n_diverged: usize,
    /// Non-diverged runs with no finite value to select: left out of every fit.
    pub n_missing: usize,
    /// The worst finite value of the metric, at which diverged runs are censored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censor_value: Option<f64>,
    /// Problems with the input that did not stop the fits.
    pub warnings: Vec<String>,
    pub bopt: Outcome<BoptSection>,
    pub scaling: Outcome<ScalingSection>,
    pub collapse: Outcome<CollapseSection>,
    pub schedules: Outcome<SchedulesSection>,
    pub efficiency: Outcome<EfficiencySection>,
    pub learning_curve: Outcome<LearningCurveSection>,
    pub validation_bound: Outcome<ValidationBound>,
    /// The instruments' measurements (noise scale, curvature), when the sweep made any.
    #[serde(default = "no_instruments")]
    pub instruments: Outcome<InstrumentsSection>,
}

fn no_instruments() -> Outcome<InstrumentsSection> {
    Outcome::skipped("the sweep measured no instruments")
}

/// What every estimator reads: the deduplicated runs, one selected value per run, the options.
pub(crate) struct Ctx<'a> {
    pub runs: Vec<&'a RunInput>,
    /// `sel[i]` is the selected value of `runs[i]`.
    pub sel: Vec<Option<select::Selected>>,
    pub opts: FitOptions,
}

impl Ctx<'_> {
    /// Indices of the runs that have a selected value (including censored diverged runs).
    pub fn valued(&self) -> impl Iterator<Item = (usize, &RunInput, f64)> + '_ {
        self.runs
            .iter()
            .zip(&self.sel)
            .enumerate()
            .filter_map(|(i, (r, s))| s.map(|s| (i, *r, s.value)))
    }

    pub fn metric(&self) -> MetricKind {
        self.opts.metric
    }
}

/// The `axis=value` pairs of a cell label ("hidden=[64] lr=0.01", `analysis::group_labels`)
/// other than the optimiser's coordinates (ε, N, m, g) and the schedule: the axes a fit pools
/// over when its cells or runs differ in them.
pub(crate) fn pooled_axis_pairs(label: &str) -> impl Iterator<Item = (&str, &str)> {
    const OPTIMISER: [&str; 7] = ["lr", "N", "train_size", "momentum", "m", "g", "noise_scale"];
    label
        .split_whitespace()
        .filter_map(|part| part.split_once('='))
        .filter(|(k, _)| !OPTIMISER.contains(k) && !k.starts_with("schedule"))
}

/// Why a run's settings make every formula meaningless (ε ≤ 0, m outside [0, 1), B or N = 0),
/// or `None` when they are usable.
fn invalid_reason(r: &RunInput) -> Option<String> {
    if !(r.lr.is_finite() && r.lr > 0.0) {
        Some(format!("learning rate {} is not a positive number", r.lr))
    } else if !(r.momentum.is_finite() && (0.0..1.0).contains(&r.momentum)) {
        Some(format!("momentum {} is outside [0, 1)", r.momentum))
    } else if r.batch_size == 0 {
        Some("batch size 0".into())
    } else if r.train_size == 0 {
        Some("training-set size 0".into())
    } else {
        None
    }
}

/// Runs every estimator on `runs` and collects the sections. Never panics; a section that
/// cannot be fitted says why. Duplicate run ids and runs with impossible settings are dropped
/// first, with a warning each.
pub fn fit_all(runs: &[RunInput], opts: &FitOptions) -> FitReport {
    let (opts, mut warnings) = opts.sanitized();
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(runs.len());
    let mut duplicates = 0usize;
    for r in runs {
        if seen.insert(r.run_id.as_str()) {
            kept.push(r);
        } else {
            duplicates += 1;
        }
    }
    if duplicates > 0 {
        warnings.push(format!(
            "{duplicates} duplicate run id(s) ignored (the first copy of each was kept)"
        ));
    }
    let mut invalid = Vec::new();
    kept.retain(|r| match invalid_reason(r) {
        Some(why) => {
            invalid.push(format!("{}: {why}", r.run_id));
            false
        }
        None => true,
    });
    if let Some(first) = invalid.first() {
        warnings.push(format!(
            "{} run(s) with impossible settings ignored (first: {first})",
            invalid.len()
        ));
    }
    let selection = select::select_all(&kept, &opts);
    let ctx = Ctx {
        runs: kept,
        sel: selection.per_run,
        opts,
    };
    let bopt = bopt::fit_bopt(&ctx);
    let scaling = regression::fit_scaling(&bopt, &ctx.opts);
    FitReport {
        n_runs: ctx.runs.len(),
        n_diverged: ctx.runs.iter().filter(|r| r.diverged).count(),
        n_missing: selection.n_missing,
        censor_value: selection.censor_value,
        warnings,
        collapse: collapse::fit_collapse(&ctx),
        schedules: schedules::fit_schedules(&ctx),
        efficiency: efficiency::fit_efficiency(&ctx),
        learning_curve: learning_curve::fit_learning_curve(&ctx),
        validation_bound: bound::fit_validation_bound(&ctx),
        instruments: instruments::fit_instruments(&ctx),
        bopt,
        scaling,
        options: ctx.opts.clone(),
    }
}
