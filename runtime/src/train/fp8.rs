//! COAT's FP8 precision flow for training (`--precision fp8`, seed-algorithms.md §4): what
//! the forward saves for the backward is stored in E4M3 — the inputs of linear layers with
//! one scale per tensor (the same codes feed the forward's FP8 GEMM, so quantizing them
//! costs nothing extra), the inputs of non-linear layers (norms, SwiGLU, attention) with
//! one scale per 1×16 group of a row — and each linear layer's output gradient is rounded
//! through E5M2 (one scale per tensor) before its two backward GEMMs.
//!
//! The compute type is bf16. The forward's linear layers run on the FP8 tensor-core GEMM
//! (E4M3 × E4M3, f32 accumulation, bf16 out); the backward's GEMMs run on the bf16 GEMMs
//! over the dequantized operands, since warpforge has no E5M2 × E4M3 GEMM yet — the values
//! they see are the FP8 ones, so the numerics are COAT's; the speed of an FP8 backward is
//! not. The LM head and the embedding stay in bf16, as in COAT.

use std::ops::Deref;
use warpforge_dsl::{Buffer, Config, Device, Element, Error};
use warpforge_kernels::fp8::coat::activation::NONLINEAR_GROUP;
use warpforge_kernels::fp8::launch::{self, Matrix};
use warpforge_kernels::fp8::reference::Granularity;
use warpforge_kernels::fp8::{Fp8Float, Fp8Type};

pub use float8::{F8E4M3, F8E5M2};

/// Codes of a `rows × cols` matrix (dense rows) and their scales.
pub struct Quantized<F: Element> {
    pub codes: Buffer<F>,
    pub scales: Buffer<f32>,
    pub granularity: Granularity,
    pub rows: usize,
    pub cols: usize,
}

impl<F: Fp8Type> Quantized<F> {
    pub fn bytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 4
    }

    fn matrix(&self) -> Matrix {
        Matrix {
            rows: self.rows as u32,
            cols: self.cols as u32,
            ld: self.cols as u32,
        }
    }

    /// Back to `T`: `T(f32(q) · s)`.
    pub fn dequantize<T: Fp8Float>(&self, device: &Device) -> Result<Buffer<T>, Error> {
        let mut y = device.zeros::<T>(self.codes.len().max(1))?;
        let io = (&self.codes, &self.scales);
        let config = Config::default();
        launch::dequantize::<F, T>(device, &config, io, &mut y, self.matrix(), self.granularity)?;
        Ok(y)
    }
}

/// `x` (`rows × cols`, dense) quantized to `F` with one scale for the whole tensor.
pub fn quantize_tensor<F: Fp8Type, T: Fp8Float>(
    device: &Device,
    x: &Buffer<T>,
    (rows, cols): (usize, usize),
) -> Result<Quantized<F>, Error> {
    let n = (rows * cols) as u32;
    let config = Config::default();
    let mut amax_bits = device.zeros::<u32>(1)?;
    launch::amax(device, &config, x, &mut amax_bits, n)?;
    let mut codes = device.zeros::<F>((n as usize).max(1))?;
    let mut scales = device.zeros::<f32>(1)?;
    let out = (&mut codes, &mut scales);
    launch::quantize_tensor::<F>(device, &config, x, &amax_bits, out, n)?;
    Ok(Quantized {
        codes,
        scales,
        granularity: Granularity::Tensor,
        rows,
        cols,
    })
}

/// `x` (`rows × cols`, dense, `cols` a multiple of 16) quantized to E4M3 with one scale per
/// 1×16 group of a row.
pub fn quantize_groups<T: Fp8Float>(
    device: &Device,
    x: &Buffer<T>,
    (rows, cols): (usize, usize),
) -> Result<Quantized<F8E4M3>, Error> {
    let g = NONLINEAR_GROUP;
    let mut config = Config::default();
    config.set("G", g as i64);
    let mut codes = device.zeros::<F8E4M3>((rows * cols).max(1))?;
    let mut scales = device.zeros::<f32>((rows * cols.div_ceil(g as usize)).max(1))?;
    let m = Matrix {
        rows: rows as u32,
        cols: cols as u32,
        ld: cols as u32,
    };
    launch::quantize_rows::<F8E4M3>(device, &config, x, (&mut codes, &mut scales), m)?;
    Ok(Quantized {
        codes,
        scales,
        granularity: Granularity::Rows { g },
        rows,
        cols,
    })
}

/// A tensor the forward saves for the backward: as computed, or in FP8.
pub enum Saved<T: Element> {
    Full(Buffer<T>),
    Fp8(Quantized<F8E4M3>),
}

impl<T: Fp8Float> Saved<T> {
    /// Bytes held, as allocated.
    pub fn bytes(&self) -> usize {
        match self {
            Saved::Full(b) => b.len() * T::SCALAR.size_bytes(),
            Saved::Fp8(q) => q.bytes(),
        }
    }

    /// The values in `T`: borrowed when saved as computed, dequantized otherwise.
    pub fn restore(&self, device: &Device) -> Result<Restored<'_, T>, Error> {
        Ok(match self {
            Saved::Full(b) => Restored::Borrowed(b),
            Saved::Fp8(q) => Restored::Owned(q.dequantize(device)?),
        })
    }
}

/// A saved tensor back in `T`.
pub enum Restored<'a, T: Element> {
    Borrowed(&'a Buffer<T>),
    Owned(Buffer<T>),
}

impl<T: Element> Deref for Restored<'_, T> {
    type Target = Buffer<T>;
    fn deref(&self) -> &Buffer<T> {
        match self {
            Restored::Borrowed(b) => b,
            Restored::Owned(b) => b,
        }
    }
}

/// `g` rounded through E5M2 with one scale per tensor (COAT's gradient format), in `T`.
pub fn round_gradient<T: Fp8Float>(
    device: &Device,
    g: &Buffer<T>,
    (rows, cols): (usize, usize),
) -> Result<Buffer<T>, Error> {
    quantize_tensor::<F8E5M2, T>(device, g, (rows, cols))?.dequantize(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warpforge_dsl::prelude::bf16;

    /// Values spanning four decades, signs mixed, in bf16.
    fn sample(n: usize) -> Vec<bf16> {
        (0..n)
            .map(|i| {
                let mag = 10f32.powf((i % 29) as f32 / 7.0 - 2.0);
                bf16::from_f32(if i % 3 == 0 { -mag } else { mag })
            })
            .collect()
    }

    /// Every restored value is within half an E4M3 step (2⁻⁴ relative) of the input, or
    /// below the group's subnormal range; per-group scaling keeps small groups exact-ish
    /// where one tensor scale would flush them.
    #[test]
    fn saved_tensors_restore_within_e4m3_rounding() {
        let device = Device::cpu();
        let (rows, cols) = (6, 48);
        let x = sample(rows * cols);
        let buf = device.upload(&x).unwrap();
        let groups: Saved<bf16> = Saved::Fp8(quantize_groups(&device, &buf, (rows, cols)).unwrap());
        let tensor: Saved<bf16> =
            Saved::Fp8(quantize_tensor::<F8E4M3, bf16>(&device, &buf, (rows, cols)).unwrap());
        assert_eq!(groups.bytes(), rows * cols + rows * 3 * 4);
        assert_eq!(tensor.bytes(), rows * cols + 4);
        for saved in [&groups, &tensor] {
            let back = device.download(&*saved.restore(&device).unwrap()).unwrap();
            for (i, (a, b)) in x.iter().zip(&back).enumerate() {
                let (a, b) = (a.to_f32(), b.to_f32());
                // Group (or tensor) amax / 448 is the scale; E4M3's subnormals start at
                // 2⁻⁶ of the scale-normalised range.
                let g = match saved {
                    Saved::Fp8(q) if q.granularity == Granularity::Tensor => 0..x.len(),
                    _ => (i / 16 * 16)..(i / 16 * 16 + 16),
                };
                let amax = x[g].iter().map(|v| v.to_f32().abs()).fold(0.0, f32::max);
                let floor = amax / 448.0 * 2f32.powi(-6);
                let tol = (a.abs() * 2f32.powi(-4)).max(floor) * 1.01 + a.abs() * 2f32.powi(-8);
                assert!((a - b).abs() <= tol, "element {i}: {a} restored as {b}");
            }
        }
        // The full form is borrowed, not copied.
        let full = Saved::Full(buf);
        assert!(matches!(
            full.restore(&device).unwrap(),
            Restored::Borrowed(_)
        ));
    }

    /// The gradient's E5M2 rounding: two mantissa bits, so within 2⁻³ relative.
    #[test]
    fn gradients_round_through_e5m2() {
        let device = Device::cpu();
        let x = sample(64);
        let buf = device.upload(&x).unwrap();
        let back = device
            .download(&round_gradient(&device, &buf, (4, 16)).unwrap())
            .unwrap();
        let mut changed = 0;
        for (a, b) in x.iter().zip(&back) {
            let (a, b) = (a.to_f32(), b.to_f32());
            assert!((a - b).abs() <= a.abs() * 0.13 + 1e-6, "{a} rounded to {b}");
            changed += usize::from(a != b);
        }
        assert!(changed > 0, "E5M2 rounding changed nothing");
    }
}
