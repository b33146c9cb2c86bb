//! Figure 6: training curves of a few chosen runs: training and test loss per epoch (accuracies
//! when no loss was stored). The runs are chosen by `report::choose_curve_runs` (e.g. the
//! smallest, the optimal and the largest batch size of the best cell), so the figure shows how
//! the curves differ on either side of B_opt.

use serde::{Deserialize, Serialize};

use super::SkipReason;
use super::chart::{Axis, Figure, Layer, Panel, Scale};
use super::style::{series_color, series_dashed, series_shape};

/// One evaluation of a run, with every stored series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub epoch: u32,
    /// Parameter updates done by the end of this epoch.
    pub step: u64,
    pub train_loss: Option<f64>,
    pub test_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub test_acc: Option<f64>,
}

/// The full series of one chosen run, with its legend label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingCurve {
    pub run_id: String,
    pub label: String,
    pub points: Vec<CurvePoint>,
}

/// One series a panel can show.
struct Series {
    title: &'static str,
    axis: &'static str,
    get: fn(&CurvePoint) -> Option<f64>,
    loss: bool,
}

const SERIES: [Series; 4] = [
    Series {
        title: "training loss",
        axis: "training loss (cross-entropy, nats)",
        get: |p| p.train_loss,
        loss: true,
    },
    Series {
        title: "test loss",
        axis: "test loss (cross-entropy, nats)",
        get: |p| p.test_loss,
        loss: true,
    },
    Series {
        title: "training accuracy",
        axis: "training accuracy (fraction correct)",
        get: |p| p.train_acc,
        loss: false,
    },
    Series {
        title: "test accuracy",
        axis: "test accuracy (fraction correct)",
        get: |p| p.test_acc,
        loss: false,
    },
];

fn finite_values(curves: &[TrainingCurve], s: &Series) -> Vec<f64> {
    curves
        .iter()
        .flat_map(|c| c.points.iter().filter_map(s.get))
        .filter(|v| v.is_finite())
        .collect()
}

/// Prepares figure 6: one panel per stored loss (training, test), or per accuracy when no loss
/// was stored; one colour per run, the same in both panels. Losses use a log axis when every
/// value is positive (a diverging run's loss spans decades). `why` says how the runs were
/// chosen (`report::curve_choice_note`); it opens the footnote.
pub fn prepare_training_curves(curves: &[TrainingCurve], why: &str) -> Result<Figure, SkipReason> {
    if curves.is_empty() {
        return Err("no runs were chosen for training curves (no run has a value)".into());
    }
    let has = |s: &Series| !finite_values(curves, s).is_empty();
    let chosen: Vec<&Series> = if SERIES[..2].iter().any(has) {
        SERIES[..2].iter().filter(|s| has(s)).collect()
    } else {
        SERIES[2..].iter().filter(|s| has(s)).collect()
    };
    if chosen.is_empty() {
        return Err("the chosen runs stored no per-epoch loss or accuracy".into());
    }
    let mut panels = Vec::new();
    for s in &chosen {
        let values = finite_values(curves, s);
        let scale = if s.loss && values.iter().all(|&v| v > 0.0) {
            Scale::Log10
        } else {
            Scale::Linear
        };
        let mut y = Axis::new(s.axis, scale);
        if !s.loss {
            y = y.bounded(0.0, 1.0);
        }
        let mut p = Panel::new(
            Axis::new("epoch (passes over the training set)", Scale::Linear),
            y,
        );
        p.title = Some(s.title.to_string());
        for (i, c) in curves.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter_map(|pt| Some((pt.epoch as f64, (s.get)(pt)?)))
                .collect();
            let colour = series_color(i);
            p.layers.push(
                Layer::line(format!("line/{}", c.run_id), colour, pts.clone())
                    .dashed(series_dashed(i))
                    .labelled(c.label.clone()),
            );
            p.layers.push(
                Layer::markers(
                    format!("pts/{}", c.run_id),
                    colour,
                    pts,
                    series_shape(i),
                    true,
                )
                .sized(4),
            );
        }
        panels.push(p);
    }
    let what = chosen
        .iter()
        .map(|s| s.title)
        .collect::<Vec<_>>()
        .join(" and ");
    Ok(Figure {
        title: format!("Training curves: {what} per epoch"),
        columns: panels.len(),
        panels,
        footnote: Some(
            format!("{why} One run per line; a line that stops early diverged or was cut short.")
                .trim_start()
                .to_string(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::chart::Scale;
    use crate::plot::draw::draw_figure;
    use crate::plot::testdata::assert_png;

    fn curve(id: &str, scale: f64, diverge: bool) -> TrainingCurve {
        TrainingCurve {
            run_id: id.into(),
            label: format!("run {id}"),
            points: (0..10)
                .map(|e| CurvePoint {
                    epoch: e,
                    step: 10 * e as u64,
                    train_loss: Some(scale * (2.3 / (1.0 + e as f64)))
                        .filter(|_| !diverge || e < 3),
                    test_loss: Some(scale * (2.3 / (1.0 + 0.8 * e as f64)) + 0.1)
                        .filter(|_| !diverge || e < 3),
                    train_acc: None,
                    test_acc: Some(0.1 + 0.08 * e as f64),
                })
                .collect(),
        }
    }

    #[test]
    fn losses_per_run_in_two_panels() {
        let curves = vec![curve("a", 1.0, false), curve("b", 2.0, true)];
        let fig = prepare_training_curves(&curves, "").unwrap();
        assert_eq!(fig.panels.len(), 2);
        assert_eq!(fig.panels[0].y.scale, Scale::Log10);
        let a = fig.panels[1].layer("line/a").unwrap().xy();
        assert_eq!(a.len(), 10);
        assert!((a[2].1 - (2.3 / 2.6 + 0.1)).abs() < 1e-12);
        assert_eq!(fig.panels[0].layer("line/b").unwrap().xy().len(), 3);
        assert_eq!(fig.legend().len(), 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig6.png");
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
    }

    #[test]
    fn accuracies_when_no_loss_and_a_reason_when_nothing() {
        let mut c = curve("a", 1.0, false);
        for p in &mut c.points {
            p.train_loss = None;
            p.test_loss = None;
        }
        let fig = prepare_training_curves(std::slice::from_ref(&c), "").unwrap();
        assert_eq!(fig.panels.len(), 1);
        assert_eq!(fig.panels[0].title.as_deref(), Some("test accuracy"));
        for p in &mut c.points {
            p.test_acc = Some(f64::NAN);
        }
        assert!(prepare_training_curves(&[c], "").is_err());
        assert!(prepare_training_curves(&[], "").is_err());
    }
}
