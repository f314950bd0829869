//! The real bench: library kernels on a [`Device`], timed with CUDA events on a GPU and
//! with the wall clock on the interpreter.
//!
//! A GPU sample is: write a buffer twice the size of the L2 cache (so the kernel starts
//! with a cold L2, as it does between the layers of a model), record the start event,
//! launch, record the end event, and wait for it. The flush is enqueued before the start
//! event and is still running while the host enqueues the launch, so the host's launch
//! overhead is hidden and the events bracket the kernel alone.

use super::{Bench, RunFailure, Tolerance};
use crate::shapes::check_shape;
use crate::shapes::ProblemShape;
use crate::TuneError;
use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warpforge_dsl::{Config, Device};
use warpforge_kernels::Case;

/// Brackets launches with a clock.
pub trait Timer {
    /// Evicts the device's cache ahead of the next timed launch (untimed).
    fn flush_l2(&mut self) -> Result<(), RunFailure>;
    /// Marks the start, before the launch is enqueued.
    fn start(&mut self) -> Result<(), RunFailure>;
    /// Marks the end after the launch was enqueued, waits for it for at most `limit`,
    /// and returns the seconds between start and end.
    fn stop(&mut self, limit: Duration) -> Result<f64, RunFailure>;
    /// Whether a crash or a time-out leaves the device unusable (true on a GPU: a
    /// faulted context is lost, and a kernel that runs on cannot be stopped).
    fn fault_is_fatal(&self) -> bool;
}

/// The interpreter's timer: it runs a launch to completion inside the call, so the wall
/// clock brackets it exactly. There is no device cache to flush.
#[derive(Debug, Default)]
pub struct WallTimer {
    started: Option<Instant>,
}

impl Timer for WallTimer {
    fn flush_l2(&mut self) -> Result<(), RunFailure> {
        Ok(())
    }

    fn start(&mut self) -> Result<(), RunFailure> {
        self.started = Some(Instant::now());
        Ok(())
    }

    fn stop(&mut self, limit: Duration) -> Result<f64, RunFailure> {
        let elapsed = self.started.take().map_or(Duration::ZERO, |s| s.elapsed());
        if elapsed > limit {
            return Err(RunFailure::TimedOut(elapsed));
        }
        Ok(elapsed.as_secs_f64())
    }

    fn fault_is_fatal(&self) -> bool {
        false
    }
}

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

/// A library kernel's case at a prepared shape.
struct Prepared {
    case: Box<dyn Case>,
    tolerance: Tolerance,
}

impl Prepared {
    /// The kernel's inputs at `shape`, on `device` (the library's description builds them).
    fn new(device: &Device, shape: &ProblemShape) -> Result<Prepared, RunFailure> {
        check_shape(shape).map_err(RunFailure::Error)?;
        let kernel = warpforge_kernels::find(&shape.kernel)
            .ok_or_else(|| RunFailure::Error(format!("no library kernel {}", shape.kernel)))?;
        let problem = shape.problem();
        let case = kernel
            .case(device, &problem)
            .map_err(|e| RunFailure::Error(format!("building the inputs: {e}")))?;
        Ok(Prepared {
            case,
            tolerance: kernel.config_tolerance(&problem),
        })
    }
}

/// The library kernels on a real device.
pub struct DeviceBench<'d> {
    device: &'d Device,
    timer: Box<dyn Timer + 'd>,
    prepared: Option<Prepared>,
    /// The longest one launch may take before it counts as timed out.
    pub launch_limit: Duration,
    healthy: bool,
}

impl<'d> DeviceBench<'d> {
    /// CUDA events on a GPU, the wall clock on the interpreter.
    pub fn new(device: &'d Device) -> Result<DeviceBench<'d>, TuneError> {
        let timer: Box<dyn Timer> = match device.backend() {
            warpforge_dsl::backend::Backend::Cuda => Box::new(CudaTimer::new(device)?),
            warpforge_dsl::backend::Backend::Cpu | warpforge_dsl::backend::Backend::Host => {
                Box::new(WallTimer::default())
            }
        };
        Ok(DeviceBench::with_timer(device, timer))
    }

    pub fn with_timer(device: &'d Device, timer: Box<dyn Timer + 'd>) -> DeviceBench<'d> {
        DeviceBench {
            device,
            timer,
            prepared: None,
            launch_limit: Duration::from_secs(5),
            healthy: true,
        }
    }

    fn case(&mut self) -> Result<&mut dyn Case, RunFailure> {
        match &mut self.prepared {
            Some(p) => Ok(p.case.as_mut()),
            None => Err(RunFailure::Error("no problem prepared".into())),
        }
    }

    /// One timed launch; a crash or time-out on a GPU marks the device lost.
    fn timed_launch(&mut self, config: &Config) -> Result<f64, RunFailure> {
        let result = self.try_timed_launch(config);
        if let Err(RunFailure::Crashed(_) | RunFailure::TimedOut(_)) = &result {
            if self.timer.fault_is_fatal() {
                self.healthy = false;
            }
        }
        result
    }

    fn try_timed_launch(&mut self, config: &Config) -> Result<f64, RunFailure> {
        let (device, limit) = (self.device, self.launch_limit);
        self.timer.start()?;
        let launched = self.case()?.launch(device, config);
        launched.map_err(|e| match e {
            // The interpreter found the kernel at fault (out of bounds, divergent barrier).
            warpforge_dsl::Error::Interp(e) => RunFailure::Crashed(e.to_string()),
            e => RunFailure::Error(e.to_string()),
        })?;
        self.timer.stop(limit)
    }
}

impl Bench for DeviceBench<'_> {
    fn prepare(&mut self, shape: &ProblemShape) -> Result<(), RunFailure> {
        self.prepared = None; // free the previous problem's buffers first
        self.prepared = Some(Prepared::new(self.device, shape)?);
        Ok(())
    }

    fn output(&mut self, config: &Config) -> Result<Vec<f32>, RunFailure> {
        self.timed_launch(config)?;
        let device = self.device;
        self.case()?
            .output(device, config)
            .map_err(|e| RunFailure::Error(format!("reading the output: {e}")))
    }

    fn sample(&mut self, config: &Config) -> Result<f64, RunFailure> {
        self.timer.flush_l2()?;
        self.timed_launch(config)
    }

    fn accumulates(&self) -> bool {
        self.prepared.as_ref().is_some_and(|p| p.case.accumulates())
    }

    fn restore(&mut self) -> Result<(), RunFailure> {
        let device = self.device;
        self.case()?
            .restore(device)
            .map_err(|e| RunFailure::Error(format!("restoring the output: {e}")))
    }

    fn tolerance(&self) -> Tolerance {
        self.prepared
            .as_ref()
            .map_or(Tolerance::EXACT, |p| p.tolerance)
    }

    fn healthy(&self) -> bool {
        self.healthy
    }
}
