//! Host side of the prepacking kernels: launch helpers on device buffers, the shape checks
//! they run first, and the host references.

use super::gather_rows;
use crate::family::check_len;
use crate::rope::host::{dims_for, shape_error, RopeFloat};
use crate::rope::reference as rope_reference;
use warpforge_dsl::prelude::Float;
use warpforge_dsl::{Arg, Buffer, Config, Device, Element, Error, LaunchDims};

/// Launches `gather_rows`: `out[t] = table[ids[t]]` for `ids.len()` tokens, rows of `width`
/// elements of `T` (`width · sizeof(T)` a multiple of 16 bytes).
pub fn launch_gather_rows<T: Element>(
    device: &Device,
    config: &Config,
    (table, ids): (&Buffer<T>, &Buffer<u32>),
    out: &mut Buffer<T>,
    width: usize,
) -> Result<(), Error> {
    let def = gather_rows::def();
    let row_bytes = width * T::SCALAR.size_bytes();
    if width == 0 || !row_bytes.is_multiple_of(16) || table.len() % width != 0 {
        return Err(shape_error(
            def,
            "table",
            format!(
                "rows of {width} × {}-byte elements must be a positive multiple of 16 bytes, \
                 and the table ({} elements) whole rows",
                T::SCALAR.size_bytes(),
                table.len()
            ),
        ));
    }
    let tokens = ids.len();
    check_len(def, "out", out.len(), tokens * width)?;
    let row_words = row_bytes / 16;
    if tokens * row_words > u32::MAX as usize || table.len() / width * row_words > u32::MAX as usize
    {
        return Err(shape_error(
            def,
            "table",
            "2^32 or more 16-byte words".into(),
        ));
    }
    let mut args = [
        Arg::slice(table),
        Arg::slice(ids),
        Arg::slice_mut(out),
        Arg::value(tokens as u32),
        Arg::value((table.len() / width) as u32),
        Arg::value(row_words as u32),
    ];
    device.launch(def, config, dims_for(config, tokens * row_words), &mut args)
}

/// The shape of one page write: the packed batch's sequences, where each continues in its
/// cache, and the cache's geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageWriteShape {
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Dims of K rotated on the way (0: none; else a multiple of 16 ≤ head_dim).
    pub rotary_dim: usize,
    /// Rows of the cos/sin table (unused without RoPE).
    pub table_rows: usize,
    pub page_size: usize,
    pub pages_per_seq: usize,
    /// New tokens per sequence (the packed batch's lengths).
    pub lens: Vec<usize>,
    /// Tokens each sequence already has in its pages (0 for a first chunk).
    pub cache_lens: Vec<usize>,
}

impl PageWriteShape {
    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    /// One cache row (and one packed row): `kv_heads · head_dim` elements.
    pub fn row(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Work items per token (K unit pairs rotated, K units copied, V units).
    pub fn items_per_token(&self) -> usize {
        let units = self.head_dim / 8;
        self.kv_heads * (self.rotary_dim / 16 + (units - self.rotary_dim / 8) + units)
    }

    /// Why the kernel cannot write this shape.
    pub fn check(&self) -> Result<(), String> {
        let (d, r) = (self.head_dim, self.rotary_dim);
        if self.kv_heads == 0 || d == 0 || d % 8 != 0 || r % 16 != 0 || r > d {
            return Err(format!(
                "kv_heads {} must be positive, head_dim {d} a positive multiple of 8 and \
                 rotary_dim {r} a multiple of 16 no larger than it (0: no RoPE)",
                self.kv_heads
            ));
        }
        if self.page_size == 0 || self.lens.len() != self.cache_lens.len() {
            return Err(format!(
                "page_size {} must be positive and lens ({}) and cache_lens ({}) one per sequence",
                self.page_size,
                self.lens.len(),
                self.cache_lens.len()
            ));
        }
        if self.lens.is_empty() || self.lens.len() > 65535 {
            return Err(format!("{} sequences: need 1 ..= 65535", self.lens.len()));
        }
        let room = self.pages_per_seq * self.page_size;
        for (b, (&n, &c)) in self.lens.iter().zip(&self.cache_lens).enumerate() {
            if c + n > room {
                return Err(format!(
                    "sequence {b}: {c} cached + {n} new tokens need more than its \
                     {} pages of {} rows",
                    self.pages_per_seq, self.page_size
                ));
            }
        }
        let longest = self.lens.iter().max().copied().unwrap_or(0);
        if longest * self.items_per_token() > u32::MAX as usize
            || self.tokens() * self.row() / 8 > u32::MAX as usize
        {
            return Err("2^32 or more work items or units".into());
        }
        Ok(())
    }

    /// Grid: (item tiles of the longest sequence, sequences).
    pub fn dims(&self, config: &Config) -> LaunchDims {
        let longest = self.lens.iter().max().copied().unwrap_or(0);
        let x = dims_for(config, longest * self.items_per_token());
        LaunchDims {
            grid: [x.grid[0], self.lens.len() as u32, 1],
            block: x.block,
        }
    }

    /// Why `block_table` (host copy, `[sequences, pages_per_seq]`) cannot serve this write
    /// into a cache of `pages` pages: a page a written row lands in is past the cache.
    pub fn check_block_table(&self, block_table: &[u32], pages: usize) -> Result<(), String> {
        if block_table.len() != self.lens.len() * self.pages_per_seq {
            return Err(format!(
                "the block table has {} entries; {} sequences × {} pages need {}",
                block_table.len(),
                self.lens.len(),
                self.pages_per_seq,
                self.lens.len() * self.pages_per_seq
            ));
        }
        for (b, (&n, &c)) in self.lens.iter().zip(&self.cache_lens).enumerate() {
            let first = c / self.page_size;
            let end = (c + n).div_ceil(self.page_size);
            let row = &block_table[b * self.pages_per_seq..][first..end.max(first)];
            if let Some(&p) = row.iter().find(|&&p| p as usize >= pages) {
                return Err(format!(
                    "sequence {b}: page {p} is past the cache's {pages} pages"
                ));
            }
        }
        Ok(())
    }
}

/// The device-side metadata of a page write (`positions` and `cos_sin` are read only with
/// RoPE; pass small placeholders otherwise: one u32, four f32s).
pub struct PageWriteBuffers<'a> {
    /// `sequences + 1` prefix sums of the new tokens.
    pub cu_seqlens: &'a Buffer<u32>,
    /// `[sequences]`: tokens already cached per sequence.
    pub cache_lens: &'a Buffer<u32>,
    /// `[sequences, pages_per_seq]` page indices.
    pub block_table: &'a Buffer<u32>,
    /// `[tokens]` RoPE positions (the same array Q is rotated by).
    pub positions: &'a Buffer<u32>,
    /// `[table_rows, rotary_dim]` f32 cos/sin table.
    pub cos_sin: &'a Buffer<f32>,
}

/// Launches `kv_page_write_{T}`: packed `k`, `v` (`[tokens, kv_heads, head_dim]`) into
/// `k_cache`, `v_cache` (`[pages, page_size, kv_heads, head_dim]`), K rotated by RoPE on the
/// way when `shape.rotary_dim > 0`. The block table itself lives on the device; check its
/// host copy with [`PageWriteShape::check_block_table`] (the kernel skips rows whose page is
/// past the cache instead of writing out of bounds).
pub fn launch_kv_page_write<T: RopeFloat>(
    device: &Device,
    config: &Config,
    (k, v): (&Buffer<T>, &Buffer<T>),
    (k_cache, v_cache): (&mut Buffer<T>, &mut Buffer<T>),
    meta: &PageWriteBuffers,
    shape: &PageWriteShape,
) -> Result<(), Error> {
    let def = (T::KV_PAGE_WRITE)();
    shape.check().map_err(|m| shape_error(def, "shape", m))?;
    let (row, tokens) = (shape.row(), shape.tokens());
    check_len(def, "k", k.len(), tokens * row)?;
    check_len(def, "v", v.len(), tokens * row)?;
    let page = shape.page_size * row;
    let pages = k_cache.len() / page;
    if k_cache.len() % page != 0 || v_cache.len() != k_cache.len() {
        return Err(shape_error(
            def,
            "k_cache",
            format!(
                "K/V caches ({}, {} elements) must be equal whole numbers of pages of {page}",
                k_cache.len(),
                v_cache.len()
            ),
        ));
    }
    check_len(
        def,
        "cu_seqlens",
        meta.cu_seqlens.len(),
        shape.lens.len() + 1,
    )?;
    check_len(def, "cache_lens", meta.cache_lens.len(), shape.lens.len())?;
    let table = shape.lens.len() * shape.pages_per_seq;
    check_len(def, "block_table", meta.block_table.len(), table)?;
    if shape.rotary_dim > 0 {
        check_len(def, "positions", meta.positions.len(), tokens)?;
        let rows = shape.table_rows * shape.rotary_dim;
        check_len(def, "cos_sin", meta.cos_sin.len(), rows)?;
    }
    let u = |n: usize| n as u32;
    let mut args = [
        Arg::slice(k),
        Arg::slice(v),
        Arg::slice_mut(k_cache),
        Arg::slice_mut(v_cache),
        Arg::slice(meta.cu_seqlens),
        Arg::slice(meta.cache_lens),
        Arg::slice(meta.block_table),
        Arg::slice(meta.positions),
        Arg::slice(meta.cos_sin),
        Arg::value(u(shape.kv_heads)),
        Arg::value(u(shape.head_dim)),
        Arg::value(u(shape.rotary_dim)),
        Arg::value(u(shape.table_rows)),
        Arg::value(u(pages)),
        Arg::value(u(shape.pages_per_seq)),
        Arg::value(u(shape.page_size)),
    ];
    device.launch(def, config, shape.dims(config), &mut args)
}

/// The reference page write on host copies (T values widened): each new token's K (rotated
/// by [`crate::rope::reference`] with `inv_freq` when `rotary_dim > 0`) and V row copied to
/// its cache row; every other cache row kept.
#[allow(clippy::too_many_arguments)]
pub fn page_write_reference<T: Float>(
    shape: &PageWriteShape,
    (k, v): (&[f32], &[f32]),
    (k_cache, v_cache): (&mut [f32], &mut [f32]),
    block_table: &[u32],
    positions: &[u32],
    inv_freq: &[f32],
) {
    let row = shape.row();
    let k = if shape.rotary_dim > 0 {
        let dims = (shape.kv_heads, shape.head_dim, shape.rotary_dim);
        rope_reference::<T>(k, dims, positions, inv_freq, shape.table_rows)
    } else {
        k.to_vec()
    };
    let mut t = 0;
    for (b, (&n, &c)) in shape.lens.iter().zip(&shape.cache_lens).enumerate() {
        for i in 0..n {
            let p = c + i;
            let page = block_table[b * shape.pages_per_seq + p / shape.page_size] as usize;
            let dst = (page * shape.page_size + p % shape.page_size) * row;
            k_cache[dst..dst + row].copy_from_slice(&k[t * row..][..row]);
            v_cache[dst..dst + row].copy_from_slice(&v[t * row..][..row]);
            t += 1;
        }
    }
}
