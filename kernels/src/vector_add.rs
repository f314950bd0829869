//! `c = a + b` on f32 vectors.
//!
//! Roofline: memory-bound, 12 bytes moved per element (two loads, one store), no reuse.
//! Consecutive threads touch consecutive elements, so every warp access is one coalesced
//! 128-byte transaction. Tunables: `BLOCK` (threads per block) and `ITEMS` (elements per
//! thread, strided by the block so accesses stay coalesced).

use crate::check::Problem;
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Error, KernelDef};
use warpforge_macros::kernel;

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 2, 4]), default(BLOCK = 256, ITEMS = 2))]
pub fn vector_add<const BLOCK: u32, const ITEMS: u32>(a: &[f32], b: &[f32], c: &mut [f32], n: u32) {
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    #[unroll]
    for k in 0..ITEMS {
        let i = base + k * BLOCK;
        if i < n {
            c[i] = a[i] + b[i];
        }
    }
}

/// Host reference.
pub fn reference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Launch dims covering `n` elements.
pub fn dims(config: &Config, n: u32) -> LaunchDims {
    let block = config.get("BLOCK").unwrap_or(256) as u32;
    let items = config.get("ITEMS").unwrap_or(1) as u32;
    LaunchDims::linear(n.div_ceil(block * items).max(1), block)
}

/// Runs the kernel on `device` and returns `a + b`.
pub fn run(
    device: &Device,
    config: &Config,
    a: &[f32],
    b: &[f32],
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let n = a.len() as u32;
    let (da, db) = (device.upload(a)?, device.upload(b)?);
    let mut dc = device.zeros::<f32>(a.len())?;
    vector_add::launch(device, config, dims(config, n), &da, &db, &mut dc, n)?;
    Ok(device.download(&dc)?)
}

/// The library's description of [`fn@vector_add`].
pub fn kernels() -> Vec<Kernel> {
    vec![register(VectorAdd)]
}

struct VectorAdd;

/// Inputs: uniform in [-4, 4), the same for the same `n`.
fn inputs(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Lcg::for_dims(&[n], 0);
    (rng.floats(n, 4.0), rng.floats(n, 4.0))
}

impl LibraryKernel for VectorAdd {
    fn def(&self) -> &'static KernelDef {
        vector_add::def()
    }

    fn summary(&self) -> &'static str {
        "c = a + b (f32), memory-bound"
    }

    /// Edge sizes and sizes that are not a multiple of any tile.
    fn problems(&self) -> Vec<Problem> {
        Problem::sizes(&[1, 7, 255, 1000, 4099])
    }

    fn rank(&self) -> usize {
        1
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let n = problem.dims[0];
        let (a, b) = inputs(n);
        Ok(Box::new(Buffers {
            a: device.upload(&a)?,
            b: device.upload(&b)?,
            c: device.zeros(n)?,
        }))
    }

    /// Exact: one rounding per element.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (a, b) = inputs(problem.dims[0]);
        reference(&a, &b)
    }

    /// The residual add over `tokens × hidden`.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        tokens
            .iter()
            .map(|&m| Problem::new("residual", vec![m * model.hidden]))
            .collect()
    }
}

struct Buffers {
    a: Buffer<f32>,
    b: Buffer<f32>,
    c: Buffer<f32>,
}

impl Case for Buffers {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let n = self.c.len() as u32;
        vector_add::launch(
            device,
            config,
            dims(config, n),
            &self.a,
            &self.b,
            &mut self.c,
            n,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(device.download(&self.c)?)
    }
}
