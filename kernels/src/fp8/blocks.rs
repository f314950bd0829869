//! 128×128 tile scaling (weights, DeepSeek-V3 style): one scale per tile of X[rows, cols]
//! (leading dimension `ld`); `scales[ceil(rows/128), ceil(cols/128)]`. Tiles at the right
//! and bottom edges are partial.
//!
//! One block per tile. Each thread loads its `4096 / BLOCK` quads of the tile with 128-bit
//! loads (a warp reads 512 contiguous bytes of one row per instruction), keeps them in
//! registers while the block reduces the amax (shuffles, then shared memory), and then
//! writes the codes as 32-bit stores: one pass over X, 5 bytes per element. Tunable:
//! `BLOCK` (threads per tile; fewer threads hold more quads in registers).

use super::tensor::{cast4_e4m3, cast4_e5m2, divide4};
use super::{amax4, block_max, mask4, scale_of};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// Loads this thread's quads of the tile at (`r0`, `c0`) into `held` (outside X: 0) and
/// returns their amax. Quad `k` of thread `t` is tile quad `k * BLOCK + t` (32 per row).
#[device]
pub fn load_tile<const BLOCK: u32>(
    x: &[Vec4<f32>],
    held: &mut [Vec4<f32>],
    r0: u32,
    c0: u32,
    rows: u32,
    cols: u32,
    ld: u32,
) -> f32 {
    let mut m = 0.0f32;
    #[unroll]
    for k in 0..4096 / BLOCK {
        let e = k * BLOCK + thread_idx_x();
        let r = r0 + e / 32;
        let col = c0 + e % 32 * 4;
        let v = if r < rows && col < cols {
            mask4(x[(r * ld + col) / 4], col, cols)
        } else {
            Vec4::new(0.0, 0.0, 0.0, 0.0)
        };
        held[k] = v;
        m = m.max(amax4(v));
    }
    m
}

/// The tile's scale: reduced over the block, written to `scales` by thread 0.
#[device]
pub fn tile_scale<const BLOCK: u32>(
    scales: &mut [f32],
    m: f32,
    scratch: &mut [f32],
    cols: u32,
    fmax: f32,
) -> f32 {
    let s = scale_of(block_max::<BLOCK>(m, scratch), fmax);
    if thread_idx_x() == 0 {
        scales[block_idx_y() * ((cols + 127) / 128) + block_idx_x()] = s;
    }
    s
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512]), default(BLOCK = 256))]
pub fn fp8_quantize_blocks_e4m3<const BLOCK: u32>(
    x: &[Vec4<f32>],
    q: &mut [Vec4<F8E4M3>],
    scales: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let mut held = local_array::<Vec4<f32>>(4096 / BLOCK);
    let r0 = block_idx_y() * 128;
    let c0 = block_idx_x() * 128;
    let m = load_tile::<BLOCK>(x, &mut held, r0, c0, rows, cols, ld);
    let s = tile_scale::<BLOCK>(scales, m, &mut scratch, cols, 448.0);
    #[unroll]
    for k in 0..4096 / BLOCK {
        let e = k * BLOCK + thread_idx_x();
        let r = r0 + e / 32;
        let col = c0 + e % 32 * 4;
        if r < rows && col < cols {
            q[(r * ld + col) / 4] = cast4_e4m3(divide4(held[k], s));
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512]), default(BLOCK = 256))]
pub fn fp8_quantize_blocks_e5m2<const BLOCK: u32>(
    x: &[Vec4<f32>],
    q: &mut [Vec4<F8E5M2>],
    scales: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let mut held = local_array::<Vec4<f32>>(4096 / BLOCK);
    let r0 = block_idx_y() * 128;
    let c0 = block_idx_x() * 128;
    let m = load_tile::<BLOCK>(x, &mut held, r0, c0, rows, cols, ld);
    let s = tile_scale::<BLOCK>(scales, m, &mut scratch, cols, 57344.0);
    #[unroll]
    for k in 0..4096 / BLOCK {
        let e = k * BLOCK + thread_idx_x();
        let r = r0 + e / 32;
        let col = c0 + e % 32 * 4;
        if r < rows && col < cols {
            q[(r * ld + col) / 4] = cast4_e5m2(divide4(held[k], s));
        }
    }
}
