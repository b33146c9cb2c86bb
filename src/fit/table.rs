//! Human tables of a [`FitReport`] (comfy-table), readable in 120 columns.
//!
//! Drawing only: every number is already in the report.

use std::fmt::Write;

use comfy_table::{ContentArrangement, Table, presets};

use super::{
    BoptSection, CollapseSection, EfficiencySection, FitReport, HypothesisTest, InstrumentsSection,
    Interval, LargestGap, LearningCurveSection, Outcome, ScalingSection, SchedulesSection,
    ValidationBound,
};

const WIDTH: u16 = 120;

/// A number with about four significant digits.
pub(crate) fn num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.3e}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

/// A difference of two values printed to [`num`]'s four decimals, signed and never in
/// scientific notation, so that a column of them lines up with the values they compare
/// (the learning curve's optimism beside its errors).
fn signed4(x: f64) -> String {
    if x == 0.0 {
        "0.0000".into()
    } else {
        format!("{x:+.4}")
    }
}

fn interval(i: &Option<Interval>) -> String {
    i.as_ref()
        .map_or("—".into(), |i| format!("[{}, {}]", num(i.lo), num(i.hi)))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(header.to_vec());
    t
}

/// Writes a section title, then either the body or the skip reason.
fn section<T>(out: &mut String, title: &str, o: &Outcome<T>, body: impl FnOnce(&mut String, &T)) {
    let _ = writeln!(out, "\n== {title} ==");
    match o {
        Outcome::Fitted(t) => body(out, t),
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "skipped: {reason}");
        }
    }
}

fn render_bopt(out: &mut String, s: &BoptSection) {
    let level = s
        .cells
        .iter()
        .find_map(|c| c.interval)
        .map_or(0.95, |i| i.level);
    let intervals = match s.bootstrap {
        0 => "no intervals: bootstrap off (0 resamples)".to_string(),
        n if n < super::MIN_BOOTSTRAP => format!(
            "no intervals: too few bootstrap resamples ({n} < {})",
            super::MIN_BOOTSTRAP
        ),
        n => format!(
            "{:.0}% percentile of a parametric bootstrap from the seeds' spread near the peak, \
             each seed's shared offset removed ({n} resamples, seed {})",
            100.0 * level,
            s.bootstrap_seed
        ),
    };
    let _ = writeln!(
        out,
        "seed mean against B; vertex of the quadratic in log2 B; {intervals}"
    );
    let mut t = table(&[
        "cell",
        "ε",
        "N",
        "m",
        "B grid",
        "argmax",
        "B_opt",
        "interval",
        "edge",
        "g_opt",
        "runs (div)",
    ]);
    for c in &s.cells {
        let grid = format!(
            "{}…{} ({})",
            c.points.first().map_or(0, |p| p.batch_size),
            c.points.last().map_or(0, |p| p.batch_size),
            c.points.len()
        );
        t.add_row(vec![
            c.cell.clone(),
            num(c.lr),
            c.train_size.to_string(),
            num(c.momentum),
            grid,
            c.argmax_batch.to_string(),
            num(c.b_opt),
            c.interval_note.as_ref().map_or_else(
                || match (c.censored, &c.interval) {
                    (Some(side), Some(i)) => side.open_interval(i, num),
                    _ => interval(&c.interval),
                },
                |note| format!("— ({})", super::bopt::note_label(note)),
            ),
            c.censored.map_or("", |e| e.name()).to_string(),
            format!("{}{}", c.censored.map_or("", |e| e.g_bound()), num(c.g_opt)),
            format!("{} ({})", c.n_runs, c.n_diverged),
        ]);
    }
    let _ = writeln!(out, "{t}");
    for k in &s.skipped_cells {
        let _ = writeln!(out, "skipped cell {}: {}", k.name, k.reason);
    }
}

fn render_scaling(out: &mut String, s: &ScalingSection) {
    let _ = writeln!(
        out,
        "ln B_opt = c + a·ln ε + b·ln N + γ·ln(1/(1−m)) over {} non-censored cell(s); \
         {} censored left out{}",
        s.cells_used.len(),
        s.cells_censored.len(),
        match s.cells_non_constant_schedule.len() {
            0 => String::new(),
            n => format!("; {n} with a non-constant schedule left out"),
        }
    );
    match &s.log_linear {
        Outcome::Fitted(f) => {
            let level = f.coefficients.first().map_or(0.95, |c| c.interval.level);
            let mut t = table(&[
                "coefficient",
                "estimate",
                "std. error",
                &format!("{:.0}% interval", 100.0 * level),
            ]);
            for c in &f.coefficients {
                t.add_row(vec![
                    format!("{} ({})", c.symbol, c.name),
                    num(c.estimate),
                    num(c.std_error),
                    interval(&Some(c.interval)),
                ]);
            }
            let _ = writeln!(out, "{t}");
            let _ = writeln!(
                out,
                "R² {}, n {}, dof {}, residual se {} (ln B); {}",
                f.r_squared.map_or("—".into(), num),
                f.n,
                f.dof,
                num(f.residual_std_error),
                f.weighting
            );
            if !f.axes_fixed.is_empty() {
                let _ = writeln!(
                    out,
                    "fixed axes (in the intercept): {}",
                    f.axes_fixed.join(", ")
                );
            }
            let mut h = table(&[
                "hypothesis",
                "predicted",
                "F",
                "p",
                "joint test",
                "slopes whose interval excludes it",
            ]);
            for t in &f.hypotheses {
                let pred: Vec<String> = t
                    .symbols
                    .iter()
                    .zip(&t.predicted)
                    .map(|(s, p)| format!("{s}={p}"))
                    .collect();
                h.add_row(vec![
                    t.name.clone(),
                    pred.join(", "),
                    t.f_statistic.map_or("—".into(), num),
                    num(t.p_value),
                    t.verdict.name().to_string(),
                    slopes_excluded(t),
                ]);
            }
            let _ = writeln!(out, "{h}");
            for t in &f.hypotheses {
                if let Some(n) = &t.note {
                    let _ = writeln!(out, "warning ({}): {n}", t.name);
                }
            }
            if let Some(n) = &f.note {
                let _ = writeln!(out, "note: {n}");
            }
        }
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "regression skipped: {reason}");
        }
    }
    match &s.constant {
        Outcome::Fitted(k) => {
            let _ = writeln!(
                out,
                "one-constant form B_opt = k·εN/(1−m): k = {} {} over {} cell(s){}",
                num(k.k),
                interval(&k.interval),
                k.n_cells,
                k.note.as_ref().map_or(String::new(), |n| format!(" ({n})"))
            );
        }
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "one-constant form skipped: {reason}");
        }
    }
}

/// The slopes of a hypothesis whose own interval excludes the predicted value, or "none".
fn slopes_excluded(t: &HypothesisTest) -> String {
    if t.slopes_excluded.is_empty() {
        "none".into()
    } else {
        t.slopes_excluded.join(", ")
    }
}

fn render_collapse(out: &mut String, c: &CollapseSection) {
    let score = |s: Option<f64>| s.map_or("—".into(), num);
    let _ = writeln!(
        out,
        "{} runs in {} cell(s) against g = ε(N/B − 1)/(1−m); polynomial of degree {} in ln g",
        c.points.len(),
        c.n_cells,
        c.smooth_g.degree
    );
    let _ = writeln!(
        out,
        "collapse score (variance of the (cell, B) means explained): by g {}, by B alone {}",
        score(c.score_g),
        score(c.score_b)
    );
    let _ = writeln!(
        out,
        "optimal g {} (the curve's metric there {}; best seed mean {}){}; excluded: {} with B ≥ N, \
         {} invalid; {} diverged drawn, not fitted",
        num(c.g_opt),
        num(c.value_at_g_opt),
        c.best_mean.as_ref().map_or("—".into(), |m| format!(
            "{} at g {}",
            num(m.mean),
            num(m.g)
        )),
        c.g_opt_censored.map_or(String::new(), |e| format!(
            " at the {} end of the data",
            e.name()
        )),
        c.excluded_full_batch,
        c.excluded_invalid,
        c.excluded_diverged
    );
    if let Some(n) = &c.note {
        let _ = writeln!(out, "note: {n}");
    }
}

fn render_schedules(out: &mut String, s: &SchedulesSection) {
    for g in &s.groups {
        let _ = writeln!(out, "group {}", g.group);
        let mut t = table(&["schedule", "runs (div)", "mean", "interval", "mean updates"]);
        for m in &g.schedules {
            t.add_row(vec![
                m.schedule.clone(),
                format!("{} ({})", m.n_runs, m.n_diverged),
                num(m.mean),
                interval(&m.interval),
                num(m.mean_steps),
            ]);
        }
        let _ = writeln!(out, "{t}");
        let gap_line = |out: &mut String, what: &str, gap: &LargestGap| {
            let _ = writeln!(
                out,
                "largest per-epoch gap {what}: {} at epoch {} ({} above {})",
                num(gap.gap),
                gap.epoch,
                gap.higher,
                gap.lower
            );
        };
        if let Some(gap) = &g.largest_gap {
            gap_line(out, "increase-batch vs decay-lr", gap);
        }
        if let Some(gap) = &g.hybrid_gap {
            gap_line(out, "hybrid vs decay-lr", gap);
        }
        // Over every mode only when it adds a pair (constant, or another mode) to the above.
        if let Some(gap) = &g.largest_gap_all_modes
            && Some(gap) != g.largest_gap.as_ref()
            && Some(gap) != g.hybrid_gap.as_ref()
        {
            gap_line(out, "over all modes (context, not the claim)", gap);
        }
        if let Some(w) = &g.large_batch_warning {
            let _ = writeln!(out, "warning: {w}");
        }
        match &g.equivalence {
            Outcome::Fitted(t) => {
                let _ = writeln!(
                    out,
                    "TOST {} − {} ({}): {} {:.0}% CI {} within ±{}: p = {} / {} → {}",
                    t.first,
                    t.second,
                    t.method_description(),
                    num(t.difference),
                    100.0 * t.interval.level,
                    interval(&Some(t.interval)),
                    num(t.margin),
                    num(t.p_lower),
                    num(t.p_upper),
                    t.verdict.name()
                );
            }
            Outcome::Skipped { reason } => {
                let _ = writeln!(out, "equivalence test skipped: {reason}");
            }
        }
        for r in &g.update_ratios {
            let _ = writeln!(
                out,
                "updates {}/{} = {}",
                r.numerator,
                r.denominator,
                num(r.ratio)
            );
        }
    }
    for k in &s.skipped_groups {
        let _ = writeln!(out, "skipped group {}: {}", k.name, k.reason);
    }
}

fn render_efficiency(out: &mut String, e: &EfficiencySection) {
    let _ = writeln!(
        out,
        "S(B) = S_min(1 + B_crit/B), fastest run per B ({} targets; {})",
        if e.targets_auto { "automatic" } else { "given" },
        e.smoothing
    );
    let mut t = table(&[
        "N",
        "target",
        "S_min ± se",
        "B_crit ± se",
        "B_crit interval",
        "E_min",
        "regimes by batch size",
    ]);
    for f in &e.fits {
        let pm = |v: f64, se: Option<f64>| format!("{} ± {}", num(v), se.map_or("—".into(), num));
        // Consecutive batch sizes with the same regime as one range: "8–256 perfect scaling".
        let mut regimes: Vec<String> = Vec::new();
        let mut i = 0;
        while i < f.points.len() {
            let mut j = i;
            while j + 1 < f.points.len() && f.points[j + 1].regime == f.points[i].regime {
                j += 1;
            }
            let (a, b) = (f.points[i].batch_size, f.points[j].batch_size);
            let range = if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            };
            regimes.push(format!("{range} {}", f.points[i].regime.name()));
            i = j + 1;
        }
        let [s_min, b_crit, b_crit_interval, e_min] = f.cells(pm, |v, _| num(v), interval);
        t.add_row(vec![
            f.train_size.to_string(),
            num(f.target),
            s_min,
            b_crit,
            b_crit_interval,
            e_min,
            regimes.join("; "),
        ]);
    }
    let _ = writeln!(out, "{t}");
    for r in &e.auto_ranges {
        let _ = writeln!(out, "targets: {}", r.describe(num));
    }
    for f in &e.fits {
        if let Some(n) = &f.note {
            let _ = writeln!(
                out,
                "note (N {}, target {}): {n}",
                f.train_size,
                num(f.target)
            );
        }
    }
    for s in &e.skipped {
        let target = s.target.map_or("auto".into(), num);
        let _ = writeln!(
            out,
            "skipped N {} target {}: {}",
            s.train_size, target, s.reason
        );
    }
}

fn render_learning_curve(out: &mut String, l: &LearningCurveSection) {
    let _ = writeln!(
        out,
        "error ({}) = α·N^β + γ: α {}, β {} {}, γ {}; dof {}, rms residual {}",
        l.error_definition,
        num(l.alpha),
        num(l.beta),
        l.beta_interval.map_or("—".into(), |i| i.display(num)),
        num(l.gamma),
        l.dof,
        num(l.rms_residual)
    );
    let mut t = table(&[
        "N",
        "error",
        "held-out",
        "optimism",
        "fitted",
        "best cell",
        "B",
        "seeds",
        "configs",
        "region",
    ]);
    let dash = || "—".to_string();
    for p in &l.points {
        t.add_row(vec![
            p.train_size.to_string(),
            num(p.error),
            p.held_out_error.map_or_else(dash, num),
            p.optimism.map_or_else(dash, signed4),
            num(p.fitted),
            p.cell.clone(),
            p.batch_size.to_string(),
            p.n_seeds.to_string(),
            p.candidates.to_string(),
            p.region.name().to_string(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let _ = writeln!(out, "{}", l.held_out_note(num));
    let _ = writeln!(out, "regions: {}", l.region_rule);
    if let Some(n) = &l.note {
        let _ = writeln!(out, "note: {n}");
    }
}

fn render_bound(out: &mut String, b: &ValidationBound) {
    let _ = writeln!(out, "{}", b.statement);
}

/// The report as human tables.
fn render_instruments(out: &mut String, s: &InstrumentsSection) {
    match &s.noise_scale {
        Outcome::Fitted(n) => {
            let _ = writeln!(
                out,
                "gradient noise scale B_simple (McCandlish et al. 2018): {}",
                n.describe_medians(num)
            );
            if let Some(b) = &n.b_noise {
                let _ = writeln!(
                    out,
                    "{}",
                    wrap_prose(&format!("gradient noise scale {}", b.describe(num)))
                );
            }
            if let (Some(rho), Some(growing)) = (
                n.median_rank_correlation,
                n.describe_growing(|s| format!("{:.0}%", 100.0 * s)),
            ) {
                let _ = writeln!(
                    out,
                    "median Spearman ρ(B_simple, training loss) over epochs {}: B_simple grows as \
                     the loss falls {growing}",
                    num(rho),
                );
            }
        }
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "noise scale: skipped: {reason}");
        }
    }
    match &s.curvature {
        Outcome::Fitted(c) => {
            let _ = writeln!(out, "{}", wrap_prose(&c.statement));
            if let Some(p) = c.p_value {
                let _ = writeln!(out, "p-value of ρ = 0: {}", num(p));
            }
        }
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "curvature: skipped: {reason}");
        }
    }
}

pub fn render_tables(report: &FitReport) -> String {
    let mut out = String::new();
    let o = &report.options;
    let _ = writeln!(
        out,
        "scalelab fit: metric {}, selection {}; {} runs ({} diverged, {} without a value)",
        o.metric, o.select, report.n_runs, report.n_diverged, report.n_missing
    );
    if let Some(c) = report.censor_value {
        let _ = writeln!(
            out,
            "diverged runs are censored at the worst value seen, {}",
            num(c)
        );
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    section(&mut out, "B_opt per cell", &report.bopt, render_bopt);
    section(
        &mut out,
        "Scaling regression",
        &report.scaling,
        render_scaling,
    );
    section(
        &mut out,
        "Noise-scale collapse",
        &report.collapse,
        render_collapse,
    );
    section(&mut out, "Schedules", &report.schedules, render_schedules);
    section(
        &mut out,
        "Efficiency (critical batch size)",
        &report.efficiency,
        render_efficiency,
    );
    section(
        &mut out,
        "Instruments",
        &report.instruments,
        render_instruments,
    );
    section(
        &mut out,
        "Learning curve",
        &report.learning_curve,
        render_learning_curve,
    );
    section(
        &mut out,
        "Validation bound",
        &report.validation_bound,
        render_bound,
    );
    wrap_prose(&out)
}

/// Word-wraps lines longer than `WIDTH` (prose; comfy-table already fits the tables).
fn wrap_prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut len = 0;
        for (i, word) in line.split(' ').enumerate() {
            let w = word.chars().count();
            if i > 0 && len + 1 + w > WIDTH as usize {
                out.push_str("\n  ");
                len = 2;
            } else if i > 0 {
                out.push(' ');
                len += 1;
            }
            out.push_str(word);
            len += w;
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::planted_bopt_runs;
    use crate::fit::{Censor, FitOptions, fit_all};

    #[test]
    fn tables_fit_in_120_columns_and_name_every_section() {
        let runs = planted_bopt_runs(
            &[0.05, 0.1],
            &[4000, 8000],
            &[0.0, 0.75],
            0.1,
            1.0,
            2,
            0.005,
            1,
        );
        let rep = fit_all(
            &runs,
            &FitOptions {
                bootstrap: crate::fit::MIN_BOOTSTRAP,
                ..FitOptions::default()
            },
        );
        let s = render_tables(&rep);
        for title in [
            "B_opt per cell",
            "Scaling regression",
            "Schedules",
            "Validation bound",
        ] {
            assert!(s.contains(title), "{title} missing");
        }
        assert!(s.contains("smith_le"));
        let widest = s.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 120, "{widest} columns:\n{s}");
        let empty = render_tables(&fit_all(&[], &FitOptions::default()));
        assert!(empty.contains("skipped: no runs to fit"));
    }

    /// Regression: a peak on the grid's edge printed a closed interval ([168, 512] under
    /// "≥ 512") and a plain g_opt, as if both were estimates.
    #[test]
    fn an_edge_peak_prints_an_open_interval_and_a_bound_on_g_opt() {
        let rep = fit_all(
            &crate::fit::testdata::edge_peak_runs(),
            &FitOptions {
                bootstrap: crate::fit::MIN_BOOTSTRAP,
                ..FitOptions::default()
            },
        );
        let cells = &rep.bopt.fitted().unwrap().cells;
        let high = cells
            .iter()
            .find(|c| c.censored == Some(Censor::High))
            .unwrap();
        let low = cells
            .iter()
            .find(|c| c.censored == Some(Censor::Low))
            .unwrap();
        let s = render_tables(&rep);
        let (hi_i, lo_i) = (high.interval.unwrap(), low.interval.unwrap());
        for expected in [
            format!("[{}, ∞)", num(hi_i.lo)),
            format!("≤ {}", num(high.g_opt)),
            format!("(0, {}]", num(lo_i.hi)),
            format!("≥ {}", num(low.g_opt)),
        ] {
            assert!(s.contains(&expected), "{expected} missing:\n{s}");
        }
    }

    /// Regression: every cell without an interval read "— (1 seed)", with the bootstrap off
    /// and two seeds too. The column and the heading say the true reason.
    #[test]
    fn differences_print_signed_to_four_decimals() {
        // smith-le's optimism column read "0.0016", "4.667e-4" and "0" under num().
        assert_eq!(signed4(0.0016), "+0.0016");
        assert_eq!(signed4(4.667e-4), "+0.0005");
        assert_eq!(signed4(0.0), "0.0000");
        assert_eq!(signed4(-0.0021), "-0.0021");
        assert_eq!(num(4.667e-4), "4.667e-4");
    }

    #[test]
    fn a_missing_interval_says_why() {
        let bopt_table = |seeds: u64, bootstrap: usize| {
            let runs = planted_bopt_runs(&[0.1], &[8000], &[0.0], 0.1, 1.0, seeds, 0.005, 1);
            let rep = fit_all(
                &runs,
                &FitOptions {
                    bootstrap,
                    ..FitOptions::default()
                },
            );
            let s = render_tables(&rep);
            let end = s.find("== Scaling").unwrap_or(s.len());
            s[..end].to_string()
        };
        let off = bopt_table(2, 0);
        assert!(
            off.contains("— (bootstrap off)")
                && off.contains("no intervals: bootstrap off (0 resamples)")
                && !off.contains("1 seed"),
            "{off}"
        );
        let few = bopt_table(2, 1);
        assert!(
            few.contains("— (too few")
                && few.contains("no intervals: too few bootstrap resamples (1 < 100)"),
            "{few}"
        );
        let one = bopt_table(1, 1000);
        assert!(one.contains("— (1 seed)"), "{one}");
        let both = bopt_table(2, 1000);
        assert!(
            both.contains("95% percentile") && !both.contains("— ("),
            "{both}"
        );
    }
}
