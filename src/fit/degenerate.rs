//! Degenerate and hostile inputs: every section is fitted or skipped with a reason, nothing
//! panics, and no NaN reaches the JSON.

use super::testdata::{Gauss, assert_json_finite, flat_run, planted_bopt_runs, run_with_curve};
use super::*;

/// Every section is fitted, or skipped with a non-empty sentence; the JSON holds no NaN.
fn check_sane(report: &FitReport) {
    let reasons = [
        report.bopt.reason(),
        report.scaling.reason(),
        report.collapse.reason(),
        report.schedules.reason(),
        report.efficiency.reason(),
        report.learning_curve.reason(),
        report.validation_bound.reason(),
    ];
    for r in reasons.into_iter().flatten() {
        assert!(r.len() > 10, "reason too short: {r:?}");
    }
    assert_json_finite(report);
    let _ = render_tables(report);
}

fn all_metrics_and_selections(runs: &[RunInput]) -> Vec<FitReport> {
    let mut out = Vec::new();
    for metric in MetricKind::ALL {
        for select in [Select::Final, Select::Best, Select::MedianLast5] {
            let opts = FitOptions {
                metric,
                select,
                bootstrap: crate::fit::MIN_BOOTSTRAP,
                ..FitOptions::default()
            };
            let rep = fit_all(runs, &opts);
            check_sane(&rep);
            out.push(rep);
        }
    }
    out
}

#[test]
fn empty_input_skips_every_section_with_a_reason() {
    for rep in all_metrics_and_selections(&[]) {
        assert_eq!(rep.bopt.reason(), Some("no runs to fit"));
        assert!(rep.scaling.reason().is_some());
        assert!(rep.collapse.reason().is_some());
        assert!(rep.schedules.reason().is_some());
        assert!(rep.efficiency.reason().is_some());
        assert!(rep.learning_curve.reason().is_some());
        assert!(rep.validation_bound.reason().is_some());
    }
}

#[test]
fn every_run_diverged() {
    let mut runs = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 3, 0.01, 2);
    for r in &mut runs {
        r.diverged = true;
        for p in r.curve.iter_mut().skip(2) {
            p.value = None;
        }
    }
    let rep = fit_all(&runs, &FitOptions::default());
    check_sane(&rep);
    assert_eq!(rep.n_diverged, runs.len());
    assert_eq!(
        rep.bopt.reason(),
        Some("every run diverged: B_opt has no optimum to locate")
    );
    assert!(rep.validation_bound.reason().unwrap().contains("diverge"));
    all_metrics_and_selections(&runs);
}

#[test]
fn one_batch_size_one_seed_and_fixed_axes() {
    // One batch size.
    let runs: Vec<_> = (0..3)
        .map(|s| flat_run("c", 0.1, 1000, 0.9, 64, s, 0.8 + 0.01 * s as f64, 3))
        .collect();
    let rep = fit_all(&runs, &FitOptions::default());
    check_sane(&rep);
    assert!(
        rep.bopt
            .reason()
            .unwrap()
            .contains("B_opt needs at least 3")
    );
    assert!(
        rep.scaling
            .reason()
            .unwrap()
            .starts_with("no B_opt to regress")
    );
    all_metrics_and_selections(&runs);
    // One seed, one cell: every axis has one value.
    let runs = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 1, 0.01, 3);
    let rep = fit_all(&runs, &FitOptions::default());
    check_sane(&rep);
    assert!(rep.bopt.fitted().is_some());
    let s = rep.scaling.fitted().unwrap();
    assert!(s.log_linear.reason().unwrap().contains("same in every"));
    assert!(
        rep.learning_curve
            .reason()
            .unwrap()
            .contains("N does not vary")
    );
    all_metrics_and_selections(&runs);
}

#[test]
fn missing_values_zero_variance_and_duplicates() {
    // Every value missing.
    let runs: Vec<_> = (0..4)
        .map(|s| run_with_curve(&format!("r{s}"), false, &[None, None, Some(f64::NAN)]))
        .collect();
    let rep = fit_all(&runs, &FitOptions::default());
    check_sane(&rep);
    assert_eq!(rep.n_missing, 4);
    // Zero variance: the same value everywhere, duplicated run ids.
    let mut runs: Vec<_> = [8u64, 16, 32, 64]
        .into_iter()
        .flat_map(|b| (0..3).map(move |s| flat_run("c", 0.1, 1000, 0.0, b, s, 0.5, 3)))
        .collect();
    runs.extend(runs.clone());
    let rep = fit_all(&runs, &FitOptions::default());
    check_sane(&rep);
    assert_eq!(rep.n_runs, 12);
    assert!(rep.warnings[0].contains("12 duplicate"));
    assert!(
        rep.bopt
            .reason()
            .unwrap()
            .contains("same at every batch size")
    );
    all_metrics_and_selections(&runs);
}

#[test]
fn nonsense_fields_and_options_never_produce_nan() {
    let mut runs = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 2, 0.01, 4);
    runs[0].lr = f64::NAN;
    runs[1].momentum = 1.0;
    runs[2].train_size = 0;
    runs[3].batch_size = 0;
    runs[4].test_size = 0;
    runs[5].classes = 0;
    runs[6].curve.clear();
    runs[7].curve[1].value = Some(f64::INFINITY);
    let bad = FitOptions {
        confidence: f64::NAN,
        equivalence_margin: -1.0,
        delta: 2.0,
        targets: Some(vec![f64::NAN, 0.5]),
        ..FitOptions::default()
    };
    let rep = fit_all(&runs, &bad);
    check_sane(&rep);
    assert_eq!(rep.options.confidence, 0.95);
    assert_eq!(rep.options.targets, Some(vec![0.5]));
    assert!(rep.warnings.len() >= 5, "{:?}", rep.warnings);
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.contains("4 run(s) with impossible settings"))
    );
    all_metrics_and_selections(&runs);
}

#[test]
fn random_garbage_never_panics_or_leaks_nan() {
    // Seeded random runs with extreme and degenerate fields.
    let mut g = Gauss::new(99);
    for round in 0..60 {
        let n_runs = (g.next().abs() * 30.0) as usize;
        let pick = |g: &mut Gauss, xs: &[f64]| xs[(g.next().abs() * 7.0) as usize % xs.len()];
        let runs: Vec<RunInput> = (0..n_runs)
            .map(|i| {
                let vals: Vec<Option<f64>> = (0..(g.next().abs() * 4.0) as usize)
                    .map(|_| {
                        let v = pick(&mut g, &[0.5, 0.0, 1.0, f64::NAN, 1e300, -3.0, 0.9]);
                        (g.next() > -1.0).then_some(v)
                    })
                    .collect();
                let mut r = run_with_curve(&format!("{round}/{i}"), g.next() > 1.0, &vals);
                r.cell = format!("c{}", (g.next().abs() * 2.0) as u32);
                r.schedule_group = "g".into();
                r.schedule = ["constant", "decay-lr", "increase-batch", "hybrid"]
                    [(g.next().abs() * 2.0) as usize % 4]
                    .into();
                r.batch_size = pick(&mut g, &[0.0, 1.0, 8.0, 64.0, 4096.0, 1e6, 16.0]) as u64;
                r.train_size = pick(&mut g, &[0.0, 1.0, 1000.0, 64.0, 1e9, 50.0, 8.0]) as u64;
                r.lr = pick(&mut g, &[0.1, 0.0, -1.0, 1e-300, 1e300, f64::NAN, 0.2]);
                r.momentum = pick(&mut g, &[0.0, 0.9, 1.0, -0.5, 0.99, 0.5, f64::NAN]);
                r.seed = (g.next().abs() * 3.0) as u64;
                r.steps = pick(&mut g, &[0.0, 10.0, 1e12, 5.0, 1.0, 100.0, 7.0]) as u64;
                r
            })
            .collect();
        all_metrics_and_selections(&runs);
    }
}

#[test]
fn names_parse_and_serialise() {
    assert_eq!("test_acc".parse::<MetricKind>(), Ok(MetricKind::TestAcc));
    assert_eq!(
        "train-loss".parse::<MetricKind>(),
        Ok(MetricKind::TrainLoss)
    );
    let err = "accuracy".parse::<MetricKind>().unwrap_err().to_string();
    assert!(err.contains("expected one of test_acc"), "{err}");
    assert_eq!("median-last-5".parse::<Select>(), Ok(Select::MedianLast5));
    assert_eq!("best".parse::<Select>(), Ok(Select::Best));
    assert!("last".parse::<Select>().is_err());
    assert_eq!(
        serde_json::to_string(&Select::MedianLast5).unwrap(),
        "\"median-last-5\""
    );
    assert_eq!(
        serde_json::to_string(&MetricKind::TestLoss).unwrap(),
        "\"test_loss\""
    );
    assert!(!MetricKind::TestLoss.higher_is_better() && MetricKind::TrainAcc.higher_is_better());
    let o: Outcome<Interval> = Outcome::skipped("why");
    assert_eq!(
        serde_json::to_string(&o).unwrap(),
        r#"{"status":"skipped","reason":"why"}"#
    );
    let f = Outcome::Fitted(Interval {
        lo: 1.0,
        hi: 2.0,
        level: 0.95,
    });
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"status":"fitted","lo":1.0,"hi":2.0,"level":0.95}"#
    );
}
