//! scalelab — a laboratory for the science of batch size and learning rate.
//!
//! Data flow (see docs/ and the README):
//! sweep file → [`sweep`] (parse, validate, expand to cells) → [`db`] (runs table) →
//! [`scheduler`] (claims runs, one compute thread each) → [`train`] (candle: data → model →
//! momentum SGD → per-epoch evaluation) → [`db`] (epoch metrics) → fits → reports.
//!
//! Boundaries: the trainer knows nothing of tokio or sqlx; the database layer knows nothing of
//! candle; fits and plot data are pure functions; only [`cli`] turns errors into messages.

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod fit;
pub mod instruments;
pub mod plot;
pub mod progress;
pub mod provenance;
pub mod query;
pub mod report;
pub mod scheduler;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};
