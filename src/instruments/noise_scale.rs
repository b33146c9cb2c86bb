//! The gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, arXiv 1812.06162).
//!
//! G is the true (full training set) gradient and Σ the covariance of one per-example gradient.
//! Per-example gradients are never formed: the mean gradient of a batch of B examples satisfies
//! E|G_B|² = |G|² + tr(Σ)/B when the examples are drawn independently (with replacement), so the
//! squared norms of mean gradients at two batch sizes give unbiased estimates of both unknowns
//! (App. A.1); see [`two_batch_estimates`]. The trainer draws batches *without* replacement from
//! N examples, which shrinks the noise term; [`two_batch_estimates_finite`] corrects for it.
//!
//! A single pair of gradients gives a very noisy estimate, and |G|² may come out negative. The
//! ratio of single estimates is biased (a ratio of noisy numbers), so [`NoiseScaleEma`] keeps
//! separate moving averages of |G|² and tr(Σ) and divides only at the end (docs/science.md §3).
//! Both gradients of a pair must be taken at the same weights.
//!
//! B_noise = tr(HΣ)/(GᵀHG), H the Hessian of the loss, is the noise scale of the paper's
//! quadratic model (B_simple is it when H ∝ I). The same pairs give it: the quadratic forms
//! G_Bᵀ·H̃·G_B in a Hessian H̃ drawn independently of the batches satisfy the same equations
//! with GᵀHG and tr(HΣ) in place of |G|² and tr(Σ) ([`two_batch_curved_finite`]).

use serde::{Deserialize, Serialize};

use super::InstrumentError;

/// Unbiased estimates of |G|² and tr(Σ) from one pair of mean gradients.
///
/// Either may be negative: each is a difference of noisy squared norms. Only the averages in
/// [`NoiseScaleEma`] are meant to be divided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwoBatch {
    /// Estimate of |G|², the squared norm of the true gradient.
    pub g_sq: f64,
    /// Estimate of tr(Σ), the trace of the per-example gradient covariance.
    pub trace: f64,
}

fn check_input(what: &'static str, value: f64) -> Result<(), InstrumentError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(InstrumentError::BadInput { what, value })
    }
}

/// 0 < `b_small` < `b_big` ≤ `n` and `n` ≥ 2.
fn check_population(n: f64, b_small: f64, b_big: f64) -> Result<(), InstrumentError> {
    check_batches(b_small, b_big)?;
    if n.is_finite() && n >= 2.0 && b_big <= n {
        Ok(())
    } else {
        Err(InstrumentError::Population { n, big: b_big })
    }
}

fn check_batches(b_small: f64, b_big: f64) -> Result<(), InstrumentError> {
    // Written so that NaN fails too.
    if b_small.is_finite() && b_big.is_finite() && b_small > 0.0 && b_small < b_big {
        Ok(())
    } else {
        Err(InstrumentError::BatchSizes {
            small: b_small,
            big: b_big,
        })
    }
}

/// Estimates of |G|² and tr(Σ) when the examples of each batch are drawn independently
/// (with replacement, or from an unlimited stream): McCandlish et al. 2018, App. A.1,
///
/// |G|² ≈ (B_big·|G_big|² − B_small·|G_small|²)/(B_big − B_small),
/// tr(Σ) ≈ (|G_small|² − |G_big|²)/(1/B_small − 1/B_big).
///
/// `g_small_sq` and `g_big_sq` are the squared norms of the mean gradients over batches of
/// `b_small` and `b_big` examples, taken at the same weights. Errors unless
/// 0 < `b_small` < `b_big` and both squared norms are finite and non-negative.
pub fn two_batch_estimates(
    b_small: f64,
    g_small_sq: f64,
    b_big: f64,
    g_big_sq: f64,
) -> Result<TwoBatch, InstrumentError> {
    check_batches(b_small, b_big)?;
    check_input("|G_small|²", g_small_sq)?;
    check_input("|G_big|²", g_big_sq)?;
    let g_sq = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small);
    let trace = (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big);
    Ok(TwoBatch { g_sq, trace })
}

/// Like [`two_batch_estimates`], for batches drawn *without* replacement from a training set of
/// `n` examples (as the trainer draws them).
///
/// Derivation. Let the per-example gradients be g_1..g_N with mean G and covariance
/// Σ = (1/N)·Σ_i (g_i − G)(g_i − G)ᵀ, the covariance of one example drawn uniformly (the noise
/// a batch of one sees, and the Σ of McCandlish et al. for the empirical distribution). The mean
/// of B examples drawn without replacement has covariance Σ·(N − B)/(B·(N − 1)) (the finite
/// population correction), so
///
/// E|G_B|² = |G|² + c(B)·tr(Σ),   c(B) = (1/B − 1/N)·N/(N − 1).
///
/// Two batch sizes give two linear equations; solving them,
///
/// tr(Σ) ≈ (|G_small|² − |G_big|²)/(c_small − c_big),
/// |G|² ≈ (c_small·|G_big|² − c_big·|G_small|²)/(c_small − c_big),
///
/// which are unbiased whatever the joint law of the two batches (the small batch may be part of
/// the big one). As N → ∞, c(B) → 1/B and these become App. A.1. At B_big = N, c_big = 0 and the
/// |G|² estimate is the full-batch |G_big|², as it should be.
///
/// How wrong the infinite formula is here: its tr(Σ) is N/(N − 1) times too large on average
/// (harmless), but its |G|² is low by tr(Σ)/(N − 1) on average, whatever the batch sizes, a
/// relative bias of B_simple/(N − 1): large exactly when the noise scale approaches N.
///
/// Errors unless 0 < `b_small` < `b_big` ≤ `n`, `n` ≥ 2, and the squared norms are finite and
/// non-negative.
pub fn two_batch_estimates_finite(
    n: f64,
    b_small: f64,
    g_small_sq: f64,
    b_big: f64,
    g_big_sq: f64,
) -> Result<TwoBatch, InstrumentError> {
    check_population(n, b_small, b_big)?;
    check_input("|G_small|²", g_small_sq)?;
    check_input("|G_big|²", g_big_sq)?;
    let (g_sq, trace) = solve_finite(n, b_small, g_small_sq, b_big, g_big_sq);
    Ok(TwoBatch { g_sq, trace })
}

/// The two linear equations E[x_B] = level + c(B)·spread at B_small and B_big, solved, with
/// c(B) = (1/B − 1/N)·N/(N − 1): (level, spread). Inputs already checked.
fn solve_finite(n: f64, b_small: f64, x_small: f64, b_big: f64, x_big: f64) -> (f64, f64) {
    let c = |b: f64| (1.0 / b - 1.0 / n) * n / (n - 1.0);
    let (c_small, c_big) = (c(b_small), c(b_big));
    let denom = c_small - c_big;
    (
        (c_small * x_big - c_big * x_small) / denom,
        (x_small - x_big) / denom,
    )
}

/// Unbiased estimates of GᵀHG and tr(HΣ) from one pair of mean gradients, the numerator and
/// denominator of B_noise = tr(HΣ)/(GᵀHG).
///
/// Either may be negative (each is a difference of noisy quadratic forms, and the Hessian of a
/// ReLU network is indefinite); only averages over pairs are meant to be divided
/// ([`b_noise_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwoBatchCurved {
    /// Estimate of GᵀHG, the curvature of the loss along the true gradient times |G|².
    pub grad_h_grad: f64,
    /// Estimate of tr(HΣ), the gradient noise weighted by the curvature.
    pub trace_h_sigma: f64,
}

/// The estimates behind B_noise = tr(HΣ)/(GᵀHG) (McCandlish et al. 2018, §2.2 and App. A.1),
/// from the quadratic forms q_B = G_Bᵀ·H̃·G_B of mean gradients over batches of `b_small` and
/// `b_big` examples drawn without replacement from `n`, taken at the same weights, H̃ being a
/// Hessian estimate drawn independently of both batches with E[H̃] = H (the Hessian of the
/// mean loss over an independently drawn batch, say).
///
/// Derivation, as in [`two_batch_estimates_finite`]: with H̃ independent of the batch,
/// E[G_Bᵀ·H̃·G_B] = E[G_Bᵀ·H·G_B] = GᵀHG + tr(H·Cov(G_B)) = GᵀHG + c(B)·tr(HΣ), with the same
/// c(B) = (1/B − 1/N)·N/(N − 1), so the same two equations give
///
/// tr(HΣ) ≈ (q_small − q_big)/(c_small − c_big),
/// GᵀHG ≈ (c_small·q_big − c_big·q_small)/(c_small − c_big).
///
/// With H = I these are the |G|² and tr(Σ) of [`two_batch_estimates_finite`], and B_noise is
/// B_simple. Errors unless 0 < `b_small` < `b_big` ≤ `n`, `n` ≥ 2, and both forms are finite
/// (of any sign).
pub fn two_batch_curved_finite(
    n: f64,
    b_small: f64,
    q_small: f64,
    b_big: f64,
    q_big: f64,
) -> Result<TwoBatchCurved, InstrumentError> {
    check_population(n, b_small, b_big)?;
    for (what, q) in [("G_smallᵀHG_small", q_small), ("G_bigᵀHG_big", q_big)] {
        if !q.is_finite() {
            return Err(InstrumentError::NonFinite { what, value: q });
        }
    }
    let (grad_h_grad, trace_h_sigma) = solve_finite(n, b_small, q_small, b_big, q_big);
    Ok(TwoBatchCurved {
        grad_h_grad,
        trace_h_sigma,
    })
}

/// B_noise = `trace_h_sigma`/`grad_h_grad` of two averages of estimates, withheld (`None`) when
/// the GᵀHG average is ≤ 0 (the noise swamps it, or the loss curves down along G, where the
/// quadratic model behind B_noise does not hold) or the tr(HΣ) average is < 0.
pub fn b_noise_of(grad_h_grad: f64, trace_h_sigma: f64) -> Option<f64> {
    b_simple_of(grad_h_grad, trace_h_sigma)
}

/// Bias-corrected exponential moving averages of |G|² and tr(Σ), and their ratio B_simple.
///
/// Each average is m_t = β·m_{t−1} + (1 − β)·x_t divided by 1 − β^t (as Adam does), so the first
/// values are not shrunk toward the zero start. The correction cancels in the ratio but matters
/// for [`NoiseScaleEma::g_sq`] and [`NoiseScaleEma::trace`] on their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseScaleEma {
    decay: f64,
    g_sq: f64,
    trace: f64,
    /// 1 − β^t, kept by the same recursion as the averages.
    weight: f64,
    updates: u64,
}

impl NoiseScaleEma {
    /// Default decay β = 0.9: an average over about 1/(1 − β) = 10 recent estimates, whose
    /// variance is (1 − β)/(1 + β) = 1/19 of one estimate's. Single estimates are noisy (tens of
    /// percent for |G|²), while B_simple drifts over training (McCandlish et al. report growth
    /// from about 50 to 900 on MNIST, Table 1); 0.9 trades the two for a few estimates per epoch.
    pub const DEFAULT_DECAY: f64 = 0.9;

    /// Empty averages with decay β in [0, 1) (β = 0 keeps only the last estimate).
    pub fn new(decay: f64) -> Result<Self, InstrumentError> {
        if !(decay.is_finite() && (0.0..1.0).contains(&decay)) {
            return Err(InstrumentError::Setting(format!(
                "EMA decay must lie in [0, 1), got {decay}"
            )));
        }
        Ok(Self {
            decay,
            g_sq: 0.0,
            trace: 0.0,
            weight: 0.0,
            updates: 0,
        })
    }

    /// Adds one pair of estimates. A non-finite estimate is refused (and changes nothing).
    pub fn update(&mut self, est: TwoBatch) -> Result<(), InstrumentError> {
        if !est.g_sq.is_finite() {
            return Err(InstrumentError::BadInput {
                what: "|G|² estimate",
                value: est.g_sq,
            });
        }
        if !est.trace.is_finite() {
            return Err(InstrumentError::BadInput {
                what: "tr(Σ) estimate",
                value: est.trace,
            });
        }
        let b = self.decay;
        self.g_sq = b * self.g_sq + (1.0 - b) * est.g_sq;
        self.trace = b * self.trace + (1.0 - b) * est.trace;
        self.weight = b * self.weight + (1.0 - b);
        self.updates += 1;
        Ok(())
    }

    /// The decay β.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// How many estimates have been added.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Bias-corrected average of the |G|² estimates; `None` before the first update.
    pub fn g_sq(&self) -> Option<f64> {
        (self.updates > 0).then(|| self.g_sq / self.weight)
    }

    /// Bias-corrected average of the tr(Σ) estimates; `None` before the first update.
    pub fn trace(&self) -> Option<f64> {
        (self.updates > 0).then(|| self.trace / self.weight)
    }

    /// B_simple = EMA[tr Σ]/EMA[|G|²].
    ///
    /// `None` before the first update, and when the |G|² average is ≤ 0 or the tr(Σ) average is
    /// < 0. Both true values are non-negative; an average at or below zero means the noise of the
    /// estimates still swamps the signal: the |G|² estimate is a small difference of two large
    /// squared norms once tr(Σ)/B_big ≫ |G|², i.e. once B_simple ≫ B_big. The ratio would then
    /// be meaningless or infinite rather than large, so it is withheld; the two averages stay
    /// available through [`Self::g_sq`] and [`Self::trace`].
    pub fn b_simple(&self) -> Option<f64> {
        b_simple_of(self.g_sq()?, self.trace()?)
    }
}

/// B_simple = `trace`/`g_sq` of two averages of estimates, withheld (`None`) when the |G|²
/// average is ≤ 0 or the tr(Σ) average < 0 (see [`NoiseScaleEma::b_simple`]).
pub fn b_simple_of(g_sq: f64, trace: f64) -> Option<f64> {
    if g_sq <= 0.0 || trace < 0.0 {
        return None;
    }
    let b = trace / g_sq;
    b.is_finite().then_some(b)
}

impl Default for NoiseScaleEma {
    fn default() -> Self {
        Self {
            decay: Self::DEFAULT_DECAY,
            g_sq: 0.0,
            trace: 0.0,
            weight: 0.0,
            updates: 0,
        }
    }
}

/// The batch sizes and repetitions of one noise-scale measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseScalePlan {
    /// Examples in the small batch.
    pub b_small: usize,
    /// Examples in the big batch; the small batch should be its first `b_small` examples.
    pub b_big: usize,
    /// Pairs to measure; each gives one [`TwoBatch`] for [`NoiseScaleEma::update`].
    pub repeats: usize,
}

impl NoiseScalePlan {
    /// Examples whose gradients one measurement costs (nested batches): `b_big · repeats`.
    pub fn examples(&self) -> usize {
        self.b_big.saturating_mul(self.repeats)
    }

    /// Backward passes one measurement costs: two per repeat, one over the small batch and one
    /// over the other B_big − B_small examples; the big mean gradient is then
    /// (B_small·G_small + (B_big − B_small)·G_rest)/B_big, with no third pass.
    pub fn backward_passes(&self) -> usize {
        self.repeats.saturating_mul(2)
    }
}

/// Fewest pairs one measurement averages. A measurement's reading uses its own pairs only (no
/// average carried over from earlier epochs), and a ratio of one pair's estimates is too noisy
/// to read: with one pair per measurement a quarter of the readings were withheld (|G|² ≤ 0)
/// in simulation, with four 6%, with the median within 10–20% of a planted B_simple growing
/// from 50 to 900 (docs/instruments.md).
pub const MIN_PAIRS: usize = 4;
/// Largest ratio B_big/B_small that [`plan_noise_scale`] uses.
pub const MAX_BIG_BATCH_FACTOR: usize = 8;
/// Smallest ratio B_big/B_small that [`plan_noise_scale`] uses (when N or the budget allow).
pub const MIN_BIG_BATCH_FACTOR: usize = 2;

/// Batch sizes and repetitions for one measurement in a training run with batch size `batch` and
/// `n` training examples, costing about `budget_examples` per-example gradients.
///
/// - B_small = the training batch size, so |G_small|² is the squared norm of the gradients
///   training actually follows (capped at B_big/2 when the training batch is near N).
/// - B_big = B_small·k with k from 8 down to 2 as the budget requires (a quarter of the budget
///   per pair, so that [`MIN_PAIRS`] pairs fit it), and at most N. The tr(Σ) estimate divides
///   by 1/B_small − 1/B_big = (1 − 1/k)/B_small: k = 8 already gives 7/8 of the separation an
///   infinite big batch would, k = 2 only 1/2, while the cost grows like k. With
///   [`two_batch_estimates_finite`], B_big = N is fine (it gives the exact |G|²).
/// - repeats = ⌊budget/B_big⌋, at least [`MIN_PAIRS`]. One measurement thus costs
///   `b_big · repeats` examples, at most the budget whenever the budget is at least
///   `MIN_PAIRS`·2·B_small (and N ≥ 2·B_small); beyond that the floor of pairs wins.
///
/// For "≤ 10% of training time at one measurement per epoch", pass `budget_examples = n / 10`.
/// Errors when `batch` is 0 or `n` < 2.
pub fn plan_noise_scale(
    batch: usize,
    n: usize,
    budget_examples: usize,
) -> Result<NoiseScalePlan, InstrumentError> {
    if batch == 0 || n < 2 {
        return Err(InstrumentError::Setting(format!(
            "noise-scale plan needs batch ≥ 1 and N ≥ 2, got batch = {batch}, N = {n}"
        )));
    }
    let lo = batch.saturating_mul(MIN_BIG_BATCH_FACTOR);
    let hi = batch.saturating_mul(MAX_BIG_BATCH_FACTOR);
    let b_big = (budget_examples / MIN_PAIRS).clamp(lo, hi).min(n);
    let b_small = batch.min(b_big / 2).max(1);
    let repeats = (budget_examples / b_big).max(MIN_PAIRS);
    Ok(NoiseScalePlan {
        b_small,
        b_big,
        repeats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::index::sample;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal, StandardNormal};

    fn norm_sq(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum()
    }

    /// A population of per-example gradients: its mean G, |G|² and tr(Σ), Σ with 1/N.
    fn population<G: AsRef<[f64]>>(grads: &[G]) -> (Vec<f64>, f64, f64) {
        let n = grads.len() as f64;
        let d = grads[0].as_ref().len();
        let mean: Vec<f64> = (0..d)
            .map(|j| grads.iter().map(|g| g.as_ref()[j]).sum::<f64>() / n)
            .collect();
        let trace = grads
            .iter()
            .map(|g| {
                g.as_ref()
                    .iter()
                    .zip(&mean)
                    .map(|(a, m)| (a - m).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / n;
        let g_sq = norm_sq(&mean);
        (mean, g_sq, trace)
    }

    #[test]
    fn two_batch_inverts_the_expected_norms() {
        // E|G_B|² = |G|² + tr(Σ)/B: feed exact expectations, get the planted values back.
        let (g_sq, trace) = (2.5, 400.0);
        let e = |b: f64| g_sq + trace / b;
        let est = two_batch_estimates(16.0, e(16.0), 128.0, e(128.0)).unwrap();
        assert!((est.g_sq - g_sq).abs() < 1e-12 * trace);
        assert!((est.trace - trace).abs() < 1e-9 * trace);
    }

    #[test]
    fn finite_inverts_expected_norms_and_limits() {
        let (n, g_sq, trace) = (500.0, 0.7, 90.0);
        let e = |b: f64| g_sq + trace * (1.0 / b - 1.0 / n) * n / (n - 1.0);
        let est = two_batch_estimates_finite(n, 10.0, e(10.0), 80.0, e(80.0)).unwrap();
        assert!((est.g_sq - g_sq).abs() < 1e-12 * trace);
        assert!((est.trace - trace).abs() < 1e-9 * trace);
        // B_big = N: |G|² is the full-batch squared norm itself.
        let full = two_batch_estimates_finite(n, 10.0, 5.0, n, 1.25).unwrap();
        assert_eq!(full.g_sq, 1.25);
        // N → ∞ recovers App. A.1.
        let a = two_batch_estimates(10.0, 5.0, 80.0, 1.25).unwrap();
        let b = two_batch_estimates_finite(1e15, 10.0, 5.0, 80.0, 1.25).unwrap();
        assert!((a.g_sq - b.g_sq).abs() < 1e-9 && (a.trace - b.trace).abs() < 1e-9);
    }

    /// The exact expectation over every batch drawn without replacement, by enumeration, from a
    /// small population of per-example gradients: the estimator gets back the population's |G|²
    /// and tr(Σ) (Σ with 1/N, as documented) to rounding, with no c(B) written here; and the
    /// infinite-population formula's |G|² is low by tr(Σ)/(N − 1), as its documentation says.
    #[test]
    fn finite_recovers_a_population_from_exact_expectations_over_every_batch() {
        let grads = SEVEN;
        let n = grads.len();
        let (_, g_sq, trace) = population(&grads);
        // E|G_B|²: the mean of |batch mean|² over all C(N, B) batches of B distinct examples.
        let expected = |b: u32| over_every_batch(&grads, b, norm_sq);
        let (e2, e5, e7) = (expected(2), expected(5), expected(7));
        // The full batch is G itself.
        assert!((e7 - g_sq).abs() < 1e-12, "{e7} vs {g_sq}");
        let est = two_batch_estimates_finite(n as f64, 2.0, e2, 5.0, e5).unwrap();
        assert!((est.g_sq - g_sq).abs() < 1e-12, "{} vs {g_sq}", est.g_sq);
        assert!(
            (est.trace - trace).abs() < 1e-12,
            "{} vs {trace}",
            est.trace
        );
        let with_full = two_batch_estimates_finite(n as f64, 2.0, e2, 7.0, e7).unwrap();
        assert!(
            (with_full.trace - trace).abs() < 1e-12,
            "{}",
            with_full.trace
        );
        // Ignoring that the population is finite: |G|² low by tr(Σ)/(N − 1), tr(Σ) high by
        // N/(N − 1).
        let naive = two_batch_estimates(2.0, e2, 5.0, e5).unwrap();
        let low_by = trace / (n as f64 - 1.0);
        assert!((g_sq - naive.g_sq - low_by).abs() < 1e-12, "{}", naive.g_sq);
        let factor = n as f64 / (n as f64 - 1.0);
        assert!(
            (naive.trace - trace * factor).abs() < 1e-12,
            "{}",
            naive.trace
        );
    }

    /// A small population of per-example gradients.
    const SEVEN: [[f64; 3]; 7] = [
        [1.5, -0.25, 2.0],
        [0.5, 0.75, -1.0],
        [-2.0, 1.25, 0.5],
        [3.0, 0.0, 1.5],
        [0.25, -1.5, -0.75],
        [1.0, 2.5, 0.0],
        [-0.5, -0.5, 3.25],
    ];

    /// The exact mean of `f(batch mean)` over all C(N, B) batches of `b` distinct examples.
    fn over_every_batch(grads: &[[f64; 3]], b: u32, f: impl Fn(&[f64]) -> f64) -> f64 {
        let n = grads.len();
        let (mut sum, mut count) = (0.0, 0u32);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() != b {
                continue;
            }
            let batch_mean: Vec<f64> = (0..3)
                .map(|j| {
                    (0..n)
                        .filter(|i| mask >> i & 1 == 1)
                        .map(|i| grads[i][j])
                        .sum::<f64>()
                        / f64::from(b)
                })
                .collect();
            sum += f(&batch_mean);
            count += 1;
        }
        sum / f64::from(count)
    }

    /// A symmetric matrix applied to a vector, and the quadratic form.
    fn quad(h: &[[f64; 3]; 3], v: &[f64]) -> f64 {
        (0..3)
            .map(|i| v[i] * (0..3).map(|j| h[i][j] * v[j]).sum::<f64>())
            .sum()
    }

    /// tr(HΣ) and GᵀHG of a population (Σ with 1/N).
    fn curved_population(grads: &[[f64; 3]], h: &[[f64; 3]; 3]) -> (f64, f64) {
        let n = grads.len() as f64;
        let (mean, _, _) = population(grads);
        let trace_h_sigma = grads
            .iter()
            .map(|g| {
                let d: Vec<f64> = (0..3).map(|j| g[j] - mean[j]).collect();
                quad(h, &d)
            })
            .sum::<f64>()
            / n;
        (quad(h, &mean), trace_h_sigma)
    }

    /// science.md §3, B_noise = tr(HΣ)/(GᵀHG): the exact expectation of the quadratic forms
    /// G_Bᵀ·H·G_B over every batch drawn without replacement, by enumeration, gives back the
    /// population's GᵀHG and tr(HΣ) to rounding, for a positive definite H and for an
    /// indefinite one; with H = I they are |G|² and tr(Σ), B_noise = B_simple. The Hessian's
    /// weighting matters: the planted B_noise differs from B_simple.
    #[test]
    fn curved_recovers_a_population_from_exact_expectations_over_every_batch() {
        let grads = SEVEN;
        let n = grads.len();
        let expected = |h: &[[f64; 3]; 3], b: u32| over_every_batch(&grads, b, |m| quad(h, m));
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let positive = [[0.2, 0.0, 0.0], [0.0, 4.0, 0.3], [0.0, 0.3, 0.5]];
        let indefinite = [[3.0, 0.5, 1.0], [0.5, -1.0, 0.0], [1.0, 0.0, 0.25]];
        for h in [identity, positive, indefinite] {
            let (ghg, thg) = curved_population(&grads, &h);
            for (bs, bb) in [(2, 5), (1, 7), (3, 4)] {
                let est = two_batch_curved_finite(
                    n as f64,
                    f64::from(bs),
                    expected(&h, bs),
                    f64::from(bb),
                    expected(&h, bb),
                )
                .unwrap();
                assert!((est.grad_h_grad - ghg).abs() < 1e-12, "{est:?} vs {ghg}");
                assert!((est.trace_h_sigma - thg).abs() < 1e-12, "{est:?} vs {thg}");
            }
        }
        let (_, g_sq, trace) = population(&grads);
        let (ghg, thg) = curved_population(&grads, &identity);
        assert!((ghg - g_sq).abs() < 1e-12 && (thg - trace).abs() < 1e-12);
        let (ghg, thg) = curved_population(&grads, &positive);
        let (b_noise, b_simple) = (b_noise_of(ghg, thg).unwrap(), trace / g_sq);
        assert!(
            (b_noise / b_simple - 1.0).abs() > 0.2,
            "{b_noise} vs {b_simple}"
        );
    }

    /// The trainer's way, simulated: nested batches drawn without replacement, a Hessian
    /// estimate drawn independently per pair (the planted H plus symmetric zero-mean noise, as
    /// the Hessian of an independent batch is), averages over the pairs divided at the end. The
    /// average of many measurements recovers the planted B_noise; leaving out the
    /// finite-population correction does not. (A Hessian that depends on the batch is caught
    /// on the network itself: `tests/instruments.rs`.)
    #[test]
    fn curved_estimates_recover_a_planted_b_noise_with_a_noisy_hessian() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let n = 200;
        let normal = Normal::new(0.0, 1.0).unwrap();
        let grads: Vec<[f64; 3]> = (0..n)
            .map(|_| {
                [
                    0.3 + 2.0 * normal.sample(&mut rng),
                    -0.2 + 0.5 * normal.sample(&mut rng),
                    0.1 + 1.0 * normal.sample(&mut rng),
                ]
            })
            .collect();
        let h = [[0.5, 0.1, 0.0], [0.1, 3.0, 0.2], [0.0, 0.2, 1.0]];
        let (ghg, thg) = curved_population(&grads, &h);
        let truth = thg / ghg;
        let (bs, bb) = (8, 64);
        let mean_of = |idx: &[usize]| -> Vec<f64> {
            (0..3)
                .map(|j| idx.iter().map(|&i| grads[i][j]).sum::<f64>() / idx.len() as f64)
                .collect()
        };
        let (mut sum_g, mut sum_t, mut sum_naive) = (0.0, 0.0, 0.0);
        let pairs = 40_000;
        for _ in 0..pairs {
            let picked = sample(&mut rng, n, bb).into_vec();
            let (gs, gb) = (mean_of(&picked[..bs]), mean_of(&picked));
            let mut noisy = h;
            for (i, j) in [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)] {
                let e = 0.5 * normal.sample(&mut rng);
                noisy[i][j] += e;
                noisy[j][i] = noisy[i][j];
            }
            let (qs, qb) = (quad(&noisy, &gs), quad(&noisy, &gb));
            let est = two_batch_curved_finite(n as f64, bs as f64, qs, bb as f64, qb).unwrap();
            sum_g += est.grad_h_grad;
            sum_t += est.trace_h_sigma;
            // The infinite-population solution of the same forms.
            let (c_s, c_b) = (1.0 / bs as f64, 1.0 / bb as f64);
            sum_naive += (c_s * qb - c_b * qs) / (c_s - c_b);
        }
        let b_noise = b_noise_of(sum_g / pairs as f64, sum_t / pairs as f64).unwrap();
        assert!(
            (b_noise / truth - 1.0).abs() < 0.05,
            "B_noise {b_noise} vs planted {truth}"
        );
        // Without the correction GᵀHG is low by tr(HΣ)/(N − 1) on average: B_noise high by
        // about B_noise/(N − 1), here above 5%.
        let naive = thg / (sum_naive / pairs as f64);
        assert!(truth / (n as f64 - 1.0) > 0.05, "{truth}");
        assert!(naive / truth - 1.0 > 0.05, "{naive} vs {truth}");
    }

    #[test]
    fn curved_refuses_non_finite_forms_and_bad_batches() {
        assert!(matches!(
            two_batch_curved_finite(100.0, 8.0, f64::NAN, 64.0, 1.0),
            Err(InstrumentError::NonFinite { .. })
        ));
        assert!(matches!(
            two_batch_curved_finite(100.0, 8.0, 1.0, 64.0, f64::INFINITY),
            Err(InstrumentError::NonFinite { .. })
        ));
        assert!(matches!(
            two_batch_curved_finite(100.0, 64.0, 1.0, 8.0, 1.0),
            Err(InstrumentError::BatchSizes { .. })
        ));
        assert!(matches!(
            two_batch_curved_finite(32.0, 8.0, 1.0, 64.0, 1.0),
            Err(InstrumentError::Population { .. })
        ));
        // Negative forms are legitimate (an indefinite Hessian); the ratio is withheld.
        let est = two_batch_curved_finite(100.0, 8.0, -1.0, 64.0, -2.0).unwrap();
        assert!(est.grad_h_grad < 0.0);
        assert_eq!(b_noise_of(est.grad_h_grad, est.trace_h_sigma), None);
        assert_eq!(b_noise_of(2.0, -1.0), None);
        assert_eq!(b_noise_of(2.0, 5.0), Some(2.5));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            two_batch_estimates(64.0, 1.0, 64.0, 1.0),
            Err(InstrumentError::BatchSizes { .. })
        ));
        assert!(two_batch_estimates(128.0, 1.0, 64.0, 1.0).is_err());
        assert!(two_batch_estimates(0.0, 1.0, 64.0, 1.0).is_err());
        assert!(two_batch_estimates(-4.0, 1.0, 64.0, 1.0).is_err());
        assert!(two_batch_estimates(f64::NAN, 1.0, 64.0, 1.0).is_err());
        assert!(matches!(
            two_batch_estimates(8.0, f64::NAN, 64.0, 1.0),
            Err(InstrumentError::BadInput { .. })
        ));
        assert!(two_batch_estimates(8.0, 1.0, 64.0, f64::INFINITY).is_err());
        assert!(two_batch_estimates(8.0, -1.0, 64.0, 1.0).is_err());
        assert!(matches!(
            two_batch_estimates_finite(50.0, 8.0, 1.0, 64.0, 1.0),
            Err(InstrumentError::Population { .. })
        ));
        assert!(two_batch_estimates_finite(1.0, 0.5, 1.0, 1.0, 1.0).is_err());
        assert!(two_batch_estimates_finite(f64::NAN, 8.0, 1.0, 64.0, 1.0).is_err());
        assert!(NoiseScaleEma::new(1.0).is_err());
        assert!(NoiseScaleEma::new(-0.1).is_err());
        assert!(NoiseScaleEma::new(f64::NAN).is_err());
        let mut ema = NoiseScaleEma::default();
        let nan = TwoBatch {
            g_sq: f64::NAN,
            trace: 1.0,
        };
        assert!(ema.update(nan).is_err());
        assert_eq!(ema.updates(), 0);
        assert!(plan_noise_scale(0, 100, 10).is_err());
        assert!(plan_noise_scale(4, 1, 10).is_err());
    }

    #[test]
    fn ema_is_bias_corrected_and_withholds_undefined_ratios() {
        let mut ema = NoiseScaleEma::new(0.99).unwrap();
        assert_eq!(
            (ema.g_sq(), ema.trace(), ema.b_simple()),
            (None, None, None)
        );
        // One update: the corrected average is the estimate itself, not 1% of it.
        ema.update(TwoBatch {
            g_sq: 2.0,
            trace: 50.0,
        })
        .unwrap();
        assert!((ema.g_sq().unwrap() - 2.0).abs() < 1e-12);
        assert!((ema.b_simple().unwrap() - 25.0).abs() < 1e-9);
        // A constant stream stays at its value at every step.
        for _ in 0..50 {
            ema.update(TwoBatch {
                g_sq: 2.0,
                trace: 50.0,
            })
            .unwrap();
            assert!((ema.trace().unwrap() - 50.0).abs() < 1e-9);
        }
        let mut neg = NoiseScaleEma::default();
        neg.update(TwoBatch {
            g_sq: -0.1,
            trace: 50.0,
        })
        .unwrap();
        assert_eq!(neg.b_simple(), None);
        assert_eq!(neg.g_sq(), Some(-0.1));
    }

    /// Planted distribution: g_i = G + ε_i, ε_i ~ N(0, diag σ²), independent draws, so the mean
    /// of B examples is exactly G + N(0, diag σ²/B) and is drawn as such.
    #[test]
    fn ema_recovers_planted_noise_scale() {
        let d = 100;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let g: Vec<f64> = (0..d)
            .map(|i| if i % 2 == 0 { 0.2 } else { -0.1 })
            .collect();
        let sigma: Vec<f64> = (0..d).map(|i| 0.5 + (i % 5) as f64 * 0.25).collect();
        let g_sq = norm_sq(&g);
        let trace = norm_sq(&sigma);
        let truth = trace / g_sq; // 20·(0.25 + 0.5625 + 1 + 1.5625 + 2.25)/2.5 = 45
        let (bs, bb) = (16.0, 128.0);
        let draw = |b: f64, rng: &mut ChaCha8Rng| {
            let mean: Vec<f64> = g
                .iter()
                .zip(&sigma)
                .map(|(gi, si)| gi + si / b.sqrt() * rng.sample::<f64, _>(StandardNormal))
                .collect();
            norm_sq(&mean)
        };
        let mut ema = NoiseScaleEma::new(0.999).unwrap();
        let steps = 20_000;
        for _ in 0..steps {
            let small = draw(bs, &mut rng);
            let big = draw(bb, &mut rng);
            ema.update(two_batch_estimates(bs, small, bb, big).unwrap())
                .unwrap();
        }
        let b = ema.b_simple().unwrap();
        eprintln!("planted B_simple {truth:.3}, EMA estimate {b:.3}");
        assert!((b / truth - 1.0).abs() < 0.05, "B_simple {b} vs {truth}");
    }

    /// A fixed population of N per-example gradients, batches without replacement (the small
    /// batch nested in the big one, as [`NoiseScalePlan`] recommends). Averaged over many draws,
    /// the finite correction hits the population's |G|² and tr(Σ); the infinite formula's |G|²
    /// misses by the predicted −tr(Σ)/(N − 1).
    #[test]
    fn finite_correction_is_unbiased_without_replacement() {
        let (n, d) = (200usize, 40usize);
        let (bs, bb) = (20usize, 160usize);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let noise = Normal::new(0.0, 1.0).unwrap();
        let pop: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                (0..d)
                    .map(|j| 0.15 + 0.01 * j as f64 + noise.sample(&mut rng))
                    .collect()
            })
            .collect();
        let (_, g_sq, trace) = population(&pop);

        let reps = 20_000;
        let (mut fin, mut inf) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
        let mut acc = vec![0.0; d];
        for _ in 0..reps {
            let idx = sample(&mut rng, n, bb);
            acc.iter_mut().for_each(|a| *a = 0.0);
            let mut small_sq = 0.0;
            for (k, i) in idx.iter().enumerate() {
                acc.iter_mut().zip(&pop[i]).for_each(|(a, x)| *a += x);
                if k + 1 == bs {
                    small_sq = acc.iter().map(|a| (a / bs as f64).powi(2)).sum();
                }
            }
            let big_sq: f64 = acc.iter().map(|a| (a / bb as f64).powi(2)).sum();
            let (nf, b1, b2) = (n as f64, bs as f64, bb as f64);
            fin.push(two_batch_estimates_finite(nf, b1, small_sq, b2, big_sq).unwrap());
            inf.push(two_batch_estimates(b1, small_sq, b2, big_sq).unwrap());
        }
        let stats = |xs: &[f64]| {
            let m = xs.iter().sum::<f64>() / xs.len() as f64;
            let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
            (m, (v / xs.len() as f64).sqrt())
        };
        let (fg, fg_se) = stats(&fin.iter().map(|e| e.g_sq).collect::<Vec<_>>());
        let (ft, ft_se) = stats(&fin.iter().map(|e| e.trace).collect::<Vec<_>>());
        let (ig, ig_se) = stats(&inf.iter().map(|e| e.g_sq).collect::<Vec<_>>());
        eprintln!(
            "|G|² {g_sq:.4}  tr Σ {trace:.3}  B_simple {:.2}\n finite: |G|² {fg:.4} ± {fg_se:.4}, \
             tr {ft:.3} ± {ft_se:.3}\n infinite: |G|² {ig:.4} ± {ig_se:.4}, predicted {:.4}",
            trace / g_sq,
            g_sq - trace / (n as f64 - 1.0)
        );
        assert!(
            (fg - g_sq).abs() < 4.0 * fg_se,
            "finite |G|² {fg} vs {g_sq}"
        );
        assert!(
            (ft - trace).abs() < 4.0 * ft_se,
            "finite tr {ft} vs {trace}"
        );
        // The infinite formula is off by many standard errors, by the predicted amount.
        assert!(
            (ig - g_sq).abs() > 20.0 * ig_se,
            "infinite |G|² {ig} vs {g_sq}"
        );
        let predicted = g_sq - trace / (n as f64 - 1.0);
        assert!((ig - predicted).abs() < 4.0 * ig_se);
    }

    #[test]
    fn plan_follows_batch_n_and_budget() {
        let p = plan_noise_scale(32, 50_000, 5_000).unwrap();
        assert_eq!((p.b_small, p.b_big, p.repeats), (32, 256, 19));
        assert!(p.examples() <= 5_000 && p.backward_passes() == 38);
        // A small budget shrinks the big batch toward 2·B before breaking the budget, and
        // never takes fewer than MIN_PAIRS pairs.
        let p = plan_noise_scale(32, 50_000, 400).unwrap();
        assert_eq!((p.b_small, p.b_big, p.repeats), (32, 100, 4));
        let p = plan_noise_scale(32, 50_000, 10).unwrap();
        assert_eq!((p.b_small, p.b_big, p.repeats), (32, 64, MIN_PAIRS));
        // N caps the big batch; a training batch near N is halved for the small one.
        let p = plan_noise_scale(100, 300, 10_000).unwrap();
        assert_eq!((p.b_small, p.b_big), (100, 300));
        let p = plan_noise_scale(1000, 1000, 100).unwrap();
        assert_eq!((p.b_small, p.b_big, p.repeats), (500, 1000, MIN_PAIRS));
        let p = plan_noise_scale(1, 2, 0).unwrap();
        assert_eq!((p.b_small, p.b_big, p.repeats), (1, 2, MIN_PAIRS));
    }
}
