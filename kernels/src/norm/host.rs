//! Host side of the norms: the instance of each element type, launch helpers on buffers
//! already on a device, the padded layout, and the f64 host references.

use super::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, Element, KernelDef, LaunchDims};

/// An element type the norms are instantiated for: `f32`, `f16`, `bf16`.
pub trait NormFloat: Float + Element {
    /// `rmsnorm_{T}`.
    const RMSNORM: fn() -> &'static KernelDef;
    /// `layernorm_{T}`.
    const LAYERNORM: fn() -> &'static KernelDef;
    /// The spacing of the format above 1.0 (the largest relative spacing of its normal
    /// values): 2^-23, 2^-10, 2^-7.
    const ULP: f64;
}

impl NormFloat for f32 {
    const RMSNORM: fn() -> &'static KernelDef = rmsnorm_f32::def;
    const LAYERNORM: fn() -> &'static KernelDef = layernorm_f32::def;
    const ULP: f64 = 1.0 / (1u32 << 23) as f64;
}

impl NormFloat for f16 {
    const RMSNORM: fn() -> &'static KernelDef = rmsnorm_f16::def;
    const LAYERNORM: fn() -> &'static KernelDef = layernorm_f16::def;
    const ULP: f64 = 1.0 / (1u32 << 10) as f64;
}

impl NormFloat for bf16 {
    const RMSNORM: fn() -> &'static KernelDef = rmsnorm_bf16::def;
    const LAYERNORM: fn() -> &'static KernelDef = layernorm_bf16::def;
    const ULP: f64 = 1.0 / (1u32 << 7) as f64;
}

/// The smallest row stride ≥ `cols` that keeps rows four-element aligned.
pub fn padded(cols: usize) -> usize {
    cols.div_ceil(4) * 4
}

/// Dense rows of `values` (`cols` wide, `T` values widened) as `T` rows `padded(cols)`
/// apart, NaN in the padding (so a kernel that reads a padding lane fails its check).
pub fn padded_rows<T: Float + Element>(values: &[f32], cols: usize) -> Vec<T> {
    let ld = padded(cols);
    let mut out = vec![T::from_f32(f32::NAN); values.len() / cols.max(1) * ld];
    for (dst, src) in out.chunks_mut(ld).zip(values.chunks(cols.max(1))) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = T::from_f32(s);
        }
    }
    out
}

/// The rows of a tensor: `rows` rows of `cols` values, `ld` elements apart (a multiple of 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    pub rows: u32,
    pub cols: u32,
    pub ld: u32,
}

impl Rows {
    /// Rows stored with the smallest aligned stride ([`padded`]).
    pub fn padded(rows: usize, cols: usize) -> Rows {
        let u = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Rows {
            rows: u(rows),
            cols: u(cols),
            ld: u(padded(cols)),
        }
    }
}

/// One block per `BLOCK / ROW_THREADS` rows.
pub fn dims(config: &Config, rows: u32) -> LaunchDims {
    let get = |name: &str, or: i64| config.get(name).unwrap_or(or).max(1) as u32;
    let block = get("BLOCK", 128);
    let per_block = (block / get("ROW_THREADS", 128)).max(1);
    LaunchDims::linear(rows.div_ceil(per_block).max(1), block)
}

/// Launches `rmsnorm_{T}`: `y = T(γ · T(x · rstd))`, `rstd[row]` written too.
pub fn launch_rmsnorm<T: NormFloat>(
    device: &Device,
    config: &Config,
    (x, weight): (&Buffer<T>, &Buffer<T>),
    (y, rstd): (&mut Buffer<T>, &mut Buffer<f32>),
    shape: Rows,
    eps: f32,
) -> Result<(), warpforge_dsl::Error> {
    let mut args = [
        Arg::slice(x),
        Arg::slice(weight),
        Arg::slice_mut(y),
        Arg::slice_mut(rstd),
        Arg::value(shape.rows),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
        Arg::value(eps),
    ];
    device.launch((T::RMSNORM)(), config, dims(config, shape.rows), &mut args)
}

/// Launches `layernorm_{T}`: `y = T((x − μ) · rstd · γ + β)`, `mean[row]` and `rstd[row]`
/// written too.
pub fn launch_layernorm<T: NormFloat>(
    device: &Device,
    config: &Config,
    (x, weight, bias): (&Buffer<T>, &Buffer<T>, &Buffer<T>),
    (y, mean, rstd): (&mut Buffer<T>, &mut Buffer<f32>, &mut Buffer<f32>),
    shape: Rows,
    eps: f32,
) -> Result<(), warpforge_dsl::Error> {
    let mut args = [
        Arg::slice(x),
        Arg::slice(weight),
        Arg::slice(bias),
        Arg::slice_mut(y),
        Arg::slice_mut(mean),
        Arg::slice_mut(rstd),
        Arg::value(shape.rows),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
        Arg::value(eps),
    ];
    device.launch(
        (T::LAYERNORM)(),
        config,
        dims(config, shape.rows),
        &mut args,
    )
}

/// The f64 statistics of a row: (mean, 1/sqrt(var + eps)) for LayerNorm, (0,
/// 1/sqrt(mean of squares + eps)) for RMSNorm (`centered = false`).
fn stats(row: &[f64], eps: f64, centered: bool) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = if centered {
        row.iter().sum::<f64>() / n
    } else {
        0.0
    };
    let second = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, 1.0 / (second + eps).sqrt())
}

/// The output of a reference: `y` (dense `rows × cols`, each value rounded as the kernel
/// rounds it) and the per-row f32 statistics.
pub struct Normalized {
    pub y: Vec<f32>,
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// RMSNorm of the dense `rows × cols` values `x` (already `T` values, widened), statistics
/// in f64: `y = T(γ · T(x · r))`, as Hugging Face's `LlamaRMSNorm`.
pub fn rmsnorm_reference<T: Float>(x: &[f32], weight: &[f32], cols: usize, eps: f32) -> Normalized {
    let round = |v: f64| T::from_f32(v as f32).to_f32();
    let mut out = Normalized {
        y: Vec::with_capacity(x.len()),
        mean: Vec::new(),
        rstd: Vec::new(),
    };
    for row in x.chunks(cols.max(1)) {
        let wide: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (_, r) = stats(&wide, eps as f64, false);
        out.rstd.push(r as f32);
        for (&v, &g) in wide.iter().zip(weight) {
            out.y.push(round(g as f64 * round(v * r) as f64));
        }
    }
    out
}

/// LayerNorm of the dense `rows × cols` values `x` (already `T` values, widened), statistics
/// in f64: `y = T((x − μ) · r · γ + β)`, rounded once.
pub fn layernorm_reference<T: Float>(
    x: &[f32],
    (weight, bias): (&[f32], &[f32]),
    cols: usize,
    eps: f32,
) -> Normalized {
    let mut out = Normalized {
        y: Vec::with_capacity(x.len()),
        mean: Vec::new(),
        rstd: Vec::new(),
    };
    for row in x.chunks(cols.max(1)) {
        let wide: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (mean, r) = stats(&wide, eps as f64, true);
        out.mean.push(mean as f32);
        out.rstd.push(r as f32);
        for ((&v, &g), &b) in wide.iter().zip(weight).zip(bias) {
            let y = (v - mean) * r * g as f64 + b as f64;
            out.y.push(T::from_f32(y as f32).to_f32());
        }
    }
    out
}
