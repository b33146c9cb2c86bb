//! `scalelab run` as users drive it: real processes, a real SQLite file, kill -9, Ctrl-C, two
//! processes on one database, bad sweep files, unusable databases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scalelab::db::Store;

mod common;

use common::{fail_in_one_line, scalelab, scalelab_in, succeed};

/// Runs `scalelab worker --db d --jobs JOBS --quiet`, asserts that it exits with status 1, as
/// when runs it trained ended FAILED, and returns its last line on stderr (after a line per
/// failed attempt).
fn worker_fails(d: &str, jobs: &str) -> String {
    let out = scalelab()
        .args(["worker", "--db", d, "--quiet", "--jobs", jobs])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err.trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn run_ok(args: &[&str]) -> Output {
    succeed(scalelab().args(args))
}

/// Writes `from` (a [`write_sweep`] sweep of one seed) to `to` with two seeds: the same cells
/// and as many new ones. Returns `to`.
fn with_two_seeds(from: &Path, to: &Path) -> PathBuf {
    let text = std::fs::read_to_string(from).unwrap();
    assert!(text.contains("seeds = 1"), "{text}");
    std::fs::write(to, text.replace("seeds = 1", "seeds = 2")).unwrap();
    to.to_path_buf()
}

/// A sweep of `cells` runs (seeds) of a few tenths of a second each.
fn write_sweep(dir: &Path, name: &str, seeds: u32, epochs: u32) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
name = "{name}"
[data]
dataset = "teacher"
train_size = 1000
test_size = 500
[model]
hidden = [64]
[train]
lr = [0.01, 0.03]
batch_size = [8, 32]
momentum = 0.9
epochs = {epochs}
seeds = {seeds}
"#
        ),
    )
    .unwrap();
    path
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn count(db: &Path, sql: &'static str) -> i64 {
    try_count(db, sql).unwrap_or_else(|| panic!("cannot read {}", db.display()))
}

/// The number, or None while the database is not (yet) readable.
fn try_count(db: &Path, sql: &'static str) -> Option<i64> {
    rt().block_on(async {
        let store = Store::open_read_only(db).await.ok()?;
        let n: Option<i64> = sqlx::query_scalar(sql).fetch_one(store.pool()).await.ok();
        store.close().await;
        n
    })
}

fn wait_until(child: &mut Child, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child exited ({status}) before {what}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every cell has exactly one completed (or diverged) run whose metrics are all there, once.
fn assert_complete_and_consistent(db: &Path, cells: i64, epochs: i64) {
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM runs WHERE state IN ('completed', 'diverged')"
        ),
        cells
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM runs WHERE state NOT IN ('completed', 'diverged')"
        ),
        0
    );
    let bad: Vec<(String, String, i64, i64, i64, i64)> = rt().block_on(async {
        let store = Store::open_read_only(db).await.unwrap();
        sqlx::query_as(
            "SELECT r.id, r.state, r.epochs_done, COALESCE(r.diverged_at_epoch, -1), \
             COUNT(m.epoch), COALESCE(MAX(m.epoch), -1) \
             FROM runs r LEFT JOIN epoch_metrics m ON m.run_id = r.id GROUP BY r.id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    });
    for (id, state, done, div, n, max) in bad {
        // Epochs 0..=last, each exactly once (the primary key forbids duplicates).
        let last = if state == "completed" { epochs } else { div };
        assert_eq!((done, n, max), (last, last + 1, last), "run {id} ({state})");
    }
}

#[test]
fn a_sweep_runs_once_and_a_second_run_trains_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "once", 2, 3);
    let db = dir.path().join("r.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let out = run_ok(&["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("8 cells (8 new runs)"), "{text}");
    // Every line is out, and the database was closed (its log copied in and removed) before
    // the process ended.
    assert!(
        text.contains("trained 8 runs") && text.ends_with("0 failed\n"),
        "{text}"
    );
    for leftover in ["r.db-wal", "r.db-shm"] {
        assert!(
            !dir.path().join(leftover).exists(),
            "{leftover} left behind"
        );
    }
    assert_complete_and_consistent(&db, 8, 3);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE attempt != 1"),
        0
    );
    let start = Instant::now();
    let out = run_ok(&["run", s, "--db", d, "--no-report", "--quiet"]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0 new runs") && text.contains("0 to train"),
        "{text}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE attempt != 1"),
        0
    );
    // Provenance is recorded with every run.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM runs WHERE host IS NULL OR threads != 1 OR scalelab_version IS NULL \
             OR budget_kind != 'epochs'"
        ),
        0
    );
    // With the level of the kernels that trained it, as this build detects it.
    use scalelab::train::isa::Isa;
    let other_level = match Isa::detected() {
        Isa::Avx512 => "SELECT COUNT(*) FROM runs WHERE kernels IS NOT 'AVX-512'",
        Isa::Avx2 => "SELECT COUNT(*) FROM runs WHERE kernels IS NOT 'AVX2'",
        Isa::Portable => "SELECT COUNT(*) FROM runs WHERE kernels IS NOT 'portable'",
    };
    assert_eq!(count(&db, other_level), 0);
    // And the processor that trained it (NULL where this system does not name it).
    let other_cpu: i64 = rt().block_on(async {
        let store = Store::open_read_only(&db).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE cpu IS NOT ?")
            .bind(scalelab::provenance::cpu_model())
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.close().await;
        n
    });
    assert_eq!(other_cpu, 0);
    // An overlapping sweep shares the runs it has in common.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&sweep)
            .unwrap()
            .replace("name = \"once\"", "name = \"other\"")
            .replace("seeds = 2", "seeds = 3"),
    )
    .unwrap();
    let out = run_ok(&[
        "run",
        other.to_str().unwrap(),
        "--db",
        d,
        "--no-report",
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("12 cells (4 new runs)"), "{text}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs"), 12);
}

#[cfg(unix)]
#[test]
fn kill_dash_nine_then_rerun_completes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "killed", 3, 100);
    let db = dir.path().join("k.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let mut child = scalelab()
        .args(["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&mut child, "a run completes while others run", || {
        try_count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'completed'").unwrap_or(0) >= 1
            && try_count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'running'").unwrap_or(0) >= 1
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let completed_before: Vec<(String, i64)> = rt().block_on(async {
        let store = Store::open_read_only(&db).await.unwrap();
        sqlx::query_as(
            "SELECT r.id, COUNT(m.epoch) FROM runs r JOIN epoch_metrics m ON m.run_id = r.id \
             WHERE r.state = 'completed' GROUP BY r.id ORDER BY r.id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    });
    assert!(!completed_before.is_empty());
    let running = count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'running'");
    assert!(running >= 1);
    // `status` says which claims' process is gone, and what puts them back.
    let status = String::from_utf8(run_ok(&["status", "--db", d]).stdout).unwrap();
    assert_eq!(
        status.matches(" (process gone)").count() as i64,
        running,
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "{running} of these were claimed by a process of this host that is gone: \
             `scalelab worker`, or `run` of their sweep, puts them back in the queue"
        )),
        "{status}"
    );
    // The rerun sees the dead claimer (same host, process gone) and retrains its runs at once.
    let start = Instant::now();
    run_ok(&["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"]);
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_complete_and_consistent(&db, 12, 100);
    // Nothing completed before the kill was retrained or lost.
    for (id, n) in completed_before {
        let (attempt, epochs): (i64, i64) = rt().block_on(async {
            let store = Store::open_read_only(&db).await.unwrap();
            sqlx::query_as(
                "SELECT attempt, (SELECT COUNT(*) FROM epoch_metrics WHERE run_id = ?1) \
                 FROM runs WHERE id = ?1",
            )
            .bind(&id)
            .fetch_one(store.pool())
            .await
            .unwrap()
        });
        assert_eq!(attempt, 1, "run {id} was trained again");
        assert_eq!(epochs, n, "run {id} lost or gained metrics");
    }
    // The interrupted runs were trained again (attempt 2).
    assert!(count(&db, "SELECT COUNT(*) FROM runs WHERE attempt = 2") >= 1);
}

#[test]
fn two_processes_split_the_cells_and_train_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "pair", 3, 60);
    let db = dir.path().join("p.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    // Create the database first so both start on the same file.
    run_ok(&["sweep", "show", s, "--db", d]);
    let spawn = || {
        scalelab()
            .args(["run", s, "--db", d, "--jobs", "1", "--no-report", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_complete_and_consistent(&db, 12, 60);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE attempt != 1"),
        0
    );
    // Both processes trained some of the runs.
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT worker) FROM runs"), 2);
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_interrupted_runs_pending_and_the_database_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "sigint", 3, 200);
    let db = dir.path().join("c.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let mut child = scalelab()
        .args(["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two training, and one claimed ahead for the next free job slot.
    wait_until(&mut child, "two runs are running", || {
        try_count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'running'").unwrap_or(0) >= 2
    });
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        start.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'running'"),
        0
    );
    assert!(count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'pending'") >= 2);
    // Pending runs keep no partial metrics; finished runs keep all of theirs (epochs 0 to 200: a
    // short cell trained ahead while the database opened may complete before it is stopped).
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM epoch_metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.state = 'pending'"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM runs r WHERE r.state = 'completed' AND \
             (SELECT COUNT(*) FROM epoch_metrics m WHERE m.run_id = r.id) != 201"
        ),
        0
    );
    // And the sweep can be finished later.
    run_ok(&["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"]);
    assert_complete_and_consistent(&db, 12, 200);
}

/// Ctrl-C while a large sweep is still being enqueued stops the command once the enqueue has
/// committed: nothing trains (a head start included). The process starts with SIGINT ignored,
/// as a background job of a shell script does: a handler installed only once training began
/// missed such a signal, and the whole sweep trained.
#[cfg(unix)]
#[test]
fn ctrl_c_during_the_enqueue_trains_nothing() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "early", 15_000, 2);
    let db = dir.path().join("e.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let mut cmd = scalelab();
    cmd.args(["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // The file is made after validation, before the 60,000 cells are enqueued.
    wait_until(&mut child, "the database file is made", || db.exists());
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state != 'pending'"),
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM epoch_metrics"), 0);
    // The enqueue is whole or absent, never partial.
    let runs = count(&db, "SELECT COUNT(*) FROM runs");
    assert!(runs == 0 || runs == 60_000, "{runs}");
}

#[test]
fn bad_sweep_files_are_rejected_before_anything_is_enqueued() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(write_sweep(dir.path(), "good", 1, 2)).unwrap();
    let db = dir.path().join("bad.db");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown key",
            good.replace("momentum = 0.9", "momentum = 0.9\nmomentom = 0.5"),
            &[":13:1", "momentom"],
        ),
        (
            "wrong type",
            good.replace("epochs = 2", "epochs = \"2\""),
            &[":13:", "epochs"],
        ),
        (
            "empty axis",
            good.replace("lr = [0.01, 0.03]", "lr = []"),
            &[":10:", "empty axis"],
        ),
        (
            "B > N",
            good.replace("batch_size = [8, 32]", "batch_size = [8, 2048]"),
            &["cell", "batch_size=2048", "train_size=1000"],
        ),
        (
            "m ≥ 1",
            good.replace("momentum = 0.9", "momentum = 1.0"),
            &[":12:", "momentum"],
        ),
        (
            "negative lr",
            good.replace("lr = [0.01, 0.03]", "lr = [0.01, -0.03]"),
            &[":10:", "-0.03"],
        ),
        (
            "unknown schedule",
            good.replace("seeds = 1", "seeds = 1\nschedule = \"warmup\""),
            &[":15:", "warmup"],
        ),
        ("syntax", good.replace("[model]", "[model"), &[":7:"]),
    ];
    for (what, text, needles) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = fail_in_one_line(scalelab().args([
            "run",
            path.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--quiet",
        ]));
        assert!(err.contains("bad.toml"), "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {err:?} lacks {n:?}");
        }
        assert!(!db.exists(), "{what}: the database was created");
    }
}

/// Runs the binary as a user whom file permissions bind: the test's own, or nobody (uid and gid
/// 65534) when the tests run as root, whom they do not. Where nobody cannot reach the built
/// binary (a target directory under a private home), it runs a copy in `dir`, which nobody must
/// be able to enter.
#[cfg(unix)]
struct Reader {
    program: PathBuf,
    as_nobody: bool,
}

#[cfg(unix)]
impl Reader {
    fn new(dir: &Path) -> Reader {
        use std::os::unix::fs::PermissionsExt;
        let built = PathBuf::from(env!("CARGO_BIN_EXE_scalelab"));
        let as_nobody = unsafe { libc::geteuid() } == 0;
        let reader = Reader {
            program: built.clone(),
            as_nobody,
        };
        if !as_nobody
            || reader
                .command()
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            return reader;
        }
        let copy = dir.join("scalelab-copy");
        std::fs::copy(&built, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reader = Reader {
            program: copy,
            as_nobody,
        };
        match reader.command().arg("--version").output() {
            Ok(o) if o.status.success() => reader,
            got => panic!(
                "this test runs as root and needs to run scalelab as nobody (uid and gid 65534), \
                 which failed here even from {}: {got:?}",
                dir.display()
            ),
        }
    }

    /// As [`scalelab`]: one compute thread, no database from the environment.
    fn command(&self) -> Command {
        let mut c = common::scalelab_at(&self.program);
        if self.as_nobody {
            use std::os::unix::process::CommandExt;
            c.uid(65534).gid(65534);
        }
        c
    }
}

#[cfg(unix)]
#[test]
fn read_only_and_locked_databases_give_clear_errors() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "ro", 1, 1);
    let s = sweep.to_str().unwrap();
    // A database in a read-only directory, as a file without write permission.
    let ro_dir = dir.path().join("ro");
    std::fs::create_dir(&ro_dir).unwrap();
    let db = ro_dir.join("r.db");
    run_ok(&[
        "run",
        s,
        "--db",
        db.to_str().unwrap(),
        "--no-report",
        "--quiet",
    ]);
    let before = std::fs::read(&db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&ro_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Others may enter the temporary directory (0700) and read the sweep files in it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Permissions do not bind root (as which CI runs): there the commands run as nobody, who
    // can read ro/ and r.db but write neither.
    let reader = Reader::new(dir.path());
    let edited = with_two_seeds(&sweep, &dir.path().join("ro2.toml"));
    // Readable whatever the umask.
    std::fs::set_permissions(&edited, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fail_in_one_line(reader.command().args([
        "run",
        edited.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(
        err.contains(&format!("database {} is read-only", db.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Reading needs no write access: `runs` lists the sweep from the read-only file in the
    // read-only directory, where SQLite cannot make its shared-memory file (it refused with
    // "attempt to write a readonly database").
    let o = succeed(
        reader
            .command()
            .args(["runs", "--sweep", "ro", "--format", "csv", "--db"])
            .arg(&db),
    );
    let states = common::csv_column(&o.stdout, "state");
    assert_eq!(states, vec!["completed"; 4]);
    // Regression: `fit` and `report` failed on a read-only database, as they store their fit.
    // They now fit from it, say in one line that the fit is not stored, and change nothing.
    let warning = format!(
        "warning: database {} is read-only: the fit is computed but not stored in its `fits` \
         table",
        db.display()
    );
    let o = succeed(
        reader
            .command()
            .args(["fit", "ro", "--format", "json", "--db"])
            .arg(&db),
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim_end(), warning);
    let fit: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(fit["n_runs"], 4, "{fit}");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = succeed(
        reader
            .command()
            .args(["report", "ro", "--out"])
            .arg(&out)
            .arg("--db")
            .arg(&db),
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&warning),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.join("index.html").is_file());
    // The same file, read-only, in a directory anyone may write: it opens for writing (SQLite
    // can make its log beside it) and only the stored fit fails, which is the same case.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let copy = shared.join("r.db");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    let o = succeed(
        reader
            .command()
            .args(["fit", "ro", "--format", "json", "--db"])
            .arg(&copy),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        format!(
            "warning: database {} is read-only: the fit is computed but not stored in its \
             `fits` table",
            copy.display()
        )
    );
    let fit: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(fit["n_runs"], 4, "{fit}");
    assert_eq!(std::fs::read(&copy).unwrap(), before, "the copy changed");
    // Regression: a read-only database written before B_noise's columns (migration 6), which a
    // read-only open does not migrate: `fit` failed with "no such column: m.grad_h_grad".
    let old_dir = dir.path().join("old");
    std::fs::create_dir(&old_dir).unwrap();
    let old = old_dir.join("r.db");
    std::fs::copy(&db, &old).unwrap();
    {
        let c = rusqlite::Connection::open(&old).unwrap();
        c.execute_batch(
            "ALTER TABLE epoch_metrics DROP COLUMN b_noise; \
             ALTER TABLE epoch_metrics DROP COLUMN trace_h_sigma; \
             ALTER TABLE epoch_metrics DROP COLUMN grad_h_grad; \
             DELETE FROM _sqlx_migrations WHERE version >= 6; PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }
    let old_bytes = std::fs::read(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&old_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let o = succeed(
        reader
            .command()
            .args(["fit", "ro", "--format", "json", "--db"])
            .arg(&old),
    );
    let fit: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(fit["n_runs"], 4, "{fit}");
    let old_out = dir.path().join("old-out");
    std::fs::create_dir(&old_out).unwrap();
    std::fs::set_permissions(&old_out, std::fs::Permissions::from_mode(0o777)).unwrap();
    succeed(
        reader
            .command()
            .args(["report", "ro", "--out"])
            .arg(&old_out)
            .arg("--db")
            .arg(&old),
    );
    assert!(old_out.join("index.html").is_file());
    assert_eq!(
        std::fs::read(&old).unwrap(),
        old_bytes,
        "the old file changed"
    );
    std::fs::set_permissions(&old_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&ro_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(std::fs::read(&db).unwrap(), before, "the database changed");

    // A database whose write lock another process holds past the busy timeout.
    let db2 = dir.path().join("l.db");
    run_ok(&[
        "run",
        s,
        "--db",
        db2.to_str().unwrap(),
        "--no-report",
        "--quiet",
    ]);
    let lock_holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); \
             c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)",
            db2.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut holder) = lock_holder else {
        return; // no python3: the read-only half of the test still ran
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let edited = with_two_seeds(&sweep, &dir.path().join("l2.toml"));
    let out = scalelab()
        .args([
            "run",
            edited.to_str().unwrap(),
            "--db",
            db2.to_str().unwrap(),
            "--quiet",
        ])
        .env("SCALELAB_BUSY_TIMEOUT", "1")
        .output()
        .unwrap();
    // Regression: a worker waited out the busy timeout twice (its first heartbeat, a write
    // with no run to refresh, queued behind the failing claim): 20 s at the default 10 s.
    let started = std::time::Instant::now();
    let worker = scalelab()
        .args(["worker", "--quiet", "--db", db2.to_str().unwrap()])
        .env("SCALELAB_BUSY_TIMEOUT", "2")
        .output()
        .unwrap();
    let waited = started.elapsed().as_secs_f64();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("l.db") && err.contains("locked"), "{err}");
    let werr = String::from_utf8_lossy(&worker.stderr);
    assert_eq!(worker.status.code(), Some(1), "{werr}");
    assert!(
        werr.contains("locked") && werr.contains("waited 2 s"),
        "{werr}"
    );
    assert!(
        (2.0..3.9).contains(&waited),
        "the worker took {waited:.2} s for a busy timeout of 2 s"
    );
    assert_eq!(
        count(&db2, "SELECT COUNT(*) FROM runs"),
        4,
        "nothing was enqueued"
    );
}

#[test]
fn schedules_record_lr_and_batch_per_epoch_and_match_the_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sched.toml");
    std::fs::write(
        &path,
        r#"
name = "sched"
[data]
train_size = 1000
test_size = 200
[model]
hidden = [16]
[train]
lr = 0.05
batch_size = 8
momentum = 0.9
epochs = 10
schedule = [
  { kind = "decay-lr", milestones = [0.3, 0.6, 0.8], factor = 5 },
  { kind = "increase-batch", milestones = [0.3, 0.6, 0.8], factor = 5 },
]
"#,
    )
    .unwrap();
    let db = dir.path().join("s.db");
    run_ok(&[
        "run",
        path.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--no-report",
        "--quiet",
    ]);
    // decay-lr: 10 epochs × 125 steps; increase-batch: 3·125 + 3·25 + 2·5 + 2·1 = 462, its
    // batch 8 → 40 → 200 → 1000 = N (a batch grown beyond N is refused, so no cap).
    assert_eq!(
        count(&db, "SELECT steps FROM runs WHERE schedule = 'decay-lr'"),
        1250
    );
    assert_eq!(
        count(
            &db,
            "SELECT steps FROM runs WHERE schedule = 'increase-batch'"
        ),
        462
    );
    assert_eq!(
        count(
            &db,
            "SELECT planned_steps FROM runs WHERE schedule = 'increase-batch'"
        ),
        462
    );
    let series: Vec<(i64, f64, i64)> = rt().block_on(async {
        let store = Store::open_read_only(&db).await.unwrap();
        sqlx::query_as(
            "SELECT m.epoch, m.lr, m.batch_size FROM epoch_metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.schedule = 'increase-batch' ORDER BY m.epoch",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    });
    let batches: Vec<i64> = series.iter().map(|s| s.2).collect();
    assert_eq!(batches, vec![8, 8, 8, 8, 40, 40, 40, 200, 200, 1000, 1000]);
    assert!(series.iter().all(|s| s.1 == 0.05));
    let lrs: Vec<f64> = rt().block_on(async {
        let store = Store::open_read_only(&db).await.unwrap();
        sqlx::query_scalar(
            "SELECT m.lr FROM epoch_metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.schedule = 'decay-lr' ORDER BY m.epoch",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    });
    let want = [
        0.05, 0.05, 0.05, 0.05, 0.01, 0.01, 0.01, 0.002, 0.002, 0.0004, 0.0004,
    ];
    for (g, w) in lrs.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{lrs:?}");
    }
}

#[test]
fn failing_runs_are_retried_up_to_the_limit_then_failed_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    // A tiny IDX data set, valid when the sweep is enqueued.
    let enc = scalelab::train::data::encode_idx;
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        enc(&[20, 4, 4], &[7u8; 320]),
    )
    .unwrap();
    std::fs::write(data.join("train-labels-idx1-ubyte"), enc(&[20], &[1u8; 20])).unwrap();
    std::fs::write(
        data.join("t10k-images-idx3-ubyte"),
        enc(&[5, 4, 4], &[7u8; 80]),
    )
    .unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), enc(&[5], &[1u8; 5])).unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"f\"\n[data]\ndataset = \"idx\"\ndata_dir = \"{}\"\ntrain_size = 20\n\
             test_size = 5\n[model]\nhidden = [4]\n[train]\nlr = 0.1\nbatch_size = 5\nepochs = 1\n",
            data.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("f.db");
    let (p, d) = (path.to_str().unwrap(), db.to_str().unwrap());
    run_ok(&["run", p, "--db", d, "--enqueue-only"]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'pending'"),
        1
    );
    // The data disappears before a worker trains the run: it fails three times, and the
    // worker says so in its exit status and one line, as `run` does.
    std::fs::remove_file(data.join("t10k-labels-idx1-ubyte")).unwrap();
    let last = worker_fails(d, "1");
    assert!(
        last.contains("1 run this worker trained failed") && last.contains("scalelab status"),
        "{last}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'failed'"),
        1
    );
    assert_eq!(count(&db, "SELECT failures FROM runs"), 3);
    assert_eq!(count(&db, "SELECT attempt FROM runs"), 3);
    let status = run_ok(&["status", "--db", d]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("t10k-labels-idx1-ubyte") && text.contains("missing"),
        "{text}"
    );
    // With the file back, --retry-failed trains it.
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), enc(&[5], &[1u8; 5])).unwrap();
    run_ok(&[
        "run",
        p,
        "--db",
        d,
        "--retry-failed",
        "--no-report",
        "--quiet",
    ]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'completed'"),
        1
    );
}

/// Writes a 4×4-pixel IDX data set of `train` and `test` examples into `dir`.
fn write_idx(dir: &Path, train: usize, test: usize) {
    let enc = scalelab::train::data::encode_idx;
    std::fs::create_dir_all(dir).unwrap();
    for (stem, n) in [("train", train), ("t10k", test)] {
        std::fs::write(
            dir.join(format!("{stem}-images-idx3-ubyte")),
            enc(&[n, 4, 4], &vec![7u8; n * 16]),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}-labels-idx1-ubyte")),
            enc(&[n], &vec![1u8; n]),
        )
        .unwrap();
    }
}

/// Regression: a `train_size` or `test_size` beyond what the files hold passed validation, was
/// enqueued, and every such run failed at train time (while `run --no-report` exited 0). Now
/// it is refused before anything is enqueued, at the key's position, naming data_dir and what
/// the files hold; so is a default `test_size` (1000) beyond them.
#[test]
fn sizes_beyond_the_data_files_are_refused_before_anything_is_enqueued() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(&dir.path().join("idx/small"), 50, 20);
    let db = dir.path().join("s.db");
    let sweep = |sizes: &str| {
        format!(
            "name = \"s\"\n[data]\ndataset = \"idx\"\ndata_dir = \"idx/small\"\n{sizes}\n\
             [model]\nhidden = [4]\n[train]\nlr = 0.1\nbatch_size = 5\nepochs = 1\n"
        )
    };
    for (sizes, needles) in [
        (
            "train_size = [20, 100]\ntest_size = 10",
            &[
                "s.toml:5:14: train_size 100: data_dir \"idx/small\" holds 50 training examples",
                "train-images-idx3-ubyte",
            ][..],
        ),
        (
            "train_size = 20\ntest_size = 21",
            &[
                "s.toml:6:13: test_size 21: data_dir \"idx/small\" holds 20 test examples",
                "t10k-images-idx3-ubyte",
            ],
        ),
        (
            "train_size = 20",
            &["s.toml: test_size 1000 (the default): data_dir \"idx/small\" holds 20 test"],
        ),
    ] {
        std::fs::write(dir.path().join("s.toml"), sweep(sizes)).unwrap();
        for cmd in [
            &["run", "s.toml", "--db", "s.db", "--quiet"][..],
            &["sweep", "show", "s.toml", "--db", "s.db"],
        ] {
            let err = fail_in_one_line(scalelab_in(dir.path()).args(cmd));
            for n in needles {
                assert!(err.contains(n), "{cmd:?} {sizes:?}: {err:?} lacks {n:?}");
            }
            assert!(!db.exists(), "{sizes:?}: the database was created");
        }
    }
    // What the files hold is accepted.
    std::fs::write(
        dir.path().join("s.toml"),
        sweep("train_size = 50\ntest_size = 20"),
    )
    .unwrap();
    succeed(scalelab_in(dir.path()).args([
        "run",
        "s.toml",
        "--db",
        "s.db",
        "--quiet",
        "--no-report",
    ]));
}

/// Regression: `run --no-report` exited 0 when runs failed (with the report, only a sweep with
/// no completed run exited 1). Now `run` exits 1 whenever runs it trained ended failed, after
/// writing the report; a later `run` that fails nothing exits 0.
#[test]
fn run_exits_non_zero_when_its_runs_fail_with_or_without_the_report() {
    for no_report in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sweep(dir.path(), "x", 1, 2);
        let db = dir.path().join("x.db");
        let (p, d) = (path.to_str().unwrap(), db.to_str().unwrap());
        run_ok(&["run", p, "--db", d, "--enqueue-only"]);
        // One pending run's stored config is made invalid: it fails at its first attempt.
        rt().block_on(async {
            let store = Store::open(&db).await.unwrap();
            sqlx::query(
                "UPDATE runs SET config = json_set(config, '$.data.dim', 0) \
                 WHERE id = (SELECT id FROM runs ORDER BY id LIMIT 1)",
            )
            .execute(store.pool())
            .await
            .unwrap();
            store.close().await;
        });
        let mut args = vec!["run", p, "--db", d, "--quiet", "--jobs", "2"];
        if no_report {
            args.push("--no-report");
        }
        let out = scalelab_in(dir.path()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{no_report}: {err}");
        // The run's own failure line as it happens, then the error.
        assert!(
            err.contains("failed: invalid dim: must be at least 1, got 0")
                && err.trim_end().lines().last()
                    == Some("error: sweep x: 1 run failed (their errors: scalelab status x)"),
            "{no_report}: {err}"
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'failed'"),
            1
        );
        assert_eq!(
            dir.path().join("reports/x/index.html").exists(),
            !no_report,
            "the report is written all the same"
        );
        // Nothing left to train, nothing failed by this invocation.
        succeed(scalelab_in(dir.path()).args(&args));
    }
}

#[test]
fn unusable_database_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "u", 1, 1);
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    for (db, needle) in [
        (
            garbage.to_str().unwrap().to_string(),
            "not a valid SQLite database",
        ),
        (
            dir.path().to_str().unwrap().to_string(),
            "is a directory, not a database file",
        ),
        (
            dir.path()
                .join("no/such/dir/x.db")
                .to_str()
                .unwrap()
                .to_string(),
            "does not exist",
        ),
    ] {
        let err = fail_in_one_line(scalelab().args([
            "run",
            sweep.to_str().unwrap(),
            "--db",
            &db,
            "--quiet",
        ]));
        assert!(err.contains(needle), "{db}: {err}");
    }
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![b'x'; 4096]);
    // A worker on a mistyped path does not create an empty database and call it done.
    let typo = dir.path().join("typo.db");
    let err =
        fail_in_one_line(scalelab().args(["worker", "--db", typo.to_str().unwrap(), "--quiet"]));
    assert!(
        err.contains("no database at") && err.contains("typo.db"),
        "{err}"
    );
    assert!(!typo.exists());
}

/// Regression: another application's SQLite file with a `runs` table was switched to WAL mode
/// and given a `_sqlx_migrations` table before `run` failed with "table runs already exists";
/// the read commands failed on "no such table: sweeps"; one without a `runs` table silently
/// received scalelab's tables. Every command now refuses both in one line, naming the file and
/// its tables, and leaves the file byte for byte as it was, with no log beside it.
#[test]
fn another_applications_database_is_refused_and_left_unchanged() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "f", 1, 1);
    let s = sweep.to_str().unwrap();
    const NOTES: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, foo TEXT); \
                         INSERT INTO notes (foo) VALUES ('kept');";
    const RUNS: &str = "CREATE TABLE runs (id INTEGER PRIMARY KEY, foo TEXT); \
                        INSERT INTO runs (foo) VALUES ('kept');";
    for (file, tables, schema) in [
        ("with_runs.db", "notes, runs", [NOTES, RUNS]),
        ("without.db", "notes", [NOTES, ""]),
    ] {
        let db = dir.path().join(file);
        rt().block_on(async {
            let opts = SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Delete);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            for sql in schema {
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        });
        let before = std::fs::read(&db).unwrap();
        let d = db.to_str().unwrap();
        for args in [
            vec!["run", s, "--db", d, "--quiet"],
            vec!["run", s, "--db", d, "--enqueue-only"],
            vec!["worker", "--db", d],
            vec!["status", "--db", d],
            vec!["runs", "--db", d],
            vec!["fit", "f", "--db", d],
            vec!["sql", "SELECT 1", "--db", d],
        ] {
            let err = fail_in_one_line(scalelab().args(&args));
            assert!(
                err.contains(&format!(
                    "{d} is not a scalelab database (it holds another application's tables: \
                     {tables})"
                )),
                "{args:?}: {err}"
            );
            assert_eq!(
                std::fs::read(&db).unwrap(),
                before,
                "{args:?} changed {file}"
            );
            for suffix in ["-wal", "-shm", "-journal"] {
                let beside = dir.path().join(format!("{file}{suffix}"));
                assert!(!beside.exists(), "{args:?} left {}", beside.display());
            }
        }
    }
}

#[test]
fn a_config_edited_into_nonsense_in_the_database_fails_with_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sweep(dir.path(), "e", 1, 2);
    let db = dir.path().join("e.db");
    let (p, d) = (path.to_str().unwrap(), db.to_str().unwrap());
    run_ok(&["run", p, "--db", d, "--enqueue-only"]);
    // Someone edits one pending run's stored config: a zero input dimension, which a sweep
    // file could never carry (it would panic in the data generator if it reached it).
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let edited = sqlx::query(
            "UPDATE runs SET config = json_set(config, '$.data.dim', 0) \
             WHERE id = (SELECT id FROM runs ORDER BY id LIMIT 1)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        assert_eq!(edited.rows_affected(), 1);
        store.close().await;
    });
    let last = worker_fails(d, "2");
    assert!(last.contains("1 run this worker trained failed"), "{last}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'failed'"),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM runs WHERE state = 'failed' \
             AND error LIKE '%dim%must be at least 1%' AND error NOT LIKE '%panick%'"
        ),
        1
    );
    // No retry can fix a config: it failed at its first attempt, not after three.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM runs WHERE state = 'failed' AND failures = 1 AND attempt = 1"
        ),
        1
    );
    // The other three trained in full; the failed one left no epoch rows.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM runs WHERE state IN ('completed', 'diverged')"
        ),
        3
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM epoch_metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.state = 'failed'"
        ),
        0
    );
}

/// A run trains with the very learning rate its sweep declares, and gives what `scalelab
/// train` gives for the same cell. Both rates are ones serde_json's default float parser reads
/// one ulp off when a run's stored config is read back (it did, before `float_roundtrip`).
#[test]
fn a_sweep_run_trains_with_the_exact_declared_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("ulp.toml");
    std::fs::write(
        &sweep,
        r#"
name = "ulp"
[data]
dataset = "teacher"
train_size = 200
test_size = 100
[model]
hidden = [16]
[train]
lr = [0.010000000000013737, 0.9540248525832485]
batch_size = 32
momentum = 0.9
epochs = 2
seeds = 1
"#,
    )
    .unwrap();
    let db = dir.path().join("u.db");
    run_ok(&[
        "run",
        sweep.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--no-report",
        "--quiet",
    ]);
    let rows: Vec<(f64, f64, Option<f64>)> = rt().block_on(async {
        let store = Store::open_read_only(&db).await.unwrap();
        sqlx::query_as(
            "SELECT r.lr, m.lr, r.final_train_loss FROM runs r \
             JOIN epoch_metrics m ON m.run_id = r.id WHERE m.epoch = 1 ORDER BY r.lr",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    });
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, 0.010000000000013737);
    assert_eq!(rows[1].0, 0.9540248525832485);
    for (declared, trained, _) in &rows {
        assert_eq!(
            declared.to_bits(),
            trained.to_bits(),
            "{declared} trained as {trained}"
        );
    }
    // The same cell through `scalelab train`: the same final training loss, bit for bit.
    let out = run_ok(&[
        "train",
        "--dataset",
        "teacher",
        "--train-size",
        "200",
        "--test-size",
        "100",
        "--hidden",
        "16",
        "--lr",
        "0.010000000000013737",
        "--batch-size",
        "32",
        "--momentum",
        "0.9",
        "--epochs",
        "2",
        "--seed",
        "1",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    // The sweep's run at that rate (rows are ordered by rate).
    let summary_loss = rows[0].2;
    let epochs: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("epoch").is_some() && v.get("summary").is_none())
        .collect();
    assert_eq!(last["summary"], true);
    assert_eq!(
        epochs.last().unwrap()["train_loss"].as_f64(),
        summary_loss,
        "sweep run and `scalelab train` disagree"
    );
}

/// A busy timeout beyond what SQLite can wait (an `int` of milliseconds) is the longest wait it
/// takes, not a crash: it panicked in sqlx's connection thread before, with a stack trace.
#[test]
fn a_huge_busy_timeout_is_capped_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "patient", 1, 1);
    let db = dir.path().join("p.db");
    for huge in ["1e9", "1e300"] {
        let out = succeed(
            scalelab()
                .args(["run", sweep.to_str().unwrap(), "--db"])
                .arg(&db)
                .args(["--enqueue-only"])
                .env("SCALELAB_BUSY_TIMEOUT", huge),
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs"), 4);
}

/// This process's own writers (the scheduler's claims, the database writer's bursts, the log cut
/// at the tail) queue at its write gate and never meet SQLite's lock: with a busy timeout of 0,
/// where any contention is an immediate "database is locked", a two-job quickstart still
/// completes. Without the gate 7 of 10 such sweeps failed, blaming "another process".
#[test]
fn a_sweep_never_waits_on_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/quickstart.toml");
    for attempt in 0..3 {
        let db = dir.path().join(format!("q{attempt}.db"));
        let out = succeed(
            scalelab()
                .args(["run", sweep.to_str().unwrap(), "--db"])
                .arg(&db)
                .args(["--jobs", "2", "--no-report", "--quiet"])
                .env("SCALELAB_BUSY_TIMEOUT", "0"),
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_complete_and_consistent(&db, 96, 20);
    }
}

/// Flag values out of range, and a directory given as the sweep, are one-line errors that name
/// the flag or the path, before anything is opened or trained.
#[test]
fn out_of_range_flags_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "flags", 1, 1);
    let db = dir.path().join("f.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let dir_arg = dir.path().to_str().unwrap();
    for (args, needles) in [
        (
            vec!["run", s, "--db", d, "--jobs", "0"],
            vec!["--jobs", "at least 1"],
        ),
        (
            vec!["run", s, "--db", d, "--stale-after", "-5"],
            vec!["--stale-after", "-5"],
        ),
        // Regression: the largest counts and times panicked (a `Duration` out of range) or
        // wrapped to no slots at all (`--jobs` plus the run claimed ahead), exit 0 with nothing
        // trained.
        (
            vec!["run", s, "--db", d, "--jobs", "18446744073709551615"],
            vec!["--jobs", "at most 4096"],
        ),
        (
            vec!["worker", "--db", d, "--jobs", "4097"],
            vec!["--jobs", "at most 4096"],
        ),
        (
            vec!["run", s, "--db", d, "--stale-after", "18446744073709551615"],
            vec!["--stale-after", "at most 604800"],
        ),
        (
            vec!["worker", "--db", d, "--stale-after", "1e300"],
            vec!["--stale-after", "at most 604800"],
        ),
        (
            vec![
                "fit",
                "flags",
                "--db",
                d,
                "--bootstrap",
                "18446744073709551615",
            ],
            vec!["bootstrap", "at most 100000"],
        ),
        (vec!["run", dir_arg, "--db", d], vec!["is a directory"]),
        // Regression: this listed the sweep's cells as "not enqueued" in the directory, exit 0.
        (
            vec!["sweep", "show", s, "--db", dir_arg],
            vec!["is a directory, not a database file"],
        ),
        // Regression: "no such sweep file", of a file that is there (Unix only, as the tests).
        (
            vec!["run", "/dev/null", "--db", d],
            vec!["/dev/null", "not a regular file"],
        ),
        (
            vec!["fit", "flags", "--db", d, "--margin", "-1"],
            vec!["margin", "-1"],
        ),
        (vec!["bench", "--seconds", "0"], vec!["seconds", "0"]),
        // Regression: "unexpected argument '-1' found", without the flag.
        (
            vec!["fit", "flags", "--db", d, "--bootstrap", "-5"],
            vec!["invalid value '-5' for '--bootstrap': must not be negative"],
        ),
        (
            vec!["runs", "--db", d, "--limit", "-1"],
            vec!["'--limit'", "must not be negative"],
        ),
        // A negative value a flag takes (`--margin -1`) is not what an unknown option is blamed on.
        (
            vec!["fit", "flags", "--db", d, "--margin", "-1", "--bogus"],
            vec!["unexpected argument '--bogus'"],
        ),
        // Regression: an in-memory database failed on its journal mode and left a file named
        // ":memory:" in the working directory.
        (
            vec!["run", s, "--db", ":memory:"],
            vec!["--db", ":memory: is not a file path"],
        ),
        (vec!["bench", "--hidden", "0"], vec!["hidden", "0"]),
    ] {
        let err = fail_in_one_line(scalelab().args(&args));
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err}");
        }
    }
    // The refusal comes before the sweep's table, not after it.
    let shown = scalelab()
        .args(["sweep", "show", s, "--db", dir_arg])
        .output()
        .unwrap();
    assert!(
        shown.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    assert!(!db.exists());
    // Regression: RAYON_NUM_THREADS=100000 trained and recorded threads = 100000. The commands
    // that train refuse a value the kernels would not use as such; the others ignore it.
    let cap = 4 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let too_many = (cap + 1).to_string();
    for value in ["abc", "0", " 1", too_many.as_str()] {
        for args in [
            vec!["run", s, "--db", d],
            vec!["worker", "--db", d],
            vec!["train", "--train-size", "100", "--test-size", "50"],
        ] {
            let err = fail_in_one_line(scalelab().env("RAYON_NUM_THREADS", value).args(&args));
            assert!(
                err.contains(&format!("RAYON_NUM_THREADS={value}: "))
                    && err.contains(&format!("from 1 to 4 × the {} cores ({cap})", cap / 4)),
                "{args:?}: {err}"
            );
        }
    }
    assert!(!db.exists());
    succeed(
        scalelab()
            .env("RAYON_NUM_THREADS", "abc")
            .args(["sweep", "show", s, "--db", d]),
    );
    // `run --enqueue-only` trains nothing.
    succeed(scalelab().env("RAYON_NUM_THREADS", "abc").args([
        "run",
        s,
        "--db",
        d,
        "--enqueue-only",
        "--quiet",
    ]));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'pending'"),
        4
    );
}

/// `scalelab train` on files prints the run id a sweep stores for the same cell on the same
/// files (the files' content hash is part of it), and another id once a file changes.
#[test]
fn train_on_files_prints_the_id_a_sweep_stores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    let enc = scalelab::train::data::encode_idx;
    let images: Vec<u8> = (0..320u32).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..20u8).map(|i| i % 3).collect();
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        enc(&[20, 4, 4], &images),
    )
    .unwrap();
    std::fs::write(data.join("train-labels-idx1-ubyte"), enc(&[20], &labels)).unwrap();
    std::fs::write(
        data.join("t10k-images-idx3-ubyte"),
        enc(&[5, 4, 4], &images[..80]),
    )
    .unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), enc(&[5], &labels[..5])).unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"t\"\n[data]\ndataset = \"idx\"\ndata_dir = \"{}\"\ntrain_size = 20\n\
             test_size = 5\n[model]\nhidden = [4]\n[train]\nlr = 0.1\nbatch_size = 5\n\
             momentum = 0.5\nepochs = 1\n",
            data.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("t.db");
    run_ok(&[
        "run",
        path.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--quiet",
        "--no-report",
    ]);
    let stored: String = rt().block_on(async {
        let store = Store::open_read_only(&db).await.unwrap();
        sqlx::query_scalar("SELECT id FROM runs")
            .fetch_one(store.pool())
            .await
            .unwrap()
    });
    let train_id = || {
        let out = run_ok(&[
            "train",
            "--dataset",
            "idx",
            "--data-dir",
            data.to_str().unwrap(),
            "--train-size",
            "20",
            "--test-size",
            "5",
            "--hidden",
            "4",
            "--lr",
            "0.1",
            "--batch-size",
            "5",
            "--momentum",
            "0.5",
            "--epochs",
            "1",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary: serde_json::Value =
            serde_json::from_str(text.lines().last().unwrap()).unwrap();
        summary["run_id"].as_str().unwrap().to_string()
    };
    assert_eq!(train_id(), stored);
    let mut changed = labels.clone();
    changed[0] = 2;
    std::fs::write(data.join("train-labels-idx1-ubyte"), enc(&[20], &changed)).unwrap();
    assert_ne!(train_id(), stored);
}

/// `(id, state, failures, error)` of every run, in sweep order.
fn fates(db: &Path) -> Vec<(String, String, i64, Option<String>)> {
    rt().block_on(async {
        let store = Store::open_read_only(db).await.unwrap();
        let rows = sqlx::query_as(
            "SELECT r.id, r.state, r.failures, r.error FROM runs r \
             JOIN sweep_runs s ON s.run_id = r.id ORDER BY s.position",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        store.close().await;
        rows
    })
}

/// The runs process `pid` marked as begun (orphans in training), or None while the database is
/// not readable.
fn begun(db: &Path, pid: u32) -> Option<Vec<String>> {
    rt().block_on(async {
        let store = Store::open_read_only(db).await.ok()?;
        let ids = sqlx::query_scalar(
            "SELECT id FROM runs WHERE began_at IS NOT NULL AND claimed_by LIKE ?",
        )
        .bind(format!("%/{pid}/%"))
        .fetch_all(store.pool())
        .await
        .ok();
        store.close().await;
        ids
    })
}

#[cfg(unix)]
#[test]
fn a_run_whose_process_keeps_dying_fails_after_three_deaths_and_no_other_is_blamed() {
    let dir = tempfile::tempdir().unwrap();
    // Four runs of a second or so, none diverging (a run must still train when it is caught).
    let sweep = dir.path().join("deaths.toml");
    std::fs::write(
        &sweep,
        r#"
name = "deaths"
[data]
dataset = "teacher"
train_size = 1000
test_size = 500
[model]
hidden = [64]
[train]
lr = [0.005, 0.01]
batch_size = [8, 32]
momentum = 0.9
epochs = 800
"#,
    )
    .unwrap();
    let db = dir.path().join("d.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let spawn = || {
        scalelab()
            .args(["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The first death: nothing was marked, so nothing is blamed; its runs become orphans.
    let mut child = spawn();
    wait_until(&mut child, "a run is claimed", || {
        try_count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'running'").unwrap_or(0) >= 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Then three processes die while the same orphan trains (as a run that exhausts memory
    // would kill them). Orphans train one at a time: never two marked at once.
    let mut culprit: Option<String> = None;
    for _ in 0..3 {
        let mut child = spawn();
        let pid = child.id();
        wait_until(&mut child, "the orphan begins", || {
            let marked = begun(&db, pid).unwrap_or_default();
            assert!(
                marked.len() <= 1,
                "two orphans in training at once: {marked:?}"
            );
            match (&culprit, marked.first()) {
                (None, Some(id)) => {
                    culprit = Some(id.clone());
                    true
                }
                (Some(x), Some(id)) => x == id,
                (_, None) => false,
            }
        });
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let culprit = culprit.unwrap();
    // The next process counts the third death, says so, and trains everything else.
    let out = scalelab()
        .args(["run", s, "--db", d, "--jobs", "2", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("run {culprit} failed for good: its process")),
        "{text}"
    );
    for (id, state, failures, error) in fates(&db) {
        if id == culprit {
            assert_eq!((state.as_str(), failures), ("failed", 3));
            let error = error.unwrap();
            assert!(error.contains("died while training it"), "{error}");
        } else {
            assert_eq!(
                (state.as_str(), failures, error),
                ("completed", 0, None),
                "{id}"
            );
        }
    }
    // `--retry-failed` gives it a fresh budget, as any failed run.
    run_ok(&["run", s, "--db", d, "--retry-failed", "--enqueue-only"]);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM runs WHERE state = 'pending' AND failures = 0"
        ),
        1
    );
}

/// The run ids and states `sweep show` lists, one per cell row (the rows of its cell table start
/// with a 16-digit hexadecimal id; the state is the last column).
fn shown_states(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let id = words.next()?;
            (id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (id.to_string(), words.last().unwrap_or_default().to_string()))
        })
        .collect()
}

/// The worker's success path: `run --enqueue-only` registers the cells and trains nothing, a
/// worker trains every one of them and exits 0, and `sweep show` tallies the states the
/// database holds, per cell too (a cell not enqueued shows `-`).
#[test]
fn a_worker_trains_what_run_enqueue_only_registered() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "queued", 1, 2);
    let db = dir.path().join("w.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    run_ok(&["run", s, "--db", d, "--enqueue-only", "--quiet"]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'pending'"),
        4
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs"), 4);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM epoch_metrics"), 0);
    let show = String::from_utf8(run_ok(&["sweep", "show", s, "--db", d]).stdout).unwrap();
    assert!(show.contains(&format!("in {d}: 4 pending\n")), "{show}");
    // By its name, as `run` takes it: the stored sweep, the same table.
    let by_name =
        String::from_utf8(run_ok(&["sweep", "show", "queued", "--db", d]).stdout).unwrap();
    assert_eq!(by_name, show);
    let err = fail_in_one_line(scalelab().args(["sweep", "show", "nosuch", "--db", d]));
    assert!(
        err.contains(&format!(
            "nosuch: no such sweep file, and no sweep of that name in {d}"
        )),
        "{err}"
    );
    let shown = shown_states(&show);
    assert_eq!(shown.len(), 4, "{show}");
    assert!(shown.iter().all(|(_, st)| st == "pending"), "{show}");

    let out = scalelab()
        .args(["worker", "--db", d, "--jobs", "2", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_complete_and_consistent(&db, 4, 2);
    let stored = fates(&db);
    let ended = |state: &str| stored.iter().filter(|f| f.1 == state).count();
    let (completed, diverged) = (ended("completed"), ended("diverged"));
    assert!(
        stdout.contains("trained 4 runs in ")
            && stdout.contains(&format!(
                ": {completed} completed, {diverged} diverged, 0 failed ("
            )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "all runs: 0 pending, 0 running, {completed} completed, {diverged} diverged, 0 failed\n"
        )),
        "{stdout}"
    );
    // Nothing is left: a second worker trains nothing and says so.
    let again = String::from_utf8(run_ok(&["worker", "--db", d, "--quiet"]).stdout).unwrap();
    assert!(
        again.contains(&format!("no pending runs in {d}")),
        "{again}"
    );
    assert!(!again.contains("trained"), "{again}");
    assert_eq!(fates(&db), stored);

    // The sweep grown to two seeds: the first seed's cells show their stored states, the new
    // ones are not enqueued.
    with_two_seeds(&sweep, &sweep);
    let show = String::from_utf8(run_ok(&["sweep", "show", s, "--db", d]).stdout).unwrap();
    let mut tally = vec![];
    for (n, state) in [(completed, "completed"), (diverged, "diverged")] {
        if n > 0 {
            tally.push(format!("{n} {state}"));
        }
    }
    tally.push("4 not enqueued".to_string());
    assert!(
        show.contains(&format!("in {d}: {}\n", tally.join(", "))),
        "{show}"
    );
    let shown = shown_states(&show);
    assert_eq!(shown.len(), 8, "{show}");
    for (id, state) in &shown {
        let want = stored
            .iter()
            .find(|f| &f.0 == id)
            .map_or("-", |f| f.1.as_str());
        assert_eq!(state, want, "{id}: {show}");
    }
    assert_eq!(
        shown.iter().filter(|(_, st)| st == "-").count(),
        4,
        "{show}"
    );
    // `sweep show` only reads: the new cells were not enqueued.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs"), 4);
}

/// Regression: a sweep registered for workers, then edited to other learning rates and run,
/// left the dropped cells' runs pending in no sweep: `status` did not count them and the next
/// `worker` trained them. `run` now drops them from the queue and says so.
#[test]
fn an_edited_sweep_leaves_no_dropped_cell_for_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_sweep(dir.path(), "edited", 1, 1);
    let db = dir.path().join("e.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    run_ok(&["run", s, "--db", d, "--enqueue-only", "--quiet"]);
    let text = std::fs::read_to_string(&sweep).unwrap();
    // lr 0.01 stays, lr 0.03 (two cells) goes.
    std::fs::write(&sweep, text.replace("[0.01, 0.03]", "[0.01, 0.1]")).unwrap();
    let out =
        String::from_utf8(run_ok(&["run", s, "--db", d, "--quiet", "--no-report"]).stdout).unwrap();
    assert!(
        out.contains(
            "sweep file changed, 2 cells no longer in the sweep, 2 pending runs dropped from \
             the queue"
        ),
        "{out}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs"), 4);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM runs WHERE lr = 0.03"), 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM runs WHERE state = 'pending'"),
        0
    );
    let again = String::from_utf8(run_ok(&["worker", "--db", d, "--quiet"]).stdout).unwrap();
    assert!(
        again.contains(&format!("no pending runs in {d}")),
        "{again}"
    );
}

/// `sweep show` lists at most 60 cells unless `--all` is given, and says so; the tally counts
/// every cell either way, and showing a sweep against a database that does not exist creates
/// none.
#[test]
fn sweep_show_lists_a_large_sweep_only_with_all() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("wide.toml");
    // 8 learning rates × 8 batch sizes = 64 cells.
    std::fs::write(
        &sweep,
        "name = \"wide\"\n[data]\ntrain_size = 600\ntest_size = 100\n[model]\nhidden = [8]\n\
         [train]\nlr = { logspace = [0.001, 0.1], num = 8 }\nbatch_size = { pow2 = [2, 256] }\n\
         epochs = 1\n",
    )
    .unwrap();
    let db = dir.path().join("wide.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let short = String::from_utf8(run_ok(&["sweep", "show", s, "--db", d]).stdout).unwrap();
    // Updates per learning rate: ⌈600/B⌉ over B = 2…256 is 300 + 150 + 75 + 38 + 19 + 10 + 5 +
    // 3 = 600; eight learning rates, 4,800.
    assert!(
        short.contains("64 cells, 4800 parameter updates planned"),
        "{short}"
    );
    assert!(
        short.contains(&format!("in {d}: 64 not enqueued\n")),
        "{short}"
    );
    assert!(short.contains("(64 cells: --all lists them)"), "{short}");
    assert!(shown_states(&short).is_empty(), "{short}");
    let all = String::from_utf8(run_ok(&["sweep", "show", s, "--db", d, "--all"]).stdout).unwrap();
    let shown = shown_states(&all);
    assert_eq!(shown.len(), 64, "{all}");
    assert!(shown.iter().all(|(_, st)| st == "-"), "{all}");
    let ids: std::collections::BTreeSet<_> = shown.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 64, "{all}");
    assert!(!all.contains("--all lists them"), "{all}");
    assert!(!db.exists(), "sweep show made {d}");
}
