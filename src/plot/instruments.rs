//! Figures 9 and 10: the instruments.
//!
//! 9. The gradient noise scale B_simple over training (McCandlish et al. 2018) for one run per
//!    cell, with that cell's B_opt (dashed, same colour) and the critical batch size B_crit
//!    (grey, dotted) fitted from the same sweep: the theory puts B_crit near B_noise ≈ B_simple.
//! 10. The selected metric against the top Hessian eigenvalue at initialisation, one point per
//!     run, coloured by (cell, B) group, with the within-group rank correlation in the title
//!     (Kuzborskij & Lampert 2017: a flatter start should generalise better).

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::style::{Rgb, Shape, series_color};
use super::{SkipReason, format, labels};
use crate::fit::FitReport;

/// Prepares figure 9 from the instruments, B_opt and efficiency sections.
pub fn prepare_noise_scale(fit: &FitReport) -> Result<Figure, SkipReason> {
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
    for (i, s) in ns.series.iter().enumerate() {
        let colour = series_color(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (p.epoch as f64, p.b_simple))
            .collect();
        p.layers.push(
            Layer::line(format!("bsimple-{i}"), colour, pts).labelled(format!(
                "B_simple, {} (run at B = {})",
                s.cell, s.batch_size
            )),
        );
        if let Some(cell) = bopt.and_then(|b| b.cells.iter().find(|c| c.cell == s.cell)) {
            p.layers.push(
                Layer::hline(format!("bopt-{i}"), colour, cell.b_opt)
                    .dashed(true)
                    .setting_range()
                    .labelled(format!(
                        "B_opt of {} = {}{}",
                        s.cell,
                        format::sig(cell.b_opt, 3),
                        if cell.censored.is_some() {
                            " (edge)"
                        } else {
                            ""
                        }
                    )),
            );
        }
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
    let trend = match (ns.median_rank_correlation, ns.share_growing) {
        (Some(r), Some(s)) => format!(
            " Median Spearman ρ(B_simple, training loss) = {}: B_simple grows as the loss \
             falls in {} of the runs.",
            format::sig(r, 2),
            format::percent(s, 0)
        ),
        _ => String::new(),
    };
    Ok(Figure {
        title: "Gradient noise scale over training (McCandlish et al. 2018)".into(),
        panels: vec![p],
        columns: 1,
        footnote: Some(format!(
            "B_simple = tr(Σ)/|G|² from mean gradients at two batch sizes (App. A.1), each \
             epoch's pairs averaged; one run per cell (nearest its best B, lowest seed); \
             readings withheld (|G|² or tr(Σ) below zero) are not drawn. Over all runs: {}.{trend}",
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
        let (_, fit) = testdata::synthetic();
        let inst = fit.instruments.fitted().unwrap();
        let ns = inst.noise_scale.fitted().unwrap();
        let fig = prepare_noise_scale(&fit).unwrap();
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
        // Planted: B_simple grows as the loss falls in every run.
        assert_eq!(ns.share_growing, Some(1.0));
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
