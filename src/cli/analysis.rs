//! `scalelab fit` (and, after a sweep, the fits and the report).

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::DbArg;
use crate::db::Store;
use crate::error::Error;
use crate::fit::{FitOptions, FitReport, MetricKind, Select};

/// Output formats of `fit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FitFormat {
    /// Aligned tables.
    Table,
    /// The full report as JSON (shape in docs/fits.md).
    Json,
}

/// `scalelab fit SWEEP`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// The sweep's name or file.
    pub sweep: String,
    #[command(flatten)]
    pub db: DbArg,
    /// test_acc | test_loss | train_loss | train_acc | gap_loss | gap_acc (default: the sweep's `[eval] metric`).
    #[arg(long)]
    pub metric: Option<String>,
    /// final | best | median-last-5 (default: the sweep's `[eval] select`).
    #[arg(long)]
    pub select: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FitFormat::Table)]
    pub format: FitFormat,
    /// Bootstrap resamples for the B_opt intervals: 0 (no intervals) or at least 100.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap (the result is reproducible bit for bit).
    #[arg(long, default_value_t = 0)]
    pub bootstrap_seed: u64,
    /// Equivalence margin of the schedule comparison, in metric units.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub margin: f64,
    #[command(flatten)]
    pub targets: TargetArg,
}

/// `--target` of `fit`, `report` and `run`.
#[derive(Debug, Args)]
pub struct TargetArg {
    /// Targets of the metric for the critical batch size, comma-separated (default: three chosen
    /// from the data).
    #[arg(long = "target", value_name = "TARGETS", value_delimiter = ',', value_parser = finite_target, allow_negative_numbers = true)]
    pub targets: Vec<f64>,
}

impl TargetArg {
    /// The targets given, each once in the order given (`--target 0.7,0.7` fitted and printed
    /// the same target twice), or `None` for automatic ones.
    pub(super) fn given(&self) -> Option<Vec<f64>> {
        let mut once: Vec<f64> = Vec::with_capacity(self.targets.len());
        for &t in &self.targets {
            if !once.contains(&t) {
                once.push(t);
            }
        }
        (!once.is_empty()).then_some(once)
    }
}

/// `--target`: a finite number (a target of the metric the runs must reach).
fn finite_target(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("must be a finite number, got {s}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The fit options for a sweep: its stored defaults, overridden by the flags given.
pub(super) async fn fit_options(
    store: &Store,
    sweep: &str,
    metric: Option<&str>,
    select: Option<&str>,
) -> anyhow::Result<FitOptions> {
    let row = store.sweep(sweep).await?.ok_or_else(|| {
        Error::Query(format!(
            "no sweep named {sweep:?} in {}",
            store.path().display()
        ))
    })?;
    let metric: MetricKind = metric
        .unwrap_or(&row.metric)
        .parse()
        .map_err(|e| Error::config("metric", format!("{e}")))?;
    let select: Select = select
        .unwrap_or(&row.select_rule)
        .parse()
        .map_err(|e| Error::config("select", format!("{e}")))?;
    Ok(FitOptions {
        metric,
        select,
        ..FitOptions::default()
    })
}

pub(super) async fn fit(args: FitArgs) -> anyhow::Result<ExitCode> {
    let name = super::run::sweep_name(&args.sweep)?;
    if !(args.margin.is_finite() && args.margin > 0.0) {
        return Err(Error::config("margin", format!("must be > 0, got {}", args.margin)).into());
    }
    if (1..crate::fit::MIN_BOOTSTRAP).contains(&args.bootstrap) {
        return Err(Error::config(
            "bootstrap",
            format!(
                "--bootstrap {}: a percentile interval needs at least {} resamples (1000, the \
                 default, is the usual choice); --bootstrap 0 turns the intervals off",
                args.bootstrap,
                crate::fit::MIN_BOOTSTRAP
            ),
        )
        .into());
    }
    if args.bootstrap > crate::fit::MAX_BOOTSTRAP {
        return Err(Error::config(
            "bootstrap",
            format!(
                "--bootstrap {}: at most {} resamples (1000, the default, is the usual choice)",
                args.bootstrap,
                crate::fit::MAX_BOOTSTRAP
            ),
        )
        .into());
    }
    crate::db::require_existing(&args.db.db)?;
    let report = super::with_store_or_read_only(&args.db.db, async |store: &Store| {
        super::run::warn_if_file_differs(store, &args.sweep, &name).await;
        let mut opts =
            fit_options(store, &name, args.metric.as_deref(), args.select.as_deref()).await?;
        opts.bootstrap = args.bootstrap;
        opts.bootstrap_seed = args.bootstrap_seed;
        opts.equivalence_margin = args.margin;
        opts.targets = args.targets.given();
        let (report, stored) = crate::analysis::fit_sweep(store, &name, &opts).await?;
        if !stored {
            super::warn_not_stored(&args.db.db);
        }
        Ok(report)
    })
    .await?;
    print_fit(&report, args.format)?;
    Ok(ExitCode::SUCCESS)
}

fn print_fit(report: &FitReport, format: FitFormat) -> anyhow::Result<()> {
    match format {
        FitFormat::Table => outln!("{}", crate::fit::render_tables(report))?,
        FitFormat::Json => outln!("{}", serde_json::to_string_pretty(report)?)?,
    }
    Ok(())
}

/// `scalelab report SWEEP`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep's name or file.
    pub sweep: String,
    /// Where the figures and index go (default: reports/<sweep>/).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// test_acc | test_loss | train_loss | train_acc | gap_loss | gap_acc (default: the sweep's `[eval] metric`).
    #[arg(long)]
    pub metric: Option<String>,
    /// final | best | median-last-5 (default: the sweep's `[eval] select`).
    #[arg(long)]
    pub select: Option<String>,
    #[command(flatten)]
    pub targets: TargetArg,
    #[command(flatten)]
    pub db: DbArg,
}

/// Fits and reports a sweep; prints where the report is.
async fn write_report(
    store: &Store,
    sweep: &str,
    opts: &FitOptions,
    out: Option<std::path::PathBuf>,
    print_tables: bool,
) -> anyhow::Result<()> {
    let out = out.unwrap_or_else(|| std::path::Path::new("reports").join(sweep));
    let mut progress = |line: &str| eprintln!("  {line}");
    let (report, summary, stored) =
        crate::analysis::report_sweep(store, sweep, opts, &out, &mut progress).await?;
    if !stored {
        super::warn_not_stored(store.path());
    }
    if print_tables {
        outln!("{}", crate::fit::render_tables(&report))?;
    }
    outln!(
        "report: {} ({} figures{}; also index.md)",
        summary.index_html.display(),
        summary.figures.len(),
        if summary.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped for want of data", summary.skipped.len())
        }
    )?;
    Ok(())
}

pub(super) async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let name = super::run::sweep_name(&args.sweep)?;
    crate::db::require_existing(&args.db.db)?;
    super::with_store_or_read_only(&args.db.db, async move |store: &Store| {
        super::run::warn_if_file_differs(store, &args.sweep, &name).await;
        let mut opts =
            fit_options(store, &name, args.metric.as_deref(), args.select.as_deref()).await?;
        opts.targets = args.targets.given();
        write_report(store, &name, &opts, args.out, false).await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// After `scalelab run`: fit the sweep with its defaults (and `--target` if given), print the
/// tables, write the report.
pub(super) async fn fit_and_report(
    store: &Store,
    sweep: &str,
    targets: &TargetArg,
) -> anyhow::Result<()> {
    let mut opts = fit_options(store, sweep, None, None).await?;
    opts.targets = targets.given();
    write_report(store, sweep, &opts, None, true).await
}
