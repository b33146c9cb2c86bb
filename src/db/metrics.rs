//! Per-epoch metrics. Non-finite values (a diverged run's NaN or infinite loss) are stored as
//! NULL in their column *and* named in `nonfinite` (e.g. `train_loss=nan,test_loss=inf`), so
//! they stay distinguishable from missing values; SQLite itself cannot store NaN.

use sqlx::SqliteConnection;

use super::Store;
use crate::error::Result;
use crate::train::EpochMetrics;

/// One epoch row to write, tagged with the claim it belongs to.
#[derive(Clone, Debug)]
pub struct EpochRow {
    /// The run.
    pub run_id: String,
    /// The claim number of the attempt that produced it.
    pub attempt: i64,
    /// The claimer's token.
    pub token: String,
    /// The numbers.
    pub metrics: EpochMetrics,
}

/// An epoch as read back from the database.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredEpoch {
    /// The run.
    pub run_id: String,
    /// Epoch number (0 = at initialisation).
    pub epoch: i64,
    /// Updates so far.
    pub step: i64,
    /// Examples so far.
    pub samples: i64,
    /// Learning rate in force.
    pub lr: f64,
    /// Batch size in force.
    pub batch_size: i64,
    /// Mean training loss (NULL if missing or non-finite).
    pub train_loss: Option<f64>,
    /// Training accuracy.
    pub train_acc: Option<f64>,
    /// Mean test loss.
    pub test_loss: Option<f64>,
    /// Test accuracy.
    pub test_acc: Option<f64>,
    /// Which columns were non-finite, and how.
    pub nonfinite: Option<String>,
    /// Seconds since the run started.
    pub wall_s: f64,
    /// Gradient noise scale B_simple (when measured).
    pub b_simple: Option<f64>,
}

/// Epoch rows per INSERT statement, padded (20 parameters each: 2,560 in all, below the
/// 32,766 that SQLite allows). A two-job quickstart's bursts carry 90–290 rows.
const ROWS_PER_INSERT: usize = 128;

/// Parameters of one epoch row in [`Store::record_epochs_in`]'s statement.
const EPOCH_PARAMS: usize = 20;

fn split(name: &str, v: f64, flags: &mut Vec<String>) -> Option<f64> {
    if v.is_finite() {
        Some(v)
    } else {
        let kind = if v.is_nan() {
            "nan"
        } else if v > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        flags.push(format!("{name}={kind}"));
        None
    }
}

impl Store {
    /// Writes epoch rows in one transaction. A row is written only while its run is still
    /// claimed by the same attempt, so a presumed-dead process cannot add stale rows.
    pub async fn record_epochs(&self, rows: &[EpochRow]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.in_write_tx(async |tx| self.record_epochs_in(tx, rows).await)
            .await
    }

    /// [`Store::record_epochs`] inside a transaction the caller commits.
    pub(crate) async fn record_epochs_in(
        &self,
        tx: &mut SqliteConnection,
        rows: &[EpochRow],
    ) -> Result<u64> {
        let mut written = 0;
        // Rows of many runs go in multi-row statements of `ROWS_PER_INSERT` (the writer
        // gathers the rows of every run that ended within its linger), and each row is kept
        // only while its claim holds: the join with `runs` checks the claim row by row, so no
        // statement per run is needed for it. The last statement's padding rows have a NULL
        // run id, which joins nothing.
        for chunk in super::padded_chunks(rows, ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO epoch_metrics (run_id, epoch, step, samples, lr, batch_size, \
                 train_loss, train_acc, test_loss, test_acc, nonfinite, wall_s, grad_sq, \
                 trace_sigma, b_simple, grad_h_grad, trace_h_sigma, b_noise) \
                 SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, \
                 v.column7, v.column8, v.column9, v.column10, v.column11, v.column12, \
                 v.column13, v.column14, v.column15, v.column16, v.column17, v.column18 FROM (",
            );
            q.push_values(chunk, |mut b, r| {
                let Some(r) = r else {
                    for _ in 0..EPOCH_PARAMS {
                        b.push_bind(None::<i64>);
                    }
                    return;
                };
                let m = &r.metrics;
                let mut flags = Vec::new();
                let train_loss = split("train_loss", m.train_loss, &mut flags);
                let train_acc = split("train_acc", m.train_acc, &mut flags);
                let test_loss = split("test_loss", m.test_loss, &mut flags);
                let test_acc = split("test_acc", m.test_acc, &mut flags);
                let nonfinite = (!flags.is_empty()).then(|| flags.join(","));
                b.push_bind(r.run_id.clone())
                    .push_bind(m.epoch as i64)
                    .push_bind(m.step as i64)
                    .push_bind(m.samples as i64)
                    .push_bind(m.lr)
                    .push_bind(m.batch_size as i64)
                    .push_bind(train_loss)
                    .push_bind(train_acc)
                    .push_bind(test_loss)
                    .push_bind(test_acc)
                    .push_bind(nonfinite)
                    .push_bind(m.wall_s)
                    .push_bind(m.grad_sq.filter(|v| v.is_finite()))
                    .push_bind(m.trace_sigma.filter(|v| v.is_finite()))
                    .push_bind(m.b_simple.filter(|v| v.is_finite()))
                    .push_bind(m.grad_h_grad.filter(|v| v.is_finite()))
                    .push_bind(m.trace_h_sigma.filter(|v| v.is_finite()))
                    .push_bind(m.b_noise.filter(|v| v.is_finite()))
                    .push_bind(r.attempt)
                    .push_bind(r.token.clone());
            });
            // `WHERE true` is SQLite's required disambiguation of INSERT … SELECT … ON CONFLICT.
            q.push(
                ") AS v JOIN runs r ON r.id = v.column1 AND r.attempt = v.column19 \
                 AND r.claimed_by = v.column20 AND r.state = 'running' \
                 WHERE true ON CONFLICT (run_id, epoch) DO NOTHING",
            );
            // Every chunk has one size (`padded_chunks`): the text stays prepared.
            written += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?
                .rows_affected();
        }
        Ok(written)
    }

    /// The per-epoch series of one run, in epoch order.
    pub async fn epochs_of(&self, run_id: &str) -> Result<Vec<StoredEpoch>> {
        sqlx::query_as::<_, StoredEpoch>(
            "SELECT run_id, epoch, step, samples, lr, batch_size, train_loss, train_acc, \
             test_loss, test_acc, nonfinite, wall_s, b_simple FROM epoch_metrics WHERE run_id = ? \
             ORDER BY epoch",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))
    }
}
