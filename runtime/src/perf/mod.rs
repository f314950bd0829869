//! Performance section of `warpforge gpu-check`: the tensor-core GEMMs against cuBLAS
//! ([`gemm`]), the FP8 GEMM against our f16 one ([`fp8_gemm`]), the FP8 (de)quantize
//! kernels against the DRAM peak ([`fp8`]), flash attention against PyTorch's SDPA
//! ([`attention`]), and PyTorch's per-tensor FP8 cast when `scripts/gpu-check-torch.py`
//! measured it.
//!
//! Every figure is a median of CUDA-event samples taken with the autotuner's [`CudaTimer`]
//! under a [`SamplePolicy`]: the L2 cache is flushed before each timed launch, and each
//! problem is larger than the L2 or flushed, so the numbers are cold-cache, as between the
//! layers of a model. Perf targets are informational: gpu-check never fails on them.

pub mod attention;
pub mod cublas;
pub mod fp8;
pub mod fp8_gemm;
pub mod gemm;

use std::path::PathBuf;
use std::time::Duration;
use warpforge_autotune::bench::{CudaTimer, Measurement, Timer};
use warpforge_autotune::SamplePolicy;
use warpforge_dsl::Device;

/// What `gpu-check` measures.
#[derive(Clone, Debug, Default)]
pub struct PerfOptions {
    /// Fewer GEMM shapes and the E4M3 FP8 kernels only.
    pub quick: bool,
    /// A tuning cache directory: tuned GEMM configs are timed too.
    pub tune_cache: Option<PathBuf>,
    /// JSON written by `scripts/gpu-check-torch.py`, merged into the report.
    pub torch_json: Option<PathBuf>,
    /// JSON written by `scripts/gpu-check-triton.py`, merged into the report as `triton`.
    pub triton_json: Option<PathBuf>,
    /// JSON written by `scripts/gpu-check-attention.py` (PyTorch's flash SDPA), matched
    /// per shape in the attention section.
    pub attention_json: Option<PathBuf>,
}

/// Why a measurement could not be made (recorded in the report; the run goes on).
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// Boxed: the DSL's error is large, and this one travels through every timing call.
    #[error("{0}")]
    Kernel(Box<warpforge_dsl::Error>),
    #[error("{0}")]
    Memory(#[from] warpforge_dsl::backend::DeviceError),
    #[error("{during}: {message}")]
    Device { during: String, message: String },
    #[error("{0}")]
    Cublas(#[from] cublas::CublasError),
}

impl From<warpforge_dsl::Error> for PerfError {
    fn from(e: warpforge_dsl::Error) -> PerfError {
        PerfError::Kernel(Box::new(e))
    }
}

impl PerfError {
    fn device(during: &str, e: impl std::fmt::Display) -> PerfError {
        PerfError::Device {
            during: during.to_string(),
            message: e.to_string(),
        }
    }
}

/// Sampling for the perf section: short, since a device session is short; a launch here
/// runs from microseconds (decode GEMMs) to a few milliseconds (8192³).
pub fn policy() -> SamplePolicy {
    SamplePolicy {
        warmup: 3,
        min_samples: 10,
        max_samples: 50,
        target_spread: 0.02,
        max_time: Duration::from_millis(400),
    }
}

/// The longest one timed region may take.
const LAUNCH_LIMIT: Duration = Duration::from_secs(10);

/// Median seconds of `launch` (which enqueues work on the device's stream), each sample
/// after an L2 flush, bracketed by CUDA events.
pub fn time(
    timer: &mut CudaTimer,
    policy: &SamplePolicy,
    mut launch: impl FnMut() -> Result<(), PerfError>,
) -> Result<Measurement, PerfError> {
    let mut sample = |timer: &mut CudaTimer| -> Result<f64, PerfError> {
        timer
            .flush_l2()
            .map_err(|e| PerfError::device("flush", e))?;
        timer
            .start()
            .map_err(|e| PerfError::device("start event", e))?;
        launch()?;
        timer
            .stop(LAUNCH_LIMIT)
            .map_err(|e| PerfError::device("timed launch", e))
    };
    for _ in 0..policy.warmup {
        sample(timer)?;
    }
    let started = std::time::Instant::now();
    let mut samples = Vec::new();
    loop {
        samples.push(sample(timer)?);
        let m = Measurement::of(&samples);
        let n = samples.len() as u32;
        if n >= policy.min_samples
            && (m.spread <= policy.target_spread
                || n >= policy.max_samples
                || started.elapsed() >= policy.max_time)
        {
            return Ok(m);
        }
    }
}

/// Peak DRAM bandwidth in bytes/s from the device attributes: the memory clock (kHz) ×
/// the bus width (bits) / 8 × 2 (double data rate).
pub fn peak_dram_bytes_per_second(memory_clock_khz: i64, bus_width_bits: i64) -> f64 {
    memory_clock_khz as f64 * 1e3 * (bus_width_bits as f64 / 8.0) * 2.0
}

/// The device's peak DRAM bandwidth, bytes/s.
pub fn device_peak_bandwidth(device: &Device) -> Result<f64, PerfError> {
    use cudarc::driver::sys::CUdevice_attribute as A;
    let stream = device
        .cuda_stream()
        .ok_or_else(|| PerfError::device("peak bandwidth", "not a GPU"))?;
    let ctx = stream.context();
    let read = |a| {
        ctx.attribute(a)
            .map_err(|e| PerfError::device("reading a memory attribute", e))
    };
    let clock = read(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?;
    let bus = read(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?;
    Ok(peak_dram_bytes_per_second(clock as i64, bus as i64))
}

/// The whole perf section of the report. Progress goes to stdout.
pub fn run(device: &Device, options: &PerfOptions) -> serde_json::Value {
    let started = std::time::Instant::now();
    println!("perf: tensor-core GEMM vs cuBLAS");
    let gemm = gemm::run(device, options);
    println!("perf: FP8 GEMM vs our f16 GEMM");
    let fp8_gemm = fp8_gemm::run(device, options, &gemm);
    println!("perf: FP8 quantize bandwidth");
    let fp8 = fp8::run(device, options);
    println!("perf: flash attention vs PyTorch SDPA (flash backend)");
    let attention = attention::run(device, options);
    let torch = torch_section(options.torch_json.as_deref());
    let triton = torch_section(options.triton_json.as_deref());
    println!("perf: done in {:.1?}", started.elapsed());
    serde_json::json!({
        "gemm": gemm, "fp8_gemm": fp8_gemm, "fp8": fp8, "attention": attention,
        "torch": torch, "triton": triton,
    })
}

/// A peer script's JSON (torch, Triton, the run's meta), or why there is none.
pub fn torch_section(path: Option<&std::path::Path>) -> serde_json::Value {
    let Some(path) = path else {
        return "not available (no --torch-json given)".into();
    };
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            format!("not available ({} is not JSON: {e})", path.display()).into()
        }),
        Err(e) => format!("not available ({}: {e})", path.display()).into(),
    }
}

/// A deterministic value in [-1, 1) for index `i` (splitmix64): inputs that are not zeros
/// or a short period, generated fast for hundreds of millions of elements.
pub fn uniform(seed: u64, i: u64) -> f32 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A measurement as report fields: `ms`, `spread`, `samples`.
fn measurement_json(m: &Measurement) -> serde_json::Value {
    serde_json::json!({ "ms": m.median * 1e3, "spread": m.spread, "samples": m.samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_bandwidth_of_an_h200() {
        // H200: HBM3e at 3.2 GHz (the attribute is in kHz) on a 6144-bit bus: ~4.9 TB/s.
        let peak = peak_dram_bytes_per_second(3_201_000, 6144);
        assert!((peak - 4.917e12).abs() < 1e9, "{peak}");
        assert_eq!(peak_dram_bytes_per_second(1000, 8), 2e6);
    }

    #[test]
    fn uniform_is_spread_over_the_interval() {
        let xs: Vec<f32> = (0..10_000).map(|i| uniform(7, i)).collect();
        assert!(xs.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!(xs.iter().filter(|x| **x > 0.9).count() > 300);
        assert_ne!(uniform(7, 1), uniform(8, 1));
    }

    #[test]
    fn torch_section_says_why_it_is_missing() {
        let v = torch_section(None);
        assert!(v.as_str().unwrap().starts_with("not available"));
        let dir = tempdir();
        let missing = dir.join("none.json");
        let v = torch_section(Some(&missing));
        assert!(v.as_str().unwrap().contains("none.json"), "{v}");
        let good = dir.join("torch.json");
        std::fs::write(&good, r#"{"available": true, "gb_per_s": 3000.0}"#).unwrap();
        assert_eq!(torch_section(Some(&good))["gb_per_s"], 3000.0);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warpforge-perf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
