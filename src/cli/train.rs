//! `scalelab train`: one run from cell flags, one JSON line per epoch on stdout.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::{
    Budget, DEFAULT_DIVERGENCE_FACTOR, DataConfig, DatasetKind, Instruments, ModelConfig,
    RunConfig, Schedule, TRAINER_VERSION,
};
use crate::error::Error;
use crate::train::{EpochMetrics, RunState};

/// The flags that describe one cell; names match the sweep file's keys, kebab-cased.
#[derive(Debug, Clone, Args)]
pub struct CellArgs {
    /// Data set: teacher | gaussian-mixture | idx | cifar10.
    #[arg(long, default_value = "teacher")]
    pub dataset: String,
    /// N, training examples used.
    #[arg(long, default_value_t = 1000)]
    pub train_size: u64,
    /// Test examples the test metrics are measured on.
    #[arg(long, default_value_t = 1000)]
    pub test_size: u64,
    /// Directory of on-disk data (idx, cifar10).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Seed of the data itself (teacher network, clusters, subset of a file).
    #[arg(long, default_value_t = 0)]
    pub data_seed: u64,
    /// Input dimension of synthetic data.
    #[arg(long)]
    pub dim: Option<u32>,
    /// Classes of synthetic data.
    #[arg(long)]
    pub classes: Option<u32>,
    /// Fraction of labels replaced by random classes (synthetic data).
    #[arg(long)]
    pub label_noise: Option<f64>,
    /// Hidden width of the teacher network.
    #[arg(long)]
    pub teacher_hidden: Option<u32>,
    /// Cluster separation of the gaussian-mixture data set.
    #[arg(long)]
    pub separation: Option<f64>,
    /// Network: mlp | cnn.
    #[arg(long, default_value = "mlp")]
    pub model: String,
    /// Hidden widths (mlp) or the two conv blocks' channels (cnn), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "800")]
    pub hidden: Vec<u32>,
    /// Learning rate ε (on the mean batch gradient).
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Batch size B.
    #[arg(long, default_value_t = 32)]
    pub batch_size: u64,
    /// Momentum m, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// L2 weight decay λ.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Budget in epochs (default 20 when neither --epochs nor --steps is given).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<u64>,
    /// Budget in parameter updates.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of the initialisation and the data order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `constant` or MODE:MILESTONES:FACTOR, e.g. increase-batch:0.3,0.6,0.8:5.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Epochs of linear learning-rate warmup (Goyal et al. 2017); 0 = none.
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: u32,
    /// A loss above this multiple of the initial loss counts as divergence.
    #[arg(long, default_value_t = DEFAULT_DIVERGENCE_FACTOR)]
    pub divergence_factor: f64,
    /// Measure the gradient noise scale B_simple every k epochs (0: off).
    #[arg(long, default_value_t = 0)]
    pub noise_scale_every: u32,
    /// Curvature of the loss: off | init | init-and-final.
    #[arg(long, default_value = "off")]
    pub curvature: String,
    /// Also measure B_noise = tr(HΣ)/(GᵀHG) with the noise scale (needs --noise-scale-every).
    #[arg(long)]
    pub b_noise: bool,
}

impl CellArgs {
    /// The validated run configuration these flags describe.
    pub fn to_config(&self) -> Result<RunConfig, Error> {
        let dataset: DatasetKind = self.dataset.parse()?;
        let mut data = DataConfig::new(dataset, self.train_size, self.test_size);
        data.data_seed = self.data_seed;
        data.data_dir = self.data_dir.clone();
        if dataset.on_disk() {
            for (flag, given) in [
                ("dim", self.dim.is_some()),
                ("classes", self.classes.is_some()),
                ("label-noise", self.label_noise.is_some()),
                ("teacher-hidden", self.teacher_hidden.is_some()),
                ("separation", self.separation.is_some()),
            ] {
                if given {
                    return Err(Error::config(
                        flag,
                        format!("--{flag} applies to synthetic data, not {}", dataset.name()),
                    ));
                }
            }
        } else {
            if self.data_dir.is_some() {
                return Err(Error::config(
                    "data_dir",
                    format!("dataset {} is generated: it reads no files", dataset.name()),
                ));
            }
            data.dim = self.dim.or(data.dim);
            data.classes = self.classes.or(data.classes);
            data.label_noise = self.label_noise.or(data.label_noise);
            if dataset == DatasetKind::Teacher {
                data.teacher_hidden = self.teacher_hidden.or(data.teacher_hidden);
            } else if self.teacher_hidden.is_some() {
                return Err(Error::config(
                    "teacher_hidden",
                    "applies to the teacher data set",
                ));
            }
            if dataset == DatasetKind::GaussianMixture {
                data.separation = self.separation.or(data.separation);
            } else if self.separation.is_some() {
                return Err(Error::config(
                    "separation",
                    "applies to the gaussian-mixture data set",
                ));
            }
        }
        let schedule: Schedule = self.schedule.parse()?;
        let budget = match (self.epochs, self.steps) {
            (_, Some(s)) => Budget::Steps(s),
            (Some(e), None) => Budget::Epochs(e),
            (None, None) => Budget::Epochs(20),
        };
        let cfg = RunConfig {
            trainer_version: TRAINER_VERSION,
            data,
            model: ModelConfig {
                kind: self.model.parse()?,
                hidden: self.hidden.clone(),
            },
            lr: self.lr,
            batch_size: self.batch_size,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            budget,
            schedule,
            seed: self.seed,
            noise_scale: None,
            divergence_factor: self.divergence_factor,
            warmup_epochs: self.warmup_epochs,
            instruments: Instruments {
                noise_scale_every: self.noise_scale_every,
                curvature: self.curvature.parse()?,
                b_noise: self.b_noise,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

pub(super) async fn run(args: CellArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.to_config()?;
    let stop = super::stop_on_signal();
    let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        // Files stand in the run id by their content hash, as in a sweep: the id printed is
        // the one a sweep stores for the same cell on the same files.
        cfg.data.fingerprint = crate::train::data::fingerprint(&cfg.data)?;
        let data = crate::train::data::load(&cfg.data)?;
        let stdout = std::io::stdout();
        let mut sink = |m: &EpochMetrics| -> crate::Result<()> {
            let line = serde_json::to_string(m).unwrap_or_default();
            let mut out = stdout.lock();
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| Error::io("<stdout>", e))
        };
        let outcome = crate::train::train(&cfg, &data, &mut sink, &stop)?;
        Ok((cfg.run_id(), outcome))
    })
    .await
    .context("training thread")??;
    let (run_id, outcome) = outcome;
    if outcome.state == RunState::Stopped {
        return Err(Error::Interrupted.into());
    }
    let mut summary = serde_json::to_value(&outcome)?;
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("summary".into(), true.into());
        obj.insert("run_id".into(), run_id.into());
    }
    outln!("{summary}")?;
    Ok(ExitCode::SUCCESS)
}
