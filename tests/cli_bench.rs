//! `scalelab bench`: the fields torch_reference.py prints, plus the peak and its fraction.

mod common;

use common::{fail_in_one_line, scalelab, succeed};

/// Runs `scalelab bench ARGS --seconds 0.05 --format json` and parses its lines.
fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out =
        succeed(
            scalelab()
                .arg("bench")
                .args(args)
                .args(["--seconds", "0.05", "--format", "json"]),
        );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bench_prints_json_lines_with_the_reference_fields() {
    let lines = bench_json(&["--batch-sizes", "16,64"]);
    assert_eq!(lines.len(), 3, "two batch sizes and the peak line");
    for (row, b) in lines[..2].iter().zip([16, 64]) {
        assert_eq!(row["engine"], "scalelab");
        assert_eq!(row["threads"], 1);
        assert_eq!(row["hidden"], 800);
        assert_eq!(row["batch_size"], b);
        let steps = row["steps_per_s"].as_f64().unwrap();
        let samples = row["samples_per_s"].as_f64().unwrap();
        assert!(steps > 0.0 && (samples / steps - b as f64).abs() < 1e-6);
        // 6·B·P FLOPs minus the input layer's input gradient: 2·B·(2·P + 800·10).
        let p = (784 * 800 + 800 * 10) as f64;
        let want = 2.0 * b as f64 * (2.0 * p + 8000.0) / 1e9;
        assert!((row["step_gflop"].as_f64().unwrap() - want).abs() < 1e-9);
        assert!(row["peak_fraction"].as_f64().unwrap() > 0.0);
    }
    assert!(lines[2]["matmul_peak_gflops"].as_f64().unwrap() > 1.0);
    // The level of scalelab's own kernels on this machine, as this build detects it.
    assert_eq!(
        lines[2]["kernels"],
        scalelab::train::isa::Isa::detected().to_string()
    );
    // And the processor, as runs.cpu records it (null where the system does not name it).
    assert_eq!(lines[2]["cpu"].as_str(), scalelab::provenance::cpu_model());
    let err = fail_in_one_line(scalelab().args(["bench", "--batch-sizes", "0"]));
    assert!(
        err.contains("invalid batch-sizes: give positive batch sizes"),
        "{err}"
    );
}

#[test]
fn bench_times_the_cnn_with_its_own_flop_count() {
    let lines = bench_json(&["--model", "cnn", "--batch-sizes", "8"]);
    let row = &lines[0];
    assert_eq!(row["model"], "cnn");
    assert_eq!(row["hidden"], 8);
    assert_eq!(row["batch_size"], 8);
    // Forward MACs per image: conv1 28·28·8·25, conv2 14·14·16·200, dense 10·16·7·7; a step ≈
    // 3 forward passes of 2 FLOPs per MAC.
    let macs = (28 * 28 * 8 * 25 + 14 * 14 * 16 * 200 + 10 * 16 * 7 * 7) as f64;
    let want = 3.0 * 2.0 * macs * 8.0 / 1e9;
    assert!((row["step_gflop"].as_f64().unwrap() - want).abs() < 1e-9);
    assert!(row["steps_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_benchmark_too_large_for_memory_or_threads_beyond_the_cores_are_refused() {
    for (args, want) in [
        (vec!["--hidden", "4294967295"], "invalid hidden"),
        (
            vec!["--model", "cnn", "--hidden", "1000000"],
            "invalid hidden",
        ),
        (
            vec!["--threads", "100000"],
            "invalid threads: must be at most 4 ×",
        ),
    ] {
        let out = scalelab().arg("bench").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn the_table_names_the_kernels_and_the_processor() {
    let out = succeed(scalelab().args(["bench", "--batch-sizes", "16", "--seconds", "0.05"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    let want = format!(
        "{} kernels on {}",
        scalelab::train::isa::Isa::detected(),
        scalelab::provenance::cpu_model().unwrap_or("an unnamed processor")
    );
    assert!(
        first.starts_with("matmul peak (f32, 1 thread): ") && first.ends_with(&want),
        "{first}"
    );
    assert!(text.contains("samples/s"), "{text}");
}
