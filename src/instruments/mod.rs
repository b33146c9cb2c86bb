//! Training instruments: quantities the theory predicts, measured on a run without changing it.
//!
//! - [`noise_scale`]: the gradient noise scale B_simple = tr(Σ)/|G|² from squared norms of mean
//!   gradients at two batch sizes (McCandlish et al. 2018, arXiv 1812.06162, App. A.1), with a
//!   correction for batches drawn without replacement from a finite training set, and
//!   bias-corrected moving averages; and B_noise = tr(HΣ)/(GᵀHG) from the same gradients'
//!   quadratic forms in an independently drawn Hessian.
//! - [`curvature`]: the largest and smallest Hessian eigenvalues (Lanczos; power iteration for
//!   the largest magnitude) and the Hessian trace (Hutchinson) of a fixed loss at fixed
//!   weights (Kuzborskij & Lampert, arXiv 1703.01678), on the loss's exact Hessian-vector
//!   product where it has one (Pearlmutter 1994) and on central differences of gradients
//!   otherwise, because candle has no grad-of-grad.
//!
//! This module is pure numerics: it sees gradients as `&[f32]` through [`GradientOracle`] and
//! squared norms as `f64`, and knows nothing of candle, the database or the trainer. Every random
//! vector comes from `ChaCha8Rng::seed_from_u64(seed)`, so a seed fixes every result bit for bit.
//! No function panics on non-finite input or oracle output; each reports an [`InstrumentError`].

pub mod curvature;
pub mod noise_scale;

pub use curvature::{
    DEFAULT_RELATIVE_STEP, EigenEstimate, GradientOracle, LanczosOptions, PowerOptions,
    SpectrumEnds, TraceEstimate, extreme_eigenvalues, finite_difference_step, hessian_vector,
    hutchinson_trace, top_eigenvalue,
};
pub use noise_scale::{
    MIN_PAIRS, NoiseScaleEma, NoiseScalePlan, TwoBatch, TwoBatchCurved, b_noise_of, b_simple_of,
    plan_noise_scale, two_batch_curved_finite, two_batch_estimates, two_batch_estimates_finite,
};

/// Why an instrument could not produce a number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstrumentError {
    /// The two batch sizes are not 0 < B_small < B_big.
    #[error("batch sizes must satisfy 0 < B_small < B_big, got B_small = {small}, B_big = {big}")]
    BatchSizes {
        /// The smaller batch size as given.
        small: f64,
        /// The larger batch size as given.
        big: f64,
    },
    /// The training-set size cannot hold the big batch (or is below 2).
    #[error("training-set size N = {n} must be at least 2 and at least B_big = {big}")]
    Population {
        /// N as given.
        n: f64,
        /// B_big as given.
        big: f64,
    },
    /// An input number is NaN or infinite (or negative where a squared norm is expected).
    #[error("{what} must be finite and non-negative, got {value}")]
    BadInput {
        /// Which input.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// An input number that may have either sign is NaN or infinite.
    #[error("{what} must be finite, got {value}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// The gradient oracle returned NaN or ±∞.
    #[error("the gradient oracle returned a non-finite value at component {index}")]
    NonFiniteGradient {
        /// First offending component.
        index: usize,
    },
    /// A vector's length differs from the oracle's dimension.
    #[error("{what} has length {got}, the oracle's dimension is {expected}")]
    Dimension {
        /// Which vector.
        what: &'static str,
        /// The oracle's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// The oracle has no parameters.
    #[error("the gradient oracle has dimension 0")]
    EmptyOracle,
    /// A Hessian-vector product was asked along the zero vector.
    #[error("the direction vector has zero norm")]
    ZeroDirection,
    /// A setting of an instrument is out of range.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// The oracle itself failed (e.g. a candle error), with its message.
    #[error("gradient oracle failed: {0}")]
    Oracle(String),
}
