//! Noise-scale collapse (Smith & Le 2017, arXiv 1710.06451; docs/science.md §1).
//!
//! If the SGD noise scale g = ε(N/B − 1)/(1−m) is what sets generalisation, the metric of every
//! run, from every cell, falls on one curve of g. The smooth curve is a least-squares polynomial
//! in ln g (cubic when at least 5 distinct g values exist, else of degree distinct − 2), fitted to
//! the value of every run that did not diverge; ln g is mapped to u ∈ [−1, 1] first for
//! conditioning. Diverged runs are drawn at the censor value but not fitted: a polynomial cannot
//! follow the cliff from a trained run to a diverged one, and the censor value (the worst finite
//! value of the sweep) is a convention, not a measurement, so fitted it pulls the curve and lifts
//! its optimum above every run. The collapse score is
//! 1 − SS_res/SS_tot of the seed means over the (cell, B) points under that curve; the same score
//! for a polynomial of the same degree in ln B says how much better g does than B alone (with one
//! cell, g is a one-to-one function of B and both say the same). The optimal g is the best point
//! of the curve within the data range (an end of the range is flagged censored); the curve's
//! value there is a smoothed figure, reported beside the best seed mean actually observed. B = N gives
//! g = 0 (full batch, no noise): such points, and B > N, are excluded and counted. So are runs
//! with a schedule other than "constant": their ε and B are the initial ones, and the schedule
//! changes g during training, so no single g describes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::{finite, mean, polyfit, polyval};
use super::{Censor, Ctx, MetricKind, Outcome};

/// Points of the sampled smooth curve.
const CURVE_POINTS: usize = 49;

/// One run in the collapse plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollapsePoint {
    pub run_id: String,
    pub cell: String,
    pub batch_size: u64,
    pub g: f64,
    pub ln_g: f64,
    pub value: f64,
    /// A diverged run at the censor value.
    pub censored: bool,
}

/// The seed mean of one (cell, B).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollapseMean {
    pub cell: String,
    pub batch_size: u64,
    pub g: f64,
    pub ln_g: f64,
    pub mean: f64,
    pub n: usize,
}

/// A point (x, y) of a sampled curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub x: f64,
    pub y: f64,
}

/// A polynomial y = Σ c_k u^k with u = (x − center)/scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmoothFit {
    /// "ln_g" or "ln_b".
    pub variable: String,
    pub degree: usize,
    pub center: f64,
    pub scale: f64,
    pub coefficients: Vec<f64>,
    /// The curve sampled over the data range, x in the variable's units.
    pub curve: Vec<CurvePoint>,
}

impl SmoothFit {
    /// The curve at x (in the variable's units).
    pub fn eval(&self, x: f64) -> f64 {
        polyval(&self.coefficients, (x - self.center) / self.scale)
    }
}

/// The collapse section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollapseSection {
    pub points: Vec<CollapsePoint>,
    pub means: Vec<CollapseMean>,
    /// Runs with B ≥ N (g ≤ 0) left out.
    pub excluded_full_batch: usize,
    /// Runs with ε ≤ 0, m outside [0, 1) or B = 0 left out.
    pub excluded_invalid: usize,
    /// Runs with a non-constant schedule left out (g changes during training).
    #[serde(default)]
    pub excluded_schedule: usize,
    /// Diverged runs: in `points` (at the censor value, `censored`), not in `means` nor fitted.
    #[serde(default)]
    pub excluded_diverged: usize,
    pub n_cells: usize,
    pub smooth_g: SmoothFit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smooth_b: Option<SmoothFit>,
    pub g_opt: f64,
    pub ln_g_opt: f64,
    /// The smooth curve's value at g_opt (a smoothed figure: it can lie above every run).
    pub value_at_g_opt: f64,
    /// The best (cell, B) seed mean observed, for comparison with `value_at_g_opt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_mean: Option<CollapseMean>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g_opt_censored: Option<Censor>,
    /// Share of the variance of the (cell, B) seed means explained by the curve of ln g.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_g: Option<f64>,
    /// The same for a curve of ln B alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_b: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Distinct values of xs (to 1e-9).
fn distinct(xs: &[f64]) -> usize {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
    v.len()
}

/// Fits the polynomial of `degree` in x to (x, y), x mapped to [−1, 1].
fn smooth(variable: &str, x: &[f64], y: &[f64], degree: usize) -> Option<SmoothFit> {
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let center = (lo + hi) / 2.0;
    let scale = (hi - lo) / 2.0;
    if scale.is_nan() || scale <= 0.0 {
        return None;
    }
    let u: Vec<f64> = x.iter().map(|v| (v - center) / scale).collect();
    let coefficients = polyfit(&u, y, degree)?;
    let curve = (0..CURVE_POINTS)
        .map(|i| {
            let u = -1.0 + 2.0 * i as f64 / (CURVE_POINTS - 1) as f64;
            CurvePoint {
                x: center + scale * u,
                y: polyval(&coefficients, u),
            }
        })
        .collect();
    Some(SmoothFit {
        variable: variable.into(),
        degree,
        center,
        scale,
        coefficients,
        curve,
    })
}

/// 1 − SS_res/SS_tot of `y` under `f` at `x`; `None` when y does not vary.
fn score(f: &SmoothFit, x: &[f64], y: &[f64]) -> Option<f64> {
    let m = mean(y)?;
    let tot: f64 = y.iter().map(|v| (v - m).powi(2)).sum();
    let res: f64 = x
        .iter()
        .zip(y)
        .map(|(&xi, yi)| (yi - f.eval(xi)).powi(2))
        .sum();
    (tot > 1e-300).then(|| 1.0 - res / tot).and_then(finite)
}

/// The best point of the polynomial on u ∈ [−1, 1]: the ends and the real roots of its
/// derivative (degree ≤ 3, so the derivative is at most quadratic).
fn best_on_range(c: &[f64], metric: MetricKind) -> (f64, Option<Censor>) {
    let mut cands = vec![-1.0, 1.0];
    let d1 = c.get(1).copied().unwrap_or(0.0);
    let d2 = 2.0 * c.get(2).copied().unwrap_or(0.0);
    let d3 = 3.0 * c.get(3).copied().unwrap_or(0.0);
    // Roots of d3·u² + d2·u + d1 by the cancellation-free form (Numerical Recipes §5.6):
    // q = −(d2 + sign(d2)·√disc)/2, roots q/d3 and d1/q. A cubic term that is only rounding
    // noise then still gives the quadratic's vertex accurately (through d1/q).
    let disc = d2 * d2 - 4.0 * d3 * d1;
    if disc >= 0.0 {
        let q = -0.5 * (d2 + d2.signum() * disc.sqrt());
        if q != 0.0 {
            cands.push(d1 / q);
        }
        if d3 != 0.0 {
            cands.push(q / d3);
        }
    }
    let mut best = -1.0;
    for u in cands
        .into_iter()
        .filter(|u| u.is_finite() && (-1.0..=1.0).contains(u))
    {
        if metric.better(polyval(c, u), polyval(c, best)) {
            best = u;
        }
    }
    let censored = if best <= -1.0 + 1e-9 {
        Some(Censor::Low)
    } else if best >= 1.0 - 1e-9 {
        Some(Censor::High)
    } else {
        None
    };
    (best, censored)
}

/// The collapse of every run's metric onto g.
pub(crate) fn fit_collapse(ctx: &Ctx) -> Outcome<CollapseSection> {
    let mut points = Vec::new();
    // The noise_scale axis value of each point's run, if the sweep had one.
    let mut placed_at = Vec::new();
    let (mut full, mut invalid, mut scheduled) = (0, 0, 0);
    for (i, r, value) in ctx.valued() {
        if r.schedule != "constant" {
            scheduled += 1;
            continue;
        }
        let ok =
            r.lr.is_finite() && r.lr > 0.0 && (0.0..1.0).contains(&r.momentum) && r.batch_size > 0;
        if !ok {
            invalid += 1;
            continue;
        }
        if r.batch_size >= r.train_size {
            full += 1;
            continue;
        }
        let g = r.lr * (r.train_size as f64 / r.batch_size as f64 - 1.0) / (1.0 - r.momentum);
        let Some(ln_g) = finite(g.ln()) else {
            invalid += 1;
            continue;
        };
        points.push(CollapsePoint {
            run_id: r.run_id.clone(),
            cell: r.cell.clone(),
            batch_size: r.batch_size,
            g,
            ln_g,
            value,
            censored: ctx.sel[i].is_some_and(|s| s.censored),
        });
        placed_at.push(r.noise_scale);
    }
    if points.is_empty() {
        return Outcome::skipped(if full > 0 {
            "every run has B ≥ N (g = 0): no noise scale to collapse on"
        } else if scheduled > 0 {
            "no constant-schedule run with a value: a schedule changes ε or B during training, \
             so its runs have no single noise scale g"
        } else {
            "no run with a value and a valid ε, m and B: nothing to collapse"
        });
    }
    let diverged = points.iter().filter(|p| p.censored).count();
    if diverged == points.len() {
        return Outcome::skipped(format!(
            "every run with a noise scale g diverged ({diverged}): no curve to fit"
        ));
    }
    let mut groups: BTreeMap<(&str, u64), Vec<&CollapsePoint>> = BTreeMap::new();
    for p in points.iter().filter(|p| !p.censored) {
        groups
            .entry((p.cell.as_str(), p.batch_size))
            .or_default()
            .push(p);
    }
    let means: Vec<CollapseMean> = groups
        .iter()
        .filter_map(|(&(cell, b), ps)| {
            let vals: Vec<f64> = ps.iter().map(|p| p.value).collect();
            Some(CollapseMean {
                cell: cell.to_string(),
                batch_size: b,
                g: ps[0].g,
                ln_g: ps[0].ln_g,
                mean: mean(&vals)?,
                n: vals.len(),
            })
        })
        .collect();
    let n_cells = distinct_strings(means.iter().map(|m| m.cell.as_str()));
    let fitted: Vec<&CollapsePoint> = points.iter().filter(|p| !p.censored).collect();
    let xg: Vec<f64> = fitted.iter().map(|p| p.ln_g).collect();
    let y: Vec<f64> = fitted.iter().map(|p| p.value).collect();
    // Runs placed on a noise_scale axis sit at its values of g ≈ εN/(B(1−m)); their exact g
    // differs only by the factor 1 − B/N, and counting those slivers as levels let the
    // polynomial bend through the gaps between two real ones.
    let nominal: Option<Vec<f64>> = points
        .iter()
        .zip(&placed_at)
        .filter(|(p, _)| !p.censored)
        .map(|(_, g)| g.map(f64::ln))
        .collect();
    if let Some(nominal) = nominal.filter(|v| !v.is_empty()) {
        let levels = distinct(&nominal);
        if levels < 4 {
            return Outcome::skipped(format!(
                "the runs that did not diverge sit at only {levels} value(s) of the sweep's \
                 noise_scale axis (their exact g differ only by the factor 1 − B/N): the \
                 collapse needs at least 4"
            ));
        }
    }
    let nd = distinct(&xg);
    if nd < 4 {
        return Outcome::skipped(format!(
            "only {nd} distinct value(s) of g among the runs that did not diverge: the collapse \
             needs at least 4"
        ));
    }
    let degree = (nd - 2).min(3);
    let Some(smooth_g) = smooth("ln_g", &xg, &y, degree) else {
        return Outcome::skipped("the polynomial in ln g could not be fitted");
    };
    let mx: Vec<f64> = means.iter().map(|m| m.ln_g).collect();
    let my: Vec<f64> = means.iter().map(|m| m.mean).collect();
    let score_g = score(&smooth_g, &mx, &my);
    let xb: Vec<f64> = fitted.iter().map(|p| (p.batch_size as f64).ln()).collect();
    let ndb = distinct(&xb);
    let smooth_b = (ndb >= 3)
        .then(|| smooth("ln_b", &xb, &y, degree.min(ndb - 2)))
        .flatten();
    let mxb: Vec<f64> = means.iter().map(|m| (m.batch_size as f64).ln()).collect();
    let score_b = smooth_b.as_ref().and_then(|f| score(f, &mxb, &my));
    let (u_opt, g_opt_censored) = best_on_range(&smooth_g.coefficients, ctx.metric());
    let ln_g_opt = smooth_g.center + smooth_g.scale * u_opt;
    let (Some(g_opt), Some(value_at_g_opt)) = (
        finite(ln_g_opt.exp()),
        finite(polyval(&smooth_g.coefficients, u_opt)),
    ) else {
        return Outcome::skipped("the optimal g is not a finite number");
    };
    let metric = ctx.metric();
    let best_mean = means
        .iter()
        .filter(|m| m.mean.is_finite())
        .reduce(|a, b| if metric.better(b.mean, a.mean) { b } else { a })
        .cloned();
    let mut notes = Vec::new();
    if n_cells == 1 {
        notes.push(
            "one cell: g is a one-to-one function of B, so the two scores say the same thing"
                .to_string(),
        );
    }
    if score_g.is_none() {
        notes.push("the seed means do not vary: no score".to_string());
    }
    if scheduled > 0 {
        notes.push(format!(
            "{scheduled} run(s) with a non-constant schedule left out (the schedule changes g \
             during training)"
        ));
    }
    Outcome::Fitted(CollapseSection {
        g_opt,
        ln_g_opt,
        value_at_g_opt,
        g_opt_censored,
        points,
        means,
        excluded_full_batch: full,
        excluded_invalid: invalid,
        excluded_schedule: scheduled,
        excluded_diverged: diverged,
        best_mean,
        n_cells,
        smooth_g,
        smooth_b,
        score_g,
        score_b,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

fn distinct_strings<'a>(it: impl Iterator<Item = &'a str>) -> usize {
    it.collect::<std::collections::BTreeSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use crate::fit::testdata::{assert_json_finite, flat_run, planted_bopt_runs, pow2_grid};
    use crate::fit::{FitOptions, fit_all};

    #[test]
    fn metric_that_depends_on_g_alone_collapses_better_than_b() {
        // value = 0.9 − 0.02 (ln g − ln 10)², noiseless, over ε × N × m cells: a quadratic in
        // ln g, so the cubic explains it exactly (score 1) and its optimum is g = 10.
        let mut runs = Vec::new();
        for (i, &(lr, n, m)) in [(0.1, 8000u64, 0.0), (0.05, 16000, 0.5), (0.2, 4000, 0.9)]
            .iter()
            .enumerate()
        {
            for b in pow2_grid() {
                let g: f64 = lr * (n as f64 / b as f64 - 1.0) / (1.0 - m);
                let v = 0.9 - 0.02 * (g.ln() - 10f64.ln()).powi(2);
                runs.push(flat_run(&format!("c{i}"), lr, n, m, b, 0, v, 2));
            }
        }
        let rep = fit_all(&runs, &FitOptions::default());
        let c = rep.collapse.fitted().unwrap();
        assert_eq!(c.smooth_g.degree, 3);
        assert!((c.score_g.unwrap() - 1.0).abs() < 1e-9, "{:?}", c.score_g);
        assert!(c.score_b.unwrap() < 0.9, "{:?}", c.score_b);
        assert!((c.g_opt - 10.0).abs() < 1e-6, "{}", c.g_opt);
        assert_eq!(c.g_opt_censored, None);
        assert_eq!(c.n_cells, 3);
        // 30 runs, but at B = 4096 > N = 4000 the planted value is NaN (ln of g < 0): missing.
        assert_eq!((c.points.len(), rep.n_missing), (29, 1));
        assert_json_finite(&rep);
    }

    /// The score is of the seed means, not of the runs: two seeds at ±0.01 around a planted
    /// quadratic in ln g. Their mean is the quadratic, and the curve fitted to the runs is the
    /// quadratic too (each point has both seeds), so the means score exactly 1 where the runs
    /// themselves would score 1 − Σδ²/SS_tot = 0.9931 (computed below).
    #[test]
    fn the_score_is_of_the_seed_means() {
        let delta = 0.01;
        let mut runs = Vec::new();
        for (i, &(lr, n, m)) in [(0.1, 8000u64, 0.0), (0.05, 16000, 0.5), (0.2, 4000, 0.9)]
            .iter()
            .enumerate()
        {
            for b in pow2_grid().into_iter().filter(|&b| b < n) {
                let g: f64 = lr * (n as f64 / b as f64 - 1.0) / (1.0 - m);
                let v = 0.9 - 0.02 * (g.ln() - 10f64.ln()).powi(2);
                for (seed, offset) in [(0, delta), (1, -delta)] {
                    runs.push(flat_run(&format!("c{i}"), lr, n, m, b, seed, v + offset, 2));
                }
            }
        }
        let rep = fit_all(&runs, &FitOptions::default());
        let c = rep.collapse.fitted().unwrap();
        assert_eq!((c.points.len(), c.means.len()), (58, 29));
        assert!(c.means.iter().all(|m| m.n == 2));
        assert!((c.score_g.unwrap() - 1.0).abs() < 1e-9, "{:?}", c.score_g);
        // What scoring the runs would give: every residual is ±δ.
        let values: Vec<f64> = c.points.iter().map(|p| p.value).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let tot: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        let of_runs = 1.0 - values.len() as f64 * delta * delta / tot;
        assert!((of_runs - 0.9931).abs() < 1e-4, "{of_runs}");
        assert!((c.g_opt - 10.0).abs() < 1e-6, "{}", c.g_opt);
    }

    /// Runs placed on a `noise_scale` axis: ε = g·B(1−m)/N, cells keyed by g. The value falls
    /// with B at fixed g, so g does not organise it.
    fn noise_axis_runs(levels: &[f64]) -> Vec<crate::fit::RunInput> {
        let (n, m) = (1000u64, 0.9);
        let mut runs = Vec::new();
        for &g in levels {
            for b in [8u64, 16, 32, 64, 128] {
                let lr = g * b as f64 * (1.0 - m) / n as f64;
                let v = 0.7 - 0.02 * (b as f64).log2() + 0.001 * g;
                let mut r = flat_run(&format!("g={g}"), lr, n, m, b, 0, v, 2);
                r.noise_scale = Some(g);
                runs.push(r);
            }
        }
        runs
    }

    /// Regression: on a sweep with two values of a noise_scale axis, the exact g of each run
    /// (the value times 1 − B/N) made ten "distinct" values; the cubic rode those slivers,
    /// scored 0.97 by g against 0.24 by B, and put g_opt in the empty gap between the two
    /// values. Now the axis's values are the levels counted, and the B_opt cells say why a
    /// noise-scale cell has no B_opt at fixed ε.
    #[test]
    fn a_noise_scale_axis_counts_its_values_not_the_exact_g() {
        let rep = fit_all(&noise_axis_runs(&[5.0, 20.0]), &FitOptions::default());
        let why = rep.collapse.reason().unwrap_or_default();
        assert!(
            why.contains("only 2 value(s) of the sweep's noise_scale axis") && !why.contains("  "),
            "{why}: {:?}",
            rep.collapse
        );
        let reasons: Vec<String> = match &rep.bopt {
            crate::fit::Outcome::Fitted(b) => {
                assert!(b.cells.is_empty(), "{:?}", b.cells);
                b.skipped_cells.iter().map(|s| s.reason.clone()).collect()
            }
            crate::fit::Outcome::Skipped { reason } => vec![reason.clone()],
        };
        assert!(
            !reasons.is_empty()
                && reasons.iter().all(|r| r.contains("noise scale g =")
                    && r.contains("sweep over lr")
                    && !r.contains("  ")),
            "{reasons:?}"
        );
        // Four values are four levels: the collapse is fitted.
        let rep = fit_all(
            &noise_axis_runs(&[2.0, 5.0, 10.0, 20.0]),
            &FitOptions::default(),
        );
        assert!(rep.collapse.fitted().is_some(), "{:?}", rep.collapse);
    }

    /// docs/fits.md §4: on a noise_scale axis the curve is fitted on the exact g. A metric that
    /// follows the exact g gives its optimum back; one that follows the axis's approximate g
    /// reads low by about the grid's mean 1 − B/N.
    #[test]
    fn a_noise_scale_axis_collapse_is_fitted_on_the_exact_g() {
        let (n, m) = (1000u64, 0.9);
        let grid = [8u64, 16, 32, 64, 128, 256];
        let g_opt = |on_exact: bool| {
            let mut runs = Vec::new();
            for g in [2.5f64, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0] {
                for b in grid {
                    let lr = g * b as f64 * (1.0 - m) / n as f64;
                    let exact = g * (1.0 - b as f64 / n as f64);
                    let x = if on_exact { exact } else { g };
                    let v = 0.8 - 0.01 * (x.ln() - 20f64.ln()).powi(2);
                    let mut r = flat_run(&format!("g={g}"), lr, n, m, b, 0, v, 2);
                    r.noise_scale = Some(g);
                    runs.push(r);
                }
            }
            let rep = fit_all(&runs, &FitOptions::default());
            rep.collapse.fitted().unwrap().g_opt
        };
        let on_exact = g_opt(true);
        assert!((on_exact - 20.0).abs() < 1e-9, "{on_exact}");
        let mean_factor =
            grid.iter().map(|&b| 1.0 - b as f64 / n as f64).sum::<f64>() / grid.len() as f64;
        assert!((mean_factor - 0.916).abs() < 1e-3, "{mean_factor}");
        let on_axis = g_opt(false);
        assert!(
            (on_axis / (20.0 * mean_factor) - 1.0).abs() < 0.01,
            "{on_axis} vs {}",
            20.0 * mean_factor
        );
    }

    #[test]
    fn diverged_runs_are_drawn_but_do_not_pull_the_curve() {
        // Two cells whose trained runs lie on 0.8 − 0.01 (ln g − ln 40)², and whose three
        // smallest batch sizes (the largest g) diverged. Fitted at the censor value (the worst
        // finite value), the divergences bent the cubic, moved g_opt and put the curve's
        // optimum above every run; left out, the cubic is the planted parabola again.
        let mut runs = Vec::new();
        for (i, &(lr, n, m)) in [(0.1, 16_384u64, 0.9), (0.05, 32_768, 0.9)]
            .iter()
            .enumerate()
        {
            for b in pow2_grid() {
                let g: f64 = lr * (n as f64 / b as f64 - 1.0) / (1.0 - m);
                let v = 0.8 - 0.01 * (g.ln() - 40f64.ln()).powi(2);
                for seed in 0..2 {
                    let mut r = flat_run(&format!("c{i}"), lr, n, m, b, seed, v, 2);
                    r.diverged = b <= 32;
                    runs.push(r);
                }
            }
        }
        let rep = fit_all(&runs, &FitOptions::default());
        let c = rep.collapse.fitted().unwrap();
        assert_eq!((c.points.len(), c.excluded_diverged), (40, 12));
        assert_eq!(c.points.iter().filter(|p| p.censored).count(), 12);
        assert!(c.means.iter().all(|m| m.batch_size > 32), "{:?}", c.means);
        assert!((c.score_g.unwrap() - 1.0).abs() < 1e-9, "{:?}", c.score_g);
        assert!((c.g_opt - 40.0).abs() < 1e-6, "{}", c.g_opt);
        assert!(
            (c.value_at_g_opt - 0.8).abs() < 1e-9,
            "{}",
            c.value_at_g_opt
        );
        let best = c.best_mean.as_ref().unwrap();
        let observed = c.means.iter().map(|m| m.mean).fold(f64::MIN, f64::max);
        assert_eq!(best.mean, observed);
        assert!(best.mean <= c.value_at_g_opt + 1e-12);
        assert_json_finite(&rep);

        // Every run diverged: nothing to fit, said so.
        for r in &mut runs {
            r.diverged = true;
        }
        let rep = fit_all(&runs, &FitOptions::default());
        let why = rep.collapse.reason().unwrap();
        assert!(why.contains("diverged"), "{why}");
    }

    #[test]
    fn full_batch_points_are_excluded_and_counted() {
        let runs: Vec<_> = [256u64, 512, 1024, 2048, 4096]
            .into_iter()
            .map(|b| flat_run("c", 0.1, 1024, 0.0, b, 0, 0.5 + b as f64 * 1e-5, 2))
            .collect();
        let rep = fit_all(&runs, &FitOptions::default());
        // B = 1024, 2048, 4096 ≥ N = 1024: excluded, leaving 2 values of g → skipped.
        assert!(rep.collapse.reason().unwrap().contains("only 2 distinct"));
        // Four batch sizes under N and three at or over it: fitted on the four, the three
        // counted as full-batch (not as invalid, which their g ≤ 0 would also make them).
        let runs: Vec<_> = [64u64, 128, 256, 512, 1024, 2048, 4096]
            .into_iter()
            .map(|b| {
                let peak = 0.9 - 0.01 * ((b as f64).log2() - 7.5).powi(2);
                flat_run("c", 0.1, 1024, 0.0, b, 0, peak, 2)
            })
            .collect();
        let rep = fit_all(&runs, &FitOptions::default());
        let c = rep.collapse.fitted().unwrap();
        assert_eq!((c.excluded_full_batch, c.excluded_invalid), (3, 0));
        assert_eq!(c.points.len(), 4, "{:?}", c.points);
        let more = planted_bopt_runs(&[0.1], &[10_000], &[0.9], 0.01, 1.0, 1, 0.0, 3);
        let rep = fit_all(&more, &FitOptions::default());
        let c = rep.collapse.fitted().unwrap();
        assert_eq!(c.excluded_full_batch, 0);
        assert!(c.note.as_deref().unwrap().contains("one cell"));
        // The planted values are a parabola in log2 B: exact in ln B, nearly so in ln g.
        assert!((c.score_b.unwrap() - 1.0).abs() < 1e-9, "{:?}", c.score_b);
        assert!(c.score_g.unwrap() > 0.9, "{:?}", c.score_g);
    }
}
