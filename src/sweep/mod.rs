//! Sweeps: a TOML file → a validated, resolved sweep → its cells, each a [`RunConfig`] whose
//! content hash is the run id. Every value is checked before anything is enqueued.

pub mod spec;

use std::collections::HashMap;
use std::path::Path;

use toml::{Spanned, Value};

use crate::config::{
    Budget, DEFAULT_DIVERGENCE_FACTOR, DataConfig, DatasetKind, ModelConfig, ModelKind, RunConfig,
    Schedule, TRAINER_VERSION, lr_for_noise_scale,
};
use crate::error::{Error, Result};
use spec::{Source, SweepFile};

/// Metrics a sweep can be fitted on.
pub const METRICS: [&str; 6] = [
    "test_acc",
    "test_loss",
    "train_loss",
    "train_acc",
    "gap_loss",
    "gap_acc",
];
/// Rules that reduce a run's curve to one number.
pub const SELECTS: [&str; 3] = ["final", "best", "median-last-5"];

/// A parsed, validated and expanded sweep.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Its name.
    pub name: String,
    /// Free text from the file.
    pub description: String,
    /// The file it came from, as given.
    pub path: String,
    /// The file's text, stored with the sweep.
    pub spec: String,
    /// BLAKE3 of the text (first 16 hex digits).
    pub spec_hash: String,
    /// The metric fits use by default.
    pub metric: String,
    /// How a run's curve is reduced by default.
    pub select: String,
    /// The axes and their values, in expansion order (outermost first), for display.
    pub axes: Vec<(String, Vec<String>)>,
    /// The cells, seeds outermost so that one full replicate of the grid comes first.
    pub cells: Vec<RunConfig>,
    /// Cells dropped because B > N (`skip_batch_above_n = true`).
    pub skipped: usize,
}

/// Reads, validates and expands a sweep file.
pub fn load_sweep(path: &Path) -> Result<Sweep> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_sweep(&path.display().to_string(), &text)
}

/// The identity of a sweep file's text as stored in `sweeps.spec_hash`: the first 16 hex digits
/// of its BLAKE3 hash.
pub fn spec_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

/// Validates and expands a sweep given its text (`path` is only used in messages).
pub fn parse_sweep(path: &str, text: &str) -> Result<Sweep> {
    let src = Source { path, text };
    let file = src.parse()?;
    expand(&src, &file)
}

fn opt<T>(
    v: &Option<Spanned<Value>>,
    default: Vec<T>,
    f: impl FnOnce(&Spanned<Value>) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    match v {
        Some(v) => f(v),
        None => Ok(default),
    }
}

fn fmt_list<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
    v.iter().map(|x| format!("{x:?}")).collect()
}

/// One cell's axis values, named, for error messages.
fn describe(cfg: &RunConfig) -> String {
    format!(
        "train_size={} hidden={:?} schedule={} momentum={} lr={} batch_size={} seed={}",
        cfg.data.train_size,
        cfg.model.hidden,
        cfg.schedule.label(),
        cfg.momentum + 0.0, // −0.0 shows as 0, as its run id reads it
        cfg.lr,
        cfg.batch_size,
        cfg.seed
    )
}

/// Why `[]` cannot stand for a network's hidden widths.
const NO_HIDDEN_LAYER: &str = "[] would be a network without a hidden layer, which scalelab does \
                               not train: give each network at least one width, as [128]";

/// The longest sweep name: it names a folder (`reports/<name>/`), and every common file system
/// takes names of up to 255 bytes; 200 leaves a margin.
const MAX_NAME: usize = 200;

fn expand(src: &Source, f: &SweepFile) -> Result<Sweep> {
    let name = f.name.get_ref().trim().to_string();
    // It names a folder (`reports/<name>/`: "." or ".." would be the reports folder or its
    // parent) and is given as a positional argument (a leading '-' reads as an option).
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(src.error(
            f.name.span(),
            format!(
                "sweep name {name:?} must start with a letter, digit or '_' and use only \
                 letters, digits, '-', '_' and '.' (it names a folder of reports)"
            ),
        ));
    }
    // A folder name longer than file systems allow (255 bytes) was accepted, the sweep trained,
    // and its report then failed with "File name too long".
    if name.len() > MAX_NAME {
        return Err(src.error(
            f.name.span(),
            format!(
                "sweep name of {} characters: at most {MAX_NAME} (it names a folder of reports)",
                name.len()
            ),
        ));
    }

    // [data]
    let d = &f.data;
    let datasets: Vec<DatasetKind> = opt(&d.dataset, vec!["teacher".to_string()], |v| {
        src.strings("dataset", v)
    })?
    .iter()
    .map(|s| {
        s.parse::<DatasetKind>()
            .map_err(|e| src.error(d.dataset.as_ref().map_or(0..0, |v| v.span()), e))
    })
    .collect::<Result<_>>()?;
    let train_sizes = match &d.train_size {
        Some(v) => src.integers("train_size", v)?,
        None => {
            return Err(Error::Sweep(format!(
                "{}: [data] needs `train_size` (N, the number of training examples)",
                src.path
            )));
        }
    };
    let test_sizes = opt(&d.test_size, vec![1000], |v| src.integers("test_size", v))?;
    let data_seeds = opt(&d.data_seed, vec![0], |v| src.integers("data_seed", v))?;
    let dims: Vec<Option<u32>> = opt(&d.dim, vec![None], |v| {
        Ok(src.u32s("dim", v)?.into_iter().map(Some).collect())
    })?;
    let classes: Vec<Option<u32>> = opt(&d.classes, vec![None], |v| {
        Ok(src.u32s("classes", v)?.into_iter().map(Some).collect())
    })?;
    let noises: Vec<Option<f64>> = opt(&d.label_noise, vec![None], |v| {
        Ok(src
            .numbers("label_noise", v)?
            .into_iter()
            .map(Some)
            .collect())
    })?;
    let teacher_hidden: Vec<Option<u32>> = opt(&d.teacher_hidden, vec![None], |v| {
        Ok(src
            .u32s("teacher_hidden", v)?
            .into_iter()
            .map(Some)
            .collect())
    })?;
    let separations: Vec<Option<f64>> = opt(&d.separation, vec![None], |v| {
        Ok(src
            .numbers("separation", v)?
            .into_iter()
            .map(Some)
            .collect())
    })?;
    // A key that none of the sweep's data sets reads would be silently ignored (`train`
    // refuses the same flags); with `dataset` an axis, one data set that reads it is enough.
    let names = || {
        datasets
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (key, span, used, by) in [
        (
            "teacher_hidden",
            d.teacher_hidden.as_ref().map(|v| v.span()),
            datasets.contains(&DatasetKind::Teacher),
            "the teacher data set",
        ),
        (
            "separation",
            d.separation.as_ref().map(|v| v.span()),
            datasets.contains(&DatasetKind::GaussianMixture),
            "the gaussian-mixture data set",
        ),
        (
            "data_dir",
            d.data_dir.as_ref().map(|v| v.span()),
            datasets.iter().any(|d| d.on_disk()),
            "data sets read from files",
        ),
    ] {
        if let Some(span) = span
            && !used
        {
            return Err(src.error(
                span,
                format!("`{key}` applies to {by}, and this sweep's is {}", names()),
            ));
        }
    }
    let data_dir = match &d.data_dir {
        Some(dir) => {
            let p = Path::new(dir.get_ref());
            if !p.is_dir() {
                return Err(src.error(
                    dir.span(),
                    format!(
                        "data_dir {:?} does not exist or is not a directory",
                        dir.get_ref()
                    ),
                ));
            }
            // Stored absolute, so a worker in another directory finds the files.
            let abs = std::fs::canonicalize(p).map_err(|e| Error::io(p, e))?;
            Some(abs.to_string_lossy().into_owned())
        }
        None => None,
    };
    for ds in &datasets {
        if ds.on_disk() && data_dir.is_none() {
            return Err(Error::Sweep(format!(
                "{}: dataset {} reads files: [data] needs `data_dir`",
                src.path,
                ds.name()
            )));
        }
        if ds.on_disk() {
            for (key, given) in [
                ("dim", d.dim.as_ref()),
                ("classes", d.classes.as_ref()),
                ("label_noise", d.label_noise.as_ref()),
                ("teacher_hidden", d.teacher_hidden.as_ref()),
                ("separation", d.separation.as_ref()),
            ] {
                if let Some(v) = given {
                    return Err(src.error(
                        v.span(),
                        format!("`{key}` applies to synthetic data, not {}", ds.name()),
                    ));
                }
            }
        }
    }

    // [model]
    let m = &f.model;
    let kinds: Vec<ModelKind> = opt(&m.kind, vec!["mlp".to_string()], |v| src.strings("kind", v))?
        .iter()
        .map(|s| {
            s.parse::<ModelKind>()
                .map_err(|e| src.error(m.kind.as_ref().map_or(0..0, |v| v.span()), e))
        })
        .collect::<Result<_>>()?;
    let hiddens: Vec<Vec<u32>> = match &m.hidden {
        None => vec![vec![800]],
        Some(v) => match v.get_ref() {
            Value::Array(items) if items.iter().all(|x| matches!(x, Value::Array(_))) => {
                if items.is_empty() {
                    return Err(src.error(v.span(), format!("`hidden = []`: {NO_HIDDEN_LAYER}")));
                }
                items
                    .iter()
                    .map(|x| match x {
                        // It read as "an empty axis", of an axis with elements.
                        Value::Array(widths) if widths.is_empty() => {
                            Err(src.error(v.span(), format!("`hidden`: {NO_HIDDEN_LAYER}")))
                        }
                        _ => src.u32s("hidden", &Spanned::new(v.span(), x.clone())),
                    })
                    .collect::<Result<_>>()?
            }
            _ => vec![src.u32s("hidden", v)?],
        },
    };

    // [train]
    let t = &f.train;
    let (lrs, from_noise) = match (&t.lr, &t.noise_scale) {
        (Some(_), Some(g)) => {
            return Err(src.error(
                g.span(),
                "give `lr` or `noise_scale`, not both (with noise_scale, lr is derived per cell)",
            ));
        }
        (Some(v), None) => (src.numbers("lr", v)?, false),
        (None, Some(v)) => (src.numbers("noise_scale", v)?, true),
        (None, None) => {
            return Err(Error::Sweep(format!(
                "{}: [train] needs `lr` (or `noise_scale`)",
                src.path
            )));
        }
    };
    let lr_key = if from_noise { "noise_scale" } else { "lr" };
    let lr_span =
        t.lr.as_ref()
            .or(t.noise_scale.as_ref())
            .map_or(0..0, |v| v.span());
    if let Some(bad) = lrs.iter().find(|&&x| x <= 0.0) {
        return Err(src.error(lr_span, format!("`{lr_key}` must be > 0, got {bad}")));
    }
    let batches = src.integers("batch_size", &t.batch_size)?;
    if batches.contains(&0) {
        return Err(src.error(t.batch_size.span(), "`batch_size` must be ≥ 1, got 0"));
    }
    let momenta = opt(&t.momentum, vec![0.0], |v| src.numbers("momentum", v))?;
    if let Some(bad) = momenta.iter().find(|&&x| !(0.0..1.0).contains(&x)) {
        return Err(src.error(
            t.momentum.as_ref().map_or(0..0, |v| v.span()),
            format!("`momentum` must be in [0, 1), got {bad}"),
        ));
    }
    let nesterovs = opt(&t.nesterov, vec![false], |v| src.bools("nesterov", v))?;
    let decays = opt(&t.weight_decay, vec![0.0], |v| {
        src.numbers("weight_decay", v)
    })?;
    let budget = match (&t.epochs, &t.steps) {
        (Some(_), Some(s)) => {
            return Err(src.error(s.span(), "give `epochs` or `steps`, not both"));
        }
        (Some(v), None) => one_integer(src, "epochs", v).map(Budget::Epochs)?,
        (None, Some(v)) => one_integer(src, "steps", v).map(Budget::Steps)?,
        (None, None) => Budget::Epochs(20),
    };
    if budget.amount() == 0 {
        let span = t
            .epochs
            .as_ref()
            .or(t.steps.as_ref())
            .map_or(0..0, |v| v.span());
        return Err(src.error(span, format!("`{}` must be ≥ 1, got 0", budget.kind())));
    }
    let seeds: Vec<u64> = match &t.seeds {
        None => vec![1],
        Some(v) => match v.get_ref() {
            Value::Integer(k) if *k > spec::MAX_AXIS as i64 => {
                return Err(src.error(
                    v.span(),
                    format!(
                        "`seeds` must be at most {} (a sweep has at most that many cells), got {k}",
                        spec::MAX_AXIS
                    ),
                ));
            }
            Value::Integer(k) if *k >= 1 => (1..=*k as u64).collect(),
            Value::Integer(k) => {
                return Err(src.error(v.span(), format!("`seeds` must be ≥ 1, got {k}")));
            }
            // A scalar is a count, a list names seeds: a float such as 3.0 could mean seeds
            // 1, 2, 3 or seed 3, and each reading has been meant.
            Value::Float(x) => {
                return Err(src.error(
                    v.span(),
                    format!(
                        "`seeds` is a count K (seeds 1..=K) or a list of seeds, got {x:?}: \
                         write an integer such as 3, or a list such as [3]"
                    ),
                ));
            }
            _ => src.integers("seeds", v)?,
        },
    };
    let schedules = match &t.schedule {
        None => vec![Schedule::Constant],
        Some(v) => schedules(src, v, budget)?,
    };
    let divergence = match &t.divergence_factor {
        None => DEFAULT_DIVERGENCE_FACTOR,
        Some(v) => {
            let x = src.numbers("divergence_factor", v)?;
            match x[..] {
                [x] => x,
                _ => return Err(src.error(v.span(), "`divergence_factor` takes one number")),
            }
        }
    };

    // [eval]
    let metric = match &f.eval.metric {
        Some(s) if !METRICS.contains(&s.get_ref().as_str()) => {
            return Err(src.error(
                s.span(),
                format!(
                    "unknown metric {:?} (expected one of {METRICS:?})",
                    s.get_ref()
                ),
            ));
        }
        Some(s) => s.get_ref().clone(),
        None => "test_acc".to_string(),
    };
    let select = match &f.eval.select {
        Some(s) if !SELECTS.contains(&s.get_ref().as_str()) => {
            return Err(src.error(
                s.span(),
                format!(
                    "unknown select rule {:?} (expected one of {SELECTS:?})",
                    s.get_ref()
                ),
            ));
        }
        Some(s) => s.get_ref().clone(),
        None => "final".to_string(),
    };

    // [instruments]
    let instruments = crate::config::Instruments {
        noise_scale_every: f
            .instruments
            .noise_scale_every
            .as_ref()
            .map_or(0, |v| *v.get_ref()),
        curvature: match &f.instruments.curvature {
            Some(c) => c
                .get_ref()
                .parse()
                .map_err(|e: Error| src.error(c.span(), e.to_string()))?,
            None => crate::config::CurvatureWhen::Off,
        },
        b_noise: f.instruments.b_noise.as_ref().is_some_and(|v| *v.get_ref()),
    };
    if let Some(b) = &f.instruments.b_noise
        && instruments.b_noise
        && instruments.noise_scale_every == 0
    {
        return Err(src.error(
            b.span(),
            "`b_noise` is measured with the noise scale: set noise_scale_every to 1 or more",
        ));
    }

    let axes = vec![
        ("seed".to_string(), fmt_list(&seeds)),
        (
            "dataset".to_string(),
            datasets.iter().map(|d| d.name().to_string()).collect(),
        ),
        ("data_seed".to_string(), fmt_list(&data_seeds)),
        ("train_size".to_string(), fmt_list(&train_sizes)),
        ("test_size".to_string(), fmt_list(&test_sizes)),
        (
            "model".to_string(),
            kinds.iter().map(|k| k.name().to_string()).collect(),
        ),
        ("hidden".to_string(), fmt_list(&hiddens)),
        (
            "schedule".to_string(),
            schedules.iter().map(|s| s.label()).collect(),
        ),
        ("momentum".to_string(), fmt_list(&momenta)),
        ("nesterov".to_string(), fmt_list(&nesterovs)),
        ("weight_decay".to_string(), fmt_list(&decays)),
        (lr_key.to_string(), fmt_list(&lrs)),
        ("batch_size".to_string(), fmt_list(&batches)),
    ];

    // Fingerprints of on-disk data, computed once per data set, and the sizes checked against
    // what the files hold (else every such run would fail at train time).
    let mut fingerprints: HashMap<DatasetKind, Option<String>> = HashMap::new();
    for &ds in &datasets {
        let mut probe = DataConfig::new(ds, 1, 1);
        probe.data_dir = data_dir.clone();
        let disk = crate::train::data::inspect(&probe)
            .map_err(|e| Error::Sweep(format!("{}: {e}", src.path)))?;
        if let (Some(disk), Some(dir)) = (&disk, &d.data_dir) {
            for (key, sizes, given, held, which, files) in [
                (
                    "train_size",
                    &train_sizes,
                    d.train_size.as_ref(),
                    disk.train_examples,
                    "training",
                    disk.train_files,
                ),
                (
                    "test_size",
                    &test_sizes,
                    d.test_size.as_ref(),
                    disk.test_examples,
                    "test",
                    disk.test_files,
                ),
            ] {
                if let Some(&n) = sizes.iter().find(|&&n| n > held) {
                    let message = format!(
                        "{key} {n}{}: data_dir {:?} holds {held} {which} examples ({files})",
                        if given.is_some() {
                            ""
                        } else {
                            " (the default)"
                        },
                        dir.get_ref(),
                    );
                    return Err(match given {
                        Some(v) => src.error(v.span(), message),
                        None => Error::Sweep(format!("{}: {message}", src.path)),
                    });
                }
            }
        }
        fingerprints.insert(ds, disk.map(|d| d.fingerprint));
    }

    let lens = [
        seeds.len(),
        datasets.len(),
        data_seeds.len(),
        train_sizes.len(),
        test_sizes.len(),
        dims.len(),
        classes.len(),
        noises.len(),
        teacher_hidden.len(),
        separations.len(),
        kinds.len(),
        hiddens.len(),
        schedules.len(),
        momenta.len(),
        nesterovs.len(),
        decays.len(),
        lrs.len(),
        batches.len(),
    ];
    // The grid's size before it is expanded: a product of axes can be astronomically large.
    let size = lens
        .iter()
        .try_fold(1usize, |n, &len| n.checked_mul(len))
        .filter(|&n| n <= spec::MAX_AXIS);
    if size.is_none() {
        let product = lens.iter().map(|&l| l as f64).product::<f64>();
        return Err(Error::Sweep(format!(
            "{}: the grid has {product:.3e} cells ({}); a sweep has at most {}",
            src.path,
            lens.iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(" × "),
            spec::MAX_AXIS
        )));
    }
    let mut cells = Vec::new();
    let mut skipped = 0;
    for idx in Odometer::new(&lens) {
        let [
            s,
            ds,
            dseed,
            n,
            m,
            dim,
            cls,
            noise,
            th,
            sep,
            kind,
            hid,
            sch,
            mom,
            nes,
            wd,
            lr,
            b,
        ] = idx[..]
        else {
            unreachable!("the odometer yields one index per axis");
        };
        let (train_size, batch, momentum) = (train_sizes[n], batches[b], momenta[mom]);
        if batch > train_size && t.skip_batch_above_n {
            skipped += 1;
            continue;
        }
        let dataset = datasets[ds];
        let mut data = DataConfig::new(dataset, train_size, test_sizes[m]);
        data.data_seed = data_seeds[dseed];
        data.dim = dims[dim].or(data.dim);
        data.classes = classes[cls].or(data.classes);
        data.label_noise = noises[noise].or(data.label_noise);
        data.teacher_hidden = teacher_hidden[th].or(data.teacher_hidden);
        data.separation = separations[sep].or(data.separation);
        data.fill_defaults();
        data.data_dir = data_dir.clone();
        data.fingerprint = fingerprints.get(&dataset).cloned().flatten();
        let (lr, g) = if from_noise {
            let derived = lr_for_noise_scale(lrs[lr], train_size, batch, momentum);
            (spec::round_sig(derived), Some(lrs[lr]))
        } else {
            (lrs[lr], None)
        };
        let cfg = RunConfig {
            trainer_version: TRAINER_VERSION,
            data,
            model: ModelConfig {
                kind: kinds[kind],
                hidden: hiddens[hid].clone(),
            },
            lr,
            batch_size: batch,
            momentum,
            nesterov: nesterovs[nes],
            weight_decay: decays[wd],
            budget,
            schedule: schedules[sch].clone(),
            seed: seeds[s],
            noise_scale: g,
            divergence_factor: divergence,
            warmup_epochs: t.warmup_epochs.as_ref().map_or(0, |w| *w.get_ref()),
            instruments,
        };
        cfg.validate().map_err(|e| {
            let hint = if e.to_string().contains("larger than the training set") {
                " (set `skip_batch_above_n = true` under [train] to drop such cells)"
            } else {
                ""
            };
            Error::Sweep(format!("{}: cell {}: {e}{hint}", src.path, describe(&cfg)))
        })?;
        cells.push(cfg);
    }
    if cells.is_empty() {
        return Err(Error::Sweep(format!(
            "{}: the sweep has no cells ({skipped} dropped because batch_size > train_size)",
            src.path
        )));
    }
    // Two axis values that resolve to the same config would be one run counted twice.
    let mut seen = std::collections::HashSet::new();
    for c in &cells {
        if !seen.insert(c.run_id()) {
            return Err(Error::Sweep(format!(
                "{}: cell {} appears twice (repeated axis values?)",
                src.path,
                describe(c)
            )));
        }
    }
    Ok(Sweep {
        name,
        description: f.description.clone(),
        path: src.path.to_string(),
        spec: src.text.to_string(),
        spec_hash: spec_hash(src.text),
        metric,
        select,
        axes,
        cells,
        skipped,
    })
}

/// Every combination of one index per axis, last axis fastest (row-major order).
struct Odometer {
    lens: Vec<usize>,
    next: Option<Vec<usize>>,
}

impl Odometer {
    fn new(lens: &[usize]) -> Self {
        let next = (!lens.contains(&0)).then(|| vec![0; lens.len()]);
        Odometer {
            lens: lens.to_vec(),
            next,
        }
    }
}

impl Iterator for Odometer {
    type Item = Vec<usize>;
    fn next(&mut self) -> Option<Vec<usize>> {
        let current = self.next.take()?;
        let mut succ = current.clone();
        for i in (0..succ.len()).rev() {
            succ[i] += 1;
            if succ[i] < self.lens[i] {
                self.next = Some(succ);
                break;
            }
            succ[i] = 0;
        }
        Some(current)
    }
}

fn one_integer(src: &Source, key: &str, v: &Spanned<Value>) -> Result<u64> {
    match src.integers(key, v)?[..] {
        [x] => Ok(x),
        _ => Err(src.error(v.span(), format!("`{key}` takes one number, not an axis"))),
    }
}

/// `schedule = "constant"`, `{ kind = "...", milestones = [...], factor = k }`, or a list.
///
/// Each is checked at its position in the file: its factor and fractions, and, under an epoch
/// budget, the epochs its milestones land on (under a step budget those depend on N and B, so
/// each cell checks them).
fn schedules(src: &Source, v: &Spanned<Value>, budget: Budget) -> Result<Vec<Schedule>> {
    let one =
        |x: &Value| -> Result<Schedule> {
            match x {
            Value::String(s) if s == "constant" => Ok(Schedule::Constant),
            Value::String(s) => Err(src.error(
                v.span(),
                format!(
                    "unknown schedule {s:?}: use \"constant\" or a table {{ kind = \"decay-lr\" | \
                     \"increase-batch\" | \"hybrid\", milestones = [...], factor = k }}"
                ),
            )),
            // serde's `deny_unknown_fields` does not reach the unit variant of a tagged enum:
            // `{ kind = "constant", factor = 5 }` passed with its factor ignored.
            Value::Table(t) if t.get("kind").and_then(Value::as_str) == Some("constant")
                && t.len() > 1 =>
            {
                let extra: Vec<String> =
                    t.keys().filter(|k| *k != "kind").map(|k| format!("`{k}`")).collect();
                Err(src.error(
                    v.span(),
                    format!(
                        "schedule: the constant schedule takes no parameters, got {}",
                        extra.join(", ")
                    ),
                ))
            }
            Value::Table(t) => {
                let s: Schedule = Value::Table(t.clone()).try_into().map_err(|e: toml::de::Error| {
                    src.error(v.span(), format!("schedule: {}", e.message().trim()))
                })?;
                Ok(s)
            }
            other => Err(src.error(
                v.span(),
                format!(
                    "schedule is {}, expected a name or a table",
                    spec::a_type(other.type_str())
                ),
            )),
        }
        };
    let list = match v.get_ref() {
        Value::Array(items) if items.is_empty() => {
            return Err(src.error(v.span(), "`schedule` is an empty axis"));
        }
        Value::Array(items) => items.iter().map(one).collect::<Result<Vec<_>>>()?,
        x => vec![one(x)?],
    };
    for s in &list {
        s.validate()
            .map_err(|e| src.error(v.span(), e.to_string()))?;
        if let Budget::Epochs(_) = budget {
            let probe = RunConfig {
                schedule: s.clone(),
                budget,
                ..crate::config::example_config()
            };
            probe
                .check_milestone_epochs()
                .map_err(|e| src.error(v.span(), e.to_string()))?;
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
name = "t"
[data]
train_size = [100, 200]
test_size = 50
[model]
hidden = [16]
[train]
lr = { logspace = [0.01, 1.0], num = 3 }
batch_size = { pow2 = [8, 64] }
momentum = [0.0, 0.9]
epochs = 2
seeds = 2
"#;

    #[test]
    fn grid_expands_with_seeds_outermost_and_distinct_ids() {
        let s = parse_sweep("t.toml", OK).unwrap();
        assert_eq!(s.cells.len(), 2 * 2 * 2 * 3 * 4);
        assert!(s.cells[..48].iter().all(|c| c.seed == 1));
        assert_eq!(s.cells[0].lr, 0.01);
        assert_eq!(s.cells[0].batch_size, 8);
        assert_eq!(s.cells[1].batch_size, 16);
        let ids: std::collections::HashSet<_> = s.cells.iter().map(|c| c.run_id()).collect();
        assert_eq!(ids.len(), s.cells.len());
        // Same text, same cells.
        let again = parse_sweep("t.toml", OK).unwrap();
        assert_eq!(again.cells, s.cells);
    }

    #[test]
    fn noise_scale_axis_derives_the_learning_rate() {
        let text = OK.replace(
            "lr = { logspace = [0.01, 1.0], num = 3 }",
            "noise_scale = [100]",
        );
        let s = parse_sweep("t.toml", &text).unwrap();
        for c in &s.cells {
            let want = 100.0 * c.batch_size as f64 * (1.0 - c.momentum) / c.data.train_size as f64;
            assert!((c.lr - want).abs() < 1e-12 * want);
            assert_eq!(c.noise_scale, Some(100.0));
        }
    }

    fn err(text: &str) -> String {
        parse_sweep("bad.toml", text).unwrap_err().to_string()
    }

    /// Regression: `hidden = [[16], []]` was "an empty axis", of an axis with two elements;
    /// each spelling of a network without hidden widths now says what it would be.
    #[test]
    fn an_empty_width_list_says_it_is_a_network_without_hidden_layers() {
        for hidden in ["[[16], []]", "[[]]", "[]"] {
            let e = err(&OK.replace("hidden = [16]", &format!("hidden = {hidden}")));
            assert!(
                e.starts_with("bad.toml:7:")
                    && e.contains("without a hidden layer")
                    && !e.contains("empty axis"),
                "{hidden}: {e}"
            );
        }
    }

    /// A name names `reports/<name>/` and is typed as a positional argument: "." and ".."
    /// wrote the report into `reports/` or the working directory itself (overwriting its
    /// `index.html`), and "-x" read as an option on the command line.
    #[test]
    fn sweep_names_that_are_not_folder_names_are_refused() {
        let name_line = OK.lines().find(|l| l.starts_with("name")).unwrap();
        for bad in ["..", ".", ".hidden", "-x.v1", "", " ", "a/b", "a b"] {
            let e = err(&OK.replace(name_line, &format!("name = {bad:?}")));
            assert!(
                e.starts_with("bad.toml:2:8: sweep name") && e.contains("must start with"),
                "{bad:?}: {e}"
            );
        }
        let long = "a".repeat(201);
        let e = err(&OK.replace(name_line, &format!("name = {long:?}")));
        assert_eq!(
            e,
            "bad.toml:2:8: sweep name of 201 characters: at most 200 (it names a folder of \
             reports)"
        );
        let longest = "a".repeat(200);
        for good in ["a", "_a", "0.v1", "smith-le.v2", "a_b-c.d", &longest] {
            let s = parse_sweep(
                "t.toml",
                &OK.replace(name_line, &format!("name = {good:?}")),
            );
            assert_eq!(s.map(|s| s.name).ok().as_deref(), Some(good));
        }
    }

    /// Sizes beyond what a sweep can hold are refused before anything is expanded: a seed
    /// count of 2⁶³ − 1 once panicked on allocation, a grid of 10¹² cells aborted, and widths of
    /// 2³² + 1 were silently trained as 1.
    #[test]
    fn huge_axes_and_grids_and_widths_are_refused_by_name() {
        let e = err(&OK.replace("seeds = 2", "seeds = 9223372036854775807"));
        assert!(
            e.starts_with("bad.toml:13:") && e.contains("`seeds` must be at most"),
            "{e}"
        );
        let e = err(&OK.replace("seeds = 2", "seeds = -1"));
        assert!(e.contains("`seeds` must be ≥ 1, got -1"), "{e}");
        // Regression: `seeds = 3.0` meant the one seed 3 where `seeds = 3` means three seeds,
        // and `seeds = 0.0` was seed 0 where `seeds = 0` is refused.
        // Regression: `epochs = -1` was "not a whole number ≥ 0", and 0 is refused too.
        let e = err(&OK.replace("epochs = 2", "epochs = -1"));
        assert!(
            e.contains("`epochs`: -1 is negative") && !e.contains('≥'),
            "{e}"
        );
        let e = err(&OK.replace("epochs = 2", "epochs = 2.5"));
        assert!(e.contains("`epochs`: 2.5 is not a whole number"), "{e}");
        for x in ["3.0", "0.0"] {
            let e = err(&OK.replace("seeds = 2", &format!("seeds = {x}")));
            assert!(
                e.starts_with("bad.toml:13:") && e.contains(&format!("got {x}")),
                "{e}"
            );
        }
        let e = err(&OK.replace("seeds = 2", "seeds = 1000000"));
        assert!(
            e.contains("the grid has 4.800e7 cells (1000000 × ") && e.contains("at most 1000000"),
            "{e}"
        );
        // Regression: this named serde's type for the section, "struct DataSection".
        let e = err(&OK.replace("[data]", "[[data]]"));
        assert!(
            e.starts_with("bad.toml:") && e.contains("`data`") && e.contains("[[section]]"),
            "{e}"
        );
        assert!(!e.contains("struct"), "{e}");
        let e = err(&OK.replace("hidden = [16]", "hidden = [4294967297]"));
        assert!(
            e.contains("`hidden`: 4294967297 is larger than 4294967295"),
            "{e}"
        );
        let e = err(&OK.replace("hidden = [16]", "hidden = [[8], [16, 4294967296]]"));
        assert!(e.contains("`hidden`: 4294967296 is larger"), "{e}");
        let e = err(&OK.replace(
            "test_size = 50",
            "test_size = 50
dim = 4294967297",
        ));
        assert!(e.contains("`dim`: 4294967297 is larger"), "{e}");
    }

    #[test]
    fn bad_files_are_rejected_with_a_position_or_the_cell() {
        let e = err(&OK.replace("seeds = 2", "seeds = 2\nbogus = 1"));
        assert!(e.starts_with("bad.toml:14:1") && e.contains("bogus"), "{e}");
        let e = err(&OK.replace("epochs = 2", "epochs = \"two\""));
        assert!(e.starts_with("bad.toml:12:") && e.contains("epochs"), "{e}");
        let e = err(&OK.replace("momentum = [0.0, 0.9]", "momentum = []"));
        assert!(
            e.starts_with("bad.toml:11:") && e.contains("empty axis"),
            "{e}"
        );
        let e = err(&OK.replace("momentum = [0.0, 0.9]", "momentum = [0.0, 1.0]"));
        assert!(
            e.starts_with("bad.toml:11:") && e.contains("momentum") && e.contains('1'),
            "{e}"
        );
        // −0.0 is 0.0: listing both is a repeated value, not a second set of runs.
        let e = err(&OK.replace("momentum = [0.0, 0.9]", "momentum = [0.0, -0.0]"));
        assert!(
            e.contains("appears twice") && e.contains("momentum=0 ") && !e.contains("=-0"),
            "{e}"
        );
        let e = err(&OK.replace("{ logspace = [0.01, 1.0], num = 3 }", "[0.1, -0.5]"));
        assert!(e.starts_with("bad.toml:9:") && e.contains("-0.5"), "{e}");
        let e = err(&OK.replace("pow2 = [8, 64]", "pow2 = [8, 128]"));
        assert!(
            e.contains("cell") && e.contains("batch_size=128") && e.contains("train_size=100"),
            "{e}"
        );
        let e = err(&OK.replace("seeds = 2", "seeds = 2\nschedule = \"cosine\""));
        assert!(e.starts_with("bad.toml:14:") && e.contains("cosine"), "{e}");
        let e = err(&OK.replace(
            "seeds = 2",
            "seeds = 2\nschedule = { kind = \"decay-lr\", milestones = [0.5], factor = 0.5 }",
        ));
        assert!(e.contains("factor"), "{e}");
        // Seeds beyond the doubles' exact whole numbers: the bound, not a rounded echo.
        let e = err(&OK.replace("seeds = 2", "seeds = [9223372036854775807]"));
        assert_eq!(
            e,
            "bad.toml:13:9: `seeds`: 9.223372036854776e18 is too large (at most 9e15)"
        );
        let e = err("name = \"x\"\n[train\n");
        assert!(e.starts_with("bad.toml:2:"), "{e}");
    }

    /// Warmup reaches every cell, joins its id only when on, and is checked at its position
    /// (a bad value) or against the cell's budget (too long).
    #[test]
    fn warmup_epochs_reach_every_cell_and_are_checked() {
        let s = parse_sweep(
            "t.toml",
            &OK.replace("seeds = 2", "seeds = 2\nwarmup_epochs = 1"),
        )
        .unwrap();
        assert!(s.cells.iter().all(|c| c.warmup_epochs == 1));
        let plain = parse_sweep("t.toml", OK).unwrap();
        assert!(plain.cells.iter().all(|c| c.warmup_epochs == 0));
        assert_ne!(s.cells[0].run_id(), plain.cells[0].run_id());
        let e = err(&OK.replace("seeds = 2", "seeds = 2\nwarmup_epochs = -1"));
        assert!(
            e.starts_with("bad.toml:14:17: `train.warmup_epochs`: invalid value"),
            "{e}"
        );
        let e = err(&OK.replace("seeds = 2", "seeds = 2\nwarmup_epochs = 3"));
        assert!(
            e.ends_with(
                "invalid warmup_epochs: 3 epochs (39 updates) is longer than the run's 2 epochs \
                 of training"
            ),
            "{e}"
        );
    }

    /// `b_noise` needs the noise scale (refused at its position without it) and joins the run's
    /// identity only when on.
    #[test]
    fn b_noise_needs_the_noise_scale_and_joins_the_runs_identity() {
        let e = err(&format!("{OK}\n[instruments]\nb_noise = true\n"));
        assert!(
            e.ends_with(
                "`b_noise` is measured with the noise scale: set noise_scale_every to 1 or more"
            ) && e.starts_with("bad.toml:"),
            "{e}"
        );
        let on = parse_sweep(
            "t.toml",
            &format!("{OK}\n[instruments]\nnoise_scale_every = 2\nb_noise = true\n"),
        )
        .unwrap();
        let off = parse_sweep(
            "t.toml",
            &format!("{OK}\n[instruments]\nnoise_scale_every = 2\nb_noise = false\n"),
        )
        .unwrap();
        let (a, b) = (on.cells[0].clone(), off.cells[0].clone());
        assert!(a.instruments.b_noise && !b.instruments.b_noise);
        assert_eq!(a.instruments.noise_scale_every, 2);
        assert_ne!(a.run_id(), b.run_id());
        // Off, it is not written into the config: runs stored before it keep their ids.
        assert!(!serde_json::to_string(&b).unwrap().contains("b_noise"));
    }

    /// Regression: keys that change nothing were accepted and ignored: parameters of the
    /// constant schedule, and data keys that none of the sweep's data sets reads (`train`
    /// refuses the same flags). Each is refused at its position; with `dataset` an axis, one
    /// data set that reads the key is enough.
    #[test]
    fn keys_that_change_nothing_are_refused_at_their_position() {
        let e = err(&OK.replace(
            "seeds = 2",
            "seeds = 2\nschedule = { kind = \"constant\", factor = 5, milestones = [0.5] }",
        ));
        assert_eq!(
            e,
            "bad.toml:14:12: schedule: the constant schedule takes no parameters, got \
             `factor`, `milestones`"
        );
        let e = err(&OK.replace(
            "seeds = 2",
            "seeds = 2\nschedule = [\"constant\", { kind = \"constant\", x = 1 }]",
        ));
        assert!(
            e.starts_with("bad.toml:14:12:") && e.ends_with("got `x`"),
            "{e}"
        );
        // The table form without parameters still parses.
        let plain = OK.replace("seeds = 2", "seeds = 2\nschedule = { kind = \"constant\" }");
        assert!(parse_sweep("t.toml", &plain).is_ok());
        let with = |data: &str| OK.replace("test_size = 50", &format!("test_size = 50\n{data}"));
        let e = err(&with(
            "dataset = \"gaussian-mixture\"\nteacher_hidden = [8, 16]",
        ));
        assert_eq!(
            e,
            "bad.toml:7:18: `teacher_hidden` applies to the teacher data set, and this \
             sweep's is gaussian-mixture"
        );
        let e = err(&with("separation = 2.0"));
        assert_eq!(
            e,
            "bad.toml:6:14: `separation` applies to the gaussian-mixture data set, and this \
             sweep's is teacher"
        );
        let e = err(&with("data_dir = \"nowhere\""));
        assert_eq!(
            e,
            "bad.toml:6:12: `data_dir` applies to data sets read from files, and this sweep's \
             is teacher"
        );
        // Both synthetic data sets on an axis: each key has a data set that reads it.
        let both = with(
            "dataset = [\"teacher\", \"gaussian-mixture\"]\nteacher_hidden = 8\nseparation = 2.0",
        );
        let s = parse_sweep("t.toml", &both).unwrap();
        let teacher = s
            .cells
            .iter()
            .find(|c| c.data.dataset == DatasetKind::Teacher)
            .unwrap();
        assert_eq!(teacher.data.teacher_hidden, Some(8));
    }

    /// Regression: `decay-lr` at 0.1 and 0.2 of 4 epochs was accepted, and its cells trained
    /// epoch 1 at ε/10 and the rest at ε/100. The error names the cell, the milestone, its
    /// epoch and the epoch count.
    #[test]
    fn milestones_that_land_on_epoch_one_or_past_the_end_are_refused_by_position_or_cell() {
        let e = err(&OK.replace("epochs = 2", "epochs = 4").replace(
            "seeds = 2",
            "seeds = 2\nschedule = { kind = \"decay-lr\", milestones = [0.1, 0.2], factor = 10 }",
        ));
        assert!(
            e.starts_with(
                "bad.toml:14:12: invalid schedule.milestones: milestone 0.1 lands on \
                 epoch 1 of 4 epochs"
            ),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        // Under a step budget the epochs depend on N and B: the cell is named. N = 100 at
        // B = 8 is 13 steps an epoch; milestone 0.5 of 20 steps lands after the last epoch.
        let e = err(&OK.replace("epochs = 2", "steps = 20").replace(
            "seeds = 2",
            "seeds = 2\nschedule = { kind = \"decay-lr\", milestones = [0.5, 0.9], factor = 10 }",
        ));
        assert!(
            e.starts_with("bad.toml: cell train_size=100 ")
                && e.contains("schedule=decay-lr(x10 @ 0.5,0.9)")
                && e.contains("batch_size=8 ")
                && e.contains(
                    "invalid schedule.milestones: milestone 0.9 lands on epoch 3, after \
                     the last of the 2 epochs of 20 steps"
                ),
            "{e}"
        );
    }

    #[test]
    fn skip_batch_above_n_drops_cells_instead() {
        let text = OK
            .replace("pow2 = [8, 64]", "pow2 = [8, 128]")
            .replace("seeds = 2", "seeds = 2\nskip_batch_above_n = true");
        let s = parse_sweep("t.toml", &text).unwrap();
        assert_eq!(s.skipped, 2 * 2 * 3);
        assert!(s.cells.iter().all(|c| c.batch_size <= c.data.train_size));
    }

    #[test]
    fn schedules_parse_as_tables_and_lists() {
        // Factor 1.5: the largest batch, 64, grows to 96 ≤ N = 100 (beyond N is refused).
        let text = OK.replace(
            "seeds = 2",
            "seeds = 1\nschedule = [\"constant\", { kind = \"increase-batch\", milestones = [0.5], factor = 1.5 }]",
        );
        let s = parse_sweep("t.toml", &text).unwrap();
        let modes: std::collections::BTreeSet<_> =
            s.cells.iter().map(|c| c.schedule.mode()).collect();
        assert_eq!(
            modes.into_iter().collect::<Vec<_>>(),
            vec!["constant", "increase-batch"]
        );
    }
}
