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
            #[cfg(feature = "cuda")]
            warpforge_dsl::backend::Backend::Cuda => Box::new(super::CudaTimer::new(device)?),
            // A CPU-only build opens no GPU device.
            #[cfg(not(feature = "cuda"))]
            warpforge_dsl::backend::Backend::Cuda => {
                return Err(TuneError::Device(
                    "warpforge-autotune was built without its `cuda` feature".into(),
                ))
            }
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
