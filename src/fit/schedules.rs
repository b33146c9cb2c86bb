//! Schedules: decay the learning rate or increase the batch size (Smith, Kindermans, Ying & Le
//! 2017, arXiv 1711.00489; docs/science.md §2).
//!
//! Within each `schedule_group` that has at least two schedule modes: per schedule, the selected
//! metric's seed mean and t interval, the updates used (mean `steps`), the mean curve per epoch;
//! the largest gap between the schedules' mean curves (epochs ≥ 1); a two-one-sided-tests (TOST)
//! equivalence test of increase-batch against decay-lr (Schuirmann 1987) with Welch's standard
//! error and degrees of freedom: equivalent iff both one-sided p-values are below α, i.e. iff the
//! (1 − 2α) interval of the difference lies inside ±margin; and the ratio of updates
//! increase-batch/decay-lr and hybrid/decay-lr (the paper reports ~29,000/~80,000 on CIFAR-10).
//!
//! Diverged runs count at the censor value, both in the means and, after their last finite epoch,
//! in the mean curves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bopt::SkippedItem;
use super::stats::{alpha_of, finite, mean, sample_var, t_cdf, t_interval, t_quantile};
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

/// The largest per-epoch gap between the schedules' mean curves.
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

/// Two one-sided tests of `first` − `second` within ±margin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tost {
    pub first: String,
    pub second: String,
    pub difference: f64,
    pub std_error: f64,
    /// Welch–Satterthwaite degrees of freedom.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_gap: Option<LargestGap>,
    pub equivalence: Outcome<Tost>,
    pub update_ratios: Vec<UpdateRatio>,
}

/// The schedules section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedulesSection {
    pub groups: Vec<ScheduleGroupFit>,
    pub skipped_groups: Vec<SkippedItem>,
}

/// TOST with Welch's t (see the module doc). Needs ≥ 2 values on each side.
pub(crate) fn tost(a: &[f64], b: &[f64], margin: f64, alpha: f64) -> Option<Tost> {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (v1, v2) = (sample_var(a)? / n1, sample_var(b)? / n2);
    let diff = mean(a)? - mean(b)?;
    let se = (v1 + v2).sqrt();
    let dof = if se > 0.0 {
        (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0))
    } else {
        n1 + n2 - 2.0
    };
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

/// Summary of one schedule's runs.
fn summarise(ctx: &Ctx, name: &str, idx: &[usize]) -> Option<(ScheduleSummary, Vec<f64>)> {
    let vals: Vec<f64> = idx
        .iter()
        .filter_map(|&i| ctx.sel[i].map(|s| s.value))
        .collect();
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
    Some((summary, vals))
}

fn largest_gap(schedules: &[ScheduleSummary]) -> Option<LargestGap> {
    let mut best: Option<LargestGap> = None;
    let epochs: Vec<u32> = schedules[0]
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
    let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
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
            match tost(a, b, ctx.opts.equivalence_margin, alpha) {
                Some(t) => Outcome::Fitted(Tost {
                    first: INCREASE.into(),
                    second: DECAY.into(),
                    ..t
                }),
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
    Ok(ScheduleGroupFit {
        group: name.to_string(),
        largest_gap: largest_gap(&schedules),
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
    use crate::fit::testdata::{assert_json_finite, flat_run};
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
        let t = tost(&[0.5, 0.5 + d], &[0.496, 0.496 + d], 0.01, 0.05).unwrap();
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
        assert!(tost(&[0.5], &[0.5, 0.6], 0.01, 0.05).is_none());
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
}
