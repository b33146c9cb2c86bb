//! Seeded random streams. candle's CPU RNG cannot be seeded, so every random number scalelab
//! uses (weights, data order, synthetic data, estimator probes) comes from ChaCha8 generators
//! keyed by a seed and a purpose, so that one purpose drawing more numbers never shifts another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; each purpose has its own ChaCha stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Weight initialisation (run seed).
    Init = 1,
    /// The order of training examples, one permutation per epoch (run seed).
    DataOrder = 2,
    /// Teacher network weights / mixture centres (data seed).
    DataModel = 10,
    /// Training inputs and labels of synthetic data (data seed).
    TrainSamples = 11,
    /// Test inputs and labels of synthetic data (data seed).
    TestSamples = 12,
    /// Which examples of an on-disk training file are used (data seed).
    Subset = 13,
    /// Batches drawn by the gradient-noise-scale instrument (run seed).
    NoiseScale = 20,
    /// Probe vectors of the curvature instrument (run seed).
    Curvature = 21,
    /// Hessian batches of the B_noise measurement (run seed).
    NoiseHessian = 22,
}

/// A ChaCha8 generator for `seed` and `purpose`. Bit-identical across platforms.
pub fn stream(seed: u64, purpose: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose as u64);
    rng
}
