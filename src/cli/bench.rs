//! `scalelab bench`.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::table;
use crate::bench::{self, BenchRow};
use crate::config::{ModelConfig, ModelKind};
use crate::error::Error;
use crate::train::isa::Isa;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    /// Aligned columns.
    Table,
    /// One JSON object per line (fields as bench/torch_reference.py).
    Json,
}

/// Models the benchmark can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// MLP 784 → hidden → 10.
    Mlp,
    /// Two conv blocks (hidden, 2·hidden channels) on 28×28 inputs.
    Cnn,
}

/// `scalelab bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Batch sizes to time.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16,32,64,128,256,512,1024"
    )]
    pub batch_sizes: Vec<usize>,
    /// The model.
    #[arg(long, value_enum, default_value_t = BenchModel::Mlp)]
    pub model: BenchModel,
    /// Hidden width (mlp) or first block's channels (cnn; default 8).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seconds to spend timing each batch size (about).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BenchFormat::Table)]
    pub format: BenchFormat,
}

pub(super) async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        return Err(
            Error::config("batch-sizes", "give positive batch sizes, e.g. 16,32,64").into(),
        );
    }
    if let Some(&b) = args.batch_sizes.iter().find(|&&b| b > bench::POOL) {
        return Err(Error::config(
            "batch-sizes",
            format!(
                "{b} is larger than the benchmark's pool of {} examples",
                bench::POOL
            ),
        )
        .into());
    }
    if args.hidden == Some(0) {
        return Err(Error::config("hidden", "must be at least 1, got 0").into());
    }
    if args.threads == 0 {
        return Err(Error::config("threads", "must be at least 1, got 0").into());
    }
    // More threads than this only queue for the cores (a thousand took minutes to start).
    let cores = crate::scheduler::default_jobs();
    if args.threads > 4 * cores {
        return Err(Error::config(
            "threads",
            format!(
                "must be at most 4 × the {cores} cores ({}), got {}",
                4 * cores,
                args.threads
            ),
        )
        .into());
    }
    // A network no machine here could hold is refused before anything is allocated.
    let (kind, shape, hidden) = match args.model {
        BenchModel::Mlp => (
            ModelKind::Mlp,
            [784].to_vec(),
            [args.hidden.unwrap_or(800)].to_vec(),
        ),
        BenchModel::Cnn => {
            let c = args.hidden.unwrap_or(8);
            (
                ModelKind::Cnn,
                [1, 28, 28].to_vec(),
                [c, c.saturating_mul(2)].to_vec(),
            )
        }
    };
    let hidden = hidden
        .into_iter()
        .map(u32::try_from)
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| {
            Error::config(
                "hidden",
                format!("must be at most {}, got {:?}", u32::MAX / 2, args.hidden),
            )
        })?;
    let largest = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let model = ModelConfig { kind, hidden };
    crate::train::memory::check(
        "hidden",
        &format!(
            "the benchmark's {} of widths {:?} at batch size {largest}",
            kind.name(),
            model.hidden
        ),
        crate::train::model::memory_needed(&model, &shape, 10, largest),
    )?;
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(Error::config(
            "seconds",
            format!("must be a number > 0, got {}", args.seconds),
        )
        .into());
    }
    // `main` has set the compute threads (RAYON_NUM_THREADS) from --threads before start-up.
    let threads = args.threads;
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, Vec<BenchRow>)> {
        let peak = bench::matmul_peak()?;
        let mut rows = Vec::new();
        for &b in &args.batch_sizes {
            let r = match args.model {
                BenchModel::Mlp => {
                    let h = args.hidden.unwrap_or(800);
                    bench::bench_mlp(h, b, args.seconds, peak, threads)?
                }
                BenchModel::Cnn => {
                    let c = args.hidden.unwrap_or(8);
                    bench::bench_cnn(c, b, args.seconds, peak, threads)?
                }
            };
            if args.format == BenchFormat::Json {
                outln!("{}", serde_json::to_string(&r)?)?;
            }
            rows.push(r);
        }
        Ok((peak, rows))
    })
    .await??;
    let (peak, rows) = rows;
    if args.format == BenchFormat::Json {
        outln!(
            "{}",
            serde_json::json!({
                "engine": "scalelab",
                "threads": threads,
                "matmul_peak_gflops": peak,
                "kernels": Isa::detected().to_string(),
                "cpu": crate::provenance::cpu_model(),
            })
        )?;
    } else {
        outln!(
            "matmul peak (f32, {threads} thread{}): {peak:.1} GFLOP/s; {} kernels on {}",
            if threads == 1 { "" } else { "s" },
            Isa::detected(),
            crate::provenance::cpu_model().unwrap_or("an unnamed processor")
        )?;
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.batch_size.to_string(),
                    format!("{:.1}", r.steps_per_s),
                    format!("{:.0}", r.samples_per_s),
                    format!("{:.3}", r.step_gflop),
                    format!("{:.1}", r.gflops),
                    format!("{:.0}%", 100.0 * r.peak_fraction),
                ]
            })
            .collect();
        outln!(
            "{}",
            table(
                &[
                    "batch",
                    "steps/s",
                    "samples/s",
                    "GFLOP/step",
                    "GFLOP/s",
                    "of peak"
                ],
                &body
            )
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
