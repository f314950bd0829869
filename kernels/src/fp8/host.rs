//! Running the FP8 kernels from host slices: padding rows to a multiple of 4 (the kernels'
//! layout), launching, and returning dense codes and scales comparable with [`reference`].
//!
//! The input slices may hold any [`Fp8Float`] (`f32`, `f16`, `bf16`): the instance for that
//! type runs, and the result equals the f32 path on the widened input.
//!
//! Each function takes the config of the kernel it launches (`quantize_tensor` also takes
//! the amax kernel's); missing tunables fall back to the kernel's defaults.
//!
//! [`reference`]: super::reference

use super::reference::{Granularity, Quantized};
use super::{Fp8Float, Fp8Kernels, Fp8Type};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::*;
use warpforge_dsl::{Element, Error, KernelDef};

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

/// A shape error, in the launch error type: `what` needed `expected` elements.
fn check_len(def: &KernelDef, what: &str, got: usize, expected: usize) -> Result<(), Error> {
    if got == expected {
        return Ok(());
    }
    Err(Error::Device(DeviceError::ArgMismatch {
        kernel: def.name.to_string(),
        param: what.to_string(),
        expected: format!("{expected} elements (the shape given)"),
        got: format!("{got}"),
    }))
}

/// `config` over the kernel's default config: tunables it leaves out take their defaults.
pub fn complete(def: &KernelDef, config: &Config) -> Config {
    let mut full = def.space.default_config();
    for (name, value) in &config.values {
        full.set(name, *value);
    }
    full
}

fn tunable(def: &KernelDef, config: &Config, name: &str) -> u32 {
    complete(def, config).get(name).unwrap_or(1) as u32
}

/// Grid covering `quads` work items of `BLOCK × ITEMS` per block.
fn linear_dims(def: &KernelDef, config: &Config, quads: usize) -> LaunchDims {
    let block = tunable(def, config, "BLOCK");
    let per_block = (block * tunable(def, config, "ITEMS")) as usize;
    LaunchDims::linear(quads.div_ceil(per_block).max(1) as u32, block)
}

/// The kernels of format `F` for the element type of `_x`.
fn kernels_for<F: Fp8Type, T: Fp8Float>(_x: &[T]) -> Fp8Kernels {
    F::kernels::<T>()
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The tensor's amax (NaN ignored) with `fp8_amax_{T}`.
pub fn amax<T: Fp8Float>(device: &Device, config: &Config, x: &[T]) -> Result<f32, Error> {
    let ld = padded_ld(x.len());
    let dx = device.upload(&pad_rows(x, 1, x.len(), ld))?;
    let bits = amax_of(device, config, &dx, x.len())?;
    Ok(f32::from_bits(device.download(&bits)?[0]))
}

fn amax_of<T: Fp8Float>(
    device: &Device,
    config: &Config,
    dx: &Buffer<T>,
    n: usize,
) -> Result<Buffer<u32>, Error> {
    let def = T::AMAX();
    let config = &complete(def, config);
    let mut bits = device.zeros::<u32>(1)?;
    let dims = linear_dims(def, config, n.div_ceil(4));
    let mut args = [
        Arg::slice(dx),
        Arg::slice_mut(&mut bits),
        Arg::value(u32_of(n)),
    ];
    device.launch(def, config, dims, &mut args)?;
    Ok(bits)
}

/// Per-tensor current scaling: the amax kernel (`amax_config`), then the cast kernel.
pub fn quantize_tensor<F: Fp8Type>(
    device: &Device,
    amax_config: &Config,
    config: &Config,
    x: &[impl Fp8Float],
) -> Result<Quantized, Error> {
    let (n, ld) = (x.len(), padded_ld(x.len()));
    let dx = device.upload(&pad_rows(x, 1, n, ld))?;
    let bits = amax_of(device, amax_config, &dx, n)?;
    let def = (kernels_for::<F, _>(x).quantize_tensor)();
    let config = &complete(def, config);
    let mut q = device.zeros::<F>(ld)?;
    let mut scale = device.zeros::<f32>(1)?;
    let mut args = [
        Arg::slice(&dx),
        Arg::slice(&bits),
        Arg::slice_mut(&mut q),
        Arg::slice_mut(&mut scale),
        Arg::value(u32_of(n)),
    ];
    device.launch(def, config, linear_dims(def, config, ld / 4), &mut args)?;
    Ok(Quantized {
        codes: unpad_codes(&device.download(&q)?, 1, n, ld),
        scales: device.download(&scale)?,
    })
}

/// Delayed scaling in one launch: casts with `scale`, returns the codes and this tensor's amax.
pub fn quantize_delayed<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &[impl Fp8Float],
    scale: f32,
) -> Result<(Vec<u8>, f32), Error> {
    let (n, ld) = (x.len(), padded_ld(x.len()));
    let dx = device.upload(&pad_rows(x, 1, n, ld))?;
    let ds = device.upload(&[scale])?;
    let def = (kernels_for::<F, _>(x).quantize_delayed)();
    let config = &complete(def, config);
    let mut q = device.zeros::<F>(ld)?;
    let mut bits = device.zeros::<u32>(1)?;
    let mut args = [
        Arg::slice(&dx),
        Arg::slice(&ds),
        Arg::slice_mut(&mut q),
        Arg::slice_mut(&mut bits),
        Arg::value(u32_of(n)),
    ];
    device.launch(def, config, linear_dims(def, config, ld / 4), &mut args)?;
    Ok((
        unpad_codes(&device.download(&q)?, 1, n, ld),
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
    let config = &complete(def, config);
    check_len(def, "x", x.len(), rows * cols)?;
    let g = tunable(def, config, "G") as usize;
    let ld = padded_ld(cols);
    let dx = device.upload(&pad_rows(x, rows, cols, ld))?;
    let mut q = device.zeros::<F>(rows * ld)?;
    let mut scales = device.zeros::<f32>(rows * cols.div_ceil(g))?;
    let slots = rows * cols.div_ceil(g) * (g / 4);
    let mut args = [
        Arg::slice(&dx),
        Arg::slice_mut(&mut q),
        Arg::slice_mut(&mut scales),
        Arg::value(u32_of(rows)),
        Arg::value(u32_of(cols)),
        Arg::value(u32_of(ld)),
    ];
    device.launch(def, config, linear_dims(def, config, slots), &mut args)?;
    Ok(Quantized {
        codes: unpad_codes(&device.download(&q)?, rows, cols, ld),
        scales: device.download(&scales)?,
    })
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
    let config = &complete(def, config);
    check_len(def, "x", x.len(), rows * cols)?;
    let g = tunable(def, config, "G") as usize;
    let (ld, ldt) = (padded_ld(cols), padded_ld(rows));
    let dx = device.upload(&pad_rows(x, rows, cols, ld))?;
    let mut qt = device.zeros::<F>(cols * ldt)?;
    let mut scales = device.zeros::<f32>(cols * rows.div_ceil(g))?;
    let dims = LaunchDims::grid_2d(
        (u32_of(cols.div_ceil(32)), u32_of(rows.div_ceil(128))),
        (256, 1),
    );
    let mut args = [
        Arg::slice(&dx),
        Arg::slice_mut(&mut qt),
        Arg::slice_mut(&mut scales),
        Arg::value(u32_of(rows)),
        Arg::value(u32_of(cols)),
        Arg::value(u32_of(ld)),
        Arg::value(u32_of(ldt)),
    ];
    device.launch(def, config, dims, &mut args)?;
    Ok(Quantized {
        codes: unpad_codes(&device.download(&qt)?, cols, rows, ldt),
        scales: device.download(&scales)?,
    })
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
    let config = &complete(def, config);
    check_len(def, "x", x.len(), rows * cols)?;
    let ld = padded_ld(cols);
    let dx = device.upload(&pad_rows(x, rows, cols, ld))?;
    let mut q = device.zeros::<F>(rows * ld)?;
    let (tr, tc) = (rows.div_ceil(128), cols.div_ceil(128));
    let mut scales = device.zeros::<f32>(tr * tc)?;
    let block = tunable(def, config, "BLOCK");
    let dims = LaunchDims::grid_2d((u32_of(tc), u32_of(tr)), (block, 1));
    let mut args = [
        Arg::slice(&dx),
        Arg::slice_mut(&mut q),
        Arg::slice_mut(&mut scales),
        Arg::value(u32_of(rows)),
        Arg::value(u32_of(cols)),
        Arg::value(u32_of(ld)),
    ];
    device.launch(def, config, dims, &mut args)?;
    Ok(Quantized {
        codes: unpad_codes(&device.download(&q)?, rows, cols, ld),
        scales: device.download(&scales)?,
    })
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
    let config = &complete(def, config);
    check_len(def, "codes", q.codes.len(), rows * cols)?;
    let (row_shift, col_shift, scale_ld) = granularity.scale_indexing(cols);
    let scale_rows = match granularity {
        Granularity::Tensor => 1,
        Granularity::Rows { .. } => rows,
        Granularity::Blocks => rows.div_ceil(128),
    };
    check_len(
        def,
        "scales",
        q.scales.len(),
        scale_rows * (scale_ld as usize).max(1),
    )?;
    let ld = padded_ld(cols);
    let mut padded = vec![<F as Element>::from_bits(0); rows * ld];
    for (i, &c) in q.codes.iter().enumerate() {
        padded[i / cols * ld + i % cols] = <F as Element>::from_bits(c as u64);
    }
    let dq = device.upload(&padded)?;
    let ds = device.upload(&q.scales)?;
    let mut y = device.zeros::<T>(rows * ld)?;
    let mut args = [
        Arg::slice(&dq),
        Arg::slice(&ds),
        Arg::slice_mut(&mut y),
        Arg::value(u32_of(rows)),
        Arg::value(u32_of(cols)),
        Arg::value(u32_of(ld)),
        Arg::value(row_shift),
        Arg::value(col_shift),
        Arg::value(scale_ld),
    ];
    device.launch(
        def,
        config,
        linear_dims(def, config, rows * ld / 4),
        &mut args,
    )?;
    let y = device.download(&y)?;
    Ok((0..rows * cols)
        .map(|i| y[i / cols * ld + i % cols])
        .collect())
}
