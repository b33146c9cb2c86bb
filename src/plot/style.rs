//! Fonts, colours and sizes shared by every figure.
//!
//! Colours: the Okabe–Ito palette (Okabe & Ito 2008, "Color Universal Design"), distinguishable
//! under the common colour-vision deficiencies; yellow comes last because it is faint on white.
//! Beyond eight series the colours repeat with another marker shape and dash pattern.
//! Heatmaps use viridis (perceptually uniform and colour-blind safe).

use std::sync::OnceLock;

use plotters::style::{FontStyle, RGBColor, register_font};

use super::PlotError;

/// The family every text uses; registered from the embedded DejaVu Sans.
pub const FONT: &str = "sans-serif";
/// Figure title.
pub const TITLE_PX: u32 = 34;
/// Panel titles.
pub const SUBTITLE_PX: u32 = 25;
/// Axis descriptions ("batch size B (examples)").
pub const AXIS_PX: u32 = 24;
/// Tick labels.
pub const TICK_PX: u32 = 20;
/// Legend entries.
pub const LEGEND_PX: u32 = 20;
/// Footnotes and in-plot notes.
pub const NOTE_PX: u32 = 20;

/// The default figure size: readable at 100% zoom.
pub const DEFAULT_SIZE: (u32, u32) = (1200, 800);

/// A colour, kept as plain data so prepared figures compare in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    pub const GREY: Rgb = Rgb(110, 110, 110);
    pub const LIGHT_GREY: Rgb = Rgb(200, 200, 200);

    /// The plotters colour.
    pub fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }

    /// Relative luminance in [0, 1] (Rec. 709 weights), to pick a readable text colour on it.
    pub fn luminance(self) -> f64 {
        (0.2126 * self.0 as f64 + 0.7152 * self.1 as f64 + 0.0722 * self.2 as f64) / 255.0
    }
}

/// Okabe–Ito, ordered for white backgrounds: blue, vermillion, bluish green, orange,
/// reddish purple, sky blue, black, yellow.
pub const OKABE_ITO: [Rgb; 8] = [
    Rgb(0, 114, 178),
    Rgb(213, 94, 0),
    Rgb(0, 158, 115),
    Rgb(230, 159, 0),
    Rgb(204, 121, 167),
    Rgb(86, 180, 233),
    Rgb(0, 0, 0),
    Rgb(240, 228, 66),
];

/// The colour of series `i`.
pub fn series_color(i: usize) -> Rgb {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// Marker shapes; series beyond the palette get the next shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Cross,
}

/// The marker shape of series `i` (changes each time the palette wraps).
pub fn series_shape(i: usize) -> Shape {
    [Shape::Circle, Shape::Square, Shape::Triangle][(i / OKABE_ITO.len()) % 3]
}

/// Whether series `i` is dashed (every other time the palette wraps), so that more than eight
/// lines stay distinguishable.
pub fn series_dashed(i: usize) -> bool {
    (i / OKABE_ITO.len()) % 2 == 1
}

/// Viridis (matplotlib's, sampled at tenths and interpolated linearly) at t ∈ [0, 1]
/// (clamped; NaN gives the low end).
pub fn viridis(t: f64) -> Rgb {
    const V: [(u8, u8, u8); 11] = [
        (68, 1, 84),
        (72, 36, 117),
        (65, 68, 135),
        (53, 95, 141),
        (42, 120, 142),
        (33, 145, 140),
        (34, 168, 132),
        (68, 191, 112),
        (122, 209, 81),
        (189, 223, 38),
        (253, 231, 37),
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } * 10.0;
    let i = (t.floor() as usize).min(9);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (V[i], V[i + 1]);
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Registers DejaVu Sans (regular and bold) as plotters' "sans-serif", once per process.
pub fn ensure_fonts() -> Result<(), PlotError> {
    static FONTS: OnceLock<Result<(), String>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "DejaVu Sans (regular) is not a valid font".to_string())?;
            register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
                .map_err(|_| "DejaVu Sans (bold) is not a valid font".to_string())
        })
        .clone()
        .map_err(PlotError::Font)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_wraps_with_new_shapes_and_fonts_register() {
        assert_eq!(series_color(0), series_color(8));
        assert_ne!(series_shape(0), series_shape(8));
        assert!(!series_dashed(3) && series_dashed(9));
        assert_ne!(viridis(0.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), viridis(-3.0));
        assert_eq!(viridis(1.0), Rgb(253, 231, 37));
        assert_eq!(viridis(0.05), Rgb(70, 19, 101));
        ensure_fonts().unwrap();
        ensure_fonts().unwrap(); // idempotent
    }
}
