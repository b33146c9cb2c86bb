//! The plain description of a figure that every `prepare_*` returns and [`super::draw`]
//! renders: panels of lines, bands, markers, error bars and reference lines, all in data units
//! (the pure geometry that turns them into axis coordinates is in [`super::geometry`]).

use super::style::{Rgb, Shape};

/// How an axis maps data to the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Decades: learning rates, N, steps, examples, g, errors.
    Log10,
    /// Powers of two: batch sizes, whose grids are log₂.
    Log2,
}

impl Scale {
    /// Data → axis coordinate; `None` for values the axis cannot show (non-finite, or ≤ 0 on a
    /// log axis).
    pub fn forward(self, v: f64) -> Option<f64> {
        match self {
            _ if !v.is_finite() => None,
            Scale::Linear => Some(v),
            _ if v <= 0.0 => None,
            Scale::Log10 => Some(v.log10()),
            Scale::Log2 => Some(v.log2()),
        }
    }

    /// Axis coordinate → data.
    pub fn inverse(self, t: f64) -> f64 {
        match self {
            Scale::Linear => t,
            Scale::Log10 => 10f64.powf(t),
            Scale::Log2 => t.exp2(),
        }
    }

    pub fn is_log(self) -> bool {
        self != Scale::Linear
    }
}

/// One axis: its description (with units) and scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    /// Hard limits in data units (e.g. [0, 1] for an accuracy): the range never goes beyond.
    pub bounds: Option<(f64, f64)>,
}

impl Axis {
    pub fn new(label: impl Into<String>, scale: Scale) -> Self {
        Axis {
            label: label.into(),
            scale,
            bounds: None,
        }
    }

    pub fn bounded(mut self, lo: f64, hi: f64) -> Self {
        self.bounds = Some((lo, hi));
        self
    }
}

/// One error bar: vertical bars stand at x = `at` from y = `lo` to `hi`; horizontal ones at
/// y = `at` from x = `lo` to `hi`. An open end is drawn as an arrow pointing away from the bar
/// instead of a cap: the interval says nothing about that side (an estimate censored at the
/// grid's edge is only a bound). An end the panel's frame cuts is drawn as an arrow too.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub at: f64,
    pub lo: f64,
    pub hi: f64,
    pub open_lo: bool,
    pub open_hi: bool,
}

impl Bar {
    /// A closed bar from `lo` to `hi` at `at`.
    pub fn new(at: f64, lo: f64, hi: f64) -> Self {
        Bar {
            at,
            lo,
            hi,
            open_lo: false,
            open_hi: false,
        }
    }

    /// Open towards the low end, the high end, both or neither.
    pub fn opened(mut self, lo: bool, hi: bool) -> Self {
        self.open_lo = lo;
        self.open_hi = hi;
        self
    }
}

/// What a layer draws.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// A polyline through `points` in order; invalid points break it.
    Line {
        points: Vec<(f64, f64)>,
        width: u32,
        dashed: bool,
    },
    /// A translucent band between `lo` and `hi` over x: (x, lo, hi).
    Band {
        points: Vec<(f64, f64, f64)>,
    },
    Markers {
        points: Vec<(f64, f64)>,
        shape: Shape,
        filled: bool,
        size: u32,
    },
    ErrorBars {
        bars: Vec<Bar>,
        horizontal: bool,
    },
    /// A vertical reference line over the whole panel.
    VLine {
        x: f64,
        dashed: bool,
    },
    /// A horizontal reference line over the whole panel.
    HLine {
        y: f64,
        dashed: bool,
    },
    /// Hollow carets at the frame's top (▲, `top`) or bottom (▼) edge at each x: something
    /// happened at that x whose value lies beyond what the axis shows (a withheld reading).
    /// Each series takes its own `row` (0 at the edge, then inwards), so that carets of two
    /// series at the same x do not hide each other.
    EdgeMarks {
        xs: Vec<f64>,
        top: bool,
        row: u32,
    },
}

/// One drawn layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// A stable machine name (`"mean/<cell>"`, `"fit"`, `"band"`, …) the tests look layers up by.
    pub key: String,
    /// The legend text; `None` keeps the layer out of the legend.
    pub label: Option<String>,
    pub color: Rgb,
    /// Whether the layer's extent decides the axis ranges (data do; fitted curves, bands and
    /// reference lines follow the data and are clipped).
    pub sets_range: bool,
    /// For a layer that does not set the ranges: whether its extent may widen them, by at most
    /// [`super::geometry::REACH`] of the range-setting extent at each end (intervals and
    /// fitted curves that should be seen whole without costing the data their resolution).
    pub widens_range: bool,
    pub kind: LayerKind,
}

impl Layer {
    /// A layer without a legend entry that sets the axes' ranges (data).
    fn setting(key: impl Into<String>, color: Rgb, kind: LayerKind) -> Self {
        Layer {
            key: key.into(),
            label: None,
            color,
            sets_range: true,
            widens_range: false,
            kind,
        }
    }

    /// A layer without a legend entry that follows the axes' ranges (reference lines).
    fn following(key: impl Into<String>, color: Rgb, kind: LayerKind) -> Self {
        Layer {
            sets_range: false,
            ..Layer::setting(key, color, kind)
        }
    }

    pub fn line(key: impl Into<String>, color: Rgb, points: Vec<(f64, f64)>) -> Self {
        Layer::setting(
            key,
            color,
            LayerKind::Line {
                points,
                width: 3,
                dashed: false,
            },
        )
    }

    pub fn band(key: impl Into<String>, color: Rgb, points: Vec<(f64, f64, f64)>) -> Self {
        Layer::setting(key, color, LayerKind::Band { points })
    }

    pub fn markers(
        key: impl Into<String>,
        color: Rgb,
        points: Vec<(f64, f64)>,
        shape: Shape,
        filled: bool,
    ) -> Self {
        Layer::setting(
            key,
            color,
            LayerKind::Markers {
                points,
                shape,
                filled,
                size: 6,
            },
        )
    }

    pub fn error_bars(
        key: impl Into<String>,
        color: Rgb,
        bars: Vec<Bar>,
        horizontal: bool,
    ) -> Self {
        Layer::setting(key, color, LayerKind::ErrorBars { bars, horizontal })
    }

    pub fn vline(key: impl Into<String>, color: Rgb, x: f64) -> Self {
        Layer::following(key, color, LayerKind::VLine { x, dashed: true })
    }

    pub fn hline(key: impl Into<String>, color: Rgb, y: f64) -> Self {
        Layer::following(key, color, LayerKind::HLine { y, dashed: true })
    }

    /// With a legend entry.
    pub fn labelled(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Followed by the axes instead of setting them (fits, bands, references).
    pub fn follows_range(mut self) -> Self {
        self.sets_range = false;
        self.widens_range = false;
        self
    }

    /// Widens the axes to show it whole, within [`super::geometry::REACH`] of the data's extent
    /// at each end; beyond that it is cut at the frame (error bars with an arrow).
    pub fn widening_range(mut self) -> Self {
        self.sets_range = false;
        self.widens_range = true;
        self
    }

    /// Sets the axis ranges (reference lines that must stay in view).
    pub fn setting_range(mut self) -> Self {
        self.sets_range = true;
        self
    }

    /// Dashed (lines and reference lines) — no effect on other kinds.
    pub fn dashed(mut self, on: bool) -> Self {
        match &mut self.kind {
            LayerKind::Line { dashed, .. }
            | LayerKind::VLine { dashed, .. }
            | LayerKind::HLine { dashed, .. } => *dashed = on,
            _ => {}
        }
        self
    }

    /// Line width or marker size in pixels.
    pub fn sized(mut self, px: u32) -> Self {
        match &mut self.kind {
            LayerKind::Line { width, .. } => *width = px,
            LayerKind::Markers { size, .. } => *size = px,
            _ => {}
        }
        self
    }

    /// Carets at the top (`top`) or bottom edge of the frame at each of `xs`, in row `row`
    /// from the edge; their x values set the x range.
    pub fn edge_marks(
        key: impl Into<String>,
        color: Rgb,
        xs: Vec<f64>,
        top: bool,
        row: u32,
    ) -> Self {
        Layer::setting(key, color, LayerKind::EdgeMarks { xs, top, row })
    }

    /// The (x, y) points of a line or markers layer (empty for other kinds).
    pub fn xy(&self) -> &[(f64, f64)] {
        match &self.kind {
            LayerKind::Line { points, .. } | LayerKind::Markers { points, .. } => points,
            _ => &[],
        }
    }
}

/// One chart: two axes and the layers drawn on them, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: Option<String>,
    pub x: Axis,
    pub y: Axis,
    pub layers: Vec<Layer>,
}

impl Panel {
    pub fn new(x: Axis, y: Axis) -> Self {
        Panel {
            title: None,
            x,
            y,
            layers: Vec::new(),
        }
    }

    /// The first layer with this key.
    pub fn layer(&self, key: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.key == key)
    }
}

/// How a legend entry's sample looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    Line {
        dashed: bool,
        width: u32,
    },
    Band,
    Marker {
        shape: Shape,
        filled: bool,
    },
    /// A hollow caret pointing up (▲) or down (▼).
    Caret {
        up: bool,
    },
}

/// One legend row.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    pub label: String,
    pub color: Rgb,
    pub sample: Sample,
}

/// A whole figure: a title, a grid of panels sharing one legend (at the right), a footnote.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    /// Panels per row (≥ 1).
    pub columns: usize,
    pub footnote: Option<String>,
}

impl Figure {
    /// (rows, columns) of the panel grid; at least 1×1.
    pub fn grid(&self) -> (usize, usize) {
        let cols = self.columns.clamp(1, self.panels.len().max(1));
        (self.panels.len().div_ceil(cols).max(1), cols)
    }

    /// A size that keeps every panel readable at 100% zoom: 1200×800 for one row of up to two
    /// panels, wider and taller for larger grids.
    pub fn preferred_size(&self) -> (u32, u32) {
        grid_size(self.grid(), !self.legend().is_empty())
    }

    /// The legend: every labelled layer once (the first layer with a label wins), in order.
    pub fn legend(&self) -> Vec<LegendEntry> {
        let mut out: Vec<LegendEntry> = Vec::new();
        for layer in self.panels.iter().flat_map(|p| &p.layers) {
            let Some(label) = &layer.label else { continue };
            if out.iter().any(|e| &e.label == label) {
                continue;
            }
            let sample = match &layer.kind {
                LayerKind::Line { dashed, width, .. } => Sample::Line {
                    dashed: *dashed,
                    width: *width,
                },
                LayerKind::Band { .. } => Sample::Band,
                LayerKind::Markers { shape, filled, .. } => Sample::Marker {
                    shape: *shape,
                    filled: *filled,
                },
                LayerKind::ErrorBars { .. } => Sample::Line {
                    dashed: false,
                    width: 1,
                },
                LayerKind::VLine { dashed, .. } | LayerKind::HLine { dashed, .. } => Sample::Line {
                    dashed: *dashed,
                    width: 2,
                },
                LayerKind::EdgeMarks { top, .. } => Sample::Caret { up: *top },
            };
            out.push(LegendEntry {
                label: label.clone(),
                color: layer.color,
                sample,
            });
        }
        out
    }
}

/// The pixel size for a (rows, cols) grid of panels.
pub fn grid_size((rows, cols): (usize, usize), legend: bool) -> (u32, u32) {
    let legend_w = if legend { 330 } else { 0 };
    let width = match cols {
        0 | 1 => 1200,
        2 => 1200.max(2 * 520 + legend_w),
        c => (c as u32) * 500 + legend_w,
    };
    let height = match rows {
        0 | 1 => 800,
        r => 110 + (r as u32) * 560,
    };
    (width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_lists_each_label_once_in_order_and_grids_fit() {
        let mut p = Panel::new(Axis::new("x", Scale::Linear), Axis::new("y", Scale::Linear));
        p.layers
            .push(Layer::line("a", Rgb::BLACK, vec![]).labelled("first"));
        p.layers
            .push(Layer::band("b", Rgb::GREY, vec![]).labelled("second"));
        p.layers
            .push(Layer::line("c", Rgb::GREY, vec![]).labelled("first"));
        p.layers.push(Layer::line("d", Rgb::GREY, vec![]));
        let fig = Figure {
            title: "t".into(),
            panels: vec![p.clone(), p.clone(), p],
            columns: 2,
            footnote: None,
        };
        let legend = fig.legend();
        assert_eq!(legend.len(), 2);
        assert_eq!(
            (legend[0].label.as_str(), legend[0].color),
            ("first", Rgb::BLACK)
        );
        assert_eq!(legend[1].sample, Sample::Band);
        assert_eq!(fig.grid(), (2, 2));
        assert_eq!(grid_size((1, 1), true), (1200, 800));
        let (w, h) = fig.preferred_size();
        assert!(w >= 1200 && h > 800);
        // Zero columns or panels still give a 1×1 grid.
        let empty = Figure {
            title: "t".into(),
            panels: vec![],
            columns: 0,
            footnote: None,
        };
        assert_eq!(empty.grid(), (1, 1));
    }
}
