//! Rotary position embeddings (RoPE) applied in place to packed Q and K: `rope_{T}`, T ∈
//! {f32, f16, bf16}, and the host side that turns a model config into frequencies
//! ([`RopeScaling`], [`Rope`]).
//!
//! # Semantics: Hugging Face's Llama rotate-half, rounding for rounding
//!
//! Q is `[tokens, q_heads, head_dim]` and K `[tokens, k_heads, head_dim]` (row-major, packed:
//! the layouts of [`crate::attention`]); token `t` is rotated by the angle of position
//! `positions[t]` (u32 — packed prompts restart at 0, or at a sequence's cached length,
//! [`crate::prepack::pack_prompts`]). The first `rotary_dim` dims of each head rotate in the
//! rotate-half layout Hugging Face stores Llama weights in: dim `i` pairs with `i + r/2`
//! (`r = rotary_dim`); the dims past `r` (partial rotary) are left as they are. With
//! `c = T(cos θ_i)`, `s = T(sin θ_i)`, `θ_i = f32(p · inv_freq[i])`, for `i < r/2`:
//!
//! ```text
//! x'[i]       = T( T(x[i] · c)       − T(x[i + r/2] · s) )
//! x'[i + r/2] = T( T(x[i + r/2] · c) + T(x[i] · s) )
//! ```
//!
//! which is `apply_rotary_pos_emb`'s `q * cos + rotate_half(q) * sin` with every tensor op
//! rounded to T as PyTorch rounds it (each product and sum computed in f32 — exact for two
//! 16-bit values — then rounded once; negation is exact). For T = f32 each op is one f32
//! rounding. The kernel is therefore exact against the host reference ([`host::reference`],
//! f64 arithmetic rounded at the same points): tolerance 0.
//!
//! # Where cos and sin come from (what precision we match)
//!
//! The DSL has no `sin`/`cos`, and a table matches Hugging Face more closely than any
//! in-kernel approximation: [`Rope::table`] holds, per position `p < rows`, `rotary_dim`
//! f32s — `cos θ_0..cos θ_{r/2−1}` then `sin θ_0..sin θ_{r/2−1}` — with `θ_i` the f32
//! product `p · inv_freq[i]` (HF's f32 `inv_freq @ position_ids`, TF32 off) and cos/sin
//! evaluated in f64 and rounded once to f32 (torch's f32 `cos`/`sin` are within 1–2 ulp of
//! that; after the rounding to bf16/f16 the two differ only where the f32 value lies within
//! those ulps of a rounding boundary). `inv_freq` follows HF's f32 steps exactly
//! ([`Rope::inv_freq`]): `1 / base^(f32(2i)/r)` and the linear / Llama-3 adjustments in f32,
//! the power evaluated in f64 and rounded once (torch's f32 `pow` is within 1 ulp of that).
//! The table is the layout vLLM's `cos_sin_cache` uses; the runtime builds it once per
//! model for the positions it serves (4·r bytes per position: 64 MiB for 131072 positions
//! at r = 128 — build it for the context length actually served). A position at or past
//! the table's `rows` writes NaN into that head's rotated dims rather than read out of
//! bounds, so a short table shows up in the output.
//!
//! # Layout contract
//!
//! `head_dim % 8 == 0` and `rotary_dim` a positive multiple of 16 (≤ head_dim): the kernel
//! moves eight-element units ([`units`]) as 128-bit words, so each rotary half is whole
//! units. Every Llama (64, 128), Mistral, Qwen and Phi head qualifies. Indices stay below
//! 2^32 (tokens · heads · head_dim / 8).
//!
//! # Work, roofline, tunables
//!
//! One work item is one unit pair (8 dims of the first half and their 8 partners) of one
//! (token, head): `tokens · (q_heads + k_heads) · rotary_dim / 16` items, numbered token by
//! token, head by head, so a warp's 16-byte accesses cover whole contiguous half-rows.
//! In place: Q and K are read and written once, `2 · (q_heads + k_heads) · rotary_dim ·
//! sizeof(T)` bytes per token (Llama-3 8B, bf16: 20 KiB), plus the table row (`4 ·
//! rotary_dim` bytes, shared by the token's heads through L1/L2) and the position (4 bytes);
//! 6 FLOPs per element. Memory-bound: the sm_80 listing of the default config has about 270
//! SASS instructions per work item (64 bytes of Q/K moved; the per-op roundings to T, an
//! F2FP and a PRMT each, dominate), ~4 per byte, where an A100 or H100 issues ~9–10 per
//! byte of DRAM bandwidth. Tunables: `BLOCK` (threads per block: 64 … 512) and
//! `UNITS` (items per thread, strided by `BLOCK` so each step stays coalesced: 1, 2, 4);
//! default `BLOCK = 256, UNITS = 2`.
//!
//! Passing `k_heads = 0` rotates Q only: [`crate::prepack`]'s page writer rotates K on its
//! way into the paged cache (one pass over K instead of two).

pub mod backward;
mod family;
pub mod host;
pub mod scaling;
pub mod units;

pub use backward::{launch_rope_bwd, reference_bwd};
pub use family::kernels;
pub use host::{launch_rope, reference, RopeFloat, RopeShape};
pub use scaling::{Rope, RopeConfig, RopeError, RopeScaling, RopeScalingConfig};

use units::{load8_bf16, load8_f16, load8_f32, store8_bf16, store8_f16, store8_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

/// Dims `e` of the two halves rotated by (cos, sin), rounded as Hugging Face rounds in T.
#[device(types(T = [f32, f16, bf16]))]
pub fn rotate_pair<T: Float>(lo: &mut [f32], hi: &mut [f32], e: u32, cos: f32, sin: f32) {
    let c = T::from_f32(cos).to_f32();
    let s = T::from_f32(sin).to_f32();
    let a = lo[e];
    let b = hi[e];
    lo[e] = T::from_f32(T::from_f32(a * c).to_f32() - T::from_f32(b * s).to_f32()).to_f32();
    hi[e] = T::from_f32(T::from_f32(b * c).to_f32() + T::from_f32(a * s).to_f32()).to_f32();
}

/// Rotates eight dims of each half (`lo`, `hi`) by the table's cos (at Vec4 index
/// `at_cos`, two Vec4s) and sin (at `at_sin`); NaN everywhere when `valid` is false (a
/// position past the table).
#[device(types(T = [f32, f16, bf16]))]
pub fn rotate8<T: Float>(
    lo: &mut [f32],
    hi: &mut [f32],
    cos_sin: &[Vec4<f32>],
    at_cos: u32,
    at_sin: u32,
    valid: bool,
) {
    if valid {
        let c0 = cos_sin[at_cos];
        let c1 = cos_sin[at_cos + 1];
        let s0 = cos_sin[at_sin];
        let s1 = cos_sin[at_sin + 1];
        rotate_pair::<T>(lo, hi, 0, c0.x, s0.x);
        rotate_pair::<T>(lo, hi, 1, c0.y, s0.y);
        rotate_pair::<T>(lo, hi, 2, c0.z, s0.z);
        rotate_pair::<T>(lo, hi, 3, c0.w, s0.w);
        rotate_pair::<T>(lo, hi, 4, c1.x, s1.x);
        rotate_pair::<T>(lo, hi, 5, c1.y, s1.y);
        rotate_pair::<T>(lo, hi, 6, c1.z, s1.z);
        rotate_pair::<T>(lo, hi, 7, c1.w, s1.w);
    } else {
        #[unroll]
        for e in 0..8 {
            lo[e] = f32::NAN;
            hi[e] = f32::NAN;
        }
    }
}

/// Rotates eight dims of each half by −θ (the transpose of [`fn@rotate8`]'s rotation, the
/// backward of RoPE): `sin` negated, the roundings those of the autograd of the forward
/// (see [`backward`]); NaN everywhere when `valid` is false.
#[device(types(T = [f32, f16, bf16]))]
pub fn rotate8_inverse<T: Float>(
    lo: &mut [f32],
    hi: &mut [f32],
    cos_sin: &[Vec4<f32>],
    at_cos: u32,
    at_sin: u32,
    valid: bool,
) {
    if valid {
        let c0 = cos_sin[at_cos];
        let c1 = cos_sin[at_cos + 1];
        let s0 = cos_sin[at_sin];
        let s1 = cos_sin[at_sin + 1];
        rotate_pair::<T>(lo, hi, 0, c0.x, -s0.x);
        rotate_pair::<T>(lo, hi, 1, c0.y, -s0.y);
        rotate_pair::<T>(lo, hi, 2, c0.z, -s0.z);
        rotate_pair::<T>(lo, hi, 3, c0.w, -s0.w);
        rotate_pair::<T>(lo, hi, 4, c1.x, -s1.x);
        rotate_pair::<T>(lo, hi, 5, c1.y, -s1.y);
        rotate_pair::<T>(lo, hi, 6, c1.z, -s1.z);
        rotate_pair::<T>(lo, hi, 7, c1.w, -s1.w);
    } else {
        #[unroll]
        for e in 0..8 {
            lo[e] = f32::NAN;
            hi[e] = f32::NAN;
        }
    }
}

/// Units `ulo` and `uhi` (a unit of the first rotary half and its partner) of `x` rotated
/// in place, by θ (`INVERSE = 0`) or −θ (`INVERSE = 1`); `lo` and `hi` are the caller's
/// 8-element scratch arrays.
#[device(types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rope_in_place<T: Float, const INVERSE: u32>(
    x: &mut [Vec4<u32>],
    ulo: u32,
    uhi: u32,
    lo: &mut [f32],
    hi: &mut [f32],
    cos_sin: &[Vec4<f32>],
    at_cos: u32,
    at_sin: u32,
    valid: bool,
) {
    load8::<T>(x, ulo, lo);
    load8::<T>(x, uhi, hi);
    if INVERSE == 1 {
        rotate8_inverse::<T>(lo, hi, cos_sin, at_cos, at_sin, valid);
    } else {
        rotate8::<T>(lo, hi, cos_sin, at_cos, at_sin, valid);
    }
    store8::<T>(x, ulo, lo);
    store8::<T>(x, uhi, hi);
}

/// Work item `item` of a RoPE launch (one unit pair of one token's head, numbered token by
/// token, Q's heads then K's) rotated in place by θ or −θ (`INVERSE`); items past the
/// launch do nothing.
#[device(types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rope_item<T: Float, const INVERSE: u32>(
    q: &mut [Vec4<u32>],
    k: &mut [Vec4<u32>],
    positions: &[u32],
    cos_sin: &[Vec4<f32>],
    item: u32,
    tokens: u32,
    q_heads: u32,
    k_heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    table_rows: u32,
    lo: &mut [f32],
    hi: &mut [f32],
) {
    // Unit pairs per head, and per token over Q's heads then K's.
    let pairs = rotary_dim / 16;
    let per_token = (q_heads + k_heads) * pairs;
    if item < tokens * per_token {
        let t = item / per_token;
        let head = item % per_token / pairs;
        let j = item % pairs;
        let pos = positions[t];
        let valid = pos < table_rows;
        // The table row is rotary_dim f32s (rotary_dim / 4 Vec4s): unit j's cos are
        // Vec4s 2j and 2j + 1, its sin rotary_dim / 8 Vec4s further.
        let at_cos = if valid {
            pos * (rotary_dim / 4) + 2 * j
        } else {
            0
        };
        let at_sin = at_cos + rotary_dim / 8;
        if head < q_heads {
            let u = (t * q_heads + head) * (head_dim / 8) + j;
            rope_in_place::<T, INVERSE>(q, u, u + pairs, lo, hi, cos_sin, at_cos, at_sin, valid);
        } else {
            let u = (t * k_heads + head - q_heads) * (head_dim / 8) + j;
            rope_in_place::<T, INVERSE>(k, u, u + pairs, lo, hi, cos_sin, at_cos, at_sin, valid);
        }
    }
}

#[kernel(block = (BLOCK),
         tune(BLOCK = [64, 128, 256, 512], UNITS = [1, 2, 4]),
         default(BLOCK = 256, UNITS = 2), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rope<T: Float, const BLOCK: u32, const UNITS: u32>(
    q: &mut [Vec4<u32>],
    k: &mut [Vec4<u32>],
    positions: &[u32],
    cos_sin: &[Vec4<f32>],
    tokens: u32,
    q_heads: u32,
    k_heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    table_rows: u32,
) {
    let mut lo = local_array::<f32>(8);
    let mut hi = local_array::<f32>(8);
    let first = block_idx_x() * (BLOCK * UNITS) + thread_idx_x();
    #[unroll]
    for it in 0..UNITS {
        rope_item::<T, 0>(
            q,
            k,
            positions,
            cos_sin,
            first + it * BLOCK,
            tokens,
            q_heads,
            k_heads,
            head_dim,
            rotary_dim,
            table_rows,
            &mut lo,
            &mut hi,
        );
    }
}
