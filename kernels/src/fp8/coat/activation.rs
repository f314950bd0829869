//! COAT's mixed-granularity activation quantization: activations saved for a linear layer's
//! backward (its input) use one scale per tensor, so the FP8 GEMM can fold the scale into
//! its epilogue; activations of non-linear layers (norms, activation functions, element-wise
//! products) use one scale per 1×16 group of a row, whose finer scales keep their error low
//! where no GEMM needs a single scale (COAT §5, "mixed granularity FP8 precision flow").
//!
//! This picks the kernel: `fp8_amax_f32` + `fp8_quantize_tensor_f32_*` for
//! [`ActivationKind::LayerInput`], `fp8_quantize_rows_f32_*` with `G = 16` for
//! [`ActivationKind::NonLinear`], each with its default config.

use crate::fp8::host;
use crate::fp8::reference::{Granularity, Quantized};
use crate::fp8::Fp8Type;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Config, Device, Error};

/// Where an activation is consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationKind {
    /// The input of a linear layer: per-tensor scaling.
    LayerInput,
    /// The input of a non-linear layer: 1×16 groups along rows.
    NonLinear,
}

impl ActivationKind {
    /// The scale granularity COAT uses for it.
    pub fn granularity(self) -> Granularity {
        match self {
            ActivationKind::LayerInput => Granularity::Tensor,
            ActivationKind::NonLinear => Granularity::Rows { g: NONLINEAR_GROUP },
        }
    }
}

/// Group size for non-linear layers' activations.
pub const NONLINEAR_GROUP: u32 = 16;

/// An activation quantized for the backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActivation {
    pub quantized: Quantized,
    pub granularity: Granularity,
    pub rows: usize,
    pub cols: usize,
}

impl QuantizedActivation {
    /// Back to f32 (on the host, with the reference's exact formula `f32(q) * s`).
    pub fn dequantize<F: Fp8Type>(&self) -> Vec<f32> {
        crate::fp8::reference::dequantize(
            &self.quantized,
            self.rows,
            self.cols,
            self.granularity,
            F::FORMAT,
        )
    }
}

/// Quantizes the activation X[rows, cols] (row-major, dense) to `F` with the granularity
/// COAT uses for `kind`.
pub fn quantize_activation<F: Fp8Type>(
    device: &Device,
    kind: ActivationKind,
    x: &[f32],
    rows: usize,
    cols: usize,
) -> Result<QuantizedActivation, Error> {
    if x.len() != rows * cols {
        return Err(Error::Device(DeviceError::ArgMismatch {
            kernel: "quantize_activation".into(),
            param: "x".into(),
            expected: format!("{} elements ({rows} x {cols})", rows * cols),
            got: x.len().to_string(),
        }));
    }
    let quantized = match kind {
        ActivationKind::LayerInput => {
            host::quantize_tensor::<F>(device, &Config::default(), &Config::default(), x)?
        }
        ActivationKind::NonLinear => {
            let config = Config::default().with("G", NONLINEAR_GROUP as i64);
            host::quantize_rows::<F>(device, &config, x, rows, cols)?
        }
    };
    Ok(QuantizedActivation {
        quantized,
        granularity: kind.granularity(),
        rows,
        cols,
    })
}
