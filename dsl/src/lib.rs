//! warpforge-dsl: the kernel IR, its resolver and validator, the CUDA C generator, the NVRTC
//! compile path with its on-disk cache, the backends (cuda, cpu) and the CPU interpreter.
//!
//! The way a kernel travels: `#[kernel]` builds an [`ir::KernelDef`]; [`resolve::specialize`]
//! turns it, for one [`space::Config`], into a [`typed::Kernel`]; [`codegen::cuda_source`]
//! prints it as CUDA C, which [`nvrtc::compile`] turns into a cubin; or [`interp::run`]
//! executes it on the CPU. [`backend::Device`] puts both behind one launch call.

pub mod backend;
pub mod cache_file;
pub mod codegen;
pub mod convert;
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
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Interp(#[from] interp::InterpError),
    #[error(transparent)]
    Nvrtc(#[from] nvrtc::NvrtcError),
    #[error(transparent)]
    Device(#[from] backend::DeviceError),
    #[error(transparent)]
    Host(#[from] host::HostError),
}
