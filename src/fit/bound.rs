//! The validation bound for the model the sweep selects (docs/science.md §5: Kawaguchi, Kaelbling &
//! Bengio 2017, arXiv 1710.05468; the exact form there is unverified, this is the standard
//! Hoeffding + union bound for a loss in [0, 1]).
//!
//! With probability ≥ 1 − δ over the draw of the m held-out examples, every one of the |F| models
//! compared on them satisfies R(f) ≤ R̂(f) + √(ln(|F|/δ)/(2m)). The union over |F| is what keeps
//! the bound valid for the model chosen *by* looking at those same examples. Here it is stated
//! for the selected run (best selected metric): |F| counts every run with a value, diverged runs
//! included (they were compared too), m is that run's test-set size.
//!
//! The 0–1 loss is in [0, 1], so the bound is for test accuracy only: a cross-entropy is
//! unbounded, and train accuracy is not measured on held-out data.

use serde::{Deserialize, Serialize};

use super::stats::finite;
use super::{Ctx, MetricKind, Outcome};

/// The bound on the selected run's risk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationBound {
    pub run_id: String,
    pub cell: String,
    pub batch_size: u64,
    /// The selected test accuracy.
    pub selected_value: f64,
    /// 1 − accuracy on the held-out set.
    pub error: f64,
    /// |F|: runs compared (diverged runs included).
    pub n_compared: usize,
    /// m: held-out examples.
    pub test_size: u64,
    pub delta: f64,
    /// √(ln(|F|/δ)/(2m)).
    pub slack: f64,
    /// error + slack, capped at 1 (a risk cannot exceed 1).
    pub bound: f64,
    pub statement: String,
}

/// Hoeffding + union slack √(ln(|F|/δ)/(2m)).
pub(crate) fn slack(n_compared: usize, test_size: u64, delta: f64) -> Option<f64> {
    if n_compared == 0 || test_size == 0 || !(delta > 0.0 && delta < 1.0) {
        return None;
    }
    finite(((n_compared as f64 / delta).ln() / (2.0 * test_size as f64)).sqrt())
}

/// The bound for the run with the best selected test accuracy.
pub(crate) fn fit_validation_bound(ctx: &Ctx) -> Outcome<ValidationBound> {
    let metric = ctx.metric();
    if metric != MetricKind::TestAcc {
        return Outcome::skipped(format!(
            "the bound needs a loss in [0, 1] measured on held-out data: it is stated for \
             test_acc only, not {metric}"
        ));
    }
    let Some((_, best, value)) = ctx
        .valued()
        .filter(|(_, r, _)| !r.diverged)
        .reduce(|a, b| if metric.better(b.2, a.2) { b } else { a })
    else {
        return Outcome::skipped(if ctx.runs.is_empty() {
            "no runs to fit"
        } else {
            "no run that did not diverge has a value: there is no selected model"
        });
    };
    let n_compared = ctx.valued().count();
    let delta = ctx.opts.delta;
    let Some(slack) = slack(n_compared, best.test_size, delta) else {
        return Outcome::skipped(format!(
            "the selected run '{}' has test_size 0: the bound needs the held-out set's size",
            best.run_id
        ));
    };
    let error = (1.0 - value).clamp(0.0, 1.0);
    let bound = (error + slack).min(1.0);
    let statement = format!(
        "With probability ≥ {:.0}% over the draw of the {} test examples, the true error of the \
         selected run '{}' is at most {:.4} (test error {:.4} + {:.4}). This is a high-probability \
         bound on that selected model's risk, made valid for a model chosen on the test set by a \
         union over the {} runs compared; it is not a statement about the other runs.",
        100.0 * (1.0 - delta),
        best.test_size,
        best.run_id,
        bound,
        error,
        slack,
        n_compared
    );
    Outcome::Fitted(ValidationBound {
        run_id: best.run_id.clone(),
        cell: best.cell.clone(),
        batch_size: best.batch_size,
        selected_value: value,
        error,
        n_compared,
        test_size: best.test_size,
        delta,
        slack,
        bound,
        statement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::{assert_json_finite, flat_run};
    use crate::fit::{FitOptions, fit_all};

    #[test]
    fn hand_computed_bound() {
        // 10 runs, best accuracy 0.9, m = 10,000, δ = 0.05:
        // 0.1 + √(ln(10/0.05)/(2·10,000)) = 0.1 + √(5.298317/20,000) = 0.1162762363071873
        // (python3: 0.1+math.sqrt(math.log(10/0.05)/(2*10000))).
        let mut runs: Vec<_> = (0..9)
            .map(|s| flat_run("c", 0.1, 1000, 0.0, 8, s, 0.8, 2))
            .collect();
        runs.push(flat_run("c", 0.1, 1000, 0.0, 16, 0, 0.9, 2));
        runs[0].diverged = true; // still compared: |F| = 10
        let rep = fit_all(&runs, &FitOptions::default());
        let b = rep.validation_bound.fitted().unwrap();
        assert_eq!(b.n_compared, 10);
        assert_eq!(b.run_id, "c/B16/s0");
        assert!((b.bound - 0.1162762363071873).abs() < 1e-12, "{}", b.bound);
        assert!(b.statement.contains("selected model's risk"));
        assert_json_finite(&rep);
    }

    #[test]
    fn loss_metrics_get_no_bound() {
        let runs = vec![flat_run("c", 0.1, 1000, 0.0, 8, 0, 0.8, 2)];
        let opts = FitOptions {
            metric: MetricKind::TestLoss,
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        assert!(
            rep.validation_bound
                .reason()
                .unwrap()
                .contains("test_acc only")
        );
        assert_eq!(slack(0, 100, 0.05), None);
    }
}
