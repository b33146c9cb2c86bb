//! The pure geometry between a [`super::chart::Figure`] and pixels, all of it tested: axis
//! transforms with their guards (a log axis drops non-positive values instead of panicking),
//! ranges that never have zero width or NaN ends, tick positions, and clipping (plotters draws
//! outside the plotting area otherwise).

use super::chart::{Axis, Bar, Layer, LayerKind, Panel, Scale};
use super::format;

/// How far a range-widening layer ([`Layer::widening_range`]) may stretch an axis beyond the
/// range-setting layers' extent: this share of that extent's width at each end (in axis
/// coordinates). Enough for the intervals, bands and fitted curves of the shipped sweeps (the
/// most asked: quickstart's B_opt interval down to 4.0 below points from 8.9 to 210, 0.26 of
/// their log width); a wilder one, such as the t band of a B where one seed of three
/// diverged, is cut at the frame rather than squashing the data into a corner.
pub const REACH: f64 = 0.3;

/// An axis range in axis coordinates (after the transform).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub lo: f64,
    pub hi: f64,
}

impl Span {
    pub fn contains(&self, t: f64) -> bool {
        t >= self.lo - 1e-12 && t <= self.hi + 1e-12
    }
}

/// The axis coordinates a layer occupies: (x, y) pairs where both are valid, plus lone x or y
/// values of reference lines.
fn layer_extent(layer: &Layer, xs: Scale, ys: Scale, out_x: &mut Vec<f64>, out_y: &mut Vec<f64>) {
    let mut pair = |x: f64, y: f64| {
        if let (Some(x), Some(y)) = (xs.forward(x), ys.forward(y)) {
            out_x.push(x);
            out_y.push(y);
        }
    };
    match &layer.kind {
        LayerKind::Line { points, .. } | LayerKind::Markers { points, .. } => {
            points.iter().for_each(|&(x, y)| pair(x, y));
        }
        LayerKind::Band { points } => {
            for &(x, lo, hi) in points {
                pair(x, lo);
                pair(x, hi);
            }
        }
        LayerKind::ErrorBars { bars, horizontal } => {
            for b in bars {
                if *horizontal {
                    pair(b.lo, b.at);
                    pair(b.hi, b.at);
                } else {
                    pair(b.at, b.lo);
                    pair(b.at, b.hi);
                }
            }
        }
        LayerKind::VLine { x, .. } => out_x.extend(xs.forward(*x)),
        LayerKind::HLine { y, .. } => out_y.extend(ys.forward(*y)),
        LayerKind::EdgeMarks { xs: marks, .. } => {
            out_x.extend(marks.iter().filter_map(|x| xs.forward(*x)));
        }
    }
}

/// The (x, y) spans of a panel: from the range-setting layers (from all layers if those show
/// nothing), widened by the range-widening layers within [`REACH`], padded by 4%, clamped to
/// the axes' bounds, never NaN and never of zero width. `None` when nothing in the panel can
/// be shown on its axes.
pub fn panel_spans(panel: &Panel) -> Option<(Span, Span)> {
    let (xs, ys) = (panel.x.scale, panel.y.scale);
    let collect = |keep: &dyn Fn(&Layer) -> bool| {
        let (mut vx, mut vy) = (Vec::new(), Vec::new());
        for l in panel.layers.iter().filter(|l| keep(l)) {
            layer_extent(l, xs, ys, &mut vx, &mut vy);
        }
        (vx, vy)
    };
    let (mut vx, mut vy) = collect(&|l| l.sets_range);
    if vx.is_empty() || vy.is_empty() {
        let (ax, ay) = collect(&|_| true);
        if vx.is_empty() {
            vx = ax;
        }
        if vy.is_empty() {
            vy = ay;
        }
    }
    let (wx, wy) = collect(&|l| l.widens_range && !l.sets_range);
    let vx = within_reach(vx, &wx);
    let vy = within_reach(vy, &wy);
    let (mut sx, mut sy) = (span_of(&vx, &panel.x)?, span_of(&vy, &panel.y)?);
    // Room for the arrow of every open bar end, which [`bar_path`] draws beyond the end.
    for l in panel
        .layers
        .iter()
        .filter(|l| l.sets_range || l.widens_range)
    {
        let LayerKind::ErrorBars { bars, horizontal } = &l.kind else {
            continue;
        };
        let (axis, span) = if *horizontal {
            (&panel.x, &mut sx)
        } else {
            (&panel.y, &mut sy)
        };
        let room = (OPEN_ARROW + 0.01) * (span.hi - span.lo);
        for b in bars.iter().filter(|b| b.open_lo || b.open_hi) {
            let (Some(lo), Some(hi)) = (axis.scale.forward(b.lo), axis.scale.forward(b.hi)) else {
                continue;
            };
            if b.open_lo {
                span.lo = span.lo.min(lo.min(hi) - room);
            }
            if b.open_hi {
                span.hi = span.hi.max(lo.max(hi) + room);
            }
        }
        let (blo, bhi) = axis_bounds(axis);
        span.lo = span.lo.max(blo);
        span.hi = span.hi.min(bhi);
    }
    caret_room(panel, &vy, &mut sy);
    Some((sx, sy))
}

/// The share of a panel's height that one row of edge carets takes (16 pixels a row on a
/// plot area of about 450: 3.6%, and a margin).
const CARET_ROW: f64 = 0.045;

/// Room at the top and bottom for the rows of edge carets ([`LayerKind::EdgeMarks`]), so that
/// they sit beyond every value `vy` (axis coordinates) instead of over them: the span is
/// stretched until the rows' band, `CARET_ROW` of its height per row (a quarter at most), holds
/// no value. Within the axis's bounds.
fn caret_room(panel: &Panel, vy: &[f64], sy: &mut Span) {
    let rows = |top: bool| {
        panel
            .layers
            .iter()
            .filter_map(|l| match &l.kind {
                LayerKind::EdgeMarks { xs, top: t, row } if *t == top && !xs.is_empty() => {
                    Some(row + 1)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    let finite = || vy.iter().copied().filter(|v| v.is_finite());
    let (Some(lo), Some(hi)) = (finite().reduce(f64::min), finite().reduce(f64::max)) else {
        return;
    };
    let (top, bottom) = (
        (CARET_ROW * f64::from(rows(true))).min(0.25),
        (CARET_ROW * f64::from(rows(false))).min(0.25),
    );
    if top == 0.0 && bottom == 0.0 {
        return;
    }
    let (blo, bhi) = axis_bounds(&panel.y);
    // Each end's band is a share of the whole span, which the other end's stretch widens too:
    // a few rounds converge (each shrinks the shortfall by a factor top + bottom ≤ 0.5).
    for _ in 0..16 {
        let w = sy.hi - sy.lo;
        sy.hi = sy.hi.max(hi + top * w).min(bhi);
        sy.lo = sy.lo.min(lo - bottom * w).max(blo);
    }
}

/// An axis's bounds in axis coordinates, each end on its own: an infinite end (a loss's
/// [0, ∞)) or one the scale cannot show (0 on a log axis) does not limit; nor do bounds whose
/// ends are the wrong way round.
fn axis_bounds(axis: &Axis) -> (f64, f64) {
    let Some((blo, bhi)) = axis.bounds else {
        return (f64::NEG_INFINITY, f64::INFINITY);
    };
    let blo = axis.scale.forward(blo).unwrap_or(f64::NEG_INFINITY);
    let bhi = axis.scale.forward(bhi).unwrap_or(f64::INFINITY);
    if blo < bhi {
        (blo, bhi)
    } else {
        (f64::NEG_INFINITY, f64::INFINITY)
    }
}

/// `values` and the `extra` values, each extra clamped to [`REACH`] of the finite `values`'
/// width beyond their ends (the extras alone when `values` has none; nothing added when the
/// values have no width: one point's window is [`span_of`]'s to open).
fn within_reach(mut values: Vec<f64>, extra: &[f64]) -> Vec<f64> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        values.extend_from_slice(extra);
        return values;
    }
    let reach = REACH * (hi - lo);
    values.extend(
        extra
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| v.clamp(lo - reach, hi + reach)),
    );
    values
}

/// The keys of the lines and bands of a panel that run beyond its spans (cut at the frame),
/// for a footnote that says so.
pub fn cut_at_frame(panel: &Panel) -> Vec<&str> {
    let Some((sx, sy)) = panel_spans(panel) else {
        return Vec::new();
    };
    panel
        .layers
        .iter()
        .filter(|l| matches!(l.kind, LayerKind::Line { .. } | LayerKind::Band { .. }))
        .filter(|l| {
            let (mut vx, mut vy) = (Vec::new(), Vec::new());
            layer_extent(l, panel.x.scale, panel.y.scale, &mut vx, &mut vy);
            vx.iter().any(|&x| !sx.contains(x)) || vy.iter().any(|&y| !sy.contains(y))
        })
        .map(|l| l.key.as_str())
        .collect()
}

/// How one end of an error bar is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarEnd {
    /// A cap: the interval ends here.
    Cap,
    /// An arrowhead pointing away from the bar: the interval is open on this side, or goes on
    /// beyond the frame.
    Arrow,
}

/// An error bar in axis coordinates, clipped to the panel, with how each end is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BarPath {
    /// Where the bar stands (x of a vertical bar, y of a horizontal one).
    pub at: f64,
    pub lo: f64,
    pub hi: f64,
    pub lo_end: BarEnd,
    pub hi_end: BarEnd,
}

/// Share of the visible span an open end's arrow extends beyond the bar: far enough to clear a
/// marker at the end (B_opt's triangle); [`panel_spans`] keeps room for it inside the frame.
const OPEN_ARROW: f64 = 0.07;

/// Where a bar is drawn: `along` is the scale of its position, `across` of its extent (for a
/// vertical bar x and y). An open end gets an arrow a little beyond the bar; an end the frame
/// cuts gets an arrow at the frame. `None` when the bar cannot be shown.
pub fn bar_path(
    b: &Bar,
    along: Scale,
    across: Scale,
    at_span: Span,
    span: Span,
) -> Option<BarPath> {
    let at = along.forward(b.at)?;
    let lo = across.forward(b.lo)?;
    let hi = across.forward(b.hi)?;
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !at_span.contains(at) || hi < span.lo || lo > span.hi {
        return None;
    }
    let step = OPEN_ARROW * (span.hi - span.lo);
    let lo = if b.open_lo { lo - step } else { lo };
    let hi = if b.open_hi { hi + step } else { hi };
    let end = |open: bool, cut: bool| {
        if open || cut {
            BarEnd::Arrow
        } else {
            BarEnd::Cap
        }
    };
    Some(BarPath {
        at,
        lo: lo.max(span.lo),
        hi: hi.min(span.hi),
        lo_end: end(b.open_lo, lo < span.lo),
        hi_end: end(b.open_hi, hi > span.hi),
    })
}

/// A padded, non-degenerate span over the finite `values` (axis coordinates).
pub fn span_of(values: &[f64], axis: &Axis) -> Option<Span> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    let (mut lo, mut hi) = (lo, hi);
    let width = hi - lo;
    if width <= 1e-9 * lo.abs().max(hi.abs()).max(1e-300) {
        // All values equal: open a window around them (a factor 2 each way on log axes).
        let half = match axis.scale {
            Scale::Linear if lo != 0.0 => 0.1 * lo.abs(),
            Scale::Linear => 1.0,
            Scale::Log10 => 2f64.log10(),
            Scale::Log2 => 1.0,
        };
        lo -= half;
        hi += half;
    } else {
        let pad = 0.04 * width;
        lo -= pad;
        hi += pad;
    }
    // Each bound on its own: a loss axis is bounded below only (its upper bound is +∞, which
    // once disabled both).
    let (blo, bhi) = axis_bounds(axis);
    lo = lo.max(blo);
    hi = hi.min(bhi);
    if hi - lo <= 1e-12 {
        // The data sit on (or beyond) a bound: show the bounded range's nearest end.
        let w = if (bhi - blo).is_finite() {
            0.1 * (bhi - blo)
        } else {
            0.1 * lo.abs().max(hi.abs()).max(1.0)
        };
        if hi >= bhi {
            lo = bhi - w;
            hi = bhi;
        } else {
            lo = blo;
            hi = blo + w;
        }
    }
    (lo.is_finite() && hi.is_finite() && hi > lo).then_some(Span { lo, hi })
}

/// How tick labels are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickLabels {
    /// Linear axes: fixed decimals from the step.
    Fixed(usize),
    /// Log axes: the data value ([`format::tick`]).
    Data,
}

/// Tick positions in axis coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticks {
    pub bold: Vec<f64>,
    pub light: Vec<f64>,
    pub labels: TickLabels,
}

impl Ticks {
    /// The label of the tick at axis coordinate `t`.
    pub fn label(&self, scale: Scale, t: f64) -> String {
        match self.labels {
            TickLabels::Fixed(d) => format::tick_fixed(t, d),
            TickLabels::Data => format::tick(scale.inverse(t)),
        }
    }
}

/// 1, 2 or 5 × 10^k, the smallest at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// Multiples of a nice step inside [lo, hi] (about `target` of them) and its decimals.
fn linear_ticks(lo: f64, hi: f64, target: f64) -> (Vec<f64>, usize) {
    let step = nice_step((hi - lo) / target);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last.min(first.saturating_add(50)))
        .map(|k| k as f64 * step)
        .collect();
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    (ticks, decimals)
}

/// Keeps at most `max` of `v`, evenly (every k-th).
fn thin(v: Vec<f64>, max: usize) -> Vec<f64> {
    if v.len() <= max {
        return v;
    }
    let stride = v.len().div_ceil(max);
    v.into_iter().step_by(stride).collect()
}

/// Keeps every k-th tick (smallest k) so that the kept ticks' label extents (`sizes`, pixels,
/// one per tick) add up to at most `room`; always keeps at least one.
pub fn thin_to_fit(ticks: &[f64], sizes: &[u32], room: u32) -> Vec<f64> {
    for stride in 1..=ticks.len().max(1) {
        let total: u32 = sizes.iter().step_by(stride).sum();
        if total <= room {
            return ticks.iter().step_by(stride).copied().collect();
        }
    }
    ticks.iter().take(1).copied().collect()
}

/// Ticks for a span: nice steps on linear axes; decades (or 1-2-5, or 1…9 × 10^k) on log₁₀
/// axes; powers of two on log₂ axes; narrow log spans fall back to nice steps in data units.
pub fn ticks(scale: Scale, span: Span) -> Ticks {
    let (lo, hi) = (span.lo, span.hi);
    match scale {
        Scale::Linear => {
            let (bold, d) = linear_ticks(lo, hi, 6.0);
            Ticks {
                bold,
                light: Vec::new(),
                labels: TickLabels::Fixed(d),
            }
        }
        Scale::Log10 => {
            let decades: Vec<i32> = ((lo.floor() as i32)..=(hi.ceil() as i32)).collect();
            let at = |mults: &[f64]| -> Vec<f64> {
                decades
                    .iter()
                    .flat_map(|&k| mults.iter().map(move |m| (m * 10f64.powi(k)).log10()))
                    .filter(|t| span.contains(*t))
                    .collect()
            };
            let all: Vec<f64> = at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
            for mults in [
                &[1.0][..],
                &[1.0, 2.0, 5.0],
                &[1.0, 2.0, 3.0, 4.0, 5.0, 7.0],
            ] {
                let bold = at(mults);
                // At least 4 labelled ticks: N at 500…4,000 would otherwise get 500, 1,000 and
                // 2,000 (1-2-5) and no tick at its largest size; 1-2-3-4-5-7 marks it.
                if bold.len() >= 4 {
                    let light = if decades.len() <= 7 {
                        all.clone()
                    } else {
                        Vec::new()
                    };
                    return Ticks {
                        bold: thin(bold, 9),
                        light,
                        labels: TickLabels::Data,
                    };
                }
            }
            narrow_log_ticks(scale, span)
        }
        Scale::Log2 => {
            let bold: Vec<f64> = ((lo.ceil() as i64)..=(hi.floor() as i64))
                .map(|k| k as f64)
                .collect();
            if bold.len() >= 2 {
                Ticks {
                    bold: thin(bold, 10),
                    light: Vec::new(),
                    labels: TickLabels::Data,
                }
            } else {
                narrow_log_ticks(scale, span)
            }
        }
    }
}

/// A log span too narrow for round log ticks: nice steps in data units, placed on the log axis.
fn narrow_log_ticks(scale: Scale, span: Span) -> Ticks {
    let (dlo, dhi) = (scale.inverse(span.lo), scale.inverse(span.hi));
    let (ticks, _) = linear_ticks(dlo, dhi, 6.0);
    Ticks {
        bold: ticks.into_iter().filter_map(|v| scale.forward(v)).collect(),
        light: Vec::new(),
        labels: TickLabels::Data,
    }
}

/// The visible rectangle of a panel, in axis coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: Span,
    pub y: Span,
}

impl Rect {
    pub fn contains(&self, (x, y): (f64, f64)) -> bool {
        self.x.contains(x) && self.y.contains(y)
    }
}

/// Transforms points to axis coordinates and splits the line wherever a point is invalid.
pub fn transform_runs(points: &[(f64, f64)], xs: Scale, ys: Scale) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in points {
        match (xs.forward(x), ys.forward(y)) {
            (Some(x), Some(y)) => {
                if let Some(r) = runs.last_mut() {
                    r.push((x, y));
                }
            }
            _ => runs.push(Vec::new()),
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// Clips a polyline to `r` (Liang–Barsky per segment); returns the visible pieces.
pub fn clip_polyline(points: &[(f64, f64)], r: &Rect) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    if points.len() == 1 {
        if r.contains(points[0]) {
            out.push(vec![points[0]]);
        }
        return out;
    }
    let mut current: Vec<(f64, f64)> = Vec::new();
    for w in points.windows(2) {
        match clip_segment(w[0], w[1], r) {
            Some((a, b)) => {
                let joins = current
                    .last()
                    .is_some_and(|l| (l.0 - a.0).abs() < 1e-12 && (l.1 - a.1).abs() < 1e-12);
                if !joins {
                    if current.len() >= 2 {
                        out.push(std::mem::take(&mut current));
                    }
                    current.clear();
                    current.push(a);
                }
                current.push(b);
            }
            None => {
                if current.len() >= 2 {
                    out.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    if current.len() >= 2 {
        out.push(current);
    }
    out
}

/// Liang–Barsky: the part of segment a→b inside `r`.
fn clip_segment(a: (f64, f64), b: (f64, f64), r: &Rect) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r.x.lo),
        (dx, r.x.hi - a.0),
        (-dy, a.1 - r.y.lo),
        (dy, r.y.hi - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    (t0 <= t1).then_some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
    ))
}

/// Clips a polygon to `r` (Sutherland–Hodgman); empty when nothing is visible.
pub fn clip_polygon(poly: &[(f64, f64)], r: &Rect) -> Vec<(f64, f64)> {
    type Inside = fn(&Rect, (f64, f64)) -> bool;
    type Cut = fn(&Rect, (f64, f64), (f64, f64)) -> (f64, f64);
    let edges: [(Inside, Cut); 4] = [
        (
            |r, p| p.0 >= r.x.lo,
            |r, a, b| {
                let t = (r.x.lo - a.0) / (b.0 - a.0);
                (r.x.lo, a.1 + t * (b.1 - a.1))
            },
        ),
        (
            |r, p| p.0 <= r.x.hi,
            |r, a, b| {
                let t = (r.x.hi - a.0) / (b.0 - a.0);
                (r.x.hi, a.1 + t * (b.1 - a.1))
            },
        ),
        (
            |r, p| p.1 >= r.y.lo,
            |r, a, b| {
                let t = (r.y.lo - a.1) / (b.1 - a.1);
                (a.0 + t * (b.0 - a.0), r.y.lo)
            },
        ),
        (
            |r, p| p.1 <= r.y.hi,
            |r, a, b| {
                let t = (r.y.hi - a.1) / (b.1 - a.1);
                (a.0 + t * (b.0 - a.0), r.y.hi)
            },
        ),
    ];
    let mut out: Vec<(f64, f64)> = poly.to_vec();
    for (inside, cut) in edges {
        if out.is_empty() {
            break;
        }
        let input = std::mem::take(&mut out);
        for i in 0..input.len() {
            let cur = input[i];
            let prev = input[(i + input.len() - 1) % input.len()];
            match (inside(r, cur), inside(r, prev)) {
                (true, true) => out.push(cur),
                (true, false) => {
                    out.push(cut(r, prev, cur));
                    out.push(cur);
                }
                (false, true) => out.push(cut(r, prev, cur)),
                (false, false) => {}
            }
        }
    }
    out
}

/// The closed outline of a band in axis coordinates, one polygon per run of valid points.
pub fn band_polygons(points: &[(f64, f64, f64)], xs: Scale, ys: Scale) -> Vec<Vec<(f64, f64)>> {
    let mut polys = Vec::new();
    let mut lo: Vec<(f64, f64)> = Vec::new();
    let mut hi: Vec<(f64, f64)> = Vec::new();
    let mut flush = |lo: &mut Vec<(f64, f64)>, hi: &mut Vec<(f64, f64)>| {
        if lo.len() >= 2 {
            let mut p = std::mem::take(lo);
            p.extend(hi.drain(..).rev());
            polys.push(p);
        }
        lo.clear();
        hi.clear();
    };
    for &(x, l, h) in points {
        match (xs.forward(x), ys.forward(l), ys.forward(h)) {
            (Some(x), Some(l), Some(h)) => {
                lo.push((x, l));
                hi.push((x, h));
            }
            _ => flush(&mut lo, &mut hi),
        }
    }
    flush(&mut lo, &mut hi);
    polys
}

/// Splits a list of (x, optional (lo, hi)) into contiguous runs of known intervals: one band
/// per run, so a point without an interval (one seed) leaves a gap instead of a spike.
pub fn band_runs(points: &[(f64, Option<(f64, f64)>)]) -> Vec<Vec<(f64, f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &(x, iv) in points {
        match iv {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() => {
                if let Some(run) = out.last_mut() {
                    run.push((x, lo, hi));
                }
            }
            _ => out.push(Vec::new()),
        }
    }
    out.retain(|r| r.len() >= 2);
    out
}

/// `n` points spaced evenly in the axis coordinate between `lo` and `hi` (data units), plus
/// the `extra` data values, sorted: the sampling grid of fitted curves.
pub fn sample_grid(scale: Scale, lo: f64, hi: f64, n: usize, extra: &[f64]) -> Vec<f64> {
    let (Some(a), Some(b)) = (scale.forward(lo), scale.forward(hi)) else {
        return Vec::new();
    };
    let n = n.max(2);
    let mut v: Vec<f64> = (0..n)
        .map(|i| scale.inverse(a + (b - a) * i as f64 / (n - 1) as f64))
        .chain(
            extra
                .iter()
                .copied()
                .filter(|x| scale.forward(*x).is_some()),
        )
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup_by(|x, y| (*x - *y).abs() <= 1e-12 * x.abs().max(1e-300));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::chart::Bar;
    use crate::plot::style::{Rgb, Shape};

    fn axis(scale: Scale) -> Axis {
        Axis::new("x", scale)
    }

    /// A panel with one range-setting layer of black circles, `"data"`, at `points`.
    fn data_panel(x: Scale, y: Scale, points: Vec<(f64, f64)>) -> Panel {
        let mut p = Panel::new(axis(x), axis(y));
        p.layers.push(Layer::markers(
            "data",
            Rgb::BLACK,
            points,
            Shape::Circle,
            true,
        ));
        p
    }

    fn rect(x0: f64, x1: f64, y0: f64, y1: f64) -> Rect {
        Rect {
            x: Span { lo: x0, hi: x1 },
            y: Span { lo: y0, hi: y1 },
        }
    }

    #[test]
    fn log_axes_drop_non_positive_values() {
        assert_eq!(Scale::Log10.forward(0.0), None);
        assert_eq!(Scale::Log2.forward(-1.0), None);
        assert_eq!(Scale::Log2.forward(8.0), Some(3.0));
        assert_eq!(Scale::Linear.forward(f64::NAN), None);
        let runs = transform_runs(
            &[(1.0, 1.0), (2.0, 0.0), (4.0, 2.0), (8.0, 4.0)],
            Scale::Log2,
            Scale::Log2,
        );
        assert_eq!(runs, vec![vec![(0.0, 0.0)], vec![(2.0, 1.0), (3.0, 2.0)]]);
    }

    #[test]
    fn spans_are_never_degenerate() {
        // One value, on every scale.
        for s in [Scale::Linear, Scale::Log10, Scale::Log2] {
            let t = s.forward(5.0).unwrap();
            let sp = span_of(&[t], &axis(s)).unwrap();
            assert!(sp.hi > sp.lo && sp.contains(t), "{s:?} {sp:?}");
        }
        // Zero on a linear axis, NaN ignored, nothing finite → None.
        let sp = span_of(&[0.0, f64::NAN], &axis(Scale::Linear)).unwrap();
        assert_eq!((sp.lo, sp.hi), (-1.0, 1.0));
        assert!(span_of(&[f64::NAN], &axis(Scale::Linear)).is_none());
        assert!(span_of(&[], &axis(Scale::Linear)).is_none());
        // Padding, then bounds.
        let acc = axis(Scale::Linear).bounded(0.0, 1.0);
        let sp = span_of(&[0.5, 1.0], &acc).unwrap();
        assert_eq!(sp.hi, 1.0);
        assert!((sp.lo - 0.48).abs() < 1e-12);
        // Every value at the bound: still a window inside the bounds.
        let sp = span_of(&[1.0, 1.0], &acc).unwrap();
        assert!(sp.lo < sp.hi && sp.hi <= 1.0, "{sp:?}");
        // A loss axis is bounded below only: the +∞ end must not switch the 0 end off
        // (regression: a widening band drew the test-loss axis down to −4).
        let loss = axis(Scale::Linear).bounded(0.0, f64::INFINITY);
        let sp = span_of(&[-4.0, 10.0], &loss).unwrap();
        assert_eq!(sp.lo, 0.0);
        assert!(sp.hi > 10.0);
        let sp = span_of(&[0.0, 0.0], &loss).unwrap();
        assert!(sp.lo == 0.0 && sp.hi > 0.0, "{sp:?}");
    }

    #[test]
    fn panel_spans_follow_data_not_fits() {
        let mut p = data_panel(Scale::Log10, Scale::Linear, vec![(10.0, 1.0), (100.0, 2.0)]);
        p.layers
            .push(Layer::line("fit", Rgb::BLACK, vec![(1.0, -50.0), (1e4, 50.0)]).follows_range());
        let (x, y) = panel_spans(&p).unwrap();
        assert!(x.lo > 0.9 && x.hi < 2.1, "{x:?}");
        assert!(y.lo > 0.9 && y.hi < 2.1, "{y:?}");
        // Only non-setting layers: they decide after all.
        p.layers.remove(0);
        assert!(panel_spans(&p).is_some());
        // Nothing showable: None.
        let mut q = Panel::new(axis(Scale::Log10), axis(Scale::Log10));
        q.layers
            .push(Layer::line("neg", Rgb::BLACK, vec![(-1.0, -1.0)]));
        assert!(panel_spans(&q).is_none());
    }

    /// Regression (quickstart figure 2, noise-scale figure 1, the collapse curve): intervals,
    /// bands and fitted curves ran into the frame. A widening layer stretches the axes to show
    /// it whole, but by at most REACH of the data's extent at each end.
    #[test]
    fn widening_layers_stretch_the_axes_within_reach() {
        let mut p = data_panel(Scale::Linear, Scale::Linear, vec![(0.0, 0.0), (10.0, 1.0)]);
        // A band a little beyond the data (included whole) and a curve far beyond (cut).
        p.layers.push(
            Layer::band(
                "band",
                Rgb::BLACK,
                vec![(0.0, -0.2, 0.3), (10.0, 0.8, 1.25)],
            )
            .widening_range(),
        );
        let (_, y) = panel_spans(&p).unwrap();
        assert!(y.contains(-0.2) && y.contains(1.25), "{y:?}");
        assert!(cut_at_frame(&p).is_empty());
        p.layers
            .push(Layer::line("wild", Rgb::BLACK, vec![(0.0, 0.0), (10.0, 40.0)]).widening_range());
        let (_, y) = panel_spans(&p).unwrap();
        // 1 + REACH·1, padded by 4% of the width.
        let top = 1.0 + REACH;
        let width = top + 0.2;
        assert!((y.hi - (top + 0.04 * width)).abs() < 1e-12, "{y:?}");
        assert_eq!(cut_at_frame(&p), vec!["wild"]);
        // The same layers following the range instead: the data alone decide.
        for l in &mut p.layers[1..] {
            *l = l.clone().follows_range();
        }
        let (_, y) = panel_spans(&p).unwrap();
        assert!(!y.contains(1.25), "{y:?}");
    }

    #[test]
    fn bar_ends_are_caps_or_arrows() {
        let span = Span { lo: 0.0, hi: 10.0 };
        let at = Span { lo: 0.0, hi: 1.0 };
        let path = |b: Bar| bar_path(&b, Scale::Linear, Scale::Linear, at, span);
        // Inside: caps at both ends, nothing moved.
        let p = path(Bar::new(0.5, 2.0, 8.0)).unwrap();
        assert_eq!(
            (p.lo, p.hi, p.lo_end, p.hi_end),
            (2.0, 8.0, BarEnd::Cap, BarEnd::Cap)
        );
        // Cut by the frame: an arrow at the frame, not a cap, and not a silent stop.
        let p = path(Bar::new(0.5, -3.0, 8.0)).unwrap();
        assert_eq!(
            (p.lo, p.lo_end, p.hi_end),
            (0.0, BarEnd::Arrow, BarEnd::Cap)
        );
        // Open towards the high side (a censored B_opt): an arrow a little beyond the end.
        let p = path(Bar::new(0.5, 2.0, 8.0).opened(false, true)).unwrap();
        assert_eq!((p.lo_end, p.hi_end), (BarEnd::Cap, BarEnd::Arrow));
        assert!(p.hi > 8.5 && p.hi < 9.0, "{p:?}");
        // An open end at the frame: still an arrow, at the frame.
        let p = path(Bar::new(0.5, 2.0, 10.0).opened(false, true)).unwrap();
        assert_eq!((p.hi, p.hi_end), (10.0, BarEnd::Arrow));
        // A panel keeps room inside the frame for an open end's arrow, even at the data's edge.
        let mut p = data_panel(Scale::Linear, Scale::Linear, vec![(1.0, 2.0), (2.0, 8.0)]);
        p.layers.push(Layer::error_bars(
            "bars",
            Rgb::BLACK,
            vec![Bar::new(2.0, 6.0, 8.0).opened(false, true)],
            false,
        ));
        let (sx, sy) = panel_spans(&p).unwrap();
        let drawn = bar_path(
            &Bar::new(2.0, 6.0, 8.0).opened(false, true),
            Scale::Linear,
            Scale::Linear,
            sx,
            sy,
        )
        .unwrap();
        assert_eq!(drawn.hi_end, BarEnd::Arrow);
        assert!(
            drawn.hi < sy.hi && drawn.hi - 8.0 > 0.06 * (sy.hi - sy.lo),
            "{drawn:?} {sy:?}"
        );
        // Off the panel, or not showable: no bar.
        assert!(path(Bar::new(2.0, 2.0, 8.0)).is_none());
        assert!(path(Bar::new(0.5, 11.0, 12.0)).is_none());
        assert!(
            bar_path(
                &Bar::new(0.5, -1.0, 8.0),
                Scale::Linear,
                Scale::Log10,
                at,
                span
            )
            .is_none()
        );
    }

    #[test]
    fn ticks_are_round_numbers() {
        let t = ticks(Scale::Log2, Span { lo: 2.8, hi: 12.2 });
        assert_eq!(t.bold, (3..=12).map(f64::from).collect::<Vec<_>>());
        assert_eq!(t.label(Scale::Log2, 3.0), "8");
        let t = ticks(Scale::Log10, Span { lo: -3.1, hi: 0.1 });
        assert_eq!(t.bold.len(), 4); // 1e-3 … 1
        assert_eq!(t.label(Scale::Log10, -3.0), "0.001");
        // Less than a decade: 1-2-5 or finer.
        let t = ticks(
            Scale::Log10,
            Span {
                lo: 3.0f64.log10(),
                hi: 3.0,
            },
        );
        assert!(t.bold.len() >= 3, "{t:?}");
        // Very narrow: nice data steps.
        let t = ticks(
            Scale::Log10,
            Span {
                lo: 0.05f64.log10(),
                hi: 0.051f64.log10(),
            },
        );
        assert!(!t.bold.is_empty(), "{t:?}");
        let t = ticks(Scale::Linear, Span { lo: 0.42, hi: 0.93 });
        assert_eq!(t.labels, TickLabels::Fixed(1));
        assert_eq!(t.bold.len(), 5); // 0.5 … 0.9
    }

    #[test]
    fn crowded_ticks_are_thinned() {
        let t: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(thin_to_fit(&t, &[10; 10], 100), t);
        assert_eq!(
            thin_to_fit(&t, &[10; 10], 50),
            vec![0.0, 2.0, 4.0, 6.0, 8.0]
        );
        assert_eq!(thin_to_fit(&t, &[10; 10], 1), vec![0.0]);
        assert!(thin_to_fit(&[], &[], 1).is_empty());
    }

    #[test]
    fn caret_rows_sit_beyond_every_value() {
        // Figure 9: B_simple up to 10,000 on a log axis, two runs with readings withheld
        // "beyond" (two rows of carets at the top) and one "no noise" row at the bottom. With
        // only the 4% pad, a reading at the top sat under the carets.
        let mut p = data_panel(
            Scale::Linear,
            Scale::Log10,
            vec![(0.0, 100.0), (15.0, 10_000.0), (20.0, 40.0)],
        );
        for (row, top) in [(0, true), (1, true), (0, false)] {
            p.layers
                .push(Layer::edge_marks("c", Rgb::BLACK, vec![7.0], top, row));
        }
        let (_, sy) = panel_spans(&p).unwrap();
        let h = sy.hi - sy.lo;
        let (top, bottom) = (10_000f64.log10(), 40f64.log10());
        assert!(sy.hi - top >= 2.0 * CARET_ROW * h - 1e-12, "{sy:?}");
        assert!(bottom - sy.lo >= CARET_ROW * h - 1e-12, "{sy:?}");
        // Legend-only carets (no x) and a panel without carets take no room: the 4% pad.
        let mut q = data_panel(Scale::Linear, Scale::Linear, vec![(0.0, 0.0), (1.0, 1.0)]);
        q.layers
            .push(Layer::edge_marks("legend", Rgb::BLACK, vec![], true, 0));
        let (_, sy) = panel_spans(&q).unwrap();
        assert!(
            (sy.hi - 1.04).abs() < 1e-12 && (sy.lo + 0.04).abs() < 1e-12,
            "{sy:?}"
        );
        // A bounded axis is not stretched past its bound.
        let mut b = data_panel(Scale::Linear, Scale::Linear, vec![(0.0, 0.2), (1.0, 1.0)]);
        b.y = b.y.bounded(0.0, 1.0);
        b.layers
            .push(Layer::edge_marks("c", Rgb::BLACK, vec![0.5], true, 0));
        let (_, sy) = panel_spans(&b).unwrap();
        assert_eq!(sy.hi, 1.0);
    }

    #[test]
    fn a_log_axis_over_three_doublings_labels_its_ends() {
        // The learning curve's N at 500, 1,000, 2,000, 4,000, padded as figure 8 pads them:
        // 1-2-5 alone left 4,000 without a tick.
        let axis = Axis::new("N", Scale::Log10);
        let at: Vec<f64> = [500.0f64, 1000.0, 2000.0, 4000.0].map(f64::log10).to_vec();
        let span = span_of(&at, &axis).unwrap();
        let t = ticks(Scale::Log10, span);
        let labels: Vec<String> = t.bold.iter().map(|&v| t.label(Scale::Log10, v)).collect();
        for n in ["500", "1000", "2000", "4000"] {
            assert!(labels.iter().any(|l| l == n), "{n} not in {labels:?}");
        }
        // A span that 1-2-5 marks at least four times keeps 1-2-5 (ε from 0.004 to 0.1).
        let t = ticks(
            Scale::Log10,
            Span {
                lo: 0.0035f64.log10(),
                hi: 0.12f64.log10(),
            },
        );
        let labels: Vec<String> = t.bold.iter().map(|&v| t.label(Scale::Log10, v)).collect();
        assert_eq!(labels, ["0.005", "0.01", "0.02", "0.05", "0.1"]);
    }

    #[test]
    fn clipping_keeps_the_visible_part() {
        let r = rect(0.0, 1.0, 0.0, 1.0);
        let pieces = clip_polyline(&[(-1.0, 0.5), (2.0, 0.5)], &r);
        assert_eq!(pieces, vec![vec![(0.0, 0.5), (1.0, 0.5)]]);
        // Out and back in: two pieces.
        let pieces = clip_polyline(&[(0.2, 0.2), (0.2, 3.0), (0.8, 0.2)], &r);
        assert_eq!(pieces.len(), 2);
        assert!(clip_polyline(&[(2.0, 2.0), (3.0, 3.0)], &r).is_empty());
        let poly = clip_polygon(&[(-1.0, -1.0), (2.0, -1.0), (2.0, 0.5), (-1.0, 0.5)], &r);
        assert!(poly.iter().all(|&p| r.contains(p)));
        let area: f64 = (0..poly.len())
            .map(|i| {
                let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum::<f64>()
            .abs()
            / 2.0;
        assert!((area - 0.5).abs() < 1e-12, "{area}");
        assert!(clip_polygon(&[(2.0, 2.0), (3.0, 2.0), (3.0, 3.0)], &r).is_empty());
    }

    #[test]
    fn bands_split_at_missing_intervals() {
        let runs = band_runs(&[
            (1.0, Some((0.0, 1.0))),
            (2.0, Some((0.0, 1.0))),
            (3.0, None),
            (4.0, Some((0.0, 1.0))),
            (5.0, Some((f64::NAN, 1.0))),
        ]);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].len(), 2);
        let polys = band_polygons(&runs[0], Scale::Linear, Scale::Linear);
        assert_eq!(
            polys[0],
            vec![(1.0, 0.0), (2.0, 0.0), (2.0, 1.0), (1.0, 1.0)]
        );
    }

    #[test]
    fn sample_grid_includes_extra_points() {
        let g = sample_grid(Scale::Log10, 1.0, 100.0, 3, &[5.0, -1.0]);
        assert_eq!(g.len(), 4);
        assert!((g[1] - 5.0).abs() < 1e-12 && (g[2] - 10.0).abs() < 1e-9);
        assert!(sample_grid(Scale::Log10, 0.0, 1.0, 3, &[]).is_empty());
    }
}
