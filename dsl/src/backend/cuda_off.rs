//! The cuda backend of a build without the `cuda` feature: the same names, no cudarc.
//! [`CudaDevice::open`] always fails with [`DeviceError::NoDriver`] saying how to enable
//! it, so no value of these types ever exists and every method is unreachable by type.

use super::device::{DeviceError, DeviceLimits, SpecKey};
use super::view::{View, ViewMemory};
use super::{Arg, LaunchDims};
use crate::nvrtc::Arch;
use crate::typed;

/// Device memory of a buffer on the cuda backend (never created in this build).
#[derive(Debug)]
pub enum DeviceMemory {}

impl DeviceMemory {
    /// Size of the allocation.
    pub fn bytes(&self) -> usize {
        match *self {}
    }

    /// The ordinal of the GPU holding this memory.
    pub fn ordinal(&self) -> usize {
        match *self {}
    }

    pub(crate) fn view_memory(&self) -> ViewMemory {
        match *self {}
    }
}

pub(crate) enum CudaDevice {}

impl CudaDevice {
    pub(crate) fn open(_ordinal: usize) -> Result<CudaDevice, DeviceError> {
        Err(DeviceError::NoDriver {
            detail: "warpforge was built without its `cuda` feature (a CPU-only build); \
                     enable the `cuda` feature of the `warpforge` crate to launch on a GPU"
                .into(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        match *self {}
    }

    pub(crate) fn arch(&self) -> Arch {
        match *self {}
    }

    pub(crate) fn limits(&self) -> &DeviceLimits {
        match *self {}
    }

    pub(crate) fn upload(&self, _bytes: &[u8]) -> Result<DeviceMemory, DeviceError> {
        match *self {}
    }

    pub(crate) fn zeros(&self, _bytes: usize) -> Result<DeviceMemory, DeviceError> {
        match *self {}
    }

    pub(crate) fn download(
        &self,
        _mem: &DeviceMemory,
        _bytes: usize,
    ) -> Result<Vec<u8>, DeviceError> {
        match *self {}
    }

    pub(crate) fn download_view(
        &self,
        _view: &View,
        _bytes: usize,
    ) -> Result<Vec<u8>, DeviceError> {
        match *self {}
    }

    pub(crate) fn synchronize(&self) -> Result<(), DeviceError> {
        match *self {}
    }

    pub(crate) fn lost(&self) -> Option<DeviceError> {
        match *self {}
    }

    pub(crate) fn launch(
        &self,
        _key: &SpecKey,
        _kernel: &typed::Kernel,
        _dims: LaunchDims,
        _args: &mut [Arg],
    ) -> Result<(), crate::Error> {
        match *self {}
    }
}
