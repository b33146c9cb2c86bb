//! The teacher network itself and the draws of its samples: the part of the `teacher` data set
//! that the build script also compiles (`build.rs` includes this file), to precompute the default
//! teacher's first examples (see `teacher.rs`). It depends on nothing of the crate, only on
//! `rand` and `rand_distr`, and is given its random streams.

use rand::Rng;
use rand_distr::StandardNormal;

/// Size of the calibration sample used to centre the teacher's logits.
const CALIBRATION: usize = 4096;

/// The default teacher (d, h, k, data seed): the quickstart's and most sweeps' data set.
pub const DEFAULT_TEACHER: (usize, usize, usize, u64) = (32, 64, 10, 0);

/// How many of the default teacher's first training and test examples the build script
/// computes and the binary carries (`teacher.rs`): enough for the quickstart (N = 1000, 2000
/// test examples) and the other sweeps of short runs; larger sets are generated.
pub const EMBEDDED_ROWS: (usize, usize) = (2048, 2048);

/// The default teacher's calibration offsets, as [`Teacher::calibrate`] computes them (the
/// bits of each f64): building its data set skips the calibration pass, 58% of the work for
/// N = 1000 and 2000 test examples. A test recomputes them; a platform whose `tanh` rounds
/// differently would fail that test (its teacher labels would differ from these machines' anyway).
pub const DEFAULT_OFFSETS: [u64; 10] = [
    0xbfc24604bc9b4f8e,
    0x3fbf7c6b1ce11ae8,
    0x3fd566e25ee6247f,
    0xbfdbe3dc8744efe5,
    0xbfcbe4a9180af10d,
    0xbfef9c5a93a58b0e,
    0xbfc1a12b6a798cc1,
    0x3fcdb66095666ec3,
    0x3fd43191b925458f,
    0xbfe6ddde02eb8e38,
];

/// A random teacher network x ↦ W₂·tanh(W₁x + b₁) − c.
pub struct Teacher {
    pub d: usize,
    pub h: usize,
    pub k: usize,
    /// W₂ transposed, `(h, k)`.
    w2t: Vec<f64>,
    /// W₁ transposed, `(d, h)`: the hidden units' sums run side by side (vectorised), each
    /// adding its terms in the same order as a row-by-row dot product, so labels are unchanged
    /// bit for bit.
    w1t: Vec<f64>,
    b1: Vec<f64>,
    pub offset: Vec<f64>,
}

/// `src` `(rows, cols)` row-major, transposed: `ops::transpose_into` again, which the build
/// script cannot reach (this file must not depend on the crate).
fn transposed(src: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut dst = vec![0.0; src.len()];
    for (r, row) in src.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            dst[c * rows + r] = v;
        }
    }
    dst
}

impl Teacher {
    /// The teacher of data seed `seed`, its weights (then, unless it is the default teacher,
    /// its calibration sample) drawn from `rng`, the seed's `DataModel` stream.
    pub fn new(d: usize, h: usize, k: usize, seed: u64, rng: &mut impl Rng) -> Self {
        let mut normal = |n: usize, scale: f64| -> Vec<f64> {
            (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal) * scale)
                .collect()
        };
        let w1 = normal(h * d, 1.0 / (d as f64).sqrt());
        let b1 = normal(h, 0.5);
        let w2 = normal(k * h, 2.0 / (h as f64).sqrt());
        let mut t = Teacher {
            w2t: transposed(&w2, k, h),
            d,
            h,
            k,
            w1t: transposed(&w1, h, d),
            b1,
            offset: vec![0.0; k],
        };
        t.offset = if (d, h, k, seed) == DEFAULT_TEACHER {
            DEFAULT_OFFSETS.iter().map(|&b| f64::from_bits(b)).collect()
        } else {
            t.calibrate(rng)
        };
        t
    }

    /// The mean logits over [`CALIBRATION`] inputs drawn from `rng` (the teacher's own stream,
    /// after its weights), of a teacher whose offsets are still zero.
    pub fn calibrate(&self, rng: &mut impl Rng) -> Vec<f64> {
        let (d, k) = (self.d, self.k);
        let xs: Vec<f64> = (0..CALIBRATION * d)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        let mut logits = vec![0.0; CALIBRATION * k];
        self.logits_rows(&xs, &mut logits);
        let mut mean = vec![0.0; k];
        for row in logits.chunks_exact(k) {
            for (m, l) in mean.iter_mut().zip(row) {
                *m += l / CALIBRATION as f64;
            }
        }
        mean
    }

    /// The logits of one input `x` into `out`, with `hidden` (`h` values) as working memory.
    pub fn logits(&self, x: &[f64], out: &mut [f64], hidden: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { self.logits_avx2(x, out, hidden) };
            return;
        }
        self.logits_portable(x, out, hidden);
    }

    /// [`Teacher::logits`] compiled for AVX2: four sums per instruction instead of two. The
    /// same additions and multiplications in the same order (no fused multiply-add), so the
    /// same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn logits_avx2(&self, x: &[f64], out: &mut [f64], hidden: &mut [f64]) {
        self.logits_portable(x, out, hidden);
    }

    #[inline(always)]
    fn logits_portable(&self, x: &[f64], out: &mut [f64], hidden: &mut [f64]) {
        // Σᵢ w₁[j][i]·xᵢ for every j at once, i in order from −0.0 (as `Iterator::sum`).
        hidden.fill(-0.0);
        for (row, &xi) in self.w1t.chunks_exact(self.h).zip(x) {
            for (hv, &w) in hidden.iter_mut().zip(row) {
                *hv += w * xi;
            }
        }
        for (hv, b) in hidden.iter_mut().zip(&self.b1) {
            *hv = (*hv + b).tanh();
        }
        // The same for the classes: Σⱼ w₂[c][j]·hⱼ for every c at once, j in order.
        let out = &mut out[..self.k];
        out.fill(-0.0);
        for (row, &hj) in self.w2t.chunks_exact(self.k).zip(hidden.iter()) {
            for (o, &w) in out.iter_mut().zip(row) {
                *o += w * hj;
            }
        }
        for (o, c) in out.iter_mut().zip(&self.offset) {
            *o -= c;
        }
    }

    /// The same logits computed row by row (the definition the vectorised form must match).
    #[cfg(test)]
    fn logits_by_rows(&self, x: &[f64], out: &mut [f64]) {
        let mut hidden = vec![0.0; self.h];
        for (j, hv) in hidden.iter_mut().enumerate() {
            let row = (0..self.d).map(|i| self.w1t[i * self.h + j]);
            let z: f64 = row.zip(x).map(|(w, x)| w * x).sum::<f64>() + self.b1[j];
            *hv = z.tanh();
        }
        for (c, o) in out.iter_mut().enumerate().take(self.k) {
            let row = (0..self.h).map(|j| self.w2t[j * self.k + c]);
            *o = row.zip(&hidden).map(|(w, h)| w * h).sum::<f64>() - self.offset[c];
        }
    }

    /// The logits of many inputs (`xs` row-major, `d` per row) into `out` (`k` per row), the
    /// rows split between the machine's cores; each row's arithmetic is that of
    /// [`Teacher::logits`], so the result does not depend on the split.
    fn logits_rows(&self, xs: &[f64], out: &mut [f64]) {
        let rows = out.len() / self.k.max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(rows / 256)
            .max(1);
        let per = rows.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (xc, oc) in xs.chunks(per * self.d).zip(out.chunks_mut(per * self.k)) {
                scope.spawn(move || {
                    let mut hidden = vec![0.0; self.h];
                    for (x, o) in xc.chunks_exact(self.d).zip(oc.chunks_exact_mut(self.k)) {
                        self.logits(x, o, &mut hidden);
                    }
                });
            }
        });
    }

    /// The teacher's label of each input (`xs` row-major, `d` per row): its largest logit,
    /// the first on a tie.
    pub fn labels(&self, xs: &[f64]) -> Vec<u32> {
        let k = self.k.max(1);
        let mut logits = vec![0.0; xs.len() / self.d.max(1) * k];
        self.logits_rows(xs, &mut logits);
        logits.chunks_exact(k).map(|l| argmax(l) as u32).collect()
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

/// `n` inputs of dimension `d` drawn from `rng`, row-major: per row, d normals, then one
/// uniform and one class in `0..k` for the label-noise decision (always drawn, so the stream
/// stays aligned whatever the noise level), returned as `(inputs, noise draws)`.
pub fn draw_inputs(
    d: usize,
    k: usize,
    n: usize,
    rng: &mut impl Rng,
) -> (Vec<f64>, Vec<(f64, u32)>) {
    let mut xs = Vec::with_capacity(n * d);
    let mut draws = Vec::with_capacity(n);
    for _ in 0..n {
        xs.extend((0..d).map(|_| rng.sample::<f64, _>(StandardNormal)));
        let u: f64 = rng.random();
        let random_class = rng.random_range(0..k as u32);
        draws.push((u, random_class));
    }
    (xs, draws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::rng::{Stream, stream};

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// The embedded offsets of the default teacher are its calibration's, bit for bit, and
    /// other teachers are still calibrated.
    #[test]
    fn the_default_teachers_embedded_offsets_are_its_calibration() {
        let (d, h, k, seed) = DEFAULT_TEACHER;
        let t = Teacher::new(d, h, k, seed, &mut stream(seed, Stream::DataModel));
        // The calibration of data seed `seed`'s teacher: the calibration draws follow the
        // weights' draws in the teacher's stream, and calibrating means logits before any
        // offset, as `Teacher::new` does.
        let calibration_of = |seed: u64| {
            let mut rng = stream(seed, Stream::DataModel);
            for _ in 0..(h * d + h + k * h) {
                rng.sample::<f64, _>(StandardNormal);
            }
            let uncentred = Teacher {
                offset: vec![0.0; k],
                ..Teacher::new(d, h, k, seed, &mut stream(seed, Stream::DataModel))
            };
            uncentred.calibrate(&mut rng)
        };
        assert_eq!(bits(&calibration_of(seed)), bits(&t.offset));
        assert_eq!(bits(&t.offset), DEFAULT_OFFSETS.to_vec());
        // Another data seed is calibrated anew: centred logits of its own, its calibration's
        // bit for bit (not zeros, not the default's).
        let other = Teacher::new(d, h, k, seed + 1, &mut stream(seed + 1, Stream::DataModel));
        assert_ne!(bits(&other.offset), bits(&t.offset));
        assert!(other.offset.iter().all(|c| c.is_finite() && c.abs() < 5.0));
        let own = calibration_of(seed + 1);
        assert!(own.iter().any(|&c| c != 0.0));
        assert_eq!(bits(&own), bits(&other.offset));
    }

    /// The vectorised hidden layer gives the row-by-row logits bit for bit, so the data set (its
    /// labels and calibration offsets) is what it was before the change.
    #[test]
    fn vectorised_logits_equal_row_by_row_logits_bitwise() {
        for (d, h, k, seed) in [(32, 64, 10, 0), (7, 13, 3, 5), (100, 33, 4, 9)] {
            let t = Teacher::new(d, h, k, seed, &mut stream(seed, Stream::DataModel));
            let mut rng = stream(seed, Stream::TrainSamples);
            let (mut a, mut b) = (vec![0.0; k], vec![0.0; k]);
            // Working memory holding anything (here NaN) must not leak into the logits.
            let mut hidden = vec![f64::NAN; h];
            for _ in 0..200 {
                let x: Vec<f64> = (0..d)
                    .map(|_| rng.sample::<f64, _>(StandardNormal))
                    .collect();
                t.logits(&x, &mut a, &mut hidden);
                t.logits_by_rows(&x, &mut b);
                assert_eq!(bits(&a), bits(&b));
            }
        }
    }
}
