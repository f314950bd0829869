//! FP8 GEMM on tensor cores: `C[m×n] = (A·Bᵀ) ⊙ scales`, E4M3 × E4M3 with f32 accumulation,
//! C in f32 or bf16 (`fp8_gemm_e4m3_f32`, `fp8_gemm_e4m3_bf16`: one generic source over the
//! output type `O`, rounded once from the f32 result). Needs sm_89
//! (`mma.sync.m16n8k32.e4m3`).
//!
//! Both operands are K-major, the layout FP8 tensor cores take: A is `m` rows of `k`
//! (leading dimension `lda`), B is `n` rows of `k` (`ldb`; a `Linear` weight as stored).
//! `lda` and `ldb` are multiples of 16 (16-byte rows); `m`, `n`, `k` are arbitrary.
//!
//! # Scales
//!
//! K is cut into groups of 128. For every group the warps accumulate the raw products in
//! f32 on the tensor cores, then *promote*: `c += partial · sa · sb` in f32 on the CUDA
//! cores, and restart the partial sums. With `blocked != 0` the scales are DeepSeek-V3's:
//! `a_scale[row · a_scale_ld + kb]` per row and 128-group of K (1×128, the layout
//! [`super::rows`] writes with G = 128) and `b_scale[(col / 128) · b_scale_ld + kb]` per
//! 128×128 tile of B (the layout [`super::blocks`] writes). With `blocked == 0` they are
//! per-tensor: `a_scale[0]` and `b_scale[0]`. Promoting every 128 of K also bounds the
//! error of the tensor cores' reduced-precision FP8 accumulation (Hopper keeps about 14
//! mantissa bits inside an MMA chain; DeepSeek-V3, section 3.3.2).
//!
//! # How it works
//!
//! As [`crate::gemm_tc`], composed of the same [`crate::tile`] pieces (with `E = 16` FP8
//! values per 16 bytes) plus `promote_warp_tile`: a `STAGES`-deep ring of shared slices
//! filled by 16-byte `cp.async` (source size cut at the ragged edges), `ldmatrix.x4`
//! fragment loads (a 16-byte row is 16 FP8 values; each lane receives 4 of them per
//! register, the `m16n8k32` fragment layout), `mma.sync.m16n8k32` per 32 of K, shared rows
//! padded by 16 bytes (conflict-free `ldmatrix` phases for BK = 64 and 128).
//!
//! # Roofline
//!
//! Compute-bound for large shapes: 2·m·n·k flops against m·k + n·k bytes of FP8 operands
//! plus 4·m·n of output; at m ≲ 128 it is bound by reading B (n·k bytes, half of an f16
//! GEMM's). Tunables: `BM`, `BN` (≤ 128 so a block's columns share one B scale tile), `BK`
//! (64 or 128: divides the 128-group), `WM`, `WN` (warps), `STAGES`. Shared memory is
//! `STAGES·(BM + BN)·(BK + 16)` bytes, up to 99 KiB; the default takes 80 KiB.

mod family;
mod host;

pub use family::kernels;

pub use host::{
    def_of, dims, inputs, launch, padded, problems, reference, run, ScaledOperands, Scaling,
};

use crate::tile::*;
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// The K extent of one scale group (a literal 128 in the kernel).
pub const GROUP: u32 = 128;

#[kernel(
    block = (32 * WM * WN),
    tune(
        BM = [32, 64, 128],
        BN = [64, 128],
        BK = [64, 128],
        WM = [1, 2, 4],
        WN = [1, 2, 4],
        STAGES = [2, 3, 4]
    ),
    default(BM = 128, BN = 128, BK = 64, WM = 2, WN = 4, STAGES = 4),
    types(O = [f32, bf16]),
    constraint = WM * WN >= 2 && WM * WN <= 8,
    constraint = (BM / WM) % 16 == 0 && (BN / WN) % 16 == 0 && BM >= 16 * WM && BN >= 16 * WN,
    constraint = (BM / WM / 16) * (BN / WN / 8) <= 16,
    constraint = (BM * BK / 16) % (32 * WM * WN) == 0 && (BN * BK / 16) % (32 * WM * WN) == 0,
    constraint = STAGES * (BM + BN) * (BK + 16) <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn fp8_gemm_e4m3<
    O: Float,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WM: u32,
    const WN: u32,
    const STAGES: u32,
>(
    a: &[F8E4M3],
    b: &[F8E4M3],
    a_scale: &[f32],
    b_scale: &[f32],
    c: &mut [O],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    blocked: u32,
    a_scale_ld: u32,
    b_scale_ld: u32,
) {
    // Shared rows of BK + 16 bytes (16-byte padding against bank conflicts).
    let mut a_tile = shared_array::<F8E4M3>(STAGES * BM * (BK + 16));
    let mut b_tile = shared_array::<F8E4M3>(STAGES * BN * (BK + 16));
    let mut acc = local_array::<Vec4<f32>>((BM / WM / 16) * (BN / WN / 8));
    let mut part = local_array::<Vec4<f32>>((BM / WM / 16) * (BN / WN / 8));
    let mut a_frag = local_array::<Vec4<u32>>(BM / WM / 16);
    let mut b_frag = local_array::<Vec2<u32>>(BN / WN / 8);
    let tid = thread_idx_x();
    let warp_row = tid / 32 / WN * (BM / WM);
    let warp_col = tid / 32 % WN * (BN / WN);
    let row0 = block_idx_y() * BM;
    let col0 = block_idx_x() * BN;
    let tiles = (k + BK - 1) / BK;
    // Step s copies slice s and, from step STAGES - 1 on, multiplies slice s - (STAGES - 1).
    for step in 0..tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < tiles {
            let stage = step % STAGES;
            let k0 = step * BK;
            // A: BM rows of K; B: BN rows of K. 16 FP8 values per 16-byte chunk.
            load_slice::<F8E4M3, BM, BK, 16, 16, WM, WN>(
                &mut a_tile,
                a,
                stage,
                row0,
                m,
                k0,
                k,
                lda,
            );
            load_slice::<F8E4M3, BN, BK, 16, 16, WM, WN>(
                &mut b_tile,
                b,
                stage,
                col0,
                n,
                k0,
                k,
                ldb,
            );
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let slice = step - (STAGES - 1);
            let stage = slice % STAGES;
            let a_row = stage * BM + warp_row;
            let b_row = stage * BN + warp_col;
            #[unroll]
            for kk in 0..BK / 32 {
                // m16n8k32: 32 FP8 values (two 16-byte ldmatrix rows) of K per step.
                let k_at = kk * 32;
                load_a_frags::<F8E4M3, BM, WM, BK, 16, 16>(&mut a_frag, &a_tile, a_row, k_at);
                load_b_frags_kmajor::<F8E4M3, BN, WN, BK, 16, 16>(
                    &mut b_frag,
                    &b_tile,
                    b_row,
                    k_at,
                );
                mma_warp_tile::<F8E4M3, BM, BN, WM, WN>(&mut part, &a_frag, &b_frag);
            }
            // The end of a 128-group of K (or of K): promote the partial sums.
            if (slice + 1) * BK % 128 == 0 || slice + 1 == tiles {
                let kb = slice * BK / 128;
                let sb = b_scale[scale_at(blocked, col0 / 128, b_scale_ld, kb)];
                let row = row0 + warp_row;
                promote_warp_tile::<BM, BN, WM, WN>(
                    &mut acc, &mut part, a_scale, blocked, row, m, a_scale_ld, kb, sb,
                );
            }
        }
    }
    cp_async_wait(0);
    store_warp_tile::<O, BM, BN, WM, WN>(c, &acc, row0 + warp_row, col0 + warp_col, m, n, ldc);
}

/// Index of a scale: `(group, kb)` of a `ld`-wide table when blocked, else the tensor's one.
#[device]
pub fn scale_at(blocked: u32, group: u32, ld: u32, kb: u32) -> u32 {
    if blocked != 0 {
        group * ld + kb
    } else {
        0
    }
}

/// A's scale for `row` at K group `kb` (0 past the last row, whose results are not stored).
#[device]
pub fn row_scale(a_scale: &[f32], blocked: u32, row: u32, m: u32, ld: u32, kb: u32) -> f32 {
    if row < m {
        a_scale[scale_at(blocked, row, ld, kb)]
    } else {
        0.0
    }
}

/// The promotion at the end of K group `kb`: `acc += part · sa · sb` over a warp tile
/// whose first row is `row` (`sa` the scale of each accumulator's row, `sb` the B tile's),
/// then `part = 0` for the next group. Fragment layout as `crate::tile::mma_warp_tile`.
#[device]
#[allow(clippy::too_many_arguments)]
pub fn promote_warp_tile<const BM: u32, const BN: u32, const WM: u32, const WN: u32>(
    acc: &mut [Vec4<f32>],
    part: &mut [Vec4<f32>],
    a_scale: &[f32],
    blocked: u32,
    row: u32,
    m: u32,
    a_scale_ld: u32,
    kb: u32,
    sb: f32,
) {
    let lane = lane_id();
    #[unroll]
    for i in 0..BM / WM / 16 {
        let r = row + i * 16 + lane / 4;
        let top = row_scale(a_scale, blocked, r, m, a_scale_ld, kb) * sb;
        let bottom = row_scale(a_scale, blocked, r + 8, m, a_scale_ld, kb) * sb;
        #[unroll]
        for j in 0..BN / WN / 8 {
            let t = i * (BN / WN / 8) + j;
            acc[t] = promote(acc[t], part[t], top, bottom);
            part[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
        }
    }
}

/// `acc + part · scale`, rows g (`.x`, `.y`) scaled by `top` and g + 8 (`.z`, `.w`) by
/// `bottom`.
#[device]
pub fn promote(acc: Vec4<f32>, part: Vec4<f32>, top: f32, bottom: f32) -> Vec4<f32> {
    Vec4::new(
        part.x.mul_add(top, acc.x),
        part.y.mul_add(top, acc.y),
        part.z.mul_add(bottom, acc.z),
        part.w.mul_add(bottom, acc.w),
    )
}
