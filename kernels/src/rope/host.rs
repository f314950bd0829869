//! Host side of RoPE: the instance of each element type, the launch helper on device
//! buffers, and the f64 host reference.

use super::backward::{rope_bwd_bf16, rope_bwd_f16, rope_bwd_f32};
use super::scaling::angle;
use super::{rope_bf16, rope_f16, rope_f32};
use crate::prepack::{kv_page_write_bf16, kv_page_write_f16, kv_page_write_f32};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::{bf16, f16, Float};
use warpforge_dsl::{Arg, Buffer, Config, Device, Element, Error, KernelDef, LaunchDims};

/// An element type the RoPE and page-writer kernels are instantiated for.
pub trait RopeFloat: Float + Element {
    /// `rope_{T}`.
    const ROPE: fn() -> &'static KernelDef;
    /// `rope_bwd_{T}`.
    const ROPE_BWD: fn() -> &'static KernelDef;
    /// `kv_page_write_{T}`.
    const KV_PAGE_WRITE: fn() -> &'static KernelDef;
}

impl RopeFloat for f32 {
    const ROPE: fn() -> &'static KernelDef = rope_f32::def;
    const ROPE_BWD: fn() -> &'static KernelDef = rope_bwd_f32::def;
    const KV_PAGE_WRITE: fn() -> &'static KernelDef = kv_page_write_f32::def;
}

impl RopeFloat for f16 {
    const ROPE: fn() -> &'static KernelDef = rope_f16::def;
    const ROPE_BWD: fn() -> &'static KernelDef = rope_bwd_f16::def;
    const KV_PAGE_WRITE: fn() -> &'static KernelDef = kv_page_write_f16::def;
}

impl RopeFloat for bf16 {
    const ROPE: fn() -> &'static KernelDef = rope_bf16::def;
    const ROPE_BWD: fn() -> &'static KernelDef = rope_bwd_bf16::def;
    const KV_PAGE_WRITE: fn() -> &'static KernelDef = kv_page_write_bf16::def;
}

/// What one `rope_{T}` launch rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeShape {
    pub tokens: usize,
    pub q_heads: usize,
    /// 0: Q only (K is rotated elsewhere, e.g. by the page writer).
    pub k_heads: usize,
    pub head_dim: usize,
    pub rotary_dim: usize,
    /// Positions in the cos/sin table ([`super::Rope::table`]).
    pub table_rows: usize,
}

impl RopeShape {
    /// Unit pairs (work items) of the launch.
    pub fn items(&self) -> usize {
        self.tokens * (self.q_heads + self.k_heads) * (self.rotary_dim / 16)
    }

    /// Why the kernel cannot run this shape (the layout contract of [`super`]).
    pub fn check(&self) -> Result<(), String> {
        let (d, r) = (self.head_dim, self.rotary_dim);
        if d == 0 || d % 8 != 0 || r == 0 || r % 16 != 0 || r > d {
            return Err(format!(
                "head_dim {d} must be a positive multiple of 8 and rotary_dim {r} a positive \
                 multiple of 16 no larger than it"
            ));
        }
        let elems = self.tokens * (self.q_heads.max(self.k_heads)) * d;
        if self.q_heads == 0 || elems / 8 > u32::MAX as usize || self.items() > u32::MAX as usize {
            return Err(format!(
                "need q_heads > 0 and fewer than 2^32 units (tokens {}, heads {}+{})",
                self.tokens, self.q_heads, self.k_heads
            ));
        }
        Ok(())
    }
}

/// An argument-mismatch error of `def` for a shape it cannot run.
pub fn shape_error(def: &KernelDef, param: &str, message: String) -> Error {
    Error::Device(DeviceError::ArgMismatch {
        kernel: def.name.to_string(),
        param: param.to_string(),
        expected: message,
        got: "see the message".into(),
    })
}

/// `BLOCK` and `UNITS` of a config of the RoPE / prepacking kernels (their defaults when
/// absent).
pub fn block_units(config: &Config) -> (u32, u32) {
    let get = |name: &str, or: i64| config.get(name).unwrap_or(or).max(1) as u32;
    (get("BLOCK", 256), get("UNITS", 2))
}

/// Enough blocks of `BLOCK` threads, `UNITS` items each, for `items` items.
pub fn dims_for(config: &Config, items: usize) -> LaunchDims {
    let (block, units) = block_units(config);
    let per_block = (block * units) as usize;
    LaunchDims::linear(items.div_ceil(per_block).max(1) as u32, block)
}

/// Launches `rope_{T}`: rotates `q` (`[tokens, q_heads, head_dim]`) and `k` (`[tokens,
/// k_heads, head_dim]`; untouched when `k_heads = 0`, then any buffer of a multiple of 8
/// elements) in place by `positions` (`[tokens]`), reading the cos/sin table (`[table_rows,
/// rotary_dim]` f32).
pub fn launch_rope<T: RopeFloat>(
    device: &Device,
    config: &Config,
    qk: (&mut Buffer<T>, &mut Buffer<T>),
    positions_table: (&Buffer<u32>, &Buffer<f32>),
    shape: RopeShape,
) -> Result<(), Error> {
    launch_rotation((T::ROPE)(), device, config, qk, positions_table, shape)
}

/// Launches `def` (`rope_{T}` or `rope_bwd_{T}`: the same parameters) after checking the
/// shape and the buffers' lengths.
pub(crate) fn launch_rotation<T: RopeFloat>(
    def: &'static KernelDef,
    device: &Device,
    config: &Config,
    (q, k): (&mut Buffer<T>, &mut Buffer<T>),
    (positions, table): (&Buffer<u32>, &Buffer<f32>),
    shape: RopeShape,
) -> Result<(), Error> {
    shape.check().map_err(|m| shape_error(def, "shape", m))?;
    let row = shape.head_dim;
    crate::family::check_len(def, "q", q.len(), shape.tokens * shape.q_heads * row)?;
    if shape.k_heads > 0 {
        crate::family::check_len(def, "k", k.len(), shape.tokens * shape.k_heads * row)?;
    }
    crate::family::check_len(def, "positions", positions.len(), shape.tokens)?;
    let table_len = shape.table_rows * shape.rotary_dim;
    crate::family::check_len(def, "cos_sin", table.len(), table_len)?;
    let u = |n: usize| n as u32;
    let mut args = [
        Arg::slice_mut(q),
        Arg::slice_mut(k),
        Arg::slice(positions),
        Arg::slice(table),
        Arg::value(u(shape.tokens)),
        Arg::value(u(shape.q_heads)),
        Arg::value(u(shape.k_heads)),
        Arg::value(u(shape.head_dim)),
        Arg::value(u(shape.rotary_dim)),
        Arg::value(u(shape.table_rows)),
    ];
    device.launch(def, config, dims_for(config, shape.items()), &mut args)
}

/// `v` rounded to f32, then to T (PyTorch's 16-bit ops compute in f32 and round once).
fn round<T: Float>(v: f64) -> f64 {
    T::from_f32(v as f32).to_f32() as f64
}

/// The reference: `x` (`[tokens, heads, head_dim]`, T values widened) rotated by
/// `positions` as Hugging Face's `apply_rotary_pos_emb` in T (see [`super`]), arithmetic in
/// f64 rounded where PyTorch rounds; cos/sin of `θ = f32(p · inv_freq[i])` in f64. Heads
/// of a token at a position `≥ table_rows` are NaN in their rotated dims (the kernel's
/// out-of-table marker).
pub fn reference<T: Float>(
    x: &[f32],
    dims: (usize, usize, usize),
    positions: &[u32],
    inv_freq: &[f32],
    table_rows: usize,
) -> Vec<f32> {
    rotate_reference::<T>(x, dims, positions, inv_freq, table_rows, 1.0)
}

/// [`reference`] with `sin θ` times `sign` (−1: the backward, [`super::reference_bwd`]).
pub(crate) fn rotate_reference<T: Float>(
    x: &[f32],
    (heads, head_dim, rotary_dim): (usize, usize, usize),
    positions: &[u32],
    inv_freq: &[f32],
    table_rows: usize,
    sign: f64,
) -> Vec<f32> {
    let half = rotary_dim / 2;
    let mut out = x.to_vec();
    for (t, &p) in positions.iter().enumerate() {
        for h in 0..heads {
            let row = &mut out[(t * heads + h) * head_dim..][..head_dim];
            for i in 0..half {
                if p as usize >= table_rows {
                    (row[i], row[i + half]) = (f32::NAN, f32::NAN);
                    continue;
                }
                let theta = angle(p, inv_freq[i]);
                let c = round::<T>(theta.cos() as f32 as f64);
                let s = sign * round::<T>(theta.sin() as f32 as f64);
                let (a, b) = (row[i] as f64, row[i + half] as f64);
                let lo = round::<T>(round::<T>(a * c) - round::<T>(b * s));
                let hi = round::<T>(round::<T>(b * c) + round::<T>(a * s));
                (row[i], row[i + half]) = (lo as f32, hi as f32);
            }
        }
    }
    out
}
