//! The tensor-core GEMMs as library kernels: one description for all eighteen instances
//! `gemm_tc_{nt,nn,tn}_{T}_{O}`.

use super::host::{def_of, inputs, launch, reference, Layout};
use crate::check::Problem;
use crate::family::{download_f32, register, Case, Kernel, LibraryKernel, ModelShape};
use crate::gemm::linear_problems;
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16, Float};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// Every instance, in the order of the declared types (B column-major first, A
/// column-major last).
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
        out.push(instance::<f16, f32>(layout));
        out.push(instance::<f16, f16>(layout));
        out.push(instance::<f16, bf16>(layout));
        out.push(instance::<bf16, f32>(layout));
        out.push(instance::<bf16, f16>(layout));
        out.push(instance::<bf16, bf16>(layout));
    }
    out
}

fn instance<T: Float + Element, O: Float + Element>(layout: Layout) -> Kernel {
    let b = match layout {
        Layout::Nt => "B column-major",
        Layout::Nn => "B row-major",
        Layout::Tn => "A column-major (Aᵀ·B), B row-major",
    };
    register(GemmTc::<T, O> {
        layout,
        summary: Box::leak(
            format!(
                "tensor-core GEMM (cp.async + ldmatrix + mma.sync), {} in, {} out, {b}",
                T::SCALAR,
                O::SCALAR
            )
            .into_boxed_str(),
        ),
        types: PhantomData,
    })
}

/// The instance for operands `T` and output `O`.
struct GemmTc<T, O> {
    layout: Layout,
    summary: &'static str,
    types: PhantomData<fn() -> (T, O)>,
}

impl<T: Float + Element, O: Float + Element> LibraryKernel for GemmTc<T, O> {
    fn def(&self) -> &'static KernelDef {
        def_of(self.layout, T::SCALAR, O::SCALAR)
            .expect("instances are registered for f16/bf16 only")
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// Edge shapes: a single element, ragged M/N/K (not multiples of any tile or of 8), and
    /// a shape with several K slices so the pipeline wraps around its stages.
    fn problems(&self) -> Vec<Problem> {
        Problem::gemms(&[(1, 1, 1), (37, 70, 13), (64, 72, 96), (130, 66, 200)])
    }

    fn rank(&self) -> usize {
        3
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (m, n, k) = shape(problem);
        let (a, b) = inputs::<T>(self.layout, (m, n, k));
        Ok(Box::new(Operands::<T, O> {
            layout: self.layout,
            shape: (m as u32, n as u32, k as u32),
            a: device.upload(&a)?,
            b: device.upload(&b)?,
            c: device.zeros(m * n)?,
        }))
    }

    /// The exact sum rounded once into `O`.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (m, n, k) = shape(problem);
        let (a, b) = inputs::<T>(self.layout, (m, n, k));
        let lds = (self.layout.lda(m, k), self.layout.ldb(n, k));
        let c = reference(&a, &b, self.layout, (m, n, k), lds);
        c.into_iter().map(|x| O::from_f32(x).to_f32()).collect()
    }

    /// A bf16 model's GEMMs: the linear layers (B is the weight, column-major) for the nt
    /// instance, the MLP's data gradients (`dX = dY·W`, W row-major) for the nn instance.
    /// The other instances (and the weight gradients' tn instances, for now) keep their
    /// defaults unless given shapes.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        // Training keeps weight gradients in f32: the TN instance tuned is bf16 → f32.
        let out = match self.layout {
            Layout::Tn => warpforge_dsl::ScalarType::F32,
            _ => bf16::SCALAR,
        };
        if T::SCALAR != bf16::SCALAR || O::SCALAR != out {
            return Vec::new();
        }
        match self.layout {
            Layout::Nt => linear_problems(model, tokens),
            Layout::Tn => {
                let (h, inter) = (model.hidden, model.intermediate);
                tokens
                    .iter()
                    .flat_map(|&k| {
                        [
                            Problem::new("gate_proj/up_proj dW", vec![inter, h, k]),
                            Problem::new("down_proj dW", vec![h, inter, k]),
                        ]
                    })
                    .collect()
            }
            Layout::Nn => {
                let (h, inter) = (model.hidden, model.intermediate);
                tokens
                    .iter()
                    .flat_map(|&m| {
                        [
                            Problem::new("gate_proj/up_proj dX", vec![m, h, inter]),
                            Problem::new("down_proj dX", vec![m, inter, h]),
                        ]
                    })
                    .collect()
            }
        }
    }
}

fn shape(problem: &Problem) -> (usize, usize, usize) {
    (problem.dims[0], problem.dims[1], problem.dims[2])
}

/// A and B (as the layout stores them, [`Layout::lda`], [`Layout::ldb`]) and C (`m×n`,
/// dense).
struct Operands<T: Element, O: Element> {
    layout: Layout,
    shape: (u32, u32, u32),
    a: Buffer<T>,
    b: Buffer<T>,
    c: Buffer<O>,
}

impl<T: Float + Element, O: Float + Element> Case for Operands<T, O> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let (m, n, k) = self.shape;
        let (mu, nu, ku) = (m as usize, n as usize, k as usize);
        let lds = (
            self.layout.lda(mu, ku) as u32,
            self.layout.ldb(nu, ku) as u32,
            n,
        );
        let (a, b) = (&self.a, &self.b);
        launch(
            device,
            config,
            self.layout,
            a,
            b,
            &mut self.c,
            self.shape,
            lds,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        download_f32(device, &self.c)
    }
}
