//! Figure 5: "don't decay the learning rate, increase the batch size" (Smith, Kindermans, Ying
//! & Le 2017, arXiv 1711.00489): the metric against epochs and against parameter updates, one
//! line per schedule. Equal per-epoch curves with fewer updates for increase-batch is the claim.
//!
//! One row of two panels per schedule group (at most [`MAX_GROUPS`]); each schedule keeps its
//! colour in every row.

use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::labels;
use super::style::{Shape, series_color};
use super::{SkipReason, format};
use crate::fit::{Equivalence, FitReport, LargestGap, Outcome, ScheduleGroupFit};

/// At most this many groups (rows); the rest are in the table.
pub const MAX_GROUPS: usize = 3;

/// A schedule's colour: the paper's three modes fixed, others after them.
pub fn schedule_colour(name: &str, others: &[&str]) -> super::style::Rgb {
    match name {
        "decay-lr" => series_color(0),
        "increase-batch" => series_color(1),
        "hybrid" => series_color(2),
        "constant" => series_color(6),
        _ => series_color(3 + others.iter().position(|o| *o == name).unwrap_or(0)),
    }
}

/// One sentence on a group's equivalence test and update ratios.
pub fn group_summary(g: &ScheduleGroupFit) -> String {
    let tost = match &g.equivalence {
        Outcome::Fitted(t) => format!(
            "{} − {} = {} ({} interval {}, margin ±{}, {}): {}",
            t.first,
            t.second,
            format::sig(t.difference, 3),
            format::percent(t.interval.level, 0),
            format::interval(&t.interval, |v| format::sig(v, 3)),
            format::sig(t.margin, 3),
            t.method_description(),
            match t.verdict {
                Equivalence::Equivalent => "equivalent",
                Equivalence::NotEquivalent => "not shown equivalent",
            }
        ),
        Outcome::Skipped { reason } => format!("no equivalence test ({reason})"),
    };
    let ratios: Vec<String> = g
        .update_ratios
        .iter()
        .map(|r| {
            format!(
                "{}/{} updates = {}",
                r.numerator,
                r.denominator,
                format::sig(r.ratio, 3)
            )
        })
        .collect();
    if ratios.is_empty() {
        tost
    } else {
        format!("{tost}; {}", ratios.join(", "))
    }
}

/// Sentences on a group's per-epoch gaps: increase-batch against decay-lr (the claim), hybrid
/// against decay-lr, every mode (context, when it names another pair), then the large-batch
/// warning. Each ends with a full stop.
pub fn gap_sentences(g: &ScheduleGroupFit) -> Vec<String> {
    let say = |what: &str, gap: &LargestGap| {
        format!(
            "Largest gap between the per-epoch curves of {what}: {} at epoch {} ({} above {}).",
            format::sig(gap.gap, 3),
            gap.epoch,
            gap.higher,
            gap.lower
        )
    };
    let mut out = Vec::new();
    if let Some(gap) = &g.largest_gap {
        out.push(say("increase-batch and decay-lr", gap));
    }
    if let Some(gap) = &g.hybrid_gap {
        out.push(say("hybrid and decay-lr", gap));
    }
    if let Some(gap) = &g.largest_gap_all_modes
        && Some(gap) != g.largest_gap.as_ref()
        && Some(gap) != g.hybrid_gap.as_ref()
    {
        out.push(say("any two modes (context, not the claim)", gap));
    }
    if let Some(w) = &g.large_batch_warning {
        out.push(format!("Warning: {w}."));
    }
    out
}

/// Prepares figure 5 from the schedules section.
pub fn prepare_schedules(fit: &FitReport) -> Result<Figure, SkipReason> {
    let sec = fit.schedules.fitted().ok_or_else(|| {
        format!(
            "no schedule comparison: {}",
            fit.schedules.reason().unwrap_or("skipped")
        )
    })?;
    if sec.groups.is_empty() {
        return Err("no schedule group compares two schedules".into());
    }
    let mut others: Vec<&str> = sec
        .groups
        .iter()
        .flat_map(|g| g.schedules.iter().map(|s| s.schedule.as_str()))
        .filter(|s| !matches!(*s, "decay-lr" | "increase-batch" | "hybrid" | "constant"))
        .collect();
    others.sort();
    others.dedup();
    let several = sec.groups.len() > 1;
    let mut panels = Vec::new();
    let mut notes = Vec::new();
    for g in sec.groups.iter().take(MAX_GROUPS) {
        let prefix = if several {
            format!("{}: ", g.group)
        } else {
            String::new()
        };
        let mut by_epoch = Panel::new(
            Axis::new("epoch (passes over the training set)", Scale::Linear),
            labels::metric_axis_per_epoch(fit),
        );
        by_epoch.title = Some(format!("{prefix}per epoch"));
        let mut by_step = Panel::new(
            Axis::new("parameter updates (steps)", Scale::Log10),
            labels::metric_axis_per_epoch(fit),
        );
        by_step.title = Some(format!("{prefix}per parameter update"));
        for s in &g.schedules {
            let colour = schedule_colour(&s.schedule, &others);
            let epochs: Vec<(f64, f64)> = s
                .mean_curve
                .iter()
                .map(|p| (p.epoch as f64, p.mean))
                .collect();
            let steps: Vec<(f64, f64)> =
                s.mean_curve.iter().map(|p| (p.mean_step, p.mean)).collect();
            for (panel, pts, axis) in [
                (&mut by_epoch, epochs, "epoch"),
                (&mut by_step, steps, "step"),
            ] {
                panel.layers.push(
                    Layer::line(format!("{axis}/{}", s.schedule), colour, pts.clone())
                        .labelled(s.schedule.clone()),
                );
                panel.layers.push(
                    Layer::markers(
                        format!("{axis}-pts/{}", s.schedule),
                        colour,
                        pts,
                        Shape::Circle,
                        true,
                    )
                    .sized(4),
                );
            }
        }
        panels.push(by_epoch);
        panels.push(by_step);
        notes.push(format!("{prefix}{}.", group_summary(g)));
        // The headline gap and the warning; the rest is in the table.
        if let Some(gap) = gap_sentences(g).first()
            && g.largest_gap.is_some()
        {
            notes.push(gap.clone());
        }
        if let Some(w) = &g.large_batch_warning {
            notes.push(format!("Warning: {w}."));
        }
    }
    if sec.groups.len() > MAX_GROUPS {
        notes.push(format!(
            "Showing {MAX_GROUPS} of {} groups; all are in the table.",
            sec.groups.len()
        ));
    }
    Ok(Figure {
        title: "Schedules: decay ε or increase B (Smith et al. 2017)".into(),
        panels,
        columns: 2,
        footnote: Some(format!(
            "Lines: seed means per epoch (diverged runs at the worst value). {}",
            notes.join(" ")
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn one_line_per_schedule_against_epochs_and_updates() {
        let (_, fit) = testdata::synthetic();
        let sec = fit.schedules.fitted().unwrap();
        let fig = prepare_schedules(&fit).unwrap();
        assert_eq!(fig.panels.len(), 2);
        let g = &sec.groups[0];
        for s in &g.schedules {
            let e = fig.panels[0]
                .layer(&format!("epoch/{}", s.schedule))
                .unwrap();
            let u = fig.panels[1]
                .layer(&format!("step/{}", s.schedule))
                .unwrap();
            assert_eq!(e.xy().len(), s.mean_curve.len());
            for ((pe, pu), m) in e.xy().iter().zip(u.xy()).zip(&s.mean_curve) {
                assert_eq!(*pe, (m.epoch as f64, m.mean));
                assert_eq!(*pu, (m.mean_step, m.mean));
            }
            assert_eq!(e.color, u.color);
        }
        // increase-batch finishes with fewer updates than decay-lr (the planted schedule).
        let last = |k: &str| fig.panels[1].layer(k).unwrap().xy().last().unwrap().0;
        assert!(last("step/increase-batch") < last("step/decay-lr"));
        let foot = fig.footnote.as_deref().unwrap();
        assert!(foot.contains("updates ="));
        // The headline gap is increase-batch against decay-lr; the planted increase-batch
        // reaches B = 3200 of N = 4000, beyond N/10.
        assert!(
            foot.contains("per-epoch curves of increase-batch and decay-lr"),
            "{foot}"
        );
        assert!(
            foot.contains("Warning: increase-batch grows B to 3200 with N = 4000"),
            "{foot}"
        );
        assert!(foot.contains("paired over"), "{foot}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig5.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }
}
