//! Per-epoch metrics. Non-finite values (a diverged run's NaN or infinite loss) are stored as
//! NULL in their column *and* named in `nonfinite` (e.g. `train_loss=nan,test_loss=inf`), so
//! they stay distinguishable from missing values; SQLite itself cannot store NaN.

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
        let mut tx = self.begin_write().await?;
        let mut written = 0;
        for r in rows {
            let m = &r.metrics;
            let mut flags = Vec::new();
            let train_loss = split("train_loss", m.train_loss, &mut flags);
            let train_acc = split("train_acc", m.train_acc, &mut flags);
            let test_loss = split("test_loss", m.test_loss, &mut flags);
            let test_acc = split("test_acc", m.test_acc, &mut flags);
            let nonfinite = (!flags.is_empty()).then(|| flags.join(","));
            written += sqlx::query(
                "INSERT INTO epoch_metrics (run_id, epoch, step, samples, lr, batch_size, \
                 train_loss, train_acc, test_loss, test_acc, nonfinite, wall_s, grad_sq, \
                 trace_sigma, b_simple) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND attempt = ? \
                               AND claimed_by = ? AND state = 'running') \
                 ON CONFLICT (run_id, epoch) DO NOTHING",
            )
            .bind(&r.run_id)
            .bind(m.epoch as i64)
            .bind(m.step as i64)
            .bind(m.samples as i64)
            .bind(m.lr)
            .bind(m.batch_size as i64)
            .bind(train_loss)
            .bind(train_acc)
            .bind(test_loss)
            .bind(test_acc)
            .bind(nonfinite)
            .bind(m.wall_s)
            .bind(m.grad_sq.filter(|v| v.is_finite()))
            .bind(m.trace_sigma.filter(|v| v.is_finite()))
            .bind(m.b_simple.filter(|v| v.is_finite()))
            .bind(&r.run_id)
            .bind(r.attempt)
            .bind(&r.token)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected();
        }
        tx.commit().await.map_err(|e| self.err(e))?;
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
