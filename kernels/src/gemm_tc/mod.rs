//! Tensor-core GEMM: `C[m×n] = A[m×k] · B`, f16 or bf16 inputs, f32 accumulation, C in f32,
//! f16 or bf16 (rounded to nearest even once, from the f32 sum).
//!
//! A is row-major with leading dimension `lda`; B is either column-major — stored as `n`
//! rows of `k` (`ldb` between rows), the layout of a `Linear` layer's weight, the
//! `gemm_tc_nt_*` kernels — or row-major — `k` rows of `n`, the `gemm_tc_nn_*` kernels. C is
//! row-major with leading dimension `ldc`. `lda` and `ldb` are multiples of 8 so that every
//! row starts 16-byte aligned; `m`, `n` and `k` are arbitrary.
//!
//! One generic source per layout, `gemm_tc_nt<T, O>` and `gemm_tc_nn<T, O>`,
//! instantiated for `T ∈ {f16, bf16}` and `O ∈ {f32, f16, bf16}`: `gemm_tc_nt_bf16_bf16` is
//! bf16 in, bf16 out. [`launch`] and [`run`] pick the instance from the Rust types.
//!
//! # How it works
//!
//! Each block computes a `BM×BN` tile of C with `WM×WN` warps, each warp a
//! `(BM/WM)×(BN/WN)` sub-tile as a grid of `mma.sync.m16n8k16` tiles whose f32 accumulators
//! stay in registers. K is walked in `BK`-wide slices through a ring of `STAGES` shared
//! buffers filled by 16-byte `cp.async` copies: while the warps multiply slice `kt`, the
//! copies of the next `STAGES - 1` slices are in flight (one barrier per slice). Fragments
//! come from shared memory with `ldmatrix.x4` (`.trans` for a row-major B). Shared rows are
//! padded by 8 halves (16 bytes), which puts the 8 rows one `ldmatrix` phase reads in 8
//! different 4-bank groups: conflict-free. Ragged edges are handled by the copies' source
//! size (`cp_async_16_zfill`): bytes outside A or B are read as zeros, and stores outside C
//! are predicated off.
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
//! 8)·2` bytes, up to 99 KiB (the opt-in limit every sm_80+ GPU allows; above 48 KiB it is
//! dynamic shared memory); the default (128×128×32, 2×2 warps, 4 stages) takes 80 KiB.

mod family;
mod host;

pub use family::kernels;
pub use host::{def_of, dims, inputs, launch, padded, reference, run, Layout};

use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

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
    let lane = lane_id();
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
            #[unroll]
            for kk in 0..BK / 16 {
                // A fragments: lanes 0-15 address rows 0-15 at k, lanes 16-31 at k + 8.
                #[unroll]
                for i in 0..BM / WM / 16 {
                    let row = stage * BM + warp_row + i * 16 + lane % 16;
                    a_frag[i] = ldmatrix_x4(&a_tile, row * (BK + 8) + kk * 16 + lane / 16 * 8);
                }
                // B fragments of two n-tiles per ldmatrix.x4: matrices (n 0-7, k 0-7),
                // (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
                #[unroll]
                for j in 0..BN / WN / 16 {
                    let row = stage * BN + warp_col + j * 16 + lane / 16 * 8 + lane % 8;
                    let col = kk * 16 + lane / 8 % 2 * 8;
                    let r = ldmatrix_x4(&b_tile, row * (BK + 8) + col);
                    b_frag[2 * j] = Vec2::new(r.x, r.y);
                    b_frag[2 * j + 1] = Vec2::new(r.z, r.w);
                }
                #[unroll]
                for i in 0..BM / WM / 16 {
                    #[unroll]
                    for j in 0..BN / WN / 8 {
                        let t = i * (BN / WN / 8) + j;
                        acc[t] = mma_f32::<T>(a_frag[i], b_frag[j], acc[t]);
                    }
                }
            }
        }
    }
    cp_async_wait(0);
    #[unroll]
    for i in 0..BM / WM / 16 {
        #[unroll]
        for j in 0..BN / WN / 8 {
            let row = row0 + warp_row + i * 16 + lane / 4;
            let col = col0 + warp_col + j * 8 + lane % 4 * 2;
            let v = acc[i * (BN / WN / 8) + j];
            store_pair::<O>(c, row, col, m, n, ldc, v.x, v.y);
            store_pair::<O>(c, row + 8, col, m, n, ldc, v.z, v.w);
        }
    }
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
    let lane = lane_id();
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
            #[unroll]
            for kk in 0..BK / 16 {
                #[unroll]
                for i in 0..BM / WM / 16 {
                    let row = stage * BM + warp_row + i * 16 + lane % 16;
                    a_frag[i] = ldmatrix_x4(&a_tile, row * (BK + 8) + kk * 16 + lane / 16 * 8);
                }
                // Transposed loads of (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15),
                // (k 8-15, n 8-15): the B fragments of two n-tiles.
                #[unroll]
                for j in 0..BN / WN / 16 {
                    let row = stage * BK + kk * 16 + lane / 8 % 2 * 8 + lane % 8;
                    let col = warp_col + j * 16 + lane / 16 * 8;
                    let r = ldmatrix_x4_trans(&b_tile, row * (BN + 8) + col);
                    b_frag[2 * j] = Vec2::new(r.x, r.y);
                    b_frag[2 * j + 1] = Vec2::new(r.z, r.w);
                }
                #[unroll]
                for i in 0..BM / WM / 16 {
                    #[unroll]
                    for j in 0..BN / WN / 8 {
                        let t = i * (BN / WN / 8) + j;
                        acc[t] = mma_f32::<T>(a_frag[i], b_frag[j], acc[t]);
                    }
                }
            }
        }
    }
    cp_async_wait(0);
    #[unroll]
    for i in 0..BM / WM / 16 {
        #[unroll]
        for j in 0..BN / WN / 8 {
            let row = row0 + warp_row + i * 16 + lane / 4;
            let col = col0 + warp_col + j * 8 + lane % 4 * 2;
            let v = acc[i * (BN / WN / 8) + j];
            store_pair::<O>(c, row, col, m, n, ldc, v.x, v.y);
            store_pair::<O>(c, row + 8, col, m, n, ldc, v.z, v.w);
        }
    }
}

/// Issues the 16-byte `cp.async` copies of one `ROWS × COLS` block of a row-major
/// `rows × cols` matrix (`src`, leading dimension `ld`) at (`row0`, `col0`) into stage `stage`
/// of `tile`, whose rows are `COLS + PAD` elements. A chunk is 16 bytes, `E` elements (8
/// halves, 16 FP8 values); chunks that pass the matrix's right edge copy only their valid
/// bytes and chunks outside it copy none: the rest is zero-filled. Every thread of the
/// block (`32·WM·WN`) calls it.
#[warpforge_macros::device(types(T = [f16, bf16, F8E4M3]))]
#[allow(clippy::too_many_arguments)]
pub fn load_slice<
    T: MatrixElement,
    const ROWS: u32,
    const COLS: u32,
    const PAD: u32,
    const E: u32,
    const WM: u32,
    const WN: u32,
>(
    tile: &mut [T],
    src: &[T],
    stage: u32,
    row0: u32,
    rows: u32,
    col0: u32,
    cols: u32,
    ld: u32,
) {
    let threads = 32 * WM * WN;
    #[unroll]
    for l in 0..ROWS * COLS / E / threads {
        let e = l * threads + thread_idx_x();
        let r = e / (COLS / E);
        let c = e % (COLS / E) * E;
        let row = row0 + r;
        let col = col0 + c;
        let bytes = if row < rows && col < cols {
            (cols - col).min(E) * (16 / E)
        } else {
            0
        };
        let at = if bytes > 0 { row * ld + col } else { 0 };
        cp_async_16_zfill(tile, (stage * ROWS + r) * (COLS + PAD) + c, src, at, bytes);
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

/// The m16n8k16 MMA with f32 accumulation for f16 operands; `mma_f32::<T>` in the generic
/// kernels.
#[warpforge_macros::device]
pub fn mma_f32_f16(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    mma_m16n8k16_f16_f32(a, b, c)
}

/// The m16n8k16 MMA with f32 accumulation for bf16 operands.
#[warpforge_macros::device]
pub fn mma_f32_bf16(a: Vec4<u32>, b: Vec2<u32>, c: Vec4<f32>) -> Vec4<f32> {
    mma_m16n8k16_bf16_f32(a, b, c)
}
