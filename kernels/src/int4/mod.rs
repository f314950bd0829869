//! int4 weight-only quantization (MARLIN-style dequant-GEMM, RTN/GPTQ quantizers with
//! per-output- and per-input-channel groups as in AdaDim, GPTQ/AWQ checkpoint import).
//!
//! [`Int4Weight`] is the *logical* quantized weight every part agrees on: quantizers and
//! importers produce it, the packer turns it into the kernel's layout, and
//! [`Int4Weight::dequantize`] is the reference the kernels are checked against.

pub mod adadim;
pub mod gptq;
pub mod import;
mod linalg;
pub mod quant;
pub mod weight;

pub use weight::{GroupDim, Int4Error, Int4Weight};
pub mod dequant;
pub mod family;
pub mod gemm;
pub mod host;
pub use family::kernels;
pub mod layout;
#[cfg(test)]
mod tests;
