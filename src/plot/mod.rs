//! PNG figures for the report, drawn with plotters' bitmap backend.
//!
//! Every figure is made in two steps, after criterion's plots: a pure `prepare_*` function turns
//! the fits (and, where needed, the runs) into a [`chart::Figure`] (or a heatmap), a plain
//! description of panels, lines, bands and markers in data units that the tests inspect; the one
//! generic drawer, [`draw::draw_figure`], draws every such description (with the pure, tested
//! transforms, ticks and clipping of [`geometry`]); only the heatmap has its own drawing. A figure
//! the data cannot support comes back as `Err(reason)` from its `prepare_*`: one human sentence
//! the index shows instead of the image.
//!
//! Text renders with no system fonts: plotters is built without `ttf` (no font-kit, no
//! fontconfig) and with `ab_glyph`; [`style::ensure_fonts`] registers the DejaVu fonts that the
//! `dejavu` crate embeds.

pub mod batch;
pub mod chart;
pub mod collapse;
pub mod curves;
pub mod draw;
pub mod efficiency;
pub mod format;
pub mod geometry;
pub mod heatmap;
pub mod instruments;
pub mod labels;
pub mod learning_curve;
pub mod scaling;
pub mod schedules;
pub mod style;
#[cfg(test)]
pub(crate) mod testdata;

use std::path::PathBuf;

/// Why a figure or the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The embedded font could not be registered with plotters.
    #[error("could not register the embedded DejaVu font: {0}")]
    Font(String),
    /// plotters failed while drawing or encoding the PNG.
    #[error("could not draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
    /// A file or directory could not be written.
    #[error("could not write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The requested image size is too small or too large to lay out.
    #[error("image size {width}×{height} px is outside 320×240 … 8000×8000")]
    Size { width: u32, height: u32 },
    /// The sweep has nothing to report.
    #[error(
        "sweep '{sweep}' has no completed runs ({states}): nothing to report; run the sweep \
         first (`scalelab run`) or check why its runs failed"
    )]
    NoCompletedRuns { sweep: String, states: String },
}

impl PlotError {
    /// A drawing error from plotters, kept as text (its error type is generic over the backend).
    pub(crate) fn draw(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        PlotError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Why a figure was not drawn: one human sentence for the index.
pub type SkipReason = String;
