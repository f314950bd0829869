//! warpforge-dsl: the kernel IR, its resolver and validator, the CUDA C generator, the NVRTC
//! compile path with its on-disk cache, the backends (cuda, cpu) and the CPU interpreter.
//!
//! The way a kernel travels: `#[kernel]` builds an [`ir::KernelDef`]; [`resolve::specialize`]
//! turns it, for one [`space::Config`], into a [`typed::Kernel`]; [`codegen::cuda_source`]
//! prints it as CUDA C, which [`nvrtc::compile`] turns into a cubin; or [`interp::run`]
//! executes it on the CPU. [`backend::Device`] puts both behind one launch call.
//!
//! Users depend on the `warpforge` facade, whose `#[kernel]` finds this crate by itself; a
//! crate that depends on `warpforge-dsl` and `warpforge-macros` directly can name it:
//!
//! ```
//! use warpforge_dsl::prelude::*;
//! use warpforge_dsl::{codegen, resolve, Device, LaunchDims};
//! use warpforge_macros::kernel;
//!
//! #[kernel(crate = ::warpforge_dsl, block = (BLOCK), tune(BLOCK = [64, 128]))]
//! pub fn square<const BLOCK: u32>(x: &[f32], y: &mut [f32], n: u32) {
//!     let i = block_idx_x() * BLOCK + thread_idx_x();
//!     if i < n {
//!         y[i] = x[i] * x[i];
//!     }
//! }
//!
//! # fn main() -> Result<(), warpforge_dsl::Error> {
//! let config = square::default_config();
//! // The CUDA C that NVRTC would compile...
//! let cuda_c = codegen::cuda_source(&resolve::specialize(square::def(), &config)?);
//! assert!(cuda_c.contains("__global__"));
//! // ...and the same kernel on the interpreter.
//! let device = Device::cpu();
//! let x = device.upload(&[1.0f32, 2.0, 3.0])?;
//! let mut y = device.zeros::<f32>(3)?;
//! square::launch(&device, &config, LaunchDims::cover(3, 64), &x, &mut y, 3)?;
//! assert_eq!(device.download(&y)?, [1.0, 4.0, 9.0]);
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub(crate) mod cache_file;
pub mod codegen;
pub mod convert;
pub mod export;
pub mod host;
pub mod interp;
pub mod ir;
pub mod nvrtc;
pub mod prelude;
pub mod resolve;
pub mod space;
#[cfg(test)]
pub(crate) mod test_ir;
pub mod typed;
pub mod types;

pub use backend::{Arg, Buffer, Device, Element, LaunchDims};
pub use ir::{DeviceFnDef, KernelDef};
pub use nvrtc::min_arch;
pub use space::{Config, TuneSpace};
pub use types::{ScalarType, Type};

/// Any error of this crate.
///
/// The interpreter's error is boxed: its fault reports carry several names and sites, and
/// every `Result` on the launch path carries this enum, so the success path stays small.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Interp(Box<interp::InterpError>),
    #[error(transparent)]
    Nvrtc(#[from] nvrtc::NvrtcError),
    #[error(transparent)]
    Device(#[from] backend::DeviceError),
    #[error(transparent)]
    Host(#[from] host::HostError),
}

impl From<interp::InterpError> for Error {
    fn from(e: interp::InterpError) -> Error {
        Error::Interp(Box::new(e))
    }
}
