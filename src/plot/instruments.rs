//! Figures 9 and 10: the instruments.
//!
//! 9. The gradient noise scale B_simple over training (McCandlish et al. 2018) for one run per
//!    cell, with that cell's B_opt (dashed, same colour) and the critical batch size B_crit
//!    (grey, dotted) fitted from the same sweep: the theory puts B_crit near B_noise ≈ B_simple.
//!    Where runs measured B_noise, its pooled figures are in the footnote.
//!    A withheld reading (stored as NULL: |G|² ≤ 0, B_simple beyond what B_big resolves, or
//!    tr(Σ) < 0, no measurable noise) breaks the line and is marked at the frame's top or
//!    bottom: joining across it would draw a value that was never measured.
//! 10. The selected metric against the top Hessian eigenvalue at initialisation, one point per
//!     run, coloured by (cell, B) group, with the within-group rank correlation in the title
//!     (Kuzborskij & Lampert 2017: a flatter start should generalise better).

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::style::{Rgb, Shape, series_color};
use super::{SkipReason, format, labels};
use crate::fit::{BSimplePoint, Censor, FitReport, RunInput, WithheldReading};

/// The (epoch, B_simple) points of a line through a run's readings, with (epoch, NaN) at each
/// withheld epoch between or around them, so that the line breaks there.
pub fn line_with_gaps(points: &[BSimplePoint], withheld: &[WithheldReading]) -> Vec<(f64, f64)> {
    let mut out: Vec<(u32, f64)> = points
        .iter()
        .map(|p| (p.epoch, p.b_simple))
        .chain(withheld.iter().map(|w| (w.epoch, f64::NAN)))
        .collect();
    out.sort_by_key(|p| p.0);
    out.into_iter().map(|(e, v)| (e as f64, v)).collect()
}

/// Prepares figure 9 from the instruments, B_opt and efficiency sections; `runs` give each
/// plotted run's withheld readings.
pub fn prepare_noise_scale(fit: &FitReport, runs: &[RunInput]) -> Result<Figure, SkipReason> {
    let inst = fit.instruments.fitted().ok_or_else(|| {
        format!(
            "no instruments: {}",
            fit.instruments.reason().unwrap_or("skipped")
        )
    })?;
    let ns = inst.noise_scale.fitted().ok_or_else(|| {
        format!(
            "no noise-scale readings: {}",
            inst.noise_scale.reason().unwrap_or("skipped")
        )
    })?;
    if ns.series.is_empty() {
        return Err("no run has B_simple readings to draw".into());
    }
    let mut p = Panel::new(
        Axis::new("epoch (passes over the training set)", Scale::Linear),
        Axis::new("batch size (examples)", Scale::Log10),
    );
    let bopt = fit.bopt.fitted();
    let (mut any_beyond, mut any_none) = (false, false);
    // Rows of carets at the top and at the bottom: one per series that has some.
    let (mut top_rows, mut bottom_rows) = (0u32, 0u32);
    for (i, s) in ns.series.iter().enumerate() {
        let colour = series_color(i);
        let withheld: &[WithheldReading] = runs
            .iter()
            .find(|r| r.run_id == s.run_id)
            .map_or(&[], |r| &r.instruments.b_simple_withheld);
        p.layers.push(
            Layer::line(
                format!("bsimple-{i}"),
                colour,
                line_with_gaps(&s.points, withheld),
            )
            .labelled(format!(
                "B_simple, {} (run at B = {})",
                s.cell, s.batch_size
            )),
        );
        // Every reading a point, so that one between two withheld epochs is seen.
        p.layers.push(
            Layer::markers(
                format!("readings-{i}"),
                colour,
                s.points
                    .iter()
                    .map(|q| (q.epoch as f64, q.b_simple))
                    .collect(),
                Shape::Circle,
                true,
            )
            .sized(4),
        );
        for (beyond, side) in [(true, "top"), (false, "bottom")] {
            let xs: Vec<f64> = withheld
                .iter()
                .filter(|w| w.beyond == beyond)
                .map(|w| w.epoch as f64)
                .collect();
            if !xs.is_empty() {
                any_beyond |= beyond;
                any_none |= !beyond;
                let rows = if beyond {
                    &mut top_rows
                } else {
                    &mut bottom_rows
                };
                p.layers.push(Layer::edge_marks(
                    format!("withheld-{side}-{i}"),
                    colour,
                    xs,
                    beyond,
                    *rows,
                ));
                *rows += 1;
            }
        }
        if let Some(cell) = bopt.and_then(|b| b.cells.iter().find(|c| c.cell == s.cell)) {
            p.layers.push(
                Layer::hline(format!("bopt-{i}"), colour, cell.b_opt)
                    .dashed(true)
                    .setting_range()
                    .labelled(format!(
                        "B_opt of {} {}{}",
                        s.cell,
                        match cell.censored {
                            None => "= ",
                            Some(Censor::Low) => "≤ ",
                            Some(Censor::High) => "≥ ",
                        },
                        format::sig(cell.b_opt, 3),
                    )),
            );
        }
    }
    // Legend-only entries for the carets (black: they apply to every colour).
    if any_beyond {
        p.layers.push(
            Layer::edge_marks("legend/beyond", Rgb::BLACK, vec![], true, 0)
                .labelled("withheld: beyond what B_big resolves (|G|² ≤ 0)"),
        );
    }
    if any_none {
        p.layers.push(
            Layer::edge_marks("legend/no-noise", Rgb::BLACK, vec![], false, 0)
                .labelled("withheld: no measurable noise (tr(Σ) < 0)"),
        );
    }
    if let Some(eff) = fit.efficiency.fitted()
        && let Some(t) = eff.fits.last()
        && t.b_crit_bound().is_none()
    {
        p.layers.push(
            Layer::hline("bcrit", Rgb::GREY, t.b_crit)
                .dashed(true)
                .setting_range()
                .labelled(format!(
                    "B_crit at target {} = {}",
                    format::sig(t.target, 3),
                    format::sig(t.b_crit, 3)
                )),
        );
    }
    let marks: Vec<&str> = [
        (
            any_beyond,
            "▲ at the top where |G|² came out ≤ 0 (B_simple beyond what B_big resolves)",
        ),
        (
            any_none,
            "▼ at the bottom where tr(Σ) < 0 (no measurable noise)",
        ),
    ]
    .into_iter()
    .filter_map(|(any, what)| any.then_some(what))
    .collect();
    let withheld = if marks.is_empty() {
        String::new()
    } else {
        format!(
            " A withheld reading breaks the line and is marked in the run's colour (one row per \
             run): {}.",
            marks.join("; ")
        )
    };
    let trend = match (
        ns.median_rank_correlation,
        ns.describe_growing(|s| format::percent(s, 0)),
    ) {
        (Some(r), Some(growing)) => format!(
            " Median Spearman ρ(B_simple, training loss) = {}: B_simple grows as the loss \
             falls {growing}.",
            format::sig(r, 2),
        ),
        _ => String::new(),
    };
    let b_noise = ns.b_noise.as_ref().map_or_else(String::new, |b| {
        format!(
            " Summed over runs before dividing (a single reading is noisy): {}.",
            b.describe(|v| format::sig(v, 3))
        )
    });
    Ok(Figure {
        title: "Gradient noise scale over training (McCandlish et al. 2018)".into(),
        panels: vec![p],
        columns: 1,
        footnote: Some(format!(
            "B_simple = tr(Σ)/|G|² from mean gradients at two batch sizes (App. A.1), each \
             epoch's pairs averaged; one run per cell (nearest its best B, lowest seed), a dot \
             per reading.{withheld} Over all runs: {}.{trend}{b_noise}",
            ns.describe_medians(|v| format::sig(v, 3))
        )),
    })
}

/// Prepares figure 10 from the curvature summary.
pub fn prepare_curvature(fit: &FitReport) -> Result<Figure, SkipReason> {
    let inst = fit.instruments.fitted().ok_or_else(|| {
        format!(
            "no instruments: {}",
            fit.instruments.reason().unwrap_or("skipped")
        )
    })?;
    let c = inst.curvature.fitted().ok_or_else(|| {
        format!(
            "no curvature comparison: {}",
            inst.curvature.reason().unwrap_or("skipped")
        )
    })?;
    let x_scale = if c.points.iter().all(|p| p.top_eigenvalue > 0.0) {
        Scale::Log10
    } else {
        Scale::Linear
    };
    let mut p = Panel::new(
        Axis::new(
            "top Hessian eigenvalue of the training loss at initialisation",
            x_scale,
        ),
        labels::metric_axis(fit),
    );
    let mut groups: Vec<&str> = c.points.iter().map(|p| p.group.as_str()).collect();
    groups.sort();
    groups.dedup();
    for (i, g) in groups.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .filter(|p| p.group == *g)
            .map(|p| (p.top_eigenvalue, p.value))
            .collect();
        p.layers.push(
            Layer::markers(
                format!("group-{i}"),
                series_color(i),
                pts,
                Shape::Circle,
                true,
            )
            .sized(8)
            .labelled(g.to_string()),
        );
    }
    let iv = c
        .interval
        .map(|i| format!(" [{}, {}]", format::sig(i.lo, 2), format::sig(i.hi, 2)))
        .unwrap_or_default();
    Ok(Figure {
        title: format!(
            "{} against curvature at initialisation: ρ = {}{iv}",
            labels::metric_title(fit.options.metric),
            format::sig(c.rho, 2)
        ),
        panels: vec![p],
        columns: 1,
        footnote: Some(format!(
            "{}. One point per run; within a colour only the seed (initial weights, data order) \
             differs.",
            c.statement
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::chart::LayerKind;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn noise_scale_figure_holds_the_series_and_each_cells_b_opt() {
        let (runs, fit) = testdata::synthetic();
        let inst = fit.instruments.fitted().unwrap();
        let ns = inst.noise_scale.fitted().unwrap();
        let fig = prepare_noise_scale(&fit, &runs).unwrap();
        let p = &fig.panels[0];
        for (i, s) in ns.series.iter().enumerate() {
            let line = p.layer(&format!("bsimple-{i}")).unwrap().xy();
            let want: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|q| (q.epoch as f64, q.b_simple))
                .collect();
            assert_eq!(line, &want[..]);
            let cell = fit
                .bopt
                .fitted()
                .unwrap()
                .cells
                .iter()
                .find(|c| c.cell == s.cell)
                .unwrap();
            match &p.layer(&format!("bopt-{i}")).unwrap().kind {
                LayerKind::HLine { y, .. } => assert_eq!(*y, cell.b_opt),
                other => panic!("{other:?}"),
            }
        }
        // Nothing withheld in the synthetic runs: no carets, no legend entry for them.
        assert!(p.layers.iter().all(|l| !l.key.starts_with("withheld-")));
        assert!(!fig.legend().iter().any(|e| e.label.starts_with("withheld")));
        // Planted: B_simple grows as the loss falls in every run.
        assert_eq!(ns.share_growing, Some(1.0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig9.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }

    /// Regression (noise-scale sweep, run 6518ba8e: NULL at epochs 7–12, 14 and 20): the line
    /// was drawn straight from epoch 6 to 13 across the withheld readings, and the withheld
    /// last epoch was not shown at all.
    #[test]
    fn withheld_readings_break_the_line_and_are_marked_at_the_frame() {
        let (mut runs, fit) = testdata::synthetic();
        let (withheld_at, no_noise_at) = ([6u32, 7], 4u32);
        let id = fit
            .instruments
            .fitted()
            .unwrap()
            .noise_scale
            .fitted()
            .unwrap()
            .series[0]
            .run_id
            .clone();
        let r = runs.iter_mut().find(|r| r.run_id == id).unwrap();
        assert_eq!(r.instruments.b_simple.len(), 9, "epochs 0–8 read");
        let ins = &mut r.instruments;
        ins.b_simple
            .retain(|p| !withheld_at.contains(&p.epoch) && p.epoch != no_noise_at);
        ins.b_simple_withheld = withheld_at
            .iter()
            .map(|&epoch| (epoch, true))
            .chain([(no_noise_at, false)])
            .map(|(epoch, beyond)| WithheldReading {
                epoch,
                beyond,
                train_loss: None,
            })
            .collect();
        let fit = crate::fit::fit_all(&runs, &testdata::test_options());
        let ns = fit
            .instruments
            .fitted()
            .unwrap()
            .noise_scale
            .fitted()
            .unwrap();
        let i = ns
            .series
            .iter()
            .position(|s| s.run_id == id)
            .expect("the edited run is plotted");
        let fig = prepare_noise_scale(&fit, &runs).unwrap();
        let p = &fig.panels[0];
        // The line has a gap (NaN) at each withheld epoch: it cannot join 3 to 5 or 5 to 8;
        // the readings at 5 and 8 stand alone.
        let line = p.layer(&format!("bsimple-{i}")).unwrap().xy();
        for e in [4.0, 6.0, 7.0] {
            let at = line
                .iter()
                .find(|q| q.0 == e)
                .expect("the epoch is in the line");
            assert!(at.1.is_nan(), "epoch {e}: {at:?}");
        }
        let runs_drawn = crate::plot::geometry::transform_runs(line, Scale::Linear, Scale::Log10);
        assert_eq!(runs_drawn.len(), 3, "{runs_drawn:?}");
        // Every reading is a dot; the withheld epochs are carets at the top (beyond) and the
        // bottom (no measurable noise), and the legend says what they mean.
        let dots = p.layer(&format!("readings-{i}")).unwrap().xy();
        assert_eq!(dots.len(), ns.series[i].points.len());
        match &p.layer(&format!("withheld-top-{i}")).unwrap().kind {
            LayerKind::EdgeMarks { xs, top, .. } => {
                assert_eq!((xs.as_slice(), *top), (&[6.0, 7.0][..], true))
            }
            k => panic!("{k:?}"),
        }
        match &p.layer(&format!("withheld-bottom-{i}")).unwrap().kind {
            LayerKind::EdgeMarks { xs, top, .. } => {
                assert_eq!((xs.as_slice(), *top), (&[4.0][..], false))
            }
            k => panic!("{k:?}"),
        }
        let legend = fig.legend();
        assert!(
            legend
                .iter()
                .any(|e| e.label.contains("beyond what B_big resolves"))
        );
        assert!(
            legend
                .iter()
                .any(|e| e.label.contains("no measurable noise"))
        );
        assert!(!fig.footnote.as_deref().unwrap().contains("are not drawn"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig9.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }

    #[test]
    fn curvature_figure_has_one_point_per_run() {
        let (_, fit) = testdata::synthetic();
        let c = fit
            .instruments
            .fitted()
            .unwrap()
            .curvature
            .fitted()
            .unwrap();
        let fig = prepare_curvature(&fit).unwrap();
        let shown: usize = fig.panels[0].layers.iter().map(|l| l.xy().len()).sum();
        assert_eq!(shown, c.points.len());
        assert!(fig.title.contains("ρ = "));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig10.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }
}
