//! CUDA C generation from the typed IR.

use crate::typed;

/// The CUDA C source of one specialization: a header comment, the preamble it needs, the
/// device functions, and one `extern "C" __global__` entry named `kernel.symbol`.
pub fn cuda_source(kernel: &typed::Kernel) -> String {
    let _ = kernel;
    todo!("codegen")
}
