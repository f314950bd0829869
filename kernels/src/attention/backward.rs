//! The flash-attention backward kernels (FlashAttention-2, recomputing P from the saved LSE):
//! `flash_attn_bwd_dot_{f16,bf16}` (D = rowsum(dO∘O)), `flash_attn_bwd_dkdv_{f16,bf16}` (dK,
//! dV) and `flash_attn_bwd_dq_{f16,bf16}` (dQ). Layouts and masks are the forward's (see
//! [`super`]); dQ, dK, dV are laid out as Q, K, V.
//!
//! # Math
//!
//! With `P = exp(scale·QKᵀ − LSE)` (masked entries 0), `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
//! `dS = P∘(dP − D)` with `D = rowsum(dO∘O)` (= rowsum(P∘dP)), `dQ = scale·dS·K`,
//! `dK = scale·dSᵀ·Q`. For GQA a KV head's dK/dV sum over the query heads of its group.
//!
//! # How it works
//!
//! - `flash_attn_bwd_dot`: one warp per (row, head), lane-strided products, a xor-shuffle
//!   sum; D goes to `[heads, total_q]` f32 (the scratch buffer).
//! - `flash_attn_bwd_dkdv`: grid (key tiles of the longest sequence, kv_heads, sequences).
//!   A block owns `BLOCK_N` keys of one KV head (`NT = BLOCK_N / WARPS / 16` m16 key tiles a
//!   warp): K and V are staged once in shared memory, then the (query head of the group,
//!   query tile) pairs that see those keys stream Q, dO (16-byte `cp.async`, a `STAGES`-deep
//!   ring) and their LSE, D through shared memory. Per query tile, with keys as the MMA rows:
//!   Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ in one k-loop (K, V fragments by `ldmatrix.x4`, Q and dO as
//!   K-major B), Pᵀ = 2^(Sᵀ·c − LSE·log2 e), dV += Pᵀ·dO (Pᵀ's accumulators rounded to T
//!   *as* the A fragments, dO by `ldmatrix.x4.trans`), dSᵀ = Pᵀ∘(dPᵀ − D), dK += dSᵀ·Q.
//!   dK and dV stay in f32 registers over the whole loop — every query of every head of
//!   the group in a fixed order — and are written once: deterministic, no atomics.
//! - `flash_attn_bwd_dq`: grid (query tiles, heads, sequences), the forward's structure: Q
//!   and dO staged once, K/V tiles streamed; per key tile S = Q·Kᵀ and dP = dO·Vᵀ, P from
//!   the LSE, dS = P∘(dP − D), dQ += dS·K (K by `ldmatrix.x4.trans`); one block owns each dQ
//!   row, so dQ is written once in a fixed summation order — deterministic, at the price of
//!   computing Qkᵀ and dO·Vᵀ twice (once per kernel) instead of an f32 atomic scatter.
//!
//! Rows past a sequence's end read as zeros (Q, dO, K, V) with LSE and D staged as 0, so
//! they contribute nothing (every product has a zero factor) and need no mask; only the
//! causal diagonal and the sliding window mask (`masked` of the forward, element-wise
//! on the tiles that cross them). A row with LSE = −∞ (it sees no key) is staged as +∞:
//! its P is 2^−∞ = 0, never NaN.
//!
//! # Cost and roofline
//!
//! FLOPs per (sequence, head): 4·q_len·k_len·d for dV, dP (dkdv), dK and 2·q_len·k_len·d for
//! each of S (twice: both kernels), dP (again in dq) and dQ: 14·q_len·k_len·d in all, 2.5×
//! FlashAttention-2's minimal backward (10·q_len·k_len·d = 2.5× the forward's
//! 4·q_len·k_len·d) times 1.4 for the recomputation that buys determinism without atomics;
//! about half of that causal with q_len = k_len (tiles off the diagonal are skipped). Bytes:
//! Q, dO, LSE, D once per key tile per query head (mostly L2), K/V once per query tile — ≈
//! BLOCK FLOPs per byte, so compute-bound at training lengths (≳ 128): the bound is the
//! `mma.sync` f16/bf16 rate; per score element the FP32 pipes add one FMA + `ex2` (P) and a
//! subtract + multiply (dS), twice. `flash_attn_bwd_dot` is memory-bound: it reads dO and O
//! (2·2·total_q·heads·d bytes) and writes 4·heads·total_q.
//!
//! # Tunables
//!
//! `HEAD_DIM` ∈ {32, 64, 96, 128} is fixed by the problem. dkdv: `BLOCK_N` keys ∈ {32, 64,
//! 128}, `BLOCK_M` queries per tile ∈ {16, 32, 64}, `WARPS` ∈ {2, 4, 8}, `STAGES` ∈ {2, 3};
//! each warp owns 16 or 32 keys; registers for dK, dV, Sᵀ, dPᵀ accumulators
//! `NT·(d + BLOCK_M)` ≤ 192 words. dq: `BLOCK_M` ∈ {32, 64, 128}, `BLOCK_N` ∈ {16, 32, 64},
//! `WARPS`, `STAGES` alike; `MT·(d/2 + BLOCK_N)` ≤ 160. Shared memory (rows of d + 8
//! halves): dkdv `2·(BLOCK_N + STAGES·BLOCK_M)·(d + 8)·2 + 8·STAGES·BLOCK_M` bytes, dq
//! `2·(BLOCK_M + STAGES·BLOCK_N)·(d + 8)·2`, each ≤ 99 KiB. The defaults per head dim are in
//! [`super::backward_host::bwd_default_configs`]. d = 256 is not covered (dK and dV
//! accumulators alone take 256 registers a thread at 16 keys a warp).

use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

use super::fwd::masked;

/// D = rowsum(dO∘O) per (row, head), f32, into `dd[head·total_q + row]`.
#[kernel(
    block = (32 * WARPS),
    tune(HEAD_DIM = [32, 64, 96, 128], WARPS = [4, 8]),
    default(HEAD_DIM = 128, WARPS = 8),
    types(T = [f16, bf16])
)]
pub fn flash_attn_bwd_dot<T: Float, const HEAD_DIM: u32, const WARPS: u32>(
    d_o: &[T],
    o: &[T],
    dd: &mut [f32],
    total_q: u32,
    heads: u32,
) {
    let r = block_idx_x() * WARPS + thread_idx_x() / 32;
    let lane = lane_id();
    if r < total_q * heads {
        let mut sum = 0.0f32;
        #[unroll]
        for e in 0..HEAD_DIM / 32 {
            let at = r * HEAD_DIM + e * 32 + lane;
            sum = d_o[at].to_f32().mul_add(o[at].to_f32(), sum);
        }
        sum += warp_shfl_xor(sum, 16u32);
        sum += warp_shfl_xor(sum, 8u32);
        sum += warp_shfl_xor(sum, 4u32);
        sum += warp_shfl_xor(sum, 2u32);
        sum += warp_shfl_xor(sum, 1u32);
        if lane == 0 {
            dd[r % heads * total_q + r / heads] = sum;
        }
    }
}

/// dK and dV of `BLOCK_N` keys of one KV head, over every query head of its group and every
/// query tile that sees those keys.
#[kernel(
    block = (32 * WARPS),
    tune(
        HEAD_DIM = [32, 64, 96, 128],
        BLOCK_N = [32, 64, 128],
        BLOCK_M = [16, 32, 64],
        WARPS = [2, 4, 8],
        STAGES = [2, 3]
    ),
    default(HEAD_DIM = 128, BLOCK_N = 64, BLOCK_M = 32, WARPS = 4, STAGES = 2),
    types(T = [f16, bf16]),
    constraint = BLOCK_N % (16 * WARPS) == 0 && BLOCK_N / WARPS <= 32,
    constraint = (BLOCK_N * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = (BLOCK_M * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = BLOCK_M <= 32 * WARPS,
    constraint = (BLOCK_N / WARPS / 16) * (HEAD_DIM + BLOCK_M) <= 192,
    constraint = 2 * (BLOCK_N + STAGES * BLOCK_M) * (HEAD_DIM + 8) * 2 + 8 * STAGES * BLOCK_M
        <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_bwd_dkdv<
    T: Float,
    const HEAD_DIM: u32,
    const BLOCK_N: u32,
    const BLOCK_M: u32,
    const WARPS: u32,
    const STAGES: u32,
>(
    q: &[T],
    k: &[T],
    v: &[T],
    d_o: &[T],
    lse: &[f32],
    dd: &[f32],
    dk: &mut [T],
    dv: &mut [T],
    cu_seqlens_q: &[u32],
    cu_seqlens_k: &[u32],
    heads: u32,
    kv_heads: u32,
    scale: f32,
    causal: u32,
) {
    // Shared rows of HEAD_DIM + 8 elements (conflict-free ldmatrix). K, V once; Q, dO, the
    // LSE (log2 domain) and D of the query tiles in a STAGES-deep ring.
    let mut k_tile = shared_array::<T>(BLOCK_N * (HEAD_DIM + 8));
    let mut v_tile = shared_array::<T>(BLOCK_N * (HEAD_DIM + 8));
    let mut q_tile = shared_array::<T>(STAGES * BLOCK_M * (HEAD_DIM + 8));
    let mut do_tile = shared_array::<T>(STAGES * BLOCK_M * (HEAD_DIM + 8));
    let mut lse_tile = shared_array::<f32>(STAGES * BLOCK_M);
    let mut dd_tile = shared_array::<f32>(STAGES * BLOCK_M);
    // Per warp NT m16 key tiles: Sᵀ (then Pᵀ), dPᵀ (then dSᵀ), and the dK, dV sums.
    let mut s_acc = local_array::<Vec4<f32>>((BLOCK_N / WARPS / 16) * (BLOCK_M / 8));
    let mut dp_acc = local_array::<Vec4<f32>>((BLOCK_N / WARPS / 16) * (BLOCK_M / 8));
    let mut dk_acc = local_array::<Vec4<f32>>((BLOCK_N / WARPS / 16) * (HEAD_DIM / 8));
    let mut dv_acc = local_array::<Vec4<f32>>((BLOCK_N / WARPS / 16) * (HEAD_DIM / 8));
    let mut k_frag = local_array::<Vec4<u32>>(BLOCK_N / WARPS / 16);
    let mut v_frag = local_array::<Vec4<u32>>(BLOCK_N / WARPS / 16);

    let seq = block_idx_z();
    let kv_head = block_idx_y();
    let start_q = cu_seqlens_q[seq];
    let q_len = cu_seqlens_q[seq + 1] - start_q;
    let start_k = cu_seqlens_k[seq];
    let k_len = cu_seqlens_k[seq + 1] - start_k;
    let n0 = block_idx_x() * BLOCK_N;
    if n0 >= k_len {
        return;
    }
    let group = heads / kv_heads;
    let total_q = cu_seqlens_q[grid_dim_z()];
    let lane = lane_id();
    let warp_row = thread_idx_x() / 32 * (BLOCK_N / WARPS);
    let offset = k_len as i32 - q_len as i32;
    let first_tile = first_query_tile::<BLOCK_M>(n0, causal, offset);
    let end_tile = end_query_tile::<BLOCK_M>(n0 + BLOCK_N, q_len, k_len, causal, offset);
    let per_head = if end_tile > first_tile {
        end_tile - first_tile
    } else {
        0
    };
    let n_steps = per_head * group;

    // K and V of this block's keys (zeros past k_len).
    let ld_kv = kv_heads * HEAD_DIM;
    crate::gemm_tc::load_slice::<T, BLOCK_N, HEAD_DIM, 8, 8, WARPS, 1>(
        &mut k_tile,
        k,
        0,
        start_k + n0,
        start_k + k_len,
        kv_head * HEAD_DIM,
        kv_head * HEAD_DIM + HEAD_DIM,
        ld_kv,
    );
    crate::gemm_tc::load_slice::<T, BLOCK_N, HEAD_DIM, 8, 8, WARPS, 1>(
        &mut v_tile,
        v,
        0,
        start_k + n0,
        start_k + k_len,
        kv_head * HEAD_DIM,
        kv_head * HEAD_DIM + HEAD_DIM,
        ld_kv,
    );
    cp_async_commit();
    #[unroll]
    for t in 0..(BLOCK_N / WARPS / 16) * (HEAD_DIM / 8) {
        dk_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
        dv_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
    }

    // Step s copies query tile s (while s < n_steps) and, from step STAGES - 1 on,
    // processes tile s - (STAGES - 1). Tile t is query head kv_head·group + t / per_head,
    // rows (first_tile + t % per_head)·BLOCK_M...
    for step in 0..n_steps + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < n_steps {
            let stage = step % STAGES;
            let head = kv_head * group + step / per_head;
            let m0 = (first_tile + step % per_head) * BLOCK_M;
            load_query_tile::<T, BLOCK_M, HEAD_DIM, WARPS>(
                &mut q_tile,
                &mut do_tile,
                q,
                d_o,
                stage,
                start_q + m0,
                start_q + q_len,
                head * HEAD_DIM,
                heads * HEAD_DIM,
            );
            stage_row_stats::<BLOCK_M>(
                &mut lse_tile,
                &mut dd_tile,
                lse,
                dd,
                stage,
                head * total_q + start_q + m0,
                q_len - m0.min(q_len),
            );
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let tile = step - (STAGES - 1);
            let stage = tile % STAGES;
            let m0 = (first_tile + tile % per_head) * BLOCK_M;
            // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: keys are the rows, Q and dO rows the K-major B.
            #[unroll]
            for t in 0..(BLOCK_N / WARPS / 16) * (BLOCK_M / 8) {
                s_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
                dp_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
            }
            #[unroll]
            for kk in 0..HEAD_DIM / 16 {
                #[unroll]
                for i in 0..BLOCK_N / WARPS / 16 {
                    let at = super::fwd::q_frag_at::<HEAD_DIM>(warp_row + i * 16, kk, lane);
                    k_frag[i] = ldmatrix_x4(&k_tile, at);
                    v_frag[i] = ldmatrix_x4(&v_tile, at);
                }
                #[unroll]
                for j in 0..BLOCK_M / 16 {
                    let row = stage * BLOCK_M + j * 16 + lane / 16 * 8 + lane % 8;
                    let at = row * (HEAD_DIM + 8) + kk * 16 + lane / 8 % 2 * 8;
                    let qb = ldmatrix_x4(&q_tile, at);
                    let ob = ldmatrix_x4(&do_tile, at);
                    #[unroll]
                    for i in 0..BLOCK_N / WARPS / 16 {
                        let t = i * (BLOCK_M / 8) + 2 * j;
                        s_acc[t] = crate::gemm_tc::mma_f32::<T>(
                            k_frag[i],
                            Vec2::new(qb.x, qb.y),
                            s_acc[t],
                        );
                        s_acc[t + 1] = crate::gemm_tc::mma_f32::<T>(
                            k_frag[i],
                            Vec2::new(qb.z, qb.w),
                            s_acc[t + 1],
                        );
                        dp_acc[t] = crate::gemm_tc::mma_f32::<T>(
                            v_frag[i],
                            Vec2::new(ob.x, ob.y),
                            dp_acc[t],
                        );
                        dp_acc[t + 1] = crate::gemm_tc::mma_f32::<T>(
                            v_frag[i],
                            Vec2::new(ob.z, ob.w),
                            dp_acc[t + 1],
                        );
                    }
                }
            }
            // Pᵀ from the staged LSE (columns are query rows); the mask only where the
            // tile crosses the diagonal or a window is on (rows past q_len need none).
            let diagonal =
                causal > 1 || causal != 0 && (n0 + BLOCK_N - 1) as i32 > m0 as i32 + offset;
            let scale_log2 = scale * 1.442_695;
            #[unroll]
            for i in 0..BLOCK_N / WARPS / 16 {
                let key = n0 + warp_row + i * 16 + lane / 4;
                #[unroll]
                for j in 0..BLOCK_M / 8 {
                    let c = j * 8 + lane % 4 * 2;
                    let at = stage * BLOCK_M + c;
                    let l0 = lse_tile[at];
                    let l1 = lse_tile[at + 1];
                    let d0 = dd_tile[at];
                    let d1 = dd_tile[at + 1];
                    let t = i * (BLOCK_M / 8) + j;
                    let s = s_acc[t];
                    let mut p = Vec4::new(
                        ex2_approx(s.x.mul_add(scale_log2, -l0)),
                        ex2_approx(s.y.mul_add(scale_log2, -l1)),
                        ex2_approx(s.z.mul_add(scale_log2, -l0)),
                        ex2_approx(s.w.mul_add(scale_log2, -l1)),
                    );
                    if diagonal {
                        let row = m0 + c;
                        p = Vec4::new(
                            visible_p(p.x, key, row, k_len, causal, offset),
                            visible_p(p.y, key, row + 1, k_len, causal, offset),
                            visible_p(p.z, key + 8, row, k_len, causal, offset),
                            visible_p(p.w, key + 8, row + 1, k_len, causal, offset),
                        );
                    }
                    let dp = dp_acc[t];
                    s_acc[t] = p;
                    dp_acc[t] = Vec4::new(
                        p.x * (dp.x - d0),
                        p.y * (dp.y - d1),
                        p.z * (dp.z - d0),
                        p.w * (dp.w - d1),
                    );
                }
            }
            // dV += Pᵀ·dO and dK += dSᵀ·Q: the accumulators of query tiles 2kk, 2kk + 1
            // rounded to T are the A fragments; dO and Q (queries × dims) are row-major B.
            #[unroll]
            for kk in 0..BLOCK_M / 16 {
                #[unroll]
                for d in 0..HEAD_DIM / 16 {
                    let row = stage * BLOCK_M + kk * 16 + lane / 8 % 2 * 8 + lane % 8;
                    let at = row * (HEAD_DIM + 8) + d * 16 + lane / 16 * 8;
                    let ob = ldmatrix_x4_trans(&do_tile, at);
                    let qb = ldmatrix_x4_trans(&q_tile, at);
                    #[unroll]
                    for i in 0..BLOCK_N / WARPS / 16 {
                        let t = i * (BLOCK_M / 8) + 2 * kk;
                        let pa = pack_a::<T>(s_acc[t], s_acc[t + 1]);
                        let sa = pack_a::<T>(dp_acc[t], dp_acc[t + 1]);
                        let u = i * (HEAD_DIM / 8) + 2 * d;
                        dv_acc[u] =
                            crate::gemm_tc::mma_f32::<T>(pa, Vec2::new(ob.x, ob.y), dv_acc[u]);
                        dv_acc[u + 1] =
                            crate::gemm_tc::mma_f32::<T>(pa, Vec2::new(ob.z, ob.w), dv_acc[u + 1]);
                        dk_acc[u] =
                            crate::gemm_tc::mma_f32::<T>(sa, Vec2::new(qb.x, qb.y), dk_acc[u]);
                        dk_acc[u + 1] =
                            crate::gemm_tc::mma_f32::<T>(sa, Vec2::new(qb.z, qb.w), dk_acc[u + 1]);
                    }
                }
            }
        }
    }
    cp_async_wait(0);

    // Epilogue: dK scaled, both rounded once to T, rows past k_len not written.
    #[unroll]
    for i in 0..BLOCK_N / WARPS / 16 {
        let key = n0 + warp_row + i * 16 + lane / 4;
        let out_lo = ((start_k + key) * kv_heads + kv_head) * HEAD_DIM + lane % 4 * 2;
        let out_hi = out_lo + 8 * kv_heads * HEAD_DIM;
        #[unroll]
        for d in 0..HEAD_DIM / 8 {
            let a = dk_acc[i * (HEAD_DIM / 8) + d];
            let b = dv_acc[i * (HEAD_DIM / 8) + d];
            if key < k_len {
                dk[out_lo + d * 8] = T::from_f32(a.x * scale);
                dk[out_lo + d * 8 + 1] = T::from_f32(a.y * scale);
                dv[out_lo + d * 8] = T::from_f32(b.x);
                dv[out_lo + d * 8 + 1] = T::from_f32(b.y);
            }
            if key + 8 < k_len {
                dk[out_hi + d * 8] = T::from_f32(a.z * scale);
                dk[out_hi + d * 8 + 1] = T::from_f32(a.w * scale);
                dv[out_hi + d * 8] = T::from_f32(b.z);
                dv[out_hi + d * 8 + 1] = T::from_f32(b.w);
            }
        }
    }
}

/// dQ of `BLOCK_M` query rows of one head, over the key tiles those rows see.
#[kernel(
    block = (32 * WARPS),
    tune(
        HEAD_DIM = [32, 64, 96, 128],
        BLOCK_M = [32, 64, 128],
        BLOCK_N = [16, 32, 64],
        WARPS = [2, 4, 8],
        STAGES = [2, 3]
    ),
    default(HEAD_DIM = 128, BLOCK_M = 64, BLOCK_N = 32, WARPS = 4, STAGES = 2),
    types(T = [f16, bf16]),
    constraint = BLOCK_M % (16 * WARPS) == 0 && BLOCK_M / WARPS <= 32,
    constraint = (BLOCK_N * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = (BLOCK_M * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = (BLOCK_M / WARPS / 16) * (HEAD_DIM / 2 + BLOCK_N) <= 160,
    constraint = 2 * (BLOCK_M + STAGES * BLOCK_N) * (HEAD_DIM + 8) * 2 <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_bwd_dq<
    T: Float,
    const HEAD_DIM: u32,
    const BLOCK_M: u32,
    const BLOCK_N: u32,
    const WARPS: u32,
    const STAGES: u32,
>(
    q: &[T],
    k: &[T],
    v: &[T],
    d_o: &[T],
    lse: &[f32],
    dd: &[f32],
    dq: &mut [T],
    cu_seqlens_q: &[u32],
    cu_seqlens_k: &[u32],
    heads: u32,
    kv_heads: u32,
    scale: f32,
    causal: u32,
) {
    let mut q_tile = shared_array::<T>(BLOCK_M * (HEAD_DIM + 8));
    let mut do_tile = shared_array::<T>(BLOCK_M * (HEAD_DIM + 8));
    let mut k_tile = shared_array::<T>(STAGES * BLOCK_N * (HEAD_DIM + 8));
    let mut v_tile = shared_array::<T>(STAGES * BLOCK_N * (HEAD_DIM + 8));
    // Per warp MT m16 query tiles: S (then P), dP (then dS), the dQ sums, and the rows'
    // LSE (log2 domain) and D (rows lane/4 and lane/4 + 8).
    let mut s_acc = local_array::<Vec4<f32>>((BLOCK_M / WARPS / 16) * (BLOCK_N / 8));
    let mut dp_acc = local_array::<Vec4<f32>>((BLOCK_M / WARPS / 16) * (BLOCK_N / 8));
    let mut dq_acc = local_array::<Vec4<f32>>((BLOCK_M / WARPS / 16) * (HEAD_DIM / 8));
    let mut row_lse = local_array::<f32>(2 * (BLOCK_M / WARPS / 16));
    let mut row_dd = local_array::<f32>(2 * (BLOCK_M / WARPS / 16));

    let seq = block_idx_z();
    let head = block_idx_y();
    let start_q = cu_seqlens_q[seq];
    let q_len = cu_seqlens_q[seq + 1] - start_q;
    let start_k = cu_seqlens_k[seq];
    let k_len = cu_seqlens_k[seq + 1] - start_k;
    let m0 = block_idx_x() * BLOCK_M;
    if m0 >= q_len {
        return;
    }
    let kv_head = head / (heads / kv_heads);
    let total_q = cu_seqlens_q[grid_dim_z()];
    let lane = lane_id();
    let warp_row = thread_idx_x() / 32 * (BLOCK_M / WARPS);
    let offset = k_len as i32 - q_len as i32;
    let end_tile = super::fwd::visible_tiles::<BLOCK_M, BLOCK_N>(m0, q_len, k_len, causal, offset);
    let first_tile = first_key_tile::<BLOCK_N>(m0, causal, offset).min(end_tile);
    let n_tiles = end_tile - first_tile;
    let scale_log2 = scale * 1.442_695;

    load_query_tile::<T, BLOCK_M, HEAD_DIM, WARPS>(
        &mut q_tile,
        &mut do_tile,
        q,
        d_o,
        0,
        start_q + m0,
        start_q + q_len,
        head * HEAD_DIM,
        heads * HEAD_DIM,
    );
    cp_async_commit();
    #[unroll]
    for i in 0..BLOCK_M / WARPS / 16 {
        let row = m0 + warp_row + i * 16 + lane / 4;
        // Rows past q_len read row 0 of the head (a valid index) and stage 0.
        let base = head * total_q + start_q;
        let at_lo = if row < q_len { base + row } else { base };
        let at_hi = if row + 8 < q_len {
            base + row + 8
        } else {
            base
        };
        row_lse[2 * i] = if row < q_len {
            lse_log2(lse[at_lo])
        } else {
            0.0
        };
        row_lse[2 * i + 1] = if row + 8 < q_len {
            lse_log2(lse[at_hi])
        } else {
            0.0
        };
        row_dd[2 * i] = if row < q_len { dd[at_lo] } else { 0.0 };
        row_dd[2 * i + 1] = if row + 8 < q_len { dd[at_hi] } else { 0.0 };
        #[unroll]
        for d in 0..HEAD_DIM / 8 {
            dq_acc[i * (HEAD_DIM / 8) + d] = Vec4::new(0.0, 0.0, 0.0, 0.0);
        }
    }

    for step in 0..n_tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < n_tiles {
            let stage = step % STAGES;
            let key0 = (first_tile + step) * BLOCK_N;
            load_query_tile::<T, BLOCK_N, HEAD_DIM, WARPS>(
                &mut k_tile,
                &mut v_tile,
                k,
                v,
                stage,
                start_k + key0,
                start_k + k_len,
                kv_head * HEAD_DIM,
                kv_heads * HEAD_DIM,
            );
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let tile = step - (STAGES - 1);
            let stage = tile % STAGES;
            let n0 = (first_tile + tile) * BLOCK_N;
            // S = Q·Kᵀ and dP = dO·Vᵀ (K and V rows are the K-major B).
            #[unroll]
            for t in 0..(BLOCK_M / WARPS / 16) * (BLOCK_N / 8) {
                s_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
                dp_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
            }
            #[unroll]
            for kk in 0..HEAD_DIM / 16 {
                #[unroll]
                for j in 0..BLOCK_N / 16 {
                    let row = stage * BLOCK_N + j * 16 + lane / 16 * 8 + lane % 8;
                    let at = row * (HEAD_DIM + 8) + kk * 16 + lane / 8 % 2 * 8;
                    let kb = ldmatrix_x4(&k_tile, at);
                    let vb = ldmatrix_x4(&v_tile, at);
                    #[unroll]
                    for i in 0..BLOCK_M / WARPS / 16 {
                        let a = super::fwd::q_frag_at::<HEAD_DIM>(warp_row + i * 16, kk, lane);
                        let qa = ldmatrix_x4(&q_tile, a);
                        let oa = ldmatrix_x4(&do_tile, a);
                        let t = i * (BLOCK_N / 8) + 2 * j;
                        s_acc[t] =
                            crate::gemm_tc::mma_f32::<T>(qa, Vec2::new(kb.x, kb.y), s_acc[t]);
                        s_acc[t + 1] =
                            crate::gemm_tc::mma_f32::<T>(qa, Vec2::new(kb.z, kb.w), s_acc[t + 1]);
                        dp_acc[t] =
                            crate::gemm_tc::mma_f32::<T>(oa, Vec2::new(vb.x, vb.y), dp_acc[t]);
                        dp_acc[t + 1] =
                            crate::gemm_tc::mma_f32::<T>(oa, Vec2::new(vb.z, vb.w), dp_acc[t + 1]);
                    }
                }
            }
            // Keys past k_len are masked too: their P = 2^(−LSE·log2 e) can overflow when
            // the row's scores are all very negative, and inf·0 would be NaN.
            let ragged = n0 + BLOCK_N > k_len;
            let diagonal =
                causal > 1 || causal != 0 && (n0 + BLOCK_N - 1) as i32 > m0 as i32 + offset;
            #[unroll]
            for i in 0..BLOCK_M / WARPS / 16 {
                let row = m0 + warp_row + i * 16 + lane / 4;
                let l0 = row_lse[2 * i];
                let l1 = row_lse[2 * i + 1];
                let d0 = row_dd[2 * i];
                let d1 = row_dd[2 * i + 1];
                #[unroll]
                for j in 0..BLOCK_N / 8 {
                    let key = n0 + j * 8 + lane % 4 * 2;
                    let t = i * (BLOCK_N / 8) + j;
                    let s = s_acc[t];
                    let mut p = Vec4::new(
                        ex2_approx(s.x.mul_add(scale_log2, -l0)),
                        ex2_approx(s.y.mul_add(scale_log2, -l0)),
                        ex2_approx(s.z.mul_add(scale_log2, -l1)),
                        ex2_approx(s.w.mul_add(scale_log2, -l1)),
                    );
                    if ragged || diagonal {
                        p = Vec4::new(
                            visible_p(p.x, key, row, k_len, causal, offset),
                            visible_p(p.y, key + 1, row, k_len, causal, offset),
                            visible_p(p.z, key, row + 8, k_len, causal, offset),
                            visible_p(p.w, key + 1, row + 8, k_len, causal, offset),
                        );
                    }
                    let dp = dp_acc[t];
                    dp_acc[t] = Vec4::new(
                        p.x * (dp.x - d0),
                        p.y * (dp.y - d0),
                        p.z * (dp.z - d1),
                        p.w * (dp.w - d1),
                    );
                }
            }
            // dQ += dS·K: dS rounded to T as the A fragments, K (keys × dims) the
            // row-major B.
            #[unroll]
            for kk in 0..BLOCK_N / 16 {
                #[unroll]
                for d in 0..HEAD_DIM / 16 {
                    let row = stage * BLOCK_N + kk * 16 + lane / 8 % 2 * 8 + lane % 8;
                    let kb =
                        ldmatrix_x4_trans(&k_tile, row * (HEAD_DIM + 8) + d * 16 + lane / 16 * 8);
                    #[unroll]
                    for i in 0..BLOCK_M / WARPS / 16 {
                        let t = i * (BLOCK_N / 8) + 2 * kk;
                        let sa = pack_a::<T>(dp_acc[t], dp_acc[t + 1]);
                        let u = i * (HEAD_DIM / 8) + 2 * d;
                        dq_acc[u] =
                            crate::gemm_tc::mma_f32::<T>(sa, Vec2::new(kb.x, kb.y), dq_acc[u]);
                        dq_acc[u + 1] =
                            crate::gemm_tc::mma_f32::<T>(sa, Vec2::new(kb.z, kb.w), dq_acc[u + 1]);
                    }
                }
            }
        }
    }
    cp_async_wait(0);

    #[unroll]
    for i in 0..BLOCK_M / WARPS / 16 {
        let row = m0 + warp_row + i * 16 + lane / 4;
        let out_lo = ((start_q + row) * heads + head) * HEAD_DIM + lane % 4 * 2;
        let out_hi = out_lo + 8 * heads * HEAD_DIM;
        #[unroll]
        for d in 0..HEAD_DIM / 8 {
            let a = dq_acc[i * (HEAD_DIM / 8) + d];
            if row < q_len {
                dq[out_lo + d * 8] = T::from_f32(a.x * scale);
                dq[out_lo + d * 8 + 1] = T::from_f32(a.y * scale);
            }
            if row + 8 < q_len {
                dq[out_hi + d * 8] = T::from_f32(a.z * scale);
                dq[out_hi + d * 8 + 1] = T::from_f32(a.w * scale);
            }
        }
    }
}

/// Issues the `cp.async` copies of rows `row0..row0 + ROWS` (of `rows`; zeros past it) of
/// two packed tensors (Q and dO, or K and V: columns `col0..col0 + HEAD_DIM` of rows `ld`
/// apart) into stage `stage` of two shared rings (rows of HEAD_DIM + 8).
#[device(types(T = [f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn load_query_tile<T: Float, const ROWS: u32, const HEAD_DIM: u32, const WARPS: u32>(
    tile_a: &mut [T],
    tile_b: &mut [T],
    src_a: &[T],
    src_b: &[T],
    stage: u32,
    row0: u32,
    rows: u32,
    col0: u32,
    ld: u32,
) {
    crate::gemm_tc::load_slice::<T, ROWS, HEAD_DIM, 8, 8, WARPS, 1>(
        tile_a,
        src_a,
        stage,
        row0,
        rows,
        col0,
        col0 + HEAD_DIM,
        ld,
    );
    crate::gemm_tc::load_slice::<T, ROWS, HEAD_DIM, 8, 8, WARPS, 1>(
        tile_b,
        src_b,
        stage,
        row0,
        rows,
        col0,
        col0 + HEAD_DIM,
        ld,
    );
}

/// Stages the LSE (log2 domain, [`lse_log2`]) and D of `BLOCK_M` query rows from `at` (of
/// which `valid` exist; the rest staged as 0) into stage `stage`. Plain loads: the
/// `sync_threads` before the tile is used publishes them.
#[device]
pub fn stage_row_stats<const BLOCK_M: u32>(
    lse_tile: &mut [f32],
    dd_tile: &mut [f32],
    lse: &[f32],
    dd: &[f32],
    stage: u32,
    at: u32,
    valid: u32,
) {
    let r = thread_idx_x();
    if r < BLOCK_M {
        // Rows past the sequence read row `at` (valid whenever a tile is staged) and
        // stage 0.
        let ok = r < valid;
        let row = if ok { at + r } else { at };
        let l = lse[row];
        let d = dd[row];
        lse_tile[stage * BLOCK_M + r] = if ok { lse_log2(l) } else { 0.0 };
        dd_tile[stage * BLOCK_M + r] = if ok { d } else { 0.0 };
    }
}

/// A row's LSE in the exp2 domain (`lse·log2 e`), +∞ for a row that sees no key (−∞): its
/// probabilities 2^(s·c − ∞) are 0, not NaN.
#[device]
pub fn lse_log2(lse: f32) -> f32 {
    if lse == f32::NEG_INFINITY {
        f32::INFINITY
    } else {
        lse * 1.442_695
    }
}

/// `p` where query `row` sees `key` (below `k_len`, under the causal/window code), else 0.
#[device]
pub fn visible_p(p: f32, key: u32, row: u32, k_len: u32, causal: u32, offset: i32) -> f32 {
    if masked(1.0, key, row, k_len, causal, offset) == f32::NEG_INFINITY {
        0.0
    } else {
        p
    }
}

/// Two accumulator tiles (n8 columns 2kk and 2kk + 1) rounded to T and packed as the A
/// fragment of an m16n8k16 whose k runs over those 16 columns.
#[device(types(T = [f16, bf16]))]
pub fn pack_a<T: Float>(p0: Vec4<f32>, p1: Vec4<f32>) -> Vec4<u32> {
    Vec4::new(
        super::fwd::pack_pair::<T>(p0.x, p0.y),
        super::fwd::pack_pair::<T>(p0.z, p0.w),
        super::fwd::pack_pair::<T>(p1.x, p1.y),
        super::fwd::pack_pair::<T>(p1.z, p1.w),
    )
}

/// The first query tile whose rows see key `n0` or later: causal row i sees key j iff
/// j ≤ i + offset, so rows below `n0 − offset` see none of this block's keys.
#[device]
pub fn first_query_tile<const BLOCK_M: u32>(n0: u32, causal: u32, offset: i32) -> u32 {
    let first_row = n0 as i32 - offset;
    if causal == 0 || first_row <= 0 {
        0
    } else {
        first_row as u32 / BLOCK_M
    }
}

/// One past the last query tile whose rows see a key below `n_end` (of `k_len`): all of
/// them, or with a window w (`causal = 1 + w`) rows up to `last_key + w − 1 − offset`.
#[device]
pub fn end_query_tile<const BLOCK_M: u32>(
    n_end: u32,
    q_len: u32,
    k_len: u32,
    causal: u32,
    offset: i32,
) -> u32 {
    let all = (q_len + BLOCK_M - 1) / BLOCK_M;
    let last_key = n_end.min(k_len) as i32 - 1;
    let last_row = last_key + causal as i32 - 2 - offset;
    if causal <= 1 {
        all
    } else if last_row < 0 {
        0
    } else {
        all.min(last_row as u32 / BLOCK_M + 1)
    }
}

/// The first key tile the rows from `m0` see: 0, or with a window w (`causal = 1 + w`)
/// the tile of key `m0 + offset − (w − 1)`, the first row's oldest visible key.
#[device]
pub fn first_key_tile<const BLOCK_N: u32>(m0: u32, causal: u32, offset: i32) -> u32 {
    let first_key = m0 as i32 + offset - (causal as i32 - 2);
    if causal <= 1 || first_key <= 0 {
        0
    } else {
        first_key as u32 / BLOCK_N
    }
}
