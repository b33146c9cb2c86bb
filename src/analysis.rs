//! The glue between the database and the pure fits: load a sweep's runs as [`RunInput`]s,
//! fit them, store the result in `fits`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::config::RunConfig;
use crate::db::Store;
use crate::error::{Error, Result};
use crate::fit::{
    BSimplePoint, CurvedReading, EpochPoint, FitOptions, FitReport, MetricKind, RunInput,
    RunInstruments, WithheldReading,
};
use crate::provenance;
use crate::query::Param;
use crate::report::{CurvePoint, ReportInput, ReportSummary, TrainingCurve};

/// Flattens a JSON value into `path → value` pairs (`data.train_size → 1000`).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Short, readable names of the config fields that vary across a sweep.
fn short(key: &str) -> &str {
    match key {
        "data.train_size" => "N",
        "model.hidden" => "hidden",
        "data.dataset" => "dataset",
        "schedule" | "schedule.kind" => "schedule",
        "noise_scale" => "g",
        other => other.rsplit('.').next().unwrap_or(other),
    }
}

/// Grouping keys of each run: `cell` (all that varies but batch size and seed) and
/// `schedule_group` (all that varies but the schedule and the seed). Labels name only the
/// fields that vary across `configs`, so they stay short ("lr=0.0117", "N=1000 lr=0.01 m=0.9").
pub fn group_labels(configs: &[RunConfig]) -> Vec<(String, String)> {
    let flat: Vec<BTreeMap<String, String>> = configs
        .iter()
        .map(|c| {
            let mut m = BTreeMap::new();
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
                data.remove("data_dir");
            }
            flatten("", &v, &mut m);
            m
        })
        .collect();
    let keys: BTreeSet<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    let varying: Vec<&String> = keys
        .into_iter()
        .filter(|k| {
            let first = flat.first().and_then(|m| m.get(*k));
            flat.iter().any(|m| m.get(*k) != first)
        })
        .collect();
    let is_lr_derived = configs.iter().any(|c| c.noise_scale.is_some());
    let make = |digits: Option<usize>| -> Vec<(String, String)> {
        let show = |v: &str| -> String {
            let v = v.trim_matches('"');
            match (digits, v.parse::<f64>()) {
                (Some(d), Ok(x)) if v.contains('.') || v.contains('e') => format_sig(x, d),
                _ => v.to_string(),
            }
        };
        flat.iter()
            .map(|m| {
                let label = |skip: &dyn Fn(&str) -> bool| -> String {
                    let parts: Vec<String> = varying
                        .iter()
                        .filter(|k| !skip(k))
                        .map(|k| {
                            format!("{}={}", short(k), m.get(*k).map_or("-".into(), |s| show(s)))
                        })
                        .collect();
                    if parts.is_empty() {
                        "all".to_string()
                    } else {
                        parts.join(" ")
                    }
                };
                // With a noise-scale axis, lr follows B inside a cell: not a cell coordinate.
                let cell = label(&|k: &str| {
                    k == "batch_size" || k == "seed" || (is_lr_derived && k == "lr")
                });
                let group = label(&|k: &str| k == "seed" || k.starts_with("schedule"));
                (cell, group)
            })
            .collect()
    };
    let full = make(None);
    let short_labels = make(Some(4));
    // Short labels only if they keep distinct cells (and groups) distinct.
    let injective = |pick: fn(&(String, String)) -> &String| {
        let mut seen: HashMap<&String, &String> = HashMap::new();
        full.iter()
            .zip(&short_labels)
            .all(|(f, s)| *seen.entry(pick(s)).or_insert(pick(f)) == pick(f))
    };
    if injective(|p| &p.0) && injective(|p| &p.1) {
        short_labels
    } else {
        full
    }
}

/// `x` with `digits` significant digits, without trailing zeros (0.0117, 1000, 3.2e-5).
pub fn format_sig(x: f64, digits: usize) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{:.*e}", digits.saturating_sub(1), x);
    }
    let decimals = (digits as i32 - 1 - mag).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

struct RunRow {
    id: String,
    config: String,
    state: String,
    steps: Option<i64>,
    init_top_eigenvalue: Option<f64>,
    init_hessian_trace: Option<f64>,
}

struct EpochRow {
    run_id: String,
    epoch: i64,
    step: i64,
    samples: i64,
    value: Option<f64>,
    b_simple: Option<f64>,
    train_loss: Option<f64>,
    grad_sq: Option<f64>,
    trace_sigma: Option<f64>,
    grad_h_grad: Option<f64>,
    trace_h_sigma: Option<f64>,
}

/// The completed and diverged runs of a sweep, with the chosen metric per epoch.
pub async fn load_fit_inputs(
    store: &Store,
    sweep: &str,
    metric: MetricKind,
) -> Result<Vec<RunInput>> {
    // Read in place (`Store::scan`): a sweep of 48,000 runs has a million epoch rows.
    let e = |e| store.sql_err(e);
    let params = [Param::Text(sweep.to_string())];
    let (_, runs) = store
        .scan(
            "SELECT r.id, r.config, r.state, r.steps, r.init_top_eigenvalue, \
             r.init_hessian_trace FROM runs r \
             JOIN sweep_runs s ON s.run_id = r.id \
             WHERE s.sweep = ? AND r.state IN ('completed', 'diverged') ORDER BY s.position",
            &params,
            |row| {
                Ok(RunRow {
                    id: row.get(0).map_err(e)?,
                    config: row.get(1).map_err(e)?,
                    state: row.get(2).map_err(e)?,
                    steps: row.get(3).map_err(e)?,
                    init_top_eigenvalue: row.get(4).map_err(e)?,
                    init_hessian_trace: row.get(5).map_err(e)?,
                })
            },
        )
        .await?;
    // The metric's column name comes from a closed enum, never from user text.
    let column = match metric {
        MetricKind::TestAcc => "m.test_acc",
        MetricKind::TestLoss => "m.test_loss",
        MetricKind::TrainLoss => "m.train_loss",
        MetricKind::TrainAcc => "m.train_acc",
        MetricKind::GapLoss => "m.test_loss - m.train_loss",
        MetricKind::GapAcc => "m.train_acc - m.test_acc",
    };
    // A database written before B_noise's columns (migration 6) and opened read-only, which
    // migrates nothing, has none: read them as NULL there.
    let (_, names) = store
        .scan(
            "SELECT name FROM pragma_table_info('epoch_metrics') \
             WHERE name IN ('grad_h_grad', 'trace_h_sigma')",
            &[],
            |row| row.get::<_, String>(0).map_err(e),
        )
        .await?;
    let curved = if names.len() == 2 {
        "m.grad_h_grad, m.trace_h_sigma"
    } else {
        "NULL, NULL"
    };
    let sql = format!(
        "SELECT m.run_id, m.epoch, m.step, m.samples, {column} AS value, m.b_simple, \
         m.train_loss, m.grad_sq, m.trace_sigma, {curved} \
         FROM epoch_metrics m \
         JOIN sweep_runs s ON s.run_id = m.run_id \
         JOIN runs r ON r.id = m.run_id \
         WHERE s.sweep = ? AND r.state IN ('completed', 'diverged') ORDER BY m.run_id, m.epoch"
    );
    let (_, epochs) = store
        .scan(&sql, &params, |row| {
            Ok(EpochRow {
                run_id: row.get(0).map_err(e)?,
                epoch: row.get(1).map_err(e)?,
                step: row.get(2).map_err(e)?,
                samples: row.get(3).map_err(e)?,
                value: row.get(4).map_err(e)?,
                b_simple: row.get(5).map_err(e)?,
                train_loss: row.get(6).map_err(e)?,
                grad_sq: row.get(7).map_err(e)?,
                trace_sigma: row.get(8).map_err(e)?,
                grad_h_grad: row.get(9).map_err(e)?,
                trace_h_sigma: row.get(10).map_err(e)?,
            })
        })
        .await?;
    let mut curves: HashMap<String, Vec<EpochPoint>> = HashMap::new();
    let mut noise: HashMap<String, RunInstruments> = HashMap::new();
    for e in epochs {
        if let (Some(gq), Some(ts), Some(ghg), Some(ths)) =
            (e.grad_sq, e.trace_sigma, e.grad_h_grad, e.trace_h_sigma)
        {
            noise
                .entry(e.run_id.clone())
                .or_default()
                .curved
                .push(CurvedReading {
                    epoch: e.epoch as u32,
                    grad_h_grad: ghg,
                    trace_h_sigma: ths,
                    grad_sq: gq,
                    trace_sigma: ts,
                });
        }
        if let Some(b) = e.b_simple.filter(|b| b.is_finite()) {
            noise
                .entry(e.run_id.clone())
                .or_default()
                .b_simple
                .push(BSimplePoint {
                    epoch: e.epoch as u32,
                    step: e.step as u64,
                    b_simple: b,
                    train_loss: e.train_loss,
                });
        } else if let Some(g) = e.grad_sq {
            // Measured, B_simple withheld: |G|² ≤ 0, or else tr(Σ) < 0.
            noise
                .entry(e.run_id.clone())
                .or_default()
                .b_simple_withheld
                .push(WithheldReading {
                    epoch: e.epoch as u32,
                    beyond: g <= 0.0 || g.is_nan(),
                    train_loss: e.train_loss,
                });
        }
        curves.entry(e.run_id).or_default().push(EpochPoint {
            epoch: e.epoch as u32,
            step: e.step as u64,
            samples: e.samples as u64,
            value: e.value,
        });
    }
    let configs: Vec<RunConfig> = runs
        .iter()
        .map(|r| {
            serde_json::from_str(&r.config)
                .map_err(|e| Error::Db(format!("run {}: stored config is not valid: {e}", r.id)))
        })
        .collect::<Result<_>>()?;
    let labels = group_labels(&configs);
    Ok(runs
        .into_iter()
        .zip(configs)
        .zip(labels)
        .map(|((r, c), (cell, group))| RunInput {
            curve: curves.remove(&r.id).unwrap_or_default(),
            instruments: RunInstruments {
                init_top_eigenvalue: r.init_top_eigenvalue,
                init_trace: r.init_hessian_trace,
                ..noise.remove(&r.id).unwrap_or_default()
            },
            run_id: r.id,
            cell,
            schedule_group: group,
            lr: c.lr,
            batch_size: c.batch_size,
            max_batch_size: Some(c.largest_batch()),
            momentum: c.momentum,
            noise_scale: c.noise_scale,
            train_size: c.data.train_size,
            test_size: c.data.test_size,
            classes: c.data.num_classes(),
            seed: c.seed,
            schedule: c.schedule.mode().to_string(),
            diverged: r.state == "diverged",
            steps: r.steps.unwrap_or(0).max(0) as u64,
        })
        .collect())
}

/// A sweep's runs per state (those with any), the same as text ("2 pending, 1 failed") and what
/// to do next: "train it with `scalelab run`, or see `scalelab status S`" while some wait, "see
/// `scalelab status S` for why its runs ended" once none does.
async fn states_and_advice(
    store: &Store,
    sweep: &str,
) -> Result<(Vec<(String, i64)>, String, String)> {
    let counts: Vec<(String, i64)> = store
        .state_counts(Some(sweep))
        .await?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    let of = |state: &str| {
        counts
            .iter()
            .filter(|(s, _)| s == state)
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let advice = if of("pending") + of("running") > 0 {
        format!("train it with `scalelab run`, or see `scalelab status {sweep}`")
    } else {
        format!("see `scalelab status {sweep}` for why its runs ended")
    };
    let states = if states.is_empty() {
        "no runs".to_string()
    } else {
        states.join(", ")
    };
    Ok((counts, states, advice))
}

/// Fits a sweep and stores the report in `fits`; returns it, and whether it was stored: not
/// where the database is read-only to this process (SQLite refuses the write: a store opened
/// read-only, or a file it may not write), which is no reason to withhold the fit.
pub async fn fit_sweep(store: &Store, sweep: &str, opts: &FitOptions) -> Result<(FitReport, bool)> {
    let runs = load_fit_inputs(store, sweep, opts.metric).await?;
    if runs.is_empty() {
        let (_, states, advice) = states_and_advice(store, sweep).await?;
        return Err(Error::Query(format!(
            "sweep {sweep} has no completed or diverged runs ({states}): nothing to fit; {advice}"
        )));
    }
    let report = crate::fit::fit_all(&runs, opts);
    let json = serde_json::to_string(&report)
        .map_err(|e| Error::Db(format!("cannot serialise the fit report: {e}")))?;
    let _gate = store.write_gate().await;
    let stored = sqlx::query(
        "INSERT INTO fits (sweep, kind, metric, select_rule, result, created_at) \
         VALUES (?, 'all', ?, ?, ?, ?)",
    )
    .bind(sweep)
    .bind(opts.metric.name())
    .bind(opts.select.to_string())
    .bind(json)
    .bind(provenance::now())
    .execute(store.write_pool())
    .await;
    match stored {
        Ok(_) => Ok((report, true)),
        Err(e) if crate::db::is_read_only_error(&e) => Ok((report, false)),
        Err(e) => Err(store.err(e)),
    }
}

/// Fits a sweep (storing the fit where it can: [`fit_sweep`]) and writes its report into
/// `out_dir`: PNG figures, an `index.html` and an `index.md`. `progress` gets a line per
/// figure. Returns the fit, the report's files, and whether the fit was stored.
pub async fn report_sweep(
    store: &Store,
    sweep: &str,
    opts: &FitOptions,
    out_dir: &std::path::Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(FitReport, ReportSummary, bool)> {
    let row = store.sweep(sweep).await?.ok_or_else(|| {
        Error::Query(format!(
            "no sweep named {sweep:?} in {}",
            store.path().display()
        ))
    })?;
    let (counts, states, advice) = states_and_advice(store, sweep).await?;
    if !counts.iter().any(|(s, _)| s == "completed") {
        return Err(Error::Report(format!(
            "sweep {sweep} has no completed runs ({states}): nothing to report; {advice}"
        )));
    }
    let (report, stored) = fit_sweep(store, sweep, opts).await?;
    let runs = load_fit_inputs(store, sweep, opts.metric).await?;
    let mut curves = Vec::new();
    for (run_id, label) in crate::report::choose_curve_runs(&report, &runs) {
        let points = store
            .epochs_of(&run_id)
            .await?
            .into_iter()
            .map(|e| CurvePoint {
                epoch: e.epoch as u32,
                step: e.step as u64,
                train_loss: e.train_loss,
                test_loss: e.test_loss,
                train_acc: e.train_acc,
                test_acc: e.test_acc,
            })
            .collect();
        curves.push(TrainingCurve {
            run_id,
            label,
            points,
        });
    }
    let input = ReportInput {
        sweep: sweep.to_string(),
        description: row.description,
        fit: report.clone(),
        runs,
        curves,
        state_counts: counts,
        generated_by: match provenance::git_revision() {
            Some(rev) => format!("scalelab {} (rev {rev})", provenance::VERSION),
            None => format!("scalelab {}", provenance::VERSION),
        },
    };
    let out = out_dir.to_path_buf();
    // Drawing is CPU work: keep it off the async threads. Progress lines are sent back.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let job = tokio::task::spawn_blocking(move || {
        let mut send = |line: &str| {
            let _ = tx.send(line.to_string());
        };
        crate::report::write_report(&input, &out, &mut send)
    });
    while let Some(line) = rx.recv().await {
        progress(&line);
    }
    let summary = job
        .await
        .map_err(|e| Error::Report(format!("the report thread failed: {e}")))?
        .map_err(|e| Error::Report(e.to_string()))?;
    Ok((report, summary, stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::example_config;

    #[test]
    fn labels_name_only_what_varies() {
        let mut a = example_config();
        let mut b = example_config();
        b.batch_size = 64;
        let mut c = example_config();
        c.lr = 0.3;
        a.seed = 1;
        let labels = group_labels(&[a, b, c]);
        assert_eq!(labels[0].0, "lr=0.1");
        assert_eq!(
            labels[0].0, labels[1].0,
            "batch size is not a cell coordinate"
        );
        assert_eq!(labels[2].0, "lr=0.3");
        assert_eq!(labels[0].1, "batch_size=32 lr=0.1");
        assert_eq!(labels[1].1, "batch_size=64 lr=0.1");
        // Long values are shortened, unless that would merge cells.
        let mut d = example_config();
        d.lr = 0.0116960709529;
        let mut e = example_config();
        e.lr = 0.0116960709;
        assert_eq!(
            group_labels(&[d.clone(), example_config()])[0].0,
            "lr=0.0117"
        );
        let l = group_labels(&[d, e]);
        assert_ne!(l[0].0, l[1].0);
        assert_eq!(format_sig(3.2e-5, 2), "3.2e-5");
        assert_eq!(format_sig(1000.0, 4), "1000");
    }
}
