//! The scaling regression of B_opt on ε, N and m (Smith & Le 2017, arXiv 1710.06451;
//! docs/science.md §1, "the decisive test").
//!
//! ln B_opt = c + a·ln ε + b·ln N + γ·ln(1/(1−m)), by weighted least squares over the
//! non-censored cells, with only the axes that vary across those cells entering. Smith & Le
//! predict (a, b, γ) = (1, 1, 1); the "no N" view (McCandlish et al. 2018, arXiv 1812.06162 §4;
//! Shallue et al. 2018, arXiv 1811.03600) predicts (1, 0, 1). Each hypothesis, restricted to
//! the axes present, gets a joint Wald F test: F = dᵀ(R·Cov·Rᵀ)⁻¹d/q with d = Rβ̂ − r, against
//! F(q, n − p).
//!
//! Weights: a cell's bootstrap interval on B_opt gives se_i = (ln hi − ln lo)/(2·z), z the normal
//! quantile of the interval level; w_i = 1/max(se_i, se_floor)² with se_floor = half the median
//! se_i, so no cell weighs more than 4× a typical one (a bootstrap on a discrete grid often
//! returns zero-width intervals). Cells without an interval get the median se. With no usable
//! intervals the fit is unweighted. The weights are relative: the covariance is s²(XᵀWX)⁻¹ with
//! s² estimated from the residuals, so under-stated bootstrap intervals do not shrink the
//! standard errors.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::bopt::{BoptSection, CellBopt};
use super::stats::{Wls, alpha_of, f_sf, finite, median, normal_quantile, t_quantile, wls};
use super::{FitOptions, Interval, Outcome};

/// One regression coefficient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coefficient {
    /// "intercept", "ln_lr", "ln_train_size" or "ln_inv_one_minus_momentum".
    pub name: String,
    /// "c", "a", "b" or "gamma" (docs/science.md §1).
    pub symbol: String,
    pub estimate: f64,
    pub std_error: f64,
    /// t interval with n − p degrees of freedom.
    pub interval: Interval,
}

/// Whether the data are consistent with a hypothesis at level α.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Consistent,
    Rejected,
}

impl Verdict {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Consistent => "consistent",
            Verdict::Rejected => "rejected",
        }
    }
}

/// A joint Wald F test of predicted slopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HypothesisTest {
    /// "smith_le" (1, 1, 1) or "no_n" (1, 0, 1).
    pub name: String,
    /// The slopes tested (symbols) and their predicted values, restricted to the axes present.
    pub symbols: Vec<String>,
    pub predicted: Vec<f64>,
    /// Absent when the fit is exact (zero residuals): the p-value is then 1 or 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_statistic: Option<f64>,
    pub df1: usize,
    pub df2: usize,
    pub p_value: f64,
    pub alpha: f64,
    pub verdict: Verdict,
}

/// One cell as the regression saw it (for residual plots).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionPoint {
    pub cell: String,
    pub ln_b_opt: f64,
    pub fitted: f64,
    pub weight: f64,
}

/// The log-linear fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLinearFit {
    /// Axes that vary across cells and enter the fit.
    pub axes_varying: Vec<String>,
    /// Axes held fixed (absorbed into the intercept).
    pub axes_fixed: Vec<String>,
    /// Intercept first, then the varying axes in the order ln ε, ln N, ln(1/(1−m)).
    pub coefficients: Vec<Coefficient>,
    /// s²(XᵀWX)⁻¹, rows and columns in the order of `coefficients`.
    pub covariance: Vec<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r_squared: Option<f64>,
    pub n: usize,
    pub dof: usize,
    /// √s², in ln B units.
    pub residual_std_error: f64,
    pub weighting: String,
    pub hypotheses: Vec<HypothesisTest>,
    /// False when N does not vary: (1, 1, 1) and (1, 0, 1) are then the same test.
    pub hypotheses_distinguishable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub points: Vec<RegressionPoint>,
}

/// The one-constant form B_opt = k·εN/(1−m) (so k = 1/g_opt_approx).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstantFit {
    pub k: f64,
    pub ln_k: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std_error_ln: Option<f64>,
    /// exp of the t interval of ln k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    pub n_cells: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The scaling section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingSection {
    pub cells_used: Vec<String>,
    /// Cells left out because their peak was on the grid's edge.
    pub cells_censored: Vec<String>,
    pub log_linear: Outcome<LogLinearFit>,
    pub constant: Outcome<ConstantFit>,
}

/// (name, symbol, regressor) of the three axes.
type Axis = (&'static str, &'static str, fn(&CellBopt) -> f64);
const AXES: [Axis; 3] = [
    ("ln_lr", "a", |c| c.lr.ln()),
    ("ln_train_size", "b", |c| (c.train_size as f64).ln()),
    ("ln_inv_one_minus_momentum", "gamma", |c| {
        -(1.0 - c.momentum).ln()
    }),
];

/// Relative weights from the bootstrap intervals (see the module doc) and a description.
fn weights(cells: &[&CellBopt], level: f64) -> (Vec<f64>, String) {
    let z = normal_quantile(0.5 + level / 2.0).unwrap_or(1.96);
    let se: Vec<Option<f64>> = cells
        .iter()
        .map(|c| {
            let i = c.interval?;
            finite((i.hi.ln() - i.lo.ln()) / (2.0 * z)).filter(|s| *s >= 0.0)
        })
        .collect();
    let known: Vec<f64> = se.iter().flatten().copied().collect();
    let med = median(&known).unwrap_or(0.0);
    if med <= 0.0 {
        let why = if known.is_empty() {
            "unweighted (no bootstrap intervals)"
        } else {
            "unweighted (the bootstrap intervals have zero width)"
        };
        return (vec![1.0; cells.len()], why.into());
    }
    let floor = 0.5 * med;
    let w: Vec<f64> = se
        .iter()
        .map(|s| 1.0 / s.unwrap_or(med).max(floor).powi(2))
        .collect();
    // Normalised to mean 1, so the residual standard error reads in ln B for a typical cell.
    let mean_w = w.iter().sum::<f64>() / w.len() as f64;
    let w = w.into_iter().map(|x| x / mean_w).collect();
    let desc = format!(
        "weighted by 1/se² of the bootstrap intervals (se floor {floor:.3} = half the median se, \
         in ln B; cells without an interval at the median)"
    );
    (w, desc)
}

/// Joint Wald F test of `pred` on the coefficient indices `idx`.
fn wald_test(
    name: &str,
    fit: &Wls,
    idx: &[usize],
    symbols: Vec<String>,
    pred: Vec<f64>,
    alpha: f64,
) -> HypothesisTest {
    let (beta, cov, dof) = (&fit.beta, &fit.cov, fit.dof);
    let q = idx.len();
    let d = DVector::from_iterator(q, idx.iter().zip(&pred).map(|(&i, p)| beta[i] - p));
    let m = DMatrix::from_fn(q, q, |r, c| cov[(idx[r], idx[c])]);
    // Residuals at rounding level: the F ratio would be noise over noise, so treat it as exact.
    let exact = fit.rss <= 1e-20 * fit.tss.max(1.0);
    let f = m
        .cholesky()
        .filter(|_| !exact)
        .map(|ch| d.dot(&ch.solve(&d)) / q as f64)
        .and_then(finite);
    let p_value = match f {
        Some(f) => f_sf(f, q as f64, dof as f64).unwrap_or(0.0),
        // Exact fit (zero residual variance): the prediction holds iff it is hit exactly.
        None if d.amax() <= 1e-9 => 1.0,
        None => 0.0,
    };
    HypothesisTest {
        name: name.into(),
        symbols,
        predicted: pred,
        f_statistic: f,
        df1: q,
        df2: dof,
        p_value,
        alpha,
        verdict: if p_value < alpha {
            Verdict::Rejected
        } else {
            Verdict::Consistent
        },
    }
}

fn fit_log_linear(
    cells: &[&CellBopt],
    w: &[f64],
    weighting: &str,
    opts: &FitOptions,
) -> Outcome<LogLinearFit> {
    let n = cells.len();
    let mut varying = Vec::new();
    let mut fixed = Vec::new();
    for (k, (name, _, f)) in AXES.iter().enumerate() {
        let x0 = f(cells[0]);
        if cells.iter().any(|c| (f(c) - x0).abs() > 1e-9) {
            varying.push(k);
        } else {
            fixed.push(name.to_string());
        }
    }
    if varying.is_empty() {
        return Outcome::skipped(
            "ε, N and m are the same in every non-censored cell: nothing to regress on \
             (see the one-constant form)",
        );
    }
    let p = varying.len() + 1;
    if n <= p {
        return Outcome::skipped(format!(
            "{n} non-censored cell(s) for {p} coefficients: the regression needs at least {}",
            p + 1
        ));
    }
    let x = DMatrix::from_fn(n, p, |i, j| {
        if j == 0 {
            1.0
        } else {
            AXES[varying[j - 1]].2(cells[i])
        }
    });
    let y = DVector::from_iterator(n, cells.iter().map(|c| c.b_opt.ln()));
    let Some(fit) = wls(&x, &y, &DVector::from_column_slice(w)) else {
        return Outcome::skipped(
            "the varying axes are collinear across the cells (they move together): \
             their coefficients cannot be separated",
        );
    };
    let level = opts.confidence;
    let alpha = alpha_of(level);
    let t = t_quantile(0.5 + level / 2.0, fit.dof as f64).unwrap_or(f64::NAN);
    let mut coefficients = Vec::with_capacity(p);
    for j in 0..p {
        let (name, symbol) = if j == 0 {
            ("intercept", "c")
        } else {
            (AXES[varying[j - 1]].0, AXES[varying[j - 1]].1)
        };
        let est = fit.beta[j];
        let se = fit.cov[(j, j)].max(0.0).sqrt();
        let (Some(lo), Some(hi)) = (finite(est - t * se), finite(est + t * se)) else {
            return Outcome::skipped("the coefficient intervals are not finite");
        };
        coefficients.push(Coefficient {
            name: name.into(),
            symbol: symbol.into(),
            estimate: est,
            std_error: se,
            interval: Interval { lo, hi, level },
        });
    }
    let slope_idx: Vec<usize> = (1..p).collect();
    let symbols: Vec<String> = varying.iter().map(|&k| AXES[k].1.to_string()).collect();
    let n_varies = varying.contains(&1);
    let hyp = |name: &str, b: f64| {
        let pred = varying
            .iter()
            .map(|&k| if k == 1 { b } else { 1.0 })
            .collect();
        wald_test(name, &fit, &slope_idx, symbols.clone(), pred, alpha)
    };
    let hypotheses = vec![hyp("smith_le", 1.0), hyp("no_n", 0.0)];
    let note = (!n_varies).then(|| {
        "N does not vary across cells: Smith & Le (1, 1, 1) and \"no N\" (1, 0, 1) cannot be \
         told apart"
            .to_string()
    });
    Outcome::Fitted(LogLinearFit {
        axes_varying: varying.iter().map(|&k| AXES[k].0.to_string()).collect(),
        axes_fixed: fixed,
        coefficients,
        covariance: fit
            .cov
            .row_iter()
            .map(|r| r.iter().copied().collect())
            .collect(),
        r_squared: fit.r_squared().and_then(finite),
        n,
        dof: fit.dof,
        residual_std_error: fit.s2().sqrt(),
        weighting: weighting.into(),
        hypotheses,
        hypotheses_distinguishable: n_varies,
        note,
        points: cells
            .iter()
            .zip(w)
            .enumerate()
            .map(|(i, (c, &wi))| RegressionPoint {
                cell: c.cell.clone(),
                ln_b_opt: y[i],
                fitted: fit.fitted[i],
                weight: wi,
            })
            .collect(),
    })
}

/// k of B_opt = k·εN/(1−m): the weighted mean of ln k_i = ln B_opt,i − ln(ε_i N_i/(1−m_i)).
fn fit_constant(cells: &[&CellBopt], w: &[f64], level: f64) -> Outcome<ConstantFit> {
    let n = cells.len();
    let lnk: Vec<f64> = cells
        .iter()
        .map(|c| c.b_opt.ln() - (c.lr * c.train_size as f64 / (1.0 - c.momentum)).ln())
        .collect();
    let wsum: f64 = w.iter().sum();
    let Some(mean) = finite(lnk.iter().zip(w).map(|(l, wi)| l * wi).sum::<f64>() / wsum) else {
        return Outcome::skipped("ln k is not finite");
    };
    let (se, interval, note) = if n >= 2 {
        let x = DMatrix::from_element(n, 1, 1.0);
        let fit = wls(
            &x,
            &DVector::from_column_slice(&lnk),
            &DVector::from_column_slice(w),
        );
        let se = fit.map(|f| f.cov[(0, 0)].max(0.0).sqrt());
        let t = t_quantile(0.5 + level / 2.0, (n - 1) as f64);
        let iv = se.zip(t).and_then(|(se, t)| {
            Some(Interval {
                lo: finite((mean - t * se).exp())?,
                hi: finite((mean + t * se).exp())?,
                level,
            })
        });
        (se, iv, None)
    } else {
        (
            None,
            None,
            Some("one non-censored cell: no interval on k".to_string()),
        )
    };
    let Some(k) = finite(mean.exp()) else {
        return Outcome::skipped("k overflows: ε, N or B_opt are out of any sensible range");
    };
    Outcome::Fitted(ConstantFit {
        k,
        ln_k: mean,
        std_error_ln: se,
        interval,
        n_cells: n,
        note,
    })
}

/// The scaling regression and the one-constant form over the non-censored cells.
pub(crate) fn fit_scaling(
    bopt: &Outcome<BoptSection>,
    opts: &FitOptions,
) -> Outcome<ScalingSection> {
    let sec = match bopt {
        Outcome::Fitted(s) => s,
        Outcome::Skipped { reason } => {
            return Outcome::skipped(format!("no B_opt to regress ({reason})"));
        }
    };
    let (used, censored): (Vec<&CellBopt>, Vec<&CellBopt>) =
        sec.cells.iter().partition(|c| c.censored.is_none());
    if used.is_empty() {
        return Outcome::skipped(
            "every fitted cell's peak is on the grid's edge (censored): widen the batch-size grid",
        );
    }
    let (w, weighting) = weights(&used, opts.confidence);
    Outcome::Fitted(ScalingSection {
        cells_used: used.iter().map(|c| c.cell.clone()).collect(),
        cells_censored: censored.iter().map(|c| c.cell.clone()).collect(),
        log_linear: fit_log_linear(&used, &w, &weighting, opts),
        constant: fit_constant(&used, &w, opts.confidence),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::{assert_json_finite, planted_bopt_runs};
    use crate::fit::{FitReport, fit_all};

    const LRS: [f64; 3] = [0.05, 0.1, 0.2];
    const NS: [u64; 3] = [4000, 8000, 16000];
    const MS: [f64; 2] = [0.0, 0.75];

    fn fit(report: &FitReport) -> &LogLinearFit {
        let s = report.scaling.fitted().expect("scaling fitted");
        s.log_linear.fitted().expect("log-linear fitted")
    }

    fn check_slopes(f: &LogLinearFit, truth: [f64; 3]) {
        for (c, t) in f.coefficients[1..].iter().zip(truth) {
            assert!(
                c.interval.lo < t && t < c.interval.hi,
                "{} = {} ± {} misses {t}",
                c.symbol,
                c.estimate,
                c.std_error
            );
            assert!(
                (c.estimate - t).abs() < 0.1,
                "{} = {}",
                c.symbol,
                c.estimate
            );
        }
    }

    #[test]
    fn planted_smith_le_scaling_is_recovered_and_no_n_rejected() {
        // B_opt = 0.1·εN/(1−m): 20 … 1280 on the grid 8 … 4096, 3 seeds, noise sd 0.005.
        let runs = planted_bopt_runs(&LRS, &NS, &MS, 0.1, 1.0, 3, 0.005, 11);
        let opts = FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        let f = fit(&rep);
        assert_eq!(f.n, 18);
        assert_eq!(f.axes_varying.len(), 3);
        check_slopes(f, [1.0, 1.0, 1.0]);
        assert_eq!(f.hypotheses[0].name, "smith_le");
        assert_eq!(f.hypotheses[0].verdict, Verdict::Consistent);
        assert_eq!(f.hypotheses[1].verdict, Verdict::Rejected);
        assert!(f.hypotheses_distinguishable);
        assert_eq!(f.covariance.len(), 4);
        let k = rep.scaling.fitted().unwrap().constant.fitted().unwrap();
        let iv = k.interval.unwrap();
        assert!(iv.lo < 0.1 && 0.1 < iv.hi, "k = {} {iv:?}", k.k);
        assert_json_finite(&rep);
    }

    #[test]
    fn planted_no_n_scaling_flips_the_verdicts() {
        // B_opt = 400·ε/(1−m), independent of N: 20 … 320.
        let runs = planted_bopt_runs(&LRS, &NS, &MS, 400.0, 0.0, 3, 0.005, 12);
        let opts = FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        };
        let rep = fit_all(&runs, &opts);
        let f = fit(&rep);
        check_slopes(f, [1.0, 0.0, 1.0]);
        assert_eq!(f.hypotheses[0].verdict, Verdict::Rejected);
        assert_eq!(f.hypotheses[1].verdict, Verdict::Consistent);
    }

    #[test]
    fn fixed_n_enters_no_coefficient_and_says_the_hypotheses_coincide() {
        let runs = planted_bopt_runs(&LRS, &[8000], &MS, 0.1, 1.0, 3, 0.005, 13);
        let rep = fit_all(
            &runs,
            &FitOptions {
                bootstrap: 100,
                ..FitOptions::default()
            },
        );
        let f = fit(&rep);
        assert_eq!(f.axes_varying, vec!["ln_lr", "ln_inv_one_minus_momentum"]);
        assert_eq!(f.axes_fixed, vec!["ln_train_size"]);
        assert!(!f.hypotheses_distinguishable);
        assert!(f.note.as_deref().unwrap().contains("cannot be told apart"));
        assert_eq!(f.hypotheses[0].p_value, f.hypotheses[1].p_value);
        check_slopes(f, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn noiseless_planted_data_is_an_exact_fit() {
        // No noise: every vertex is exact, the bootstrap intervals have zero width (unweighted
        // fit), the residuals vanish and the Wald test takes its exact-fit branch.
        let runs = planted_bopt_runs(&LRS, &NS, &MS, 0.1, 1.0, 2, 0.0, 15);
        let rep = fit_all(
            &runs,
            &FitOptions {
                bootstrap: 50,
                ..FitOptions::default()
            },
        );
        let f = fit(&rep);
        assert!(f.weighting.contains("zero width"), "{}", f.weighting);
        for c in &f.coefficients[1..] {
            assert!(
                (c.estimate - 1.0).abs() < 1e-9,
                "{} = {}",
                c.symbol,
                c.estimate
            );
        }
        assert!((f.coefficients[0].estimate - 0.1f64.ln()).abs() < 1e-9);
        assert_eq!(f.hypotheses[0].f_statistic, None);
        assert_eq!(f.hypotheses[0].verdict, Verdict::Consistent);
        assert_eq!(f.hypotheses[1].verdict, Verdict::Rejected);
        assert_json_finite(&rep);
    }

    #[test]
    fn one_cell_gives_k_without_regression() {
        let runs = planted_bopt_runs(&[0.1], &[8000], &[0.0], 0.1, 1.0, 3, 0.0, 14);
        let rep = fit_all(&runs, &FitOptions::default());
        let s = rep.scaling.fitted().unwrap();
        assert!(
            s.log_linear
                .reason()
                .unwrap()
                .contains("nothing to regress")
        );
        let k = s.constant.fitted().unwrap();
        // Noiseless: B_opt = 0.1·0.1·8000 = 80 exactly, so k = 0.1.
        assert!((k.k - 0.1).abs() < 1e-9, "{}", k.k);
        assert!(k.interval.is_none());
        assert_json_finite(&rep);
    }
}
