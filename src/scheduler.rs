//! The scheduler: claims pending runs and trains them on `jobs` slot threads (one compute
//! thread each), and funnels every epoch and outcome through one writer task that batches
//! database writes. It claims one run ahead of the slots (several, in one transaction, when runs
//! are short), so a slot that ends a run starts the next one at once, without a round trip
//! through the runtime or the database; outcomes are written while the next run trains.
//! `scalelab run` trains the first cells while the database opens ([`HeadStart`]); a slot that
//! claims one of them takes its result.
//! Heartbeats keep claims alive; runs whose claimer died are requeued; Ctrl-C stops claiming,
//! stops running jobs at their next step, and gives them (and the runs claimed ahead) back as
//! PENDING.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::{DataConfig, RunConfig};
use crate::db::metrics::EpochRow;
use crate::db::runs::{ClaimedRun, FinishedRun, Requeued};
use crate::db::{RunStatus, Store};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::provenance;
use crate::train::data::Dataset;
use crate::train::{EpochMetrics, RunOutcome, RunState};

mod head_start;
pub use head_start::HeadStart;

/// The most runs one process trains at once (`--jobs`): far more than any machine's cores, and
/// small enough that the scheduler's counts (it claims a run or two beyond its slots) cannot
/// overflow.
pub const MAX_JOBS: usize = 4096;

/// How the scheduler works.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Runs trained at once (each on one compute thread), from 1 to [`MAX_JOBS`].
    pub jobs: usize,
    /// Only this sweep's runs (`None`: any pending run, as `scalelab worker`).
    pub sweep: Option<String>,
    /// A running run whose heartbeat is older than this is presumed dead and requeued.
    pub stale_after: Duration,
    /// How often heartbeats are sent.
    pub heartbeat_every: Duration,
    /// Failures after which a run stays FAILED (an invalid configuration fails at once).
    pub max_failures: i64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The data sets of this process's runs (shared with a [`HeadStart`]).
    pub data: Arc<DataCache>,
    /// Cells that began training before the database was ready (`scalelab run`): a slot that
    /// claims one of them takes its result. Job time is counted from its start.
    pub head: Option<Arc<HeadStart>>,
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
            data: Arc::default(),
            head: None,
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
    /// Of the runs trained, those whose training began before the database was ready.
    pub head_started: u64,
    /// Claims (write transactions) that found nothing pending: the sweep had run out, or other
    /// processes held the rest.
    pub empty_claims: u64,
    /// The runs whose training here raised an error, each once, in the order they first did
    /// (retried later, or FAILED for good: [`Store::states_of`] says which).
    pub failed_runs: Vec<String>,
    /// The runs per state (of the sweep, or of every sweep) when the scheduler found nothing
    /// left to do: none pending, none running, every outcome of this process written. `None`
    /// when it stopped otherwise (Ctrl-C, an error).
    pub final_counts: Option<Vec<(RunStatus, i64)>>,
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

/// How often the writer copies the write-ahead log into the database file while a sweep runs
/// (a passive checkpoint, which never waits for readers): the checkpoint SQLite makes when the
/// last connection closes is then small, so a sweep's end does not wait for it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// How long the writer waits for more messages after the first of a burst, so that the outcomes
/// and epoch rows of several short runs share one transaction (with two jobs on two cores the
/// database threads' work per run is taken from training). Cut short by [`Write::Flush`] when
/// the scheduler waits for acknowledgements.
const WRITE_LINGER: Duration = Duration::from_millis(100);

/// Messages to the one writer task, written in the order sent. Outcomes carry an
/// acknowledgement, so the scheduler knows when a run's new state is in the database (it waits
/// for all of them before deciding that no work is left).
enum Write {
    /// Epoch rows of one run, in order (a run sends them in bursts, see [`EPOCH_FLUSH`]).
    Epochs(Vec<EpochRow>),
    Finish {
        run: ClaimedRun,
        outcome: Box<RunOutcome>,
        last: Option<EpochMetrics>,
        /// When the run ended (Unix seconds): the write may come up to `WRITE_LINGER` later.
        finished_at: f64,
        ack: oneshot::Sender<Result<bool>>,
    },
    Fail {
        run: ClaimedRun,
        error: String,
        finished_at: f64,
        /// An invalid configuration: no retry can fix it, so the run is FAILED at once.
        permanent: bool,
        ack: oneshot::Sender<Result<bool>>,
    },
    /// A slot is about to train an orphan (a run whose last process died), or has just ended
    /// it: mark it begun or not ([`Store::mark_begun_in`]) and acknowledge once committed; the
    /// slot waits for that.
    Begun {
        run: ClaimedRun,
        begun: bool,
        ack: oneshot::Sender<Result<bool>>,
    },
    /// Someone waits for the acknowledgements sent so far: write what is queued now.
    Flush,
    /// Nothing is left to claim: after writing what is queued, copy the write-ahead log into
    /// the database file and cut the log to nothing ([`Store::truncate_log`]) while the last
    /// runs train, so that closing the database at the end has little left to do.
    Tidy,
}

/// Sends an outcome to the writer; the receiver yields whether it was written (false when the
/// claim had been lost: another process took the run over). `finished_at` is when the run
/// ended (Unix seconds), stamped by its slot: the scheduler may take the result later.
fn send_outcome(
    tx: &mpsc::UnboundedSender<Write>,
    run: ClaimedRun,
    result: Result<(RunOutcome, Option<EpochMetrics>)>,
    finished_at: f64,
) -> Result<oneshot::Receiver<Result<bool>>> {
    let (ack, done) = oneshot::channel();
    let msg = match result {
        Ok((outcome, last)) => Write::Finish {
            run,
            outcome: Box::new(outcome),
            last,
            finished_at,
            ack,
        },
        Err(e) => Write::Fail {
            run,
            error: e.to_string(),
            finished_at,
            permanent: matches!(e, Error::Config { .. }),
            ack,
        },
    };
    tx.send(msg)
        .map_err(|_| Error::Db("the database writer has stopped".into()))?;
    Ok(done)
}

/// Asks the writer to write what it has been sent so far now, without lingering for more.
fn request_flush(tx: &mpsc::UnboundedSender<Write>, wake: &Notify) {
    let _ = tx.send(Write::Flush);
    wake.notify_one();
}

/// Sends an outcome to the writer and waits until it is written. Returns false when the claim
/// had been lost.
async fn write_outcome(
    tx: &mpsc::UnboundedSender<Write>,
    wake: &Notify,
    run: ClaimedRun,
    result: Result<(RunOutcome, Option<EpochMetrics>)>,
    finished_at: f64,
) -> Result<bool> {
    let done = send_outcome(tx, run, result, finished_at)?;
    request_flush(tx, wake);
    wait_ack(done).await
}

/// Waits for the writer's acknowledgement of one outcome.
async fn wait_ack(done: oneshot::Receiver<Result<bool>>) -> Result<bool> {
    done.await
        .map_err(|_| Error::Db("the database writer has stopped".into()))?
}

/// Loaded data sets shared by the runs of a process (a sweep's cells share few data sets). Each
/// is built once: a job that needs a data set another thread is building waits for it.
#[derive(Default)]
pub struct DataCache {
    sets: Mutex<HashMap<String, CacheEntry>>,
}

/// One data set of the cache: empty until built; its lock is held while it is built.
type CacheEntry = Arc<Mutex<Option<Arc<Dataset>>>>;

impl std::fmt::Debug for DataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.sets.lock().map_or(0, |m| m.len());
        write!(f, "DataCache({n} data sets)")
    }
}

impl DataCache {
    const MAX: usize = 16;

    /// A data set's key: its config's canonical JSON.
    fn key(cfg: &DataConfig) -> String {
        serde_json::to_string(cfg).unwrap_or_default()
    }

    /// The data set `cfg` describes, built on first use.
    pub fn get(&self, cfg: &DataConfig) -> Result<Arc<Dataset>> {
        let key = Self::key(cfg);
        let entry = {
            // A panic elsewhere cannot leave the map or an entry half-written (an entry is only
            // set after a successful build), so a poisoned lock is simply taken over.
            let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            if sets.len() >= Self::MAX && !sets.contains_key(&key) {
                sets.clear();
            }
            sets.entry(key).or_default().clone()
        };
        let mut built = entry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ds) = built.as_ref() {
            return Ok(ds.clone());
        }
        // A failure leaves the entry empty: the next run that needs it tries again.
        let ds = Arc::new(crate::train::data::load(cfg)?);
        *built = Some(ds.clone());
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
    // With cells trained ahead, job time counts from when they started.
    let start = opts
        .head
        .as_ref()
        .and_then(|h| h.started())
        .unwrap_or_else(Instant::now);
    let token = provenance::claim_token();
    let jobs = opts.jobs.clamp(1, MAX_JOBS);
    let sweep = opts.sweep.as_deref();
    let mut report = SchedulerReport {
        jobs,
        ..SchedulerReport::default()
    };
    let progress = Progress::new(total, already_done, opts.progress);
    requeue(store, opts, &progress).await?;

    let (tx, rx) = mpsc::unbounded_channel::<Write>();
    let wake = Arc::new(Notify::new());
    let writer = tokio::spawn(writer_task(
        store.clone(),
        token.clone(),
        rx,
        wake.clone(),
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

    let slot = Arc::new(SlotShared {
        ready: Mutex::new(VecDeque::new()),
        token: token.clone(),
        tx: tx.clone(),
        stop: stop.clone(),
        cache: opts.data.clone(),
        head: opts.head.clone(),
        head_taken: AtomicU64::new(0),
        first_push: AtomicBool::new(true),
        results: Mutex::new(VecDeque::new()),
        results_ready: Notify::new(),
        refill_at: AtomicUsize::new(0),
        writer_wake: wake.clone(),
        orphan_training: AtomicBool::new(false),
        orphan_done: Condvar::new(),
    });
    // One thread per job slot; each trains claimed runs one after another until none is ready.
    let mut slots: JoinSet<()> = JoinSet::new();
    // Runs claimed and not yet reported back: the ones training and the ones in `ready`.
    let mut in_flight = 0usize;
    // Outcomes sent to the writer and not yet acknowledged: a slot goes on to its next run
    // without waiting for its last outcome to be written (the writer keeps their order).
    let mut acks: VecDeque<oneshot::Receiver<Result<bool>>> = VecDeque::new();
    let poll = Duration::from_millis(500);
    let mut last_requeue = Instant::now();
    // The sweep position after this process's last claim: claims look there first.
    let mut cursor = 0;
    // This process's run times so far: how far ahead to claim.
    let mut ran = RunTimes::default();
    // Whether the writer was asked to tidy the log since the last claim that found runs.
    let mut tidied = false;
    // When a claim last came back short (nothing else pending then), until one is full again.
    let mut ran_out: Option<Instant> = None;
    let result: Result<()> = async {
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if stopping {
                if let Some(head) = &opts.head {
                    head.cancel_all();
                }
                let released = release_all(store, &slot).await?;
                in_flight -= released;
                report.released += released as u64;
            } else {
                // Runs of claimers that died are requeued whether or not this process is busy
                // (before, only while it waited: a busy process left them waiting).
                if last_requeue.elapsed() >= opts.stale_after / 4 {
                    requeue(store, opts, &progress).await?;
                    last_requeue = Instant::now();
                }
                // Claim ahead: the slot that ends a run first finds its next one waiting, and
                // the claim's transaction runs while the slots train. One run ahead while runs
                // are long (a claimed run shows as RUNNING to every other process); short runs
                // are claimed several to a transaction, refilled when half are gone.
                let ahead = runs_ahead(jobs, ran.recent_longest());
                slot.refill_at.store(ahead / 2, Ordering::SeqCst);
                // After a claim came back short, refills wait `poll`: every turn would claim
                // nothing again, a write transaction each (24 while a two-job quickstart's last
                // runs trained, taken from their cores). Runs pending meanwhile (a failed run's
                // retry, another process's released or requeued runs) are claimed then, or when
                // this process has nothing left in flight.
                let refill_due = ran_out.is_none_or(|t| t.elapsed() >= poll);
                if in_flight <= jobs + ahead / 2 && refill_due {
                    let want = jobs + ahead - in_flight;
                    let claimed =
                        slot.push(claim(store, sweep, &token, &mut cursor, want).await?)?;
                    report.empty_claims += u64::from(claimed == 0);
                    in_flight += claimed;
                    // The runs waiting for a slot go longest expected first, so that the
                    // shortest known ones are left for the sweep's end.
                    if claimed > 0 {
                        slot.reorder(|config| ran.expected(config))?;
                    }
                    // Fewer than asked for: nothing is left to claim, and the writer tidies
                    // the log while the last runs train (once, until a claim is full again).
                    if claimed == want {
                        tidied = false;
                        ran_out = None;
                    } else {
                        ran_out = Some(Instant::now());
                        if in_flight > 0 && !tidied {
                            tidied = true;
                            let _ = tx.send(Write::Tidy);
                            wake.notify_one();
                        }
                    }
                }
                let waiting = slot.waiting()?;
                while slots.len() < jobs.min(in_flight) && waiting > 0 {
                    let shared = slot.clone();
                    slots.spawn_blocking(move || shared.work());
                }
            }
            // Acknowledgements come in the order the outcomes were sent.
            while let Some(first) = acks.front_mut() {
                match first.try_recv() {
                    Ok(written) => {
                        acks.pop_front();
                        count_ack(written, &mut report)?;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => break,
                    Err(oneshot::error::TryRecvError::Closed) => {
                        return Err(Error::Db("the database writer has stopped".into()));
                    }
                }
            }
            progress.set_running(slots.len().min(in_flight) as u64);
            if in_flight == 0 {
                // Every outcome of ours in the database before deciding what is left: a failed
                // run may be pending again, and our own runs must not look like others' work.
                if !acks.is_empty() {
                    request_flush(&tx, &wake);
                }
                while let Some(done) = acks.pop_front() {
                    count_ack(wait_ack(done).await, &mut report)?;
                }
                if stopping {
                    break;
                }
                // One read says whether anything is left: runs pending (claimed below) or runs
                // of other processes still training (waited for). When neither, the sweep is
                // done without a claim's write transaction and a second read (0.5 ms at the
                // end of a quickstart, while every core waits), and the counts are the caller's.
                let counts = store.state_counts(sweep).await?;
                if RunStatus::Pending.count_in(&counts) == 0
                    && RunStatus::Running.count_in(&counts) == 0
                {
                    report.final_counts = Some(counts);
                    break;
                }
                let claimed =
                    slot.push(claim(store, sweep, &token, &mut cursor, jobs + 1).await?)?;
                report.empty_claims += u64::from(claimed == 0);
                if claimed > 0 {
                    in_flight += claimed;
                    tidied = false;
                    ran_out = None;
                    continue;
                }
                // Nothing to claim: are other processes still training runs we wait for?
                if store.running_runs(sweep).await?.is_empty() {
                    break;
                }
                tokio::time::sleep(poll).await;
                if last_requeue.elapsed() >= poll * 4 {
                    requeue(store, opts, &progress).await?;
                    last_requeue = Instant::now();
                }
                continue;
            }
            // The slots' results, one per turn of the loop (so that claims are refilled between
            // them); the slots wake the scheduler only when it has something to do (`work`).
            let Some((run, result, finished_at)) = slot.next_result() else {
                tokio::select! {
                    _ = slot.results_ready.notified() => {}
                    ended = slots.join_next(), if !slots.is_empty() => {
                        if let Some(Err(e)) = ended {
                            // Not reached in practice: a slot turns a training panic into its
                            // run's error. Anything else that kills a slot leaves its run
                            // claimed until this process exits.
                            progress.println(&format!("warning: a training thread failed: {e}"));
                            in_flight = in_flight.saturating_sub(1);
                        }
                    }
                    // Waking up is all: the loop's top requeues dead claimers' runs when due.
                    _ = tokio::time::sleep(poll) => {}
                }
                continue;
            };
            in_flight -= 1;
            match &result {
                Ok((outcome, _)) => {
                    ran.add(&run.config, outcome.wall_s);
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
                    if !report.failed_runs.contains(&run.id) {
                        report.failed_runs.push(run.id.clone());
                    }
                    progress.finished(false, true);
                    progress.println(&format!("run {} failed: {e}", run.id));
                }
            }
            let done = send_outcome(&tx, run, result, finished_at)?;
            acks.push_back(done);
        }
        Ok(())
    }
    .await;

    // Whatever happened, stop the slots, let them give their runs back, and flush the writer.
    if result.is_err() {
        stop.store(true, Ordering::SeqCst);
    }
    if let Some(head) = &opts.head {
        head.cancel_all();
    }
    let _ = release_all(store, &slot).await;
    while slots.join_next().await.is_some() {}
    while let Some((run, res, finished_at)) = slot.next_result() {
        if let Ok(false) = write_outcome(&tx, &wake, run, res, finished_at).await {
            report.lost += 1;
        }
    }
    request_flush(&tx, &wake);
    while let Some(done) = acks.pop_front() {
        let _ = count_ack(wait_ack(done).await, &mut report);
    }
    report.head_started = slot.head_taken.load(Ordering::SeqCst);
    drop(slot);
    drop(tx);
    let written = writer.await;
    heartbeat.abort();
    written.map_err(|e| Error::Db(format!("database writer task failed: {e}")))??;
    progress.finish();
    result?;
    report.interrupted = stop.load(Ordering::SeqCst);
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Requeues the runs of dead or silent claimers ([`Store::requeue_stale`]) and says which
/// deaths were counted against a run.
async fn requeue(store: &Store, opts: &SchedulerOptions, progress: &Progress) -> Result<Requeued> {
    let requeued = store
        .requeue_stale(opts.stale_after.as_secs_f64(), opts.max_failures)
        .await?;
    for death in &requeued.deaths {
        progress.println(&format!(
            "run {} {}: {}",
            death.id,
            if death.failed {
                "failed for good"
            } else {
                "will be retried"
            },
            death.error
        ));
    }
    Ok(requeued)
}

/// Claims up to `max` pending runs in one transaction, looking from `cursor` (the sweep
/// position after this process's last claim) first, and moves the cursor past them.
async fn claim(
    store: &Store,
    sweep: Option<&str>,
    token: &str,
    cursor: &mut i64,
    max: usize,
) -> Result<Vec<ClaimedRun>> {
    let runs = store.claim_batch(sweep, token, *cursor, max).await?;
    if let Some(p) = runs.iter().filter_map(|r| r.position).max() {
        *cursor = p + 1;
    }
    Ok(runs)
}

/// How much work, in wall time across the job slots, a process claims ahead of them when its
/// runs are short. Each claim is a transaction (three round trips to the database thread, and a
/// wake-up of the scheduler), and with as many jobs as cores that work is taken from training:
/// on 6 ms runs with two jobs, a claim per run and a few statements per outcome kept the slots
/// out of their runs 7–9% of the time (docs/performance.md). 200 ms of work is little to hide
/// from another process sharing the sweep.
const CLAIM_AHEAD: Duration = Duration::from_millis(200);

/// At most this many runs claimed ahead of the slots.
const MAX_AHEAD: usize = 32;

/// Runs to keep claimed beyond the `jobs` being trained: enough for [`CLAIM_AHEAD`] of the
/// slots' work at `run_s` a run, at least one (nothing measured yet: one), at most
/// [`MAX_AHEAD`].
fn runs_ahead(jobs: usize, run_s: Option<f64>) -> usize {
    match run_s {
        None => 1,
        Some(t) if t > 0.0 => {
            let n = CLAIM_AHEAD.as_secs_f64() * jobs as f64 / t;
            (n.floor() as usize).clamp(1, MAX_AHEAD)
        }
        Some(_) => MAX_AHEAD,
    }
}

/// The wall times of the runs this process trained. Claiming ahead goes by the longest of the last
/// few, not by a mean over the sweep: when a sweep moves on from short runs to long ones (a larger
/// training set), one long run is enough to go back to claiming one run ahead. The mean time of
/// each cell (its configuration but the seed) orders the runs waiting for a slot ([`longest_first`]).
#[derive(Default)]
struct RunTimes {
    recent: VecDeque<f64>,
    /// Per cell ([`cell_key`]): the sum of its runs' wall times, and how many.
    by_cell: HashMap<u64, (f64, u32)>,
}

impl RunTimes {
    /// Runs remembered.
    const WINDOW: usize = 8;

    /// Records a run of stored configuration `config` that took `wall_s` seconds.
    fn add(&mut self, config: &str, wall_s: f64) {
        if wall_s.is_finite() && wall_s >= 0.0 {
            if self.recent.len() == Self::WINDOW {
                self.recent.pop_front();
            }
            self.recent.push_back(wall_s);
            let (sum, n) = self.by_cell.entry(cell_key(config)).or_default();
            *sum += wall_s;
            *n += 1;
        }
    }

    /// The longest of the last [`RunTimes::WINDOW`] runs (`None` before the first).
    fn recent_longest(&self) -> Option<f64> {
        self.recent.iter().copied().reduce(f64::max)
    }

    /// The mean wall time of the runs of `config`'s cell trained so far (other seeds, or earlier
    /// attempts); `None` when there were none.
    fn expected(&self, config: &str) -> Option<f64> {
        let (sum, n) = self.by_cell.get(&cell_key(config))?;
        Some(sum / f64::from(*n))
    }
}

/// What identifies a run's cell in its stored configuration: a hash of the text but the seed's
/// field (`"seed":N` in the compact JSON the store writes; a configuration written otherwise is a
/// cell of its own, which only means no expectation for it). A hash, not the text: a worker on a
/// sweep of 100,000 runs keeps one number per cell, and the scheduler computes it at every run's
/// end, in well under a microsecond.
fn cell_key(config: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    const FIELD: &str = "\"seed\":";
    match config.find(FIELD) {
        Some(at) => {
            let value = &config[at + FIELD.len()..];
            let end = value.find([',', '}']).unwrap_or(value.len());
            config[..at].hash(&mut h);
            value[end..].hash(&mut h);
        }
        None => config.hash(&mut h),
    }
    h.finish()
}

/// Orders `runs` longest expected first (a run with no expectation counts as longest), keeping
/// their order where expectations tie: the classic rule for finishing a set of jobs on several
/// slots at nearly the same time. Applied to the runs waiting for a slot at every claim, so a
/// run known to be short keeps making way for longer ones claimed after it, and the sweep ends
/// with the shortest: in the order claimed, the slot that ended first waited on average half a
/// run for the other (8–15 ms of the quickstart's two slots).
fn longest_first(runs: &mut VecDeque<ClaimedRun>, expected: impl Fn(&str) -> Option<f64>) {
    let mut keyed: Vec<(f64, ClaimedRun)> = runs
        .drain(..)
        .map(|run| (expected(&run.config).unwrap_or(f64::INFINITY), run))
        .collect();
    // Stable: ties keep the sweep's order.
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    runs.extend(keyed.into_iter().map(|(_, run)| run));
}

/// Gives back the claimed runs no slot has started (Ctrl-C, or an error); returns how many. Every
/// run is tried, whatever happens to the others; the first error is returned after.
async fn release_all(store: &Store, slot: &SlotShared) -> Result<usize> {
    let runs: Vec<ClaimedRun> = slot.take_all()?;
    let mut first_error = None;
    for run in &runs {
        if let Err(e) = store.release_run(&run.id, run.attempt, &slot.token).await {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        None => Ok(runs.len()),
        Some(e) => Err(e),
    }
}

/// Accounts for one acknowledged outcome: a lost claim is counted, a database error ends the
/// scheduler.
fn count_ack(written: Result<bool>, report: &mut SchedulerReport) -> Result<()> {
    if !written? {
        report.lost += 1;
    }
    Ok(())
}

/// What the job slots share: the claimed runs waiting for a slot, and what training needs.
struct SlotShared {
    ready: Mutex<VecDeque<ClaimedRun>>,
    token: String,
    tx: mpsc::UnboundedSender<Write>,
    stop: Arc<AtomicBool>,
    cache: Arc<DataCache>,
    head: Option<Arc<HeadStart>>,
    /// Runs whose result came from `head`.
    head_taken: AtomicU64,
    /// Whether no claim has been pushed yet (the first one prunes `head`).
    first_push: AtomicBool,
    /// The slots' results, in the order their runs ended, for the scheduler.
    results: Mutex<VecDeque<JobResult>>,
    /// Wakes the scheduler for `results` (see [`SlotShared::work`]).
    results_ready: Notify,
    /// The scheduler claims more runs once no more than this many wait for a slot (half of
    /// what it claims ahead).
    refill_at: AtomicUsize,
    /// Wakes the writer for a flush (a slot waits for an orphan's begin mark).
    writer_wake: Arc<Notify>,
    /// Whether a slot is training an orphan: one at a time, so that a death is counted against
    /// the one run that may have caused it (changed under the `ready` lock).
    orphan_training: AtomicBool,
    /// Signalled, with the `ready` lock, when an orphan's training ends.
    orphan_done: Condvar,
}

/// A run's result and when it ended (Unix seconds, stamped by its slot).
type JobResult = (ClaimedRun, Result<(RunOutcome, Option<EpochMetrics>)>, f64);

impl SlotShared {
    fn queue(&self) -> Result<std::sync::MutexGuard<'_, VecDeque<ClaimedRun>>> {
        self.ready
            .lock()
            .map_err(|_| Error::Db("the scheduler's run queue is poisoned".into()))
    }

    /// Queues claimed runs for the slots, in order; returns how many. The first claim, even an
    /// empty one, also cancels the cells started ahead that it does not hold: they are not this
    /// process's to train first.
    fn push(&self, runs: Vec<ClaimedRun>) -> Result<usize> {
        if let Some(head) = &self.head
            && self.first_push.swap(false, Ordering::SeqCst)
        {
            head.keep_only(&runs);
        }
        let n = runs.len();
        self.queue()?.extend(runs);
        Ok(n)
    }

    fn waiting(&self) -> Result<usize> {
        Ok(self.queue()?.len())
    }

    /// Puts the runs waiting for a slot longest expected first ([`longest_first`]).
    fn reorder(&self, expected: impl Fn(&str) -> Option<f64>) -> Result<()> {
        longest_first(&mut *self.queue()?, expected);
        Ok(())
    }

    fn take_all(&self) -> Result<Vec<ClaimedRun>> {
        Ok(self.queue()?.drain(..).collect())
    }

    /// A slot's thread: trains the waiting runs one after another, handing each result to the
    /// scheduler, until none is waiting or the user stops.
    ///
    /// The scheduler is woken only when it has something to do: when claims need refilling (no
    /// more than `refill_at` runs would wait once this slot takes its next), for a run that
    /// failed or was stopped, and when this slot ends. Otherwise it finds the results at its
    /// next turn. With as many jobs as cores, waking it at every run's end took the core from
    /// this slot for the scheduler's turn: a median of 28 µs a run, about 5 ms of the two
    /// slots' time over the quickstart, against 4 µs and 3–4 ms now (docs/performance.md).
    fn work(&self) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let Some(run) = self.next_run() else {
                break;
            };
            let orphan = run.orphaned > 0;
            // A panic while training becomes this run's error (retried, then FAILED) instead of
            // killing the slot with the run still claimed: this process's heartbeats would keep
            // such a run RUNNING, and the sweep would wait for it forever.
            let trained = if orphan {
                // Its begin mark is committed before it trains and cleared after: a death of
                // this process in between is counted against it, and only then.
                self.mark_begun(&run, true)
                    .and_then(|()| panic_as_error(|| self.train_one(&run)))
                    .and_then(|trained| self.mark_begun(&run, false).map(|()| trained))
            } else {
                panic_as_error(|| self.train_one(&run))
            };
            if orphan {
                let _queue = self.queue_even_poisoned();
                self.orphan_training.store(false, Ordering::SeqCst);
                self.orphan_done.notify_all();
            }
            let (result, ended) = match trained {
                Ok((outcome, last, ended)) => (Ok((outcome, last)), ended),
                Err(e) => (Err(e), provenance::now()),
            };
            let routine = matches!(&result, Ok((o, _)) if !matches!(o.state, RunState::Stopped));
            self.results_queue().push_back((run, result, ended));
            let waiting = self.waiting().unwrap_or(0);
            if !routine || waiting <= self.refill_at.load(Ordering::SeqCst) + 1 {
                self.results_ready.notify_one();
            }
        }
        self.results_ready.notify_one();
    }

    /// The next run for this slot: the first waiting run that is not an orphan, or an orphan
    /// when no other slot trains one (this slot then does). While only orphans wait and one
    /// trains, the slot waits for it to end. `None` when nothing waits or the user stops.
    fn next_run(&self) -> Option<ClaimedRun> {
        let mut queue = self.queue().ok()?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            let busy = self.orphan_training.load(Ordering::SeqCst);
            if let Some(i) = queue.iter().position(|r| r.orphaned == 0 || !busy) {
                let run = queue.remove(i)?;
                if run.orphaned > 0 {
                    self.orphan_training.store(true, Ordering::SeqCst);
                }
                return Some(run);
            }
            if queue.is_empty() {
                return None;
            }
            // A timeout, so that a stop is seen even if no orphan ends.
            queue = self
                .orphan_done
                .wait_timeout(queue, Duration::from_millis(100))
                .ok()?
                .0;
        }
    }

    /// The run queue's lock, poisoned or not (to clear the orphan flag, which must happen).
    fn queue_even_poisoned(&self) -> std::sync::MutexGuard<'_, VecDeque<ClaimedRun>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks an orphan as begun (or, after its training, no longer) in the database and waits
    /// until that is committed: if this process dies in between, the death is counted against
    /// it. A lost claim is not an error here: the run's outcome will be refused like any other
    /// lost claim's.
    fn mark_begun(&self, run: &ClaimedRun, begun: bool) -> Result<()> {
        let (ack, done) = oneshot::channel();
        let stopped = || Error::Db("the database writer has stopped".into());
        self.tx
            .send(Write::Begun {
                run: run.clone(),
                begun,
                ack,
            })
            .map_err(|_| stopped())?;
        let _ = self.tx.send(Write::Flush);
        self.writer_wake.notify_one();
        done.blocking_recv().map_err(|_| stopped())??;
        Ok(())
    }

    fn results_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<JobResult>> {
        // Whole results are pushed and popped: a poisoned lock holds a consistent queue, and
        // a result must not be lost (its run would stay claimed).
        self.results.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest result not yet taken by the scheduler.
    fn next_result(&self) -> Option<JobResult> {
        self.results_queue().pop_front()
    }

    /// Trains `run` (or takes its result from the head start): its outcome, its last epoch's
    /// metrics, and when it ended (Unix seconds).
    fn train_one(&self, run: &ClaimedRun) -> Result<(RunOutcome, Option<EpochMetrics>, f64)> {
        if let Some((outcome, epochs, ended)) = self.head.as_ref().and_then(|h| h.take(&run.config))
        {
            self.head_taken.fetch_add(1, Ordering::SeqCst);
            let last = epochs.last().cloned();
            let mut rows = epochs.into_iter().map(|m| self.row(run, m)).collect();
            self.send_rows(&mut rows)?;
            return Ok((outcome, last, ended));
        }
        let cfg: RunConfig = serde_json::from_str(&run.config).map_err(|e| {
            Error::config(
                "config",
                format!("run {}: stored config is not valid: {e}", run.id),
            )
        })?;
        // A config edited in the database is checked like a sweep file's before anything is
        // built from it (a zero input dimension would otherwise reach the data generator).
        cfg.validate()?;
        let data = self.cache.get(&cfg.data)?;
        let mut last = None;
        let mut rows = Vec::new();
        let mut sent = Instant::now();
        let mut sink = |m: &EpochMetrics| -> Result<()> {
            last = Some(m.clone());
            rows.push(self.row(run, m.clone()));
            if sent.elapsed() >= EPOCH_FLUSH {
                sent = Instant::now();
                self.send_rows(&mut rows)?;
            }
            Ok(())
        };
        let outcome = crate::train::train(&cfg, &data, &mut sink, &self.stop);
        let ended = provenance::now();
        // The rest of the run's rows go before its outcome (sent after this returns).
        self.send_rows(&mut rows)?;
        Ok((outcome?, last, ended))
    }

    /// One epoch's row of a claimed run, under this process's claim.
    fn row(&self, run: &ClaimedRun, metrics: EpochMetrics) -> EpochRow {
        EpochRow {
            run_id: run.id.clone(),
            attempt: run.attempt,
            token: self.token.clone(),
            metrics,
        }
    }

    /// Hands `rows` to the writer (leaving the vector empty); nothing when there are none.
    fn send_rows(&self, rows: &mut Vec<EpochRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Write::Epochs(std::mem::take(rows)))
            .map_err(|_| Error::Db("the database writer has stopped".into()))
    }
}

/// Runs `f`, turning a panic inside it into an error that carries the panic's message.
fn panic_as_error<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        Err(Error::Db(format!("training panicked: {what}")))
    })
}

/// The one task that writes to the database: epoch rows are batched into one transaction per
/// burst; an outcome is written after the epochs that precede it, and acknowledged.
async fn writer_task(
    store: Store,
    token: String,
    mut rx: mpsc::UnboundedReceiver<Write>,
    wake: Arc<Notify>,
    max_failures: i64,
) -> Result<()> {
    let mut last_checkpoint = Instant::now();
    // A tidy asked for and not done yet (something was in the way): tried after each burst.
    let mut tidy_pending = false;
    while let Some(first) = rx.recv().await {
        // Gather what is queued and what arrives within `WRITE_LINGER` of the first message
        // (unless someone waits): one transaction carries the burst's epoch rows and outcomes
        // together. Each statement is a hand-off to the database thread, and with `--jobs` =
        // cores every hand-off takes a core from training.
        // The writer sleeps through the linger instead of waking for each message (two per
        // run: its rows, its outcome); a flush request wakes it early.
        let linger_until = tokio::time::Instant::now() + WRITE_LINGER;
        let mut flush = matches!(first, Write::Flush);
        // A tidy asked for ends the linger too: the log is cut while the last runs train, not
        // at the next burst, which with a short tail was the one written once they had ended
        // (a flush: no cut, so the close had the whole tail's pages to copy).
        let mut tidy_now = matches!(first, Write::Tidy);
        tidy_pending |= tidy_now;
        let mut pending = vec![first];
        loop {
            let mut closed = false;
            while pending.len() < 512 && !flush {
                match rx.try_recv() {
                    Ok(m) => {
                        flush = matches!(m, Write::Flush);
                        tidy_now |= matches!(m, Write::Tidy);
                        tidy_pending |= tidy_now;
                        pending.push(m);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if flush || tidy_now || closed || pending.len() >= 512 {
                break;
            }
            if tokio::time::Instant::now() >= linger_until {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(linger_until) => {}
                _ = wake.notified() => {}
            }
        }
        let to_write = pending
            .iter()
            .any(|m| !matches!(m, Write::Flush | Write::Tidy));
        if to_write {
            let mut acks = Vec::new();
            let mut tx = store.begin_write().await?;
            let written =
                write_burst(&store, &mut tx, &token, pending, max_failures, &mut acks).await;
            let committed = match written {
                Ok(()) => tx.commit().await.map_err(|e| store.err(e)),
                Err(e) => Err(e),
            };
            // An outcome is acknowledged only once its transaction is committed; a database
            // error reaches every outcome of the burst and ends the writer (and the scheduler).
            match committed {
                Ok(()) => {
                    for (ack, kept) in acks {
                        let _ = ack.send(Ok(kept));
                    }
                }
                Err(e) => {
                    for (ack, _) in acks {
                        let _ = ack.send(Err(Error::Db(e.to_string())));
                    }
                    return Err(e);
                }
            }
        }
        // The log is cut after a burst no one waits for: not after a flush (the slots are idle,
        // and the close at the end does the same work), nor with messages queued.
        if tidy_pending && !flush && rx.is_empty() && tidy_log(&store).await {
            tidy_pending = false;
            last_checkpoint = Instant::now();
        } else if to_write && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            store.checkpoint().await;
            last_checkpoint = Instant::now();
        }
    }
    Ok(())
}

/// Cuts the write-ahead log ([`Store::truncate_log`]), trying again a few times a couple of
/// milliseconds apart: what is usually in the way is a short transaction of this process (a
/// claim that finds nothing, a heartbeat). Whether the log was cut.
async fn tidy_log(store: &Store) -> bool {
    for attempt in 0..TIDY_TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if store.truncate_log().await {
            return true;
        }
    }
    false
}

/// How many times [`tidy_log`] tries before leaving the log to the next burst (or the close).
const TIDY_TRIES: usize = 3;

/// Writes one burst of messages inside `tx`: first the epoch rows of every run in it (a few
/// multi-row statements for all of them), then the outcomes, in order; collects each outcome's
/// acknowledgement with whether its claim was still held. Rows first is the order of the
/// messages for each run: a run sends all its rows before its outcome, none after.
async fn write_burst(
    store: &Store,
    tx: &mut sqlx::SqliteConnection,
    token: &str,
    pending: Vec<Write>,
    max_failures: i64,
    acks: &mut Vec<(oneshot::Sender<Result<bool>>, bool)>,
) -> Result<()> {
    let mut rows: Vec<EpochRow> = Vec::new();
    let mut outcomes = Vec::new();
    for msg in pending {
        match msg {
            Write::Epochs(more) => rows.extend(more),
            Write::Flush | Write::Tidy => {}
            outcome => outcomes.push(outcome),
        }
    }
    store.record_epochs_in(tx, &rows).await?;
    // Completed and diverged runs end in one statement for the burst; a failure or a stopped
    // run (given back) is a statement of its own. Each message is a different run, so their
    // order does not matter.
    let mut ended = Vec::new();
    for msg in outcomes {
        match msg {
            Write::Finish {
                run,
                outcome,
                last,
                finished_at,
                ack,
            } => {
                if matches!(outcome.state, RunState::Stopped) {
                    let kept = store
                        .finish_run_in(
                            tx,
                            &run.id,
                            run.attempt,
                            token,
                            &outcome,
                            last.as_ref(),
                            finished_at,
                        )
                        .await?;
                    acks.push((ack, kept));
                } else {
                    ended.push((run, outcome, last, finished_at, ack));
                }
            }
            Write::Fail {
                run,
                error,
                finished_at,
                permanent,
                ack,
            } => {
                let limit = if permanent { 1 } else { max_failures };
                let kept = store
                    .fail_run_in(tx, &run.id, run.attempt, token, &error, limit, finished_at)
                    .await?;
                acks.push((ack, kept));
            }
            Write::Begun { run, begun, ack } => {
                let kept = store
                    .mark_begun_in(tx, &run.id, run.attempt, token, begun)
                    .await?;
                acks.push((ack, kept));
            }
            Write::Epochs(_) | Write::Flush | Write::Tidy => {}
        }
    }
    let runs: Vec<FinishedRun<'_>> = ended
        .iter()
        .map(|(run, outcome, last, finished_at, _)| FinishedRun {
            id: &run.id,
            attempt: run.attempt,
            outcome,
            last: last.as_ref(),
            finished_at: *finished_at,
        })
        .collect();
    let kept = store.finish_runs_in(tx, token, &runs).await?;
    drop(runs);
    for ((.., ack), kept) in ended.into_iter().zip(kept) {
        acks.push((ack, kept));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let err = panic_as_error::<()>(|| panic!("boom at step 3")).unwrap_err();
        assert_eq!(err.to_string(), "training panicked: boom at step 3");
        let width = 7;
        let err = panic_as_error::<()>(|| panic!("width {width} is odd")).unwrap_err();
        assert_eq!(err.to_string(), "training panicked: width 7 is odd");
        let err = panic_as_error::<()>(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(err.to_string(), "training panicked: unknown cause");
    }

    #[test]
    fn the_data_cache_builds_each_data_set_once_whoever_asks_first() {
        use crate::config::{DataConfig, DatasetKind};
        let cache = Arc::new(DataCache::default());
        let a = DataConfig::new(DatasetKind::Teacher, 300, 100);
        // Two threads asking at once get the one data set (the second waits for the first).
        let other_thread = {
            let (cache, a) = (cache.clone(), a.clone());
            std::thread::spawn(move || cache.get(&a).unwrap())
        };
        let first = cache.get(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &other_thread.join().unwrap()));
        assert!(Arc::ptr_eq(&first, &cache.get(&a).unwrap()));
        // Another N is another data set, built on its own.
        let b = DataConfig::new(DatasetKind::Teacher, 600, 100);
        let other = cache.get(&b).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(first.train_len(), 300);
        assert_eq!(other.train_len(), 600);
    }

    fn epoch(epoch: u32) -> EpochMetrics {
        EpochMetrics {
            epoch,
            step: 4 * epoch as u64,
            samples: 100 * epoch as u64,
            lr: 0.1,
            batch_size: 25,
            train_loss: 1.0,
            train_acc: 0.5,
            test_loss: 1.1,
            test_acc: 0.4,
            wall_s: 0.01,
            grad_sq: None,
            trace_sigma: None,
            b_simple: None,
            grad_h_grad: None,
            trace_h_sigma: None,
            b_noise: None,
        }
    }

    fn rows(run: &ClaimedRun, token: &str, epochs: u32) -> Write {
        Write::Epochs(
            (0..epochs)
                .map(|e| EpochRow {
                    run_id: run.id.clone(),
                    attempt: run.attempt,
                    token: token.into(),
                    metrics: epoch(e),
                })
                .collect(),
        )
    }

    /// A sweep `name` on the teacher data set (`train_size` examples, 100 for testing), an MLP
    /// with 16 hidden units, momentum 0.9, one seed; `lr` and `batch_size` as TOML values.
    fn teacher_sweep(
        name: &str,
        train_size: u32,
        lr: &str,
        batch_size: &str,
        epochs: u32,
    ) -> crate::sweep::Sweep {
        let text = format!(
            "name = \"{name}\"\n\
             [data]\ndataset = \"teacher\"\ntrain_size = {train_size}\ntest_size = 100\n\
             [model]\nhidden = [16]\n\
             [train]\nlr = {lr}\nbatch_size = {batch_size}\nmomentum = 0.9\n\
             epochs = {epochs}\nseeds = 1\n"
        );
        crate::sweep::parse_sweep(&format!("{name}.toml"), &text).unwrap()
    }

    /// Waits (up to 10 s, then fails with `what`) until `done` holds.
    async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let start = Instant::now();
        while !done().await {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Trains the pending runs of `sweep` (`total` cells) with `jobs` slots, no progress bar.
    /// Training tests of this module take turns: some assert an order that timing decides (which
    /// runs end last), and two sweeps training at once on two cores starved each other's
    /// scheduler of the few milliseconds its claims need.
    static TRAINING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn train_all(store: &Store, sweep: &str, jobs: usize, total: u64) -> SchedulerReport {
        let _turn = TRAINING.lock().await;
        let opts = SchedulerOptions {
            jobs,
            sweep: Some(sweep.into()),
            progress: false,
            ..SchedulerOptions::default()
        };
        run_pending(store, &opts, Arc::new(AtomicBool::new(false)), total, 0)
            .await
            .unwrap()
    }

    /// A new database in a temporary directory (kept alive by the first value) holding `sweep`,
    /// every cell of it trained with `jobs` slots.
    async fn trained(
        sweep: &crate::sweep::Sweep,
        jobs: usize,
    ) -> (tempfile::TempDir, Store, SchedulerReport) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        store.register_sweep(sweep).await.unwrap();
        let report = train_all(&store, &sweep.name, jobs, sweep.cells.len() as u64).await;
        (dir, store, report)
    }

    /// Every stored number of a sweep's runs and epochs (the clocks left out), ordered.
    async fn stored_numbers(store: &Store) -> Vec<String> {
        type RunRow = (String, String, i64, Option<f64>, Option<f64>);
        type EpochRow = (String, i64, i64, f64, Option<f64>, Option<f64>);
        let runs: Vec<RunRow> = sqlx::query_as(
            "SELECT id, state, steps, final_train_loss, final_test_acc FROM runs ORDER BY id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let epochs: Vec<EpochRow> = sqlx::query_as(
            "SELECT run_id, epoch, step, lr, train_loss, test_acc FROM epoch_metrics \
             ORDER BY run_id, epoch",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        runs.into_iter()
            .map(|(id, state, steps, loss, acc)| {
                format!("{id} {state} {steps} {:?} {:?}", bits(loss), bits(acc))
            })
            .chain(epochs.into_iter().map(|(id, e, step, lr, loss, acc)| {
                format!(
                    "{id}/{e} {step} {} {:?} {:?}",
                    lr.to_bits(),
                    bits(loss),
                    bits(acc)
                )
            }))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_trained_ahead_are_stored_as_the_slots_would_store_them() {
        let sweep = teacher_sweep("ahead", 300, "[0.05, 0.2]", "[16, 64]", 3);
        let dir = tempfile::tempdir().unwrap();
        let mut stored = Vec::new();
        // Without a head start; with one; with one whose first cell another process holds.
        for (case, head) in [("plain", false), ("ahead", true), ("held", true)] {
            let store = Store::open(&dir.path().join(format!("{case}.db")))
                .await
                .unwrap();
            store.register_sweep(&sweep).await.unwrap();
            if case == "held" {
                let other = store
                    .claim_next(Some("ahead"), "other")
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(other.position, Some(0));
                store.heartbeat("other").await.unwrap();
            }
            let data = Arc::new(DataCache::default());
            let opts = SchedulerOptions {
                jobs: 2,
                sweep: Some("ahead".into()),
                progress: false,
                head: head.then(|| Arc::new(HeadStart::start(&sweep.cells, 2, &data))),
                data,
                ..SchedulerOptions::default()
            };
            if case == "held" {
                // The held cell is waited for, not trained: end as soon as the rest is done.
                let store2 = store.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let pending: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM runs WHERE state IN ('pending', 'running')",
                        )
                        .fetch_one(store2.pool())
                        .await
                        .unwrap();
                        if pending == 1 {
                            sqlx::query(
                                "UPDATE runs SET state = 'pending', claimed_by = NULL \
                                         WHERE claimed_by = 'other'",
                            )
                            .execute(store2.pool())
                            .await
                            .unwrap();
                            break;
                        }
                    }
                });
            }
            let stop = Arc::new(AtomicBool::new(false));
            let turn = TRAINING.lock().await;
            let report = run_pending(&store, &opts, stop, 4, 0).await.unwrap();
            drop(turn);
            assert_eq!(report.completed + report.diverged, 4, "{case}");
            assert_eq!(report.failed + report.lost, 0, "{case}");
            // Both cells started ahead are used, unless another process held the first: that
            // one is trained by a slot once it is given back.
            let expected = [("plain", 0), ("ahead", 2), ("held", 1)];
            assert_eq!(
                Some(report.head_started),
                expected.iter().find(|(c, _)| *c == case).map(|(_, n)| *n),
                "{case}"
            );
            // It ended on the counts a fresh read gives (after waiting for the held run, which
            // it then trained: nothing pending, nothing running).
            let counts = store.state_counts(Some("ahead")).await.unwrap();
            assert_eq!(report.final_counts.as_ref(), Some(&counts), "{case}");
            assert_eq!(RunStatus::Pending.count_in(&counts), 0, "{case}");
            assert_eq!(RunStatus::Running.count_in(&counts), 0, "{case}");
            stored.push(stored_numbers(&store).await);
            store.close().await;
        }
        assert_eq!(stored[0].len(), 4 + 4 * 4, "4 runs, epochs 0 to 3 each");
        assert_eq!(stored[0], stored[1]);
        assert_eq!(stored[0], stored[2]);
    }

    /// A real sweep, one job, 36 runs: the runs of the cell known to end at once (it diverges at
    /// its first steps, under 1 ms, where the others train 80 epochs, about 8 ms) wait for every
    /// other run claimed with them, though claimed earlier, so the sweep ends with them. (Not
    /// only the last claim's runs: the first claim after the first run holds most of the sweep,
    /// seeds 2 to 4 of the short cell among them.) Timed runs, so sized for a loaded machine:
    /// it passed with six busy loops beside it on two cores. With 200 epochs a run it failed
    /// under three: longer runs are claimed fewer ahead, and the short runs put off filled the
    /// claims until they were all that was left to train.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_known_to_be_short_are_left_for_the_end() {
        let text = "name = \"order\"\n\
             [data]\ndataset = \"teacher\"\ntrain_size = 300\ntest_size = 100\n\
             [model]\nhidden = [16]\n\
             [train]\nlr = [1000.0, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045]\n\
             batch_size = 16\nmomentum = 0.9\nepochs = 80\nseeds = 4\n";
        let sweep = crate::sweep::parse_sweep("order.toml", text).unwrap();
        let (_dir, store, report) = trained(&sweep, 1).await;
        assert_eq!((report.completed, report.diverged), (32, 4));
        // In the order they ended: (seed, learning rate, state).
        let ended: Vec<(i64, f64, String)> =
            sqlx::query_as("SELECT seed, lr, state FROM runs ORDER BY finished_at")
                .fetch_all(store.pool())
                .await
                .unwrap();
        let ended: Vec<(i64, f64, &str)> = ended
            .iter()
            .map(|(seed, lr, state)| (*seed, *lr, state.as_str()))
            .collect();
        // The sweep's first run is the short cell's first seed (nothing known yet).
        assert_eq!(ended[0], (1, 1000.0, "diverged"));
        assert!(
            ended[1..33].iter().all(|r| r.1 < 1.0 && r.2 == "completed"),
            "{ended:?}"
        );
        assert_eq!(
            ended[33..],
            [
                (2, 1000.0, "diverged"),
                (3, 1000.0, "diverged"),
                (4, 1000.0, "diverged"),
            ]
        );
        store.close().await;
    }

    /// A run's `finished_at` is when its slot ended it, not when the scheduler took its result
    /// (it takes several at one turn): on each of two slots one run follows another, so at no
    /// instant do more than two runs' spans `[finished_at − wall_s, finished_at]` overlap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_run_ends_when_its_slot_ended_it() {
        let sweep = teacher_sweep(
            "ends",
            200,
            "[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]",
            "[8, 16, 32, 64]",
            4,
        );
        let (_dir, store, report) = trained(&sweep, 2).await;
        assert_eq!(report.completed + report.diverged, 32);
        let spans: Vec<(f64, f64)> =
            sqlx::query_as("SELECT finished_at - wall_s, finished_at FROM runs")
                .fetch_all(store.pool())
                .await
                .unwrap();
        // Just after each run's start (20 µs: the clocks' rounding), count the runs under way.
        let eps = 2e-5;
        let most = spans
            .iter()
            .map(|&(s, _)| {
                let t = s + eps;
                spans
                    .iter()
                    .filter(|&&(a, b)| a <= t && t < b - eps)
                    .count()
            })
            .max();
        assert_eq!(spans.len(), 32);
        assert!(most <= Some(2), "{most:?} runs at once: {spans:?}");
        store.close().await;
    }

    /// Once a claim comes back short, the scheduler does not claim again at every turn while
    /// the last runs train (each claim a write transaction that finds nothing): at most one
    /// empty claim per half second of the sweep, and none at the end, where one read of the
    /// counts says that nothing is pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_that_ran_out_does_not_claim_at_every_turn() {
        let sweep = teacher_sweep(
            "out",
            200,
            "[0.01, 0.02, 0.03, 0.04, 0.05, 0.06]",
            "[8, 16, 32, 64]",
            4,
        );
        let (_dir, store, report) = trained(&sweep, 2).await;
        assert_eq!(report.completed + report.diverged, 24);
        // Every run was claimed well before the end: short runs are claimed up to 32 ahead.
        let bound = 1 + (report.wall_s / 0.5).floor() as u64;
        assert!(
            report.empty_claims <= bound,
            "{} empty claims in {:.2} s",
            report.empty_claims,
            report.wall_s
        );
        // Under half a second no claim waits out the poll, and the end makes none.
        if report.wall_s < 0.5 {
            assert_eq!(report.empty_claims, 0, "in {:.2} s", report.wall_s);
        }
        store.close().await;
    }

    /// Several runs' rows and outcomes, one of them for a claim that is not this process's,
    /// reach the writer in one burst (one transaction): each outcome is acknowledged with
    /// whether it was kept, and the database holds exactly the kept ones.
    #[tokio::test]
    async fn the_writer_commits_a_burst_of_outcomes_and_skips_a_lost_claim() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).await.unwrap();
        let sweep =
            crate::sweep::load_sweep(std::path::Path::new("sweeps/quickstart.toml")).unwrap();
        store.register_sweep(&sweep).await.unwrap();
        let a = store.claim_next(None, "me").await.unwrap().unwrap();
        let b = store.claim_next(None, "me").await.unwrap().unwrap();
        let c = store.claim_next(None, "other").await.unwrap().unwrap();
        let d = store.claim_next(None, "me").await.unwrap().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let wake = Arc::new(Notify::new());
        let writer = tokio::spawn(writer_task(store.clone(), "me".into(), rx, wake.clone(), 3));
        let outcome = RunOutcome {
            state: RunState::Completed,
            epochs: 2,
            steps: 8,
            samples: 200,
            initial_train_loss: 2.3,
            final_test_acc: Some(0.4),
            best_test_acc: Some(0.4),
            wall_s: 0.02,
            eval_s: 0.01,
            instruments_s: 0.0,
            curvature_init: None,
            curvature_final: None,
        };
        let now = provenance::now();
        tx.send(rows(&a, "me", 3)).unwrap();
        let ack_a =
            send_outcome(&tx, a.clone(), Ok((outcome.clone(), Some(epoch(2)))), now).unwrap();
        let ack_b =
            send_outcome(&tx, b.clone(), Err(Error::Db("disk hiccup".into())), now).unwrap();
        // A run this process lost (claimed by another): neither its rows nor its end land.
        tx.send(rows(&c, "me", 2)).unwrap();
        let ack_c = send_outcome(&tx, c.clone(), Ok((outcome.clone(), None)), now).unwrap();
        // A diverged run ends in the same statement as the completed one.
        tx.send(rows(&d, "me", 2)).unwrap();
        let diverged = RunOutcome {
            state: RunState::Diverged {
                epoch: 1,
                reason: "train_loss=nan".into(),
            },
            best_test_acc: None,
            final_test_acc: None,
            ..outcome.clone()
        };
        let mut nan = epoch(1);
        nan.train_loss = f64::NAN;
        let ack_d = send_outcome(&tx, d.clone(), Ok((diverged, Some(nan))), now).unwrap();
        // The writer lingers for more; the run's end time is when it ended, not when written.
        tokio::time::sleep(WRITE_LINGER / 3).await;
        let flushed_at = provenance::now();
        request_flush(&tx, &wake);
        assert!(ack_a.await.unwrap().unwrap());
        assert!(ack_b.await.unwrap().unwrap());
        assert!(!ack_c.await.unwrap().unwrap());
        assert!(ack_d.await.unwrap().unwrap());

        let state = |id: String| {
            let store = store.clone();
            async move {
                let (state, failures): (String, i64) =
                    sqlx::query_as("SELECT state, failures FROM runs WHERE id = ?")
                        .bind(id)
                        .fetch_one(store.pool())
                        .await
                        .unwrap();
                (state, failures)
            }
        };
        assert_eq!(state(a.id.clone()).await, ("completed".into(), 0));
        let finished: f64 = sqlx::query_scalar("SELECT finished_at FROM runs WHERE id = ?")
            .bind(&a.id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(finished < flushed_at, "{finished} vs {flushed_at}");
        type Ended = (
            Option<i64>,
            Option<String>,
            i64,
            Option<f64>,
            Option<f64>,
            f64,
        );
        let ended = |id: String| {
            let store = store.clone();
            async move {
                sqlx::query_as::<_, Ended>(
                    "SELECT diverged_at_epoch, diverged_reason, steps, final_train_loss, \
                     best_test_acc, wall_s FROM runs WHERE id = ? AND claimed_by IS NULL",
                )
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap()
            }
        };
        assert_eq!(
            ended(a.id.clone()).await,
            (None, None, 8, Some(1.0), Some(0.4), 0.02)
        );
        assert_eq!(state(d.id.clone()).await, ("diverged".into(), 0));
        assert_eq!(
            ended(d.id.clone()).await,
            (Some(1), Some("train_loss=nan".into()), 8, None, None, 0.02)
        );
        assert_eq!(store.epochs_of(&d.id).await.unwrap().len(), 2);
        assert_eq!(store.epochs_of(&a.id).await.unwrap().len(), 3);
        // A transient error: back to pending for a retry, its rows (none) gone.
        assert_eq!(state(b.id.clone()).await, ("pending".into(), 1));
        assert_eq!(state(c.id.clone()).await, ("running".into(), 0));
        assert!(store.epochs_of(&c.id).await.unwrap().is_empty());
        drop(tx);
        writer.await.unwrap().unwrap();
    }

    /// Once a claim finds nothing left while runs still train, the scheduler has the log cut:
    /// at the end it holds only what the last run wrote, far less than the registration of a
    /// large sweep had put in it before. (Both cells are claimed at once, so the tidy is asked
    /// for at the start; the long one, 200,000 steps of B = 4, trains on for a few tenths of a
    /// second after the short one's outcome is written and the log is cut. It must outlast the
    /// writer's linger after that outcome, 0.1 s: a run of 20,000 steps ended within it on a
    /// faster host, and the log was then left to the close.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_left_to_claim_has_the_log_cut_while_the_last_runs_train() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("s.db-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let big = crate::sweep::load_sweep(std::path::Path::new("sweeps/quickstart.toml")).unwrap();
        store.register_sweep(&big).await.unwrap();
        let small = teacher_sweep("small", 20_000, "0.01", "[4, 512]", 40);
        store.register_sweep(&small).await.unwrap();
        let before = wal_len();
        let report = train_all(&store, "small", 2, 2).await;
        assert_eq!(report.completed + report.diverged, 2);
        let after = wal_len();
        // Only the cut shrinks the log (a passive checkpoint leaves its length): 15 pages after
        // against 55 before. Without the cut the log would have grown past `before`.
        assert!(
            after < before / 2,
            "log {after} bytes after the sweep, {before} before"
        );
        store.close().await;
    }

    /// A writer on a new database in a temporary directory holding the quickstart's runs (for
    /// the tests of the writer alone).
    struct WriterOnQuickstart {
        dir: tempfile::TempDir,
        store: Store,
        tx: mpsc::UnboundedSender<Write>,
        wake: Arc<Notify>,
        writer: tokio::task::JoinHandle<Result<()>>,
    }

    impl WriterOnQuickstart {
        async fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("w.db")).await.unwrap();
            let sweep =
                crate::sweep::load_sweep(std::path::Path::new("sweeps/quickstart.toml")).unwrap();
            store.register_sweep(&sweep).await.unwrap();
            let (tx, rx) = mpsc::unbounded_channel();
            let wake = Arc::new(Notify::new());
            let writer = tokio::spawn(writer_task(store.clone(), "me".into(), rx, wake.clone(), 3));
            WriterOnQuickstart {
                dir,
                store,
                tx,
                wake,
                writer,
            }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("w.db")
        }

        /// The write-ahead log's length in bytes.
        fn wal_len(&self) -> u64 {
            std::fs::metadata(self.dir.path().join("w.db-wal"))
                .map(|m| m.len())
                .unwrap()
        }

        /// Ends the writer (it must end without an error) and closes the database.
        async fn finish(self) {
            drop(self.tx);
            self.writer.await.unwrap().unwrap();
            self.store.close().await;
        }
    }

    /// Asked to tidy (nothing left to claim), the writer cuts the write-ahead log after a burst
    /// no one waits for: not after a flush (the slots are idle then, and the close does the same
    /// work), but after the next burst. The rows are committed first, and the database file
    /// alone then holds them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_cuts_the_log_after_a_burst_no_one_waits_for() {
        let w = WriterOnQuickstart::start().await;
        let (store, tx, wake) = (&w.store, &w.tx, &w.wake);
        let wal_len = || w.wal_len();
        let a = store.claim_next(None, "me").await.unwrap().unwrap();
        let b = store.claim_next(None, "me").await.unwrap().unwrap();
        // A tidy in a burst someone waits for: the rows land, the log stays.
        tx.send(rows(&a, "me", 5)).unwrap();
        tx.send(Write::Tidy).unwrap();
        request_flush(tx, wake);
        eventually("rows of a not written", async || {
            store.epochs_of(&a.id).await.unwrap().len() == 5
        })
        .await;
        tokio::time::sleep(WRITE_LINGER).await;
        assert!(wal_len() > 0, "the log was cut after a flush");
        // The next burst, which no one waits for, is followed by the cut.
        tx.send(rows(&b, "me", 3)).unwrap();
        eventually("the log was not cut", async || wal_len() == 0).await;
        let direct = rusqlite::Connection::open_with_flags(
            w.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let count = |id: &str| -> i64 {
            direct
                .query_row(
                    "SELECT COUNT(*) FROM epoch_metrics WHERE run_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!((count(&a.id), count(&b.id)), (5, 3));
        drop(direct);
        w.finish().await;
    }

    /// A tidy asked for (nothing left to claim) ends the writer's linger: what is queued is
    /// written and the log cut at once, while the last runs train, not at the next burst (with
    /// a short tail, the one written after they had ended: a flush, after which nothing is cut).
    /// Without it each try below waits out the linger, so one of three must beat it (a loaded
    /// machine may delay a try, not all three).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tidy_asked_for_is_done_at_once() {
        let w = WriterOnQuickstart::start().await;
        let (store, tx, wake) = (&w.store, &w.tx, &w.wake);
        let wal_len = || w.wal_len();
        let mut fastest = Duration::MAX;
        for _ in 0..3 {
            let run = store.claim_next(None, "me").await.unwrap().unwrap();
            assert!(wal_len() > 0, "the claim is not in the log");
            let sent = Instant::now();
            tx.send(rows(&run, "me", 4)).unwrap();
            tx.send(Write::Tidy).unwrap();
            wake.notify_one();
            // No reads while waiting: a reader in the way makes the cut give up.
            eventually("the log was not cut", async || wal_len() == 0).await;
            fastest = fastest.min(sent.elapsed());
            // Cut after the burst that wrote the rows.
            assert_eq!(store.epochs_of(&run.id).await.unwrap().len(), 4);
        }
        assert!(
            fastest < WRITE_LINGER / 2,
            "written and cut after {fastest:?} at best, the linger is {WRITE_LINGER:?}"
        );
        w.finish().await;
    }

    #[test]
    fn short_runs_are_claimed_several_ahead_long_ones_one() {
        // Nothing measured yet: one ahead, as for long runs.
        assert_eq!(runs_ahead(2, None), 1);
        assert_eq!(runs_ahead(2, Some(5.0)), 1);
        assert_eq!(runs_ahead(2, Some(0.4)), 1);
        // 200 ms of work across two slots at 40 ms a run: 10 runs.
        assert_eq!(runs_ahead(2, Some(0.04)), 10);
        assert_eq!(runs_ahead(1, Some(0.04)), 5);
        // Very short runs: at most `MAX_AHEAD`.
        assert_eq!(runs_ahead(2, Some(0.006)), MAX_AHEAD);
        assert_eq!(runs_ahead(2, Some(0.0)), MAX_AHEAD);
        // The longest of the last eight runs: one long run turns claiming ahead back to one,
        // and eight short ones after it turn it up again.
        let mut times = RunTimes::default();
        assert_eq!(times.recent_longest(), None);
        for _ in 0..100 {
            times.add("{}", 0.006);
        }
        times.add("{}", f64::NAN);
        assert_eq!(runs_ahead(2, times.recent_longest()), MAX_AHEAD);
        times.add("{}", 10.0);
        assert_eq!(times.recent_longest(), Some(10.0));
        assert_eq!(runs_ahead(2, times.recent_longest()), 1);
        for _ in 0..7 {
            times.add("{}", 0.04);
        }
        assert_eq!(times.recent_longest(), Some(10.0));
        times.add("{}", 0.04);
        assert_eq!(times.recent_longest(), Some(0.04));
        assert_eq!(runs_ahead(2, times.recent_longest()), 10);
    }

    /// A cell's expected time is the mean of its runs', whatever their seeds; waiting runs go
    /// longest expected first, unknown cells first of all, ties in their claimed order.
    #[test]
    fn waiting_runs_go_longest_expected_first() {
        let cfg = |lr: f64, seed: u64| {
            let mut c = crate::config::example_config();
            c.lr = lr;
            c.seed = seed;
            c.stored_json()
        };
        let mut times = RunTimes::default();
        times.add(&cfg(0.1, 1), 0.010);
        times.add(&cfg(0.1, 2), 0.030);
        times.add(&cfg(0.2, 1), 0.005);
        times.add(&cfg(0.3, 1), 0.050);
        times.add(&cfg(0.3, 2), f64::NAN);
        // Other seeds, other attempts: the cell's mean; a NaN time is not counted.
        assert_eq!(times.expected(&cfg(0.1, 3)), Some(0.020));
        assert_eq!(times.expected(&cfg(0.3, 9)), Some(0.050));
        assert_eq!(times.expected(&cfg(0.4, 1)), None);
        assert_eq!(times.expected("not json"), None);
        // The run's seed is the only field left out: the data seed is part of the cell.
        let other_data = cfg(0.1, 1).replace("\"data_seed\":0", "\"data_seed\":5");
        assert_ne!(other_data, cfg(0.1, 1));
        assert_eq!(times.expected(&other_data), None);
        assert_eq!(cell_key(&cfg(0.1, 1)), cell_key(&cfg(0.1, 77)));
        assert_ne!(cell_key(&cfg(0.1, 1)), cell_key(&cfg(0.2, 1)));
        let run = |id: &str, config: String| ClaimedRun {
            id: id.into(),
            config,
            attempt: 1,
            position: None,
            orphaned: 0,
        };
        let mut queue: VecDeque<ClaimedRun> = [
            run("short", cfg(0.2, 3)),
            run("mid-a", cfg(0.1, 3)),
            run("long", cfg(0.3, 3)),
            run("unknown", cfg(0.4, 3)),
            run("mid-b", cfg(0.1, 4)),
            run("unreadable", "{".into()),
        ]
        .into();
        longest_first(&mut queue, |c| times.expected(c));
        let order: Vec<&str> = queue.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            order,
            ["unknown", "unreadable", "long", "mid-a", "mid-b", "short"]
        );
    }

    #[test]
    fn results_pass_through_unchanged() {
        assert_eq!(panic_as_error(|| Ok(5)).unwrap(), 5);
        let err = panic_as_error::<()>(|| Err(Error::Db("disk full".into()))).unwrap_err();
        assert_eq!(err.to_string(), Error::Db("disk full".into()).to_string());
    }
}
