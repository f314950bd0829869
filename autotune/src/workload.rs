//! The buffers and launch of each tunable library kernel at one problem shape.
//!
//! Inputs are deterministic (a fixed-seed generator) and chosen so that configs can be
//! compared with each other: GEMM inputs are small integers, so every config's sum is
//! exact and outputs must match bit for bit.

use crate::bench::Tolerance;
use crate::shapes::{check_shape, ProblemShape};
use crate::TuneError;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Buffer, Config, Device, LaunchDims};
use warpforge_kernels::{gemm, reduce, softmax, vector_add};

/// One problem on one device: its buffers and how to launch it.
pub struct Workload {
    kind: Kind,
    inputs: Vec<Buffer<f32>>,
    output: Buffer<f32>,
    /// The output's contents before any run, for kernels that accumulate in place.
    initial_output: Vec<f32>,
    /// Whether the kernel accumulates into its output (none of the library kernels do
    /// yet; the restore path is there for those that will, such as split-K GEMM).
    pub accumulates: bool,
    pub tolerance: Tolerance,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Gemm { m: u32, n: u32, k: u32 },
    Softmax { rows: u32, cols: u32 },
    VectorAdd { n: u32 },
    SumPartials { n: u32 },
}

impl Workload {
    /// Allocates and fills the buffers of `shape` on `device`.
    pub fn new(device: &Device, shape: &ProblemShape) -> Result<Workload, TuneError> {
        check_shape(shape).map_err(|message| TuneError::Shape {
            kernel: shape.kernel.clone(),
            message,
        })?;
        let d: Vec<u32> = shape.dims.iter().map(|&x| x as u32).collect();
        let elems = |parts: &[u32]| parts.iter().map(|&p| p as usize).product::<usize>();
        let mut rng = Lcg(0x5eed ^ shape.dims.iter().fold(0u64, |h, &x| h * 31 + x as u64));
        let (kind, inputs, out_len, tolerance) = match shape.kernel.as_str() {
            "gemm" => (
                Kind::Gemm {
                    m: d[0],
                    n: d[1],
                    k: d[2],
                },
                vec![
                    rng.integers(elems(&[d[0], d[2]]), 4),
                    rng.integers(elems(&[d[2], d[1]]), 4),
                ],
                elems(&[d[0], d[1]]),
                Tolerance::EXACT,
            ),
            "softmax" => (
                Kind::Softmax {
                    rows: d[0],
                    cols: d[1],
                },
                vec![rng.floats(elems(&d), 8.0)],
                elems(&d),
                Tolerance {
                    rel: 1e-4,
                    abs: 1e-12,
                },
            ),
            "vector_add" => (
                Kind::VectorAdd { n: d[0] },
                vec![
                    rng.floats(d[0] as usize, 4.0),
                    rng.floats(d[0] as usize, 4.0),
                ],
                d[0] as usize,
                Tolerance::EXACT,
            ),
            _ => (
                Kind::SumPartials { n: d[0] },
                vec![rng.floats(d[0] as usize, 1.0)],
                // Enough partials for the smallest BLOCK × ITEMS (128).
                (d[0] as usize).div_ceil(128),
                // Tree sums in different orders: log2(n)·ε·Σ|x|, Σ|x| ≈ n/2.
                Tolerance {
                    rel: 0.0,
                    abs: 1e-6 * d[0] as f64,
                },
            ),
        };
        let inputs = inputs
            .iter()
            .map(|data| device.upload(data))
            .collect::<Result<Vec<_>, _>>()
            .map_err(device_error)?;
        let initial_output = vec![0f32; out_len];
        let output = device.upload(&initial_output).map_err(device_error)?;
        Ok(Workload {
            kind,
            inputs,
            output,
            initial_output,
            accumulates: false,
            tolerance,
        })
    }

    /// Enqueues one launch of `config`.
    pub fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let get = |name: &str| config.get(name).unwrap_or(1).max(1) as u32;
        let out = &mut self.output;
        let ins = &self.inputs;
        match self.kind {
            Kind::Gemm { m, n, k } => gemm::gemm::launch(
                device,
                config,
                gemm::dims(config, m, n),
                &ins[0],
                &ins[1],
                out,
                m,
                n,
                k,
            ),
            Kind::Softmax { rows, cols } => softmax::softmax::launch(
                device,
                config,
                LaunchDims::linear(rows, get("BLOCK")),
                &ins[0],
                out,
                cols,
            ),
            Kind::VectorAdd { n } => vector_add::vector_add::launch(
                device,
                config,
                vector_add::dims(config, n),
                &ins[0],
                &ins[1],
                out,
                n,
            ),
            Kind::SumPartials { n } => {
                let dims = LaunchDims::cover(n, get("BLOCK") * get("ITEMS"));
                let dims = LaunchDims::linear(dims.grid[0], get("BLOCK"));
                reduce::sum_partials::launch(device, config, dims, &ins[0], out, n)
            }
        }
    }

    /// Writes the initial contents back into the output.
    pub fn restore(&mut self, device: &Device) -> Result<(), DeviceError> {
        self.output = device.upload(&self.initial_output)?;
        Ok(())
    }

    /// The output after a run, comparable across configs: a reduction's partials (whose
    /// number depends on the config) become their sum.
    pub fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, DeviceError> {
        let out = device.download(&self.output)?;
        Ok(match self.kind {
            Kind::SumPartials { n } => {
                let per_block = config.get("BLOCK").unwrap_or(1).max(1)
                    * config.get("ITEMS").unwrap_or(1).max(1);
                let blocks = (n as usize).div_ceil(per_block as usize).min(out.len());
                vec![out[..blocks].iter().map(|&x| x as f64).sum::<f64>() as f32]
            }
            _ => out,
        })
    }
}

fn device_error(e: DeviceError) -> TuneError {
    TuneError::Device(e.to_string())
}

/// A small fixed-seed generator (64-bit LCG, high bits): fast enough to fill the
/// gigabyte-sized buffers of an lm_head GEMM.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// Integers in [-r, r], as f32.
    fn integers(&mut self, n: usize, r: u32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() % (2 * r + 1)) as f32 - r as f32)
            .collect()
    }

    /// Uniform in [-r, r).
    fn floats(&mut self, n: usize, r: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() as f32 / (1u64 << 30) as f32 - 1.0) * r)
            .collect()
    }
}
