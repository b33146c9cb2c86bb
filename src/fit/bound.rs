//! The validation bound for the model the sweep selects (docs/science.md §5: Kawaguchi, Kaelbling &
//! Bengio 2017, arXiv 1710.05468; the exact form there is unverified, this is the standard
//! Hoeffding + union bound for a loss in [0, 1]).
//!
//! With probability ≥ 1 − δ over the draw of the m held-out examples, every one of the |F| models
//! compared on them satisfies R(f) ≤ R̂(f) + √(ln(|F|/δ)/(2m)). The union over |F| is what keeps
//! the bound valid for the model chosen *by* looking at those same examples. Here it is stated
//! for the selected run (best selected metric), m is that run's test-set size, and |F| counts
//! every model whose test accuracy the selection compared: one per run with `final` (diverged
//! runs included: they were compared too), every evaluated epoch of every run with `best` (each
//! epoch's weights are a model scored on the same examples; counting runs only, the bound failed
//! in 25% of simulated sweeps of 20 runs × 50 epochs at δ = 5%), and the last 5 with
//! `median-last-5`. For `median-last-5` the selected value is the median of five models' test
//! errors; as the bound holds for all of them at once, it bounds the median of their true
//! errors.
//!
//! The 0–1 loss is in [0, 1], so the bound is for test accuracy only: a cross-entropy is
//! unbounded, and train accuracy is not measured on held-out data.

use serde::{Deserialize, Serialize};

use super::select::models_compared;
use super::stats::finite;
use super::{Ctx, MetricKind, Outcome, Select};

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
    /// |F|: models compared by the selection (per run: 1 with `final`, every evaluated epoch
    /// with `best`, up to 5 with `median-last-5`; diverged runs included).
    pub n_compared: usize,
    /// Runs compared (diverged runs included).
    #[serde(default)]
    pub runs_compared: usize,
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
    let select = ctx.opts.select;
    let runs_compared = ctx.valued().count();
    let n_compared = ctx
        .valued()
        .map(|(i, _, _)| models_compared(&ctx.runs[i].curve, select))
        .sum();
    let delta = ctx.opts.delta;
    let Some(slack) = slack(n_compared, best.test_size, delta) else {
        return Outcome::skipped(format!(
            "the selected run '{}' has test_size 0: the bound needs the held-out set's size",
            best.run_id
        ));
    };
    let error = (1.0 - value).clamp(0.0, 1.0);
    let bound = (error + slack).min(1.0);
    let (what, compared) = match select {
        Select::Final => (
            "the true error of the selected run's final model".to_string(),
            format!("the {runs_compared} runs compared"),
        ),
        Select::Best => (
            "the true error of the selected run's model at its best epoch".to_string(),
            format!(
                "the {n_compared} models compared (every evaluated epoch of {runs_compared} runs)"
            ),
        ),
        Select::MedianLast5 => (
            "the median true error of the selected run's last 5 models".to_string(),
            format!("the {n_compared} models compared (the last 5 epochs of {runs_compared} runs)"),
        ),
    };
    let statement = format!(
        "With probability ≥ {:.0}% over the draw of the {} test examples, {what} ('{}') is at \
         most {:.4} (test error {:.4} + {:.4}). This is a high-probability bound on that \
         selected model's risk, made valid for a model chosen on the test set by a union over \
         {compared}; it is not a statement about the other runs.",
        100.0 * (1.0 - delta),
        best.test_size,
        best.run_id,
        bound,
        error,
        slack,
    );
    Outcome::Fitted(ValidationBound {
        run_id: best.run_id.clone(),
        cell: best.cell.clone(),
        batch_size: best.batch_size,
        selected_value: value,
        error,
        n_compared,
        runs_compared,
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
    use crate::fit::{FitOptions, RunInput, fit_all};

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

    /// With `best` every evaluated epoch is a model compared on the test set (10 runs × 2
    /// epochs: |F| = 20), with `median-last-5` the last five of each run (10 × 5 = 50 of 7).
    #[test]
    fn the_models_compared_follow_the_selection_rule() {
        let runs = |epochs| -> Vec<RunInput> {
            let mut runs: Vec<_> = (0..9)
                .map(|s| flat_run("c", 0.1, 1000, 0.0, 8, s, 0.8, epochs))
                .collect();
            runs.push(flat_run("c", 0.1, 1000, 0.0, 16, 0, 0.9, epochs));
            runs[0].diverged = true;
            runs
        };
        let bound = |runs: &[RunInput], select| {
            let opts = FitOptions {
                select,
                bootstrap: 0,
                ..FitOptions::default()
            };
            fit_all(runs, &opts)
                .validation_bound
                .fitted()
                .cloned()
                .unwrap()
        };
        // python3: 0.1+math.sqrt(math.log(20/0.05)/(2*10000)), …log(50/0.05)…
        let b = bound(&runs(2), Select::Best);
        assert_eq!((b.n_compared, b.runs_compared), (20, 10));
        assert!((b.bound - 0.11730818382602286).abs() < 1e-12, "{}", b.bound);
        assert!(
            b.statement.contains("the 20 models compared"),
            "{}",
            b.statement
        );
        let b = bound(&runs(7), Select::MedianLast5);
        assert_eq!((b.n_compared, b.runs_compared), (50, 10));
        assert!((b.bound - 0.1185846109442492).abs() < 1e-12, "{}", b.bound);
        assert!(b.statement.contains("median true error"), "{}", b.statement);
        let b = bound(&runs(7), Select::Final);
        assert_eq!((b.n_compared, b.runs_compared), (10, 10));
    }

    /// The bound's promise, simulated: 20 runs × 50 epochs whose every model has true error 0.5,
    /// each epoch's accuracy on m = 1,000 test examples drawn around it; the run selected by
    /// `best` is the luckiest of 1,000 looks. Its bound must fail in at most δ = 5% of the
    /// sweeps. Counting the 20 runs as |F|, it failed in 25%.
    #[test]
    fn the_bound_holds_for_the_best_epoch_of_many() {
        use crate::fit::testdata::Gauss;
        let (m, p, trials) = (1000u64, 0.5, 200);
        let mut g = Gauss::new(99);
        let mut failed = 0;
        for _ in 0..trials {
            let runs: Vec<RunInput> = (0..20usize)
                .map(|i| {
                    let mut r = flat_run("c", 0.1, 1000, 0.0, 8 << (i % 4), i as u64, p, 50);
                    r.run_id = format!("r{i}");
                    r.test_size = m;
                    let sd = (p * (1.0 - p) / m as f64).sqrt();
                    for pt in r.curve.iter_mut().skip(1) {
                        pt.value = Some(((p + sd * g.next()) * m as f64).round() / m as f64);
                    }
                    r
                })
                .collect();
            let opts = FitOptions {
                select: Select::Best,
                bootstrap: 0,
                ..FitOptions::default()
            };
            let b = fit_all(&runs, &opts)
                .validation_bound
                .fitted()
                .cloned()
                .unwrap();
            assert_eq!(b.n_compared, 1000);
            failed += usize::from(b.bound < 1.0 - p);
        }
        assert!(
            failed <= trials / 20,
            "the bound failed in {failed} of {trials} sweeps"
        );
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
