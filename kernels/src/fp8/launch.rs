//! Launching the FP8 kernels on device buffers: the one place that knows their parameter
//! lists and launch grids. Buffers are padded as the kernels need (rows of `ld`, a
//! multiple of 4 elements: [`padded_ld`](super::host::padded_ld)); the instance for a
//! high-precision type `T` and a format `F` is reached through [`Fp8Type::kernels`].
//! Tunables a config leaves out take the kernel's defaults.

use super::reference::Granularity;
use super::{Fp8Float, Fp8Kernels, Fp8Type};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Arg, Buffer, Config, Device, Error, KernelDef, LaunchDims};

/// `config.get(name)`, at least 1 (a tunable the config lacks counts as 1).
fn tunable(config: &Config, name: &str) -> u32 {
    config.get(name).unwrap_or(1).max(1) as u32
}

/// Grid covering `quads` four-element items, `BLOCK × ITEMS` per block.
fn linear_dims(config: &Config, quads: usize) -> LaunchDims {
    let block = tunable(config, "BLOCK");
    let per_block = (block * tunable(config, "ITEMS")) as usize;
    LaunchDims::linear(quads.div_ceil(per_block).max(1) as u32, block)
}

/// An error unless `scales` holds the `needed` scales of the config's group size (a
/// config whose G disagrees with the buffers' layout would write past them or leave some
/// unwritten).
fn check_scales(def: &KernelDef, scales: &Buffer<f32>, needed: usize) -> Result<(), Error> {
    if scales.len() == needed {
        return Ok(());
    }
    Err(Error::Device(DeviceError::ArgMismatch {
        kernel: def.name.to_string(),
        param: "scales".into(),
        expected: format!("{needed} scales (the config's G over the matrix)"),
        got: format!("{}", scales.len()),
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

/// The instances pairing `x`'s element type with the format `F`.
fn kernels_for<F: Fp8Type, T: Fp8Float>(_x: &Buffer<T>) -> Fp8Kernels {
    F::kernels::<T>()
}

/// `fp8_amax_{T}` over `n` elements into `bits` (an atomic max: `bits` must start at 0).
pub fn amax<T: Fp8Float>(
    device: &Device,
    config: &Config,
    x: &Buffer<T>,
    bits: &mut Buffer<u32>,
    n: u32,
) -> Result<(), Error> {
    let config = &complete(T::AMAX(), config);
    let dims = linear_dims(config, (n as usize).div_ceil(4));
    let mut args = [Arg::slice(x), Arg::slice_mut(bits), Arg::value(n)];
    device.launch(T::AMAX(), config, dims, &mut args)
}

/// The per-tensor cast with the scale derived from `amax_bits` on the device.
pub fn quantize_tensor<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &Buffer<impl Fp8Float>,
    amax_bits: &Buffer<u32>,
    (q, scale): (&mut Buffer<F>, &mut Buffer<f32>),
    n: u32,
) -> Result<(), Error> {
    let def = (kernels_for::<F, _>(x).quantize_tensor)();
    let config = &complete(def, config);
    let mut args = [
        Arg::slice(x),
        Arg::slice(amax_bits),
        Arg::slice_mut(q),
        Arg::slice_mut(scale),
        Arg::value(n),
    ];
    let dims = linear_dims(config, (n as usize).div_ceil(4));
    device.launch(def, config, dims, &mut args)
}

/// The delayed-scaling cast with `scale`, reducing the tensor's amax into `amax_bits`.
pub fn quantize_delayed<F: Fp8Type>(
    device: &Device,
    config: &Config,
    (x, scale): (&Buffer<impl Fp8Float>, &Buffer<f32>),
    (q, amax_bits): (&mut Buffer<F>, &mut Buffer<u32>),
    n: u32,
) -> Result<(), Error> {
    let def = (kernels_for::<F, _>(x).quantize_delayed)();
    let config = &complete(def, config);
    let mut args = [
        Arg::slice(x),
        Arg::slice(scale),
        Arg::slice_mut(q),
        Arg::slice_mut(amax_bits),
        Arg::value(n),
    ];
    let dims = linear_dims(config, (n as usize).div_ceil(4));
    device.launch(def, config, dims, &mut args)
}

/// A matrix of `rows × cols` stored in rows of `ld` elements.
#[derive(Clone, Copy, Debug)]
pub struct Matrix {
    pub rows: u32,
    pub cols: u32,
    pub ld: u32,
}

/// 1×G groups along the rows (G from the config).
pub fn quantize_rows<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &Buffer<impl Fp8Float>,
    (q, scales): (&mut Buffer<F>, &mut Buffer<f32>),
    m: Matrix,
) -> Result<(), Error> {
    let def = (kernels_for::<F, _>(x).quantize_rows)();
    let config = &complete(def, config);
    let g = tunable(config, "G") as usize;
    check_scales(def, scales, m.rows as usize * (m.cols as usize).div_ceil(g))?;
    let slots = m.rows as usize * (m.cols as usize).div_ceil(g) * (g / 4);
    let mut args = [
        Arg::slice(x),
        Arg::slice_mut(q),
        Arg::slice_mut(scales),
        Arg::value(m.rows),
        Arg::value(m.cols),
        Arg::value(m.ld),
    ];
    device.launch(def, config, linear_dims(config, slots), &mut args)
}

/// X → Xt (`cols` rows of `ldt`) with 1×G groups along Xt's rows (G from the config).
pub fn quantize_rows_t<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &Buffer<impl Fp8Float>,
    (qt, scales): (&mut Buffer<F>, &mut Buffer<f32>),
    m: Matrix,
    ldt: u32,
) -> Result<(), Error> {
    let def = (kernels_for::<F, _>(x).quantize_rows_t)();
    let config = &complete(def, config);
    let g = tunable(config, "G") as usize;
    check_scales(def, scales, m.cols as usize * (m.rows as usize).div_ceil(g))?;
    // Fixed 256-thread blocks, each transposing a 128-row × 32-column tile.
    let dims = LaunchDims::grid_2d((m.cols.div_ceil(32), m.rows.div_ceil(128)), (256, 1));
    let mut args = [
        Arg::slice(x),
        Arg::slice_mut(qt),
        Arg::slice_mut(scales),
        Arg::value(m.rows),
        Arg::value(m.cols),
        Arg::value(m.ld),
        Arg::value(ldt),
    ];
    device.launch(def, config, dims, &mut args)
}

/// One scale per 128×128 tile: one block per tile.
pub fn quantize_blocks<F: Fp8Type>(
    device: &Device,
    config: &Config,
    x: &Buffer<impl Fp8Float>,
    (q, scales): (&mut Buffer<F>, &mut Buffer<f32>),
    m: Matrix,
) -> Result<(), Error> {
    let def = (kernels_for::<F, _>(x).quantize_blocks)();
    let config = &complete(def, config);
    let dims = LaunchDims::grid_2d(
        (m.cols.div_ceil(128), m.rows.div_ceil(128)),
        (tunable(config, "BLOCK"), 1),
    );
    let mut args = [
        Arg::slice(x),
        Arg::slice_mut(q),
        Arg::slice_mut(scales),
        Arg::value(m.rows),
        Arg::value(m.cols),
        Arg::value(m.ld),
    ];
    device.launch(def, config, dims, &mut args)
}

/// `y = T(f32(q) * s)` with the scales laid out as `granularity` says.
pub fn dequantize<F: Fp8Type, T: Fp8Float>(
    device: &Device,
    config: &Config,
    (q, scales): (&Buffer<F>, &Buffer<f32>),
    y: &mut Buffer<T>,
    m: Matrix,
    granularity: Granularity,
) -> Result<(), Error> {
    let def = (F::kernels::<T>().dequantize)();
    let config = &complete(def, config);
    let (row_shift, col_shift, scale_ld) = granularity.scale_indexing(m.cols as usize);
    let mut args = [
        Arg::slice(q),
        Arg::slice(scales),
        Arg::slice_mut(y),
        Arg::value(m.rows),
        Arg::value(m.cols),
        Arg::value(m.ld),
        Arg::value(row_shift),
        Arg::value(col_shift),
        Arg::value(scale_ld),
    ];
    let quads = m.rows as usize * m.ld as usize / 4;
    device.launch(def, config, linear_dims(config, quads), &mut args)
}
