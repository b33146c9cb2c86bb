//! The results store's epoch writes: rows of a claim that is not ours are dropped, rows of
//! several runs interleaved in one batch all land, a repeated epoch is not duplicated, and
//! non-finite values stay distinguishable from missing ones.

use std::path::Path;

use scalelab::db::Store;
use scalelab::db::metrics::EpochRow;
use scalelab::sweep::{Sweep, load_sweep};
use scalelab::train::EpochMetrics;

fn metrics(epoch: u32, test_loss: f64) -> EpochMetrics {
    EpochMetrics {
        epoch,
        step: 10 * epoch as u64,
        samples: 320 * epoch as u64,
        lr: 0.1,
        batch_size: 32,
        train_loss: 1.0 / (1.0 + epoch as f64),
        train_acc: 0.5,
        test_loss,
        test_acc: 0.25 + epoch as f64 / 100.0,
        wall_s: 0.01 * epoch as f64,
        grad_sq: None,
        trace_sigma: None,
        b_simple: (epoch > 0).then_some(12.5),
        grad_h_grad: (epoch > 1).then_some(0.5),
        trace_h_sigma: (epoch > 1).then_some(2.0),
        b_noise: (epoch > 1).then_some(4.0),
    }
}

fn row(run: &scalelab::db::runs::ClaimedRun, token: &str, m: EpochMetrics) -> EpochRow {
    EpochRow {
        run_id: run.id.clone(),
        attempt: run.attempt,
        token: token.into(),
        metrics: m,
    }
}

/// A new database in a temporary directory (kept alive by the first value) with the quickstart
/// sweep registered.
async fn quickstart_store() -> (tempfile::TempDir, Store, Sweep) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let sweep = load_sweep(Path::new("sweeps/quickstart.toml")).unwrap();
    store.register_sweep(&sweep).await.unwrap();
    (dir, store, sweep)
}

#[tokio::test]
async fn epoch_rows_land_only_under_their_own_claim() {
    let (_dir, store, _) = quickstart_store().await;
    let a = store.claim_next(None, "me").await.unwrap().unwrap();
    let b = store.claim_next(None, "me").await.unwrap().unwrap();
    let c = store
        .claim_next(None, "someone-else")
        .await
        .unwrap()
        .unwrap();
    assert!(a.id != b.id && b.id != c.id);

    // Interleaved runs, more rows than one INSERT takes, a repeat, a stranger's claim, a NaN.
    let mut batch = Vec::new();
    for e in 0..70 {
        batch.push(row(&a, "me", metrics(e, 2.0)));
        if e < 3 {
            batch.push(row(&b, "me", metrics(e, f64::NAN)));
            batch.push(row(&c, "me", metrics(e, 2.0)));
        }
    }
    batch.push(row(&a, "me", metrics(5, 99.0)));
    let written = store.record_epochs(&batch).await.unwrap();
    assert_eq!(written, 73, "70 of a, 3 of b; none of c, no duplicate");

    let ea = store.epochs_of(&a.id).await.unwrap();
    assert_eq!(ea.len(), 70);
    assert!(ea.iter().enumerate().all(|(i, r)| r.epoch == i as i64));
    assert_eq!(
        ea[5].test_loss,
        Some(2.0),
        "the first write of an epoch stays"
    );
    assert_eq!(ea[1].b_simple, Some(12.5));
    assert_eq!(ea[0].b_simple, None);
    let curved = store
        .query_table(
            "SELECT epoch, grad_h_grad, trace_h_sigma, b_noise FROM epoch_metrics \
             WHERE run_id = ? AND epoch < 3 ORDER BY epoch",
            &[scalelab::query::Param::Text(a.id.clone())],
        )
        .await
        .unwrap();
    let texts: Vec<Vec<String>> = curved
        .rows
        .iter()
        .map(|r| r.iter().map(|c| c.exact()).collect())
        .collect();
    assert_eq!(
        texts,
        [["0", "", "", ""], ["1", "", "", ""], ["2", "0.5", "2", "4"]]
    );
    assert_eq!(ea[3].step, 30);
    let eb = store.epochs_of(&b.id).await.unwrap();
    assert_eq!(eb.len(), 3);
    assert_eq!(eb[0].test_loss, None);
    assert!(eb[0].nonfinite.as_deref().unwrap().contains("test_loss"));
    assert!(store.epochs_of(&c.id).await.unwrap().is_empty());
}

/// Claims follow the sweep's order from the caller's cursor, and a run that became pending
/// again behind the cursor (a retry) is claimed once nothing is left after it.
#[tokio::test]
async fn claims_follow_sweep_order_from_the_cursor_and_come_back_for_retries() {
    let (_dir, store, sweep) = quickstart_store().await;
    let name = Some(sweep.name.as_str());

    let mut cursor = 0;
    let mut first = Vec::new();
    for expected in 0..3 {
        let run = store
            .claim_next_from(name, "me", cursor)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.position, Some(expected));
        assert_eq!(run.id, sweep.cells[expected as usize].run_id());
        cursor = expected + 1;
        first.push(run);
    }
    // The first run fails once: pending again, behind the cursor.
    let r0 = &first[0];
    assert!(
        store
            .fail_run(&r0.id, r0.attempt, "me", "disk hiccup", 3)
            .await
            .unwrap()
    );
    let next = store
        .claim_next_from(name, "me", cursor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.position, Some(3), "the cursor goes on first");
    cursor = 4;
    // Everything after the cursor is taken (by another process, say): the retry comes back.
    sqlx::query(
        "UPDATE runs SET state = 'running', claimed_by = 'other' WHERE state = 'pending' \
         AND id IN (SELECT run_id FROM sweep_runs WHERE position >= 4)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let retry = store
        .claim_next_from(name, "me", cursor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((retry.position, retry.attempt), (Some(0), 2));
    assert_eq!(retry.id, r0.id);
    assert!(
        store
            .claim_next_from(name, "me", 1)
            .await
            .unwrap()
            .is_none()
    );
    // Claimed for any sweep (a worker), a run has no position.
    sqlx::query("UPDATE runs SET state = 'pending' WHERE claimed_by = 'other'")
        .execute(store.pool())
        .await
        .unwrap();
    let any = store.claim_next(None, "me").await.unwrap().unwrap();
    assert_eq!(any.position, None);
}

/// A sweep of `seeds` × 10 learning rates × 8 batch sizes cells.
fn wide_sweep(seeds: u32) -> Sweep {
    named_sweep("wide", seeds)
}

/// [`wide_sweep`]'s cells under another name.
fn named_sweep(name: &str, seeds: u32) -> Sweep {
    let text = format!(
        "name = \"{name}\"\n[data]\ndataset = \"teacher\"\ntrain_size = 1000\ntest_size = 100\n\
         [model]\nkind = \"mlp\"\nhidden = [8]\n[train]\n\
         lr = {{ logspace = [0.004, 0.1], num = 10 }}\nbatch_size = {{ pow2 = [4, 512] }}\n\
         momentum = 0.9\nepochs = 2\nseeds = {seeds}\n"
    );
    scalelab::sweep::parse_sweep(&format!("{name}.toml"), &text).unwrap()
}

/// Every run of the sweep by position, with the columns registration derives from its config.
async fn registered(store: &Store) -> Vec<(i64, String, f64, i64, i64, String)> {
    sqlx::query_as(
        "SELECT s.position, r.id, r.lr, r.batch_size, r.seed, r.state FROM sweep_runs s \
         JOIN runs r ON r.id = s.run_id WHERE s.sweep = 'wide' ORDER BY s.position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// Registration writes its cells many to a statement: a sweep larger than one statement keeps
/// every cell, in order, with its own columns, and registering it again or shrinking it counts
/// what changed.
#[tokio::test]
async fn sweeps_larger_than_one_insert_register_every_cell_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let sweep = wide_sweep(15);
    assert_eq!(sweep.cells.len(), 1200);
    let enq = store.register_sweep(&sweep).await.unwrap();
    assert_eq!((enq.cells, enq.new_runs, enq.removed), (1200, 1200, 0));
    let rows = registered(&store).await;
    assert_eq!(rows.len(), 1200);
    for (i, (pos, id, lr, b, seed, state)) in rows.iter().enumerate() {
        let cell = &sweep.cells[i];
        assert_eq!(*pos, i as i64);
        assert_eq!(id, &cell.run_id(), "position {i}");
        assert_eq!(*lr, cell.lr);
        assert_eq!(*b, cell.batch_size as i64);
        assert_eq!(*seed, cell.seed as i64);
        assert_eq!(state, "pending");
    }
    let again = store.register_sweep(&sweep).await.unwrap();
    assert_eq!((again.new_runs, again.removed), (0, 0));
    assert_eq!(registered(&store).await, rows);
    // One seed fewer: 80 cells leave the sweep (their pending runs, in no other sweep, are
    // dropped), the rest keep their runs.
    let smaller = wide_sweep(14);
    let shrunk = store.register_sweep(&smaller).await.unwrap();
    assert_eq!(
        (
            shrunk.cells,
            shrunk.new_runs,
            shrunk.removed,
            shrunk.dropped
        ),
        (1120, 0, 80, 80)
    );
    let rows = registered(&store).await;
    assert_eq!(rows.len(), 1120);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!((row.0, &row.1), (i as i64, &smaller.cells[i].run_id()));
    }
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(runs, 1120);
}

/// Regression: a sweep file edited to drop cells left their pending runs in the queue, in no
/// sweep, where `status` did not count them and a `worker` trained them. Now the pending runs
/// no sweep lists any more are deleted; a run another sweep lists, and a run that is training
/// or has ended, is only unlinked.
#[tokio::test]
async fn a_shrunk_sweep_drops_only_its_pending_runs_no_other_sweep_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let wide = named_sweep("wide", 3);
    store.register_sweep(&wide).await.unwrap();
    // Another sweep lists the seed 1 and 2 cells (seeds count from 1).
    let other = store
        .register_sweep(&named_sweep("other", 2))
        .await
        .unwrap();
    assert_eq!((other.cells, other.new_runs), (160, 0));
    // Three seed-3 runs are no longer pending: one trains, two have ended.
    let seed3: Vec<String> = wide
        .cells
        .iter()
        .filter(|c| c.seed == 3)
        .map(|c| c.run_id())
        .collect();
    assert_eq!(seed3.len(), 80);
    for (id, state) in seed3.iter().zip(["running", "completed", "failed"]) {
        sqlx::query("UPDATE runs SET state = ? WHERE id = ?")
            .bind(state)
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
    }
    // An epoch row of the completed run, and one of a pending run (left by an interrupted
    // attempt): the first stays, the second goes with its run.
    for id in [&seed3[1], &seed3[5]] {
        sqlx::query(
            "INSERT INTO epoch_metrics (run_id, epoch, step, samples, lr, batch_size, wall_s) \
             VALUES (?, 0, 0, 0, 0.1, 4, 0.0)",
        )
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    }
    // Down to seed 1: the seed 2 and 3 cells (160) leave "wide".
    let shrunk = store.register_sweep(&named_sweep("wide", 1)).await.unwrap();
    assert_eq!(
        (shrunk.cells, shrunk.removed, shrunk.dropped),
        (80, 160, 77)
    );
    async fn count(store: &Store, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM runs").await, 240 - 77);
    // In no sweep now: only the three that were not pending, with what they stored.
    let unlisted: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, state FROM runs r WHERE NOT EXISTS \
         (SELECT 1 FROM sweep_runs s WHERE s.run_id = r.id) ORDER BY state",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut kept: Vec<(String, String)> = seed3[..3]
        .iter()
        .cloned()
        .zip(["running", "completed", "failed"].map(String::from))
        .collect();
    kept.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(unlisted, kept);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM epoch_metrics").await,
        1,
        "the dropped run's row went with it"
    );
    // The seed 2 runs stay pending, listed by "other" only; nothing pending is unlisted.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM runs r JOIN sweep_runs s ON s.run_id = r.id \
             WHERE s.sweep = 'other' AND r.seed = 2 AND r.state = 'pending'"
        )
        .await,
        80
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM runs r WHERE state = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM sweep_runs s WHERE s.run_id = r.id)"
        )
        .await,
        0
    );
    // Registering the dropped cells again enqueues them anew.
    let grown = store.register_sweep(&named_sweep("wide", 3)).await.unwrap();
    assert_eq!((grown.cells, grown.new_runs, grown.removed), (240, 77, 0));
}

/// Bulk reads (`Store::scan`, behind `query_table`) return SQLite's own types, bind their
/// parameters, name the columns of an empty result, fail with a line that names the database,
/// and leave the connection usable for sqlx.
#[tokio::test]
async fn bulk_reads_keep_types_and_leave_the_pool_usable() {
    use scalelab::db::query::Cell;
    use scalelab::query::Param;
    let (dir, store, sweep) = quickstart_store().await;
    let t = store
        .query_table(
            "SELECT 1 AS i, 2.5 AS r, 'x' AS t, NULL AS n, x'00ff' AS b, ? AS p, ? AS q",
            &[Param::Number(0.25), Param::Text("é".into())],
        )
        .await
        .unwrap();
    assert_eq!(t.columns, ["i", "r", "t", "n", "b", "p", "q"]);
    assert_eq!(
        t.rows,
        vec![vec![
            Cell::Int(1),
            Cell::Real(2.5),
            Cell::Text("x".into()),
            Cell::Null,
            Cell::Blob(vec![0, 255]),
            Cell::Real(0.25),
            Cell::Text("é".into()),
        ]]
    );
    assert_eq!(t.rows[0][4].exact(), "00ff");
    let empty = store
        .query_table("SELECT id, lr FROM runs WHERE 0", &[])
        .await
        .unwrap();
    assert_eq!((empty.columns.len(), empty.rows.len()), (2, 0));
    let ids = store
        .query_table(
            "SELECT r.id FROM runs r JOIN sweep_runs s ON s.run_id = r.id \
             WHERE s.sweep = ? ORDER BY s.position",
            &[Param::Text(sweep.name.clone())],
        )
        .await
        .unwrap();
    let want: Vec<Vec<Cell>> = sweep
        .cells
        .iter()
        .map(|c| vec![Cell::Text(c.run_id())])
        .collect();
    assert_eq!(ids.rows, want);
    for _ in 0..6 {
        let err = store
            .query_table("SELECT nope FROM runs", &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("db.sqlite")
                && err.contains("no such column: nope")
                && !err.contains('\n'),
            "{err}"
        );
    }
    // More failing reads than the pool has connections: every connection still works.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, sweep.cells.len() as i64);
    drop(dir);
}

/// Several runs claimed in one transaction come in sweep order from the cursor; fewer come
/// when fewer are pending; the start of the sweep is looked at only when nothing is pending
/// after the cursor, and a run claimed again loses the rows of its earlier attempt.
#[tokio::test]
async fn batched_claims_take_runs_in_sweep_order() {
    let (_dir, store, sweep) = quickstart_store().await;
    let name = Some(sweep.name.as_str());
    let positions = |runs: &[scalelab::db::runs::ClaimedRun]| -> Vec<Option<i64>> {
        runs.iter().map(|r| r.position).collect()
    };

    assert!(
        store
            .claim_batch(name, "me", 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.claim_batch(name, "me", 0, 5).await.unwrap();
    assert_eq!(positions(&first), (0..5).map(Some).collect::<Vec<_>>());
    for (p, run) in first.iter().enumerate() {
        assert_eq!(run.id, sweep.cells[p].run_id());
        assert_eq!(run.attempt, 1);
    }
    let next = store.claim_batch(name, "me", 5, 3).await.unwrap();
    assert_eq!(positions(&next), vec![Some(5), Some(6), Some(7)]);

    // Another process holds everything from position 10 on: two are left after the cursor.
    sqlx::query(
        "UPDATE runs SET state = 'running', claimed_by = 'other' WHERE state = 'pending' \
         AND id IN (SELECT run_id FROM sweep_runs WHERE position >= 10)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let tail = store.claim_batch(name, "me", 8, 10).await.unwrap();
    assert_eq!(positions(&tail), vec![Some(8), Some(9)]);
    let (state, claimer): (String, String) =
        sqlx::query_as("SELECT state, claimed_by FROM runs WHERE id = ?")
            .bind(&tail[1].id)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((state.as_str(), claimer.as_str()), ("running", "me"));

    // Run 0 fails once and is pending again, with a stray row of its first attempt (as a
    // process killed mid-write could leave): claimed again from the start, the row is gone.
    let r0 = &first[0];
    assert!(
        store
            .fail_run(&r0.id, 1, "me", "disk hiccup", 3)
            .await
            .unwrap()
    );
    sqlx::query(
        "INSERT INTO epoch_metrics (run_id, epoch, step, samples, lr, batch_size, wall_s) \
         VALUES (?, 0, 0, 0, 0.1, 32, 0.0)",
    )
    .bind(&r0.id)
    .execute(store.pool())
    .await
    .unwrap();
    let again = store.claim_batch(name, "me", 10, 4).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].position, again[0].attempt), (Some(0), 2));
    assert!(store.epochs_of(&r0.id).await.unwrap().is_empty());
    assert!(
        store
            .claim_batch(name, "me", 0, 4)
            .await
            .unwrap()
            .is_empty()
    );

    // For any sweep (a worker): creation order, no positions.
    sqlx::query("UPDATE runs SET state = 'pending', claimed_by = NULL WHERE claimed_by = 'other'")
        .execute(store.pool())
        .await
        .unwrap();
    let expected: Vec<String> =
        sqlx::query_scalar("SELECT id FROM runs WHERE state = 'pending' ORDER BY rowid LIMIT 3")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let any = store.claim_batch(None, "me", 0, 3).await.unwrap();
    assert_eq!(
        any.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(positions(&any), vec![None, None, None]);
}

/// More rows than one INSERT carries (512), from several runs in one call, one of them under a
/// claim that is not ours: every row of ours lands once, none of the other's; written again, none
/// is duplicated.
#[tokio::test]
async fn epoch_rows_beyond_one_statement_land_once_under_their_claims() {
    let (_dir, store, _) = quickstart_store().await;
    let a = store.claim_next(None, "me").await.unwrap().unwrap();
    let b = store.claim_next(None, "me").await.unwrap().unwrap();
    let c = store.claim_next(None, "other").await.unwrap().unwrap();
    let mut rows = Vec::new();
    for run in [&a, &c, &b] {
        rows.extend((0..250).map(|e| row(run, "me", metrics(e, 2.0))));
    }
    // 750 rows: a full statement of 512 (a's 250, c's 250, 12 of b's), then 238 of b's.
    assert_eq!(store.record_epochs(&rows).await.unwrap(), 500);
    assert_eq!(store.record_epochs(&rows).await.unwrap(), 0);
    let ea = store.epochs_of(&a.id).await.unwrap();
    let eb = store.epochs_of(&b.id).await.unwrap();
    assert_eq!((ea.len(), eb.len()), (250, 250));
    assert_eq!(eb[249].epoch, 249);
    assert_eq!(eb[249].samples, 320 * 249);
    assert!(store.epochs_of(&c.id).await.unwrap().is_empty());
}

/// `truncate_log` copies the write-ahead log into the database and cuts it to zero bytes; where
/// another connection reads from the log it gives up at once (it does not wait out the busy
/// timeout) and loses nothing; and every pooled connection keeps its busy timeout afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_the_log_empties_it_and_gives_way_at_once_to_a_reader() {
    use sqlx::Connection;
    let (dir, store, sweep) = quickstart_store().await;
    let db = dir.path().join("db.sqlite");
    let wal = dir.path().join("db.sqlite-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap();
    let runs = |store: &Store| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM runs")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(wal_len() > 0, "registering the sweep wrote to the log");
    assert!(store.truncate_log().await);
    assert_eq!(wal_len(), 0);
    assert_eq!(runs(&store).await, sweep.cells.len() as i64);

    // A reader in the middle of a transaction that reads from the log pins it.
    store.claim_next(None, "me").await.unwrap().unwrap();
    let before = wal_len();
    assert!(before > 0);
    let mut reader = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = 'running'")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(running, 1);
    let start = std::time::Instant::now();
    assert!(!store.truncate_log().await, "the log in use reported cut");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "waited {:?} for the reader",
        start.elapsed()
    );
    assert!(wal_len() >= before, "the log in use was cut");
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    assert_eq!(runs(&store).await, sweep.cells.len() as i64);

    // The writer's connection, which checkpointed, and every reader's (all at once) still wait
    // for another process's lock as configured.
    let mut tx = store.begin_write().await.unwrap();
    let mut timeouts = vec![
        sqlx::query_scalar::<_, i64>("PRAGMA busy_timeout")
            .fetch_one(&mut *tx)
            .await
            .unwrap(),
    ];
    drop(tx);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        let ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        timeouts.push(ms);
    }
    assert!(
        timeouts.iter().all(|&ms| ms > 0 && ms == timeouts[0]),
        "{timeouts:?}"
    );
}

/// Every write of a store goes through one connection, however its writes come (back to back,
/// or from eight tasks at once): each finds the temporary table, private to a connection, that
/// the first created. So each write statement is prepared once, and a write transaction dropped
/// on an error is rolled back on that connection before the next write begins. Readers have
/// connections of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_of_a_store_goes_through_one_connection() {
    let (_dir, store, _) = quickstart_store().await;
    let mut tx = store.begin_write().await.unwrap();
    sqlx::query("CREATE TEMP TABLE mine (n INTEGER)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    let mut tx = store.begin_write().await.unwrap();
                    sqlx::query("INSERT INTO temp.mine VALUES (?)")
                        .bind(i * 10 + j)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    if j == 5 {
                        // Dropped: rolled back, and the next write is not held up by it.
                        continue;
                    }
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut tx = store.begin_write().await.unwrap();
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT n) FROM temp.mine")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    drop(tx);
    assert_eq!((rows, distinct), (72, 72), "8 tasks x 9 committed rows");
    let reader = sqlx::query("SELECT COUNT(*) FROM temp.mine")
        .fetch_one(store.pool())
        .await;
    assert!(reader.is_err(), "a reader saw the writer's temporary table");
}

/// The state, failures, orphanings and error of a run.
async fn fate(store: &Store, id: &str) -> (String, i64, i64, Option<String>) {
    sqlx::query_as("SELECT state, failures, orphaned, error FROM runs WHERE id = ?")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_death_counts_against_the_orphan_that_had_begun_and_no_other() {
    let (_dir, store, sweep) = quickstart_store().await;
    let name = Some(sweep.name.as_str());
    // A process of this host that no longer exists (no pid is this large), and one elsewhere.
    let dead = format!("{}/4294967295/1", scalelab::provenance::host());
    let silent = "elsewhere/1/1";
    let claimed = store.claim_batch(name, &dead, 0, 2).await.unwrap();
    assert!(claimed.iter().all(|r| r.orphaned == 0));
    let (x, y) = (&claimed[0], &claimed[1]);
    // Its first death: neither run was marked, so neither is blamed; both are orphans now.
    let requeued = store.requeue_stale(60.0, 3).await.unwrap();
    assert_eq!((requeued.runs, requeued.deaths.len()), (2, 0));
    assert_eq!(fate(&store, &x.id).await, ("pending".into(), 0, 1, None));
    assert_eq!(fate(&store, &y.id).await, ("pending".into(), 0, 1, None));
    for death in 1..=3 {
        // Both are claimed again (as orphans); only `x` begins before the process goes.
        let again = store.claim_batch(name, silent, 0, 2).await.unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|r| r.orphaned >= 1), "{again:?}");
        let x_now = again.iter().find(|r| r.id == x.id).unwrap();
        assert!(
            store
                .mark_begun(&x_now.id, x_now.attempt, silent, true)
                .await
                .unwrap()
        );
        // Another claimer cannot mark it.
        assert!(
            !store
                .mark_begun(&x_now.id, x_now.attempt, "someone/2/2", true)
                .await
                .unwrap()
        );
        // A live heartbeat keeps the claim; a silent minute loses it.
        assert_eq!(store.requeue_stale(60.0, 3).await.unwrap().runs, 0);
        sqlx::query("UPDATE runs SET heartbeat_at = heartbeat_at - 120 WHERE claimed_by = ?")
            .bind(silent)
            .execute(store.pool())
            .await
            .unwrap();
        let requeued = store.requeue_stale(60.0, 3).await.unwrap();
        assert_eq!(requeued.runs, 2);
        assert_eq!(requeued.deaths.len(), 1);
        assert_eq!(requeued.deaths[0].id, x.id);
        assert_eq!(requeued.deaths[0].failed, death == 3);
        let (state, failures, orphaned, error) = fate(&store, &x.id).await;
        let error = error.unwrap();
        assert_eq!(
            (state.as_str(), failures, orphaned),
            (
                if death == 3 { "failed" } else { "pending" },
                death,
                death + 1
            )
        );
        assert!(
            error.contains("elsewhere/1/1") && error.contains("no heartbeat for 120 s"),
            "{error}"
        );
        assert_eq!(
            fate(&store, &y.id).await,
            ("pending".into(), 0, death + 1, None)
        );
        // Once failed for good, `x` is claimed no more: the next claim gets `y` and a fresh run.
        if death == 3 {
            let next = store.claim_batch(name, silent, 0, 2).await.unwrap();
            assert!(next.iter().all(|r| r.id != x.id));
            assert!(next.iter().any(|r| r.id == y.id));
        }
    }
    // A mark cleared after training (the run ended) blames nothing.
    let z = store.claim_next(name, &dead).await.unwrap().unwrap();
    assert!(
        store
            .mark_begun(&z.id, z.attempt, &dead, true)
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_begun(&z.id, z.attempt, &dead, false)
            .await
            .unwrap()
    );
    let requeued = store.requeue_stale(60.0, 3).await.unwrap();
    assert!(requeued.deaths.is_empty());
    let (state, failures, _, error) = fate(&store, &z.id).await;
    assert_eq!((state.as_str(), failures, error), ("pending", 0, None));
    // The one of a dead process of this host names it.
    let w = store.claim_next(name, &dead).await.unwrap().unwrap();
    assert!(
        store
            .mark_begun(&w.id, w.attempt, &dead, true)
            .await
            .unwrap()
    );
    let requeued = store.requeue_stale(60.0, 3).await.unwrap();
    assert_eq!(requeued.deaths.len(), 1);
    assert!(
        requeued.deaths[0].error.contains(&dead) && requeued.deaths[0].error.contains("died"),
        "{}",
        requeued.deaths[0].error
    );
}

/// `scalelab run` gives a head start (training ahead of any claim, so with no trace in the
/// database if the run kills the process) only on a database file it creates: the file is
/// there before any cell trains, so a second launch never trains ahead, whatever the first left.
/// The empty file it creates is a database the store opens and migrates.
#[tokio::test]
async fn only_a_database_file_made_by_this_run_gets_a_head_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    assert!(scalelab::db::create_new_file(&path));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    // The next launch, after a first that died at once: the file is there, no head start.
    assert!(!scalelab::db::create_new_file(&path));
    let store = Store::open(&path).await.unwrap();
    let sweep = load_sweep(Path::new("sweeps/quickstart.toml")).unwrap();
    let enq = store.register_sweep(&sweep).await.unwrap();
    assert_eq!(enq.new_runs as usize, sweep.cells.len());
    store.close().await;
    assert!(!scalelab::db::create_new_file(&path));
    // Nothing can be made where the directory is missing: no head start, and the store's own
    // error names the path.
    let nowhere = dir.path().join("missing").join("db.sqlite");
    assert!(!scalelab::db::create_new_file(&nowhere));
    assert!(!nowhere.exists());
}

/// A database migrated by a newer scalelab (a schema version this build does not have) is
/// refused at once in one line that says so and names the file; its runs are untouched.
#[tokio::test]
async fn a_database_from_a_newer_scalelab_is_refused_by_name() {
    use sqlx::Connection;
    let (dir, store, sweep) = quickstart_store().await;
    store.close().await;
    let db = dir.path().join("db.sqlite");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let start = std::time::Instant::now();
    let err = match Store::open(&db).await {
        Ok(_) => panic!("opened a database of schema version 9999"),
        Err(e) => e.to_string(),
    };
    assert!(start.elapsed() < std::time::Duration::from_millis(500));
    assert!(
        err.contains("newer scalelab")
            && err.contains("9999")
            && err.contains(&db.display().to_string())
            && !err.contains('\n'),
        "{err}"
    );
    let ro = Store::open_read_only(&db).await.unwrap();
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(ro.pool())
        .await
        .unwrap();
    assert_eq!(runs, sweep.cells.len() as i64);
}
