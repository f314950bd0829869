//! The FP8 kernels: amax, quantization (per tensor, delayed, 1×128 rows, transposed rows,
//! 128×128 tiles) and dequantization, in both formats, every instance from and to f32, f16
//! and bf16 (the f16/bf16 inputs are the f32 activations rounded to the type).
//!
//! Every config computes each code and each group's scale the same way (a max is exact in
//! any order, the cast is one division and one rounding), so outputs are compared exactly:
//! the codes as f32s (their integer value), then the scales (or the delayed variant's new
//! amax). The amax kernels are atomic maxes into their output, restored to 0 before each
//! checked run.

use super::fp8_launch::{self as launch, Matrix, ROW_GROUP};
use super::{Lcg, Problem};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::{bf16, f16, F8E4M3, F8E5M2};
use warpforge_dsl::{Buffer, Config, Device, Element};
use warpforge_kernels::fp8::host::{pad_rows, padded_ld};
use warpforge_kernels::fp8::reference::{self, Granularity};
use warpforge_kernels::fp8::{instance_of, Fp8Float, Fp8Instance, Fp8Type};

/// Which quantization a [`Quantize`] workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Tensor,
    Delayed,
    Rows,
    RowsT,
    Blocks,
}

/// The matrix of a problem: `[n]` is one row of `n`, `[rows, cols]` a matrix.
pub(super) fn matrix_of(d: &[u32]) -> (usize, usize) {
    match d {
        [n] => (1, *n as usize),
        _ => (d[0] as usize, d[1] as usize),
    }
}

/// Activations: uniform values at a per-row magnitude from 2^-4 to 2^4, each row's last
/// element an outlier 16× its row's range (so scales differ from row to row and group to
/// group).
pub(super) fn activations(rows: usize, cols: usize, rng: &mut Lcg) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            let range = 2f32.powi((i / cols % 9) as i32 - 4);
            let outlier = if i % cols == cols - 1 { 16.0 } else { 1.0 };
            rng.float(range) * outlier
        })
        .collect()
}

/// The stale scale of the delayed-scaling workload: half the tensor's own, so its largest
/// values saturate (as after an amax jump).
pub(super) fn delayed_scale<F: Fp8Type>(x: &[f32]) -> f32 {
    reference::scale_of(reference::amax(x) / 2.0, F::FORMAT)
}

/// [`activations`] rounded to `T` (in range for every `T`: |x| < 2^9).
pub(super) fn activations_as<T: Fp8Float>(rows: usize, cols: usize, rng: &mut Lcg) -> Vec<T> {
    let x = activations(rows, cols, rng);
    x.iter().map(|&v| T::from_f32(v)).collect()
}

/// `xs` widened to f32 (exactly).
fn widen<T: Fp8Float>(xs: &[T]) -> Vec<f32> {
    xs.iter().map(|v| v.to_f32()).collect()
}

/// The workload of an instance name (the shape check admitted it; another name gets the
/// f32 E4M3 tile quantizer's).
pub(super) fn build(
    device: &Device,
    name: &str,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    let instance = instance_of(name).unwrap_or(Fp8Instance {
        generic: "fp8_quantize_blocks",
        float: "f32",
        format: Some("e4m3"),
    });
    match instance.float {
        "f16" => build_for::<f16>(device, instance, d, rng),
        "bf16" => build_for::<bf16>(device, instance, d, rng),
        _ => build_for::<f32>(device, instance, d, rng),
    }
}

fn build_for<T: Fp8Float>(
    device: &Device,
    instance: Fp8Instance,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    match instance.format {
        None => Ok(Box::new(Amax::<T>::new(device, d, rng)?)),
        Some("e5m2") => build_pair::<T, F8E5M2>(device, instance.generic, d, rng),
        Some(_) => build_pair::<T, F8E4M3>(device, instance.generic, d, rng),
    }
}

fn build_pair<T: Fp8Float, F: Fp8Type>(
    device: &Device,
    generic: &str,
    d: &[u32],
    rng: &mut Lcg,
) -> Result<Box<dyn Problem>, DeviceError> {
    let op = match generic {
        "fp8_dequantize" => return Ok(Box::new(Dequant::<F, T>::new(device, d, rng)?)),
        "fp8_quantize_tensor" => Op::Tensor,
        "fp8_quantize_delayed" => Op::Delayed,
        "fp8_quantize_rows_t" => Op::RowsT,
        "fp8_quantize_rows" => Op::Rows,
        _ => Op::Blocks,
    };
    Ok(Box::new(Quantize::<T, F>::new(device, op, d, rng)?))
}

/// `fp8_amax_{T}`: an atomic max of the bits into one u32.
struct Amax<T: Fp8Float> {
    n: u32,
    x: Buffer<T>,
    bits: Buffer<u32>,
}

impl<T: Fp8Float> Amax<T> {
    fn new(device: &Device, d: &[u32], rng: &mut Lcg) -> Result<Self, DeviceError> {
        let n = d[0] as usize;
        let x = activations_as::<T>(1, n, rng);
        Ok(Amax {
            n: d[0],
            x: device.upload(&pad_rows(&x, 1, n, padded_ld(n)))?,
            bits: device.zeros(1)?,
        })
    }
}

impl<T: Fp8Float> Problem for Amax<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        launch::amax(device, config, &self.x, &mut self.bits, self.n)
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        Ok(vec![f32::from_bits(device.download(&self.bits)?[0])])
    }

    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), DeviceError> {
        self.bits = device.zeros(1)?;
        Ok(())
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
struct Quantize<T: Fp8Float, F: Fp8Type> {
    op: Op,
    m: Matrix,
    /// Leading dimension of the codes (`ld`, or the transposed output's).
    ldq: usize,
    x: Buffer<T>,
    side: Side,
    q: Buffer<F>,
    scales: Buffer<f32>,
}

/// The number of scales `op` writes for a `rows × cols` X.
pub(super) fn scale_count(op: Op, rows: usize, cols: usize) -> usize {
    let g = ROW_GROUP as usize;
    match op {
        Op::Tensor | Op::Delayed => 1,
        Op::Rows => rows * cols.div_ceil(g),
        Op::RowsT => cols * rows.div_ceil(g),
        Op::Blocks => rows.div_ceil(128) * cols.div_ceil(128),
    }
}

impl<T: Fp8Float, F: Fp8Type> Quantize<T, F> {
    fn new(device: &Device, op: Op, d: &[u32], rng: &mut Lcg) -> Result<Self, DeviceError> {
        let (rows, cols) = matrix_of(d);
        let ld = padded_ld(cols);
        let x = activations_as::<T>(rows, cols, rng);
        let wide = widen(&x);
        let side = match op {
            Op::Tensor => Side::AmaxIn(device.upload(&[reference::amax(&wide).to_bits()])?),
            Op::Delayed => Side::Delayed {
                scale: device.upload(&[delayed_scale::<F>(&wide)])?,
                amax_bits: device.zeros(1)?,
            },
            _ => Side::None,
        };
        let (q_rows, ldq) = match op {
            Op::RowsT => (cols, padded_ld(rows)),
            _ => (rows, ld),
        };
        Ok(Quantize {
            op,
            m: Matrix {
                rows: rows as u32,
                cols: cols as u32,
                ld: ld as u32,
            },
            ldq,
            x: device.upload(&pad_rows(&x, rows, cols, ld))?,
            side,
            q: device.zeros(q_rows * ldq)?,
            scales: device.zeros(scale_count(op, rows, cols))?,
        })
    }
}

impl<T: Fp8Float, F: Fp8Type> Problem for Quantize<T, F> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
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
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
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

    fn restore(&mut self, device: &Device) -> Result<(), DeviceError> {
        if let Side::Delayed { amax_bits, .. } = &mut self.side {
            *amax_bits = device.zeros(1)?;
        }
        Ok(())
    }
}

/// Random finite codes (magnitude codes 0..0x78, either sign; finite in both formats).
pub(super) fn random_codes(n: usize, rng: &mut Lcg) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let r = rng.next();
            (r % 0x78) as u8 | if r & (1 << 20) != 0 { 0x80 } else { 0 }
        })
        .collect()
}

/// Dequantization of `[rows, cols]` codes with 1×128 row scales (activations) to `T`.
struct Dequant<F: Fp8Type, T: Fp8Float> {
    m: Matrix,
    q: Buffer<F>,
    scales: Buffer<f32>,
    y: Buffer<T>,
}

/// The granularity of the dequantization workload.
pub(super) const DEQUANT_GRANULARITY: Granularity = Granularity::Rows { g: ROW_GROUP };

/// Codes and scales of the dequantization workload: random codes, scales from 2^-10 to 2^6.
pub(super) fn dequant_inputs(rows: usize, cols: usize, rng: &mut Lcg) -> reference::Quantized {
    let codes = random_codes(rows * cols, rng);
    let scales = (0..scale_count(Op::Rows, rows, cols))
        .map(|_| 2f32.powi((rng.next() % 17) as i32 - 10) * (1.0 + rng.float(0.5).abs()))
        .collect();
    reference::Quantized { codes, scales }
}

impl<F: Fp8Type, T: Fp8Float> Dequant<F, T> {
    fn new(device: &Device, d: &[u32], rng: &mut Lcg) -> Result<Self, DeviceError> {
        let (rows, cols) = matrix_of(d);
        let ld = padded_ld(cols);
        let input = dequant_inputs(rows, cols, rng);
        let mut padded = vec![<F as Element>::from_bits(0); rows * ld];
        for (i, &c) in input.codes.iter().enumerate() {
            padded[i / cols * ld + i % cols] = <F as Element>::from_bits(c as u64);
        }
        Ok(Dequant {
            m: Matrix {
                rows: rows as u32,
                cols: cols as u32,
                ld: ld as u32,
            },
            q: device.upload(&padded)?,
            scales: device.upload(&input.scales)?,
            y: device.zeros(rows * ld)?,
        })
    }
}

impl<F: Fp8Type, T: Fp8Float> Problem for Dequant<F, T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let input = (&self.q, &self.scales);
        launch::dequantize(
            device,
            config,
            input,
            &mut self.y,
            self.m,
            DEQUANT_GRANULARITY,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        let y = device.download(&self.y)?;
        let (cols, ld) = (self.m.cols as usize, self.m.ld as usize);
        Ok((0..self.m.rows as usize * cols)
            .map(|i| y[i / cols * ld + i % cols].to_f32())
            .collect())
    }
}

/// The codes of a `rows × cols` matrix stored in rows of `ld`, as f32s.
fn codes_of<F: Fp8Type>(q: &[F], rows: usize, cols: usize, ld: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| q[i / cols * ld + i % cols].code() as f32)
        .collect()
}
