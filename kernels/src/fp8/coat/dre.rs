//! DRE quantization and dequantization of a flat f32 tensor (see the module doc of
//! [`super`] for the formulas and the layout).
//!
//! - [`fn@coat_dre_quantize`]: one warp per 128-element group: a 128-bit load per lane, the
//!   group's max and non-zero min in registers and shuffles, the codes stored as one 32-bit
//!   word per lane, the group's `(scale, k, c)` from lane 0. Reads 4 bytes and writes
//!   1 + 12/128 bytes per element, one pass. Tunable: `BLOCK` (threads per block: groups per
//!   block × 32).
//! - [`fn@coat_dre_dequantize`]: element-wise inverse, a quad per thread. Tunables: `BLOCK`,
//!   `ITEMS` (quads per thread, strided by the block).

use super::super::mask4;
use super::super::tensor::load_flat_f32;
use super::{dre_decode4, dre_quantize_group};
use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256]), default(BLOCK = 128))]
pub fn coat_dre_quantize<const BLOCK: u32>(
    x: &[Vec4<f32>],
    q: &mut [Vec4<F8E4M3>],
    meta: &mut [f32],
    n: u32,
) {
    let g = block_idx_x() * (BLOCK / 32) + thread_idx_x() / 32;
    let slot = g * 32 + thread_idx_x() % 32;
    let groups = (n + 127) / 128;
    let v = if slot * 4 < n {
        load_flat::<f32>(x, slot, n)
    } else {
        Vec4::new(0.0, 0.0, 0.0, 0.0)
    };
    let codes = dre_quantize_group(v, meta, g, groups);
    if slot * 4 < n {
        q[slot] = codes;
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 2, 4]), default(BLOCK = 256, ITEMS = 2))]
pub fn coat_dre_dequantize<const BLOCK: u32, const ITEMS: u32>(
    q: &[Vec4<F8E4M3>],
    meta: &[f32],
    y: &mut [Vec4<f32>],
    n: u32,
) {
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    #[unroll]
    for it in 0..ITEMS {
        let v = base + it * BLOCK;
        if v * 4 < n {
            let g = v / 32;
            let d = dre_decode4(q[v], meta[g * 3], meta[g * 3 + 1], meta[g * 3 + 2]);
            y[v] = mask4(d, v * 4, n);
        }
    }
}
