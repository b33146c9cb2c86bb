//! Schedules: decay the learning rate or increase the batch size (Smith, Kindermans, Ying & Le
//! 2017, arXiv 1711.00489; docs/science.md §2).
//!
//! Within each `schedule_group` that has at least two schedule modes: per schedule, the selected
//! metric's seed mean and t interval, the updates used (mean `steps`), the mean curve per epoch;
//! the largest gap between the per-epoch mean curves of increase-batch and decay-lr (the pair the
//! paper's claim is about; hybrid against decay-lr beside it, and over every mode, constant
//! included, for context); a two-one-sided-tests (TOST) equivalence test of increase-batch against
//! decay-lr (Schuirmann 1987): equivalent iff both one-sided p-values are below α, i.e. iff the
//! (1 − 2α) interval of the difference lies inside ±margin; and the ratio of updates
//! increase-batch/decay-lr and hybrid/decay-lr (the paper reports ~29,000/~80,000 on CIFAR-10).
//!
//! The TOST is paired when every seed has one run in each of the two schedules: runs of a group
//! with the same seed share their initial weights and data order, so their final values move
//! together (r = 0.99 on sweeps/dont-decay.toml, where Welch's 90% interval [−0.0053, 0.0044]
//! shrank to [−0.0015, 0.0006] paired). Otherwise it falls back to Welch's standard error and
//! Welch–Satterthwaite degrees of freedom, and says why.
//!
//! The equivalence is expected for B ≪ N only (the paper grows B to about N/10, then decays ε):
//! a group whose growing batch passes N/10 gets a warning.
//!
//! Diverged runs count at the censor value, both in the means and, after their last finite epoch,
//! in the mean curves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bopt::SkippedItem;
use super::stats::{alpha_of, finite, mean, pearson, sample_var, t_cdf, t_interval, t_quantile};
use super::{Ctx, Interval, Outcome};

const INCREASE: &str = "increase-batch";
const DECAY: &str = "decay-lr";
const HYBRID: &str = "hybrid";

/// The mean of one schedule's runs at one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMean {
    pub epoch: u32,
    pub mean: f64,
    /// Mean parameter updates done by this epoch (for plots against updates).
    pub mean_step: f64,
    pub n: usize,
}

/// One schedule mode within a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSummary {
    pub schedule: String,
    pub n_runs: usize,
    pub n_diverged: usize,
    /// Seed mean of the selected metric.
    pub mean: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// Mean parameter updates over the runs that did not diverge (all runs if every one did).
    pub mean_steps: f64,
    pub mean_curve: Vec<EpochMean>,
}

/// The largest per-epoch gap between schedules' mean curves (epochs ≥ 1 where each has a value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LargestGap {
    pub epoch: u32,
    pub gap: f64,
    /// The schedule with the higher mean at that epoch.
    pub higher: String,
    pub lower: String,
}

/// TOST verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Equivalence {
    Equivalent,
    NotEquivalent,
}

impl Equivalence {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Equivalence::Equivalent => "equivalent",
            Equivalence::NotEquivalent => "not equivalent",
        }
    }
}

/// How the TOST's standard error and degrees of freedom were formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TostMethod {
    /// Per-seed differences (same seed: same initial weights and data order): their mean, its
    /// standard error, t with n − 1 degrees of freedom.
    Paired,
    /// Independent samples: Welch's standard error, Welch–Satterthwaite degrees of freedom.
    /// Fits stored before the paired test existed were all Welch.
    #[default]
    Welch,
}

impl TostMethod {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            TostMethod::Paired => "paired",
            TostMethod::Welch => "Welch",
        }
    }
}

/// Two one-sided tests of `first` − `second` within ±margin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tost {
    pub first: String,
    pub second: String,
    /// Paired over seeds when every seed has one run in each schedule, else Welch.
    #[serde(default)]
    pub method: TostMethod,
    /// Seeds paired (paired test only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_pairs: Option<usize>,
    /// Pearson correlation of the two schedules' values across the paired seeds (paired test
    /// only; absent when either side does not vary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<f64>,
    /// Why the seeds could not be paired (Welch only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_note: Option<String>,
    /// Mean of `first` − mean of `second` (paired: the mean of the per-seed differences, the same
    /// number).
    pub difference: f64,
    pub std_error: f64,
    /// n − 1 (paired) or the Welch–Satterthwaite degrees of freedom.
    pub dof: f64,
    /// The (1 − 2α) interval of the difference.
    pub interval: Interval,
    pub margin: f64,
    /// p of H0: difference ≤ −margin.
    pub p_lower: f64,
    /// p of H0: difference ≥ +margin.
    pub p_upper: f64,
    pub alpha: f64,
    pub verdict: Equivalence,
}

impl Tost {
    /// Which test was run, in words: "paired over 4 seeds, r = 0.99", or "Welch, not paired:"
    /// and why.
    pub fn method_description(&self) -> String {
        match (self.method, self.n_pairs) {
            (TostMethod::Paired, Some(n)) => match self.correlation {
                Some(r) => format!("paired over {n} seeds, r = {r:.2}"),
                None => format!("paired over {n} seeds"),
            },
            _ => self
                .method_note
                .clone()
                .unwrap_or_else(|| self.method.name().to_string()),
        }
    }
}

/// Ratio of mean updates of two schedules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateRatio {
    pub numerator: String,
    pub denominator: String,
    pub ratio: f64,
}

/// One schedule group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleGroupFit {
    pub group: String,
    pub schedules: Vec<ScheduleSummary>,
    /// The largest gap between the per-epoch curves of increase-batch and decay-lr, the pair
    /// whose curves the paper says coincide (absent when the group lacks one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_gap: Option<LargestGap>,
    /// The same for hybrid against decay-lr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hybrid_gap: Option<LargestGap>,
    /// The largest gap between any two modes' curves, constant included: context, not the claim
    /// (a constant schedule is expected to differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_gap_all_modes: Option<LargestGap>,
    /// Set when increase-batch or hybrid grows B beyond N/10, where the paper does not expect
    /// the equivalence with decay-lr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_batch_warning: Option<String>,
    pub equivalence: Outcome<Tost>,
    pub update_ratios: Vec<UpdateRatio>,
}

/// The schedules section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedulesSection {
    pub groups: Vec<ScheduleGroupFit>,
    pub skipped_groups: Vec<SkippedItem>,
}

/// The TOST of a difference with standard error `se` and `dof` degrees of freedom.
fn tost_from(diff: f64, se: f64, dof: f64, margin: f64, alpha: f64) -> Option<Tost> {
    let dof = finite(dof)?;
    let tq = t_quantile(1.0 - alpha, dof)?;
    let (lo, hi) = (finite(diff - tq * se)?, finite(diff + tq * se)?);
    // With se = 0 the statistics are ±∞ (a sure answer) or 0/0 (exactly on the margin: p = 1).
    let p_lower = t_cdf((diff + margin) / se, dof).map_or(1.0, |c| 1.0 - c);
    let p_upper = t_cdf((diff - margin) / se, dof).unwrap_or(1.0);
    let equivalent = p_lower < alpha && p_upper < alpha;
    Some(Tost {
        first: String::new(),
        second: String::new(),
        method: TostMethod::Welch,
        n_pairs: None,
        correlation: None,
        method_note: None,
        difference: diff,
        std_error: se,
        dof,
        interval: Interval {
            lo,
            hi,
            level: 1.0 - 2.0 * alpha,
        },
        margin,
        p_lower,
        p_upper,
        alpha,
        verdict: if equivalent {
            Equivalence::Equivalent
        } else {
            Equivalence::NotEquivalent
        },
    })
}

/// TOST of mean(a) − mean(b) with Welch's t (independent samples). Needs ≥ 2 values on each
/// side.
pub(crate) fn tost_welch(a: &[f64], b: &[f64], margin: f64, alpha: f64) -> Option<Tost> {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (v1, v2) = (sample_var(a)? / n1, sample_var(b)? / n2);
    let diff = mean(a)? - mean(b)?;
    let se = (v1 + v2).sqrt();
    let dof = if se > 0.0 {
        (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0))
    } else {
        n1 + n2 - 2.0
    };
    tost_from(diff, se, dof, margin, alpha)
}

/// Paired TOST of the per-pair differences `d` (mean, its standard error, t with n − 1 dof).
/// Needs ≥ 2 pairs.
pub(crate) fn tost_paired(d: &[f64], margin: f64, alpha: f64) -> Option<Tost> {
    let n = d.len() as f64;
    let se = (sample_var(d)? / n).sqrt();
    let t = tost_from(mean(d)?, se, n - 1.0, margin, alpha)?;
    Some(Tost {
        method: TostMethod::Paired,
        n_pairs: Some(d.len()),
        ..t
    })
}

/// The two schedules' values paired by seed, in seed order, when every seed has exactly one
/// value on each side (and there are ≥ 2 seeds); otherwise why not, in words.
fn pair_by_seed(
    a: &[(u64, f64)],
    b: &[(u64, f64)],
    names: (&str, &str),
) -> Result<Vec<(f64, f64)>, String> {
    let index = |xs: &[(u64, f64)], name: &str| -> Result<BTreeMap<u64, f64>, String> {
        let mut m = BTreeMap::new();
        for &(seed, v) in xs {
            if m.insert(seed, v).is_some() {
                return Err(format!(
                    "seed {seed} has several {name} runs with values in this group"
                ));
            }
        }
        Ok(m)
    };
    let (ma, mb) = (index(a, names.0)?, index(b, names.1)?);
    let only = |x: &BTreeMap<u64, f64>, y: &BTreeMap<u64, f64>| -> Vec<String> {
        x.keys()
            .filter(|k| !y.contains_key(k))
            .map(|k| k.to_string())
            .collect()
    };
    for (missing_in, seeds) in [(names.1, only(&ma, &mb)), (names.0, only(&mb, &ma))] {
        if !seeds.is_empty() {
            return Err(format!(
                "seed(s) {} have no {missing_in} run with a value",
                seeds.join(", ")
            ));
        }
    }
    if ma.len() < 2 {
        return Err("fewer than 2 seeds to pair".into());
    }
    Ok(ma.into_iter().map(|(seed, v)| (v, mb[&seed])).collect())
}

/// The TOST of `first` − `second`: paired by seed when the seeds match, else Welch (saying why).
fn equivalence_test(
    a: &[(u64, f64)],
    b: &[(u64, f64)],
    names: (&str, &str),
    margin: f64,
    alpha: f64,
) -> Option<Tost> {
    let t = match pair_by_seed(a, b, names) {
        Ok(pairs) => {
            let d: Vec<f64> = pairs.iter().map(|(x, y)| x - y).collect();
            Tost {
                correlation: {
                    let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
                    pearson(&xs, &ys)
                },
                ..tost_paired(&d, margin, alpha)?
            }
        }
        Err(why) => {
            let va: Vec<f64> = a.iter().map(|p| p.1).collect();
            let vb: Vec<f64> = b.iter().map(|p| p.1).collect();
            Tost {
                method_note: Some(format!("Welch, not paired: {why}")),
                ..tost_welch(&va, &vb, margin, alpha)?
            }
        }
    };
    Some(Tost {
        first: names.0.into(),
        second: names.1.into(),
        ..t
    })
}

/// Summary of one schedule's runs, and their (seed, selected value) pairs.
fn summarise(ctx: &Ctx, name: &str, idx: &[usize]) -> Option<(ScheduleSummary, Vec<(u64, f64)>)> {
    let seeded: Vec<(u64, f64)> = idx
        .iter()
        .filter_map(|&i| ctx.sel[i].map(|s| (ctx.runs[i].seed, s.value)))
        .collect();
    let vals: Vec<f64> = seeded.iter().map(|p| p.1).collect();
    let m = mean(&vals)?;
    let sane: Vec<f64> = idx
        .iter()
        .filter(|&&i| !ctx.runs[i].diverged)
        .map(|&i| ctx.runs[i].steps as f64)
        .collect();
    let all: Vec<f64> = idx.iter().map(|&i| ctx.runs[i].steps as f64).collect();
    let mean_steps = mean(&sane).or_else(|| mean(&all))?;
    // The epochs any run of this schedule evaluated (not a dense range: epochs come from data).
    let epochs: std::collections::BTreeSet<u32> = idx
        .iter()
        .flat_map(|&i| ctx.runs[i].curve.iter().map(|p| p.epoch))
        .collect();
    // epoch → (sum of values, sum of steps, n)
    let mut acc: BTreeMap<u32, (f64, f64, usize)> = BTreeMap::new();
    for &i in idx {
        let r = ctx.runs[i];
        let mut last_finite: Option<(u32, u64)> = None;
        for p in &r.curve {
            if let Some(v) = p.value.filter(|v| v.is_finite()) {
                let e = acc.entry(p.epoch).or_default();
                *e = (e.0 + v, e.1 + p.step as f64, e.2 + 1);
                if last_finite.is_none_or(|(le, _)| p.epoch > le) {
                    last_finite = Some((p.epoch, p.step));
                }
            }
        }
        // A diverged run stays at the censor value after its last finite evaluation.
        if let (true, Some(s)) = (r.diverged, ctx.sel[i]) {
            let (after, step) = last_finite.map_or((None, 0), |(e, st)| (Some(e), st));
            for &epoch in epochs.iter().filter(|&&e| after.is_none_or(|a| e > a)) {
                let e = acc.entry(epoch).or_default();
                *e = (e.0 + s.value, e.1 + step as f64, e.2 + 1);
            }
        }
    }
    let mean_curve = acc
        .into_iter()
        .filter_map(|(epoch, (sv, ss, n))| {
            Some(EpochMean {
                epoch,
                mean: finite(sv / n as f64)?,
                mean_step: finite(ss / n as f64)?,
                n,
            })
        })
        .collect();
    let summary = ScheduleSummary {
        schedule: name.to_string(),
        n_runs: idx.len(),
        n_diverged: idx.iter().filter(|&&i| ctx.runs[i].diverged).count(),
        mean: m,
        interval: t_interval(&vals, ctx.opts.confidence),
        mean_steps,
        mean_curve,
    };
    Some((summary, seeded))
}

/// The largest gap between the mean curves of `schedules` over the epochs ≥ 1 at which every one
/// of them has a value (the first's epochs, in order; ties keep the earliest).
fn largest_gap(schedules: &[&ScheduleSummary]) -> Option<LargestGap> {
    let mut best: Option<LargestGap> = None;
    let epochs: Vec<u32> = schedules
        .first()?
        .mean_curve
        .iter()
        .map(|p| p.epoch)
        .filter(|&e| e >= 1)
        .collect();
    for e in epochs {
        let at: Option<Vec<(f64, &str)>> = schedules
            .iter()
            .map(|s| {
                let p = s.mean_curve.iter().find(|p| p.epoch == e)?;
                Some((p.mean, s.schedule.as_str()))
            })
            .collect();
        let Some(at) = at else { continue };
        let hi = at.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0))?;
        let lo = at.iter().copied().min_by(|a, b| a.0.total_cmp(&b.0))?;
        if best.as_ref().is_none_or(|b| hi.0 - lo.0 > b.gap) {
            best = Some(LargestGap {
                epoch: e,
                gap: hi.0 - lo.0,
                higher: hi.1.to_string(),
                lower: lo.1.to_string(),
            });
        }
    }
    best
}

/// A warning when increase-batch or hybrid grows B beyond N/10 in some run of the group: Smith
/// et al. grow B "up to about N/10, then decay ε"; the equivalence with decay-lr is argued for
/// B ≪ N (docs/science.md §2). Names the largest B/N per mode.
fn large_batch_warning(ctx: &Ctx, modes: &BTreeMap<&str, Vec<usize>>) -> Option<String> {
    let parts: Vec<String> = [INCREASE, HYBRID]
        .into_iter()
        .filter_map(|m| {
            let (b, n) = modes
                .get(m)?
                .iter()
                .map(|&i| {
                    let r = ctx.runs[i];
                    (r.max_batch_size.unwrap_or(r.batch_size), r.train_size)
                })
                .filter(|&(b, n)| b.saturating_mul(10) > n)
                .max_by(|x, y| (x.0 as f64 / x.1 as f64).total_cmp(&(y.0 as f64 / y.1 as f64)))?;
            Some(format!(
                "{m} grows B to {b} with N = {n}, beyond N/10 = {}",
                n as f64 / 10.0
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "{}: the equivalence with decay-lr is expected only for B ≪ N (Smith et al. 2017 \
             grow B to about N/10, then decay ε), so a difference here need not contradict it",
            parts.join("; ")
        )
    })
}

fn fit_group(ctx: &Ctx, name: &str, idx: &[usize]) -> Result<ScheduleGroupFit, String> {
    let mut modes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in idx {
        modes
            .entry(ctx.runs[i].schedule.as_str())
            .or_default()
            .push(i);
    }
    if modes.len() < 2 {
        return Err(format!(
            "one schedule mode ('{}'): nothing to compare",
            modes.keys().next().copied().unwrap_or("")
        ));
    }
    let mut schedules = Vec::new();
    let mut values: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
    for (mode, ix) in &modes {
        if let Some((s, v)) = summarise(ctx, mode, ix) {
            schedules.push(s);
            values.insert(mode, v);
        }
    }
    if schedules.len() < 2 {
        return Err("fewer than two schedule modes have runs with values".into());
    }
    let alpha = alpha_of(ctx.opts.confidence);
    let equivalence = match (values.get(INCREASE), values.get(DECAY)) {
        (Some(a), Some(b)) if a.len() >= 2 && b.len() >= 2 => {
            match equivalence_test(a, b, (INCREASE, DECAY), ctx.opts.equivalence_margin, alpha) {
                Some(t) => Outcome::Fitted(t),
                None => Outcome::skipped("the equivalence test is not defined on these values"),
            }
        }
        (Some(_), Some(_)) => Outcome::skipped(
            "fewer than 2 seeds for increase-batch or decay-lr: no equivalence test",
        ),
        _ => Outcome::skipped("the group lacks increase-batch or decay-lr: no equivalence test"),
    };
    let steps = |m: &str| {
        schedules
            .iter()
            .find(|s| s.schedule == m)
            .map(|s| s.mean_steps)
    };
    let update_ratios = [INCREASE, HYBRID]
        .into_iter()
        .filter_map(|num| {
            let ratio = finite(steps(num)? / steps(DECAY).filter(|d| *d > 0.0)?)?;
            Some(UpdateRatio {
                numerator: num.into(),
                denominator: DECAY.into(),
                ratio,
            })
        })
        .collect();
    let mode = |m: &str| schedules.iter().find(|s| s.schedule == m);
    let against_decay = |m: &str| largest_gap(&[mode(m)?, mode(DECAY)?]);
    Ok(ScheduleGroupFit {
        group: name.to_string(),
        largest_gap: against_decay(INCREASE),
        hybrid_gap: against_decay(HYBRID),
        largest_gap_all_modes: largest_gap(&schedules.iter().collect::<Vec<_>>()),
        large_batch_warning: large_batch_warning(ctx, &modes),
        schedules,
        equivalence,
        update_ratios,
    })
}

/// Schedules compared within each group.
pub(crate) fn fit_schedules(ctx: &Ctx) -> Outcome<SchedulesSection> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in ctx.runs.iter().enumerate() {
        groups.entry(r.schedule_group.as_str()).or_default().push(i);
    }
    let mut fitted = Vec::new();
    let mut skipped = Vec::new();
    for (name, idx) in &groups {
        match fit_group(ctx, name, idx) {
            Ok(g) => fitted.push(g),
            Err(reason) => skipped.push(SkippedItem {
                name: name.to_string(),
                reason,
            }),
        }
    }
    if fitted.is_empty() {
        return Outcome::skipped(if ctx.runs.is_empty() {
            "no runs to fit".to_string()
        } else {
            "no schedule group has two schedule modes with values: the sweep compares no schedules"
                .to_string()
        });
    }
    Outcome::Fitted(SchedulesSection {
        groups: fitted,
        skipped_groups: skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testdata::{Gauss, assert_json_finite, flat_run};
    use crate::fit::{FitOptions, RunInput, fit_all};

    fn schedule_runs(shift: f64) -> Vec<RunInput> {
        let noise = [0.004, -0.003, 0.001, -0.002, 0.0];
        let mut runs = Vec::new();
        for (mode, d, steps) in [
            (DECAY, 0.0, 78_200),
            (INCREASE, shift, 29_000),
            (HYBRID, 0.0, 40_000),
        ] {
            for (s, z) in noise.iter().enumerate() {
                let mut r = flat_run("g", 0.1, 50_000, 0.9, 128, s as u64, 0.94 + z + d, 4);
                r.run_id = format!("{mode}/{s}");
                r.schedule = mode.to_string();
                r.steps = steps;
                runs.push(r);
            }
        }
        runs
    }

    #[test]
    fn identical_schedules_are_equivalent_and_shifted_ones_are_not() {
        let opts = FitOptions::default(); // margin 0.01, α = 0.05
        let rep = fit_all(&schedule_runs(0.0), &opts);
        let g = &rep.schedules.fitted().unwrap().groups[0];
        let t = g.equivalence.fitted().unwrap();
        assert_eq!(t.verdict, Equivalence::Equivalent);
        // Every seed in both schedules: paired.
        assert_eq!((t.method, t.n_pairs), (TostMethod::Paired, Some(5)));
        assert!((t.dof - 4.0).abs() < 1e-12);
        assert_eq!(t.difference, 0.0);
        assert!(t.p_lower < 0.05 && t.p_upper < 0.05);
        assert!(t.interval.lo > -0.01 && t.interval.hi < 0.01);
        assert!((t.interval.level - 0.9).abs() < 1e-12);
        // Updates: 29,000 / 78,200 (docs/science.md §2 arithmetic) and 40,000 / 78,200.
        assert!((g.update_ratios[0].ratio - 29_000.0 / 78_200.0).abs() < 1e-12);
        assert_eq!(g.update_ratios[1].numerator, HYBRID);
        assert_eq!(g.largest_gap.as_ref().unwrap().gap, 0.0);
        assert_json_finite(&rep);

        let rep = fit_all(&schedule_runs(0.03), &opts); // 3 × margin
        let g = &rep.schedules.fitted().unwrap().groups[0];
        let t = g.equivalence.fitted().unwrap();
        assert_eq!(t.verdict, Equivalence::NotEquivalent);
        assert!((t.difference - 0.03).abs() < 1e-12);
        assert!(t.p_upper > 0.5, "{}", t.p_upper);
        let gap = g.largest_gap.as_ref().unwrap();
        assert!((gap.gap - 0.03).abs() < 1e-12);
        assert_eq!(gap.higher, INCREASE);
    }

    #[test]
    fn tost_hand_computed() {
        // a − b = 0.004, se = √(2·0.0001²·…): values chosen so var = 1e-4 each, n = 2.
        // a = {0.5, 0.5 + √2·0.01}, b likewise shifted by −0.004: se = √(1e-4/2·2) = 0.01,
        // dof = 2, t_lower = (0.004 + 0.01)/0.01 = 1.4, t_upper = (0.004 − 0.01)/0.01 = −0.6.
        let d = 2f64.sqrt() * 0.01;
        let t = tost_welch(&[0.5, 0.5 + d], &[0.496, 0.496 + d], 0.01, 0.05).unwrap();
        assert!((t.std_error - 0.01).abs() < 1e-12);
        assert!((t.dof - 2.0).abs() < 1e-9);
        // P(T_2 > 1.4) = 0.5·(1 − 1.4/√(2 + 1.96)) and P(T_2 < −0.6) = 0.5·(1 − 0.6/√2.36)
        // (closed form of the t CDF with 2 dof).
        let pl = 0.5 * (1.0 - 1.4 / (2.0f64 + 1.96).sqrt());
        let pu = 0.5 * (1.0 - 0.6 / 2.36f64.sqrt());
        assert!((t.p_lower - pl).abs() < 1e-9, "{} vs {pl}", t.p_lower);
        assert!((t.p_upper - pu).abs() < 1e-9, "{} vs {pu}", t.p_upper);
        assert_eq!(t.verdict, Equivalence::NotEquivalent);
        // One seed on a side: no test.
        assert!(tost_welch(&[0.5], &[0.5, 0.6], 0.01, 0.05).is_none());
        assert_eq!(t.method, TostMethod::Welch);
    }

    #[test]
    fn diverged_runs_stay_at_the_censor_value_in_the_mean_curve() {
        let mut runs = schedule_runs(0.0);
        // decay-lr seed 0 diverges after epoch 1: NaN from epoch 2 on.
        runs[0].diverged = true;
        for p in runs[0].curve.iter_mut().skip(2) {
            p.value = None;
        }
        let rep = fit_all(&runs, &FitOptions::default());
        let censor = rep.censor_value.unwrap(); // 0.1, the epoch-0 accuracy
        let g = &rep.schedules.fitted().unwrap().groups[0];
        let dl = g.schedules.iter().find(|s| s.schedule == DECAY).unwrap();
        assert_eq!(dl.n_diverged, 1);
        let e4 = dl.mean_curve.iter().find(|p| p.epoch == 4).unwrap();
        // Seeds 1–4 at 0.94 + noise, seed 0 at the censor value.
        let expected = (censor + 4.0 * 0.94 - 0.003 + 0.001 - 0.002 + 0.0) / 5.0;
        assert_eq!(e4.n, 5);
        assert!(
            (e4.mean - expected).abs() < 1e-12,
            "{} vs {expected}",
            e4.mean
        );
        assert!((dl.mean - expected).abs() < 1e-12);
    }

    #[test]
    fn one_seed_per_schedule_says_why_there_is_no_test() {
        let runs: Vec<_> = schedule_runs(0.0)
            .into_iter()
            .filter(|r| r.seed == 0)
            .collect();
        let rep = fit_all(&runs, &FitOptions::default());
        let g = &rep.schedules.fitted().unwrap().groups[0];
        assert!(
            g.equivalence
                .reason()
                .unwrap()
                .contains("fewer than 2 seeds")
        );
        assert_json_finite(&rep);
    }

    /// Runs of one group: per schedule (mode, level), `seeds` seeds whose final value is
    /// level + seed_effect[seed] + noise; curves are flat at that value from epoch 1.
    fn seeded_runs(
        modes: &[(&str, f64)],
        seed_effect: &[f64],
        noise: &[Vec<f64>],
    ) -> Vec<RunInput> {
        let mut runs = Vec::new();
        for (k, (mode, level)) in modes.iter().enumerate() {
            for (s, e) in seed_effect.iter().enumerate() {
                let v = level + e + noise[k][s];
                let mut r = flat_run("g", 0.05, 8000, 0.9, 32, s as u64, v, 4);
                r.run_id = format!("{mode}/{s}");
                r.schedule = mode.to_string();
                runs.push(r);
            }
        }
        runs
    }

    /// Regression: the largest gap was taken over every schedule of the group, so on
    /// sweeps/dont-decay.toml it reported constant against decay-lr (0.0412) while the claim is
    /// about increase-batch against decay-lr (~0.001).
    #[test]
    fn the_headline_gap_is_increase_batch_against_decay_lr_not_constant() {
        let zero = vec![vec![0.0; 3]; 4];
        let modes = [
            ("constant", 0.90),
            (DECAY, 0.94),
            (INCREASE, 0.941),
            (HYBRID, 0.943),
        ];
        let runs = seeded_runs(&modes, &[0.0, 0.0, 0.0], &zero);
        let rep = fit_all(&runs, &FitOptions::default());
        let g = &rep.schedules.fitted().unwrap().groups[0];
        let gap = g.largest_gap.as_ref().unwrap();
        assert_eq!((gap.higher.as_str(), gap.lower.as_str()), (INCREASE, DECAY));
        assert!((gap.gap - 0.001).abs() < 1e-12, "{gap:?}");
        let hy = g.hybrid_gap.as_ref().unwrap();
        assert_eq!((hy.higher.as_str(), hy.lower.as_str()), (HYBRID, DECAY));
        assert!((hy.gap - 0.003).abs() < 1e-12, "{hy:?}");
        let all = g.largest_gap_all_modes.as_ref().unwrap();
        assert_eq!(
            (all.higher.as_str(), all.lower.as_str()),
            (HYBRID, "constant")
        );
        assert!((all.gap - 0.043).abs() < 1e-12, "{all:?}");
        let text = crate::fit::render_tables(&rep);
        assert!(
            text.contains("largest per-epoch gap increase-batch vs decay-lr: 0.0010 at epoch 1"),
            "{text}"
        );
        // Without increase-batch there is no headline gap, only the context.
        let runs: Vec<_> = runs
            .into_iter()
            .filter(|r| r.schedule != INCREASE)
            .collect();
        let rep = fit_all(&runs, &FitOptions::default());
        let g = &rep.schedules.fitted().unwrap().groups[0];
        assert!(g.largest_gap.is_none());
        assert!(g.hybrid_gap.is_some() && g.largest_gap_all_modes.is_some());
        assert_json_finite(&rep);
    }

    /// Runs of a group with the same seed share initial weights and data order: on
    /// sweeps/dont-decay.toml the final accuracies of increase-batch and decay-lr correlate at
    /// r = 0.99 across seeds, and Welch's 90% interval [−0.0053, 0.0044] was 4× the paired
    /// [−0.0015, 0.0006]. Planted: a seed effect of sd 0.02 shared by both schedules, independent
    /// noise of sd 0.0005, no true difference, margin 0.01.
    #[test]
    fn a_shared_seed_effect_is_equivalent_paired_but_not_by_welch() {
        let mut g = Gauss::new(7);
        let seeds = 4;
        let effect: Vec<f64> = (0..seeds).map(|_| 0.02 * g.next()).collect();
        let noise: Vec<Vec<f64>> = (0..2)
            .map(|_| (0..seeds).map(|_| 0.0005 * g.next()).collect())
            .collect();
        let runs = seeded_runs(&[(DECAY, 0.75), (INCREASE, 0.75)], &effect, &noise);
        let rep = fit_all(&runs, &FitOptions::default());
        let t = rep.schedules.fitted().unwrap().groups[0]
            .equivalence
            .fitted()
            .unwrap()
            .clone();
        assert_eq!(t.method, TostMethod::Paired);
        assert_eq!(t.n_pairs, Some(seeds));
        assert!((t.dof - 3.0).abs() < 1e-12);
        assert!(t.correlation.unwrap() > 0.95, "{:?}", t.correlation);
        assert_eq!(t.verdict, Equivalence::Equivalent, "{t:?}");
        assert!(t.interval.lo > -0.01 && t.interval.hi < 0.01);
        // The same values, unpaired: the seed effect swamps the 90% interval.
        let vals = |m: &str| -> Vec<f64> {
            runs.iter()
                .filter(|r| r.schedule == m)
                .map(|r| r.curve.last().unwrap().value.unwrap())
                .collect()
        };
        let w = tost_welch(&vals(INCREASE), &vals(DECAY), 0.01, 0.05).unwrap();
        assert_eq!(w.verdict, Equivalence::NotEquivalent, "{w:?}");
        assert!((w.difference - t.difference).abs() < 1e-12);
        assert!(w.interval.hi - w.interval.lo > 4.0 * (t.interval.hi - t.interval.lo));
        let text = crate::fit::render_tables(&rep);
        assert!(text.contains("paired over 4 seeds"), "{text}");

        // A seed missing on one side: Welch, and the report says why.
        let partial: Vec<_> = runs
            .iter()
            .filter(|r| !(r.schedule == INCREASE && r.seed == 3))
            .cloned()
            .collect();
        let rep = fit_all(&partial, &FitOptions::default());
        let t = rep.schedules.fitted().unwrap().groups[0]
            .equivalence
            .fitted()
            .unwrap()
            .clone();
        assert_eq!(
            (t.method, t.n_pairs, t.correlation),
            (TostMethod::Welch, None, None)
        );
        let note = t.method_note.as_deref().unwrap();
        assert!(
            note.contains("seed(s) 3 have no increase-batch run"),
            "{note}"
        );
        let json = serde_json::to_value(&rep.schedules).unwrap();
        assert_eq!(json["groups"][0]["equivalence"]["method"], "welch");
        assert_json_finite(&rep);
    }

    /// With independent noise (no seed effect) the paired TOST keeps its size: at a true
    /// difference of exactly +margin (equivalence false), it declares equivalence in at most
    /// α + 3 binomial sd of 2000 simulated groups (8 seeds, sd 0.01 per run, margin 0.01).
    #[test]
    fn the_paired_tost_keeps_its_size_under_independent_noise() {
        let (reps, seeds, alpha, margin) = (2000, 8, 0.05, 0.01);
        let mut g = Gauss::new(2024);
        let mut equivalent = 0;
        for _ in 0..reps {
            let d: Vec<f64> = (0..seeds)
                .map(|_| (margin + 0.01 * g.next()) - 0.01 * g.next())
                .collect();
            let t = tost_paired(&d, margin, alpha).unwrap();
            equivalent += usize::from(t.verdict == Equivalence::Equivalent);
        }
        let rate = equivalent as f64 / reps as f64;
        let sd = (alpha * (1.0 - alpha) / reps as f64).sqrt();
        assert!(rate <= alpha + 3.0 * sd, "size {rate}");
        // Not conservative either: at 8 seeds the lower test almost always rejects, so the
        // rate is the upper test's α.
        assert!(rate >= alpha - 3.0 * sd, "size {rate}");
    }

    /// Smith et al. grow B to about N/10 and then decay ε: a growing batch beyond N/10 gets a
    /// warning (not a refusal).
    #[test]
    fn a_batch_grown_beyond_a_tenth_of_n_is_warned_about() {
        let zero = vec![vec![0.0; 2]; 2];
        let mut runs = seeded_runs(&[(DECAY, 0.75), (INCREASE, 0.75)], &[0.0, 0.001], &zero);
        for r in runs.iter_mut().filter(|r| r.schedule == INCREASE) {
            r.max_batch_size = Some(512); // 32 → 128 → 512 of N = 8000: below N/10
        }
        let rep = fit_all(&runs, &FitOptions::default());
        assert!(
            rep.schedules.fitted().unwrap().groups[0]
                .large_batch_warning
                .is_none()
        );
        for r in runs.iter_mut().filter(|r| r.schedule == INCREASE) {
            r.max_batch_size = Some(2048);
        }
        let rep = fit_all(&runs, &FitOptions::default());
        let g = &rep.schedules.fitted().unwrap().groups[0];
        let w = g.large_batch_warning.as_deref().unwrap();
        assert!(
            w.starts_with("increase-batch grows B to 2048 with N = 8000, beyond N/10 = 800"),
            "{w}"
        );
        // Still fitted: a warning, not a refusal.
        assert!(g.equivalence.fitted().is_some());
        assert!(crate::fit::render_tables(&rep).contains("warning: increase-batch grows B"));
    }
}
