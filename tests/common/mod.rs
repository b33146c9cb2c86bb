//! Helpers shared by the command-line tests: the binary as a user runs it, and a success check
//! that shows what the command printed when it fails.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The scalelab binary with one compute thread and no database from the environment.
pub fn scalelab() -> Command {
    scalelab_at(Path::new(env!("CARGO_BIN_EXE_scalelab")))
}

/// [`scalelab`] from another path (a copy of the binary).
pub fn scalelab_at(program: &Path) -> Command {
    let mut c = Command::new(program);
    c.env("RAYON_NUM_THREADS", "1").env_remove("SCALELAB_DB");
    c
}

/// The values of column `name` in CSV text, row after row (panics if the column is missing).
pub fn csv_column(csv_text: &[u8], name: &str) -> Vec<String> {
    let mut rdr = csv::Reader::from_reader(csv_text);
    let at = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rdr.records().map(|r| r.unwrap()[at].to_string()).collect()
}

/// [`scalelab`] run in `dir`, where the default database and `reports/` land.
pub fn scalelab_in(dir: &Path) -> Command {
    let mut c = scalelab();
    c.current_dir(dir);
    c
}

/// Runs `cmd`, asserts that it succeeded (printing its stdout and stderr if not), and returns
/// its output.
pub fn succeed(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the scalelab binary runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, asserts that it failed with exactly one line on stderr (the project's promise for
/// bad input), and returns that line.
pub fn fail_in_one_line(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the scalelab binary runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{cmd:?} succeeded: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{cmd:?}: {err}");
    err
}
