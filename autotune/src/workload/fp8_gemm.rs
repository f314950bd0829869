//! The FP8 GEMM `fp8_gemm_e4m3` with DeepSeek-V3 block scales (1×128 on A, 128×128 on B).
//!
//! The operands are the library's exact inputs (integer E4M3 codes, power-of-two scales:
//! every group sum and promotion is exact in f32), so every config gives the same C bit
//! for bit; the padding bytes hold 448, which a config reading past `k` would carry in.

use super::Problem;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::F8E4M3;
use warpforge_dsl::{Buffer, Config, Device};
use warpforge_kernels::check::Problem as Shape;
use warpforge_kernels::fp8::gemm::{self, fp8_gemm_e4m3};

struct Fp8Gemm {
    m: u32,
    n: u32,
    k: u32,
    a: Buffer<F8E4M3>,
    b: Buffer<F8E4M3>,
    a_scale: Buffer<f32>,
    b_scale: Buffer<f32>,
    c: Buffer<f32>,
}

pub(super) fn build(device: &Device, d: &[u32]) -> Result<Box<dyn Problem>, DeviceError> {
    let dims = d.iter().map(|&x| x as usize).chain([1]).collect();
    let (ops, _) = gemm::inputs(&Shape::new("tune", dims));
    Ok(Box::new(Fp8Gemm {
        m: d[0],
        n: d[1],
        k: d[2],
        a: device.upload(&ops.a)?,
        b: device.upload(&ops.b)?,
        a_scale: device.upload(&ops.a_scale)?,
        b_scale: device.upload(&ops.b_scale)?,
        c: device.zeros(d[0] as usize * d[1] as usize)?,
    }))
}

impl Problem for Fp8Gemm {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), warpforge_dsl::Error> {
        let (m, n, k) = (self.m, self.n, self.k);
        let ld = gemm::padded(k as usize) as u32;
        let groups = k.div_ceil(gemm::GROUP).max(1);
        fp8_gemm_e4m3::launch(
            device,
            config,
            gemm::dims(config, m, n),
            &self.a,
            &self.b,
            &self.a_scale,
            &self.b_scale,
            &mut self.c,
            m,
            n,
            k,
            ld,
            ld,
            n,
            1,
            groups,
            groups,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, DeviceError> {
        device.download(&self.c)
    }
}
