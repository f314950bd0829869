//! The buffers and launch of each tunable library kernel at one problem shape.
//!
//! Inputs are deterministic (a fixed-seed generator per shape) and chosen so that configs
//! can be compared with each other: GEMM inputs are small integers, so every config's sum
//! is exact and outputs must match bit for bit; FP8 and COAT outputs are computed per
//! element (or per group by one warp) the same way in every config, so codes, scales and
//! updated states match exactly too.
//!
//! Each family lives in its own module, with its own typed buffers (f16 GEMM operands, FP8
//! codes) and one small adapter that calls the kernel modules:
//! - [`basic`]: the f32 kernels (gemm, softmax, vector_add, sum_partials);
//! - [`gemm_tc`]: the tensor-core GEMMs (f16/bf16 A and B; f32, f16 or bf16 C);
//! - [`fp8_gemm`]: the FP8 GEMM with block scales;
//! - [`fp8`]: FP8 amax, quantization (tensor, delayed, 1×128 rows, transposed rows,
//!   128×128 tiles) and dequantization;
//! - [`coat`]: COAT's DRE quantization and the FP8 AdamW step.

mod basic;
mod coat;
mod fp8;
mod fp8_gemm;
mod fp8_launch;
mod gemm_tc;
#[cfg(test)]
mod tests;

use crate::bench::Tolerance;
use crate::shapes::{check_shape, ProblemShape};
use crate::TuneError;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Config, Device};

/// One kernel's buffers at one shape, as a family module builds them.
trait Problem {
    /// Enqueues one launch of `config`.
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error>;

    /// The output after a run, as f32s comparable across configs.
    fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, DeviceError>;

    /// Whether a launch reads what an earlier one wrote (an atomic max into its output, an
    /// optimizer state updated in place), so [`Problem::restore`] must run before a
    /// launch whose output is checked.
    fn accumulates(&self) -> bool {
        false
    }

    /// Writes the state a launch modifies in place back to its initial contents.
    fn restore(&mut self, _device: &Device) -> Result<(), DeviceError> {
        Ok(())
    }

    fn tolerance(&self) -> Tolerance {
        Tolerance::EXACT
    }
}

/// One problem on one device: its buffers and how to launch it.
pub struct Workload {
    problem: Box<dyn Problem>,
    /// Whether the kernel accumulates into its output (or updates state in place): the
    /// tuner then calls [`Workload::restore`] before each checked run.
    pub accumulates: bool,
    pub tolerance: Tolerance,
}

impl Workload {
    /// Allocates and fills the buffers of `shape` on `device`.
    pub fn new(device: &Device, shape: &ProblemShape) -> Result<Workload, TuneError> {
        check_shape(shape).map_err(|message| TuneError::Shape {
            kernel: shape.kernel.clone(),
            message,
        })?;
        let d: Vec<u32> = shape.dims.iter().map(|&x| x as u32).collect();
        let mut rng = Lcg::for_dims(&shape.dims);
        let name = shape.kernel.as_str();
        let problem: Box<dyn Problem> = match name {
            _ if name.starts_with("gemm_tc_") => gemm_tc::build(device, name, &d, &mut rng),
            _ if name.starts_with("fp8_gemm_") => fp8_gemm::build(device, name, &d),
            _ if name.starts_with("fp8_") => fp8::build(device, name, &d, &mut rng),
            _ if name.starts_with("coat_") => coat::build(device, name, &d, &mut rng),
            _ => basic::build(device, name, &d, &mut rng),
        }
        .map_err(device_error)?;
        Ok(Workload {
            accumulates: problem.accumulates(),
            tolerance: problem.tolerance(),
            problem,
        })
    }

    /// Enqueues one launch of `config`.
    pub fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        self.problem.launch(device, config)
    }

    /// Writes the initial contents back into what the kernel accumulates into.
    pub fn restore(&mut self, device: &Device) -> Result<(), DeviceError> {
        self.problem.restore(device)
    }

    /// The output after a run, comparable across configs: a reduction's partials (whose
    /// number depends on the config) become their sum; FP8 codes become f32s (the code's
    /// value as an integer, or its decoded value), followed by the scales.
    pub fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, DeviceError> {
        self.problem.output(device, config)
    }
}

/// Whether the problems of `kernel` can run `config`: the 1×G FP8 workloads fix the
/// group size G (a layout parameter the kernels declare as a tunable) at 128, so their
/// configs with another G are not candidates.
pub fn admits(kernel: &str, config: &Config) -> bool {
    !kernel.starts_with("fp8_quantize_rows")
        || config.get("G") == Some(fp8_launch::ROW_GROUP as i64)
}

fn device_error(e: DeviceError) -> TuneError {
    TuneError::Device(e.to_string())
}

/// `config.get(name)`, at least 1 (a tunable the config lacks counts as 1).
fn tunable(config: &Config, name: &str) -> u32 {
    config.get(name).unwrap_or(1).max(1) as u32
}

/// A small fixed-seed generator (64-bit LCG, high bits): fast enough to fill the
/// gigabyte-sized buffers of an lm_head GEMM.
pub(crate) struct Lcg(u64);

impl Lcg {
    /// The generator of a problem with dimensions `dims` (same dims, same inputs).
    pub(crate) fn for_dims(dims: &[usize]) -> Lcg {
        Lcg(0x5eed ^ dims.iter().fold(0u64, |h, &x| h * 31 + x as u64))
    }

    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// An integer in [-r, r], as f32.
    fn integer(&mut self, r: u32) -> f32 {
        (self.next() % (2 * r + 1)) as f32 - r as f32
    }

    /// Integers in [-r, r], as f32.
    fn integers(&mut self, n: usize, r: u32) -> Vec<f32> {
        (0..n).map(|_| self.integer(r)).collect()
    }

    /// Uniform in [-r, r).
    fn float(&mut self, r: f32) -> f32 {
        (self.next() as f32 / (1u64 << 30) as f32 - 1.0) * r
    }

    /// Uniform in [-r, r).
    fn floats(&mut self, n: usize, r: f32) -> Vec<f32> {
        (0..n).map(|_| self.float(r)).collect()
    }
}
