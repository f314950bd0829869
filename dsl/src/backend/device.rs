//! The device: cpu (interpreter) or cuda.

use super::{Arg, LaunchDims};
use crate::ir::KernelDef;
use crate::space::Config;

/// Which backend a device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Cuda,
}

/// A device to allocate buffers on and launch kernels on.
pub enum Device {
    Cpu,
}

impl Device {
    /// Stub of the real launch (macros worktree only): lets generated launchers compile.
    pub fn launch(
        &self,
        kernel: &KernelDef,
        config: &Config,
        dims: LaunchDims,
        args: &mut [Arg],
    ) -> Result<(), crate::Error> {
        let _ = (kernel, config, dims, args);
        Err(crate::Error::Device(DeviceError::Other("stub".into())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Other(String),
}
