//! Typed errors of the library. Only the CLI layer turns them into messages and exit codes.

use std::path::PathBuf;

/// Everything that can go wrong inside scalelab's library code.
///
/// Each variant's message is one line that names the offending field, file or value, so the
/// CLI can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is impossible (B > N, m ≥ 1, ε ≤ 0, …).
    #[error("invalid {field}: {message}")]
    Config {
        /// The field, as the user spells it (`lr`, `batch_size`, …).
        field: String,
        /// What is wrong with it, including the value.
        message: String,
    },

    /// A data file is missing, truncated or not in the expected format.
    #[error("{}: {message}", path.display())]
    Data {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A sweep file could not be parsed or validated.
    #[error("{0}")]
    Sweep(String),

    /// The tensor library failed (shape mismatch, allocation failure, …).
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),

    /// The results database failed (the message names the database file).
    #[error("{0}")]
    Db(String),

    /// A query given by the user was refused or is malformed.
    #[error("{0}")]
    Query(String),

    /// A plot or report could not be drawn or written.
    #[error("{0}")]
    Report(String),

    /// The run was stopped by the user (Ctrl-C) before it finished.
    #[error("interrupted")]
    Interrupted,

    /// Parameter values given from outside (a PyTorch `state_dict`'s) do not fit the network.
    #[error(transparent)]
    Params(#[from] ParamsError),
}

/// Why parameter values given from outside do not fit a network
/// ([`crate::train::model::load_torch_params`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Not one set of values per parameter tensor.
    #[error("{given} parameter tensors given, the network has {expected}")]
    Count {
        /// Tensors given.
        given: usize,
        /// The network's parameter tensors.
        expected: usize,
    },
    /// A tensor's values are not as many as the parameter holds.
    #[error("parameter {index}: {given} values given, the network's holds {expected}")]
    Size {
        /// The parameter's position in [`crate::train::model::Network::params`] order.
        index: usize,
        /// Values given.
        given: usize,
        /// Values the parameter holds.
        expected: usize,
    },
}

/// Shorthand for results of scalelab's library functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid configuration value: `field` as the user spells it, `message` saying why.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A malformed or missing data file.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
