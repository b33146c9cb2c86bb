//! Figure 7: steps and examples to reach a target against batch size, with the fitted
//! trade-off S(B) = S_min(1 + B_crit/B), E(B) = B·S(B) = E_min(1 + B/B_crit) and B_crit marked
//! (McCandlish et al. 2018, arXiv 1812.06162; Shallue et al. 2018, arXiv 1811.03600: perfect
//! scaling below B_crit, diminishing returns around it, no gain far above).

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::geometry::{cut_at_frame, sample_grid};
use super::labels;
use super::style::{Rgb, series_color, series_shape};
use super::{SkipReason, format};
use crate::fit::{FitReport, TargetFit};

/// S(B) = S_min(1 + B_crit/B) (McCandlish et al. 2018, eq. 2.11).
pub fn steps_at(f: &TargetFit, b: f64) -> f64 {
    f.s_min * (1.0 + f.b_crit / b)
}

/// E(B) = B·S(B) = S_min(B + B_crit) = E_min(1 + B/B_crit).
pub fn examples_at(f: &TargetFit, b: f64) -> f64 {
    b * steps_at(f, b)
}

/// At most this many training-set sizes (columns) and targets per size.
pub const MAX_SIZES: usize = 3;
pub const MAX_TARGETS: usize = 4;

/// Picks at most [`MAX_SIZES`] of the sorted sizes: all, or the smallest, a middle and the
/// largest.
fn pick_sizes(sizes: &[u64]) -> Vec<u64> {
    if sizes.len() <= MAX_SIZES {
        sizes.to_vec()
    } else {
        vec![sizes[0], sizes[sizes.len() / 2], sizes[sizes.len() - 1]]
    }
}

/// Prepares figure 7 from the efficiency section: for each training-set size (a column, at
/// most [`MAX_SIZES`]) a panel of steps and one of examples against B, one colour per target.
pub fn prepare_efficiency(fit: &FitReport) -> Result<Figure, SkipReason> {
    let sec = fit.efficiency.fitted().ok_or_else(|| {
        format!(
            "no critical-batch-size fit: {}",
            fit.efficiency.reason().unwrap_or("skipped")
        )
    })?;
    if sec.fits.is_empty() {
        let why = sec
            .skipped
            .first()
            .map(|s| format!(": {}", s.reason))
            .unwrap_or_default();
        return Err(format!("no target could be fitted{why}"));
    }
    let metric = fit.options.metric;
    let mut sizes: Vec<u64> = sec.fits.iter().map(|f| f.train_size).collect();
    sizes.sort();
    sizes.dedup();
    let shown = pick_sizes(&sizes);
    let several = shown.len() > 1;
    let mut steps_row = Vec::new();
    let mut examples_row = Vec::new();
    // (N, targets not drawn) per shown size.
    let mut dropped_targets: Vec<(u64, usize)> = Vec::new();
    for &n in &shown {
        let prefix = if several {
            format!("N = {}: ", format::int(n))
        } else {
            String::new()
        };
        let mut steps = Panel::new(
            labels::batch_axis(),
            Axis::new(
                "parameter updates to reach the target (steps)",
                Scale::Log10,
            ),
        );
        steps.title = Some(format!("{prefix}steps S"));
        let mut examples = Panel::new(
            labels::batch_axis(),
            Axis::new("training examples to reach the target", Scale::Log10),
        );
        examples.title = Some(format!("{prefix}examples E = B·S"));
        let fits: Vec<&TargetFit> = sec.fits.iter().filter(|f| f.train_size == n).collect();
        if fits.len() > MAX_TARGETS {
            dropped_targets.push((n, fits.len() - MAX_TARGETS));
        }
        for (i, f) in fits.into_iter().take(MAX_TARGETS).enumerate() {
            let colour = series_color(i);
            let target = format!("target {}", format::metric(f.target, metric));
            let name = if several {
                format!("N = {}, {target}", format::int(n))
            } else {
                target
            };
            let ci = f
                .b_crit_interval
                .map(|iv| format!(" {}", format::interval(&iv, |v| format::sig(v, 3))))
                .unwrap_or_default();
            let bound = f.b_crit_bound();
            let label = match bound {
                Some(b) => format!("{name}: B_crit {}", b.describe()),
                None => format!("{name}: B_crit = {}{ci}", format::sig(f.b_crit, 3)),
            };
            let (bmin, bmax) = f
                .points
                .iter()
                .map(|p| p.batch_size as f64)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), b| {
                    (l.min(b), h.max(b))
                });
            let marks: &[f64] = if bound.is_some() { &[] } else { &[f.b_crit] };
            let grid = sample_grid(Scale::Log2, bmin, bmax, 80, marks);
            let shape = series_shape(i);
            let key = format!("{n}/{i}");
            for (panel, measured, model, what) in [
                (
                    &mut steps,
                    f.points
                        .iter()
                        .map(|p| (p.batch_size as f64, p.steps))
                        .collect::<Vec<_>>(),
                    steps_at as fn(&TargetFit, f64) -> f64,
                    "steps",
                ),
                (
                    &mut examples,
                    f.points
                        .iter()
                        .map(|p| (p.batch_size as f64, p.examples))
                        .collect(),
                    examples_at,
                    "examples",
                ),
            ] {
                let curve: Vec<(f64, f64)> = grid.iter().map(|&b| (b, model(f, b))).collect();
                panel.layers.push(
                    Layer::line(format!("{what}-fit/{key}"), colour, curve)
                        .sized(2)
                        .widening_range(),
                );
                panel.layers.push(
                    Layer::markers(format!("{what}/{key}"), colour, measured, shape, true)
                        .sized(6)
                        .labelled(label.clone()),
                );
                // A B_crit far off the grid is a bound, not a place to mark.
                if bound.is_none() {
                    panel.layers.push(Layer::vline(
                        format!("{what}-bcrit/{key}"),
                        colour,
                        f.b_crit,
                    ));
                }
            }
        }
        steps_row.push(steps);
        examples_row.push(examples);
    }
    // Legend-only samples for the line styles every series shares (on the last panel, so they
    // close the legend).
    if let Some(last) = examples_row.last_mut() {
        last.layers.push(
            Layer::line("legend/fit", Rgb::GREY, vec![])
                .sized(2)
                .labelled("fitted S = S_min(1 + B_crit/B), E = B·S"),
        );
        // Only where some B_crit line is drawn (a bound far off the grid has none).
        if sec.fits.iter().any(|f| f.b_crit_bound().is_none()) {
            last.layers
                .push(Layer::vline("legend/bcrit", Rgb::GREY, f64::NAN).labelled("B_crit"));
        }
    }
    let mut footnote = format!(
        "Points: the fastest run per batch size (any ε, m) to reach each target, curves \
         smoothed by their running best; B_crit = E_min/S_min. Targets {}.",
        if sec.targets_auto {
            "chosen from the data"
        } else {
            "as given"
        }
    );
    let omitted: Vec<String> = sizes
        .iter()
        .filter(|n| !shown.contains(n))
        .map(|&n| format!("N = {}", format::int(n)))
        .collect();
    if !omitted.is_empty() {
        footnote.push_str(&format!(
            " Showing {} of {} training-set sizes (the smallest, a middle and the largest; more \
             columns would be too narrow to read): not drawn {}; every fit is in the table.",
            shown.len(),
            sizes.len(),
            omitted.join(", ")
        ));
    }
    if !dropped_targets.is_empty() {
        let which: Vec<String> = dropped_targets
            .iter()
            .map(|(n, k)| format!("{k} at N = {}", format::int(*n)))
            .collect();
        footnote.push_str(&format!(
            " At most {MAX_TARGETS} targets per size: not drawn {}; every fit is in \
             the table.",
            which.join(", ")
        ));
    }
    let panels_cut = steps_row
        .iter()
        .chain(&examples_row)
        .any(|p| !cut_at_frame(p).is_empty());
    if panels_cut {
        footnote.push_str(" A fitted curve that runs beyond the frame is cut there.");
    }
    // Automatic targets that measure only late training say so (the table says where each lies).
    let late: Vec<String> = sec
        .auto_ranges
        .iter()
        .filter(|r| shown.contains(&r.train_size))
        .filter_map(|r| {
            r.measurable()
                .filter(|&share| share < 0.5)
                .map(|share| format!("{:.0}% at N = {}", 100.0 * share, r.train_size))
        })
        .collect();
    if !late.is_empty() {
        footnote.push_str(&format!(
            " Automatic targets cover only the last part of the progress from initialisation \
             ({}): the rest is reached inside the first epoch, where steps are unknown.",
            late.join(", ")
        ));
    }
    let columns = if several { shown.len() } else { 2 };
    // Row-major grid: the steps row, then the examples row (one panel each with one size).
    let panels = steps_row.into_iter().chain(examples_row).collect();
    Ok(Figure {
        title: "Steps and examples to a target against batch size (McCandlish et al. 2018)".into(),
        panels,
        columns,
        footnote: Some(footnote),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::AutoRange;
    use crate::plot::chart::LayerKind;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn curves_follow_the_fitted_trade_off() {
        let (_, fit) = testdata::synthetic();
        let sec = fit.efficiency.fitted().unwrap();
        let fig = prepare_efficiency(&fit).unwrap();
        // The sizes with a fit (automatic targets lie beyond every run's first evaluation; at
        // N = 4,000 the synthetic curves leave none: skipped) → one column each, steps row then
        // examples row.
        let mut sizes: Vec<u64> = sec.fits.iter().map(|f| f.train_size).collect();
        sizes.dedup();
        assert_eq!(sizes, [1000, 2000, 8000]);
        assert!(sec.skipped.iter().any(|s| s.train_size == 4000));
        assert_eq!((fig.columns, fig.panels.len()), (3, 6));
        let mut checked = 0;
        for (col, &n) in sizes.iter().enumerate() {
            let fits: Vec<_> = sec.fits.iter().filter(|f| f.train_size == n).collect();
            for (i, f) in fits.iter().enumerate().take(MAX_TARGETS) {
                let key = format!("{n}/{i}");
                let s = fig.panels[col]
                    .layer(&format!("steps-fit/{key}"))
                    .unwrap()
                    .xy();
                let e = fig.panels[sizes.len() + col]
                    .layer(&format!("examples-fit/{key}"))
                    .unwrap()
                    .xy();
                for (&(b, sv), &(b2, ev)) in s.iter().zip(e) {
                    assert_eq!(b, b2);
                    assert!((sv - f.s_min * (1.0 + f.b_crit / b)).abs() < 1e-9 * sv);
                    assert!((ev - b * sv).abs() < 1e-9 * ev);
                    // E = E_min(1 + B/B_crit) as well.
                    assert!((ev - f.e_min * (1.0 + b / f.b_crit)).abs() < 1e-6 * ev);
                }
                // At B = B_crit (sampled exactly when inside the data): S = 2·S_min.
                if let Some(&(_, sv)) = s.iter().find(|p| p.0 == f.b_crit) {
                    assert!((sv - 2.0 * f.s_min).abs() < 1e-9 * sv);
                }
                match &fig.panels[col]
                    .layer(&format!("steps-bcrit/{key}"))
                    .unwrap()
                    .kind
                {
                    LayerKind::VLine { x, .. } => assert_eq!(*x, f.b_crit),
                    k => panic!("{k:?}"),
                }
                let pts = fig.panels[col].layer(&format!("steps/{key}")).unwrap().xy();
                assert_eq!(pts.len(), f.points.len());
                checked += 1;
            }
        }
        assert!(checked >= 3);
        // The synthetic curves are nearly flat after their first epoch at N = 8,000 (the three
        // targets there all read 0.9066): the footnote says how little the targets measure.
        let share = |n: u64| {
            sec.auto_ranges
                .iter()
                .find(|r| r.train_size == n)
                .and_then(AutoRange::measurable)
                .unwrap()
        };
        assert!(
            share(8000) < 0.001 && share(1000) > 0.1,
            "{:?}",
            sec.auto_ranges
        );
        let foot = fig.footnote.as_deref().unwrap();
        assert!(
            foot.contains("0% at N = 8000") && foot.contains("15% at N = 1000"),
            "{foot}"
        );
        // The planted B_crit (256) is recovered within a factor 2 for the lowest target at
        // the smallest N (the curves there saturate within the epochs run).
        let f = &sec.fits[0];
        assert!(f.b_crit > 128.0 && f.b_crit < 512.0, "{}", f.b_crit);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig7.png");
        draw_figure(&fig, &path, fig.preferred_size()).unwrap();
        assert_png(&path, fig.preferred_size());
    }

    /// More sizes than columns: the smallest, middle and largest are drawn, and the footnote
    /// says how many of how many.
    #[test]
    fn four_sizes_show_three_and_say_so() {
        let (_, mut fit) = testdata::synthetic();
        let crate::fit::Outcome::Fitted(sec) = &mut fit.efficiency else {
            panic!("no efficiency fit");
        };
        let extra: Vec<_> = sec
            .fits
            .iter()
            .filter(|f| f.train_size == 2000)
            .map(|f| {
                let mut f = f.clone();
                f.train_size = 4000;
                f
            })
            .collect();
        sec.fits.extend(extra);
        let fig = prepare_efficiency(&fit).unwrap();
        assert_eq!((fig.columns, fig.panels.len()), (3, 6));
        let foot = fig.footnote.as_deref().unwrap();
        assert!(foot.contains("3 of 4"), "{foot}");
        // Which size is left out, by name (regression: smith-le said only "3 of 4").
        assert!(foot.contains("not drawn N = 2,000"), "{foot}");
    }
}
