//! Fragment loads: `ldmatrix` from a shared stage into a warp's A or B fragment array.
//!
//! In bytes the 16-bit m16n8k16 and the FP8 m16n8k32 fragments are the same: a K step is
//! 32 bytes (`2·E` elements, `E` per 16 bytes), an `ldmatrix` row 16 bytes. So one
//! function per operand layout serves both, given `E` (8 or 16) and a K offset `k` in
//! elements (a multiple of `2·E`).

use warpforge_dsl::prelude::*;

/// A fragments of a warp tile of `BM / WM` rows at K offset `k`: `frag[i]` gets rows
/// `row + 16i ..+16` of the K-major `tile` (rows of `BK + PAD` elements), lanes 0-15 addressing
/// those rows at `k`, lanes 16-31 at `k + E` (`ldmatrix.x4`: matrices (rows 0-7, k lo),
/// (rows 8-15, k lo), (rows 0-7, k hi), (rows 8-15, k hi) — the A fragment registers
/// a0..a3). Called by the whole warp.
#[warpforge_macros::device(types(T = [f16, bf16, F8E4M3]))]
pub fn load_a_frags<
    T: MatrixElement,
    const BM: u32,
    const WM: u32,
    const BK: u32,
    const PAD: u32,
    const E: u32,
>(
    frag: &mut [Vec4<u32>],
    tile: &[T],
    row: u32,
    k: u32,
) {
    let lane = lane_id();
    #[unroll]
    for i in 0..BM / WM / 16 {
        let r = row + i * 16 + lane % 16;
        frag[i] = ldmatrix_x4(tile, r * (BK + PAD) + k + lane / 16 * E);
    }
}

/// B fragments of a warp tile of `BN / WN` columns at K offset `k`, from a K-major `tile`
/// (`n` rows of `k`, each `BK + PAD` elements; `row` is the warp tile's first n row):
/// `frag[j]` is the B fragment of columns `8j..8j+8`. One `ldmatrix.x4` loads two n-tiles:
/// matrices (n 0-7, k lo), (n 0-7, k hi), (n 8-15, k lo), (n 8-15, k hi). Called by the
/// whole warp.
#[warpforge_macros::device(types(T = [f16, bf16, F8E4M3]))]
pub fn load_b_frags_kmajor<
    T: MatrixElement,
    const BN: u32,
    const WN: u32,
    const BK: u32,
    const PAD: u32,
    const E: u32,
>(
    frag: &mut [Vec2<u32>],
    tile: &[T],
    row: u32,
    k: u32,
) {
    let lane = lane_id();
    #[unroll]
    for j in 0..BN / WN / 16 {
        let r = row + j * 16 + lane / 16 * 8 + lane % 8;
        let c = k + lane / 8 % 2 * E;
        let x = ldmatrix_x4(tile, r * (BK + PAD) + c);
        frag[2 * j] = Vec2::new(x.x, x.y);
        frag[2 * j + 1] = Vec2::new(x.z, x.w);
    }
}

/// B fragments of a warp tile of `BN / WN` columns from an N-major `tile` (`k` rows of `n`,
/// each `BN + PAD` elements): `k_row` is the tile row of the K step's first k, `col` the
/// warp tile's first column; `frag[j]` as in `load_b_frags_kmajor`. Transposed
/// `ldmatrix.x4` of (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
/// 16-bit elements only (`.trans` moves 16-bit elements; FP8 B must be K-major). Called by
/// the whole warp.
#[warpforge_macros::device(types(T = [f16, bf16]))]
pub fn load_b_frags_nmajor<T: MatrixElement, const BN: u32, const WN: u32, const PAD: u32>(
    frag: &mut [Vec2<u32>],
    tile: &[T],
    k_row: u32,
    col: u32,
) {
    let lane = lane_id();
    #[unroll]
    for j in 0..BN / WN / 16 {
        let r = k_row + lane / 8 % 2 * 8 + lane % 8;
        let x = ldmatrix_x4_trans(tile, r * (BN + PAD) + col + j * 16 + lane / 16 * 8);
        frag[2 * j] = Vec2::new(x.x, x.y);
        frag[2 * j + 1] = Vec2::new(x.z, x.w);
    }
}

/// A fragments of a warp tile of `BM / WM` rows from an M-major `tile` (`k` rows of `m`,
/// each `BM + PAD` elements: a column-major A, `Aᵀ` row-major): `k_row` is the tile row of
/// the K step's first k, `row` the warp tile's first m; `frag[i]` as in `load_a_frags`.
/// Transposed `ldmatrix.x4` of (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15,
/// m 8-15), which `.trans` turns into the a0..a3 registers. 16-bit elements only. Called by
/// the whole warp.
#[warpforge_macros::device(types(T = [f16, bf16]))]
pub fn load_a_frags_mmajor<T: MatrixElement, const BM: u32, const WM: u32, const PAD: u32>(
    frag: &mut [Vec4<u32>],
    tile: &[T],
    k_row: u32,
    row: u32,
) {
    let lane = lane_id();
    #[unroll]
    for i in 0..BM / WM / 16 {
        let r = k_row + lane / 16 * 8 + lane % 8;
        let m = row + i * 16 + lane / 8 % 2 * 8;
        frag[i] = ldmatrix_x4_trans(tile, r * (BM + PAD) + m);
    }
}
