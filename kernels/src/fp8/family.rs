//! The FP8 kernels as library kernels: one description per generic source (amax, the five
//! quantizers, the dequantizer), registered for every input/output type `T` (f32, f16,
//! bf16) and format.
//!
//! Every config computes each code and each group's scale the same way (a max is exact in
//! any order, the cast is one division and one rounding), so outputs are compared exactly:
//! the codes as f32s (their integer value), then the scales (or the delayed variant's new
//! amax). A `T` instance quantizes the problem's inputs rounded to `T` (clamped to its
//! range) and is compared with the f32 reference on their exact widening; a dequantizer to
//! `T` is compared with the f32 reference rounded once to `T` (RNE, `half`'s `from_f32`).
//!
//! Problems: `[n]` for the flat kernels (amax, per-tensor, delayed); `[rows, cols, G]` for
//! the 1×G quantizers (G is a layout parameter the kernels declare as a tunable: the problem
//! fixes it, and only configs with that G are candidates); `[rows, cols]` for 128×128
//! tiles; `[rows, cols, granularity]` for the dequantizer (0: per tensor, 1: 128×128 tiles,
//! G ≥ 2: 1×G rows).

use super::host::{pad_codes, pad_rows, padded_ld, scale_count};
use super::launch::{self, Matrix};
use super::reference::{self, Granularity, Quantized};
use super::{Fp8Float, Fp8Type};
use crate::check::Problem;
use crate::family::{register, Case, Kernel, LibraryKernel, ModelShape};
use float8::{F8E4M3, F8E5M2};
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::marker::PhantomData;
use warpforge_dsl::{Buffer, Config, Device, Error, KernelDef};

/// Flat tensors: 1, odd, not a multiple of 4, several blocks.
pub fn tensor_problems() -> Vec<Problem> {
    Problem::sizes(&[1, 7, 256, 4099])
}

/// Matrices: a single element, odd sizes, partial groups and tiles.
pub fn matrix_problems() -> Vec<Problem> {
    Problem::matrices(&[(1, 1), (3, 7), (2, 20), (5, 150), (130, 133)])
}

/// Normals at a per-row scale (2^-12 .. 2^12), an all-zero run at the start of row 0, a
/// subnormal run in row 1 (its scale underflows, so s = 1) and an outlier at the end.
/// A flat problem `[n]` is one row.
pub fn inputs(problem: &Problem) -> Vec<f32> {
    let (rows, cols) = matrix_of(problem);
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

/// The matrix of a problem: `[n]` is one row of `n`, else the first two dims.
fn matrix_of(problem: &Problem) -> (usize, usize) {
    match problem.dims[..] {
        [n] => (1, n),
        _ => (problem.dims[0], problem.dims[1]),
    }
}

/// Grouped problems: the matrix shapes under every group size (dims[2] = G).
pub fn grouped_problems() -> Vec<Problem> {
    let mut out = Vec::new();
    for p in matrix_problems() {
        for g in [16, 32, 64, 128] {
            let (r, c) = matrix_of(&p);
            out.push(Problem::new(format!("{r}x{c}/g{g}"), vec![r, c, g]));
        }
    }
    out
}

/// The group size of the activation problems a model implies (DeepSeek-V3's 1×128).
pub const MODEL_GROUP: usize = 128;

/// Dequantize problems: the matrix shapes under each granularity.
pub fn dequant_problems() -> Vec<Problem> {
    let mut out = Vec::new();
    for p in matrix_problems() {
        for (g, name) in [(0, "tensor"), (32, "g32"), (1, "tiles")] {
            let (r, c) = matrix_of(&p);
            out.push(Problem::new(format!("{r}x{c}/{name}"), vec![r, c, g]));
        }
    }
    out
}

/// The granularity a dequantize problem's third dim encodes.
fn granularity_of(problem: &Problem) -> Granularity {
    match problem.dims[2] {
        0 => Granularity::Tensor,
        1 => Granularity::Blocks,
        g => Granularity::Rows { g: g as u32 },
    }
}

/// The stale scale the delayed-scaling case uses: half the tensor's own, so the largest
/// values saturate (as after an amax jump).
fn delayed_scale<F: Fp8Type>(x: &[f32]) -> f32 {
    reference::scale_of(reference::amax(x) / 2.0, F::FORMAT)
}

/// Bytes of one `T`.
fn size_of<T>() -> u64 {
    std::mem::size_of::<T>() as u64
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Every FP8 kernel of the library: for each `T`, its amax, then its quantizers and
/// dequantizer in E4M3, then in E5M2.
pub fn kernels() -> Vec<Kernel> {
    let mut out = type_kernels::<f32>();
    out.extend(type_kernels::<f16>());
    out.extend(type_kernels::<bf16>());
    out
}

fn type_kernels<T: Fp8Float>() -> Vec<Kernel> {
    let mut out = vec![register(Amax::<T>(PhantomData))];
    out.extend(pair_kernels::<T, F8E4M3>());
    out.extend(pair_kernels::<T, F8E5M2>());
    out
}

fn pair_kernels<T: Fp8Float, F: Fp8Type>() -> Vec<Kernel> {
    let mut out: Vec<Kernel> = [Op::Tensor, Op::Delayed, Op::Rows, Op::RowsT, Op::Blocks]
        .into_iter()
        .map(|op| {
            register(Quantize::<T, F> {
                op,
                types: PhantomData,
            })
        })
        .collect();
    out.push(register(Dequantize::<F, T>(PhantomData)));
    out
}

/// Whether a model of element type `T` tunes this instance: the bf16 instances, as a bf16
/// model's activations and weights; the others keep their defaults unless given shapes.
fn model_type<T: Fp8Float>() -> bool {
    T::NAME == "bf16"
}

/// Flat problems over the activations `[tokens × hidden]` and `[tokens × intermediate]`.
fn flat_model_problems(model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
    let mut out = Vec::new();
    for &m in tokens {
        for (name, cols) in [
            ("hidden", model.hidden),
            ("intermediate", model.intermediate),
        ] {
            out.push(Problem::new(name, vec![m * cols]));
        }
    }
    out
}

/// Activation matrices `[tokens, hidden]` and `[tokens, intermediate]`, with `third` (the
/// group size or granularity) appended.
fn activation_model_problems(model: &ModelShape, tokens: &[usize], third: usize) -> Vec<Problem> {
    let mut out = Vec::new();
    for &m in tokens {
        for (name, cols) in [
            ("hidden", model.hidden),
            ("intermediate", model.intermediate),
        ] {
            out.push(Problem::new(name, vec![m, cols, third]));
        }
    }
    out
}

/// `fp8_amax_{T}`: an atomic max of the bits into one u32.
struct Amax<T>(PhantomData<fn() -> T>);

impl<T: Fp8Float> LibraryKernel for Amax<T> {
    fn def(&self) -> &'static KernelDef {
        T::AMAX()
    }

    fn summary(&self) -> &'static str {
        "amax of a tensor (atomic max on the bits), for per-tensor FP8 scaling"
    }

    fn problems(&self) -> Vec<Problem> {
        tensor_problems()
    }

    fn rank(&self) -> usize {
        1
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let n = problem.dims[0];
        let x = inputs_as::<T>(problem);
        Ok(Box::new(AmaxCase {
            n: u32_of(n),
            x: device.upload(&pad_rows(&x, 1, n, padded_ld(n)))?,
            bits: device.zeros(1)?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        vec![reference::amax(&widened::<T>(problem))]
    }

    /// Reads X once.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        Some(size_of::<T>() * problem.dims[0] as u64)
    }

    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        match model_type::<T>() {
            true => flat_model_problems(model, tokens),
            false => Vec::new(),
        }
    }
}

struct AmaxCase<T: Fp8Float> {
    n: u32,
    x: Buffer<T>,
    bits: Buffer<u32>,
}

impl<T: Fp8Float> Case for AmaxCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        launch::amax(device, config, &self.x, &mut self.bits, self.n)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(vec![f32::from_bits(device.download(&self.bits)?[0])])
    }

    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.bits = device.zeros(1)?;
        Ok(())
    }
}

/// Which quantization a [`Quantize`] kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Tensor,
    Delayed,
    Rows,
    RowsT,
    Blocks,
}

/// An FP8 quantizer of `T` into format `F`.
struct Quantize<T, F> {
    op: Op,
    types: PhantomData<fn() -> (T, F)>,
}

impl<T: Fp8Float, F: Fp8Type> Quantize<T, F> {
    /// The 1×G group size of a problem (the other ops have none).
    fn group(&self, problem: &Problem) -> Option<usize> {
        matches!(self.op, Op::Rows | Op::RowsT).then(|| problem.dims[2])
    }
}

impl<T: Fp8Float, F: Fp8Type> LibraryKernel for Quantize<T, F> {
    fn def(&self) -> &'static KernelDef {
        let k = F::kernels::<T>();
        match self.op {
            Op::Tensor => (k.quantize_tensor)(),
            Op::Delayed => (k.quantize_delayed)(),
            Op::Rows => (k.quantize_rows)(),
            Op::RowsT => (k.quantize_rows_t)(),
            Op::Blocks => (k.quantize_blocks)(),
        }
    }

    fn summary(&self) -> &'static str {
        match self.op {
            Op::Tensor => "per-tensor FP8 cast with the scale from fp8_amax_{T} (current scaling)",
            Op::Delayed => {
                "per-tensor FP8 cast with a given (delayed) scale, reducing the new amax, one launch"
            }
            Op::Rows => "FP8 cast with one scale per 1xG run of a row (per-token groups)",
            Op::RowsT => "FP8 cast of X[M,K] into Xt[K,M] with 1xG groups along M (backward pass)",
            Op::Blocks => "FP8 cast with one scale per 128x128 tile (weights)",
        }
    }

    fn problems(&self) -> Vec<Problem> {
        match self.op {
            Op::Tensor | Op::Delayed => tensor_problems(),
            Op::Rows | Op::RowsT => grouped_problems(),
            Op::Blocks => matrix_problems(),
        }
    }

    fn rank(&self) -> usize {
        match self.op {
            Op::Tensor | Op::Delayed => 1,
            Op::Rows | Op::RowsT => 3,
            Op::Blocks => 2,
        }
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (rows, cols) = matrix_of(problem);
        let ld = padded_ld(cols);
        let x = inputs_as::<T>(problem);
        let wide = widened::<T>(problem);
        let side = match self.op {
            Op::Tensor => Side::AmaxIn(device.upload(&[reference::amax(&wide).to_bits()])?),
            Op::Delayed => Side::Delayed {
                scale: device.upload(&[delayed_scale::<F>(&wide)])?,
                amax_bits: device.zeros(1)?,
            },
            _ => Side::None,
        };
        let (q_rows, ldq) = match self.op {
            Op::RowsT => (cols, padded_ld(rows)),
            _ => (rows, ld),
        };
        let scales = match (self.op, self.group(problem)) {
            (Op::Tensor | Op::Delayed, _) => 1,
            (Op::Rows, Some(g)) => rows * cols.div_ceil(g),
            (Op::RowsT, Some(g)) => cols * rows.div_ceil(g),
            _ => rows.div_ceil(128) * cols.div_ceil(128),
        };
        Ok(Box::new(QuantizeCase::<T, F> {
            op: self.op,
            group: self.group(problem),
            m: Matrix {
                rows: u32_of(rows),
                cols: u32_of(cols),
                ld: u32_of(ld),
            },
            ldq,
            x: device.upload(&pad_rows(&x, rows, cols, ld))?,
            side,
            q: device.zeros(q_rows * ldq)?,
            scales: device.zeros(scales)?,
        }))
    }

    /// The dense codes, then the scales (the new amax for the delayed variant).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = matrix_of(problem);
        let x = widened::<T>(problem);
        let format = F::FORMAT;
        match (self.op, self.group(problem)) {
            (Op::Tensor, _) => reference::quantize_tensor(&x, format),
            (Op::Delayed, _) => {
                let mut q = reference::quantize_with(&x, delayed_scale::<F>(&x), format);
                q.scales = vec![reference::amax(&x)];
                q
            }
            (Op::Rows, Some(g)) => reference::quantize_rows(&x, rows, cols, g, format),
            (Op::RowsT, Some(g)) => reference::quantize_rows_t(&x, rows, cols, g, format),
            _ => reference::quantize_blocks(&x, rows, cols, format),
        }
        .flatten()
    }

    /// X read and the codes written once, plus the scales (and the amax or stale scale).
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (rows, cols) = matrix_of(problem);
        let n = (rows * cols) as u64;
        let scales = match (self.op, self.group(problem)) {
            (Op::Tensor | Op::Delayed, _) => 2,
            (Op::Rows, Some(g)) => rows * cols.div_ceil(g),
            (Op::RowsT, Some(g)) => cols * rows.div_ceil(g),
            _ => rows.div_ceil(128) * cols.div_ceil(128),
        };
        Some((size_of::<T>() + 1) * n + 4 * scales as u64)
    }

    fn admits(&self, config: &Config, problem: &Problem) -> bool {
        self.group(problem)
            .is_none_or(|g| config.get("G") == Some(g as i64))
    }

    /// The bf16 instances: activations (flat, and 1×128 groups) at each batch size, and
    /// 128×128 tiles of the MLP weight `[hidden, intermediate]` once.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if !model_type::<T>() {
            return Vec::new();
        }
        match self.op {
            Op::Tensor | Op::Delayed => flat_model_problems(model, tokens),
            Op::Rows | Op::RowsT => activation_model_problems(model, tokens, MODEL_GROUP),
            Op::Blocks => vec![Problem::new(
                "mlp weight",
                vec![model.hidden, model.intermediate],
            )],
        }
    }
}

/// The buffers a quantization reads or writes besides X, codes and scales.
enum Side {
    None,
    /// The tensor's amax (bits), computed on the host: the input of the per-tensor cast.
    AmaxIn(Buffer<u32>),
    /// The stale scale the delayed cast uses, and the amax it reduces (an atomic max).
    Delayed {
        scale: Buffer<f32>,
        amax_bits: Buffer<u32>,
    },
}

/// An FP8 quantization of X `[rows, cols]` into codes (`[cols, rows]` for the transposed
/// variant) and scales.
struct QuantizeCase<T: Fp8Float, F: Fp8Type> {
    op: Op,
    /// The problem's 1×G group size, which overrides the config's G.
    group: Option<usize>,
    m: Matrix,
    /// Leading dimension of the codes (`ld`, or the transposed output's).
    ldq: usize,
    x: Buffer<T>,
    side: Side,
    q: Buffer<F>,
    scales: Buffer<f32>,
}

impl<T: Fp8Float, F: Fp8Type> Case for QuantizeCase<T, F> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let config = &match self.group {
            Some(g) => config.clone().with("G", g as i64),
            None => config.clone(),
        };
        let (x, m, out) = (&self.x, self.m, (&mut self.q, &mut self.scales));
        match (self.op, &mut self.side) {
            (Op::Tensor, Side::AmaxIn(bits)) => {
                launch::quantize_tensor(device, config, x, bits, out, m.cols)
            }
            (Op::Delayed, Side::Delayed { scale, amax_bits }) => {
                launch::quantize_delayed(device, config, (x, scale), (out.0, amax_bits), m.cols)
            }
            (Op::RowsT, _) => launch::quantize_rows_t(device, config, x, out, m, self.ldq as u32),
            (Op::Rows, _) => launch::quantize_rows(device, config, x, out, m),
            _ => launch::quantize_blocks(device, config, x, out, m),
        }
    }

    /// The dense codes as f32s, then the scales (the new amax for the delayed variant).
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let (rows, cols) = match self.op {
            Op::RowsT => (self.m.cols as usize, self.m.rows as usize),
            _ => (self.m.rows as usize, self.m.cols as usize),
        };
        let codes = codes_of(&device.download(&self.q)?, rows, cols, self.ldq);
        let scales = match &self.side {
            Side::Delayed { amax_bits, .. } => {
                vec![f32::from_bits(device.download(amax_bits)?[0])]
            }
            _ => device.download(&self.scales)?,
        };
        Ok(codes.into_iter().chain(scales).collect())
    }

    fn accumulates(&self) -> bool {
        self.op == Op::Delayed
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        if let Side::Delayed { amax_bits, .. } = &mut self.side {
            *amax_bits = device.zeros(1)?;
        }
        Ok(())
    }
}

/// The codes of a `rows × cols` matrix stored in rows of `ld`, as f32s.
fn codes_of<F: Fp8Type>(q: &[F], rows: usize, cols: usize, ld: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| q[i / cols * ld + i % cols].code() as f32)
        .collect()
}

/// `fp8_dequantize_{F}_{T}`.
struct Dequantize<F, T>(PhantomData<fn() -> (F, T)>);

/// The codes and scales of the problem's inputs in `T`'s range (so that the values
/// dequantized to `T` are finite), quantized by the reference.
fn dequant_input<T: Fp8Float, F: Fp8Type>(problem: &Problem) -> Quantized {
    let (rows, cols) = matrix_of(problem);
    let x = widened::<T>(problem);
    match granularity_of(problem) {
        Granularity::Tensor => reference::quantize_tensor(&x, F::FORMAT),
        Granularity::Rows { g } => reference::quantize_rows(&x, rows, cols, g as usize, F::FORMAT),
        Granularity::Blocks => reference::quantize_blocks(&x, rows, cols, F::FORMAT),
    }
}

impl<F: Fp8Type, T: Fp8Float> LibraryKernel for Dequantize<F, T> {
    fn def(&self) -> &'static KernelDef {
        (F::kernels::<T>().dequantize)()
    }

    fn summary(&self) -> &'static str {
        "FP8 dequantization to f32/f16/bf16, any granularity (y = T(q * s))"
    }

    fn problems(&self) -> Vec<Problem> {
        dequant_problems()
    }

    fn rank(&self) -> usize {
        3
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (rows, cols) = matrix_of(problem);
        let ld = padded_ld(cols);
        let input = dequant_input::<T, F>(problem);
        let granularity = granularity_of(problem);
        debug_assert_eq!(input.scales.len(), scale_count(granularity, rows, cols));
        Ok(Box::new(DequantizeCase::<F, T> {
            m: Matrix {
                rows: u32_of(rows),
                cols: u32_of(cols),
                ld: u32_of(ld),
            },
            granularity,
            q: device.upload(&pad_codes::<F>(&input.codes, rows, cols))?,
            scales: device.upload(&input.scales)?,
            y: device.zeros(rows * ld)?,
        }))
    }

    /// The f32 reference `f32(q) * s`, rounded once to `T`.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = matrix_of(problem);
        let q = dequant_input::<T, F>(problem);
        reference::dequantize(&q, rows, cols, granularity_of(problem), F::FORMAT)
            .iter()
            .map(|&y| T::from_f32(y).to_f32())
            .collect()
    }

    /// Codes and scales read, Y written once.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (rows, cols) = matrix_of(problem);
        let scales = scale_count(granularity_of(problem), rows, cols) as u64;
        Some((1 + size_of::<T>()) * (rows * cols) as u64 + 4 * scales)
    }

    /// The bf16 instances: activations with 1×128 row scales.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        match model_type::<T>() {
            true => activation_model_problems(model, tokens, MODEL_GROUP),
            false => Vec::new(),
        }
    }
}

struct DequantizeCase<F: Fp8Type, T: Fp8Float> {
    m: Matrix,
    granularity: Granularity,
    q: Buffer<F>,
    scales: Buffer<f32>,
    y: Buffer<T>,
}

impl<F: Fp8Type, T: Fp8Float> Case for DequantizeCase<F, T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let input = (&self.q, &self.scales);
        launch::dequantize(device, config, input, &mut self.y, self.m, self.granularity)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let y = device.download(&self.y)?;
        let (cols, ld) = (self.m.cols as usize, self.m.ld as usize);
        Ok((0..self.m.rows as usize * cols)
            .map(|i| y[i / cols * ld + i % cols].to_f32())
            .collect())
    }
}
