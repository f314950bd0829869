//! Embedding backward as a deterministic scatter-add, written once over the gradient's
//! element type `T ∈ {f32, f16, bf16}` (instances `embedding_bwd_{T}`).
//!
//! # Semantics
//!
//! For token positions `p` with ids `ids[p]` and the gradient `dy[p, :]` of the looked-up
//! rows, `dweight[v, :] += Σ_{p : ids[p] = v} dy[p, :]`, with the sum in f32 in increasing
//! `p` and then added to the f32 gradient row once (so gradient accumulation over
//! micro-batches is `+=` on the same buffer). Rows of ids that do not occur are not
//! touched. The result does not depend on the config or the run: bit-reproducible.
//!
//! # How (sort-free, no atomics)
//!
//! The host indexes the batch's ids ([`host::TokenIndex`], a CSR built by a counting pass:
//! the distinct ids in the batch, and per id the positions where it occurs, ascending).
//! Block `(x, y)` owns the `Vec4`s `y·BLOCK …` of the gradient row of the `x`-th distinct
//! id (ids on the grid's x, which has no 65535 limit), so every gradient element has exactly one writer; each thread walks the id's
//! positions in order, loading `dy[p, v]` (a warp reads 32 consecutive `Vec4`s: coalesced).
//!
//! # Roofline
//!
//! Memory-bound: `dy` read once (`sizeof(T)` bytes per element of `[tokens, hidden]`), and
//! one read-modify-write of the gradient row of each distinct id (8 bytes per element), plus
//! 4 bytes per token of index. About one FLOP per `dy` element. Tunable: `BLOCK` ∈ {32, 64,
//! 128, 256} threads (column `Vec4`s per block); default 128 (hidden 4096 → 8 blocks per id).
//!
//! Layout: `dy` is `[tokens, hidden]` and `dweight` `[vocab, hidden]`, dense, with
//! `hidden % 4 == 0` (every Llama); element indices below 2^32.

mod family;
pub mod host;

pub use family::kernels;

use crate::fp8::{widen4_bf16, widen4_f16, widen4_f32};
use crate::norm::backward::add4;
use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

#[kernel(block = (BLOCK), tune(BLOCK = [32, 64, 128, 256]), default(BLOCK = 128),
         types(T = [f32, f16, bf16]))]
pub fn embedding_bwd<T: Float, const BLOCK: u32>(
    dy: &[Vec4<T>],
    ids: &[u32],
    offsets: &[u32],
    positions: &[u32],
    dweight: &mut [Vec4<f32>],
    quads: u32,
) {
    let v = block_idx_y() * BLOCK + thread_idx_x();
    let slot = block_idx_x();
    if v < quads {
        let mut acc = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        let end = offsets[slot + 1];
        let mut i = offsets[slot];
        while i < end {
            acc = add4(acc, widen4::<T>(dy[positions[i] * quads + v]));
            i += 1;
        }
        let at = ids[slot] * quads + v;
        dweight[at] = add4(dweight[at], acc);
    }
}
