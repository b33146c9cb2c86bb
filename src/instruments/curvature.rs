//! Curvature of a fixed loss at fixed weights: the top Hessian eigenvalue and the Hessian trace.
//!
//! Kuzborskij & Lampert (arXiv 1703.01678) tie SGD's generalisation to the curvature around the
//! initial point. Everything here is built on the Hessian-vector product H·v: the Lanczos method
//! for the largest and smallest eigenvalues (what the trainer stores), power iteration for the
//! eigenvalue of largest magnitude, and Hutchinson probes for the trace. The loss is seen only
//! through a [`GradientOracle`]: its exact product where it has one
//! ([`GradientOracle::exact_hessian_vector`], Pearlmutter's R-operator; both networks have it), and
//! otherwise central differences of its gradients, H·v ≈ (∇L(w + s·v) − ∇L(w − s·v))/(2s), with
//! error O(s²) (docs/science.md §5), since candle has no grad-of-grad. For a ReLU network the
//! central difference crosses kinks of the loss, and the product is then not the Hessian's
//! (docs/instruments.md, "The caveat of central differences on ReLU networks").

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::InstrumentError;

/// The gradient of one fixed loss (fixed data, fixed model, no dropout) at any parameters.
///
/// Every call with the same `w` must return the same gradient: the instruments difference
/// gradients at nearby points, so any randomness in the loss would swamp the curvature signal.
pub trait GradientOracle {
    /// Number of parameters.
    fn dim(&self) -> usize;
    /// Writes ∇L(w) into `out` (both of length [`Self::dim`]).
    fn gradient(&mut self, w: &[f32], out: &mut [f32]) -> Result<(), InstrumentError>;

    /// Writes the exact Hessian-vector product ∇²L(w)·u into `out` (both of length
    /// [`Self::dim`]) where the loss can compute one (Pearlmutter's R-operator) and returns
    /// `Ok(true)`; the default, `Ok(false)`, has the instruments take central differences of
    /// [`Self::gradient`] instead. The product must be linear in `u`.
    fn exact_hessian_vector(
        &mut self,
        w: &[f32],
        u: &[f64],
        out: &mut [f64],
    ) -> Result<bool, InstrumentError> {
        let _ = (w, u, out);
        Ok(false)
    }
}

/// Default relative step h of the central differences: s = h·max(1, |w|).
///
/// Two errors compete. Truncation: the central difference is off by s²/6 times third
/// derivatives, a relative error of about (s/ℓ)² where ℓ is the distance over which the loss
/// bends appreciably. For a network along a generic direction ℓ is of the order of |w|, since a
/// move of relative size δ changes every pre-activation by relative size about δ.
/// Rounding: parameters are f32, so w ± s·v is rounded coordinate by coordinate with error about
/// ε·|w_i| (ε = 2⁻²⁴ ≈ 6·10⁻⁸), while the intended move of a coordinate is s·|v_i| with |v| = 1;
/// summed over coordinates the relative error of the realised move is about ε·|w|/s, and the
/// f32 gradients add an error of the same order. With s = h·|w| the two are h² and ε/h, whose
/// sum is smallest near h = ε^(1/3) ≈ 4·10⁻³.
///
/// Measured on one-hidden-layer tanh networks of 97 to 33,793 parameters (f32 differences
/// against an f64 reference; test `default_step_is_accurate_on_a_small_network`): along random
/// directions the error is least near h = 3·10⁻³; along the top eigenvector, where the loss bends
/// faster, the optimum falls toward 10⁻³ as the network grows. h = 2·10⁻³ kept the relative error
/// of H·v at or below 6·10⁻⁵ in every case, far below the statistical error of the estimates
/// built on it. A step relative to the per-coordinate scale |w|/√dim instead makes the rounding
/// error grow like √dim (1.3·10⁻³ at 33,793 parameters), so the whole norm is used. The floor of
/// 1 keeps the step sensible at w ≈ 0.
pub const DEFAULT_RELATIVE_STEP: f64 = 2e-3;

/// The central-difference step s = `relative_step`·max(1, |w|) used for a unit direction.
pub fn finite_difference_step(w: &[f32], relative_step: f64) -> f64 {
    relative_step * norm(w.iter().map(|&x| f64::from(x))).max(1.0)
}

fn norm(xs: impl Iterator<Item = f64>) -> f64 {
    xs.map(|x| x * x).sum::<f64>().sqrt()
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), InstrumentError> {
    if expected == got {
        Ok(())
    } else {
        Err(InstrumentError::Dimension {
            what,
            expected,
            got,
        })
    }
}

/// Buffers and step for repeated Hessian-vector products at one point w.
struct Hvp<'w> {
    w: &'w [f32],
    step: f64,
    w_plus: Vec<f32>,
    w_minus: Vec<f32>,
    g_plus: Vec<f32>,
    g_minus: Vec<f32>,
    /// Whether the oracle's exact product was used.
    exact: bool,
}

impl<'w> Hvp<'w> {
    fn new<O: GradientOracle + ?Sized>(
        oracle: &O,
        w: &'w [f32],
        relative_step: f64,
    ) -> Result<Self, InstrumentError> {
        let dim = oracle.dim();
        if dim == 0 {
            return Err(InstrumentError::EmptyOracle);
        }
        check_len("w", dim, w.len())?;
        if let Some(&x) = w.iter().find(|x| !x.is_finite()) {
            return Err(InstrumentError::BadInput {
                what: "parameter vector w",
                value: f64::from(x),
            });
        }
        if !(relative_step.is_finite() && relative_step > 0.0) {
            return Err(InstrumentError::Setting(format!(
                "relative finite-difference step must be positive and finite, got {relative_step}"
            )));
        }
        Ok(Self {
            w,
            step: finite_difference_step(w, relative_step),
            w_plus: vec![0.0; dim],
            w_minus: vec![0.0; dim],
            g_plus: vec![0.0; dim],
            g_minus: vec![0.0; dim],
            exact: false,
        })
    }

    /// H·u for a unit vector `u`, written to `out`: the oracle's exact product where it has
    /// one, else two gradient evaluations.
    fn apply_unit<O: GradientOracle + ?Sized>(
        &mut self,
        oracle: &mut O,
        u: &[f64],
        out: &mut [f64],
    ) -> Result<(), InstrumentError> {
        if oracle.exact_hessian_vector(self.w, u, out)? {
            self.exact = true;
            return match out.iter().position(|x| !x.is_finite()) {
                Some(index) => Err(InstrumentError::NonFiniteGradient { index }),
                None => Ok(()),
            };
        }
        let s = self.step;
        let mut moved = false;
        for (((p, m), &wi), &ui) in self
            .w_plus
            .iter_mut()
            .zip(&mut self.w_minus)
            .zip(self.w)
            .zip(u)
        {
            *p = (f64::from(wi) + s * ui) as f32;
            *m = (f64::from(wi) - s * ui) as f32;
            if !(p.is_finite() && m.is_finite()) {
                return Err(InstrumentError::BadInput {
                    what: "perturbed parameter w ± s·v",
                    value: f64::from(if p.is_finite() { *m } else { *p }),
                });
            }
            moved |= p != m;
        }
        // A step below f32 resolution would leave w unchanged and fake H·v = 0.
        if !moved {
            return Err(InstrumentError::Setting(format!(
                "finite-difference step {s:e} is below f32 resolution at these parameters"
            )));
        }
        oracle.gradient(&self.w_plus, &mut self.g_plus)?;
        check_gradient(&self.g_plus)?;
        oracle.gradient(&self.w_minus, &mut self.g_minus)?;
        check_gradient(&self.g_minus)?;
        for ((o, &gp), &gm) in out.iter_mut().zip(&self.g_plus).zip(&self.g_minus) {
            *o = (f64::from(gp) - f64::from(gm)) / (2.0 * s);
        }
        Ok(())
    }
}

fn check_gradient(g: &[f32]) -> Result<(), InstrumentError> {
    match g.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(InstrumentError::NonFiniteGradient { index }),
        None => Ok(()),
    }
}

/// H·v at `w`, written to `out`: the oracle's exact product where it has one
/// ([`GradientOracle::exact_hessian_vector`]), else central differences of two gradients.
///
/// For the differences, `v` is normalised internally, the step s = `relative_step`·max(1, |w|) is taken along the
/// unit vector (see [`DEFAULT_RELATIVE_STEP`] for the choice), and the result is scaled back by
/// |v|, so `out` approximates H·v itself. Exact up to f32 rounding when the loss is quadratic;
/// otherwise off by O(s²).
pub fn hessian_vector<O: GradientOracle + ?Sized>(
    oracle: &mut O,
    w: &[f32],
    v: &[f32],
    relative_step: f64,
    out: &mut [f32],
) -> Result<(), InstrumentError> {
    let mut hvp = Hvp::new(oracle, w, relative_step)?;
    check_len("v", w.len(), v.len())?;
    check_len("out", w.len(), out.len())?;
    let v_norm = norm(v.iter().map(|&x| f64::from(x)));
    if !v_norm.is_finite() {
        return Err(InstrumentError::BadInput {
            what: "|v|",
            value: v_norm,
        });
    }
    if v_norm == 0.0 {
        return Err(InstrumentError::ZeroDirection);
    }
    let u: Vec<f64> = v.iter().map(|&x| f64::from(x) / v_norm).collect();
    let mut hu = vec![0.0; u.len()];
    hvp.apply_unit(oracle, &u, &mut hu)?;
    for (o, h) in out.iter_mut().zip(&hu) {
        *o = (h * v_norm) as f32;
    }
    Ok(())
}

/// Settings of [`top_eigenvalue`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerOptions {
    /// Most power iterations (each costs two gradient evaluations).
    pub max_iters: usize,
    /// Convergence when the Rayleigh quotient changes by at most `tol` relative between two
    /// iterations and the relative residual is at most √tol.
    pub tol: f64,
    /// Seed of the Gaussian start vector.
    pub seed: u64,
    /// Relative finite-difference step (see [`DEFAULT_RELATIVE_STEP`]).
    pub relative_step: f64,
}

impl Default for PowerOptions {
    /// 50 iterations (100 gradient evaluations) at most, tol = 10⁻³: enough for eigenvalue gaps
    /// λ₂/λ₁ up to about 0.9, where the Rayleigh quotient's error shrinks by (λ₂/λ₁)² a step.
    fn default() -> Self {
        Self {
            max_iters: 50,
            tol: 1e-3,
            seed: 0,
            relative_step: DEFAULT_RELATIVE_STEP,
        }
    }
}

/// Result of [`top_eigenvalue`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EigenEstimate {
    /// Rayleigh quotient vᵀHv of the last unit iterate: the eigenvalue of largest |λ|, with its
    /// sign.
    pub value: f64,
    /// Power iterations done (gradient evaluations = 2·iterations).
    pub iterations: usize,
    /// Whether both convergence tests of [`PowerOptions::tol`] passed.
    pub converged: bool,
    /// |λ_k − λ_{k−1}|/|λ_k| at the last iteration (∞ after one iteration).
    pub relative_change: f64,
    /// |H·v − λ·v|/|λ| at the last iterate. For symmetric H some eigenvalue lies within
    /// |λ|·`relative_residual` of `value`; a large residual flags a start that has not
    /// converged, or two top eigenvalues of opposite sign and equal size.
    pub relative_residual: f64,
}

/// The Hessian eigenvalue of largest magnitude at `w`, by power iteration on central-difference
/// Hessian-vector products, read off as the Rayleigh quotient vᵀHv of the unit iterate v.
///
/// Power iteration finds the eigenvalue of largest |λ|, not the most positive one: a negative
/// value is reported with its sign, it converges at the rate |λ₂/λ₁| and stalls when
/// λ_min ≈ −λ_max. For the largest eigenvalue use [`extreme_eigenvalues`] (Lanczos), which the
/// trainer uses. The start vector is Gaussian from
/// `ChaCha8Rng::seed_from_u64(opts.seed)`. If H·v comes out exactly zero the value 0 is returned
/// as converged (H vanishes along the start vector). Cost: 2 gradient evaluations per iteration.
pub fn top_eigenvalue<O: GradientOracle + ?Sized>(
    oracle: &mut O,
    w: &[f32],
    opts: PowerOptions,
) -> Result<EigenEstimate, InstrumentError> {
    if opts.max_iters == 0 || !(opts.tol.is_finite() && opts.tol > 0.0) {
        return Err(InstrumentError::Setting(format!(
            "power iteration needs max_iters ≥ 1 and a positive finite tol, got {} and {}",
            opts.max_iters, opts.tol
        )));
    }
    let mut hvp = Hvp::new(oracle, w, opts.relative_step)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut v: Vec<f64> = (0..w.len()).map(|_| rng.sample(StandardNormal)).collect();
    let v_norm = norm(v.iter().copied());
    v.iter_mut().for_each(|x| *x /= v_norm);
    let mut hv = vec![0.0; w.len()];
    let mut est = EigenEstimate {
        value: 0.0,
        iterations: 0,
        converged: false,
        relative_change: f64::INFINITY,
        relative_residual: f64::INFINITY,
    };
    for k in 1..=opts.max_iters {
        hvp.apply_unit(oracle, &v, &mut hv)?;
        let lambda: f64 = v.iter().zip(&hv).map(|(a, b)| a * b).sum();
        let hv_norm = norm(hv.iter().copied());
        if hv_norm == 0.0 {
            return Ok(EigenEstimate {
                value: 0.0,
                iterations: k,
                converged: true,
                relative_change: 0.0,
                relative_residual: 0.0,
            });
        }
        let residual = norm(v.iter().zip(&hv).map(|(a, b)| b - lambda * a));
        let change = (lambda - est.value).abs();
        est = EigenEstimate {
            value: lambda,
            iterations: k,
            converged: false,
            relative_change: if k == 1 {
                f64::INFINITY
            } else if change == 0.0 {
                0.0
            } else {
                change / lambda.abs()
            },
            relative_residual: residual / lambda.abs(),
        };
        est.converged = est.relative_change <= opts.tol && est.relative_residual <= opts.tol.sqrt();
        if est.converged {
            break;
        }
        v.iter_mut().zip(&hv).for_each(|(a, b)| *a = b / hv_norm);
    }
    Ok(est)
}

/// Settings of [`extreme_eigenvalues`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LanczosOptions {
    /// Most Lanczos steps (Hessian-vector products: one exact product or two gradient evaluations each). The Krylov
    /// basis is kept: `max_steps`·dim f64 values.
    pub max_steps: usize,
    /// Convergence when the Ritz pair (θ, x) of the largest eigenvalue has relative residual
    /// |H·x − θ·x|/|θ| ≤ `tol`: some eigenvalue of H then lies within tol·|θ| of θ, and within
    /// (tol·θ)²/gap when the next Ritz value is a gap away.
    pub tol: f64,
    /// Seed of the Gaussian start vector.
    pub seed: u64,
    /// Relative finite-difference step (see [`DEFAULT_RELATIVE_STEP`]).
    pub relative_step: f64,
}

impl Default for LanczosOptions {
    /// 60 steps (120 gradient evaluations) at most, tol = 10⁻³.
    fn default() -> Self {
        Self {
            max_steps: 60,
            tol: 1e-3,
            seed: 0,
            relative_step: DEFAULT_RELATIVE_STEP,
        }
    }
}

/// Result of [`extreme_eigenvalues`]: both ends of the spectrum from one Krylov basis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpectrumEnds {
    /// The algebraically largest eigenvalue (the top Ritz value), its convergence flag and
    /// residual. `iterations` = Lanczos steps taken (2 gradient evaluations each); the value,
    /// change and residual are those of the step with the least residual (the last one when
    /// converged).
    pub max: EigenEstimate,
    /// The algebraically smallest eigenvalue (the bottom Ritz value), negative where the loss
    /// curves down in some direction. Its `converged` uses the same test as `max`'s; the
    /// iteration stops on `max` alone, so `min` may be less accurate.
    pub min: EigenEstimate,
    /// Whether the products were the oracle's exact ones
    /// ([`GradientOracle::exact_hessian_vector`]) rather than central differences.
    pub exact_product: bool,
}

/// The algebraically largest and smallest Hessian eigenvalues at `w` by the Lanczos method
/// (full reorthogonalisation) on central-difference Hessian-vector products.
///
/// Step k applies H to the k-th orthonormal basis vector q_k of the Krylov space
/// span{v, Hv, …, H^(k−1)v}, orthogonalises the product against every q_i (twice, classical
/// Gram–Schmidt) and keeps the coefficients h_ik = q_iᵀHq_k. The Ritz values are the
/// eigenvalues of the symmetric part of the k×k projection (h_ik): Rayleigh–Ritz for (H + Hᵀ)/2
/// on the Krylov space, so the small asymmetry of a finite-difference product does not matter.
/// For a Ritz pair (θ, y) with x = Q·y the residual is exact without another product:
/// |Hx − θx|² = |(T − T_sym)·y|² + (h_(k+1,k)·y_k)², T = (h_ik).
///
/// Unlike power iteration, whose rate is |λ₂/λ₁| and which finds the eigenvalue of largest
/// *magnitude* (and stalls when λ_min ≈ −λ_max), the top Ritz value converges to the largest
/// eigenvalue at a rate set by the gap (λ₁ − λ₂)/(λ₂ − λ_min) (Kaniel–Paige), typically in
/// tens of steps. The start vector is Gaussian from `ChaCha8Rng::seed_from_u64(opts.seed)`.
/// When the Krylov space becomes invariant (h_(k+1,k) ≈ 0) the Ritz values are exact
/// eigenvalues and the iteration stops, converged. When `max_steps` pass without convergence,
/// each end's Ritz value from the step with the least residual is returned with
/// `converged = false` and that residual, which bounds the distance to an eigenvalue: a value
/// with relative residual r is within r·|θ| of one. (On an exact, symmetric product the last
/// step is best; on a noisy product — finite differences across the kinks of a ReLU network —
/// the residual levels off and grows again as the basis takes in the noise, and the top Ritz
/// value creeps upward.)
pub fn extreme_eigenvalues<O: GradientOracle + ?Sized>(
    oracle: &mut O,
    w: &[f32],
    opts: LanczosOptions,
) -> Result<SpectrumEnds, InstrumentError> {
    if opts.max_steps == 0 || !(opts.tol.is_finite() && opts.tol > 0.0) {
        return Err(InstrumentError::Setting(format!(
            "Lanczos needs max_steps ≥ 1 and a positive finite tol, got {} and {}",
            opts.max_steps, opts.tol
        )));
    }
    let mut hvp = Hvp::new(oracle, w, opts.relative_step)?;
    let dim = w.len();
    let max_steps = opts.max_steps.min(dim);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut q: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
    let q_norm = norm(q.iter().copied());
    q.iter_mut().for_each(|x| *x /= q_norm);
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(max_steps);
    // t[i][k] = q_iᵀ·H·q_k for i ≤ k + 1 (an upper Hessenberg matrix, column by column).
    let mut t: Vec<Vec<f64>> = Vec::with_capacity(max_steps);
    let mut hq = vec![0.0; dim];
    let blank = EigenEstimate {
        value: 0.0,
        iterations: 0,
        converged: false,
        relative_change: f64::INFINITY,
        relative_residual: f64::INFINITY,
    };
    // The latest Ritz pairs (for the relative change) and the best so far (least residual).
    let (mut top, mut bottom) = (blank, blank);
    let (mut best_top, mut best_bottom) = (blank, blank);
    let mut steps = 0;
    for k in 1..=max_steps {
        steps = k;
        basis.push(q);
        hvp.apply_unit(oracle, &basis[k - 1], &mut hq)?;
        let mut col = vec![0.0; k + 1];
        for _ in 0..2 {
            for (i, b) in basis.iter().enumerate() {
                let c: f64 = b.iter().zip(&hq).map(|(x, y)| x * y).sum();
                col[i] += c;
                hq.iter_mut().zip(b).for_each(|(y, x)| *y -= c * x);
            }
        }
        let beta = norm(hq.iter().copied());
        col[k] = beta;
        t.push(col);
        // Rayleigh–Ritz on the symmetric part of the k×k projection.
        let tk = nalgebra::DMatrix::from_fn(k, k, |i, j| if i <= j + 1 { t[j][i] } else { 0.0 });
        let sym = (&tk + tk.transpose()) * 0.5;
        let eig = sym.clone().symmetric_eigen();
        let (imax, imin) = (eig.eigenvalues.imax(), eig.eigenvalues.imin());
        let scale = eig.eigenvalues.amax();
        // Invariant subspace (β negligible against the projection), or H = 0 on it.
        let invariant = beta <= 1e-10 * scale || scale == 0.0;
        let ritz = |idx: usize, prev: &EigenEstimate| {
            let theta = eig.eigenvalues[idx];
            let y = eig.eigenvectors.column(idx);
            let skew = (&tk - &sym) * y;
            let res = (skew.norm_squared() + (beta * y[k - 1]).powi(2)).sqrt();
            let change = (theta - prev.value).abs();
            let relative_residual = if scale == 0.0 || res == 0.0 {
                0.0
            } else {
                res / theta.abs()
            };
            EigenEstimate {
                value: theta,
                iterations: k,
                converged: invariant || relative_residual <= opts.tol,
                relative_change: if k == 1 {
                    f64::INFINITY
                } else if change == 0.0 {
                    0.0
                } else {
                    change / theta.abs()
                },
                relative_residual,
            }
        };
        top = ritz(imax, &top);
        bottom = ritz(imin, &bottom);
        if top.relative_residual < best_top.relative_residual {
            best_top = top;
        }
        if bottom.relative_residual < best_bottom.relative_residual {
            best_bottom = bottom;
        }
        if top.converged {
            break;
        }
        q = hq.iter().map(|x| x / beta).collect();
    }
    best_top.iterations = steps;
    best_bottom.iterations = steps;
    Ok(SpectrumEnds {
        max: best_top,
        min: best_bottom,
        exact_product: hvp.exact,
    })
}

/// Result of [`hutchinson_trace`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TraceEstimate {
    /// Mean of zᵀHz over the probes: an unbiased estimate of tr(H) (up to the O(s²) of the
    /// differences).
    pub mean: f64,
    /// Sample standard deviation of zᵀHz over √probes.
    pub std_error: f64,
    /// Number of probes (gradient evaluations = 2·probes, or one exact product each).
    pub probes: usize,
    /// Whether the products were the oracle's exact ones rather than central differences.
    pub exact_product: bool,
}

/// Hutchinson's estimate of tr(H) at `w`: the mean of zᵀHz over Rademacher probes z (entries
/// ±1 with probability ½ each, from `ChaCha8Rng::seed_from_u64(seed)`), with its standard error.
///
/// Rademacher probes give the least variance among probe laws with independent entries,
/// Var(zᵀHz) = 2·Σ_{i≠j} H_ij², zero for a diagonal H. Each probe costs 2 gradient evaluations
/// (H·z by [`hessian_vector`]'s central differences). Needs at least 2 probes.
pub fn hutchinson_trace<O: GradientOracle + ?Sized>(
    oracle: &mut O,
    w: &[f32],
    probes: usize,
    seed: u64,
    relative_step: f64,
) -> Result<TraceEstimate, InstrumentError> {
    if probes < 2 {
        return Err(InstrumentError::Setting(format!(
            "Hutchinson's standard error needs at least 2 probes, got {probes}"
        )));
    }
    let mut hvp = Hvp::new(oracle, w, relative_step)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dim = w.len() as f64;
    let scale = dim.sqrt().recip();
    let mut u = vec![0.0; w.len()];
    let mut hu = vec![0.0; w.len()];
    let mut values = Vec::with_capacity(probes);
    for _ in 0..probes {
        u.iter_mut()
            .for_each(|x| *x = if rng.random::<bool>() { scale } else { -scale });
        hvp.apply_unit(oracle, &u, &mut hu)?;
        // z = √dim·u, so zᵀHz = dim·uᵀHu.
        values.push(dim * u.iter().zip(&hu).map(|(a, b)| a * b).sum::<f64>());
    }
    let n = probes as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Ok(TraceEstimate {
        mean,
        std_error: (var / n).sqrt(),
        probes,
        exact_product: hvp.exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random orthogonal matrix (row-major) by Gram–Schmidt on Gaussian rows.
    fn random_orthogonal(d: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut q: Vec<Vec<f64>> = Vec::with_capacity(d);
        while q.len() < d {
            let mut r: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
            for _ in 0..2 {
                for p in &q {
                    let dot: f64 = r.iter().zip(p).map(|(a, b)| a * b).sum();
                    r.iter_mut().zip(p).for_each(|(a, b)| *a -= dot * b);
                }
            }
            let n = norm(r.iter().copied());
            q.push(r.into_iter().map(|x| x / n).collect());
        }
        q
    }

    /// H = Qᵀ·diag(λ)·Q.
    fn planted_hessian(eigs: &[f64], seed: u64) -> Vec<Vec<f64>> {
        let d = eigs.len();
        let q = random_orthogonal(d, seed);
        (0..d)
            .map(|i| {
                (0..d)
                    .map(|j| (0..d).map(|k| q[k][i] * eigs[k] * q[k][j]).sum())
                    .collect()
            })
            .collect()
    }

    fn matvec(h: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
        h.iter()
            .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// L(w) = ½(w − c)ᵀH(w − c) + Σ quartic_i·w_i⁴/4: gradient computed in f64, returned as f32.
    struct PolyOracle {
        h: Vec<Vec<f64>>,
        center: Vec<f64>,
        quartic: Vec<f64>,
        calls: usize,
    }

    impl PolyOracle {
        fn quadratic(h: Vec<Vec<f64>>) -> Self {
            let d = h.len();
            Self {
                center: (0..d).map(|i| 0.3 * (i as f64).sin()).collect(),
                quartic: vec![0.0; d],
                h,
                calls: 0,
            }
        }

        /// The exact H(w)·v.
        fn exact_hv(&self, w: &[f32], v: &[f64]) -> Vec<f64> {
            let mut out = matvec(&self.h, v);
            for i in 0..v.len() {
                out[i] += 3.0 * self.quartic[i] * f64::from(w[i]).powi(2) * v[i];
            }
            out
        }
    }

    impl GradientOracle for PolyOracle {
        fn dim(&self) -> usize {
            self.h.len()
        }
        fn gradient(&mut self, w: &[f32], out: &mut [f32]) -> Result<(), InstrumentError> {
            self.calls += 1;
            let x: Vec<f64> = w
                .iter()
                .zip(&self.center)
                .map(|(&a, c)| f64::from(a) - c)
                .collect();
            let g = matvec(&self.h, &x);
            for i in 0..w.len() {
                out[i] = (g[i] + self.quartic[i] * f64::from(w[i]).powi(3)) as f32;
            }
            Ok(())
        }
    }

    fn test_point(d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..d)
            .map(|_| rng.sample::<f32, _>(StandardNormal) * 0.7)
            .collect()
    }

    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        norm(a.iter().zip(b).map(|(x, y)| x - y)) / norm(b.iter().copied())
    }

    /// docs/science.md §6: h_i = 1/i.
    fn harmonic(d: usize) -> Vec<f64> {
        (1..=d).map(|i| 1.0 / i as f64).collect()
    }

    /// On a quadratic the central difference has no truncation error: what remains is f32
    /// rounding, which shrinks like 1/h as the step grows.
    #[test]
    fn hessian_vector_is_exact_on_a_quadratic() {
        let d = 50;
        let mut oracle = PolyOracle::quadratic(planted_hessian(&harmonic(d), 1));
        let w = test_point(d, 2);
        let mut worst = |h: f64| {
            let mut worst = 0.0f64;
            for seed in 0..10 {
                let v32: Vec<f32> = test_point(d, 100 + seed).iter().map(|x| x * 3.0).collect();
                let v: Vec<f64> = v32.iter().map(|&x| f64::from(x)).collect();
                let mut out = vec![0.0f32; d];
                hessian_vector(&mut oracle, &w, &v32, h, &mut out).unwrap();
                let got: Vec<f64> = out.iter().map(|&x| f64::from(x)).collect();
                worst = worst.max(rel_err(&got, &oracle.exact_hv(&w, &v)));
            }
            worst
        };
        let (at_default, at_large) = (worst(DEFAULT_RELATIVE_STEP), worst(0.1));
        eprintln!(
            "quadratic: worst relative error of H·v over 10 directions {at_default:.2e} \
             (h = {DEFAULT_RELATIVE_STEP}), {at_large:.2e} (h = 0.1)"
        );
        assert!(at_default < 1e-4, "{at_default}");
        assert!(at_large < 5e-6, "{at_large}");
        assert_eq!(oracle.calls, 40);
    }

    /// For L = Σ a_i w_i⁴/4 the central difference is off by exactly s²·a_i·u_i³ along a unit u
    /// ((x + y)³ − (x − y)³ = 6x²y + 2y³), so the error is predicted, not only its order.
    #[test]
    fn hessian_vector_error_is_order_s_squared_on_a_quartic() {
        let d = 8;
        let mut oracle = PolyOracle::quadratic(planted_hessian(&harmonic(d), 3));
        oracle.quartic = (0..d).map(|i| 1.0 + i as f64 * 0.5).collect();
        let w: Vec<f32> = test_point(d, 4).iter().map(|x| x * 0.3).collect();
        assert!(finite_difference_step(&w, 1.0) == 1.0, "|w| < 1: s = h");
        let v32: Vec<f32> = test_point(d, 5);
        let v: Vec<f64> = v32.iter().map(|&x| f64::from(x)).collect();
        let v_norm = norm(v.iter().copied());
        let exact = oracle.exact_hv(&w, &v);
        let mut errs = Vec::new();
        for h in [0.1, 0.05, 0.025] {
            let mut out = vec![0.0f32; d];
            hessian_vector(&mut oracle, &w, &v32, h, &mut out).unwrap();
            let err: Vec<f64> = out
                .iter()
                .zip(&exact)
                .map(|(&o, e)| f64::from(o) - e)
                .collect();
            let predicted: Vec<f64> = (0..d)
                .map(|i| h * h * oracle.quartic[i] * (v[i] / v_norm).powi(3) * v_norm)
                .collect();
            let mismatch = rel_err(&err, &predicted);
            let size = norm(err.iter().copied()) / norm(exact.iter().copied());
            eprintln!(
                "quartic h = {h}: relative error {size:.3e}, vs predicted s²·a·u³: {mismatch:.2e}"
            );
            assert!(mismatch < 0.05, "h = {h}: error {err:?} vs {predicted:?}");
            errs.push(norm(err.iter().copied()));
        }
        for pair in errs.windows(2) {
            let ratio = pair[0] / pair[1];
            assert!(
                (ratio - 4.0).abs() < 0.2,
                "halving s divided the error by {ratio}"
            );
        }
    }

    #[test]
    fn power_iteration_finds_the_top_eigenvalue() {
        let d = 50;
        // Harmonic spectrum (gap λ₂/λ₁ = 0.5) and a hard one (gap 0.9), both rotated.
        let mut hard = harmonic(d);
        hard[0] = 1.0;
        hard[1] = 0.9;
        hard[2..].iter_mut().for_each(|x| *x *= 0.8);
        for (name, eigs, opts) in [
            ("harmonic", harmonic(d), PowerOptions::default()),
            (
                "gap 0.9",
                hard,
                PowerOptions {
                    max_iters: 200,
                    tol: 1e-5,
                    ..PowerOptions::default()
                },
            ),
        ] {
            let mut oracle = PolyOracle::quadratic(planted_hessian(&eigs, 7));
            let w = test_point(d, 8);
            let est = top_eigenvalue(&mut oracle, &w, opts).unwrap();
            let err = (est.value - eigs[0]).abs() / eigs[0];
            eprintln!(
                "{name}: λ₁ = {:.6}, estimate {est:?}, relative error {err:.2e}",
                eigs[0]
            );
            assert!(est.converged, "{est:?}");
            assert!(err < 0.01, "{name}: {est:?}");
            assert_eq!(oracle.calls, 2 * est.iterations);
        }
    }

    #[test]
    fn power_iteration_reports_a_dominant_negative_eigenvalue() {
        let mut eigs = harmonic(30);
        eigs[0] = -2.0;
        let mut oracle = PolyOracle::quadratic(planted_hessian(&eigs, 9));
        let est =
            top_eigenvalue(&mut oracle, &test_point(30, 10), PowerOptions::default()).unwrap();
        eprintln!("indefinite: {est:?}");
        assert!(est.converged && (est.value + 2.0).abs() < 0.02, "{est:?}");
    }

    /// λ = ±1 dominant: v alternates between the two eigenvectors and the Rayleigh quotient
    /// stalls at a value in between; the residual must keep this from passing as converged.
    #[test]
    fn power_iteration_flags_opposite_top_eigenvalues() {
        let mut eigs = harmonic(20).iter().map(|x| x * 0.5).collect::<Vec<_>>();
        eigs[0] = 1.0;
        eigs[1] = -1.0;
        let mut oracle = PolyOracle::quadratic(planted_hessian(&eigs, 11));
        let est =
            top_eigenvalue(&mut oracle, &test_point(20, 12), PowerOptions::default()).unwrap();
        eprintln!("±1: {est:?}");
        assert!(!est.converged && est.relative_residual > 0.1, "{est:?}");
        assert_eq!(est.iterations, 50);
    }

    /// Lanczos on planted spectra: the algebraically largest and smallest eigenvalues, in far
    /// fewer products than power iteration, including the spectra where power iteration fails
    /// (λ = ±1 on top) or answers another question (a dominant negative eigenvalue).
    #[test]
    fn lanczos_finds_both_ends_of_the_spectrum() {
        let d = 50;
        let mut hard = harmonic(d);
        hard[0] = 1.0;
        hard[1] = 0.9;
        hard[2..].iter_mut().for_each(|x| *x *= 0.8);
        let mut opposite = harmonic(d).iter().map(|x| x * 0.5).collect::<Vec<_>>();
        opposite[0] = 1.0;
        opposite[1] = -1.0;
        let mut negative = harmonic(d);
        negative[0] = -2.0;
        // A ReLU-network-like spectrum: a cluster on top (ratio 0.95) and a negative tail.
        let mut clustered: Vec<f64> = (0..d).map(|i| 0.56 * 0.95f64.powi(i as i32)).collect();
        clustered[40..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = -0.17 + 0.01 * i as f64);
        for (name, eigs, most_steps) in [
            ("harmonic", harmonic(d), 15),
            ("gap 0.9", hard, 25),
            ("±1", opposite, 25),
            ("dominant −2", negative, 25),
            ("cluster 0.95", clustered, 30),
        ] {
            let (max, min) = (
                eigs.iter().copied().fold(f64::MIN, f64::max),
                eigs.iter().copied().fold(f64::MAX, f64::min),
            );
            let mut oracle = PolyOracle::quadratic(planted_hessian(&eigs, 17));
            let w = test_point(d, 18);
            let est = extreme_eigenvalues(&mut oracle, &w, LanczosOptions::default()).unwrap();
            let power = top_eigenvalue(&mut oracle, &w, PowerOptions::default()).unwrap();
            eprintln!(
                "{name}: λ_max {max:.6}, λ_min {min:.6}; Lanczos {:.6} / {:.6} in {} steps \
                 (residual {:.1e}); power {:.6} in {} iterations, converged {}",
                est.max.value,
                est.min.value,
                est.max.iterations,
                est.max.relative_residual,
                power.value,
                power.iterations,
                power.converged
            );
            assert!(est.max.converged, "{name}: {est:?}");
            assert!(est.max.iterations <= most_steps, "{name}: {est:?}");
            assert!(
                (est.max.value - max).abs() < 1e-4 * max.abs(),
                "{name}: {est:?}"
            );
            // A Ritz value never exceeds λ_max (up to f32 rounding of the products).
            assert!(est.max.value <= max * (1.0 + 1e-5), "{name}: {est:?}");
            // The bottom end is estimated from the same basis, less tightly.
            assert!(
                (est.min.value - min).abs() < 0.05 * min.abs().max(max),
                "{name}: {est:?}"
            );
        }
    }

    /// Lanczos on a smooth network loss (tanh MLP) against the eigenvalues of its dense f64
    /// Hessian, and the residual's promise: some eigenvalue within relative_residual·|θ|.
    #[test]
    fn lanczos_matches_a_dense_hessian_of_a_small_network() {
        let (mut mlp, w) = Mlp::new(4, 12, 64, 31);
        let d = mlp.dim();
        let mut dense = nalgebra::DMatrix::<f64>::zeros(d, d);
        for j in 0..d {
            let mut e = vec![0.0; d];
            e[j] = 1.0;
            let col = mlp_reference_hv(&mlp, &w, &e);
            for i in 0..d {
                dense[(i, j)] = col[i];
            }
        }
        let dense = (&dense + dense.transpose()) * 0.5;
        let eigs = dense.symmetric_eigenvalues();
        let (max, min) = (eigs.max(), eigs.min());
        let est = extreme_eigenvalues(
            &mut mlp,
            &w,
            LanczosOptions {
                seed: 3,
                ..Default::default()
            },
        )
        .unwrap();
        eprintln!("tanh MLP (dim {d}): dense λ_max {max:.6}, λ_min {min:.6}; {est:?}");
        assert!(est.max.converged, "{est:?}");
        let err = (est.max.value - max).abs() / max.abs();
        assert!(err < 1e-4, "{err}: {est:?}");
        assert!(err <= est.max.relative_residual.max(1e-6), "{err}: {est:?}");
        assert!(min < 0.0, "this loss curves down somewhere: {min}");
        assert!((est.min.value - min).abs() < 0.05 * max, "{est:?}");
    }

    #[test]
    fn lanczos_settings_and_zero_hessian() {
        let mut oracle = PolyOracle::quadratic(vec![vec![0.0; 5]; 5]);
        let est = extreme_eigenvalues(&mut oracle, &[0.1; 5], LanczosOptions::default()).unwrap();
        assert_eq!(
            (est.max.value, est.max.converged, est.max.iterations),
            (0.0, true, 1)
        );
        for opts in [
            LanczosOptions {
                max_steps: 0,
                ..Default::default()
            },
            LanczosOptions {
                tol: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(extreme_eigenvalues(&mut oracle, &[0.1; 5], opts).is_err());
        }
        // Fewer steps than needed: the Ritz values of least residual, flagged, with residuals.
        let eigs = harmonic(40);
        let mut oracle = PolyOracle::quadratic(planted_hessian(&eigs, 19));
        let est = extreme_eigenvalues(
            &mut oracle,
            &test_point(40, 20),
            LanczosOptions {
                max_steps: 3,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!est.max.converged && est.max.iterations == 3, "{est:?}");
        assert!(est.max.value < 1.0, "a Ritz value is below λ_max: {est:?}");
        let bound = est.max.relative_residual * est.max.value.abs();
        assert!(
            eigs.iter().any(|l| (l - est.max.value).abs() <= bound),
            "{est:?}"
        );
        assert_eq!(oracle.calls, 6);
    }

    /// tr(H) of the rotated harmonic Hessian and the exact std error of one Rademacher probe,
    /// √(2·Σ_{i≠j} H_ij²).
    fn trace_truth(h: &[Vec<f64>]) -> (f64, f64) {
        let tr = (0..h.len()).map(|i| h[i][i]).sum();
        let off: f64 = (0..h.len())
            .flat_map(|i| (0..h.len()).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| h[i][j].powi(2))
            .sum();
        (tr, (2.0 * off).sqrt())
    }

    #[test]
    fn hutchinson_trace_is_within_its_stated_error() {
        let d = 50;
        let h = planted_hessian(&harmonic(d), 13);
        let (tr, sd1) = trace_truth(&h);
        let mut oracle = PolyOracle::quadratic(h);
        let w = test_point(d, 14);
        let mut ses = Vec::new();
        for probes in [16, 256] {
            let est = hutchinson_trace(&mut oracle, &w, probes, 1, DEFAULT_RELATIVE_STEP).unwrap();
            let theory = sd1 / (probes as f64).sqrt();
            eprintln!("probes {probes}: tr {tr:.4}, {est:?}, theoretical std error {theory:.4}");
            assert!(
                (est.mean - tr).abs() < 3.0 * est.std_error,
                "{est:?} vs {tr}"
            );
            assert!(
                (est.std_error / theory - 1.0).abs() < 0.35,
                "{est:?} vs {theory}"
            );
            ses.push(est.std_error);
        }
        let ratio = ses[0] / ses[1];
        assert!(
            (2.8..5.7).contains(&ratio),
            "16× the probes shrank the error by {ratio}, not ≈4"
        );
        // Coverage over seeds: |mean − tr| < 2·std_error about 95% of the time (t with 31 dof).
        let seeds = 60;
        let covered = (0..seeds)
            .filter(|&s| {
                let est =
                    hutchinson_trace(&mut oracle, &w, 32, 1000 + s, DEFAULT_RELATIVE_STEP).unwrap();
                (est.mean - tr).abs() < 2.0 * est.std_error
            })
            .count();
        eprintln!("coverage of ±2 std errors: {covered}/{seeds}");
        assert!(covered >= 50, "{covered}/{seeds}");
    }

    #[test]
    fn same_seed_same_result_other_seed_other_probes() {
        let d = 30;
        let mut oracle = PolyOracle::quadratic(planted_hessian(&harmonic(d), 15));
        let w = test_point(d, 16);
        let run = |o: &mut PolyOracle, seed| {
            let e = top_eigenvalue(
                o,
                &w,
                PowerOptions {
                    seed,
                    max_iters: 5,
                    ..Default::default()
                },
            )
            .unwrap();
            let t = hutchinson_trace(o, &w, 8, seed, DEFAULT_RELATIVE_STEP).unwrap();
            (e, t)
        };
        let (a, b) = (run(&mut oracle, 42), run(&mut oracle, 42));
        assert_eq!(a.0.value.to_bits(), b.0.value.to_bits());
        assert_eq!(a.1.mean.to_bits(), b.1.mean.to_bits());
        assert_eq!(a, b);
        let c = run(&mut oracle, 43);
        assert_ne!(a.0.value, c.0.value);
        assert_ne!(a.1.mean, c.1.mean);
    }

    /// Returns NaN at one component once `healthy` calls have passed.
    struct NanOracle {
        dim: usize,
        healthy: usize,
    }

    impl GradientOracle for NanOracle {
        fn dim(&self) -> usize {
            self.dim
        }
        fn gradient(&mut self, w: &[f32], out: &mut [f32]) -> Result<(), InstrumentError> {
            out.copy_from_slice(w);
            if self.healthy == 0 {
                out[3] = f32::NAN;
            } else {
                self.healthy -= 1;
            }
            Ok(())
        }
    }

    struct FailingOracle;

    impl GradientOracle for FailingOracle {
        fn dim(&self) -> usize {
            4
        }
        fn gradient(&mut self, _: &[f32], _: &mut [f32]) -> Result<(), InstrumentError> {
            Err(InstrumentError::Oracle("device lost".into()))
        }
    }

    #[test]
    fn bad_inputs_and_non_finite_gradients_are_errors() {
        let nan_at_3 = Err(InstrumentError::NonFiniteGradient { index: 3 });
        let w = vec![0.5f32; 6];
        let v = vec![1.0f32; 6];
        let mut out = vec![0.0f32; 6];
        let mut o = NanOracle { dim: 6, healthy: 0 };
        assert_eq!(hessian_vector(&mut o, &w, &v, 1e-3, &mut out), nan_at_3);
        // NaN in the second gradient of the pair, and after a few healthy iterations.
        let mut o = NanOracle { dim: 6, healthy: 1 };
        assert_eq!(hessian_vector(&mut o, &w, &v, 1e-3, &mut out), nan_at_3);
        let mut o = NanOracle { dim: 6, healthy: 3 };
        assert_eq!(
            top_eigenvalue(&mut o, &w, PowerOptions::default()).map(|_| ()),
            nan_at_3
        );
        let mut o = NanOracle { dim: 6, healthy: 5 };
        assert_eq!(
            hutchinson_trace(&mut o, &w, 4, 0, 1e-3).map(|_| ()),
            nan_at_3
        );

        let mut o = NanOracle {
            dim: 6,
            healthy: usize::MAX,
        };
        let short = vec![0.5f32; 5];
        assert!(matches!(
            hessian_vector(&mut o, &short, &v, 1e-3, &mut out),
            Err(InstrumentError::Dimension { what: "w", .. })
        ));
        assert!(hessian_vector(&mut o, &w, &short, 1e-3, &mut out).is_err());
        assert!(hessian_vector(&mut o, &w, &v, 1e-3, &mut out[..5]).is_err());
        assert_eq!(
            hessian_vector(&mut o, &w, &[0.0; 6], 1e-3, &mut out),
            Err(InstrumentError::ZeroDirection)
        );
        let mut w_nan = w.clone();
        w_nan[0] = f32::NAN;
        assert!(hessian_vector(&mut o, &w_nan, &v, 1e-3, &mut out).is_err());
        let mut v_inf = v.clone();
        v_inf[2] = f32::INFINITY;
        assert!(hessian_vector(&mut o, &w, &v_inf, 1e-3, &mut out).is_err());
        for step in [0.0, -1e-3, f64::NAN, 1e-12, 1e40] {
            assert!(
                hessian_vector(&mut o, &w, &v, step, &mut out).is_err(),
                "{step}"
            );
        }
        assert!(hutchinson_trace(&mut o, &w, 1, 0, 1e-3).is_err());
        for opts in [
            PowerOptions {
                max_iters: 0,
                ..Default::default()
            },
            PowerOptions {
                tol: 0.0,
                ..Default::default()
            },
            PowerOptions {
                tol: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(top_eigenvalue(&mut o, &w, opts).is_err());
        }
        let mut empty = NanOracle { dim: 0, healthy: 0 };
        assert_eq!(
            top_eigenvalue(&mut empty, &[], PowerOptions::default()),
            Err(InstrumentError::EmptyOracle)
        );
        // The oracle's own error comes through unchanged.
        let failed = Err(InstrumentError::Oracle("device lost".into()));
        assert_eq!(
            top_eigenvalue(&mut FailingOracle, &[0.0; 4], PowerOptions::default()),
            failed
        );
    }

    #[test]
    fn zero_hessian_gives_zero_eigenvalue() {
        let mut oracle = PolyOracle::quadratic(vec![vec![0.0; 5]; 5]);
        let est = top_eigenvalue(&mut oracle, &[0.1; 5], PowerOptions::default()).unwrap();
        assert_eq!((est.value, est.converged, est.iterations), (0.0, true, 1));
    }

    /// Arithmetic of the MLP oracle, so the same code runs in f32 (as candle would) and in f64
    /// (the reference).
    trait Real: Copy + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> {
        fn of(x: f64) -> Self;
        fn tanh(self) -> Self;
    }

    impl Real for f32 {
        fn of(x: f64) -> Self {
            x as f32
        }
        fn tanh(self) -> Self {
            f32::tanh(self)
        }
    }

    impl Real for f64 {
        fn of(x: f64) -> Self {
            x
        }
        fn tanh(self) -> Self {
            f64::tanh(self)
        }
    }

    /// A one-hidden-layer tanh network with squared loss on fixed random data: the kind of loss
    /// the trainer hands to the instruments, with backpropagation written out.
    /// Parameters: W1 (hidden × inputs), b1 (hidden), w2 (hidden), b2.
    struct Mlp {
        inputs: usize,
        hidden: usize,
        x: Vec<Vec<f64>>,
        y: Vec<f64>,
    }

    impl Mlp {
        fn new(inputs: usize, hidden: usize, n: usize, seed: u64) -> (Self, Vec<f32>) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut g = || rng.sample::<f64, _>(StandardNormal);
            let x: Vec<Vec<f64>> = (0..n).map(|_| (0..inputs).map(|_| g()).collect()).collect();
            let y: Vec<f64> = x
                .iter()
                .map(|r| (r[0] - 0.5 * r[1]).sin() + 0.1 * g())
                .collect();
            let mut w = Vec::new();
            w.extend((0..hidden * inputs).map(|_| (g() / (inputs as f64).sqrt()) as f32));
            w.extend((0..hidden).map(|_| (0.1 * g()) as f32));
            w.extend((0..hidden).map(|_| (g() / (hidden as f64).sqrt()) as f32));
            w.push(0.05);
            (
                Self {
                    inputs,
                    hidden,
                    x,
                    y,
                },
                w,
            )
        }

        fn dim(&self) -> usize {
            self.hidden * (self.inputs + 2) + 1
        }

        fn grad<T: Real>(&self, w: &[T], out: &mut [T]) {
            let (p, m) = (self.inputs, self.hidden);
            let (w1, rest) = w.split_at(m * p);
            let (b1, rest) = rest.split_at(m);
            let (w2, b2) = rest.split_at(m);
            out.iter_mut().for_each(|o| *o = T::of(0.0));
            let inv_n = T::of(1.0 / self.y.len() as f64);
            let mut a = vec![T::of(0.0); m];
            for (xr, &yr) in self.x.iter().zip(&self.y) {
                let xt: Vec<T> = xr.iter().map(|&v| T::of(v)).collect();
                let mut yhat = b2[0];
                for j in 0..m {
                    let mut z = b1[j];
                    for k in 0..p {
                        z = z + w1[j * p + k] * xt[k];
                    }
                    a[j] = z.tanh();
                    yhat = yhat + w2[j] * a[j];
                }
                let r = (yhat + T::of(-yr)) * inv_n;
                for j in 0..m {
                    out[m * p + m + j] = out[m * p + m + j] + r * a[j];
                    let dz = r * w2[j] * (T::of(1.0) + T::of(-1.0) * a[j] * a[j]);
                    out[m * p + j] = out[m * p + j] + dz;
                    for k in 0..p {
                        out[j * p + k] = out[j * p + k] + dz * xt[k];
                    }
                }
                out[m * p + 2 * m] = out[m * p + 2 * m] + r;
            }
        }
    }

    impl GradientOracle for Mlp {
        fn dim(&self) -> usize {
            Mlp::dim(self)
        }
        fn gradient(&mut self, w: &[f32], out: &mut [f32]) -> Result<(), InstrumentError> {
            self.grad(w, out);
            Ok(())
        }
    }

    /// Reference H·u in f64: central differences with s = 10⁻⁵·|w| (rounding ~10⁻¹¹,
    /// truncation ~10⁻¹⁰), extrapolated (Richardson) to remove the s² term.
    fn mlp_reference_hv(mlp: &Mlp, w: &[f32], u: &[f64]) -> Vec<f64> {
        let w64: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
        let diff = |s: f64| {
            let wp: Vec<f64> = w64.iter().zip(u).map(|(a, b)| a + s * b).collect();
            let wm: Vec<f64> = w64.iter().zip(u).map(|(a, b)| a - s * b).collect();
            let (mut gp, mut gm) = (vec![0.0; u.len()], vec![0.0; u.len()]);
            mlp.grad(&wp, &mut gp);
            mlp.grad(&wm, &mut gm);
            gp.iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * s))
                .collect::<Vec<f64>>()
        };
        let s = 1e-4 * norm(w64.iter().copied()).max(1.0);
        let (d1, d2) = (diff(s), diff(s / 2.0));
        d1.iter()
            .zip(&d2)
            .map(|(a, b)| (4.0 * b - a) / 3.0)
            .collect()
    }

    /// Relative error of the f32 central difference along unit `u` with absolute step `s`.
    fn mlp_fd_error(mlp: &mut Mlp, w: &[f32], u: &[f64], s: f64, reference: &[f64]) -> f64 {
        let w_norm = norm(w.iter().map(|&x| f64::from(x))).max(1.0);
        let u32: Vec<f32> = u.iter().map(|&x| x as f32).collect();
        let mut out = vec![0.0f32; u.len()];
        hessian_vector(mlp, w, &u32, s / w_norm, &mut out).unwrap();
        let got: Vec<f64> = out.iter().map(|&x| f64::from(x)).collect();
        rel_err(&got, reference)
    }

    /// The step choice on a network-like loss: f32 central differences against an f64 reference,
    /// along a random direction and along the top eigenvector, for the default step and a step
    /// relative to the per-coordinate scale |w|/√dim.
    #[test]
    fn default_step_is_accurate_on_a_small_network() {
        let (mut mlp, w) = Mlp::new(8, 48, 96, 21);
        let d = mlp.dim();
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        let mut random: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let n = norm(random.iter().copied());
        random.iter_mut().for_each(|x| *x /= n);
        // Top eigenvector by power iteration on the reference product.
        let mut top = random.clone();
        for _ in 0..100 {
            let hv = mlp_reference_hv(&mlp, &w, &top);
            let n = norm(hv.iter().copied());
            top = hv.into_iter().map(|x| x / n).collect();
        }
        let w_norm = norm(w.iter().map(|&x| f64::from(x)));
        eprintln!("MLP: dim {d}, |w| = {w_norm:.3}");
        for (name, u) in [("random", &random), ("top eigenvector", &top)] {
            let reference = mlp_reference_hv(&mlp, &w, u);
            let mut row = String::new();
            for h in [1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2] {
                let by_norm = mlp_fd_error(&mut mlp, &w, u, h * w_norm.max(1.0), &reference);
                let by_rms = mlp_fd_error(
                    &mut mlp,
                    &w,
                    u,
                    h * (w_norm / (d as f64).sqrt()).max(1.0),
                    &reference,
                );
                row += &format!(
                    "\n  h {h:.0e}: s = h·max(1,|w|) {by_norm:.1e}   s = h·max(1,|w|/√d) {by_rms:.1e}"
                );
            }
            eprintln!("{name}:{row}");
            let default = mlp_fd_error(
                &mut mlp,
                &w,
                u,
                DEFAULT_RELATIVE_STEP * w_norm.max(1.0),
                &reference,
            );
            assert!(default < 2e-4, "{name}: {default}");
        }
    }
}
