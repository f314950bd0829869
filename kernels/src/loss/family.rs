//! The cross-entropy as a library kernel: one description, [`Loss<T>`], for every element
//! type. Problems are `[rows, vocab]`; the case stores the logits with the smallest aligned
//! stride and NaN in the padding, every third row's target is the ignore index, and the
//! gradient scale is 1 (so the check sees gradients at full size). The output compared is
//! the gradient (the `vocab` values of each row, as f32s), then the loss per row.

use super::host::{cross_entropy_reference, launch_cross_entropy, Logits, LossFloat, IGNORE_INDEX};
use crate::check::{Problem, Tolerance};
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use crate::norm::host::{padded, padded_rows};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// The cross-entropy for f32, f16 and bf16 logits.
pub fn kernels() -> Vec<Kernel> {
    vec![instance::<f32>(), instance::<f16>(), instance::<bf16>()]
}

fn instance<T: LossFloat>() -> Kernel {
    let summary = format!(
        "fused softmax cross-entropy: f32 loss per row and dlogits in {}, one block per row, \
         ignore_index",
        T::SCALAR
    );
    register(Loss::<T> {
        summary: Box::leak(summary.into_boxed_str()),
        types: PhantomData,
    })
}

struct Loss<T> {
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// The gradient scale of every case: the gradient of the summed loss.
const GRAD_SCALE: f32 = 1.0;

/// A case's inputs: logits (dense, `T` values widened) uniform in [−8, 8) times a per-row
/// scale 2^-2 … 2^2 plus a per-row offset 0 … 48 (the max subtraction matters), and the
/// targets (every third row ignored).
pub fn inputs<T: LossFloat>(rows: usize, cols: usize) -> (Vec<f32>, Vec<i32>) {
    let mut rng = Lcg::for_dims(&[rows, cols], 17);
    let x = (0..rows * cols)
        .map(|i| {
            let row = i / cols;
            let v = rng.float(8.0) * 2f32.powi((row % 5) as i32 - 2) + (row % 4) as f32 * 16.0;
            T::from_f32(v).to_f32()
        })
        .collect();
    let targets = (0..rows)
        .map(|r| {
            let t = (rng.next_u32() as usize % cols) as i32;
            if r % 3 == 2 {
                IGNORE_INDEX
            } else {
                t
            }
        })
        .collect();
    (x, targets)
}

fn shape(problem: &Problem) -> (usize, usize) {
    (problem.dims[0], problem.dims[1])
}

impl<T: LossFloat> LibraryKernel for Loss<T> {
    fn def(&self) -> &'static KernelDef {
        (T::CROSS_ENTROPY)()
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// A one-word vocabulary, ragged widths (not a multiple of 4), ignored rows, and rows
    /// longer than the widest block covers in one stride (5003 > 4·1024).
    fn problems(&self) -> Vec<Problem> {
        [(1, 1), (3, 7), (6, 130), (4, 2500), (3, 5003)]
            .iter()
            .map(|&(r, c)| Problem::new(format!("{r}x{c}"), vec![r, c]))
            .collect()
    }

    fn rank(&self) -> usize {
        2
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let (rows, cols) = shape(problem);
        let (x, targets) = inputs::<T>(rows, cols);
        let ld = padded(cols);
        let u = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Box::new(LossCase::<T> {
            shape: Logits {
                rows: u(rows),
                cols: u(cols),
                ld: u(ld),
            },
            logits: device.upload(&padded_rows::<T>(&x, cols))?,
            targets: device.upload(&targets)?,
            loss: device.zeros(rows)?,
            dlogits: device.upload(&vec![T::from_f32(f32::NAN); rows * ld])?,
        }))
    }

    /// The f64 reference, the gradient rounded to `T` as the kernel writes it.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let (rows, cols) = shape(problem);
        let (x, targets) = inputs::<T>(rows, cols);
        let r = cross_entropy_reference(&x, &targets, cols, (IGNORE_INDEX, GRAD_SCALE as f64));
        let mut out: Vec<f32> = r
            .dlogits
            .iter()
            .map(|&g| T::from_f32(g as f32).to_f32())
            .collect();
        out.extend(r.loss.iter().map(|&l| l as f32));
        out
    }

    /// Relative to max(1, |expected|), with u = 2^-24:
    /// - the sum: a thread adds `cols/(4·BLOCK) ≤ cols/512` `Vec4`s, each a few roundings
    ///   (four `exp`s of ≤ 2 ulp, the sum, the rescale), then 10 merge levels of three;
    ///   taken as `(cols/128 + 64)·u` relative, which is also the loss's absolute error
    ///   (`ln` turns a relative error into an absolute one) beside `lse`'s own rounding
    ///   (`|m| ≤ 60` here: 64 more u, within the 4× margin);
    /// - the gradient: `p = exp(x − m)/Σ` within that relative error, then one rounding to
    ///   `T` that the error can move across a boundary: one ulp of `T`.
    fn tolerance(&self, problem: &Problem) -> f64 {
        let (_, cols) = shape(problem);
        let u = f64::from(f32::EPSILON) / 2.0;
        T::ULP + (cols as f64 / 128.0 + 64.0) * u * 4.0
    }

    /// `BLOCK` changes the summation order: two configs are each within the tolerance.
    fn config_tolerance(&self, problem: &Problem) -> Tolerance {
        let t = 2.0 * self.tolerance(problem);
        Tolerance { rel: t, abs: t }
    }

    /// The logits read once and the gradient written once (the re-read hits L2), plus the
    /// target and loss of each row.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (rows, cols) = shape(problem);
        Some((rows * cols * 2 * std::mem::size_of::<T>() + rows * 8) as u64)
    }

    /// `[tokens, vocab]` for the bf16 instance: the LM head's logits of a training step.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| Problem::new("vocab", vec![m, model.vocab]))
            .collect()
    }
}

/// The buffers of one problem on a device.
struct LossCase<T: LossFloat> {
    shape: Logits,
    logits: Buffer<T>,
    targets: Buffer<i32>,
    loss: Buffer<f32>,
    dlogits: Buffer<T>,
}

impl<T: LossFloat> Case for LossCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        launch_cross_entropy(
            device,
            config,
            (&self.logits, &self.targets),
            (&mut self.loss, &mut self.dlogits),
            self.shape,
            (IGNORE_INDEX, GRAD_SCALE),
        )
    }

    /// The gradient without its padding, then the loss per row.
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let (cols, ld) = (self.shape.cols as usize, self.shape.ld as usize);
        let d = device.download(&self.dlogits)?;
        let mut out: Vec<f32> = d
            .chunks(ld)
            .flat_map(|row| row[..cols].iter().map(|v| v.to_f32()))
            .collect();
        out.extend(device.download(&self.loss)?);
        Ok(out)
    }
}
