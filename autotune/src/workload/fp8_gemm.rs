//! The FP8 GEMMs `fp8_gemm_e4m3_{f32,bf16}` with DeepSeek-V3 block scales (1×128 on A,
//! 128×128 on B).
//!
//! The operands are the library's exact inputs (integer E4M3 codes, power-of-two scales:
//! every group sum and promotion is exact in f32, then rounded once into C's type), so every
//! config gives the same C bit for bit; the padding bytes hold 448, which a config reading
//! past `k` would carry in.

use super::Problem;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::{bf16, Float, F8E4M3};
use warpforge_dsl::{Buffer, Config, Device, Element};
use warpforge_kernels::check::Problem as Shape;
use warpforge_kernels::fp8::gemm::{self, Scaling};

struct Fp8Gemm<O: Element> {
    shape: (u32, u32, u32),
    a: Buffer<F8E4M3>,
    b: Buffer<F8E4M3>,
    a_scale: Buffer<f32>,
    b_scale: Buffer<f32>,
    c: Buffer<O>,
}

pub(super) fn build(
    device: &Device,
    name: &str,
    d: &[u32],
) -> Result<Box<dyn Problem>, DeviceError> {
    match name.ends_with("_bf16") {
        true => typed::<bf16>(device, d),
        false => typed::<f32>(device, d),
    }
}

fn typed<O: Float + Element>(device: &Device, d: &[u32]) -> Result<Box<dyn Problem>, DeviceError> {
    let dims = d.iter().map(|&x| x as usize).chain([1]).collect();
    let (ops, _) = gemm::inputs(&Shape::new("tune", dims));
    Ok(Box::new(Fp8Gemm::<O> {
        shape: (d[0], d[1], d[2]),
        a: device.upload(&ops.a)?,
        b: device.upload(&ops.b)?,
        a_scale: device.upload(&ops.a_scale)?,
        b_scale: device.upload(&ops.b_scale)?,
        c: device.zeros(d[0] as usize * d[1] as usize)?,
    }))
}

impl<O: Float + Element> Problem for Fp8Gemm<O> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        gemm::launch(
            device,
            config,
            Scaling::Blocks,
            (&self.a, &self.b),
            (&self.a_scale, &self.b_scale),
            &mut self.c,
            self.shape,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        Ok(device
            .download(&self.c)?
            .into_iter()
            .map(O::to_f32)
            .collect())
    }
}
