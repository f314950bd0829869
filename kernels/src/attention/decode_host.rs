//! Host side of decode attention: instances, default configs, the split heuristic, the
//! partial-result workspace, and the launch (decode kernel, plus the combine when split).

use super::host::{config_for, AttnArgs, AttnBuffers};
use super::reference::{AttnError, AttnShape};
use super::{
    flash_attn_decode_bf16, flash_attn_decode_combine_bf16, flash_attn_decode_combine_f16,
    flash_attn_decode_f16,
};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Element, KernelDef, ScalarType};

/// The most query tokens per sequence the decode kernel takes (speculative decoding's
/// drafts; longer chunks belong to `flash_attn_fwd`). Each 16 packed rows (tokens × the
/// query heads of a KV head) are one block row tile.
pub const DECODE_MAX_Q: usize = 16;

/// The most splits a launch takes (the combine's loop and the partials' size grow with it).
pub const MAX_SPLITS: usize = 128;

/// The fewest K tiles a split gets from [`decode_splits`]: a split must stream long enough
/// to amortize loading Q, the pipeline's fill and the cross-warp merge.
pub const MIN_TILES_PER_SPLIT: usize = 4;

/// The decode kernel's instance for element type `t` (f16 or bf16).
pub fn decode_def_of(t: ScalarType) -> Option<&'static KernelDef> {
    match t {
        ScalarType::F16 => Some(flash_attn_decode_f16::def()),
        ScalarType::BF16 => Some(flash_attn_decode_bf16::def()),
        _ => None,
    }
}

/// The split combine's instance for element type `t` (f16 or bf16).
pub fn combine_def_of(t: ScalarType) -> Option<&'static KernelDef> {
    match t {
        ScalarType::F16 => Some(flash_attn_decode_combine_f16::def()),
        ScalarType::BF16 => Some(flash_attn_decode_combine_bf16::def()),
        _ => None,
    }
}

/// The default config for a head dimension: 32-key tiles over 2 warps (16 keys each),
/// 4 stages — three tiles (48 KiB of K/V at d = 128) in flight per block while one is
/// consumed; 81 KiB of shared memory at d = 128, so two blocks share an SM on sm_80 and
/// sm_90 (one on sm_86/89, whose SMs have 100 KiB). Decode is bound by bytes in flight,
/// not by the tile's math; at d = 256 two stages fit.
pub fn decode_default_config(head_dim: usize) -> Config {
    let space = &flash_attn_decode_f16::def().space;
    let make = |(bn, warps, stages): (i64, i64, i64)| {
        Config::new()
            .with("HEAD_DIM", head_dim as i64)
            .with("BLOCK_N", bn)
            .with("WARPS", warps)
            .with("STAGES", stages)
    };
    [(32, 2, 4), (32, 2, 3), (32, 2, 2), (32, 1, 2)]
        .into_iter()
        .map(make)
        .find(|c| space.satisfies(c).is_ok())
        .unwrap_or_else(|| space.default_config())
}

/// Block row tiles per KV head: the longest sequence's `q_len · group` packed rows in 16s.
pub fn row_tiles(shape: &AttnShape) -> usize {
    let max_q = shape.q_lens.iter().copied().max().unwrap_or(0);
    (max_q * (shape.heads / shape.kv_heads.max(1)))
        .div_ceil(16)
        .max(1)
}

/// How many splits of the key range a decode launch should use, from the key lengths, the
/// KV heads, the block row tiles per KV head ([`row_tiles`]: 1 for one token and group ≤
/// 16), the GPU's SM count and the config's `BLOCK_N`.
///
/// Blocks without splitting: `sequences · kv_heads · row_tiles`; the GPU holds `2 ·
/// sm_count` of them at once (two per SM at the default configs' shared memory). Already ≥
/// 80% of that → 1 (splitting only adds the combine). `max`: the longest sequence's K tiles
/// / [`MIN_TILES_PER_SPLIT`], at most [`MAX_SPLITS`] (1 for short contexts); when `blocks ·
/// max` is at most one wave, `max`. Otherwise, among `s` in `1..=max`, the wave efficiency `w/⌈w⌉` with `w = blocks · s
/// / (2 · sm_count)` (how full the last wave of blocks is), and the smallest `s` within 85%
/// of the best: about one full wave, each split at least 4 tiles long (FlashAttention-2's
/// rule, with a minimum split length).
pub fn decode_splits(
    k_lens: &[usize],
    kv_heads: usize,
    row_tiles: usize,
    sm_count: usize,
    block_n: usize,
) -> usize {
    let longest = k_lens.iter().copied().max().unwrap_or(0);
    let blocks = k_lens.len() * kv_heads * row_tiles;
    let slots = 2 * sm_count.max(1);
    let max_splits = (longest.div_ceil(block_n.max(1)) / MIN_TILES_PER_SPLIT).clamp(1, MAX_SPLITS);
    if blocks == 0 || 5 * blocks >= 4 * slots || max_splits == 1 {
        return 1;
    }
    // Even the most splits leave SMs idle: take them all.
    if blocks * max_splits <= slots {
        return max_splits;
    }
    let efficiency = |s: usize| {
        let waves = (blocks * s) as f64 / slots as f64;
        waves / waves.ceil()
    };
    let best = (1..=max_splits).map(efficiency).fold(0.0, f64::max);
    (1..=max_splits)
        .find(|&s| efficiency(s) >= 0.85 * best)
        .unwrap_or(1)
}

/// Checks a shape for the decode kernel: a valid attention shape with at most
/// [`DECODE_MAX_Q`] query tokens per sequence, and `splits` in `1..=MAX_SPLITS`.
pub fn validate_decode(shape: &AttnShape, splits: usize) -> Result<(), AttnError> {
    shape.validate()?;
    let longest = shape.q_lens.iter().copied().max().unwrap_or(0);
    if longest > DECODE_MAX_Q {
        return Err(AttnError::Shape(format!(
            "decode takes at most {DECODE_MAX_Q} query tokens per sequence, got {longest}; \
             use flash_attn_fwd for longer chunks"
        )));
    }
    if splits == 0 || splits > MAX_SPLITS {
        return Err(AttnError::Shape(format!(
            "splits must be in 1..={MAX_SPLITS}, got {splits} (decode_splits chooses one)"
        )));
    }
    let part = splits * shape.total_q() * shape.heads * shape.head_dim;
    if part > u32::MAX as usize {
        return Err(AttnError::Shape(format!(
            "{splits} splits of {} query rows exceed 2^32 partial elements; use fewer splits",
            shape.total_q()
        )));
    }
    Ok(())
}

/// Grid: (splits, kv_heads × row tiles, sequences); blocks past a sequence's rows exit.
pub fn decode_dims(config: &Config, shape: &AttnShape, splits: usize) -> LaunchDims {
    let warps = config.get("WARPS").unwrap_or(2) as u32;
    LaunchDims {
        grid: [
            splits as u32,
            (shape.kv_heads * row_tiles(shape)) as u32,
            shape.sequences() as u32,
        ],
        block: [32 * warps, 1, 1],
    }
}

/// The f32 partial results of a split launch: O `[splits, total_q, heads, d]`, LSE
/// `[splits, heads, total_q]` (one unused element each when `splits = 1`). Allocate once
/// per shape and reuse across steps.
pub struct DecodeWorkspace {
    pub splits: usize,
    pub o_part: Buffer<f32>,
    pub lse_part: Buffer<f32>,
}

impl DecodeWorkspace {
    pub fn new(device: &Device, shape: &AttnShape, splits: usize) -> Result<Self, AttnError> {
        validate_decode(shape, splits)?;
        let rows = if splits > 1 { shape.total_q() } else { 0 };
        let (o, l) = (
            splits * rows * shape.heads * shape.head_dim,
            splits * shape.heads * rows,
        );
        Ok(DecodeWorkspace {
            splits,
            o_part: device.zeros(o.max(4))?,
            lse_part: device.zeros(l.max(1))?,
        })
    }
}

/// Launches decode attention on buffers already on `device` (Q/K/V/O/LSE, prefix sums and
/// block table as for the forward kernel; `config`'s HEAD_DIM is replaced by the shape's):
/// the decode kernel with `ws.splits` splits, then, when split, the combine (its default
/// config) into `bufs.o` / `bufs.lse`. `scale` is the softmax scale (usually 1/√d).
pub fn decode_launch<T: Float + Element>(
    device: &Device,
    config: &Config,
    shape: &AttnShape,
    bufs: &mut AttnBuffers<T>,
    ws: &mut DecodeWorkspace,
    scale: f32,
) -> Result<(), AttnError> {
    decode_launch_with(device, config, shape, bufs.args(), ws, scale)
}

/// [`decode_launch`] on borrowed operands.
pub fn decode_launch_with<T: Float + Element>(
    device: &Device,
    config: &Config,
    shape: &AttnShape,
    bufs: AttnArgs<'_, T>,
    ws: &mut DecodeWorkspace,
    scale: f32,
) -> Result<(), AttnError> {
    validate_decode(shape, ws.splits)?;
    let no_instance = || AttnError::Shape(format!("decode takes f16 or bf16, not {}", T::SCALAR));
    let def = decode_def_of(T::SCALAR).ok_or_else(no_instance)?;
    let combine = combine_def_of(T::SCALAR).ok_or_else(no_instance)?;
    super::host::check_scale(scale)?;
    let needed = if ws.splits > 1 { shape.total_q() } else { 0 };
    if ws.o_part.len() < ws.splits * needed * shape.heads * shape.head_dim {
        return Err(AttnError::Shape(
            "the workspace was made for a smaller shape; make it with DecodeWorkspace::new".into(),
        ));
    }
    let config = config_for(config, shape);
    let (page_size, pages_per_seq) = bufs.kv_layout.page_args();
    let mask = bufs.mask_code(shape.causal)?;
    let mut args = [
        Arg::slice(bufs.q),
        Arg::slice(bufs.k),
        Arg::slice(bufs.v),
        Arg::slice_mut(bufs.o),
        Arg::slice_mut(bufs.lse),
        Arg::slice_mut(&mut ws.o_part),
        Arg::slice_mut(&mut ws.lse_part),
        Arg::slice(bufs.cu_seqlens_q),
        Arg::slice(bufs.cu_seqlens_k),
        Arg::value(shape.heads as u32),
        Arg::value(shape.kv_heads as u32),
        Arg::value(scale * std::f32::consts::LOG2_E),
        Arg::value(mask),
        Arg::slice(bufs.block_table),
        Arg::value(pages_per_seq),
        Arg::value(page_size),
    ];
    device.launch(
        def,
        &config,
        decode_dims(&config, shape, ws.splits),
        &mut args,
    )?;
    if ws.splits == 1 {
        return Ok(());
    }
    let combine_config = combine.space.default_config();
    let warps = combine_config.get("WARPS").unwrap_or(4) as u32;
    let pairs = (shape.total_q() * shape.heads) as u32;
    let dims = LaunchDims::linear(pairs.div_ceil(warps).max(1), 32 * warps);
    let mut args = [
        Arg::slice(&ws.o_part),
        Arg::slice(&ws.lse_part),
        Arg::slice_mut(bufs.o),
        Arg::slice_mut(bufs.lse),
        Arg::value(ws.splits as u32),
        Arg::value(shape.total_q() as u32),
        Arg::value(shape.heads as u32),
        Arg::value(shape.head_dim as u32),
    ];
    device.launch(combine, &combine_config, dims, &mut args)?;
    Ok(())
}

/// Makes a workspace for `splits`, launches and downloads O (`[total_q, heads, d]`) and LSE
/// (`[heads, total_q]`) — for tests and examples; `bufs` from [`AttnBuffers::upload`] or
/// [`AttnBuffers::upload_paged`].
pub fn decode_run<T: Float + Element>(
    device: &Device,
    config: &Config,
    shape: &AttnShape,
    bufs: &mut AttnBuffers<T>,
    splits: usize,
    scale: f32,
) -> Result<(Vec<T>, Vec<f32>), AttnError> {
    let mut ws = DecodeWorkspace::new(device, shape, splits)?;
    decode_launch(device, config, shape, bufs, &mut ws, scale)?;
    Ok((device.download(&bufs.o)?, device.download(&bufs.lse)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_SMS: usize = 132;

    #[test]
    fn short_or_wide_batches_do_not_split() {
        // A context of a few tiles never splits, whatever the batch.
        assert_eq!(decode_splits(&[100], 8, 1, H100_SMS, 32), 1);
        assert_eq!(decode_splits(&[0, 0], 8, 1, H100_SMS, 32), 1);
        // 32 sequences × 8 KV heads = 256 blocks ≥ 80% of 264 slots: no split.
        assert_eq!(decode_splits(&[4096; 32], 8, 1, H100_SMS, 32), 1);
        assert_eq!(decode_splits(&[], 8, 1, H100_SMS, 32), 1);
    }

    #[test]
    fn small_batches_split_to_about_one_wave() {
        // Batch 1, 8 KV heads, 4K keys: 8 blocks; splits fill ≥ 85% of one wave of 264.
        let s = decode_splits(&[4096], 8, 1, H100_SMS, 32);
        let waves = (8 * s) as f64 / 264.0;
        assert!((0.85..=1.0).contains(&waves), "{s} splits, {waves} waves");
        // Each split keeps at least MIN_TILES_PER_SPLIT tiles.
        assert!(4096usize.div_ceil(32).div_ceil(s) >= MIN_TILES_PER_SPLIT);
        // A 1K context caps the splits at 32 tiles / 4 = 8.
        assert_eq!(decode_splits(&[1024], 8, 1, H100_SMS, 32), 8);
        // Ragged: the longest sequence sets the cap; more SMs, more splits.
        let a100 = decode_splits(&[16384, 5], 8, 1, 108, 32);
        let h100 = decode_splits(&[16384, 5], 8, 1, H100_SMS, 32);
        assert!(a100 > 1 && h100 >= a100, "{a100} {h100}");
        assert!(decode_splits(&[1 << 20], 1, 1, H100_SMS, 32) <= MAX_SPLITS);
    }

    #[test]
    fn more_row_tiles_need_fewer_splits() {
        let one = decode_splits(&[8192; 2], 8, 1, H100_SMS, 32);
        let four = decode_splits(&[8192; 2], 8, 4, H100_SMS, 32);
        assert!(four < one, "{four} vs {one}");
    }

    #[test]
    fn validation_names_the_limit() {
        let s = AttnShape {
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            causal: true,
            q_lens: vec![17],
            k_lens: vec![40],
        };
        let e = validate_decode(&s, 1).unwrap_err().to_string();
        assert!(e.contains("at most 16"), "{e}");
        let ok = AttnShape {
            q_lens: vec![16],
            ..s
        };
        assert!(validate_decode(&ok, 1).is_ok());
        assert!(validate_decode(&ok, 0).is_err());
        assert!(validate_decode(&ok, MAX_SPLITS + 1).is_err());
        assert_eq!(row_tiles(&ok), 2);
    }
}
