//! The run lifecycle: pending → running (an atomic claim) → completed | diverged | failed, with
//! heartbeats, requeueing of runs whose claimer died, and bounded retries of failures.
//!
//! Every write that ends a claim checks `(id, attempt, claimed_by)`, so a process that lost its
//! claim (it was presumed dead and the run was handed to another) can never overwrite the run.

use sqlx::SqliteConnection;

use super::{RunStatus, Store};
use crate::error::Result;
use crate::provenance;
use crate::train::isa::Isa;
use crate::train::{EpochMetrics, RunOutcome, RunState};

/// A run this process now owns.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedRun {
    /// The run id.
    pub id: String,
    /// Its resolved config (JSON of `RunConfig`).
    pub config: String,
    /// The claim number (1 for the first training attempt).
    pub attempt: i64,
    /// Its position in the sweep it was claimed for (`None` when claimed for any sweep).
    pub position: Option<i64>,
    /// How many times it was requeued because the process that held it died or fell silent.
    /// Such a run is trained alone among this process's orphans and marked as begun first
    /// (`Store::mark_begun_in`), so that a run that kills its process is counted as failing.
    pub orphaned: i64,
}

/// How one claimed run ended, for [`Store::finish_runs_in`].
pub(crate) struct FinishedRun<'a> {
    /// The run id.
    pub id: &'a str,
    /// Its claim number.
    pub attempt: i64,
    /// How it ended: completed or diverged.
    pub outcome: &'a RunOutcome,
    /// Its last epoch's numbers.
    pub last: Option<&'a EpochMetrics>,
    /// When it ended (Unix seconds).
    pub finished_at: f64,
}

/// Runs ended per statement by [`Store::finish_runs_in`], padded (26 parameters each and the
/// claimer's token once: 833 in all). A two-job quickstart's bursts end 7–18 runs.
const FINISHES_PER_UPDATE: usize = 32;

/// Parameters of one run in [`Store::finish_runs_in`]'s statement.
const FINISH_PARAMS: usize = 26;

/// A claimed run and its order among the runs claimed with it.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    run: ClaimedRun,
    ord: i64,
}

/// A run being trained somewhere, as `scalelab status` shows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunningRun {
    /// The run id.
    pub id: String,
    /// `host/pid/start` of the claimer.
    pub claimed_by: Option<String>,
    /// When it was claimed.
    pub started_at: Option<f64>,
    /// The last heartbeat.
    pub heartbeat_at: Option<f64>,
    /// The claim number.
    pub attempt: i64,
    /// Learning rate.
    pub lr: f64,
    /// Batch size.
    pub batch_size: i64,
}

/// A failed run and its error.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FailedRun {
    /// The run id.
    pub id: String,
    /// Current state (pending again if retries remain, else failed).
    pub state: String,
    /// Failures so far.
    pub failures: i64,
    /// The last error.
    pub error: Option<String>,
}

/// What [`Store::requeue_stale`] did.
#[derive(Clone, Debug, Default)]
pub struct Requeued {
    /// Runs taken from dead or silent claimers (pending again, or failed for good).
    pub runs: u64,
    /// The deaths counted against runs that had begun as orphans.
    pub deaths: Vec<Death>,
}

/// A run whose process died while training it as an orphan.
#[derive(Clone, Debug)]
pub struct Death {
    /// The run id.
    pub id: String,
    /// Whether the run is now FAILED (its failures reached the limit) rather than pending.
    pub failed: bool,
    /// The error stored with it.
    pub error: String,
}

const SWEEP_FILTER: &str = "(?1 IS NULL OR id IN (SELECT run_id FROM sweep_runs WHERE sweep = ?1))";

impl Store {
    /// Atomically claims the next pending run (of `sweep`, or of any sweep), in sweep order.
    /// One `UPDATE … RETURNING`: two processes never claim the same run.
    pub async fn claim_next(&self, sweep: Option<&str>, token: &str) -> Result<Option<ClaimedRun>> {
        self.claim_next_from(sweep, token, 0).await
    }

    /// [`Store::claim_next`], looking first at the sweep's positions from `from` on (the
    /// position after the caller's last claim), then, if none is pending there, from the start
    /// (a run may have become pending again behind the cursor: a retry, a requeue). Without a
    /// cursor every claim walks past all the finished runs before it: 14 ms per claim at the
    /// end of a 20,000-cell sweep, against 0.01 ms.
    pub async fn claim_next_from(
        &self,
        sweep: Option<&str>,
        token: &str,
        from: i64,
    ) -> Result<Option<ClaimedRun>> {
        Ok(self
            .claim_batch(sweep, token, from, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Claims up to `max` pending runs at once, in sweep order (creation order for any sweep),
    /// in one transaction: [`Store::claim_next_from`] for several runs. The scheduler claims
    /// several runs ahead when its runs are short, so that the claim's transaction is not paid
    /// once per run. Fewer than `max` (or none) when fewer are pending after `from`; the start
    /// of the sweep is looked at only when none is.
    pub async fn claim_batch(
        &self,
        sweep: Option<&str>,
        token: &str,
        from: i64,
        max: usize,
    ) -> Result<Vec<ClaimedRun>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = provenance::now();
        self.in_write_tx(async |tx| {
            let mut start = from.max(0);
            let claimed = loop {
                let claimed = self.claim_in(tx, sweep, token, now, start, max).await?;
                if !claimed.is_empty() || start == 0 || sweep.is_none() {
                    break claimed;
                }
                start = 0;
            };
            for run in claimed.iter().filter(|r| r.attempt > 1) {
                // Metrics of an earlier, interrupted attempt are not this attempt's (a first
                // attempt has none: every path back to PENDING deletes a run's rows).
                sqlx::query("DELETE FROM epoch_metrics WHERE run_id = ?")
                    .bind(&run.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            Ok(claimed)
        })
        .await
    }

    /// One claim attempt inside `tx`: up to `max` pending runs at sweep position ≥ `from` (or,
    /// for any sweep, in creation order), returned in that order.
    async fn claim_in(
        &self,
        tx: &mut SqliteConnection,
        sweep: Option<&str>,
        token: &str,
        now: f64,
        from: i64,
        max: usize,
    ) -> Result<Vec<ClaimedRun>> {
        // Sweep order for a sweep (its cells' positions); creation order for any sweep. The
        // unary `+` keeps SQLite from answering `id IN (…)` by scanning the state index (every
        // pending run of a 100,000-cell sweep) instead of looking each id up.
        //
        // The limit is `?8 + 0`, not `?8`: SQLite reads a bare bound LIMIT while planning (to
        // use its value) and so prepares the statement again whenever the value changes, which
        // it did at almost every claim (40 times in a quickstart). An expression is not read at
        // planning time, so the one prepared statement serves every limit.
        let pick = if sweep.is_some() {
            "SELECT s.run_id FROM sweep_runs s JOIN runs r ON r.id = s.run_id \
             WHERE s.sweep = ?1 AND s.position >= ?11 AND r.state = 'pending' \
             ORDER BY s.position LIMIT ?8 + 0"
        } else {
            "SELECT id FROM runs WHERE state = 'pending' AND ?1 IS NULL ORDER BY rowid \
             LIMIT ?8 + 0"
        };
        let sql = format!(
            "UPDATE runs SET state = 'running', attempt = attempt + 1, claimed_by = ?2, \
             worker = ?2, heartbeat_at = ?3, started_at = ?3, finished_at = NULL, host = ?4, threads = ?5, \
             scalelab_version = ?6, git_revision = ?7, kernels = ?9, cpu = ?10, began_at = NULL \
             WHERE id IN ({pick}) AND +state = 'pending' \
             RETURNING id, config, attempt, orphaned, \
             (SELECT position FROM sweep_runs WHERE sweep = ?1 AND run_id = runs.id) AS position, \
             rowid AS ord"
        );
        let mut query = sqlx::query_as::<_, ClaimRow>(sqlx::AssertSqlSafe(sql))
            .bind(sweep)
            .bind(token)
            .bind(now)
            .bind(provenance::host())
            .bind(provenance::compute_threads())
            .bind(provenance::VERSION)
            .bind(provenance::git_revision())
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(Isa::detected().name())
            .bind(provenance::cpu_model());
        if sweep.is_some() {
            query = query.bind(from);
        }
        let mut rows = query.fetch_all(&mut *tx).await.map_err(|e| self.err(e))?;
        // RETURNING follows the order in which SQLite updated the rows, which it does not
        // promise to be the subquery's.
        rows.sort_by_key(|r| (r.run.position, r.ord));
        Ok(rows.into_iter().map(|r| r.run).collect())
    }

    /// Refreshes the heartbeat of every run this process is training. Without one (before the
    /// first claim, or after the last run) it only reads: an `UPDATE` takes the write lock
    /// even when it changes nothing, and where another process held that lock a heartbeat
    /// queued behind a failing claim made the process wait out the busy timeout twice.
    pub async fn heartbeat(&self, token: &str) -> Result<u64> {
        let holds: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE claimed_by = ? AND state = 'running')",
        )
        .bind(token)
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        if !holds {
            return Ok(0);
        }
        let _gate = self.write_gate().await;
        Ok(sqlx::query(
            "UPDATE runs SET heartbeat_at = ? WHERE claimed_by = ? AND state = 'running'",
        )
        .bind(provenance::now())
        .bind(token)
        .execute(self.write_pool())
        .await
        .map_err(|e| self.err(e))?
        .rows_affected())
    }

    /// Returns to PENDING every running run whose heartbeat is older than `stale_after_s`, or
    /// whose claimer is known to be dead (same host, process gone). Their partial metrics are
    /// deleted, and each counts one more orphaning. A run that had begun training as an orphan
    /// (`Store::mark_begun_in`) is the likely cause of its process's death: the death counts
    /// as a failure (with an error that says so), and after `max_failures` the run stays FAILED
    /// instead of killing every process that takes it up. Returns how many runs were requeued
    /// and the deaths counted.
    pub async fn requeue_stale(&self, stale_after_s: f64, max_failures: i64) -> Result<Requeued> {
        let now = provenance::now();
        // id, attempt, claimer, heartbeat, begin mark.
        type Held = (String, i64, Option<String>, Option<f64>, Option<f64>);
        let running: Vec<Held> = sqlx::query_as(
            "SELECT id, attempt, claimed_by, heartbeat_at, began_at FROM runs \
                 WHERE state = 'running'",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let mut requeued = Requeued::default();
        for (id, attempt, claimer, heartbeat, began) in running {
            let silent_s = heartbeat.map(|h| now - h);
            let stale = silent_s.is_none_or(|s| s > stale_after_s);
            let dead = claimer.as_deref().is_some_and(provenance::claimer_is_dead);
            if !(stale || dead) {
                continue;
            }
            let who = claimer.as_deref().unwrap_or("an unknown process");
            let error = if dead {
                format!(
                    "its process ({who}) died while training it: killed (kill -9, the \
                     out-of-memory killer) or crashed"
                )
            } else {
                format!(
                    "its process ({who}) sent no heartbeat for {:.0} s while training it",
                    silent_s.unwrap_or(f64::INFINITY)
                )
            };
            let mut tx = self.begin_write().await?;
            let state: Option<String> = sqlx::query_scalar(
                "UPDATE runs SET orphaned = orphaned + 1, claimed_by = NULL, heartbeat_at = NULL, \
                 began_at = NULL, \
                 failures = failures + (began_at IS NOT NULL), \
                 error = CASE WHEN began_at IS NOT NULL THEN ?1 ELSE error END, \
                 finished_at = CASE WHEN began_at IS NOT NULL THEN ?2 ELSE finished_at END, \
                 state = CASE WHEN began_at IS NOT NULL AND failures + 1 >= ?3 THEN 'failed' \
                              ELSE 'pending' END \
                 WHERE id = ?4 AND attempt = ?5 AND state = 'running' \
                 RETURNING state",
            )
            .bind(&error)
            .bind(now)
            .bind(max_failures)
            .bind(&id)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if state.is_some() {
                sqlx::query("DELETE FROM epoch_metrics WHERE run_id = ?")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().await.map_err(|e| self.err(e))?;
            if let Some(state) = state {
                requeued.runs += 1;
                if began.is_some() {
                    requeued.deaths.push(Death {
                        id,
                        failed: state == "failed",
                        error,
                    });
                }
            }
        }
        Ok(requeued)
    }

    /// `Store::mark_begun_in` in a transaction of its own.
    pub async fn mark_begun(
        &self,
        id: &str,
        attempt: i64,
        token: &str,
        begun: bool,
    ) -> Result<bool> {
        self.in_write_tx(async |tx| self.mark_begun_in(tx, id, attempt, token, begun).await)
            .await
    }

    /// Marks a claimed run as begun, before its training starts, or (`begun` false) as no longer
    /// training, inside a transaction the caller commits at once: if its process dies in
    /// between, the next requeue counts the death against this run ([`Store::requeue_stale`]).
    /// Only orphans are marked, one at a time in a process (a mark of this claimer's left from
    /// before is cleared here too); a run claimed ahead and never started is never blamed.
    /// Returns false if the claim was lost.
    pub(crate) async fn mark_begun_in(
        &self,
        tx: &mut SqliteConnection,
        id: &str,
        attempt: i64,
        token: &str,
        begun: bool,
    ) -> Result<bool> {
        sqlx::query(
            "UPDATE runs SET began_at = NULL \
             WHERE claimed_by = ? AND began_at IS NOT NULL AND state = 'running'",
        )
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let n = sqlx::query(
            "UPDATE runs SET began_at = ? \
             WHERE id = ? AND attempt = ? AND claimed_by = ? AND state = 'running'",
        )
        .bind(begun.then(provenance::now))
        .bind(id)
        .bind(attempt)
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records how a claimed run ended (completed or diverged) with its final numbers. Returns
    /// false if the claim was lost in the meantime (nothing is written then).
    pub async fn finish_run(
        &self,
        id: &str,
        attempt: i64,
        token: &str,
        outcome: &RunOutcome,
        last: Option<&EpochMetrics>,
    ) -> Result<bool> {
        let now = provenance::now();
        self.in_write_tx(async |tx| {
            self.finish_run_in(tx, id, attempt, token, outcome, last, now)
                .await
        })
        .await
    }

    /// [`Store::finish_run`] inside a transaction the caller commits; `finished_at` is when the
    /// run ended (the write may come later).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish_run_in(
        &self,
        tx: &mut SqliteConnection,
        id: &str,
        attempt: i64,
        token: &str,
        outcome: &RunOutcome,
        last: Option<&EpochMetrics>,
        finished_at: f64,
    ) -> Result<bool> {
        if matches!(outcome.state, RunState::Stopped) {
            return self.release_run_in(tx, id, attempt, token).await;
        }
        let run = FinishedRun {
            id,
            attempt,
            outcome,
            last,
            finished_at,
        };
        let kept = self.finish_runs_in(tx, token, &[run]).await?;
        Ok(kept.first().copied().unwrap_or(false))
    }

    /// Records how several claimed runs ended (completed or diverged; a stopped run is released
    /// by [`Store::finish_run_in`] instead), a few hundred to a statement: the scheduler's
    /// writer ends every run of a burst with one `UPDATE … FROM (VALUES …)` instead of one
    /// statement per run. Returns, for each run, whether its claim still held (a run whose
    /// claim was lost is left as it is).
    pub(crate) async fn finish_runs_in(
        &self,
        tx: &mut SqliteConnection,
        token: &str,
        runs: &[FinishedRun<'_>],
    ) -> Result<Vec<bool>> {
        if let Some(run) = runs
            .iter()
            .find(|r| matches!(r.outcome.state, RunState::Stopped))
        {
            // A stopped run is given back (PENDING, its rows deleted), never ended here.
            return Err(crate::error::Error::Db(format!(
                "run {}: a stopped run cannot be recorded as ended",
                run.id
            )));
        }
        let mut kept = std::collections::HashSet::new();
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        // The last statement's padding rows have a NULL run id, which matches no run.
        for chunk in super::padded_chunks(runs, FINISHES_PER_UPDATE) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE runs SET state = v.column3, finished_at = v.column4, claimed_by = NULL, \
                 error = NULL, diverged_at_epoch = v.column5, diverged_reason = v.column6, \
                 epochs_done = v.column7, steps = v.column8, samples = v.column9, \
                 initial_train_loss = v.column10, final_train_loss = v.column11, \
                 final_train_acc = v.column12, final_test_loss = v.column13, \
                 final_test_acc = v.column14, best_test_acc = v.column15, wall_s = v.column16, \
                 eval_s = v.column17, instruments_s = v.column18, \
                 init_top_eigenvalue = v.column19, init_eigen_converged = v.column20, \
                 init_hessian_trace = v.column21, init_hessian_trace_se = v.column22, \
                 final_top_eigenvalue = v.column23, final_eigen_converged = v.column24, \
                 final_hessian_trace = v.column25, final_hessian_trace_se = v.column26 FROM (",
            );
            q.push_values(chunk, |mut b, r| {
                let Some(r) = r else {
                    for _ in 0..FINISH_PARAMS {
                        b.push_bind(None::<i64>);
                    }
                    return;
                };
                let o = r.outcome;
                let (state, epoch, reason) = match &o.state {
                    RunState::Diverged { epoch, reason } => {
                        ("diverged", Some(*epoch as i64), Some(reason.clone()))
                    }
                    // Stopped runs were refused above.
                    RunState::Completed | RunState::Stopped => ("completed", None, None),
                };
                let (ci, cf) = (o.curvature_init, o.curvature_final);
                b.push_bind(r.id.to_string())
                    .push_bind(r.attempt)
                    .push_bind(state)
                    .push_bind(r.finished_at)
                    .push_bind(epoch)
                    .push_bind(reason)
                    .push_bind(o.epochs as i64)
                    .push_bind(o.steps as i64)
                    .push_bind(o.samples as i64)
                    .push_bind(finite(Some(o.initial_train_loss)))
                    .push_bind(finite(r.last.map(|m| m.train_loss)))
                    .push_bind(finite(r.last.map(|m| m.train_acc)))
                    .push_bind(finite(r.last.map(|m| m.test_loss)))
                    .push_bind(finite(r.last.map(|m| m.test_acc)))
                    .push_bind(finite(o.best_test_acc))
                    .push_bind(o.wall_s)
                    .push_bind(o.eval_s)
                    .push_bind(o.instruments_s)
                    .push_bind(finite(ci.map(|c| c.top_eigenvalue)))
                    .push_bind(ci.map(|c| c.converged))
                    .push_bind(finite(ci.map(|c| c.trace)))
                    .push_bind(finite(ci.map(|c| c.trace_se)))
                    .push_bind(finite(cf.map(|c| c.top_eigenvalue)))
                    .push_bind(cf.map(|c| c.converged))
                    .push_bind(finite(cf.map(|c| c.trace)))
                    .push_bind(finite(cf.map(|c| c.trace_se)));
            });
            q.push(
                ") AS v WHERE runs.id = v.column1 AND runs.attempt = v.column2 \
                 AND runs.claimed_by = ",
            );
            q.push_bind(token.to_string());
            q.push(" AND runs.state = 'running' RETURNING runs.id");
            let ids: Vec<String> = q
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            kept.extend(ids);
        }
        Ok(runs.iter().map(|r| kept.contains(r.id)).collect())
    }

    /// Records an error. The run goes back to PENDING while it has failed fewer than
    /// `max_failures` times, and stays FAILED after that.
    pub async fn fail_run(
        &self,
        id: &str,
        attempt: i64,
        token: &str,
        error: &str,
        max_failures: i64,
    ) -> Result<bool> {
        let now = provenance::now();
        self.in_write_tx(async |tx| {
            self.fail_run_in(tx, id, attempt, token, error, max_failures, now)
                .await
        })
        .await
    }

    /// [`Store::fail_run`] inside a transaction the caller commits; `finished_at` is when the
    /// attempt ended.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fail_run_in(
        &self,
        tx: &mut SqliteConnection,
        id: &str,
        attempt: i64,
        token: &str,
        error: &str,
        max_failures: i64,
        finished_at: f64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE runs SET failures = failures + 1, error = ?, claimed_by = NULL, \
             finished_at = ?, \
             state = CASE WHEN failures + 1 >= ? THEN 'failed' ELSE 'pending' END \
             WHERE id = ? AND attempt = ? AND claimed_by = ? AND state = 'running'",
        )
        .bind(error)
        .bind(finished_at)
        .bind(max_failures)
        .bind(id)
        .bind(attempt)
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        if n == 1 {
            sqlx::query("DELETE FROM epoch_metrics WHERE run_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(n == 1)
    }

    /// Gives a claimed run back (interrupted by the user): PENDING again, partial metrics gone.
    pub async fn release_run(&self, id: &str, attempt: i64, token: &str) -> Result<bool> {
        self.in_write_tx(async |tx| self.release_run_in(tx, id, attempt, token).await)
            .await
    }

    /// [`Store::release_run`] inside a transaction the caller commits.
    async fn release_run_in(
        &self,
        tx: &mut SqliteConnection,
        id: &str,
        attempt: i64,
        token: &str,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE runs SET state = 'pending', claimed_by = NULL, heartbeat_at = NULL \
             WHERE id = ? AND attempt = ? AND claimed_by = ? AND state = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        if n == 1 {
            sqlx::query("DELETE FROM epoch_metrics WHERE run_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(n == 1)
    }

    /// Puts the FAILED runs of a sweep (or of all sweeps) back to PENDING with a fresh retry
    /// budget. Returns how many.
    pub async fn retry_failed(&self, sweep: Option<&str>) -> Result<u64> {
        let sql = format!(
            "UPDATE runs SET state = 'pending', failures = 0 WHERE state = 'failed' AND {SWEEP_FILTER}"
        );
        let _gate = self.write_gate().await;
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sweep)
            .execute(self.write_pool())
            .await
            .map_err(|e| self.err(e))?
            .rows_affected())
    }

    /// Number of runs in each state (of a sweep, or of all runs).
    pub async fn state_counts(&self, sweep: Option<&str>) -> Result<Vec<(RunStatus, i64)>> {
        let sql = format!("SELECT state, COUNT(*) FROM runs WHERE {SWEEP_FILTER} GROUP BY state");
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(sweep)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        let mut out: Vec<(RunStatus, i64)> = RunStatus::ALL.iter().map(|&s| (s, 0)).collect();
        for (state, n) in rows {
            if let Ok(s) = state.parse::<RunStatus>()
                && let Some(slot) = out.iter_mut().find(|(st, _)| *st == s)
            {
                slot.1 = n;
            }
        }
        Ok(out)
    }

    /// Runs being trained (of a sweep, or all).
    pub async fn running_runs(&self, sweep: Option<&str>) -> Result<Vec<RunningRun>> {
        let sql = format!(
            "SELECT id, claimed_by, started_at, heartbeat_at, attempt, lr, batch_size FROM runs \
             WHERE state = 'running' AND {SWEEP_FILTER} ORDER BY started_at"
        );
        sqlx::query_as::<_, RunningRun>(sqlx::AssertSqlSafe(sql))
            .bind(sweep)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// Runs that have failed at least once (of a sweep, or all), most recent first.
    pub async fn failed_runs(&self, sweep: Option<&str>, limit: i64) -> Result<Vec<FailedRun>> {
        let sql = format!(
            "SELECT id, state, failures, error FROM runs WHERE failures > 0 AND {SWEEP_FILTER} \
             ORDER BY finished_at DESC LIMIT ?2"
        );
        sqlx::query_as::<_, FailedRun>(sqlx::AssertSqlSafe(sql))
            .bind(sweep)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))
    }
}
