//! Figure 5: "don't decay the learning rate, increase the batch size" (Smith, Kindermans, Ying
//! & Le 2017, arXiv 1711.00489): the metric against epochs and against parameter updates, one
//! line per schedule. Equal per-epoch curves with fewer updates for increase-batch is the claim.
//!
//! One row per schedule group (at most [`MAX_GROUPS`]); each schedule keeps its colour in every
//! row. A row has two panels, and a third when every row shown has decay-lr and increase-batch
//! or hybrid: their per-epoch difference from decay-lr beside the equivalence margin, since on
//! the metric's own scale curves 0.001 apart are one line.

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
    let prefix = |g: &ScheduleGroupFit| {
        if several {
            format!("{}: ", g.group)
        } else {
            String::new()
        }
    };
    let mut differences: Vec<Option<Panel>> = sec
        .groups
        .iter()
        .take(MAX_GROUPS)
        .map(|g| difference_panel(g, &prefix(g), fit))
        .collect();
    let with_difference = differences.iter().all(Option::is_some);
    let mut panels = Vec::new();
    let mut notes = Vec::new();
    for (g, difference) in sec.groups.iter().zip(differences.iter_mut()) {
        let prefix = prefix(g);
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
        if with_difference && let Some(diff) = difference.take() {
            panels.push(diff);
        }
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
    let difference_note = if with_difference {
        format!(
            " Right: each schedule's seed mean minus decay-lr's, per epoch from 1, with the \
             equivalence margin ±{} dashed.",
            format::sig(fit.options.equivalence_margin, 3)
        )
    } else {
        String::new()
    };
    Ok(Figure {
        title: "Schedules: decay ε or increase B (Smith et al. 2017)".into(),
        panels,
        columns: if with_difference { 3 } else { 2 },
        footnote: Some(format!(
            "Lines: seed means per epoch (diverged runs at the worst value).{difference_note} {}",
            notes.join(" ")
        )),
    })
}

/// The schedules compared with decay-lr in the difference panel: the paper's two.
const AGAINST_DECAY: [&str; 2] = ["increase-batch", "hybrid"];

/// Increase-batch's and hybrid's per-epoch seed mean minus decay-lr's (epochs ≥ 1 where both
/// have a finite value), with the TOST's ±margin; `None` when the group lacks decay-lr or both
/// of the others.
fn difference_panel(g: &ScheduleGroupFit, prefix: &str, fit: &FitReport) -> Option<Panel> {
    let decay = g.schedules.iter().find(|s| s.schedule == "decay-lr")?;
    let at = |epoch: u32| {
        decay
            .mean_curve
            .iter()
            .find(|p| p.epoch == epoch)
            .map(|p| p.mean)
            .filter(|m| m.is_finite())
    };
    let mut panel = Panel::new(
        Axis::new("epoch (passes over the training set)", Scale::Linear),
        Axis::new(
            format!(
                "minus decay-lr ({})",
                labels::metric_name(fit.options.metric)
            ),
            Scale::Linear,
        ),
    );
    panel.title = Some(format!("{prefix}difference from decay-lr"));
    let mut any = false;
    for s in g
        .schedules
        .iter()
        .filter(|s| AGAINST_DECAY.contains(&s.schedule.as_str()))
    {
        let pts: Vec<(f64, f64)> = s
            .mean_curve
            .iter()
            .filter(|p| p.epoch >= 1 && p.mean.is_finite())
            .filter_map(|p| Some((f64::from(p.epoch), p.mean - at(p.epoch)?)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        any = true;
        let colour = schedule_colour(&s.schedule, &[]);
        panel.layers.push(
            Layer::line(format!("diff/{}", s.schedule), colour, pts.clone())
                .labelled(format!("{} − decay-lr", s.schedule)),
        );
        panel.layers.push(
            Layer::markers(
                format!("diff-pts/{}", s.schedule),
                colour,
                pts,
                Shape::Circle,
                true,
            )
            .sized(4),
        );
    }
    if !any {
        return None;
    }
    let margin = fit.options.equivalence_margin;
    let grey = super::style::Rgb::GREY;
    panel.layers.push(
        Layer::hline("margin/upper", grey, margin)
            .setting_range()
            .labelled(format!("equivalence margin ±{}", format::sig(margin, 3))),
    );
    panel
        .layers
        .push(Layer::hline("margin/lower", grey, -margin).setting_range());
    panel.layers.push(
        Layer::hline("zero", grey, 0.0)
            .dashed(false)
            .setting_range(),
    );
    Some(panel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::chart::LayerKind;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::{self, assert_png};

    #[test]
    fn one_line_per_schedule_against_epochs_and_updates() {
        let (_, fit) = testdata::synthetic();
        let sec = fit.schedules.fitted().unwrap();
        let fig = prepare_schedules(&fit).unwrap();
        assert_eq!((fig.panels.len(), fig.columns), (3, 3));
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
        assert!(foot.contains("equivalence margin ±0.01"), "{foot}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig5.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }

    /// The audit: on the metric's own axis curves 0.001 apart are one line, so the claim (equal
    /// per-epoch curves) could not be seen. The third panel is each schedule minus decay-lr,
    /// against the equivalence margin.
    #[test]
    fn the_third_panel_is_the_difference_from_decay_lr_within_the_margin() {
        let (_, fit) = testdata::synthetic();
        let g = &fit.schedules.fitted().unwrap().groups[0];
        let fig = prepare_schedules(&fit).unwrap();
        let diff = &fig.panels[2];
        let curve = |name: &str| {
            &g.schedules
                .iter()
                .find(|s| s.schedule == name)
                .unwrap()
                .mean_curve
        };
        let decay = curve("decay-lr");
        let inc = diff.layer("diff/increase-batch").unwrap().xy();
        assert!(!inc.is_empty());
        for &(x, y) in inc {
            let e = x as u32;
            let a = curve("increase-batch")
                .iter()
                .find(|p| p.epoch == e)
                .unwrap();
            let b = decay.iter().find(|p| p.epoch == e).unwrap();
            assert!(e >= 1);
            assert_eq!(y, a.mean - b.mean);
        }
        // Only the paper's two are compared; constant and decay-lr itself are not drawn.
        assert!(diff.layer("diff/constant").is_none() && diff.layer("diff/decay-lr").is_none());
        let m = fit.options.equivalence_margin;
        for (key, y) in [("margin/upper", m), ("margin/lower", -m), ("zero", 0.0)] {
            match diff.layer(key).unwrap().kind {
                LayerKind::HLine { y: at, .. } => assert_eq!(at, y, "{key}"),
                ref other => panic!("{key}: {other:?}"),
            }
        }
        // A group without decay-lr keeps two panels.
        let mut no_decay = fit.clone();
        if let Outcome::Fitted(sec) = &mut no_decay.schedules {
            for g in &mut sec.groups {
                g.schedules.retain(|s| s.schedule != "decay-lr");
            }
        }
        let fig = prepare_schedules(&no_decay).unwrap();
        assert_eq!((fig.panels.len(), fig.columns), (2, 2));
        assert!(!fig.footnote.unwrap().contains("equivalence margin ±"));
    }
}
