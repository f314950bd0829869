//! Exact merge of partial attention results by their log-sum-exps (`attn_merge_{f32,f16,bf16}`):
//! split-KV decode combines its splits with it, shared-prefix (Hydragen) attention combines
//! the prefix and suffix parts.
//!
//! Part `s` is attention of the same queries over a disjoint key set `K_s`: a normalized
//! output `O_s` and `LSE_s = ln Σ_{j∈K_s} exp(scale·q·k_j)`. Over the union,
//! `LSE = M + ln Σ_s exp(LSE_s − M)` (`M = max_s LSE_s`) and
//! `O = Σ_s exp(LSE_s − LSE)·O_s` — exact, associative and commutative up to rounding, so a
//! multi-level prefix tree merges in any grouping, or N-way in one launch. A part with
//! `LSE_s = −∞` (no visible key) has weight 0 and its O is not read; when every part is −∞
//! the result is O = 0, LSE = −∞, as the forward kernel gives for such a row.
//!
//! Layouts (those of the forward kernel, stacked): `o_parts` `[parts, rows, heads, d]`,
//! `lse_parts` `[parts, heads, rows]`; out `o` `[rows, heads, d]`, `lse` `[heads, rows]`.
//! `d` is a multiple of 4 (every head dim the forward supports).
//!
//! One warp per (row, head): its lanes reduce the parts' max and weight sum with xor
//! shuffles, then walk the row's `d/4` `Vec4<T>` columns (coalesced; 128-bit for f32,
//! 64-bit for f16/bf16), summing the weighted parts in f32 and rounding once to T.
//! Memory-bound: reads `parts·rows·heads·d·|T|` plus the LSEs, writes `rows·heads·d·|T|`;
//! about 2 flops per byte read. Tunable: `WARPS` per block.

use warpforge_dsl::prelude::*;
use warpforge_macros::{device, kernel};

#[kernel(
    block = (32 * WARPS),
    tune(WARPS = [2, 4, 8]),
    default(WARPS = 4),
    types(T = [f32, f16, bf16])
)]
#[allow(clippy::too_many_arguments)]
pub fn attn_merge<T: Float, const WARPS: u32>(
    o_parts: &[Vec4<T>],
    lse_parts: &[f32],
    o: &mut [Vec4<T>],
    lse: &mut [f32],
    parts: u32,
    rows: u32,
    heads: u32,
    head_dim: u32,
) {
    let pair = block_idx_x() * WARPS + thread_idx_x() / 32;
    if pair >= rows * heads {
        return;
    }
    let lane = lane_id();
    let at = pair % heads * rows + pair / heads;
    let part_stride = heads * rows;
    let mut max = f32::NEG_INFINITY;
    let mut s = lane;
    while s < parts {
        max = max.max(lse_parts[s * part_stride + at]);
        s += 32;
    }
    max = warp_max(max);
    let mut total = 0.0f32;
    let mut s2 = lane;
    while s2 < parts {
        total += part_weight(lse_parts[s2 * part_stride + at], max);
        s2 += 32;
    }
    total = warp_sum(total);
    let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
    if lane == 0 {
        lse[at] = if total > 0.0 {
            max + total.ln()
        } else {
            f32::NEG_INFINITY
        };
    }
    let vecs = head_dim / 4;
    let mut c = lane;
    while c < vecs {
        let mut acc = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        for p in 0..parts {
            let w = part_weight(lse_parts[p * part_stride + at], max) * inv;
            if w > 0.0 {
                acc = weighted_add::<T>(o_parts[(p * rows * heads + pair) * vecs + c], w, acc);
            }
        }
        o[pair * vecs + c] = Vec4::new(
            T::from_f32(acc.x),
            T::from_f32(acc.y),
            T::from_f32(acc.z),
            T::from_f32(acc.w),
        );
        c += 32;
    }
}

/// [`attn_merge`] of two parts held in separate buffers (Hydragen: the shared prefix's
/// forward and the suffix's decode write their own O and LSE, `[≥ rows, heads, d]` and
/// `[heads, rows]`): the same arithmetic, without stacking them first.
#[kernel(
    block = (32 * WARPS),
    tune(WARPS = [2, 4, 8]),
    default(WARPS = 4),
    types(T = [f32, f16, bf16])
)]
#[allow(clippy::too_many_arguments)]
pub fn attn_merge_pair<T: Float, const WARPS: u32>(
    o_a: &[Vec4<T>],
    lse_a: &[f32],
    o_b: &[Vec4<T>],
    lse_b: &[f32],
    o: &mut [Vec4<T>],
    lse: &mut [f32],
    rows: u32,
    heads: u32,
    head_dim: u32,
) {
    let pair = block_idx_x() * WARPS + thread_idx_x() / 32;
    if pair >= rows * heads {
        return;
    }
    let at = pair % heads * rows + pair / heads;
    let la = lse_a[at];
    let lb = lse_b[at];
    let max = la.max(lb);
    let raw_a = part_weight(la, max);
    let raw_b = part_weight(lb, max);
    let total = raw_a + raw_b;
    let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
    if lane_id() == 0 {
        lse[at] = if total > 0.0 {
            max + total.ln()
        } else {
            f32::NEG_INFINITY
        };
    }
    let wa = raw_a * inv;
    let wb = raw_b * inv;
    let vecs = head_dim / 4;
    let mut c = lane_id();
    while c < vecs {
        let mut acc = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        if wa > 0.0 {
            acc = weighted_add::<T>(o_a[pair * vecs + c], wa, acc);
        }
        if wb > 0.0 {
            acc = weighted_add::<T>(o_b[pair * vecs + c], wb, acc);
        }
        o[pair * vecs + c] = Vec4::new(
            T::from_f32(acc.x),
            T::from_f32(acc.y),
            T::from_f32(acc.z),
            T::from_f32(acc.w),
        );
        c += 32;
    }
}

/// `acc + w·x`, lane by lane, with one rounding each (as [`attn_merge`] accumulates).
#[device(types(T = [f32, f16, bf16]))]
pub fn weighted_add<T: Float>(x: Vec4<T>, w: f32, acc: Vec4<f32>) -> Vec4<f32> {
    Vec4::new(
        x.x.to_f32().mul_add(w, acc.x),
        x.y.to_f32().mul_add(w, acc.y),
        x.z.to_f32().mul_add(w, acc.z),
        x.w.to_f32().mul_add(w, acc.w),
    )
}

/// exp(lse − max), 0 for an empty part (lse = −∞, also when max is −∞).
#[device]
pub fn part_weight(lse: f32, max: f32) -> f32 {
    if lse == f32::NEG_INFINITY {
        0.0
    } else {
        (lse - max).exp()
    }
}

/// The max over the 32 lanes of a warp (xor butterfly).
#[device]
pub fn warp_max(x: f32) -> f32 {
    let mut m = x;
    #[unroll]
    for k in 0..5u32 {
        m = m.max(warp_shfl_xor(m, 16u32 >> k));
    }
    m
}

/// The sum over the 32 lanes of a warp (xor butterfly: every lane gets the same sum).
#[device]
pub fn warp_sum(x: f32) -> f32 {
    let mut s = x;
    #[unroll]
    for k in 0..5u32 {
        s += warp_shfl_xor(s, 16u32 >> k);
    }
    s
}

/// The merge instance for element type `t` (f32, f16 or bf16).
pub fn merge_def_of(t: warpforge_dsl::ScalarType) -> Option<&'static warpforge_dsl::KernelDef> {
    use warpforge_dsl::ScalarType::{BF16, F16, F32};
    match t {
        F32 => Some(attn_merge_f32::def()),
        F16 => Some(attn_merge_f16::def()),
        BF16 => Some(attn_merge_bf16::def()),
        _ => None,
    }
}

/// The pair-merge instance for element type `t` (f32, f16 or bf16).
pub fn merge_pair_def_of(
    t: warpforge_dsl::ScalarType,
) -> Option<&'static warpforge_dsl::KernelDef> {
    use warpforge_dsl::ScalarType::{BF16, F16, F32};
    match t {
        F32 => Some(attn_merge_pair_f32::def()),
        F16 => Some(attn_merge_pair_f16::def()),
        BF16 => Some(attn_merge_pair_bf16::def()),
        _ => None,
    }
}

/// Launches `attn_merge_pair_{T}`: parts A and B (O `[≥ rows, heads, d]`, LSE `[heads,
/// rows]`) into `o` (its first `rows` rows) and `lse`.
pub fn merge_pair_launch<T: Float + warpforge_dsl::Element>(
    device: &Device,
    config: &Config,
    (rows, heads, head_dim): (usize, usize, usize),
    a: (&Buffer<T>, &Buffer<f32>),
    b: (&Buffer<T>, &Buffer<f32>),
    (o, lse): (&mut Buffer<T>, &mut Buffer<f32>),
) -> Result<(), super::AttnError> {
    use warpforge_dsl::Arg;
    let (n, h) = (rows * heads * head_dim, rows * heads);
    let short = [a.0.len(), b.0.len(), o.len()].iter().any(|&l| l < n)
        || [a.1.len(), b.1.len(), lse.len()].iter().any(|&l| l != h);
    if !head_dim.is_multiple_of(4) || short {
        return Err(super::AttnError::Shape(format!(
            "pair merge of {rows} rows × {heads} heads × {head_dim}: O buffers need ≥ {n} \
             elements and LSEs exactly {h}, head_dim % 4 == 0"
        )));
    }
    let def = merge_pair_def_of(T::SCALAR)
        .ok_or_else(|| super::AttnError::Shape(format!("no merge for {}", T::SCALAR)))?;
    let warps = config.get("WARPS").unwrap_or(4) as u32;
    let dims = LaunchDims::linear((h as u32).div_ceil(warps).max(1), 32 * warps);
    let mut args = [
        Arg::slice(a.0),
        Arg::slice(a.1),
        Arg::slice(b.0),
        Arg::slice(b.1),
        Arg::slice_mut(o),
        Arg::slice_mut(lse),
        Arg::value(rows as u32),
        Arg::value(heads as u32),
        Arg::value(head_dim as u32),
    ];
    device.launch(def, config, dims, &mut args)?;
    Ok(())
}

/// The shape of a merge: `parts` partial results of `rows` query rows × `heads` heads ×
/// `head_dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeShape {
    pub parts: usize,
    pub rows: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl MergeShape {
    fn check(
        &self,
        o_parts: usize,
        lse_parts: usize,
        o: usize,
        lse: usize,
    ) -> Result<(), super::AttnError> {
        let (n, h) = (
            self.rows * self.heads * self.head_dim,
            self.rows * self.heads,
        );
        if self.parts == 0 || !self.head_dim.is_multiple_of(4) {
            return Err(super::AttnError::Shape(format!(
                "merge of {} parts with head_dim {}: need at least one part and head_dim % 4 == 0",
                self.parts, self.head_dim
            )));
        }
        if o_parts != self.parts * n || lse_parts != self.parts * h || o != n || lse != h {
            return Err(super::AttnError::Shape(format!(
                "merge buffers hold O parts {o_parts}, LSE parts {lse_parts}, O {o}, LSE {lse} \
                 elements; {self:?} needs {}, {}, {n}, {h}",
                self.parts * n,
                self.parts * h
            )));
        }
        Ok(())
    }
}

/// Launches `attn_merge_{T}` on device buffers (layouts in the module docs).
pub fn merge_launch<T: Float + warpforge_dsl::Element>(
    device: &Device,
    config: &Config,
    shape: MergeShape,
    (o_parts, lse_parts): (&Buffer<T>, &Buffer<f32>),
    (o, lse): (&mut Buffer<T>, &mut Buffer<f32>),
) -> Result<(), super::AttnError> {
    use warpforge_dsl::Arg;
    shape.check(o_parts.len(), lse_parts.len(), o.len(), lse.len())?;
    let def = merge_def_of(T::SCALAR)
        .ok_or_else(|| super::AttnError::Shape(format!("no merge for {}", T::SCALAR)))?;
    let warps = config.get("WARPS").unwrap_or(4) as u32;
    let pairs = (shape.rows * shape.heads) as u32;
    let dims = LaunchDims::linear(pairs.div_ceil(warps).max(1), 32 * warps);
    let mut args = [
        Arg::slice(o_parts),
        Arg::slice(lse_parts),
        Arg::slice_mut(o),
        Arg::slice_mut(lse),
        Arg::value(shape.parts as u32),
        Arg::value(shape.rows as u32),
        Arg::value(shape.heads as u32),
        Arg::value(shape.head_dim as u32),
    ];
    device.launch(def, config, dims, &mut args)?;
    Ok(())
}

/// Uploads the stacked parts, merges, downloads (O, LSE).
pub fn merge_run<T: Float + warpforge_dsl::Element>(
    device: &Device,
    config: &Config,
    shape: MergeShape,
    o_parts: &[T],
    lse_parts: &[f32],
) -> Result<(Vec<T>, Vec<f32>), super::AttnError> {
    let (op, lp) = (device.upload(o_parts)?, device.upload(lse_parts)?);
    let mut o = device.zeros::<T>(shape.rows * shape.heads * shape.head_dim)?;
    let mut lse = device.zeros::<f32>(shape.rows * shape.heads)?;
    merge_launch(device, config, shape, (&op, &lp), (&mut o, &mut lse))?;
    Ok((device.download(&o)?, device.download(&lse)?))
}
