//! The resolved configuration of one training run (one *cell* of a sweep), its validation, and
//! its identity: the run id is a hash of the canonical form of this configuration.
//!
//! Everything that can change a run's numbers is in [`RunConfig`]; nothing else is. Two configs
//! with the same canonical JSON train bit-identically (see docs/trainer.md for the caveats).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the trainer's numerical semantics. It is part of every run's identity, so a change
/// that alters numbers (a bug fix in the loss, a new data order) never mixes old and new results.
///
/// 2: a sweep's run reads its stored config back exactly. Under 1, serde_json's default float
/// parser read about one learning rate in ten one ulp away from the declared one, so those runs
/// trained with that neighbour (their epoch rows' `lr` shows it; `scalelab train` was exact).
pub const TRAINER_VERSION: u32 = 2;

/// Which data set a run trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Gaussian inputs labelled by a fixed random teacher network (embedded, the default).
    Teacher,
    /// k Gaussian clusters with controllable separation (embedded).
    GaussianMixture,
    /// Images in the IDX format of MNIST / Fashion-MNIST, read from `data_dir`.
    Idx,
    /// The CIFAR-10 binary format, read from `data_dir`.
    Cifar10,
}

impl DatasetKind {
    /// The name used in sweep files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Teacher => "teacher",
            DatasetKind::GaussianMixture => "gaussian-mixture",
            DatasetKind::Idx => "idx",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// Whether the data lives in files on disk (and so needs `data_dir`).
    pub fn on_disk(self) -> bool {
        matches!(self, DatasetKind::Idx | DatasetKind::Cifar10)
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "teacher" => Ok(DatasetKind::Teacher),
            "gaussian-mixture" => Ok(DatasetKind::GaussianMixture),
            "idx" | "mnist" => Ok(DatasetKind::Idx),
            "cifar10" => Ok(DatasetKind::Cifar10),
            other => Err(Error::config(
                "dataset",
                format!(
                    "unknown dataset {other:?} (expected teacher, gaussian-mixture, idx or cifar10)"
                ),
            )),
        }
    }
}

/// The data a run trains and is evaluated on.
///
/// Synthetic data sets are generated from `data_seed`, not from the run's seed: every seed of a
/// cell sees the same training set, and the training set of size N is a prefix of the one of
/// size N' > N (nested subsets, as learning curves need).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Which data set.
    pub dataset: DatasetKind,
    /// N, the number of training examples used.
    pub train_size: u64,
    /// The number of held-out examples the test metrics are measured on.
    pub test_size: u64,
    /// Seed of the data itself (teacher weights, cluster centres, which file examples are used).
    pub data_seed: u64,
    /// Input dimension of synthetic data (`None` for on-disk data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<u32>,
    /// Number of classes of synthetic data (`None` for on-disk data, which has 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<u32>,
    /// Fraction of training and test labels replaced by a uniformly random class (synthetic data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_noise: Option<f64>,
    /// Hidden width of the teacher network (`teacher` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_hidden: Option<u32>,
    /// Distance scale between cluster centres, in units of the within-cluster standard deviation
    /// (`gaussian-mixture` only). Smaller means more overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separation: Option<f64>,
    /// Where on-disk data lives. Not part of the run's identity (the files' content is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Content hash of the on-disk files, filled in when the data is resolved; part of identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Defaults of the synthetic data sets, chosen so the quickstart is fast and shows an optimum.
pub mod data_defaults {
    /// Input dimension of synthetic data.
    pub const DIM: u32 = 32;
    /// Classes of synthetic data.
    pub const CLASSES: u32 = 10;
    /// Hidden width of the teacher network.
    pub const TEACHER_HIDDEN: u32 = 64;
    /// Label noise of the teacher data set.
    pub const LABEL_NOISE: f64 = 0.0;
    /// Cluster separation of the Gaussian mixture.
    pub const SEPARATION: f64 = 3.0;
}

impl DataConfig {
    /// A data config with this kind's defaults for every optional field.
    pub fn new(dataset: DatasetKind, train_size: u64, test_size: u64) -> Self {
        let mut cfg = DataConfig {
            dataset,
            train_size,
            test_size,
            data_seed: 0,
            dim: None,
            classes: None,
            label_noise: None,
            teacher_hidden: None,
            separation: None,
            data_dir: None,
            fingerprint: None,
        };
        cfg.fill_defaults();
        cfg
    }

    /// Fills the fields that apply to this data set with their defaults and clears the ones that
    /// don't, so that the canonical form (and the run id) does not depend on irrelevant values.
    pub fn fill_defaults(&mut self) {
        use data_defaults as d;
        match self.dataset {
            DatasetKind::Teacher => {
                self.dim.get_or_insert(d::DIM);
                self.classes.get_or_insert(d::CLASSES);
                self.label_noise.get_or_insert(d::LABEL_NOISE);
                self.teacher_hidden.get_or_insert(d::TEACHER_HIDDEN);
                self.separation = None;
                self.data_dir = None;
                self.fingerprint = None;
            }
            DatasetKind::GaussianMixture => {
                self.dim.get_or_insert(d::DIM);
                self.classes.get_or_insert(d::CLASSES);
                self.label_noise.get_or_insert(d::LABEL_NOISE);
                self.separation.get_or_insert(d::SEPARATION);
                self.teacher_hidden = None;
                self.data_dir = None;
                self.fingerprint = None;
            }
            DatasetKind::Idx | DatasetKind::Cifar10 => {
                self.dim = None;
                self.classes = None;
                self.label_noise = None;
                self.teacher_hidden = None;
                self.separation = None;
            }
        }
    }

    /// Number of classes (10 for the on-disk data sets).
    pub fn num_classes(&self) -> u32 {
        self.classes.unwrap_or(10)
    }
}

/// Which network is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Fully connected ReLU network; `hidden` lists the hidden widths.
    Mlp,
    /// Two conv(5×5, same padding)+ReLU+maxpool(2) blocks and a dense layer; `hidden` lists the
    /// two blocks' channel counts. Needs image data.
    Cnn,
}

impl ModelKind {
    /// The name used in sweep files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }
}

impl std::str::FromStr for ModelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mlp" => Ok(ModelKind::Mlp),
            "cnn" => Ok(ModelKind::Cnn),
            other => Err(Error::config(
                "model",
                format!("unknown model {other:?} (expected mlp or cnn)"),
            )),
        }
    }
}

/// The network of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Which network.
    pub kind: ModelKind,
    /// Hidden widths (mlp) or channel counts of the two conv blocks (cnn).
    pub hidden: Vec<u32>,
}

/// How long a run trains: a number of epochs (passes over the N training examples) or of
/// parameter updates. The kind is stored with every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Passes over the training set.
    Epochs(u64),
    /// Parameter updates (steps); the last epoch may be partial.
    Steps(u64),
}

impl Budget {
    /// `"epochs"` or `"steps"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Budget::Epochs(_) => "epochs",
            Budget::Steps(_) => "steps",
        }
    }
    /// The number of epochs or steps.
    pub fn amount(&self) -> u64 {
        match self {
            Budget::Epochs(n) | Budget::Steps(n) => *n,
        }
    }
}

/// A learning-rate / batch-size schedule. Changes happen only at epoch boundaries.
///
/// Milestones are fractions of the budget: with an epoch budget E, milestone f takes effect at
/// the start of epoch `round(f·E) + 1`; with a step budget S, at the first epoch boundary at which
/// `round(f·S)` steps have been taken. Smith, Kindermans, Ying & Le 2017 (arXiv 1711.00489):
/// decaying ε by k and multiplying B by k give the same curve per epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// ε and B fixed.
    Constant,
    /// ε ÷ factor at each milestone, B fixed.
    DecayLr {
        /// Fractions of the budget, strictly increasing, in (0, 1).
        milestones: Vec<f64>,
        /// The factor (> 1).
        factor: f64,
    },
    /// B × factor at each milestone, ε fixed. Validation refuses a B beyond N
    /// ([`RunConfig::check_batch_growth`]).
    IncreaseBatch {
        /// Fractions of the budget, strictly increasing, in (0, 1).
        milestones: Vec<f64>,
        /// The factor (> 1).
        factor: f64,
    },
    /// B × factor at the first milestone, ε ÷ factor at the later ones.
    Hybrid {
        /// Fractions of the budget, strictly increasing, in (0, 1).
        milestones: Vec<f64>,
        /// The factor (> 1).
        factor: f64,
    },
}

/// The batch size after growing `k` times by `factor` from `batch0`, rounded, before any cap:
/// what the trainer runs ([`Schedule::apply`], which caps it at N) and what validation checks
/// against N ([`RunConfig::check_batch_growth`]).
fn grown(batch0: u64, factor: f64, k: usize) -> f64 {
    (batch0 as f64 * factor.powi(k as i32)).round()
}

impl Schedule {
    /// The schedule's mode name: constant, decay-lr, increase-batch or hybrid.
    pub fn mode(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::DecayLr { .. } => "decay-lr",
            Schedule::IncreaseBatch { .. } => "increase-batch",
            Schedule::Hybrid { .. } => "hybrid",
        }
    }

    fn parts(&self) -> Option<(&[f64], f64)> {
        match self {
            Schedule::Constant => None,
            Schedule::DecayLr { milestones, factor }
            | Schedule::IncreaseBatch { milestones, factor }
            | Schedule::Hybrid { milestones, factor } => Some((milestones, *factor)),
        }
    }

    /// A compact label, e.g. `increase-batch(x5 @ 0.3,0.6,0.8)`.
    pub fn label(&self) -> String {
        match self.parts() {
            None => "constant".to_string(),
            Some((ms, f)) => {
                let ms: Vec<String> = ms.iter().map(|m| format!("{m}")).collect();
                format!("{}(x{} @ {})", self.mode(), f, ms.join(","))
            }
        }
    }

    /// Learning rate and batch size in force after `passed` milestones, from the initial ones.
    /// The batch size is kept within 1..=N only as a guard: a validated run never reaches N's
    /// cap ([`RunConfig::check_batch_growth`]), since a capped batch no longer matches decay-lr
    /// factor for factor.
    pub fn apply(&self, passed: usize, lr0: f64, batch0: u64, train_size: u64) -> (f64, u64) {
        let Some((_, factor)) = self.parts() else {
            return (lr0, batch0);
        };
        let grow =
            |k: usize| -> u64 { (grown(batch0, factor, k) as u64).clamp(1, train_size.max(1)) };
        let decay = |k: usize| lr0 / factor.powi(k as i32);
        match self {
            Schedule::Constant => (lr0, batch0),
            Schedule::DecayLr { .. } => (decay(passed), batch0),
            Schedule::IncreaseBatch { .. } => (lr0, grow(passed)),
            Schedule::Hybrid { .. } => (decay(passed.saturating_sub(1)), grow(passed.min(1))),
        }
    }

    /// Epochs (or steps) done after which milestone `f` of a budget of `total` has passed: the
    /// one rule the trainer ([`Schedule::passed`]) and validation
    /// ([`RunConfig::milestone_epochs`]) share.
    pub fn threshold(f: f64, total: u64) -> u64 {
        (f * total as f64).round() as u64
    }

    /// Number of milestones passed at the start of an epoch, given the epochs and steps done.
    pub fn passed(&self, budget: Budget, epochs_done: u64, steps_done: u64) -> usize {
        let Some((ms, _)) = self.parts() else {
            return 0;
        };
        let (done, total) = match budget {
            Budget::Epochs(e) => (epochs_done, e),
            Budget::Steps(s) => (steps_done, s),
        };
        ms.iter()
            .filter(|&&f| Schedule::threshold(f, total) <= done)
            .count()
    }

    /// Checks the factor and the milestones' fractions (the epochs they land on depend on the
    /// run's budget: [`RunConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        let Some((ms, factor)) = self.parts() else {
            return Ok(());
        };
        if !(factor.is_finite() && factor > 1.0) {
            return Err(Error::config(
                "schedule.factor",
                format!("must be a number > 1, got {factor}"),
            ));
        }
        if ms.is_empty() {
            return Err(Error::config(
                "schedule.milestones",
                "must list at least one fraction of the budget",
            ));
        }
        if ms.len() > MAX_MILESTONES {
            return Err(Error::config(
                "schedule.milestones",
                format!("must list at most {MAX_MILESTONES}, got {}", ms.len()),
            ));
        }
        let mut prev = 0.0;
        for &m in ms {
            if !(m > 0.0 && m < 1.0) {
                return Err(Error::config(
                    "schedule.milestones",
                    format!("each must be a fraction of the budget in (0, 1), got {m}"),
                ));
            }
            if m <= prev {
                return Err(Error::config(
                    "schedule.milestones",
                    format!("must be strictly increasing, got {ms:?}"),
                ));
            }
            prev = m;
        }
        Ok(())
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    /// Parses `constant` or `MODE:F1,F2,...:FACTOR` (e.g. `increase-batch:0.3,0.6,0.8:5`).
    fn from_str(s: &str) -> Result<Self> {
        if s == "constant" {
            return Ok(Schedule::Constant);
        }
        let bad = || {
            Error::config(
                "schedule",
                format!(
                    "cannot parse {s:?}: expected `constant` or MODE:MILESTONES:FACTOR, \
                     e.g. increase-batch:0.3,0.6,0.8:5 (MODE decay-lr, increase-batch or hybrid)"
                ),
            )
        };
        let parts: Vec<&str> = s.split(':').collect();
        let [mode, ms, factor] = parts[..] else {
            return Err(bad());
        };
        let milestones = ms
            .split(',')
            .map(|m| m.trim().parse::<f64>().map_err(|_| bad()))
            .collect::<Result<Vec<f64>>>()?;
        let factor: f64 = factor.trim().parse().map_err(|_| bad())?;
        let schedule = match mode {
            "decay-lr" => Schedule::DecayLr { milestones, factor },
            "increase-batch" => Schedule::IncreaseBatch { milestones, factor },
            "hybrid" => Schedule::Hybrid { milestones, factor },
            _ => return Err(bad()),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

/// When the curvature of the training loss is measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CurvatureWhen {
    /// Never.
    #[default]
    Off,
    /// At the initial weights.
    Init,
    /// At the initial and at the final weights.
    InitAndFinal,
}

impl CurvatureWhen {
    /// Whether no measurement is made.
    pub fn is_off(&self) -> bool {
        *self == CurvatureWhen::Off
    }
}

impl std::str::FromStr for CurvatureWhen {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "off" => Ok(CurvatureWhen::Off),
            "init" => Ok(CurvatureWhen::Init),
            "init-and-final" => Ok(CurvatureWhen::InitAndFinal),
            other => Err(Error::config(
                "curvature",
                format!("unknown value {other:?} (expected off, init or init-and-final)"),
            )),
        }
    }
}

/// Measurements made during a run that do not change its training (they use their own random
/// streams and restore the weights): the gradient noise scale and the curvature of the loss.
/// Part of a run's identity only when switched on, so runs without them keep their ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruments {
    /// Measure the gradient noise scale B_simple after every k-th epoch (and at epoch 0);
    /// 0 switches it off.
    #[serde(default)]
    pub noise_scale_every: u32,
    /// Top Hessian eigenvalue and Hessian trace of the training loss.
    #[serde(default)]
    pub curvature: CurvatureWhen,
    /// Also measure B_noise = tr(HΣ)/(GᵀHG) at each noise-scale measurement (needs
    /// `noise_scale_every` > 0): two Hessian-vector products per pair. Serialised only when on,
    /// so runs without it keep their ids.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub b_noise: bool,
}

impl Instruments {
    /// Whether every instrument is off.
    pub fn is_off(&self) -> bool {
        self.noise_scale_every == 0 && self.curvature.is_off()
    }
}

/// Default divergence threshold: a run whose loss exceeds this multiple of its initial training
/// loss (or becomes non-finite) is stopped and stored as DIVERGED.
pub const DEFAULT_DIVERGENCE_FACTOR: f64 = 10.0;

/// The fully resolved configuration of one run. Its canonical JSON is hashed into the run id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Version of the trainer's semantics ([`TRAINER_VERSION`]).
    pub trainer_version: u32,
    /// The data.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// Initial learning rate ε on the mean batch gradient.
    pub lr: f64,
    /// Initial batch size B.
    pub batch_size: u64,
    /// Momentum m (PyTorch form u ← m·u + g; w ← w − ε·u).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay λ added to the gradient (g ← g + λ·w), as PyTorch's SGD does.
    pub weight_decay: f64,
    /// Epochs or steps.
    pub budget: Budget,
    /// Learning-rate / batch-size schedule.
    pub schedule: Schedule,
    /// Seed of the weight initialisation and of the data order.
    pub seed: u64,
    /// The SGD noise scale g = ε(N/B − 1)/(1−m) this cell was placed at, when the sweep's axis
    /// is `noise_scale` (then `lr` was derived from it); `None` when `lr` was swept directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_scale: Option<f64>,
    /// Loss multiple of the initial loss above which the run counts as diverged.
    pub divergence_factor: f64,
    /// Gradual warmup (Goyal et al. 2017, arXiv 1706.02677): over the first `warmup_epochs`
    /// epochs' updates the learning rate rises linearly to the schedule's, ε·t/T at the t-th of
    /// T = warmup_epochs·⌈N/B⌉ updates ([`RunConfig::warmup_factor`]); such an epoch stores the
    /// mean of its updates' rates. 0: none (serialised only when on, so runs without it keep
    /// their ids).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: u32,
    /// Instruments (off by default; serialised only when on).
    #[serde(default, skip_serializing_if = "Instruments::is_off")]
    pub instruments: Instruments,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The most examples a training or test set may hold: examples are indexed by `u32`.
pub const MAX_EXAMPLES: u64 = u32::MAX as u64;

/// The most epochs a run may have: each is a stored row, and planning a run walks its epochs.
/// A budget in steps may span no more.
pub const MAX_EPOCHS: u64 = 1_000_000;

/// The most milestones a schedule may list.
pub const MAX_MILESTONES: usize = 1000;

impl RunConfig {
    /// Checks every value; the error names the field and the value.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        if d.train_size == 0 {
            return Err(Error::config("train_size", "must be at least 1, got 0"));
        }
        if d.test_size == 0 {
            return Err(Error::config("test_size", "must be at least 1, got 0"));
        }
        for (field, n) in [("train_size", d.train_size), ("test_size", d.test_size)] {
            if n > MAX_EXAMPLES {
                return Err(Error::config(
                    field,
                    format!(
                        "must be at most {MAX_EXAMPLES} (examples are indexed by 32-bit \
                         integers), got {n}"
                    ),
                ));
            }
        }
        if let Some(dim) = d.dim
            && dim == 0
        {
            return Err(Error::config("dim", "must be at least 1, got 0"));
        }
        if let Some(c) = d.classes
            && c < 2
        {
            return Err(Error::config(
                "classes",
                format!("must be at least 2, got {c}"),
            ));
        }
        if let Some(p) = d.label_noise
            && !(0.0..=1.0).contains(&p)
        {
            return Err(Error::config(
                "label_noise",
                format!("must be a fraction in [0, 1], got {p}"),
            ));
        }
        if let Some(h) = d.teacher_hidden
            && h == 0
        {
            return Err(Error::config("teacher_hidden", "must be at least 1, got 0"));
        }
        if let Some(s) = d.separation
            && !(s.is_finite() && s >= 0.0)
        {
            return Err(Error::config(
                "separation",
                format!("must be a finite number ≥ 0, got {s}"),
            ));
        }
        if d.dataset.on_disk() && d.data_dir.is_none() {
            return Err(Error::config(
                "data_dir",
                format!(
                    "dataset {} reads files: give --data-dir / data_dir",
                    d.dataset.name()
                ),
            ));
        }
        if self.instruments.b_noise && self.instruments.noise_scale_every == 0 {
            return Err(Error::config(
                "b_noise",
                "B_noise is measured with the noise scale: set noise_scale_every \
                 (--noise-scale-every) to 1 or more",
            ));
        }
        if self.model.hidden.contains(&0) {
            return Err(Error::config(
                "hidden",
                format!("widths must be at least 1, got {:?}", self.model.hidden),
            ));
        }
        if self.model.kind == ModelKind::Cnn {
            if self.model.hidden.len() != 2 {
                return Err(Error::config(
                    "hidden",
                    format!(
                        "the cnn takes two channel counts (one per conv block), got {:?}",
                        self.model.hidden
                    ),
                ));
            }
            if !d.dataset.on_disk() {
                return Err(Error::config(
                    "model",
                    format!(
                        "cnn needs image data (dataset idx or cifar10), got {}",
                        d.dataset.name()
                    ),
                ));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "lr",
                format!("must be a number > 0, got {}", self.lr),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", "must be at least 1, got 0"));
        }
        if self.batch_size > d.train_size {
            return Err(Error::config(
                "batch_size",
                format!(
                    "batch size {} is larger than the training set (train_size {})",
                    self.batch_size, d.train_size
                ),
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::config(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::config(
                "nesterov",
                "Nesterov momentum needs momentum > 0",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "weight_decay",
                format!("must be a number ≥ 0, got {}", self.weight_decay),
            ));
        }
        match self.budget {
            Budget::Epochs(0) => return Err(Error::config("epochs", "must be at least 1, got 0")),
            Budget::Epochs(e) if e > MAX_EPOCHS => {
                return Err(Error::config(
                    "epochs",
                    format!("must be at most {MAX_EPOCHS} (a stored row per epoch), got {e}"),
                ));
            }
            Budget::Steps(0) => return Err(Error::config("steps", "must be at least 1, got 0")),
            Budget::Steps(s) => {
                // An epoch takes at least ⌈N/B⌉ steps at the largest batch the run reaches.
                let per_epoch = self.data.train_size.div_ceil(self.largest_batch().max(1));
                if s.div_ceil(per_epoch.max(1)) > MAX_EPOCHS {
                    return Err(Error::config(
                        "steps",
                        format!(
                            "{s} steps of up to {} examples on a training set of {} span more \
                             than {MAX_EPOCHS} epochs (a stored row per epoch)",
                            self.largest_batch(),
                            self.data.train_size
                        ),
                    ));
                }
            }
            _ => {}
        }
        let warmup_too_long = match self.budget {
            Budget::Epochs(e) => (u64::from(self.warmup_epochs) > e).then(|| format!("{e} epochs")),
            Budget::Steps(s) => (self.warmup_steps() > s).then(|| format!("{s} steps")),
        };
        if let Some(budget) = warmup_too_long {
            return Err(Error::config(
                "warmup_epochs",
                format!(
                    "{} epochs ({} updates) is longer than the run's {budget} of training",
                    self.warmup_epochs,
                    self.warmup_steps()
                ),
            ));
        }
        if !(self.divergence_factor.is_finite() && self.divergence_factor > 1.0) {
            return Err(Error::config(
                "divergence_factor",
                format!("must be a number > 1, got {}", self.divergence_factor),
            ));
        }
        self.schedule.validate()?;
        self.check_milestone_epochs()?;
        self.check_batch_growth()
    }

    /// Refuses an increase-batch or hybrid schedule whose batch size would pass the training
    /// set: the trainer would cap it at N, so the run would no longer grow B by the factor that
    /// decay-lr divides ε by, and the comparison the schedule exists for (Smith, Kindermans, Ying
    /// & Le 2017, arXiv 1711.00489: equivalent for B ≪ N) would silently change. B = N is
    /// allowed. The error names the schedule, the milestone, the batch size it would reach and N.
    pub fn check_batch_growth(&self) -> Result<()> {
        let Some((ms, factor)) = self.schedule.parts() else {
            return Ok(());
        };
        let grows = match self.schedule {
            Schedule::IncreaseBatch { .. } => ms.len(),
            Schedule::Hybrid { .. } => ms.len().min(1),
            Schedule::Constant | Schedule::DecayLr { .. } => 0,
        };
        let n = self.data.train_size;
        for (k, &f) in ms.iter().enumerate().take(grows) {
            let b = grown(self.batch_size, factor, k + 1);
            if b > n as f64 {
                return Err(Error::config(
                    "schedule",
                    format!(
                        "{} grows batch_size {} to {b:.0} at milestone {f}, beyond the training \
                         set (train_size {n}); capped at {n}, it would no longer match decay-lr \
                         factor for factor (the equivalence needs B ≪ N): lower batch_size or the \
                         factor, or drop a milestone",
                        self.schedule.label(),
                        self.batch_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The epoch (1-based) at whose start each milestone takes effect, and the number of epochs
    /// the run trains (with a step budget, the last may be partial). A milestone that would
    /// take effect only after the last epoch lands on `last + 1`. With an epoch budget E,
    /// milestone f lands on epoch `round(f·E) + 1`; with a step budget S, on the first epoch that
    /// starts with at least `round(f·S)` steps taken, at the batch sizes the schedule sets before
    /// it (as the trainer counts them: [`Schedule::passed`]).
    pub fn milestone_epochs(&self) -> (Vec<u64>, u64) {
        let ms = self.schedule.parts().map_or(&[][..], |(ms, _)| ms);
        match self.budget {
            Budget::Epochs(e) => (
                ms.iter().map(|&f| Schedule::threshold(f, e) + 1).collect(),
                e,
            ),
            Budget::Steps(total) => {
                let targets: Vec<u64> = ms.iter().map(|&f| Schedule::threshold(f, total)).collect();
                let n = self.data.train_size;
                let mut lands = Vec::with_capacity(targets.len());
                let (mut epoch, mut done) = (1u64, 0u64); // `done` steps before `epoch`
                loop {
                    while lands.len() < targets.len() && targets[lands.len()] <= done {
                        lands.push(epoch);
                    }
                    if done >= total {
                        // `epoch` does not run: every target (≤ total) has landed.
                        return (lands, epoch - 1);
                    }
                    let (_, b) = self
                        .schedule
                        .apply(lands.len(), self.lr, self.batch_size, n);
                    let per_epoch = n.div_ceil(b.max(1)).max(1);
                    // Whole epochs at this batch size until the next milestone or the end.
                    let next = targets.get(lands.len()).map_or(total, |&t| t.min(total));
                    let k = (next - done).div_ceil(per_epoch).max(1);
                    epoch = epoch.saturating_add(k);
                    done = done.saturating_add(k.saturating_mul(per_epoch));
                }
            }
        }
    }

    /// Refuses milestones that change nothing the schedule promises: one that lands on epoch 1
    /// (no epoch would train at the initial ε and B), two on the same epoch (their changes merge
    /// into one) or one after the last epoch (it never takes effect). The error names the
    /// milestone, the epoch it lands on and the run's epochs.
    pub fn check_milestone_epochs(&self) -> Result<()> {
        let Some((ms, _)) = self.schedule.parts() else {
            return Ok(());
        };
        let (lands, last) = self.milestone_epochs();
        // How a milestone's epoch comes about, for the message.
        let (of, rule) = match self.budget {
            Budget::Epochs(e) => (
                format!("{e} epochs"),
                format!("milestone f takes effect at epoch round(f·{e}) + 1"),
            ),
            Budget::Steps(s) => (
                format!("the {last} epochs of {s} steps"),
                format!(
                    "milestone f takes effect at the first epoch boundary after round(f·{s}) steps"
                ),
            ),
        };
        let bad = |message: String| Err(Error::config("schedule.milestones", message));
        for (i, (&f, &epoch)) in ms.iter().zip(&lands).enumerate() {
            if epoch > last {
                return bad(format!(
                    "milestone {f} lands on epoch {epoch}, after the last of {of}, so it never \
                     takes effect ({rule})"
                ));
            }
            if epoch <= 1 {
                return bad(format!(
                    "milestone {f} lands on epoch 1 of {of}, so no epoch trains at the initial lr \
                     and batch size ({rule})"
                ));
            }
            if i > 0 && lands[i - 1] == epoch {
                return bad(format!(
                    "milestones {} and {f} both land on epoch {epoch} of {of}, so their changes \
                     merge into one ({rule})",
                    ms[i - 1]
                ));
            }
        }
        Ok(())
    }

    /// The canonical JSON that identifies the run: every field that can change its numbers, in
    /// a fixed order, without `data_dir` (a path differs between machines; the files' content
    /// hash, `fingerprint`, stands for the data instead).
    pub fn canonical_json(&self) -> String {
        let mut c = self.without_negative_zeros();
        c.data.data_dir = None;
        // Serialising a struct of plain fields cannot fail; floats use the shortest exact form.
        serde_json::to_string(&c).unwrap_or_default()
    }

    /// The configuration as stored in `runs.config`: every field, `data_dir` included (the
    /// process that trains the run reads its files from there). `scalelab run`'s head start
    /// finds the run a slot claimed by this exact text.
    pub fn stored_json(&self) -> String {
        // Serialising a struct of plain fields cannot fail.
        serde_json::to_string(&self.without_negative_zeros()).unwrap_or_default()
    }

    /// The same configuration with −0.0 written as 0.0 where zero is a valid value (momentum,
    /// weight decay, label noise, separation; the other numbers must be positive): the two train alike,
    /// and would otherwise serialise differently and make two run ids for one run.
    fn without_negative_zeros(&self) -> RunConfig {
        let mut c = self.clone();
        let zeros = [&mut c.momentum, &mut c.weight_decay]
            .into_iter()
            .chain(c.data.label_noise.as_mut())
            .chain(c.data.separation.as_mut());
        for v in zeros {
            // −0.0 == 0.0: this writes +0.0 over either.
            if *v == 0.0 {
                *v = 0.0;
            }
        }
        c
    }

    /// The run id: the first 16 hex digits (64 bits) of the BLAKE3 hash of the canonical JSON.
    pub fn run_id(&self) -> String {
        let hash = blake3::hash(self.canonical_json().as_bytes());
        hash.to_hex()[..16].to_string()
    }

    /// The noise scale g = ε(N/B − 1)/(1−m) at the initial ε and B (Smith & Le 2017, §1).
    pub fn initial_noise_scale(&self) -> f64 {
        noise_scale(
            self.lr,
            self.data.train_size,
            self.batch_size,
            self.momentum,
        )
    }

    /// Updates the warmup spans: `warmup_epochs` epochs of ⌈N/B⌉ updates at the initial batch
    /// size (0 without warmup).
    pub fn warmup_steps(&self) -> u64 {
        u64::from(self.warmup_epochs)
            .saturating_mul(self.data.train_size.div_ceil(self.batch_size.max(1)))
    }

    /// The factor on the learning rate of the update after `steps_done` others: (t + 1)/T for
    /// the first T = [`Self::warmup_steps`] updates, then exactly 1 (Goyal et al. 2017 ramp from
    /// ε/k to ε; here from ε/T, the schedule's rate reached at the T-th update).
    pub fn warmup_factor(&self, steps_done: u64) -> f64 {
        let t = self.warmup_steps();
        if steps_done >= t {
            1.0
        } else {
            (steps_done + 1) as f64 / t as f64
        }
    }

    /// Learning rate and batch size in force during epoch `epoch` (1-based) when `steps_done`
    /// updates have been taken before it.
    pub fn epoch_hyper(&self, epoch: u64, steps_done: u64) -> (f64, u64) {
        let passed = self
            .schedule
            .passed(self.budget, epoch.saturating_sub(1), steps_done);
        self.schedule
            .apply(passed, self.lr, self.batch_size, self.data.train_size)
    }

    /// The largest batch size the run reaches (its schedule's last, for a growing batch).
    pub fn largest_batch(&self) -> u64 {
        let passed = self.schedule.parts().map_or(0, |(ms, _)| ms.len());
        let (_, last) = self
            .schedule
            .apply(passed, self.lr, self.batch_size, self.data.train_size);
        last.max(self.batch_size)
    }

    /// The number of parameter updates the run takes if it does not diverge: ⌈N/B⌉ per epoch
    /// (the last batch of an epoch may be smaller), summed over the epochs with the B in force.
    pub fn planned_updates(&self) -> u64 {
        match self.budget {
            Budget::Steps(s) => s,
            Budget::Epochs(e) => {
                // The batch size changes only at milestones: a sum over the schedule's segments,
                // not its epochs (a million epochs times a thousand milestones took minutes).
                let n = self.data.train_size;
                let steps_at = |passed: usize| {
                    let (_, b) = self.schedule.apply(passed, self.lr, self.batch_size, n);
                    n.div_ceil(b.max(1))
                };
                // Epoch `t` (1-based) runs with the milestones whose epoch rounds to < t.
                let ends: Vec<u64> = self.schedule.parts().map_or(Vec::new(), |(ms, _)| {
                    ms.iter().map(|&f| Schedule::threshold(f, e)).collect()
                });
                let mut steps: u64 = 0;
                let mut from = 0; // epochs before the segment
                for (passed, &end) in ends.iter().enumerate() {
                    let end = end.clamp(from, e);
                    steps = steps.saturating_add((end - from).saturating_mul(steps_at(passed)));
                    from = end;
                }
                steps.saturating_add((e - from).saturating_mul(steps_at(ends.len())))
            }
        }
    }
}

/// A small valid configuration (teacher data N = 1000, mlp 64, ε = 0.1, B = 32, m = 0.9,
/// 5 epochs): a template for tests and for validating one field at a time.
pub fn example_config() -> RunConfig {
    RunConfig {
        trainer_version: TRAINER_VERSION,
        data: DataConfig::new(DatasetKind::Teacher, 1000, 500),
        model: ModelConfig {
            kind: ModelKind::Mlp,
            hidden: vec![64],
        },
        lr: 0.1,
        batch_size: 32,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        budget: Budget::Epochs(5),
        schedule: Schedule::Constant,
        seed: 1,
        noise_scale: None,
        divergence_factor: DEFAULT_DIVERGENCE_FACTOR,
        warmup_epochs: 0,
        instruments: Instruments::default(),
    }
}

/// The SGD noise scale g = ε(N/B − 1)/(1−m) (Smith & Le 2017, arXiv 1710.06451; the −1 from
/// sampling without replacement, the 1/(1−m) from momentum's effective learning rate).
pub fn noise_scale(lr: f64, train_size: u64, batch_size: u64, momentum: f64) -> f64 {
    lr * (train_size as f64 / batch_size as f64 - 1.0) / (1.0 - momentum)
}

/// The learning rate that puts a cell at noise scale g: ε = g·B(1−m)/N, the approximate inverse
/// (g ≈ εN/(B(1−m))) that the design specifies for `noise_scale` sweeps.
pub fn lr_for_noise_scale(g: f64, train_size: u64, batch_size: u64, momentum: f64) -> f64 {
    g * batch_size as f64 * (1.0 - momentum) / train_size as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn teacher_config() -> RunConfig {
        example_config()
    }

    #[test]
    fn run_id_is_stable_and_sensitive_to_every_field() {
        let a = teacher_config();
        assert_eq!(a.run_id(), teacher_config().run_id());
        assert_eq!(a.run_id().len(), 16);
        let mut b = a.clone();
        b.seed = 2;
        assert_ne!(a.run_id(), b.run_id());
        let mut c = a.clone();
        c.lr = 0.1000001;
        assert_ne!(a.run_id(), c.run_id());
        let mut d = a.clone();
        d.data.data_seed = 7;
        assert_ne!(a.run_id(), d.run_id());
        // Every field that can change a run's numbers, each changed alone: all the ids differ
        // from the base's and from each other's (a field missing from the canonical text would
        // make two runs share an id, and the second would never be trained).
        type Change = fn(&mut RunConfig);
        let changes: [(&str, Change); 28] = [
            ("trainer_version", |c| c.trainer_version += 1),
            ("dataset", |c| c.data.dataset = DatasetKind::GaussianMixture),
            ("train_size", |c| c.data.train_size += 1),
            ("test_size", |c| c.data.test_size += 1),
            ("data_seed", |c| c.data.data_seed += 1),
            ("dim", |c| c.data.dim = Some(16)),
            ("classes", |c| c.data.classes = Some(5)),
            ("label_noise", |c| c.data.label_noise = Some(0.1)),
            ("teacher_hidden", |c| c.data.teacher_hidden = Some(32)),
            ("separation", |c| c.data.separation = Some(2.0)),
            ("fingerprint", |c| c.data.fingerprint = Some("abc".into())),
            ("model kind", |c| c.model.kind = ModelKind::Cnn),
            ("hidden", |c| c.model.hidden = vec![64, 64]),
            ("lr", |c| c.lr = 0.2),
            ("batch_size", |c| c.batch_size = 64),
            ("momentum", |c| c.momentum = 0.5),
            ("nesterov", |c| c.nesterov = true),
            ("weight_decay", |c| c.weight_decay = 1e-4),
            ("budget kind", |c| c.budget = Budget::Steps(5)),
            ("budget", |c| c.budget = Budget::Epochs(6)),
            ("schedule", |c| {
                c.schedule = Schedule::DecayLr {
                    milestones: vec![0.5],
                    factor: 10.0,
                }
            }),
            ("seed", |c| c.seed += 1),
            ("noise_scale", |c| c.noise_scale = Some(3.0)),
            ("divergence_factor", |c| c.divergence_factor *= 2.0),
            ("noise_scale_every", |c| c.instruments.noise_scale_every = 1),
            ("curvature", |c| {
                c.instruments.curvature = CurvatureWhen::Init
            }),
            ("warmup_epochs", |c| c.warmup_epochs = 2),
            ("b_noise", |c| {
                c.instruments.noise_scale_every = 1;
                c.instruments.b_noise = true;
            }),
        ];
        let mut ids = std::collections::BTreeMap::new();
        ids.insert(a.run_id(), "base");
        for (field, change) in changes {
            let mut c = a.clone();
            change(&mut c);
            if let Some(other) = ids.insert(c.run_id(), field) {
                panic!("changing {field} gives the run id of {other}");
            }
        }
        // Only the data's directory is left out: the fingerprint stands for the files.
        let mut moved = a.clone();
        moved.data.data_dir = Some("elsewhere".into());
        assert_eq!(a.run_id(), moved.run_id());
    }

    /// Regression: `momentum = -0.0` trained the same numbers as 0.0 under another run id, so
    /// a sweep listing both trained every cell twice.
    #[test]
    fn negative_zero_is_zero_in_the_run_id_and_the_stored_text() {
        let mut zero = teacher_config();
        zero.momentum = 0.0;
        zero.weight_decay = 0.0;
        zero.data.label_noise = Some(0.0);
        let mut neg = zero.clone();
        neg.momentum = -0.0;
        neg.weight_decay = -0.0;
        neg.data.label_noise = Some(-0.0);
        assert_eq!(zero.run_id(), neg.run_id());
        assert_eq!(zero.stored_json(), neg.stored_json());
        assert!(!neg.stored_json().contains("-0"), "{}", neg.stored_json());
        // Only the sign of zero is dropped: every other value still tells runs apart.
        let mut tiny = zero.clone();
        tiny.weight_decay = 1e-300;
        assert_ne!(zero.run_id(), tiny.run_id());
    }

    #[test]
    fn data_dir_is_not_identity_but_fingerprint_is() {
        let mut a = teacher_config();
        a.data = DataConfig::new(DatasetKind::Idx, 100, 100);
        a.data.data_dir = Some("one/place".into());
        a.data.fingerprint = Some("abc".into());
        let mut b = a.clone();
        b.data.data_dir = Some("another/place".into());
        assert_eq!(a.run_id(), b.run_id());
        b.data.fingerprint = Some("abd".into());
        assert_ne!(a.run_id(), b.run_id());
    }

    #[test]
    fn validation_names_the_field_and_value() {
        let mut c = teacher_config();
        c.batch_size = 2000;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("batch_size") && e.contains("2000") && e.contains("1000"),
            "{e}"
        );
        let mut c = teacher_config();
        c.momentum = 1.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("momentum") && e.contains('1'), "{e}");
        let mut c = teacher_config();
        c.lr = -0.5;
        assert!(c.validate().unwrap_err().to_string().contains("lr"));
        let mut c = teacher_config();
        c.budget = Budget::Epochs(0);
        assert!(c.validate().unwrap_err().to_string().contains("epochs"));
        assert!(teacher_config().validate().is_ok());
    }

    /// Sizes beyond what a run can index or plan are refused up front, not met as an abort or
    /// a planning loop that Ctrl-C cannot stop.
    #[test]
    fn sizes_and_epochs_have_upper_bounds_that_name_the_field() {
        let mut c = teacher_config();
        c.data.train_size = MAX_EXAMPLES + 1;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("train_size") && e.contains("4294967296"), "{e}");
        let mut c = teacher_config();
        c.data.test_size = 10_000_000_000;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("test_size") && e.contains("10000000000"), "{e}");
        let mut c = teacher_config();
        c.budget = Budget::Epochs(MAX_EPOCHS);
        assert!(c.validate().is_ok());
        c.budget = Budget::Epochs(100_000_000_000_000);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("epochs") && e.contains("100000000000000"), "{e}");
    }

    /// Smith, Kindermans, Ying & Le 2017: B₀ = 128, N = 50,000, factor 5 at 30/60/80% of 200
    /// epochs. Arithmetic in docs/science.md §2: 78,200 and 29,000 updates.
    #[test]
    fn schedule_update_counts_match_the_papers_arithmetic() {
        let mut c = teacher_config();
        c.data.train_size = 50_000;
        c.batch_size = 128;
        c.budget = Budget::Epochs(200);
        let ms = vec![0.3, 0.6, 0.8];
        c.schedule = Schedule::DecayLr {
            milestones: ms.clone(),
            factor: 5.0,
        };
        assert_eq!(c.planned_updates(), 78_200);
        c.schedule = Schedule::IncreaseBatch {
            milestones: ms.clone(),
            factor: 5.0,
        };
        assert_eq!(c.planned_updates(), 29_000);
        // Hybrid: B × 5 at epoch 60, then ε ÷ 5: 60·391 + 140·79.
        c.schedule = Schedule::Hybrid {
            milestones: ms,
            factor: 5.0,
        };
        assert_eq!(c.planned_updates(), 60 * 391 + 140 * 79);
        assert_eq!(c.epoch_hyper(61, 0), (0.1, 640));
        assert_eq!(c.epoch_hyper(60, 0), (0.1, 128));
        let (lr, b) = c.epoch_hyper(200, 0);
        assert!((lr - 0.1 / 25.0).abs() < 1e-15 && b == 640);
    }

    /// The sum over a schedule's segments is the epoch-by-epoch sum it replaced, for every
    /// mode, small and large budgets, and milestones that round together or to the ends.
    #[test]
    fn planned_updates_sum_the_segments_as_the_epochs_would() {
        let by_epoch = |c: &RunConfig| {
            let Budget::Epochs(e) = c.budget else {
                unreachable!()
            };
            let mut steps = 0;
            for epoch in 1..=e {
                let (_, b) = c.epoch_hyper(epoch, steps);
                steps += c.data.train_size.div_ceil(b.max(1));
            }
            steps
        };
        let mut c = teacher_config();
        for (n, b) in [(1000, 32), (1000, 1000), (997, 7), (50_000, 128)] {
            for e in [1, 2, 3, 7, 10, 200] {
                for ms in [
                    vec![0.5],
                    vec![0.01, 0.02],
                    vec![0.3, 0.6, 0.8],
                    vec![0.1, 0.99],
                ] {
                    for schedule in [
                        Schedule::Constant,
                        Schedule::DecayLr {
                            milestones: ms.clone(),
                            factor: 5.0,
                        },
                        Schedule::IncreaseBatch {
                            milestones: ms.clone(),
                            factor: 3.0,
                        },
                        Schedule::Hybrid {
                            milestones: ms.clone(),
                            factor: 2.0,
                        },
                    ] {
                        c.data.train_size = n;
                        c.batch_size = b;
                        c.budget = Budget::Epochs(e);
                        c.schedule = schedule;
                        assert_eq!(c.planned_updates(), by_epoch(&c), "{c:?}");
                    }
                }
            }
        }
        // A million epochs and a thousand milestones: planned at once.
        c.budget = Budget::Epochs(MAX_EPOCHS);
        c.schedule = Schedule::IncreaseBatch {
            milestones: (1..=MAX_MILESTONES).map(|i| i as f64 / 1001.0).collect(),
            factor: 1.001,
        };
        assert!(c.validate().is_ok());
        let t = std::time::Instant::now();
        assert!(c.planned_updates() > 0);
        assert!(t.elapsed().as_secs_f64() < 0.5);
        let Schedule::IncreaseBatch { milestones, .. } = &mut c.schedule else {
            unreachable!()
        };
        milestones.push(0.9999);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("milestones") && e.contains("1001"), "{e}");
    }

    /// A budget in steps may not span more epochs than an epoch budget may have.
    #[test]
    fn a_steps_budget_is_bounded_by_the_epochs_it_spans() {
        let mut c = teacher_config();
        c.data.train_size = 2;
        c.batch_size = 2;
        c.budget = Budget::Steps(MAX_EPOCHS);
        assert!(c.validate().is_ok());
        c.budget = Budget::Steps(9_000_000_000_000_000);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("steps") && e.contains("1000000 epochs"), "{e}");
        // At N/B = 500 steps an epoch, 500 million steps are a million epochs.
        c.data.train_size = 1000;
        c.batch_size = 2;
        c.budget = Budget::Steps(500 * MAX_EPOCHS);
        assert!(c.validate().is_ok());
        c.budget = Budget::Steps(500 * MAX_EPOCHS + 1);
        assert!(c.validate().is_err());
        // A growing batch takes fewer steps an epoch: the bound is at the largest batch.
        c.schedule = Schedule::IncreaseBatch {
            milestones: vec![0.5],
            factor: 10.0,
        };
        assert_eq!(c.largest_batch(), 20);
        assert!(c.validate().is_err());
        c.budget = Budget::Steps(50 * MAX_EPOCHS);
        assert!(c.validate().is_ok());
    }

    /// Regression: milestones that landed on epoch 1, two on one epoch or after the last epoch
    /// were accepted and silently merged or dropped (`decay-lr` at 0.1 and 0.2 of 4 epochs
    /// trained epoch 1 at ε/10 and the rest at ε/100 while the run's lr said ε).
    #[test]
    fn milestones_on_epoch_one_on_one_epoch_or_past_the_end_are_refused() {
        let decay = |ms: &[f64]| Schedule::DecayLr {
            milestones: ms.to_vec(),
            factor: 10.0,
        };
        let mut c = teacher_config();
        c.budget = Budget::Epochs(4);
        c.schedule = decay(&[0.1, 0.2]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("schedule.milestones")
                && e.contains("milestone 0.1 lands on epoch 1 of 4 epochs"),
            "{e}"
        );
        c.budget = Budget::Epochs(2);
        c.schedule = decay(&[0.3, 0.6, 0.8]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("milestones 0.3 and 0.6 both land on epoch 2 of 2 epochs"),
            "{e}"
        );
        c.schedule = decay(&[0.3, 0.8]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("milestone 0.8 lands on epoch 3, after the last of 2 epochs"),
            "{e}"
        );
        c.schedule = decay(&[0.3]);
        assert!(c.validate().is_ok());
        // A step budget: N = 1000 at B = 100 is 10 steps an epoch; 35 steps span 4 epochs.
        c.batch_size = 100;
        c.budget = Budget::Steps(35);
        c.schedule = decay(&[0.5]);
        assert_eq!(c.milestone_epochs(), (vec![3], 4));
        assert!(c.validate().is_ok());
        c.schedule = decay(&[0.01]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("milestone 0.01 lands on epoch 1 of the 4 epochs of 35 steps"),
            "{e}"
        );
        c.schedule = decay(&[0.3, 0.5]);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("0.3 and 0.5 both land on epoch 3"), "{e}");
        c.schedule = decay(&[0.5, 0.9]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("milestone 0.9 lands on epoch 5, after the last of the 4 epochs"),
            "{e}"
        );
    }

    /// Regression: increase-batch capped B at N without a word (`--train-size 1000
    /// --batch-size 300 --schedule increase-batch:0.25,0.5,0.75:4` went 300 → 1000 and stayed),
    /// so it no longer matched decay-lr factor for factor. Refused now; B = N is allowed.
    #[test]
    fn a_schedule_growing_the_batch_beyond_n_is_refused() {
        let mut c = teacher_config(); // N = 1000
        c.batch_size = 300;
        c.budget = Budget::Epochs(8);
        c.schedule = "increase-batch:0.25,0.5,0.75:4".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid schedule: increase-batch(x4 @ 0.25,0.5,0.75) grows batch_size 300 to 1200 \
             at milestone 0.25, beyond the training set (train_size 1000); capped at 1000, it \
             would no longer match decay-lr factor for factor (the equivalence needs B ≪ N): \
             lower batch_size or the factor, or drop a milestone"
        );
        // The third growth is the one that passes N: 50 → 200 → 800 → 3200.
        c.batch_size = 50;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("grows batch_size 50 to 3200 at milestone 0.75"),
            "{e}"
        );
        // Reaching N exactly is allowed: 250 → 1000.
        c.batch_size = 250;
        c.schedule = "increase-batch:0.5:4".parse().unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.largest_batch(), 1000);
        // Hybrid grows B once: 200 → 800, then decays ε; 300 → 1200 is refused.
        c.batch_size = 200;
        c.schedule = "hybrid:0.25,0.5,0.75:4".parse().unwrap();
        assert!(c.validate().is_ok());
        c.batch_size = 300;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("hybrid(x4 @ 0.25,0.5,0.75) grows batch_size 300 to 1200"),
            "{e}"
        );
        // decay-lr never grows B.
        c.schedule = "decay-lr:0.25,0.5,0.75:4".parse().unwrap();
        assert!(c.validate().is_ok());
    }

    /// The epochs `milestone_epochs` computes are those at which the trainer's own rule
    /// (`epoch_hyper`, epoch by epoch) changes ε or B, for both budgets and every mode.
    #[test]
    fn milestone_epochs_are_where_the_trainer_changes_lr_or_batch() {
        let mut c = teacher_config();
        for (n, b) in [(1000, 32), (997, 7), (100, 100), (50, 3)] {
            for budget in [
                Budget::Epochs(1),
                Budget::Epochs(7),
                Budget::Epochs(40),
                Budget::Steps(1),
                Budget::Steps(90),
                Budget::Steps(1234),
            ] {
                for ms in [
                    vec![0.5],
                    vec![0.01, 0.02],
                    vec![0.3, 0.6, 0.8],
                    vec![0.1, 0.99],
                ] {
                    for schedule in [
                        Schedule::DecayLr {
                            milestones: ms.clone(),
                            factor: 5.0,
                        },
                        Schedule::IncreaseBatch {
                            milestones: ms.clone(),
                            factor: 3.0,
                        },
                    ] {
                        c.data.train_size = n;
                        c.batch_size = b;
                        c.budget = budget;
                        c.schedule = schedule;
                        // Epoch by epoch, as the trainer does: the passed count at each start.
                        let (max_e, max_s) = match budget {
                            Budget::Epochs(e) => (e, u64::MAX),
                            Budget::Steps(s) => (u64::MAX, s),
                        };
                        let (mut epoch, mut steps) = (0u64, 0u64);
                        let mut lands = Vec::new();
                        while epoch < max_e && steps < max_s {
                            epoch += 1;
                            let passed = c.schedule.passed(budget, epoch - 1, steps);
                            while lands.len() < passed {
                                lands.push(epoch);
                            }
                            let (_, bt) = c.epoch_hyper(epoch, steps);
                            steps = (steps + n.div_ceil(bt)).min(max_s);
                        }
                        while lands.len() < ms.len() {
                            lands.push(epoch + 1);
                        }
                        assert_eq!(c.milestone_epochs(), (lands, epoch), "{c:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn schedule_parses_from_the_command_line_form() {
        let s: Schedule = "increase-batch:0.3,0.6,0.8:5".parse().unwrap();
        assert_eq!(
            s,
            Schedule::IncreaseBatch {
                milestones: vec![0.3, 0.6, 0.8],
                factor: 5.0
            }
        );
        assert!("constant".parse::<Schedule>().is_ok());
        let e = "decay:0.5:2".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("decay:0.5:2"), "{e}");
        let e = "decay-lr:0.6,0.3:2"
            .parse::<Schedule>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("increasing"), "{e}");
    }

    #[test]
    fn the_derived_lr_inverts_the_approximate_noise_scale_not_the_exact_one() {
        // ε = g·B(1−m)/N = 100·50·0.1/1000 = 0.5, worked by hand.
        let lr = lr_for_noise_scale(100.0, 1000, 50, 0.9);
        assert!((lr - 0.5).abs() < 1e-12);
        // g ≈ εN/(B(1−m)) = 0.5·20/0.1 = 100 is inverted exactly; the exact g = ε(N/B − 1)/(1−m)
        // = 0.5·19/0.1 = 95 is 1 − B/N of it (the without-replacement term).
        assert!((noise_scale(lr, 1000, 50, 0.9) - 95.0).abs() < 1e-9);
    }
}
