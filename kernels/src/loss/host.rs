//! Host side of the cross-entropy: the instance of each element type, the launch helper on
//! buffers already on a device, the gradient scale of the mean loss, and the f64 reference.

use super::*;
use warpforge_dsl::{Arg, Buffer, Config, Device, Element, KernelDef, LaunchDims};

/// PyTorch's default `ignore_index`.
pub const IGNORE_INDEX: i32 = -100;

/// An element type the logits come in: `f32`, `f16`, `bf16`.
pub trait LossFloat: Float + Element {
    /// `cross_entropy_{T}`.
    const CROSS_ENTROPY: fn() -> &'static KernelDef;
    /// The largest relative spacing of the format's normal values: 2^-23, 2^-10, 2^-7.
    const ULP: f64;
}

impl LossFloat for f32 {
    const CROSS_ENTROPY: fn() -> &'static KernelDef = cross_entropy_f32::def;
    const ULP: f64 = 1.0 / (1u32 << 23) as f64;
}

impl LossFloat for f16 {
    const CROSS_ENTROPY: fn() -> &'static KernelDef = cross_entropy_f16::def;
    const ULP: f64 = 1.0 / (1u32 << 10) as f64;
}

impl LossFloat for bf16 {
    const CROSS_ENTROPY: fn() -> &'static KernelDef = cross_entropy_bf16::def;
    const ULP: f64 = 1.0 / (1u32 << 7) as f64;
}

/// Why targets cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target {target} of row {row} is outside the vocabulary [0, {vocab}) and is not the ignore_index {ignore_index}")]
    OutOfRange {
        row: usize,
        target: i32,
        vocab: usize,
        ignore_index: i32,
    },
    #[error("every target is the ignore_index {0}: the mean loss is undefined (nothing to learn from this batch)")]
    AllIgnored(i32),
}

/// `dloss / N` for the mean loss over the rows whose target is not `ignore_index` (PyTorch's
/// `reduction='mean'`), after checking every target is in `[0, vocab)` or ignored.
pub fn mean_grad_scale(
    targets: &[i32],
    vocab: usize,
    ignore_index: i32,
    dloss: f32,
) -> Result<f32, TargetError> {
    let mut counted = 0usize;
    for (row, &target) in targets.iter().enumerate() {
        if target == ignore_index {
            continue;
        }
        if target < 0 || target as usize >= vocab {
            return Err(TargetError::OutOfRange {
                row,
                target,
                vocab,
                ignore_index,
            });
        }
        counted += 1;
    }
    if counted == 0 {
        return Err(TargetError::AllIgnored(ignore_index));
    }
    Ok(dloss / counted as f32)
}

/// The rows of the logits: `rows` rows of `cols` values, `ld` elements apart (a multiple
/// of 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logits {
    pub rows: u32,
    pub cols: u32,
    pub ld: u32,
}

/// One block of `BLOCK` threads per row.
pub fn dims(config: &Config, rows: u32) -> LaunchDims {
    let block = config.get("BLOCK").unwrap_or(512).max(32) as u32;
    LaunchDims::linear(rows.max(1), block)
}

/// Launches `cross_entropy_{T}`: `loss[r]` per row and `dlogits = T((softmax − onehot) ·
/// grad_scale)`, rows with target `ignore_index` zero.
pub fn launch_cross_entropy<T: LossFloat>(
    device: &Device,
    config: &Config,
    (logits, targets): (&Buffer<T>, &Buffer<i32>),
    (loss, dlogits): (&mut Buffer<f32>, &mut Buffer<T>),
    shape: Logits,
    (ignore_index, grad_scale): (i32, f32),
) -> Result<(), warpforge_dsl::Error> {
    let mut args = [
        Arg::slice(logits),
        Arg::slice(targets),
        Arg::slice_mut(loss),
        Arg::slice_mut(dlogits),
        Arg::value(shape.cols),
        Arg::value(shape.ld),
        Arg::value(ignore_index),
        Arg::value(grad_scale),
    ];
    device.launch(
        (T::CROSS_ENTROPY)(),
        config,
        dims(config, shape.rows),
        &mut args,
    )
}

/// The reference's output: the f64 loss per row and the f64 gradient (dense `rows × cols`,
/// before any rounding).
pub struct CrossEntropy {
    pub loss: Vec<f64>,
    pub dlogits: Vec<f64>,
}

/// Cross-entropy of the dense `rows × cols` logits `x` in f64: `loss[r] = lse − x_t` and
/// `dlogits = (softmax − onehot) · grad_scale`, rows with target `ignore_index` (or out of
/// range) zero.
pub fn cross_entropy_reference(
    x: &[f32],
    targets: &[i32],
    cols: usize,
    (ignore_index, grad_scale): (i32, f64),
) -> CrossEntropy {
    let mut out = CrossEntropy {
        loss: Vec::with_capacity(targets.len()),
        dlogits: Vec::with_capacity(x.len()),
    };
    for (row, &t) in x.chunks(cols.max(1)).zip(targets) {
        if t == ignore_index || t < 0 || t as usize >= cols {
            out.loss.push(0.0);
            out.dlogits.resize(out.dlogits.len() + row.len(), 0.0);
            continue;
        }
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let lse = m + sum.ln();
        out.loss.push(lse - row[t as usize] as f64);
        for (c, &v) in row.iter().enumerate() {
            let hit = if c == t as usize { 1.0 } else { 0.0 };
            out.dlogits
                .push(((v as f64 - lse).exp() - hit) * grad_scale);
        }
    }
    out
}
