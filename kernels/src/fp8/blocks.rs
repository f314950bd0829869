//! 128×128 tile scaling (weights, DeepSeek-V3 style): one scale per tile of X[rows, cols]
//! (leading dimension `ld`); `scales[ceil(rows/128), ceil(cols/128)]`. Tiles at the right
//! and bottom edges are partial.
//!
//! `fp8_quantize_blocks_{T}_{Q}` is generic over the input `T ∈ {f32, f16, bf16}` and the
//! format `Q ∈ {E4M3, E5M2}`; inputs are widened to f32 exactly on load, then the f32
//! formulas of the module doc apply.
//!
//! One block per tile. Each thread loads its `4096 / BLOCK` quads of the tile with `Vec4<T>`
//! loads (128 bits for f32: a warp reads 512 contiguous bytes of one row per instruction;
//! 64 bits for f16/bf16), keeps them in registers as f32 while the block reduces the amax
//! (shuffles, then shared memory), and then writes the codes as 32-bit stores: one pass over
//! X, 5 bytes per element for f32 input (4 read, 1 written), 3 for f16/bf16. Tunable:
//! `BLOCK` (threads per tile; fewer threads hold more quads in registers).

use super::tensor::divide4;
use super::{amax4, block_max, mask4, scale_of};
use super::{cast4_e4m3, cast4_e5m2, widen4_bf16, widen4_f16, widen4_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// Loads this thread's quads of the tile at (`r0`, `c0`) into `held` (outside X: 0) and
/// returns their amax. Quad `k` of thread `t` is tile quad `k * BLOCK + t` (32 per row).
#[device(types(T = [f32, f16, bf16]))]
pub fn load_tile<T: Float, const BLOCK: u32>(
    x: &[Vec4<T>],
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
            mask4(widen4::<T>(x[(r * ld + col) / 4]), col, cols)
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

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512]), default(BLOCK = 256),
         types(T = [f32, f16, bf16], Q = [F8E4M3, F8E5M2]))]
pub fn fp8_quantize_blocks<T: Float, Q: Fp8, const BLOCK: u32>(
    x: &[Vec4<T>],
    q: &mut [Vec4<Q>],
    scales: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let mut held = local_array::<Vec4<f32>>(4096 / BLOCK);
    let r0 = block_idx_y() * 128;
    let c0 = block_idx_x() * 128;
    let m = load_tile::<T, BLOCK>(x, &mut held, r0, c0, rows, cols, ld);
    let s = tile_scale::<BLOCK>(scales, m, &mut scratch, cols, Q::max_finite());
    #[unroll]
    for k in 0..4096 / BLOCK {
        let e = k * BLOCK + thread_idx_x();
        let r = r0 + e / 32;
        let col = c0 + e % 32 * 4;
        if r < rows && col < cols {
            q[(r * ld + col) / 4] = cast4::<Q>(divide4(held[k], s));
        }
    }
}
