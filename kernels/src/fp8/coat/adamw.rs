//! The fused FP8 AdamW step (COAT's `fp8_adamw_expand` kernel, with the edge cases of
//! [`super`] fixed): f32 master weights `w` and gradients `g`, first and second moments
//! stored as DRE-expanded E4M3 codes with per-group `(scale, k, c)`.
//!
//! Per element, in f32:
//! ```text
//! m = β1·m + (1-β1)·g          v = β2·v + (1-β2)·g²
//! m̂ = m / bc1                  v̂ = v / bc2          (bc1 = 1-β1^t, bc2 = 1-β2^t)
//! w = w - lr·(m̂ / (√v̂ + ε) + wd·w)                  (decoupled, lr-scaled decay)
//! ```
//! then m and v are re-quantized with DRE from the statistics of their *new* values.
//!
//! One warp per 128-element group (lane `l` holds elements `4l..4l+4` of it), so the
//! group's min/max reductions are warp shuffles and the step is a single pass: reads
//! w, g (4 + 4 bytes), the codes (1 + 1) and writes w and the codes back, 20 bytes per
//! element plus 24 bytes of metadata per group moved twice. The metadata is read by lane 0
//! and broadcast with a shuffle, then rewritten by lane 0, so updating it in place is
//! race-free (no other lane touches it; the interpreter's race detector checks this). Tunable: `BLOCK` (groups per block × 32).

use super::super::tensor::load_flat_f32;
use super::{dre_decode4, dre_quantize_group};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// `β·s + (1-β)·x`, lane by lane.
#[device]
pub fn ema4(s: Vec4<f32>, x: Vec4<f32>, beta: f32) -> Vec4<f32> {
    let a = 1.0 - beta;
    Vec4::new(
        beta * s.x + a * x.x,
        beta * s.y + a * x.y,
        beta * s.z + a * x.z,
        beta * s.w + a * x.w,
    )
}

/// One weight's AdamW update.
#[device]
pub fn adamw_one(w: f32, m: f32, v: f32, lr: f32, eps: f32, wd: f32, bc1: f32, bc2: f32) -> f32 {
    let update = (m / bc1) / ((v / bc2).sqrt() + eps) + wd * w;
    w - lr * update
}

/// Parameter `j` of group `g`, read by lane 0 and broadcast to the warp (so the lane that
/// later rewrites it is the only one that touches it). The whole warp must call it.
#[device]
pub fn group_param(meta: &[f32], g: u32, groups: u32, j: u32) -> f32 {
    let mut p = if j == 0 { 0.0f32 } else { 1.0f32 };
    if thread_idx_x() % 32 == 0 && g < groups {
        p = meta[g * 3 + j];
    }
    warp_shfl_idx(p, 0u32)
}

/// Decodes this lane's four values of a state with its group's parameters.
#[device]
pub fn load_state(q: &[Vec4<F8E4M3>], meta: &[f32], slot: u32, g: u32, n: u32) -> Vec4<f32> {
    let groups = (n + 127) / 128;
    let scale = group_param(meta, g, groups, 0);
    let k = group_param(meta, g, groups, 1);
    let c = group_param(meta, g, groups, 2);
    let mut v = Vec4::new(0.0, 0.0, 0.0, 0.0);
    if slot * 4 < n {
        v = dre_decode4(q[slot], scale, k, c);
    }
    v
}

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256]), default(BLOCK = 128))]
pub fn coat_adamw_step<const BLOCK: u32>(
    w: &mut [Vec4<f32>],
    grad: &[Vec4<f32>],
    mq: &mut [Vec4<F8E4M3>],
    m_meta: &mut [f32],
    vq: &mut [Vec4<F8E4M3>],
    v_meta: &mut [f32],
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    bc1: f32,
    bc2: f32,
) {
    let g = block_idx_x() * (BLOCK / 32) + thread_idx_x() / 32;
    let slot = g * 32 + thread_idx_x() % 32;
    let groups = (n + 127) / 128;
    let zero = Vec4::new(0.0, 0.0, 0.0, 0.0);
    let live = slot * 4 < n;
    let m_old = load_state(mq, m_meta, slot, g, n);
    let v_old = load_state(vq, v_meta, slot, g, n);
    let mut m = zero;
    let mut v = zero;
    if live {
        let x = load_flat::<f32>(grad, slot, n);
        m = ema4(m_old, x, beta1);
        let x2 = Vec4::new(x.x * x.x, x.y * x.y, x.z * x.z, x.w * x.w);
        v = ema4(v_old, x2, beta2);
        let p = w[slot];
        w[slot] = Vec4::new(
            adamw_one(p.x, m.x, v.x, lr, eps, wd, bc1, bc2),
            adamw_one(p.y, m.y, v.y, lr, eps, wd, bc1, bc2),
            adamw_one(p.z, m.z, v.z, lr, eps, wd, bc1, bc2),
            adamw_one(p.w, m.w, v.w, lr, eps, wd, bc1, bc2),
        );
    }
    let mc = dre_quantize_group(m, m_meta, g, groups);
    let vc = dre_quantize_group(v, v_meta, g, groups);
    if live {
        mq[slot] = mc;
        vq[slot] = vc;
    }
}
