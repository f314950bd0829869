//! FP8 → f32/f16/bf16 dequantization for every granularity: `y = T(f32(q) * s)`.
//!
//! `fp8_dequantize_{Q}_{T}` is generic over the format `Q ∈ {E4M3, E5M2}` and the output
//! `T ∈ {f32, f16, bf16}`: one f32 multiplication (exact unless it underflows), then, for
//! f16/bf16, one round-to-nearest-even conversion (`T::from_f32`; overflow gives ±Inf).
//!
//! The scale of element (r, c) is `scales[(r >> row_shift) * scale_ld + (c >> col_shift)]`:
//! - per tensor: `row_shift = 0, col_shift = 31, scale_ld = 0`;
//! - 1×G groups: `row_shift = 0, col_shift = log2 G, scale_ld = ceil(cols / G)` (also the
//!   transposed output, as a [cols, rows] matrix);
//! - 128×128 tiles: `row_shift = col_shift = 7, scale_ld = ceil(cols / 128)`.
//!
//! Q and Y share the layout (leading dimension `ld`, a multiple of 4; Y's padding columns are
//! written as 0). Each thread moves quads: a 32-bit load of four codes, a scale load (shared
//! by the group, so mostly from L1), a `Vec4<T>` store (128 bits for f32, 64 for f16/bf16):
//! 5 bytes per element for f32 output (1 read, 4 written), 3 for f16/bf16. Tunables: `BLOCK`
//! (threads per block), `ITEMS` (quads per thread, strided by the block).

use super::{mask4, narrow4_bf16, narrow4_f16, narrow4_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// The scale of the quad at (`r`, `col`).
#[device]
pub fn scale_at(
    scales: &[f32],
    r: u32,
    col: u32,
    row_shift: u32,
    col_shift: u32,
    scale_ld: u32,
) -> f32 {
    scales[(r >> row_shift) * scale_ld + (col >> col_shift)]
}

/// `v * s` lane by lane, the lanes at columns `>= cols` zeroed.
#[device]
pub fn scaled4(v: Vec4<f32>, s: f32, col: u32, cols: u32) -> Vec4<f32> {
    mask4(Vec4::new(v.x * s, v.y * s, v.z * s, v.w * s), col, cols)
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 2, 4]),
         default(BLOCK = 256, ITEMS = 2), types(Q = [F8E4M3, F8E5M2], T = [f32, f16, bf16]))]
pub fn fp8_dequantize<Q: Fp8, T: Float, const BLOCK: u32, const ITEMS: u32>(
    q: &[Vec4<Q>],
    scales: &[f32],
    y: &mut [Vec4<T>],
    rows: u32,
    cols: u32,
    ld: u32,
    row_shift: u32,
    col_shift: u32,
    scale_ld: u32,
) {
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    #[unroll]
    for k in 0..ITEMS {
        let v = base + k * BLOCK;
        let r = v / (ld / 4);
        let col = v % (ld / 4) * 4;
        if r < rows && col < cols {
            let c = q[v];
            let s = scale_at(scales, r, col, row_shift, col_shift, scale_ld);
            let f = Vec4::new(c.x.to_f32(), c.y.to_f32(), c.z.to_f32(), c.w.to_f32());
            y[v] = narrow4::<T>(scaled4(f, s, col, cols));
        }
    }
}
