//! The `teacher` data set: Gaussian inputs x ~ N(0, I_d), labelled by a fixed random teacher
//! network x ↦ argmax(W₂·tanh(W₁x + b₁) − c), with an optional fraction of labels replaced by a
//! uniformly random class. The per-class offsets c centre the teacher's logits over a
//! calibration sample, so that no class is rare.
//!
//! Teacher weights come from the data seed's `DataModel` stream; training samples are drawn in
//! sequence from the `TrainSamples` stream, so N examples are a prefix of N' > N examples.

use rand::Rng;

use super::Dataset;
use super::teacher_net::{DEFAULT_TEACHER, EMBEDDED_ROWS, Teacher, draw_inputs};
use crate::config::DataConfig;
use crate::error::Result;
use crate::train::rng::{Stream, stream};

/// The default teacher's first [`EMBEDDED_ROWS`] training and test examples, computed by the
/// build script with this module's own code (`teacher_net.rs`): inputs as f32 (little-endian),
/// then clean labels (one byte each), the training set's then the test set's. Generating them
/// took 7–9 ms at the start of every `scalelab run` of the quickstart, before its first step;
/// reading them takes a fraction of a millisecond. A test checks them bit for bit against the
/// generator.
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/teacher_default.bin"));

/// The first `n` examples of the default teacher's training set (`test` false) or test set,
/// without label noise, from [`EMBEDDED`]; `None` beyond the rows embedded.
fn embedded(test: bool, n: usize) -> Option<(Vec<f32>, Vec<u32>)> {
    let (d, ..) = DEFAULT_TEACHER;
    let (train_rows, test_rows) = EMBEDDED_ROWS;
    let rows = if test { test_rows } else { train_rows };
    if n > rows || EMBEDDED.len() != (train_rows + test_rows) * (4 * d + 1) {
        return None;
    }
    let set = if test {
        &EMBEDDED[train_rows * (4 * d + 1)..]
    } else {
        EMBEDDED
    };
    let xs = set[..4 * d * n]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let ys = set[4 * d * rows..][..n]
        .iter()
        .map(|&y| u32::from(y))
        .collect();
    Some((xs, ys))
}

/// Draws `n` labelled samples from `rng` (see [`draw_inputs`]): a sample's label is its
/// teacher's, or with probability `noise` a uniformly random class.
fn samples(teacher: &Teacher, n: usize, noise: f64, rng: &mut impl Rng) -> (Vec<f32>, Vec<u32>) {
    let (xs, draws) = draw_inputs(teacher.d, teacher.k, n, rng);
    let ys = teacher
        .labels(&xs)
        .into_iter()
        .zip(draws)
        .map(|(y, (u, random_class))| if u < noise { random_class } else { y })
        .collect();
    (xs.iter().map(|&v| v as f32).collect(), ys)
}

/// Generates the data set described by `cfg` (defaults already filled in). The default teacher's
/// first examples without label noise are read from [`EMBEDDED`] instead: the same numbers.
pub(super) fn generate(cfg: &DataConfig) -> Result<Dataset> {
    use crate::config::data_defaults as dd;
    let d = cfg.dim.unwrap_or(dd::DIM) as usize;
    let k = cfg.classes.unwrap_or(dd::CLASSES) as usize;
    let h = cfg.teacher_hidden.unwrap_or(dd::TEACHER_HIDDEN) as usize;
    let noise = cfg.label_noise.unwrap_or(dd::LABEL_NOISE);
    // No label is redrawn where `u < noise` never holds (u is in [0, 1)). NaN is rejected
    // before a data set is built, but would redraw none either.
    let plain = (d, h, k, cfg.data_seed) == DEFAULT_TEACHER && (noise <= 0.0 || noise.is_nan());
    let mut teacher = None;
    let mut set = |test: bool, n: usize| {
        if plain && let Some(set) = embedded(test, n) {
            return set;
        }
        let teacher = teacher.get_or_insert_with(|| {
            let mut rng = stream(cfg.data_seed, Stream::DataModel);
            Teacher::new(d, h, k, cfg.data_seed, &mut rng)
        });
        let purpose = if test {
            Stream::TestSamples
        } else {
            Stream::TrainSamples
        };
        samples(teacher, n, noise, &mut stream(cfg.data_seed, purpose))
    };
    let (train_x, train_y) = set(false, cfg.train_size as usize);
    let (test_x, test_y) = set(true, cfg.test_size as usize);
    Dataset::from_vecs(vec![d], k, train_x, train_y, test_x, test_y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetKind;

    fn bits(xs: &[f32]) -> Vec<u32> {
        xs.iter().map(|x| x.to_bits()).collect()
    }

    /// A data set's inputs, row after row.
    fn flat(t: &candle_core::Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// The examples the build script embedded are the generator's, bit for bit, every row of
    /// both sets, and the data set built from them is the generated one.
    #[test]
    fn the_embedded_examples_are_the_generators() {
        let (d, h, k, seed) = DEFAULT_TEACHER;
        let teacher = Teacher::new(d, h, k, seed, &mut stream(seed, Stream::DataModel));
        for (test, rows, purpose) in [
            (false, EMBEDDED_ROWS.0, Stream::TrainSamples),
            (true, EMBEDDED_ROWS.1, Stream::TestSamples),
        ] {
            let (ex, ey) = embedded(test, rows).expect("rows embedded");
            let (gx, gy) = samples(&teacher, rows, 0.0, &mut stream(seed, purpose));
            assert_eq!(ex.len(), rows * d);
            let first = |a: &[u32], b: &[u32]| a.iter().zip(b).position(|(a, b)| a != b);
            assert_eq!(first(&bits(&ex), &bits(&gx)), None, "first input differing");
            assert_eq!(first(&ey, &gy), None, "first label differing");
            // A prefix is a prefix; one row more is not embedded.
            assert_eq!(embedded(test, 10).map(|(x, y)| (bits(&x), y)), {
                Some((bits(&gx[..10 * d]), gy[..10].to_vec()))
            });
            assert!(embedded(test, rows + 1).is_none());
        }
        // Used by the data set, from the smallest to the largest embedded size, and beyond it
        // (generated) the same sequence goes on.
        for (n, m) in [
            (1, 1),
            (1000, 2000),
            EMBEDDED_ROWS,
            (EMBEDDED_ROWS.0 + 7, 5),
        ] {
            let ds = generate(&DataConfig::new(DatasetKind::Teacher, n as u64, m as u64)).unwrap();
            let (gx, gy) = samples(&teacher, n, 0.0, &mut stream(seed, Stream::TrainSamples));
            let (tx, ty) = samples(&teacher, m, 0.0, &mut stream(seed, Stream::TestSamples));
            assert_eq!(bits(&flat(&ds.train_x)), bits(&gx), "N = {n}");
            assert_eq!(ds.train_y, gy, "N = {n}");
            assert_eq!(bits(&flat(&ds.test_x)), bits(&tx), "test {m}");
            assert_eq!(ds.test_y, ty, "test {m}");
        }
    }

    /// Label noise and other teachers are generated: noise changes labels of the same inputs.
    #[test]
    fn noisy_or_other_teachers_are_generated() {
        let mut cfg = DataConfig::new(DatasetKind::Teacher, 500, 100);
        let clean = generate(&cfg).unwrap();
        cfg.label_noise = Some(0.3);
        let noisy = generate(&cfg).unwrap();
        let changed = clean
            .train_y
            .iter()
            .zip(&noisy.train_y)
            .filter(|(a, b)| a != b);
        // 30% redrawn, 9 in 10 of those change: about 135 of 500.
        assert!((90..180).contains(&changed.count()));
        // Label by label, replayed from the sample streams: where the example's uniform draw is
        // under 0.3 its label is its uniformly drawn class (which may be the clean label), else
        // the clean label; in the training set and in the test set.
        use crate::config::data_defaults as dd;
        let (d, k) = (dd::DIM as usize, dd::CLASSES as usize);
        for (purpose, clean_y, noisy_y) in [
            (Stream::TrainSamples, &clean.train_y, &noisy.train_y),
            (Stream::TestSamples, &clean.test_y, &noisy.test_y),
        ] {
            let (_, draws) = draw_inputs(d, k, clean_y.len(), &mut stream(cfg.data_seed, purpose));
            let mut redrawn = 0;
            for (i, ((&c, &n), &(u, class))) in clean_y.iter().zip(noisy_y).zip(&draws).enumerate()
            {
                let want = if u < 0.3 { class } else { c };
                redrawn += usize::from(u < 0.3);
                assert_eq!(
                    n, want,
                    "{purpose:?} example {i}: u = {u}, drawn class {class}"
                );
            }
            assert!(redrawn > 0, "{purpose:?}");
        }
        cfg.label_noise = None;
        cfg.teacher_hidden = Some(32);
        let other = generate(&cfg).unwrap();
        assert_ne!(other.train_y, clean.train_y);
        // The inputs are the data seed's stream whatever the teacher.
        assert_eq!(bits(&flat(&other.train_x)), bits(&flat(&clean.train_x)));
    }
}
