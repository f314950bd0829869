//! The FP8 kernels as library entries: problems with edge shapes, deterministic inputs, and
//! outputs compared exactly with [`reference`] (codes as f32s, then the scales).

use super::reference::{self, Granularity, Quantized};
use super::{host, Fp8Type};
use crate::check::Problem;
use crate::LibraryKernel;
use float8::{F8E4M3, F8E5M2};
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::{Config, Device, Error};

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

fn amax_output(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    Ok(vec![host::amax(d, c, &inputs(p))?])
}

fn amax_expected(p: &Problem) -> Vec<f32> {
    vec![reference::amax(&inputs(p))]
}

fn tensor_output<F: Fp8Type>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let amax_config = super::tensor::fp8_amax::default_config();
    Ok(host::quantize_tensor::<F>(d, &amax_config, c, &inputs(p))?.flatten())
}

fn tensor_expected<F: Fp8Type>(p: &Problem) -> Vec<f32> {
    reference::quantize_tensor(&inputs(p), F::FORMAT).flatten()
}

fn delayed_output<F: Fp8Type>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let x = inputs(p);
    let (codes, amax) = host::quantize_delayed::<F>(d, c, &x, delayed_scale::<F>(&x))?;
    Ok(Quantized {
        codes,
        scales: vec![amax],
    }
    .flatten())
}

fn delayed_expected<F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let x = inputs(p);
    let mut q = reference::quantize_with(&x, delayed_scale::<F>(&x), F::FORMAT);
    q.scales = vec![reference::amax(&x)];
    q.flatten()
}

fn rows_output<F: Fp8Type>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let (rows, cols) = dims(p);
    let c = with_problem_group(c, p);
    Ok(host::quantize_rows::<F>(d, &c, &inputs(p), rows, cols)?.flatten())
}

fn rows_expected<F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (rows, cols) = dims(p);
    reference::quantize_rows(&inputs(p), rows, cols, p.dims[2], F::FORMAT).flatten()
}

fn rows_t_output<F: Fp8Type>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let (rows, cols) = dims(p);
    let c = with_problem_group(c, p);
    Ok(host::quantize_rows_t::<F>(d, &c, &inputs(p), rows, cols)?.flatten())
}

fn rows_t_expected<F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (rows, cols) = dims(p);
    reference::quantize_rows_t(&inputs(p), rows, cols, p.dims[2], F::FORMAT).flatten()
}

fn blocks_output<F: Fp8Type>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let (rows, cols) = dims(p);
    Ok(host::quantize_blocks::<F>(d, c, &inputs(p), rows, cols)?.flatten())
}

fn blocks_expected<F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (rows, cols) = dims(p);
    reference::quantize_blocks(&inputs(p), rows, cols, F::FORMAT).flatten()
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

fn dequant_case<F: Fp8Type>(p: &Problem) -> (Quantized, Granularity) {
    let (rows, cols) = dims(p);
    let x = inputs(p);
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

fn dequant_output<F: Fp8Type>(d: &Device, c: &Config, p: &Problem) -> Result<Vec<f32>, Error> {
    let (q, g) = dequant_case::<F>(p);
    let (rows, cols) = dims(p);
    host::dequantize::<F>(d, c, &q, rows, cols, g)
}

fn dequant_expected<F: Fp8Type>(p: &Problem) -> Vec<f32> {
    let (q, g) = dequant_case::<F>(p);
    let (rows, cols) = dims(p);
    reference::dequantize(&q, rows, cols, g, F::FORMAT)
}

fn exact(_: &Problem) -> f64 {
    0.0
}

fn format_entries<F: Fp8Type>(names: [&'static str; 6]) -> Vec<LibraryKernel> {
    let k = F::KERNELS;
    let entry = |name, summary, def, problems, output, expected| LibraryKernel {
        name,
        summary,
        def,
        problems,
        output,
        expected,
        tolerance: exact,
    };
    vec![
        entry(
            names[0],
            "per-tensor FP8 cast with the scale from fp8_amax (current scaling)",
            k.quantize_tensor,
            tensor_problems,
            tensor_output::<F>,
            tensor_expected::<F>,
        ),
        entry(
            names[1],
            "per-tensor FP8 cast with a given (delayed) scale, reducing the new amax, one launch",
            k.quantize_delayed,
            tensor_problems,
            delayed_output::<F>,
            delayed_expected::<F>,
        ),
        entry(
            names[2],
            "FP8 cast with one scale per 1xG run of a row (per-token groups)",
            k.quantize_rows,
            grouped_problems,
            rows_output::<F>,
            rows_expected::<F>,
        ),
        entry(
            names[3],
            "FP8 cast of X[M,K] into Xt[K,M] with 1xG groups along M (backward pass)",
            k.quantize_rows_t,
            grouped_problems,
            rows_t_output::<F>,
            rows_t_expected::<F>,
        ),
        entry(
            names[4],
            "FP8 cast with one scale per 128x128 tile (weights)",
            k.quantize_blocks,
            matrix_problems,
            blocks_output::<F>,
            blocks_expected::<F>,
        ),
        entry(
            names[5],
            "FP8 -> f32 dequantization, any granularity (y = q * s)",
            k.dequantize,
            dequant_problems,
            dequant_output::<F>,
            dequant_expected::<F>,
        ),
    ]
}

/// Every FP8 kernel's library entry.
pub fn entries() -> Vec<LibraryKernel> {
    let mut out = vec![LibraryKernel {
        name: "fp8_amax",
        summary: "amax of an f32 tensor (atomic max on the bits), for per-tensor FP8 scaling",
        def: super::tensor::fp8_amax::def,
        problems: tensor_problems,
        output: amax_output,
        expected: amax_expected,
        tolerance: exact,
    }];
    out.extend(format_entries::<F8E4M3>([
        "fp8_quantize_tensor_e4m3",
        "fp8_quantize_delayed_e4m3",
        "fp8_quantize_rows_e4m3",
        "fp8_quantize_rows_t_e4m3",
        "fp8_quantize_blocks_e4m3",
        "fp8_dequantize_e4m3",
    ]));
    out.extend(format_entries::<F8E5M2>([
        "fp8_quantize_tensor_e5m2",
        "fp8_quantize_delayed_e5m2",
        "fp8_quantize_rows_e5m2",
        "fp8_quantize_rows_t_e5m2",
        "fp8_quantize_blocks_e5m2",
        "fp8_dequantize_e5m2",
    ]));
    out.extend(super::gemm::entries());
    out.extend(super::coat::library::entries());
    out
}
