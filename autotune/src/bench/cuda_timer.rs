//! GPU timing: CUDA events on the device's stream, with an L2 flush before each sample
//! (see [`super::DeviceBench`]). Only in builds with the `cuda` feature.

use super::{RunFailure, Timer};
use crate::TuneError;
use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warpforge_dsl::Device;

/// CUDA events on the device's own stream (the one `Device::launch` enqueues on).
pub struct CudaTimer {
    stream: Arc<CudaStream>,
    start: CudaEvent,
    end: CudaEvent,
    flush: CudaSlice<u8>,
}

fn driver_error(during: &str) -> impl Fn(cudarc::driver::DriverError) -> TuneError + '_ {
    move |e| TuneError::Device(format!("{during}: {e}"))
}

impl CudaTimer {
    /// `None`-free for a GPU device; an error on the cpu backend.
    pub fn new(device: &Device) -> Result<CudaTimer, TuneError> {
        let stream = device
            .cuda_stream()
            .ok_or_else(|| TuneError::Device(format!("{} has no CUDA stream", device.name())))?;
        let ctx = stream.context();
        let l2 = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
            .map_err(driver_error("reading the L2 cache size"))?;
        // Events are created with timing enabled: `new_event(None)` disables it.
        let event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(driver_error("creating a timing event"))
        };
        let (start, end) = (event()?, event()?);
        let bytes = (2 * l2.max(0) as usize).max(1 << 20);
        let flush = stream
            .alloc_zeros::<u8>(bytes)
            .map_err(driver_error("allocating the L2 flush buffer"))?;
        Ok(CudaTimer {
            stream,
            start,
            end,
            flush,
        })
    }

    /// Size of the buffer written to flush the L2 cache.
    pub fn flush_bytes(&self) -> usize {
        self.flush.len()
    }
}

impl Timer for CudaTimer {
    fn flush_l2(&mut self) -> Result<(), RunFailure> {
        self.stream
            .memset_zeros(&mut self.flush)
            .map_err(|e| RunFailure::Error(format!("flushing the L2 cache: {e}")))
    }

    fn start(&mut self) -> Result<(), RunFailure> {
        self.start
            .record(&self.stream)
            .map_err(|e| RunFailure::Error(format!("recording the start event: {e}")))
    }

    fn stop(&mut self, limit: Duration) -> Result<f64, RunFailure> {
        self.end
            .record(&self.stream)
            .map_err(|e| RunFailure::Error(format!("recording the end event: {e}")))?;
        let waited = Instant::now();
        // Poll rather than block, so a kernel that never ends is reported, not waited on.
        loop {
            match self.end.try_is_complete() {
                Ok(true) => break,
                Ok(false) if waited.elapsed() > limit => {
                    return Err(RunFailure::TimedOut(waited.elapsed()))
                }
                Ok(false) => std::thread::sleep(Duration::from_micros(20)),
                // A fault of the kernel surfaces here (illegal address, trap, ...).
                Err(e) => return Err(RunFailure::Crashed(e.to_string())),
            }
        }
        let ms = self
            .start
            .elapsed_ms(&self.end)
            .map_err(|e| RunFailure::Error(format!("reading the event timer: {e}")))?;
        Ok(ms as f64 * 1e-3)
    }

    fn fault_is_fatal(&self) -> bool {
        true
    }
}
