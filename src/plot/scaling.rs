//! Figure 2: B_opt against ε, N and 1/(1−m), log–log, with the fitted scaling law, its 95%
//! band and the Smith & Le slope-1 reference (Smith & Le 2017, arXiv 1710.06451:
//! B_opt ∝ εN/(1−m); docs/science.md §1, "the decisive test").
//!
//! One panel per axis that varies across the cells. When several axes vary, each panel shows
//! B_opt *adjusted to the mean of the other axes* with the fitted slopes (a partial-residual
//! view): ln B_adj = ln B_opt − Σ_{j≠k} β_j (x_j − x̄_j). The fitted line on panel k is then the
//! mean prediction with the other regressors at their means x̄_j, and its band is
//! ± t·√(x₀ᵀ Cov x₀) with x₀ = (1, …), t from Student's t with the fit's degrees of freedom.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::geometry::sample_grid;
use super::style::{Rgb, Shape, series_color};
use super::{SkipReason, format};
use crate::fit::{CellBopt, FitReport, LogLinearFit};

/// One regression axis: its name in the fit, its symbol, its description, its data value.
pub struct ScalingAxis {
    pub name: &'static str,
    pub symbol: &'static str,
    pub label: &'static str,
    /// Short name for titles.
    pub short: &'static str,
    pub value: fn(&CellBopt) -> f64,
}

/// The three axes in the fit's order (ln ε, ln N, ln 1/(1−m)).
pub const AXES: [ScalingAxis; 3] = [
    ScalingAxis {
        name: "ln_lr",
        symbol: "a",
        label: "learning rate ε",
        short: "ε",
        value: |c| c.lr,
    },
    ScalingAxis {
        name: "ln_train_size",
        symbol: "b",
        label: "training-set size N (examples)",
        short: "N",
        value: |c| c.train_size as f64,
    },
    ScalingAxis {
        name: "ln_inv_one_minus_momentum",
        symbol: "γ",
        label: "1/(1 − m) (momentum's effective-ε factor)",
        short: "1/(1 − m)",
        value: |c| 1.0 / (1.0 - c.momentum),
    },
];

/// Student's t quantile for a two-sided interval at `level` with `dof` degrees of freedom.
pub fn t_value(level: f64, dof: usize) -> Option<f64> {
    let t = StudentsT::new(0.0, 1.0, dof as f64).ok()?;
    let q = t.inverse_cdf(0.5 + level / 2.0);
    q.is_finite().then_some(q)
}

/// The fitted mean of ln B_opt at regressors `x0` (intercept first) and its standard error
/// √(x₀ᵀ Cov x₀). `None` when the shapes disagree or the numbers are not finite.
pub fn mean_prediction(fit: &LogLinearFit, x0: &[f64]) -> Option<(f64, f64)> {
    let p = fit.coefficients.len();
    if x0.len() != p || fit.covariance.len() != p || fit.covariance.iter().any(|r| r.len() != p) {
        return None;
    }
    let pred: f64 = fit
        .coefficients
        .iter()
        .zip(x0)
        .map(|(c, x)| c.estimate * x)
        .sum();
    let var: f64 = (0..p)
        .flat_map(|i| (0..p).map(move |j| (i, j)))
        .map(|(i, j)| x0[i] * fit.covariance[i][j] * x0[j])
        .sum();
    let se = var.max(0.0).sqrt();
    (pred.is_finite() && se.is_finite()).then_some((pred, se))
}

/// Index of an axis (0..3) among the fit's coefficients (intercept is 0), if it is in the fit.
fn coef_index(fit: &LogLinearFit, axis: usize) -> Option<usize> {
    fit.coefficients
        .iter()
        .position(|c| c.name == AXES[axis].name)
}

/// Whether axis `k` takes more than one value among `cells`.
fn varies(cells: &[CellBopt], k: usize) -> bool {
    let v: Vec<f64> = cells.iter().map(|c| (AXES[k].value)(c)).collect();
    let Some(&first) = v.first() else {
        return false;
    };
    v.iter()
        .any(|x| (x - first).abs() > 1e-9 * x.abs().max(first.abs()))
}

/// The data needed for one panel.
struct Ctx<'a> {
    fit: Option<&'a LogLinearFit>,
    /// Mean of ln(value) per axis over the cells the regression used (or all valued cells).
    centre: [f64; 3],
    level: f64,
}

impl Ctx<'_> {
    /// ln B_opt shift that adjusts `c` to the mean of every fitted axis except `k`.
    fn shift(&self, c: &CellBopt, k: usize) -> f64 {
        let Some(fit) = self.fit else { return 0.0 };
        (0..3)
            .filter(|&j| j != k)
            .filter_map(|j| {
                let i = coef_index(fit, j)?;
                Some(fit.coefficients[i].estimate * ((AXES[j].value)(c).ln() - self.centre[j]))
            })
            .sum()
    }

    /// The regressor vector with axis `k` at ln `x` and every other fitted axis at its mean.
    fn x0(&self, fit: &LogLinearFit, k: usize, x: f64) -> Vec<f64> {
        fit.coefficients
            .iter()
            .map(|c| match AXES.iter().position(|a| a.name == c.name) {
                None => 1.0, // the intercept
                Some(j) if j == k => x.ln(),
                Some(j) => self.centre[j],
            })
            .collect()
    }
}

/// Prepares figure 2 from the B_opt and scaling sections.
pub fn prepare_scaling(fit: &FitReport) -> Result<Figure, SkipReason> {
    let bopt = fit
        .bopt
        .fitted()
        .ok_or_else(|| format!("no B_opt fit: {}", fit.bopt.reason().unwrap_or("skipped")))?;
    // A cell whose schedule changes ε or B during training has no single (ε, B) to place: the
    // regression leaves it out, and so does the figure (it is in the B_opt table).
    let scheduled = bopt
        .cells
        .iter()
        .filter(|c| c.schedule != "constant")
        .count();
    let cells: Vec<CellBopt> = bopt
        .cells
        .iter()
        .filter(|c| c.schedule == "constant")
        .cloned()
        .collect();
    let cells = &cells;
    if cells.is_empty() {
        return Err(if scheduled > 0 {
            "no constant-schedule cell has a B_opt estimate (cells whose schedule changes ε or B \
             have no single value to place)"
                .into()
        } else {
            "no cell has a B_opt estimate".into()
        });
    }
    let axes: Vec<usize> = (0..3).filter(|&k| varies(cells, k)).collect();
    if axes.is_empty() {
        return Err(
            "ε, N and m are the same in every cell with a B_opt: there is nothing to scale \
             B_opt against (the one-constant fit k is in the table)"
                .into(),
        );
    }
    let scaling = fit.scaling.fitted();
    let log_linear = scaling.and_then(|s| s.log_linear.fitted());
    let why_no_fit = match (&fit.scaling, scaling.map(|s| &s.log_linear)) {
        (s, None) => s.reason().map(str::to_string),
        (_, Some(l)) => l.reason().map(str::to_string),
    };
    let used: Vec<&CellBopt> = match log_linear {
        Some(f) => cells
            .iter()
            .filter(|c| f.points.iter().any(|p| p.cell == c.cell))
            .collect(),
        None => cells.iter().filter(|c| c.censored.is_none()).collect(),
    };
    let base: Vec<&CellBopt> = if used.is_empty() {
        cells.iter().collect()
    } else {
        used.clone()
    };
    let mut centre = [0.0; 3];
    for (j, c) in centre.iter_mut().enumerate() {
        *c = base.iter().map(|c| (AXES[j].value)(c).ln()).sum::<f64>() / base.len() as f64;
    }
    let ctx = Ctx {
        fit: log_linear,
        centre,
        level: fit.options.confidence,
    };
    let adjusted = log_linear.is_some() && axes.len() > 1;
    let y_label = if adjusted {
        "B_opt at the mean of the other axes (examples)"
    } else {
        "B_opt (examples per update)"
    };
    let mut panels = Vec::new();
    for &k in &axes {
        panels.push(panel(&ctx, cells, k, y_label)?);
    }
    let level = format::percent(fit.options.confidence, 0);
    let mut footnote = format!(
        "Points: cells' B_opt with {level} bootstrap intervals; hollow: the best B on the grid's \
         edge (a bound, left out of the fit). {}",
        super::batch::BAR_ARROWS
    );
    if adjusted {
        footnote.push_str(
            " With several axes varying, each point is moved to the mean of the other axes \
             along the fitted slopes.",
        );
    }
    if scheduled > 0 {
        footnote.push_str(&format!(
            " {scheduled} cell(s) whose schedule changes ε or B are not drawn (nor fitted)."
        ));
    }
    match (log_linear, why_no_fit) {
        (Some(f), _) => footnote.push_str(&format!(
            " Line: fitted ln B_opt = c + a·ln ε + … (R² = {}, {} cells), band: {level} \
             confidence band of the mean.",
            f.r_squared
                .map(|r| format::sig(r, 3))
                .unwrap_or_else(|| "–".into()),
            f.n
        )),
        (None, Some(why)) => footnote.push_str(&format!(" No fitted line: {why}.")),
        (None, None) => {}
    }
    let names: Vec<&str> = axes.iter().map(|&k| AXES[k].short).collect();
    Ok(Figure {
        title: format!("B_opt against {} (Smith & Le 2017)", names.join(", ")),
        columns: axes.len(),
        panels,
        footnote: Some(footnote),
    })
}

fn panel(ctx: &Ctx, cells: &[CellBopt], k: usize, y_label: &str) -> Result<Panel, SkipReason> {
    let axis = &AXES[k];
    let mut p = Panel::new(
        Axis::new(axis.label, Scale::Log10),
        Axis::new(y_label, Scale::Log10),
    );
    let colour = series_color(0);
    let mut used_pts = Vec::new();
    let mut censored_pts = Vec::new();
    let mut bars = Vec::new();
    for c in cells {
        let x = (axis.value)(c);
        let f = (-ctx.shift(c, k)).exp();
        let y = c.b_opt * f;
        let in_fit = ctx
            .fit
            .map(|fit| fit.points.iter().any(|p| p.cell == c.cell))
            .unwrap_or(c.censored.is_none());
        if in_fit {
            used_pts.push((x, y));
        } else {
            censored_pts.push((x, y));
        }
        bars.extend(super::batch::bopt_bar(c, x, f));
    }
    let (xmin, xmax) = cells
        .iter()
        .map(|c| (axis.value)(c))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    let centre_x = ctx.centre[k].exp();
    let grid = sample_grid(Scale::Log10, xmin, xmax, 60, &[centre_x]);
    // Fitted line and band.
    match ctx.fit.and_then(|fit| Some((fit, coef_index(fit, k)?))) {
        Some((fit, i)) => {
            let coef = &fit.coefficients[i];
            p.title = Some(format!(
                "{} slope {} = {} {}",
                axis.short,
                axis.symbol,
                format::slope(coef.estimate),
                format::interval(&coef.interval, format::slope)
            ));
            let t = t_value(ctx.level, fit.dof).ok_or("no t quantile for the band")?;
            let mut line = Vec::new();
            let mut band = Vec::new();
            for &x in &grid {
                if let Some((m, se)) = mean_prediction(fit, &ctx.x0(fit, k, x)) {
                    line.push((x, m.exp()));
                    band.push((x, (m - t * se).exp(), (m + t * se).exp()));
                }
            }
            p.layers.push(
                Layer::band("band", colour, band)
                    .widening_range()
                    .labelled(format!(
                        "{} confidence band of the fit",
                        format::percent(ctx.level, 0)
                    )),
            );
            p.layers.push(
                Layer::line("fit", colour, line)
                    .widening_range()
                    .labelled("fitted scaling law"),
            );
        }
        None => {
            p.title = Some(format!("{} (not in the fit)", axis.short));
        }
    }
    // Smith & Le's slope 1 through the centre of the fitted points (on this panel's scale).
    let ref_pts: &[(f64, f64)] = if used_pts.is_empty() {
        &censored_pts
    } else {
        &used_pts
    };
    if !ref_pts.is_empty() {
        let n = ref_pts.len() as f64;
        let cx = ref_pts.iter().map(|p| p.0.ln()).sum::<f64>() / n;
        let cy = ref_pts.iter().map(|p| p.1.ln()).sum::<f64>() / n;
        let through = |slope: f64| -> Vec<(f64, f64)> {
            grid.iter()
                .map(|&x| (x, (cy + slope * (x.ln() - cx)).exp()))
                .collect()
        };
        p.layers.push(
            Layer::line("smith-le", Rgb::GREY, through(1.0))
                .follows_range()
                .dashed(true)
                .sized(2)
                .labelled("Smith & Le: slope 1"),
        );
        if k == 1 {
            p.layers.push(
                Layer::line("no-n", series_color(1), through(0.0))
                    .follows_range()
                    .dashed(true)
                    .sized(2)
                    .labelled("no N dependence: slope 0"),
            );
        }
    }
    p.layers
        .push(Layer::error_bars("intervals", Rgb::BLACK, bars, false).widening_range());
    p.layers.push(
        Layer::markers("cells", Rgb::BLACK, used_pts, Shape::Circle, true)
            .sized(7)
            .labelled("cell B_opt (bootstrap interval)"),
    );
    if !censored_pts.is_empty() {
        p.layers.push(
            Layer::markers("censored", Rgb::BLACK, censored_pts, Shape::Circle, false)
                .sized(7)
                .labelled("censored cell (a bound; not fitted)"),
        );
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::fit_all;
    use crate::plot::chart::LayerKind;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    /// A cell whose schedule changes B has no single B to place: not drawn (it was drawn as a
    /// hollow "censored" point, being outside the fit), and the footnote says so.
    #[test]
    fn cells_with_a_changing_schedule_are_not_drawn() {
        let (_, mut fit) = testdata::synthetic();
        let points = |fit: &FitReport| {
            let fig = prepare_scaling(fit).unwrap();
            let n = |name: &str| fig.panels[0].layer(name).map_or(0, |l| l.xy().len());
            (n("cells") + n("censored"), fig.footnote.unwrap_or_default())
        };
        let (before, note) = points(&fit);
        assert!(!note.contains("schedule"), "{note}");
        let crate::fit::Outcome::Fitted(bopt) = &mut fit.bopt else {
            panic!("no B_opt fit");
        };
        let total = bopt.cells.len();
        bopt.cells[0].schedule = "increase-batch".into();
        let (after, note) = points(&fit);
        assert_eq!((before, after), (total, total - 1));
        assert!(note.contains("1 cell(s) whose schedule changes"), "{note}");
    }

    #[test]
    fn band_at_the_centre_is_the_fit_plus_minus_t_se() {
        let (_, fit) = testdata::synthetic();
        let ll = fit
            .scaling
            .fitted()
            .unwrap()
            .log_linear
            .fitted()
            .unwrap()
            .clone();
        let fig = prepare_scaling(&fit).unwrap();
        assert_eq!(fig.panels.len(), 3); // ε, N and m all vary
        // The centre: mean ln value of each axis over the fitted cells.
        let cells = &fit.bopt.fitted().unwrap().cells;
        let used: Vec<&CellBopt> = cells
            .iter()
            .filter(|c| ll.points.iter().any(|p| p.cell == c.cell))
            .collect();
        let mean_ln = |k: usize| {
            used.iter().map(|c| (AXES[k].value)(c).ln()).sum::<f64>() / used.len() as f64
        };
        let x0: Vec<f64> = vec![1.0, mean_ln(0), mean_ln(1), mean_ln(2)];
        // By hand: ŷ = x₀ᵀβ, se = √(x₀ᵀ C x₀).
        let yhat: f64 = ll
            .coefficients
            .iter()
            .zip(&x0)
            .map(|(c, x)| c.estimate * x)
            .sum();
        let mut var = 0.0;
        for i in 0..4 {
            for j in 0..4 {
                var += x0[i] * ll.covariance[i][j] * x0[j];
            }
        }
        let t = t_value(0.95, ll.dof).unwrap();
        // t(0.975, 10) = 2.228 (standard table) — a check of the quantile itself.
        assert!((t_value(0.95, 10).unwrap() - 2.228).abs() < 1e-3);
        for (k, panel) in fig.panels.iter().enumerate() {
            let cx = mean_ln(k).exp();
            let LayerKind::Band { points } = &panel.layer("band").unwrap().kind else {
                panic!("a band")
            };
            let &(_, lo, hi) = points
                .iter()
                .find(|p| (p.0 - cx).abs() < 1e-9 * cx)
                .expect("the band is sampled at the centre");
            assert!(
                ((yhat - t * var.sqrt()).exp() / lo - 1.0).abs() < 1e-9,
                "panel {k}"
            );
            assert!(
                ((yhat + t * var.sqrt()).exp() / hi - 1.0).abs() < 1e-9,
                "panel {k}"
            );
            let fit_pt = panel
                .layer("fit")
                .unwrap()
                .xy()
                .iter()
                .find(|p| (p.0 - cx).abs() < 1e-9 * cx)
                .copied()
                .unwrap();
            assert!((fit_pt.1 / yhat.exp() - 1.0).abs() < 1e-9);
            // The fitted line's log–log slope is the coefficient.
            let line = panel.layer("fit").unwrap().xy();
            let (a, b) = (line[0], line[line.len() - 1]);
            let slope = (b.1.ln() - a.1.ln()) / (b.0.ln() - a.0.ln());
            assert!((slope - ll.coefficients[k + 1].estimate).abs() < 1e-9);
            // Smith & Le reference: slope 1.
            let r = panel.layer("smith-le").unwrap().xy();
            let s = (r[r.len() - 1].1.ln() - r[0].1.ln()) / (r[r.len() - 1].0.ln() - r[0].0.ln());
            assert!((s - 1.0).abs() < 1e-9);
        }
        // The planted law is B_opt ∝ εN/(1−m): the fitted slopes are near 1.
        for c in &ll.coefficients[1..] {
            assert!(
                (c.estimate - 1.0).abs() < 0.25,
                "{} = {}",
                c.name,
                c.estimate
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig2.png");
        draw_figure(&fig, &path, fig.preferred_size()).unwrap();
        assert_png(&path, fig.preferred_size());
    }

    #[test]
    fn adjusted_points_sit_on_the_line_when_the_fit_is_exact() {
        // B_opt = 0.4·εN exactly on the grid (one seed: no bootstrap): 4 cells, 2 axes.
        let mut runs = Vec::new();
        for (lr, n) in [(0.05, 2000u64), (0.1, 2000), (0.05, 8000), (0.1, 16000)] {
            let b_opt = 0.4 * lr * n as f64;
            for b in testdata::batch_grid() {
                let x = (b as f64).log2() - b_opt.log2();
                let cell = testdata::cell_name(lr, n, 0.0);
                runs.push(testdata::rising_run(
                    &cell,
                    lr,
                    n,
                    0.0,
                    b,
                    0,
                    0.9 - 0.03 * x * x,
                    false,
                ));
            }
        }
        let fit = fit_all(&runs, &testdata::test_options());
        let ll = fit.scaling.fitted().unwrap().log_linear.fitted().unwrap();
        assert!(ll.residual_std_error < 1e-6, "{}", ll.residual_std_error);
        let fig = prepare_scaling(&fit).unwrap();
        assert_eq!(fig.panels.len(), 2); // ε and N vary, m does not
        // The centre of each axis over the four cells.
        let centre = |k: usize| -> f64 {
            let cells = &fit.bopt.fitted().unwrap().cells;
            cells.iter().map(|c| (AXES[k].value)(c).ln()).sum::<f64>() / cells.len() as f64
        };
        let (c, a, b) = (
            ll.coefficients[0].estimate,
            ll.coefficients[1].estimate,
            ll.coefficients[2].estimate,
        );
        assert!((a - 1.0).abs() < 1e-6 && (b - 1.0).abs() < 1e-6, "{a} {b}");
        for (k, p) in fig.panels.iter().enumerate() {
            let pts = p.layer("cells").unwrap().xy();
            assert_eq!(pts.len(), 4);
            for &(x, y) in pts {
                let pred = if k == 0 {
                    c + a * x.ln() + b * centre(1)
                } else {
                    c + a * centre(0) + b * x.ln()
                };
                assert!((y.ln() - pred).abs() < 1e-6, "panel {k}: {x} {y}");
            }
        }
    }

    #[test]
    fn one_cell_is_skipped_with_a_reason() {
        let runs: Vec<_> = testdata::batch_grid()
            .into_iter()
            .map(|b| {
                let x = (b as f64).log2() - 6.0;
                testdata::rising_run("c", 0.1, 4000, 0.9, b, 0, 0.9 - 0.03 * x * x, false)
            })
            .collect();
        let fit = fit_all(&runs, &testdata::test_options());
        let why = prepare_scaling(&fit).unwrap_err();
        assert!(why.contains("nothing to scale"), "{why}");
    }
}
