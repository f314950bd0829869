//! LayerNorm backward, written once over `T ∈ {f32, f16, bf16}`: `layernorm_bwd_{T}` (the
//! input gradient) and `layernorm_dparams_{T}` (per-chunk partial gradients of γ and β,
//! summed by [`fn@super::backward::column_sum`]). Deterministic: no atomics, every sum in a
//! fixed order for a given config, so a step is bit-reproducible.
//!
//! # Semantics (the autograd of [`fn@super::layernorm`], as PyTorch's LayerNorm backward)
//!
//! With `μ = mean[row]`, `r = rstd[row]` saved by the forward, `x̂ = (x − μ)·r` and
//! `g = dy·γ`, all in f32 (inputs widened exactly; PyTorch's kernel computes in f32 for
//! 16-bit tensors and rounds `dx` once):
//! - `dx = T(r · (g − Σ_c g / cols − x̂ · Σ_c (g·x̂) / cols))`;
//! - `dγ[c] = Σ_rows dy·x̂`, `dβ[c] = Σ_rows dy`, accumulated in f32 and kept in f32 (a
//!   trainer with f32 master weights wants the unrounded sums).
//!
//! # Work decomposition
//!
//! `layernorm_bwd` is the forward's shape: `ROW_THREADS` threads per row, `BLOCK /
//! ROW_THREADS` rows per block, one pass for the two row sums (`Σ g`, `Σ g·x̂`, each through
//! [`fn@super::row_sum`]), a second (from L1/L2) writing `dx`. The parameter gradients are a
//! cross-row reduction in two stages instead of atomics, as RMSNorm's
//! ([`super::backward`]): `layernorm_dparams` gives each thread one `Vec4` of columns and a
//! chunk of `CHUNK` rows (grid: column blocks × row chunks), a warp reading 32 consecutive
//! `Vec4`s of a row (coalesced) and summing down the chunk in registers, and writes
//! `partial_weight[chunk, ld]` and `partial_bias[chunk, ld]`; `column_sum` then adds each
//! column's chunks in chunk order, once for γ and once for β.
//!
//! # Roofline
//!
//! Memory-bound. `layernorm_bwd` reads `x`, `dy` and writes `dx`: `3·sizeof(T)` bytes per
//! element (6 for bf16), γ, `mean` and `rstd` from L2/registers, ~12 FLOPs per element.
//! `layernorm_dparams` re-reads `x` and `dy` (`2·sizeof(T)` per element) and writes
//! `8·ld` bytes per `CHUNK` rows, which the two column sums read back (`8·ld·rows/CHUNK`:
//! under 10% of the total at `CHUNK ≥ 64` for bf16, 20% at the default 32). Fusing the
//! parameter gradients into the `dx` pass would save the re-read but needs per-thread
//! accumulators sized at compile time (a maximum width as a tunable); left for profiling.
//!
//! Tunables: `layernorm_bwd` as the forward (`BLOCK` ∈ {128, 256, 512}, `ROW_THREADS` ∈
//! {32 … 512} ≤ `BLOCK`; default 128 × 128); `layernorm_dparams`: `BLOCK` ∈ {64, 128, 256}
//! column `Vec4`s per block, `CHUNK` ∈ {16, 32, 64, 128} rows per partial (default 128 ×
//! 32). Layout: as the forward (rows `ld` apart, `ld % 4 == 0`, padding lanes masked, `dx`
//! written 0 there; each partial buffer is `chunks × ld` f32, `dγ` and `dβ` hold `ld`
//! values each, 0 past `cols`).

use super::backward::{add4, chunks, column_sum, dot4, launch_column_sum, row_dims, Rows};
use super::{center4, mul4, row_sum, sum4};
use crate::fp8::{mask4, narrow4_bf16, narrow4_f16, narrow4_f32};
use crate::norm::{load_row4_bf16, load_row4_f16, load_row4_f32};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, KernelDef, LaunchDims};
use warpforge_macros::{device, kernel};

/// `r · (g − a − x̂·b)`, lane by lane.
#[device]
pub fn ln_dx4(g: Vec4<f32>, xhat: Vec4<f32>, a: f32, b: f32, r: f32) -> Vec4<f32> {
    Vec4::new(
        r * (g.x - a - xhat.x * b),
        r * (g.y - a - xhat.y * b),
        r * (g.z - a - xhat.z * b),
        r * (g.w - a - xhat.w * b),
    )
}

#[kernel(block = (BLOCK),
         tune(BLOCK = [128, 256, 512], ROW_THREADS = [32, 64, 128, 256, 512]),
         constraint = ROW_THREADS <= BLOCK,
         default(BLOCK = 128, ROW_THREADS = 128), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn layernorm_bwd<T: Float, const BLOCK: u32, const ROW_THREADS: u32>(
    x: &[Vec4<T>],
    weight: &[Vec4<T>],
    dy: &[Vec4<T>],
    mean: &[f32],
    rstd: &[f32],
    dx: &mut [Vec4<T>],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let mut scratch = shared_array::<f32>(BLOCK / 32);
    let row = block_idx_x() * (BLOCK / ROW_THREADS) + thread_idx_x() / ROW_THREADS;
    let t = thread_idx_x() % ROW_THREADS;
    let vecs = if row < rows { (cols + 3) / 4 } else { 0 };
    let base = row * (ld / 4);
    let mu = if row < rows { mean[row] } else { 0.0f32 };
    let r = if row < rows { rstd[row] } else { 0.0f32 };
    // g = dy·γ is 0 in the padding lanes (dy and γ masked), so x̂ there adds nothing.
    let mut sg = 0.0f32;
    let mut sgx = 0.0f32;
    let mut v = t;
    while v < vecs {
        let g = mul4(
            load_row4::<T>(dy, base + v, v, cols),
            load_row4::<T>(weight, v, v, cols),
        );
        sg += sum4(g);
        sgx += dot4(g, center4(load_row4::<T>(x, base + v, v, cols), mu, r));
        v += ROW_THREADS;
    }
    let a = row_sum::<BLOCK, ROW_THREADS>(sg, &mut scratch) / cols as f32;
    let b = row_sum::<BLOCK, ROW_THREADS>(sgx, &mut scratch) / cols as f32;
    let mut v2 = t;
    while v2 < vecs {
        let g = mul4(
            load_row4::<T>(dy, base + v2, v2, cols),
            load_row4::<T>(weight, v2, v2, cols),
        );
        let xhat = center4(load_row4::<T>(x, base + v2, v2, cols), mu, r);
        dx[base + v2] = narrow4::<T>(mask4(ln_dx4(g, xhat, a, b, r), v2 * 4, cols));
        v2 += ROW_THREADS;
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256], CHUNK = [16, 32, 64, 128]),
         default(BLOCK = 128, CHUNK = 32), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn layernorm_dparams<T: Float, const BLOCK: u32, const CHUNK: u32>(
    x: &[Vec4<T>],
    dy: &[Vec4<T>],
    mean: &[f32],
    rstd: &[f32],
    partial_weight: &mut [Vec4<f32>],
    partial_bias: &mut [Vec4<f32>],
    rows: u32,
    cols: u32,
    ld: u32,
) {
    let quads = ld / 4;
    let v = block_idx_x() * BLOCK + thread_idx_x();
    let first = block_idx_y() * CHUNK;
    let end = if first + CHUNK < rows {
        first + CHUNK
    } else {
        rows
    };
    if v < quads {
        let mut acc_w = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        let mut acc_b = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        let mut row = first;
        while row < end {
            let at = row * quads + v;
            let d = load_row4::<T>(dy, at, v, cols);
            let xhat = center4(load_row4::<T>(x, at, v, cols), mean[row], rstd[row]);
            acc_w = add4(acc_w, mul4(d, xhat));
            acc_b = add4(acc_b, d);
            row += 1;
        }
        partial_weight[block_idx_y() * quads + v] = acc_w;
        partial_bias[block_idx_y() * quads + v] = acc_b;
    }
}

/// The instances of each element type.
pub trait LayerNormBwdFloat: super::backward::NormBwdFloat {
    const LAYERNORM_BWD: fn() -> &'static KernelDef;
    const LAYERNORM_DPARAMS: fn() -> &'static KernelDef;
}

impl LayerNormBwdFloat for f32 {
    const LAYERNORM_BWD: fn() -> &'static KernelDef = layernorm_bwd_f32::def;
    const LAYERNORM_DPARAMS: fn() -> &'static KernelDef = layernorm_dparams_f32::def;
}

impl LayerNormBwdFloat for f16 {
    const LAYERNORM_BWD: fn() -> &'static KernelDef = layernorm_bwd_f16::def;
    const LAYERNORM_DPARAMS: fn() -> &'static KernelDef = layernorm_dparams_f16::def;
}

impl LayerNormBwdFloat for bf16 {
    const LAYERNORM_BWD: fn() -> &'static KernelDef = layernorm_bwd_bf16::def;
    const LAYERNORM_DPARAMS: fn() -> &'static KernelDef = layernorm_dparams_bf16::def;
}

/// Launches `layernorm_bwd_{T}`: `dx` from `x`, `γ`, `dy` and the forward's `mean`, `rstd`.
pub fn launch_layernorm_bwd<T: LayerNormBwdFloat>(
    device: &Device,
    config: &Config,
    (x, weight, dy): (&Buffer<T>, &Buffer<T>, &Buffer<T>),
    (mean, rstd): (&Buffer<f32>, &Buffer<f32>),
    dx: &mut Buffer<T>,
    shape: Rows,
) -> Result<(), warpforge_dsl::Error> {
    let mut args = [
        Arg::slice(x),
        Arg::slice(weight),
        Arg::slice(dy),
        Arg::slice(mean),
        Arg::slice(rstd),
        Arg::slice_mut(dx),
        Arg::value(shape.rows),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
    ];
    let dims = row_dims(config, shape.rows);
    device.launch((T::LAYERNORM_BWD)(), config, dims, &mut args)
}

/// Scratch for the per-chunk partials of [`launch_layernorm_dparams`]: each buffer holds
/// at least [`chunks`]`(config, rows) · ld` f32s.
pub struct Partials<'a> {
    pub weight: &'a mut Buffer<f32>,
    pub bias: &'a mut Buffer<f32>,
}

/// Launches `layernorm_dparams_{T}` (`config`) then `column_sum` twice (its default
/// config): `dweight[c] = Σ_rows dy·x̂`, `dbias[c] = Σ_rows dy` (`ld` f32s each, in f32).
pub fn launch_layernorm_dparams<T: LayerNormBwdFloat>(
    device: &Device,
    config: &Config,
    (x, dy): (&Buffer<T>, &Buffer<T>),
    (mean, rstd): (&Buffer<f32>, &Buffer<f32>),
    partials: Partials<'_>,
    (dweight, dbias): (&mut Buffer<f32>, &mut Buffer<f32>),
    shape: Rows,
) -> Result<(), warpforge_dsl::Error> {
    let block = config.get("BLOCK").unwrap_or(128).max(1) as u32;
    let quads = shape.ld / 4;
    let chunks = chunks(config, shape.rows);
    let mut args = [
        Arg::slice(x),
        Arg::slice(dy),
        Arg::slice(mean),
        Arg::slice(rstd),
        Arg::slice_mut(partials.weight),
        Arg::slice_mut(partials.bias),
        Arg::value(shape.rows),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
    ];
    let dims = LaunchDims::grid_2d((quads.div_ceil(block).max(1), chunks), (block, 1));
    device.launch((T::LAYERNORM_DPARAMS)(), config, dims, &mut args)?;
    let sum = column_sum::def().space.default_config();
    launch_column_sum(device, &sum, partials.weight, dweight, (chunks, quads))?;
    launch_column_sum(device, &sum, partials.bias, dbias, (chunks, quads))
}

/// The f64 reference of the backward on dense `rows × cols` values (`T` values widened),
/// with the forward's f32 `mean` and `rstd`: `(dx, dγ, dβ)`, `dx` before its rounding to
/// `T` (the caller rounds).
pub fn layernorm_bwd_reference(
    (x, weight, dy): (&[f32], &[f32], &[f32]),
    (mean, rstd): (&[f32], &[f32]),
    cols: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = Vec::with_capacity(x.len());
    let mut dweight = vec![0.0f64; cols];
    let mut dbias = vec![0.0f64; cols];
    let rows = x
        .chunks(cols)
        .zip(dy.chunks(cols))
        .zip(mean.iter().zip(rstd));
    for ((xr, dyr), (&mu, &r)) in rows {
        let (mu, r) = (mu as f64, r as f64);
        let xhat: Vec<f64> = xr.iter().map(|&v| (v as f64 - mu) * r).collect();
        let g: Vec<f64> = dyr
            .iter()
            .zip(weight)
            .map(|(&d, &w)| d as f64 * w as f64)
            .collect();
        let a = g.iter().sum::<f64>() / cols as f64;
        let b = g.iter().zip(&xhat).map(|(g, h)| g * h).sum::<f64>() / cols as f64;
        dx.extend(g.iter().zip(&xhat).map(|(g, h)| r * (g - a - h * b)));
        for c in 0..cols {
            dweight[c] += dyr[c] as f64 * xhat[c];
            dbias[c] += dyr[c] as f64;
        }
    }
    (dx, dweight, dbias)
}
