//! The int4 dequant-GEMM (MARLIN-class): `C[m, n] = A[m, k] · dequant(W)[k, n]`, f16/bf16
//! activations and output, f32 accumulation, W in the packed layout of [`super::layout`].
//!
//! Two generic sources, one per scale layout, each over `T ∈ {f16, bf16}`:
//! `int4_gemm_oc_{T}` (scales per k-group × column, GPTQ/AWQ/MARLIN's) and
//! `int4_gemm_ic_{T}` (AdaDim's per-input-channel groups: a scale per k row × column group,
//! so the scale changes at every k row of a tile). Both are the same body with the scale
//! fetch chosen at compile time.
//!
//! # How it works
//!
//! A block computes `BM × BN` outputs over one K slice (`SPLIT`: split-K across blocks so
//! a batch of 1–16 tokens, which has only `n / BN` column tiles, still fills the GPU; the
//! partial sums go to an f32 workspace and `int4_splitk_reduce` adds them in split order).
//! Its `WN × WK` warps split the columns (`BN / WN` each, whole 64-column packed tiles) and
//! the 16-row K steps of every slice (warp `wk` takes steps `wk, wk + WK, ...`); the `WK`
//! partial tiles are added through shared memory at the end. K is walked in `BK` slices
//! through a ring of `STAGES` shared buffers filled by 16-byte `cp.async` copies: A rows
//! (zero-filled past `m` and `k`), the packed weights (`BK·BN/2` bytes, one contiguous run
//! per 16 rows), and the slice's scales (and zeros, for asymmetric weights) —
//! `BK·BN/8` bytes each, a row per 16-row step (Oc) or per 16-column sub-tile (Ic), so a
//! group boundary anywhere costs nothing. Per 16-row step a warp loads its A fragments
//! (`ldmatrix.x4`), then per 64-column tile one 16-byte shared load gives each lane the
//! codes of its B fragments for 4 sub-tiles × 2 n8 halves (8 MMAs per A fragment). Each
//! 32-bit word is dequantized in registers: `lop3(q >> 4i, 0x000F000F, magic)` makes the
//! f16/bf16 pair `magic + code` (no int→float conversion), one packed subtract of `magic +
//! zero` gives the exact integer `code − zero`, one packed multiply by the scale rounds once
//! to `T` — the host reference's `T(scale · (code − zero))` bit for bit. Then
//! `mma.sync.m16n8k16` into f32 accumulators.
//!
//! # Shapes
//!
//! Any `m`, `k`, `n` ≥ 1 (the layout pads `k` to 16 and `n` to 64, see [`super::layout`]).
//! A is row-major with `lda % 8 == 0` (16-byte rows for `cp.async`) and `lda ≥ k`; C is
//! dense `m × n`. Act-order weights need A's columns permuted first
//! ([`super::host::permute_activations`]).
//!
//! # Roofline
//!
//! Bytes per token row of A: the weights are read once per launch whatever `m` is —
//! `k·n/2` bytes of codes plus `k·n/group·2` bytes of scales (and as many of zeros when
//! asymmetric; 4.125 bits per weight at group 128) — plus `2k` bytes of activations and `2n`
//! of output per token. FLOPs `2·m·n·k`. At batch 1–16 the kernel is bound by the weight
//! stream: time ≈ `k·n·(1/2 + 2/group)` bytes / DRAM bandwidth, about 3.9× less than an f16
//! GEMM reading `2·k·n`. The tensor cores take over near `m ≈ 64–128` (an H100 does ~600 TFLOP/s
//! of dense f16 `mma.sync` against 3.35 TB/s: ~180 FLOP/byte, i.e. `m ≈ 45` at 4 bits when
//! every weight byte feeds `4·m` FLOPs); above that the kernel is compute-bound and the
//! dequant ALU work (4 `lop3`, 3 shifts, 4 `HSUB2`, 4 `HMUL2` per 8 weights, per `BM` rows)
//! is amortized over `BM / 16` MMAs per fragment.
//!
//! # Tunables
//!
//! `BM` (rows per block: 16 for decode, 64 for prefill chunks), `BN` (columns per block),
//! `BK` (K slice per stage), `WN`, `WK` (warps over columns and over K steps; the block has
//! `32·WN·WK` threads), `STAGES` (pipeline depth), `SPLIT` (K slices across blocks; 0 =
//! automatic: enough slices for about 160 blocks — see [`super::host::splits`]). Shared
//! memory `STAGES·(2·BM·(BK+8) + BK·BN/2 + BK·BN/4) + (WK−1)·BM·BN·4` bytes ≤ 99 KiB; the
//! default (16×128×128, 2×4 warps, 4 stages) takes 89 KiB.

use super::dequant::*;
use crate::tile::*;
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// A's `BM × BK` slice at (`row0`, `k0`) into stage `stage` (rows of `BK + 8`), zero-filled
/// past `m` and `k`. Every thread of the block calls it.
#[device(types(T = [f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn load_a_stage<T: Float, const BM: u32, const BK: u32, const WN: u32, const WK: u32>(
    tile: &mut [T],
    a: &[T],
    stage: u32,
    row0: u32,
    m: u32,
    k0: u32,
    k: u32,
    lda: u32,
) {
    #[unroll]
    for l in 0..((BM * BK / 8) + 32 * WN * WK - 1) / (32 * WN * WK) {
        let e = l * (32 * WN * WK) + thread_idx_x();
        if e < BM * BK / 8 {
            let r = e / (BK / 8);
            let c = e % (BK / 8) * 8;
            let row = row0 + r;
            let col = k0 + c;
            let bytes = if row < m && col < k {
                (k - col).min(8) * 2
            } else {
                0
            };
            let at = if bytes > 0 { row * lda + col } else { 0 };
            cp_async_16_zfill(tile, (stage * BM + r) * (BK + 8) + c, a, at, bytes);
        }
    }
}

/// The packed weights of `BK` rows × `BN` columns at (`k0`, `n0`) into stage `stage`: 16
/// rows × `BN` columns are `BN / 2` contiguous 16-byte vectors, copied under an L2
/// evict-first policy (read once: they must not push A out of L2). Every thread calls it.
#[device]
#[allow(clippy::too_many_arguments)]
pub fn load_b_stage<const BN: u32, const BK: u32, const WN: u32, const WK: u32>(
    tile: &mut [Vec4<u32>],
    w: &[Vec4<u32>],
    stage: u32,
    k0: u32,
    k_pad: u32,
    n0: u32,
    n_pad: u32,
) {
    #[unroll]
    for l in 0..((BK * BN / 32) + 32 * WN * WK - 1) / (32 * WN * WK) {
        let e = l * (32 * WN * WK) + thread_idx_x();
        if e < BK * BN / 32 {
            let kt = k0 / 16 + e / (BN / 2);
            let c = e % (BN / 2);
            let ok = kt < k_pad / 16 && n0 / 2 + c < n_pad / 2;
            let at = if ok {
                (kt * (n_pad / 64) + n0 / 64) * 32 + c
            } else {
                0
            };
            let bytes = if ok { 16 } else { 0 };
            cp_async_16_zfill_evict_first(tile, stage * (BK * BN / 32) + e, w, at, bytes);
        }
    }
}

/// The scales (or zeros) of the slice at (`k0`, `n0`) into stage `stage` (`BK·BN/64`
/// pair-of-words per stage). Oc (`IC == 0`): row `s` = the scale row of k rows
/// `k0 + 16s ..+16` over the block's `BN` columns. Ic: row `j` = the scale row of columns
/// `n0 + 16j ..+16` over the slice's `BK` k rows. Every thread calls it.
#[device]
#[allow(clippy::too_many_arguments)]
pub fn load_param_stage<
    const IC: u32,
    const BN: u32,
    const BK: u32,
    const WN: u32,
    const WK: u32,
>(
    tile: &mut [Vec2<u32>],
    params: &[Vec2<u32>],
    stage: u32,
    k0: u32,
    k_pad: u32,
    n0: u32,
    n_pad: u32,
    stride_log2: u32,
) {
    #[unroll]
    for l in 0..((BK * BN / 128) + 32 * WN * WK - 1) / (32 * WN * WK) {
        let e = l * (32 * WN * WK) + thread_idx_x();
        if e < BK * BN / 128 {
            let mut at = 0;
            let mut ok = false;
            let mut dst = 0;
            if IC == 0 {
                let s = e / (BN / 8);
                let c = e % (BN / 8);
                let row = k0 + 16 * s;
                let col = n0 + 8 * c;
                ok = row < k_pad && col < n_pad;
                at = ((row >> stride_log2) * n_pad + col) / 4;
                dst = s * (BN / 4) + 2 * c;
            } else {
                let j = e / (BK / 8);
                let c = e % (BK / 8);
                let col = n0 + 16 * j;
                let kk = k0 + 8 * c;
                ok = col < n_pad && kk < k_pad;
                at = ((col >> stride_log2) * k_pad + kk) / 4;
                dst = j * (BK / 4) + 2 * c;
            }
            let bytes = if ok { 16 } else { 0 };
            let src = if ok { at } else { 0 };
            cp_async_16_zfill(tile, stage * (BK * BN / 64) + dst, params, src, bytes);
        }
    }
}

/// The body of both kernels (`IC` picks the scale layout at compile time); see the module
/// docs. Called by every thread of the block.
#[device(types(T = [f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn int4_gemm_body<
    T: Float,
    const IC: u32,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WN: u32,
    const WK: u32,
    const STAGES: u32,
>(
    a: &[T],
    w: &[Vec4<u32>],
    scales: &[Vec2<u32>],
    zeros: &[Vec2<u32>],
    c: &mut [T],
    partial: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    n_pad: u32,
    k_pad: u32,
    stride_log2: u32,
    asym: u32,
    tiles_per_split: u32,
) {
    let mut a_tile = shared_array::<T>(STAGES * BM * (BK + 8));
    let mut b_tile = shared_array::<Vec4<u32>>(STAGES * BK * BN / 32);
    let mut s_tile = shared_array::<Vec2<u32>>(STAGES * BK * BN / 64);
    let mut z_tile = shared_array::<Vec2<u32>>(STAGES * BK * BN / 64);
    // The partial tiles of warps wk >= 1, added by warps wk = 0 (+1: never empty).
    let mut red = shared_array::<Vec4<f32>>((WK - 1) * BM * BN / 4 + 1);
    let mut acc = local_array::<Vec4<f32>>((BM / 16) * (BN / WN / 8));
    let mut a_frag = local_array::<Vec4<u32>>(BM / 16);
    let lane = lane_id();
    let wn = thread_idx_x() / 32 % WN;
    let wk = thread_idx_x() / 32 / WN;
    let n0 = block_idx_x() * BN;
    let row0 = block_idx_y() * BM;
    let split = block_idx_z();
    let k_tiles = (k_pad + BK - 1) / BK;
    let t0 = split * tiles_per_split;
    let count = if t0 < k_tiles {
        (t0 + tiles_per_split).min(k_tiles) - t0
    } else {
        0
    };
    let sym = sym_zero::<T>();
    for step in 0..count + STAGES - 1 {
        if step >= STAGES - 1 {
            // Slice `step - (STAGES - 1)` has landed; the barrier also retires the stage
            // the copies below overwrite.
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < count {
            let stage = step % STAGES;
            let k0 = (t0 + step) * BK;
            load_a_stage::<T, BM, BK, WN, WK>(&mut a_tile, a, stage, row0, m, k0, k, lda);
            load_b_stage::<BN, BK, WN, WK>(&mut b_tile, w, stage, k0, k_pad, n0, n_pad);
            load_param_stage::<IC, BN, BK, WN, WK>(
                &mut s_tile,
                scales,
                stage,
                k0,
                k_pad,
                n0,
                n_pad,
                stride_log2,
            );
            if asym != 0 {
                load_param_stage::<IC, BN, BK, WN, WK>(
                    &mut z_tile,
                    zeros,
                    stage,
                    k0,
                    k_pad,
                    n0,
                    n_pad,
                    stride_log2,
                );
            }
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let stage = (step - (STAGES - 1)) % STAGES;
            let params = stage * (BK * BN / 64);
            #[unroll]
            for ks in 0..BK / 16 / WK {
                let s = ks * WK + wk;
                load_a_frags::<T, BM, 1, BK, 8, 8>(&mut a_frag, &a_tile, stage * BM, s * 16);
                #[unroll]
                for i in 0..BN / WN / 64 {
                    let nt = wn * (BN / WN / 64) + i;
                    let q = b_tile[(stage * (BK / 16) + s) * (BN / 2) + nt * 32 + lane];
                    let col = i * 8;
                    if IC == 0 {
                        // Lane g's 8 scales: sub-tile j's columns g, g + 8 in word j.
                        let p = params + s * (BN / 4) + nt * 16 + lane / 4 * 2;
                        let s01 = s_tile[p];
                        let s23 = s_tile[p + 1];
                        let z01 = if asym != 0 {
                            z_tile[p]
                        } else {
                            Vec2::new(sym, sym)
                        };
                        let z23 = if asym != 0 {
                            z_tile[p + 1]
                        } else {
                            Vec2::new(sym, sym)
                        };
                        mma_oc_word::<T, BM, BN, WN>(&mut acc, &a_frag, q.x, z01.x, s01.x, col);
                        mma_oc_word::<T, BM, BN, WN>(&mut acc, &a_frag, q.y, z01.y, s01.y, col + 2);
                        mma_oc_word::<T, BM, BN, WN>(&mut acc, &a_frag, q.z, z23.x, s23.x, col + 4);
                        mma_oc_word::<T, BM, BN, WN>(&mut acc, &a_frag, q.w, z23.y, s23.y, col + 6);
                    } else {
                        // Sub-tile j's row of k-interleaved scales: lane t's 4 at 4t.
                        let p = params + nt * 4 * (BK / 4) + s * 4 + lane % 4;
                        mma_ic_word::<T, BM, BN, BK, WN>(
                            &mut acc, &a_frag, &s_tile, &z_tile, q.x, p, asym, sym, col,
                        );
                        mma_ic_word::<T, BM, BN, BK, WN>(
                            &mut acc,
                            &a_frag,
                            &s_tile,
                            &z_tile,
                            q.y,
                            p + BK / 4,
                            asym,
                            sym,
                            col + 2,
                        );
                        mma_ic_word::<T, BM, BN, BK, WN>(
                            &mut acc,
                            &a_frag,
                            &s_tile,
                            &z_tile,
                            q.z,
                            p + 2 * (BK / 4),
                            asym,
                            sym,
                            col + 4,
                        );
                        mma_ic_word::<T, BM, BN, BK, WN>(
                            &mut acc,
                            &a_frag,
                            &s_tile,
                            &z_tile,
                            q.w,
                            p + 3 * (BK / 4),
                            asym,
                            sym,
                            col + 6,
                        );
                    }
                }
            }
        }
    }
    cp_async_wait(0);
    if WK > 1 {
        // Warps wk >= 1 hand their partial tiles to warp wk = 0 of the same columns.
        if wk > 0 {
            #[unroll]
            for t in 0..(BM / 16) * (BN / WN / 8) {
                let slot = ((wk - 1) * WN + wn) * ((BM / 16) * (BN / WN / 8)) + t;
                red[slot * 32 + lane] = acc[t];
            }
        }
        sync_threads();
        if wk == 0 {
            #[unroll]
            for j in 1..WK {
                #[unroll]
                for t in 0..(BM / 16) * (BN / WN / 8) {
                    let slot = ((j - 1) * WN + wn) * ((BM / 16) * (BN / WN / 8)) + t;
                    let v = red[slot * 32 + lane];
                    let s = acc[t];
                    acc[t] = Vec4::new(s.x + v.x, s.y + v.y, s.z + v.z, s.w + v.w);
                }
            }
        }
    }
    if wk == 0 {
        let col = n0 + wn * (BN / WN);
        if grid_dim_z() == 1 {
            store_warp_tile::<T, BM, BN, 1, WN>(c, &acc, row0, col, m, n, n);
        } else {
            // Split `split`'s partial sums: rows split·m .. of the workspace.
            let row = split * m + row0;
            store_warp_tile::<f32, BM, BN, 1, WN>(partial, &acc, row, col, (split + 1) * m, n, n);
        }
    }
}

/// Oc groups: scales per (k group, column). See the module docs.
#[kernel(
    block = (32 * WN * WK),
    tune(
        BM = [16, 32, 64],
        BN = [128, 256],
        BK = [64, 128],
        WN = [1, 2, 4],
        WK = [1, 2, 4],
        STAGES = [2, 4],
        SPLIT = [0, 1, 4]
    ),
    default(BM = 16, BN = 128, BK = 128, WN = 2, WK = 4, STAGES = 4, SPLIT = 0),
    types(T = [f16, bf16]),
    constraint = WN * WK == 4 || WN * WK == 8,
    constraint = (BN / WN) % 64 == 0 && (BK / 16) % WK == 0,
    constraint = (BM / 16) * (BN / WN / 8) <= 32,
    constraint = STAGES * (BM * (BK + 8) * 2 + BK * BN / 2 + BK * BN / 4) + (WK - 1) * BM * BN * 4 <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn int4_gemm_oc<
    T: Float,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WN: u32,
    const WK: u32,
    const STAGES: u32,
    const SPLIT: u32,
>(
    a: &[T],
    w: &[Vec4<u32>],
    scales: &[Vec2<u32>],
    zeros: &[Vec2<u32>],
    c: &mut [T],
    partial: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    n_pad: u32,
    k_pad: u32,
    stride_log2: u32,
    asym: u32,
    tiles_per_split: u32,
) {
    int4_gemm_body::<T, 0, BM, BN, BK, WN, WK, STAGES>(
        a,
        w,
        scales,
        zeros,
        c,
        partial,
        m,
        n,
        k,
        lda,
        n_pad,
        k_pad,
        stride_log2,
        asym,
        tiles_per_split,
    );
}

/// Ic groups (AdaDim): scales per (k row, column group). See the module docs.
#[kernel(
    block = (32 * WN * WK),
    tune(
        BM = [16, 32, 64],
        BN = [128, 256],
        BK = [64, 128],
        WN = [1, 2, 4],
        WK = [1, 2, 4],
        STAGES = [2, 4],
        SPLIT = [0, 1, 4]
    ),
    default(BM = 16, BN = 128, BK = 128, WN = 2, WK = 4, STAGES = 4, SPLIT = 0),
    types(T = [f16, bf16]),
    constraint = WN * WK == 4 || WN * WK == 8,
    constraint = (BN / WN) % 64 == 0 && (BK / 16) % WK == 0,
    constraint = (BM / 16) * (BN / WN / 8) <= 32,
    constraint = STAGES * (BM * (BK + 8) * 2 + BK * BN / 2 + BK * BN / 4) + (WK - 1) * BM * BN * 4 <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn int4_gemm_ic<
    T: Float,
    const BM: u32,
    const BN: u32,
    const BK: u32,
    const WN: u32,
    const WK: u32,
    const STAGES: u32,
    const SPLIT: u32,
>(
    a: &[T],
    w: &[Vec4<u32>],
    scales: &[Vec2<u32>],
    zeros: &[Vec2<u32>],
    c: &mut [T],
    partial: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    n_pad: u32,
    k_pad: u32,
    stride_log2: u32,
    asym: u32,
    tiles_per_split: u32,
) {
    int4_gemm_body::<T, 1, BM, BN, BK, WN, WK, STAGES>(
        a,
        w,
        scales,
        zeros,
        c,
        partial,
        m,
        n,
        k,
        lda,
        n_pad,
        k_pad,
        stride_log2,
        asym,
        tiles_per_split,
    );
}

/// Split-K's second step: `c[i] = T(Σ_s partial[s·len + i])`, the splits added in order
/// (deterministic). Memory-bound: `4·splits + 2` bytes per output.
#[kernel(block = (256), types(T = [f16, bf16]))]
pub fn int4_splitk_reduce<T: Float>(partial: &[f32], c: &mut [T], len: u32, splits: u32) {
    let i = block_idx_x() * 256 + thread_idx_x();
    if i < len {
        let mut sum = 0.0f32;
        for s in 0..splits {
            sum += partial[s * len + i];
        }
        c[i] = T::from_f32(sum);
    }
}

/// Act-order's activation permutation on a device: `out[r·ld + i] = a[r·ld + perm[i]]` for
/// `i < cols`. Memory-bound (a gather along each row; rows are read from L2 after the
/// first touch).
#[kernel(block = (256), types(T = [f16, bf16]))]
pub fn int4_permute_cols<T: Float>(
    a: &[T],
    perm: &[u32],
    out: &mut [T],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let i = block_idx_x() * 256 + thread_idx_x();
    let r = block_idx_y();
    if i < cols && r < rows {
        out[r * ld + i] = a[r * ld + perm[i]];
    }
}
