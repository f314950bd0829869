//! Sum of an f32 vector: each block reduces a contiguous chunk to one partial sum (registers,
//! then warp shuffles, then shared memory across warps); a second launch of the same kernel
//! with one block sums the partials.
//!
//! Roofline: memory-bound, 4 bytes read per element; the partials are negligible. Tunables:
//! `BLOCK` (threads per block, a multiple of 32) and `ITEMS` (elements per thread; more
//! items mean fewer partials and more loads in flight per thread).

use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Error, KernelDef};
use warpforge_macros::{device, kernel};

/// Sum of `v` over the 32 lanes of the warp; every lane gets the total.
#[device]
pub fn warp_sum(v: f32) -> f32 {
    let mut x = v;
    #[unroll]
    for k in 0..5u32 {
        x += warp_shfl_xor(x, 16u32 >> k);
    }
    x
}

/// Sum of `v` over the block's `BLOCK` threads (a multiple of 32); thread 0 gets the total.
/// `scratch` is shared memory with at least `BLOCK / 32` elements.
#[device]
pub fn block_sum<const BLOCK: u32>(v: f32, scratch: &mut [f32]) -> f32 {
    let lane = thread_idx_x() % 32;
    let warp = thread_idx_x() / 32;
    let partial = warp_sum(v);
    if lane == 0 {
        scratch[warp] = partial;
    }
    sync_threads();
    let mut total = 0.0f32;
    if warp == 0 {
        let mine = if lane < BLOCK / 32 {
            scratch[lane]
        } else {
            0.0
        };
        total = warp_sum(mine);
    }
    total
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 4, 8]), default(BLOCK = 256, ITEMS = 4))]
pub fn sum_partials<const BLOCK: u32, const ITEMS: u32>(x: &[f32], partials: &mut [f32], n: u32) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    let mut acc = 0.0f32;
    #[unroll]
    for k in 0..ITEMS {
        let i = base + k * BLOCK;
        if i < n {
            acc += x[i];
        }
    }
    let total = block_sum::<BLOCK>(acc, &mut scratch);
    if thread_idx_x() == 0 {
        partials[block_idx_x()] = total;
    }
}

/// Host reference (f64 accumulation).
pub fn reference(x: &[f32]) -> f32 {
    x.iter().map(|&v| v as f64).sum::<f64>() as f32
}

/// Sums `x` on `device`: one launch per level until one value remains.
pub fn run(device: &Device, config: &Config, x: &[f32]) -> Result<f32, warpforge_dsl::Error> {
    let block = config.get("BLOCK").unwrap_or(256) as u32;
    let per_block = block * config.get("ITEMS").unwrap_or(1) as u32;
    let mut input = device.upload(x)?;
    let mut n = x.len() as u32;
    loop {
        let dims = LaunchDims::linear(n.div_ceil(per_block).max(1), block);
        let mut partials = device.zeros::<f32>(dims.grid[0] as usize)?;
        sum_partials::launch(device, config, dims, &input, &mut partials, n)?;
        if dims.grid[0] == 1 {
            return Ok(device.download(&partials)?[0]);
        }
        n = dims.grid[0];
        input = partials;
    }
}

/// The library's description of [`fn@sum_partials`].
pub fn kernels() -> Vec<Kernel> {
    vec![register(SumPartials)]
}

struct SumPartials;

/// Inputs: uniform in [-1, 1), the same for the same `n`.
fn inputs(n: usize) -> Vec<f32> {
    Lcg::for_dims(&[n], 1).floats(n, 1.0)
}

/// Elements a block of `config` reduces.
fn per_block(config: &Config) -> u32 {
    let get = |name: &str| config.get(name).unwrap_or(1).max(1) as u32;
    get("BLOCK") * get("ITEMS")
}

impl LibraryKernel for SumPartials {
    fn def(&self) -> &'static KernelDef {
        sum_partials::def()
    }

    fn summary(&self) -> &'static str {
        "sum of an f32 vector: per-block partial sums (shuffles + shared memory)"
    }

    fn problems(&self) -> Vec<Problem> {
        Problem::sizes(&[1, 31, 1000, 5000, 70_001])
    }

    fn rank(&self) -> usize {
        1
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let n = problem.dims[0];
        // Enough partials for the smallest BLOCK × ITEMS of the space (128).
        let least = sum_partials::def()
            .space
            .configs()
            .iter()
            .map(per_block)
            .min()
            .unwrap_or(1);
        Ok(Box::new(Partials {
            x: device.upload(&inputs(n))?,
            partials: device.zeros(n.div_ceil(least as usize))?,
        }))
    }

    /// The sum (f64 accumulation, rounded once).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        vec![reference(&inputs(problem.dims[0]))]
    }

    /// An f32 tree sum's error grows like log2(n)·ε·Σ|x|; Σ|x| ≈ n/2 for these inputs.
    fn tolerance(&self, problem: &Problem) -> f64 {
        1e-6 * (problem.dims[0] as f64 / 2.0).max(1.0)
    }

    /// Tree sums in different orders: both within [`LibraryKernel::tolerance`] of the sum.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        Tolerance {
            rel: 0.0,
            abs: 1e-6 * problem.dims[0] as f64,
        }
    }

    /// A reduction over `tokens × hidden` (a norm's sum of squares).
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        tokens
            .iter()
            .map(|&m| Problem::new("reduction", vec![m * model.hidden]))
            .collect()
    }
}

/// One level of the reduction: the input and its per-block partial sums.
struct Partials {
    x: Buffer<f32>,
    partials: Buffer<f32>,
}

impl Case for Partials {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let n = self.x.len() as u32;
        let block = config.get("BLOCK").unwrap_or(256) as u32;
        let dims = LaunchDims::linear(n.div_ceil(per_block(config)).max(1), block);
        sum_partials::launch(device, config, dims, &self.x, &mut self.partials, n)
    }

    /// The partials' sum (their number depends on the config), accumulated in f64.
    fn output(&self, device: &Device, config: &Config) -> Result<Vec<f32>, Error> {
        let partials = device.download(&self.partials)?;
        let blocks = self.x.len().div_ceil(per_block(config) as usize);
        let sum: f64 = partials[..blocks.min(partials.len())]
            .iter()
            .map(|&x| x as f64)
            .sum();
        Ok(vec![sum as f32])
    }
}
