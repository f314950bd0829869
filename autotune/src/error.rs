//! The autotuner's errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),

    #[error("unknown kernel `{name}`; the library has: {known}")]
    UnknownKernel { name: String, known: String },

    #[error("kernel `{kernel}`: bad problem shape: {message}")]
    Shape { kernel: String, message: String },

    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    #[error("unknown search strategy `{name}`; available: {known}")]
    UnknownStrategy { name: String, known: String },

    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),

    #[error("the device cannot be used for tuning: {0}")]
    Device(String),
}
