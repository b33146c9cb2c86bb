//! The scheduler: claims pending runs, trains each on a blocking thread (one compute thread per
//! job, at most `jobs` at a time), and funnels every epoch and outcome through one writer task
//! that batches database writes. Heartbeats keep claims alive; runs whose claimer died are
//! requeued; Ctrl-C stops claiming, stops running jobs at their next step, and gives them back
//! as PENDING.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::{DataConfig, RunConfig};
use crate::db::Store;
use crate::db::metrics::EpochRow;
use crate::db::runs::ClaimedRun;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::provenance;
use crate::train::data::Dataset;
use crate::train::{EpochMetrics, RunOutcome, RunState};

/// How the scheduler works.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Runs trained at once (each on one compute thread).
    pub jobs: usize,
    /// Only this sweep's runs (`None`: any pending run, as `scalelab worker`).
    pub sweep: Option<String>,
    /// A running run whose heartbeat is older than this is presumed dead and requeued.
    pub stale_after: Duration,
    /// How often heartbeats are sent.
    pub heartbeat_every: Duration,
    /// Failures after which a run stays FAILED.
    pub max_failures: i64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            jobs: default_jobs(),
            sweep: None,
            stale_after: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(5),
            max_failures: 3,
            progress: true,
        }
    }
}

/// The number of cores: one job per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What one call of [`run_pending`] did.
#[derive(Clone, Debug, Default)]
pub struct SchedulerReport {
    /// Runs trained to COMPLETED.
    pub completed: u64,
    /// Runs that DIVERGED.
    pub diverged: u64,
    /// Runs that raised an error (retried later or FAILED).
    pub failed: u64,
    /// Runs given back because of Ctrl-C.
    pub released: u64,
    /// Runs whose claim was lost (presumed dead by another process).
    pub lost: u64,
    /// Whether the user interrupted.
    pub interrupted: bool,
    /// Wall time of the call.
    pub wall_s: f64,
    /// Sum over runs of their wall time (training and evaluation).
    pub train_s: f64,
    /// Of which: evaluation.
    pub eval_s: f64,
    /// Jobs used.
    pub jobs: usize,
}

impl SchedulerReport {
    /// Runs that ended (completed, diverged or failed).
    pub fn trained(&self) -> u64 {
        self.completed + self.diverged + self.failed
    }

    /// Share of the job slots' time spent in training: Σ run time / (jobs × wall time).
    pub fn training_share(&self) -> f64 {
        if self.wall_s <= 0.0 {
            return 0.0;
        }
        self.train_s / (self.jobs as f64 * self.wall_s)
    }
}

/// How often a running job hands its epoch rows to the writer: a short run sends them all at
/// its end, a long one every half second, so the writer wakes about once per run instead of once
/// per epoch (each wake is a thread hand-off that, with `--jobs` = cores, takes a core from
/// training).
const EPOCH_FLUSH: Duration = Duration::from_millis(500);

/// Messages to the one writer task. Outcomes carry an acknowledgement, so the scheduler knows
/// the run's new state is in the database before it looks for more work.
enum Write {
    /// Epoch rows of one run, in order (a run sends them in bursts, see [`EPOCH_FLUSH`]).
    Epochs(Vec<EpochRow>),
    Finish {
        run: ClaimedRun,
        outcome: Box<RunOutcome>,
        last: Option<EpochMetrics>,
        ack: oneshot::Sender<Result<bool>>,
    },
    Fail {
        run: ClaimedRun,
        error: String,
        ack: oneshot::Sender<Result<bool>>,
    },
}

/// Sends an outcome to the writer and waits until it is written. Returns false when the claim
/// had been lost (another process took the run over).
async fn write_outcome(
    tx: &mpsc::UnboundedSender<Write>,
    run: ClaimedRun,
    result: Result<(RunOutcome, Option<EpochMetrics>)>,
) -> Result<bool> {
    let (ack, done) = oneshot::channel();
    let msg = match result {
        Ok((outcome, last)) => Write::Finish {
            run,
            outcome: Box::new(outcome),
            last,
            ack,
        },
        Err(e) => Write::Fail {
            run,
            error: e.to_string(),
            ack,
        },
    };
    tx.send(msg)
        .map_err(|_| Error::Db("the database writer has stopped".into()))?;
    done.await
        .map_err(|_| Error::Db("the database writer has stopped".into()))?
}

/// Loaded data sets shared by the runs of a process (a sweep's cells share few data sets).
#[derive(Default)]
struct DataCache {
    sets: Mutex<HashMap<String, Arc<Dataset>>>,
}

impl DataCache {
    const MAX: usize = 16;

    fn get(&self, cfg: &DataConfig) -> Result<Arc<Dataset>> {
        let key = serde_json::to_string(cfg).unwrap_or_default();
        if let Some(ds) = self.sets.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(ds);
        }
        let ds = Arc::new(crate::train::data::load(cfg)?);
        if let Ok(mut m) = self.sets.lock() {
            if m.len() >= Self::MAX {
                m.clear();
            }
            m.insert(key, ds.clone());
        }
        Ok(ds)
    }
}

/// Trains pending runs until none is left (or `stop` is raised), then waits for the writer.
///
/// Runs claimed by other processes are waited for: when one of them stops sending heartbeats
/// (or its process is gone), its run is requeued and trained here.
pub async fn run_pending(
    store: &Store,
    opts: &SchedulerOptions,
    stop: Arc<AtomicBool>,
    total: u64,
    already_done: u64,
) -> Result<SchedulerReport> {
    let start = Instant::now();
    let token = provenance::claim_token();
    let jobs = opts.jobs.max(1);
    let sweep = opts.sweep.as_deref();
    let mut report = SchedulerReport {
        jobs,
        ..SchedulerReport::default()
    };
    let progress = Progress::new(total, already_done, opts.progress);
    store.requeue_stale(opts.stale_after.as_secs_f64()).await?;

    let (tx, rx) = mpsc::unbounded_channel::<Write>();
    let writer = tokio::spawn(writer_task(
        store.clone(),
        token.clone(),
        rx,
        opts.max_failures,
    ));
    let beat_store = store.clone();
    let beat_token = token.clone();
    let beat_every = opts.heartbeat_every;
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(beat_every);
        loop {
            tick.tick().await;
            // A failed heartbeat is retried at the next tick; the claim survives until stale.
            let _ = beat_store.heartbeat(&beat_token).await;
        }
    });

    let cache = Arc::new(DataCache::default());
    let mut running: JoinSet<JobResult> = JoinSet::new();
    let poll = Duration::from_millis(500);
    let mut last_requeue = Instant::now();
    let result: Result<()> = async {
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            while !stopping && running.len() < jobs {
                let Some(run) = store.claim_next(sweep, &token).await? else {
                    break;
                };
                let job = Job {
                    run,
                    token: token.clone(),
                    tx: tx.clone(),
                    stop: stop.clone(),
                    cache: cache.clone(),
                };
                spawn_job(&mut running, job);
            }
            progress.set_running(running.len() as u64);
            if running.is_empty() {
                if stopping {
                    break;
                }
                // Nothing to claim: are other processes still training runs we wait for?
                if store.running_runs(sweep).await?.is_empty() {
                    break;
                }
                tokio::time::sleep(poll).await;
                if last_requeue.elapsed() >= poll * 4 {
                    store.requeue_stale(opts.stale_after.as_secs_f64()).await?;
                    last_requeue = Instant::now();
                }
                continue;
            }
            let joined = tokio::select! {
                j = running.join_next() => j,
                _ = tokio::time::sleep(poll) => None,
            };
            let Some(joined) = joined else {
                if last_requeue.elapsed() >= opts.stale_after / 4 {
                    store.requeue_stale(opts.stale_after.as_secs_f64()).await?;
                    last_requeue = Instant::now();
                }
                continue;
            };
            let (run, result) = match joined {
                Ok(pair) => pair,
                Err(e) => {
                    // A panic inside a job: its run cannot be identified here, the heartbeat
                    // stops for none of them; report and go on (the run is requeued when stale).
                    progress.println(&format!("warning: a training thread failed: {e}"));
                    continue;
                }
            };
            match &result {
                Ok((outcome, _)) => {
                    report.train_s += outcome.wall_s;
                    report.eval_s += outcome.eval_s;
                    match &outcome.state {
                        RunState::Completed => report.completed += 1,
                        RunState::Diverged { .. } => report.diverged += 1,
                        RunState::Stopped => report.released += 1,
                    }
                    if !matches!(outcome.state, RunState::Stopped) {
                        progress
                            .finished(matches!(outcome.state, RunState::Diverged { .. }), false);
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    progress.finished(false, true);
                    progress.println(&format!("run {} failed: {e}", run.id));
                }
            }
            if !write_outcome(&tx, run, result).await? {
                report.lost += 1;
            }
        }
        Ok(())
    }
    .await;

    // Whatever happened, stop the jobs, let them give their runs back, and flush the writer.
    if result.is_err() {
        stop.store(true, Ordering::SeqCst);
    }
    while let Some(joined) = running.join_next().await {
        if let Ok((run, res)) = joined {
            if let Ok(false) = write_outcome(&tx, run, res).await {
                report.lost += 1;
            }
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| Error::Db(format!("database writer task failed: {e}")))??;
    heartbeat.abort();
    progress.finish();
    result?;
    report.interrupted = stop.load(Ordering::SeqCst);
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// One claimed run and what its training thread needs.
struct Job {
    run: ClaimedRun,
    token: String,
    tx: mpsc::UnboundedSender<Write>,
    stop: Arc<AtomicBool>,
    cache: Arc<DataCache>,
}

type JobResult = (ClaimedRun, Result<(RunOutcome, Option<EpochMetrics>)>);

fn spawn_job(set: &mut JoinSet<JobResult>, job: Job) {
    let Job {
        run,
        token,
        tx,
        stop,
        cache,
    } = job;
    let handle = tokio::runtime::Handle::current();
    set.spawn_blocking_on(
        move || {
            let result = (|| -> Result<(RunOutcome, Option<EpochMetrics>)> {
                let cfg: RunConfig = serde_json::from_str(&run.config).map_err(|e| {
                    Error::Db(format!("run {}: stored config is not valid: {e}", run.id))
                })?;
                let data = cache.get(&cfg.data)?;
                let mut last = None;
                let mut rows = Vec::new();
                let mut sent = Instant::now();
                let send = |rows: &mut Vec<EpochRow>| -> Result<()> {
                    if rows.is_empty() {
                        return Ok(());
                    }
                    tx.send(Write::Epochs(std::mem::take(rows)))
                        .map_err(|_| Error::Db("the database writer has stopped".into()))
                };
                let mut sink = |m: &EpochMetrics| -> Result<()> {
                    last = Some(m.clone());
                    rows.push(EpochRow {
                        run_id: run.id.clone(),
                        attempt: run.attempt,
                        token: token.clone(),
                        metrics: m.clone(),
                    });
                    if sent.elapsed() >= EPOCH_FLUSH {
                        sent = Instant::now();
                        send(&mut rows)?;
                    }
                    Ok(())
                };
                let outcome = crate::train::train(&cfg, &data, &mut sink, &stop);
                // The rest of the run's rows go before its outcome (sent after this returns).
                send(&mut rows)?;
                Ok((outcome?, last))
            })();
            (run, result)
        },
        &handle,
    );
}

/// The one task that writes to the database: epoch rows are batched into one transaction per
/// burst; an outcome is written after the epochs that precede it, and acknowledged.
async fn writer_task(
    store: Store,
    token: String,
    mut rx: mpsc::UnboundedReceiver<Write>,
    max_failures: i64,
) -> Result<()> {
    let mut batch: Vec<EpochRow> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        // Drain what has queued up meanwhile, so one transaction carries a burst of rows.
        while pending.len() < 512 {
            match rx.try_recv() {
                Ok(m) => pending.push(m),
                Err(_) => break,
            }
        }
        for msg in pending {
            match msg {
                Write::Epochs(rows) => batch.extend(rows),
                Write::Finish {
                    run,
                    outcome,
                    last,
                    ack,
                } => {
                    store.record_epochs(&batch).await?;
                    batch.clear();
                    let written = store
                        .finish_run(&run.id, run.attempt, &token, &outcome, last.as_ref())
                        .await;
                    let _ = ack.send(written);
                }
                Write::Fail { run, error, ack } => {
                    store.record_epochs(&batch).await?;
                    batch.clear();
                    let written = store
                        .fail_run(&run.id, run.attempt, &token, &error, max_failures)
                        .await;
                    let _ = ack.send(written);
                }
            }
        }
        store.record_epochs(&batch).await?;
        batch.clear();
    }
    Ok(())
}
