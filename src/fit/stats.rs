//! Small statistics shared by the estimators: means, t and F distributions (statrs), percentile
//! intervals, and weighted least squares (nalgebra SVD).
//!
//! Every function returns `None` rather than a NaN: callers turn `None` into a reason.

use nalgebra::{DMatrix, DVector};
use statrs::distribution::{ContinuousCDF, FisherSnedecor, StudentsT};

use super::Interval;

/// `Some(x)` when x is finite.
pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Test size α = 1 − level, rounded to 12 decimals so that 1 − 0.95 prints as 0.05.
pub(crate) fn alpha_of(level: f64) -> f64 {
    ((1.0 - level) * 1e12).round() / 1e12
}

/// Arithmetic mean; `None` for an empty slice.
pub(crate) fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    finite(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample variance (n − 1 denominator); `None` below two values.
pub(crate) fn sample_var(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    finite(xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64)
}

/// Quantile `p` of Student's t with `dof` degrees of freedom.
pub(crate) fn t_quantile(p: f64, dof: f64) -> Option<f64> {
    if !(p > 0.0 && p < 1.0 && dof > 0.0 && dof.is_finite()) {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, dof).ok()?;
    finite(t.inverse_cdf(p))
}

/// CDF of Student's t at `x`. An infinite `x` (zero standard error) is a sure answer.
pub(crate) fn t_cdf(x: f64, dof: f64) -> Option<f64> {
    if x.is_nan() || !(dof > 0.0 && dof.is_finite()) {
        return None;
    }
    if x == f64::INFINITY {
        return Some(1.0);
    }
    if x == f64::NEG_INFINITY {
        return Some(0.0);
    }
    let t = StudentsT::new(0.0, 1.0, dof).ok()?;
    finite(t.cdf(x))
}

/// Upper tail P(F > f) of Fisher–Snedecor F(d1, d2).
pub(crate) fn f_sf(f: f64, d1: f64, d2: f64) -> Option<f64> {
    if !(f >= 0.0 && d1 > 0.0 && d2 > 0.0) {
        return None;
    }
    if f == f64::INFINITY {
        return Some(0.0);
    }
    let dist = FisherSnedecor::new(d1, d2).ok()?;
    finite(dist.sf(f))
}

/// Two-sided t interval of the mean at `level`; `None` below two values.
pub(crate) fn t_interval(xs: &[f64], level: f64) -> Option<Interval> {
    let n = xs.len();
    let m = mean(xs)?;
    let se = (sample_var(xs)? / n as f64).sqrt();
    let t = t_quantile(0.5 + level / 2.0, (n - 1) as f64)?;
    Some(Interval {
        lo: finite(m - t * se)?,
        hi: finite(m + t * se)?,
        level,
    })
}

/// Percentile of sorted data with linear interpolation (Hyndman & Fan type 7, R's default).
pub(crate) fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    finite(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Pearson correlation; `None` when either side has no spread.
pub(crate) fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    let r = sxy / (sxx * syy).sqrt();
    r.is_finite().then_some(r.clamp(-1.0, 1.0))
}

/// Median.
pub(crate) fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, 0.5)
}

/// Result of a weighted least-squares fit y = Xβ + e, Var(e_i) = σ²/w_i.
#[derive(Debug, Clone)]
pub(crate) struct Wls {
    pub beta: DVector<f64>,
    /// s²(XᵀWX)⁻¹: the weights are taken as relative, σ² is estimated from the residuals.
    pub cov: DMatrix<f64>,
    pub fitted: DVector<f64>,
    /// Weighted residual sum of squares Σ w r².
    pub rss: f64,
    /// Weighted total sum of squares about the weighted mean.
    pub tss: f64,
    pub dof: usize,
}

impl Wls {
    /// Weighted R² = 1 − RSS/TSS; `None` when y does not vary.
    pub fn r_squared(&self) -> Option<f64> {
        (self.tss > 0.0).then(|| 1.0 - self.rss / self.tss)
    }

    /// Residual variance estimate s² = RSS/dof.
    pub fn s2(&self) -> f64 {
        if self.dof == 0 {
            0.0
        } else {
            self.rss / self.dof as f64
        }
    }
}

/// Weighted least squares through the SVD of √W·X. `None` when X is rank-deficient (relative
/// singular value below 1e-10: collinear regressors), n ≤ p, or anything is non-finite.
pub(crate) fn wls(x: &DMatrix<f64>, y: &DVector<f64>, w: &DVector<f64>) -> Option<Wls> {
    let (n, p) = x.shape();
    if n != y.len() || n != w.len() || n <= p || p == 0 {
        return None;
    }
    if x.iter()
        .chain(y.iter())
        .chain(w.iter())
        .any(|v| !v.is_finite())
        || w.min() <= 0.0
    {
        return None;
    }
    let sw = w.map(f64::sqrt);
    let mut xs = x.clone();
    for (i, mut row) in xs.row_iter_mut().enumerate() {
        row *= sw[i];
    }
    let ys = y.component_mul(&sw);
    let svd = xs.svd(true, true);
    let smax = svd.singular_values.max();
    if smax.is_nan() || smax <= 0.0 || svd.singular_values.min() / smax < 1e-10 {
        return None;
    }
    let beta = svd.solve(&ys, 0.0).ok()?;
    let fitted = x * &beta;
    let resid = y - &fitted;
    let rss: f64 = resid.iter().zip(w.iter()).map(|(r, wi)| wi * r * r).sum();
    let wsum = w.sum();
    let ybar = y.dot(w) / wsum;
    let tss: f64 = y
        .iter()
        .zip(w.iter())
        .map(|(yi, wi)| wi * (yi - ybar).powi(2))
        .sum();
    let dof = n - p;
    // (XᵀWX)⁻¹ = V Σ⁻² Vᵀ
    let v_t = svd.v_t.as_ref()?;
    let inv_s2 = svd.singular_values.map(|s| 1.0 / (s * s));
    let xtwx_inv = v_t.transpose() * DMatrix::from_diagonal(&inv_s2) * v_t;
    let s2 = rss / dof as f64;
    let cov = xtwx_inv * s2;
    if beta.iter().chain(cov.iter()).any(|v| !v.is_finite()) || !rss.is_finite() {
        return None;
    }
    Some(Wls {
        beta,
        cov,
        fitted,
        rss,
        tss,
        dof,
    })
}

/// Least-squares polynomial of `degree` in `u`: coefficients c0 + c1·u + … (unit weights).
pub(crate) fn polyfit(u: &[f64], y: &[f64], degree: usize) -> Option<Vec<f64>> {
    let n = u.len();
    let x = DMatrix::from_fn(n, degree + 1, |i, j| u[i].powi(j as i32));
    let fit = wls(
        &x,
        &DVector::from_column_slice(y),
        &DVector::from_element(n, 1.0),
    )?;
    Some(fit.beta.iter().copied().collect())
}

/// Evaluates c0 + c1·u + c2·u² + … by Horner's rule.
pub(crate) fn polyval(coef: &[f64], u: f64) -> f64 {
    coef.iter().rev().fold(0.0, |acc, c| acc * u + c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantile_matches_table() {
        // t_{0.975, 10} = 2.228139 (any t table).
        let t = t_quantile(0.975, 10.0).unwrap();
        assert!((t - 2.228139).abs() < 1e-5, "{t}");
        assert!(t_quantile(1.0, 10.0).is_none());
        assert!(t_quantile(0.9, 0.0).is_none());
    }

    #[test]
    fn percentile_type7() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_sorted(&v, 0.5), Some(2.5));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1.0));
        assert_eq!(percentile_sorted(&v, 1.0), Some(4.0));
        assert_eq!(percentile_sorted(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn wls_recovers_exact_line_and_detects_collinearity() {
        let x = DMatrix::from_row_slice(4, 2, &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0]);
        let y = DVector::from_column_slice(&[1.0, 3.0, 5.0, 7.0]);
        let w = DVector::from_element(4, 1.0);
        let f = wls(&x, &y, &w).unwrap();
        assert!((f.beta[0] - 1.0).abs() < 1e-12 && (f.beta[1] - 2.0).abs() < 1e-12);
        assert!((f.r_squared().unwrap() - 1.0).abs() < 1e-12);
        let xc = DMatrix::from_row_slice(3, 2, &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let y3 = DVector::from_column_slice(&[1.0, 2.0, 3.0]);
        assert!(wls(&xc, &y3, &DVector::from_element(3, 1.0)).is_none());
    }

    #[test]
    fn f_sf_known_value() {
        // P(F(1, 10) > 4.964603) = 0.05 (F table).
        let p = f_sf(4.964603, 1.0, 10.0).unwrap();
        assert!((p - 0.05).abs() < 1e-5, "{p}");
    }
}
