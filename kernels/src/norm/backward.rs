//! RMSNorm backward, written once over `T ∈ {f32, f16, bf16}`: `rmsnorm_bwd_{T}` (the input
//! gradient), `rmsnorm_dweight_{T}` (per-chunk partial weight gradients) and
//! `column_sum` (the partials summed), all deterministic: no atomics, every sum in a
//! fixed order for a given config, so a step is bit-reproducible.
//!
//! # Semantics (autograd of the forward in [`super`], rounding where PyTorch rounds)
//!
//! With `r = rstd[row]` saved by the forward and `n = T(x·r)` the rounded normalized value:
//! - `dn = T(dy·γ)` (the product of two `T` tensors), then in f32
//!   `k = r² · Σ_c(dn·x) / cols` and `dx = T(r·(dn − x·k))` — the `.to(T)` cast passes the
//!   gradient through, and `x·rsqrt(mean(x²) + eps)` differentiates to this;
//! - `dγ[c] = Σ_rows T(dy·n)` accumulated in f32 and kept in f32 (PyTorch sums the `T`
//!   product with an f32 accumulator and rounds the total to `T`; a trainer with f32 master
//!   weights wants the unrounded f32).
//!
//! # Work decomposition
//!
//! `rmsnorm_bwd` is the forward's shape: `ROW_THREADS` threads per row, `BLOCK / ROW_THREADS`
//! rows per block, one pass for `Σ dn·x` ([`fn@row_sum`]), a second (from L1/L2) writing `dx`.
//! The weight gradient is a cross-row reduction done in two stages instead of atomics:
//! `rmsnorm_dweight` gives each thread one `Vec4` of columns and a chunk of `CHUNK` rows
//! (grid: column blocks × row chunks), so a warp reads 32 consecutive `Vec4`s of a row
//! (coalesced) and sums down the chunk in registers, writing `partial[chunk, cols]`;
//! `column_sum` then adds the chunks of each column in chunk order.
//!
//! # Roofline
//!
//! Memory-bound. `rmsnorm_bwd` reads `x`, `dy` and writes `dx`: `3·sizeof(T)` bytes per
//! element (6 for bf16), γ and `rstd` stay in L2/registers, ~8 FLOPs per element.
//! `rmsnorm_dweight` re-reads `x` and `dy` (`2·sizeof(T)` per element) and writes
//! `4·cols` bytes per `CHUNK` rows; `column_sum` reads those back (`4·cols·rows/CHUNK`),
//! under 10% of the total at `CHUNK ≥ 32` for bf16. Fusing the weight gradient into the
//! `dx` pass would save the re-read but needs the per-thread accumulators sized at compile
//! time (a maximum-width tunable); left for when profiling says it matters.
//!
//! Tunables: `rmsnorm_bwd` as the forward (`BLOCK`, `ROW_THREADS`; default 128 × 128);
//! `rmsnorm_dweight`: `BLOCK` ∈ {64, 128, 256} column `Vec4`s per block, `CHUNK` ∈ {16, 32,
//! 64, 128} rows per partial (default 128 × 32); `column_sum`: `BLOCK` (default 128).
//! Layout: as the forward (rows `ld` apart, `ld % 4 == 0`, padding lanes masked and `dx`
//! written 0 there; `partial` is `chunks × ld` f32, `dγ` holds `ld` values, 0 past `cols`).

use super::{mul4, row_sum, scale4};
use crate::fp8::{mask4, narrow4_bf16, narrow4_f16, narrow4_f32};
use crate::fp8::{widen4_bf16, widen4_f16, widen4_f32};
use crate::norm::{load_row4_bf16, load_row4_f16, load_row4_f32};
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, KernelDef, LaunchDims};
use warpforge_macros::{device, kernel};

/// `v` rounded to `T` lane by lane and widened back (the value a `T` tensor holds).
#[device(types(T = [f32, f16, bf16]))]
pub fn round4<T: Float>(v: Vec4<f32>) -> Vec4<f32> {
    widen4::<T>(narrow4::<T>(v))
}

/// `a + b`, lane by lane.
#[device]
pub fn add4(a: Vec4<f32>, b: Vec4<f32>) -> Vec4<f32> {
    Vec4::new(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w)
}

/// `r · (dn − x·k)`, lane by lane.
#[device]
pub fn rms_dx4(dn: Vec4<f32>, x: Vec4<f32>, k: f32, r: f32) -> Vec4<f32> {
    Vec4::new(
        r * (dn.x - x.x * k),
        r * (dn.y - x.y * k),
        r * (dn.z - x.z * k),
        r * (dn.w - x.w * k),
    )
}

/// Σ of `a · b` over the four lanes.
#[device]
pub fn dot4(a: Vec4<f32>, b: Vec4<f32>) -> f32 {
    a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w
}

#[kernel(block = (BLOCK),
         tune(BLOCK = [128, 256, 512], ROW_THREADS = [32, 64, 128, 256, 512]),
         constraint = ROW_THREADS <= BLOCK,
         default(BLOCK = 128, ROW_THREADS = 128), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_bwd<T: Float, const BLOCK: u32, const ROW_THREADS: u32>(
    x: &[Vec4<T>],
    weight: &[Vec4<T>],
    dy: &[Vec4<T>],
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
    let r = if row < rows { rstd[row] } else { 0.0f32 };
    // γ is loaded masked like `x` and `dy`: its padding lanes may hold anything.
    let mut s = 0.0f32;
    let mut v = t;
    while v < vecs {
        let dn = round4::<T>(mul4(
            load_row4::<T>(dy, base + v, v, cols),
            load_row4::<T>(weight, v, v, cols),
        ));
        s += dot4(dn, load_row4::<T>(x, base + v, v, cols));
        v += ROW_THREADS;
    }
    let k = r * r * (row_sum::<BLOCK, ROW_THREADS>(s, &mut scratch) / cols as f32);
    let mut v2 = t;
    while v2 < vecs {
        let dn = round4::<T>(mul4(
            load_row4::<T>(dy, base + v2, v2, cols),
            load_row4::<T>(weight, v2, v2, cols),
        ));
        let g = rms_dx4(dn, load_row4::<T>(x, base + v2, v2, cols), k, r);
        dx[base + v2] = narrow4::<T>(mask4(g, v2 * 4, cols));
        v2 += ROW_THREADS;
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256], CHUNK = [16, 32, 64, 128]),
         default(BLOCK = 128, CHUNK = 32), types(T = [f32, f16, bf16]))]
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_dweight<T: Float, const BLOCK: u32, const CHUNK: u32>(
    x: &[Vec4<T>],
    dy: &[Vec4<T>],
    rstd: &[f32],
    partial: &mut [Vec4<f32>],
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
        let mut acc = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        let mut row = first;
        while row < end {
            let at = row * quads + v;
            let n = round4::<T>(scale4(load_row4::<T>(x, at, v, cols), rstd[row]));
            acc = add4(acc, round4::<T>(mul4(load_row4::<T>(dy, at, v, cols), n)));
            row += 1;
        }
        partial[block_idx_y() * quads + v] = acc;
    }
}

#[kernel(block = (BLOCK), tune(BLOCK = [64, 128, 256]), default(BLOCK = 128))]
pub fn column_sum<const BLOCK: u32>(
    partial: &[Vec4<f32>],
    out: &mut [Vec4<f32>],
    chunks: u32,
    quads: u32,
) {
    let v = block_idx_x() * BLOCK + thread_idx_x();
    if v < quads {
        let mut acc = Vec4::new(0.0f32, 0.0, 0.0, 0.0);
        let mut c = 0u32;
        while c < chunks {
            acc = add4(acc, partial[c * quads + v]);
            c += 1;
        }
        out[v] = acc;
    }
}

/// The instances of each element type.
pub trait NormBwdFloat: super::host::NormFloat {
    const RMSNORM_BWD: fn() -> &'static KernelDef;
    const RMSNORM_DWEIGHT: fn() -> &'static KernelDef;
}

impl NormBwdFloat for f32 {
    const RMSNORM_BWD: fn() -> &'static KernelDef = rmsnorm_bwd_f32::def;
    const RMSNORM_DWEIGHT: fn() -> &'static KernelDef = rmsnorm_dweight_f32::def;
}

impl NormBwdFloat for f16 {
    const RMSNORM_BWD: fn() -> &'static KernelDef = rmsnorm_bwd_f16::def;
    const RMSNORM_DWEIGHT: fn() -> &'static KernelDef = rmsnorm_dweight_f16::def;
}

impl NormBwdFloat for bf16 {
    const RMSNORM_BWD: fn() -> &'static KernelDef = rmsnorm_bwd_bf16::def;
    const RMSNORM_DWEIGHT: fn() -> &'static KernelDef = rmsnorm_dweight_bf16::def;
}

pub use super::host::{dims as row_dims, Rows};

/// The number of `CHUNK`-row partials `rmsnorm_dweight` writes for `rows` rows.
pub fn chunks(config: &Config, rows: u32) -> u32 {
    rows.div_ceil(config.get("CHUNK").unwrap_or(32).max(1) as u32)
        .max(1)
}

/// Launches `rmsnorm_bwd_{T}`: `dx` from `x`, `γ`, `dy` and the forward's `rstd`.
pub fn launch_rmsnorm_bwd<T: NormBwdFloat>(
    device: &Device,
    config: &Config,
    (x, weight, dy, rstd): (&Buffer<T>, &Buffer<T>, &Buffer<T>, &Buffer<f32>),
    dx: &mut Buffer<T>,
    shape: Rows,
) -> Result<(), warpforge_dsl::Error> {
    let mut args = [
        Arg::slice(x),
        Arg::slice(weight),
        Arg::slice(dy),
        Arg::slice(rstd),
        Arg::slice_mut(dx),
        Arg::value(shape.rows),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
    ];
    let dims = row_dims(config, shape.rows);
    device.launch((T::RMSNORM_BWD)(), config, dims, &mut args)
}

/// Launches `rmsnorm_dweight_{T}` (`config`) then `column_sum` (its default config):
/// `dweight` (`ld` f32s) = Σ_rows T(dy · T(x·rstd)). `partial` holds at least
/// [`chunks`]`(config, rows) · ld` f32s.
pub fn launch_rmsnorm_dweight<T: NormBwdFloat>(
    device: &Device,
    config: &Config,
    (x, dy, rstd): (&Buffer<T>, &Buffer<T>, &Buffer<f32>),
    (partial, dweight): (&mut Buffer<f32>, &mut Buffer<f32>),
    shape: Rows,
) -> Result<(), warpforge_dsl::Error> {
    let block = config.get("BLOCK").unwrap_or(128).max(1) as u32;
    let quads = shape.ld / 4;
    let chunks = chunks(config, shape.rows);
    let mut args = [
        Arg::slice(x),
        Arg::slice(dy),
        Arg::slice(rstd),
        Arg::slice_mut(partial),
        Arg::value(shape.rows),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
    ];
    let dims = LaunchDims::grid_2d((quads.div_ceil(block).max(1), chunks), (block, 1));
    device.launch((T::RMSNORM_DWEIGHT)(), config, dims, &mut args)?;
    launch_column_sum(
        device,
        &column_sum::def().space.default_config(),
        partial,
        dweight,
        (chunks, quads),
    )
}

/// Launches `column_sum`: `out[v] = Σ_c partial[c · quads + v]` in chunk order.
pub fn launch_column_sum(
    device: &Device,
    config: &Config,
    partial: &Buffer<f32>,
    out: &mut Buffer<f32>,
    (chunks, quads): (u32, u32),
) -> Result<(), warpforge_dsl::Error> {
    let block = config.get("BLOCK").unwrap_or(128).max(1) as u32;
    let mut args = [
        Arg::slice(partial),
        Arg::slice_mut(out),
        Arg::value(chunks),
        Arg::value(quads),
    ];
    let dims = LaunchDims::cover(quads.max(1), block);
    device.launch(column_sum::def(), config, dims, &mut args)
}

/// The f64 reference of the backward on dense `rows × cols` values (`T` values widened),
/// with the forward's f32 `rstd`: `(dx, dweight)` before the final rounding of `dx` (the
/// caller rounds it to `T`), the products rounded where the kernels round them.
pub fn rmsnorm_bwd_reference<T: Float>(
    (x, weight, dy): (&[f32], &[f32], &[f32]),
    rstd: &[f32],
    cols: usize,
) -> (Vec<f64>, Vec<f64>) {
    let round = |v: f64| T::from_f32(v as f32).to_f32() as f64;
    let mut dx = Vec::with_capacity(x.len());
    let mut dweight = vec![0.0f64; cols];
    for ((xr, dyr), &r) in x.chunks(cols).zip(dy.chunks(cols)).zip(rstd) {
        let r = r as f64;
        let dn: Vec<f64> = dyr
            .iter()
            .zip(weight)
            .map(|(&d, &g)| round(d as f64 * g as f64))
            .collect();
        let dot: f64 = dn.iter().zip(xr).map(|(&a, &b)| a * b as f64).sum();
        let k = r * r * dot / cols as f64;
        for (&d, &xv) in dn.iter().zip(xr) {
            dx.push(r * (d - xv as f64 * k));
        }
        for ((&xv, &d), dw) in xr.iter().zip(dyr).zip(dweight.iter_mut()) {
            *dw += round(d as f64 * round(xv as f64 * r));
        }
    }
    (dx, dweight)
}
