//! Host side of the FP8 GEMM: operands with their scales, the f64 reference, launch
//! helpers, and the library's problems with exact inputs.

use super::{fp8_gemm_e4m3_bf16, fp8_gemm_e4m3_f32, GROUP};
use crate::check::Problem;
use float8::F8E4M3;
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::prelude::{Buffer, Config, Device, Float, LaunchDims};
use warpforge_dsl::{Arg, Element, KernelDef, ScalarType};

/// How the operands are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// One scale per operand.
    Tensor,
    /// A: one scale per row and 128 of K; B: one per 128×128 tile (DeepSeek-V3).
    Blocks,
}

/// FP8 operands and their scales: A is `m` rows of `lda` codes, B `n` rows of `ldb`
/// (both K-major, leading dimensions from [`padded`]). Block scales are dense row-major:
/// `a_scale[m][ceil(k/128)]`, `b_scale[ceil(n/128)][ceil(k/128)]`.
#[derive(Clone, Debug)]
pub struct ScaledOperands {
    pub a: Vec<F8E4M3>,
    pub b: Vec<F8E4M3>,
    pub a_scale: Vec<f32>,
    pub b_scale: Vec<f32>,
    pub scaling: Scaling,
}

/// The smallest leading dimension ≥ `k` that keeps FP8 rows 16-byte aligned.
pub fn padded(k: usize) -> usize {
    k.div_ceil(16) * 16
}

/// K groups of 128.
fn groups(k: usize) -> usize {
    k.div_ceil(GROUP as usize).max(1)
}

/// C = (A·Bᵀ) with the scales applied per 128-group of K, in f64, rounded once to f32.
pub fn reference(ops: &ScaledOperands, (m, n, k): (usize, usize, usize)) -> Vec<f32> {
    let (lda, ldb, kbs) = (padded(k), padded(k), groups(k));
    let g = GROUP as usize;
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0f64;
            for kb in 0..kbs {
                let part: f64 = (kb * g..k.min((kb + 1) * g))
                    .map(|p| ops.a[i * lda + p].to_f64() * ops.b[j * ldb + p].to_f64())
                    .sum();
                let (sa, sb) = match ops.scaling {
                    Scaling::Tensor => (ops.a_scale[0], ops.b_scale[0]),
                    Scaling::Blocks => (ops.a_scale[i * kbs + kb], ops.b_scale[j / g * kbs + kb]),
                };
                sum += part * sa as f64 * sb as f64;
            }
            c[i * n + j] = sum as f32;
        }
    }
    c
}

/// Launch dims for an `m×n` output.
pub fn dims(config: &Config, m: u32, n: u32) -> LaunchDims {
    let get = |name: &str| config.get(name).unwrap_or(1) as u32;
    LaunchDims::grid_2d(
        (n.div_ceil(get("BN")).max(1), m.div_ceil(get("BM")).max(1)),
        (32 * get("WM") * get("WN"), 1),
    )
}

/// The instance writing C as `o` (f32 or bf16).
pub fn def_of(o: ScalarType) -> Option<&'static KernelDef> {
    match o {
        ScalarType::F32 => Some(fp8_gemm_e4m3_f32::def()),
        ScalarType::BF16 => Some(fp8_gemm_e4m3_bf16::def()),
        _ => None,
    }
}

/// The scale arguments `(blocked, a_scale_ld, b_scale_ld)` of `scaling` for a K of `k`.
fn scale_args(scaling: Scaling, k: u32) -> (u32, u32, u32) {
    match scaling {
        Scaling::Tensor => (0, 0, 0),
        Scaling::Blocks => {
            let groups = k.div_ceil(GROUP).max(1);
            (1, groups, groups)
        }
    }
}

/// Launches the instance for `O` on buffers already on `device` (A and B K-major with
/// leading dimension [`padded`]`(k)`, scales as [`ScaledOperands`] lays them out, C dense).
#[allow(clippy::too_many_arguments)]
pub fn launch<O: Float + Element>(
    device: &Device,
    config: &Config,
    scaling: Scaling,
    (a, b): (&Buffer<F8E4M3>, &Buffer<F8E4M3>),
    (a_scale, b_scale): (&Buffer<f32>, &Buffer<f32>),
    c: &mut Buffer<O>,
    (m, n, k): (u32, u32, u32),
) -> Result<(), warpforge_dsl::Error> {
    let def = def_of(O::SCALAR)
        .unwrap_or_else(|| panic!("no FP8 GEMM writing {}: C is f32 or bf16", O::SCALAR));
    let ld = padded(k as usize) as u32;
    let (blocked, a_ld, b_ld) = scale_args(scaling, k);
    check_operands(
        def,
        (a.len(), b.len(), c.len()),
        (m, n, k),
        ld,
        O::SCALAR.size_bytes(),
    )?;
    let mut args = [
        Arg::slice(a),
        Arg::slice(b),
        Arg::slice(a_scale),
        Arg::slice(b_scale),
        Arg::slice_mut(c),
        Arg::value(m),
        Arg::value(n),
        Arg::value(k),
        Arg::value(ld),
        Arg::value(ld),
        Arg::value(n),
        Arg::value(blocked),
        Arg::value(a_ld),
        Arg::value(b_ld),
    ];
    device.launch(def, config, dims(config, m, n), &mut args)
}

/// A and B hold `m` and `n` rows of the padded K, C `m` rows of `n`: checked before either
/// backend sees the launch (a short buffer is an illegal address on a GPU).
fn check_operands(
    def: &KernelDef,
    (a_len, b_len, c_len): (usize, usize, usize),
    (m, n, k): (u32, u32, u32),
    ld: u32,
    o_bytes: usize,
) -> Result<(), warpforge_dsl::backend::DeviceError> {
    use crate::operand::Operand;
    let (m, n, k, ld) = (m as usize, n as usize, k as usize, ld as usize);
    let operand = |param, rows, cols, ld, elem_bytes, len| Operand {
        kernel: def.name.as_str(),
        param,
        rows,
        cols,
        ld,
        elem_bytes,
        len,
    };
    operand("lda", m, k, ld, 1, a_len).check(Some(16))?;
    operand("ldb", n, k, ld, 1, b_len).check(Some(16))?;
    operand("ldc", m, n, n, o_bytes, c_len).check(None)
}

/// Runs the instance for `O` on `device`; returns C (`m×n`, dense).
pub fn run<O: Float + Element>(
    device: &Device,
    config: &Config,
    ops: &ScaledOperands,
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<O>, warpforge_dsl::Error> {
    let (da, db) = (device.upload(&ops.a)?, device.upload(&ops.b)?);
    let (dsa, dsb) = (device.upload(&ops.a_scale)?, device.upload(&ops.b_scale)?);
    let mut dc = device.zeros::<O>(m * n)?;
    let shape = (m as u32, n as u32, k as u32);
    launch(
        device,
        config,
        ops.scaling,
        (&da, &db),
        (&dsa, &dsb),
        &mut dc,
        shape,
    )?;
    Ok(device.download(&dc)?)
}

/// Problems `[m, n, k, blocked]`: a single element, ragged shapes, K spanning several
/// 128-groups (one of them partial), and both scalings.
pub fn problems() -> Vec<Problem> {
    [
        (1, 1, 1, 0),
        (37, 70, 45, 1),
        (64, 72, 256, 1),
        (130, 66, 300, 1),
        (33, 129, 200, 0),
    ]
    .iter()
    .map(|&(m, n, k, b)| {
        let kind = if b == 1 { "blocks" } else { "tensor" };
        Problem::new(format!("{m}x{n}x{k} {kind}"), vec![m, n, k, b])
    })
    .collect()
}

/// Integer codes in -8..=8 (exact in E4M3) and power-of-two scales in 2^-2..2^2: every
/// group sum and every promotion is exact in f32, so the kernel must match exactly. The
/// padding bytes hold 448, which must never reach C.
pub fn inputs(problem: &Problem) -> (ScaledOperands, (usize, usize, usize)) {
    let (m, n, k) = (problem.dims[0], problem.dims[1], problem.dims[2]);
    let scaling = match problem.dims[3] {
        0 => Scaling::Tensor,
        _ => Scaling::Blocks,
    };
    let mut rng = StdRng::seed_from_u64((m * 131 + n * 17 + k) as u64);
    let ld = padded(k);
    let mut codes = |rows: usize| -> Vec<F8E4M3> {
        (0..rows * ld)
            .map(|e| match e % ld < k {
                true => F8E4M3::from_f32(rng.random_range(-8i32..=8) as f32),
                false => F8E4M3::from_f32(448.0),
            })
            .collect()
    };
    let (a, b) = (codes(m), codes(n));
    let mut scale = || 2f32.powi(rng.random_range(-2i32..=2));
    let (a_scale, b_scale) = match scaling {
        Scaling::Tensor => (vec![scale()], vec![scale()]),
        Scaling::Blocks => {
            let kbs = groups(k);
            let a_scale = (0..m * kbs).map(|_| scale()).collect();
            let b_scale = (0..n.div_ceil(GROUP as usize) * kbs)
                .map(|_| scale())
                .collect();
            (a_scale, b_scale)
        }
    };
    let ops = ScaledOperands {
        a,
        b,
        a_scale,
        b_scale,
        scaling,
    };
    (ops, (m, n, k))
}
