//! `scalelab fit` on real, trained sweeps: tables, JSON, storage, degenerate sweeps.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fail_in_one_line, scalelab_in, succeed};

/// Reports land in reports/<sweep>/ under the working directory: keep them out of the tree.
fn scalelab() -> Command {
    scalelab_in(&std::env::temp_dir())
}

fn ok(args: &[&str]) -> String {
    String::from_utf8(succeed(scalelab().args(args)).stdout).unwrap()
}

const SWEEP: &str = r#"
name = "fitme"
[data]
train_size = 600
test_size = 1000
[model]
hidden = [32]
[train]
lr = [0.01, 0.04]
batch_size = { pow2 = [4, 256] }
momentum = 0.9
epochs = 8
seeds = 2
"#;

#[test]
fn fit_prints_tables_and_valid_json_and_stores_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("fitme.toml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let db = dir.path().join("f.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    let run_out = ok(&["run", s, "--db", d, "--quiet"]);
    // `run` ends with the fits.
    assert!(run_out.contains("B_opt per cell"), "{run_out}");

    let table = ok(&["fit", "fitme", "--db", d]);
    assert!(
        table.contains("B_opt per cell") && table.contains("Scaling regression"),
        "{table}"
    );
    assert!(
        table.contains("lr=0.01") && table.contains("lr=0.04"),
        "{table}"
    );

    let json = ok(&["fit", s, "--db", d, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert!(
        !json.contains("NaN") && !json.contains("null"),
        "non-finite values leaked"
    );
    assert_eq!(v["n_runs"], 2 * 7 * 2);
    assert_eq!(v["options"]["metric"], "test_acc");
    let cells = v["bopt"]["cells"].as_array().expect("bopt fitted");
    assert_eq!(cells.len(), 2);
    for c in cells {
        let b = c["b_opt"].as_f64().unwrap();
        assert!((4.0..=256.0).contains(&b), "B_opt {b}");
        assert_eq!(c["points"].as_array().unwrap().len(), 7);
    }
    // The larger learning rate has the larger optimal batch (Smith & Le): 4× ε here.
    let b_small = cells.iter().find(|c| c["lr"] == 0.01).unwrap()["b_opt"]
        .as_f64()
        .unwrap();
    let b_large = cells.iter().find(|c| c["lr"] == 0.04).unwrap()["b_opt"]
        .as_f64()
        .unwrap();
    assert!(
        b_large > b_small,
        "B_opt {b_small} at ε=0.01 vs {b_large} at ε=0.04"
    );
    // The regression uses every constant-schedule cell whose peak is inside the grid.
    assert_eq!(v["scaling"]["status"], "fitted", "{}", v["scaling"]);
    let (used, censored): (Vec<_>, Vec<_>) =
        cells.iter().partition(|c| c.get("censored").is_none());
    let names = |cs: Vec<&serde_json::Value>| -> Vec<serde_json::Value> {
        cs.iter().map(|c| c["cell"].clone()).collect()
    };
    assert_eq!(
        v["scaling"]["cells_used"],
        serde_json::Value::from(names(used))
    );
    assert_eq!(
        v["scaling"]["cells_censored"],
        serde_json::Value::from(names(censored))
    );
    // Reproducible: the same fit twice gives the same JSON (seeded bootstrap).
    assert_eq!(ok(&["fit", "fitme", "--db", d, "--format", "json"]), json);
    // A different metric is honoured.
    let loss = ok(&[
        "fit",
        "fitme",
        "--db",
        d,
        "--format",
        "json",
        "--metric",
        "test_loss",
    ]);
    let lv: serde_json::Value = serde_json::from_str(&loss).unwrap();
    assert_eq!(lv["options"]["metric"], "test_loss");
    assert_eq!(lv["validation_bound"]["status"], "skipped");
    // Regression: --bootstrap 1 printed a "95% interval" of one replicate that missed the
    // estimate, and --bootstrap 0 labelled every interval "— (1 seed)" with 2 seeds. Now too
    // few resamples are refused naming --bootstrap, and 0 says the bootstrap is off.
    for few in ["1", "99"] {
        let err =
            fail_in_one_line(scalelab().args(["fit", "fitme", "--db", d, "--bootstrap", few]));
        assert!(
            err.contains(&format!("invalid bootstrap: --bootstrap {few}: "))
                && err.contains("at least 100 resamples"),
            "{err}"
        );
    }
    let off = ok(&["fit", "fitme", "--db", d, "--bootstrap", "0"]);
    assert!(
        off.contains("— (bootstrap off)")
            && off.contains("no intervals: bootstrap off (0 resamples)")
            && !off.contains("1 seed"),
        "{off}"
    );
    // A fit that fails after opening the database names the sweep, and closes the database as
    // one that succeeds does: its log is folded in and removed.
    let out = scalelab()
        .args(["fit", "nosuch", "--db", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nosuch\"") && err.lines().count() == 1,
        "{err}"
    );
    for leftover in ["-wal", "-shm"] {
        let path = format!("{d}{leftover}");
        assert!(!Path::new(&path).exists(), "{path} left behind");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // `status fitme` counts that sweep's runs per state as the database holds them, and not
    // the runs of another sweep registered beside it (3 pending).
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "name = \"other\"\n[data]\ntrain_size = 200\ntest_size = 100\n[model]\nhidden = [8]\n\
         [train]\nlr = 0.05\nbatch_size = [8, 16, 32]\nepochs = 1\n",
    )
    .unwrap();
    ok(&["run", other.to_str().unwrap(), "--db", d, "--enqueue-only"]);
    let by_state: Vec<(String, i64)> = rt.block_on(async {
        let store = scalelab::db::Store::open_read_only(&db).await.unwrap();
        sqlx::query_as(
            "SELECT r.state, COUNT(*) FROM runs r JOIN sweep_runs s ON s.run_id = r.id \
             WHERE s.sweep = 'fitme' GROUP BY r.state",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    });
    let stored_count = |state: &str| {
        by_state
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    let status = ok(&["status", "fitme", "--db", d]);
    let mut lines = status.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "sweep",
            "cells",
            "pending",
            "running",
            "completed",
            "diverged",
            "failed"
        ],
        "{status}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.trim_start().starts_with("fitme "))
        .unwrap_or_else(|| panic!("no row for fitme: {status}"))
        .split_whitespace()
        .collect();
    let want: Vec<String> = ["pending", "running", "completed", "diverged", "failed"]
        .iter()
        .map(|s| stored_count(s).to_string())
        .collect();
    assert_eq!(row[..2], ["fitme", "28"], "{status}");
    assert_eq!(row[2..], want, "{status}");
    assert_eq!(by_state.iter().map(|(_, n)| n).sum::<i64>(), 28);
    assert_eq!(stored_count("pending"), 0, "{status}");
    // Each fit is stored: the one after `run` and the five `fit` calls that ran.
    let stored: i64 = rt.block_on(async {
        let store = scalelab::db::Store::open_read_only(&db).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM fits WHERE sweep = 'fitme'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    });
    assert_eq!(stored, 6);
}

#[test]
fn degenerate_sweeps_say_why_each_fit_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("one.toml");
    // One batch size, one seed, one learning rate, one N.
    std::fs::write(
        &sweep,
        "name = \"one\"\n[data]\ntrain_size = 200\ntest_size = 100\n[model]\nhidden = [8]\n\
         [train]\nlr = 0.05\nbatch_size = 16\nepochs = 2\n",
    )
    .unwrap();
    let db = dir.path().join("o.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    ok(&["run", s, "--db", d, "--quiet", "--no-report"]);
    let json = ok(&["fit", "one", "--db", d, "--format", "json"]);
    assert!(!json.contains("NaN") && !json.contains("null"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // One run: every fit but the validation bound is skipped, each saying why, and the table
    // prints the same reasons.
    let table = ok(&["fit", "one", "--db", d]);
    for (section, why) in [
        (
            "bopt",
            "at most 1 batch size(s) per cell: B_opt needs at least 3",
        ),
        (
            "scaling",
            "no B_opt to regress (at most 1 batch size(s) per cell",
        ),
        (
            "collapse",
            "only 1 distinct value(s) of g among the runs that did not diverge: the collapse \
             needs at least 4",
        ),
        (
            "schedules",
            "no schedule group has two schedule modes with values",
        ),
        (
            "efficiency",
            "no target is reached by 3 batch sizes (1 batch size(s) with values: S(B) needs at \
             least 3)",
        ),
        (
            "learning_curve",
            "N does not vary: the learning curve needs ≥ 4 training-set sizes",
        ),
        ("instruments", "the sweep measured no instruments"),
    ] {
        let s = &v[section];
        assert_eq!(s["status"], "skipped", "{section}: {s}");
        let reason = s["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{section}: {reason:?} lacks {why:?}");
        assert!(
            table.contains(&format!("skipped: {reason}\n")),
            "{section}: {table}"
        );
    }
    // The one run is a selected model: its bound is stated.
    assert_eq!(v["validation_bound"]["status"], "fitted", "{json}");
    let only = ok(&["sql", "SELECT id FROM runs", "--format", "csv", "--db", d]);
    assert_eq!(
        v["validation_bound"]["run_id"].as_str(),
        only.lines().nth(1),
        "{json}"
    );

    // A sweep that is registered but never trained: a clear one-line error.
    let other = dir.path().join("empty.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&sweep)
            .unwrap()
            .replace("\"one\"", "\"empty\"")
            .replace("epochs = 2", "epochs = 3"),
    )
    .unwrap();
    ok(&["run", other.to_str().unwrap(), "--db", d, "--enqueue-only"]);
    let err = fail_in_one_line(scalelab().args(["fit", "empty", "--db", d]));
    assert!(
        err.contains("empty") && err.contains("no completed"),
        "{err}"
    );
    // An unknown sweep and a bad metric are named, in one line each.
    let err = fail_in_one_line(scalelab().args(["fit", "nosuch", "--db", d]));
    assert!(
        err.contains(&format!("no sweep named \"nosuch\" in {d}")),
        "{err}"
    );
    let err = fail_in_one_line(scalelab().args(["fit", "one", "--db", d, "--metric", "f1"]));
    assert!(err.contains("metric") && err.contains("f1"), "{err}");
}

/// `fit` and `report` on a `--db` that does not exist (a typo) say so and leave no new, empty
/// database behind (they used to create and migrate one, then report the sweep missing).
#[test]
fn fit_and_report_on_a_missing_database_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    let d = db.to_str().unwrap();
    for cmd in ["fit", "report"] {
        let out = scalelab().args([cmd, "fitme", "--db", d]).output().unwrap();
        assert!(!out.status.success(), "{cmd}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.trim().lines().count() == 1 && stderr.contains(&format!("no database at {d}")),
            "{cmd}: {stderr}"
        );
        assert!(!db.exists(), "{cmd} made {d}");
    }
}

/// Regression: the fit's notes on automatic targets say "a lower --target leaves out …" and a
/// skipped critical batch size says "give --target", but neither `fit` nor `report` had a
/// `--target`: the advice named a flag that was refused. Both take it now, as a list.
#[test]
fn fit_and_report_take_the_targets_their_notes_advise() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("fitme.toml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let db = dir.path().join("t.db");
    let (s, d) = (sweep.to_str().unwrap(), db.to_str().unwrap());
    ok(&["run", s, "--db", d, "--quiet", "--no-report"]);
    let auto = ok(&["fit", "fitme", "--db", d]);
    assert!(auto.contains("--target"), "{auto}");
    // A target given twice is fitted once (it printed the same rows twice).
    let json = ok(&[
        "fit",
        "fitme",
        "--db",
        d,
        "--format",
        "json",
        "--target",
        "0.4,0.5,0.4",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["options"]["targets"], serde_json::json!([0.4, 0.5]));
    let e = &v["efficiency"];
    assert_eq!(e["targets_auto"], false, "{e}");
    let fitted: Vec<f64> = e["fits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["target"].as_f64().unwrap())
        .collect();
    assert!(
        !fitted.is_empty() && fitted.iter().all(|t| [0.4, 0.5].contains(t)),
        "{e}"
    );
    let mut once = fitted.clone();
    once.sort_by(f64::total_cmp);
    once.dedup();
    assert_eq!(once.len(), fitted.len(), "{e}");
    let out = dir.path().join("report");
    succeed(scalelab().args([
        "report",
        "fitme",
        "--db",
        d,
        "--out",
        out.to_str().unwrap(),
        "--target",
        "0.5",
    ]));
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    assert!(index.contains("Targets as given"), "{index}");
    // `run` takes them for the report it ends with, and refuses them where it writes none.
    let run =
        succeed(scalelab_in(dir.path()).args(["run", s, "--db", d, "--quiet", "--target", "0.45"]));
    let out = String::from_utf8(run.stdout).unwrap();
    assert!(out.contains("report:"), "{out}");
    let index = std::fs::read_to_string(dir.path().join("reports/fitme/index.md")).unwrap();
    assert!(
        index.contains("Targets as given") && index.contains("0.45"),
        "{index}"
    );
    for train_only in ["--no-report", "--enqueue-only"] {
        let err =
            fail_in_one_line(scalelab().args(["run", s, "--db", d, train_only, "--target", "0.5"]));
        assert!(
            err.contains("--target") && err.contains(train_only),
            "{err}"
        );
    }
    // A worker makes no report: it has no use for targets and says so.
    let err = fail_in_one_line(scalelab().args(["worker", "--db", d, "--target", "0.5"]));
    assert!(err.contains("--target"), "{err}");
    let err = fail_in_one_line(scalelab().args(["fit", "fitme", "--db", d, "--target", "nan"]));
    assert!(err.contains("--target") && err.contains("finite"), "{err}");
}
