//! The report: every figure the data support, as PNGs, and an `index.html` / `index.md` that
//! show them with the fit tables (issue 5, `scalelab report`).
//!
//! [`write_report`] is the one entry point. It refuses a sweep without completed runs (an empty
//! report would look like a result), prepares each figure purely (`crate::plot::*::prepare_*`),
//! draws the ones the data support, names the others with the reason, and writes the index
//! last, so an index never points at a figure that failed to draw. The database glue that
//! builds [`ReportInput`] lives elsewhere; this module reads nothing but its input.

mod render;
mod tables;

use std::path::{Path, PathBuf};

pub use crate::plot::PlotError;
pub use crate::plot::curves::{CurvePoint, TrainingCurve};
pub use render::{Body, Document, Section};
pub use tables::Table;

use crate::fit::{FitReport, RunInput, select_value};
use crate::plot::chart::Figure;
use crate::plot::heatmap::Heatmap;
use crate::plot::labels::{metric_name, metric_title, optimum_word, select_words};
use crate::plot::{
    SkipReason, batch, collapse, curves, efficiency, format, heatmap, instruments, learning_curve,
    scaling, schedules,
};

/// Everything a report needs; built by the database glue, which lives elsewhere.
#[derive(Clone, Debug)]
pub struct ReportInput {
    pub sweep: String,
    pub description: String,
    /// From `crate::fit::fit_all` (its options say which metric and selection rule).
    pub fit: FitReport,
    /// Every run of the sweep (its `curve` holds the chosen metric per epoch).
    pub runs: Vec<RunInput>,
    /// The runs chosen by [`choose_curve_runs`], with their full series.
    pub curves: Vec<TrainingCurve>,
    /// Runs per state, e.g. `[("completed", 84), ("diverged", 12)]`.
    pub state_counts: Vec<(String, i64)>,
    /// E.g. "scalelab 0.1.0 (rev abc123)"; shown in the header and footer.
    pub generated_by: String,
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportSummary {
    /// The PNGs written, in figure order.
    pub figures: Vec<PathBuf>,
    /// (figure, why) for each figure the data did not support.
    pub skipped: Vec<(String, String)>,
    pub index_html: PathBuf,
    pub index_md: PathBuf,
}

/// The figures, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    MetricVsBatch,
    Scaling,
    Collapse,
    Heatmap,
    Schedules,
    Curves,
    Efficiency,
    LearningCurve,
    NoiseScale,
    Curvature,
}

const KINDS: [Kind; 10] = [
    Kind::MetricVsBatch,
    Kind::Scaling,
    Kind::Collapse,
    Kind::Heatmap,
    Kind::Schedules,
    Kind::Curves,
    Kind::Efficiency,
    Kind::LearningCurve,
    Kind::NoiseScale,
    Kind::Curvature,
];

impl Kind {
    /// File name stem (after "figN-").
    fn slug(self) -> &'static str {
        match self {
            Kind::MetricVsBatch => "metric-vs-batch",
            Kind::Scaling => "bopt-scaling",
            Kind::Collapse => "noise-scale-collapse",
            Kind::Heatmap => "heatmap",
            Kind::Schedules => "schedules",
            Kind::Curves => "training-curves",
            Kind::Efficiency => "efficiency",
            Kind::LearningCurve => "learning-curve",
            Kind::NoiseScale => "gradient-noise-scale",
            Kind::Curvature => "curvature-at-init",
        }
    }

    /// Short name for progress lines and the summary.
    fn name(self) -> &'static str {
        match self {
            Kind::MetricVsBatch => "metric against batch size",
            Kind::Scaling => "B_opt scaling",
            Kind::Collapse => "noise-scale collapse",
            Kind::Heatmap => "heatmap over (ε, B)",
            Kind::Schedules => "schedules",
            Kind::Curves => "training curves",
            Kind::Efficiency => "steps and examples to target",
            Kind::LearningCurve => "learning curve",
            Kind::NoiseScale => "gradient noise scale",
            Kind::Curvature => "curvature at initialisation",
        }
    }

    fn heading(self, fit: &FitReport) -> String {
        let m = metric_title(fit.options.metric);
        match self {
            Kind::MetricVsBatch => format!("{m} against batch size"),
            Kind::Scaling => "B_opt against ε, N and 1/(1 − m)".into(),
            Kind::Collapse => format!("{m} against the noise scale g"),
            Kind::Heatmap => format!("{m} over learning rate and batch size"),
            Kind::Schedules => "Decaying ε against increasing B".into(),
            Kind::Curves => "Training curves of selected runs".into(),
            Kind::Efficiency => "Steps and examples to a target; critical batch size".into(),
            Kind::LearningCurve => "Learning curve: error against training-set size".into(),
            Kind::NoiseScale => "Gradient noise scale B_simple over training".into(),
            Kind::Curvature => format!("{m} against curvature at initialisation"),
        }
    }

    fn how_to_read(self, fit: &FitReport) -> String {
        let m = metric_name(fit.options.metric);
        // "peak" for an accuracy, "minimum" for a loss.
        let best = optimum_word(fit.options.metric);
        match self {
            Kind::MetricVsBatch => format!(
                "Each line is one learning rate: the seed-mean {m} at each batch size, with B_opt \
                 (▲) at its {best}; Smith & Le (2017) predict the {best} to move to larger B in \
                 proportion to ε (and to N and 1/(1 − m))."
            ),
            Kind::Scaling => "Each point is one cell's B_opt on log–log axes; the fitted line's \
                 slope on each panel is the exponent of that axis, which Smith & Le predict to be \
                 1 (dashed grey), while the \"no N\" view predicts 0 for N."
                .into(),
            Kind::Collapse => format!(
                "If the noise scale g alone decides the result, every run falls on one curve \
                 whatever its ε, N, m and B; the collapse score (R² on g) near 1 and well above \
                 the score on B says it does; the dashed line marks g_opt, the fitted curve's \
                 {best} of {m}."
            ),
            Kind::Heatmap => format!(
                "Brighter is better {m}; the bright ridge should run diagonally (a larger ε \
                 wants a larger B), and crossed cells are (ε, B) pairs where every seed diverged."
            ),
            Kind::Schedules => "If increasing B is equivalent to decaying ε (Smith et al. 2017), \
                 the schedules' lines coincide per epoch (first panel) while increase-batch gets \
                 there in fewer parameter updates (second); the third panel, drawn when decay-lr \
                 has a partner, shows increase-batch and hybrid minus decay-lr per epoch, which \
                 should stay well inside the dashed equivalence margin."
                .into(),
            Kind::Curves => "Training and test loss per epoch for a few runs, chosen as the \
                 figure's footnote says: small batches make many noisy updates per epoch, large \
                 ones few precise updates; a line that stops early diverged."
                .into(),
            Kind::Efficiency => "Below B_crit (dashed) doubling B halves the steps needed \
                 (perfect scaling, slope −1 on the left); above it extra examples buy few steps. \
                 At B = B_crit training takes 2·S_min steps and 2·E_min examples \
                 (McCandlish et al. 2018)."
                .into(),
            Kind::LearningCurve => "A straight stretch on log–log axes is a power law whose \
                 slope β says how fast more data helps (Hestness et al. 2017 report −0.35 to \
                 −0.07); the curve flattens towards the floor γ."
                .into(),
            Kind::NoiseScale => "The measured noise scale B_simple = tr(Σ)/|G|² of a run per \
                 cell, epoch by epoch, with that cell's B_opt (dashed, same colour) and B_crit \
                 (grey): McCandlish et al. (2018) predict B_crit ≈ B_noise, of the order of \
                 B_simple, and B_simple growing as the loss falls. B_noise = tr(HΣ)/(GᵀHG), where \
                 measured (b_noise = true), is in the table below, pooled over runs."
                .into(),
            Kind::Curvature => format!(
                "Each point is a run; within a colour only the seed differs. A downward trend \
                 (ρ < 0 for an accuracy) would say that seeds starting in a flatter region reach \
                 a better {m}, as Kuzborskij & Lampert's stability argument suggests."
            ),
        }
    }
}

/// A prepared figure: the generic chart description or the heatmap.
enum Prepared {
    Chart(Figure),
    Heat(Heatmap),
}

impl Prepared {
    fn size(&self) -> (u32, u32) {
        match self {
            Prepared::Chart(f) => f.preferred_size(),
            Prepared::Heat(h) => h.preferred_size(),
        }
    }

    fn alt(&self) -> &str {
        match self {
            Prepared::Chart(f) => &f.title,
            Prepared::Heat(h) => &h.title,
        }
    }
}

fn prepare(kind: Kind, input: &ReportInput) -> Result<Prepared, SkipReason> {
    let fit = &input.fit;
    Ok(match kind {
        Kind::MetricVsBatch => Prepared::Chart(batch::prepare_metric_vs_batch(fit)?),
        Kind::Scaling => Prepared::Chart(scaling::prepare_scaling(fit)?),
        Kind::Collapse => Prepared::Chart(collapse::prepare_collapse(fit, &input.runs)?),
        Kind::Heatmap => Prepared::Heat(heatmap::prepare_heatmap(fit, &input.runs)?),
        Kind::Schedules => Prepared::Chart(schedules::prepare_schedules(fit)?),
        Kind::Curves => Prepared::Chart(curves::prepare_training_curves(
            &input.curves,
            &curve_choice_note(fit, &input.runs),
        )?),
        Kind::Efficiency => Prepared::Chart(efficiency::prepare_efficiency(fit)?),
        Kind::LearningCurve => Prepared::Chart(learning_curve::prepare_learning_curve(fit)?),
        Kind::NoiseScale => Prepared::Chart(instruments::prepare_noise_scale(fit, &input.runs)?),
        Kind::Curvature => Prepared::Chart(instruments::prepare_curvature(fit)?),
    })
}

/// Draws a prepared figure: the heatmap has its own drawing, every chart draws the same way.
fn render(p: &Prepared, path: &Path) -> Result<(), PlotError> {
    let size = p.size();
    match p {
        Prepared::Heat(h) => heatmap::render_heatmap(h, path, size),
        Prepared::Chart(f) => crate::plot::draw::draw_figure(f, path, size),
    }
}

fn tables_for(kind: Kind, input: &ReportInput) -> Vec<Table> {
    let fit = &input.fit;
    match kind {
        Kind::MetricVsBatch => tables::bopt_tables(fit),
        Kind::Scaling => tables::scaling_tables(fit),
        Kind::Collapse => tables::collapse_tables(fit),
        Kind::Heatmap => Vec::new(),
        Kind::Schedules => tables::schedules_tables(fit),
        Kind::Curves => tables::curve_runs_table(
            &input
                .curves
                .iter()
                .map(|c| (c.run_id.clone(), c.label.clone()))
                .collect::<Vec<_>>(),
        ),
        Kind::Efficiency => tables::efficiency_tables(fit),
        Kind::LearningCurve => tables::learning_curve_tables(fit),
        Kind::NoiseScale | Kind::Curvature => {
            tables::instruments_tables(fit, kind == Kind::Curvature)
        }
    }
}

/// Completed runs: from the state counts when the glue gave any, else the runs that did not
/// diverge.
fn completed_runs(input: &ReportInput) -> i64 {
    if input.state_counts.is_empty() {
        return input.runs.iter().filter(|r| !r.diverged).count() as i64;
    }
    input
        .state_counts
        .iter()
        .filter(|(s, _)| s.eq_ignore_ascii_case("completed"))
        .map(|(_, n)| (*n).max(0))
        .sum()
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> PlotError + '_ {
    move |source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Renders every figure the data support into `out_dir` (created if missing), then
/// `index.html` and `index.md`. `progress` gets one short line per figure
/// ("figure 3/8: noise-scale collapse"). A sweep without completed runs is an error, not an
/// empty report.
pub fn write_report(
    input: &ReportInput,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ReportSummary, PlotError> {
    if completed_runs(input) == 0 {
        let states = if input.state_counts.is_empty() {
            format!("{} run(s) recorded, none completed", input.runs.len())
        } else {
            input
                .state_counts
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(PlotError::NoCompletedRuns {
            sweep: input.sweep.clone(),
            states,
        });
    }
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(io_err(out_dir)(std::io::Error::other(
            "it is a file; the report needs a directory (--out DIR)",
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    // A directory that exists but cannot be written to: said here, by name, rather than by the
    // image encoder's nested error at the first figure.
    let probe = out_dir.join(format!(".scalelab-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io_err(out_dir))?;
    let _ = std::fs::remove_file(&probe);
    let total = KINDS.len();
    let mut figures = Vec::new();
    let mut skipped = Vec::new();
    let mut sections = Vec::new();
    for (i, &kind) in KINDS.iter().enumerate() {
        let n = i + 1;
        let file = format!("fig{n}-{}.png", kind.slug());
        let path = out_dir.join(&file);
        let body = match prepare(kind, input) {
            Ok(p) => {
                progress(&format!("figure {n}/{total}: {}", kind.name()));
                render(&p, &path)?;
                figures.push(path);
                let (width, height) = p.size();
                Body::Image {
                    file,
                    width,
                    height,
                    alt: p.alt().to_string(),
                }
            }
            Err(why) => {
                progress(&format!(
                    "figure {n}/{total}: {} skipped ({why})",
                    kind.name()
                ));
                // A figure from an earlier report of this sweep would now be stale.
                if path.is_file() {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                }
                skipped.push((kind.name().to_string(), why.clone()));
                Body::Skipped(why)
            }
        };
        sections.push(Section {
            id: format!("fig{n}"),
            heading: format!("{n}. {}", kind.heading(&input.fit)),
            how_to_read: kind.how_to_read(&input.fit),
            body,
            tables: tables_for(kind, input),
        });
    }
    sections.push(bound_section(&input.fit));
    let doc = Document {
        sweep: input.sweep.clone(),
        description: input.description.clone(),
        generated_by: input.generated_by.clone(),
        overview: overview_tables(input),
        warnings: input.fit.warnings.clone(),
        sections,
    };
    progress("writing index.html and index.md");
    let index_html = out_dir.join("index.html");
    std::fs::write(&index_html, render::render_html(&doc)).map_err(io_err(&index_html))?;
    let index_md = out_dir.join("index.md");
    std::fs::write(&index_md, render::render_markdown(&doc)).map_err(io_err(&index_md))?;
    Ok(ReportSummary {
        figures,
        skipped,
        index_html,
        index_md,
    })
}

fn bound_section(fit: &FitReport) -> Section {
    let (body, tables) = match &fit.validation_bound {
        crate::fit::Outcome::Fitted(b) => (
            Body::Text(format!(
                "Selected run {} ({} = {:.4}).",
                b.run_id,
                metric_name(fit.options.metric),
                b.selected_value
            )),
            tables::bound_tables(b),
        ),
        crate::fit::Outcome::Skipped { reason } => (Body::Skipped(reason.clone()), Vec::new()),
    };
    Section {
        id: "bound".into(),
        heading: "Validation bound on the selected model".into(),
        how_to_read: "With probability at least 1 − δ the selected run's true error is below the \
             bound; the slack pays for choosing it among every run compared on the same test \
             set (Hoeffding with a union bound; docs/science.md §5)."
            .into(),
        body,
        tables,
    }
}

fn overview_tables(input: &ReportInput) -> Vec<Table> {
    let mut states = Table {
        caption: "Runs by state".into(),
        header: vec!["state".into(), "runs".into()],
        rows: Vec::new(),
        note: None,
    };
    for (s, n) in &input.state_counts {
        states.rows.push(vec![s.clone(), n.to_string()]);
    }
    let total: i64 = input.state_counts.iter().map(|(_, n)| *n).sum();
    states.rows.push(vec!["total".into(), total.to_string()]);
    let fit = &input.fit;
    let o = &fit.options;
    let censor = fit
        .censor_value
        .map(|c| {
            format!(
                " (counted at {}, the worst value seen)",
                format::metric(c, o.metric)
            )
        })
        .unwrap_or_default();
    let rows = vec![
        vec![
            "metric".into(),
            format!(
                "{} ({}), {}",
                metric_name(o.metric),
                o.metric,
                select_words(o.select)
            ),
        ],
        vec!["runs fitted".into(), fit.n_runs.to_string()],
        vec!["diverged".into(), format!("{}{censor}", fit.n_diverged)],
        vec!["without a value".into(), fit.n_missing.to_string()],
        vec![
            "bootstrap".into(),
            format!("{} resamples, seed {}", o.bootstrap, o.bootstrap_seed),
        ],
        vec!["interval level".into(), format::percent(o.confidence, 0)],
        vec![
            "equivalence margin (schedules)".into(),
            format::sig(o.equivalence_margin, 3),
        ],
        vec!["δ (validation bound)".into(), format::sig(o.delta, 2)],
    ];
    let settings = Table {
        caption: "Fit settings".into(),
        header: vec!["setting".into(), "value".into()],
        rows,
        note: None,
    };
    vec![states, settings]
}

/// Which of N, m and the schedule take more than one value among the runs: a training curve's
/// label names each of them (with B and ε, always), so that two lines never read alike.
#[derive(Clone, Copy, Debug, Default)]
struct SweepAxes {
    train_size: bool,
    momentum: bool,
    schedule: bool,
}

impl SweepAxes {
    fn of(runs: &[RunInput]) -> Self {
        let Some(first) = runs.first() else {
            return SweepAxes::default();
        };
        SweepAxes {
            train_size: runs.iter().any(|r| r.train_size != first.train_size),
            momentum: runs.iter().any(|r| r.momentum != first.momentum),
            schedule: runs.iter().any(|r| r.schedule != first.schedule),
        }
    }

    /// "ε = 5e-2, N = 4,000, m = 0.9, schedule hybrid": ε always, the others where they vary
    /// (`all`: every one, for a run from another cell).
    fn settings(self, r: &RunInput, all: bool) -> String {
        let mut parts = vec![format!("ε = {}", format::lr(r.lr))];
        if self.train_size || all {
            parts.push(format!("N = {}", format::int(r.train_size)));
        }
        if self.momentum || all {
            parts.push(format!("m = {}", format::momentum(r.momentum)));
        }
        if self.schedule {
            parts.push(format!("schedule {}", r.schedule));
        }
        parts.join(", ")
    }
}

/// The chosen training-curve runs with their labels, and a sentence on how they were chosen
/// (for the figure's footnote).
struct CurveChoice {
    runs: Vec<(String, String)>,
    why: String,
}

/// Which runs deserve a training-curve panel, with a label for each: in the cell with the best
/// fitted optimum (the best run's cell when no B_opt was fitted), the smallest batch size, the
/// best grid batch size, the largest, and one between each; the lowest seed that did not
/// diverge at each; where the sweep varies the schedule, the same settings at the best B under
/// each other schedule; then one diverged run of the sweep if there is one. At most 6, in that
/// order. Each label names B and every axis that varies in the sweep.
pub fn choose_curve_runs(fit: &FitReport, runs: &[RunInput]) -> Vec<(String, String)> {
    choose_curves(fit, runs).runs
}

/// How [`choose_curve_runs`] chose its runs, in a sentence or two; empty when it chose none.
pub fn curve_choice_note(fit: &FitReport, runs: &[RunInput]) -> String {
    choose_curves(fit, runs).why
}

/// The run that did not diverge with the lowest seed (a diverged one when all did).
fn lowest_seed(mut at: Vec<&RunInput>) -> Option<&RunInput> {
    at.sort_by_key(|r| (r.diverged, r.seed, r.run_id.clone()));
    at.first().copied()
}

fn choose_curves(fit: &FitReport, runs: &[RunInput]) -> CurveChoice {
    const MAX_RUNS: usize = 6;
    let metric = fit.options.metric;
    let axes = SweepAxes::of(runs);
    let from_bopt = fit.bopt.fitted().and_then(|s| {
        s.cells
            .iter()
            .reduce(|a, b| {
                if metric.better(b.peak_value, a.peak_value) {
                    b
                } else {
                    a
                }
            })
            .map(|c| (c.cell.clone(), c.argmax_batch))
    });
    let anchored_on_bopt = from_bopt.is_some();
    let anchor: Option<(String, u64)> = from_bopt.or_else(|| {
        runs.iter()
            .filter(|r| !r.diverged)
            .filter_map(|r| Some((r, select_value(&r.curve, fit.options.select, metric)?)))
            .reduce(|a, b| if metric.better(b.1, a.1) { b } else { a })
            .map(|(r, _)| (r.cell.clone(), r.batch_size))
    });
    let mut out: Vec<(String, String)> = Vec::new();
    let mut why: Vec<String> = Vec::new();
    if let Some((cell, best_b)) = anchor {
        let in_cell: Vec<&RunInput> = runs.iter().filter(|r| r.cell == cell).collect();
        let mut bs: Vec<u64> = in_cell.iter().map(|r| r.batch_size).collect();
        bs.sort();
        bs.dedup();
        if let (Some(&lo), Some(&hi), Some(first)) = (bs.first(), bs.last(), in_cell.first()) {
            // Nearest grid size to the geometric midpoint of a and b.
            let between = |a: u64, b: u64| -> u64 {
                let mid = ((a as f64).ln() + (b as f64).ln()) / 2.0;
                bs.iter()
                    .copied()
                    .min_by(|x, y| {
                        ((*x as f64).ln() - mid)
                            .abs()
                            .total_cmp(&((*y as f64).ln() - mid).abs())
                    })
                    .unwrap_or(a)
            };
            // The ends and the best first (they win a tie), then shown by batch size.
            let mut picks: Vec<(u64, &str)> = Vec::new();
            for (b, role) in [
                (best_b, "best B on the grid"),
                (lo, "smallest B"),
                (hi, "largest B"),
                (between(lo, best_b), "between"),
                (between(best_b, hi), "between"),
            ] {
                if !picks.iter().any(|p| p.0 == b) {
                    picks.push((b, role));
                }
            }
            picks.sort_by_key(|p| p.0);
            let one_b = picks.len() == 1;
            let mut best_run: Option<&RunInput> = None;
            for &(b, role) in &picks {
                let at_b = in_cell
                    .iter()
                    .copied()
                    .filter(|r| r.batch_size == b)
                    .collect();
                if let Some(r) = lowest_seed(at_b) {
                    let role = if one_b { "the cell's one B" } else { role };
                    let mut label = format!("B = {b} ({role}), {}", axes.settings(r, false));
                    if r.diverged {
                        label.push_str(", diverged");
                    }
                    out.push((r.run_id.clone(), label));
                    if b == best_b {
                        best_run = Some(r);
                    }
                }
            }
            let whose = if anchored_on_bopt {
                format!(
                    "the cell whose fitted optimum is the best {}",
                    metric_name(metric)
                )
            } else {
                format!("the cell of the run with the best {}", metric_name(metric))
            };
            let at = if one_b {
                format!("at its one batch size B = {best_b}")
            } else {
                let (bs, roles): (Vec<String>, Vec<&str>) =
                    picks.iter().map(|(b, role)| (b.to_string(), *role)).unzip();
                format!("at B = {} ({})", bs.join(", "), roles.join(", "))
            };
            why.push(format!(
                "Runs shown: {whose} ({}) {at}, the lowest seed that did not diverge{}",
                axes.settings(first, true),
                if one_b { "" } else { " at each" }
            ));
            // The same settings under the sweep's other schedules (the best B's run's schedule
            // group holds the runs that differ from it only in schedule and seed).
            if axes.schedule
                && let Some(best) = best_run
            {
                let mut others: Vec<&str> = runs
                    .iter()
                    .filter(|r| {
                        r.schedule_group == best.schedule_group && r.schedule != best.schedule
                    })
                    .map(|r| r.schedule.as_str())
                    .collect();
                others.sort();
                others.dedup();
                let mut added = Vec::new();
                for sched in others {
                    if out.len() >= MAX_RUNS - 1 {
                        break;
                    }
                    let same = runs
                        .iter()
                        .filter(|r| r.schedule_group == best.schedule_group && r.schedule == sched)
                        .collect();
                    if let Some(r) = lowest_seed(same) {
                        let mut label =
                            format!("B = {}, {}", r.batch_size, axes.settings(r, false));
                        if r.diverged {
                            label.push_str(", diverged");
                        }
                        out.push((r.run_id.clone(), label));
                        added.push(sched);
                    }
                }
                if !added.is_empty() {
                    why.push(format!(
                        "; the same settings at B = {} under the other schedules ({})",
                        best.batch_size,
                        added.join(", ")
                    ));
                }
            }
        }
    }
    if out.len() < MAX_RUNS {
        let mut diverged: Vec<&RunInput> = runs.iter().filter(|r| r.diverged).collect();
        diverged.sort_by_key(|r| (r.seed, r.run_id.clone()));
        if let Some(r) = diverged
            .into_iter()
            .find(|r| !out.iter().any(|(id, _)| id == &r.run_id))
        {
            out.push((
                r.run_id.clone(),
                format!("diverged: B = {}, {}", r.batch_size, axes.settings(r, true)),
            ));
            why.push(format!(
                "{}one diverged run of the sweep (the lowest seed), wherever it lies, to show \
                 what divergence looks like",
                if why.is_empty() {
                    "Runs shown: "
                } else {
                    "; and "
                }
            ));
        }
    }
    out.truncate(MAX_RUNS);
    let mut why = why.concat();
    if !why.is_empty() {
        why.push('.');
    }
    CurveChoice { runs: out, why }
}

#[cfg(test)]
mod tests;
