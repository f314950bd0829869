//! Running the FP8 kernels from host slices: padding rows to a multiple of 4 (the kernels'
//! layout), uploading, launching through [`super::launch`], and returning dense
//! codes and scales comparable with [`reference`].
//!
//! The input slices may hold any [`Fp8Float`] (`f32`, `f16`, `bf16`): the instance for that
//! type runs, and the result equals the f32 path on the widened input.
//!
//! Each function takes the config of the kernel it launches (`quantize_tensor` also takes
//! the amax kernel's); missing tunables fall back to the kernel's defaults.
//!
//! [`reference`]: super::reference

use super::launch::{self, Matrix};
use super::reference::{Granularity, Quantized};
use super::{Fp8Float, Fp8Kernels, Fp8Type};
use crate::family::check_len;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Element, Error, KernelDef};

pub use super::launch::complete;

/// The leading dimension the kernels need for `cols` columns: the next multiple of 4.
pub fn padded_ld(cols: usize) -> usize {
    cols.div_ceil(4).max(1) * 4
}

/// X[rows, cols] copied into rows of `ld` elements, the padding zeroed.
pub fn pad_rows<T: Element>(x: &[T], rows: usize, cols: usize, ld: usize) -> Vec<T> {
    let mut out = vec![T::from_bits(0); rows * ld];
    for r in 0..rows {
        out[r * ld..r * ld + cols].copy_from_slice(&x[r * cols..(r + 1) * cols]);
    }
    out
}

fn unpad_codes<F: Fp8Type>(q: &[F], rows: usize, cols: usize, ld: usize) -> Vec<u8> {
    (0..rows * cols)
        .map(|i| q[i / cols * ld + i % cols].code())
        .collect()
}

/// The kernels of format `F` for the element type of `_x`.
fn kernels_for<F: Fp8Type, T: Fp8Float>(_x: &[T]) -> Fp8Kernels {
    F::kernels::<T>()
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// X[rows, cols] padded to rows of [`padded_ld`] and uploaded, with its matrix shape.
fn upload_matrix<T: Element>(
    device: &Device,
    x: &[T],
    rows: usize,
    cols: usize,
) -> Result<(Buffer<T>, Matrix), Error> {
    let ld = padded_ld(cols);
    let m = Matrix {
        rows: u32_of(rows),
        cols: u32_of(cols),
        ld: u32_of(ld),
    };
    Ok((device.upload(&pad_rows(x, rows, cols, ld))?, m))
}

/// The dense codes of `q` (`rows` rows of `ld`) and the scales.
fn quantized<F: Fp8Type>(
    device: &Device,
    q: &Buffer<F>,
    scales: &Buffer<f32>,
    (rows, cols, ld): (usize, usize, usize),
) -> Result<Quantized, Error> {
    Ok(Quantized {
        codes: unpad_codes(&device.download(q)?, rows, cols, ld),
        scales: device.download(scales)?,
    })
}

/// The group size of `config` for the kernel `def` (its default when the config has none).
fn group(def: &KernelDef, config: &Config) -> usize {
    complete(def, config).get("G").unwrap_or(1).max(1) as usize
}

/// The tensor's amax (NaN ignored) with `fp8_amax_{T}`.
pub fn amax<T: Fp8Float>(device: &Device, config: &Config, x: &[T]) -> Result<f32, Error> {
    let (dx, _) = upload_matrix(device, x, 1, x.len())?;
    let mut bits = device.zeros::<u32>(1)?;
    launch::amax(device, config, &dx, &mut bits, u32_of(x.len()))?;
    Ok(f32::from_bits(device.download(&bits)?[0]))
}

/// Per-tensor current scaling: the amax kernel (`amax_config`), then the cast kernel.
pub fn quantize_tensor<F: Fp8Type>(
    device: &Device,
    amax_config: &Config,
    config: &Config,
    x: &[impl Fp8Float],
) -> Result<Quantized, Error> {
    let (dx, m) = upload_matrix(device, x, 1, x.len())?;
    let mut bits = device.zeros::<u32>(1)?;
    launch::amax(device, amax_config, &dx, &mut bits, m.cols)?;
    let mut q = device.zeros::<F>(m.ld as usize)?;
    let mut scale = device.zeros::<f32>(1)?;
    launch::quantize_tensor(device, config, &dx, &bits, (&mut q, &mut scale), m.cols)?;
    quantized(device, &q, &scale, (1, x.len(), m.ld as usize))
}

/// Delayed scaling in one launch: casts with `scale`, returns the codes and this tensor's amax.
pub fn quantize_delayed<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &[impl Fp8Float],
    scale: f32,
) -> Result<(Vec<u8>, f32), Error> {
    let (dx, m) = upload_matrix(device, x, 1, x.len())?;
    let ds = device.upload(&[scale])?;
    let mut q = device.zeros::<F>(m.ld as usize)?;
    let mut bits = device.zeros::<u32>(1)?;
    launch::quantize_delayed(device, config, (&dx, &ds), (&mut q, &mut bits), m.cols)?;
    Ok((
        unpad_codes(&device.download(&q)?, 1, x.len(), m.ld as usize),
        f32::from_bits(device.download(&bits)?[0]),
    ))
}

/// 1×G groups along the rows of X[rows, cols] (G from the config).
pub fn quantize_rows<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &[impl Fp8Float],
    rows: usize,
    cols: usize,
) -> Result<Quantized, Error> {
    let def = (kernels_for::<F, _>(x).quantize_rows)();
    check_len(def, "x", x.len(), rows * cols)?;
    let g = group(def, config);
    let (dx, m) = upload_matrix(device, x, rows, cols)?;
    let mut q = device.zeros::<F>(rows * m.ld as usize)?;
    let mut scales = device.zeros::<f32>(rows * cols.div_ceil(g))?;
    launch::quantize_rows(device, config, &dx, (&mut q, &mut scales), m)?;
    quantized(device, &q, &scales, (rows, cols, m.ld as usize))
}

/// X[rows, cols] → Xt[cols, rows] with 1×G groups along Xt's rows (G from the config).
pub fn quantize_rows_t<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &[impl Fp8Float],
    rows: usize,
    cols: usize,
) -> Result<Quantized, Error> {
    let def = (kernels_for::<F, _>(x).quantize_rows_t)();
    check_len(def, "x", x.len(), rows * cols)?;
    let g = group(def, config);
    let (dx, m) = upload_matrix(device, x, rows, cols)?;
    let ldt = padded_ld(rows);
    let mut qt = device.zeros::<F>(cols * ldt)?;
    let mut scales = device.zeros::<f32>(cols * rows.div_ceil(g))?;
    launch::quantize_rows_t(device, config, &dx, (&mut qt, &mut scales), m, u32_of(ldt))?;
    quantized(device, &qt, &scales, (cols, rows, ldt))
}

/// One scale per 128×128 tile of X[rows, cols].
pub fn quantize_blocks<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &[impl Fp8Float],
    rows: usize,
    cols: usize,
) -> Result<Quantized, Error> {
    let def = (kernels_for::<F, _>(x).quantize_blocks)();
    check_len(def, "x", x.len(), rows * cols)?;
    let (dx, m) = upload_matrix(device, x, rows, cols)?;
    let mut q = device.zeros::<F>(rows * m.ld as usize)?;
    let mut scales = device.zeros::<f32>(rows.div_ceil(128) * cols.div_ceil(128))?;
    launch::quantize_blocks(device, config, &dx, (&mut q, &mut scales), m)?;
    quantized(device, &q, &scales, (rows, cols, m.ld as usize))
}

/// Dequantizes dense codes of a [rows, cols] matrix (a flat tensor is one row) to f32.
pub fn dequantize<F: Fp8Type>(
    device: &Device,
    config: &Config,
    q: &Quantized,
    rows: usize,
    cols: usize,
    granularity: Granularity,
) -> Result<Vec<f32>, Error> {
    dequantize_to::<F, f32>(device, config, q, rows, cols, granularity)
}

/// The number of scales `granularity` gives a `rows × cols` matrix.
pub fn scale_count(granularity: Granularity, rows: usize, cols: usize) -> usize {
    let (_, _, scale_ld) = granularity.scale_indexing(cols);
    let scale_rows = match granularity {
        Granularity::Tensor => 1,
        Granularity::Rows { .. } => rows,
        Granularity::Blocks => rows.div_ceil(128),
    };
    scale_rows * (scale_ld as usize).max(1)
}

/// Dense codes of a [rows, cols] matrix padded to rows of [`padded_ld`], as `F` values.
pub fn pad_codes<F: Fp8Type>(codes: &[u8], rows: usize, cols: usize) -> Vec<F> {
    let ld = padded_ld(cols);
    let mut padded = vec![<F as Element>::from_bits(0); rows * ld];
    for (i, &c) in codes.iter().enumerate() {
        padded[i / cols * ld + i % cols] = <F as Element>::from_bits(c as u64);
    }
    padded
}

/// Dequantizes dense codes of a [rows, cols] matrix to `T`: `T(f32(q) * s)`.
pub fn dequantize_to<F: Fp8Type, T: Fp8Float>(
    device: &Device,
    config: &Config,
    q: &Quantized,
    rows: usize,
    cols: usize,
    granularity: Granularity,
) -> Result<Vec<T>, Error> {
    let def = (F::kernels::<T>().dequantize)();
    check_len(def, "codes", q.codes.len(), rows * cols)?;
    check_len(
        def,
        "scales",
        q.scales.len(),
        scale_count(granularity, rows, cols),
    )?;
    let (dq, m) = upload_matrix(
        device,
        &pad_codes::<F>(&q.codes, rows, cols),
        rows,
        padded_ld(cols),
    )?;
    let m = Matrix {
        cols: u32_of(cols),
        ..m
    };
    let ds = device.upload(&q.scales)?;
    let mut y = device.zeros::<T>(rows * m.ld as usize)?;
    launch::dequantize(device, config, (&dq, &ds), &mut y, m, granularity)?;
    let (y, ld) = (device.download(&y)?, m.ld as usize);
    Ok((0..rows * cols)
        .map(|i| y[i / cols * ld + i % cols])
        .collect())
}
