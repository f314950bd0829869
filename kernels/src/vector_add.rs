//! `c = a + b` on f32 vectors.
//!
//! Roofline: memory-bound, 12 bytes moved per element (two loads, one store), no reuse.
//! Consecutive threads touch consecutive elements, so every warp access is one coalesced
//! 128-byte transaction. Tunables: `BLOCK` (threads per block) and `ITEMS` (elements per
//! thread, strided by the block so accesses stay coalesced).

use crate::check::Problem;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::*;
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

/// Problem sizes for checks: edge sizes and sizes that are not a multiple of any tile.
pub fn problems() -> Vec<Problem> {
    [1usize, 7, 255, 1000, 4099]
        .iter()
        .map(|&n| Problem::new(format!("n={n}"), vec![n]))
        .collect()
}

fn inputs(problem: &Problem) -> (Vec<f32>, Vec<f32>) {
    let n = problem.dims[0];
    let mut rng = StdRng::seed_from_u64(n as u64);
    let a = (0..n).map(|_| rng.random_range(-4.0..4.0)).collect();
    let b = (0..n).map(|_| rng.random_range(-4.0..4.0)).collect();
    (a, b)
}

/// The kernel's output on the problem's inputs.
pub fn output(
    device: &Device,
    config: &Config,
    problem: &Problem,
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let (a, b) = inputs(problem);
    run(device, config, &a, &b)
}

/// The reference output on the problem's inputs (exact: one rounding per element).
pub fn expected(problem: &Problem) -> Vec<f32> {
    let (a, b) = inputs(problem);
    reference(&a, &b)
}
