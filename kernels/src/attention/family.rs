//! The attention kernels as library kernels: `flash_attn_fwd_{f16,bf16}` and
//! `attn_merge_{f32,f16,bf16}`.
//!
//! Forward problems encode an [`AttnShape`] (`[heads, kv_heads, head_dim, causal,
//! sequences, q_lens.., k_lens..]`, see [`AttnShape::to_problem`]); the head dim is a
//! layout parameter the kernel declares as the tunable `HEAD_DIM`: the problem fixes it and
//! only configs with that `HEAD_DIM` are candidates. Merge problems are `[parts, rows,
//! heads, head_dim]`.

use super::host::{self, config_for, def_of, inputs, launch, problems, tolerance_o, AttnBuffers};
use super::merge::{merge_def_of, merge_launch, merge_pair_def_of, merge_pair_launch, MergeShape};
use super::reference::{merge_reference, AttnError, AttnOutput, AttnShape};
use super::HEAD_DIMS;
use crate::check::{Problem, Tolerance};
use crate::family::{download_f32, register, Case, Kernel, Lcg, LibraryKernel, ModelShape};
use half::{bf16, f16};
use std::marker::PhantomData;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::Float;
use warpforge_dsl::{Buffer, Config, Device, Element, Error, KernelDef};

/// The forward for f16 and bf16, then the merge for f32, f16 and bf16.
pub fn kernels() -> Vec<Kernel> {
    vec![
        register(FlashAttn::<f16>(PhantomData)),
        register(FlashAttn::<bf16>(PhantomData)),
        register(Merge::<f32>::stacked()),
        register(Merge::<f16>::stacked()),
        register(Merge::<bf16>::stacked()),
        register(Merge::<f32>::pair()),
        register(Merge::<f16>::pair()),
        register(Merge::<bf16>::pair()),
        register(super::decode_family::Decode::<f16>(PhantomData)),
        register(super::decode_family::Decode::<bf16>(PhantomData)),
    ]
}

/// An attention error in the launch error type (a shape the kernel cannot run is an
/// argument mismatch naming the kernel).
pub(super) fn launch_error(def: &KernelDef, e: AttnError) -> Error {
    match e {
        AttnError::Kernel(e) => *e,
        AttnError::Device(e) => Error::Device(*e),
        AttnError::Shape(message) => Error::Device(DeviceError::ArgMismatch {
            kernel: def.name.to_string(),
            param: "shape".into(),
            expected: message,
            got: "see the message".into(),
        }),
    }
}

/// `flash_attn_fwd_{T}`.
struct FlashAttn<T>(PhantomData<fn() -> T>);

impl<T: Float + Element> LibraryKernel for FlashAttn<T> {
    fn def(&self) -> &'static KernelDef {
        def_of(T::SCALAR).expect("registered for f16 and bf16 only")
    }

    fn summary(&self) -> &'static str {
        "flash attention forward (varlen, causal bottom-right, GQA, paged KV; cp.async + ldmatrix + mma.sync, exp2 online softmax)"
    }

    fn problems(&self) -> Vec<Problem> {
        problems()
    }

    /// At least 5 (the fixed part of the encoding); [`LibraryKernel::validate`] checks the
    /// variable part.
    fn rank(&self) -> usize {
        5
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        let shape = AttnShape::from_problem(problem).map_err(|e| e.to_string())?;
        shape.validate().map_err(|e| e.to_string())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let def = self.def();
        let shape = AttnShape::from_problem(problem).map_err(|e| launch_error(def, e))?;
        let (q, k, v) = inputs::<T>(&shape);
        let bufs =
            AttnBuffers::upload(device, &shape, &q, &k, &v).map_err(|e| launch_error(def, e))?;
        Ok(Box::new(ForwardCase { def, shape, bufs }))
    }

    /// O rounded to T, then LSE (−∞ for rows with no visible key); empty for a problem
    /// that is not a valid shape.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        host::expected::<T>(problem).unwrap_or_default()
    }

    /// O within [`tolerance_o`] (3 roundings to T); LSE well within it (its own bound is
    /// 1e-4 absolute, [`host::TOLERANCE_LSE`]).
    fn tolerance(&self, _problem: &Problem) -> f64 {
        tolerance_o(T::SCALAR)
    }

    /// Tilings sum the keys in different orders and round P to T at different points.
    fn config_tolerance(&self, _problem: &Problem) -> Tolerance {
        let t = tolerance_o(T::SCALAR);
        Tolerance { rel: t, abs: t }
    }

    /// Heads, KV heads, head dim, causal, and the batch's total query rows and keys (a
    /// varlen batch's length list does not fit a cache key).
    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        match AttnShape::from_problem(problem) {
            Ok(s) => vec![
                s.heads,
                s.kv_heads,
                s.head_dim,
                s.causal as usize,
                s.total_q(),
                s.total_k(),
            ],
            Err(_) => problem.dims.clone(),
        }
    }

    fn admits(&self, config: &Config, problem: &Problem) -> bool {
        problem.dims.get(2).map(|&d| d as i64) == config.get("HEAD_DIM")
    }

    /// The bf16 instance: causal prefill of one sequence of each batch size (as tokens)
    /// over the model's heads, when its head dim is one the kernel has.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR || !HEAD_DIMS.contains(&model.head_dim) {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| {
                let shape =
                    AttnShape::square(model.heads, model.kv_heads, model.head_dim, true, &[m]);
                Problem::new("prefill", shape.to_problem().dims)
            })
            .collect()
    }
}

struct ForwardCase<T: Element> {
    def: &'static KernelDef,
    shape: AttnShape,
    bufs: AttnBuffers<T>,
}

impl<T: Float + Element> Case for ForwardCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let config = config_for(config, &self.shape);
        let scale = self.shape.default_scale();
        launch(device, &config, &self.shape, &mut self.bufs, scale)
            .map_err(|e| launch_error(self.def, e))
    }

    /// O (`[total_q, heads, d]`), then LSE (`[heads, total_q]`).
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut out = download_f32(device, &self.bufs.o)?;
        out.extend(device.download(&self.bufs.lse)?);
        Ok(out)
    }
}

/// `attn_merge_{T}` (stacked parts) or `attn_merge_pair_{T}` (two parts in their own
/// buffers; its problems have 2 parts).
struct Merge<T> {
    pair: bool,
    types: PhantomData<fn() -> T>,
}

impl<T> Merge<T> {
    fn stacked() -> Self {
        Merge {
            pair: false,
            types: PhantomData,
        }
    }

    fn pair() -> Self {
        Merge {
            pair: true,
            types: PhantomData,
        }
    }
}

fn merge_shape(problem: &Problem) -> MergeShape {
    MergeShape {
        parts: problem.dims[0],
        rows: problem.dims[1],
        heads: problem.dims[2],
        head_dim: problem.dims[3],
    }
}

/// Partial results to merge: O parts in [−1, 1] (rounded to T), LSEs in [−4, 4] with a
/// few −∞ (a part with no visible key for that row; every part of row 0, head 0).
fn merge_inputs<T: Float>(s: MergeShape) -> (Vec<T>, Vec<f32>) {
    let mut rng = Lcg::for_dims(&[s.parts, s.rows, s.heads, s.head_dim], 7);
    let o = rng.floats(s.parts * s.rows * s.heads * s.head_dim, 1.0);
    let o = o.into_iter().map(T::from_f32).collect();
    let per_part = s.heads * s.rows;
    let lse = (0..s.parts * per_part)
        .map(|i| {
            let at = i % per_part;
            let empty = at == 0 || rng.next_u32().is_multiple_of(5);
            if empty {
                f32::NEG_INFINITY
            } else {
                rng.float(4.0)
            }
        })
        .collect();
    (o, lse)
}

impl<T: Float + Element> LibraryKernel for Merge<T> {
    fn def(&self) -> &'static KernelDef {
        let def = if self.pair {
            merge_pair_def_of(T::SCALAR)
        } else {
            merge_def_of(T::SCALAR)
        };
        def.expect("registered for f32, f16 and bf16 only")
    }

    fn summary(&self) -> &'static str {
        if self.pair {
            "exact merge of two partial attention results in separate buffers (Hydragen)"
        } else {
            "exact N-way merge of partial attention results by their LSEs (split-KV, shared prefixes)"
        }
    }

    /// One part, two parts, several parts with ragged rows, at two head dims (two parts
    /// only for the pair merge).
    fn problems(&self) -> Vec<Problem> {
        [
            (1, 3, 2, 64),
            (2, 5, 3, 64),
            (4, 7, 2, 128),
            (3, 33, 4, 80),
            (2, 33, 4, 80),
        ]
        .iter()
        .filter(|&&(p, ..)| !self.pair || p == 2)
        .map(|&(p, r, h, d)| Problem::new(format!("{p} parts {r}x{h}x{d}"), vec![p, r, h, d]))
        .collect()
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        if problem.dims.len() != 4 || (self.pair && problem.dims[0] != 2) {
            return Err(format!(
                "{} takes [parts, rows, heads, head_dim]{}, got {:?}",
                self.def().name,
                if self.pair { " with 2 parts" } else { "" },
                problem.dims
            ));
        }
        Ok(())
    }

    fn rank(&self) -> usize {
        4
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let s = merge_shape(problem);
        let (o, lse) = merge_inputs::<T>(s);
        Ok(Box::new(MergeCase {
            def: self.def(),
            pair: self.pair,
            shape: s,
            o_parts: device.upload(&o)?,
            lse_parts: device.upload(&lse)?,
            o: device.zeros(s.rows * s.heads * s.head_dim)?,
            lse: device.zeros(s.rows * s.heads)?,
        }))
    }

    /// The f64 merge of the same parts: O rounded to T, then LSE.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let s = merge_shape(problem);
        let (o, lse) = merge_inputs::<T>(s);
        let (n, h) = (s.rows * s.heads * s.head_dim, s.rows * s.heads);
        let parts: Vec<AttnOutput> = (0..s.parts)
            .map(|p| AttnOutput {
                o: o[p * n..(p + 1) * n]
                    .iter()
                    .map(|v| v.to_f32() as f64)
                    .collect(),
                lse: lse[p * h..(p + 1) * h].iter().map(|&v| v as f64).collect(),
            })
            .collect();
        let want = merge_reference(&parts, s.rows, s.heads, s.head_dim);
        let o = want.o.iter().map(|&x| T::from_f32(x as f32).to_f32());
        o.chain(want.lse.iter().map(|&x| x as f32)).collect()
    }

    /// One rounding of O to T, plus f32 weights and sums (a few ulps of f32).
    fn tolerance(&self, _problem: &Problem) -> f64 {
        tolerance_o(T::SCALAR) / 3.0 + 1e-5
    }

    /// The bf16 instance: a split-KV decode's merge of 4 splits for each batch size (one
    /// query row per sequence) over the model's heads.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR || !model.head_dim.is_multiple_of(4) {
            return Vec::new();
        }
        let (parts, what) = match self.pair {
            true => (2, "shared-prefix decode"),
            false => (4, "split-KV decode"),
        };
        tokens
            .iter()
            .map(|&m| Problem::new(what, vec![parts, m, model.heads, model.head_dim]))
            .collect()
    }

    /// Bytes: the parts' O and LSE read, the merged O and LSE written.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let s = merge_shape(problem);
        let size = std::mem::size_of::<T>();
        let (n, h) = (s.rows * s.heads * s.head_dim, s.rows * s.heads);
        Some(((s.parts + 1) * (n * size + h * 4)) as u64)
    }
}

struct MergeCase<T: Element> {
    def: &'static KernelDef,
    pair: bool,
    shape: MergeShape,
    o_parts: Buffer<T>,
    lse_parts: Buffer<f32>,
    o: Buffer<T>,
    lse: Buffer<f32>,
}

impl<T: Float + Element> Case for MergeCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        if self.pair {
            return self.launch_pair(device, config);
        }
        let parts = (&self.o_parts, &self.lse_parts);
        merge_launch(
            device,
            config,
            self.shape,
            parts,
            (&mut self.o, &mut self.lse),
        )
        .map_err(|e| launch_error(self.def, e))
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut out = download_f32(device, &self.o)?;
        out.extend(device.download(&self.lse)?);
        Ok(out)
    }
}

impl<T: Float + Element> MergeCase<T> {
    /// The stacked parts copied into two buffers each, then the pair merge.
    fn launch_pair(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let s = self.shape;
        let (n, h) = (s.rows * s.heads * s.head_dim, s.rows * s.heads);
        let (o, lse) = (
            device.download(&self.o_parts)?,
            device.download(&self.lse_parts)?,
        );
        let a = (device.upload(&o[..n])?, device.upload(&lse[..h])?);
        let b = (device.upload(&o[n..])?, device.upload(&lse[h..])?);
        merge_pair_launch(
            device,
            config,
            (s.rows, s.heads, s.head_dim),
            (&a.0, &a.1),
            (&b.0, &b.1),
            (&mut self.o, &mut self.lse),
        )
        .map_err(|e| launch_error(self.def, e))
    }
}
