//! The CPU interpreter of the typed IR.

use crate::backend::{Arg, LaunchDims};
use crate::typed;

/// Interpreter switches.
#[derive(Clone, Debug)]
pub struct InterpOptions {
    /// Run blocks in parallel on the CPU's threads (rayon).
    pub parallel: bool,
}

impl Default for InterpOptions {
    fn default() -> Self {
        InterpOptions { parallel: true }
    }
}

/// An error raised while interpreting a kernel.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("{0}")]
    Other(String),
}

/// Runs `kernel` over the whole grid of `dims` with `args` (one per kernel parameter).
pub fn run(
    kernel: &typed::Kernel,
    dims: &LaunchDims,
    args: &mut [Arg],
    options: &InterpOptions,
) -> Result<(), InterpError> {
    let _ = (kernel, dims, args, options);
    todo!("interp")
}
