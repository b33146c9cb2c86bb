//! `scalelab run`, `worker`, `status` and `sweep show`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;

use super::{DbArg, table};
use crate::db::{RunStatus, Store};
use crate::error::Error;
use crate::scheduler::{self, DataCache, HeadStart, SchedulerOptions, SchedulerReport};
use crate::sweep::{self, Sweep};

/// `scalelab run SWEEP.toml`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep file (or the name of a sweep already in the database).
    pub sweep: String,
    #[command(flatten)]
    pub db: DbArg,
    /// Runs trained at once, one compute thread each (default: the number of cores).
    #[arg(long, value_parser = at_least_one)]
    pub jobs: Option<usize>,
    /// Train only: skip the fits and the report.
    #[arg(long, conflicts_with = "targets")]
    pub no_report: bool,
    /// Give FAILED runs of this sweep a fresh set of retries.
    #[arg(long)]
    pub retry_failed: bool,
    /// Only register the sweep and enqueue its cells (for `scalelab worker`s to train).
    #[arg(long, conflicts_with = "targets")]
    pub enqueue_only: bool,
    /// Seconds without a heartbeat after which another process's run is presumed dead.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true, value_parser = stale_seconds)]
    pub stale_after: f64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub targets: super::analysis::TargetArg,
}

/// `--jobs`: a count of at least one and at most [`scheduler::MAX_JOBS`].
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1, got 0".into()),
        Ok(n) if n > scheduler::MAX_JOBS => {
            Err(format!("must be at most {}, got {n}", scheduler::MAX_JOBS))
        }
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The longest `--stale-after`: a week. Longer would mean never presuming a silent process
/// dead, and seconds beyond what a `Duration` holds cannot be waited for at all.
pub const MAX_STALE_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// `--stale-after`: seconds, at least three heartbeats (a shorter wait would presume this very
/// process dead between two of its own heartbeats).
fn stale_seconds(s: &str) -> Result<f64, String> {
    let least = 3.0
        * scheduler::SchedulerOptions::default()
            .heartbeat_every
            .as_secs_f64();
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (least..=MAX_STALE_SECONDS).contains(&v) => Ok(v),
        Ok(v) if v > MAX_STALE_SECONDS => Err(format!(
            "must be at most {MAX_STALE_SECONDS} seconds (a week), got {s}"
        )),
        Ok(_) => Err(format!(
            "must be at least {least} seconds (three heartbeats), got {s}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `scalelab worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Runs trained at once (default: the number of cores).
    #[arg(long, value_parser = at_least_one)]
    pub jobs: Option<usize>,
    /// Seconds without a heartbeat after which another process's run is presumed dead.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true, value_parser = stale_seconds)]
    pub stale_after: f64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `scalelab status [SWEEP]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A sweep's name or file (default: every sweep).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArg,
}

/// `scalelab sweep show SWEEP.toml` (or a stored sweep's name).
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The sweep file, or the name of a sweep stored in the database.
    pub file: PathBuf,
    #[command(flatten)]
    pub db: DbArg,
    /// List every cell, however many.
    #[arg(long)]
    pub all: bool,
}

/// Reads a sweep from its file, or from the spec stored under that name in the database.
async fn resolve_sweep(arg: &str, db: &Path) -> anyhow::Result<Sweep> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(sweep::load_sweep(path)?);
    }
    if db.is_file() {
        let store = Store::open_read_only(db).await?;
        let spec: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT spec, path FROM sweeps WHERE name = ?")
                .bind(arg)
                .fetch_optional(store.pool())
                .await
                .map_err(|e| store.err(e))?;
        store.close().await;
        if let Some((spec, file)) = spec {
            let label = file.unwrap_or_else(|| format!("<stored sweep {arg}>"));
            return Ok(sweep::parse_sweep(&label, &spec)?);
        }
    }
    if Path::new(arg).is_dir() {
        return Err(Error::Sweep(format!("{arg}: is a directory, not a sweep file")).into());
    }
    if Path::new(arg).exists() {
        // A device, a pipe or a socket (`/dev/null`): there, but not a file to read a sweep from.
        return Err(Error::Sweep(format!("{arg}: is not a regular file, not a sweep file")).into());
    }
    Err(Error::Sweep(format!(
        "{arg}: no such sweep file, and no sweep of that name in {}",
        db.display()
    ))
    .into())
}

/// Where a sweep given by file (`fit tiny.toml`, `runs --sweep tiny.toml`, …) is not the sweep
/// stored under its name (another file of the same name was run into the database since, or
/// this one was edited and not run again), says so in one line on stderr: the command shows the
/// stored sweep's runs, which are not the ones the file describes.
/// `name` is the file's sweep name ([`sweep_name`]); the file is compared by the hash of its
/// text, as `run` stores it, without being expanded again.
pub(super) async fn warn_if_file_differs(store: &Store, arg: &str, name: &str) {
    let path = Path::new(arg);
    if !(path.is_file() && arg.ends_with(".toml")) {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let stored: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT spec_hash, path FROM sweeps WHERE name = ?")
            .bind(name)
            .fetch_optional(store.pool())
            .await
            .ok()
            .flatten();
    if let Some((hash, from)) = stored
        && hash != sweep::spec_hash(&text)
    {
        eprintln!(
            "warning: {arg} differs from the sweep {name:?} stored in {} (registered from {}): \
             showing the stored sweep's runs; `scalelab run {arg}` registers this file's",
            store.path().display(),
            from.as_deref().unwrap_or("an unknown file")
        );
    }
}

/// The name of a sweep given by name or by file. A file's `name` is all that is read of it
/// (the commands that take it show the stored sweep): a file that a later scalelab checks more
/// strictly (a key that changes nothing) still names its stored, trained sweep. A file
/// without a readable name is expanded for its error.
pub(super) fn sweep_name(arg: &str) -> anyhow::Result<String> {
    let path = Path::new(arg);
    if path.is_file() && arg.ends_with(".toml") {
        let named = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("name")?.as_str().map(|n| n.trim().to_string()))
            .filter(|n| !n.is_empty());
        match named {
            Some(name) => Ok(name),
            None => Ok(sweep::load_sweep(path)?.name),
        }
    } else {
        Ok(arg.to_string())
    }
}

fn counts_line(counts: &[(RunStatus, i64)]) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many of the runs `ids` (those whose training here raised an error) are FAILED now: a
/// failed attempt retried into a result, here or by another process, is not one, nor is a run
/// another process failed meanwhile.
async fn still_failed(store: &Store, ids: &[String]) -> anyhow::Result<usize> {
    Ok(store
        .states_of(ids)
        .await?
        .values()
        .filter(|s| *s == RunStatus::Failed.as_str())
        .count())
}

/// The runs per state after the scheduler: the counts it ended on when it found nothing left to
/// do (`SchedulerReport::final_counts`), else a fresh read (of `sweep`, or of every sweep).
async fn counts_after(
    store: &Store,
    ended_on: Option<Vec<(RunStatus, i64)>>,
    sweep: Option<&str>,
) -> anyhow::Result<Vec<(RunStatus, i64)>> {
    Ok(match ended_on {
        Some(counts) => counts,
        None => store.state_counts(sweep).await?,
    })
}

fn done(counts: &[(RunStatus, i64)]) -> u64 {
    counts
        .iter()
        .filter(|(s, _)| s.is_final())
        .map(|(_, n)| *n as u64)
        .sum()
}

fn print_report(r: &SchedulerReport) -> std::io::Result<()> {
    if r.trained() == 0 && r.released == 0 {
        return Ok(());
    }
    outln!(
        "trained {} run{} in {:.1} s with {} job{}: {} completed, {} diverged, {} failed{} \
         (runs {:.1}% of job time, of which evaluation {:.1}%){}",
        r.trained(),
        if r.trained() == 1 { "" } else { "s" },
        r.wall_s,
        r.jobs,
        if r.jobs == 1 { "" } else { "s" },
        r.completed,
        r.diverged,
        r.failed,
        // A failed run is retried: each failure is an attempt (a run fails up to three times).
        match r.failed {
            0 => "",
            1 => " attempt",
            _ => " attempts",
        },
        100.0 * r.training_share(),
        if r.train_s > 0.0 {
            100.0 * r.eval_s / r.train_s
        } else {
            0.0
        },
        if r.released > 0 {
            format!("; {} interrupted runs left pending", r.released)
        } else {
            String::new()
        }
    )?;
    if r.lost > 0 {
        outln!(
            "warning: {} runs were taken over by another process after this one was presumed \
             dead; their results here were discarded",
            r.lost
        )?;
    }
    Ok(())
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Ctrl-C is caught from the start: during validation it ends the command before the
    // database is touched, during the enqueue (one transaction) once it has committed, and a
    // head start is cancelled with the rest.
    let stop = super::stop_on_signal();
    // Everything is validated before the database is touched.
    let sweep = resolve_sweep(&args.sweep, &args.db.db).await?;
    if stop.load(Ordering::SeqCst) {
        return Err(Error::Interrupted.into());
    }
    // The first cells train while the database is opened and the sweep enqueued (a slot that
    // claims one of them takes its result): only cells on generated data sets (cheap to build,
    // their identity is their parameters), as the sweep may turn out to have nothing left to
    // train. Dropping the head start cancels what is left of it.
    let data = Arc::new(DataCache::default());
    let jobs = args.jobs.unwrap_or_else(scheduler::default_jobs).max(1);
    // Only on a database this command creates (the file is made before any cell trains): on
    // an existing one a run may have killed its last process, maybe in a head start, and must
    // train under its claim so that another death is counted (`db::create_new_file`).
    let head_start = !args.enqueue_only && crate::db::create_new_file(&args.db.db);
    let head = head_start.then(|| Arc::new(HeadStart::start(&sweep.cells, jobs, &data)));
    let db = args.db.db.clone();
    super::with_store(&db, async move |store: &Store| {
        let enq = store.register_sweep(&sweep).await?;
        if args.retry_failed {
            let n = store.retry_failed(Some(&sweep.name)).await?;
            if n > 0 {
                outln!("{n} failed runs get new retries")?;
            }
        }
        let before = store.state_counts(Some(&sweep.name)).await?;
        let to_do = enq.cells - done(&before);
        outln!(
            "sweep {}: {} cells ({} new runs{}{}) in {}; {} to train",
            sweep.name,
            enq.cells,
            enq.new_runs,
            match (&enq.replaced_path, enq.spec_changed) {
                (Some(from), _) => format!(", replacing the sweep of that name from {from}"),
                (None, true) => ", sweep file changed".to_string(),
                (None, false) => String::new(),
            },
            if enq.removed > 0 {
                let s = |n: u64| if n == 1 { "" } else { "s" };
                let dropped = match enq.dropped {
                    0 => String::new(),
                    n => format!(", {n} pending run{} dropped from the queue", s(n)),
                };
                format!(
                    ", {} cell{} no longer in the sweep{dropped}",
                    enq.removed,
                    s(enq.removed)
                )
            } else {
                String::new()
            },
            args.db.db.display(),
            to_do
        )?;
        let mut interrupted = stop.load(Ordering::SeqCst);
        if args.enqueue_only && !interrupted {
            return Ok(ExitCode::SUCCESS);
        }
        let mut failed_runs = Vec::new();
        let mut final_counts = None;
        if to_do > 0 && !interrupted {
            let opts = SchedulerOptions {
                jobs,
                sweep: Some(sweep.name.clone()),
                stale_after: Duration::from_secs_f64(args.stale_after.max(1.0)),
                progress: !args.quiet,
                data,
                head: head.clone(),
                ..SchedulerOptions::default()
            };
            let report =
                scheduler::run_pending(store, &opts, stop, enq.cells, done(&before)).await?;
            print_report(&report)?;
            interrupted = report.interrupted;
            failed_runs = report.failed_runs;
            final_counts = report.final_counts;
        }
        if let Some(head) = &head {
            head.cancel_all();
        }
        let after = counts_after(store, final_counts, Some(&sweep.name)).await?;
        outln!("{}: {}", sweep.name, counts_line(&after))?;
        if interrupted {
            return Err(Error::Interrupted.into());
        }
        let count = |state: RunStatus| state.count_in(&after);
        let newly_failed = still_failed(store, &failed_runs).await?;
        if !args.no_report {
            // Failed runs make a sweep with nothing completed an error (report_sweep says so);
            // diverged ones alone do not.
            if count(RunStatus::Completed) > 0 || count(RunStatus::Failed) > 0 {
                super::analysis::fit_and_report(store, &sweep.name, &args.targets).await?;
            } else {
                // Diverged and failed runs are results too: the sweep ran, there is just
                // nothing to fit.
                outln!(
                    "{}: no completed runs, so no fits and no report (see `scalelab status {}`)",
                    sweep.name,
                    sweep.name
                )?;
            }
        }
        // The exit status says whether every run trained, with or without the report: a
        // script that runs a sweep learns of failed runs without parsing the output.
        if newly_failed > 0 {
            return Err(anyhow::anyhow!(
                "sweep {}: {newly_failed} run{} failed (their errors: scalelab status {})",
                sweep.name,
                if newly_failed == 1 { "" } else { "s" },
                sweep.name
            ));
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

pub(super) async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let stop = super::stop_on_signal();
    let db = args.db.db.clone();
    // A worker trains what a `run --enqueue-only` registered: on a path with no database (a
    // typo) it would create an empty one and report nothing to do.
    if !db.is_file() {
        return Err(Error::Db(format!(
            "no database at {} (register a sweep first: scalelab run SWEEP.toml --enqueue-only \
             --db PATH)",
            db.display()
        ))
        .into());
    }
    super::with_store(&db, async move |store: &Store| {
        let counts = store.state_counts(None).await?;
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        let opts = SchedulerOptions {
            jobs: args.jobs.unwrap_or_else(scheduler::default_jobs),
            sweep: None,
            stale_after: Duration::from_secs_f64(args.stale_after.max(1.0)),
            progress: !args.quiet,
            ..SchedulerOptions::default()
        };
        let report =
            scheduler::run_pending(store, &opts, stop, total as u64, done(&counts)).await?;
        if report.trained() == 0 && report.released == 0 {
            outln!("no pending runs in {}", args.db.db.display())?;
        }
        print_report(&report)?;
        let after = counts_after(store, report.final_counts.clone(), None).await?;
        outln!("all runs: {}", counts_line(&after))?;
        if report.interrupted {
            return Err(Error::Interrupted.into());
        }
        // As `run`: the exit status says whether the runs this worker trained ended FAILED.
        let failed = still_failed(store, &report.failed_runs).await?;
        if failed > 0 {
            return Err(anyhow::anyhow!(
                "{failed} run{} this worker trained failed (their errors: scalelab status --db {})",
                if failed == 1 { "" } else { "s" },
                args.db.db.display()
            ));
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

fn age(t: Option<f64>) -> String {
    match t {
        Some(t) => format!("{:.0} s ago", (crate::provenance::now() - t).max(0.0)),
        None => "-".to_string(),
    }
}

pub(super) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.db.db).await?;
    let name = match &args.sweep {
        Some(s) => {
            let name = sweep_name(s)?;
            warn_if_file_differs(&store, s, &name).await;
            Some(name)
        }
        None => None,
    };
    let sweeps = match &name {
        Some(n) => match store.sweep(n).await? {
            Some(s) => vec![s],
            None => {
                return Err(Error::Query(format!(
                    "no sweep named {n:?} in {}",
                    args.db.db.display()
                ))
                .into());
            }
        },
        None => store.sweeps().await?,
    };
    let mut rows = Vec::new();
    for s in &sweeps {
        let c = store.state_counts(Some(&s.name)).await?;
        let mut row = vec![s.name.clone(), s.cells.to_string()];
        row.extend(c.iter().map(|(_, n)| n.to_string()));
        rows.push(row);
    }
    let mut headers = vec!["sweep", "cells"];
    headers.extend(RunStatus::ALL.iter().map(|s| s.as_str()));
    if rows.is_empty() {
        outln!("no sweeps in {}", args.db.db.display())?;
    } else {
        outln!("{}", table(&headers, &rows))?;
    }
    let running = store.running_runs(name.as_deref()).await?;
    if !running.is_empty() {
        outln!("\nrunning:")?;
        // A claim whose process is certainly gone (this host, no such process: killed, or
        // the machine restarted) still reads `running` until a `run` or `worker` requeues it.
        let gone = |r: &crate::db::runs::RunningRun| {
            r.claimed_by
                .as_deref()
                .is_some_and(crate::provenance::claimer_is_dead)
        };
        let rows: Vec<Vec<String>> = running
            .iter()
            .map(|r| {
                let mut heartbeat = age(r.heartbeat_at);
                if gone(r) {
                    heartbeat.push_str(" (process gone)");
                }
                vec![
                    r.id.clone(),
                    format!("{:.3e}", r.lr),
                    r.batch_size.to_string(),
                    r.attempt.to_string(),
                    r.claimed_by.clone().unwrap_or_default(),
                    age(r.started_at),
                    heartbeat,
                ]
            })
            .collect();
        outln!(
            "{}",
            table(
                &[
                    "run",
                    "lr",
                    "batch",
                    "attempt",
                    "claimed by",
                    "started",
                    "heartbeat"
                ],
                &rows
            )
        )?;
        let dead = running.iter().filter(|r| gone(r)).count();
        if dead > 0 {
            outln!(
                "{dead} of these were claimed by a process of this host that is gone: \
                 `scalelab worker`, or `run` of their sweep, puts them back in the queue"
            )?;
        }
    }
    let failed = store.failed_runs(name.as_deref(), 20).await?;
    if !failed.is_empty() {
        outln!("\nfailures:")?;
        let rows: Vec<Vec<String>> = failed
            .iter()
            .map(|f| {
                vec![
                    f.id.clone(),
                    f.state.clone(),
                    f.failures.to_string(),
                    f.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        outln!("{}", table(&["run", "state", "failures", "error"], &rows))?;
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    // A file, or a stored sweep's name, as `run` takes them (it said "quickstart: No such file
    // or directory" of a sweep `run quickstart` would rerun).
    let sweep = if args.file.is_file() {
        sweep::load_sweep(&args.file)?
    } else {
        resolve_sweep(&args.file.to_string_lossy(), &args.db.db).await?
    };
    let ids: Vec<String> = sweep.cells.iter().map(|c| c.run_id()).collect();
    // No database yet: nothing enqueued. A directory or a device there is an error, as in every
    // other command (it said "8 not enqueued"), before anything is printed.
    let states = if args.db.db.exists() {
        let store = Store::open_read_only(&args.db.db).await?;
        let s = store.states_of(&ids).await?;
        store.close().await;
        s
    } else {
        Default::default()
    };
    outln!("sweep {} ({})", sweep.name, sweep.path)?;
    if !sweep.description.is_empty() {
        outln!("{}", sweep.description)?;
    }
    let axes: Vec<Vec<String>> = sweep
        .axes
        .iter()
        .map(|(k, v)| vec![k.clone(), v.len().to_string(), v.join(", ")])
        .collect();
    outln!("{}", table(&["axis", "values", ""], &axes))?;
    let updates: u64 = sweep.cells.iter().map(|c| c.planned_updates()).sum();
    outln!(
        "{} cells{}, {} parameter updates planned in all; metric {} ({})",
        sweep.cells.len(),
        if sweep.skipped > 0 {
            format!(" ({} dropped: batch_size > train_size)", sweep.skipped)
        } else {
            String::new()
        },
        updates,
        sweep.metric,
        sweep.select
    )?;
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    for id in &ids {
        let st = states
            .get(id)
            .cloned()
            .unwrap_or_else(|| "not enqueued".into());
        *tally.entry(st).or_default() += 1;
    }
    let summary: Vec<String> = tally.iter().map(|(s, n)| format!("{n} {s}")).collect();
    outln!("in {}: {}", args.db.db.display(), summary.join(", "))?;
    const LIMIT: usize = 60;
    if sweep.cells.len() <= LIMIT || args.all {
        let rows: Vec<Vec<String>> = sweep
            .cells
            .iter()
            .zip(&ids)
            .map(|(c, id)| {
                vec![
                    id.clone(),
                    c.data.train_size.to_string(),
                    format!("{:?}", c.model.hidden),
                    format!("{:.3e}", c.lr),
                    c.batch_size.to_string(),
                    format!("{}", c.momentum),
                    c.schedule.mode().to_string(),
                    c.seed.to_string(),
                    c.planned_updates().to_string(),
                    states.get(id).cloned().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        outln!(
            "{}",
            table(
                &[
                    "run", "N", "hidden", "lr", "batch", "momentum", "schedule", "seed", "updates",
                    "state"
                ],
                &rows
            )
        )?;
    } else {
        outln!("({} cells: --all lists them)", sweep.cells.len())?;
    }
    Ok(ExitCode::SUCCESS)
}
