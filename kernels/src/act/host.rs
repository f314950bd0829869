//! Host side of the element-wise layers: the instance of each element type, launch helpers
//! on buffers already on a device, and the f64 host references (rounded to `T` where the
//! kernels round, see [`super`]).

use super::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, Element, KernelDef, LaunchDims};

/// An element type the layers are instantiated for: `f32`, `f16`, `bf16`.
pub trait ActFloat: Float + Element {
    const SWIGLU: fn() -> &'static KernelDef;
    const SWIGLU_BWD: fn() -> &'static KernelDef;
    const ADD: fn() -> &'static KernelDef;
    const BIAS_ADD: fn() -> &'static KernelDef;
    /// The largest relative spacing of the format's normal values: 2^-23, 2^-10, 2^-7.
    const ULP: f64;
}

impl ActFloat for f32 {
    const SWIGLU: fn() -> &'static KernelDef = swiglu_f32::def;
    const SWIGLU_BWD: fn() -> &'static KernelDef = swiglu_bwd_f32::def;
    const ADD: fn() -> &'static KernelDef = add_f32::def;
    const BIAS_ADD: fn() -> &'static KernelDef = bias_add_f32::def;
    const ULP: f64 = 1.0 / (1u32 << 23) as f64;
}

impl ActFloat for f16 {
    const SWIGLU: fn() -> &'static KernelDef = swiglu_f16::def;
    const SWIGLU_BWD: fn() -> &'static KernelDef = swiglu_bwd_f16::def;
    const ADD: fn() -> &'static KernelDef = add_f16::def;
    const BIAS_ADD: fn() -> &'static KernelDef = bias_add_f16::def;
    const ULP: f64 = 1.0 / (1u32 << 10) as f64;
}

impl ActFloat for bf16 {
    const SWIGLU: fn() -> &'static KernelDef = swiglu_bf16::def;
    const SWIGLU_BWD: fn() -> &'static KernelDef = swiglu_bwd_bf16::def;
    const ADD: fn() -> &'static KernelDef = add_bf16::def;
    const BIAS_ADD: fn() -> &'static KernelDef = bias_add_bf16::def;
    const ULP: f64 = 1.0 / (1u32 << 7) as f64;
}

/// Why a shape cannot run: the kernels move four elements at a time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{what} = {value} must be a positive multiple of 4 (the kernels move Vec4s) and below 2^31"
)]
pub struct ShapeError {
    pub what: &'static str,
    pub value: usize,
}

/// `value` as a u32 count of `Vec4`s, or why not.
pub fn quads(what: &'static str, value: usize) -> Result<u32, ShapeError> {
    if value == 0 || !value.is_multiple_of(4) || value >= 1 << 31 {
        return Err(ShapeError { what, value });
    }
    Ok((value / 4) as u32)
}

/// One thread per `VECS` `Vec4`s.
pub fn dims(config: &Config, quads: u64) -> LaunchDims {
    let get = |name: &str, or: i64| config.get(name).unwrap_or(or).max(1) as u64;
    let per_block = get("BLOCK", 256) * get("VECS", 2);
    LaunchDims::linear(
        quads.div_ceil(per_block).max(1) as u32,
        get("BLOCK", 256) as u32,
    )
}

fn shape_error(def: &KernelDef, e: ShapeError) -> warpforge_dsl::Error {
    warpforge_dsl::Error::Device(warpforge_dsl::backend::DeviceError::ArgMismatch {
        kernel: def.name.to_string(),
        param: e.what.to_string(),
        expected: "a positive multiple of 4 below 2^31".into(),
        got: e.value.to_string(),
    })
}

/// Rows × cols as u32s after the checks (rows·2·cols below 2^32 too).
fn rows_cols(
    def: &KernelDef,
    rows: usize,
    cols: usize,
) -> Result<(u32, u32), warpforge_dsl::Error> {
    let q = quads("cols", cols).map_err(|e| shape_error(def, e))? as u64;
    if rows == 0 || rows as u64 * 2 * q * 4 >= 1 << 32 {
        return Err(shape_error(
            def,
            ShapeError {
                what: "rows",
                value: rows,
            },
        ));
    }
    Ok((rows as u32, cols as u32))
}

/// Launches `swiglu_{T}`: `y[rows, cols]` from `gate_up[rows, 2·cols]`.
pub fn launch_swiglu<T: ActFloat>(
    device: &Device,
    config: &Config,
    gate_up: &Buffer<T>,
    y: &mut Buffer<T>,
    (rows, cols): (usize, usize),
) -> Result<(), warpforge_dsl::Error> {
    let def = (T::SWIGLU)();
    let (r, c) = rows_cols(def, rows, cols)?;
    let mut args = [
        Arg::slice(gate_up),
        Arg::slice_mut(y),
        Arg::value(r),
        Arg::value(c),
    ];
    device.launch(
        def,
        config,
        dims(config, (rows * cols / 4) as u64),
        &mut args,
    )
}

/// Launches `swiglu_bwd_{T}`: `d_gate_up[rows, 2·cols]` from `gate_up` and `dy[rows, cols]`.
pub fn launch_swiglu_bwd<T: ActFloat>(
    device: &Device,
    config: &Config,
    (gate_up, dy): (&Buffer<T>, &Buffer<T>),
    d_gate_up: &mut Buffer<T>,
    (rows, cols): (usize, usize),
) -> Result<(), warpforge_dsl::Error> {
    let def = (T::SWIGLU_BWD)();
    let (r, c) = rows_cols(def, rows, cols)?;
    let mut args = [
        Arg::slice(gate_up),
        Arg::slice(dy),
        Arg::slice_mut(d_gate_up),
        Arg::value(r),
        Arg::value(c),
    ];
    device.launch(
        def,
        config,
        dims(config, (rows * cols / 4) as u64),
        &mut args,
    )
}

/// Launches `add_{T}`: `acc += x` over `len` elements.
pub fn launch_add<T: ActFloat>(
    device: &Device,
    config: &Config,
    acc: &mut Buffer<T>,
    x: &Buffer<T>,
    len: usize,
) -> Result<(), warpforge_dsl::Error> {
    let def = (T::ADD)();
    let q = quads("len", len).map_err(|e| shape_error(def, e))?;
    let mut args = [Arg::slice_mut(acc), Arg::slice(x), Arg::value(q)];
    device.launch(def, config, dims(config, q as u64), &mut args)
}

/// Launches `bias_add_{T}`: `y[rows, cols] = T(x + bias)`, `x` f32, `bias` `[cols]`.
pub fn launch_bias_add<T: ActFloat>(
    device: &Device,
    config: &Config,
    (x, bias): (&Buffer<f32>, &Buffer<T>),
    y: &mut Buffer<T>,
    (rows, cols): (usize, usize),
) -> Result<(), warpforge_dsl::Error> {
    let def = (T::BIAS_ADD)();
    let (r, c) = rows_cols(def, rows, cols)?;
    let quads = r as u64 * c as u64 / 4;
    let mut args = [
        Arg::slice(x),
        Arg::slice(bias),
        Arg::slice_mut(y),
        Arg::value(quads as u32),
        Arg::value(c / 4),
    ];
    device.launch(def, config, dims(config, quads), &mut args)
}

/// `T(x + b)` per row (`b` of `cols` values), the f32 sum rounded once.
pub fn bias_add_reference<T: Float>(x: &[f32], bias: &[f32], cols: usize) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| T::from_f32(v + bias[i % cols]).to_f32())
        .collect()
}

/// `v` rounded to `T`, as f64.
fn round<T: Float>(v: f64) -> f64 {
    T::from_f32(v as f32).to_f32() as f64
}

fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

/// The SwiGLU forward of `gate_up` (`[rows, 2·cols]`, values of `T`): `[rows, cols]`.
pub fn swiglu_reference<T: Float>(gate_up: &[f32], cols: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(gate_up.len() / 2);
    for row in gate_up.chunks(2 * cols) {
        let (gate, up) = row.split_at(cols);
        for (&g, &u) in gate.iter().zip(up) {
            let a = round::<T>(silu(g as f64));
            y.push(round::<T>(a * u as f64) as f32);
        }
    }
    y
}

/// The SwiGLU backward: `d_gate_up` (`[rows, 2·cols]`) from `gate_up` and `dy`.
pub fn swiglu_bwd_reference<T: Float>(gate_up: &[f32], dy: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; gate_up.len()];
    for ((row, d), o) in gate_up
        .chunks(2 * cols)
        .zip(dy.chunks(cols))
        .zip(out.chunks_mut(2 * cols))
    {
        for c in 0..cols {
            let (g, u, dy) = (row[c] as f64, row[cols + c] as f64, d[c] as f64);
            let s = 1.0 / (1.0 + (-g).exp());
            let da = round::<T>(dy * u);
            o[c] = round::<T>(da * s * (1.0 + g * (1.0 - s))) as f32;
            o[cols + c] = round::<T>(dy * round::<T>(silu(g))) as f32;
        }
    }
    out
}

/// `acc + x`, rounded to `T`.
pub fn add_reference<T: Float>(acc: &[f32], x: &[f32]) -> Vec<f32> {
    acc.iter()
        .zip(x)
        .map(|(&a, &b)| round::<T>(a as f64 + b as f64) as f32)
        .collect()
}
