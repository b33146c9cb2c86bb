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
