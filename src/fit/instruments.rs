//! Fits of the instruments' measurements: the gradient noise scale B_simple over training
//! (McCandlish et al. 2018, arXiv 1812.06162) set beside B_opt and B_crit, and the rank
//! correlation between the curvature at initialisation and the selected metric across seeds
//! (Kuzborskij & Lampert 2017, arXiv 1703.01678: a less curved start should generalise better).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::stats::pearson;
use super::{Ctx, Interval, Outcome};

/// One epoch's noise-scale reading of a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BSimplePoint {
    /// Epoch (0 = at initialisation).
    pub epoch: u32,
    /// Updates so far.
    pub step: u64,
    /// B_simple = tr(Σ)/|G|².
    pub b_simple: f64,
    /// Training loss at that epoch (B_simple is expected to grow as it falls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
}

/// A noise-scale measurement whose B_simple was withheld (stored as NULL): the |G|² average
/// came out ≤ 0 (the noise swamped it: B_simple beyond what B_big resolves) or the tr(Σ)
/// average < 0 (no measurable noise: B_simple ≈ 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WithheldReading {
    /// Epoch (0 = at initialisation).
    pub epoch: u32,
    /// Whether it was withheld for |G|² ≤ 0 (B_simple too large to read) rather than tr(Σ) < 0.
    pub beyond: bool,
    /// Training loss at that epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
}

/// One epoch's B_noise measurement of a run: the averages behind B_noise and, from the same
/// pairs, those behind B_simple, so that both can be pooled over runs alike.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvedReading {
    /// Epoch (0 = at initialisation).
    pub epoch: u32,
    /// Mean of the GᵀHG estimates.
    pub grad_h_grad: f64,
    /// Mean of the tr(HΣ) estimates.
    pub trace_h_sigma: f64,
    /// Mean of the |G|² estimates.
    pub grad_sq: f64,
    /// Mean of the tr(Σ) estimates.
    pub trace_sigma: f64,
}

/// What the instruments measured in one run (empty when they were off).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInstruments {
    /// B_noise measurements per measured epoch (`b_noise = true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curved: Vec<CurvedReading>,
    /// B_simple per measured epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub b_simple: Vec<BSimplePoint>,
    /// Measurements whose B_simple was withheld.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub b_simple_withheld: Vec<WithheldReading>,
    /// Top Hessian eigenvalue of the training loss at initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_top_eigenvalue: Option<f64>,
    /// Hessian trace (Hutchinson) at initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_trace: Option<f64>,
}

impl RunInstruments {
    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        !self.measured_noise() && self.init_top_eigenvalue.is_none() && self.init_trace.is_none()
    }

    /// Whether the noise scale was measured at all (a reading, or one withheld).
    pub fn measured_noise(&self) -> bool {
        !(self.b_simple.is_empty() && self.b_simple_withheld.is_empty())
    }

    /// The reading at `epoch` and whether it was withheld, a withheld one counted as +∞
    /// (|G|² ≤ 0) or 0 (tr(Σ) < 0), so that medians over runs neither drop nor invent it;
    /// `None` when not measured there.
    fn reading_at(&self, epoch: u32) -> Option<(f64, bool)> {
        self.b_simple
            .iter()
            .find(|p| p.epoch == epoch)
            .map(|p| (p.b_simple, false))
            .or_else(|| {
                self.b_simple_withheld
                    .iter()
                    .find(|w| w.epoch == epoch)
                    .map(|w| (if w.beyond { f64::INFINITY } else { 0.0 }, true))
            })
    }

    /// The last epoch measured (a reading or a withheld one).
    fn last_measured(&self) -> Option<u32> {
        let a = self.b_simple.iter().map(|p| p.epoch).max();
        let b = self.b_simple_withheld.iter().map(|w| w.epoch).max();
        a.max(b)
    }
}

/// One run's B_simple series, for the figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BSimpleSeries {
    /// The run.
    pub run_id: String,
    /// Its cell.
    pub cell: String,
    /// Its batch size.
    pub batch_size: u64,
    /// Its learning rate.
    pub lr: f64,
    /// The readings.
    pub points: Vec<BSimplePoint>,
    /// The epochs whose reading was withheld (in none of `points`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<WithheldReading>,
}

impl BSimpleSeries {
    /// The run's last measurement, when it was withheld (a later epoch than every reading).
    pub fn last_withheld(&self) -> Option<&WithheldReading> {
        let last_read = self.points.iter().map(|p| p.epoch).max();
        self.withheld
            .iter()
            .max_by_key(|w| w.epoch)
            .filter(|w| last_read.is_none_or(|e| w.epoch > e))
    }
}

/// B_noise = tr(HΣ)/(GᵀHG) over a sweep's runs, pooled: a single reading averages a few pairs
/// and is far noisier than B_simple's (docs/instruments.md), so the averages are summed over
/// runs and divided once, and B_simple is pooled over the same readings beside it. Diverged
/// runs are left out: their last reading is from another stage of training, often with the
/// largest gradients of all, which would outweigh the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BNoiseSummary {
    /// Runs with a B_noise measurement (diverged runs left out).
    pub runs: usize,
    /// Diverged runs with B_noise measurements, left out.
    #[serde(default)]
    pub diverged_left_out: usize,
    /// Runs measured at initialisation (epoch 0).
    pub first_runs: usize,
    /// Σ tr(HΣ)/Σ GᵀHG over the readings at initialisation; `None` when withheld (the pooled
    /// GᵀHG ≤ 0 or tr(HΣ) < 0) or there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<f64>,
    /// Σ tr(Σ)/Σ |G|² over the same readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_simple: Option<f64>,
    /// The same over each run's last B_noise reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<f64>,
    /// B_simple pooled over the same last readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_simple: Option<f64>,
    /// The largest share of the last readings' summed (positive) GᵀHG that one run holds: pooling weighs
    /// each run by its GᵀHG, and near 1 the pooled figure is that run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_top_share: Option<f64>,
    /// Single readings (one run's epoch each).
    pub readings: usize,
    /// How many of them were withheld on their own (GᵀHG ≤ 0 or tr(HΣ) < 0).
    pub withheld: usize,
}

impl BNoiseSummary {
    /// "B_noise 76.8 at initialisation against B_simple 120 from the same measurements (ratio
    /// 0.64; 40 runs, pooled), and 96.1 against B_simple 148 at the last reading (ratio 0.65; 40 runs,
    /// the largest holding 42% of the weight); 273 of 844 single readings withheld; 2 diverged
    /// runs left out".
    pub fn describe(&self, value: impl Fn(f64) -> String) -> String {
        let v = |x: Option<f64>| x.map_or_else(|| "withheld".to_string(), &value);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("ratio {}; ", value(a / b)),
            _ => String::new(),
        };
        let runs = |k: usize| {
            if k == 1 {
                "1 run".to_string()
            } else {
                format!("{k} runs")
            }
        };
        let first = if self.first_runs == 0 {
            "not measured at initialisation".to_string()
        } else {
            format!(
                "{} at initialisation against B_simple {} from the same measurements ({}{}, \
                 pooled)",
                v(self.first),
                v(self.first_simple),
                ratio(self.first, self.first_simple),
                runs(self.first_runs)
            )
        };
        let top = self.last_top_share.map_or_else(String::new, |s| {
            format!(", the largest holding {:.0}% of the weight", 100.0 * s)
        });
        let diverged = match self.diverged_left_out {
            0 => String::new(),
            1 => "; 1 diverged run left out".to_string(),
            k => format!("; {k} diverged runs left out"),
        };
        format!(
            "B_noise {first}, and {} against B_simple {} at the last reading ({}{}{top}); {} \
             of {} \
             single readings withheld{diverged}",
            v(self.last),
            v(self.last_simple),
            ratio(self.last, self.last_simple),
            runs(self.runs),
            self.withheld,
            self.readings
        )
    }
}

/// Σ numerators / Σ denominators, withheld as a single reading is.
fn pooled(
    readings: &[CurvedReading],
    num: fn(&CurvedReading) -> f64,
    den: fn(&CurvedReading) -> f64,
) -> Option<f64> {
    if readings.is_empty() {
        return None;
    }
    let (n, d) = readings
        .iter()
        .fold((0.0, 0.0), |(n, d), r| (n + num(r), d + den(r)));
    crate::instruments::b_noise_of(d, n)
}

fn summarise_b_noise(runs: &[&crate::fit::RunInput]) -> Option<BNoiseSummary> {
    let measured = || runs.iter().filter(|r| !r.instruments.curved.is_empty());
    let diverged_left_out = measured().filter(|r| r.diverged).count();
    let with: Vec<&Vec<CurvedReading>> = measured()
        .filter(|r| !r.diverged)
        .map(|r| &r.instruments.curved)
        .collect();
    if with.is_empty() {
        return None;
    }
    let first: Vec<CurvedReading> = with
        .iter()
        .filter_map(|c| c.iter().find(|r| r.epoch == 0).copied())
        .collect();
    let last: Vec<CurvedReading> = with
        .iter()
        .filter_map(|c| c.iter().max_by_key(|r| r.epoch).copied())
        .collect();
    let all = with.iter().flat_map(|c| c.iter());
    let noise = |r: &CurvedReading| r.trace_h_sigma;
    let curv = |r: &CurvedReading| r.grad_h_grad;
    let tr = |r: &CurvedReading| r.trace_sigma;
    let sq = |r: &CurvedReading| r.grad_sq;
    // Out of the positive readings' sum, so that negative ones cannot push it past 1.
    let weight: f64 = last.iter().map(|r| r.grad_h_grad.max(0.0)).sum();
    let heaviest = last
        .iter()
        .map(|r| r.grad_h_grad)
        .fold(f64::NEG_INFINITY, f64::max);
    let last_top_share = (weight > 0.0 && heaviest > 0.0).then(|| heaviest / weight);
    Some(BNoiseSummary {
        runs: with.len(),
        diverged_left_out,
        last_top_share,
        first_runs: first.len(),
        first: pooled(&first, noise, curv),
        first_simple: pooled(&first, tr, sq),
        last: pooled(&last, noise, curv),
        last_simple: pooled(&last, tr, sq),
        readings: all.clone().count(),
        withheld: all
            .filter(|r| crate::instruments::b_noise_of(r.grad_h_grad, r.trace_h_sigma).is_none())
            .count(),
    })
}

/// The noise-scale summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseScaleSummary {
    /// B_noise, where the runs measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_noise: Option<BNoiseSummary>,
    /// Runs with at least one measurement.
    pub runs: usize,
    /// Median over the runs measured at initialisation (epoch 0) of that reading; a withheld
    /// reading counts as +∞ (|G|² ≤ 0) or 0 (tr(Σ) < 0). `None` when that median is +∞: most
    /// runs' B_simple was too large to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_median: Option<f64>,
    /// Runs measured at initialisation, and how many of those readings were withheld.
    #[serde(default)]
    pub first_runs: usize,
    #[serde(default)]
    pub first_withheld: usize,
    /// Median over runs of each run's last measurement, withheld ones counted as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_median: Option<f64>,
    /// How many of those last measurements were withheld.
    #[serde(default)]
    pub last_withheld: usize,
    /// Median over runs of Spearman's ρ between B_simple and the training loss over epochs
    /// (negative: B_simple grows as the loss falls, as McCandlish et al. report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_rank_correlation: Option<f64>,
    /// Share of runs (with ≥ 3 readings) whose ρ is negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_growing: Option<f64>,
    /// Runs with ≥ 3 readings and a defined ρ (those the median ρ and `share_growing` are over).
    #[serde(default)]
    pub runs_correlated: usize,
    /// Up to 12 series for plotting: per cell, the run nearest its best batch size, lowest seed.
    pub series: Vec<BSimpleSeries>,
}

impl NoiseScaleSummary {
    /// "median B_simple 61.2 at initialisation (40 runs, 3 withheld) and 812 at the last
    /// reading (42 runs, 5 withheld)", values drawn by `value`; a median that is a withheld +∞
    /// reads "beyond what B_big resolves".
    pub fn describe_medians(&self, value: impl Fn(f64) -> String) -> String {
        let median = |m: Option<f64>| m.map_or_else(|| "beyond what B_big resolves".into(), &value);
        let withheld = |k: usize| {
            if k > 0 {
                format!(", {k} withheld")
            } else {
                String::new()
            }
        };
        format!(
            "median B_simple {} at initialisation ({} runs{}) and {} at the last reading ({} \
             runs{})",
            median(self.first_median),
            self.first_runs,
            withheld(self.first_withheld),
            median(self.last_median),
            self.runs,
            withheld(self.last_withheld)
        )
    }
}

/// One run in the curvature comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvaturePoint {
    /// The run.
    pub run_id: String,
    /// Its cell and batch size (runs are compared within a (cell, B) group: only the seed differs).
    pub group: String,
    /// Its seed.
    pub seed: u64,
    /// Top Hessian eigenvalue at initialisation.
    pub top_eigenvalue: f64,
    /// Hessian trace at initialisation, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<f64>,
    /// The selected metric.
    pub value: f64,
}

/// Rank correlation between curvature at initialisation and the selected metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvatureSummary {
    /// The runs compared.
    pub points: Vec<CurvaturePoint>,
    /// (cell, B) groups with at least 3 seeds that enter the correlation.
    pub groups: usize,
    /// Spearman's ρ of the within-group ranks (each group's ranks centred, then pooled).
    pub rho: f64,
    /// Its confidence interval (Fisher z with the Spearman variance 1.06/(k − 3 − (groups − 1)),
    /// Fieller, Hartley & Pearson 1957, k = [`Self::initialisations`]; each group's centring
    /// costs a degree of freedom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// Two-sided p-value of ρ = 0 (t with k − 2 − (groups − 1) degrees of freedom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Runs in the correlation.
    pub n: usize,
    /// Distinct initial readings among them (runs that differ only in what happens after the
    /// measurement — batch size, learning rate — share their seed's reading): the interval and
    /// the p-value count these, not the runs, as the independent measurements.
    #[serde(default)]
    pub initialisations: usize,
    /// One sentence: what the sign means for the metric.
    pub statement: String,
}

/// The instruments section of the fit report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstrumentsSection {
    /// The gradient noise scale over training.
    pub noise_scale: Outcome<NoiseScaleSummary>,
    /// Curvature at initialisation against the metric.
    pub curvature: Outcome<CurvatureSummary>,
}

/// Ranks (1-based, ties averaged).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ of two series.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fit_noise_scale(ctx: &Ctx) -> Outcome<NoiseScaleSummary> {
    let with: Vec<_> = ctx
        .runs
        .iter()
        .filter(|r| r.instruments.measured_noise())
        .collect();
    if with.is_empty() {
        return Outcome::skipped(
            "no run measured the gradient noise scale (set noise_scale_every under [instruments])",
        );
    }
    // Withheld readings stay in (as +∞ or 0): dropping them, or taking a later epoch's reading
    // in their place, put the median at initialisation 22% low in simulation.
    let first: Vec<(f64, bool)> = with
        .iter()
        .filter_map(|r| r.instruments.reading_at(0))
        .collect();
    let last: Vec<(f64, bool)> = with
        .iter()
        .filter_map(|r| {
            let i = &r.instruments;
            i.reading_at(i.last_measured()?)
        })
        .collect();
    let withheld = |v: &[(f64, bool)]| v.iter().filter(|r| r.1).count();
    let finite_median = |v: &[(f64, bool)]| {
        (!v.is_empty())
            .then(|| median(v.iter().map(|r| r.0).collect()))
            .filter(|m| m.is_finite())
    };
    // Per run, withheld readings ranked as above (+∞ or 0) beside the others.
    let rhos: Vec<f64> = with
        .iter()
        .filter_map(|r| {
            let i = &r.instruments;
            let (b, l): (Vec<f64>, Vec<f64>) = i
                .b_simple
                .iter()
                .map(|p| (p.b_simple, p.train_loss))
                .chain(
                    i.b_simple_withheld
                        .iter()
                        .map(|w| (if w.beyond { f64::INFINITY } else { 0.0 }, w.train_loss)),
                )
                .filter_map(|(b, l)| Some((b, l.filter(|l| l.is_finite())?)))
                .unzip();
            if b.len() < 3 {
                return None;
            }
            spearman(&b, &l)
        })
        .collect();
    let (median_rho, share) = if rhos.is_empty() {
        (None, None)
    } else {
        let neg = rhos.iter().filter(|&&r| r < 0.0).count() as f64 / rhos.len() as f64;
        (Some(median(rhos.clone())), Some(neg))
    };
    // Per cell: the run whose B is nearest the cell's best selected value, lowest seed first.
    let mut by_cell: BTreeMap<&str, Vec<(usize, &&crate::fit::RunInput)>> = BTreeMap::new();
    for (i, r) in ctx.runs.iter().enumerate() {
        if !r.instruments.b_simple.is_empty() {
            by_cell.entry(r.cell.as_str()).or_default().push((i, r));
        }
    }
    let mut series = Vec::new();
    for runs in by_cell.values() {
        let best = runs
            .iter()
            .filter_map(|(i, r)| ctx.sel[*i].map(|s| (s.value, r)))
            .max_by(|a, b| {
                let (x, y) = (a.0, b.0);
                if ctx.opts.metric.higher_is_better() {
                    x.total_cmp(&y)
                } else {
                    y.total_cmp(&x)
                }
            })
            .map(|(_, r)| r.batch_size);
        let target = best.unwrap_or(runs[0].1.batch_size);
        if let Some((_, r)) = runs
            .iter()
            .filter(|(_, r)| r.batch_size == target)
            .min_by_key(|(_, r)| r.seed)
        {
            series.push(BSimpleSeries {
                run_id: r.run_id.clone(),
                cell: r.cell.clone(),
                batch_size: r.batch_size,
                lr: r.lr,
                points: r.instruments.b_simple.clone(),
                withheld: r.instruments.b_simple_withheld.clone(),
            });
        }
        if series.len() >= 12 {
            break;
        }
    }
    Outcome::Fitted(NoiseScaleSummary {
        b_noise: summarise_b_noise(&with.iter().map(|r| **r).collect::<Vec<_>>()),
        runs: with.len(),
        first_median: finite_median(&first),
        first_runs: first.len(),
        first_withheld: withheld(&first),
        last_median: finite_median(&last),
        last_withheld: withheld(&last),
        median_rank_correlation: median_rho,
        share_growing: share,
        runs_correlated: rhos.len(),
        series,
    })
}

impl NoiseScaleSummary {
    /// "in 32 of the 40 runs with 3 or more readings (80%)": whose B_simple grows as the loss
    /// falls, out of the runs it could be told for (not out of every run measured).
    pub fn describe_growing(&self, percent: impl Fn(f64) -> String) -> Option<String> {
        let share = self.share_growing?;
        let n = self.runs_correlated;
        Some(if n == 0 {
            // A fit stored before the count was: the share alone.
            format!("in {} of the runs with 3 or more readings", percent(share))
        } else {
            format!(
                "in {} of the {n} runs with 3 or more readings ({})",
                (share * n as f64).round(),
                percent(share)
            )
        })
    }
}

fn fit_curvature(ctx: &Ctx) -> Outcome<CurvatureSummary> {
    let mut groups: BTreeMap<String, Vec<CurvaturePoint>> = BTreeMap::new();
    for (i, r, value) in ctx.valued() {
        let Some(top) = ctx.runs[i].instruments.init_top_eigenvalue else {
            continue;
        };
        if !(top.is_finite() && value.is_finite()) {
            continue;
        }
        let group = if r.cell == "all" {
            format!("B={}", r.batch_size)
        } else {
            format!("{} B={}", r.cell, r.batch_size)
        };
        groups
            .entry(group.clone())
            .or_default()
            .push(CurvaturePoint {
                run_id: r.run_id.clone(),
                group,
                seed: r.seed,
                top_eigenvalue: top,
                trace: r.instruments.init_trace.filter(|t| t.is_finite()),
                value,
            });
    }
    if groups.is_empty() {
        return Outcome::skipped(
            "no run measured the curvature at initialisation (set curvature = \"init\" under \
             [instruments])",
        );
    }
    // Within each group only the seed (the initialisation) differs: centre the ranks there.
    let (mut rx, mut ry) = (Vec::new(), Vec::new());
    let mut used = 0;
    let mut readings = std::collections::BTreeSet::new();
    for pts in groups.values().filter(|p| p.len() >= 3) {
        readings.extend(pts.iter().map(|p| (p.seed, p.top_eigenvalue.to_bits())));
        let cx = ranks(&pts.iter().map(|p| p.top_eigenvalue).collect::<Vec<_>>());
        let cy = ranks(&pts.iter().map(|p| p.value).collect::<Vec<_>>());
        let mean = (pts.len() as f64 + 1.0) / 2.0;
        rx.extend(cx.iter().map(|r| r - mean));
        ry.extend(cy.iter().map(|r| r - mean));
        used += 1;
    }
    let points: Vec<CurvaturePoint> = groups.into_values().flatten().collect();
    if used == 0 {
        return Outcome::skipped(format!(
            "{} run(s) measured the curvature, but no (cell, B) has 3 or more seeds to rank",
            points.len()
        ));
    }
    let Some(rho) = pearson(&rx, &ry) else {
        return Outcome::skipped(
            "the curvature or the metric does not vary across seeds: no rank correlation",
        );
    };
    let n = rx.len();
    // Runs that share an initial reading are not independent measurements of its effect.
    let k = readings.len();
    // Each group's rank centring costs one degree of freedom, in the interval as in the test.
    let lost = used as f64 - 1.0;
    let dof = k as f64 - 2.0 - lost;
    let conf = ctx.opts.confidence;
    let (interval, p_value) = if k as f64 - 3.0 - lost >= 1.0 {
        let z = rho.clamp(-0.999_999, 0.999_999).atanh();
        let se = (1.06 / (k as f64 - 3.0 - lost)).sqrt();
        let q = statrs::distribution::Normal::standard().inverse_cdf(0.5 + conf / 2.0);
        let iv = Interval {
            lo: (z - q * se).tanh(),
            hi: (z + q * se).tanh(),
            level: conf,
        };
        let t = rho * (dof / (1.0 - rho * rho).max(1e-12)).sqrt();
        let p = StudentsT::new(0.0, 1.0, dof)
            .ok()
            .map(|d| 2.0 * (1.0 - d.cdf(t.abs())));
        (Some(iv), p.filter(|p| p.is_finite()))
    } else {
        (None, None)
    };
    let (predicted, sign) = if ctx.opts.metric.higher_is_better() {
        ("ρ < 0", rho < 0.0)
    } else {
        ("ρ > 0", rho > 0.0)
    };
    let iv = interval
        .map(|i| format!(" [{:.3}, {:.3}]", i.lo, i.hi))
        .unwrap_or_default();
    let excludes_zero = interval.is_some_and(|i| i.lo > 0.0 || i.hi < 0.0);
    let verdict = match (excludes_zero, sign) {
        (true, true) => "the data agree with it",
        (true, false) => "the data contradict it",
        (false, _) => "the interval includes 0: no correlation is shown at this sample size",
    };
    let runs = if k < n {
        format!("{n} runs sharing {k} initial readings")
    } else {
        format!("{n} runs")
    };
    let statement = format!(
        "Spearman ρ between the top Hessian eigenvalue at initialisation and {} across seeds \
         (within {used} (cell, B) group(s), {runs}): ρ = {rho:.3}{iv}; a flatter start \
         generalising better (Kuzborskij & Lampert) predicts {predicted}; {verdict}",
        ctx.opts.metric.name(),
    );
    Outcome::Fitted(CurvatureSummary {
        points,
        groups: used,
        rho,
        interval,
        p_value,
        n,
        initialisations: k,
        statement,
    })
}

/// The instruments section; skipped as a whole when no run measured anything.
pub fn fit_instruments(ctx: &Ctx) -> Outcome<InstrumentsSection> {
    if ctx.runs.iter().all(|r| r.instruments.is_empty()) {
        return Outcome::skipped("the sweep measured no instruments");
    }
    Outcome::Fitted(InstrumentsSection {
        noise_scale: fit_noise_scale(ctx),
        curvature: fit_curvature(ctx),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::RunInput;

    /// The pooled B_noise: sums of the runs' averages divided once, at epoch 0 and at each run's
    /// last reading, B_simple pooled over the same readings, single readings withheld counted,
    /// diverged runs left out (named in the text), and the heaviest run's share of the weight.
    #[test]
    fn b_noise_is_pooled_over_runs_without_the_diverged() {
        use crate::fit::testdata::flat_run;
        let reading = |epoch, ghg, ths, gq, ts| CurvedReading {
            epoch,
            grad_h_grad: ghg,
            trace_h_sigma: ths,
            grad_sq: gq,
            trace_sigma: ts,
        };
        let mut a = flat_run("c", 0.1, 1000, 0.0, 32, 1, 0.9, 3);
        a.instruments.curved = vec![
            reading(0, 2.0, 100.0, 1.0, 80.0),
            reading(1, -1.0, 50.0, 1.0, 60.0),
            reading(3, 1.0, 30.0, 0.5, 40.0),
        ];
        let mut b = flat_run("c", 0.1, 1000, 0.0, 64, 1, 0.9, 3);
        // No reading at initialisation; its last is epoch 2.
        b.instruments.curved = vec![reading(2, 3.0, 90.0, 2.0, 100.0)];
        let mut d = flat_run("c", 0.1, 1000, 0.0, 128, 1, 0.9, 3);
        d.diverged = true;
        d.instruments.curved = vec![reading(0, 500.0, 1.0, 500.0, 1.0)];
        let plain = flat_run("c", 0.1, 1000, 0.0, 256, 1, 0.9, 3);
        let s = summarise_b_noise(&[&a, &b, &d, &plain]).unwrap();
        assert_eq!((s.runs, s.first_runs, s.diverged_left_out), (2, 1, 1));
        assert_eq!((s.readings, s.withheld), (4, 1));
        assert_eq!(s.first, Some(50.0));
        assert_eq!(s.first_simple, Some(80.0));
        assert_eq!(s.last, Some((30.0 + 90.0) / (1.0 + 3.0)));
        assert_eq!(s.last_simple, Some((40.0 + 100.0) / 2.5));
        assert_eq!(s.last_top_share, Some(0.75));
        let text = s.describe(|v| format!("{v}"));
        assert_eq!(
            text,
            "B_noise 50 at initialisation against B_simple 80 from the same measurements (ratio \
             0.625; 1 run, pooled), and 30 against B_simple 56 at the last reading (ratio \
             0.5357142857142857; 2 runs, the largest holding 75% of the weight); 1 of 4 single \
             readings withheld; 1 diverged run left out"
        );
        // A pooled GᵀHG ≤ 0 is withheld as a single reading is; no epoch 0 reads as such.
        b.instruments.curved = vec![reading(2, -3.0, 90.0, 2.0, 100.0)];
        let s = summarise_b_noise(&[&b]).unwrap();
        assert_eq!((s.last, s.last_top_share, s.first_runs), (None, None, 0));
        assert!(
            s.describe(|v| format!("{v}")).starts_with(
                "B_noise not measured at initialisation, and withheld against B_simple 50"
            ),
            "{}",
            s.describe(|v| format!("{v}"))
        );
        assert!(summarise_b_noise(&[&plain, &d]).is_none());
    }

    #[test]
    fn spearman_of_monotone_and_reversed_series() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman(&x, &[10.0, 20.0, 25.0, 80.0, 90.0]), Some(1.0));
        assert_eq!(spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![2.5, 1.0, 2.5]);
        assert_eq!(spearman(&x, &[1.0; 5]), None);
    }

    /// Withheld readings stay in the summary (as +∞ for |G|² ≤ 0): the median at
    /// initialisation is over the epoch-0 measurements only, never a later reading standing in
    /// for a withheld one, and it says how many were withheld.
    #[test]
    fn withheld_readings_count_in_the_medians_at_their_epoch() {
        use crate::fit::testdata::flat_run;
        use crate::fit::{FitOptions, fit_all};
        let point = |epoch: u32, b: f64| BSimplePoint {
            epoch,
            step: 10 * u64::from(epoch),
            b_simple: b,
            train_loss: Some(2.0 - 0.1 * f64::from(epoch)),
        };
        let gone = |epoch: u32, beyond: bool| WithheldReading {
            epoch,
            beyond,
            train_loss: Some(2.0 - 0.1 * f64::from(epoch)),
        };
        // Five runs: epoch-0 readings 100, 110, 120, withheld (|G|² ≤ 0), withheld (|G|² ≤ 0);
        // every run reads 50 at epoch 1 and grows after.
        let runs: Vec<RunInput> = (0..5u64)
            .map(|seed| {
                let mut r = flat_run("all", 0.02, 1000, 0.9, 32, seed, 0.8, 4);
                let i = &mut r.instruments;
                if seed < 3 {
                    i.b_simple.push(point(0, 100.0 + 10.0 * seed as f64));
                } else {
                    i.b_simple_withheld.push(gone(0, true));
                }
                i.b_simple.push(point(1, 50.0));
                i.b_simple.push(point(2, 400.0));
                if seed == 4 {
                    i.b_simple_withheld.push(gone(3, false));
                } else {
                    i.b_simple.push(point(3, 900.0));
                }
                r
            })
            .collect();
        let ns = match fit_all(&runs, &FitOptions::default()).instruments {
            Outcome::Fitted(InstrumentsSection {
                noise_scale: Outcome::Fitted(n),
                ..
            }) => n,
            other => panic!("no noise-scale summary: {other:?}"),
        };
        // Sorted: 100, 110, 120, +∞, +∞: the median is 120, not 105 (the three readings alone)
        // nor 100 (a later epoch's 50 standing in for the withheld two).
        assert_eq!(ns.first_median, Some(120.0));
        assert_eq!((ns.first_runs, ns.first_withheld), (5, 2));
        // Last readings 900 ×4 and one withheld as 0 (tr(Σ) < 0).
        assert_eq!((ns.last_median, ns.last_withheld), (Some(900.0), 1));
        // ρ over each run's four readings, withheld ones ranked as +∞ or 0: −0.8 for seeds 0–2,
        // +0.2 and +0.8 for seeds 3 and 4. The share is of these five runs, and says so.
        assert_eq!(
            ns.describe_growing(|s| format!("{:.0}%", 100.0 * s))
                .as_deref(),
            Some("in 3 of the 5 runs with 3 or more readings (60%)")
        );
        let text = ns.describe_medians(|v| format!("{v}"));
        assert!(
            text.contains("120 at initialisation (5 runs, 2 withheld)")
                && text.contains("900 at the last reading (5 runs, 1 withheld)"),
            "{text}"
        );
        // A majority withheld at initialisation: the median is beyond reading, and says so.
        let mut more = runs.clone();
        for r in more.iter_mut().take(1) {
            r.instruments.b_simple.retain(|p| p.epoch != 0);
            r.instruments.b_simple_withheld.push(gone(0, true));
        }
        let ns = match fit_all(&more, &FitOptions::default()).instruments {
            Outcome::Fitted(InstrumentsSection {
                noise_scale: Outcome::Fitted(n),
                ..
            }) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(ns.first_median, None);
        assert!(
            ns.describe_medians(|v| format!("{v}"))
                .contains("beyond what B_big resolves")
        );
    }

    /// Two batch sizes trained from the same 16 initialisations: 32 runs, but 16 readings of
    /// the curvature, and the interval is as wide as 16 measurements make it. Readings that
    /// differ between the groups count as 32.
    #[test]
    fn runs_sharing_an_initial_reading_count_once_in_the_interval() {
        use crate::fit::testdata::flat_run;
        use crate::fit::{FitOptions, fit_all};
        let reading = |seed: u64| 0.5 + 0.01 * ((seed * 7) % 16) as f64;
        let runs = |shared: bool| -> Vec<RunInput> {
            [16u64, 64]
                .iter()
                .flat_map(|&b| {
                    (1..=16u64).map(move |seed| {
                        let acc = 0.9 - 0.002 * ((seed * 5 + b) % 16) as f64;
                        let mut r = flat_run("all", 0.02, 1000, 0.9, b, seed, acc, 5);
                        let top = reading(seed) + if shared { 0.0 } else { 1e-3 * b as f64 };
                        r.instruments.init_top_eigenvalue = Some(top);
                        r
                    })
                })
                .collect()
        };
        let summary = |runs: &[RunInput]| {
            let report = fit_all(runs, &FitOptions::default());
            match report.instruments {
                Outcome::Fitted(InstrumentsSection {
                    curvature: Outcome::Fitted(c),
                    ..
                }) => c,
                other => panic!("no curvature fit: {other:?}"),
            }
        };
        let q = statrs::distribution::Normal::standard().inverse_cdf(0.975);
        let half_width = |c: &CurvatureSummary| {
            let iv = c.interval.expect("an interval");
            (iv.hi.atanh() - iv.lo.atanh()) / 2.0
        };
        let shared = summary(&runs(true));
        assert_eq!(
            (shared.n, shared.initialisations, shared.groups),
            (32, 16, 2)
        );
        assert!((half_width(&shared) - q * (1.06f64 / 12.0).sqrt()).abs() < 1e-9);
        assert!(
            shared
                .statement
                .contains("32 runs sharing 16 initial readings")
        );
        let distinct = summary(&runs(false));
        assert_eq!((distinct.n, distinct.initialisations), (32, 32));
        assert!((half_width(&distinct) - q * (1.06f64 / 28.0).sqrt()).abs() < 1e-9);
        assert!(distinct.statement.contains("32 runs)"));
    }

    /// No association between curvature and outcome, 20 groups of 3 seeds: the 95% interval
    /// must exclude 0 in about 5% of 1,000 sweeps, as the p-value's test does. With the
    /// Fisher-z variance on k − 3 (ignoring the 19 degrees of freedom the group centring takes)
    /// it excluded 0 in 8.6%.
    #[test]
    fn the_interval_keeps_its_level_with_many_small_groups() {
        use crate::fit::testdata::{Gauss, flat_run};
        use crate::fit::{FitOptions, fit_all};
        let mut g = Gauss::new(27);
        let (sims, mut excluded, mut significant) = (1000, 0, 0);
        for _ in 0..sims {
            let runs: Vec<RunInput> = (0..20u64)
                .flat_map(|gi| (0..3u64).map(move |s| (gi, s)))
                .map(|(gi, s)| {
                    let acc = 0.8 + 0.01 * g.next();
                    let mut r =
                        flat_run(&format!("c{gi}"), 0.1, 1000, 0.0, 32, s + 100 * gi, acc, 2);
                    r.instruments.init_top_eigenvalue = Some(10.0 + g.next());
                    r
                })
                .collect();
            let opts = FitOptions {
                bootstrap: 0,
                ..FitOptions::default()
            };
            let Outcome::Fitted(InstrumentsSection {
                curvature: Outcome::Fitted(c),
                ..
            }) = fit_all(&runs, &opts).instruments
            else {
                panic!("no curvature fit");
            };
            let iv = c.interval.expect("an interval");
            excluded += usize::from(iv.lo > 0.0 || iv.hi < 0.0);
            significant += usize::from(c.p_value.is_some_and(|p| p < 0.05));
        }
        let (rate, p_rate) = (
            excluded as f64 / sims as f64,
            significant as f64 / sims as f64,
        );
        assert!(
            (0.03..=0.07).contains(&rate),
            "interval excludes 0 in {rate}"
        );
        assert!((0.03..=0.07).contains(&p_rate), "p < 0.05 in {p_rate}");
    }
}
