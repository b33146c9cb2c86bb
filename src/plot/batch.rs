//! Figure 1: the metric against batch size, one line per learning rate, with B_opt marked
//! (Smith & Le 2017, arXiv 1710.06451: at fixed ε there is a batch size that maximises test
//! accuracy).
//!
//! One panel per (N, m) combination (at most [`MAX_PANELS`]); within a panel one line per cell
//! (in practice per ε), coloured by ε consistently across panels. Lines are seed means, bands
//! the cells' t intervals, ▲ the B_opt estimate with its bootstrap interval (hollow, and the
//! interval open towards the edge, when the best B sits on the grid's edge, so B_opt is only a
//! bound).

use std::collections::BTreeMap;

use super::chart::{Bar, Figure, Layer, Panel};
use super::geometry::{band_runs, cut_at_frame};
use super::labels::{self, CellKey, Varying};
use super::style::{Rgb, Shape, series_color};
use super::{SkipReason, format};
use crate::fit::{CellBopt, Censor, FitReport};

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

/// What the arrows on the B_opt intervals mean, for the footnotes of figures 1 and 2.
pub const BAR_ARROWS: &str = "An arrow ends an interval that is open on that side (B_opt at \
     the grid's edge is only a bound) or that runs beyond the frame.";

/// The B_opt interval of a cell as a bar at `at`, scaled by `factor` (figure 2 moves points
/// along the fitted slopes): open towards the edge a censored B_opt sits on, since the true
/// optimum may lie anywhere beyond it. A censored cell without an interval still gets its
/// arrow (a bar of no length at B_opt); an uncensored one without an interval gets no bar.
pub fn bopt_bar(c: &CellBopt, at: f64, factor: f64) -> Option<Bar> {
    let (lo, hi) = match (c.interval, c.censored) {
        // The bar reaches the edge B_opt sits on, and opens there.
        (Some(iv), Some(Censor::Low)) => (iv.lo.min(c.b_opt), iv.hi),
        (Some(iv), Some(Censor::High)) => (iv.lo, iv.hi.max(c.b_opt)),
        (Some(iv), None) => (iv.lo, iv.hi),
        (None, Some(_)) => (c.b_opt, c.b_opt),
        (None, None) => return None,
    };
    Some(Bar::new(at, lo * factor, hi * factor).opened(
        c.censored == Some(Censor::Low),
        c.censored == Some(Censor::High),
    ))
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
    let n_m_title =
        |(n, m): (u64, f64)| format!("N = {}, m = {}", format::int(n), format::momentum(m));
    let omitted: Vec<String> = groups
        .iter()
        .skip(MAX_PANELS)
        .map(|(nm, _)| n_m_title(*nm))
        .collect();
    let several = n_groups > 1;
    let mut panels = Vec::new();
    let mut any_censored = false;
    let mut any_diverged = false;
    for ((n, m), cells) in groups.into_iter().take(MAX_PANELS) {
        let mut p = Panel::new(labels::batch_axis(), labels::metric_axis(fit));
        if several {
            p.title = Some(n_m_title((n, m)));
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
                    Layer::band(format!("band/{}/{k}", c.cell), colour, band).widening_range(),
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
            if let Some(bar) = bopt_bar(c, c.peak_value, 1.0) {
                p.layers.push(
                    Layer::error_bars(format!("bopt-ci/{}", c.cell), colour, vec![bar], true)
                        .widening_range(),
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
                .labelled("B_opt (vertex of the parabola at the best B) with bootstrap interval"),
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
                .labelled(
                    "B_opt at the grid's edge: only a bound (interval open towards the edge)",
                ),
            );
        }
    }
    let _ = any_diverged;
    let level = format::percent(fit.options.confidence, 0);
    let mut footnote = format!(
        "Lines: seed means; bands: {level} t intervals over seeds; ▲ B_opt from a parabola in \
         log₂ B through the best grid point and its neighbours, bar: {level} parametric \
         bootstrap (seed means redrawn at the residual spread pooled around the best B, B × seed \
         when every B ran the same seeds). {BAR_ARROWS}"
    );
    if panels.iter().any(|p| !cut_at_frame(p).is_empty()) {
        footnote.push_str(" A band that runs beyond the frame is cut there.");
    }
    if n_groups > MAX_PANELS {
        footnote.push_str(&format!(
            " Showing {MAX_PANELS} of {n_groups} (N, m) combinations (more panels would be too \
             small to read): not drawn {}; every cell is in the table.",
            omitted.join("; ")
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
        let foot = fig.footnote.as_deref().unwrap();
        assert!(foot.contains("6 of 8"), "{foot}");
        // Which panels are left out, by name (regression: smith-le said only "6 of 8").
        assert!(
            foot.contains("not drawn N = 8,000, m = 0; N = 8,000, m = 0.9;"),
            "{foot}"
        );
        // The interval is a parametric bootstrap, not a resampling of the seeds (regression:
        // the footnote said "bootstrap over seeds").
        assert!(
            foot.contains("parametric bootstrap") && !foot.contains("bootstrap over seeds"),
            "{foot}"
        );
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

    /// A cell whose best B is the grid's last (or first), three seeds each.
    fn edge_cell(name: &str, lr: f64, rising: bool) -> Vec<crate::fit::RunInput> {
        let grid = [16u64, 32, 64, 128, 256, 512];
        let mut runs = Vec::new();
        for (i, &b) in grid.iter().enumerate() {
            for seed in 0..3 {
                let k = if rising { i } else { grid.len() - 1 - i } as f64;
                let v = 0.5 + 0.04 * k + 0.003 * (seed as f64 - 1.0) * (1.0 + (i % 2) as f64);
                runs.push(testdata::rising_run(name, lr, 4000, 0.9, b, seed, v, false));
            }
        }
        runs
    }

    /// Regression (noise-scale sweep, ε = 0.08, "≥ 512"): a B_opt censored at the grid's edge
    /// was drawn with a closed bar from 168 to 512, read as an interval. Its bar now opens
    /// towards the edge (an arrow) in figures 1 and 2; an uncensored one stays closed.
    #[test]
    fn censored_b_opt_bars_open_towards_the_edge() {
        let mut runs = edge_cell("high", 0.08, true);
        runs.extend(edge_cell("low", 0.005, false));
        runs.extend(testdata::synthetic_runs().into_iter().filter(|r| {
            r.cell == testdata::cell_name(0.05, 4000, 0.9)
                || r.cell == testdata::cell_name(0.025, 4000, 0.9)
        }));
        let fit = fit_all(&runs, &testdata::test_options());
        let cells = &fit.bopt.fitted().unwrap().cells;
        let cell = |name: &str| cells.iter().find(|c| c.cell == name).unwrap();
        assert_eq!(cell("high").censored, Some(Censor::High));
        assert_eq!(cell("low").censored, Some(Censor::Low));
        let fig = prepare_metric_vs_batch(&fit).unwrap();
        let bar = |key: &str| match &fig.panels[0].layer(key).unwrap().kind {
            crate::plot::chart::LayerKind::ErrorBars { bars, .. } => bars[0],
            k => panic!("{k:?}"),
        };
        let high = bar("bopt-ci/high");
        assert!(!high.open_lo && high.open_hi, "{high:?}");
        assert_eq!(high.hi, 512.0, "the bar reaches the edge");
        let low = bar("bopt-ci/low");
        assert!(low.open_lo && !low.open_hi, "{low:?}");
        assert_eq!(low.lo, 16.0);
        let inner = testdata::cell_name(0.05, 4000, 0.9);
        let closed = bar(&format!("bopt-ci/{inner}"));
        assert!(!closed.open_lo && !closed.open_hi);
        assert!(
            fig.legend()
                .iter()
                .any(|e| e.label.contains("open towards the edge"))
        );
        assert!(fig.footnote.unwrap().contains("An arrow ends an interval"));
        // Figure 2 draws the same bounds.
        let fig2 = crate::plot::scaling::prepare_scaling(&fit).unwrap();
        let crate::plot::chart::LayerKind::ErrorBars { bars, .. } =
            &fig2.panels[0].layer("intervals").unwrap().kind
        else {
            panic!("error bars")
        };
        let opened: Vec<(f64, bool, bool)> = bars
            .iter()
            .filter(|b| b.open_lo || b.open_hi)
            .map(|b| (b.at, b.open_lo, b.open_hi))
            .collect();
        assert_eq!(opened, vec![(0.08, false, true), (0.005, true, false)]);
    }

    /// Regression (noise-scale figure 1: t bands up to 0.841 under an axis that stopped at
    /// ≈ 0.78): the bands widen the metric axis (within geometry::REACH) instead of running
    /// into the frame.
    #[test]
    fn bands_and_b_opt_intervals_widen_the_axes() {
        let (_, fit) = testdata::synthetic();
        let fig = prepare_metric_vs_batch(&fit).unwrap();
        for p in &fig.panels {
            let bands: Vec<&Layer> = p
                .layers
                .iter()
                .filter(|l| l.key.starts_with("band/"))
                .collect();
            assert!(!bands.is_empty());
            assert!(bands.iter().all(|l| l.widens_range && !l.sets_range));
            assert!(
                p.layers
                    .iter()
                    .filter(|l| l.key.starts_with("bopt-ci/"))
                    .all(|l| l.widens_range)
            );
            // In the synthetic sweep nothing reaches that far: nothing is cut.
            assert!(
                crate::plot::geometry::cut_at_frame(p).is_empty(),
                "{:?}",
                p.title
            );
        }
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
