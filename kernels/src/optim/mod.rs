//! Optimizers over every parameter at once: LAMB as a fused multi-tensor step
//! (`lamb_update`, `lamb_trust`, `lamb_apply`) and AdamW (`adamw_step`), f32 master
//! weights, gradients and moments. (FP8 moments with dynamic range expansion are
//! [`crate::fp8::coat`]'s AdamW.)
//!
//! # Layout: one flat buffer, a tensor table
//!
//! Weights `w`, gradients `g` and the moments `m`, `v` are each one flat f32 buffer; tensor
//! `k` occupies `offset_k .. offset_k + len_k`, with every offset a multiple of 4 and the
//! lanes between a tensor's end and the next offset zero in all four buffers
//! ([`host::ParamTable`] lays them out), so the kernels move `Vec4`s and padding lanes stay
//! zero (zero gradient and moments give a zero update). The work is cut into chunks of
//! `4·BLOCK·VECS` elements that never straddle two tensors; the device tables are
//! `tensors[4k .. 4k + 4] = (offset, len, flags, first chunk)` and `chunk_tensor[c]`.
//! Flag bit 0 ([`host::ADAPT`]) marks a tensor that gets weight decay and (LAMB) the trust
//! ratio; biases and norm weights leave it clear, as the reference LAMB excludes them.
//!
//! # Semantics, per element in f32 (step `t ≥ 1`, `bc1 = 1 − β1^t`, `bc2 = 1 − β2^t`)
//!
//! ```text
//! m = β1·m + (1 − β1)·g        v = β2·v + (1 − β2)·g²
//! r = (m / bc1) / (√(v / bc2) + ε)
//! AdamW:  w = w − lr·(r + λ·w)                          (λ = 0 for excluded tensors)
//! LAMB:   u = r + λ·w;  τ = ‖w‖/‖u‖ per tensor (1 if either is 0, or the tensor is
//!         excluded);  w = w − lr·τ·u                     (TF-Addons' `lamb.py`, φ = id)
//! ```
//! (the AdamW lane is [`fn@adamw_one`], shared with the FP8 AdamW).
//!
//! # The three LAMB stages (deterministic: no atomics)
//!
//! 1. `lamb_update`, one block per chunk: updates `m`, `v`, overwrites the gradient with `u`
//!    (the step consumes the gradient), and writes the chunk's `Σw²` and `Σu²` to
//!    `partials[2c ..]` (block reduction: shuffles, then shared memory).
//! 2. `lamb_trust`, one block per tensor: sums its chunks' partials in a fixed order and
//!    writes `τ` to `ratio[k]`.
//! 3. `lamb_apply`, one block per chunk: `w −= lr·τ_k·u`.
//!
//! # Roofline
//!
//! Memory-bound. AdamW: one pass reading `w, g, m, v` and writing `w, m, v`: 28 bytes per
//! parameter. LAMB: stage 1 reads 16 and writes 12 bytes, stage 3 reads 8 and writes 4:
//! 40 bytes per parameter (stage 2 reads 8 bytes per chunk). ~15 FLOPs and one `sqrt` per
//! parameter. Tunables (`lamb_update`, `lamb_apply`, `adamw_step`): `BLOCK` ∈ {128, 256,
//! 512}, `VECS` ∈ {1, 2, 4} (`Vec4`s per thread per chunk), default 256 × 2 (2048-element
//! chunks); `lamb_trust`: `BLOCK` ∈ {32, 128, 256}, default 128.

pub mod clip;
mod family;
pub mod host;

pub use family::kernels;

use crate::fp8::coat::adamw::{adamw_one, ema4};
use crate::norm::sum_sq4;
use crate::reduce::block_sum;
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// The chunk's tensor entry `field` (0 offset, 1 len, 2 flags, 3 first chunk).
#[device]
pub fn tensor_field(tensors: &[u32], t: u32, field: u32) -> u32 {
    tensors[t * 4 + field]
}

/// The `Vec4` range `[first, end)` of chunk `c` of `4·CHUNK_VECS` elements.
#[device]
pub fn chunk_range(tensors: &[u32], t: u32, c: u32, chunk_vecs: u32) -> Vec2<u32> {
    let offset = tensor_field(tensors, t, 0) / 4;
    let end = offset + (tensor_field(tensors, t, 1) + 3) / 4;
    let first = offset + (c - tensor_field(tensors, t, 3)) * chunk_vecs;
    Vec2::new(first, end)
}

/// `(m / bc1) / (√(v / bc2) + ε) + λ·w`, one lane.
#[device]
pub fn lamb_direction(w: f32, m: f32, v: f32, eps: f32, wd: f32, bc1: f32, bc2: f32) -> f32 {
    (m / bc1) / ((v / bc2).sqrt() + eps) + wd * w
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2))]
#[allow(clippy::too_many_arguments)]
pub fn lamb_update<const BLOCK: u32, const VECS: u32>(
    w: &[Vec4<f32>],
    grad: &mut [Vec4<f32>],
    m: &mut [Vec4<f32>],
    v: &mut [Vec4<f32>],
    tensors: &[u32],
    chunk_tensor: &[u32],
    partials: &mut [f32],
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bc1: f32,
    bc2: f32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let c = block_idx_x();
    let t = chunk_tensor[c];
    let range = chunk_range(tensors, t, c, BLOCK * VECS);
    let wd = if tensor_field(tensors, t, 2) % 2 == 1 {
        weight_decay
    } else {
        0.0f32
    };
    let mut w_sq = 0.0f32;
    let mut u_sq = 0.0f32;
    #[unroll]
    for j in 0..VECS {
        let i = range.x + j * BLOCK + thread_idx_x();
        if i < range.y {
            let wi = w[i];
            let g = grad[i];
            let mi = ema4(m[i], g, beta1);
            let vi = ema4(
                v[i],
                Vec4::new(g.x * g.x, g.y * g.y, g.z * g.z, g.w * g.w),
                beta2,
            );
            m[i] = mi;
            v[i] = vi;
            let u = Vec4::new(
                lamb_direction(wi.x, mi.x, vi.x, eps, wd, bc1, bc2),
                lamb_direction(wi.y, mi.y, vi.y, eps, wd, bc1, bc2),
                lamb_direction(wi.z, mi.z, vi.z, eps, wd, bc1, bc2),
                lamb_direction(wi.w, mi.w, vi.w, eps, wd, bc1, bc2),
            );
            grad[i] = u;
            w_sq += sum_sq4(wi);
            u_sq += sum_sq4(u);
        }
    }
    let w_total = block_sum::<BLOCK>(w_sq, &mut scratch);
    sync_threads();
    let u_total = block_sum::<BLOCK>(u_sq, &mut scratch);
    if thread_idx_x() == 0 {
        partials[2 * c] = w_total;
        partials[2 * c + 1] = u_total;
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [32, 128, 256]), default(BLOCK = 128))]
pub fn lamb_trust<const BLOCK: u32>(
    partials: &[f32],
    tensors: &[u32],
    ratio: &mut [f32],
    tensor_count: u32,
    chunk_count: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let t = block_idx_x();
    let first = tensor_field(tensors, t, 3);
    let end = if t + 1 < tensor_count {
        tensor_field(tensors, t + 1, 3)
    } else {
        chunk_count
    };
    let mut w_sq = 0.0f32;
    let mut u_sq = 0.0f32;
    let mut c = first + thread_idx_x();
    while c < end {
        w_sq += partials[2 * c];
        u_sq += partials[2 * c + 1];
        c += BLOCK;
    }
    let w_total = block_sum::<BLOCK>(w_sq, &mut scratch);
    sync_threads();
    let u_total = block_sum::<BLOCK>(u_sq, &mut scratch);
    if thread_idx_x() == 0 {
        let adapt = tensor_field(tensors, t, 2) % 2 == 1;
        ratio[t] = if adapt && w_total > 0.0 && u_total > 0.0 {
            w_total.sqrt() / u_total.sqrt()
        } else {
            1.0
        };
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2))]
pub fn lamb_apply<const BLOCK: u32, const VECS: u32>(
    w: &mut [Vec4<f32>],
    update: &[Vec4<f32>],
    tensors: &[u32],
    chunk_tensor: &[u32],
    ratio: &[f32],
    lr: f32,
) {
    let c = block_idx_x();
    let t = chunk_tensor[c];
    let range = chunk_range(tensors, t, c, BLOCK * VECS);
    let step = lr * ratio[t];
    #[unroll]
    for j in 0..VECS {
        let i = range.x + j * BLOCK + thread_idx_x();
        if i < range.y {
            let wi = w[i];
            let u = update[i];
            w[i] = Vec4::new(
                wi.x - step * u.x,
                wi.y - step * u.y,
                wi.z - step * u.z,
                wi.w - step * u.w,
            );
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], VECS = [1, 2, 4]),
         default(BLOCK = 256, VECS = 2))]
#[allow(clippy::too_many_arguments)]
pub fn adamw_step<const BLOCK: u32, const VECS: u32>(
    w: &mut [Vec4<f32>],
    grad: &[Vec4<f32>],
    m: &mut [Vec4<f32>],
    v: &mut [Vec4<f32>],
    tensors: &[u32],
    chunk_tensor: &[u32],
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bc1: f32,
    bc2: f32,
) {
    let c = block_idx_x();
    let t = chunk_tensor[c];
    let range = chunk_range(tensors, t, c, BLOCK * VECS);
    let wd = if tensor_field(tensors, t, 2) % 2 == 1 {
        weight_decay
    } else {
        0.0f32
    };
    #[unroll]
    for j in 0..VECS {
        let i = range.x + j * BLOCK + thread_idx_x();
        if i < range.y {
            let wi = w[i];
            let g = grad[i];
            let mi = ema4(m[i], g, beta1);
            let vi = ema4(
                v[i],
                Vec4::new(g.x * g.x, g.y * g.y, g.z * g.z, g.w * g.w),
                beta2,
            );
            m[i] = mi;
            v[i] = vi;
            w[i] = Vec4::new(
                adamw_one(wi.x, mi.x, vi.x, lr, eps, wd, bc1, bc2),
                adamw_one(wi.y, mi.y, vi.y, lr, eps, wd, bc1, bc2),
                adamw_one(wi.z, mi.z, vi.z, lr, eps, wd, bc1, bc2),
                adamw_one(wi.w, mi.w, vi.w, lr, eps, wd, bc1, bc2),
            );
        }
    }
}
