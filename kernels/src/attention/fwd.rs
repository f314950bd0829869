//! The flash-attention forward kernel (`flash_attn_fwd_{f16,bf16}`) and its `#[device]`
//! pieces. The module docs of [`super`] describe the layouts, the algorithm and the bounds.

use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

#[kernel(
    block = (32 * WARPS),
    tune(
        HEAD_DIM = [64, 80, 96, 128, 256],
        BLOCK_M = [32, 64, 128],
        BLOCK_N = [32, 64, 128],
        WARPS = [2, 4, 8],
        STAGES = [2, 3]
    ),
    default(HEAD_DIM = 128, BLOCK_M = 128, BLOCK_N = 64, WARPS = 8, STAGES = 2),
    types(T = [f16, bf16]),
    constraint = BLOCK_M % (16 * WARPS) == 0 && BLOCK_M / WARPS <= 32,
    constraint = (BLOCK_N * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = (BLOCK_M * HEAD_DIM / 8) % (32 * WARPS) == 0,
    constraint = HEAD_DIM >= 256 || BLOCK_M <= STAGES * BLOCK_N,
    constraint = (BLOCK_M / WARPS / 16)
        * (HEAD_DIM / 2 + BLOCK_N / 2 + HEAD_DIM / 4 * (1 - HEAD_DIM / 256))
        <= 208,
    constraint = 2 * STAGES * BLOCK_N * (HEAD_DIM + 8) * 2
        + HEAD_DIM / 256 * BLOCK_M * (HEAD_DIM + 8) * 2
        <= 101376
)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_fwd<
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
    o: &mut [T],
    lse: &mut [f32],
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
    // Shared rows of HEAD_DIM + 8 elements (16 bytes of padding: conflict-free ldmatrix).
    // Below d = 256 the K ring also stages the Q tile once, before the loop (BLOCK_M <=
    // STAGES·BLOCK_N), and Q's fragments live in registers. At d = 256 they would not fit
    // beside the O accumulators (ptxas spills on sm_90), so Q keeps its own shared tile
    // and each k-step reloads its fragment by ldmatrix (`HEAD_DIM / 256` is that switch).
    let mut k_tile = shared_array::<T>(STAGES * BLOCK_N * (HEAD_DIM + 8));
    let mut v_tile = shared_array::<T>(STAGES * BLOCK_N * (HEAD_DIM + 8));
    let mut q_tile =
        shared_array::<T>(HEAD_DIM / 256 * BLOCK_M * (HEAD_DIM + 8) + (1 - HEAD_DIM / 256) * 8);
    // Per warp: MT m16 row tiles. Q fragments (below d = 256), S (scores, then
    // probabilities) and the unnormalized O accumulators stay in registers.
    let mut q_frag = local_array::<Vec4<u32>>(
        (1 - HEAD_DIM / 256) * (BLOCK_M / WARPS / 16) * (HEAD_DIM / 16) + HEAD_DIM / 256,
    );
    let mut s_acc = local_array::<Vec4<f32>>((BLOCK_M / WARPS / 16) * (BLOCK_N / 8));
    let mut o_acc = local_array::<Vec4<f32>>((BLOCK_M / WARPS / 16) * (HEAD_DIM / 8));
    // Running max (raw score units) and thread-partial sums, rows lane/4 and lane/4 + 8.
    let mut row_max = local_array::<f32>(2 * (BLOCK_M / WARPS / 16));
    let mut row_sum = local_array::<f32>(2 * (BLOCK_M / WARPS / 16));

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
    let lane = lane_id();
    let warp_row = thread_idx_x() / 32 * (BLOCK_M / WARPS);
    // Bottom-right causal alignment: row i sees keys j <= i + offset.
    let offset = k_len as i32 - q_len as i32;
    let n_tiles = visible_tiles::<BLOCK_M, BLOCK_N>(m0, q_len, k_len, causal, offset);

    // Q: one tile through the K ring into registers (d = 256: into its own tile).
    if HEAD_DIM >= 256 {
        crate::gemm_tc::load_slice::<T, BLOCK_M, HEAD_DIM, 8, 8, WARPS, 1>(
            &mut q_tile,
            q,
            0,
            start_q + m0,
            start_q + q_len,
            head * HEAD_DIM,
            head * HEAD_DIM + HEAD_DIM,
            heads * HEAD_DIM,
        );
    } else {
        crate::gemm_tc::load_slice::<T, BLOCK_M, HEAD_DIM, 8, 8, WARPS, 1>(
            &mut k_tile,
            q,
            0,
            start_q + m0,
            start_q + q_len,
            head * HEAD_DIM,
            head * HEAD_DIM + HEAD_DIM,
            heads * HEAD_DIM,
        );
    }
    cp_async_commit();
    cp_async_wait(0);
    sync_threads();
    #[unroll]
    for i in 0..BLOCK_M / WARPS / 16 {
        if HEAD_DIM < 256 {
            #[unroll]
            for kk in 0..HEAD_DIM / 16 {
                q_frag[i * (HEAD_DIM / 16) + kk] =
                    ldmatrix_x4(&k_tile, q_frag_at::<HEAD_DIM>(warp_row + i * 16, kk, lane));
            }
        }
        row_max[2 * i] = f32::NEG_INFINITY;
        row_max[2 * i + 1] = f32::NEG_INFINITY;
        row_sum[2 * i] = 0.0;
        row_sum[2 * i + 1] = 0.0;
        #[unroll]
        for d in 0..HEAD_DIM / 8 {
            o_acc[i * (HEAD_DIM / 8) + d] = Vec4::new(0.0, 0.0, 0.0, 0.0);
        }
    }
    // Every warp has its Q fragments before the K copies overwrite the staging rows.
    sync_threads();

    // Step s copies K/V tile s (while s < n_tiles) and, from step STAGES - 1 on, processes
    // tile s - (STAGES - 1).
    for step in 0..n_tiles + STAGES - 1 {
        if step >= STAGES - 1 {
            cp_async_wait(STAGES - 2);
            sync_threads();
        }
        if step < n_tiles {
            let stage = step % STAGES;
            let key0 = step * BLOCK_N;
            let col0 = kv_head * HEAD_DIM;
            let ld = kv_heads * HEAD_DIM;
            let table0 = seq * pages_per_seq;
            load_kv::<T, BLOCK_N, HEAD_DIM, WARPS>(
                &mut k_tile,
                k,
                stage,
                key0,
                k_len,
                start_k,
                col0,
                ld,
                block_table,
                table0,
                page_size,
            );
            load_kv::<T, BLOCK_N, HEAD_DIM, WARPS>(
                &mut v_tile,
                v,
                stage,
                key0,
                k_len,
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
            let n0 = tile * BLOCK_N;
            // S = Q·Kᵀ: K rows are keys, K-major, the "column-major B" of the GEMM.
            #[unroll]
            for t in 0..(BLOCK_M / WARPS / 16) * (BLOCK_N / 8) {
                s_acc[t] = Vec4::new(0.0, 0.0, 0.0, 0.0);
            }
            #[unroll]
            for kk in 0..HEAD_DIM / 16 {
                #[unroll]
                for j in 0..BLOCK_N / 16 {
                    let row = stage * BLOCK_N + j * 16 + lane / 16 * 8 + lane % 8;
                    let col = kk * 16 + lane / 8 % 2 * 8;
                    let r = ldmatrix_x4(&k_tile, row * (HEAD_DIM + 8) + col);
                    #[unroll]
                    for i in 0..BLOCK_M / WARPS / 16 {
                        let qf = if HEAD_DIM >= 256 {
                            ldmatrix_x4(&q_tile, q_frag_at::<HEAD_DIM>(warp_row + i * 16, kk, lane))
                        } else {
                            q_frag[(1 - HEAD_DIM / 256) * (i * (HEAD_DIM / 16) + kk)]
                        };
                        let t = i * (BLOCK_N / 8) + 2 * j;
                        s_acc[t] = crate::gemm_tc::mma_f32::<T>(qf, Vec2::new(r.x, r.y), s_acc[t]);
                        s_acc[t + 1] =
                            crate::gemm_tc::mma_f32::<T>(qf, Vec2::new(r.z, r.w), s_acc[t + 1]);
                    }
                }
            }
            // Element masks only on tiles that cross the key end or the causal diagonal
            // (block-uniform test; m0 is the block's first row, which sees the fewest keys).
            let ragged = n0 + BLOCK_N > k_len;
            // A sliding window (causal > 1) masks every tile: cheap next to the exp2s.
            let diagonal =
                causal > 1 || causal != 0 && (n0 + BLOCK_N - 1) as i32 > m0 as i32 + offset;
            if ragged || diagonal {
                #[unroll]
                for i in 0..BLOCK_M / WARPS / 16 {
                    let row = m0 + warp_row + i * 16 + lane / 4;
                    #[unroll]
                    for j in 0..BLOCK_N / 8 {
                        let key = n0 + j * 8 + lane % 4 * 2;
                        let s = s_acc[i * (BLOCK_N / 8) + j];
                        s_acc[i * (BLOCK_N / 8) + j] = Vec4::new(
                            masked(s.x, key, row, k_len, causal, offset),
                            masked(s.y, key + 1, row, k_len, causal, offset),
                            masked(s.z, key, row + 8, k_len, causal, offset),
                            masked(s.w, key + 1, row + 8, k_len, causal, offset),
                        );
                    }
                }
            }
            // Online softmax in the exp2 domain: p = 2^(s·c - m·c), c = scale·log2(e).
            #[unroll]
            for i in 0..BLOCK_M / WARPS / 16 {
                let mut mx_lo = row_max[2 * i];
                let mut mx_hi = row_max[2 * i + 1];
                #[unroll]
                for j in 0..BLOCK_N / 8 {
                    let s = s_acc[i * (BLOCK_N / 8) + j];
                    mx_lo = mx_lo.max(s.x).max(s.y);
                    mx_hi = mx_hi.max(s.z).max(s.w);
                }
                mx_lo = quad_max(mx_lo);
                mx_hi = quad_max(mx_hi);
                // A row with no visible key yet keeps max -inf: subtract 0 instead, so
                // every p and the rescale factor are 2^-inf = 0, never NaN.
                let base_lo = exp2_base(mx_lo, scale_log2);
                let base_hi = exp2_base(mx_hi, scale_log2);
                let rescale_lo = ex2_approx(row_max[2 * i].mul_add(scale_log2, -base_lo));
                let rescale_hi = ex2_approx(row_max[2 * i + 1].mul_add(scale_log2, -base_hi));
                row_max[2 * i] = mx_lo;
                row_max[2 * i + 1] = mx_hi;
                let mut sum_lo = 0.0f32;
                let mut sum_hi = 0.0f32;
                #[unroll]
                for j in 0..BLOCK_N / 8 {
                    let s = s_acc[i * (BLOCK_N / 8) + j];
                    let p = Vec4::new(
                        ex2_approx(s.x.mul_add(scale_log2, -base_lo)),
                        ex2_approx(s.y.mul_add(scale_log2, -base_lo)),
                        ex2_approx(s.z.mul_add(scale_log2, -base_hi)),
                        ex2_approx(s.w.mul_add(scale_log2, -base_hi)),
                    );
                    sum_lo += p.x + p.y;
                    sum_hi += p.z + p.w;
                    s_acc[i * (BLOCK_N / 8) + j] = p;
                }
                row_sum[2 * i] = row_sum[2 * i] * rescale_lo + sum_lo;
                row_sum[2 * i + 1] = row_sum[2 * i + 1] * rescale_hi + sum_hi;
                #[unroll]
                for d in 0..HEAD_DIM / 8 {
                    let a = o_acc[i * (HEAD_DIM / 8) + d];
                    o_acc[i * (HEAD_DIM / 8) + d] = Vec4::new(
                        a.x * rescale_lo,
                        a.y * rescale_lo,
                        a.z * rescale_hi,
                        a.w * rescale_hi,
                    );
                }
            }
            // O += P·V: the S accumulators of key tiles 2kk, 2kk+1 rounded to T are the A
            // fragment of an m16n8k16 whose k runs over those 16 keys; V (keys × dims,
            // row-major) is the row-major B, loaded transposed.
            #[unroll]
            for kk in 0..BLOCK_N / 16 {
                #[unroll]
                for d in 0..HEAD_DIM / 16 {
                    let row = stage * BLOCK_N + kk * 16 + lane / 8 % 2 * 8 + lane % 8;
                    let col = d * 16 + lane / 16 * 8;
                    let r = ldmatrix_x4_trans(&v_tile, row * (HEAD_DIM + 8) + col);
                    #[unroll]
                    for i in 0..BLOCK_M / WARPS / 16 {
                        let p0 = s_acc[i * (BLOCK_N / 8) + 2 * kk];
                        let p1 = s_acc[i * (BLOCK_N / 8) + 2 * kk + 1];
                        let a = Vec4::new(
                            pack_pair::<T>(p0.x, p0.y),
                            pack_pair::<T>(p0.z, p0.w),
                            pack_pair::<T>(p1.x, p1.y),
                            pack_pair::<T>(p1.z, p1.w),
                        );
                        let t = i * (HEAD_DIM / 8) + 2 * d;
                        o_acc[t] = crate::gemm_tc::mma_f32::<T>(a, Vec2::new(r.x, r.y), o_acc[t]);
                        o_acc[t + 1] =
                            crate::gemm_tc::mma_f32::<T>(a, Vec2::new(r.z, r.w), o_acc[t + 1]);
                    }
                }
            }
        }
    }
    cp_async_wait(0);

    // Epilogue: one division per row, O rounded once to T, LSE in natural log.
    let total_q = cu_seqlens_q[grid_dim_z()];
    #[unroll]
    for i in 0..BLOCK_M / WARPS / 16 {
        let row = m0 + warp_row + i * 16 + lane / 4;
        let sum_lo = quad_sum(row_sum[2 * i]);
        let sum_hi = quad_sum(row_sum[2 * i + 1]);
        let inv_lo = if sum_lo > 0.0 { 1.0 / sum_lo } else { 0.0 };
        let inv_hi = if sum_hi > 0.0 { 1.0 / sum_hi } else { 0.0 };
        let out_lo = ((start_q + row) * heads + head) * HEAD_DIM + lane % 4 * 2;
        let out_hi = out_lo + 8 * heads * HEAD_DIM;
        #[unroll]
        for d in 0..HEAD_DIM / 8 {
            let a = o_acc[i * (HEAD_DIM / 8) + d];
            if row < q_len {
                o[out_lo + d * 8] = T::from_f32(a.x * inv_lo);
                o[out_lo + d * 8 + 1] = T::from_f32(a.y * inv_lo);
            }
            if row + 8 < q_len {
                o[out_hi + d * 8] = T::from_f32(a.z * inv_hi);
                o[out_hi + d * 8 + 1] = T::from_f32(a.w * inv_hi);
            }
        }
        if lane % 4 == 0 {
            let lse_row = head * total_q + start_q + row;
            if row < q_len {
                lse[lse_row] = log_sum_exp(row_max[2 * i], sum_lo, scale_log2);
            }
            if row + 8 < q_len {
                lse[lse_row + 8] = log_sum_exp(row_max[2 * i + 1], sum_hi, scale_log2);
            }
        }
    }
}

/// How many K/V tiles the query rows `m0..m0 + BLOCK_M` (of `q_len`) need: all
/// `ceil(k_len / BLOCK_N)` of them, or, causal, those up to the last row's diagonal (none
/// when even the last row sees no key).
#[device]
pub fn visible_tiles<const BLOCK_M: u32, const BLOCK_N: u32>(
    m0: u32,
    q_len: u32,
    k_len: u32,
    causal: u32,
    offset: i32,
) -> u32 {
    let all = (k_len + BLOCK_N - 1) / BLOCK_N;
    let last_row = (m0 + BLOCK_M).min(q_len) as i32 - 1;
    let last_key = last_row + offset;
    if causal == 0 {
        all
    } else if last_key < 0 {
        0
    } else {
        all.min(last_key as u32 / BLOCK_N + 1)
    }
}

/// Issues the 16-byte `cp.async` copies of keys `key0..key0 + BLOCK_N` of one sequence (K or
/// V, one KV head: columns `col0..col0 + HEAD_DIM` of rows `ld` elements apart) into stage
/// `stage` of `tile` (rows of HEAD_DIM + 8). Key `j` is row `start + j` of a contiguous
/// tensor when `page_size` is 0, else row `j % page_size` of page
/// `block_table[table0 + j / page_size]` of a paged cache. Keys at or past `k_len` copy no
/// bytes and read as zeros. Every thread of the block calls it.
#[device(types(T = [f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn load_kv<T: Float, const BLOCK_N: u32, const HEAD_DIM: u32, const WARPS: u32>(
    tile: &mut [T],
    src: &[T],
    stage: u32,
    key0: u32,
    k_len: u32,
    start: u32,
    col0: u32,
    ld: u32,
    block_table: &[u32],
    table0: u32,
    page_size: u32,
) {
    let threads = 32 * WARPS;
    #[unroll]
    for l in 0..BLOCK_N * HEAD_DIM / 8 / threads {
        let e = l * threads + thread_idx_x();
        let r = e / (HEAD_DIM / 8);
        let c = e % (HEAD_DIM / 8) * 8;
        let key = key0 + r;
        // Clamped so a key past the end never indexes past the block table (k_len >= 1
        // whenever a tile is loaded).
        let kc = key.min(k_len - 1);
        let mut row = start + kc;
        if page_size != 0 {
            row = block_table[table0 + kc / page_size] * page_size + kc % page_size;
        }
        let bytes = if key < k_len { 16 } else { 0 };
        let at = if key < k_len { row * ld + col0 + c } else { 0 };
        cp_async_16_zfill(
            tile,
            (stage * BLOCK_N + r) * (HEAD_DIM + 8) + c,
            src,
            at,
            bytes,
        );
    }
}

/// `s` where query row `row` sees key `key`, else -inf. `causal`: 0 sees every key, 1 the
/// keys up to the row's diagonal (bottom-right: `key ≤ row + offset`), `1 + w` only the
/// last `w` of those (a sliding window: `row + offset − key < w`, transformers' convention).
#[device]
pub fn masked(s: f32, key: u32, row: u32, k_len: u32, causal: u32, offset: i32) -> f32 {
    let past_end = key >= k_len;
    let above_diagonal = causal != 0 && key as i32 > row as i32 + offset;
    let before_window = causal > 1 && row as i32 + offset - key as i32 >= (causal - 1) as i32;
    if past_end || above_diagonal || before_window {
        f32::NEG_INFINITY
    } else {
        s
    }
}

/// The exp2-domain offset of a row with running max `m`: `m·c`, or 0 while `m` is -inf.
#[device]
pub fn exp2_base(m: f32, scale_log2: f32) -> f32 {
    if m == f32::NEG_INFINITY {
        0.0
    } else {
        m * scale_log2
    }
}

/// The natural-log LSE of a row: ln Σ exp(scale·s) = (m·c)·ln 2 + ln(sum); -inf for a row
/// with no visible key (sum 0).
#[device]
pub fn log_sum_exp(m: f32, sum: f32, scale_log2: f32) -> f32 {
    if sum > 0.0 {
        // ln 2 converts the exp2-domain max back to the natural log.
        m * scale_log2 * 0.693_147_2 + sum.ln()
    } else {
        f32::NEG_INFINITY
    }
}

/// The max over the 4 lanes that share an accumulator row (xor shuffles 1, 2).
#[device]
pub fn quad_max(x: f32) -> f32 {
    let a = x.max(warp_shfl_xor(x, 1u32));
    a.max(warp_shfl_xor(a, 2u32))
}

/// The sum over the 4 lanes that share an accumulator row.
#[device]
pub fn quad_sum(x: f32) -> f32 {
    let a = x + warp_shfl_xor(x, 1u32);
    a + warp_shfl_xor(a, 2u32)
}

/// Two f32 values rounded to f16 and packed (low half first): one A-fragment register.
#[device]
pub fn pack_pair_f16(lo: f32, hi: f32) -> u32 {
    pack_f16x2(f16::from_f32(lo), f16::from_f32(hi))
}

/// Two f32 values rounded to bf16 and packed (low half first).
#[device]
pub fn pack_pair_bf16(lo: f32, hi: f32) -> u32 {
    pack_bf16x2(bf16::from_f32(lo), bf16::from_f32(hi))
}

/// Where lane `lane` reads its part of the Q fragment (m16 rows from `row0`, k-step `kk`)
/// from a shared Q tile with rows of `HEAD_DIM + 8` elements (`ldmatrix.x4`: lanes 0-15
/// address rows 0-15 of the left 8 columns, lanes 16-31 the right 8).
#[device]
pub fn q_frag_at<const HEAD_DIM: u32>(row0: u32, kk: u32, lane: u32) -> u32 {
    (row0 + lane % 16) * (HEAD_DIM + 8) + kk * 16 + lane / 16 * 8
}
