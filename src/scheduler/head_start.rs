//! A head start: the first cells of a sweep trained while the database opens.
//!
//! `scalelab run` knows a sweep's cells before its database is open and the sweep enqueued: on
//! a new file that takes tens of milliseconds (creation, migrations, inserting the runs, the
//! first claim), during which the cores would otherwise wait: 30–60 ms a job slot on the
//! quickstart with two jobs, about a third of the slots' time outside training
//! (docs/performance.md, "The first cells train while the database opens").
//!
//! So the first `jobs` cells are trained meanwhile, each on a thread of its own, from their
//! configuration exactly as it is stored in the database. A slot that then claims a run whose
//! stored configuration is that same text takes the result instead of training the run again.
//! Training is deterministic (same configuration, same numbers), so the rows are those the slot
//! would have produced; they are written only under the slot's claim, like any other run's.
//! Nothing is written before a claim. A cell this process does not claim first (done already,
//! held by another process, edited in the database, or an orphan: its last process died) is
//! cancelled at the first claim, and every head start still running is cancelled when the
//! scheduler stops. `scalelab run` starts one only on a database file it has just created
//! (`db::create_new_file`), the only case where opening costs tens of milliseconds: a run that
//! killed its last process (in a head start or under a claim) must not be trained ahead again,
//! but under a claim, marked as begun, or another death would not be counted against it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{DataCache, panic_as_error};
use crate::config::RunConfig;
use crate::db::runs::ClaimedRun;
use crate::error::Result;
use crate::train::{EpochMetrics, RunOutcome, RunState};

/// A run trained ahead of its claim: its outcome, every epoch's metrics in order, and when it
/// ended (Unix seconds).
pub(super) type Trained = (RunOutcome, Vec<EpochMetrics>, f64);

/// The first cells of a sweep, training before they are claimed. See the module's docs.
pub struct HeadStart {
    started: Instant,
    runs: Mutex<Vec<Ahead>>,
    /// Every cell's cancel flag, including those of cells a slot has taken and is waiting
    /// for: Ctrl-C must reach a long run that is still training ahead.
    flags: Vec<Arc<AtomicBool>>,
}

/// One cell training ahead.
struct Ahead {
    /// Its configuration as stored in the database (`runs.config`).
    config: String,
    cancel: Arc<AtomicBool>,
    /// `None` when it failed or was cancelled: the slot that claims it trains it itself.
    thread: JoinHandle<Option<Trained>>,
}

impl std::fmt::Debug for HeadStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadStart({} runs)", self.lock().len())
    }
}

impl HeadStart {
    /// Starts training the first `jobs` cells, on one thread each, with data sets from `cache`.
    /// Cells whose data set is read from disk are not started (a missing or large file is left
    /// for the run that claims it), nor are cells whose thread cannot be spawned.
    pub fn start(cells: &[RunConfig], jobs: usize, cache: &Arc<DataCache>) -> HeadStart {
        let started = Instant::now();
        let runs: Vec<Ahead> = cells
            .iter()
            .take(jobs.max(1))
            .filter(|cell| !cell.data.dataset.on_disk())
            .filter_map(|cell| {
                let config = cell.stored_json();
                let cancel = Arc::new(AtomicBool::new(false));
                let (text, stop, cache) = (config.clone(), cancel.clone(), cache.clone());
                let thread = std::thread::Builder::new()
                    .name("head-start".into())
                    .spawn(move || train_ahead(&text, &cache, &stop))
                    .ok()?;
                Some(Ahead {
                    config,
                    cancel,
                    thread,
                })
            })
            .collect();
        HeadStart {
            started,
            flags: runs.iter().map(|a| a.cancel.clone()).collect(),
            runs: Mutex::new(runs),
        }
    }

    /// When the cells began training (`None` when none was started): the scheduler counts its
    /// job time from here.
    pub fn started(&self) -> Option<Instant> {
        (!self.flags.is_empty()).then_some(self.started)
    }

    /// Cells still held (started and neither taken nor cancelled).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no cell is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Ahead>> {
        // Entries are only pushed at start and removed whole, so a poisoned lock holds a
        // consistent list.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The result for a run whose stored configuration is `config`, waiting for its training
    /// to end; `None` when no cell of that configuration was started, or it failed or was
    /// cancelled. Each result is given once.
    pub(super) fn take(&self, config: &str) -> Option<Trained> {
        let ahead = {
            let mut runs = self.lock();
            let i = runs.iter().position(|a| a.config == config)?;
            runs.swap_remove(i)
        };
        ahead.thread.join().ok().flatten()
    }

    /// Cancels every cell whose configuration is not among `claimed` (called with the first
    /// runs this process claims: a cell not among them is not this process's to train first).
    pub(super) fn keep_only(&self, claimed: &[ClaimedRun]) {
        self.lock().retain(|a| {
            // An orphan (its last process died) is trained by a slot, marked as begun first.
            let keep = claimed
                .iter()
                .any(|r| r.config == a.config && r.orphaned == 0);
            if !keep {
                a.cancel.store(true, Ordering::SeqCst);
            }
            keep
        });
    }

    /// Cancels every cell, those held and those a slot is waiting for (which then trains the
    /// run itself, and stops at once if the scheduler is stopping). Their threads end at their
    /// next step; their results are dropped.
    pub fn cancel_all(&self) {
        for flag in &self.flags {
            flag.store(true, Ordering::SeqCst);
        }
        self.lock().clear();
    }
}

impl Drop for HeadStart {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

/// Trains one cell from its stored configuration, as a slot would (`SlotShared::train_one`),
/// keeping its epochs instead of sending them.
fn train_ahead(config: &str, cache: &DataCache, cancel: &AtomicBool) -> Option<Trained> {
    let cfg: RunConfig = serde_json::from_str(config).ok()?;
    cfg.validate().ok()?;
    // A cell cancelled while it waits for its data set does not go on to build its model.
    let cancelled = || cancel.load(Ordering::SeqCst);
    if cancelled() {
        return None;
    }
    let data = cache.get(&cfg.data).ok()?;
    if cancelled() {
        return None;
    }
    let mut epochs = Vec::new();
    let outcome = panic_as_error(|| {
        let mut sink = |m: &EpochMetrics| -> Result<()> {
            epochs.push(m.clone());
            Ok(())
        };
        crate::train::train(&cfg, &data, &mut sink, cancel)
    })
    .ok()?;
    let ended = crate::provenance::now();
    match outcome.state {
        RunState::Stopped => None,
        RunState::Completed | RunState::Diverged { .. } => Some((outcome, epochs, ended)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DatasetKind, example_config};

    /// Two small cells on the same teacher data set (seeds 1 and 2).
    fn cells() -> Vec<RunConfig> {
        (1..=2)
            .map(|seed| {
                let mut c = example_config();
                c.data = crate::config::DataConfig::new(DatasetKind::Teacher, 300, 100);
                c.budget = crate::config::Budget::Epochs(3);
                c.seed = seed;
                c
            })
            .collect()
    }

    fn claimed(cfg: &RunConfig) -> ClaimedRun {
        ClaimedRun {
            id: cfg.run_id(),
            config: cfg.stored_json(),
            attempt: 1,
            position: None,
            orphaned: 0,
        }
    }

    /// The epochs without their clock, which is the only thing allowed to differ.
    fn unclocked(epochs: &[EpochMetrics]) -> Vec<EpochMetrics> {
        epochs
            .iter()
            .map(|m| EpochMetrics {
                wall_s: 0.0,
                ..m.clone()
            })
            .collect()
    }

    /// A cell's end time is when its training ended, not when a slot takes it (the slot stores
    /// it as the run's `finished_at`). The cells train in milliseconds; the slot comes 0.5 s later.
    #[test]
    fn a_cell_trained_ahead_ends_when_its_training_ended() {
        let cells = cells();
        let cache = Arc::new(DataCache::default());
        let t0 = crate::provenance::now();
        let head = HeadStart::start(&cells, 2, &cache);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let taken_at = crate::provenance::now();
        let (outcome, _, ended) = head
            .take(&claimed(&cells[0]).config)
            .expect("trained ahead");
        assert!(
            ended - outcome.wall_s >= t0,
            "{t0} {ended} {}",
            outcome.wall_s
        );
        assert!(
            ended < taken_at - 0.25,
            "ended {ended}, taken at {taken_at}"
        );
    }

    #[test]
    fn a_cell_trained_ahead_has_the_numbers_a_slot_would_train() {
        let cells = cells();
        let cache = Arc::new(DataCache::default());
        let head = HeadStart::start(&cells, 2, &cache);
        assert_eq!(head.len(), 2);
        for cfg in &cells {
            let (outcome, epochs, _) = head.take(&claimed(cfg).config).expect("trained ahead");
            // The same cell trained the way a slot trains it.
            let mut direct = Vec::new();
            let data = cache.get(&cfg.data).unwrap();
            let mut sink = |m: &EpochMetrics| -> Result<()> {
                direct.push(m.clone());
                Ok(())
            };
            let again =
                crate::train::train(cfg, &data, &mut sink, &AtomicBool::new(false)).unwrap();
            assert_eq!(epochs.len(), 4, "epoch 0 and three epochs");
            assert_eq!(unclocked(&epochs), unclocked(&direct));
            assert_eq!(outcome.state, again.state);
            assert_eq!(outcome.steps, again.steps);
            assert_eq!(
                outcome.final_test_acc.map(f64::to_bits),
                again.final_test_acc.map(f64::to_bits)
            );
        }
        // Each result is given once; a configuration never started gets none.
        assert!(head.is_empty());
        assert!(head.take(&claimed(&cells[0]).config).is_none());
        let mut other = cells[0].clone();
        other.seed = 9;
        assert!(head.take(&claimed(&other).config).is_none());
    }

    #[test]
    fn cells_not_among_the_first_claim_are_dropped_and_cancel_all_drops_the_rest() {
        let cells = cells();
        let cache = Arc::new(DataCache::default());
        let head = HeadStart::start(&cells, 2, &cache);
        // Only the second cell was claimed first (another process holds the first).
        head.keep_only(&[claimed(&cells[1])]);
        assert_eq!(head.len(), 1);
        assert!(
            head.flags[0].load(Ordering::SeqCst),
            "the dropped cell is cancelled"
        );
        assert!(!head.flags[1].load(Ordering::SeqCst));
        assert!(head.take(&claimed(&cells[0]).config).is_none());
        assert!(head.take(&claimed(&cells[1]).config).is_some());

        // An orphan (its last process died) is trained by a slot, marked as begun first.
        let head = HeadStart::start(&cells, 2, &cache);
        let orphan = ClaimedRun {
            orphaned: 1,
            ..claimed(&cells[0])
        };
        head.keep_only(&[orphan, claimed(&cells[1])]);
        assert_eq!(head.len(), 1);
        assert!(
            head.flags[0].load(Ordering::SeqCst),
            "the orphan is cancelled"
        );
        assert!(head.take(&claimed(&cells[0]).config).is_none());
        head.cancel_all();

        let head = HeadStart::start(&cells, 1, &cache);
        assert_eq!(head.len(), 1, "one job: one cell ahead");
        head.cancel_all();
        assert!(head.is_empty());
        assert!(head.flags.iter().all(|f| f.load(Ordering::SeqCst)));
        assert!(head.take(&claimed(&cells[0]).config).is_none());
    }

    #[test]
    fn cancel_all_reaches_a_slot_waiting_for_a_long_cell() {
        let mut long = cells().remove(0);
        long.budget = crate::config::Budget::Epochs(100_000);
        let cache = Arc::new(DataCache::default());
        let head = Arc::new(HeadStart::start(&[long.clone()], 1, &cache));
        assert!(head.started().is_some());
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (head, config) = (head.clone(), claimed(&long).config);
            std::thread::spawn(move || tx.send(head.take(&config).is_some()));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        head.cancel_all();
        // The slot gets nothing (it then trains the run itself, and stops at once), promptly:
        // without the cancel it would wait for 100,000 epochs.
        let got = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got, Ok(false), "the waiting slot was not released");
    }

    #[test]
    fn dropping_a_head_start_cancels_its_cells() {
        let mut long = cells().remove(0);
        long.budget = crate::config::Budget::Epochs(100_000);
        let head = HeadStart::start(&[long], 1, &Arc::new(DataCache::default()));
        let flags = head.flags.clone();
        assert!(!flags[0].load(Ordering::SeqCst));
        drop(head);
        assert!(flags[0].load(Ordering::SeqCst));
    }

    #[test]
    fn cells_on_files_are_not_started_and_a_stopped_or_invalid_cell_gives_nothing() {
        let mut on_disk = example_config();
        on_disk.data.dataset = DatasetKind::Idx;
        let head = HeadStart::start(&[on_disk], 2, &Arc::new(DataCache::default()));
        assert!(head.is_empty());
        assert!(
            head.started().is_none(),
            "nothing started: job time counts from the scheduler"
        );

        let cache = DataCache::default();
        let cfg = &cells()[0];
        let text = cfg.stored_json();
        // Cancelled before its first step: no result (the slot trains the run itself).
        assert!(train_ahead(&text, &cache, &AtomicBool::new(true)).is_none());
        // A configuration that does not validate: no result (the slot reports the error).
        let mut bad = cfg.clone();
        bad.momentum = 1.0;
        let bad = bad.stored_json();
        assert!(train_ahead(&bad, &cache, &AtomicBool::new(false)).is_none());
        assert!(train_ahead(&text, &cache, &AtomicBool::new(false)).is_some());
    }
}
