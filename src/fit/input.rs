//! What the fits read: the metric and selection rule, one run as the database hands it over,
//! and the options.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which stored metric is fitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    TestAcc,
    TestLoss,
    TrainLoss,
    TrainAcc,
    /// Generalisation gap in loss: test loss − training loss (lower is better).
    GapLoss,
    /// Generalisation gap in accuracy: training − test accuracy (lower is better).
    GapAcc,
}

impl MetricKind {
    /// All kinds, in the order the CLI lists them.
    pub const ALL: [MetricKind; 6] = [
        MetricKind::TestAcc,
        MetricKind::TestLoss,
        MetricKind::TrainLoss,
        MetricKind::TrainAcc,
        MetricKind::GapLoss,
        MetricKind::GapAcc,
    ];

    /// Accuracies are maximised, losses minimised.
    pub fn higher_is_better(self) -> bool {
        matches!(self, MetricKind::TestAcc | MetricKind::TrainAcc)
    }

    /// Whether the metric is an accuracy (a share in [0, 1]).
    pub fn is_accuracy(self) -> bool {
        self.higher_is_better()
    }

    /// Whether the metric is a generalisation gap (a difference, which may be negative).
    pub fn is_gap(self) -> bool {
        matches!(self, MetricKind::GapLoss | MetricKind::GapAcc)
    }

    /// The stored name, as the CLI and the JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::TestAcc => "test_acc",
            MetricKind::TestLoss => "test_loss",
            MetricKind::TrainLoss => "train_loss",
            MetricKind::TrainAcc => "train_acc",
            MetricKind::GapLoss => "gap_loss",
            MetricKind::GapAcc => "gap_acc",
        }
    }

    /// Whether `a` is strictly better than `b` for this metric.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.higher_is_better() {
            a > b
        } else {
            a < b
        }
    }

    /// The better of two values.
    pub fn best_of(self, a: f64, b: f64) -> f64 {
        if self.better(b, a) { b } else { a }
    }

    /// The worse of two values.
    pub fn worst_of(self, a: f64, b: f64) -> f64 {
        if self.better(b, a) { a } else { b }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric or selection rule the user wrote that we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFitError {
    #[error(
        "unknown metric '{0}': expected one of test_acc, test_loss, train_loss, train_acc, gap_loss, gap_acc"
    )]
    Metric(String),
    #[error("unknown selection '{0}': expected one of final, best, median-last-5")]
    Select(String),
}

impl FromStr for MetricKind {
    type Err = ParseFitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        MetricKind::ALL
            .into_iter()
            .find(|k| k.name() == norm)
            .ok_or_else(|| ParseFitError::Metric(s.to_string()))
    }
}

/// How one run's curve is reduced to one number.
///
/// `MedianLast5` is Goyal et al. 2017's evaluation rule (arXiv 1706.02677, docs/science.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// The last epoch (≥ 1) with a value.
    Final,
    /// The best value over epochs ≥ 1.
    Best,
    /// The median of the last 5 epochs (≥ 1) with values.
    #[serde(rename = "median-last-5")]
    MedianLast5,
}

impl Select {
    /// The name the CLI and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Select::Final => "final",
            Select::Best => "best",
            Select::MedianLast5 => "median-last-5",
        }
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Select {
    type Err = ParseFitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "final" => Ok(Select::Final),
            "best" => Ok(Select::Best),
            "median-last-5" | "median-last5" => Ok(Select::MedianLast5),
            _ => Err(ParseFitError::Select(s.to_string())),
        }
    }
}

/// One epoch of one run. `value` is the chosen metric at that epoch; `None` when missing or
/// non-finite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    pub epoch: u32,
    /// Parameter updates done by the end of this epoch.
    pub step: u64,
    /// Training examples processed by the end of this epoch.
    pub samples: u64,
    pub value: Option<f64>,
}

/// One stored run, as the database layer hands it over. Epoch 0 (if present) is the evaluation
/// at initialisation, before any update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    pub run_id: String,
    /// B_opt grouping key: runs with the same `cell` differ only in batch size and seed.
    pub cell: String,
    /// Schedules grouping key: runs with the same group differ only in schedule mode and seed.
    pub schedule_group: String,
    /// Initial learning rate ε.
    pub lr: f64,
    /// Initial batch size B.
    pub batch_size: u64,
    /// The largest batch size the run's schedule reaches (its last, for a growing batch);
    /// `None` when the caller does not know it (the fits then take `batch_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u64>,
    /// Momentum m in [0, 1).
    pub momentum: f64,
    /// The noise scale the sweep placed the run at, where its axis is `noise_scale` (ε was then
    /// derived from it and B: ε = g·B(1−m)/N); `None` where ε was swept directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_scale: Option<f64>,
    /// Training-set size N.
    pub train_size: u64,
    /// Size of the held-out set the metric is measured on.
    pub test_size: u64,
    /// Number of classes (chance accuracy = 1/classes).
    pub classes: u32,
    pub seed: u64,
    /// "constant" | "decay-lr" | "increase-batch" | "hybrid".
    pub schedule: String,
    /// DIVERGED runs are scientific results, censored at the worst value (see
    /// [`select_value`](crate::fit::select_value)).
    pub diverged: bool,
    /// Parameter updates used in total.
    pub steps: u64,
    pub curve: Vec<EpochPoint>,
    /// What the instruments measured (empty when they were off).
    #[serde(default, skip_serializing_if = "crate::fit::RunInstruments::is_empty")]
    pub instruments: crate::fit::RunInstruments,
}

/// What to fit and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub metric: MetricKind,
    pub select: Select,
    /// Bootstrap resamples for the B_opt intervals; 0 disables them.
    pub bootstrap: usize,
    /// Seed of the ChaCha8 generator the bootstrap draws from (reproducible bit for bit).
    pub bootstrap_seed: u64,
    /// Level of every interval (and 1 − confidence is the test size α).
    pub confidence: f64,
    /// Equivalence margin of the schedules' TOST, in metric units.
    pub equivalence_margin: f64,
    /// Efficiency targets in metric units; `None` chooses them from the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<f64>>,
    /// δ of the validation bound (docs/science.md §5).
    pub delta: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            metric: MetricKind::TestAcc,
            select: Select::Final,
            bootstrap: 1000,
            bootstrap_seed: 0,
            confidence: 0.95,
            equivalence_margin: 0.01,
            targets: None,
            delta: 0.05,
        }
    }
}

impl FitOptions {
    /// Replaces out-of-range options by their defaults, saying so: a bad option must not turn
    /// into NaN in the report.
    pub(crate) fn sanitized(&self) -> (FitOptions, Vec<String>) {
        let d = FitOptions::default();
        let mut o = self.clone();
        let mut warnings = Vec::new();
        if !(o.confidence > 0.5 && o.confidence < 1.0) {
            warnings.push(format!(
                "confidence {} is outside (0.5, 1): used {}",
                o.confidence, d.confidence
            ));
            o.confidence = d.confidence;
        }
        if !(o.equivalence_margin.is_finite() && o.equivalence_margin > 0.0) {
            warnings.push(format!(
                "equivalence margin {} is not a positive number: used {}",
                o.equivalence_margin, d.equivalence_margin
            ));
            o.equivalence_margin = d.equivalence_margin;
        }
        if !(o.delta > 0.0 && o.delta < 1.0) {
            warnings.push(format!(
                "delta {} is outside (0, 1): used {}",
                o.delta, d.delta
            ));
            o.delta = d.delta;
        }
        if let Some(t) = &o.targets {
            let finite: Vec<f64> = t.iter().copied().filter(|x| x.is_finite()).collect();
            if finite.len() != t.len() {
                warnings.push("non-finite efficiency targets were dropped".to_string());
            }
            o.targets = if finite.is_empty() {
                None
            } else {
                Some(finite)
            };
        }
        (o, warnings)
    }
}
