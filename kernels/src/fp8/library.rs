//! The FP8 kernels as library entries: problems with edge shapes, deterministic inputs, and
//! outputs compared exactly with [`reference`] (codes as f32s, then the scales).
//!
//! One entry per instance: every input/output type `T` (f32, f16, bf16) with every format.
//! A `T` instance quantizes the problem's inputs rounded to `T` (clamped to its range) and
//! is compared with the f32 reference on their exact widening; a dequantizer to `T` is
//! compared with the f32 reference rounded once to `T` (RNE, `half`'s `from_f32`).

use super::reference::{self, Granularity, Quantized};
use super::{host, Fp8Float, Fp8Type};
use crate::check::Problem;
use crate::LibraryKernel;
use float8::{F8E4M3, F8E5M2};
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::{Config, Device, Error, KernelDef};

/// Flat tensors: 1, odd, not a multiple of 4, several blocks.
pub fn tensor_problems() -> Vec<Problem> {
    [1usize, 7, 256, 4099]
        .iter()
        .map(|&n| Problem::new(format!("n={n}"), vec![1, n]))
        .collect()
}

/// Matrices: a single element, odd sizes, partial groups and tiles.
pub fn matrix_problems() -> Vec<Problem> {
    [(1, 1), (3, 7), (2, 20), (5, 150), (130, 133)]
        .iter()
        .map(|&(r, c)| Problem::new(format!("{r}x{c}"), vec![r, c]))
        .collect()
}

/// Normals at a per-row scale (2^-12 .. 2^12), an all-zero run at the start of row 0, a
/// subnormal run in row 1 (its scale underflows, so s = 1) and an outlier at the end.
pub fn inputs(problem: &Problem) -> Vec<f32> {
    let (rows, cols) = (problem.dims[0], problem.dims[1]);
    let mut rng = StdRng::seed_from_u64((rows * 7919 + cols) as u64);
    let mut x: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let scale = 2f32.powi((i / cols * 5 % 25) as i32 - 12);
            let u: f32 = rng.random_range(-1.0..1.0);
            u * u * u * 3.0 * scale
        })
        .collect();
    x[..cols.min(16)].fill(0.0);
    if rows > 1 {
        for (k, v) in x[cols..cols + cols.min(16)].iter_mut().enumerate() {
            *v = f32::from_bits(1 + k as u32) * if k % 2 == 0 { 1.0 } else { -1.0 };
        }
    }
    if let Some(last) = x.last_mut() {
        *last = 3.0e5;
    }
    x
}

/// [`inputs`] rounded to `T`, clamped to its finite range first (the outlier exceeds f16's).
pub fn inputs_as<T: Fp8Float>(problem: &Problem) -> Vec<T> {
    let m = T::max_finite();
    inputs(problem)
        .iter()
        .map(|&v| T::from_f32(v.clamp(-m, m)))
        .collect()
}

/// [`inputs_as`] widened back to f32 (exactly): what the reference quantizes.
pub fn widened<T: Fp8Float>(problem: &Problem) -> Vec<f32> {
    inputs_as::<T>(problem).iter().map(|v| v.to_f32()).collect()
}

fn dims(problem: &Problem) -> (usize, usize) {
    (problem.dims[0], problem.dims[1])
}

/// Grouped problems: the matrix shapes under every group size (dims[2] = G).
pub fn grouped_problems() -> Vec<Problem> {
    let mut out = Vec::new();
    for p in matrix_problems() {
        for g in [16, 32, 64, 128] {
            let (r, c) = dims(&p);
            out.push(Problem::new(format!("{r}x{c}/g{g}"), vec![r, c, g]));
        }
    }
    out
}

/// G is a layout parameter, not a tunable, though the DSL lists it in the space: the
/// problem fixes it and overrides the config's G (the whole-space tests run each G anyway).
fn with_problem_group(config: &Config, p: &Problem) -> Config {
    config.clone().with("G", p.dims[2] as i64)
}

/// The stale scale the delayed-scaling check uses: half the tensor's own, so the largest
/// values saturate.
fn delayed_scale<F: Fp8Type>(x: &[f32]) -> f32 {
    reference::scale_of(reference::amax(x) / 2.0, F::FORMAT)
}

fn amax_output<T: Fp8Float>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    Ok(vec![host::amax(d, c, &inputs_as::<T>(p))?])
}

fn amax_expected<T: Fp8Float>(p: &Problem) -> Vec<f32> {
    vec![reference::amax(&widened::<T>(p))]
}

fn tensor_output<T: Fp8Float, F: Fp8Type>(
    d: &Device,
    c: &Config,
    p: &Problem,
) -> Result<Vec<f32>, Error> {
    let amax_config = T::AMAX().space.default_config();
    Ok(host::quantize_tensor::<F>(d, &amax_config, c, &inputs_as::<T>(p))?.flatten())
}

fn tensor_expected<T: Fp8Float, F: Fp8Type>(p: &Problem) -> Vec<f32> {
    reference::quantize_tensor(&widened::<T>(p), F::FORMAT).flatten()
}

fn delayed_output<T: Fp8Float, F: Fp8Type>(
    d: &Device,
    c: &Config,
    p: &Problem,
) -> Result<Vec<f32>, Error> {
    let scale = delayed_scale::<F>(&widened::<T>(p));
    let (codes, amax) = host::quantize_delayed::<F>(d, c, &inputs_as::<T>(p), scale)?;
    Ok(Quantized {
        codes,
        scales: vec![amax],
    }
    .flatten())
}

fn delayed_expected<T: Fp8Float, F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let x = widened::<T>(p);
    let mut q = reference::quantize_with(&x, delayed_scale::<F>(&x), F::FORMAT);
    q.scales = vec![reference::amax(&x)];
    q.flatten()
}

fn rows_output<T: Fp8Float, F: Fp8Type>(
    d: &Device,
    c: &Config,
    p: &Problem,
) -> Result<Vec<f32>, Error> {
    let (rows, cols) = dims(p);
    let c = with_problem_group(c, p);
    Ok(host::quantize_rows::<F>(d, &c, &inputs_as::<T>(p), rows, cols)?.flatten())
}

fn rows_expected<T: Fp8Float, F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (rows, cols) = dims(p);
    reference::quantize_rows(&widened::<T>(p), rows, cols, p.dims[2], F::FORMAT).flatten()
}

fn rows_t_output<T: Fp8Float, F: Fp8Type>(
    d: &Device,
    c: &Config,
    p: &Problem,
) -> Result<Vec<f32>, Error> {
    let (rows, cols) = dims(p);
    let c = with_problem_group(c, p);
    Ok(host::quantize_rows_t::<F>(d, &c, &inputs_as::<T>(p), rows, cols)?.flatten())
}

fn rows_t_expected<T: Fp8Float, F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (rows, cols) = dims(p);
    reference::quantize_rows_t(&widened::<T>(p), rows, cols, p.dims[2], F::FORMAT).flatten()
}

fn blocks_output<T: Fp8Float, F: Fp8Type>(
    d: &Device,
    c: &Config,
    p: &Problem,
) -> Result<Vec<f32>, Error> {
    let (rows, cols) = dims(p);
    Ok(host::quantize_blocks::<F>(d, c, &inputs_as::<T>(p), rows, cols)?.flatten())
}

fn blocks_expected<T: Fp8Float, F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (rows, cols) = dims(p);
    reference::quantize_blocks(&widened::<T>(p), rows, cols, F::FORMAT).flatten()
}

/// Dequantize problems: the matrix shapes under each granularity (dims[2]: 0 tensor,
/// 1 rows with G = 32, 2 tiles).
pub fn dequant_problems() -> Vec<Problem> {
    let mut out = Vec::new();
    for p in matrix_problems() {
        for (k, name) in ["tensor", "g32", "tiles"].iter().enumerate() {
            let (r, c) = dims(&p);
            out.push(Problem::new(format!("{r}x{c}/{name}"), vec![r, c, k]));
        }
    }
    out
}

/// The codes and scales of the problem's inputs in `T`'s range (so that the values
/// dequantized to `T` are finite), quantized by the reference.
fn dequant_case<T: Fp8Float, F: Fp8Type>(p: &Problem) -> (Quantized, Granularity) {
    let (rows, cols) = dims(p);
    let x = widened::<T>(p);
    match p.dims[2] {
        0 => (
            reference::quantize_tensor(&x, F::FORMAT),
            Granularity::Tensor,
        ),
        1 => (
            reference::quantize_rows(&x, rows, cols, 32, F::FORMAT),
            Granularity::Rows { g: 32 },
        ),
        _ => (
            reference::quantize_blocks(&x, rows, cols, F::FORMAT),
            Granularity::Blocks,
        ),
    }
}

fn dequant_output<T: Fp8Float, F: Fp8Type>(
    d: &Device,
    c: &Config,
    p: &Problem,
) -> Result<Vec<f32>, Error> {
    let (q, g) = dequant_case::<T, F>(p);
    let (rows, cols) = dims(p);
    let y = host::dequantize_to::<F, T>(d, c, &q, rows, cols, g)?;
    Ok(y.iter().map(|v| v.to_f32()).collect())
}

/// The f32 reference `f32(q) * s`, rounded once to `T`.
fn dequant_expected<T: Fp8Float, F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (q, g) = dequant_case::<T, F>(p);
    let (rows, cols) = dims(p);
    reference::dequantize(&q, rows, cols, g, F::FORMAT)
        .iter()
        .map(|&y| T::from_f32(y).to_f32())
        .collect()
}

fn exact(_: &Problem) -> f64 {
    0.0
}

/// The entries of the instances pairing `T` with format `F`.
fn pair_entries<T: Fp8Float, F: Fp8Type>() -> Vec<LibraryKernel> {
    let k = F::kernels::<T>();
    let entry =
        |def: fn() -> &'static KernelDef, summary, problems, output, expected| LibraryKernel {
            name: def().name.as_str(),
            summary,
            def,
            problems,
            output,
            expected,
            tolerance: exact,
        };
    vec![
        entry(
            k.quantize_tensor,
            "per-tensor FP8 cast with the scale from fp8_amax_{T} (current scaling)",
            tensor_problems,
            tensor_output::<T, F>,
            tensor_expected::<T, F>,
        ),
        entry(
            k.quantize_delayed,
            "per-tensor FP8 cast with a given (delayed) scale, reducing the new amax, one launch",
            tensor_problems,
            delayed_output::<T, F>,
            delayed_expected::<T, F>,
        ),
        entry(
            k.quantize_rows,
            "FP8 cast with one scale per 1xG run of a row (per-token groups)",
            grouped_problems,
            rows_output::<T, F>,
            rows_expected::<T, F>,
        ),
        entry(
            k.quantize_rows_t,
            "FP8 cast of X[M,K] into Xt[K,M] with 1xG groups along M (backward pass)",
            grouped_problems,
            rows_t_output::<T, F>,
            rows_t_expected::<T, F>,
        ),
        entry(
            k.quantize_blocks,
            "FP8 cast with one scale per 128x128 tile (weights)",
            matrix_problems,
            blocks_output::<T, F>,
            blocks_expected::<T, F>,
        ),
        entry(
            k.dequantize,
            "FP8 dequantization to f32/f16/bf16, any granularity (y = T(q * s))",
            dequant_problems,
            dequant_output::<T, F>,
            dequant_expected::<T, F>,
        ),
    ]
}

/// `fp8_amax_{T}` and the instances pairing `T` with each format.
fn type_entries<T: Fp8Float>() -> Vec<LibraryKernel> {
    let mut out = vec![LibraryKernel {
        name: T::AMAX().name.as_str(),
        summary: "amax of a tensor (atomic max on the bits), for per-tensor FP8 scaling",
        def: T::AMAX,
        problems: tensor_problems,
        output: amax_output::<T>,
        expected: amax_expected::<T>,
        tolerance: exact,
    }];
    out.extend(pair_entries::<T, F8E4M3>());
    out.extend(pair_entries::<T, F8E5M2>());
    out
}

/// Every FP8 kernel's library entry.
pub fn entries() -> Vec<LibraryKernel> {
    let mut out = type_entries::<f32>();
    out.extend(type_entries::<f16>());
    out.extend(type_entries::<bf16>());
    out.extend(super::gemm::entries());
    out.extend(super::coat::library::entries());
    out
}
