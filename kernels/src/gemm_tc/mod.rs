//! Tensor-core GEMM: `C[m×n] = A[m×k] · B`, f16 or bf16 inputs, f32 accumulation, C in f32,
//! f16 or bf16 (rounded to nearest even once, from the f32 sum).
//!
//! Three layouts ([`Layout`]), C always row-major with leading dimension `ldc`:
//! - `gemm_tc_nt_*`: A row-major (`m` rows of `k`, `lda` apart), B column-major — `n` rows
//!   of `k` (`ldb` between rows), the layout of a `Linear` layer's weight (`Y = X·Wᵀ`);
//! - `gemm_tc_nn_*`: A row-major, B row-major — `k` rows of `n` (a layer's data gradient
//!   `dX = dY·W`);
//! - `gemm_tc_tn_*`: A column-major — stored as `k` rows of `m`, so C = `Aᵀ·B` for the
//!   row-major matrix stored — and B row-major: a layer's weight gradient `dW = dYᵀ·X` with
//!   `dY` `[tokens, out]` and `X` `[tokens, in]` as the forward left them (`m = out`,
//!   `n = in`, `k = tokens`). Its last argument `accumulate` (0 or 1) adds into C instead
//!   of overwriting it (`C += Aᵀ·B`, each element's sum in f32 rounded once:
//!   [`launch_tn_accumulate`], gradient accumulation over micro-batches).
//!
//! `lda` and `ldb` are multiples of 8 so that every row starts 16-byte aligned; `m`, `n`
//! and `k` are arbitrary.
//!
//! One generic source per layout, `gemm_tc_nt<T, O>`, `gemm_tc_nn<T, O>` and
//! `gemm_tc_tn<T, O>`, instantiated for `T ∈ {f16, bf16}` and `O ∈ {f32, f16, bf16}`:
//! `gemm_tc_nt_bf16_bf16` is bf16 in, bf16 out. [`launch`] and [`run`] pick the instance
//! from the Rust types and the layout.
//!
//! # How it works
//!
//! Each block computes a `BM×BN` tile of C with `WM×WN` warps, each warp a
//! `(BM/WM)×(BN/WN)` sub-tile as a grid of `mma.sync.m16n8k16` tiles whose f32 accumulators
//! stay in registers. K is walked in `BK`-wide slices through a ring of `STAGES` shared
//! buffers filled by 16-byte `cp.async` copies: while the warps multiply slice `kt`, the
//! copies of the next `STAGES - 1` slices are in flight (one barrier per slice). Fragments
//! come from shared memory with `ldmatrix.x4` (`.trans` for a row-major B and for a
//! column-major A, whose stages are k rows of `BM`). Shared rows are padded by 8 halves
//! (16 bytes), which puts the 8 rows one `ldmatrix` phase reads in 8 different 4-bank
//! groups: conflict-free. Ragged edges are handled by the copies' source
//! size (`cp_async_16_zfill`): bytes outside A or B are read as zeros, and stores outside C
//! are predicated off.
//!
//! The kernels are compositions of the pieces in [`crate::tile`]: `load_slice` for each
//! operand's stage, `load_a_frags` and `load_b_frags_kmajor` (NT) or `load_b_frags_nmajor`
//! (NN), or `load_a_frags_mmajor` and `load_b_frags_nmajor` (TN), per K step of 16,
//! `mma_warp_tile`, and `store_warp_tile` (TN accumulating: `add_warp_tile`) for the
//! epilogue; only the step loop and the stages' shapes differ.
//!
//! # Roofline
//!
//! Compute-bound for large shapes: 2·m·n·k flops against (m·k + k·n)·2 + m·n·|O| bytes; a tile
//! reuses each A element BN times and each B element BM times from shared memory. For
//! `m` ≲ 64 (decode) the kernel is bound by reading B (2·n·k bytes). `mma.sync` reaches
//! about 60-70 % of an H100/H200's dense f16 peak (which needs `wgmma`); on sm_80 it is the
//! fastest path.
//!
//! Tunables: `BM`, `BN`, `BK` (block tile), `WM`, `WN` (warps along M and N; the block has
//! `32·WM·WN` threads), `STAGES` (pipeline depth). Shared memory is `STAGES·(BM + BN)·(BK +
//! 8)·2` bytes for nt (nn: `STAGES·(BM·(BK + 8) + BK·(BN + 8))·2`, tn: `STAGES·BK·(BM + BN +
//! 16)·2`), up to 99 KiB (the opt-in limit every sm_80+ GPU allows; above 48 KiB it is
//! dynamic shared memory); the default (128×128×32, 2×2 warps, 4 stages) takes 80 KiB (tn:
//! 68 KiB). The tn kernel's roofline is the others' (2·m·n·k flops against (m·k + k·n)·2 +
//! m·n·|O| bytes, twice the C bytes when accumulating); for a weight gradient k = tokens
//! is the long dimension, so it is compute-bound at any batch worth training on.

mod family;
mod host;

pub use family::kernels;
pub use host::{
    def_of, dims, inputs, launch, launch_tn_accumulate, padded, reference, run, Layout,
};

use crate::tile::*;
use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

// The device functions that lived here before `crate::tile`, for callers of the old paths.
pub use crate::tile::{load_slice_bf16, load_slice_e4m3, load_slice_f16};
pub use crate::tile::{mma_f32_bf16, mma_f32_f16, store_pair_bf16, store_pair_f16, store_pair_f32};

#[kernel(
    block = (32 * WM * WN),
    tune(
        BM = [32, 64, 128, 256],
        BN = [64, 128, 256],
        BK = [32, 64],
        WM = [1, 2, 4],
        WN = [1, 2, 4],
        STAGES = [2, 3, 4]
    ),
    default(BM = 128, BN = 128, BK = 32, WM = 2, WN = 2, STAGES = 4),
    types(T = [f16, bf16], O = [f32, f16, bf16]),
    constraint = WM * WN >= 2 && WM * WN <= 8,
    constraint = (BM / WM) % 16 == 0 && (BN / WN) % 16 == 0 && BM >= 16 * WM && BN >= 16 * WN,
    constraint = (BM / WM / 16) * (BN / WN / 8) <= 32,
    constraint = (BM * BK / 8) % (32 * WM * WN) == 0 && (BN * BK / 8) % (32 * WM * WN) == 0,
    constraint = STAGES * (BM + BN) * (BK + 8) * 2 <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_tc_nt<
    T: Float,
    O: Float,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WM: u32,
    const WN: u32,
    const STAGES: u32,
>(
    a: &[T],
    b: &[T],
    c: &mut [O],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
) {
    // Shared rows of BK + 8 halves (16-byte padding against bank conflicts).
    let mut a_tile = shared_array::<T>(STAGES * BM * (BK + 8));
    let mut b_tile = shared_array::<T>(STAGES * BN * (BK + 8));
    let mut acc = local_array::<Vec4<f32>>((BM / WM / 16) * (BN / WN / 8));
    let mut a_frag = local_array::<Vec4<u32>>(BM / WM / 16);
    let mut b_frag = local_array::<Vec2<u32>>(BN / WN / 8);
    let tid = thread_idx_x();
    let warp_row = tid / 32 / WN * (BM / WM);
    let warp_col = tid / 32 % WN * (BN / WN);
    let row0 = block_idx_y() * BM;
    let col0 = block_idx_x() * BN;
    let tiles = (k + BK - 1) / BK;
    // Step s copies slice s (while s < tiles) and, from step STAGES - 1 on, multiplies
    // slice s - (STAGES - 1): the first STAGES - 1 steps fill the pipeline.
    for step in 0..tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            // Slice `step - (STAGES - 1)` has landed; the barrier also retires the stage
            // the copies below overwrite (multiplied in the previous step).
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < tiles {
            let stage = step % STAGES;
            let k0 = step * BK;
            // A: BM rows of K; B: BN rows of K (column-major B is K-major too).
            load_slice::<T, BM, BK, 8, 8, WM, WN>(&mut a_tile, a, stage, row0, m, k0, k, lda);
            load_slice::<T, BN, BK, 8, 8, WM, WN>(&mut b_tile, b, stage, col0, n, k0, k, ldb);
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let stage = (step - (STAGES - 1)) % STAGES;
            let a_row = stage * BM + warp_row;
            let b_row = stage * BN + warp_col;
            #[unroll]
            for kk in 0..BK / 16 {
                // The A and B fragments at k = 16·kk, then the warp tile's MMAs.
                load_a_frags::<T, BM, WM, BK, 8, 8>(&mut a_frag, &a_tile, a_row, kk * 16);
                load_b_frags_kmajor::<T, BN, WN, BK, 8, 8>(&mut b_frag, &b_tile, b_row, kk * 16);
                mma_warp_tile::<T, BM, BN, WM, WN>(&mut acc, &a_frag, &b_frag);
            }
        }
    }
    cp_async_wait(0);
    store_warp_tile::<O, BM, BN, WM, WN>(c, &acc, row0 + warp_row, col0 + warp_col, m, n, ldc);
}

#[kernel(
    block = (32 * WM * WN),
    tune(
        BM = [32, 64, 128, 256],
        BN = [64, 128, 256],
        BK = [32, 64],
        WM = [1, 2, 4],
        WN = [1, 2, 4],
        STAGES = [2, 3, 4]
    ),
    default(BM = 128, BN = 128, BK = 32, WM = 2, WN = 2, STAGES = 4),
    types(T = [f16, bf16], O = [f32, f16, bf16]),
    constraint = WM * WN >= 2 && WM * WN <= 8,
    constraint = (BM / WM) % 16 == 0 && (BN / WN) % 16 == 0 && BM >= 16 * WM && BN >= 16 * WN,
    constraint = (BM / WM / 16) * (BN / WN / 8) <= 32,
    constraint = (BM * BK / 8) % (32 * WM * WN) == 0 && (BN * BK / 8) % (32 * WM * WN) == 0,
    constraint = STAGES * (BM * (BK + 8) + BK * (BN + 8)) * 2 <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_tc_nn<
    T: Float,
    O: Float,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WM: u32,
    const WN: u32,
    const STAGES: u32,
>(
    a: &[T],
    b: &[T],
    c: &mut [O],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
) {
    // A rows of BK + 8 halves, B (k-major) rows of BN + 8 halves.
    let mut a_tile = shared_array::<T>(STAGES * BM * (BK + 8));
    let mut b_tile = shared_array::<T>(STAGES * BK * (BN + 8));
    let mut acc = local_array::<Vec4<f32>>((BM / WM / 16) * (BN / WN / 8));
    let mut a_frag = local_array::<Vec4<u32>>(BM / WM / 16);
    let mut b_frag = local_array::<Vec2<u32>>(BN / WN / 8);
    let tid = thread_idx_x();
    let warp_row = tid / 32 / WN * (BM / WM);
    let warp_col = tid / 32 % WN * (BN / WN);
    let row0 = block_idx_y() * BM;
    let col0 = block_idx_x() * BN;
    let tiles = (k + BK - 1) / BK;
    for step in 0..tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < tiles {
            let stage = step % STAGES;
            let k0 = step * BK;
            // A: BM rows of K; B: BK rows of N (row-major).
            load_slice::<T, BM, BK, 8, 8, WM, WN>(&mut a_tile, a, stage, row0, m, k0, k, lda);
            load_slice::<T, BK, BN, 8, 8, WM, WN>(&mut b_tile, b, stage, k0, k, col0, n, ldb);
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let stage = (step - (STAGES - 1)) % STAGES;
            let a_row = stage * BM + warp_row;
            #[unroll]
            for kk in 0..BK / 16 {
                // B's fragments by transposed loads from its k rows 16·kk.. of the stage.
                load_a_frags::<T, BM, WM, BK, 8, 8>(&mut a_frag, &a_tile, a_row, kk * 16);
                let k_row = stage * BK + kk * 16;
                load_b_frags_nmajor::<T, BN, WN, 8>(&mut b_frag, &b_tile, k_row, warp_col);
                mma_warp_tile::<T, BM, BN, WM, WN>(&mut acc, &a_frag, &b_frag);
            }
        }
    }
    cp_async_wait(0);
    store_warp_tile::<O, BM, BN, WM, WN>(c, &acc, row0 + warp_row, col0 + warp_col, m, n, ldc);
}

#[kernel(
    block = (32 * WM * WN),
    tune(
        BM = [32, 64, 128, 256],
        BN = [64, 128, 256],
        BK = [32, 64],
        WM = [1, 2, 4],
        WN = [1, 2, 4],
        STAGES = [2, 3, 4]
    ),
    default(BM = 128, BN = 128, BK = 32, WM = 2, WN = 2, STAGES = 4),
    types(T = [f16, bf16], O = [f32, f16, bf16]),
    constraint = WM * WN >= 2 && WM * WN <= 8,
    constraint = (BM / WM) % 16 == 0 && (BN / WN) % 16 == 0 && BM >= 16 * WM && BN >= 16 * WN,
    constraint = (BM / WM / 16) * (BN / WN / 8) <= 32,
    constraint = (BM * BK / 8) % (32 * WM * WN) == 0 && (BN * BK / 8) % (32 * WM * WN) == 0,
    constraint = STAGES * BK * (BM + 8 + BN + 8) * 2 <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_tc_tn<
    T: Float,
    O: Float,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WM: u32,
    const WN: u32,
    const STAGES: u32,
>(
    a: &[T],
    b: &[T],
    c: &mut [O],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    accumulate: u32,
) {
    // Both operands k-major in shared memory: A BK rows of BM + 8, B BK rows of BN + 8.
    let mut a_tile = shared_array::<T>(STAGES * BK * (BM + 8));
    let mut b_tile = shared_array::<T>(STAGES * BK * (BN + 8));
    let mut acc = local_array::<Vec4<f32>>((BM / WM / 16) * (BN / WN / 8));
    let mut a_frag = local_array::<Vec4<u32>>(BM / WM / 16);
    let mut b_frag = local_array::<Vec2<u32>>(BN / WN / 8);
    let tid = thread_idx_x();
    let warp_row = tid / 32 / WN * (BM / WM);
    let warp_col = tid / 32 % WN * (BN / WN);
    let row0 = block_idx_y() * BM;
    let col0 = block_idx_x() * BN;
    let tiles = (k + BK - 1) / BK;
    for step in 0..tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < tiles {
            let stage = step % STAGES;
            let k0 = step * BK;
            // A: BK rows of M (Aᵀ row-major); B: BK rows of N.
            load_slice::<T, BK, BM, 8, 8, WM, WN>(&mut a_tile, a, stage, k0, k, row0, m, lda);
            load_slice::<T, BK, BN, 8, 8, WM, WN>(&mut b_tile, b, stage, k0, k, col0, n, ldb);
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let stage = (step - (STAGES - 1)) % STAGES;
            #[unroll]
            for kk in 0..BK / 16 {
                // Both fragments by transposed loads from the stage's k rows 16·kk..
                let k_row = stage * BK + kk * 16;
                load_a_frags_mmajor::<T, BM, WM, 8>(&mut a_frag, &a_tile, k_row, warp_row);
                load_b_frags_nmajor::<T, BN, WN, 8>(&mut b_frag, &b_tile, k_row, warp_col);
                mma_warp_tile::<T, BM, BN, WM, WN>(&mut acc, &a_frag, &b_frag);
            }
        }
    }
    cp_async_wait(0);
    let r = row0 + warp_row;
    let col = col0 + warp_col;
    if accumulate != 0 {
        add_warp_tile::<O, BM, BN, WM, WN>(c, &acc, r, col, m, n, ldc);
    } else {
        store_warp_tile::<O, BM, BN, WM, WN>(c, &acc, r, col, m, n, ldc);
    }
}
