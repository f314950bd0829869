//! Sum of an f32 vector: each block reduces a contiguous chunk to one partial sum (registers,
//! then warp shuffles, then shared memory across warps); a second launch of the same kernel
//! with one block sums the partials.
//!
//! Roofline: memory-bound, 4 bytes read per element; the partials are negligible. Tunables:
//! `BLOCK` (threads per block, a multiple of 32) and `ITEMS` (elements per thread; more
//! items mean fewer partials and more loads in flight per thread).

use crate::check::Problem;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::*;
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

pub fn problems() -> Vec<Problem> {
    [1usize, 31, 1000, 5000, 70_001]
        .iter()
        .map(|&n| Problem::new(format!("n={n}"), vec![n]))
        .collect()
}

fn inputs(problem: &Problem) -> Vec<f32> {
    let n = problem.dims[0];
    let mut rng = StdRng::seed_from_u64(n as u64 + 1);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

pub fn output(
    device: &Device,
    config: &Config,
    problem: &Problem,
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    Ok(vec![run(device, config, &inputs(problem))?])
}

pub fn expected(problem: &Problem) -> Vec<f32> {
    vec![reference(&inputs(problem))]
}

/// An f32 tree sum's error grows like log2(n)·ε·Σ|x|; Σ|x| ≈ n/2 for these inputs.
pub fn tolerance(problem: &Problem) -> f64 {
    1e-6 * (problem.dims[0] as f64 / 2.0).max(1.0)
}
