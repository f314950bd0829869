//! Fused softmax cross-entropy over the vocabulary, forward and backward in one kernel,
//! written once over the logits' element type `T ∈ {f32, f16, bf16}` (instances
//! `cross_entropy_{T}`).
//!
//! # Semantics
//!
//! For each row `r` of `logits` (`cols` = vocabulary values) with target `t = targets[r]`:
//! - `loss[r] = lse − x_t` in f32, with `lse = m + ln Σ exp(x − m)` and `m` the row max
//!   (statistics in f32 on values widened exactly from `T`, as fused kernels such as
//!   Liger's and llm.c's upcast the logits);
//! - `dlogits[r, c] = T((exp(x_c − m) / Σ − [c = t]) · grad_scale)`: the gradient of
//!   `grad_scale · loss[r]`, rounded to `T` once. For the mean loss over the `N` rows whose
//!   target counts, `grad_scale = dloss / N` ([`host::mean_grad_scale`] counts `N`).
//!
//! A row whose target is `ignore_index` (PyTorch's `-100` by convention) contributes
//! nothing: `loss[r] = 0` and its gradient row is 0. A target outside `[0, cols)` is a
//! caller error that [`host::mean_grad_scale`] reports; the kernel treats such a row as
//! ignored rather than read out of bounds.
//!
//! # Layout
//!
//! `logits` and `dlogits` are `rows` rows of `ld` elements, `ld` a multiple of 4 and
//! `cols ≤ ld` (a dense `[tokens, vocab]` tensor with the vocabulary a multiple of 4 — 32000,
//! 128256 — already is), so rows move as `Vec4<T>`. The lanes past `cols` in a row's last
//! `Vec4` are never used as input (masked to −∞) and are written as 0. `targets` holds one
//! `i32` per row. Element indices stay below 2^32.
//!
//! # Work decomposition
//!
//! One block per row. Pass 1 reads the row once, each thread striding over its `Vec4`s by
//! `BLOCK` (coalesced) and keeping a running `(max, Σ exp(x − max))` (online softmax: one
//! rescale per `Vec4` whose max raises the running one), merged across the warp with xor
//! shuffles ([`fn@warp_merge`]) and across warps in shared memory ([`fn@block_merge`]). Pass 2
//! re-reads the row (from L2: a 128256-wide bf16 row is 250 KiB, and the rows in flight on
//! all SMs fit an H100's 50 MiB L2) and writes the gradient, so the probabilities are never
//! stored. Ignored rows skip pass 1.
//!
//! # Roofline
//!
//! Memory-bound: per element, one DRAM read of the logit and one write of the gradient,
//! `2·sizeof(T)` bytes (4 for bf16), plus 8 bytes per row (target, loss); about 6 FLOPs and
//! two `exp`s per element (one per pass). At 128256 × 4096 tokens in bf16 that is 2.1 GB,
//! about 0.6 ms at 3.35 TB/s (H100 SXM).
//!
//! Tunables: `BLOCK` ∈ {128, 256, 512, 1024} threads per row; default 512 (63 `Vec4`s per
//! thread at a 128256 vocabulary, 16 warps to hide the latency of one row per SM slot).

mod family;
pub mod host;

pub use family::kernels;

use crate::fp8::{narrow4_bf16, narrow4_f16, narrow4_f32, widen4_bf16, widen4_f16, widen4_f32};
use crate::softmax::{rescale, warp_merge};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// Lane `i` (0 … 3) of `v`.
#[device]
pub fn lane4(v: Vec4<f32>, i: u32) -> f32 {
    if i == 0 {
        v.x
    } else if i == 1 {
        v.y
    } else if i == 2 {
        v.z
    } else {
        v.w
    }
}

/// `v` (the lanes at columns `first`, `first + 1`, …) with the lanes at columns `≥ cols`
/// replaced by −∞: they neither raise the max nor add to the sum, and a NaN stored there
/// cannot leak in.
#[device]
pub fn mask_neg_inf4(v: Vec4<f32>, first: u32, cols: u32) -> Vec4<f32> {
    let ninf = f32::NEG_INFINITY;
    Vec4::new(
        if first < cols { v.x } else { ninf },
        if first + 1 < cols { v.y } else { ninf },
        if first + 2 < cols { v.z } else { ninf },
        if first + 3 < cols { v.w } else { ninf },
    )
}

/// The largest of the four lanes.
#[device]
pub fn max4(v: Vec4<f32>) -> f32 {
    v.x.max(v.y).max(v.z.max(v.w))
}

/// `Σ exp(v − m)` over the four lanes.
#[device]
pub fn sum_exp4(v: Vec4<f32>, m: f32) -> f32 {
    (v.x - m).exp() + (v.y - m).exp() + (v.z - m).exp() + (v.w - m).exp()
}

/// One gradient lane: `(exp(x − m) · inv_sum − [col = target]) · scale`.
#[device]
pub fn grad_lane(x: f32, m: f32, inv_sum: f32, col: u32, target: u32, scale: f32) -> f32 {
    let hit = if col == target { 1.0f32 } else { 0.0f32 };
    ((x - m).exp() * inv_sum - hit) * scale
}

/// Merges each thread's running `(max, sum relative to max)` over the block (`BLOCK` a
/// multiple of 32, at most 1024); every thread gets the merged pair. `max_sh` and `sum_sh`
/// are shared memory with 32 elements each; every thread of the block must call this.
#[device]
pub fn block_merge<const BLOCK: u32>(
    state: Vec2<f32>,
    max_sh: &mut [f32],
    sum_sh: &mut [f32],
) -> Vec2<f32> {
    let lane = thread_idx_x() % 32;
    let warp = thread_idx_x() / 32;
    let per_warp = warp_merge(state);
    if lane == 0 {
        max_sh[warp] = per_warp.x;
        sum_sh[warp] = per_warp.y;
    }
    sync_threads();
    if warp == 0 {
        let mine = if lane < BLOCK / 32 {
            Vec2::new(max_sh[lane], sum_sh[lane])
        } else {
            Vec2::new(f32::NEG_INFINITY, 0.0)
        };
        let total = warp_merge(mine);
        if lane == 0 {
            max_sh[0] = total.x;
            sum_sh[0] = total.y;
        }
    }
    sync_threads();
    Vec2::new(max_sh[0], sum_sh[0])
}

/// The logit of column `target` of the row starting at `Vec4` `base`, widened.
#[device(types(T = [f32, f16, bf16]))]
pub fn target_logit<T: Float>(logits: &[Vec4<T>], base: u32, target: u32) -> f32 {
    lane4(widen4::<T>(logits[base + target / 4]), target % 4)
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512, 1024]), default(BLOCK = 512),
         types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy<T: Float, const BLOCK: u32>(
    logits: &[Vec4<T>],
    targets: &[i32],
    loss: &mut [f32],
    dlogits: &mut [Vec4<T>],
    cols: u32,
    ld: u32,
    ignore_index: i32,
    grad_scale: f32,
) {
    let mut max_sh = shared_array::<f32>(32);
    let mut sum_sh = shared_array::<f32>(32);
    let row = block_idx_x();
    let t = targets[row];
    let active = t != ignore_index && t >= 0 && (t as u32) < cols;
    let target = if active { t as u32 } else { 0u32 };
    let vecs = (cols + 3) / 4;
    let base = row * (ld / 4);
    // Pass 1: the row's running max and sum of exponentials (ignored rows skip it).
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    let mut v = if active { thread_idx_x() } else { vecs };
    while v < vecs {
        let x = mask_neg_inf4(widen4::<T>(logits[base + v]), v * 4, cols);
        let m_new = m.max(max4(x));
        s = s * rescale(m, m_new) + sum_exp4(x, m_new);
        m = m_new;
        v += BLOCK;
    }
    let total = block_merge::<BLOCK>(Vec2::new(m, s), &mut max_sh, &mut sum_sh);
    if thread_idx_x() == 0 {
        loss[row] = if active {
            total.x + total.y.ln() - target_logit::<T>(logits, base, target)
        } else {
            0.0
        };
    }
    // Pass 2: the gradient, written in T (zeros for an ignored row and past `cols`).
    let inv_sum = 1.0 / total.y;
    let mut v2 = thread_idx_x();
    while v2 < vecs {
        let c = v2 * 4;
        let mut g = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        if active {
            let x = mask_neg_inf4(widen4::<T>(logits[base + v2]), c, cols);
            g = Vec4::new(
                grad_lane(x.x, total.x, inv_sum, c, target, grad_scale),
                grad_lane(x.y, total.x, inv_sum, c + 1, target, grad_scale),
                grad_lane(x.z, total.x, inv_sum, c + 2, target, grad_scale),
                grad_lane(x.w, total.x, inv_sum, c + 3, target, grad_scale),
            );
        }
        dlogits[base + v2] = narrow4::<T>(g);
        v2 += BLOCK;
    }
}
