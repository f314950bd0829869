//! The FP8 GEMMs `fp8_gemm_e4m3_{f32,bf16}` as library kernels. Problems are
//! `[m, n, k, blocked]`: `blocked` = 1 for DeepSeek-V3 block scales (1×128 on A, 128×128 on
//! B), 0 for per-tensor scales.
//!
//! The inputs ([`inputs`]: integer E4M3 codes, power-of-two scales) make every group sum
//! and promotion exact in f32, then rounded once into C's type, so every config gives the
//! reference's C bit for bit; the padding bytes hold 448, which a config reading past `k`
//! would carry in.

use super::host::{def_of, inputs, launch, problems, reference, Scaling};
use crate::check::Problem;
use crate::family::{download_f32, register, Case, Kernel, LibraryKernel, ModelShape};
use crate::gemm::linear_problems;
use float8::F8E4M3;
use half::bf16;
use std::marker::PhantomData;
use warpforge_dsl::prelude::Float;
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// One kernel per output type.
pub fn kernels() -> Vec<Kernel> {
    vec![
        register(Fp8Gemm::<f32>(PhantomData)),
        register(Fp8Gemm::<bf16>(PhantomData)),
    ]
}

/// The instance writing C as `O`.
struct Fp8Gemm<O>(PhantomData<fn() -> O>);

impl<O: Float + Element> LibraryKernel for Fp8Gemm<O> {
    fn def(&self) -> &'static KernelDef {
        def_of(O::SCALAR).expect("registered for f32 and bf16 only")
    }

    fn summary(&self) -> &'static str {
        match O::SCALAR == f32::SCALAR {
            true => "FP8 GEMM (E4M3, f32 accumulate, per-tensor or 1x128/128x128 block scales), f32 out, sm_89+",
            false => "FP8 GEMM (E4M3, f32 accumulate, per-tensor or 1x128/128x128 block scales), bf16 out, sm_89+",
        }
    }

    fn problems(&self) -> Vec<Problem> {
        problems()
    }

    fn rank(&self) -> usize {
        4
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (ops, (m, n, k)) = inputs(problem);
        Ok(Box::new(Operands::<O> {
            scaling: ops.scaling,
            shape: (m as u32, n as u32, k as u32),
            a: device.upload(&ops.a)?,
            b: device.upload(&ops.b)?,
            a_scale: device.upload(&ops.a_scale)?,
            b_scale: device.upload(&ops.b_scale)?,
            c: device.zeros(m * n)?,
        }))
    }

    /// The exact result rounded once into `O`.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (ops, shape) = inputs(problem);
        let c = reference(&ops, shape);
        c.into_iter().map(|x| O::from_f32(x).to_f32()).collect()
    }

    /// The bf16 instance, block-scaled, at the linear layers' shapes.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if O::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        let mut out = linear_problems(model, tokens);
        for p in &mut out {
            p.dims.push(1);
        }
        out
    }
}

struct Operands<O: Element> {
    scaling: Scaling,
    shape: (u32, u32, u32),
    a: Buffer<F8E4M3>,
    b: Buffer<F8E4M3>,
    a_scale: Buffer<f32>,
    b_scale: Buffer<f32>,
    c: Buffer<O>,
}

impl<O: Float + Element> Case for Operands<O> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let (ops, scales) = ((&self.a, &self.b), (&self.a_scale, &self.b_scale));
        launch(
            device,
            config,
            self.scaling,
            ops,
            scales,
            &mut self.c,
            self.shape,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        download_f32(device, &self.c)
    }
}
