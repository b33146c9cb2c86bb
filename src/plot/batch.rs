//! Figure 1: the metric against batch size, one line per learning rate, with B_opt marked
//! (Smith & Le 2017, arXiv 1710.06451: at fixed ε there is a batch size that maximises test
//! accuracy).
//!
//! One panel per (N, m) combination (at most [`MAX_PANELS`]); within a panel one line per cell
//! (in practice per ε), coloured by ε consistently across panels. Lines are seed means, bands
//! the cells' t intervals, ▲ the B_opt estimate with its bootstrap interval (hollow when the
//! peak sits on the grid's edge, so B_opt is only a bound).

use std::collections::BTreeMap;

use super::chart::{Bar, Figure, Layer, Panel};
use super::geometry::band_runs;
use super::labels::{self, CellKey, Varying};
use super::style::{Rgb, Shape, series_color};
use super::{SkipReason, format};
use crate::fit::{CellBopt, FitReport};

/// More panels than this would be too small to read; the rest are named in the footnote.
pub const MAX_PANELS: usize = 6;

/// The key of a cell.
pub fn key_of(c: &CellBopt) -> CellKey {
    CellKey {
        lr: c.lr,
        train_size: c.train_size,
        momentum: c.momentum,
    }
}

/// Groups cells by (N, m), sorted by N then m. Momentum is keyed by its bits: the cells come
/// from one sweep, so equal momenta are bit-identical.
pub fn panels_by_n_m(cells: &[CellBopt]) -> Vec<((u64, f64), Vec<&CellBopt>)> {
    let mut groups: BTreeMap<(u64, u64), Vec<&CellBopt>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.train_size, c.momentum.to_bits()))
            .or_default()
            .push(c);
    }
    let mut out: Vec<((u64, f64), Vec<&CellBopt>)> = groups
        .into_iter()
        .map(|((n, m), mut v)| {
            v.sort_by(|a, b| a.lr.total_cmp(&b.lr).then(a.cell.cmp(&b.cell)));
            ((n, f64::from_bits(m)), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.0.cmp(&b.0.0).then(a.0.1.total_cmp(&b.0.1)));
    out
}

/// Columns for `n` panels: side by side up to 2, then 2 or 3 per row.
pub fn columns_for(n: usize) -> usize {
    match n {
        0..=2 => n.max(1),
        3 | 4 => 2,
        _ => 3,
    }
}

/// Prepares figure 1 from the B_opt section.
pub fn prepare_metric_vs_batch(fit: &FitReport) -> Result<Figure, SkipReason> {
    let bopt = fit
        .bopt
        .fitted()
        .ok_or_else(|| format!("no B_opt fit: {}", fit.bopt.reason().unwrap_or("skipped")))?;
    if bopt.cells.is_empty() {
        let why = bopt
            .skipped_cells
            .first()
            .map(|s| format!(" (e.g. {}: {})", s.name, s.reason))
            .unwrap_or_default();
        return Err(format!("no cell has a B_opt estimate{why}"));
    }
    let metric = fit.options.metric;
    let mut lrs: Vec<f64> = bopt.cells.iter().map(|c| c.lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    let colour_of = |lr: f64| series_color(lrs.iter().position(|&l| l == lr).unwrap_or(0));
    let groups = panels_by_n_m(&bopt.cells);
    let n_groups = groups.len();
    let several = n_groups > 1;
    let mut panels = Vec::new();
    let mut any_censored = false;
    let mut any_diverged = false;
    for ((n, m), cells) in groups.into_iter().take(MAX_PANELS) {
        let mut p = Panel::new(labels::batch_axis(), labels::metric_axis(fit));
        if several {
            p.title = Some(format!(
                "N = {}, m = {}",
                format::int(n),
                format::momentum(m)
            ));
        }
        // Drawn after every line (on top) and listed after the learning rates in the legend.
        let mut diverged_layers = Vec::new();
        // Same ε twice in a panel (different schedules): say which cell.
        let dup = |c: &CellBopt| cells.iter().filter(|o| o.lr == c.lr).count() > 1;
        for c in &cells {
            let colour = colour_of(c.lr);
            let mut label = labels::cell_label(
                &key_of(c),
                Varying {
                    lr: true,
                    ..Varying::default()
                },
            );
            if dup(c) {
                label = format!("{label} ({})", c.cell);
            }
            let bands = band_runs(
                &c.points
                    .iter()
                    .map(|p| (p.batch_size as f64, p.interval.map(|i| (i.lo, i.hi))))
                    .collect::<Vec<_>>(),
            );
            for (k, band) in bands.into_iter().enumerate() {
                p.layers.push(
                    Layer::band(format!("band/{}/{k}", c.cell), colour, band).follows_range(),
                );
            }
            let means: Vec<(f64, f64)> = c
                .points
                .iter()
                .map(|p| (p.batch_size as f64, p.mean))
                .collect();
            p.layers.push(
                Layer::line(format!("mean/{}", c.cell), colour, means.clone()).labelled(label),
            );
            p.layers.push(
                Layer::markers(
                    format!("means/{}", c.cell),
                    colour,
                    means,
                    Shape::Circle,
                    true,
                )
                .sized(4),
            );
            let diverged: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter(|p| p.n_seeds > 0 && p.n_diverged == p.n_seeds)
                .map(|p| (p.batch_size as f64, p.mean))
                .collect();
            if !diverged.is_empty() {
                any_diverged = true;
                diverged_layers.push(
                    Layer::markers(
                        format!("diverged/{}", c.cell),
                        Rgb::BLACK,
                        diverged,
                        Shape::Cross,
                        true,
                    )
                    .sized(8)
                    .labelled("every seed diverged (censored at the worst value)"),
                );
            }
            let censored = c.censored.is_some();
            any_censored |= censored;
            if let Some(iv) = c.interval {
                p.layers.push(
                    Layer::error_bars(
                        format!("bopt-ci/{}", c.cell),
                        colour,
                        vec![Bar {
                            at: c.peak_value,
                            lo: iv.lo,
                            hi: iv.hi,
                        }],
                        true,
                    )
                    .follows_range(),
                );
            }
            p.layers.push(
                Layer::markers(
                    format!("bopt/{}", c.cell),
                    colour,
                    vec![(c.b_opt, c.peak_value)],
                    Shape::Triangle,
                    !censored,
                )
                .sized(10),
            );
        }
        p.layers.extend(diverged_layers);
        panels.push(p);
    }
    // Legend-only entries for the B_opt markers (black: they apply to every colour).
    if let Some(p) = panels.first_mut() {
        p.layers.push(
            Layer::markers("legend/bopt", Rgb::BLACK, vec![], Shape::Triangle, true)
                .labelled("B_opt (vertex of the peak) with bootstrap interval"),
        );
        if any_censored {
            p.layers.push(
                Layer::markers(
                    "legend/censored",
                    Rgb::BLACK,
                    vec![],
                    Shape::Triangle,
                    false,
                )
                .labelled("B_opt at the grid's edge: only a bound"),
            );
        }
    }
    let _ = any_diverged;
    let level = format::percent(fit.options.confidence, 0);
    let mut footnote = format!(
        "Lines: seed means; bands: {level} t intervals over seeds; ▲ B_opt from a parabola in \
         log₂ B through the best grid point and its neighbours, bar: {level} bootstrap over seeds."
    );
    if n_groups > MAX_PANELS {
        footnote.push_str(&format!(
            " Showing {MAX_PANELS} of {n_groups} (N, m) combinations; every cell is in the table."
        ));
    }
    Ok(Figure {
        title: format!("{} against batch size", labels::metric_title(metric)),
        columns: columns_for(panels.len()),
        panels,
        footnote: Some(footnote),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::{fit_all, select_value};
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn lines_hold_the_seed_means_of_the_input() {
        let (runs, fit) = testdata::synthetic();
        let fig = prepare_metric_vs_batch(&fit).unwrap();
        assert_eq!(fig.panels.len(), MAX_PANELS); // 8 (N, m) combinations, 6 shown
        assert!(fig.footnote.as_deref().unwrap().contains("6 of 8"));
        // The cell ε = 0.05, N = 1000, m = 0: recompute its seed means from the runs.
        let cell = testdata::cell_name(0.05, 1000, 0.0);
        let line = fig
            .panels
            .iter()
            .find_map(|p| p.layer(&format!("mean/{cell}")))
            .expect("a line for the cell");
        let pts = line.xy();
        assert_eq!(pts.len(), testdata::batch_grid().len());
        for &(b, mean) in pts {
            let vals: Vec<f64> = runs
                .iter()
                .filter(|r| r.cell == cell && r.batch_size as f64 == b)
                .map(|r| select_value(&r.curve, fit.options.select, fit.options.metric).unwrap())
                .collect();
            let want = vals.iter().sum::<f64>() / vals.len() as f64;
            assert!((mean - want).abs() < 1e-12, "B = {b}: {mean} vs {want}");
        }
        // B_opt marker at the fitted B_opt; its colour is the line's.
        let c = fit
            .bopt
            .fitted()
            .unwrap()
            .cells
            .iter()
            .find(|c| c.cell == cell)
            .unwrap();
        let marker = fig.panels[0].layer(&format!("bopt/{cell}")).unwrap();
        assert_eq!(marker.xy(), &[(c.b_opt, c.peak_value)]);
        assert_eq!(marker.color, line.color);
        // Every ε has its own colour, the same in every panel.
        let colours: Vec<Rgb> = testdata::LRS
            .iter()
            .map(|&lr| {
                let name = testdata::cell_name(lr, 2000, 0.9);
                fig.panels
                    .iter()
                    .find_map(|p| p.layer(&format!("mean/{name}")))
                    .unwrap()
                    .color
            })
            .collect();
        assert!(colours[0] != colours[1] && colours[1] != colours[2]);
        // The all-diverged grid point (ε = 0.1, m = 0.9, B = 8) is crossed.
        let div = fig
            .panels
            .iter()
            .find_map(|p| p.layer(&format!("diverged/{}", testdata::cell_name(0.1, 1000, 0.9))))
            .unwrap();
        assert_eq!(div.xy()[0].0, 8.0);
        // Censored cells are hollow (ε = 0.025, N = 1000, m = 0 peaks at B = 10: inside; the
        // m = 0.9, N = 8000, ε = 0.1 peak at 3200 is inside too) — at least the legend says so
        // when one is censored.
        let any_censored = fit
            .bopt
            .fitted()
            .unwrap()
            .cells
            .iter()
            .any(|c| c.censored.is_some());
        assert_eq!(
            fig.legend()
                .iter()
                .any(|e| e.label.contains("only a bound")),
            any_censored
        );
    }

    #[test]
    fn renders_a_png_of_the_requested_size() {
        let (_, fit) = testdata::synthetic();
        let fig = prepare_metric_vs_batch(&fit).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig1.png");
        let size = fig.preferred_size();
        draw_figure(&fig, &path, size).unwrap();
        assert_png(&path, size);
        // Any size the caller asks for.
        draw_figure(&fig, &path, (900, 600)).unwrap();
        assert_png(&path, (900, 600));
        assert!(draw_figure(&fig, &path, (10, 10)).is_err());
    }

    #[test]
    fn one_cell_with_one_seed_still_draws() {
        let runs: Vec<_> = [8u64, 16, 32]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                testdata::rising_run("c", 0.1, 1000, 0.0, b, 0, 0.5 + 0.1 * i as f64, false)
            })
            .collect();
        let fit = fit_all(&runs, &testdata::test_options());
        let fig = prepare_metric_vs_batch(&fit).unwrap();
        assert_eq!(fig.panels.len(), 1);
        assert!(
            fig.panels[0]
                .layers
                .iter()
                .all(|l| !l.key.starts_with("band/"))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }
}
