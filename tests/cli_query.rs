//! Questioning the database: `runs`, `metrics`, `sql`, `sweeps`, `export`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use common::scalelab;

fn out(args: &[&str]) -> (bool, String, String) {
    let o = scalelab().args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = out(args);
    assert!(success, "scalelab {args:?}: {stderr}");
    stdout
}

/// One trained sweep shared by the tests (read-only tests only).
fn trained() -> &'static (tempfile::TempDir, PathBuf) {
    static DB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sweep = dir.path().join("q.toml");
        std::fs::write(
            &sweep,
            "name = \"q\"\n[data]\ntrain_size = 300\ntest_size = 200\n[model]\nhidden = [16]\n\
             [train]\nlr = [0.01, 3.0]\nbatch_size = [4, 16, 64]\nmomentum = 0.9\nepochs = 3\nseeds = 2\n",
        )
        .unwrap();
        let db = dir.path().join("q.db");
        ok(&["run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--quiet", "--no-report"]);
        (dir, db)
    })
}

fn db() -> &'static str {
    trained().1.to_str().unwrap()
}

/// The first value of a query on the shared database, as `sql --format csv` writes it.
fn sql_value(query: &str) -> String {
    ok(&["sql", query, "--format", "csv", "--db", db()])
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn runs_as_csv_json_and_a_readable_table() {
    let csv_text = ok(&[
        "runs",
        "--sweep",
        "q",
        "--where",
        "state = 'completed'",
        "--format",
        "csv",
        "--db",
        db(),
    ]);
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert!(headers.iter().any(|h| h == "final_test_acc"));
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let state = headers.iter().position(|h| h == "state").unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| &r[state] == "completed"));
    let completed = ok(&[
        "sql",
        "SELECT COUNT(*) FROM runs WHERE state = 'completed'",
        "--format",
        "csv",
        "--db",
        db(),
    ]);
    assert_eq!(
        completed.lines().nth(1).unwrap().parse::<usize>().unwrap(),
        rows.len()
    );

    let json = ok(&[
        "runs",
        "--format",
        "json",
        "--db",
        db(),
        "--where",
        "lr > 1 and batch_size in (4, 16)",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 4);
    assert!(
        arr.iter()
            .all(|r| r["lr"] == 3.0 && r["batch_size"].as_i64().unwrap() <= 16)
    );

    let table = ok(&["runs", "--db", db(), "--sort", "-final_test_acc"]);
    for line in table.lines() {
        assert!(line.chars().count() <= 120, "too wide: {line}");
    }
    assert!(table.contains("(12 rows)"), "{table}");
    // Learning rates in scientific notation to 3 digits, accuracies to 4 digits.
    assert!(
        table.contains("1.00e-2") && table.contains("3.00e0"),
        "{table}"
    );
    let limited = ok(&["runs", "--db", db(), "--limit", "2", "--format", "json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&limited)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn bad_filters_and_injections_are_refused_with_one_line() {
    for (expr, needle) in [
        ("batch_size >=", "expected a value"),
        ("batchsize > 3", "unknown column \"batchsize\""),
        ("1=1; DROP TABLE runs", "';' at column 4"),
        ("lr = 0.01; DROP TABLE runs", "';'"),
        ("lr = 0.01 OR 1=1", "column"),
        ("state = 'x' --", "'-'"),
    ] {
        let (success, stdout, stderr) = out(&["runs", "--db", db(), "--where", expr]);
        assert!(!success, "{expr} accepted: {stdout}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("--where") && stderr.contains(needle),
            "{expr}: {stderr}"
        );
    }
    // Nesting past the parser's limit is refused like any bad filter (10,000 levels overflowed
    // the stack and aborted); 50 levels still filter.
    let deep = format!("{}lr > 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let (success, _, stderr) = out(&["runs", "--db", db(), "--where", &deep]);
    assert!(!success);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--where") && stderr.contains("more than 100 levels"),
        "{stderr}"
    );
    let nested = format!("{}lr > 1{}", "(".repeat(50), ")".repeat(50));
    assert!(ok(&["runs", "--db", db(), "--where", &nested]).contains("(6 rows)"));
    // A long flat chain (2,000 conditions joined by AND) passed the nesting limit and SQLite
    // refused it, naming the database and not `--where` ("Expression tree is too large
    // (maximum depth 1000)"). Past 200 conditions it is refused like any bad filter; 200 still
    // filter, beside --state.
    let chain = |n: usize| vec!["lr > 0"; n].join(" and ");
    for n in [201, 2_000] {
        let (success, _, stderr) = out(&["runs", "--db", db(), "--where", &chain(n)]);
        assert!(!success, "{n} conditions accepted");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("--where") && stderr.contains("more than 200 conditions"),
            "{stderr}"
        );
    }
    // 200 conditions that filter (ε = 3 runs left out), beside --state.
    let filtering = vec!["lr < 1"; 200].join(" and ");
    let longest = ok(&[
        "runs",
        "--db",
        db(),
        "--state",
        "completed",
        "--where",
        &filtering,
        "--format",
        "csv",
    ]);
    let states = common::csv_column(longest.as_bytes(), "state");
    assert!(!states.is_empty(), "{longest}");
    assert!(states.iter().all(|s| s == "completed"), "{longest}");
    let want = sql_value(&format!(
        "SELECT COUNT(*) FROM runs WHERE state = 'completed' AND ({filtering})"
    ));
    assert_eq!(states.len().to_string(), want, "{longest}");
    // Both filters bite: fewer rows than the completed runs, and than the runs at ε < 1.
    let completed = sql_value("SELECT COUNT(*) FROM runs WHERE state = 'completed'");
    let below_one = sql_value("SELECT COUNT(*) FROM runs WHERE lr < 1");
    assert!(
        states.len() < completed.parse::<usize>().unwrap()
            && states.len() <= below_one.parse::<usize>().unwrap(),
        "{} rows, {completed} completed, {below_one} at lr < 1",
        states.len()
    );
    let (success, _, stderr) = out(&["runs", "--db", db(), "--sort", "wall"]);
    assert!(!success && stderr.contains("--sort") && stderr.contains("wall"));
    // The table is intact.
    assert!(
        ok(&[
            "sql",
            "SELECT COUNT(*) FROM runs",
            "--format",
            "csv",
            "--db",
            db()
        ])
        .contains("12")
    );
}

#[test]
fn sql_refuses_writes_and_the_database_is_unchanged() {
    let count = || {
        ok(&[
            "sql",
            "SELECT COUNT(*) AS n, SUM(steps) AS s FROM runs",
            "--format",
            "csv",
            "--db",
            db(),
        ])
    };
    let before = count();
    let sweeps_before = ok(&[
        "sql",
        "SELECT * FROM sweeps",
        "--format",
        "json",
        "--db",
        db(),
    ]);
    for q in [
        "DELETE FROM runs",
        "DROP TABLE runs",
        "ATTACH 'other.db' AS o",
        "SELECT 1; DELETE FROM runs",
        "UPDATE runs SET state = 'failed'",
        "INSERT INTO sweeps (name) VALUES ('x')",
        "WITH x AS (SELECT 1) DELETE FROM runs",
        "PRAGMA journal_mode = DELETE",
        "CREATE TABLE t (x)",
    ] {
        let (success, _, stderr) = out(&["sql", q, "--db", db()]);
        assert!(!success, "{q} was accepted");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("refused"), "{q}: {stderr}");
    }
    assert_eq!(count(), before);
    assert_eq!(
        ok(&[
            "sql",
            "SELECT * FROM sweeps",
            "--format",
            "json",
            "--db",
            db()
        ]),
        sweeps_before
    );
    // Reading works, including a per-batch-size aggregate and the documented view.
    let agg = ok(&[
        "sql",
        "SELECT batch_size, AVG(test_acc) AS acc FROM epoch_metrics GROUP BY batch_size",
        "--format",
        "json",
        "--db",
        db(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&agg).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let (success, _, stderr) = out(&["sql", "SELECT nosuch FROM runs", "--db", db()]);
    assert!(!success && stderr.contains("nosuch"), "{stderr}");
    let empty = ok(&[
        "sql",
        "SELECT run_id, state FROM run_summary WHERE state = 'nothing'",
        "--format",
        "csv",
        "--db",
        db(),
    ]);
    assert_eq!(
        empty.trim(),
        "run_id,state",
        "an empty result keeps its header"
    );
}

#[test]
fn metrics_by_unique_prefix() {
    let ids = ok(&[
        "sql",
        "SELECT id FROM runs WHERE state = 'completed' ORDER BY id LIMIT 1",
        "--format",
        "csv",
        "--db",
        db(),
    ]);
    let id = ids.lines().nth(1).unwrap().to_string();
    let csv_text = ok(&["metrics", &id[..10], "--format", "csv", "--db", db()]);
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(lines.len(), 1 + 4, "header and epochs 0..=3");
    assert!(lines[0].starts_with("epoch,step,samples,lr,batch_size,train_loss"));
    // The longest prefix two ids share (sorted, the ids sharing most are neighbours) names
    // more than one run: refused in one line that lists the runs it matches (at most five).
    let all: Vec<String> = ok(&[
        "sql",
        "SELECT id FROM runs ORDER BY id",
        "--format",
        "csv",
        "--db",
        db(),
    ])
    .lines()
    .skip(1)
    .map(str::to_string)
    .collect();
    assert_eq!(all.len(), 12);
    let shared = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let prefix = all
        .windows(2)
        .map(|w| &w[0][..shared(&w[0], &w[1])])
        .max_by_key(|p| p.len())
        .unwrap();
    assert!(!prefix.is_empty(), "no two of {all:?} share a first digit");
    let matching: Vec<&String> = all.iter().filter(|id| id.starts_with(prefix)).collect();
    assert!(matching.len() >= 2);
    let (success, _, stderr) = out(&["metrics", prefix, "--db", db()]);
    assert!(!success, "{prefix} accepted");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("run id prefix {prefix:?} is ambiguous: ")),
        "{stderr}"
    );
    for id in matching.iter().take(5) {
        assert!(stderr.contains(id.as_str()), "{stderr} lacks {id}");
    }
    for id in all.iter().filter(|id| !id.starts_with(prefix)) {
        assert!(!stderr.contains(id.as_str()), "{stderr} lists {id}");
    }
    let (success, _, stderr) = out(&["metrics", "zz", "--db", db()]);
    assert!(!success && stderr.contains("zz"));
    let (success, _, stderr) = out(&["metrics", "ffffffffffffffff0", "--db", db()]);
    assert!(!success && stderr.contains("no run id"), "{stderr}");
}

/// `--out` naming the results database itself (directly, through a link, a hard link or its
/// `-wal` file) or any other SQLite file is refused by name, and the database is unharmed.
#[cfg(unix)]
#[test]
fn export_never_overwrites_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db()));
        if from.exists() {
            std::fs::copy(&from, format!("{}{suffix}", copy.display())).unwrap();
        }
    }
    let copy_s = copy.to_str().unwrap();
    let before = ok(&["runs", "--sweep", "q", "--format", "csv", "--db", copy_s]);
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink("copy.db", &link).unwrap();
    let hard = dir.path().join("hard.csv");
    std::fs::hard_link(&copy, &hard).unwrap();
    let other = dir.path().join("other.db");
    std::fs::copy(&copy, &other).unwrap();
    let mut refused = vec![
        (copy.clone(), "is the results database"),
        (link, "is the results database"),
        (hard, "is the results database"),
        (other.clone(), "is an SQLite database"),
    ];
    let wal = dir.path().join("copy.db-wal");
    if wal.exists() {
        refused.push((wal, "is the results database"));
    }
    for (out_path, says) in refused {
        let (success, stdout, stderr) = out(&[
            "export",
            "q",
            "--out",
            out_path.to_str().unwrap(),
            "--db",
            copy_s,
        ]);
        assert!(!success, "{out_path:?}: {stdout}");
        let line = stderr.trim();
        assert!(
            line.lines().count() == 1
                && line.contains(out_path.to_str().unwrap())
                && line.contains(says),
            "{line}"
        );
    }
    assert_eq!(
        ok(&["runs", "--sweep", "q", "--format", "csv", "--db", copy_s]),
        before
    );
    assert_eq!(&std::fs::read(&other).unwrap()[..16], b"SQLite format 3\0");
    // A plain file of text is still replaced.
    let csv_path = dir.path().join("plain.db");
    std::fs::write(&csv_path, "not a database\n").unwrap();
    ok(&[
        "export",
        "q",
        "--out",
        csv_path.to_str().unwrap(),
        "--db",
        copy_s,
    ]);
    assert_eq!(
        csv::Reader::from_path(&csv_path).unwrap().records().count(),
        12
    );
}

/// `--out` that is not a plain path: a symbolic link is written through (the link stays, the
/// file it names gets the rows), `-` is standard output, a FIFO is written into rather than
/// replaced, and a directory is refused by name.
#[cfg(unix)]
#[test]
fn export_writes_through_links_fifos_and_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.csv");
    std::fs::write(&target, "old\n").unwrap();
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink("target.csv", &link).unwrap();
    ok(&["export", "q", "--out", link.to_str().unwrap(), "--db", db()]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let mut rdr = csv::Reader::from_path(&target).unwrap();
    assert_eq!(rdr.records().count(), 12);

    // A link to a file not made yet: the file is made, whole; the link stays.
    let dangling = dir.path().join("dangling.csv");
    std::os::unix::fs::symlink("made.csv", &dangling).unwrap();
    ok(&[
        "export",
        "q",
        "--out",
        dangling.to_str().unwrap(),
        "--db",
        db(),
    ]);
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let mut rdr = csv::Reader::from_path(dir.path().join("made.csv")).unwrap();
    assert_eq!(rdr.records().count(), 12);

    let o = common::scalelab_in(dir.path())
        .args([
            "export",
            "q",
            "--out",
            "-",
            "--format",
            "jsonl",
            "--db",
            db(),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 12);
    assert!(stderr.contains("to standard output"), "{stderr}");
    assert!(!dir.path().join("-").exists());

    let fifo = dir.path().join("rows.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        std::thread::spawn(move || tx.send(std::fs::read_to_string(fifo).unwrap()));
    }
    let (success, stdout, stderr) =
        out(&["export", "q", "--out", fifo.to_str().unwrap(), "--db", db()]);
    // Read through the FIFO; a FIFO replaced by a file would leave the reader waiting.
    let read = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the FIFO's reader got the rows");
    assert!(success, "{stderr}");
    assert_eq!(read.lines().count(), 13);
    assert!(
        stdout.is_empty() && stderr.contains("rows.fifo"),
        "{stdout} / {stderr}"
    );
    assert!(!std::fs::metadata(&fifo).unwrap().is_file());

    let (success, _, stderr) = out(&[
        "export",
        "q",
        "--out",
        dir.path().to_str().unwrap(),
        "--db",
        db(),
    ]);
    assert!(!success && stderr.contains("is a directory"), "{stderr}");
}

/// An export whose `--out` is a symbolic link into a directory it cannot write named its own
/// temporary file (`/proc/self/.rows.csv.1067.tmp: No such file or directory`), or the
/// directory the link leads to, instead of the path given. Now the one-line error starts with
/// the path given, says which directory failed, and leaves nothing behind: no temporary file,
/// the existing target as it was. (/proc/self refuses new files even to root; a read-only
/// directory is tried too where permissions stop this user.)
#[cfg(unix)]
#[test]
fn export_into_an_unwritable_directory_names_the_path_given() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::write(read_only.join("rows.csv"), "old\n").unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes into it regardless: then that case is not tried.
    let probe = read_only.join("probe");
    let permissions_bite = std::fs::write(&probe, "").is_err();
    let _ = std::fs::remove_file(&probe);

    let mut cases = vec![(
        "missing-dir.csv",
        dir.path().join("missing").join("rows.csv"),
        "does not exist",
    )];
    if cfg!(target_os = "linux") {
        cases.push((
            "proc.csv",
            PathBuf::from("/proc/self/rows.csv"),
            "cannot create a file in /proc/self",
        ));
    }
    if permissions_bite {
        cases.push((
            "read-only.csv",
            read_only.join("rows.csv"),
            "cannot create a file in",
        ));
    }
    for (link_name, target, needle) in cases {
        let link = dir.path().join(link_name);
        symlink(&target, &link).unwrap();
        let (success, stdout, stderr) =
            out(&["export", "q", "--out", link.to_str().unwrap(), "--db", db()]);
        assert!(!success, "{link_name}: {stdout}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: {}: ", link.display())) && stderr.contains(needle),
            "{link_name}: {stderr}"
        );
        assert!(!stderr.contains(".rows.csv."), "{stderr}");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Nothing left behind, and the file that was there is as it was.
    for d in [dir.path(), read_only.as_path()] {
        for entry in std::fs::read_dir(d).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with('.'),
                "{name:?} left in {d:?}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(read_only.join("rows.csv")).unwrap(),
        "old\n"
    );
    assert!(!dir.path().join("missing").exists());
}

/// The temporary file is named after the target: a 250-byte file name (under the usual limit of
/// 255) made a temporary name over it, and the export failed with "File name too long".
#[test]
fn export_to_a_name_near_the_file_name_limit() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join(format!("{}.csv", "r".repeat(246)));
    ok(&["export", "q", "--out", long.to_str().unwrap(), "--db", db()]);
    let mut rdr = csv::Reader::from_path(&long).unwrap();
    assert_eq!(rdr.records().count(), 12);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn export_writes_tidy_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("runs.csv");
    ok(&[
        "export",
        "q",
        "--out",
        csv_path.to_str().unwrap(),
        "--db",
        db(),
    ]);
    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(rdr.records().count(), 12);
    let jsonl = dir.path().join("epochs.jsonl");
    ok(&[
        "export",
        "q",
        "--epochs",
        "--format",
        "jsonl",
        "--out",
        jsonl.to_str().unwrap(),
        "--db",
        db(),
    ]);
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let epochs: usize = sql_value("SELECT COUNT(*) FROM epoch_metrics")
        .parse()
        .unwrap();
    assert_eq!(text.lines().count(), epochs);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["epoch"].is_i64() && v["lr"].is_f64() && v["run_id"].is_string());
        // The run's total and the epoch's count under two names (both were `samples`, and
        // pandas read the epoch's as `samples.1`).
        let (total, at_epoch) = (v["samples"].as_i64(), v["epoch_samples"].as_i64());
        assert!(at_epoch.unwrap() <= total.unwrap(), "{line}");
        assert!(v.get("samples.1").is_none(), "{line}");
    }
    // Every column of the per-epoch export has a name of its own.
    let epochs_csv = dir.path().join("epochs.csv");
    ok(&[
        "export",
        "q",
        "--epochs",
        "--out",
        epochs_csv.to_str().unwrap(),
        "--db",
        db(),
    ]);
    let headers = csv::Reader::from_path(&epochs_csv)
        .unwrap()
        .headers()
        .unwrap()
        .clone();
    let names: std::collections::BTreeSet<&str> = headers.iter().collect();
    assert_eq!(names.len(), headers.len(), "{headers:?}");
    let json = dir.path().join("runs.json");
    ok(&[
        "export",
        "q",
        "--format",
        "json",
        "--out",
        json.to_str().unwrap(),
        "--db",
        db(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 12);
    // An unknown sweep is refused before the destination is opened, so the file named there is
    // left alone (an export that fails while writing: the part-way test below).
    let exported = std::fs::read(&json).unwrap();
    let (success, _, stderr) = out(&[
        "export",
        "nosuch",
        "--out",
        json.to_str().unwrap(),
        "--db",
        db(),
    ]);
    assert!(!success, "export of an unknown sweep succeeded");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("no sweep named \"nosuch\" in {}", db())),
        "{stderr}"
    );
    assert!(
        std::fs::read(&json).unwrap() == exported,
        "runs.json changed"
    );
    let sweeps = ok(&["sweeps", "--db", db(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&sweeps).unwrap();
    assert_eq!(v[0]["sweep"], "q");
    assert_eq!(v[0]["cells"], 12);
}

fn write_long_sweep(dir: &Path) -> PathBuf {
    let p = dir.join("long.toml");
    std::fs::write(
        &p,
        "name = \"long\"\n[data]\ntrain_size = 1000\ntest_size = 500\n[model]\nhidden = [64]\n\
         [train]\nlr = [0.01, 0.02]\nbatch_size = [8, 16]\nmomentum = 0.9\nepochs = 12\nseeds = 3\n",
    )
    .unwrap();
    p
}

/// WAL: readers in another process neither fail nor block the writer.
#[test]
fn queries_work_while_a_sweep_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = write_long_sweep(dir.path());
    let db = dir.path().join("live.db");
    let d = db.to_str().unwrap();
    let start = Instant::now();
    let mut writer = scalelab()
        .args([
            "run",
            sweep.to_str().unwrap(),
            "--db",
            d,
            "--jobs",
            "1",
            "--quiet",
            "--no-report",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reads = 0;
    let mut slowest = Duration::ZERO;
    while writer.try_wait().unwrap().is_none() {
        if db.exists() {
            let t = Instant::now();
            let (success, stdout, stderr) = out(&["runs", "--db", d, "--format", "csv"]);
            if success {
                assert!(stdout.starts_with("run_id,"));
                reads += 1;
                slowest = slowest.max(t.elapsed());
            } else {
                // Only before the schema exists may a read fail.
                assert!(
                    stderr.contains("not a scalelab database") || stderr.contains("no database"),
                    "{stderr}"
                );
            }
        }
        assert!(start.elapsed() < Duration::from_secs(120));
    }
    let status = writer.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(reads >= 3, "only {reads} reads happened during the sweep");
    assert!(slowest < Duration::from_secs(2), "a read took {slowest:?}");
    let done = ok(&[
        "sql",
        "SELECT COUNT(*) FROM runs WHERE state = 'completed'",
        "--format",
        "csv",
        "--db",
        d,
    ]);
    assert_eq!(done.lines().nth(1), Some("12"));
}

/// `sql` writes CSV and JSON as the rows are read: the same records as the table, a header or
/// `[]` for an empty result, exact numbers.
#[test]
fn sql_streams_csv_and_json() {
    let q = "SELECT run_id, epoch, test_loss FROM epoch_metrics ORDER BY run_id, epoch";
    let csv_text = ok(&["sql", q, "--format", "csv", "--db", db()]);
    let json_text = ok(&["sql", q, "--format", "json", "--db", db()]);
    let json: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    let records = json.as_array().unwrap();
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(rdr.headers().unwrap(), vec!["run_id", "epoch", "test_loss"]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert!(rows.len() > 12, "{} rows", rows.len());
    assert_eq!(rows.len(), records.len());
    for (r, v) in rows.iter().zip(records) {
        assert_eq!(r[0], *v["run_id"].as_str().unwrap());
        assert_eq!(r[1].parse::<i64>().unwrap(), v["epoch"].as_i64().unwrap());
        // Both exact: the CSV text parses to the very same f64 as the JSON number (serde_json
        // with `float_roundtrip`, as scalelab builds it).
        let (a, b) = (
            r[2].parse::<f64>().unwrap(),
            v["test_loss"].as_f64().unwrap(),
        );
        assert_eq!(a.to_bits(), b.to_bits(), "{a} {b}");
    }
    let none = "SELECT run_id, epoch FROM epoch_metrics WHERE epoch < 0";
    assert_eq!(
        ok(&["sql", none, "--format", "csv", "--db", db()]),
        "run_id,epoch\n"
    );
    assert_eq!(ok(&["sql", none, "--format", "json", "--db", db()]), "[]\n");
}

/// `sql` in its table format held every row: a recursive CTE without end grew to 4.8 GB in 10 s
/// and aborted. The table now stops at 10,000 rows, says so on stderr in one line, and exits 0;
/// the query is stopped there, not read to its end (a regression hangs and is killed here).
#[test]
fn sql_table_stops_at_its_row_cap_on_a_query_without_end() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (dir.path().join("out"), dir.path().join("err"));
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                   SELECT x, printf('%0100d', x) AS wide FROM c";
    let mut child = scalelab()
        .args(["sql", endless, "--db", db()])
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`scalelab sql` on an endless query still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stdout.trim_end().ends_with("(10000 rows)"), "{stderr}");
    // The last row printed is the 10,000th; the 10,001st never is.
    assert!(stdout.contains(&format!("{:0100}", 10_000)));
    assert!(!stdout.contains(&format!("{:0100}", 10_001)));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("stopped at 10000 rows") && stderr.contains("--format csv"),
        "{stderr}"
    );

    // At or under the cap, the table is whole and says nothing more.
    let (success, stdout, stderr) = out(&[
        "sql",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) \
         SELECT x FROM c",
        "--db",
        db(),
    ]);
    assert!(success, "{stderr}");
    assert!(stdout.trim_end().ends_with("(10000 rows)"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Two files that name the same sweep: running the second says whose sweep it replaces, and a
/// command given the first file warns, in one line, that it shows the stored (second) sweep.
#[test]
fn a_file_that_is_not_the_stored_sweep_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let write = |sub: &str, lr: &str| {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        let p = dir.path().join(sub).join("same.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"same\"\n[data]\ntrain_size = 200\ntest_size = 100\n[model]\n\
                 hidden = [8]\n[train]\nlr = {lr}\nbatch_size = 16\nepochs = 1\n"
            ),
        )
        .unwrap();
        p
    };
    let (first, second) = (write("a", "0.05"), write("b", "0.2"));
    let db = dir.path().join("s.db");
    let (f, s, d) = (
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        db.to_str().unwrap(),
    );
    ok(&["run", f, "--db", d, "--quiet", "--no-report"]);
    let stdout = ok(&["run", s, "--db", d, "--quiet", "--no-report"]);
    assert!(
        stdout.contains(&format!("replacing the sweep of that name from {f}")),
        "{stdout}"
    );
    for args in [
        vec!["runs", "--sweep", f, "--db", d],
        vec!["status", f, "--db", d],
        vec!["export", f, "--out", "-", "--db", d],
    ] {
        let (success, _, stderr) = out(&args);
        assert!(success, "{args:?}: {stderr}");
        let warning: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect();
        assert!(
            warning.len() == 1
                && warning[0].contains(&format!("{f} differs from the sweep \"same\""))
                && warning[0].contains(&format!("registered from {s}")),
            "{args:?}: {stderr}"
        );
    }
    // The stored sweep's own file, or its name: no warning.
    for args in [
        vec!["runs", "--sweep", s, "--db", d],
        vec!["runs", "--sweep", "same", "--db", d],
    ] {
        let (success, _, stderr) = out(&args);
        assert!(success && !stderr.contains("warning"), "{args:?}: {stderr}");
    }
}

/// `SCALELAB_DB=` (set, but empty) read to clap as `--db` without a value: "a value is required
/// for '--db <DB>' but none was supplied", naming a flag the user never typed. It now names the
/// variable; an explicit `--db` still wins over it.
#[test]
fn an_empty_scalelab_db_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = scalelab()
        .env("SCALELAB_DB", "")
        .current_dir(dir.path())
        .arg("sweeps")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr.trim_end(),
        "error: SCALELAB_DB is set but empty: give it a database path, or unset it"
    );
    let missing = dir.path().join("m.db");
    let o = scalelab()
        .env("SCALELAB_DB", "")
        .args(["sweeps", "--db", missing.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("m.db") && !stderr.contains("SCALELAB_DB"),
        "{stderr}"
    );
}

/// `sql` shows what the query asked for: its own column names (the `runs` table's short
/// headers turned `final_test_acc` and an epoch's `test_acc` into two columns called
/// `test_acc`), and every real as stored (a learning rate had two significant digits, so 0.0342
/// and 0.0345 printed alike, and timestamps printed as `1.79599e9`). Functions named like write
/// statements (`replace()`) are not refused.
#[test]
fn sql_shows_the_query_s_own_columns_and_exact_values() {
    let text = ok(&[
        "sql",
        "SELECT final_test_acc, 0.0342 AS lr, 0.0345 AS lr2, 1795990012.25 AS started_at, \
         replace('[16]', '[', '') AS h FROM runs LIMIT 1",
        "--db",
        db(),
    ]);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["final_test_acc", "lr", "lr2", "started_at", "h"]);
    let row: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..], ["0.0342", "0.0345", "1795990012.25", "16]"]);
    let value =
        sql_value("SELECT final_test_acc FROM runs WHERE final_test_acc IS NOT NULL LIMIT 1");
    let table = ok(&[
        "sql",
        "SELECT final_test_acc FROM runs WHERE final_test_acc IS NOT NULL LIMIT 1",
        "--db",
        db(),
    ]);
    assert!(
        table.lines().nth(2).unwrap().trim() == value,
        "{table} / {value}"
    );
    // `runs` keeps its short headers for reading.
    let runs = ok(&["runs", "--limit", "1", "--db", db()]);
    assert!(
        runs.lines().next().unwrap().contains(" test_acc "),
        "{runs}"
    );
    // Regression: a stored string's terminal escapes reached the terminal raw from a table,
    // and a newline broke the row; the table writes them as escapes, CSV keeps the text.
    let raw = "SELECT char(27) || '[31mred' AS a, 'x' || char(10) || 'y' AS b";
    let table = ok(&["sql", raw, "--db", db()]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["\\x1b[31mred", "x\\ny"]
    );
    assert!(!table.contains('\u{1b}'), "{table:?}");
    let csv = ok(&["sql", raw, "--db", db(), "--format", "csv"]);
    assert_eq!(csv, "a,b\n\u{1b}[31mred,\"x\ny\"\n");
    // Regression: a table wider than 120 columns wrapped its cells, splitting numbers across
    // lines ("0.890987" above "92392744"). Each row is one line holding every value whole,
    // as CSV gives them.
    let wide = "SELECT id, final_test_loss, final_train_loss, final_test_acc, wall_s, eval_s, \
                noise_scale, initial_train_loss, lr, momentum, host, kernels, config \
                FROM runs ORDER BY id LIMIT 3";
    let table = ok(&["sql", wide, "--db", db()]);
    let csv = ok(&["sql", wide, "--db", db(), "--format", "csv"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2 + 3 + 1, "{table}");
    assert!(lines[0].chars().count() > 120, "{table}");
    for (line, record) in lines[2..5].iter().zip(csv.lines().skip(1)) {
        let values: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(record.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(String::from)
            .collect();
        assert_eq!(values.len(), 13);
        // Every cell whole, on this line: the same number (the two formats may write it
        // differently: 6.7073e-5 and 0.000067073), or the same text.
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 13, "{line}");
        for (cell, v) in cells.iter().zip(&values) {
            match (cell.parse::<f64>(), v.parse::<f64>()) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{cell} against {v} in: {line}"),
                _ => assert_eq!(cell, v, "in: {line}"),
            }
        }
    }
}

/// clap's message for a missing argument is several lines; the one line we print used to stop
/// at "were not provided:" without naming what.
#[test]
fn a_missing_argument_is_named() {
    for (args, name) in [
        (vec!["export", "q"], "--out <OUT>"),
        (vec!["metrics"], "<RUN_ID>"),
        (vec!["sql"], "<QUERY>"),
    ] {
        let err = common::fail_in_one_line(scalelab().args(&args).args(["--db", db()]));
        assert!(
            err.contains("were not provided: ") && err.contains(name),
            "{args:?}: {err}"
        );
    }
    let err = common::fail_in_one_line(scalelab().args([
        "runs",
        "--limit",
        "9223372036854775808",
        "--db",
        db(),
    ]));
    assert!(err.contains("--limit"), "{err}");
}

/// Output that cannot be written (a full disk) ends every command with one line naming
/// standard output and status 1; `fit`, `status`, `metrics` and others panicked with a stack
/// trace (`failed printing to stdout`).
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_on_standard_output_is_one_line() {
    let id = sql_value("SELECT id FROM runs LIMIT 1");
    for args in [
        vec!["fit", "q"],
        vec!["fit", "q", "--format", "json"],
        vec!["status"],
        vec!["sweeps"],
        vec!["runs"],
        vec!["metrics", id.as_str()],
        vec!["sql", "SELECT * FROM runs"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = scalelab()
            .args(&args)
            .args(["--db", db()])
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.trim_end()
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("error: ") && l.contains("No space left on device"))
                && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

/// An export that fails part-way (here at the file-size limit, as on a full disk) leaves the
/// file it was to replace byte for byte, and no temporary file beside it; the error is one line
/// that names the path given.
#[cfg(unix)]
#[test]
fn an_export_that_fails_part_way_keeps_the_file_it_would_replace() {
    use std::os::unix::process::CommandExt;
    // A database of its own whose export (about 90 KB) outgrows the limit below, which leaves
    // room for SQLite's 32 KiB shared-memory file.
    const LIMIT: u64 = 64 * 1024;
    let data = tempfile::tempdir().unwrap();
    let sweep = data.path().join("big.toml");
    std::fs::write(
        &sweep,
        "name = \"big\"\n[data]\ntrain_size = 300\ntest_size = 200\n[model]\nhidden = [16]\n\
         [train]\nlr = 0.01\nbatch_size = [64, 128]\nmomentum = 0.9\nepochs = 150\nseeds = 1\n",
    )
    .unwrap();
    let db = data.path().join("big.db");
    let db = db.to_str().unwrap();
    ok(&[
        "run",
        sweep.to_str().unwrap(),
        "--db",
        db,
        "--quiet",
        "--no-report",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("old.csv");
    std::fs::write(&out_path, "the last good export\n").unwrap();
    let mut cmd = scalelab();
    cmd.args(["export", "big", "--epochs", "--out"])
        .arg(&out_path)
        .args(["--db", db]);
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(|| {
            // Writes past the limit fail with EFBIG instead of raising SIGXFSZ.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let err = common::fail_in_one_line(&mut cmd);
    assert!(
        err.contains(out_path.to_str().unwrap()) && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "the last good export\n"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["old.csv"], "{left:?}");
    // Without the limit the same export succeeds, and is larger than the limit.
    ok(&[
        "export",
        "big",
        "--epochs",
        "--out",
        out_path.to_str().unwrap(),
        "--db",
        db,
    ]);
    assert!(std::fs::metadata(&out_path).unwrap().len() > LIMIT);
}

/// A query that fails on a later row (row 5 takes the absolute value of the smallest 64-bit
/// integer, an integer overflow) has printed the rows before it, then says what went wrong in
/// one line, with a non-zero exit.
#[test]
fn sql_that_fails_part_way_prints_the_rows_before_and_one_line() {
    let query = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 8) \
                 SELECT x, abs(-9223372036854775803 - x) AS y FROM n";
    let o = scalelab()
        .args(["sql", query, "--format", "csv", "--db", db()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "x,y",
            "1,9223372036854775804",
            "2,9223372036854775805",
            "3,9223372036854775806",
            "4,9223372036854775807"
        ],
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("integer overflow"),
        "{stderr}"
    );
}
