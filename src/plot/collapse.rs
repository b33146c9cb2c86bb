//! Figure 3: the noise-scale collapse (Smith & Le 2017, arXiv 1710.06451): the metric of every
//! run against g = ε(N/B − 1)/(1 − m), coloured by cell (past [`MAX_LEGEND_CELLS`] cells,
//! coloured by N and shaped by ε, or the axes that vary), with the fitted smooth curve in ln g
//! and the optimal g marked (a line and a point on the curve; the axes widen to show the curve
//! whole, within [`super::geometry::REACH`], and the footnote says when they do not). If g
//! alone organises the data, every cell falls on one curve; the
//! collapse score (R² of the cell means under that curve) says how well, and the same score
//! against ln B says how well B alone would have done.

use std::collections::BTreeMap;

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::geometry::cut_at_frame;
use super::labels::{self, CellKey, Varying};
use super::style::{Rgb, Shape, series_color, series_shape};
use super::{SkipReason, format};
use crate::fit::{FitReport, RunInput};

/// More cells than this share one legend entry instead of one each.
pub const MAX_LEGEND_CELLS: usize = 10;

/// The settings of every cell, from the runs (first run of each cell wins).
pub fn cell_keys(runs: &[RunInput]) -> BTreeMap<String, CellKey> {
    let mut out = BTreeMap::new();
    for r in runs {
        out.entry(r.cell.clone()).or_insert(CellKey {
            lr: r.lr,
            train_size: r.train_size,
            momentum: r.momentum,
        });
    }
    out
}

/// The palette's length: `series_shape(OKABE_ITO_LEN · j)` is the j-th shape.
const OKABE_ITO_LEN: usize = super::style::OKABE_ITO.len();

/// One of a cell's settings, as a legend names it.
#[derive(Clone, Copy)]
enum CellAxis {
    TrainSize,
    Lr,
    Momentum,
}

impl CellAxis {
    fn label(self, k: &CellKey) -> String {
        match self {
            CellAxis::TrainSize => format!("N = {}", format::int(k.train_size)),
            CellAxis::Lr => format!("ε = {}", format::lr(k.lr)),
            CellAxis::Momentum => format!("m = {}", format::momentum(k.momentum)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            CellAxis::TrainSize => "N",
            CellAxis::Lr => "ε",
            CellAxis::Momentum => "m",
        }
    }

    /// Sorts settings by their value, not their label.
    fn value(self, k: &CellKey) -> f64 {
        match self {
            CellAxis::TrainSize => k.train_size as f64,
            CellAxis::Lr => k.lr,
            CellAxis::Momentum => k.momentum,
        }
    }
}

/// Colour by one varying axis, shape by the next (figure 3 with many cells).
struct CellGrouping {
    colour_axis: Option<CellAxis>,
    shape_axis: Option<CellAxis>,
    /// The colour axis's values as labels, in ascending order: colour j is `colours[j]`.
    colours: Vec<String>,
    shapes: Vec<String>,
}

impl CellGrouping {
    fn of(shown: &[&CellKey], vary: Varying) -> Self {
        let mut axes = [
            (vary.train_size, CellAxis::TrainSize),
            (vary.lr, CellAxis::Lr),
            (vary.momentum, CellAxis::Momentum),
        ]
        .into_iter()
        .filter(|(v, _)| *v)
        .map(|(_, a)| a);
        let (colour_axis, shape_axis) = (axes.next(), axes.next());
        let values = |axis: Option<CellAxis>| -> Vec<String> {
            let Some(a) = axis else {
                return Vec::new();
            };
            let mut v: Vec<(f64, String)> =
                shown.iter().map(|k| (a.value(k), a.label(k))).collect();
            v.sort_by(|x, y| x.0.total_cmp(&y.0));
            v.dedup_by(|x, y| x.1 == y.1);
            v.into_iter().map(|(_, l)| l).collect()
        };
        CellGrouping {
            colour_axis,
            shape_axis,
            colours: values(colour_axis),
            shapes: values(shape_axis),
        }
    }

    fn index(axis: Option<CellAxis>, values: &[String], k: &CellKey) -> usize {
        axis.and_then(|a| values.iter().position(|v| *v == a.label(k)))
            .unwrap_or(0)
    }

    fn colour_of(&self, k: &CellKey) -> usize {
        Self::index(self.colour_axis, &self.colours, k)
    }

    fn shape_of(&self, k: &CellKey) -> usize {
        Self::index(self.shape_axis, &self.shapes, k)
    }
}

/// Prepares figure 3 from the collapse section; `runs` name the cells' settings.
pub fn prepare_collapse(fit: &FitReport, runs: &[RunInput]) -> Result<Figure, SkipReason> {
    let col = fit.collapse.fitted().ok_or_else(|| {
        format!(
            "no collapse fit: {}",
            fit.collapse.reason().unwrap_or("skipped")
        )
    })?;
    let metric = fit.options.metric;
    let keys = cell_keys(runs);
    let mut cells: Vec<&str> = col.points.iter().map(|p| p.cell.as_str()).collect();
    cells.sort();
    cells.dedup();
    let shown: Vec<&CellKey> = cells.iter().filter_map(|c| keys.get(*c)).collect();
    let vary = Varying::of(shown.iter().copied());
    let mut p = Panel::new(
        Axis::new("noise scale g = ε(N/B − 1)/(1 − m)", Scale::Log10),
        labels::metric_axis(fit),
    );
    let many = cells.len() > MAX_LEGEND_CELLS;
    // Past MAX_LEGEND_CELLS one colour per cell repeats and says nothing: colour by the first
    // axis that varies (N, then ε, then m) and shape by the next, each with its legend entries,
    // so that a level that differs with N (or ε, or m) can be read off.
    let grouping = many.then(|| CellGrouping::of(&shown, vary));
    for (i, cell) in cells.iter().enumerate() {
        let key = keys.get(*cell);
        let (colour, shape) = match (&grouping, key) {
            (Some(g), Some(k)) => (
                series_color(g.colour_of(k)),
                series_shape(OKABE_ITO_LEN * g.shape_of(k)),
            ),
            _ => (series_color(i), series_shape(i)),
        };
        let pts: Vec<(f64, f64)> = col
            .points
            .iter()
            .filter(|p| p.cell == *cell && !p.censored)
            .map(|p| (p.g, p.value))
            .collect();
        let mut means: Vec<(f64, f64)> = col
            .means
            .iter()
            .filter(|m| m.cell == *cell)
            .map(|m| (m.g, m.mean))
            .collect();
        means.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut layer = Layer::markers(format!("runs/{cell}"), colour, pts, shape, true).sized(5);
        if !many {
            let label = key
                .map(|k| labels::cell_label(k, vary))
                .unwrap_or_else(|| cell.to_string());
            layer = layer.labelled(label);
        }
        p.layers.push(
            Layer::line(format!("means/{cell}"), colour, means)
                .sized(1)
                .follows_range(),
        );
        p.layers.push(layer);
    }
    if let Some(g) = &grouping {
        for (j, value) in g.colours.iter().enumerate() {
            p.layers.push(
                Layer::markers(
                    format!("legend/colour/{j}"),
                    series_color(j),
                    vec![],
                    Shape::Circle,
                    true,
                )
                .labelled(value.clone()),
            );
        }
        if g.shapes.len() > 1 {
            for (j, value) in g.shapes.iter().enumerate() {
                p.layers.push(
                    Layer::markers(
                        format!("legend/shape/{j}"),
                        Rgb::GREY,
                        vec![],
                        series_shape(OKABE_ITO_LEN * j),
                        true,
                    )
                    .labelled(value.clone()),
                );
            }
        }
    }
    let censored: Vec<(f64, f64)> = col
        .points
        .iter()
        .filter(|p| p.censored)
        .map(|p| (p.g, p.value))
        .collect();
    if !censored.is_empty() {
        p.layers.push(
            Layer::markers("diverged", Rgb::BLACK, censored, Shape::Cross, true)
                .sized(6)
                .labelled("diverged run (censored at the worst value)"),
        );
    }
    let smooth: Vec<(f64, f64)> = col
        .smooth_g
        .curve
        .iter()
        .map(|c| (c.x.exp(), c.y))
        .collect();
    p.layers.push(
        Layer::line("smooth", Rgb::BLACK, smooth)
            .sized(4)
            .widening_range()
            .labelled(format!(
                "polynomial in ln g (degree {}), fitted to the runs that did not diverge",
                col.smooth_g.degree
            )),
    );
    let edge = if col.g_opt_censored.is_some() {
        " (at the data's edge)"
    } else {
        ""
    };
    p.layers.push(
        Layer::vline("g_opt", series_color(1), col.g_opt).labelled(format!(
            "g_opt = {}{edge}, {} = {}",
            format::sig(col.g_opt, 3),
            labels::metric_name(metric),
            format::metric(col.value_at_g_opt, metric)
        )),
    );
    // The optimum itself, a ring on the curve: always in view.
    p.layers.push(
        Layer::markers(
            "optimum",
            Rgb::BLACK,
            vec![(col.g_opt, col.value_at_g_opt)],
            Shape::Circle,
            false,
        )
        .sized(9),
    );
    let score = |s: Option<f64>| s.map(|v| format::sig(v, 3)).unwrap_or_else(|| "–".into());
    let title = format!(
        "Noise-scale collapse: R² on g = {}, on B alone = {}",
        score(col.score_g),
        score(col.score_b)
    );
    let mut footnote = format!(
        "Each point is one run; thin lines join a cell's seed means. R² (collapse score): \
         share of the variance of the (cell, B) means explained by the curve in ln g; the same \
         fit in ln B for comparison. {} cells.",
        col.n_cells
    );
    if grouping.is_some() {
        let mut marked = Vec::new();
        if let Some(a) = grouping.as_ref().and_then(|g| g.colour_axis) {
            marked.push(format!("colour: {}", a.name()));
        }
        if let Some(a) = grouping.as_ref().and_then(|g| g.shape_axis) {
            marked.push(format!("shape: {}", a.name()));
        }
        let unmarked = vary.lr && vary.train_size && vary.momentum;
        footnote.push_str(&format!(
            " {}{}.",
            marked.join("; "),
            if unmarked {
                "; m, which also varies, is not marked"
            } else {
                ""
            }
        ));
    }
    if col.excluded_full_batch > 0 {
        footnote.push_str(&format!(
            " {} run(s) with B ≥ N (g ≤ 0) left out.",
            col.excluded_full_batch
        ));
    }
    if cut_at_frame(&p).contains(&"smooth") {
        footnote.push_str(" The curve is cut where it runs beyond the frame.");
    }
    if let Some(note) = &col.note {
        footnote.push_str(&format!(" {note}"));
    }
    Ok(Figure {
        title,
        panels: vec![p],
        columns: 1,
        footnote: Some(footnote),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::chart::LayerKind;
    use crate::plot::draw::draw_figure;
    use crate::plot::geometry::panel_spans;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn the_curve_is_the_smooth_fit_and_every_run_is_a_point() {
        let (runs, fit) = testdata::synthetic();
        let col = fit.collapse.fitted().unwrap();
        let fig = prepare_collapse(&fit, &runs).unwrap();
        let p = &fig.panels[0];
        let curve = p.layer("smooth").unwrap().xy();
        assert_eq!(curve.len(), col.smooth_g.curve.len());
        for &(g, y) in curve {
            assert!((y - col.smooth_g.eval(g.ln())).abs() < 1e-9, "g = {g}");
        }
        // The whole curve and the optimum on it are inside the axes (regression: on the
        // noise-scale sweep the curve left the top between g ≈ 4 and 13, and with it the
        // printed optimum). An accuracy axis stops at 0 and 1: the synthetic curve dips below
        // 0 at the smallest g, and there alone it may be cut, which the footnote then says.
        let (sx, sy) = panel_spans(p).unwrap();
        let mut cut = false;
        for &(g, y) in curve {
            if (0.0..=1.0).contains(&y) {
                assert!(
                    sx.contains(g.log10()) && sy.contains(y),
                    "({g}, {y}) outside"
                );
            } else {
                cut = true;
            }
        }
        assert!(cut, "the synthetic curve leaves [0, 1]");
        assert_eq!(cut_at_frame(p), vec!["smooth"]);
        assert!(
            fig.footnote
                .as_deref()
                .unwrap()
                .contains("cut where it runs beyond the frame")
        );
        assert_eq!(
            p.layer("optimum").unwrap().xy(),
            &[(col.g_opt, col.value_at_g_opt)]
        );
        assert!(sy.contains(col.value_at_g_opt));
        // g_opt line where the fit put it.
        match &p.layer("g_opt").unwrap().kind {
            LayerKind::VLine { x, .. } => assert_eq!(*x, col.g_opt),
            k => panic!("{k:?}"),
        }
        // Every collapse point is drawn once: as a run marker or a diverged cross.
        let drawn: usize = p
            .layers
            .iter()
            .filter(|l| l.key.starts_with("runs/") || l.key == "diverged")
            .map(|l| l.xy().len())
            .sum();
        assert_eq!(drawn, col.points.len());
        assert!(p.layer("diverged").is_some());
        // 24 cells: not 24 legend entries nor 24 colours that repeat, but one colour per N
        // and one shape per ε (the next axis that varies), each in the legend.
        let keys = cell_keys(&runs);
        let mut ns: Vec<u64> = keys.values().map(|k| k.train_size).collect();
        ns.sort();
        ns.dedup();
        let legend: Vec<String> = fig.legend().iter().map(|e| e.label.clone()).collect();
        for n in &ns {
            let label = format!("N = {}", format::int(*n));
            assert!(legend.contains(&label), "{label} not in {legend:?}");
        }
        assert!(legend.iter().any(|l| l.starts_with("ε = ")), "{legend:?}");
        assert!(legend.len() < 15, "{legend:?}");
        let foot = fig.footnote.as_deref().unwrap();
        assert!(foot.contains("colour: N; shape: ε"), "{foot}");
        for (cell, k) in &keys {
            let Some(l) = p.layer(&format!("runs/{cell}")) else {
                continue;
            };
            let j = ns.iter().position(|n| *n == k.train_size).unwrap();
            assert_eq!(l.color, series_color(j), "{cell}");
        }
        assert!(fig.title.contains("R² on g"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig3.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }
}
