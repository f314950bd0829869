//! The cuda backend: device discovery that never panics, device memory, launch.

/// Device memory of a buffer on the cuda backend.
#[derive(Debug)]
pub struct DeviceMemory {}
