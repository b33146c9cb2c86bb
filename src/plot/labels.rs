//! The words on the figures: metric names with units, axis descriptions, cell labels that
//! show only the axes that vary.

use super::chart::{Axis, Scale};
use super::format;
use crate::fit::{FitReport, MetricKind, Select};

/// The batch-size axis (log₂: sweeps use power-of-two grids).
pub fn batch_axis() -> Axis {
    Axis::new("batch size B (examples per update)", Scale::Log2)
}

/// A human name of the metric: "test accuracy".
pub fn metric_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::TestAcc => "test accuracy",
        MetricKind::TestLoss => "test loss",
        MetricKind::TrainLoss => "training loss",
        MetricKind::TrainAcc => "training accuracy",
        MetricKind::GapLoss => "generalisation gap (test − training loss)",
        MetricKind::GapAcc => "generalisation gap (training − test accuracy)",
    }
}

/// "Test accuracy" (for titles).
pub fn metric_title(kind: MetricKind) -> String {
    let n = metric_name(kind);
    let mut c = n.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The unit of the metric.
pub fn metric_unit(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::GapAcc => "fraction",
        MetricKind::GapLoss => "nats",
        k if k.is_accuracy() => "fraction correct",
        _ => "cross-entropy, nats",
    }
}

/// The word for a curve's best point: "peak" where higher is better, "minimum" for a loss
/// (or any metric where lower is better).
pub fn optimum_word(kind: MetricKind) -> &'static str {
    if kind.higher_is_better() {
        "peak"
    } else {
        "minimum"
    }
}

/// How a run's curve was reduced, in words.
pub fn select_words(select: Select) -> &'static str {
    match select {
        Select::Final => "final epoch",
        Select::Best => "best epoch",
        Select::MedianLast5 => "median of last 5 epochs",
    }
}

/// The y axis of the selected metric: "test accuracy (fraction correct; final epoch)",
/// bounded to [0, 1] for accuracies.
pub fn metric_axis(fit: &FitReport) -> Axis {
    let kind = fit.options.metric;
    let label = format!(
        "{} ({}; {})",
        metric_name(kind),
        metric_unit(kind),
        select_words(fit.options.select)
    );
    let axis = Axis::new(label, Scale::Linear);
    if kind.is_accuracy() {
        axis.bounded(0.0, 1.0)
    } else if kind.is_gap() {
        axis
    } else {
        axis.bounded(0.0, f64::INFINITY)
    }
}

/// The y axis of the metric per epoch (no selection rule: every epoch is shown), bounded to
/// [0, 1] for accuracies.
pub fn metric_axis_per_epoch(fit: &FitReport) -> Axis {
    let kind = fit.options.metric;
    let axis = Axis::new(
        format!("{} ({}; seed mean)", metric_name(kind), metric_unit(kind)),
        Scale::Linear,
    );
    if kind.is_accuracy() {
        axis.bounded(0.0, 1.0)
    } else if kind.is_gap() {
        axis
    } else {
        axis.bounded(0.0, f64::INFINITY)
    }
}

/// The settings that identify a cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellKey {
    pub lr: f64,
    pub train_size: u64,
    pub momentum: f64,
}

/// Which of ε, N, m vary across a set of cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Varying {
    pub lr: bool,
    pub train_size: bool,
    pub momentum: bool,
}

impl Varying {
    /// Which axes take more than one value among `keys`.
    pub fn of<'a>(keys: impl IntoIterator<Item = &'a CellKey>) -> Self {
        let keys: Vec<&CellKey> = keys.into_iter().collect();
        let Some(first) = keys.first() else {
            return Varying::default();
        };
        let differs = |a: f64, b: f64| (a - b).abs() > 1e-9 * a.abs().max(b.abs());
        Varying {
            lr: keys.iter().any(|k| differs(k.lr, first.lr)),
            train_size: keys.iter().any(|k| k.train_size != first.train_size),
            momentum: keys.iter().any(|k| differs(k.momentum, first.momentum)),
        }
    }
}

/// "ε = 5e-2, N = 4,000, m = 0.9", with only the axes in `show` (ε when none).
pub fn cell_label(k: &CellKey, show: Varying) -> String {
    let mut parts = Vec::new();
    if show.lr || !(show.train_size || show.momentum) {
        parts.push(format!("ε = {}", format::lr(k.lr)));
    }
    if show.train_size {
        parts.push(format!("N = {}", format::int(k.train_size)));
    }
    if show.momentum {
        parts.push(format!("m = {}", format::momentum(k.momentum)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_show_what_varies() {
        let a = CellKey {
            lr: 0.05,
            train_size: 4000,
            momentum: 0.9,
        };
        let b = CellKey { lr: 0.1, ..a };
        let v = Varying::of([&a, &b]);
        assert!(v.lr && !v.train_size && !v.momentum);
        assert_eq!(cell_label(&a, v), "ε = 5e-2");
        let all = Varying {
            lr: true,
            train_size: true,
            momentum: true,
        };
        assert_eq!(cell_label(&a, all), "ε = 5e-2, N = 4,000, m = 0.9");
        assert_eq!(cell_label(&a, Varying::default()), "ε = 5e-2");
        assert_eq!(metric_title(MetricKind::TestAcc), "Test accuracy");
        assert_eq!(optimum_word(MetricKind::TestAcc), "peak");
        assert_eq!(optimum_word(MetricKind::TestLoss), "minimum");
    }
}
