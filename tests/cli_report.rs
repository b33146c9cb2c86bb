//! `scalelab report` and the report at the end of `scalelab run`: real PNGs, a real index.

mod common;

use std::path::Path;

use common::{fail_in_one_line, scalelab_in as scalelab, succeed};

/// Decodes a PNG and returns (width, height, luminance variance, distinct colours).
fn inspect(path: &Path) -> (u32, u32, f64, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let lum: Vec<f64> = px
        .chunks(channels)
        .map(|p| p[..3.min(channels)].iter().map(|&v| v as f64).sum::<f64>() / 3.0)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    let colours: std::collections::HashSet<&[u8]> = px.chunks(channels).collect();
    (info.width, info.height, var, colours.len())
}

#[test]
fn run_ends_with_a_report_whose_figures_decode_and_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rep.toml"),
        "name = \"rep\"\n[data]\ntrain_size = 400\ntest_size = 500\n[model]\nhidden = [16]\n\
         [train]\nlr = [0.01, 0.05]\nbatch_size = { pow2 = [4, 128] }\nmomentum = 0.9\nepochs = 5\nseeds = 2\n",
    )
    .unwrap();
    let out = succeed(scalelab(dir.path()).args(["run", "rep.toml", "--quiet"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("report: reports/rep/index.html"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("figure 1/10"), "progress lines: {stderr}");
    let rep = dir.path().join("reports/rep");
    let html = std::fs::read_to_string(rep.join("index.html")).unwrap();
    let md = std::fs::read_to_string(rep.join("index.md")).unwrap();
    let mut pngs: Vec<_> = std::fs::read_dir(&rep)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    pngs.sort();
    // Batch curves, B_opt scaling, collapse, heatmap, training curves, efficiency at least.
    assert!(pngs.len() >= 5, "{pngs:?}");
    for p in &pngs {
        let (w, h, var, colours) = inspect(p);
        assert!(w >= 800 && h >= 600, "{}: {w}×{h}", p.display());
        assert!(var > 50.0 && colours > 20, "{} looks blank", p.display());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            html.contains(&format!("src=\"{name}\"")),
            "index.html misses {name}"
        );
        assert!(md.contains(&format!("]({name})")), "index.md misses {name}");
    }
    // Every figure section holds its image or says why it was not drawn, as the progress line
    // said; the images are the PNGs written.
    let total: usize = stderr
        .split("figure 1/")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure count: {stderr}"));
    let (mut drawn, mut not_drawn) = (Vec::new(), Vec::new());
    for n in 1..=total {
        let start = html
            .find(&format!("<section id=\"fig{n}\">"))
            .unwrap_or_else(|| panic!("index.html has no section fig{n}"));
        let body = &html[start..start + html[start..].find("</section>").unwrap()];
        let image = body.contains(&format!("<figure><img src=\"fig{n}-"));
        let reason = body
            .split("<p class=\"skipped\"><b>Not drawn:</b> ")
            .nth(1)
            .map(|t| t.split("</p>").next().unwrap());
        let progress = stderr
            .lines()
            .find(|l| l.contains(&format!("figure {n}/{total}: ")))
            .unwrap_or_else(|| panic!("no progress line for figure {n}: {stderr}"));
        match (image, reason) {
            (true, None) => {
                assert!(!progress.contains(" skipped ("), "{progress}");
                drawn.push(n);
            }
            (false, Some(why)) => {
                assert!(why.len() > 10, "fig{n}: {body}");
                assert!(progress.contains(" skipped ("), "{progress}");
                not_drawn.push((n, why.to_string()));
            }
            _ => panic!("fig{n} has an image and a reason, or neither: {body}"),
        }
    }
    assert_eq!(drawn.len() + not_drawn.len(), total);
    assert_eq!(drawn.len(), pngs.len(), "{drawn:?} vs {pngs:?}");
    assert_eq!(md.matches("> **Not drawn:** ").count(), not_drawn.len());
    // One training-set size: no learning curve (figure 8), and no instruments (figures 9, 10).
    let why = |n: usize| {
        not_drawn
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, w)| w.as_str())
            .unwrap_or_else(|| panic!("figure {n} was drawn: {not_drawn:?}"))
    };
    assert!(
        why(8).contains("N does not vary: the learning curve needs ≥ 4 training-set sizes"),
        "{}",
        why(8)
    );
    for n in [9, 10] {
        assert_eq!(why(n), "no instruments: the sweep measured no instruments");
    }
    // The fit tables are in the index.
    assert!(html.contains("B_opt per cell") && html.contains("<table"));
    assert!(!html.contains("<script"));
    // `scalelab report` again, elsewhere.
    succeed(scalelab(dir.path()).args(["report", "rep", "--out", "again"]));
    assert!(dir.path().join("again/index.html").is_file());
    // --out naming a file is refused by name, the file left as it was.
    std::fs::write(dir.path().join("notes.csv"), "keep\n").unwrap();
    let err = fail_in_one_line(scalelab(dir.path()).args(["report", "rep", "--out", "notes.csv"]));
    assert!(
        err.contains("notes.csv") && err.contains("needs a directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.csv")).unwrap(),
        "keep\n"
    );
}

#[test]
fn a_sweep_without_completed_runs_gets_a_message_not_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("none.toml"),
        "name = \"none\"\n[data]\ntrain_size = 100\ntest_size = 50\n[model]\nhidden = [4]\n\
         [train]\nlr = 0.1\nbatch_size = 10\nepochs = 1\n",
    )
    .unwrap();
    succeed(scalelab(dir.path()).args(["run", "none.toml", "--enqueue-only"]));
    let err = fail_in_one_line(scalelab(dir.path()).args(["report", "none"]));
    assert!(
        err.contains("none") && err.contains("no completed runs") && err.contains("1 pending"),
        "{err}"
    );
    assert!(!dir.path().join("reports/none").exists());
}

/// Diverged runs are results: a sweep whose every run diverges trains, says there is nothing to
/// fit and exits 0; `report` then says why there is nothing, without sending the user back to
/// `scalelab run`.
#[test]
fn a_sweep_whose_runs_all_diverge_runs_to_the_end_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("blowup.toml"),
        "name = \"blowup\"\n[data]\ntrain_size = 100\ntest_size = 50\n[model]\nhidden = [4]\n\
         [train]\nlr = 1e30\nbatch_size = 10\nepochs = 2\n",
    )
    .unwrap();
    let out = succeed(scalelab(dir.path()).args(["run", "blowup.toml"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 diverged"), "{text}");
    assert!(
        text.contains("blowup: no completed runs, so no fits and no report"),
        "{text}"
    );
    assert!(!dir.path().join("reports/blowup").exists());
    let err = fail_in_one_line(scalelab(dir.path()).args(["report", "blowup"]));
    assert!(
        err.contains("no completed runs (1 diverged)")
            && err.contains("scalelab status blowup")
            && !err.contains("scalelab run")
            && !err.contains("  "),
        "{err}"
    );
}

/// A sweep whose runs all failed is an error, not a quiet success: here the one run asks for a
/// generated data set beyond any machine's memory, which fails it at once with the size.
#[test]
fn a_sweep_whose_runs_all_failed_exits_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("huge.toml"),
        "name = \"huge\"\n[data]\ntrain_size = 4000000000\ntest_size = 50\n[model]\n\
         hidden = [4]\n[train]\nlr = 0.1\nbatch_size = 10\nepochs = 1\n",
    )
    .unwrap();
    let out = scalelab(dir.path())
        .args(["run", "huge.toml", "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("1 failed"), "{stdout}");
    // The run's failure as it happened, then the command's error, one line each.
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("invalid train_size"), "{stderr}");
    assert!(
        lines[1].contains("no completed runs (1 failed)"),
        "{stderr}"
    );
    let status = succeed(scalelab(dir.path()).args(["status", "huge"]));
    let text = String::from_utf8_lossy(&status.stdout);
    // The table wraps long errors: compare the words.
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("GB, more than this process can have"),
        "{text}"
    );
    // `fit` says the same, rather than that the sweep needs training (it had said "train it
    // first", and another `run` trains nothing).
    let out = scalelab(dir.path()).args(["fit", "huge"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().lines().count() == 1
            && stderr.contains("no completed or diverged runs (1 failed): nothing to fit")
            && stderr.contains("see `scalelab status huge` for why its runs ended"),
        "{stderr}"
    );
}

/// Text renders with a font shipped in a crate: no font-kit / fontconfig / freetype anywhere in
/// the dependency tree (they need system libraries and fonts).
#[test]
fn no_system_font_libraries_in_the_dependency_tree() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    for bad in ["font-kit", "fontconfig", "freetype", "servo-fontconfig"] {
        assert!(
            !lock
                .lines()
                .any(|l| l.starts_with("name = ") && l.contains(bad)),
            "{bad} is in Cargo.lock"
        );
    }
    assert!(lock.contains("name = \"dejavu\""));
    assert!(lock.contains("name = \"ab_glyph\""));
}

#[test]
fn instruments_reach_the_database_the_fit_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inst.toml"),
        "name = \"inst\"\n[data]\ntrain_size = 600\ntest_size = 300\n[model]\nhidden = [16]\n\
         [train]\nlr = 0.02\nbatch_size = [16, 64]\nmomentum = 0.9\nepochs = 5\nseeds = 4\n\
         [instruments]\nnoise_scale_every = 1\ncurvature = \"init\"\nb_noise = true\n",
    )
    .unwrap();
    let out = succeed(scalelab(dir.path()).args(["run", "inst.toml", "--quiet"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("== Instruments =="), "{stdout}");
    let rep = dir.path().join("reports/inst");
    for fig in [
        "fig9-gradient-noise-scale.png",
        "fig10-curvature-at-init.png",
    ] {
        let (w, h, var, _) = inspect(&rep.join(fig));
        assert!(w >= 800 && h >= 600 && var > 50.0, "{fig}");
    }
    let sql = |q: &str| {
        let o = succeed(scalelab(dir.path()).args(["sql", q, "--format", "csv"]));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    // Measured at every epoch; B_simple positive where it is stored, and stored at most epochs
    // (withheld, NULL, when an epoch's |G|² average is not positive: 10% of the epochs here,
    // each reading from its own epoch's pairs); every run has its curvature.
    assert_eq!(
        sql("SELECT COUNT(*) FROM epoch_metrics WHERE grad_sq IS NULL"),
        "0"
    );
    assert_eq!(
        sql("SELECT COUNT(*) FROM epoch_metrics WHERE b_simple <= 0"),
        "0"
    );
    let missing: f64 = sql("SELECT AVG(b_simple IS NULL) FROM epoch_metrics")
        .parse()
        .unwrap();
    assert!(missing < 0.2, "{missing}");
    assert_eq!(
        sql("SELECT COUNT(*) FROM runs WHERE init_top_eigenvalue IS NULL"),
        "0"
    );
    assert_eq!(
        sql(
            "SELECT COUNT(*) FROM epoch_summary WHERE ABS(gap_loss - (test_loss - train_loss)) > 1e-12"
        ),
        "0"
    );
    let json = scalelab(dir.path())
        .args(["fit", "inst", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["instruments"]["status"], "fitted");
    assert_eq!(v["instruments"]["noise_scale"]["status"], "fitted");
    assert_eq!(v["instruments"]["curvature"]["status"], "fitted");
    assert_eq!(v["instruments"]["curvature"]["n"], 8);
    // B_noise at every measured epoch, positive where not withheld, and the fit's pooled figures
    // are the stored averages summed over the runs and divided once.
    assert_eq!(
        sql(
            "SELECT COUNT(*) FROM epoch_summary WHERE grad_h_grad IS NULL OR trace_h_sigma IS NULL"
        ),
        "0"
    );
    assert_eq!(
        sql("SELECT COUNT(*) FROM epoch_metrics WHERE b_noise <= 0"),
        "0"
    );
    assert_eq!(
        sql(
            "SELECT COUNT(*) FROM epoch_metrics WHERE (b_noise IS NULL) != \
             (grad_h_grad <= 0 OR trace_h_sigma < 0)"
        ),
        "0"
    );
    let b = &v["instruments"]["noise_scale"]["b_noise"];
    assert_eq!(b["runs"], 8, "{b}");
    assert_eq!(b["readings"], 48, "8 runs, epochs 0–5: {b}");
    // Over the runs that did not diverge (none here).
    let pooled = |num: &str, den: &str, rows: &str| -> f64 {
        let q = format!(
            "SELECT SUM({num}) / SUM({den}) FROM epoch_metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.state = 'completed' AND {rows}"
        );
        sql(&q).parse().unwrap()
    };
    assert_eq!(
        sql("SELECT COUNT(*) FROM runs WHERE state != 'completed'"),
        "0"
    );
    assert_eq!(
        (b["first_runs"].as_u64(), b["diverged_left_out"].as_u64()),
        (Some(8), Some(0))
    );
    let withheld: u64 = sql("SELECT COUNT(*) FROM epoch_metrics WHERE b_noise IS NULL")
        .parse()
        .unwrap();
    assert_eq!(b["withheld"].as_u64(), Some(withheld));
    let close = |a: &serde_json::Value, e: f64| {
        let a = a.as_f64().unwrap();
        assert!((a / e - 1.0).abs() < 1e-9, "{a} vs {e}");
    };
    close(
        &b["first"],
        pooled("trace_h_sigma", "grad_h_grad", "epoch = 0"),
    );
    close(
        &b["first_simple"],
        pooled("trace_sigma", "grad_sq", "epoch = 0"),
    );
    close(
        &b["last"],
        pooled("trace_h_sigma", "grad_h_grad", "epoch = 5"),
    );
    close(
        &b["last_simple"],
        pooled("trace_sigma", "grad_sq", "epoch = 5"),
    );
    assert!(stdout.contains("B_noise"), "{stdout}");
    let gap = succeed(
        scalelab(dir.path()).args(["fit", "inst", "--metric", "gap_loss", "--format", "json"]),
    );
    let g: serde_json::Value = serde_json::from_slice(&gap.stdout).unwrap();
    assert_eq!(g["options"]["metric"], "gap_loss");
    // The fit read the gap, not the flag's name: each run's value beside its curvature is its
    // final test loss less its final training loss, as stored.
    let points = g["instruments"]["curvature"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 8);
    for p in points {
        let id = p["run_id"].as_str().unwrap();
        let stored: f64 = sql(&format!(
            "SELECT final_test_loss - final_train_loss FROM runs WHERE id = '{id}'"
        ))
        .parse()
        .unwrap();
        let value = p["value"].as_f64().unwrap();
        assert!((value - stored).abs() < 1e-12, "{id}: {value} vs {stored}");
    }
}
