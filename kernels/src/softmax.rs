//! Row-wise softmax of an f32 matrix: `y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max))`.
//!
//! One block per row. A first pass keeps a running (max, sum) per thread (online softmax,
//! one read of the row), merged across the warp with shuffles and across warps in shared
//! memory; a second pass writes the normalized values.
//!
//! Roofline: memory-bound, 12 bytes per element (two reads of the row, the second mostly
//! from L1/L2, and one write). Tunables: `BLOCK`, threads per row (a multiple of 32).

use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Error, KernelDef};
use warpforge_macros::{device, kernel};

/// The factor that rescales a sum taken relative to max `m` to one relative to `m_new`.
#[device]
pub fn rescale(m: f32, m_new: f32) -> f32 {
    if m == m_new {
        1.0
    } else {
        (m - m_new).exp()
    }
}

/// Merges running (max, sum-relative-to-max) pairs over the 32 lanes of a warp with xor
/// shuffles; every lane gets the merged pair.
#[device]
pub fn warp_merge(state: Vec2<f32>) -> Vec2<f32> {
    let mut m = state.x;
    let mut s = state.y;
    #[unroll]
    for k in 0..5u32 {
        let m_other = warp_shfl_xor(m, 16u32 >> k);
        let s_other = warp_shfl_xor(s, 16u32 >> k);
        let m_new = m.max(m_other);
        s = s * rescale(m, m_new) + s_other * rescale(m_other, m_new);
        m = m_new;
    }
    Vec2::new(m, s)
}

#[kernel(block = (BLOCK), tune(BLOCK = [32, 64, 128, 256, 512]), default(BLOCK = 128))]
pub fn softmax<const BLOCK: u32>(x: &[f32], y: &mut [f32], cols: u32) {
    let mut max_sh = shared_array::<f32>(32);
    let mut sum_sh = shared_array::<f32>(32);
    let base = block_idx_x() * cols;
    let lane = thread_idx_x() % 32;
    let warp = thread_idx_x() / 32;
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    let mut c = thread_idx_x();
    while c < cols {
        let v = x[base + c];
        let m_new = m.max(v);
        s = s * rescale(m, m_new) + (v - m_new).exp();
        m = m_new;
        c += BLOCK;
    }
    let per_warp = warp_merge(Vec2::new(m, s));
    if lane == 0 {
        max_sh[warp] = per_warp.x;
        sum_sh[warp] = per_warp.y;
    }
    sync_threads();
    if warp == 0 {
        let mine = if lane < BLOCK / 32 {
            Vec2::new(max_sh[lane], sum_sh[lane])
        } else {
            Vec2::new(f32::NEG_INFINITY, 0.0)
        };
        let total = warp_merge(mine);
        if lane == 0 {
            max_sh[0] = total.x;
            sum_sh[0] = total.y;
        }
    }
    sync_threads();
    let row_max = max_sh[0];
    let inv_sum = 1.0 / sum_sh[0];
    let mut c2 = thread_idx_x();
    while c2 < cols {
        y[base + c2] = (x[base + c2] - row_max).exp() * inv_sum;
        c2 += BLOCK;
    }
}
/// Host reference (f64).
pub fn reference(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (out, &v) in y[r * cols..(r + 1) * cols].iter_mut().zip(row) {
            *out = ((v as f64 - max).exp() / sum) as f32;
        }
    }
    y
}

/// Runs the kernel on `device` over a `rows×cols` matrix.
pub fn run(
    device: &Device,
    config: &Config,
    x: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>, warpforge_dsl::Error> {
    let dx = device.upload(x)?;
    let mut dy = device.zeros::<f32>(rows * cols)?;
    let block = config.get("BLOCK").unwrap_or(128) as u32;
    softmax::launch(
        device,
        config,
        LaunchDims::linear(rows as u32, block),
        &dx,
        &mut dy,
        cols as u32,
    )?;
    Ok(device.download(&dy)?)
}

/// The library's description of [`fn@softmax`].
pub fn kernels() -> Vec<Kernel> {
    vec![register(Softmax)]
}

struct Softmax;

/// Inputs: uniform in [-8, 8), the same for the same shape.
fn inputs(rows: usize, cols: usize) -> Vec<f32> {
    Lcg::for_dims(&[rows, cols], 2).floats(rows * cols, 8.0)
}

impl LibraryKernel for Softmax {
    fn def(&self) -> &'static KernelDef {
        softmax::def()
    }

    fn summary(&self) -> &'static str {
        "row-wise softmax (f32), online max/sum, one block per row"
    }

    fn problems(&self) -> Vec<Problem> {
        Problem::matrices(&[(1, 1), (3, 7), (4, 1000), (2, 4097)])
    }

    fn rank(&self) -> usize {
        2
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (rows, cols) = (problem.dims[0], problem.dims[1]);
        Ok(Box::new(Rows {
            rows: rows as u32,
            cols: cols as u32,
            x: device.upload(&inputs(rows, cols))?,
            y: device.zeros(rows * cols)?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = (problem.dims[0], problem.dims[1]);
        reference(&inputs(rows, cols), rows, cols)
    }

    /// exp is an approximation on both sides (documented model): a few f32 ulps.
    fn tolerance(&self, _problem: &Problem) -> f64 {
        2e-6
    }

    /// Sums in a config-dependent order.
    fn config_tolerance(&self, _problem: &Problem) -> Tolerance {
        Tolerance {
            rel: 1e-4,
            abs: 1e-12,
        }
    }

    /// Softmax over the vocabulary `[tokens, vocab]`.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        tokens
            .iter()
            .map(|&m| Problem::new("logits", vec![m, model.vocab]))
            .collect()
    }
}

struct Rows {
    rows: u32,
    cols: u32,
    x: Buffer<f32>,
    y: Buffer<f32>,
}

impl Case for Rows {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let block = config.get("BLOCK").unwrap_or(128) as u32;
        let dims = LaunchDims::linear(self.rows, block);
        softmax::launch(device, config, dims, &self.x, &mut self.y, self.cols)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(device.download(&self.y)?)
    }
}
