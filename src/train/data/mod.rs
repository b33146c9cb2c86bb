//! Data sets: each is deterministic given its [`DataConfig`], selects a training subset of size
//! N and a fixed test set, and hands the trainer normalised `f32` inputs and `u32` labels.
//!
//! - `teacher` and `gaussian-mixture` are generated (embedded; any N; no download);
//! - `idx` (MNIST / Fashion-MNIST layout) and `cifar10` (binary version) are read from disk.

mod cifar;
mod idx;
mod mixture;
mod teacher;
mod teacher_net;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};

pub use cifar::{CIFAR_RECORD_BYTES, read_cifar_file};
pub use idx::{IdxArray, encode_idx, parse_idx, read_idx};

use crate::config::{DataConfig, DatasetKind};
use crate::error::{Error, Result};
use crate::train::memory;

/// A data set in memory, ready for training.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Shape of one input: `[d]` for vectors, `[c, h, w]` for images.
    pub input_shape: Vec<usize>,
    /// Number of classes; labels are in `0..classes`.
    pub classes: usize,
    /// Training inputs, `(N, D)` row-major with `D = input_shape.product()`.
    pub train_x: Tensor,
    /// Training labels, length N.
    pub train_y: Vec<u32>,
    /// Test inputs, `(test_size, D)`.
    pub test_x: Tensor,
    /// Test labels.
    pub test_y: Vec<u32>,
    /// The training and test inputs transposed, made on first use ([`Dataset::train_x_t`]).
    transposed: [Transposed; 2],
}

/// The most values a data set's inputs (training or test) may have for [`Dataset::train_x_t`]
/// and [`Dataset::test_x_t`] to keep a transposed copy of them: 16 Mi values, 64 MiB.
pub const MAX_TRANSPOSED: usize = 1 << 24;

/// A transposed copy of a data set's inputs, made at most once (shared by every run on the data
/// set); `None` inside when the inputs are larger than [`MAX_TRANSPOSED`].
#[derive(Clone, Default)]
struct Transposed(OnceLock<Option<Vec<f32>>>);

impl std::fmt::Debug for Transposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(Some(v)) => write!(f, "Transposed({} values)", v.len()),
            Some(None) => write!(f, "Transposed(too large)"),
            None => write!(f, "Transposed(not made)"),
        }
    }
}

impl Dataset {
    /// Builds a data set from row-major host buffers.
    pub fn from_vecs(
        input_shape: Vec<usize>,
        classes: usize,
        train_x: Vec<f32>,
        train_y: Vec<u32>,
        test_x: Vec<f32>,
        test_y: Vec<u32>,
    ) -> Result<Self> {
        let d: usize = input_shape.iter().product();
        let n = train_y.len();
        let m = test_y.len();
        Ok(Dataset {
            input_shape,
            classes,
            train_x: Tensor::from_vec(train_x, (n, d), &Device::Cpu)?,
            train_y,
            test_x: Tensor::from_vec(test_x, (m, d), &Device::Cpu)?,
            test_y,
            transposed: Default::default(),
        })
    }

    /// The training inputs transposed: `D × N` row-major (feature-major, the examples
    /// contiguous), made on the first call and kept; `None` when the inputs hold more than
    /// [`MAX_TRANSPOSED`] values. Evaluation reads the batch along a row from here where a
    /// network computes its layers transposed (`Network::reads_transposed`): the gemm crate
    /// packs a row-major operand faster than the transposed view of `train_x` (2,000 rows of 32
    /// inputs into 128 units: 113 µs against 125 µs, the same sums).
    pub fn train_x_t(&self) -> Option<&[f32]> {
        transposed(&self.transposed[0], &self.train_x)
    }

    /// The test inputs transposed, as [`Dataset::train_x_t`].
    pub fn test_x_t(&self) -> Option<&[f32]> {
        transposed(&self.transposed[1], &self.test_x)
    }

    /// Number of training examples N.
    pub fn train_len(&self) -> usize {
        self.train_y.len()
    }

    /// Number of input features D.
    pub fn input_dim(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Copies the training rows `idx` into `x` (row-major) and their labels into `y`, reusing
    /// both buffers' memory.
    pub fn gather_train(&self, idx: &[u32], x: &mut Vec<f32>, y: &mut Vec<u32>) -> Result<()> {
        crate::train::ops::gather_rows(&self.train_x, idx, x)?;
        y.clear();
        y.extend(idx.iter().map(|&i| self.train_y[i as usize]));
        Ok(())
    }
}

/// `x` (`rows × d`) transposed into `cache` on the first call (see [`Dataset::train_x_t`]).
fn transposed<'a>(cache: &'a Transposed, x: &Tensor) -> Option<&'a [f32]> {
    cache
        .0
        .get_or_init(|| {
            let (rows, d) = x.dims2().ok()?;
            if rows.checked_mul(d)? > MAX_TRANSPOSED {
                return None;
            }
            crate::train::ops::with_f32(x, |v| {
                let mut t = vec![0.0; rows * d];
                crate::train::ops::transpose_into(v, rows, d, &mut t);
                t
            })
            .ok()
        })
        .as_deref()
}

/// Loads (or generates) the data set a config describes.
///
/// On-disk data is checked against `cfg.fingerprint` when one is set, so a run never trains on
/// files that changed since its sweep was enqueued.
pub fn load(cfg: &DataConfig) -> Result<Dataset> {
    let mut cfg = cfg.clone();
    cfg.fill_defaults();
    let ds = match cfg.dataset {
        DatasetKind::Teacher => {
            room_to_generate(&cfg)?;
            teacher::generate(&cfg)?
        }
        DatasetKind::GaussianMixture => {
            room_to_generate(&cfg)?;
            mixture::generate(&cfg)?
        }
        DatasetKind::Idx => {
            let files = idx::IdxFiles::read(&data_dir(&cfg)?)?;
            check_fingerprint(&cfg, &files.fingerprint())?;
            files.select(&cfg)?
        }
        DatasetKind::Cifar10 => {
            let files = cifar::CifarFiles::read(&data_dir(&cfg)?)?;
            check_fingerprint(&cfg, &files.fingerprint())?;
            files.select(&cfg)?
        }
    };
    Ok(ds)
}

/// Refuses a generated data set this process cannot hold, with an error instead of the abort an
/// allocation failure would be. At the peak an example takes 12 bytes a value (its inputs drawn
/// as f64 and kept as f32), 8 a class (the teacher's logits) and 24 more (its label, the draw
/// that may replace it); the teacher network adds 8 bytes a weight. (A size the system only
/// pretends to have, overcommitted, can still end the process when it is touched: the run is
/// then requeued as an orphan, and after three such deaths it stays failed:
/// `Store::requeue_stale`.)
fn room_to_generate(cfg: &DataConfig) -> Result<()> {
    use crate::config::data_defaults as dd;
    let d = u128::from(cfg.dim.unwrap_or(dd::DIM));
    let k = u128::from(cfg.classes.unwrap_or(dd::CLASSES));
    let h = u128::from(cfg.teacher_hidden.unwrap_or(dd::TEACHER_HIDDEN));
    let examples = u128::from(cfg.train_size) + u128::from(cfg.test_size);
    let teacher = if cfg.dataset == DatasetKind::Teacher {
        8 * (d * h + h + h * k + k)
    } else {
        0
    };
    let per_example = 12 * d + 8 * k + 24;
    // The field named is the one that weighs most: the teacher, a class count far beyond the
    // usual, a dimension beyond the number of examples, or else the number of examples.
    let field = if teacher > examples * per_example {
        "teacher_hidden"
    } else if k > 1000 && 8 * k > 12 * d + 24 {
        "classes"
    } else if d > examples {
        "dim"
    } else {
        "train_size"
    };
    let labeller = if teacher > 0 {
        format!(", labelled by a teacher of {h} hidden units,")
    } else {
        String::new()
    };
    memory::check(
        field,
        &format!(
            "{} training and {} test examples of dimension {d} in {k} classes{labeller}",
            cfg.train_size, cfg.test_size
        ),
        examples * per_example + teacher,
    )
}

/// Whether `bytes` more bytes fit in what this process can have ([`memory::fits`]).
pub(crate) fn fits_in_memory(bytes: usize) -> bool {
    memory::fits(bytes as u128)
}

pub(crate) use memory::gb;

/// The content hash of an on-disk data set's files (decoded bytes, so `.gz` and raw files of the
/// same data agree); `None` for generated data sets, whose identity is their parameters.
pub fn fingerprint(cfg: &DataConfig) -> Result<Option<String>> {
    Ok(inspect(cfg)?.map(|d| d.fingerprint))
}

/// What a sweep learns of an on-disk data set before it enqueues anything: its identity and how
/// many examples its files hold, so that a `train_size` or `test_size` beyond them is refused
/// then rather than failing every such run at train time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskData {
    /// The content hash ([`fingerprint`]).
    pub fingerprint: String,
    /// Training examples in the files.
    pub train_examples: u64,
    /// Test examples in the files.
    pub test_examples: u64,
    /// The training files, as named in messages (`train-images-idx3-ubyte`, `data_batch_*.bin`).
    pub train_files: &'static str,
    /// The test files, as named in messages.
    pub test_files: &'static str,
}

/// Reads an on-disk data set's files ([`DiskData`]); `None` for generated data sets.
pub fn inspect(cfg: &DataConfig) -> Result<Option<DiskData>> {
    match cfg.dataset {
        DatasetKind::Teacher | DatasetKind::GaussianMixture => Ok(None),
        DatasetKind::Idx => {
            let files = idx::IdxFiles::read(&data_dir(cfg)?)?;
            let (train, test) = files.counts();
            Ok(Some(DiskData {
                fingerprint: files.fingerprint(),
                train_examples: train as u64,
                test_examples: test as u64,
                train_files: "train-images-idx3-ubyte",
                test_files: "t10k-images-idx3-ubyte",
            }))
        }
        DatasetKind::Cifar10 => {
            let files = cifar::CifarFiles::read(&data_dir(cfg)?)?;
            let (train, test) = files.counts();
            Ok(Some(DiskData {
                fingerprint: files.fingerprint(),
                train_examples: train as u64,
                test_examples: test as u64,
                train_files: "data_batch_*.bin",
                test_files: "test_batch.bin",
            }))
        }
    }
}

fn data_dir(cfg: &DataConfig) -> Result<PathBuf> {
    let dir = cfg.data_dir.as_deref().ok_or_else(|| {
        Error::config(
            "data_dir",
            format!(
                "dataset {} reads files: give --data-dir / data_dir",
                cfg.dataset.name()
            ),
        )
    })?;
    let path = PathBuf::from(dir);
    if !path.is_dir() {
        return Err(Error::data(
            &path,
            "data directory does not exist or is not a directory",
        ));
    }
    Ok(path)
}

fn check_fingerprint(cfg: &DataConfig, actual: &str) -> Result<()> {
    match &cfg.fingerprint {
        Some(expected) if expected != actual => Err(Error::data(
            cfg.data_dir.clone().unwrap_or_default(),
            format!(
                "the data files changed since the run was configured (content hash {actual}, \
                 expected {expected})"
            ),
        )),
        _ => Ok(()),
    }
}

/// A data file read as a stream, transparently gunzipping names that end in `.gz`, so that a
/// reader can look at a header before it allocates anything for the data. Its errors name the
/// file: a read error of a `.gz` file says it is not valid gzip.
pub(crate) struct DataReader<'a> {
    inner: Box<dyn Read + 'a>,
    path: &'a Path,
    gz: bool,
    /// The length of the (decoded) data where known before reading it: a plain file's size.
    len: Option<u64>,
    /// A guess at that length: the size a gzip file's trailer gives (modulo 2^32).
    hint: Option<u64>,
}

impl<'a> DataReader<'a> {
    /// Opens `path`.
    pub(crate) fn open(path: &'a Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        if path.extension().is_some_and(|e| e == "gz") {
            let hint = gzip_size_hint(&mut file).map_err(|e| Error::io(path, e))?;
            return Ok(DataReader {
                inner: Box::new(flate2::read::GzDecoder::new(file)),
                path,
                gz: true,
                len: None,
                hint,
            });
        }
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(DataReader {
            inner: Box::new(std::io::BufReader::new(file)),
            path,
            gz: false,
            len: Some(len),
            hint: Some(len),
        })
    }

    /// Reads `bytes`, already in memory, as the contents of `path`.
    pub(crate) fn from_bytes(bytes: &'a [u8], path: &'a Path) -> Self {
        DataReader {
            inner: Box::new(bytes),
            path,
            gz: false,
            len: Some(bytes.len() as u64),
            hint: Some(bytes.len() as u64),
        }
    }

    /// The file this reads.
    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    /// The length of the data, where known before reading it (not for `.gz` files).
    pub(crate) fn len(&self) -> Option<u64> {
        self.len
    }

    /// The length of the data, or a guess at it for a `.gz` file (which may be wrong).
    pub(crate) fn size_hint(&self) -> Option<u64> {
        self.hint
    }

    fn error(&self, e: std::io::Error) -> Error {
        if self.gz {
            Error::data(self.path, format!("not a valid gzip file ({e})"))
        } else {
            Error::io(self.path, e)
        }
    }

    /// Fills `buf` or reads to the end of the data; returns the bytes read.
    pub(crate) fn read_full(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(got)
    }

    /// Reads the next `n` bytes into a buffer of exactly that capacity, or fewer where the data
    /// ends first. The caller checks first that `n` bytes fit in memory ([`fits_in_memory`]); an
    /// allocation that fails all the same is an error, not an abort.
    pub(crate) fn read_exactly(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.try_reserve_exact(n).map_err(|_| {
            Error::data(
                self.path,
                format!(
                    "the data need {}, more than this process can hold",
                    gb(n as u128)
                ),
            )
        })?;
        // `take` ends the read at `n` bytes, so `read_to_end` never grows the buffer.
        (&mut self.inner)
            .take(n as u64)
            .read_to_end(&mut out)
            .map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Reads the rest of the data without keeping it; returns its length.
    pub(crate) fn count_rest(&mut self) -> Result<u64> {
        std::io::copy(&mut self.inner, &mut std::io::sink()).map_err(|e| self.error(e))
    }
}

/// The decoded size a gzip file's trailer gives (its last four bytes, little-endian: the size
/// modulo 2^32 of its last member), leaving the file at its start.
fn gzip_size_hint(file: &mut std::fs::File) -> std::io::Result<Option<u64>> {
    use std::io::{Seek, SeekFrom};
    let mut hint = None;
    if file.metadata()?.len() >= 18 {
        let mut trailer = [0u8; 4];
        file.seek(SeekFrom::End(-4))?;
        file.read_exact(&mut trailer)?;
        hint = Some(u64::from(u32::from_le_bytes(trailer)));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(hint)
}

/// Checks the requested sizes against what a file provides.
pub(crate) fn check_sizes(cfg: &DataConfig, train_avail: usize, test_avail: usize) -> Result<()> {
    if cfg.train_size as usize > train_avail {
        return Err(Error::config(
            "train_size",
            format!(
                "{} requested but the {} training files hold {train_avail} examples",
                cfg.train_size,
                cfg.dataset.name()
            ),
        ));
    }
    if cfg.test_size as usize > test_avail {
        return Err(Error::config(
            "test_size",
            format!(
                "{} requested but the {} test files hold {test_avail} examples",
                cfg.test_size,
                cfg.dataset.name()
            ),
        ));
    }
    Ok(())
}

/// A seeded choice of `n` distinct indices out of `0..total`: the first `n` of a permutation, so
/// that a smaller N is a subset of a larger one with the same data seed.
pub(crate) fn subset_indices(total: usize, n: usize, data_seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..total).collect();
    idx.shuffle(&mut crate::train::rng::stream(
        data_seed,
        crate::train::rng::Stream::Subset,
    ));
    idx.truncate(n);
    idx
}

/// Hashes byte slices into one hex digest (BLAKE3), with their lengths, so that boundaries count.
pub(crate) fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposed inputs are the inputs feature-major, made once; inputs beyond
    /// [`MAX_TRANSPOSED`] values get none.
    #[test]
    fn inputs_are_transposed_once_up_to_the_limit() {
        let (n, d) = (5, 3);
        let x: Vec<f32> = (0..(n * d) as u16).map(f32::from).collect();
        let data = Dataset::from_vecs(vec![d], 2, x, vec![0; n], vec![9.0; d], vec![1]).unwrap();
        let t = data.train_x_t().unwrap();
        assert_eq!(
            t,
            [
                0., 3., 6., 9., 12., 1., 4., 7., 10., 13., 2., 5., 8., 11., 14.
            ]
        );
        assert_eq!(data.train_x_t().unwrap().as_ptr(), t.as_ptr(), "made once");
        assert_eq!(data.test_x_t().unwrap(), [9.0; 3]);
        assert!(format!("{data:?}").contains("Transposed(15 values)"));
        // Past the limit (one row of 8 more than fits), nothing is made.
        let rows = MAX_TRANSPOSED / 8 + 1;
        let big = Dataset::from_vecs(
            vec![8],
            2,
            vec![0.0; rows * 8],
            vec![0; rows],
            vec![],
            vec![],
        )
        .unwrap();
        assert!(big.train_x_t().is_none());
        assert_eq!(big.test_x_t(), Some(&[][..]));
    }

    /// A generated set larger than the machine's memory and swap is an error naming the field
    /// and the size, not an allocation failure that aborts the process.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_generated_set_beyond_the_machines_memory_is_an_error() {
        let mut cfg = DataConfig::new(DatasetKind::Teacher, u64::from(u32::MAX), 1_000);
        cfg.fill_defaults();
        let Err(e) = load(&cfg) else {
            panic!("a set of 2^32 - 1 examples was built")
        };
        let e = e.to_string();
        assert!(
            e.contains("train_size") && e.contains("4294967295") && e.contains("2095.9 GB"),
            "{e}"
        );
        cfg.train_size = 1_000;
        assert!(room_to_generate(&cfg).is_ok());
    }

    #[test]
    fn subsets_are_nested_and_seeded() {
        let a = subset_indices(100, 10, 3);
        let b = subset_indices(100, 20, 3);
        assert_eq!(a[..], b[..10]);
        assert_ne!(a, subset_indices(100, 10, 4));
        let mut s = b.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 20);
    }

    #[test]
    fn teacher_is_seeded_and_nested() {
        let mut cfg = DataConfig::new(DatasetKind::Teacher, 200, 50);
        let a = load(&cfg).unwrap();
        let b = load(&cfg).unwrap();
        assert_eq!(a.train_y, b.train_y);
        let ax = a.train_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bx = b.train_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(ax, bx);
        // A larger N extends the same sequence.
        cfg.train_size = 300;
        let c = load(&cfg).unwrap();
        assert_eq!(c.train_y[..200], a.train_y[..]);
        // A different data seed gives different data.
        cfg.train_size = 200;
        cfg.data_seed = 1;
        let d = load(&cfg).unwrap();
        assert_ne!(d.train_y, a.train_y);
        let dx = d.train_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(dx, ax);
        assert_eq!(a.input_shape, vec![32]);
        assert_eq!(a.test_y.len(), 50);
    }

    #[test]
    fn teacher_labels_use_every_class_and_noise_flips_labels() {
        let mut cfg = DataConfig::new(DatasetKind::Teacher, 2000, 100);
        let clean = load(&cfg).unwrap();
        let mut counts = [0usize; 10];
        for &y in &clean.train_y {
            counts[y as usize] += 1;
        }
        // Balanced enough that every class is learnable: no class under 2% or over 30%.
        for c in counts {
            assert!((40..=600).contains(&c), "class counts {counts:?}");
        }
        cfg.label_noise = Some(0.5);
        let noisy = load(&cfg).unwrap();
        let changed = clean
            .train_y
            .iter()
            .zip(&noisy.train_y)
            .filter(|(a, b)| a != b)
            .count();
        // Half the labels are redrawn uniformly; 9/10 of those change: ≈ 45%.
        assert!((700..1100).contains(&changed), "changed {changed}");
    }

    #[test]
    fn mixture_is_deterministic_and_separation_controls_overlap() {
        let mut cfg = DataConfig::new(DatasetKind::GaussianMixture, 500, 100);
        let a = load(&cfg).unwrap();
        assert_eq!(a.train_y, load(&cfg).unwrap().train_y);
        cfg.separation = Some(20.0);
        let far = load(&cfg).unwrap();
        cfg.separation = Some(0.0);
        let same = load(&cfg).unwrap();
        // Nearest-centroid accuracy with the true centroids estimated from the training set.
        let acc = |ds: &Dataset| nearest_centroid_accuracy(ds);
        assert!(acc(&far) > 0.99, "far {}", acc(&far));
        assert!(acc(&same) < 0.3, "same {}", acc(&same));
    }

    fn nearest_centroid_accuracy(ds: &Dataset) -> f64 {
        let d = ds.input_dim();
        let x = ds.train_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut cent = vec![vec![0f64; d]; ds.classes];
        let mut cnt = vec![0f64; ds.classes];
        for (i, &y) in ds.train_y.iter().enumerate() {
            cnt[y as usize] += 1.0;
            for j in 0..d {
                cent[y as usize][j] += x[i * d + j] as f64;
            }
        }
        for (c, n) in cent.iter_mut().zip(&cnt) {
            c.iter_mut().for_each(|v| *v /= n.max(1.0));
        }
        let tx = ds.test_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut ok = 0;
        for (i, &y) in ds.test_y.iter().enumerate() {
            let best = (0..ds.classes)
                .min_by(|&a, &b| {
                    let da: f64 = (0..d)
                        .map(|j| (tx[i * d + j] as f64 - cent[a][j]).powi(2))
                        .sum();
                    let db: f64 = (0..d)
                        .map(|j| (tx[i * d + j] as f64 - cent[b][j]).powi(2))
                        .sum();
                    da.total_cmp(&db)
                })
                .unwrap();
            ok += (best as u32 == y) as usize;
        }
        ok as f64 / ds.test_y.len() as f64
    }
}
