//! Figure 4: the seed-mean metric over (ε, B), one heatmap per (N, m, schedule) combination,
//! diverged cells crossed out. Shows at a glance where training works, where it diverges and
//! how the best B moves with ε (Smith & Le 2017: along B ∝ ε).
//!
//! Values come from the runs themselves (not from the B_opt section, which skips cells with
//! fewer than 3 batch sizes), reduced exactly as the fits reduce them: the selection rule on
//! each run's curve, diverged runs at the fit's censor value.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::Scale;
use super::draw::{self, TickedRange, de, glyph_drop, text_width};
use super::geometry::{self, Span, TickLabels, Ticks};
use super::labels;
use super::style::{self, FONT, Rgb, viridis};
use super::{PlotError, SkipReason, format};
use crate::fit::{FitReport, MetricKind, RunInput, select_value};

/// At most this many heatmaps (2 × 2); the rest are named in the footnote.
pub const MAX_PANELS: usize = 4;

/// What a grid cell holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellState {
    /// No run at this (ε, B).
    Empty,
    /// Every run has a value and none diverged.
    Value,
    /// Some seeds diverged (their value is the censor value, inside the mean).
    PartlyDiverged,
    /// Every seed diverged.
    Diverged,
}

/// One (ε, B) cell.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatCell {
    pub lr: f64,
    pub batch_size: u64,
    /// Seed mean of the selected value (diverged runs at the censor value).
    pub mean: Option<f64>,
    pub n_runs: usize,
    pub n_diverged: usize,
    pub state: CellState,
}

/// One heatmap: rows are learning rates (ascending upwards), columns batch sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatPanel {
    pub title: Option<String>,
    pub lrs: Vec<f64>,
    pub batches: Vec<u64>,
    /// Row-major: `cells[i * batches.len() + j]` is `(lrs[i], batches[j])`.
    pub cells: Vec<HeatCell>,
    /// Index of the best cell with a value and no divergence, outlined.
    pub best: Option<usize>,
}

impl HeatPanel {
    /// The cell at (ε, B), if both are on the grid.
    pub fn cell(&self, lr: f64, batch_size: u64) -> Option<&HeatCell> {
        let i = self.lrs.iter().position(|&l| l == lr)?;
        let j = self.batches.iter().position(|&b| b == batch_size)?;
        self.cells.get(i * self.batches.len() + j)
    }
}

/// Figure 4 ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub title: String,
    pub panels: Vec<HeatPanel>,
    pub metric: MetricKind,
    /// The colour bar's description.
    pub value_label: String,
    /// The colour scale's ends (all shown panels share it).
    pub range: (f64, f64),
    pub footnote: Option<String>,
}

impl Heatmap {
    /// The colour of a value: viridis over the shared range, the better end yellow.
    pub fn colour_of(&self, v: f64) -> Rgb {
        let (lo, hi) = self.range;
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        viridis(if self.metric.higher_is_better() {
            t
        } else {
            1.0 - t
        })
    }

    /// (rows, cols) of the panel grid.
    pub fn grid(&self) -> (usize, usize) {
        let n = self.panels.len().max(1);
        let cols = if n == 1 { 1 } else { 2 };
        (n.div_ceil(cols), cols)
    }

    /// A size that keeps cells and their numbers readable.
    pub fn preferred_size(&self) -> (u32, u32) {
        match self.grid() {
            (1, 1) => (1200, 800),
            (1, _) => (1600, 800),
            _ => (1600, 1250),
        }
    }
}

/// (N, momentum bits, schedule): one heatmap.
type PanelKey = (u64, u64, String);
/// (seed values, runs, diverged runs) of one (ε bits, B) cell.
type CellAcc = (Vec<f64>, usize, usize);

/// Prepares figure 4 from the runs and the fit's selection options and censor value.
pub fn prepare_heatmap(fit: &FitReport, runs: &[RunInput]) -> Result<Heatmap, SkipReason> {
    let metric = fit.options.metric;
    // (N, m bits, schedule) → (lr bits, B) → (values, n, diverged)
    let mut groups: BTreeMap<PanelKey, BTreeMap<(u64, u64), CellAcc>> = BTreeMap::new();
    for r in runs {
        if !(r.lr.is_finite() && r.lr > 0.0) || r.batch_size == 0 {
            continue;
        }
        let v = if r.diverged {
            fit.censor_value
        } else {
            select_value(&r.curve, fit.options.select, metric)
        };
        let e = groups
            .entry((r.train_size, r.momentum.to_bits(), r.schedule.clone()))
            .or_default()
            .entry((r.lr.to_bits(), r.batch_size))
            .or_default();
        e.1 += 1;
        e.2 += usize::from(r.diverged);
        if let Some(v) = v.filter(|v| v.is_finite()) {
            e.0.push(v);
        }
    }
    let mut keys: Vec<&PanelKey> = groups
        .iter()
        .filter(|(_, cells)| {
            let mut lrs: Vec<u64> = cells.keys().map(|k| k.0).collect();
            lrs.dedup();
            let mut bs: Vec<u64> = cells.keys().map(|k| k.1).collect();
            bs.sort();
            bs.dedup();
            lrs.len() >= 2 && bs.len() >= 2
        })
        .map(|(k, _)| k)
        .collect();
    if keys.is_empty() {
        // Only a figure that is drawn may be pointed to.
        let see = if super::batch::prepare_metric_vs_batch(fit).is_ok() {
            " (see figure 1 for one ε)"
        } else {
            ""
        };
        return Err(format!(
            "no (N, m, schedule) combination has at least two learning rates and two batch \
             sizes: a heatmap over (ε, B) needs both{see}"
        ));
    }
    let schedules: Vec<&String> = {
        let mut s: Vec<&String> = keys.iter().map(|k| &k.2).collect();
        s.sort();
        s.dedup();
        s
    };
    let several_n_m = {
        let mut nm: Vec<(u64, u64)> = keys.iter().map(|k| (k.0, k.1)).collect();
        nm.sort();
        nm.dedup();
        nm.len() > 1
    };
    // Constant schedules first (the (ε, B) grid is theirs), then by N and m.
    keys.sort_by(|a, b| {
        (a.2 != "constant")
            .cmp(&(b.2 != "constant"))
            .then(a.0.cmp(&b.0))
            .then(f64::from_bits(a.1).total_cmp(&f64::from_bits(b.1)))
            .then(a.2.cmp(&b.2))
    });
    let total = keys.len();
    // A panel's name: N and m where several pairs are drawn, the schedule where several are;
    // every part for one that is left out.
    let name = |key: &PanelKey, all: bool| {
        let mut parts = Vec::new();
        if several_n_m || all {
            parts.push(format!(
                "N = {}, m = {}",
                format::int(key.0),
                format::momentum(f64::from_bits(key.1))
            ));
        }
        if schedules.len() > 1 || (all && key.2 != "constant") {
            parts.push(format!("schedule {}", key.2));
        }
        parts.join(", ")
    };
    let omitted: Vec<String> = keys
        .iter()
        .skip(MAX_PANELS)
        .map(|k| name(k, true))
        .collect();
    let mut panels = Vec::new();
    for key in keys.into_iter().take(MAX_PANELS) {
        let cells = &groups[key];
        let mut lrs: Vec<f64> = cells.keys().map(|k| f64::from_bits(k.0)).collect();
        lrs.sort_by(f64::total_cmp);
        lrs.dedup();
        let mut batches: Vec<u64> = cells.keys().map(|k| k.1).collect();
        batches.sort();
        batches.dedup();
        let mut grid = Vec::with_capacity(lrs.len() * batches.len());
        for &lr in &lrs {
            for &b in &batches {
                let (vals, n, div) =
                    cells
                        .get(&(lr.to_bits(), b))
                        .cloned()
                        .unwrap_or((Vec::new(), 0, 0));
                let mean = (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
                let state = match (n, div) {
                    (0, _) => CellState::Empty,
                    (n, d) if d == n => CellState::Diverged,
                    (_, 0) if mean.is_some() => CellState::Value,
                    (_, 0) => CellState::Empty,
                    _ => CellState::PartlyDiverged,
                };
                grid.push(HeatCell {
                    lr,
                    batch_size: b,
                    mean,
                    n_runs: n,
                    n_diverged: div,
                    state,
                });
            }
        }
        let best = grid
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state == CellState::Value)
            .filter_map(|(i, c)| Some((i, c.mean?)))
            .reduce(|a, b| if metric.better(b.1, a.1) { b } else { a })
            .map(|(i, _)| i);
        let title = name(key, false);
        panels.push(HeatPanel {
            title: (!title.is_empty()).then_some(title),
            lrs,
            batches,
            cells: grid,
            best,
        });
    }
    let values: Vec<f64> = panels
        .iter()
        .flat_map(|p| &p.cells)
        .filter(|c| c.state != CellState::Diverged)
        .filter_map(|c| c.mean)
        .collect();
    let range = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let range = if range.0.is_finite() {
        range
    } else {
        // Only diverged cells: any range; no cell is coloured.
        (0.0, 1.0)
    };
    let mut footnote = String::from(
        "Each cell: seed mean of the selected value; ✕ every seed diverged; a smaller ✕ \
         some seeds diverged (counted at the worst value); outlined: the best cell of the map.",
    );
    if total > MAX_PANELS {
        footnote.push_str(&format!(
            " Showing {MAX_PANELS} of {total} (N, m, schedule) combinations (more maps would be \
             too small to read): not drawn {}.",
            omitted.join("; ")
        ));
    }
    Ok(Heatmap {
        title: format!(
            "{} over learning rate and batch size",
            labels::metric_title(metric)
        ),
        panels,
        metric,
        value_label: format!(
            "{} ({})",
            labels::metric_name(metric),
            labels::select_words(fit.options.select)
        ),
        range,
        footnote: Some(footnote),
    })
}

/// Draws figure 4: the heatmaps, then a colour bar with values and the diverged sample.
pub fn render_heatmap(hm: &Heatmap, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    draw::check_size(size)?;
    style::ensure_fonts()?;
    draw::write_png(path, size, |root| {
        root.fill(&WHITE).map_err(de(path))?;
        let body = draw::title_area(root, &hm.title, path)?;
        let body = draw::footnote_area(&body, hm.footnote.as_deref(), path)?;
        let (w, _) = body.dim_in_pixel();
        let (maps, bar) = body.split_horizontally(w.saturating_sub(220));
        for (area, panel) in maps.split_evenly(hm.grid()).iter().zip(&hm.panels) {
            draw_map(area, hm, panel, path)?;
        }
        draw_colour_bar(&bar, hm, path)
    })
}

/// Ticks at cell centres, labelled by `label(i)`.
fn centre_ticks(n: usize) -> Ticks {
    Ticks {
        bold: (0..n).map(|i| i as f64 + 0.5).collect(),
        light: Vec::new(),
        labels: TickLabels::Data,
    }
}

fn index_label<T: Copy>(items: &[T], t: f64, f: impl Fn(T) -> String) -> String {
    let i = (t - 0.5).round();
    if i >= 0.0 && (i as usize) < items.len() {
        f(items[i as usize])
    } else {
        String::new()
    }
}

fn draw_map(area: &draw::Area, hm: &Heatmap, p: &HeatPanel, path: &Path) -> Result<(), PlotError> {
    let (nb, nl) = (p.batches.len(), p.lrs.len());
    if nb == 0 || nl == 0 {
        return Ok(());
    }
    let mut xt = centre_ticks(nb);
    let yt = centre_ticks(nl);
    let (aw, ah) = area.dim_in_pixel();
    let y_label_w = p
        .lrs
        .iter()
        .map(|&l| text_width(area, &format::lr(l), style::TICK_PX))
        .max()
        .unwrap_or(40)
        + style::AXIS_PX
        + 30;
    let widths: Vec<u32> = p
        .batches
        .iter()
        .map(|&b| text_width(area, &b.to_string(), style::TICK_PX) + 14)
        .collect();
    xt.bold = geometry::thin_to_fit(&xt.bold, &widths, aw.saturating_sub(y_label_w + 50));
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .margin_right(24)
        .x_label_area_size(style::TICK_PX + style::AXIS_PX + 34)
        .y_label_area_size(y_label_w);
    if let Some(t) = &p.title {
        builder.caption(t, (FONT, style::SUBTITLE_PX));
    }
    let mut chart = builder
        .build_cartesian_2d(
            TickedRange::new(
                Span {
                    lo: 0.0,
                    hi: nb as f64,
                },
                &xt,
            ),
            TickedRange::new(
                Span {
                    lo: 0.0,
                    hi: nl as f64,
                },
                &yt,
            ),
        )
        .map_err(de(path))?;
    let xfmt = |t: &f64| index_label(&p.batches, *t, |b| b.to_string());
    let yfmt = |t: &f64| index_label(&p.lrs, *t, format::lr);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("batch size B (examples per update)")
        .y_desc("learning rate ε")
        .axis_desc_style((FONT, style::AXIS_PX))
        .label_style((FONT, style::TICK_PX))
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .draw()
        .map_err(de(path))?;
    let plot = chart.plotting_area();
    let (pw, ph) = plot.dim_in_pixel();
    let (cell_w, cell_h) = (pw / nb as u32, ph / nl as u32);
    let value_px = if cell_w >= 64 && cell_h >= 30 {
        Some(20)
    } else if cell_w >= 48 && cell_h >= 24 {
        Some(16)
    } else {
        None
    };
    let _ = ah;
    for (k, c) in p.cells.iter().enumerate() {
        let (i, j) = ((k / nb) as f64, (k % nb) as f64);
        let corners = [(j, i), (j + 1.0, i + 1.0)];
        let fill = match (c.state, c.mean) {
            (CellState::Empty, _) | (_, None) => Rgb(255, 255, 255),
            (CellState::Diverged, _) => Rgb::LIGHT_GREY,
            (_, Some(v)) => hm.colour_of(v),
        };
        plot.draw(&Rectangle::new(corners, fill.rgb().filled()))
            .map_err(de(path))?;
        plot.draw(&Rectangle::new(corners, WHITE.stroke_width(1)))
            .map_err(de(path))?;
        let ink = if fill.luminance() < 0.5 { WHITE } else { BLACK };
        let centre = (j + 0.5, i + 0.5);
        match c.state {
            CellState::Diverged => {
                let (dx, dy) = (0.3, 0.3);
                for (a, b) in [
                    ((j + 0.5 - dx, i + 0.5 - dy), (j + 0.5 + dx, i + 0.5 + dy)),
                    ((j + 0.5 - dx, i + 0.5 + dy), (j + 0.5 + dx, i + 0.5 - dy)),
                ] {
                    plot.draw(&PathElement::new(vec![a, b], BLACK.stroke_width(3)))
                        .map_err(de(path))?;
                }
            }
            CellState::Value | CellState::PartlyDiverged => {
                if let (Some(px), Some(v)) = (value_px, c.mean) {
                    let text = if hm.metric.is_accuracy() {
                        format!("{v:.3}")
                    } else {
                        format::sig(v, 3)
                    };
                    let font = (FONT, px)
                        .into_font()
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    plot.draw(
                        &(EmptyElement::at(centre) + Text::new(text, (0, glyph_drop(px)), font)),
                    )
                    .map_err(de(path))?;
                }
                if c.state == CellState::PartlyDiverged {
                    // A small cross in the corner: some seeds diverged.
                    let s = 5;
                    let corner = (j + 0.12, i + 0.82);
                    plot.draw(
                        &(EmptyElement::at(corner)
                            + PathElement::new(vec![(-s, -s), (s, s)], ink.stroke_width(2))
                            + PathElement::new(vec![(-s, s), (s, -s)], ink.stroke_width(2))),
                    )
                    .map_err(de(path))?;
                }
            }
            CellState::Empty => {}
        }
    }
    if let Some(k) = p.best {
        let (i, j) = ((k / nb) as f64, (k % nb) as f64);
        plot.draw(&Rectangle::new(
            [(j + 0.02, i + 0.02), (j + 0.98, i + 0.98)],
            BLACK.stroke_width(4),
        ))
        .map_err(de(path))?;
        plot.draw(&Rectangle::new(
            [(j + 0.05, i + 0.05), (j + 0.95, i + 0.95)],
            WHITE.stroke_width(2),
        ))
        .map_err(de(path))?;
    }
    Ok(())
}

fn draw_colour_bar(area: &draw::Area, hm: &Heatmap, path: &Path) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let lines = draw::wrap(
        area,
        &hm.value_label,
        style::LEGEND_PX,
        w.saturating_sub(20),
    );
    let line_h = style::LEGEND_PX + 6;
    let font = (FONT, style::LEGEND_PX)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Top));
    for (k, l) in lines.iter().enumerate() {
        area.draw_text(
            l,
            &font,
            (
                10,
                20 + glyph_drop(style::LEGEND_PX) + (k as u32 * line_h) as i32,
            ),
        )
        .map_err(de(path))?;
    }
    let top = 30 + lines.len() as u32 * line_h;
    let bottom_block = 90;
    let (_, rest) = area.split_vertically(top);
    let (bar_area, key_area) = rest.split_vertically(h.saturating_sub(top + bottom_block));
    let (lo, hi) = hm.range;
    let span = if hi > lo {
        Span { lo, hi }
    } else {
        Span {
            lo: lo - 0.5,
            hi: lo + 0.5,
        }
    };
    let ticks = geometry::ticks(Scale::Linear, span);
    let unit = Ticks {
        bold: vec![],
        light: vec![],
        labels: TickLabels::Data,
    };
    let mut chart = ChartBuilder::on(&bar_area)
        .margin(10)
        .set_label_area_size(LabelAreaPosition::Right, 90)
        .build_cartesian_2d(
            TickedRange::new(Span { lo: 0.0, hi: 1.0 }, &unit),
            TickedRange::new(span, &ticks),
        )
        .map_err(de(path))?;
    let yfmt = |t: &f64| ticks.label(Scale::Linear, *t);
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .label_style((FONT, style::TICK_PX))
        .y_label_formatter(&yfmt)
        .draw()
        .map_err(de(path))?;
    let steps = 120;
    for s in 0..steps {
        let a = span.lo + (span.hi - span.lo) * s as f64 / steps as f64;
        let b = span.lo + (span.hi - span.lo) * (s + 1) as f64 / steps as f64;
        chart
            .plotting_area()
            .draw(&Rectangle::new(
                [(0.0, a), (1.0, b)],
                hm.colour_of((a + b) / 2.0).rgb().filled(),
            ))
            .map_err(de(path))?;
    }
    // The diverged sample.
    let y = 40;
    key_area
        .draw(&Rectangle::new(
            [(14, y - 14), (42, y + 14)],
            Rgb::LIGHT_GREY.rgb().filled(),
        ))
        .map_err(de(path))?;
    for (a, b) in [((18, y - 10), (38, y + 10)), ((18, y + 10), (38, y - 10))] {
        key_area
            .draw(&PathElement::new(vec![a, b], BLACK.stroke_width(3)))
            .map_err(de(path))?;
    }
    let font = (FONT, style::LEGEND_PX)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    key_area
        .draw_text("diverged", &font, (52, y + glyph_drop(style::LEGEND_PX)))
        .map_err(de(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::fit_all;
    use crate::plot::testdata::{self, assert_png};

    /// Regression (dont-decay and curvature sweeps): the skip note pointed to figure 1 "for one
    /// ε" when figure 1 was itself not drawn.
    #[test]
    fn the_skip_note_points_to_figure_1_only_when_it_is_drawn() {
        let opts = testdata::test_options();
        // One ε, one B, four seeds: neither figure 1 nor the heatmap.
        let runs: Vec<_> = (0..4)
            .map(|s| testdata::rising_run("c", 0.05, 1000, 0.9, 32, s, 0.8, false))
            .collect();
        let fit = fit_all(&runs, &opts);
        assert!(crate::plot::batch::prepare_metric_vs_batch(&fit).is_err());
        let why = prepare_heatmap(&fit, &runs).unwrap_err();
        assert!(!why.contains("figure 1"), "{why}");
        // One ε, four batch sizes: figure 1 is drawn, and the note may point to it.
        let runs: Vec<_> = [8u64, 16, 32, 64]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                testdata::rising_run(
                    "c",
                    0.05,
                    1000,
                    0.9,
                    b,
                    0,
                    0.6 + 0.05 * (i % 3) as f64,
                    false,
                )
            })
            .collect();
        let fit = fit_all(&runs, &opts);
        assert!(crate::plot::batch::prepare_metric_vs_batch(&fit).is_ok());
        let why = prepare_heatmap(&fit, &runs).unwrap_err();
        assert!(why.contains("see figure 1"), "{why}");
    }

    #[test]
    fn diverged_cells_are_marked_and_means_match_the_runs() {
        let (runs, fit) = testdata::synthetic();
        let hm = prepare_heatmap(&fit, &runs).unwrap();
        assert_eq!(hm.panels.len(), MAX_PANELS);
        let foot = hm.footnote.as_deref().unwrap();
        assert!(foot.contains("4 of 8"), "{foot}");
        // Which maps are left out, by name (regression: smith-le said only "4 of 8").
        assert!(
            foot.contains("not drawn N = 4,000, m = 0; N = 4,000, m = 0.9; N = 8,000, m = 0; N = 8,000, m = 0.9."),
            "{foot}"
        );
        // Panel order: constant first, N ascending, m ascending → N = 1000 m = 0.9 is second.
        let p = &hm.panels[1];
        assert_eq!(p.title.as_deref(), Some("N = 1,000, m = 0.9"));
        let div = p.cell(0.1, 8).unwrap();
        assert_eq!(div.state, CellState::Diverged);
        assert_eq!(div.n_diverged, 3);
        let ok = p.cell(0.05, 64).unwrap();
        assert_eq!(ok.state, CellState::Value);
        let want: f64 = runs
            .iter()
            .filter(|r| r.cell == testdata::cell_name(0.05, 1000, 0.9) && r.batch_size == 64)
            .map(|r| select_value(&r.curve, fit.options.select, fit.options.metric).unwrap())
            .sum::<f64>()
            / 3.0;
        assert!((ok.mean.unwrap() - want).abs() < 1e-12);
        // The best cell is the best mean of the map.
        let best = &p.cells[p.best.unwrap()];
        assert!(
            p.cells
                .iter()
                .filter_map(|c| c.mean)
                .all(|m| m <= best.mean.unwrap())
        );
        // Colours: better is brighter (yellow end).
        assert!(hm.colour_of(hm.range.1).luminance() > hm.colour_of(hm.range.0).luminance());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig4.png");
        render_heatmap(&hm, &path, hm.preferred_size()).unwrap();
        assert_png(&path, hm.preferred_size());
    }

    #[test]
    fn odd_grids_never_panic() {
        // Everything diverged but one run; two ε × two B.
        let mut runs = Vec::new();
        for (lr, b, div) in [
            (0.1, 8, true),
            (0.1, 16, true),
            (0.2, 8, true),
            (0.2, 16, false),
        ] {
            runs.push(testdata::rising_run("c", lr, 1000, 0.0, b, 0, 0.5, div));
        }
        let fit = fit_all(&runs, &testdata::test_options());
        let hm = prepare_heatmap(&fit, &runs).unwrap();
        assert_eq!(
            hm.panels[0].cell(0.1, 8).unwrap().state,
            CellState::Diverged
        );
        // One valued cell: the colour range has zero width and still renders.
        assert_eq!(hm.range.0, hm.range.1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.png");
        render_heatmap(&hm, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
        // One ε only: skipped with a reason.
        let one: Vec<_> = runs.into_iter().filter(|r| r.lr == 0.1).collect();
        let fit = fit_all(&one, &testdata::test_options());
        assert!(
            prepare_heatmap(&fit, &one)
                .unwrap_err()
                .contains("two learning rates")
        );
    }
}
