//! Per-tensor FP8 scaling: one scale for the whole (flat) tensor. Every kernel is generic
//! over the input `T ∈ {f32, f16, bf16}` (suffix `_f32`, `_f16`, `_bf16`) and the quantizers
//! over the format `Q ∈ {E4M3, E5M2}` (suffix `_e4m3`, `_e5m2`); inputs are widened to f32
//! exactly, then the module's f32 formulas apply. Bytes per element below are "f32 / 16-bit".
//!
//! - `fp8_amax_{T}`: the tensor's amax, as the bit pattern of a non-negative f32 in
//!   `amax_bits[0]` (zero it first); blocks reduce in registers, shuffles and shared memory,
//!   then one `atomic_max` per block on the bits (non-negative floats order like their bits).
//!   Reads 4 / 2 bytes per element.
//! - `fp8_quantize_tensor_{T}_{Q}`: `s = scale_of(amax)` on the device (no host round trip),
//!   `scale[0] = s`, `q = satfinite_rne(x / s)`. Reads 4 / 2 bytes and writes 1 per element;
//!   with the amax pass, per-tensor current scaling moves 9 / 5 bytes per element in 2
//!   launches.
//! - `fp8_quantize_delayed_{T}_{Q}`: the single-launch (delayed scaling) variant: casts with
//!   a given scale `scale[0]` (from an earlier amax) and reduces this tensor's amax into
//!   `amax_bits[0]` in the same pass: 5 / 3 bytes per element, one launch.
//!
//! `x` is a flat tensor of `n` elements padded to a multiple of 4 (`Vec4<T>` loads: 128 bits
//! for f32, 64 bits for f16/bf16, the DSL having no wider vector; `Vec4<Q>` stores, 32 bits).
//! Tunables: `BLOCK` (threads per block) and `ITEMS` (`Vec4`s per thread, strided by the
//! block so each warp access is contiguous; more items mean more loads in flight and fewer
//! atomics). Element indices must stay below 2^31.

use super::{amax4, block_max, mask4, scale_of};
use super::{cast4_e4m3, cast4_e5m2, widen4_bf16, widen4_f16, widen4_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// The four lanes divided by `s` (a true f32 division per lane: the documented formula).
#[device]
pub fn divide4(v: Vec4<f32>, s: f32) -> Vec4<f32> {
    Vec4::new(v.x / s, v.y / s, v.z / s, v.w / s)
}

/// Vec4 `v` of a flat tensor of `n` elements, widened to f32, the lanes past `n` zeroed.
#[device(types(T = [f32, f16, bf16]))]
pub fn load_flat<T: Float>(x: &[Vec4<T>], v: u32, n: u32) -> Vec4<f32> {
    mask4(widen4::<T>(x[v]), v * 4, n)
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 2, 4]),
         default(BLOCK = 256, ITEMS = 2), types(T = [f32, f16, bf16]))]
pub fn fp8_amax<T: Float, const BLOCK: u32, const ITEMS: u32>(
    x: &[Vec4<T>],
    amax_bits: &mut [u32],
    n: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    let mut m = 0.0f32;
    #[unroll]
    for k in 0..ITEMS {
        let v = base + k * BLOCK;
        if v * 4 < n {
            m = m.max(amax4(load_flat::<T>(x, v, n)));
        }
    }
    let total = block_max::<BLOCK>(m, &mut scratch);
    if thread_idx_x() == 0 {
        atomic_max(amax_bits, 0, total.to_bits());
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 2, 4]),
         default(BLOCK = 256, ITEMS = 2), types(T = [f32, f16, bf16], Q = [F8E4M3, F8E5M2]))]
pub fn fp8_quantize_tensor<T: Float, Q: Fp8, const BLOCK: u32, const ITEMS: u32>(
    x: &[Vec4<T>],
    amax_bits: &[u32],
    q: &mut [Vec4<Q>],
    scale: &mut [f32],
    n: u32,
) {
    let s = scale_of(f32::from_bits(amax_bits[0]), Q::max_finite());
    if block_idx_x() == 0 && thread_idx_x() == 0 {
        scale[0] = s;
    }
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    #[unroll]
    for k in 0..ITEMS {
        let v = base + k * BLOCK;
        if v * 4 < n {
            q[v] = cast4::<Q>(divide4(load_flat::<T>(x, v, n), s));
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [128, 256, 512], ITEMS = [1, 2, 4]),
         default(BLOCK = 256, ITEMS = 2), types(T = [f32, f16, bf16], Q = [F8E4M3, F8E5M2]))]
pub fn fp8_quantize_delayed<T: Float, Q: Fp8, const BLOCK: u32, const ITEMS: u32>(
    x: &[Vec4<T>],
    scale: &[f32],
    q: &mut [Vec4<Q>],
    amax_bits: &mut [u32],
    n: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let s = scale[0];
    let base = block_idx_x() * BLOCK * ITEMS + thread_idx_x();
    let mut m = 0.0f32;
    #[unroll]
    for k in 0..ITEMS {
        let v = base + k * BLOCK;
        if v * 4 < n {
            let a = load_flat::<T>(x, v, n);
            m = m.max(amax4(a));
            q[v] = cast4::<Q>(divide4(a, s));
        }
    }
    let total = block_max::<BLOCK>(m, &mut scratch);
    if thread_idx_x() == 0 {
        atomic_max(amax_bits, 0, total.to_bits());
    }
}
