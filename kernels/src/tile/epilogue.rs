//! The epilogue: a warp tile's f32 accumulators rounded once into C.

use warpforge_dsl::prelude::*;

/// Stores a warp tile's accumulators (`acc` as `mma_warp_tile` leaves it) into the
/// row-major `m × n` matrix `c` (leading dimension `ldc`) with the warp tile's first element
/// at (`row`, `col`): lane `l` of C fragment (`i`, `j`) writes rows `16i + l/4` and `+ 8`,
/// columns `8j + 2(l%4)` and `+ 1`. Elements outside C are not written. Called by the whole
/// warp (any lanes would do: no warp-level operation).
#[warpforge_macros::device(types(O = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn store_warp_tile<O: Float, const BM: u32, const BN: u32, const WM: u32, const WN: u32>(
    c: &mut [O],
    acc: &[Vec4<f32>],
    row: u32,
    col: u32,
    m: u32,
    n: u32,
    ldc: u32,
) {
    let lane = lane_id();
    #[unroll]
    for i in 0..BM / WM / 16 {
        #[unroll]
        for j in 0..BN / WN / 8 {
            let r = row + i * 16 + lane / 4;
            let cc = col + j * 8 + lane % 4 * 2;
            let v = acc[i * (BN / WN / 8) + j];
            store_pair::<O>(c, r, cc, m, n, ldc, v.x, v.y);
            store_pair::<O>(c, r + 8, cc, m, n, ldc, v.z, v.w);
        }
    }
}

/// Stores `x`, `y` (rounded to nearest even into `O`) at (`row`, `col`), (`row`, `col + 1`)
/// where they fall inside C.
#[warpforge_macros::device(types(O = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn store_pair<O: Float>(
    c: &mut [O],
    row: u32,
    col: u32,
    m: u32,
    n: u32,
    ldc: u32,
    x: f32,
    y: f32,
) {
    if row < m {
        if col < n {
            c[row * ldc + col] = O::from_f32(x);
        }
        if col + 1 < n {
            c[row * ldc + col + 1] = O::from_f32(y);
        }
    }
}

/// As [`fn@store_warp_tile`], but adding into C: each element becomes `O(c + acc)`, the sum
/// in f32 and rounded once (gradient accumulation over micro-batches).
#[warpforge_macros::device(types(O = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn add_warp_tile<O: Float, const BM: u32, const BN: u32, const WM: u32, const WN: u32>(
    c: &mut [O],
    acc: &[Vec4<f32>],
    row: u32,
    col: u32,
    m: u32,
    n: u32,
    ldc: u32,
) {
    let lane = lane_id();
    #[unroll]
    for i in 0..BM / WM / 16 {
        #[unroll]
        for j in 0..BN / WN / 8 {
            let r = row + i * 16 + lane / 4;
            let cc = col + j * 8 + lane % 4 * 2;
            let v = acc[i * (BN / WN / 8) + j];
            add_pair::<O>(c, r, cc, m, n, ldc, v.x, v.y);
            add_pair::<O>(c, r + 8, cc, m, n, ldc, v.z, v.w);
        }
    }
}

/// Adds `x`, `y` to the elements at (`row`, `col`), (`row`, `col + 1`) where they fall
/// inside C, rounding each f32 sum once into `O`.
#[warpforge_macros::device(types(O = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn add_pair<O: Float>(
    c: &mut [O],
    row: u32,
    col: u32,
    m: u32,
    n: u32,
    ldc: u32,
    x: f32,
    y: f32,
) {
    if row < m {
        if col < n {
            let at = row * ldc + col;
            c[at] = O::from_f32(c[at].to_f32() + x);
        }
        if col + 1 < n {
            let at = row * ldc + col + 1;
            c[at] = O::from_f32(c[at].to_f32() + y);
        }
    }
}
