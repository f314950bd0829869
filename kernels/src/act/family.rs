//! The element-wise layers as library kernels: one description, [`Act<T>`], covers the
//! three generic sources (SwiGLU forward and backward, residual add) for every element
//! type. SwiGLU problems are `[rows, cols]` (the output's shape; `gate_up` is twice as
//! wide), add problems `[len]`; widths are multiples of 4 (see [`super`]).

use super::host::{
    add_reference, bias_add_reference, launch_add, launch_bias_add, launch_swiglu,
    launch_swiglu_bwd, quads, swiglu_bwd_reference, swiglu_reference, ActFloat,
};
use crate::check::{Problem, Tolerance};
use crate::family::{download_f32, register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Error, KernelDef};

/// Every instance: SwiGLU, its backward and the add, each for f32, f16 and bf16.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for kind in [Kind::Swiglu, Kind::SwigluBwd, Kind::Add, Kind::BiasAdd] {
        out.push(instance::<f32>(kind));
        out.push(instance::<f16>(kind));
        out.push(instance::<bf16>(kind));
    }
    out
}

fn instance<T: ActFloat>(kind: Kind) -> Kernel {
    let what = match kind {
        Kind::Swiglu => "SwiGLU forward: T(T(silu(gate)) · up) from the fused gate/up projection",
        Kind::SwigluBwd => "SwiGLU backward: d(gate, up) from dy, recomputing silu",
        Kind::Add => "residual add in place: acc = T(acc + x)",
        Kind::BiasAdd => "bias add after an f32 GEMM: y = T(x + b), one rounding",
    };
    let summary = format!("{what}, {}, Vec4 accesses", T::SCALAR);
    register(Act::<T> {
        kind,
        summary: Box::leak(summary.into_boxed_str()),
        types: PhantomData,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Swiglu,
    SwigluBwd,
    Add,
    BiasAdd,
}

struct Act<T> {
    kind: Kind,
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// A case's inputs as `T` values widened to f32: gate in [−8, 8) (the saturating tails of
/// silu), up in [−2, 2), dy in [−1, 1); the add's two operands in [−4, 4); the bias add's
/// x unrounded f32s in [−4, 4) (so the single rounding shows) and its bias `[cols]`.
struct Inputs {
    first: Vec<f32>,
    second: Vec<f32>,
}

fn inputs<T: ActFloat>(kind: Kind, dims: &[usize]) -> Inputs {
    let mut rng = Lcg::for_dims(dims, 11);
    let mut gen = |n: usize, r: f32| -> Vec<f32> {
        (0..n).map(|_| T::from_f32(rng.float(r)).to_f32()).collect()
    };
    match kind {
        Kind::Add => Inputs {
            first: gen(dims[0], 4.0),
            second: gen(dims[0], 4.0),
        },
        Kind::BiasAdd => {
            let first = (0..dims[0] * dims[1]).map(|_| rng.float(4.0)).collect();
            Inputs {
                first,
                second: (0..dims[1])
                    .map(|_| T::from_f32(rng.float(2.0)).to_f32())
                    .collect(),
            }
        }
        Kind::Swiglu | Kind::SwigluBwd => {
            let (rows, cols) = (dims[0], dims[1]);
            let mut gate_up = Vec::with_capacity(2 * rows * cols);
            for _ in 0..rows {
                gate_up.extend(gen(cols, 8.0));
                gate_up.extend(gen(cols, 2.0));
            }
            let dy = if kind == Kind::SwigluBwd {
                gen(rows * cols, 1.0)
            } else {
                Vec::new()
            };
            Inputs {
                first: gate_up,
                second: dy,
            }
        }
    }
}

fn to_t<T: ActFloat>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

impl<T: ActFloat> LibraryKernel for Act<T> {
    fn def(&self) -> &'static KernelDef {
        match self.kind {
            Kind::Swiglu => (T::SWIGLU)(),
            Kind::SwigluBwd => (T::SWIGLU_BWD)(),
            Kind::Add => (T::ADD)(),
            Kind::BiasAdd => (T::BIAS_ADD)(),
        }
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// One Vec4, a few, counts that are no multiple of any block's share (37 rows, 1000
    /// elements), and rows past one block's reach.
    fn problems(&self) -> Vec<Problem> {
        match self.kind {
            Kind::Add => [4, 12, 1000, 9412]
                .iter()
                .map(|&n| Problem::new(format!("{n}"), vec![n]))
                .collect(),
            _ => [(1, 4), (3, 12), (37, 20), (5, 1028)]
                .iter()
                .map(|&(r, c)| Problem::new(format!("{r}x{c}"), vec![r, c]))
                .collect(),
        }
    }

    fn rank(&self) -> usize {
        match self.kind {
            Kind::Add => 1,
            _ => 2,
        }
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        if problem.dims.len() != self.rank() {
            return Err(format!(
                "{} takes {} dimension(s), got {:?}",
                self.def().name,
                self.rank(),
                problem.dims
            ));
        }
        let last = *problem.dims.last().unwrap_or(&0);
        let what = if self.kind == Kind::Add {
            "len"
        } else {
            "cols"
        };
        quads(what, last).map_err(|e| e.to_string())?;
        if problem.dims[0] == 0 {
            return Err("rows must be positive".into());
        }
        Ok(())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let Inputs { first, second } = inputs::<T>(self.kind, &problem.dims);
        let out_len = match self.kind {
            Kind::Swiglu => first.len() / 2,
            Kind::SwigluBwd | Kind::BiasAdd => first.len(),
            Kind::Add => 0,
        };
        let initial = to_t::<T>(&first);
        let wide = match self.kind {
            Kind::BiasAdd => first.clone(),
            _ => vec![0.0; 4],
        };
        Ok(Box::new(ActCase::<T> {
            kind: self.kind,
            dims: problem.dims.clone(),
            wide: device.upload(&wide)?,
            first: device.upload(&initial)?,
            second: device.upload(&to_t::<T>(&second))?,
            out: device.zeros(out_len.max(1))?,
            initial,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let Inputs { first, second } = inputs::<T>(self.kind, &problem.dims);
        match self.kind {
            Kind::Swiglu => swiglu_reference::<T>(&first, problem.dims[1]),
            Kind::SwigluBwd => swiglu_bwd_reference::<T>(&first, &second, problem.dims[1]),
            Kind::Add => add_reference::<T>(&first, &second),
            Kind::BiasAdd => bias_add_reference::<T>(&first, &second, problem.dims[1]),
        }
    }

    /// Relative to max(1, |expected|). SwiGLU: the kernel's f32 `exp` and division
    /// (a few f32 ulps, 2^-24 each) can move `T(silu(g))` across a rounding boundary of
    /// `T` (one ulp, `T::ULP`), and the final rounding another: 2 ulps plus 32 f32 ulps
    /// (the backward's `1 + g(1 − s)` cancels near g ≈ −1.28, where the absolute error
    /// stays a few f32 ulps of |g|). Add: one f32 rounding, then one to `T` — a double
    /// rounding that can move a tie by one ulp of `T`.
    fn tolerance(&self, _problem: &Problem) -> f64 {
        let u = f64::from(f32::EPSILON) / 2.0;
        match self.kind {
            Kind::Add => T::ULP,
            Kind::BiasAdd => 0.0,
            _ => 2.0 * T::ULP + 32.0 * u,
        }
    }

    /// Configs only change which thread computes which element: bit-identical.
    fn config_tolerance(&self, _problem: &Problem) -> Tolerance {
        Tolerance { rel: 0.0, abs: 0.0 }
    }

    /// Each input read once, each output written once (see [`super`]).
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let n = problem.dims.iter().product::<usize>() as u64;
        let t = T::SCALAR.size_bytes() as u64;
        Some(match self.kind {
            Kind::Swiglu | Kind::Add => 3 * n * t,
            Kind::SwigluBwd => 5 * n * t,
            Kind::BiasAdd => n * (4 + t),
        })
    }

    /// The bf16 instances at a Llama layer's shapes: SwiGLU over `[tokens, intermediate]`,
    /// the residual add over `[tokens · hidden]`, the bias add over the q projection.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != warpforge_dsl::ScalarType::BF16 {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| match self.kind {
                Kind::Add => Problem::new("residual", vec![m * model.hidden]),
                // Qwen2-style q-projection biases (ModelShape does not say whether the
                // model has them; the shape is the q projection's output).
                Kind::BiasAdd => Problem::new("q bias", vec![m, model.heads * model.head_dim]),
                _ => Problem::new("mlp", vec![m, model.intermediate]),
            })
            .collect()
    }
}

/// A problem's buffers: `first` is `gate_up` (SwiGLU) or `acc` (add, restored to
/// `initial` before a checked launch), `second` is `dy` or `x`, `out` is `y` or
/// `d_gate_up`.
struct ActCase<T: ActFloat> {
    kind: Kind,
    dims: Vec<usize>,
    /// The bias add's f32 input (a placeholder otherwise).
    wide: Buffer<f32>,
    first: Buffer<T>,
    second: Buffer<T>,
    out: Buffer<T>,
    initial: Vec<T>,
}

impl<T: ActFloat> Case for ActCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        match self.kind {
            Kind::Swiglu => launch_swiglu(
                device,
                config,
                &self.first,
                &mut self.out,
                (self.dims[0], self.dims[1]),
            ),
            Kind::SwigluBwd => launch_swiglu_bwd(
                device,
                config,
                (&self.first, &self.second),
                &mut self.out,
                (self.dims[0], self.dims[1]),
            ),
            Kind::Add => launch_add(device, config, &mut self.first, &self.second, self.dims[0]),
            Kind::BiasAdd => launch_bias_add(
                device,
                config,
                (&self.wide, &self.second),
                &mut self.out,
                (self.dims[0], self.dims[1]),
            ),
        }
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        match self.kind {
            Kind::Add => download_f32(device, &self.first),
            _ => download_f32(device, &self.out),
        }
    }

    fn accumulates(&self) -> bool {
        self.kind == Kind::Add
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        if self.kind == Kind::Add {
            self.first = device.upload(&self.initial)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check;

    /// Every instance passes its check problems on the interpreter with its default config
    /// and one other corner of its space.
    #[test]
    fn every_instance_matches_its_reference() {
        let device = Device::cpu();
        for k in kernels() {
            for config in [
                k.default_config(),
                Config::new().with("BLOCK", 128).with("VECS", 4),
            ] {
                for p in k.problems() {
                    let mut case = k.case(&device, &p).unwrap();
                    case.launch(&device, &config).unwrap();
                    let got = case.output(&device, &config).unwrap();
                    let r = check::compare(&p, &got, &k.expected(&p), k.tolerance(&p));
                    assert!(r.passed(), "{} {config} {}: {r:?}", k.name(), p.name);
                }
            }
        }
    }

    /// The references round where PyTorch does: a value the two orders of rounding would
    /// tell apart (silu rounded to bf16 before the product, not after).
    #[test]
    fn swiglu_rounds_silu_before_the_product() {
        let (g, u) = (1.3f32, 1.7f32);
        let g = bf16::from_f32(g).to_f32();
        let u = bf16::from_f32(u).to_f32();
        let silu = g as f64 / (1.0 + (-(g as f64)).exp());
        let ours = swiglu_reference::<bf16>(&[g, u], 1)[0];
        let rounded_once = bf16::from_f32((silu * u as f64) as f32).to_f32();
        let rounded_twice = bf16::from_f32(bf16::from_f32(silu as f32).to_f32() * u).to_f32();
        assert_eq!(ours, rounded_twice);
        assert_ne!(
            rounded_once, rounded_twice,
            "pick inputs the orders tell apart"
        );
    }

    /// The backward is the derivative of the forward: central differences in f64 on f32
    /// instances agree with `swiglu_bwd_reference`.
    #[test]
    fn backward_matches_finite_differences() {
        let gate_up = [-3.0f32, -1.2, 0.4, 2.5, 0.7, -1.1, 1.9, -0.3];
        let dy = [0.9f32, -0.4, 0.25, 1.0];
        let grad = swiglu_bwd_reference::<f32>(&gate_up, &dy, 4);
        let loss = |x: &[f32]| -> f64 {
            swiglu_reference::<f32>(x, 4)
                .iter()
                .zip(&dy)
                .map(|(y, d)| *y as f64 * *d as f64)
                .sum()
        };
        for i in 0..gate_up.len() {
            let h = 1e-3f32;
            let (mut plus, mut minus) = (gate_up, gate_up);
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
            assert!(
                (fd - grad[i] as f64).abs() < 1e-3,
                "{i}: {fd} vs {}",
                grad[i]
            );
        }
    }

    #[test]
    fn widths_that_are_no_multiple_of_four_are_refused() {
        let k = kernels()[0];
        let err = k.validate(&Problem::new("odd", vec![3, 10])).unwrap_err();
        assert!(err.contains("cols = 10"), "{err}");
        let device = Device::cpu();
        let gu = device.upload(&[0f32; 20]).unwrap();
        let mut y = device.zeros::<f32>(10).unwrap();
        let e = launch_swiglu(&device, &k.default_config(), &gu, &mut y, (1, 10)).unwrap_err();
        assert!(e.to_string().contains("cols"), "{e}");
    }
}
