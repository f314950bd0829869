//! Decode attention over a paged (or contiguous) KV cache with split-KV inside one launch:
//! `flash_attn_decode_{f16,bf16}` and its combine, `flash_attn_decode_combine_{f16,bf16}`.
//!
//! # Layouts
//!
//! Those of the forward kernel ([`super`]): Q and O `[total_q, heads, HEAD_DIM]` packed by
//! `cu_seqlens_q`; K and V `[total_k, kv_heads, HEAD_DIM]` packed by `cu_seqlens_k`, or
//! paged caches `[pages, page_size, kv_heads, HEAD_DIM]` with a u32 block table
//! `[sequences, pages_per_seq]` (key `j` of sequence `b` is row `j % page_size` of page
//! `block_table[b·pages_per_seq + j / page_size]`; any page size; `page_size = 0` selects
//! the contiguous layout); LSE `[heads, total_q]` f32, natural log. Each sequence has 0 to
//! [`DECODE_MAX_Q`](super::decode_host::DECODE_MAX_Q) query tokens (the newest tokens:
//! causal masking is bottom-right, row `i` sees key `j ≤ i + k_len − q_len`). A row that
//! sees no key (k_len = 0) gets O = 0, LSE = −∞. Split partials: `o_part` f32 `[splits,
//! total_q, heads, HEAD_DIM]`, `lse_part` `[splits, heads, total_q]` — the stacked layout
//! of [`attn_merge`](super::merge), so a caller may also merge them with it.
//!
//! # How it works
//!
//! Grid (splits, kv_heads × row tiles, sequences). GQA packing: the `q_len · group` query
//! rows that read one KV head (`group = heads / kv_heads`; packed row `r` is token
//! `r / group` of query head `kv_head·group + r % group`) are the M dimension of the
//! `mma.sync.m16n8k16` tiles, 16 rows per block, so a block reads each K/V row of its key
//! range once for the whole group (Llama-3-8B: 4 query heads per KV head in one m16 tile;
//! a group·q_len above 16 takes more row tiles, each re-reading its K/V, mostly from L2).
//! The split index picks a contiguous range of `BLOCK_N`-key tiles of the sequence
//! (⌈tiles / splits⌉ each; trailing splits of a short sequence are empty). K/V tiles stream
//! through a `STAGES`-deep ring of shared buffers by 16-byte `cp.async`
//! ([`load_kv`](super::fwd::load_kv): each row looked up through the block table; keys past
//! the range read as zeros without touching memory, so stale cache rows are never read).
//! Each of the `WARPS` warps takes `BLOCK_N / WARPS` keys of every tile: S = QKᵀ and
//! O += PV on `mma.sync` (`ldmatrix.x4`, `.trans` for V, P from the S accumulators as in
//! the forward; Q's fragments by `ldmatrix` from its shared rows), online softmax in the
//! exp2 domain per warp. At the end the warps' (max, sum, O) merge through shared memory
//! in f32 (one barrier per warp, in warp order:
//! deterministic), and the block writes O (rounded once to T) and LSE when `splits = 1`,
//! else the f32 partial O and its LSE; [`flash_attn_decode_combine`] then merges the
//! splits by their LSEs (−∞-safe: an empty split weighs 0) and rounds once to T.
//!
//! # Cost and roofline
//!
//! Per sequence and KV head: FLOPs 4·q_len·group·k_len·d (2 for QKᵀ, 2 for PV; the
//! tensor cores compute all 16 rows of a tile, 16/(q_len·group) times that), bytes
//! 4·k_len·d (K and V once, 2-byte elements) plus Q and O. Arithmetic intensity q_len·group FLOPs per byte
//! (16 with the padding): memory-bound on every target (an H100 needs ~200 FLOPs per DRAM
//! byte to be compute-bound), so the bound is reading the cache,
//! 4·Σ k_len·kv_heads·d bytes at DRAM bandwidth. Why mma and not FMA: the FMA path would do
//! q_len·group·d FMAs per key on the FP32 pipe plus a bf16→f32 conversion per K/V element;
//! at 3.35 TB/s that is ~15–30% of an H100's FP32 issue rate spent beside the softmax and
//! address math, while the padded mma work is ~8% of the tensor-core rate and a K/V element
//! costs one `ldmatrix` lane instead of a conversion: mma leaves the issue slots to the
//! loads. What decides the bound is bytes in flight: `(STAGES − 1)·BLOCK_N` keys per block
//! (16 KiB per pending 32-key tile at d = 128) with two or more blocks per SM, and enough
//! blocks — split-KV ([`decode_splits`](super::decode_host::decode_splits)) fills the SMs
//! when batch × kv_heads is small. The combine reads `splits · (d + 1)` f32 per row and
//! head (small next to the cache unless splits × q rows approach k_len).
//!
//! # Tunables
//!
//! `HEAD_DIM` ∈ {64, 80, 96, 128, 256} (fixed by the problem); `BLOCK_N` ∈ {32, 64, 128}
//! keys per tile; `WARPS` ∈ {1, 2, 4, 8} (each takes 16 or 32 keys of a tile: more keys
//! per warp unrolls into spills); `STAGES` ∈ {2, 3, 4}. Constraints: the 16-byte K/V chunks divide evenly over the
//! threads; accumulator registers for O and S (`d/2 + BLOCK_N/WARPS/2` words) ≤ 140 (Q's
//! fragments are re-read from shared memory each tile, so d = 256 fits without spilling);
//! shared memory `(2·STAGES·BLOCK_N + 16)·(d + 8)·2 + 16·d·4 + 2·16·WARPS·4 + 16·4` bytes
//! ≤ 99 KiB (Q, the K/V ring, the cross-warp merge). The split count is a launch argument
//! (the grid's x), not a tunable.

use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

use super::fwd::{exp2_base, log_sum_exp, masked, quad_max, quad_sum};
use super::merge::{part_weight, warp_max, warp_sum};

#[kernel(
    block = (32 * WARPS),
    tune(
        HEAD_DIM = [64, 80, 96, 128, 256],
        BLOCK_N = [32, 64, 128],
        WARPS = [1, 2, 4, 8],
        STAGES = [2, 3, 4]
    ),
    default(HEAD_DIM = 128, BLOCK_N = 32, WARPS = 2, STAGES = 4),
    types(T = [f16, bf16]),
    constraint = BLOCK_N % (16 * WARPS) == 0 && BLOCK_N / WARPS <= 32,
    constraint = (BLOCK_N * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = HEAD_DIM / 2 + BLOCK_N / WARPS / 2 <= 140,
    constraint = (2 * STAGES * BLOCK_N + 16) * (HEAD_DIM + 8) * 2 + 16 * HEAD_DIM * 4 + 128 * WARPS
        + 64
        <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_decode<
    T: Float,
    const HEAD_DIM: u32,
    const BLOCK_N: u32,
    const WARPS: u32,
    const STAGES: u32,
>(
    q: &[T],
    k: &[T],
    v: &[T],
    o: &mut [T],
    lse: &mut [f32],
    o_part: &mut [f32],
    lse_part: &mut [f32],
    cu_seqlens_q: &[u32],
    cu_seqlens_k: &[u32],
    heads: u32,
    kv_heads: u32,
    scale_log2: f32,
    causal: u32,
    block_table: &[u32],
    pages_per_seq: u32,
    page_size: u32,
) {
    // Q's 16 packed rows and the K/V ring (rows of HEAD_DIM + 8: conflict-free ldmatrix).
    // Q fragments are re-read from shared memory per tile rather than held: at d = 256 the
    // 64 registers they would take make the O accumulators spill.
    let mut q_tile = shared_array::<T>(16 * (HEAD_DIM + 8));
    let mut k_tile = shared_array::<T>(STAGES * BLOCK_N * (HEAD_DIM + 8));
    let mut v_tile = shared_array::<T>(STAGES * BLOCK_N * (HEAD_DIM + 8));
    // The cross-warp merge: O in f32, each warp's row max and sum, each row's 1/sum.
    let mut red_o = shared_array::<f32>(16 * HEAD_DIM);
    let mut red_max = shared_array::<f32>(16 * WARPS);
    let mut red_sum = shared_array::<f32>(16 * WARPS);
    let mut row_inv = shared_array::<f32>(16);
    let mut s_acc = local_array::<Vec4<f32>>(BLOCK_N / WARPS / 8);
    let mut o_acc = local_array::<Vec4<f32>>(HEAD_DIM / 8);

    let split = block_idx_x();
    let splits = grid_dim_x();
    let kv_head = block_idx_y() % kv_heads;
    let r0 = block_idx_y() / kv_heads * 16;
    let seq = block_idx_z();
    let group = heads / kv_heads;
    let start_q = cu_seqlens_q[seq];
    let q_len = cu_seqlens_q[seq + 1] - start_q;
    let rows = q_len * group;
    if r0 >= rows {
        return;
    }
    let start_k = cu_seqlens_k[seq];
    let k_len = cu_seqlens_k[seq + 1] - start_k;
    let offset = k_len as i32 - q_len as i32;
    // This split's tiles and keys (an empty range past the end of a short sequence).
    let all_tiles = (k_len + BLOCK_N - 1) / BLOCK_N;
    let per_split = (all_tiles + splits - 1) / splits;
    let first_tile = (split * per_split).min(all_tiles);
    let n_tiles = (first_tile + per_split).min(all_tiles) - first_tile;
    let key_begin = first_tile * BLOCK_N;
    let key_end = ((first_tile + n_tiles) * BLOCK_N).min(k_len);

    // Q joins the first K/V tiles' cp.async group (the loop's first wait covers it).
    load_q_rows::<T, HEAD_DIM, WARPS>(&mut q_tile, q, start_q, r0, rows, group, heads, kv_head);
    let lane = lane_id();
    let warp = thread_idx_x() / 32;
    #[unroll]
    for d in 0..HEAD_DIM / 8 {
        o_acc[d] = Vec4::new(0.0, 0.0, 0.0, 0.0);
    }
    // Rows lane/4 and lane/4 + 8 of the m16 tile: running max (raw score units) and the
    // thread's partial sum.
    let mut max_lo = f32::NEG_INFINITY;
    let mut max_hi = f32::NEG_INFINITY;
    let mut sum_lo = 0.0f32;
    let mut sum_hi = 0.0f32;
    // The first token of the block's rows sees the fewest keys (for the diagonal test).
    let first_token = r0 / group;

    for step in 0..n_tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < n_tiles {
            let stage = step % STAGES;
            let key0 = key_begin + step * BLOCK_N;
            let col0 = kv_head * HEAD_DIM;
            let ld = kv_heads * HEAD_DIM;
            let table0 = seq * pages_per_seq;
            super::fwd::load_kv::<T, BLOCK_N, HEAD_DIM, WARPS>(
                &mut k_tile,
                k,
                stage,
                key0,
                key_end,
                start_k,
                col0,
                ld,
                block_table,
                table0,
                page_size,
            );
            super::fwd::load_kv::<T, BLOCK_N, HEAD_DIM, WARPS>(
                &mut v_tile,
                v,
                stage,
                key0,
                key_end,
                start_k,
                col0,
                ld,
                block_table,
                table0,
                page_size,
            );
        }
        cp_async_commit();
        if step >= STAGES - 1 {
            let tile = step - (STAGES - 1);
            let stage = tile % STAGES;
            // This warp's keys of the tile: rows `krow0..` of the stage, keys `n0..`.
            let krow0 = stage * BLOCK_N + warp * (BLOCK_N / WARPS);
            let n0 = key_begin + tile * BLOCK_N + warp * (BLOCK_N / WARPS);
            #[unroll]
            for j in 0..BLOCK_N / WARPS / 8 {
                s_acc[j] = Vec4::new(0.0, 0.0, 0.0, 0.0);
            }
            // S = Q·Kᵀ (K rows are keys, K-major: the column-major B of the GEMM).
            #[unroll]
            for kk in 0..HEAD_DIM / 16 {
                let qf = ldmatrix_x4(
                    &q_tile,
                    lane % 16 * (HEAD_DIM + 8) + kk * 16 + lane / 16 * 8,
                );
                #[unroll]
                for j in 0..BLOCK_N / WARPS / 16 {
                    let row = krow0 + j * 16 + lane / 16 * 8 + lane % 8;
                    let col = kk * 16 + lane / 8 % 2 * 8;
                    let r = ldmatrix_x4(&k_tile, row * (HEAD_DIM + 8) + col);
                    s_acc[2 * j] =
                        crate::gemm_tc::mma_f32::<T>(qf, Vec2::new(r.x, r.y), s_acc[2 * j]);
                    s_acc[2 * j + 1] =
                        crate::gemm_tc::mma_f32::<T>(qf, Vec2::new(r.z, r.w), s_acc[2 * j + 1]);
                }
            }
            // Masks only where this warp's keys cross the range end or the diagonal.
            let ragged = n0 + BLOCK_N / WARPS > key_end;
            let diagonal = causal > 1
                || causal != 0 && (n0 + BLOCK_N / WARPS - 1) as i32 > first_token as i32 + offset;
            if ragged || diagonal {
                let t_lo = (r0 + lane / 4) / group;
                let t_hi = (r0 + lane / 4 + 8) / group;
                #[unroll]
                for j in 0..BLOCK_N / WARPS / 8 {
                    let key = n0 + j * 8 + lane % 4 * 2;
                    let s = s_acc[j];
                    s_acc[j] = Vec4::new(
                        masked(s.x, key, t_lo, key_end, causal, offset),
                        masked(s.y, key + 1, t_lo, key_end, causal, offset),
                        masked(s.z, key, t_hi, key_end, causal, offset),
                        masked(s.w, key + 1, t_hi, key_end, causal, offset),
                    );
                }
            }
            // Online softmax in the exp2 domain (as the forward kernel).
            let mut mx_lo = max_lo;
            let mut mx_hi = max_hi;
            #[unroll]
            for j in 0..BLOCK_N / WARPS / 8 {
                let s = s_acc[j];
                mx_lo = mx_lo.max(s.x).max(s.y);
                mx_hi = mx_hi.max(s.z).max(s.w);
            }
            mx_lo = quad_max(mx_lo);
            mx_hi = quad_max(mx_hi);
            let base_lo = exp2_base(mx_lo, scale_log2);
            let base_hi = exp2_base(mx_hi, scale_log2);
            let rescale_lo = ex2_approx(max_lo.mul_add(scale_log2, -base_lo));
            let rescale_hi = ex2_approx(max_hi.mul_add(scale_log2, -base_hi));
            max_lo = mx_lo;
            max_hi = mx_hi;
            let mut tile_lo = 0.0f32;
            let mut tile_hi = 0.0f32;
            #[unroll]
            for j in 0..BLOCK_N / WARPS / 8 {
                let s = s_acc[j];
                let p = Vec4::new(
                    ex2_approx(s.x.mul_add(scale_log2, -base_lo)),
                    ex2_approx(s.y.mul_add(scale_log2, -base_lo)),
                    ex2_approx(s.z.mul_add(scale_log2, -base_hi)),
                    ex2_approx(s.w.mul_add(scale_log2, -base_hi)),
                );
                tile_lo += p.x + p.y;
                tile_hi += p.z + p.w;
                s_acc[j] = p;
            }
            sum_lo = sum_lo * rescale_lo + tile_lo;
            sum_hi = sum_hi * rescale_hi + tile_hi;
            #[unroll]
            for d in 0..HEAD_DIM / 8 {
                let a = o_acc[d];
                o_acc[d] = Vec4::new(
                    a.x * rescale_lo,
                    a.y * rescale_lo,
                    a.z * rescale_hi,
                    a.w * rescale_hi,
                );
            }
            // O += P·V: P (S accumulators rounded to T) is the A fragment, V the row-major
            // B loaded transposed.
            #[unroll]
            for kk in 0..BLOCK_N / WARPS / 16 {
                let p0 = s_acc[2 * kk];
                let p1 = s_acc[2 * kk + 1];
                let a = Vec4::new(
                    super::fwd::pack_pair::<T>(p0.x, p0.y),
                    super::fwd::pack_pair::<T>(p0.z, p0.w),
                    super::fwd::pack_pair::<T>(p1.x, p1.y),
                    super::fwd::pack_pair::<T>(p1.z, p1.w),
                );
                #[unroll]
                for d in 0..HEAD_DIM / 16 {
                    let row = krow0 + kk * 16 + lane / 8 % 2 * 8 + lane % 8;
                    let col = d * 16 + lane / 16 * 8;
                    let r = ldmatrix_x4_trans(&v_tile, row * (HEAD_DIM + 8) + col);
                    o_acc[2 * d] =
                        crate::gemm_tc::mma_f32::<T>(a, Vec2::new(r.x, r.y), o_acc[2 * d]);
                    o_acc[2 * d + 1] =
                        crate::gemm_tc::mma_f32::<T>(a, Vec2::new(r.z, r.w), o_acc[2 * d + 1]);
                }
            }
        }
    }
    cp_async_wait(0);

    // Merge the warps: block max per row, each warp's weight 2^(m_w·c − M·c), the row sum.
    let row_lo = lane / 4;
    let row_hi = row_lo + 8;
    let l_lo = quad_sum(sum_lo);
    let l_hi = quad_sum(sum_hi);
    if lane % 4 == 0 {
        red_max[warp * 16 + row_lo] = max_lo;
        red_max[warp * 16 + row_hi] = max_hi;
        red_sum[warp * 16 + row_lo] = l_lo;
        red_sum[warp * 16 + row_hi] = l_hi;
    }
    sync_threads();
    let mut m_lo = f32::NEG_INFINITY;
    let mut m_hi = f32::NEG_INFINITY;
    #[unroll]
    for w in 0..WARPS {
        m_lo = m_lo.max(red_max[w * 16 + row_lo]);
        m_hi = m_hi.max(red_max[w * 16 + row_hi]);
    }
    let base_lo = exp2_base(m_lo, scale_log2);
    let base_hi = exp2_base(m_hi, scale_log2);
    let f_lo = ex2_approx(max_lo.mul_add(scale_log2, -base_lo));
    let f_hi = ex2_approx(max_hi.mul_add(scale_log2, -base_hi));
    let total_q = cu_seqlens_q[grid_dim_z()];
    if warp == 0 {
        let mut total_lo = 0.0f32;
        let mut total_hi = 0.0f32;
        #[unroll]
        for w in 0..WARPS {
            let w_lo = ex2_approx(red_max[w * 16 + row_lo].mul_add(scale_log2, -base_lo));
            let w_hi = ex2_approx(red_max[w * 16 + row_hi].mul_add(scale_log2, -base_hi));
            total_lo += w_lo * red_sum[w * 16 + row_lo];
            total_hi += w_hi * red_sum[w * 16 + row_hi];
        }
        if lane % 4 == 0 {
            row_inv[row_lo] = if total_lo > 0.0 { 1.0 / total_lo } else { 0.0 };
            row_inv[row_hi] = if total_hi > 0.0 { 1.0 / total_hi } else { 0.0 };
            // LSE [heads, total_q] (one split) or split `split` of [splits, heads, total_q].
            let part0 = if splits == 1 {
                0
            } else {
                split * heads * total_q
            };
            let lo_row = r0 + row_lo;
            let hi_row = r0 + row_hi;
            let lse_lo = log_sum_exp(m_lo, total_lo, scale_log2);
            let lse_hi = log_sum_exp(m_hi, total_hi, scale_log2);
            let at_lo = (kv_head * group + lo_row % group) * total_q + start_q + lo_row / group;
            let at_hi = (kv_head * group + hi_row % group) * total_q + start_q + hi_row / group;
            if lo_row < rows && splits == 1 {
                lse[at_lo] = lse_lo;
            }
            if lo_row < rows && splits > 1 {
                lse_part[part0 + at_lo] = lse_lo;
            }
            if hi_row < rows && splits == 1 {
                lse[at_hi] = lse_hi;
            }
            if hi_row < rows && splits > 1 {
                lse_part[part0 + at_hi] = lse_hi;
            }
        }
    }
    // The warps add their scaled O in turn (a barrier between turns: no race, fixed order).
    #[unroll]
    for w in 0..WARPS {
        if warp == w {
            #[unroll]
            for d in 0..HEAD_DIM / 8 {
                let a = o_acc[d];
                let lo = row_lo * HEAD_DIM + d * 8 + lane % 4 * 2;
                let hi = lo + 8 * HEAD_DIM;
                if w == 0 {
                    red_o[lo] = a.x * f_lo;
                    red_o[lo + 1] = a.y * f_lo;
                    red_o[hi] = a.z * f_hi;
                    red_o[hi + 1] = a.w * f_hi;
                } else {
                    red_o[lo] += a.x * f_lo;
                    red_o[lo + 1] += a.y * f_lo;
                    red_o[hi] += a.z * f_hi;
                    red_o[hi + 1] += a.w * f_hi;
                }
            }
        }
        sync_threads();
    }
    // O rows out, coalesced: the group's heads of one token are adjacent in O.
    let threads = 32 * WARPS;
    #[unroll]
    for l in 0..(16 * HEAD_DIM + threads - 1) / threads {
        let e = l * threads + thread_idx_x();
        let r = e / HEAD_DIM;
        let c = e % HEAD_DIM;
        let row = r0 + r;
        if e < 16 * HEAD_DIM && row < rows {
            let head = kv_head * group + row % group;
            let at = ((start_q + row / group) * heads + head) * HEAD_DIM + c;
            let x = red_o[e] * row_inv[r];
            if splits == 1 {
                o[at] = T::from_f32(x);
            } else {
                o_part[split * total_q * heads * HEAD_DIM + at] = x;
            }
        }
    }
}

/// Stages the block's 16 packed query rows (row `r0 + r` is token `(r0 + r) / group` of
/// query head `kv_head·group + (r0 + r) % group`) into rows of `HEAD_DIM + 8` of `tile` by
/// 16-byte `cp.async`; rows at or past `rows` read as zeros. Every thread calls it.
#[device(types(T = [f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn load_q_rows<T: Float, const HEAD_DIM: u32, const WARPS: u32>(
    tile: &mut [T],
    q: &[T],
    start_q: u32,
    r0: u32,
    rows: u32,
    group: u32,
    heads: u32,
    kv_head: u32,
) {
    let threads = 32 * WARPS;
    let chunks = 16 * HEAD_DIM / 8;
    #[unroll]
    for l in 0..(chunks + threads - 1) / threads {
        let e = l * threads + thread_idx_x();
        if e < chunks {
            let r = e / (HEAD_DIM / 8);
            let c = e % (HEAD_DIM / 8) * 8;
            let row = r0 + r;
            let bytes = if row < rows { 16 } else { 0 };
            let head = kv_head * group + row % group;
            let at = if row < rows {
                ((start_q + row / group) * heads + head) * HEAD_DIM + c
            } else {
                0
            };
            cp_async_16_zfill(tile, r * (HEAD_DIM + 8) + c, q, at, bytes);
        }
    }
}

/// Merges the decode kernel's f32 split partials by their LSEs into O (T) and LSE: one
/// warp per (row, head), as [`attn_merge`](super::merge) (whose layout the partials have)
/// but reading f32 parts and rounding once to T. `LSE = M + ln Σ_s exp(LSE_s − M)`, `O =
/// Σ_s exp(LSE_s − LSE)·O_s`; an empty split (LSE −∞) weighs 0 and its O is not read; all
/// empty gives O = 0, LSE = −∞. Memory-bound: reads `splits·(d + 1)` f32 per (row, head),
/// writes `d` T and one f32. Tunable: `WARPS` per block.
#[kernel(
    block = (32 * WARPS),
    tune(WARPS = [2, 4, 8]),
    default(WARPS = 4),
    types(T = [f16, bf16])
)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_decode_combine<T: Float, const WARPS: u32>(
    o_part: &[Vec4<f32>],
    lse_part: &[f32],
    o: &mut [Vec4<T>],
    lse: &mut [f32],
    splits: u32,
    rows: u32,
    heads: u32,
    head_dim: u32,
) {
    let pair = block_idx_x() * WARPS + thread_idx_x() / 32;
    if pair >= rows * heads {
        return;
    }
    let lane = lane_id();
    let at = pair % heads * rows + pair / heads;
    let stride = heads * rows;
    let mut max = f32::NEG_INFINITY;
    let mut s = lane;
    while s < splits {
        max = max.max(lse_part[s * stride + at]);
        s += 32;
    }
    max = warp_max(max);
    let mut total = 0.0f32;
    let mut s2 = lane;
    while s2 < splits {
        total += part_weight(lse_part[s2 * stride + at], max);
        s2 += 32;
    }
    total = warp_sum(total);
    let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
    if lane == 0 {
        lse[at] = if total > 0.0 {
            max + total.ln()
        } else {
            f32::NEG_INFINITY
        };
    }
    let vecs = head_dim / 4;
    let mut c = lane;
    while c < vecs {
        let mut acc = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        for p in 0..splits {
            let w = part_weight(lse_part[p * stride + at], max) * inv;
            if w > 0.0 {
                let x = o_part[(p * rows * heads + pair) * vecs + c];
                acc = Vec4::new(
                    x.x.mul_add(w, acc.x),
                    x.y.mul_add(w, acc.y),
                    x.z.mul_add(w, acc.z),
                    x.w.mul_add(w, acc.w),
                );
            }
        }
        o[pair * vecs + c] = Vec4::new(
            T::from_f32(acc.x),
            T::from_f32(acc.y),
            T::from_f32(acc.z),
            T::from_f32(acc.w),
        );
        c += 32;
    }
}
