//! The IDX format of MNIST and Fashion-MNIST (<http://yann.lecun.com/exdb/mnist/>): a magic
//! number `0x00 0x00 TYPE NDIM`, NDIM big-endian u32 dimensions, then the data. scalelab reads
//! unsigned-byte arrays (TYPE 0x08): images `[n, rows, cols]` and labels `[n]`.
//!
//! Files expected in the data directory (raw or `.gz`; `train-images.idx3-ubyte` spellings too):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`.
//!
//! Normalisation: x/255, then standardised with the mean and standard deviation of every pixel of
//! the whole training file (one scalar each, as the usual MNIST transform), so that the inputs of
//! a subset do not depend on N.

use std::path::{Path, PathBuf};

use super::{Dataset, check_sizes, hash_parts, read_maybe_gz, subset_indices};
use crate::config::DataConfig;
use crate::error::{Error, Result};

/// An unsigned-byte IDX array: its dimensions and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

/// Parses an unsigned-byte IDX file already in memory; errors name `path`.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(Error::data(
            path,
            format!("truncated IDX file: {} bytes, no header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::data(
            path,
            format!(
                "not an IDX file: magic number starts {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(Error::data(
            path,
            format!(
                "truncated IDX header: {ndim} dimensions, {} bytes",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::data(path, format!("IDX dimensions {dims:?} overflow")))?;
    let actual = bytes.len() - header;
    if actual != expected {
        return Err(Error::data(
            path,
            format!(
                "{} IDX file: dimensions {dims:?} need {expected} data bytes, found {actual}",
                if actual < expected {
                    "truncated"
                } else {
                    "oversized"
                }
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an unsigned-byte IDX file (raw or `.gz`).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    parse_idx(&read_maybe_gz(path)?, path)
}

/// Finds `stem` (e.g. `train-images-idx3-ubyte`) in `dir`, accepting `.gz` and the
/// `train-images.idx3-ubyte` spelling.
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    for name in [stem.to_string(), dotted] {
        for candidate in [name.clone(), format!("{name}.gz")] {
            let p = dir.join(&candidate);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::data(
        dir.join(stem),
        "missing IDX file (looked for it raw and .gz in the data directory)",
    ))
}

/// The four files of an IDX data set, decoded.
pub(super) struct IdxFiles {
    train_images: IdxArray,
    train_labels: IdxArray,
    test_images: IdxArray,
    test_labels: IdxArray,
}

impl IdxFiles {
    pub(super) fn read(dir: &Path) -> Result<Self> {
        let load = |stem: &str, ndim: usize| -> Result<IdxArray> {
            let path = find(dir, stem)?;
            let arr = read_idx(&path)?;
            if arr.dims.len() != ndim {
                return Err(Error::data(
                    &path,
                    format!("expected {ndim} dimensions, found {:?}", arr.dims),
                ));
            }
            if ndim == 1
                && let Some(bad) = arr.data.iter().find(|&&l| l >= 10)
            {
                return Err(Error::data(&path, format!("label {bad} is not in 0..10")));
            }
            Ok(arr)
        };
        let files = IdxFiles {
            train_images: load("train-images-idx3-ubyte", 3)?,
            train_labels: load("train-labels-idx1-ubyte", 1)?,
            test_images: load("t10k-images-idx3-ubyte", 3)?,
            test_labels: load("t10k-labels-idx1-ubyte", 1)?,
        };
        for (images, labels, which) in [
            (&files.train_images, &files.train_labels, "train"),
            (&files.test_images, &files.test_labels, "t10k"),
        ] {
            if images.dims[0] != labels.dims[0] {
                return Err(Error::data(
                    dir,
                    format!(
                        "{which} images hold {} examples but {which} labels hold {}",
                        images.dims[0], labels.dims[0]
                    ),
                ));
            }
        }
        if files.train_images.dims[1..] != files.test_images.dims[1..] {
            return Err(Error::data(
                dir,
                format!(
                    "train images are {:?} but test images are {:?}",
                    &files.train_images.dims[1..],
                    &files.test_images.dims[1..]
                ),
            ));
        }
        Ok(files)
    }

    pub(super) fn fingerprint(&self) -> String {
        hash_parts(&[
            &self.train_images.data,
            &self.train_labels.data,
            &self.test_images.data,
            &self.test_labels.data,
        ])
    }

    pub(super) fn select(&self, cfg: &DataConfig) -> Result<Dataset> {
        let n_train = self.train_images.dims[0];
        let n_test = self.test_images.dims[0];
        check_sizes(cfg, n_train, n_test)?;
        let (rows, cols) = (self.train_images.dims[1], self.train_images.dims[2]);
        let d = rows * cols;
        // Mean and standard deviation of x/255 over the whole training file.
        let count = self.train_images.data.len().max(1) as f64;
        let mean = self
            .train_images
            .data
            .iter()
            .map(|&p| p as f64)
            .sum::<f64>()
            / 255.0
            / count;
        let var = self
            .train_images
            .data
            .iter()
            .map(|&p| (p as f64 / 255.0 - mean).powi(2))
            .sum::<f64>()
            / count;
        let std = var.sqrt().max(1e-6);
        let norm = |p: u8| ((p as f64 / 255.0 - mean) / std) as f32;

        let picks = subset_indices(n_train, cfg.train_size as usize, cfg.data_seed);
        let mut train_x = Vec::with_capacity(picks.len() * d);
        let mut train_y = Vec::with_capacity(picks.len());
        for &i in &picks {
            train_x.extend(
                self.train_images.data[i * d..(i + 1) * d]
                    .iter()
                    .map(|&p| norm(p)),
            );
            train_y.push(self.train_labels.data[i] as u32);
        }
        let m = cfg.test_size as usize;
        let test_x = self.test_images.data[..m * d]
            .iter()
            .map(|&p| norm(p))
            .collect();
        let test_y = self.test_labels.data[..m]
            .iter()
            .map(|&l| l as u32)
            .collect();
        Dataset::from_vecs(vec![1, rows, cols], 10, train_x, train_y, test_x, test_y)
    }
}

/// Encodes an unsigned-byte IDX array (used by tests and by users making small fixtures).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_exact() {
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 7 % 256) as u8).collect();
        let bytes = encode_idx(&[2, 3, 4], &data);
        let arr = parse_idx(&bytes, Path::new("x")).unwrap();
        assert_eq!(arr.dims, vec![2, 3, 4]);
        assert_eq!(arr.data, data);
    }

    #[test]
    fn wrong_magic_and_truncation_are_named() {
        let mut bytes = encode_idx(&[2, 2, 2], &[0; 8]);
        let e = parse_idx(&bytes[..10], Path::new("f.idx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.idx") && e.contains("truncated"), "{e}");
        bytes[0] = 0x1f;
        let e = parse_idx(&bytes, Path::new("f.idx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic"), "{e}");
        let short = encode_idx(&[2, 2, 2], &[0; 7]);
        let e = parse_idx(&short, Path::new("f.idx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("need 8 data bytes, found 7"), "{e}");
    }
}
