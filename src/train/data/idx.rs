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

use super::{DataReader, Dataset, check_sizes, fits_in_memory, gb, hash_parts, subset_indices};
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
    read_idx_from(DataReader::from_bytes(bytes, path), None, 0)
}

/// Reads an unsigned-byte IDX file (raw or `.gz`).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    read_idx_from(DataReader::open(path)?, None, 0)
}

/// Reads an IDX array: the header first, then exactly the data it announces, into a buffer of
/// that size, after checking that the data fit in memory (with the `held` bytes of files read
/// before) and, for a plain file, that its size is the announced one. `ndim`, when given, is the
/// number of dimensions required. Errors name the file.
fn read_idx_from(mut r: DataReader<'_>, ndim: Option<usize>, held: usize) -> Result<IdxArray> {
    let path = r.path();
    let mut magic = [0u8; 4];
    let got = r.read_full(&mut magic)?;
    if got < magic.len() {
        return Err(Error::data(
            path,
            format!("truncated IDX file: {got} bytes, no header"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::data(
            path,
            format!(
                "not an IDX file: magic number starts {:02x} {:02x}, expected 00 00",
                magic[0], magic[1]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
                magic[2]
            ),
        ));
    }
    let n = magic[3] as usize;
    if n == 0 {
        return Err(Error::data(
            path,
            "not an IDX array: its header gives 0 dimensions",
        ));
    }
    let header = 4 + 4 * n;
    let mut raw = vec![0u8; 4 * n];
    let got = r.read_full(&mut raw)?;
    if got < raw.len() {
        return Err(Error::data(
            path,
            format!("truncated IDX header: {n} dimensions, {} bytes", 4 + got),
        ));
    }
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    if let Some(want) = ndim
        && n != want
    {
        return Err(Error::data(
            path,
            format!("expected {want} dimensions, found {dims:?}"),
        ));
    }
    // The first dimension counts examples (none is a size error later); any other that is 0
    // would make every example empty.
    if let Some(i) = dims.iter().skip(1).position(|&d| d == 0) {
        return Err(Error::data(
            path,
            format!(
                "IDX dimensions {dims:?}: dimension {} is 0, so an example holds no data",
                i + 2
            ),
        ));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::data(path, format!("IDX dimensions {dims:?} overflow")))?;
    let size_error = |actual: u64| {
        Error::data(
            path,
            format!(
                "{} IDX file: dimensions {dims:?} need {expected} data bytes, found {actual}",
                if actual < expected as u64 {
                    "truncated"
                } else {
                    "oversized"
                }
            ),
        )
    };
    if let Some(len) = r.len() {
        let actual = len.saturating_sub(header as u64);
        if actual != expected as u64 {
            return Err(size_error(actual));
        }
    }
    if !held.checked_add(expected).is_some_and(fits_in_memory) {
        let before = if held > 0 {
            format!(" (with the {} of the files read before)", gb(held as u128))
        } else {
            String::new()
        };
        return Err(Error::data(
            path,
            format!(
                "IDX dimensions {dims:?} need {} of data{before}, more than this process can hold",
                gb(expected as u128)
            ),
        ));
    }
    let data = r.read_exactly(expected)?;
    if data.len() < expected {
        return Err(size_error(data.len() as u64));
    }
    if r.read_full(&mut [0u8; 1])? > 0 {
        let rest = r.count_rest()?;
        return Err(size_error((expected as u64 + 1).saturating_add(rest)));
    }
    Ok(IdxArray { dims, data })
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
        let mut held = 0usize;
        let mut load = |stem: &str, ndim: usize| -> Result<IdxArray> {
            let path = find(dir, stem)?;
            let arr = read_idx_from(DataReader::open(&path)?, Some(ndim), held)?;
            held = held.saturating_add(arr.data.len());
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

    /// The training and test examples the files hold.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.train_images.dims[0], self.test_images.dims[0])
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
    fn write_gz(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        let f = std::fs::File::create(path).unwrap();
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
    }

    /// Writes the four files of a small valid set (6 training, 2 test images of 4×3) into `dir`.
    fn write_set(dir: &Path) {
        let px = |n: usize| -> Vec<u8> { (0..n * 12).map(|i| (i * 31 % 256) as u8).collect() };
        let files: [(&str, Vec<u8>); 4] = [
            ("train-images-idx3-ubyte", encode_idx(&[6, 4, 3], &px(6))),
            (
                "train-labels-idx1-ubyte",
                encode_idx(&[6], &[0, 1, 2, 3, 4, 5]),
            ),
            ("t10k-images-idx3-ubyte", encode_idx(&[2, 4, 3], &px(2))),
            ("t10k-labels-idx1-ubyte", encode_idx(&[2], &[7, 8])),
        ];
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// An images file with a zero dimension after the count is refused when read, naming the
    /// file and the dimension (it used to pass and panic in training: chunk size 0).
    #[test]
    fn a_zero_example_dimension_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path());
        let images = dir.path().join("train-images-idx3-ubyte");
        for (dims, which) in [([200, 0, 0], 2), ([200, 0, 5], 2), ([200, 5, 0], 3)] {
            std::fs::write(&images, encode_idx(&dims, &[])).unwrap();
            let Err(e) = IdxFiles::read(dir.path()) else {
                panic!("{dims:?} accepted")
            };
            let e = e.to_string();
            assert!(
                e.contains("train-images-idx3-ubyte")
                    && e.contains(&format!("dimension {which} is 0"))
                    && !e.contains('\n'),
                "{e}"
            );
        }
        // No examples at all is a valid file; asking for examples from it is the error.
        std::fs::write(&images, encode_idx(&[0, 4, 3], &[])).unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            encode_idx(&[0], &[]),
        )
        .unwrap();
        let mut cfg = DataConfig::new(crate::config::DatasetKind::Idx, 1, 2);
        cfg.data_dir = Some(dir.path().to_string_lossy().into_owned());
        let e = super::super::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("train_size") && e.contains("hold 0 examples"),
            "{e}"
        );
    }

    /// A `.gz` file is read from its header on: one whose header claims more data than this
    /// machine has is refused before anything is allocated for it, one whose header claims more
    /// than the stream holds is truncated, one with bytes after its data is oversized.
    #[test]
    fn gz_data_are_bounded_by_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train-images-idx3-ubyte.gz");
        // 2^31 images of 28×28: 1.7 TB claimed, 100 bytes present.
        let mut bytes = encode_idx(&[1 << 31, 28, 28], &[]);
        bytes.extend([7u8; 100]);
        write_gz(&p, &bytes);
        let start = std::time::Instant::now();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte.gz")
                && e.contains("[2147483648, 28, 28] need 1683.6 GB")
                && e.contains("more than this process can hold"),
            "{e}"
        );
        assert!(start.elapsed().as_secs() < 5);
        // 60000 images of 28×28 claimed (as in MNIST), 100 bytes present.
        let mut bytes = encode_idx(&[60_000, 28, 28], &[]);
        bytes.extend([7u8; 100]);
        write_gz(&p, &bytes);
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte.gz")
                && e.contains("truncated IDX file")
                && e.contains("need 47040000 data bytes, found 100"),
            "{e}"
        );
        // Trailing bytes, gz and plain alike.
        let mut bytes = encode_idx(&[2, 2, 2], &[1; 8]);
        bytes.extend([0u8; 5]);
        write_gz(&p, &bytes);
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("oversized IDX file") && e.contains("need 8 data bytes, found 13"));
        let plain = dir.path().join("plain-idx3-ubyte");
        std::fs::write(&plain, &bytes).unwrap();
        let e2 = read_idx(&plain).unwrap_err().to_string();
        assert_eq!(
            e2.replace("plain-idx3-ubyte", "train-images-idx3-ubyte.gz"),
            e
        );
        // A header cut short inside the stream.
        write_gz(&p, &bytes[..10]);
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(
            e.contains("truncated IDX header: 3 dimensions, 10 bytes"),
            "{e}"
        );
        // Not gzip at all.
        std::fs::write(&p, b"not gzip data").unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("not a valid gzip file"), "{e}");
    }

    /// A gzipped file reads as its plain twin, into a buffer of exactly its data's size.
    #[test]
    fn gz_and_plain_files_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300 * 7 * 5).map(|i| (i * 13 % 251) as u8).collect();
        let bytes = encode_idx(&[300, 7, 5], &data);
        let (plain, gz) = (dir.path().join("a"), dir.path().join("a.gz"));
        std::fs::write(&plain, &bytes).unwrap();
        write_gz(&gz, &bytes);
        let a = read_idx(&plain).unwrap();
        let b = read_idx(&gz).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, parse_idx(&bytes, &plain).unwrap());
        assert_eq!(a.data.capacity(), data.len());
        assert_eq!(b.data.capacity(), data.len());
        assert_eq!(b.data, data);
    }
}
