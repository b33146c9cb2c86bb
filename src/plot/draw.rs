//! The one generic drawer: a [`Figure`] to a PNG. Thin on purpose: every decision about what
//! to show was made when the figure was prepared; here only pixels are placed.
//!
//! Every drawing error is returned, and the root area is `present()`ed explicitly: plotters'
//! `Drop` would swallow a failed write.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::PlotError;
use super::chart::{Figure, Layer, LayerKind, LegendEntry, Panel, Sample, Scale};
use super::geometry::{self, Rect, Span, Ticks};
use super::style::{self, FONT, Shape};

/// A drawing area of the bitmap backend, in pixels.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Maps any plotters error to a [`PlotError`] naming the file.
pub(crate) fn de<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::draw(path, e)
}

/// Refuses sizes too small to lay out (plotters would draw into negative space) or absurdly
/// large (a typo that would allocate gigabytes).
pub(crate) fn check_size((width, height): (u32, u32)) -> Result<(), PlotError> {
    if (320..=8000).contains(&width) && (240..=8000).contains(&height) {
        Ok(())
    } else {
        Err(PlotError::Size { width, height })
    }
}

/// Renders `fig` to a PNG at `path`, `size` pixels.
pub fn draw_figure(fig: &Figure, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    check_size(size)?;
    style::ensure_fonts()?;
    write_png(path, size, |root| {
        root.fill(&WHITE).map_err(de(path))?;
        let body = title_area(root, &fig.title, path)?;
        let body = footnote_area(&body, fig.footnote.as_deref(), path)?;
        let legend = fig.legend();
        let (plots, legend_area) = split_legend(&body, &legend);
        for (area, panel) in plots.split_evenly(fig.grid()).iter().zip(&fig.panels) {
            draw_panel(area, panel, path)?;
        }
        if let Some(area) = legend_area {
            draw_legend(&area, &legend, path)?;
        }
        Ok(())
    })
}

/// Draws with `draw` into pixels in memory, then writes them to `path` as a PNG whole or not at
/// all: encoded in memory, written to `<path>.partial` beside it, and renamed over `path`. A
/// write that fails (a full disk) leaves the figure that was there, names the file and says
/// why in one line; plotters' own writer left a truncated PNG and its error's debug text.
pub(crate) fn write_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    use image::ImageEncoder;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(de(path))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, image::ColorType::Rgb8)
        .map_err(de(path))?;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    // The error names the file that could not be written: the partial one, or the figure.
    let written = match std::fs::write(&partial, &png) {
        Err(source) => Err((partial.clone(), source)),
        Ok(()) => std::fs::rename(&partial, path).map_err(|e| (path.to_path_buf(), e)),
    };
    written.map_err(|(path, source)| {
        let _ = std::fs::remove_file(&partial);
        PlotError::Io { path, source }
    })
}

/// Width in pixels of `text` at `px`.
pub(crate) fn text_width(area: &Area, text: &str, px: u32) -> u32 {
    area.estimate_text_size(text, &TextStyle::from((FONT, px).into_font()))
        .map(|(w, _)| w)
        .unwrap_or((text.chars().count() as u32) * px * 6 / 10)
}

/// Greedy word wrap of `text` into lines at most `max_w` pixels wide at `px`.
pub(crate) fn wrap(area: &Area, text: &str, px: u32, max_w: u32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let cand = if cur.is_empty() {
            word.to_string()
        } else {
            format!("{cur} {word}")
        };
        if !cur.is_empty() && text_width(area, &cand, px) > max_w {
            lines.push(std::mem::replace(&mut cur, word.to_string()));
        } else {
            cur = cand;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// ab_glyph draws glyphs about a quarter of the font size above the anchor plotters computes
/// (its layout box is size/1.24 high, its glyphs hang from size/2); text we place ourselves is
/// shifted down by this to sit where it is meant to.
pub(crate) fn glyph_drop(px: u32) -> i32 {
    (px as f64 * 0.25).round() as i32
}

/// Draws the bold title (shrunk to fit the width) and returns the area below it.
pub(crate) fn title_area<'a>(
    root: &Area<'a>,
    title: &str,
    path: &Path,
) -> Result<Area<'a>, PlotError> {
    let (w, _) = root.dim_in_pixel();
    let mut px = style::TITLE_PX;
    while px > 22 && text_width(root, title, px) + 40 > w {
        px -= 2;
    }
    let band = px + 26;
    let (top, body) = root.split_vertically(band);
    let font = (FONT, px)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    top.draw_text(title, &font, (w as i32 / 2, 12 + glyph_drop(px)))
        .map_err(de(path))?;
    Ok(body)
}

/// Draws the footnote (wrapped) at the bottom and returns the area above it.
pub(crate) fn footnote_area<'a>(
    body: &Area<'a>,
    note: Option<&str>,
    path: &Path,
) -> Result<Area<'a>, PlotError> {
    let Some(note) = note.filter(|n| !n.trim().is_empty()) else {
        return Ok(body.clone());
    };
    let (w, h) = body.dim_in_pixel();
    let lines = wrap(body, note, style::NOTE_PX, w.saturating_sub(40));
    let line_h = style::NOTE_PX + 6;
    let block = (lines.len() as u32 * line_h + 14).min(h / 3);
    let (top, bottom) = body.split_vertically(h.saturating_sub(block));
    let font = (FONT, style::NOTE_PX)
        .into_font()
        .color(&RGBColor(60, 60, 60))
        .pos(Pos::new(HPos::Left, VPos::Top));
    for (i, line) in lines.iter().enumerate() {
        bottom
            .draw_text(
                line,
                &font,
                (
                    20,
                    4 + glyph_drop(style::NOTE_PX) + (i as u32 * line_h) as i32,
                ),
            )
            .map_err(de(path))?;
    }
    Ok(top)
}

/// Splits off a right-hand column for the legend, wide enough for its longest entry (up to
/// 30% of the width; longer entries wrap).
fn split_legend<'a>(body: &Area<'a>, legend: &[LegendEntry]) -> (Area<'a>, Option<Area<'a>>) {
    if legend.is_empty() {
        return (body.clone(), None);
    }
    let (w, _) = body.dim_in_pixel();
    let longest = legend
        .iter()
        .map(|e| text_width(body, &e.label, style::LEGEND_PX))
        .max()
        .unwrap_or(0);
    let max_w = ((w as f64 * 0.3) as u32).max(1);
    let legend_w = (longest + 84).clamp(200.min(max_w), max_w);
    let (plots, legend) = body.split_horizontally(w.saturating_sub(legend_w));
    (plots, Some(legend))
}

fn draw_legend(area: &Area, legend: &[LegendEntry], path: &Path) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let px = style::LEGEND_PX;
    let line_h = (px + 6) as i32;
    let text_x = 62;
    let font = (FONT, px)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 30i32;
    for (i, e) in legend.iter().enumerate() {
        let lines = wrap(area, &e.label, px, w.saturating_sub(text_x as u32 + 10));
        let need = lines.len() as i32 * line_h + 10;
        if y + need > h as i32 - 10 {
            let more = format!("… and {} more", legend.len() - i);
            area.draw_text(&more, &font, (10, y)).map_err(de(path))?;
            break;
        }
        draw_sample(area, e, (12, y), path)?;
        for (k, line) in lines.iter().enumerate() {
            area.draw_text(
                line,
                &font,
                (text_x, y + glyph_drop(px) + k as i32 * line_h),
            )
            .map_err(de(path))?;
        }
        y += need;
    }
    Ok(())
}

/// The small picture in front of a legend entry, centred vertically on `y`.
fn draw_sample(
    area: &Area,
    e: &LegendEntry,
    (x, y): (i32, i32),
    path: &Path,
) -> Result<(), PlotError> {
    let c = e.color.rgb();
    match e.sample {
        Sample::Line { dashed, width } => {
            let style = c.stroke_width(width.max(2));
            if dashed {
                for k in 0..3 {
                    let x0 = x + k * 15;
                    area.draw(&PathElement::new(vec![(x0, y), (x0 + 9, y)], style))
                        .map_err(de(path))?;
                }
            } else {
                area.draw(&PathElement::new(vec![(x, y), (x + 40, y)], style))
                    .map_err(de(path))?;
            }
        }
        Sample::Band => {
            area.draw(&Rectangle::new(
                [(x, y - 9), (x + 40, y + 9)],
                c.mix(0.25).filled(),
            ))
            .map_err(de(path))?;
        }
        Sample::Marker { shape, filled } => {
            draw_marker(area, shape, filled, 7, c, (x + 20, y), path)?;
        }
        Sample::Caret { up } => {
            let (sign, dy) = if up { (1, -10) } else { (-1, 10) };
            area.draw(&(EmptyElement::at((x + 20, y + dy)) + caret(c.stroke_width(2), sign, 0)))
                .map_err(de(path))?;
        }
    }
    Ok(())
}

/// One marker at pixel `p` on a pixel-coordinate area.
fn draw_marker(
    area: &Area,
    shape: Shape,
    filled: bool,
    size: u32,
    c: RGBColor,
    p: (i32, i32),
    path: &Path,
) -> Result<(), PlotError> {
    let style = if filled {
        c.filled()
    } else {
        c.stroke_width(2)
    };
    let s = size as i32;
    match shape {
        Shape::Circle => area.draw(&Circle::new(p, size, style)),
        Shape::Square => area.draw(&Rectangle::new(
            [(p.0 - s, p.1 - s), (p.0 + s, p.1 + s)],
            style,
        )),
        Shape::Triangle if filled => area.draw(&(EmptyElement::at(p) + triangle(size + 2, style))),
        Shape::Triangle => area.draw(&(EmptyElement::at(p) + triangle_outline(size + 2, style))),
        Shape::Cross => area.draw(&Cross::new(p, size, c.stroke_width(3))),
    }
    .map_err(de(path))
}

/// An upward triangle around (0, 0) in pixels, filled or outlined (plotters' own marker is
/// always filled, and a hollow one must say "censored").
fn triangle(size: u32, style: ShapeStyle) -> Polygon<(i32, i32)> {
    let s = size as f64;
    let pts: Vec<(i32, i32)> = [-90.0f64, 30.0, 150.0]
        .iter()
        .map(|deg| {
            let r = deg.to_radians();
            ((r.cos() * s).round() as i32, (r.sin() * s).round() as i32)
        })
        .collect();
    Polygon::new(pts, style)
}

/// The outline of [`triangle`], for hollow markers.
fn triangle_outline(size: u32, style: ShapeStyle) -> PathElement<(i32, i32)> {
    let s = size as f64;
    let pts: Vec<(i32, i32)> = [-90.0f64, 30.0, 150.0, -90.0]
        .iter()
        .map(|deg| {
            let r = deg.to_radians();
            ((r.cos() * s).round() as i32, (r.sin() * s).round() as i32)
        })
        .collect();
    PathElement::new(pts, style)
}

/// A hollow caret just inside a frame edge, in pixels from a point on that edge: pointing up
/// out of the top edge (`sign` 1) or down out of the bottom edge (`sign` −1), moved `shift`
/// pixels down.
fn caret(style: ShapeStyle, sign: i32, shift: i32) -> PathElement<(i32, i32)> {
    let (tip, base) = (3 * sign + shift, 16 * sign + shift);
    PathElement::new(vec![(0, tip), (-7, base), (7, base), (0, tip)], style)
}

/// A panel with nothing to show on its axes: its title and a sentence.
fn draw_empty(area: &Area, panel: &Panel, path: &Path) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let font = (FONT, style::AXIS_PX)
        .into_font()
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Center, VPos::Center));
    if let Some(t) = &panel.title {
        area.draw_text(t, &font, (w as i32 / 2, 30))
            .map_err(de(path))?;
    }
    area.draw_text(
        "no values that these axes can show",
        &font,
        (w as i32 / 2, h as i32 / 2),
    )
    .map_err(de(path))
}

fn draw_panel(area: &Area, panel: &Panel, path: &Path) -> Result<(), PlotError> {
    let Some((xs, ys)) = geometry::panel_spans(panel) else {
        return draw_empty(area, panel, path);
    };
    let (sx, sy) = (panel.x.scale, panel.y.scale);
    let (mut xt, mut yt) = (geometry::ticks(sx, xs), geometry::ticks(sy, ys));
    let y_label_w = yt
        .bold
        .iter()
        .map(|&t| text_width(area, &yt.label(sy, t), style::TICK_PX))
        .max()
        .unwrap_or(40)
        + style::AXIS_PX
        + 30;
    let (aw, ah) = area.dim_in_pixel();
    // Fewer ticks where their labels would touch.
    let x_room = aw.saturating_sub(y_label_w + 60);
    let x_widths: Vec<u32> = xt
        .bold
        .iter()
        .map(|&t| text_width(area, &xt.label(sx, t), style::TICK_PX) + 16)
        .collect();
    xt.bold = geometry::thin_to_fit(&xt.bold, &x_widths, x_room);
    let y_room = ah.saturating_sub(style::TICK_PX + style::AXIS_PX + 90);
    yt.bold = geometry::thin_to_fit(&yt.bold, &vec![style::TICK_PX + 14; yt.bold.len()], y_room);
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .margin_right(30)
        .x_label_area_size(style::TICK_PX + style::AXIS_PX + 34)
        .y_label_area_size(y_label_w);
    if let Some(t) = &panel.title {
        let mut px = style::SUBTITLE_PX;
        while px > 18 && text_width(area, t, px) + 20 > aw {
            px -= 1;
        }
        builder.caption(t, (FONT, px));
    }
    let mut chart = builder
        .build_cartesian_2d(TickedRange::new(xs, &xt), TickedRange::new(ys, &yt))
        .map_err(de(path))?;
    let xfmt = |t: &f64| xt.label(sx, *t);
    let yfmt = |t: &f64| yt.label(sy, *t);
    chart
        .configure_mesh()
        .x_desc(panel.x.label.as_str())
        .y_desc(panel.y.label.as_str())
        .axis_desc_style((FONT, style::AXIS_PX))
        .label_style((FONT, style::TICK_PX))
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(de(path))?;
    let rect = Rect { x: xs, y: ys };
    let plot_area = chart.plotting_area();
    for layer in &panel.layers {
        draw_layer(plot_area, layer, (sx, sy), &rect, path)?;
    }
    Ok(())
}

/// The plotting area of a chart: draws in axis coordinates.
type PlotArea<'a> = DrawingArea<BitMapBackend<'a>, Cartesian2d<TickedRange, TickedRange>>;

/// A linear coordinate over a [`Span`] of axis coordinates with the ticks we chose (plotters'
/// own key-point wrapper loses its value formatter, so the mesh could not label it).
pub(crate) struct TickedRange {
    span: Span,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl TickedRange {
    pub(crate) fn new(span: Span, ticks: &Ticks) -> Self {
        TickedRange {
            span,
            bold: ticks.bold.clone(),
            light: ticks.light.clone(),
        }
    }
}

impl Ranged for TickedRange {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        // Spans have positive width by construction (geometry::span_of); the clamp keeps a
        // stray value from overflowing the pixel type.
        let f = (v - self.span.lo) / (self.span.hi - self.span.lo);
        let px = limit.0 as f64 + f * (limit.1 - limit.0) as f64;
        if px.is_finite() {
            px.round().clamp(-1e6, 1e6) as i32
        } else {
            limit.0
        }
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.span.lo..self.span.hi
    }
}

fn draw_layer(
    area: &PlotArea,
    layer: &Layer,
    (sx, sy): (Scale, Scale),
    rect: &Rect,
    path: &Path,
) -> Result<(), PlotError> {
    let c = layer.color.rgb();
    let err = de(path);
    match &layer.kind {
        LayerKind::Line {
            points,
            width,
            dashed,
        } => {
            for run in geometry::transform_runs(points, sx, sy) {
                for piece in geometry::clip_polyline(&run, rect) {
                    draw_line(area, piece, c.stroke_width(*width), *dashed, path)?;
                }
            }
        }
        LayerKind::Band { points } => {
            for poly in geometry::band_polygons(points, sx, sy) {
                let poly = geometry::clip_polygon(&poly, rect);
                if poly.len() >= 3 {
                    area.draw(&Polygon::new(poly, c.mix(0.22).filled()))
                        .map_err(&err)?;
                }
            }
        }
        LayerKind::Markers {
            points,
            shape,
            filled,
            size,
        } => {
            let style = if *filled {
                c.filled()
            } else {
                c.stroke_width(2)
            };
            let s = *size as i32;
            for p in geometry::transform_runs(points, sx, sy)
                .into_iter()
                .flatten()
                .filter(|p| rect.contains(*p))
            {
                match shape {
                    Shape::Circle => area.draw(&Circle::new(p, *size, style)),
                    Shape::Square => area
                        .draw(&(EmptyElement::at(p) + Rectangle::new([(-s, -s), (s, s)], style))),
                    Shape::Triangle if *filled => {
                        area.draw(&(EmptyElement::at(p) + triangle(*size + 2, style)))
                    }
                    Shape::Triangle => {
                        area.draw(&(EmptyElement::at(p) + triangle_outline(*size + 2, style)))
                    }
                    Shape::Cross => area.draw(&Cross::new(p, *size, c.stroke_width(3))),
                }
                .map_err(&err)?;
            }
        }
        LayerKind::ErrorBars { bars, horizontal } => {
            let style = c.stroke_width(2);
            let (along, across, at_span, span) = if *horizontal {
                (sy, sx, rect.y, rect.x)
            } else {
                (sx, sy, rect.x, rect.y)
            };
            for b in bars {
                let Some(bp) = geometry::bar_path(b, along, across, at_span, span) else {
                    continue;
                };
                let pt = |v: f64| if *horizontal { (v, bp.at) } else { (bp.at, v) };
                area.draw(&PathElement::new(vec![pt(bp.lo), pt(bp.hi)], style))
                    .map_err(&err)?;
                // Pixel directions pointing away from the bar at its low and high ends (pixel y
                // grows downwards).
                let (out_lo, out_hi) = if *horizontal {
                    ((-1, 0), (1, 0))
                } else {
                    ((0, 1), (0, -1))
                };
                for (v, end, (dx, dy)) in [(bp.lo, bp.lo_end, out_lo), (bp.hi, bp.hi_end, out_hi)] {
                    let mark = match end {
                        // A cap across the bar.
                        geometry::BarEnd::Cap => vec![(-6 * dy, -6 * dx), (6 * dy, 6 * dx)],
                        // An arrowhead whose tip is the end: wings back along the bar.
                        geometry::BarEnd::Arrow => vec![
                            (-9 * dx - 6 * dy, -9 * dy - 6 * dx),
                            (0, 0),
                            (-9 * dx + 6 * dy, -9 * dy + 6 * dx),
                        ],
                    };
                    area.draw(&(EmptyElement::at(pt(v)) + PathElement::new(mark, style)))
                        .map_err(&err)?;
                }
            }
        }
        LayerKind::EdgeMarks { xs, top, row } => {
            let (y, sign) = if *top {
                (rect.y.hi, 1)
            } else {
                (rect.y.lo, -1)
            };
            let inset = sign * 16 * (*row).min(20) as i32;
            for x in xs.iter().filter_map(|x| sx.forward(*x)) {
                if rect.x.contains(x) {
                    area.draw(&(EmptyElement::at((x, y)) + caret(c.stroke_width(2), sign, inset)))
                        .map_err(&err)?;
                }
            }
        }
        LayerKind::VLine { x, dashed } => {
            if let Some(x) = sx.forward(*x).filter(|x| rect.x.contains(*x)) {
                let pts = vec![(x, rect.y.lo), (x, rect.y.hi)];
                draw_line(area, pts, c.stroke_width(2), *dashed, path)?;
            }
        }
        LayerKind::HLine { y, dashed } => {
            if let Some(y) = sy.forward(*y).filter(|y| rect.y.contains(*y)) {
                let pts = vec![(rect.x.lo, y), (rect.x.hi, y)];
                draw_line(area, pts, c.stroke_width(2), *dashed, path)?;
            }
        }
    }
    Ok(())
}

fn draw_line(
    area: &PlotArea,
    pts: Vec<(f64, f64)>,
    style: ShapeStyle,
    dashed: bool,
    path: &Path,
) -> Result<(), PlotError> {
    if pts.len() < 2 {
        return Ok(());
    }
    if dashed {
        area.draw(&plotters::element::DashedPathElement::new(
            pts, 12, 8, style,
        ))
        .map_err(de(path))
    } else {
        area.draw(&PathElement::new(pts, style)).map_err(de(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::chart::{Axis, Bar};
    use crate::plot::style::Rgb;
    use crate::plot::testdata::assert_png;

    /// A figure is written whole or not at all: where the write fails, the figure already
    /// there is left as it was, no partial file remains, and the error names the figure in one
    /// line (plotters' writer left a truncated PNG and its error's debug text).
    #[test]
    fn a_failed_write_keeps_the_figure_that_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig.png");
        let fill = |root: &Area<'_>| root.fill(&WHITE).map_err(de(&path));
        write_png(&path, (320, 240), fill).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(&before[..4], b"\x89PNG");
        assert_eq!(
            image::load_from_memory(&before)
                .unwrap()
                .to_rgb8()
                .dimensions(),
            (320, 240)
        );
        // A directory where the partial file goes: the write fails, as on a full disk.
        let partial = dir.path().join("fig.png.partial");
        std::fs::create_dir(&partial).unwrap();
        let e = write_png(&path, (400, 300), fill).unwrap_err().to_string();
        assert!(
            e.starts_with("could not write ") && e.contains("fig.png.partial: "),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::remove_dir(&partial).unwrap();
        write_png(&path, (400, 300), fill).unwrap();
        assert!(!partial.exists());
        let after = image::load_from_memory(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(after.to_rgb8().dimensions(), (400, 300));
    }

    fn figure(panels: Vec<Panel>) -> Figure {
        Figure {
            title: "odd data".into(),
            columns: 2,
            panels,
            footnote: Some("a footnote long enough to wrap ".repeat(8)),
        }
    }

    fn panel(xs: Scale, ys: Scale, pts: Vec<(f64, f64)>) -> Panel {
        let mut p = Panel::new(Axis::new("x (units)", xs), Axis::new("y (units)", ys));
        p.title = Some("panel".into());
        p.layers
            .push(Layer::line("l", Rgb::BLACK, pts.clone()).labelled("line"));
        p.layers.push(
            Layer::markers("m", Rgb(213, 94, 0), pts.clone(), Shape::Triangle, false)
                .labelled("hollow"),
        );
        p.layers.push(Layer::band(
            "b",
            Rgb(0, 114, 178),
            pts.iter().map(|&(x, y)| (x, y - 1.0, y + 1.0)).collect(),
        ));
        p.layers.push(Layer::error_bars(
            "e",
            Rgb::BLACK,
            pts.iter()
                .map(|&(x, y)| Bar::new(x, y / 2.0, y * 2.0).opened(false, x > 2.0))
                .collect(),
            false,
        ));
        p.layers
            .push(Layer::vline("v", Rgb::GREY, 3.0).labelled("v"));
        p.layers.push(Layer::hline("h", Rgb::GREY, f64::NAN));
        p
    }

    #[test]
    fn odd_data_never_panics_and_still_draws() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.png");
        let fig = figure(vec![
            // One point, on log axes.
            panel(Scale::Log2, Scale::Log10, vec![(64.0, 0.5)]),
            // All values equal.
            panel(
                Scale::Linear,
                Scale::Linear,
                vec![(1.0, 0.9), (2.0, 0.9), (3.0, 0.9)],
            ),
            // Nothing a log axis can show: an empty panel with a sentence.
            panel(Scale::Log10, Scale::Log10, vec![(-1.0, 0.0), (0.0, -3.0)]),
            // NaN, infinities and huge values mixed with good ones.
            panel(
                Scale::Linear,
                Scale::Log10,
                vec![
                    (f64::NAN, 1.0),
                    (1.0, f64::INFINITY),
                    (2.0, 1e300),
                    (3.0, 1e-300),
                    (4.0, 2.0),
                ],
            ),
        ]);
        draw_figure(&fig, &path, (1200, 800)).unwrap();
        assert_png(&path, (1200, 800));
        // No panels at all, and the smallest size allowed for a crowded figure.
        draw_figure(&figure(vec![]), &path, (400, 300)).unwrap();
        draw_figure(&fig, &path, (320, 240)).unwrap();
        assert!(matches!(
            draw_figure(&fig, &path, (100, 100)),
            Err(PlotError::Size { .. })
        ));
    }

    #[test]
    fn unwritable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("f.png");
        let fig = figure(vec![panel(Scale::Linear, Scale::Linear, vec![(1.0, 1.0)])]);
        let err = draw_figure(&fig, &path, (800, 600)).unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("could not write ")
                && text.contains("f.png")
                && text.contains("os error"),
            "{text}"
        );
    }
}
