//! The LayerNorm backward kernels as library kernels: `layernorm_bwd_{T}` (output `dx`) and
//! `layernorm_dparams_{T}` (output `dγ` then `dβ`, its case launching the partials and the
//! two column sums). Problems are `[rows, cols]`; inputs are stored as the forward's cases
//! store them (smallest aligned stride, NaN padding), and `mean`, `rstd` are the f32 values
//! of the f64 statistics, which both the kernel and the reference read.

use super::backward::chunks;
use super::host::{padded, padded_rows, Rows};
use super::layernorm_backward::{
    launch_layernorm_bwd, launch_layernorm_dparams, layernorm_bwd_reference, LayerNormBwdFloat,
    Partials,
};
use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Error, KernelDef};

/// `layernorm_bwd` and `layernorm_dparams` for f32, f16, bf16.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for kind in [Kind::Dx, Kind::Dparams] {
        out.push(instance::<f32>(kind));
        out.push(instance::<f16>(kind));
        out.push(instance::<bf16>(kind));
    }
    out
}

fn instance<T: LayerNormBwdFloat>(kind: Kind) -> Kernel {
    let what = match kind {
        Kind::Dx => "LayerNorm backward: dx from dy, γ and the saved mean and rstd",
        Kind::Dparams => {
            "LayerNorm backward: dγ and dβ by per-chunk partials + column sums (deterministic)"
        }
    };
    let summary = format!("{what}, {}, f32 math", T::SCALAR);
    register(LayerNormBwd::<T> {
        kind,
        summary: Box::leak(summary.into_boxed_str()),
        types: PhantomData,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dx,
    Dparams,
}

struct LayerNormBwd<T> {
    kind: Kind,
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// A case's inputs (dense, `T` values widened) and the f32 statistics of each row.
pub struct Inputs {
    pub x: Vec<f32>,
    pub weight: Vec<f32>,
    pub dy: Vec<f32>,
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `x` in [−2, 2) times a per-row scale 2^-2 … 2^2 plus a per-row offset (−1.5 … 1.5: the
/// mean matters), `γ` in [0.5, 1.5), `dy` in [−1, 1), each rounded to `T`; `mean` and
/// `rstd` from `x` in f64 with ε = 1e-5, rounded to f32.
pub fn inputs<T: LayerNormBwdFloat>(rows: usize, cols: usize) -> Inputs {
    let mut rng = Lcg::for_dims(&[rows, cols], 37);
    let round = |v: f32| T::from_f32(v).to_f32();
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let row = i / cols;
            let offset = (row % 7) as f32 * 0.5 - 1.5;
            round(rng.float(2.0) * 2f32.powi((row % 5) as i32 - 2) + offset)
        })
        .collect();
    let weight = (0..cols).map(|_| round(1.0 + rng.float(0.5))).collect();
    let dy = (0..rows * cols).map(|_| round(rng.float(1.0))).collect();
    let (mut mean, mut rstd) = (Vec::new(), Vec::new());
    for row in x.chunks(cols) {
        let mu = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / cols as f64;
        mean.push(mu as f32);
        rstd.push((1.0 / (var + 1e-5).sqrt()) as f32);
    }
    Inputs {
        x,
        weight,
        dy,
        mean,
        rstd,
    }
}

fn shape(problem: &Problem) -> (usize, usize) {
    (problem.dims[0], problem.dims[1])
}

impl<T: LayerNormBwdFloat> LibraryKernel for LayerNormBwd<T> {
    fn def(&self) -> &'static KernelDef {
        match self.kind {
            Kind::Dx => (T::LAYERNORM_BWD)(),
            Kind::Dparams => (T::LAYERNORM_DPARAMS)(),
        }
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// The RMSNorm backward's edge shapes: one element, ragged widths (7, 20), rows that are
    /// no multiple of any chunk (37, 130), a long row (2500) over several warps.
    fn problems(&self) -> Vec<Problem> {
        [(1, 1), (3, 7), (37, 20), (130, 12), (2, 2500)]
            .iter()
            .map(|&(r, c)| Problem::new(format!("{r}x{c}"), vec![r, c]))
            .collect()
    }

    fn rank(&self) -> usize {
        2
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (rows, cols) = shape(problem);
        let inputs = inputs::<T>(rows, cols);
        let ld = padded(cols);
        // Enough partials for the smallest CHUNK.
        let most_chunks = rows.div_ceil(16).max(1);
        Ok(Box::new(LayerNormBwdCase::<T> {
            kind: self.kind,
            shape: Rows::padded(rows, cols),
            x: device.upload(&padded_rows::<T>(&inputs.x, cols))?,
            weight: device.upload(&padded_rows::<T>(&inputs.weight, cols))?,
            dy: device.upload(&padded_rows::<T>(&inputs.dy, cols))?,
            mean: device.upload(&inputs.mean)?,
            rstd: device.upload(&inputs.rstd)?,
            dx: device.upload(&vec![T::from_f32(f32::NAN); rows * ld])?,
            partial_weight: device.upload(&vec![f32::NAN; most_chunks * ld])?,
            partial_bias: device.upload(&vec![f32::NAN; most_chunks * ld])?,
            dweight: device.upload(&vec![f32::NAN; ld])?,
            dbias: device.upload(&vec![f32::NAN; ld])?,
        }))
    }

    /// `dx` rounded to `T`, or `dγ` then `dβ` in f32 (see [`super::layernorm_backward`]).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = shape(problem);
        let i = inputs::<T>(rows, cols);
        let (dx, dweight, dbias) =
            layernorm_bwd_reference((&i.x, &i.weight, &i.dy), (&i.mean, &i.rstd), cols);
        match self.kind {
            Kind::Dx => dx.iter().map(|&v| T::from_f32(v as f32).to_f32()).collect(),
            Kind::Dparams => dweight.iter().chain(&dbias).map(|&v| v as f32).collect(),
        }
    }

    /// Relative to max(1, |expected|), u = 2^-24:
    /// - `dx`: the two row sums as the forward's statistics (`(cols/32 + 24)·u` each), times
    ///   8 for the cancellation in `g − a − x̂·b` (three terms of |g|'s size, x̂ itself an f32
    ///   value a few u off), then one rounding to `T` that the error can move across a
    ///   boundary (one ulp of `T`);
    /// - `dγ`, `dβ`: each column adds `rows` f32 products (x̂ a few u off the f64 one) in f32:
    ///   `(rows + 8)·u` of the sum of magnitudes, which the inputs keep within 4× the
    ///   result's scale.
    fn tolerance(&self, problem: &Problem) -> f64 {
        let (rows, cols) = shape(problem);
        let u = f64::from(f32::EPSILON) / 2.0;
        match self.kind {
            Kind::Dx => T::ULP + (cols as f64 / 32.0 + 24.0) * u * 8.0,
            Kind::Dparams => 4.0 * (rows as f64 + 8.0) * u,
        }
    }

    /// `ROW_THREADS` or `CHUNK` changes the order of the f32 sums.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        let t = 2.0 * self.tolerance(problem);
        Tolerance { rel: t, abs: t }
    }

    /// `dx`: `x`, `dy` read and `dx` written; `dγ`, `dβ`: `x`, `dy` read, both partials
    /// written and read back (at the default CHUNK = 32), `dγ`, `dβ` written.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (rows, cols) = shape(problem);
        let t = std::mem::size_of::<T>();
        Some(match self.kind {
            Kind::Dx => (3 * rows * cols * t + 8 * rows) as u64,
            Kind::Dparams => {
                (2 * rows * cols * t + 16 * rows.div_ceil(32) * cols + 8 * cols + 8 * rows) as u64
            }
        })
    }

    /// The bf16 instances over `[tokens, hidden]` (a LayerNorm model's rows).
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != warpforge_dsl::ScalarType::BF16 {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| Problem::new("hidden", vec![m, model.hidden]))
            .collect()
    }
}

struct LayerNormBwdCase<T: LayerNormBwdFloat> {
    kind: Kind,
    shape: Rows,
    x: Buffer<T>,
    weight: Buffer<T>,
    dy: Buffer<T>,
    mean: Buffer<f32>,
    rstd: Buffer<f32>,
    dx: Buffer<T>,
    partial_weight: Buffer<f32>,
    partial_bias: Buffer<f32>,
    dweight: Buffer<f32>,
    dbias: Buffer<f32>,
}

impl<T: LayerNormBwdFloat> Case for LayerNormBwdCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let stats = (&self.mean, &self.rstd);
        match self.kind {
            Kind::Dx => launch_layernorm_bwd(
                device,
                config,
                (&self.x, &self.weight, &self.dy),
                stats,
                &mut self.dx,
                self.shape,
            ),
            Kind::Dparams => {
                debug_assert!(
                    chunks(config, self.shape.rows) as usize * self.shape.ld as usize
                        <= self.partial_weight.len()
                );
                let partials = Partials {
                    weight: &mut self.partial_weight,
                    bias: &mut self.partial_bias,
                };
                launch_layernorm_dparams(
                    device,
                    config,
                    (&self.x, &self.dy),
                    stats,
                    partials,
                    (&mut self.dweight, &mut self.dbias),
                    self.shape,
                )
            }
        }
    }

    /// `dx` without its padding, or the `cols` values of `dγ` then of `dβ`.
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let (cols, ld) = (self.shape.cols as usize, self.shape.ld as usize);
        Ok(match self.kind {
            Kind::Dx => device
                .download(&self.dx)?
                .chunks(ld)
                .flat_map(|row| row[..cols].iter().map(|v| v.to_f32()))
                .collect(),
            Kind::Dparams => {
                let mut out = device.download(&self.dweight)?[..cols].to_vec();
                out.extend_from_slice(&device.download(&self.dbias)?[..cols]);
                out
            }
        })
    }
}
