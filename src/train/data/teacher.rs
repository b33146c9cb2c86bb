//! The `teacher` data set: Gaussian inputs x ~ N(0, I_d), labelled by a fixed random teacher
//! network x ↦ argmax(W₂·tanh(W₁x + b₁) − c), with an optional fraction of labels replaced by a
//! uniformly random class. The per-class offsets c centre the teacher's logits over a
//! calibration sample, so that no class is rare.
//!
//! Teacher weights come from the data seed's `DataModel` stream; training samples are drawn in
//! sequence from the `TrainSamples` stream, so N examples are a prefix of N' > N examples.

use rand::Rng;
use rand_distr::StandardNormal;

use super::Dataset;
use crate::config::DataConfig;
use crate::error::Result;
use crate::train::rng::{Stream, stream};

/// Size of the calibration sample used to centre the teacher's logits.
const CALIBRATION: usize = 4096;

struct Teacher {
    d: usize,
    h: usize,
    k: usize,
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    offset: Vec<f64>,
}

impl Teacher {
    fn new(d: usize, h: usize, k: usize, seed: u64) -> Self {
        let mut rng = stream(seed, Stream::DataModel);
        let mut normal = |n: usize, scale: f64| -> Vec<f64> {
            (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal) * scale)
                .collect()
        };
        let w1 = normal(h * d, 1.0 / (d as f64).sqrt());
        let b1 = normal(h, 0.5);
        let w2 = normal(k * h, 2.0 / (h as f64).sqrt());
        let mut t = Teacher {
            d,
            h,
            k,
            w1,
            b1,
            w2,
            offset: vec![0.0; k],
        };
        let mut mean = vec![0.0; k];
        let mut x = vec![0.0; d];
        let mut logits = vec![0.0; k];
        for _ in 0..CALIBRATION {
            for v in x.iter_mut() {
                *v = rng.sample::<f64, _>(StandardNormal);
            }
            t.logits(&x, &mut logits);
            for (m, l) in mean.iter_mut().zip(&logits) {
                *m += l / CALIBRATION as f64;
            }
        }
        t.offset = mean;
        t
    }

    fn logits(&self, x: &[f64], out: &mut [f64]) {
        let mut hidden = vec![0.0; self.h];
        for (j, hv) in hidden.iter_mut().enumerate() {
            let row = &self.w1[j * self.d..(j + 1) * self.d];
            let z: f64 = row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + self.b1[j];
            *hv = z.tanh();
        }
        for (c, o) in out.iter_mut().enumerate().take(self.k) {
            let row = &self.w2[c * self.h..(c + 1) * self.h];
            *o = row.iter().zip(&hidden).map(|(w, h)| w * h).sum::<f64>() - self.offset[c];
        }
    }

    fn label(&self, x: &[f64]) -> u32 {
        let mut logits = vec![0.0; self.k];
        self.logits(x, &mut logits);
        argmax(&logits) as u32
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Draws `n` labelled samples from `rng`: d normals, then one uniform and one class for the
/// label-noise decision (always drawn, so the stream stays aligned whatever the noise level).
fn samples(teacher: &Teacher, n: usize, noise: f64, rng: &mut impl Rng) -> (Vec<f32>, Vec<u32>) {
    let mut xs = Vec::with_capacity(n * teacher.d);
    let mut ys = Vec::with_capacity(n);
    let mut x = vec![0.0; teacher.d];
    for _ in 0..n {
        for v in x.iter_mut() {
            *v = rng.sample::<f64, _>(StandardNormal);
        }
        let u: f64 = rng.random();
        let random_class = rng.random_range(0..teacher.k as u32);
        let y = if u < noise {
            random_class
        } else {
            teacher.label(&x)
        };
        xs.extend(x.iter().map(|&v| v as f32));
        ys.push(y);
    }
    (xs, ys)
}

/// Generates the data set described by `cfg` (defaults already filled in).
pub(super) fn generate(cfg: &DataConfig) -> Result<Dataset> {
    use crate::config::data_defaults as dd;
    let d = cfg.dim.unwrap_or(dd::DIM) as usize;
    let k = cfg.classes.unwrap_or(dd::CLASSES) as usize;
    let h = cfg.teacher_hidden.unwrap_or(dd::TEACHER_HIDDEN) as usize;
    let noise = cfg.label_noise.unwrap_or(dd::LABEL_NOISE);
    let teacher = Teacher::new(d, h, k, cfg.data_seed);
    let (train_x, train_y) = samples(
        &teacher,
        cfg.train_size as usize,
        noise,
        &mut stream(cfg.data_seed, Stream::TrainSamples),
    );
    let (test_x, test_y) = samples(
        &teacher,
        cfg.test_size as usize,
        noise,
        &mut stream(cfg.data_seed, Stream::TestSamples),
    );
    Dataset::from_vecs(vec![d], k, train_x, train_y, test_x, test_y)
}
