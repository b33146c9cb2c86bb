//! Nonlinear least squares by Levenberg–Marquardt (the `levenberg-marquardt` crate, a port of
//! MINPACK's lmder), with standard errors from the Jacobian at the optimum:
//! Cov(θ̂) ≈ s²(JᵀJ)⁻¹, s² = RSS/(n − p) (the usual Gauss–Newton approximation).

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::storage::Owned;
use nalgebra::{DMatrix, DVector, Dyn};

use super::stats::finite;

/// Residuals r(θ) and their Jacobian ∂r/∂θ (n × p), or `None` where undefined.
pub(crate) type Model<'a> = dyn Fn(&[f64]) -> Option<(Vec<f64>, DMatrix<f64>)> + 'a;

struct Problem<'a> {
    theta: DVector<f64>,
    model: &'a Model<'a>,
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.theta.copy_from(x);
    }

    fn params(&self) -> DVector<f64> {
        self.theta.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let (r, _) = (self.model)(self.theta.as_slice())?;
        Some(DVector::from_vec(r))
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let (_, j) = (self.model)(self.theta.as_slice())?;
        Some(j)
    }
}

/// The least-squares optimum and its uncertainty.
#[derive(Clone, Debug)]
pub(crate) struct NlsFit {
    pub theta: Vec<f64>,
    /// Standard errors of θ; `None` when JᵀJ is singular or dof = 0.
    pub std_errors: Option<Vec<f64>>,
    /// s²(JᵀJ)⁻¹, when the standard errors exist.
    pub cov: Option<DMatrix<f64>>,
    pub rss: f64,
    pub dof: usize,
}

/// Minimises Σ r_i(θ)² from `theta0`. `None` when the minimiser fails or leaves non-finite
/// numbers.
pub(crate) fn fit(theta0: &[f64], model: &Model) -> Option<NlsFit> {
    let problem = Problem {
        theta: DVector::from_column_slice(theta0),
        model,
    };
    let (solved, report) = LevenbergMarquardt::new()
        .with_patience(200)
        .minimize(problem);
    // Converged, orthogonal, zero residuals, or out of patience at a finite point are all usable:
    // the caller checks the fit; numerical and usage failures are not.
    if report.termination.was_usage_issue()
        || matches!(
            report.termination,
            levenberg_marquardt::TerminationReason::Numerical(_)
                | levenberg_marquardt::TerminationReason::User(_)
        )
    {
        return None;
    }
    let theta: Vec<f64> = solved.theta.iter().copied().collect();
    let (r, j) = model(&theta)?;
    let rss: f64 = r.iter().map(|x| x * x).sum();
    if theta.iter().any(|t| !t.is_finite()) || !rss.is_finite() {
        return None;
    }
    let (n, p) = j.shape();
    let dof = n.saturating_sub(p);
    let cov = (dof > 0)
        .then(|| (j.transpose() * &j).try_inverse())
        .flatten()
        .map(|inv| inv * (rss / dof as f64))
        .filter(|c| c.iter().all(|v| v.is_finite()));
    let std_errors = cov.as_ref().and_then(|c| {
        (0..p)
            .map(|k| finite(c[(k, k)].max(0.0).sqrt()))
            .collect::<Option<Vec<f64>>>()
    });
    Some(NlsFit {
        theta,
        std_errors,
        cov,
        rss,
        dof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_line_matches_ordinary_least_squares() {
        // y = 1 + 2x + e: OLS gives slope 2.0 and intercept 1.0 for symmetric e.
        let x = [0.0, 1.0, 2.0, 3.0];
        let y = [1.1, 2.9, 5.1, 6.9];
        let model = |t: &[f64]| {
            let r = x
                .iter()
                .zip(&y)
                .map(|(xi, yi)| t[0] + t[1] * xi - yi)
                .collect();
            let j = DMatrix::from_fn(4, 2, |i, k| if k == 0 { 1.0 } else { x[i] });
            Some((r, j))
        };
        let f = fit(&[0.0, 0.0], &model).unwrap();
        // Hand OLS: x̄ = 1.5, ȳ = 4, Sxy = 9.8, Sxx = 5 → slope 1.96,
        // intercept 4 − 1.5·1.96 = 1.06.
        assert!((f.theta[1] - 1.96).abs() < 1e-9, "{:?}", f.theta);
        assert!((f.theta[0] - 1.06).abs() < 1e-9, "{:?}", f.theta);
        assert_eq!(f.dof, 2);
        assert!(f.std_errors.is_some());
    }
}
