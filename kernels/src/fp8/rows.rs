//! 1×G group scaling: one scale per G consecutive elements of a row (per-token activations,
//! DeepSeek-V3 style), G ∈ {16, 32, 64, 128}; the last group of a row is partial when G does
//! not divide `cols`.
//!
//! Both kernels are generic over the input `T ∈ {f32, f16, bf16}` and the format
//! `Q ∈ {E4M3, E5M2}` (`fp8_quantize_rows_f16_e4m3`, ...); inputs are widened to f32 exactly
//! on load, then the f32 formulas of the module doc apply.
//!
//! - `fp8_quantize_rows_{T}_{Q}`: X[rows, cols] (leading dimension `ld`) → Q with the same
//!   layout plus `scales[rows, ceil(cols/G)]`. A thread holds 4 consecutive columns (one
//!   `Vec4<T>` load: 128 bits for f32, 64 for f16/bf16), so a group is G/4 neighbouring lanes
//!   and its amax takes log2(G/4) xor shuffles; one pass, 5 bytes per element for f32 (4 read,
//!   1 written as part of a 32-bit store), 3 for f16/bf16 (2 read, 1 written).
//!   Threads are laid out per row in whole groups, so no group straddles a warp.
//!   Tunables: `BLOCK` (threads per block), `ITEMS` (quads per thread, strided by the block).
//! - `fp8_quantize_rows_t_{T}_{Q}`: X[rows, cols] → Qt[cols, rows] (leading dimension
//!   `ldt`, a multiple of 4) with 1×G groups along the rows of X (for the backward pass),
//!   `scales[cols, ceil(rows/G)]`. A 256-thread block stages a 128×32 tile of X in shared
//!   memory (`Vec4<T>` loads widened to f32, row pitch 33 so both the writes and the transposed reads are free
//!   of bank conflicts), then each warp writes output rows of 128 elements, lane `l` holding
//!   elements `l, l+32, l+64, l+96`: the FP8 stores are single bytes, 32 contiguous bytes per
//!   warp instruction (the DSL has no byte-pack-and-shift to build a 32-bit word of four
//!   codes from strided lanes). 5 bytes per element for f32 input, 3 for f16/bf16; tunable:
//!   `G` only.

use super::tensor::divide4;
use super::{amax4, mask4, scale_of};
use super::{cast4_e4m3, cast4_e5m2, widen4_bf16, widen4_f16, widen4_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// Max of `v` over the aligned sets of G/4 lanes that hold a 1×G group as quads (G a power of
/// two, 8 <= G <= 128); every lane of a set gets the set's max.
#[device]
pub fn quads_max<const G: u32>(v: f32) -> f32 {
    let mut m = v;
    #[unroll]
    for k in 0..5u32 {
        let mask = 16u32 >> k;
        if mask < G / 4 {
            m = m.max(warp_shfl_xor(m, mask));
        }
    }
    m
}

/// One quad of a 1×G-grouped row kernel: its position and its (masked) values.
#[device(types(T = [f32, f16, bf16]))]
pub fn row_quad<T: Float, const G: u32>(
    x: &[Vec4<T>],
    slot: u32,
    rows: u32,
    cols: u32,
    ld: u32,
) -> Vec4<f32> {
    let per_row = (cols + G - 1) / G * (G / 4);
    let r = slot / per_row;
    let col = slot % per_row * 4;
    if r < rows && col < cols {
        mask4(widen4::<T>(x[(r * ld + col) / 4]), col, cols)
    } else {
        Vec4::new(0.0, 0.0, 0.0, 0.0)
    }
}

/// Writes the scale of the group holding quad `slot` (from its first lane); returns the index
/// of the quad's Vec4 in the matrix, or `u32::MAX` when the quad lies outside it.
#[device]
pub fn row_scale_store<const G: u32>(
    scales: &mut [f32],
    s: f32,
    slot: u32,
    rows: u32,
    cols: u32,
    ld: u32,
) -> u32 {
    let groups = (cols + G - 1) / G;
    let per_row = groups * (G / 4);
    let r = slot / per_row;
    let j = slot % per_row;
    let mut at = 4294967295u32;
    if r < rows && j * 4 < cols {
        if j % (G / 4) == 0 {
            scales[r * groups + j / (G / 4)] = s;
        }
        at = (r * ld + j * 4) / 4;
    }
    at
}

#[kernel(
    block = (BLOCK),
    tune(G = [16, 32, 64, 128], BLOCK = [128, 256], ITEMS = [1, 2, 4]),
    default(G = 128, BLOCK = 256, ITEMS = 2),
    types(T = [f32, f16, bf16], Q = [F8E4M3, F8E5M2])
)]
pub fn fp8_quantize_rows<T: Float, Q: Fp8, const G: u32, const BLOCK: u32, const ITEMS: u32>(
    x: &[Vec4<T>],
    q: &mut [Vec4<Q>],
    scales: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    #[unroll]
    for k in 0..ITEMS {
        let slot = base + k * BLOCK;
        let a = row_quad::<T, G>(x, slot, rows, cols, ld);
        let s = scale_of(quads_max::<G>(amax4(a)), Q::max_finite());
        let at = row_scale_store::<G>(scales, s, slot, rows, cols, ld);
        if at != 4294967295u32 {
            q[at] = cast4::<Q>(divide4(a, s));
        }
    }
}

/// Stages the 128×32 tile of X at (`m0`, `k0`) in `tile` (row pitch 33; outside X: 0).
/// Needs the block's 256 threads.
#[device(types(T = [f32, f16, bf16]))]
pub fn load_tile_t<T: Float>(
    x: &[Vec4<T>],
    tile: &mut [f32],
    m0: u32,
    k0: u32,
    rows: u32,
    cols: u32,
    ld: u32,
) {
    #[unroll]
    for l in 0..4u32 {
        let e = l * 256 + thread_idx_x();
        let r = e / 8;
        let c = e % 8 * 4;
        let m = m0 + r;
        let k = k0 + c;
        let v = if m < rows && k < cols {
            mask4(widen4::<T>(x[(m * ld + k) / 4]), k, cols)
        } else {
            Vec4::new(0.0, 0.0, 0.0, 0.0)
        };
        tile[r * 33 + c] = v.x;
        tile[r * 33 + c + 1] = v.y;
        tile[r * 33 + c + 2] = v.z;
        tile[r * 33 + c + 3] = v.w;
    }
}

/// Reads the lane's four values of tile column `kl` (tile rows `lane + 32 j`) into `vals`
/// and their 1×G groups' scales (groups along the tile's rows) into `scl`.
#[device]
pub fn column_t<const G: u32>(tile: &[f32], kl: u32, vals: &mut [f32], scl: &mut [f32], fmax: f32) {
    let lane = thread_idx_x() % 32;
    #[unroll]
    for j in 0..4u32 {
        vals[j] = tile[(lane + 32 * j) * 33 + kl];
    }
    let a0 = vals[0].abs();
    let a1 = vals[1].abs();
    let a2 = vals[2].abs();
    let a3 = vals[3].abs();
    if G >= 128 {
        let m = quads_max::<128>(a0.max(a1).max(a2.max(a3)));
        #[unroll]
        for j in 0..4u32 {
            scl[j] = scale_of(m, fmax);
        }
    } else if G == 64 {
        let lo = scale_of(quads_max::<128>(a0.max(a1)), fmax);
        let hi = scale_of(quads_max::<128>(a2.max(a3)), fmax);
        scl[0] = lo;
        scl[1] = lo;
        scl[2] = hi;
        scl[3] = hi;
    } else if G == 32 {
        scl[0] = scale_of(quads_max::<128>(a0), fmax);
        scl[1] = scale_of(quads_max::<128>(a1), fmax);
        scl[2] = scale_of(quads_max::<128>(a2), fmax);
        scl[3] = scale_of(quads_max::<128>(a3), fmax);
    } else {
        // G == 16: half-warps.
        scl[0] = scale_of(quads_max::<64>(a0), fmax);
        scl[1] = scale_of(quads_max::<64>(a1), fmax);
        scl[2] = scale_of(quads_max::<64>(a2), fmax);
        scl[3] = scale_of(quads_max::<64>(a3), fmax);
    }
}

/// Writes the scales of the groups that start at this lane's elements of output row `k`.
#[device]
pub fn column_scales_store<const G: u32>(
    scales: &mut [f32],
    scl: &[f32],
    k: u32,
    m0: u32,
    rows: u32,
    cols: u32,
) {
    let lane = thread_idx_x() % 32;
    let groups = (rows + G - 1) / G;
    #[unroll]
    for j in 0..4u32 {
        let ml = lane + 32 * j;
        let m = m0 + ml;
        if k < cols && m < rows && ml % G == 0 {
            scales[k * groups + m / G] = scl[j];
        }
    }
}

#[kernel(block = (256), tune(G = [16, 32, 64, 128]), default(G = 128),
         types(T = [f32, f16, bf16], Q = [F8E4M3, F8E5M2]))]
pub fn fp8_quantize_rows_t<T: Float, Q: Fp8, const G: u32>(
    x: &[Vec4<T>],
    qt: &mut [Q],
    scales: &mut [f32],
    rows: u32,
    cols: u32,
    ld: u32,
    ldt: u32,
) {
    let mut tile = shared_array::<f32>(128 * 33);
    let mut vals = local_array::<f32>(4);
    let mut scl = local_array::<f32>(4);
    let m0 = block_idx_y() * 128;
    let k0 = block_idx_x() * 32;
    load_tile_t::<T>(x, &mut tile, m0, k0, rows, cols, ld);
    sync_threads();
    let lane = thread_idx_x() % 32;
    #[unroll]
    for it in 0..4u32 {
        let kl = it * 8 + thread_idx_x() / 32;
        let k = k0 + kl;
        column_t::<G>(&tile, kl, &mut vals, &mut scl, Q::max_finite());
        column_scales_store::<G>(scales, &scl, k, m0, rows, cols);
        #[unroll]
        for j in 0..4u32 {
            let m = m0 + lane + 32 * j;
            if k < cols && m < rows {
                qt[k * ldt + m] = Q::from_f32(vals[j] / scl[j]);
            }
        }
    }
}
