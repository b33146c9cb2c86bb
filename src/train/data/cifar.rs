//! The CIFAR-10 binary format (<https://www.cs.toronto.edu/~kriz/cifar.html>): records of one label
//! byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue; rows of 32), in
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`. The data directory may be the
//! `cifar-10-batches-bin` folder or its parent.
//!
//! Normalisation: x/255, then per channel standardised with the mean and standard deviation over
//! every training record read (not only the N used).

use std::path::{Path, PathBuf};

use super::{Dataset, check_sizes, hash_parts, read_maybe_gz, subset_indices};
use crate::config::DataConfig;
use crate::error::{Error, Result};

/// Bytes per CIFAR-10 record: 1 label byte and 3 × 32 × 32 pixel bytes.
pub const CIFAR_RECORD_BYTES: usize = 1 + 3072;
const PIXELS: usize = 3072;
const PLANE: usize = 1024;

/// Reads one CIFAR-10 binary batch file: (labels, pixels row-major per record).
pub fn read_cifar_file(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    if bytes.is_empty() || bytes.len() % CIFAR_RECORD_BYTES != 0 {
        return Err(Error::data(
            path,
            format!(
                "truncated or not a CIFAR-10 binary file: {} bytes is not a whole number of \
                 {CIFAR_RECORD_BYTES}-byte records",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * PIXELS);
    for (i, rec) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        if rec[0] >= 10 {
            return Err(Error::data(
                path,
                format!("record {i}: label {} is not in 0..10", rec[0]),
            ));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((labels, pixels))
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for base in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        for candidate in [name.to_string(), format!("{name}.gz")] {
            let p = base.join(candidate);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The training and test batches of CIFAR-10, decoded.
pub(super) struct CifarFiles {
    train_labels: Vec<u8>,
    train_pixels: Vec<u8>,
    test_labels: Vec<u8>,
    test_pixels: Vec<u8>,
}

impl CifarFiles {
    /// Reads `data_batch_1.bin` and the following batches that exist, and `test_batch.bin`.
    pub(super) fn read(dir: &Path) -> Result<Self> {
        let mut train_labels = Vec::new();
        let mut train_pixels = Vec::new();
        for i in 1..=5 {
            match find(dir, &format!("data_batch_{i}.bin")) {
                Some(p) => {
                    let (l, x) = read_cifar_file(&p)?;
                    train_labels.extend(l);
                    train_pixels.extend(x);
                }
                None if i == 1 => {
                    return Err(Error::data(
                        dir.join("data_batch_1.bin"),
                        "missing CIFAR-10 training batch (looked in the data directory and its \
                         cifar-10-batches-bin folder)",
                    ));
                }
                None => break,
            }
        }
        let test = find(dir, "test_batch.bin").ok_or_else(|| {
            Error::data(dir.join("test_batch.bin"), "missing CIFAR-10 test batch")
        })?;
        let (test_labels, test_pixels) = read_cifar_file(&test)?;
        Ok(CifarFiles {
            train_labels,
            train_pixels,
            test_labels,
            test_pixels,
        })
    }

    pub(super) fn fingerprint(&self) -> String {
        hash_parts(&[
            &self.train_labels,
            &self.train_pixels,
            &self.test_labels,
            &self.test_pixels,
        ])
    }

    pub(super) fn select(&self, cfg: &DataConfig) -> Result<Dataset> {
        let n_train = self.train_labels.len();
        check_sizes(cfg, n_train, self.test_labels.len())?;
        let mut mean = [0f64; 3];
        let mut sq = [0f64; 3];
        for rec in self.train_pixels.chunks_exact(PIXELS) {
            for c in 0..3 {
                for &p in &rec[c * PLANE..(c + 1) * PLANE] {
                    let v = p as f64 / 255.0;
                    mean[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let count = (n_train * PLANE).max(1) as f64;
        let mut std = [1f64; 3];
        for c in 0..3 {
            mean[c] /= count;
            std[c] = (sq[c] / count - mean[c] * mean[c])
                .max(0.0)
                .sqrt()
                .max(1e-6);
        }
        let norm = |rec: &[u8], out: &mut Vec<f32>| {
            for c in 0..3 {
                out.extend(
                    rec[c * PLANE..(c + 1) * PLANE]
                        .iter()
                        .map(|&p| ((p as f64 / 255.0 - mean[c]) / std[c]) as f32),
                );
            }
        };
        let picks = subset_indices(n_train, cfg.train_size as usize, cfg.data_seed);
        let mut train_x = Vec::with_capacity(picks.len() * PIXELS);
        let mut train_y = Vec::with_capacity(picks.len());
        for &i in &picks {
            norm(
                &self.train_pixels[i * PIXELS..(i + 1) * PIXELS],
                &mut train_x,
            );
            train_y.push(self.train_labels[i] as u32);
        }
        let m = cfg.test_size as usize;
        let mut test_x = Vec::with_capacity(m * PIXELS);
        for rec in self.test_pixels.chunks_exact(PIXELS).take(m) {
            norm(rec, &mut test_x);
        }
        let test_y = self.test_labels[..m].iter().map(|&l| l as u32).collect();
        Dataset::from_vecs(vec![3, 32, 32], 10, train_x, train_y, test_x, test_y)
    }
}
