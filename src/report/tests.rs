//! write_report end to end on synthetic sweeps: the full one, none completed, degenerate ones.

use std::time::Instant;

use super::*;
use crate::fit::fit_all;
use crate::plot::testdata::{self, assert_png};

/// Training curves for the chosen runs, with losses derived from the accuracy.
fn curves_for(chosen: &[(String, String)], runs: &[RunInput]) -> Vec<TrainingCurve> {
    chosen
        .iter()
        .filter_map(|(id, label)| {
            let r = runs.iter().find(|r| &r.run_id == id)?;
            Some(TrainingCurve {
                run_id: id.clone(),
                label: label.clone(),
                points: r
                    .curve
                    .iter()
                    .map(|p| {
                        let test_loss = p.value.map(|a| 2.3 * (1.0 - a) / 0.9 + 0.05);
                        CurvePoint {
                            epoch: p.epoch,
                            step: p.step,
                            train_loss: test_loss.map(|l| 0.85 * l),
                            test_loss,
                            train_acc: p.value.map(|a| (a + 0.02).min(1.0)),
                            test_acc: p.value,
                        }
                    })
                    .collect(),
            })
        })
        .collect()
}

fn input_for(runs: Vec<RunInput>, states: Vec<(&str, i64)>) -> ReportInput {
    let fit = fit_all(&runs, &testdata::test_options());
    let chosen = choose_curve_runs(&fit, &runs);
    let curves = curves_for(&chosen, &runs);
    ReportInput {
        sweep: "synthetic <planted>".into(),
        description: "Planted B_opt = 0.4·εN/(1−m), B_crit = 256, power-law learning curve.".into(),
        fit,
        runs,
        curves,
        state_counts: states
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect(),
        generated_by: "scalelab 0.1.0 (rev test)".into(),
    }
}

fn synthetic_input() -> ReportInput {
    let runs = testdata::synthetic_runs();
    let diverged = runs.iter().filter(|r| r.diverged).count() as i64;
    let completed = runs.len() as i64 - diverged;
    input_for(runs, vec![("completed", completed), ("diverged", diverged)])
}

#[test]
fn full_synthetic_report_has_every_figure_and_table() {
    let input = synthetic_input();
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    let sum = write_report(&input, dir.path(), &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(sum.figures.len(), 10, "skipped: {:?}", sum.skipped);
    assert!(sum.skipped.is_empty());
    assert!(lines[0].starts_with("figure 1/10: "), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "figure 3/10: noise-scale collapse")
    );
    let html = std::fs::read_to_string(&sum.index_html).unwrap();
    let md = std::fs::read_to_string(&sum.index_md).unwrap();
    for f in &sum.figures {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            html.contains(&format!("src=\"{name}\"")),
            "{name} not in the HTML"
        );
        assert!(
            md.contains(&format!("]({name})")),
            "{name} not in the Markdown"
        );
        // Each PNG decodes at the size the index announces.
        let at = html.find(&format!("src=\"{name}\"")).unwrap();
        let tag = &html[at..at + 120];
        let num = |key: &str| -> u32 {
            let i = tag.find(key).unwrap() + key.len();
            tag[i..].split('"').next().unwrap().parse().unwrap()
        };
        assert_png(f, (num("width=\""), num("height=\"")));
    }
    // Fit tables are there, with the numbers of the fit.
    let cell = &input.fit.bopt.fitted().unwrap().cells[0];
    for needle in [
        "B_opt per cell",
        "Scaling regression",
        "Hypothesis tests",
        "Noise-scale collapse",
        "Equivalence test (TOST)",
        "Critical batch size",
        "Power law",
        "Validation bound on the selected model",
        "Runs shown",
        cell.cell.as_str(),
        "synthetic &lt;planted&gt;",
        "scalelab 0.1.0 (rev test)",
    ] {
        assert!(html.contains(needle), "HTML lacks {needle}");
    }
    assert!(md.contains("synthetic \\<planted\\>"));
    assert!(md.contains("**B_opt per cell**"));
    let b = input.fit.validation_bound.fitted().unwrap();
    assert!(html.contains(&crate::report::render::esc(&b.statement)));
    assert!(!html.contains("<script") && !html.contains("http"));
}

#[test]
fn no_completed_runs_is_a_clear_error() {
    let runs: Vec<_> = [8u64, 16, 32]
        .iter()
        .map(|&b| testdata::rising_run("c", 0.1, 1000, 0.0, b, 0, 0.5, true))
        .collect();
    let input = input_for(runs, vec![("diverged", 3), ("failed", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let err = write_report(&input, &out, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PlotError::NoCompletedRuns { .. }));
    assert!(
        msg.contains("no completed runs") && msg.contains("3 diverged, 1 failed"),
        "{msg}"
    );
    assert!(!out.exists(), "no empty report directory");
    // Without state counts, the runs decide (all diverged → error).
    let mut input = input;
    input.state_counts.clear();
    assert!(write_report(&input, &out, &mut |_| {}).is_err());
    // And no runs at all.
    input.runs.clear();
    assert!(write_report(&input, &out, &mut |_| {}).is_err());
}

#[test]
fn degenerate_sweeps_draw_what_they_can_and_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    // (a) One batch size, one seed, two learning rates, all diverged but one.
    let runs = vec![
        testdata::rising_run("a", 0.1, 1000, 0.0, 64, 0, 0.6, false),
        testdata::rising_run("b", 0.2, 1000, 0.0, 64, 0, 0.6, true),
        testdata::rising_run("c", 0.4, 1000, 0.0, 64, 0, 0.6, true),
    ];
    let input = input_for(runs, vec![("completed", 1), ("diverged", 2)]);
    let sum = write_report(&input, &dir.path().join("a"), &mut |_| {}).unwrap();
    assert_eq!(sum.figures.len() + sum.skipped.len(), 10);
    assert!(sum.skipped.len() >= 6, "{:?}", sum.skipped);
    assert!(sum.skipped.iter().all(|(_, why)| !why.trim().is_empty()));
    let html = std::fs::read_to_string(&sum.index_html).unwrap();
    for (_, why) in &sum.skipped {
        assert!(html.contains(&crate::report::render::esc(why)), "{why}");
    }
    for f in &sum.figures {
        let size = image_size(f);
        assert_png(f, size);
    }
    // (b) Every value equal: no optimum anywhere, nothing may panic or draw NaN.
    let mut runs = Vec::new();
    for lr in [0.05, 0.1] {
        for b in [8u64, 16, 32, 64] {
            runs.push(testdata::rising_run(
                &format!("lr{lr}"),
                lr,
                1000,
                0.0,
                b,
                0,
                0.5,
                false,
            ));
        }
    }
    let input = input_for(runs, vec![("completed", 8)]);
    let sum = write_report(&input, &dir.path().join("b"), &mut |_| {}).unwrap();
    assert_eq!(sum.figures.len() + sum.skipped.len(), 10);
    for f in &sum.figures {
        assert_png(f, image_size(f));
    }
    // (c) A single completed run.
    let runs = vec![testdata::rising_run("a", 0.1, 1000, 0.0, 64, 0, 0.6, false)];
    let input = input_for(runs, vec![]);
    let sum = write_report(&input, &dir.path().join("c"), &mut |_| {}).unwrap();
    assert!(sum.index_html.is_file() && sum.index_md.is_file());
    // A rerun into the same directory removes figures that are now skipped.
    let stale = dir.path().join("c").join("fig1-metric-vs-batch.png");
    std::fs::write(&stale, b"old").unwrap();
    write_report(&input, &dir.path().join("c"), &mut |_| {}).unwrap();
    assert!(!stale.exists());
}

/// Width and height from a PNG header.
fn image_size(path: &std::path::Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap();
    let r = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let info = r.info();
    (info.width, info.height)
}

#[test]
fn curve_runs_span_the_batch_grid_of_the_best_cell() {
    let (runs, fit) = testdata::synthetic();
    let chosen = choose_curve_runs(&fit, &runs);
    assert!(chosen.len() <= 6 && chosen.len() >= 4, "{chosen:?}");
    let best = fit
        .bopt
        .fitted()
        .unwrap()
        .cells
        .iter()
        .reduce(|a, b| if b.peak_value > a.peak_value { b } else { a })
        .unwrap();
    let first: Vec<&RunInput> = chosen
        .iter()
        .take(3)
        .map(|(id, _)| runs.iter().find(|r| &r.run_id == id).unwrap())
        .collect();
    assert!(first.iter().all(|r| r.cell == best.cell && r.seed == 0));
    assert_eq!(first[0].batch_size, 8);
    assert!(chosen.iter().any(|(_, l)| l.contains("best B on the grid")));
    assert!(chosen.iter().any(|(_, l)| l.contains("largest B")));
    assert!(chosen.last().unwrap().1.starts_with("diverged"));
    // N, m and the schedule vary in the synthetic sweep: every label names them.
    for (_, label) in &chosen {
        assert!(
            label.contains("N = ") && label.contains("m = ") && label.contains("schedule "),
            "{label}"
        );
    }
    let why = curve_choice_note(&fit, &runs);
    assert!(
        why.contains("fitted optimum") && why.contains("one diverged run"),
        "{why}"
    );
    // Deterministic.
    assert_eq!(chosen, choose_curve_runs(&fit, &runs));
    // Nothing to choose from: empty.
    assert!(choose_curve_runs(&fit_all(&[], &testdata::test_options()), &[]).is_empty());
}

/// Regression (dont-decay sweep): the one run shown, of the hybrid schedule, was labelled
/// "B = 32 (best B on the grid), ε = 5e-2" without its schedule, and the other schedules were
/// absent. Each label names the schedule, each schedule is shown, and the footnote says why.
#[test]
fn curve_runs_of_a_schedule_sweep_name_and_show_every_schedule() {
    let modes = ["constant", "decay-lr", "hybrid", "increase-batch"];
    let mut runs = Vec::new();
    for (k, mode) in modes.iter().enumerate() {
        for seed in 0..3 {
            let mut r = testdata::rising_run(
                &format!("sched/{mode}"),
                0.05,
                8000,
                0.9,
                32,
                seed,
                0.8 + 0.01 * k as f64,
                false,
            );
            r.run_id = format!("{mode}/s{seed}");
            r.schedule = mode.to_string();
            r.schedule_group = "N8000_lr0.05_m0.9_B32".into();
            runs.push(r);
        }
    }
    let fit = fit_all(&runs, &testdata::test_options());
    let chosen = choose_curve_runs(&fit, &runs);
    let labels: Vec<&str> = chosen.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(chosen.len(), 4, "{labels:?}");
    // The best run's cell first (increase-batch has the best planted value), then the others.
    assert_eq!(chosen[0].0, "increase-batch/s0");
    for mode in modes {
        assert!(
            labels
                .iter()
                .any(|l| l.contains(&format!("schedule {mode}"))),
            "{mode}: {labels:?}"
        );
    }
    let why = curve_choice_note(&fit, &runs);
    assert!(
        why.contains("schedule increase-batch") && why.contains("other schedules"),
        "{why}"
    );
    let fig = curves::prepare_training_curves(&curves_for(&chosen, &runs), &why).unwrap();
    assert!(fig.footnote.unwrap().starts_with(&why));
}

/// Regression (`report --metric test_loss`): the captions put B_opt "at its peak" and g_opt
/// where the curve "peaks", for a loss whose best is its minimum.
#[test]
fn captions_of_a_loss_say_minimum_not_peak() {
    let runs = testdata::synthetic_runs();
    let mut opts = testdata::test_options();
    opts.metric = crate::fit::MetricKind::TestLoss;
    let fit = fit_all(&runs, &opts);
    for kind in KINDS {
        let text = kind.how_to_read(&fit);
        assert!(!text.contains("peak"), "{kind:?}: {text}");
    }
    let text = Kind::MetricVsBatch.how_to_read(&fit);
    assert!(text.contains("at its minimum"), "{text}");
    // An accuracy keeps its peak.
    let (_, fit) = testdata::synthetic();
    assert!(
        Kind::MetricVsBatch
            .how_to_read(&fit)
            .contains("at its peak")
    );
}

/// Writes the synthetic report to `sample-report/` for a human to look at, and prints how long
/// it took and how big it is: `cargo test --lib write_sample_report -- --ignored --nocapture`.
#[test]
#[ignore]
fn write_sample_report() {
    let input = synthetic_input();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-report");
    let t = Instant::now();
    let sum = write_report(&input, &out, &mut |l| println!("{l}")).unwrap();
    let ms = t.elapsed().as_millis();
    let mut bytes = 0;
    for f in sum.figures.iter().chain([&sum.index_html, &sum.index_md]) {
        let n = std::fs::metadata(f).unwrap().len();
        bytes += n;
        println!("{:>9} {}", n, f.display());
    }
    println!("{} figures, {bytes} bytes, {ms} ms", sum.figures.len());
}

#[test]
fn every_figure_survives_the_smallest_size() {
    let input = synthetic_input();
    let dir = tempfile::tempdir().unwrap();
    for kind in KINDS {
        let p = prepare(kind, &input).unwrap();
        let path = dir.path().join(format!("{}.png", kind.slug()));
        // Not readable at this size, but never a panic.
        let r = match &p {
            Prepared::Heat(h) => heatmap::render_heatmap(h, &path, (320, 240)),
            Prepared::Chart(f) => crate::plot::draw::draw_figure(f, &path, (320, 240)),
        };
        r.unwrap_or_else(|e| panic!("{}: {e}", kind.slug()));
        assert_png(&path, (320, 240));
    }
}
