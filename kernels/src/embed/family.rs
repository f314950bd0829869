//! The embedding backward as a library kernel: one description, [`EmbedBwd<T>`], for every
//! element type. Problems are `[tokens, vocab, hidden]` (`hidden % 4 == 0`); ids are skewed
//! (low ids repeat, as frequent tokens do) and the gradient starts non-zero, so the check
//! sees the accumulation into it; the output is the whole `[vocab, hidden]` gradient. The
//! kernel's order is fixed, so the result is exact (tolerance 0) for every config.

use super::host::{
    embedding_bwd_reference, launch_embedding_bwd, DeviceIndex, EmbedFloat, TokenIndex,
};
use crate::check::Problem;
use crate::family::{register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::{bf16, f16};
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// The embedding backward for f32, f16 and bf16 gradients.
pub fn kernels() -> Vec<Kernel> {
    vec![instance::<f32>(), instance::<f16>(), instance::<bf16>()]
}

fn instance<T: EmbedFloat>() -> Kernel {
    let summary = format!(
        "embedding backward: deterministic scatter-add of {} dy into f32 dweight by a token CSR",
        T::SCALAR
    );
    register(EmbedBwd::<T> {
        summary: Box::leak(summary.into_boxed_str()),
        types: PhantomData,
    })
}

struct EmbedBwd<T> {
    summary: &'static str,
    types: PhantomData<fn() -> T>,
}

/// A case's inputs: ids (the square of a uniform draw, so low ids repeat), `dy` in [−1, 1)
/// rounded to `T`, and the gradient's starting value in [−1, 1).
struct Inputs {
    ids: Vec<u32>,
    dy: Vec<f32>,
    dweight: Vec<f32>,
}

fn inputs<T: EmbedFloat>(dims: &[usize]) -> Inputs {
    let (tokens, vocab, hidden) = (dims[0], dims[1], dims[2]);
    let mut rng = Lcg::for_dims(dims, 37);
    let ids = (0..tokens)
        .map(|_| {
            let u = rng.next_u32() as f64 / (1u64 << 31) as f64;
            ((u * u * vocab as f64) as u32).min(vocab as u32 - 1)
        })
        .collect();
    let dy = (0..tokens * hidden)
        .map(|_| T::from_f32(rng.float(1.0)).to_f32())
        .collect();
    let dweight = rng.floats(vocab * hidden, 1.0);
    Inputs { ids, dy, dweight }
}

impl<T: EmbedFloat> LibraryKernel for EmbedBwd<T> {
    fn def(&self) -> &'static KernelDef {
        (T::EMBEDDING_BWD)()
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    /// One token, repeats of few ids, most of a vocabulary unused, and a row wider than the
    /// widest block (1028 > 4·256).
    fn problems(&self) -> Vec<Problem> {
        [
            (1, 1, 4),
            (7, 5, 12),
            (100, 13, 20),
            (300, 1000, 36),
            (64, 3, 1028),
        ]
        .iter()
        .map(|&(t, v, h)| Problem::new(format!("{t}x{v}x{h}"), vec![t, v, h]))
        .collect()
    }

    fn rank(&self) -> usize {
        3
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        let d = &problem.dims;
        if d.len() != 3 || d.iter().any(|&x| x == 0 || x >= 1 << 31) {
            return Err(format!(
                "{} takes [tokens, vocab, hidden], got {d:?}",
                self.def().name
            ));
        }
        if !d[2].is_multiple_of(4) {
            return Err(format!("hidden = {} must be a multiple of 4", d[2]));
        }
        Ok(())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let Inputs { ids, dy, dweight } = inputs::<T>(&problem.dims);
        let index = TokenIndex::build(&ids, problem.dims[1]).map_err(|e| {
            Error::Device(warpforge_dsl::backend::DeviceError::ArgMismatch {
                kernel: self.def().name.to_string(),
                param: "ids".into(),
                expected: "ids below the vocabulary".into(),
                got: e.to_string(),
            })
        })?;
        let dy: Vec<T> = dy.iter().map(|&v| T::from_f32(v)).collect();
        Ok(Box::new(EmbedCase::<T> {
            hidden: problem.dims[2] as u32,
            dy: device.upload(&dy)?,
            index: DeviceIndex::upload(device, &index)?,
            dweight: device.upload(&dweight)?,
            initial: dweight,
        }))
    }

    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let Inputs {
            ids,
            dy,
            mut dweight,
        } = inputs::<T>(&problem.dims);
        embedding_bwd_reference(&dy, &ids, &mut dweight, problem.dims[2]);
        dweight
    }

    /// `dy` read once, the gradient rows of the distinct ids read and written (taken as
    /// every row, an upper bound), the index.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let (tokens, vocab, hidden) = (problem.dims[0], problem.dims[1], problem.dims[2]);
        let rows = tokens.min(vocab);
        Some((tokens * hidden * std::mem::size_of::<T>() + rows * hidden * 8 + tokens * 8) as u64)
    }

    /// `[tokens, vocab, hidden]` for the bf16 instance: the token embedding's gradient.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| Problem::new("embed", vec![m, model.vocab, model.hidden]))
            .collect()
    }
}

struct EmbedCase<T: EmbedFloat> {
    hidden: u32,
    dy: Buffer<T>,
    index: DeviceIndex,
    dweight: Buffer<f32>,
    initial: Vec<f32>,
}

impl<T: EmbedFloat> Case for EmbedCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        launch_embedding_bwd(
            device,
            config,
            (&self.dy, &self.index),
            &mut self.dweight,
            self.hidden,
        )
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(device.download(&self.dweight)?)
    }

    /// The gradient is accumulated into.
    fn accumulates(&self) -> bool {
        true
    }

    fn restore(&mut self, device: &Device) -> Result<(), Error> {
        self.dweight = device.upload(&self.initial)?;
        Ok(())
    }
}
