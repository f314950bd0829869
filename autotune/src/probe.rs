//! The identity of a GPU for the tuning cache.

use crate::key::DeviceKey;
use crate::TuneError;
use warpforge_dsl::Device;

/// The cache key of `device` in a build without the `cuda` feature: no GPU can be opened.
#[cfg(not(feature = "cuda"))]
pub fn device_key(device: &Device) -> Result<DeviceKey, TuneError> {
    Err(TuneError::Device(format!(
        "{} is not a GPU: tuning needs the cuda backend (the `cuda` feature)",
        device.name()
    )))
}

/// The cache key of `device` (a GPU): name, compute capability, SM count, driver and
/// NVRTC versions, and this warpforge's version.
#[cfg(feature = "cuda")]
pub fn device_key(device: &Device) -> Result<DeviceKey, TuneError> {
    use cudarc::driver::sys::{self, CUdevice_attribute};
    use warpforge_dsl::nvrtc;

    let (Some(stream), Some(arch)) = (device.cuda_stream(), device.arch()) else {
        return Err(TuneError::Device(format!(
            "{} is not a GPU: tuning needs the cuda backend",
            device.name()
        )));
    };
    let sms = stream
        .context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| TuneError::Device(format!("reading the SM count: {e}")))?;
    let mut driver = 0i32;
    // SAFETY: the driver library is loaded (the device was opened through it); the call
    // writes one int.
    let status = unsafe { sys::cuDriverGetVersion(&mut driver) };
    if status != sys::CUresult::CUDA_SUCCESS {
        return Err(TuneError::Device(format!(
            "reading the driver version: {status:?}"
        )));
    }
    let (major, minor) = nvrtc::version().map_err(|e| TuneError::Kernel(e.into()))?;
    Ok(DeviceKey {
        name: device.name(),
        arch: arch.to_string(),
        sms: sms.max(0) as u32,
        driver: format!("{}.{}", driver / 1000, driver % 1000 / 10),
        nvrtc: format!("{major}.{minor}"),
        warpforge: env!("CARGO_PKG_VERSION").to_string(),
    })
}
