//! The fit tables of the report, as plain rows of formatted text: built once, written both as
//! HTML and as Markdown. Pure; every number comes from the [`FitReport`].

use std::collections::BTreeMap;

use crate::fit::{
    BoptSection, Censor, CollapseSection, EfficiencySection, FitReport, Interval,
    LearningCurveSection, MetricKind, Outcome, ScalingSection, SchedulesSection, SkippedItem,
    ValidationBound, Verdict,
};
use crate::plot::format;
use crate::plot::labels::metric_name;
use crate::plot::schedules::{gap_sentences, group_summary};

/// One table: a caption, a header row, body rows (every row as long as the header), and an
/// optional note under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub note: Option<String>,
}

impl Table {
    fn new(caption: impl Into<String>, header: &[&str]) -> Self {
        Table {
            caption: caption.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            note: None,
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "{}", self.caption);
        self.rows.push(cells);
    }

    fn noted(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }
}

fn dash() -> String {
    "–".into()
}

fn opt_interval(i: &Option<Interval>, f: impl Fn(f64) -> String) -> String {
    i.as_ref()
        .map(|i| format::interval(i, f))
        .unwrap_or_else(dash)
}

fn level_of(i: Option<&Interval>, fallback: f64) -> String {
    format::percent(i.map(|i| i.level).unwrap_or(fallback), 0)
}

/// "a (12), b (3)": the reasons of skipped items, counted, with the first names.
fn skipped_summary(items: &[SkippedItem]) -> Option<Table> {
    if items.is_empty() {
        return None;
    }
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in items {
        by_reason.entry(&s.reason).or_default().push(&s.name);
    }
    let mut t = Table::new("Left out", &["reason", "count", "e.g."]);
    for (reason, names) in by_reason {
        let eg: Vec<&str> = names.iter().take(3).copied().collect();
        let more = if names.len() > 3 { ", …" } else { "" };
        t.row(vec![
            reason.to_string(),
            names.len().to_string(),
            format!("{}{more}", eg.join(", ")),
        ]);
    }
    Some(t)
}

/// A regressor as a formula: "ln ε" for "ln_lr".
fn regressor_name(name: &str) -> String {
    match name {
        "intercept" => "intercept".into(),
        "ln_lr" => "ln ε".into(),
        "ln_train_size" => "ln N".into(),
        "ln_inv_one_minus_momentum" => "ln 1/(1 − m)".into(),
        other => other.into(),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Figure 1's table: B_opt per cell.
pub fn bopt_tables(fit: &FitReport) -> Vec<Table> {
    let Some(s) = fit.bopt.fitted() else {
        return Vec::new();
    };
    bopt_section(s, fit.options.metric, fit.options.confidence)
}

fn bopt_section(s: &BoptSection, metric: MetricKind, confidence: f64) -> Vec<Table> {
    let level = level_of(s.cells.iter().find_map(|c| c.interval).as_ref(), confidence);
    // "peak" reads as a maximum: a loss's optimum is its minimum.
    let peak = if metric.higher_is_better() {
        format!("peak {}", metric_name(metric))
    } else {
        format!("lowest {}", metric_name(metric))
    };
    let ci = format!("{level} CI (bootstrap)");
    let mut t = Table::new(
        "B_opt per cell",
        &[
            "cell",
            "ε",
            "N",
            "m",
            "best grid B",
            "B_opt",
            &ci,
            &peak,
            "g_opt",
            "runs (diverged)",
        ],
    );
    let mut cells: Vec<_> = s.cells.iter().collect();
    cells.sort_by(|a, b| {
        a.train_size
            .cmp(&b.train_size)
            .then(a.momentum.total_cmp(&b.momentum))
            .then(a.lr.total_cmp(&b.lr))
            .then(a.cell.cmp(&b.cell))
    });
    for c in cells {
        let b_opt = match c.censored {
            None => format::batch(c.b_opt),
            Some(Censor::Low) => format!("≤ {} (grid edge)", format::batch(c.b_opt)),
            Some(Censor::High) => format!("≥ {} (grid edge)", format::batch(c.b_opt)),
        };
        let ci = match (&c.interval, &c.interval_note) {
            (Some(i), _) => match c.censored {
                Some(side) => side.open_interval(i, format::batch),
                None => format::interval(i, format::batch),
            },
            (None, Some(note)) => note.clone(),
            (None, None) => dash(),
        };
        t.row(vec![
            c.cell.clone(),
            format::lr(c.lr),
            format::int(c.train_size),
            format::momentum(c.momentum),
            c.argmax_batch.to_string(),
            b_opt,
            ci,
            format::metric(c.peak_value, metric),
            format!(
                "{}{}",
                c.censored.map_or("", |e| e.g_bound()),
                format::sig(c.g_opt, 3)
            ),
            format!("{} ({})", c.n_runs, c.n_diverged),
        ]);
    }
    let mut out =
        vec![t.noted(Some(
        "g_opt = ε(N/B_opt − 1)/(1 − m). A peak at the grid's edge makes B_opt only a bound, \
         its interval open on that side and g_opt a bound the other way."
            .into(),
    ))];
    out.extend(skipped_summary(&s.skipped_cells));
    out
}

/// Figure 2's tables: the regression, its hypothesis tests and the one-constant form.
pub fn scaling_tables(fit: &FitReport) -> Vec<Table> {
    match fit.scaling.fitted() {
        Some(s) => scaling_section(s),
        None => Vec::new(),
    }
}

fn scaling_section(s: &ScalingSection) -> Vec<Table> {
    let mut out = Vec::new();
    match &s.log_linear {
        Outcome::Fitted(f) => {
            let level = level_of(f.coefficients.first().map(|c| &c.interval), 0.95);
            let mut t = Table::new(
                "Scaling regression ln B_opt = c + a·ln ε + b·ln N + γ·ln(1/(1 − m))",
                &[
                    "symbol",
                    "regressor",
                    "estimate",
                    "std. error",
                    &format!("{level} CI"),
                ],
            );
            for c in &f.coefficients {
                t.row(vec![
                    c.symbol.replace("gamma", "γ"),
                    regressor_name(&c.name),
                    format::fixed(c.estimate, 3),
                    format::sig(c.std_error, 2),
                    format::interval(&c.interval, |v| format::fixed(v, 3)),
                ]);
            }
            let fixed = if f.axes_fixed.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = f.axes_fixed.iter().map(|n| regressor_name(n)).collect();
                format!(" Fixed (absorbed in c): {}.", names.join(", "))
            };
            let r2 = f.r_squared.map(|r| format::sig(r, 3)).unwrap_or_else(dash);
            out.push(t.noted(Some(format!(
                "{} cells, {} residual dof, R² = {r2}, residual s.e. {} (ln B). {}.{fixed}",
                f.n,
                f.dof,
                format::sig(f.residual_std_error, 3),
                capitalised(&f.weighting)
            ))));
            let mut h = Table::new(
                "Hypothesis tests (joint Wald F)",
                &[
                    "hypothesis",
                    "predicted",
                    "F",
                    "df",
                    "p",
                    "joint test",
                    "slopes whose CI excludes it",
                ],
            );
            for t in &f.hypotheses {
                let name = hypothesis_name(&t.name);
                let pred: Vec<String> = t
                    .symbols
                    .iter()
                    .zip(&t.predicted)
                    .map(|(s, p)| format!("{} = {}", s.replace("gamma", "γ"), format::sig(*p, 2)))
                    .collect();
                h.row(vec![
                    name.to_string(),
                    pred.join(", "),
                    t.f_statistic
                        .map(|f| format::sig(f, 3))
                        .unwrap_or_else(|| "exact fit".into()),
                    format!("{}, {}", t.df1, t.df2),
                    format::p_value(t.p_value),
                    match t.verdict {
                        Verdict::NotRejected => "not rejected".into(),
                        Verdict::Rejected => format!("rejected at α = {}", format::sig(t.alpha, 2)),
                    },
                    if t.slopes_excluded.is_empty() {
                        "none".into()
                    } else {
                        t.slopes_excluded
                            .iter()
                            .map(|s| s.replace("gamma", "γ"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ]);
            }
            // A joint test that is not rejected while a slope's own interval excludes its value
            // is said in words: the joint p alone reads as support (sweeps/smith-le.toml).
            let notes: Vec<String> = f
                .hypotheses
                .iter()
                .filter_map(|t| {
                    let n = t.note.as_ref()?;
                    Some(format!("{}: {}.", hypothesis_name(&t.name), capitalised(n)))
                })
                .chain(f.note.clone())
                .collect();
            out.push(h.noted((!notes.is_empty()).then(|| notes.join(" "))));
        }
        Outcome::Skipped { reason } => {
            let mut t = Table::new("Scaling regression", &["status"]);
            t.row(vec![format!("not fitted: {reason}")]);
            out.push(t);
        }
    }
    let mut k = Table::new(
        "One-constant form B_opt = k·εN/(1 − m)",
        &["k", "CI", "cells", "note"],
    );
    match &s.constant {
        Outcome::Fitted(c) => k.row(vec![
            format::sig(c.k, 3),
            opt_interval(&c.interval, |v| format::sig(v, 3)),
            c.n_cells.to_string(),
            c.note.clone().unwrap_or_default(),
        ]),
        Outcome::Skipped { reason } => k.row(vec![
            dash(),
            dash(),
            "0".into(),
            format!("not fitted: {reason}"),
        ]),
    }
    out.push(k);
    if !s.cells_censored.is_empty() || !s.cells_non_constant_schedule.is_empty() {
        let mut c = Table::new("Cells left out of the regression", &["cell", "why"]);
        for name in &s.cells_censored {
            c.row(vec![
                name.clone(),
                "B_opt at the grid's edge (a bound)".into(),
            ]);
        }
        for name in &s.cells_non_constant_schedule {
            c.row(vec![
                name.clone(),
                "non-constant schedule (ε or B changes during training)".into(),
            ]);
        }
        out.push(c);
    }
    out
}

/// A hypothesis's name as the report says it.
fn hypothesis_name(name: &str) -> &str {
    match name {
        "smith_le" => "Smith & Le: B_opt ∝ εN/(1 − m)",
        "no_n" => "no N dependence: B_opt ∝ ε/(1 − m)",
        other => other,
    }
}

/// Figure 3's table.
pub fn collapse_tables(fit: &FitReport) -> Vec<Table> {
    match fit.collapse.fitted() {
        Some(c) => vec![collapse_section(c, fit.options.metric)],
        None => Vec::new(),
    }
}

fn collapse_section(c: &CollapseSection, metric: MetricKind) -> Table {
    let mut t = Table::new("Noise-scale collapse", &["quantity", "value"]);
    let opt = |v: Option<f64>| v.map(|v| format::sig(v, 3)).unwrap_or_else(dash);
    t.row(vec!["collapse score (R² on ln g)".into(), opt(c.score_g)]);
    t.row(vec!["same fit on ln B (R²)".into(), opt(c.score_b)]);
    let edge = match c.g_opt_censored {
        Some(side) => format!(" (at the {} end of the data)", side.name()),
        None => String::new(),
    };
    t.row(vec![
        "g_opt".into(),
        format!("{}{edge}", format::sig(c.g_opt, 3)),
    ]);
    t.row(vec![
        format!("the curve's {} at g_opt", metric_name(metric)),
        format::metric(c.value_at_g_opt, metric),
    ]);
    if let Some(m) = &c.best_mean {
        t.row(vec![
            format!("best seed mean of {} (observed)", metric_name(metric)),
            format!(
                "{} at g {} (B = {}, {})",
                format::metric(m.mean, metric),
                format::sig(m.g, 3),
                m.batch_size,
                m.cell
            ),
        ]);
    }
    t.row(vec!["cells".into(), c.n_cells.to_string()]);
    t.row(vec!["runs plotted".into(), c.points.len().to_string()]);
    t.row(vec![
        "diverged runs (drawn at the censor value, not fitted)".into(),
        c.excluded_diverged.to_string(),
    ]);
    t.row(vec![
        "runs left out (B ≥ N; invalid)".into(),
        format!("{}; {}", c.excluded_full_batch, c.excluded_invalid),
    ]);
    t.noted(c.note.clone())
}

/// Figure 5's tables: per group the schedules and the equivalence test.
pub fn schedules_tables(fit: &FitReport) -> Vec<Table> {
    match fit.schedules.fitted() {
        Some(s) => schedules_section(s, fit.options.metric),
        None => Vec::new(),
    }
}

fn schedules_section(s: &SchedulesSection, metric: MetricKind) -> Vec<Table> {
    let mut out = Vec::new();
    for g in &s.groups {
        let level = level_of(g.schedules.iter().find_map(|s| s.interval).as_ref(), 0.95);
        let mut t = Table::new(
            format!("Schedules in group {}", g.group),
            &[
                "schedule",
                "runs (diverged)",
                &format!("final {}", metric_name(metric)),
                &format!("{level} CI"),
                "mean updates",
            ],
        );
        for sc in &g.schedules {
            t.row(vec![
                sc.schedule.clone(),
                format!("{} ({})", sc.n_runs, sc.n_diverged),
                format::metric(sc.mean, metric),
                opt_interval(&sc.interval, |v| format::metric(v, metric)),
                format::count(sc.mean_steps),
            ]);
        }
        let note = std::iter::once(format!("{}.", group_summary(g)))
            .chain(gap_sentences(g))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(t.noted(Some(note)));
        if let Outcome::Fitted(tost) = &g.equivalence {
            let mut e = Table::new(
                format!("Equivalence test (TOST) in group {}", g.group),
                &[
                    "difference",
                    "test",
                    "std. error",
                    "dof",
                    &format!("{} CI", format::percent(tost.interval.level, 0)),
                    "margin",
                    "p (lower)",
                    "p (upper)",
                    "verdict",
                ],
            );
            e.row(vec![
                format!(
                    "{} − {} = {}",
                    tost.first,
                    tost.second,
                    format::sig(tost.difference, 3)
                ),
                tost.method_description(),
                format::sig(tost.std_error, 2),
                format::sig(tost.dof, 3),
                format::interval(&tost.interval, |v| format::sig(v, 3)),
                format!("±{}", format::sig(tost.margin, 3)),
                format::p_value(tost.p_lower),
                format::p_value(tost.p_upper),
                tost.verdict.name().replace('_', " "),
            ]);
            out.push(e);
        }
    }
    out.extend(skipped_summary(&s.skipped_groups));
    out
}

/// Figure 7's table: B_crit per (N, target).
pub fn efficiency_tables(fit: &FitReport) -> Vec<Table> {
    match fit.efficiency.fitted() {
        Some(e) => efficiency_section(e, fit.options.metric),
        None => Vec::new(),
    }
}

fn efficiency_section(e: &EfficiencySection, metric: MetricKind) -> Vec<Table> {
    let level = level_of(e.fits.iter().find_map(|f| f.b_crit_interval).as_ref(), 0.95);
    let mut t = Table::new(
        "Critical batch size per training-set size and target",
        &[
            "N",
            "target",
            "S_min (steps)",
            "B_crit",
            &format!("{level} CI"),
            "E_min (examples)",
            "batch sizes",
            "rms log residual",
            "note",
        ],
    );
    let pm = |v: f64, se: Option<f64>| match se {
        Some(se) => format!("{} ± {}", format::sig(v, 3), format::sig(se, 2)),
        None => format::sig(v, 3),
    };
    for f in &e.fits {
        let [s_min, b_crit, b_crit_interval, e_min] =
            f.cells(pm, pm, |i| opt_interval(i, |v| format::sig(v, 3)));
        t.row(vec![
            format::int(f.train_size),
            format::metric(f.target, metric),
            s_min,
            b_crit,
            b_crit_interval,
            e_min,
            f.points.len().to_string(),
            format::sig(f.rms_log_residual, 2),
            f.note.clone().unwrap_or_default(),
        ]);
    }
    let mut note = format!(
        "Targets {}. {}.",
        if e.targets_auto {
            "chosen from the data"
        } else {
            "as given"
        },
        capitalised(&e.smoothing)
    );
    for r in &e.auto_ranges {
        note.push_str(&format!(" {}.", r.describe(|v| format::metric(v, metric))));
    }
    let mut out = vec![t.noted(Some(note))];
    if !e.skipped.is_empty() {
        let mut s = Table::new("Targets not fitted", &["N", "target", "why"]);
        for k in &e.skipped {
            s.row(vec![
                format::int(k.train_size),
                k.target
                    .map(|v| format::metric(v, metric))
                    .unwrap_or_else(dash),
                k.reason.clone(),
            ]);
        }
        out.push(s);
    }
    out
}

/// Figure 8's tables: the power law and its points.
pub fn learning_curve_tables(fit: &FitReport) -> Vec<Table> {
    match fit.learning_curve.fitted() {
        Some(l) => learning_curve_section(l),
        None => Vec::new(),
    }
}

fn learning_curve_section(l: &LearningCurveSection) -> Vec<Table> {
    let level = format::percent(l.beta_interval.map_or(0.95, |i| i.level), 0);
    let mut p = Table::new(
        format!("Power law {} = α·N^β + γ", l.error_definition),
        &[
            "α",
            "β",
            &format!("β {level} CI"),
            "γ",
            "dof",
            "rms residual",
            "regions covered",
        ],
    );
    let pm = |v: f64, se: Option<f64>| match se {
        Some(se) => format!("{} ± {}", format::sig(v, 3), format::sig(se, 2)),
        None => format::sig(v, 3),
    };
    p.row(vec![
        format::sig(l.alpha, 3),
        pm(l.beta, l.beta_se),
        l.beta_interval
            .map(|i| i.display(format::slope))
            .unwrap_or_else(dash),
        pm(l.gamma, l.gamma_se),
        l.dof.to_string(),
        format::sig(l.rms_residual, 2),
        l.regions_covered
            .iter()
            .map(|r| r.name().replace('_', " "))
            .collect::<Vec<_>>()
            .join(", "),
    ]);
    let mut note = format!(
        "Hestness et al. (2017) report β between −0.35 and −0.07. Regions: {}.",
        l.region_rule
    );
    if let Some(n) = &l.note {
        note.push_str(&format!(" {n}."));
    }
    let mut pts = Table::new(
        "Points",
        &[
            "N", "error", "held-out", "optimism", "fitted", "region", "cell", "B", "seeds",
            "configs",
        ],
    );
    let sig4 = |v: f64| format::sig(v, 4);
    for q in &l.points {
        pts.row(vec![
            format::int(q.train_size),
            sig4(q.error),
            q.held_out_error.map_or_else(dash, sig4),
            q.optimism.map_or_else(dash, |v| format::sig(v, 2)),
            sig4(q.fitted),
            q.region.name().replace('_', " "),
            q.cell.clone(),
            q.batch_size.to_string(),
            q.n_seeds.to_string(),
            q.candidates.to_string(),
        ]);
    }
    let held = l.held_out_note(|v| format::sig(v, 2));
    vec![p.noted(Some(note)), pts.noted(Some(held))]
}

/// The instruments: B_simple per plotted run (`curvature == false`) or the curvature points
/// and their rank correlation.
pub fn instruments_tables(fit: &FitReport, curvature: bool) -> Vec<Table> {
    let Some(inst) = fit.instruments.fitted() else {
        return Vec::new();
    };
    if curvature {
        let Some(c) = inst.curvature.fitted() else {
            return Vec::new();
        };
        let mut t = Table::new(
            "Rank correlation of curvature at initialisation and the metric",
            &[
                "ρ (Spearman, within groups)",
                "interval",
                "p-value",
                "runs",
                "initial readings",
                "groups",
            ],
        );
        t.row(vec![
            format::sig(c.rho, 3),
            opt_interval(&c.interval, |v| format::sig(v, 3)),
            c.p_value.map(|p| format::sig(p, 3)).unwrap_or_else(dash),
            c.n.to_string(),
            // A fit stored before readings were counted has none recorded.
            if c.initialisations > 0 {
                c.initialisations.to_string()
            } else {
                dash()
            },
            c.groups.to_string(),
        ]);
        let mut pts = Table::new(
            "Runs",
            &[
                "run",
                "group",
                "seed",
                "top eigenvalue",
                "Hessian trace",
                "metric",
            ],
        );
        for p in &c.points {
            pts.row(vec![
                p.run_id.clone(),
                p.group.clone(),
                p.seed.to_string(),
                format::sig(p.top_eigenvalue, 4),
                p.trace.map(|t| format::sig(t, 4)).unwrap_or_else(dash),
                format::sig(p.value, 4),
            ]);
        }
        return vec![t.noted(Some(c.statement.clone())), pts];
    }
    let Some(n) = inst.noise_scale.fitted() else {
        return Vec::new();
    };
    let mut t = Table::new(
        "Gradient noise scale B_simple (plotted runs)",
        &["cell", "B", "run", "first", "last", "max", "readings"],
    );
    for s in &n.series {
        let vals: Vec<f64> = s.points.iter().map(|p| p.b_simple).collect();
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        t.row(vec![
            s.cell.clone(),
            s.batch_size.to_string(),
            s.run_id.clone(),
            vals.first()
                .map(|v| format::sig(*v, 3))
                .unwrap_or_else(dash),
            // A withheld last measurement is the run's last word: say so, not the reading before.
            match s.last_withheld() {
                Some(w) if w.beyond => format!("withheld at epoch {}: beyond B_big", w.epoch),
                Some(w) => format!("withheld at epoch {}: no measurable noise", w.epoch),
                None => vals.last().map(|v| format::sig(*v, 3)).unwrap_or_else(dash),
            },
            if max.is_finite() {
                format::sig(max, 3)
            } else {
                dash()
            },
            match s.withheld.len() {
                0 => vals.len().to_string(),
                k => format!("{} (+{k} withheld)", vals.len()),
            },
        ]);
    }
    let note = match (
        n.median_rank_correlation,
        n.describe_growing(|s| format::percent(s, 0)),
    ) {
        (Some(r), Some(growing)) => Some(format!(
            "{}. Median Spearman ρ(B_simple, training loss) {}; B_simple grows as the loss falls \
             {growing}.",
            capitalised(&n.describe_medians(|v| format::sig(v, 3))),
            format::sig(r, 2),
        )),
        _ => Some(format!(
            "{}.",
            capitalised(&n.describe_medians(|v| format::sig(v, 3)))
        )),
    };
    let note = match (note, &n.b_noise) {
        (Some(t), Some(b)) => Some(format!(
            "{t} {}.",
            capitalised(&b.describe(|v| format::sig(v, 3)))
        )),
        (note, _) => note,
    };
    vec![t.noted(note)]
}

/// The validation bound (no figure): the selected run and the high-probability bound.
pub fn bound_tables(b: &ValidationBound) -> Vec<Table> {
    let mut t = Table::new(
        "Validation bound on the selected model",
        &[
            "run",
            "cell",
            "B",
            "test accuracy",
            "test error",
            "models compared",
            "test examples",
            "δ",
            "slack",
            "bound on risk",
        ],
    );
    t.row(vec![
        b.run_id.clone(),
        b.cell.clone(),
        b.batch_size.to_string(),
        format!("{:.4}", b.selected_value),
        format!("{:.4}", b.error),
        format::int(b.n_compared as u64),
        format::int(b.test_size),
        format::sig(b.delta, 2),
        format!("{:.4}", b.slack),
        format!("{:.4}", b.bound),
    ]);
    vec![t.noted(Some(b.statement.clone()))]
}

/// The chosen runs of figure 6.
pub fn curve_runs_table(curves: &[(String, String)]) -> Vec<Table> {
    if curves.is_empty() {
        return Vec::new();
    }
    let mut t = Table::new("Runs shown", &["label", "run"]);
    for (id, label) in curves {
        t.row(vec![label.clone(), id.clone()]);
    }
    vec![t]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::testdata;

    /// Regression: an edge peak's interval was printed closed and its g_opt as an estimate.
    #[test]
    fn an_edge_peak_has_an_open_interval_and_a_bound_on_g_opt() {
        use crate::fit::{Censor, FitOptions, MIN_BOOTSTRAP, fit_all};
        let fit = fit_all(
            &crate::fit::testdata::edge_peak_runs(),
            &FitOptions {
                bootstrap: MIN_BOOTSTRAP,
                ..FitOptions::default()
            },
        );
        let cells = &fit.bopt.fitted().unwrap().cells;
        let b = bopt_tables(&fit);
        assert_eq!(b[0].header[7], "peak test accuracy");
        let loss = fit_all(
            &crate::fit::testdata::edge_peak_runs(),
            &FitOptions {
                metric: crate::fit::MetricKind::TestLoss,
                bootstrap: 0,
                ..FitOptions::default()
            },
        );
        assert_eq!(bopt_tables(&loss)[0].header[7], "lowest test loss");
        for (side, open, bound) in [(Censor::High, ", ∞)", "≤ "), (Censor::Low, "(0, ", "≥ ")]
        {
            let c = cells.iter().find(|c| c.censored == Some(side)).unwrap();
            let row = b[0].rows.iter().find(|r| r[0] == c.cell).unwrap();
            assert!(row[6].contains(open), "{row:?}");
            assert_eq!(
                row[8],
                format!("{bound}{}", format::sig(c.g_opt, 3)),
                "{row:?}"
            );
        }
    }

    /// Regression: a run whose last measurement was withheld (B_simple beyond what B_big
    /// resolves) showed the reading before it as "last", while the summary counts it as +∞.
    #[test]
    fn a_withheld_last_reading_is_named_not_replaced_by_the_one_before() {
        use crate::fit::{BSimplePoint, WithheldReading};
        use crate::fit::{FitOptions, fit_all};
        let mut run = crate::fit::testdata::flat_run("c", 0.02, 1000, 0.9, 32, 0, 0.8, 3);
        let i = &mut run.instruments;
        for (epoch, b) in [(0u32, 120.0), (1, 300.0)] {
            i.b_simple.push(BSimplePoint {
                epoch,
                step: 32 * u64::from(epoch),
                b_simple: b,
                train_loss: Some(2.0 - 0.5 * f64::from(epoch)),
            });
        }
        i.b_simple_withheld.push(WithheldReading {
            epoch: 2,
            beyond: true,
            train_loss: Some(0.9),
        });
        let fit = fit_all(&[run], &FitOptions::default());
        let t = instruments_tables(&fit, false);
        let row = &t[0].rows[0];
        assert_eq!(row[4], "withheld at epoch 2: beyond B_big", "{row:?}");
        assert_eq!(row[6], "2 (+1 withheld)", "{row:?}");
    }

    #[test]
    fn tables_hold_the_fit_numbers() {
        let (_, fit) = testdata::synthetic();
        let b = bopt_tables(&fit);
        let cells = &fit.bopt.fitted().unwrap().cells;
        assert_eq!(b[0].rows.len(), cells.len());
        let c = &cells[0];
        let row = b[0].rows.iter().find(|r| r[0] == c.cell).unwrap();
        assert!(row[5].contains(&format::sig(c.b_opt, 3)), "{row:?}");
        assert_eq!(row[1], format::lr(c.lr));
        // The schedule cells (one batch size each) are summarised as left out.
        assert!(b.iter().any(|t| t.caption == "Left out"));
        let s = scaling_tables(&fit);
        assert_eq!(s[0].rows.len(), 4); // c, a, b, γ
        assert!(s[1].rows.iter().any(|r| r[0].starts_with("Smith & Le")));
        let e = efficiency_tables(&fit);
        assert_eq!(e[0].rows.len(), fit.efficiency.fitted().unwrap().fits.len());
        let l = learning_curve_tables(&fit);
        assert_eq!(l[1].rows.len(), 4);
        // Three seeds at every N: each point has its held-out error and optimism.
        let lc = fit.learning_curve.fitted().unwrap();
        for (r, q) in l[1].rows.iter().zip(&lc.points) {
            assert_eq!(r[2], format::sig(q.held_out_error.unwrap(), 4), "{r:?}");
            assert_eq!(r[3], format::sig(q.optimism.unwrap(), 2), "{r:?}");
        }
        assert!(l[1].note.as_deref().unwrap().contains("Mean optimism"));
        // The joint test is "not rejected" or "rejected", never "consistent".
        for r in &s[1].rows {
            assert!(
                r[5] == "not rejected" || r[5].starts_with("rejected"),
                "{r:?}"
            );
        }
        let sc = schedules_tables(&fit);
        assert!(sc.iter().any(|t| t.caption.starts_with("Equivalence test")));
        let tost = sc
            .iter()
            .find(|t| t.caption.starts_with("Equivalence"))
            .unwrap();
        assert!(
            tost.rows[0][1].starts_with("paired over"),
            "{:?}",
            tost.rows[0]
        );
        for t in b.iter().chain(&s).chain(&e).chain(&l).chain(&sc) {
            for r in &t.rows {
                assert_eq!(r.len(), t.header.len(), "{}", t.caption);
                assert!(
                    r.iter().all(|c| !c.contains("NaN") && !c.contains("inf")),
                    "{r:?}"
                );
            }
        }
    }

    /// Regression: a joint test with p ≥ α read "consistent" although b's own interval excluded
    /// 1 (sweeps/smith-le.toml). The split is said in the table and its note.
    #[test]
    fn a_slope_outside_its_interval_is_said_beside_a_joint_test_not_rejected() {
        let (_, mut fit) = testdata::synthetic();
        let Outcome::Fitted(sc) = &mut fit.scaling else {
            panic!("scaling fitted")
        };
        let Outcome::Fitted(f) = &mut sc.log_linear else {
            panic!("log-linear fitted")
        };
        let h = &mut f.hypotheses[0];
        h.verdict = Verdict::NotRejected;
        h.slopes_excluded = vec!["b".into()];
        h.split_verdict = true;
        h.note = Some("the joint test is not rejected (p = 0.052), but b excludes 1".into());
        let s = scaling_tables(&fit);
        let row = s[1]
            .rows
            .iter()
            .find(|r| r[0].starts_with("Smith"))
            .unwrap();
        assert_eq!((row[5].as_str(), row[6].as_str()), ("not rejected", "b"));
        let note = s[1].note.as_deref().unwrap();
        assert!(
            note.contains("Smith & Le: B_opt ∝ εN/(1 − m): The joint test is not rejected"),
            "{note}"
        );
    }
}
