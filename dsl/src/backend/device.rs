//! The device: cpu (interpreter) or cuda.

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

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Other(String),
}
