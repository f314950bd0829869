//! The RMSNorm backward kernels as library kernels: [`NormBwd<T>`] describes
//! `rmsnorm_bwd_{T}` (output `dx`) and `rmsnorm_dweight_{T}` (output `dγ`, its case
//! launching the partials then `column_sum`); [`ColumnSum`] describes `column_sum`.
//! Problems are `[rows, cols]` (column sum: `[chunks, cols]` with `cols % 4 == 0`); inputs
//! are stored as the forward's cases store them (smallest aligned stride, NaN padding), and
//! `rstd` is the f32 value of the f64 statistic, which both the kernel and the reference
//! read.

use super::backward::{
    column_sum, launch_column_sum, launch_rmsnorm_bwd, launch_rmsnorm_dweight,
    rmsnorm_bwd_reference, NormBwdFloat,
};
use super::host::{padded, padded_rows, Rows};
use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// `rmsnorm_bwd` and `rmsnorm_dweight` for f32, f16, bf16, then `column_sum`.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for kind in [Kind::Dx, Kind::Dweight] {
        out.push(instance::<f32>(kind));
        out.push(instance::<f16>(kind));
        out.push(instance::<bf16>(kind));
    }
    out.push(register(ColumnSum));
    out
}

fn instance<T: NormBwdFloat>(kind: Kind) -> Kernel {
    let what = match kind {
        Kind::Dx => "RMSNorm backward: dx from dy, γ and the saved rstd",
        Kind::Dweight => "RMSNorm backward: dγ by per-chunk partials + column sum (deterministic)",
    };
    let summary = format!("{what}, {}, f32 math", T::SCALAR);
    register(NormBwd::<T> {
        kind,
        summary: Box::leak(summary.into_boxed_str()),
        types: PhantomData,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dx,
    Dweight,
}

struct NormBwd<T> {
    kind: Kind,
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// A case's inputs (dense, `T` values widened) and the f32 `rstd` of each row.
pub struct Inputs {
    pub x: Vec<f32>,
    pub weight: Vec<f32>,
    pub dy: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `x` in [−2, 2) times a per-row scale 2^-2 … 2^2, `γ` in [0.5, 1.5), `dy` in [−1, 1),
/// each rounded to `T`; `rstd` from `x` in f64 with ε = 1e-5, rounded to f32.
pub fn inputs<T: NormBwdFloat>(rows: usize, cols: usize) -> Inputs {
    let mut rng = Lcg::for_dims(&[rows, cols], 29);
    let round = |v: f32| T::from_f32(v).to_f32();
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| round(rng.float(2.0) * 2f32.powi((i / cols % 5) as i32 - 2)))
        .collect();
    let weight = (0..cols).map(|_| round(1.0 + rng.float(0.5))).collect();
    let dy = (0..rows * cols).map(|_| round(rng.float(1.0))).collect();
    let rstd = x
        .chunks(cols)
        .map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
            (1.0 / (ms + 1e-5).sqrt()) as f32
        })
        .collect();
    Inputs {
        x,
        weight,
        dy,
        rstd,
    }
}

fn shape(problem: &Problem) -> (usize, usize) {
    (problem.dims[0], problem.dims[1])
}

impl<T: NormBwdFloat> LibraryKernel for NormBwd<T> {
    fn def(&self) -> &'static KernelDef {
        match self.kind {
            Kind::Dx => (T::RMSNORM_BWD)(),
            Kind::Dweight => (T::RMSNORM_DWEIGHT)(),
        }
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// The forward's edge shapes, plus rows that are no multiple of any chunk (37, 130).
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
        Ok(Box::new(NormBwdCase::<T> {
            kind: self.kind,
            shape: Rows::padded(rows, cols),
            x: device.upload(&padded_rows::<T>(&inputs.x, cols))?,
            weight: device.upload(&padded_rows::<T>(&inputs.weight, cols))?,
            dy: device.upload(&padded_rows::<T>(&inputs.dy, cols))?,
            rstd: device.upload(&inputs.rstd)?,
            dx: device.upload(&vec![T::from_f32(f32::NAN); rows * ld])?,
            partial: device.upload(&vec![f32::NAN; most_chunks * ld])?,
            dweight: device.upload(&vec![f32::NAN; ld])?,
        }))
    }

    /// `dx` rounded to `T`, or `dγ` in f32 (see [`super::backward`]).
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = shape(problem);
        let i = inputs::<T>(rows, cols);
        let (dx, dweight) = rmsnorm_bwd_reference::<T>((&i.x, &i.weight, &i.dy), &i.rstd, cols);
        match self.kind {
            Kind::Dx => dx.iter().map(|&v| T::from_f32(v as f32).to_f32()).collect(),
            Kind::Dweight => dweight.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Relative to max(1, |expected|), u = 2^-24:
    /// - `dx`: the sum `Σ dn·x` as the forward's statistics (`(cols/32 + 24)·u`), times 4
    ///   for the cancellation in `dn − x·k` (|x·k| ≤ |dn|-sized terms here), then one
    ///   rounding to `T` that the error can move across a boundary (one ulp of `T`);
    /// - `dγ`: each column adds `rows` products (rounded as the reference rounds them, but a
    ///   product can still land on the other side of a `T` boundary when `T(x·r)` does: one
    ///   ulp of `T` per term relative to the sum of magnitudes, bounded by 2 ulps of the
    ///   result's scale with these inputs), plus the f32 additions `(rows + 8)·u`.
    fn tolerance(&self, problem: &Problem) -> f64 {
        let (rows, cols) = shape(problem);
        let u = f64::from(f32::EPSILON) / 2.0;
        match self.kind {
            Kind::Dx => T::ULP + (cols as f64 / 32.0 + 24.0) * u * 4.0,
            Kind::Dweight => 2.0 * T::ULP + (rows as f64 + 8.0) * u,
        }
    }

    /// `ROW_THREADS` or `CHUNK` changes the order of the f32 sums.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        let t = 2.0 * self.tolerance(problem);
        Tolerance { rel: t, abs: t }
    }

    /// `dx`: `x`, `dy` read and `dx` written; `dγ`: `x`, `dy` read, the partials written
    /// and read back (at the default CHUNK = 32), `dγ` written.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (rows, cols) = shape(problem);
        let t = std::mem::size_of::<T>();
        Some(match self.kind {
            Kind::Dx => (3 * rows * cols * t + 4 * rows) as u64,
            Kind::Dweight => (2 * rows * cols * t + 8 * rows.div_ceil(32) * cols + 4 * cols) as u64,
        })
    }

    /// `[tokens, hidden]` for the bf16 instances (a Llama layer's two RMSNorms).
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

struct NormBwdCase<T: NormBwdFloat> {
    kind: Kind,
    shape: Rows,
    x: Buffer<T>,
    weight: Buffer<T>,
    dy: Buffer<T>,
    rstd: Buffer<f32>,
    dx: Buffer<T>,
    partial: Buffer<f32>,
    dweight: Buffer<f32>,
}

impl<T: NormBwdFloat> Case for NormBwdCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        match self.kind {
            Kind::Dx => launch_rmsnorm_bwd(
                device,
                config,
                (&self.x, &self.weight, &self.dy, &self.rstd),
                &mut self.dx,
                self.shape,
            ),
            Kind::Dweight => launch_rmsnorm_dweight(
                device,
                config,
                (&self.x, &self.dy, &self.rstd),
                (&mut self.partial, &mut self.dweight),
                self.shape,
            ),
        }
    }

    /// `dx` without its padding, or the `cols` values of `dγ`.
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let (cols, ld) = (self.shape.cols as usize, self.shape.ld as usize);
        Ok(match self.kind {
            Kind::Dx => device
                .download(&self.dx)?
                .chunks(ld)
                .flat_map(|row| row[..cols].iter().map(|v| v.to_f32()))
                .collect(),
            Kind::Dweight => device.download(&self.dweight)?[..cols].to_vec(),
        })
    }
}

/// `column_sum` on its own: `[chunks, cols]` partials summed per column, in chunk order
/// (exactly the reference's f32 order).
struct ColumnSum;

fn column_inputs(chunks: usize, cols: usize) -> Vec<f32> {
    Lcg::for_dims(&[chunks, cols], 31).floats(chunks * cols, 4.0)
}

impl LibraryKernel for ColumnSum {
    fn def(&self) -> &'static KernelDef {
        column_sum::def()
    }

    fn summary(&self) -> &'static str {
        "column sum of [chunks, cols] f32 partials in chunk order (deterministic reductions)"
    }

    fn problems(&self) -> Vec<Problem> {
        [(1, 4), (3, 12), (37, 1028)]
            .iter()
            .map(|&(r, c)| Problem::new(format!("{r}x{c}"), vec![r, c]))
            .collect()
    }

    fn rank(&self) -> usize {
        2
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        if problem.dims.len() != 2 || problem.dims.iter().any(|&d| d == 0 || d >= 1 << 31) {
            return Err(format!(
                "column_sum takes [chunks, cols], got {:?}",
                problem.dims
            ));
        }
        if !problem.dims[1].is_multiple_of(4) {
            return Err(format!(
                "cols = {} must be a multiple of 4",
                problem.dims[1]
            ));
        }
        Ok(())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (chunks, cols) = shape(problem);
        Ok(Box::new(ColumnSumCase {
            chunks: chunks as u32,
            quads: (cols / 4) as u32,
            partial: device.upload(&column_inputs(chunks, cols))?,
            out: device.upload(&vec![f32::NAN; cols])?,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (chunks, cols) = shape(problem);
        let partial = column_inputs(chunks, cols);
        (0..cols)
            .map(|c| (0..chunks).fold(0.0f32, |acc, k| acc + partial[k * cols + c]))
            .collect()
    }

    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (chunks, cols) = shape(problem);
        Some((4 * (chunks + 1) * cols) as u64)
    }

    /// The partials of `rmsnorm_dweight` at the default CHUNK = 32: `[tokens/32, hidden]`.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        tokens
            .iter()
            .map(|&m| Problem::new("hidden", vec![m.div_ceil(32), model.hidden]))
            .collect()
    }
}

struct ColumnSumCase {
    chunks: u32,
    quads: u32,
    partial: Buffer<f32>,
    out: Buffer<f32>,
}

impl Case for ColumnSumCase {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        launch_column_sum(
            device,
            config,
            &self.partial,
            &mut self.out,
            (self.chunks, self.quads),
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(device.download(&self.out)?)
    }
}
