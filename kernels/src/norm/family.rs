//! The norms as library kernels: one description, [`Norm<T>`], covers both generic sources
//! (RMSNorm, LayerNorm) and all their element types.
//!
//! Problems are `[rows, cols]`; the case stores them with the smallest aligned stride
//! ([`padded`]) and fills the padding of `x`, `γ` and `β` with NaN, so a kernel that read a
//! padding lane into a sum would fail the check. The output compared is `y` (the `cols`
//! values of each row, as f32s), then `rstd` per row, then (LayerNorm) `mean` per row.

use super::host::{
    launch_layernorm, launch_rmsnorm, layernorm_reference, padded, padded_rows, rmsnorm_reference,
    NormFloat, Rows,
};
use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// The ε of every case (Llama 3's `rms_norm_eps`, PyTorch's `LayerNorm` default).
pub const EPS: f32 = 1e-5;

/// Every instance: RMSNorm for f32, f16, bf16, then LayerNorm for the same.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for kind in [Kind::Rms, Kind::Layer] {
        out.push(instance::<f32>(kind));
        out.push(instance::<f16>(kind));
        out.push(instance::<bf16>(kind));
    }
    out
}

fn instance<T: NormFloat>(kind: Kind) -> Kernel {
    let what = match kind {
        Kind::Rms => "RMSNorm forward (Llama: normalized value rounded to T, then × weight)",
        Kind::Layer => "LayerNorm forward ((x − mean) · rstd · weight + bias)",
    };
    let summary = format!(
        "{what}, {}, f32 statistics, one warp or block per row",
        T::SCALAR
    );
    register(Norm::<T> {
        kind,
        summary: Box::leak(summary.into_boxed_str()),
        types: PhantomData,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rms,
    Layer,
}

/// The instance of `kind` for element type `T`.
struct Norm<T> {
    kind: Kind,
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// A case's inputs as `T` values widened to f32, dense: `x` (`rows × cols`), `γ`, `β`.
struct Inputs {
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// `x` uniform in [-2, 2) times a per-row scale 2^-2 … 2^2 (so rows differ in their
/// statistics), `γ` in [0.5, 1.5), `β` in [-0.5, 0.5), each rounded to `T`.
fn inputs<T: NormFloat>(rows: usize, cols: usize) -> Inputs {
    let mut rng = Lcg::for_dims(&[rows, cols], 7);
    let round = |v: f32| T::from_f32(v).to_f32();
    let x = (0..rows * cols)
        .map(|i| round(rng.float(2.0) * 2f32.powi((i / cols % 5) as i32 - 2)))
        .collect();
    let weight = (0..cols).map(|_| round(1.0 + rng.float(0.5))).collect();
    let bias = (0..cols).map(|_| round(rng.float(0.5))).collect();
    Inputs { x, weight, bias }
}

fn shape(problem: &Problem) -> (usize, usize) {
    (problem.dims[0], problem.dims[1])
}

impl<T: NormFloat> LibraryKernel for Norm<T> {
    fn def(&self) -> &'static KernelDef {
        match self.kind {
            Kind::Rms => (T::RMSNORM)(),
            Kind::Layer => (T::LAYERNORM)(),
        }
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// A single element, odd widths, widths that are not a multiple of the vector width,
    /// more rows than any block holds (37 is not a multiple of any rows-per-block), and a
    /// row longer than 512 threads' worth of `Vec4`s.
    fn problems(&self) -> Vec<Problem> {
        [(1, 1), (3, 7), (37, 20), (4, 130), (2, 2500)]
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
        Ok(Box::new(NormCase::<T> {
            kind: self.kind,
            shape: Rows::padded(rows, cols),
            x: device.upload(&padded_rows::<T>(&inputs.x, cols))?,
            weight: device.upload(&padded_rows::<T>(&inputs.weight, cols))?,
            bias: device.upload(&padded_rows::<T>(&inputs.bias, cols))?,
            y: device.zeros(rows * ld)?,
            mean: device.zeros(rows)?,
            rstd: device.zeros(rows)?,
        }))
    }

    /// The f64 reference, rounded as the kernel rounds (see [`super`]).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = shape(problem);
        let Inputs { x, weight, bias } = inputs::<T>(rows, cols);
        let out = match self.kind {
            Kind::Rms => rmsnorm_reference::<T>(&x, &weight, cols, EPS),
            Kind::Layer => layernorm_reference::<T>(&x, (&weight, &bias), cols, EPS),
        };
        let mut expected = out.y;
        expected.extend(out.rstd);
        expected.extend(out.mean);
        expected
    }

    /// Relative to max(1, |expected|):
    /// - f32 statistics: a sum of `k` terms is within `(k − 1)·u` (u = 2^-24) relatively;
    ///   a thread adds at most `4·⌈cols/4/32⌉ ≈ cols/32 + 4` terms, the shuffle and
    ///   cross-warp trees 5 + 4 more; the division, `+ eps` and GPU `rsqrtf` (≤ 2 ulp) add a
    ///   few `u`; taken as `(cols/32 + 24)·u`, times 4 for LayerNorm's centering and the
    ///   `|nγ| + |β|` that the result may cancel down from;
    /// - the roundings to `T`: a statistic off by a few `u` can move a value across a
    ///   rounding boundary of `T`, one ulp (`T::ULP` relative: 2^-7 bf16, 2^-10 f16, 2^-23
    ///   f32). RMSNorm rounds twice (normalized value, then the product with γ), so two
    ///   ulps; LayerNorm once.
    fn tolerance(&self, problem: &Problem) -> f64 {
        let (_, cols) = shape(problem);
        let u = f64::from(f32::EPSILON) / 2.0;
        let statistics = (cols as f64 / 32.0 + 24.0) * u * 4.0;
        let roundings = match self.kind {
            Kind::Rms => 2.0,
            Kind::Layer => 1.0,
        };
        roundings * T::ULP + statistics
    }

    /// `ROW_THREADS` changes which values each thread sums: two configs are each within
    /// [`LibraryKernel::tolerance`] of the reference.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        let t = 2.0 * self.tolerance(problem);
        Tolerance { rel: t, abs: t }
    }

    /// `[tokens, hidden]` for the bf16 instances: a Llama layer's two RMSNorms (and the
    /// final one); LayerNorm at the same shape, where a model with LayerNorm would have it
    /// (a Llama has none, but each generic source gets tuned shapes). The f32 and f16
    /// instances keep their defaults unless given shapes.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| Problem::new("hidden", vec![m, model.hidden]))
            .collect()
    }
}

/// The buffers of one problem on a device (`bias` and `mean` unused by RMSNorm).
struct NormCase<T: NormFloat> {
    kind: Kind,
    shape: Rows,
    x: Buffer<T>,
    weight: Buffer<T>,
    bias: Buffer<T>,
    y: Buffer<T>,
    mean: Buffer<f32>,
    rstd: Buffer<f32>,
}

impl<T: NormFloat> Case for NormCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        match self.kind {
            Kind::Rms => launch_rmsnorm(
                device,
                config,
                (&self.x, &self.weight),
                (&mut self.y, &mut self.rstd),
                self.shape,
                EPS,
            ),
            Kind::Layer => launch_layernorm(
                device,
                config,
                (&self.x, &self.weight, &self.bias),
                (&mut self.y, &mut self.mean, &mut self.rstd),
                self.shape,
                EPS,
            ),
        }
    }

    /// `y` without its padding, then `rstd`, then (LayerNorm) `mean`.
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let (cols, ld) = (self.shape.cols as usize, self.shape.ld as usize);
        let y = device.download(&self.y)?;
        let mut out: Vec<f32> = y
            .chunks(ld)
            .flat_map(|row| row[..cols].iter().map(|v| v.to_f32()))
            .collect();
        out.extend(device.download(&self.rstd)?);
        if self.kind == Kind::Layer {
            out.extend(device.download(&self.mean)?);
        }
        Ok(out)
    }
}
