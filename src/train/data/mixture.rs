//! The `gaussian-mixture` data set: k clusters in d dimensions. Centre coordinates are drawn
//! N(0, s²/d) (s = `separation`), so two centres lie about s·√2 within-cluster standard
//! deviations apart whatever d is; each sample is its class centre plus N(0, I_d) noise. Inputs
//! are divided by √(1 + s²/d), their expected standard deviation, so they are normalised without
//! depending on N. Class of each sample uniform; optional label noise as for `teacher`.

use rand::Rng;
use rand_distr::StandardNormal;

use super::Dataset;
use crate::config::DataConfig;
use crate::error::Result;
use crate::train::rng::{Stream, stream};

fn samples(
    centres: &[Vec<f64>],
    n: usize,
    noise: f64,
    scale: f64,
    rng: &mut impl Rng,
) -> (Vec<f32>, Vec<u32>) {
    let k = centres.len() as u32;
    let d = centres[0].len();
    let mut xs = Vec::with_capacity(n * d);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let class = rng.random_range(0..k);
        for c in &centres[class as usize] {
            let v = c + rng.sample::<f64, _>(StandardNormal);
            xs.push((v / scale) as f32);
        }
        let u: f64 = rng.random();
        let random_class = rng.random_range(0..k);
        ys.push(if u < noise { random_class } else { class });
    }
    (xs, ys)
}

/// Generates the data set described by `cfg` (defaults already filled in).
pub(super) fn generate(cfg: &DataConfig) -> Result<Dataset> {
    use crate::config::data_defaults as dd;
    let d = cfg.dim.unwrap_or(dd::DIM) as usize;
    let k = cfg.classes.unwrap_or(dd::CLASSES) as usize;
    let s = cfg.separation.unwrap_or(dd::SEPARATION);
    let noise = cfg.label_noise.unwrap_or(dd::LABEL_NOISE);
    let mut rng = stream(cfg.data_seed, Stream::DataModel);
    let sd = s / (d as f64).sqrt();
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            (0..d)
                .map(|_| rng.sample::<f64, _>(StandardNormal) * sd)
                .collect()
        })
        .collect();
    let scale = (1.0 + s * s / d as f64).sqrt();
    let (train_x, train_y) = samples(
        &centres,
        cfg.train_size as usize,
        noise,
        scale,
        &mut stream(cfg.data_seed, Stream::TrainSamples),
    );
    let (test_x, test_y) = samples(
        &centres,
        cfg.test_size as usize,
        noise,
        scale,
        &mut stream(cfg.data_seed, Stream::TestSamples),
    );
    Dataset::from_vecs(vec![d], k, train_x, train_y, test_x, test_y)
}
