//! Prepacking: variable-length prompts packed into one token stream with no padding, and
//! the kernels that feed flash attention from it.
//!
//! # Host side
//!
//! - [`pack_prompts`]: prompts given as one flat u32 token array plus per-prompt offsets and
//!   lengths → the packed token ids, `cu_seqlens` (u32, `prompts + 1` prefix sums from 0:
//!   the layout [`crate::attention`] reads) and position ids that restart at each prompt
//!   (at a per-prompt start for chunked prefill continuing a cached prefix). Empty prompts
//!   are allowed (their span is empty).
//! - [`best_fit_decreasing`]: bins of a fixed capacity for paths that need fixed shapes,
//!   with the padding it costs ([`Waste`]).
//!
//! # Kernels
//!
//! Both move rows as 16-byte words (bit views `&[Vec4<u32>]` of the caller's `Buffer<T>`,
//! see [`crate::rope::units`]), one `LDG.E.128` and one `STG.E.128` per word, consecutive
//! threads on consecutive words. Tunables (both): `BLOCK` (threads per block: 64 … 512) and
//! `UNITS` (words or units per thread, strided by `BLOCK`: 1, 2, 4); default `BLOCK = 256,
//! UNITS = 2`.
//!
//! - [`fn@gather_rows`]: `out[t] = table[ids[t]]` for rows of `row_words` 16-byte words — the
//!   embedding lookup of a packed prompt stream (f32, f16, bf16 alike: the kernel copies
//!   bits), or any row gather. An id `≥ rows` writes all-ones bits (NaN in every float
//!   format) instead of reading out of bounds; [`pack_prompts`]'s caller checks ids on the
//!   host ([`check_ids`]). Bytes per token: 2 · row bytes + 4 (a Llama-3 8B bf16 row: 8 KiB
//!   read, 8 KiB written). Memory-bound.
//! - `kv_page_write` (`kv_page_write_{T}`, T ∈ {f32, f16, bf16}): the packed prefill's K
//!   and V, `[tokens, kv_heads, head_dim]`, written straight into each sequence's pages,
//!   caches `[pages, page_size, kv_heads, head_dim]`: token `i` of sequence `b` (packed row
//!   `cu_seqlens[b] + i`) is cache position `p = cache_lens[b] + i` (after the sequence's
//!   already-cached tokens, so a chunked prefill appends), row `p % page_size` of page
//!   `block_table[b·pages_per_seq + p / page_size]` — exactly the paged layout
//!   [`crate::attention`]'s `KvLayout::Paged` reads. A cache row and a packed row are both
//!   `[kv_heads, head_dim]` contiguous, so the copy is row to row. **RoPE on K is fused**
//!   (`rotary_dim > 0`): K is rotated on its way into the cache by `positions[t]`, bit for
//!   bit as [`crate::rope`]'s kernel rotates it, so K is read once and written once
//!   instead of twice each (Llama-3 8B, bf16: 8 KiB per token instead of 12 KiB for a
//!   separate in-place K rotation plus the copy, and one launch fewer; Q is rotated by
//!   `rope_{T}` with `k_heads = 0`). Bytes per token: 4 · kv_heads · head_dim · sizeof(T)
//!   (K and V, read and written) + 4·rotary_dim (table row, from L2) + 4. Pages written in
//!   one launch must be distinct across sequences (shared prefix pages are only read). Memory-bound. Grid: (work-item tiles of the longest sequence,
//!   sequences); blocks past a short sequence's end exit at once. Pages past `pages` or
//!   positions past `pages_per_seq · page_size` are skipped rather than written out of
//!   bounds; the launcher checks both on the host.

mod binpack;
mod family;
pub mod host;
mod pack;

pub use binpack::{best_fit_decreasing, Packing, Waste};
pub use family::kernels;
pub use host::{
    launch_gather_rows, launch_kv_page_write, page_write_reference, PageWriteBuffers,
    PageWriteShape,
};
pub use pack::{check_ids, cu_seqlens, pack_prompts, positions, PackedPrompts, PrepackError};

use crate::rope::units::{copy8_bf16, copy8_f16, copy8_f32};
use crate::rope::units::{load8_bf16, load8_f16, load8_f32, store8_bf16, store8_f16, store8_f32};
use crate::rope::{rotate8_bf16, rotate8_f16, rotate8_f32};
use warpforge_dsl::prelude::*;
use warpforge_macros::kernel;

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256, 512], UNITS = [1, 2, 4]),
         default(BLOCK = 256, UNITS = 2))]
pub fn gather_rows<const BLOCK: u32, const UNITS: u32>(
    table: &[Vec4<u32>],
    ids: &[u32],
    out: &mut [Vec4<u32>],
    tokens: u32,
    rows: u32,
    row_words: u32,
) {
    let first = block_idx_x() * (BLOCK * UNITS) + thread_idx_x();
    #[unroll]
    for it in 0..UNITS {
        let w = first + it * BLOCK;
        if w < tokens * row_words {
            let id = ids[w / row_words];
            if id < rows {
                out[w] = table[id * row_words + w % row_words];
            } else {
                out[w] = Vec4::new(0xffffffffu32, 0xffffffffu32, 0xffffffffu32, 0xffffffffu32);
            }
        }
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256, 512], UNITS = [1, 2, 4]),
         default(BLOCK = 256, UNITS = 2), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn kv_page_write<T: Float, const BLOCK: u32, const UNITS: u32>(
    k: &[Vec4<u32>],
    v: &[Vec4<u32>],
    k_cache: &mut [Vec4<u32>],
    v_cache: &mut [Vec4<u32>],
    cu_seqlens: &[u32],
    cache_lens: &[u32],
    block_table: &[u32],
    positions: &[u32],
    cos_sin: &[Vec4<f32>],
    kv_heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    table_rows: u32,
    pages: u32,
    pages_per_seq: u32,
    page_size: u32,
) {
    let mut lo = local_array::<f32>(8);
    let mut hi = local_array::<f32>(8);
    let seq = block_idx_y();
    let start = cu_seqlens[seq];
    let len = cu_seqlens[seq + 1] - start;
    // Work items per token: K unit pairs to rotate, K units to copy, then V's units.
    let units = head_dim / 8;
    let pairs = rotary_dim / 16;
    let pass = units - 2 * pairs;
    let k_rot = kv_heads * pairs;
    let k_items = k_rot + kv_heads * pass;
    let row_units = kv_heads * units;
    let per_token = k_items + row_units;
    let first = block_idx_x() * (BLOCK * UNITS) + thread_idx_x();
    #[unroll]
    for it in 0..UNITS {
        let item = first + it * BLOCK;
        let p = cache_lens[seq] + item / per_token;
        if item < len * per_token && p / page_size < pages_per_seq {
            let i = item / per_token;
            let r = item % per_token;
            let t = start + i;
            let page = block_table[seq * pages_per_seq + p / page_size];
            if page < pages {
                let src = t * row_units;
                let dst = (page * page_size + p % page_size) * row_units;
                if r < k_rot {
                    let at = r / pairs * units + r % pairs;
                    let pos = positions[t];
                    let valid = pos < table_rows;
                    let at_cos = if valid {
                        pos * (rotary_dim / 4) + 2 * (r % pairs)
                    } else {
                        0
                    };
                    load8::<T>(k, src + at, &mut lo);
                    load8::<T>(k, src + at + pairs, &mut hi);
                    rotate8::<T>(
                        &mut lo,
                        &mut hi,
                        cos_sin,
                        at_cos,
                        at_cos + rotary_dim / 8,
                        valid,
                    );
                    store8::<T>(k_cache, dst + at, &lo);
                    store8::<T>(k_cache, dst + at + pairs, &hi);
                } else if r < k_items {
                    let at = (r - k_rot) / pass * units + 2 * pairs + (r - k_rot) % pass;
                    copy8::<T>(k, src + at, k_cache, dst + at);
                } else {
                    copy8::<T>(v, src + r - k_items, v_cache, dst + r - k_items);
                }
            }
        }
    }
}
