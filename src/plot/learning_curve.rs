//! Figure 8: the learning curve (Hestness et al. 2017, arXiv 1712.00409): test error against
//! the training-set size N, log–log, with the fitted power law α·N^β + γ, its floor γ and the
//! chance error. A straight stretch on log–log axes is the power-law region; the curve bends to
//! γ at the floor.

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::geometry::sample_grid;
use super::labels;
use super::style::{Rgb, Shape, series_color};
use super::{SkipReason, format};
use crate::fit::{FitReport, LearningCurveSection};

/// α·N^β + γ.
pub fn power_law(lc: &LearningCurveSection, n: f64) -> f64 {
    lc.alpha * n.powf(lc.beta) + lc.gamma
}

/// Prepares figure 8 from the learning-curve section.
pub fn prepare_learning_curve(fit: &FitReport) -> Result<Figure, SkipReason> {
    let lc = fit.learning_curve.fitted().ok_or_else(|| {
        format!(
            "no learning-curve fit: {}",
            fit.learning_curve.reason().unwrap_or("skipped")
        )
    })?;
    if lc.points.is_empty() {
        return Err("the learning curve has no points".into());
    }
    let held_out: Vec<(f64, f64)> = lc
        .points
        .iter()
        .filter_map(|p| Some((p.train_size as f64, p.held_out_error?)))
        .collect();
    let errors: Vec<f64> = lc
        .points
        .iter()
        .map(|p| p.error)
        .chain(held_out.iter().map(|h| h.1))
        .collect();
    // Log–log when every error is positive (an error of 0 has no logarithm).
    let y_scale = if errors.iter().all(|&e| e > 0.0) {
        Scale::Log10
    } else {
        Scale::Linear
    };
    let metric = fit.options.metric;
    let y_label = if metric.is_accuracy() {
        format!(
            "error = 1 − {} (fraction wrong)",
            labels::metric_name(metric)
        )
    } else {
        format!("{} (nats)", labels::metric_name(metric))
    };
    let mut p = Panel::new(
        Axis::new("training-set size N (examples)", Scale::Log10),
        Axis::new(y_label, y_scale),
    );
    let (nmin, nmax) = lc
        .points
        .iter()
        .map(|p| p.train_size as f64)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), n| {
            (l.min(n), h.max(n))
        });
    let grid = sample_grid(Scale::Log10, nmin / 1.25, nmax * 1.25, 100, &[]);
    let curve: Vec<(f64, f64)> = grid.iter().map(|&n| (n, power_law(lc, n))).collect();
    let beta_ci = lc
        .beta_interval
        .map(|iv| format!(" {}", iv.display(format::slope)))
        .unwrap_or_default();
    let level = lc
        .beta_interval
        .map(|iv| format!(" ({} interval)", format::percent(iv.level, 0)))
        .unwrap_or_default();
    if let Some(chance) = lc.chance_error {
        p.layers.push(
            Layer::hline("chance", Rgb::GREY, chance)
                .setting_range()
                .labelled(format!("chance error {}", format::sig(chance, 3))),
        );
    }
    if lc.gamma > 0.0 {
        p.layers.push(
            Layer::hline("floor", series_color(2), lc.gamma)
                .setting_range()
                .labelled(format!(
                    "irreducible floor γ = {}",
                    format::sig(lc.gamma, 3)
                )),
        );
    }
    p.layers.push(
        Layer::line("fit", series_color(1), curve)
            .follows_range()
            .labelled(format!(
                "fit {}·N^β + {}: β = {}{beta_ci}{level}",
                format::sig(lc.alpha, 3),
                format::sig(lc.gamma, 3),
                format::slope(lc.beta)
            )),
    );
    p.layers.push(
        Layer::markers(
            "data",
            series_color(0),
            lc.points
                .iter()
                .map(|p| (p.train_size as f64, p.error))
                .collect(),
            Shape::Circle,
            true,
        )
        .sized(8)
        .labelled("best configuration per N (seed mean; fitted)"),
    );
    if !held_out.is_empty() {
        p.layers.push(
            Layer::markers("held-out", series_color(0), held_out, Shape::Square, false)
                .sized(8)
                .labelled("held-out: chosen on the other seeds, scored on one"),
        );
    }
    let regions: Vec<&str> = lc.regions_covered.iter().map(|r| r.name()).collect();
    let mut footnote = format!(
        "Each filled point: the best (cell, B) at that N, its seed mean (optimistic: chosen for \
         being low); the curve is fitted to these. Each open square: leave-one-seed-out, the \
         configuration chosen on the other seeds scored on the held-out seed, averaged over \
         seeds. Regions the data cover: {} (rule: {}).",
        regions.join(", "),
        lc.region_rule
    );
    if y_scale == Scale::Linear {
        footnote.push_str(" Linear error axis: some error is 0.");
    }
    if let Some(note) = &lc.note {
        footnote.push_str(&format!(" {note}."));
    }
    Ok(Figure {
        title: "Learning curve: test error against N (Hestness et al. 2017)".into(),
        panels: vec![p],
        columns: 1,
        footnote: Some(footnote),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn points_and_power_law_match_the_fit() {
        let (_, fit) = testdata::synthetic();
        let lc = fit.learning_curve.fitted().unwrap();
        let fig = prepare_learning_curve(&fit).unwrap();
        let p = &fig.panels[0];
        assert_eq!(p.y.scale, Scale::Log10);
        let data = p.layer("data").unwrap().xy();
        assert_eq!(data.len(), testdata::NS.len());
        for (d, pt) in data.iter().zip(&lc.points) {
            assert_eq!(*d, (pt.train_size as f64, pt.error));
        }
        // Three seeds at every N: every point has its held-out marker, above the best mean
        // where the best mean is optimistic.
        let held = p.layer("held-out").unwrap().xy();
        assert_eq!(held.len(), lc.points.len());
        for (h, pt) in held.iter().zip(&lc.points) {
            assert_eq!(*h, (pt.train_size as f64, pt.held_out_error.unwrap()));
        }
        for &(n, e) in p.layer("fit").unwrap().xy() {
            assert!((e - (lc.alpha * n.powf(lc.beta) + lc.gamma)).abs() < 1e-12);
        }
        // At each data N the curve is the section's fitted value.
        for pt in &lc.points {
            assert!((power_law(lc, pt.train_size as f64) - pt.fitted).abs() < 1e-9);
        }
        assert!(fig.legend().iter().any(|e| e.label.contains("β = ")));
        // Planted: error = 3·N^−0.45 + 0.04 at the peak; the best grid point is a bit worse,
        // so β comes back negative and of that order.
        assert!(lc.beta < -0.2 && lc.beta > -0.8, "β = {}", lc.beta);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig8.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }
}
