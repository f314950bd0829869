//! RoPE backward, `rope_bwd_{T}`: the gradients of Q and K through the rotation, in place
//! on dQ and dK.
//!
//! # Semantics
//!
//! RoPE rotates each pair (`x[i]`, `x[i + r/2]`) by θ_i, an orthogonal map, so its
//! Jacobian's transpose is the rotation by −θ_i: with `c = T(cos θ_i)`, `s = T(sin θ_i)`
//! and `g` the incoming gradient,
//!
//! ```text
//! dx[i]       = T( T(g[i] · c)       + T(g[i + r/2] · s) )
//! dx[i + r/2] = T( T(g[i + r/2] · c) − T(g[i] · s) )
//! ```
//!
//! which is PyTorch's autograd of `q * cos + rotate_half(q) * sin` in T rounding for
//! rounding (each `mul`'s gradient is a T product, the two contributions to `dq` are added
//! in T; `rotate_half`'s backward moves and negates, exactly) — and the forward kernel with
//! `sin` negated, so the backward shares the forward's code path ([`super::rope_item`] with
//! `INVERSE = 1`), its cos/sin table ([`super::Rope::table`], any of the scalings) and its
//! positions. Dims past `rotary_dim` pass their gradient through unchanged (untouched in
//! place); positions at or past the table's rows give NaN, as in the forward.
//!
//! # Roofline, tunables
//!
//! The forward's: memory-bound, dQ and dK read and written once (`2·(q_heads + k_heads)·
//! rotary_dim·sizeof(T)` bytes per token) plus the table rows; `BLOCK` (64 … 512) and
//! `UNITS` (1, 2, 4), default `BLOCK = 256, UNITS = 2`.

use super::host::{launch_rotation, rotate_reference, RopeFloat, RopeShape};
use super::{rope_item_bf16, rope_item_f16, rope_item_f32};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Buffer, Config, Device, Error};
use warpforge_macros::kernel;

#[kernel(block = (BLOCK),
         tune(BLOCK = [64, 128, 256, 512], UNITS = [1, 2, 4]),
         default(BLOCK = 256, UNITS = 2), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rope_bwd<T: Float, const BLOCK: u32, const UNITS: u32>(
    dq: &mut [Vec4<u32>],
    dk: &mut [Vec4<u32>],
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
        rope_item::<T, 1>(
            dq,
            dk,
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

/// Launches `rope_bwd_{T}`: dQ (`[tokens, q_heads, head_dim]`) and dK (`[tokens, k_heads,
/// head_dim]`; untouched when `k_heads = 0`) rotated back in place by the forward's
/// `positions` and cos/sin table. The same contract and errors as [`super::launch_rope`].
pub fn launch_rope_bwd<T: RopeFloat>(
    device: &Device,
    config: &Config,
    dq_dk: (&mut Buffer<T>, &mut Buffer<T>),
    positions_table: (&Buffer<u32>, &Buffer<f32>),
    shape: RopeShape,
) -> Result<(), Error> {
    launch_rotation(
        (T::ROPE_BWD)(),
        device,
        config,
        dq_dk,
        positions_table,
        shape,
    )
}

/// The reference backward: the gradient `g` (`[tokens, heads, head_dim]`, T values widened)
/// rotated by −θ as the module doc says, in f64 rounded where PyTorch's autograd rounds.
pub fn reference_bwd<T: Float>(
    g: &[f32],
    (heads, head_dim, rotary_dim): (usize, usize, usize),
    positions: &[u32],
    inv_freq: &[f32],
    table_rows: usize,
) -> Vec<f32> {
    let dims = (heads, head_dim, rotary_dim);
    rotate_reference::<T>(g, dims, positions, inv_freq, table_rows, -1.0)
}
