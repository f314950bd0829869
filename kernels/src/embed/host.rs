//! Host side of the embedding backward: the batch's token index (CSR), the launch helper
//! and the reference.

use super::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, Element, KernelDef, LaunchDims};

/// The gradient's element types: `f32`, `f16`, `bf16`.
pub trait EmbedFloat: Float + Element {
    /// `embedding_bwd_{T}`.
    const EMBEDDING_BWD: fn() -> &'static KernelDef;
}

impl EmbedFloat for f32 {
    const EMBEDDING_BWD: fn() -> &'static KernelDef = embedding_bwd_f32::def;
}

impl EmbedFloat for f16 {
    const EMBEDDING_BWD: fn() -> &'static KernelDef = embedding_bwd_f16::def;
}

impl EmbedFloat for bf16 {
    const EMBEDDING_BWD: fn() -> &'static KernelDef = embedding_bwd_bf16::def;
}

/// Why a batch cannot be indexed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmbedError {
    #[error("token id {id} at position {position} is outside the vocabulary of {vocab}")]
    IdOutOfRange {
        position: usize,
        id: u32,
        vocab: usize,
    },
    #[error("a batch of {0} tokens does not fit 32-bit positions")]
    TooManyTokens(usize),
}

/// The batch's ids as a CSR: the distinct ids (ascending), and for the `k`-th of them the
/// positions `positions[offsets[k] .. offsets[k + 1]]` where it occurs, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIndex {
    pub ids: Vec<u32>,
    pub offsets: Vec<u32>,
    pub positions: Vec<u32>,
}

impl TokenIndex {
    /// Indexes `ids` by a counting pass over the vocabulary (O(tokens + vocab), no sort).
    pub fn build(ids: &[u32], vocab: usize) -> Result<TokenIndex, EmbedError> {
        if ids.len() > u32::MAX as usize {
            return Err(EmbedError::TooManyTokens(ids.len()));
        }
        let mut counts = vec![0u32; vocab];
        for (position, &id) in ids.iter().enumerate() {
            let count = counts
                .get_mut(id as usize)
                .ok_or(EmbedError::IdOutOfRange {
                    position,
                    id,
                    vocab,
                })?;
            *count += 1;
        }
        let mut index = TokenIndex {
            ids: Vec::new(),
            offsets: vec![0],
            positions: vec![0; ids.len()],
        };
        // Where each present id's positions start; ids in ascending order.
        let mut start = vec![0u32; vocab];
        let mut next = 0u32;
        for (id, &count) in counts.iter().enumerate() {
            if count > 0 {
                start[id] = next;
                next += count;
                index.ids.push(id as u32);
                index.offsets.push(next);
            }
        }
        for (position, &id) in ids.iter().enumerate() {
            let slot = &mut start[id as usize];
            index.positions[*slot as usize] = position as u32;
            *slot += 1;
        }
        Ok(index)
    }

    /// The number of distinct ids.
    pub fn distinct(&self) -> usize {
        self.ids.len()
    }
}

/// The index uploaded to a device.
pub struct DeviceIndex {
    pub ids: Buffer<u32>,
    pub offsets: Buffer<u32>,
    pub positions: Buffer<u32>,
    pub distinct: u32,
}

impl DeviceIndex {
    pub fn upload(
        device: &Device,
        index: &TokenIndex,
    ) -> Result<DeviceIndex, warpforge_dsl::Error> {
        // Buffers may not be empty: an empty batch uploads one unused slot.
        let nonempty = |v: &[u32]| if v.is_empty() { vec![0] } else { v.to_vec() };
        Ok(DeviceIndex {
            ids: device.upload(&nonempty(&index.ids))?,
            offsets: device.upload(&index.offsets)?,
            positions: device.upload(&nonempty(&index.positions))?,
            distinct: index.ids.len() as u32,
        })
    }
}

/// Launches `embedding_bwd_{T}`: `dweight[id, :] += Σ dy[p, :]` over the index's positions
/// (`hidden % 4 == 0`). An empty batch launches nothing.
pub fn launch_embedding_bwd<T: EmbedFloat>(
    device: &Device,
    config: &Config,
    (dy, index): (&Buffer<T>, &DeviceIndex),
    dweight: &mut Buffer<f32>,
    hidden: u32,
) -> Result<(), warpforge_dsl::Error> {
    if index.distinct == 0 {
        return Ok(());
    }
    let block = config.get("BLOCK").unwrap_or(128).max(1) as u32;
    let quads = hidden / 4;
    let mut args = [
        Arg::slice(dy),
        Arg::slice(&index.ids),
        Arg::slice(&index.offsets),
        Arg::slice(&index.positions),
        Arg::slice_mut(dweight),
        Arg::value(quads),
    ];
    let dims = LaunchDims::grid_2d((index.distinct, quads.div_ceil(block).max(1)), (block, 1));
    device.launch((T::EMBEDDING_BWD)(), config, dims, &mut args)
}

/// The kernel's result in the kernel's order (f32 sums in increasing position, added to the
/// row once): `dweight` (`vocab × hidden`) updated in place.
pub fn embedding_bwd_reference(dy: &[f32], ids: &[u32], dweight: &mut [f32], hidden: usize) {
    let vocab = dweight.len() / hidden.max(1);
    let mut sums = vec![0.0f32; vocab * hidden];
    let mut seen = vec![false; vocab];
    for (row, &id) in dy.chunks(hidden).zip(ids) {
        let id = id as usize;
        seen[id] = true;
        for (s, &d) in sums[id * hidden..(id + 1) * hidden].iter_mut().zip(row) {
            *s += d;
        }
    }
    for (id, _) in seen.iter().enumerate().filter(|(_, &s)| s) {
        let range = id * hidden..(id + 1) * hidden;
        for (w, &s) in dweight[range.clone()].iter_mut().zip(&sums[range]) {
            *w += s;
        }
    }
}
