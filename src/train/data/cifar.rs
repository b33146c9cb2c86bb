//! The CIFAR-10 binary format (<https://www.cs.toronto.edu/~kriz/cifar.html>): records of one label
//! byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue; rows of 32), in
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`. The data directory may be the
//! `cifar-10-batches-bin` folder or its parent.
//!
//! Normalisation: x/255, then per channel standardised with the mean and standard deviation over
//! every training record read (not only the N used).

use std::path::{Path, PathBuf};

use super::{DataReader, Dataset, check_sizes, fits_in_memory, gb, hash_parts, subset_indices};
use crate::config::DataConfig;
use crate::error::{Error, Result};

/// Bytes per CIFAR-10 record: 1 label byte and 3 × 32 × 32 pixel bytes.
pub const CIFAR_RECORD_BYTES: usize = 1 + 3072;
const PIXELS: usize = 3072;
const PLANE: usize = 1024;

/// Reads one CIFAR-10 binary batch file: (labels, pixels row-major per record).
pub fn read_cifar_file(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    read_cifar_into(path, &mut labels, &mut pixels, 0)?;
    Ok((labels, pixels))
}

/// Appends the records of one batch file (raw or `.gz`) to `labels` and `pixels`, record by
/// record, without a copy of the whole file. The buffers grow only after a check that they fit
/// in memory, with the `held` bytes of other data read before; a plain file's size is checked
/// before anything is read, and its buffers are sized exactly.
fn read_cifar_into(
    path: &Path,
    labels: &mut Vec<u8>,
    pixels: &mut Vec<u8>,
    held: usize,
) -> Result<()> {
    let mut r = DataReader::open(path)?;
    let size_error = |bytes: u64| {
        Error::data(
            path,
            format!(
                "truncated or not a CIFAR-10 binary file: {bytes} bytes is not a whole number of \
                 {CIFAR_RECORD_BYTES}-byte records"
            ),
        )
    };
    let reserve = |labels: &mut Vec<u8>, pixels: &mut Vec<u8>, records: usize| -> Result<()> {
        let total = records
            .checked_mul(CIFAR_RECORD_BYTES)
            .and_then(|b| b.checked_add(labels.len() + pixels.len()))
            .and_then(|b| b.checked_add(held));
        if total.is_some_and(fits_in_memory)
            && labels.try_reserve_exact(records).is_ok()
            && pixels.try_reserve_exact(records * PIXELS).is_ok()
        {
            return Ok(());
        }
        Err(Error::data(
            path,
            format!(
                "the CIFAR-10 data read with this file's records need {}, more than this \
                 process can hold",
                gb((labels.len() + pixels.len() + held) as u128
                    + records as u128 * CIFAR_RECORD_BYTES as u128)
            ),
        ))
    };
    const REC: u64 = CIFAR_RECORD_BYTES as u64;
    if let Some(len) = r.len()
        && (len == 0 || len % REC != 0)
    {
        return Err(size_error(len));
    }
    // A plain file's size is exact; a gzip file's trailer is only a guess (a wrong one costs
    // an unused reservation or some growth).
    if let Some(hint) = r.size_hint()
        && hint > 0
        && hint % REC == 0
    {
        let records = usize::try_from(hint / REC).unwrap_or(usize::MAX);
        let exact = r.len().is_some();
        if let Err(e) = reserve(labels, pixels, records)
            && exact
        {
            return Err(e);
        }
    }
    let mut rec = [0u8; CIFAR_RECORD_BYTES];
    let mut read = 0u64;
    for i in 0usize.. {
        let got = r.read_full(&mut rec)?;
        read += got as u64;
        if got == 0 && read > 0 {
            break;
        }
        if got < CIFAR_RECORD_BYTES {
            return Err(size_error(read));
        }
        if rec[0] >= 10 {
            return Err(Error::data(
                path,
                format!("record {i}: label {} is not in 0..10", rec[0]),
            ));
        }
        if labels.len() == labels.capacity() || pixels.capacity() - pixels.len() < PIXELS {
            // Doubles what is held, as a Vec would, but checked first.
            reserve(labels, pixels, labels.len().max(1024))?;
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
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
    /// Reads `data_batch_1.bin` and the following batches that exist, and `test_batch.bin`. A
    /// gap (batch 3 missing while batch 4 is there) is an error that names the missing file.
    pub(super) fn read(dir: &Path) -> Result<Self> {
        let mut train_labels = Vec::new();
        let mut train_pixels = Vec::new();
        for i in 1..=5 {
            match find(dir, &format!("data_batch_{i}.bin")) {
                Some(p) => read_cifar_into(&p, &mut train_labels, &mut train_pixels, 0)?,
                None if i == 1 => {
                    return Err(Error::data(
                        dir.join("data_batch_1.bin"),
                        "missing CIFAR-10 training batch (looked in the data directory and its \
                         cifar-10-batches-bin folder)",
                    ));
                }
                None => {
                    // Batches 1..i−1 alone are a smaller training set; a later batch present
                    // past the gap would be left out without a word.
                    if let Some(later) =
                        (i + 1..=5).find(|j| find(dir, &format!("data_batch_{j}.bin")).is_some())
                    {
                        return Err(Error::data(
                            dir.join(format!("data_batch_{i}.bin")),
                            format!(
                                "missing CIFAR-10 training batch, while data_batch_{later}.bin is \
                                 there (the batches are read in order from 1; restore it, or \
                                 remove the batches after it)"
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        let test = find(dir, "test_batch.bin").ok_or_else(|| {
            Error::data(dir.join("test_batch.bin"), "missing CIFAR-10 test batch")
        })?;
        let (mut test_labels, mut test_pixels) = (Vec::new(), Vec::new());
        let held = train_labels.len() + train_pixels.len();
        read_cifar_into(&test, &mut test_labels, &mut test_pixels, held)?;
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

    /// The training and test examples the files hold.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.train_labels.len(), self.test_labels.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_gz(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        let f = std::fs::File::create(path).unwrap();
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
    }

    /// A gzipped batch reads as its plain twin, record by record; a stream cut inside a record
    /// and a bad label are named.
    #[test]
    fn gz_and_plain_batches_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for r in 0..1500u32 {
            bytes.push((r % 10) as u8);
            bytes.extend((0..PIXELS as u32).map(|i| ((i * 7 + r) % 256) as u8));
        }
        let (plain, gz) = (dir.path().join("b.bin"), dir.path().join("b.bin.gz"));
        std::fs::write(&plain, &bytes).unwrap();
        write_gz(&gz, &bytes);
        let a = read_cifar_file(&plain).unwrap();
        let b = read_cifar_file(&gz).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0.len(), 1500);
        assert_eq!(a.1[..PIXELS], bytes[1..CIFAR_RECORD_BYTES]);
        // Sized exactly: from the file's size, and from the gzip trailer.
        assert_eq!(
            (a.1.capacity(), b.1.capacity()),
            (1500 * PIXELS, 1500 * PIXELS)
        );

        write_gz(&gz, &bytes[..2 * CIFAR_RECORD_BYTES + 100]);
        let e = read_cifar_file(&gz).unwrap_err().to_string();
        assert!(
            e.contains("b.bin.gz") && e.contains("truncated") && e.contains("6246 bytes"),
            "{e}"
        );
        let mut bad = bytes[..2 * CIFAR_RECORD_BYTES].to_vec();
        bad[CIFAR_RECORD_BYTES] = 10;
        write_gz(&gz, &bad);
        let e = read_cifar_file(&gz).unwrap_err().to_string();
        assert!(e.contains("record 1: label 10 is not in 0..10"), "{e}");
        write_gz(&gz, &[]);
        let e = read_cifar_file(&gz).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains(" 0 bytes"), "{e}");
    }

    /// Batches 1 and 2 alone are a training set of two batches; with batch 3 missing and
    /// batch 4 there, the gap is named (before, batch 4 was left out without a word).
    #[test]
    fn a_gap_in_the_training_batches_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut batch = Vec::new();
        for r in 0..3u8 {
            batch.push(r);
            batch.extend(std::iter::repeat_n(r, PIXELS));
        }
        for name in ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"] {
            std::fs::write(dir.path().join(name), &batch).unwrap();
        }
        let files = CifarFiles::read(dir.path()).unwrap();
        assert_eq!(files.counts(), (6, 3));
        std::fs::write(dir.path().join("data_batch_4.bin"), &batch).unwrap();
        let e = CifarFiles::read(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("data_batch_3.bin")
                && e.contains("missing")
                && e.contains("data_batch_4.bin is there"),
            "{e}"
        );
        std::fs::write(dir.path().join("data_batch_3.bin"), &batch).unwrap();
        assert_eq!(CifarFiles::read(dir.path()).unwrap().counts(), (12, 3));
    }
}
