//! COAT's FP8 optimizer states and mixed-granularity activation quantization (Xi et al.,
//! "COAT: Compressing Optimizer states and Activation for Memory-Efficient FP8 Training",
//! arXiv 2410.19313, ICLR'25; reference code `NVlabs/COAT`,
//! `coat/optimizer/kernels/fp8_adamw_expand_cuda_kernel.cu`).
//!
//! # Dynamic range expansion (DRE)
//!
//! Adam's moments have a small dynamic range per 128-element group (max/min ≈ 1e1..1e3)
//! compared with E4M3's, so plain per-group scaling wastes most of the format. DRE maps each
//! value through `f(x) = sign(x)·|x|^k` first, with `k` chosen per group so the expanded
//! range fills the format. For a group of 128 consecutive elements of the flat tensor:
//!
//! - `M = max|x|`, `m = min|x|` over the group's *non-zero* magnitudes;
//! - `k = floor(16 · log2(R_target) / log2(M/m)) / 16`, clamped to `[1/16, 32]` (COAT's
//!   formula, `k = log(R_fp8) / log(R_group)` rounded down to a multiple of 1/16, with COAT's
//!   target range `R_target = 448²/2`: the expanded values then span
//!   `[448·2/448², 448] = [2^-7.8, 448]`, down into E4M3's subnormals but above 2^-9);
//!   `log2(M/m)` is computed as `log2 M - log2 m` so it cannot overflow;
//! - expansion around the group's geometric-mean magnitude `c = √M·√m`:
//!   `y = sign(x)·(|x|/c)^k`, so the expanded values stay near 1 in f32 whatever `k`;
//! - `scale = (M/c)^k / 448`, codes `q = E4M3(y / scale)` (RNE, satfinite);
//! - per group three f32s in `meta[3g..3g+3] = (scale, k, c)` (COAT's 12 bytes of metadata).
//!
//! The inverse is `x̂ = sign(q)·c·(|q|·scale)^(1/k)`. Powers are `exp2(k·log2 t)`, with
//! `log2 t = ln t · log2(e)`.
//!
//! Edge cases COAT's kernel gets wrong, handled here:
//! - `M == m` (all non-zero magnitudes equal, or a single non-zero): `k = 1` (COAT divides
//!   by `log2 1 = 0`);
//! - all-zero group: `scale = 0, k = 1, c = 1`, every code 0, dequantizes to exactly 0
//!   (COAT's `+1e-30` gives ~1e-30);
//! - zeros inside a group are skipped by the min (COAT lets them leak in, giving `m ≈ 1e-30`
//!   and a useless `k`), quantize to code ±0 and dequantize to exactly ±0;
//! - values of a group's range that fall below half E4M3's smallest subnormal after
//!   expansion quantize to 0 and come back as 0 (as with plain scaling).
//!
//! NaN or ±Inf inputs are not supported (an optimizer state holding them is already lost).
//!
//! # Layout and kernels
//!
//! Flat tensors of `n` elements padded to a multiple of 4 (`Vec4` accesses); group `g` covers
//! elements `128g..128g+128` and is handled by one warp (lane `l` holds elements
//! `128g+4l..128g+4l+4`), so its min/max reductions are five xor shuffles each and every
//! kernel is a single pass. See [`dre`] and [`adamw`].

pub use family::kernels;

pub mod activation;
pub mod adamw;
pub mod dre;
mod family;
pub mod host;
pub mod reference;

use super::amax4;
use warpforge_dsl::prelude::*;
use warpforge_macros::device;

/// Elements per DRE group (COAT's `qgroup_size`).
pub const GROUP: usize = 128;
/// `log2(448² / 2)`: the dynamic range DRE expands a group to (COAT's target).
pub const LOG2_TARGET: f32 = 16.614_71;
/// `log2(e)`, for `log2 t = ln t · LOG2_E`.
pub const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// Smallest and largest expansion exponents.
pub const K_MIN: f32 = 0.0625;
pub const K_MAX: f32 = 32.0;

/// `log2 t` for `t > 0`.
#[device]
pub fn log2_of(t: f32) -> f32 {
    t.ln() * 1.442695
}

/// Min over the warp (every lane gets it).
#[device]
pub fn warp_min(v: f32) -> f32 {
    let mut m = v;
    #[unroll]
    for k in 0..5u32 {
        m = m.min(warp_shfl_xor(m, 16u32 >> k));
    }
    m
}

/// Max over the warp (every lane gets it).
#[device]
pub fn warp_max(v: f32) -> f32 {
    let mut m = v;
    #[unroll]
    for k in 0..5u32 {
        m = m.max(warp_shfl_xor(m, 16u32 >> k));
    }
    m
}

/// Smallest non-zero magnitude of the four lanes (+Inf when all are zero).
#[device]
pub fn amin_nonzero4(v: Vec4<f32>) -> f32 {
    let inf = f32::INFINITY;
    let a = if v.x != 0.0 { v.x.abs() } else { inf };
    let b = if v.y != 0.0 { v.y.abs() } else { inf };
    let c = if v.z != 0.0 { v.z.abs() } else { inf };
    let d = if v.w != 0.0 { v.w.abs() } else { inf };
    a.min(b).min(c.min(d))
}

/// The expansion exponent of a group with non-zero magnitudes in `[amin, amax]`.
#[device]
pub fn dre_k(amax: f32, amin: f32) -> f32 {
    let lr = log2_of(amax) - log2_of(amin);
    let mut k = 1.0f32;
    if amax > 0.0 && lr > 0.0 {
        k = (16.61471 / lr * 16.0).floor() / 16.0;
        k = k.max(0.0625).min(32.0);
    }
    k
}

/// The expansion centre: the geometric mean `√M·√m` (1 for an all-zero group).
#[device]
pub fn dre_center(amax: f32, amin: f32) -> f32 {
    if amax > 0.0 {
        amax.sqrt() * amin.sqrt()
    } else {
        1.0
    }
}

/// `(|x|/c)^k` for `|x| > 0`.
#[device]
pub fn dre_expand(ax: f32, c: f32, k: f32) -> f32 {
    (k * log2_of(ax / c)).exp2()
}

/// The dequantization scale `(M/c)^k / 448` (0 for an all-zero group).
#[device]
pub fn dre_scale(amax: f32, c: f32, k: f32) -> f32 {
    if amax > 0.0 {
        dre_expand(amax, c, k) / 448.0
    } else {
        0.0
    }
}

/// The E4M3 code of `x` in a group with parameters (`scale`, `k`, `c`).
#[device]
pub fn dre_encode(x: f32, scale: f32, k: f32, c: f32) -> F8E4M3 {
    let mut y = 0.0f32;
    if x != 0.0 && scale > 0.0 {
        let e = dre_expand(x.abs(), c, k) / scale;
        y = if x < 0.0 { -e } else { e };
    }
    F8E4M3::from_f32(y)
}

/// The inverse of [`fn@dre_encode`]: `sign(q)·c·(|q|·scale)^(1/k)`; code ±0 gives exactly 0.
#[device]
pub fn dre_decode(code: F8E4M3, scale: f32, k: f32, c: f32) -> f32 {
    let f = code.to_f32();
    let t = f.abs() * scale;
    let mut x = 0.0f32;
    if t > 0.0 {
        let e = c * (log2_of(t) / k).exp2();
        x = if f < 0.0 { -e } else { e };
    }
    x
}

/// Encodes four lanes.
#[device]
pub fn dre_encode4(v: Vec4<f32>, scale: f32, k: f32, c: f32) -> Vec4<F8E4M3> {
    Vec4::new(
        dre_encode(v.x, scale, k, c),
        dre_encode(v.y, scale, k, c),
        dre_encode(v.z, scale, k, c),
        dre_encode(v.w, scale, k, c),
    )
}

/// Decodes four lanes.
#[device]
pub fn dre_decode4(q: Vec4<F8E4M3>, scale: f32, k: f32, c: f32) -> Vec4<f32> {
    Vec4::new(
        dre_decode(q.x, scale, k, c),
        dre_decode(q.y, scale, k, c),
        dre_decode(q.z, scale, k, c),
        dre_decode(q.w, scale, k, c),
    )
}

/// Quantizes the warp's group (this lane holds `v`) and, from lane 0, writes its parameters
/// to `meta[3g..3g+3]`; returns this lane's codes. The whole warp must call it.
#[device]
pub fn dre_quantize_group(v: Vec4<f32>, meta: &mut [f32], g: u32, groups: u32) -> Vec4<F8E4M3> {
    let amax = warp_max(amax4(v));
    let amin = warp_min(amin_nonzero4(v));
    let k = dre_k(amax, amin);
    let c = dre_center(amax, amin);
    let scale = dre_scale(amax, c, k);
    if thread_idx_x() % 32 == 0 && g < groups {
        meta[g * 3] = scale;
        meta[g * 3 + 1] = k;
        meta[g * 3 + 2] = c;
    }
    dre_encode4(v, scale, k, c)
}
