//! Sweeps and their cells: idempotent registration (a sweep run twice enqueues nothing twice;
//! overlapping sweeps share runs) and the per-sweep summaries.

use sqlx::Row;

use super::Store;
use crate::config::RunConfig;
use crate::error::Result;
use crate::provenance;
use crate::sweep::Sweep;

/// What registering a sweep changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Cells in the sweep.
    pub cells: u64,
    /// Runs created now (the others already existed, from this or another sweep).
    pub new_runs: u64,
    /// Cells that an earlier version of the sweep file had and this one has not (their runs
    /// are unlinked from the sweep, and kept unless [`Enqueued::dropped`] counts them).
    pub removed: u64,
    /// Of the removed cells' runs, those still pending and in no other sweep: deleted, so that
    /// no `worker` trains what no sweep asks for any more.
    pub dropped: u64,
    /// Whether the sweep's file changed since it was last registered.
    pub spec_changed: bool,
    /// Where the sweep replaced was registered from, when its text differed and the file was
    /// another (as given on the command line).
    pub replaced_path: Option<String>,
}

/// One row of `sweeps`, with counts of its runs by state.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SweepRow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// File it was registered from.
    pub path: Option<String>,
    /// Default metric of its fits.
    pub metric: String,
    /// Default select rule.
    pub select_rule: String,
    /// Number of cells.
    pub cells: i64,
    /// Registration time (Unix seconds).
    pub created_at: f64,
    /// Last registration time.
    pub updated_at: f64,
}

/// Cells per multi-row `INSERT`: 23 bound values a row stays well under SQLite's limit of
/// 32,766 per statement.
const CELLS_PER_INSERT: usize = 500;

fn run_columns(cfg: &RunConfig) -> (String, String) {
    let hidden = serde_json::to_string(&cfg.model.hidden).unwrap_or_default();
    let config = cfg.stored_json();
    (hidden, config)
}

impl Store {
    /// Registers (or re-registers) a sweep and enqueues its cells, in one transaction.
    pub async fn register_sweep(&self, sweep: &Sweep) -> Result<Enqueued> {
        let now = provenance::now();
        let mut tx = self.begin_write().await?;
        let old: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT spec_hash, path FROM sweeps WHERE name = ?")
                .bind(&sweep.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        let (old_hash, old_path) = old.unzip();
        sqlx::query(
            "INSERT INTO sweeps (name, description, path, spec, spec_hash, metric, select_rule, \
             cells, created_at, updated_at, scalelab_version, git_revision) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, \
             path = excluded.path, spec = excluded.spec, spec_hash = excluded.spec_hash, \
             metric = excluded.metric, select_rule = excluded.select_rule, \
             cells = excluded.cells, updated_at = excluded.updated_at, \
             scalelab_version = excluded.scalelab_version, git_revision = excluded.git_revision",
        )
        .bind(&sweep.name)
        .bind(&sweep.description)
        .bind(&sweep.path)
        .bind(&sweep.spec)
        .bind(&sweep.spec_hash)
        .bind(&sweep.metric)
        .bind(&sweep.select)
        .bind(sweep.cells.len() as i64)
        .bind(now)
        .bind(now)
        .bind(provenance::VERSION)
        .bind(provenance::git_revision())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;

        // Mark the old membership, then re-link every cell; what stays marked was removed.
        sqlx::query("UPDATE sweep_runs SET position = -1 WHERE sweep = ?")
            .bind(&sweep.name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        // Many rows per statement: one statement per cell made a 100,000-cell sweep spend most
        // of its time handing statements to SQLite's thread.
        let mut new_runs = 0;
        for (n, chunk) in sweep.cells.chunks(CELLS_PER_INSERT).enumerate() {
            let first_pos = n * CELLS_PER_INSERT;
            let rows: Vec<(usize, &RunConfig, String, String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, cfg)| {
                    let (hidden, config) = run_columns(cfg);
                    (first_pos + i, cfg, cfg.run_id(), hidden, config)
                })
                .collect();
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO runs (id, config, dataset, model, hidden, train_size, test_size, \
                 data_seed, lr, batch_size, momentum, nesterov, weight_decay, noise_scale, \
                 lr_from_noise, schedule, schedule_label, budget_kind, budget, planned_steps, \
                 seed, state, created_at) ",
            );
            q.push_values(&rows, |mut b, (_, cfg, id, hidden, config)| {
                b.push_bind(id.as_str())
                    .push_bind(config.as_str())
                    .push_bind(cfg.data.dataset.name())
                    .push_bind(cfg.model.kind.name())
                    .push_bind(hidden.as_str())
                    .push_bind(cfg.data.train_size as i64)
                    .push_bind(cfg.data.test_size as i64)
                    .push_bind(cfg.data.data_seed as i64)
                    .push_bind(cfg.lr)
                    .push_bind(cfg.batch_size as i64)
                    .push_bind(cfg.momentum)
                    .push_bind(cfg.nesterov)
                    .push_bind(cfg.weight_decay)
                    .push_bind(cfg.initial_noise_scale())
                    .push_bind(cfg.noise_scale.is_some())
                    .push_bind(cfg.schedule.mode())
                    .push_bind(cfg.schedule.label())
                    .push_bind(cfg.budget.kind())
                    .push_bind(cfg.budget.amount() as i64)
                    .push_bind(cfg.planned_updates() as i64)
                    .push_bind(cfg.seed as i64)
                    .push_bind("pending")
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            new_runs += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?
                .rows_affected();
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO sweep_runs (sweep, run_id, position) ",
            );
            q.push_values(&rows, |mut b, (pos, _, id, _, _)| {
                b.push_bind(sweep.name.as_str())
                    .push_bind(id.as_str())
                    .push_bind(*pos as i64);
            });
            // A cell listed twice keeps its last position, as when each was its own statement.
            q.push(" ON CONFLICT (sweep, run_id) DO UPDATE SET position = excluded.position");
            q.build().execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        // A removed cell's run that has not been trained and that no other sweep lists is work
        // no one asks for: a `worker` (which trains the pending runs of every sweep) would
        // still train it, so it is deleted (its link, any epoch rows of an interrupted attempt
        // and the errors of failed attempts that were retried go with it). Runs being trained,
        // runs that ended (completed, diverged, failed) and runs another sweep lists are only
        // unlinked.
        let dropped = sqlx::query(
            "DELETE FROM runs WHERE state = 'pending' \
             AND id IN (SELECT run_id FROM sweep_runs WHERE sweep = ?1 AND position = -1) \
             AND NOT EXISTS (SELECT 1 FROM sweep_runs s WHERE s.run_id = runs.id \
                             AND NOT (s.sweep = ?1 AND s.position = -1))",
        )
        .bind(&sweep.name)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        let unlinked = sqlx::query("DELETE FROM sweep_runs WHERE sweep = ? AND position = -1")
            .bind(&sweep.name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected();
        let removed = dropped + unlinked;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(Enqueued {
            cells: sweep.cells.len() as u64,
            new_runs,
            removed,
            dropped,
            spec_changed: old_hash.as_ref().is_some_and(|h| h != &sweep.spec_hash),
            replaced_path: old_path
                .flatten()
                .filter(|p| old_hash.is_some_and(|h| h != sweep.spec_hash) && p != &sweep.path),
        })
    }

    /// A sweep by name, if registered.
    pub async fn sweep(&self, name: &str) -> Result<Option<SweepRow>> {
        sqlx::query_as::<_, SweepRow>(
            "SELECT name, description, path, metric, select_rule, cells, created_at, updated_at \
             FROM sweeps WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))
    }

    /// Every registered sweep, oldest first.
    pub async fn sweeps(&self) -> Result<Vec<SweepRow>> {
        sqlx::query_as::<_, SweepRow>(
            "SELECT name, description, path, metric, select_rule, cells, created_at, updated_at \
             FROM sweeps ORDER BY created_at, name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))
    }

    /// The state of each of `ids` that is in the database (others are absent from the map).
    pub async fn states_of(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT id, state FROM runs WHERE id IN ({placeholders})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(self.pool()).await.map_err(|e| self.err(e))? {
                out.insert(row.get::<String, _>(0), row.get::<String, _>(1));
            }
        }
        Ok(out)
    }
}
