//! Decode attention as a library kernel (`flash_attn_decode_{f16,bf16}`, with its combine
//! when split).
//!
//! A problem is `[splits, page_size, heads, kv_heads, head_dim, causal, sequences,
//! q_lens.., k_lens..]`: the split count of the launch, the page size of the paged KV
//! cache (0: contiguous K/V), then an [`AttnShape`] as the forward encodes it. The head dim
//! is the tunable `HEAD_DIM`, fixed by the problem.

use super::decode_host::{
    decode_def_of, decode_default_config, decode_launch, decode_splits, row_tiles, validate_decode,
    DecodeWorkspace,
};
use super::family::launch_error;
use super::host::{config_for, expected, inputs, paginate, tolerance_o, AttnBuffers};
use super::reference::{AttnError, AttnShape};
use super::HEAD_DIMS;
use crate::check::{Problem, Tolerance};
use crate::family::{download_f32, Case, LibraryKernel, ModelShape};
use std::marker::PhantomData;
use warpforge_dsl::prelude::Float;
use warpforge_dsl::{Config, Device, Element, Error, KernelDef};

/// A decode problem: its split count, page size (0 = contiguous) and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeProblem {
    pub splits: usize,
    pub page_size: usize,
    pub shape: AttnShape,
}

impl DecodeProblem {
    pub fn to_problem(&self) -> Problem {
        let inner = self.shape.to_problem();
        let layout = match self.page_size {
            0 => "contiguous".to_string(),
            p => format!("page{p}"),
        };
        let s = &self.shape;
        let uniform = |v: &[usize]| v.windows(2).all(|w| w[0] == w[1]);
        // A batch of equal sequences (model shapes: thousands) is named by its size.
        let name = if s.sequences() > 4 && uniform(&s.q_lens) && uniform(&s.k_lens) {
            format!(
                "h{}/{}-d{}{}-{}x(q{}-k{})",
                s.heads,
                s.kv_heads,
                s.head_dim,
                if s.causal { "-causal" } else { "" },
                s.sequences(),
                s.q_lens[0],
                s.k_lens[0]
            )
        } else {
            inner.name
        };
        let mut dims = vec![self.splits, self.page_size];
        dims.extend(inner.dims);
        Problem::new(format!("{name}-{layout}-split{}", self.splits), dims)
    }

    pub fn from_problem(p: &Problem) -> Result<DecodeProblem, AttnError> {
        if p.dims.len() < 2 {
            return Err(AttnError::Shape(format!(
                "problem {}: too few dims",
                p.name
            )));
        }
        let inner = Problem::new(p.name.clone(), p.dims[2..].to_vec());
        Ok(DecodeProblem {
            splits: p.dims[0],
            page_size: p.dims[1],
            shape: AttnShape::from_problem(&inner)?,
        })
    }

    /// The forward's problem of the same shape (its reference and inputs).
    fn attn_problem(&self) -> Problem {
        self.shape.to_problem()
    }
}

/// Check problems: ragged lengths 1, odd and not a page or tile multiple, an empty key
/// sequence (O = 0, LSE = −∞), causal with more queries than keys (a row that sees
/// nothing), GQA ratios 1, 3 and 8 (8 × 3 tokens = 24 packed rows: two row tiles), head
/// dims 64 and 128, pages of 16 and 7 rows and contiguous K/V, 1 to 4 splits.
pub fn decode_problems() -> Vec<Problem> {
    let p = |splits, page_size, heads, kv_heads, head_dim, causal, q: &[usize], k: &[usize]| {
        DecodeProblem {
            splits,
            page_size,
            shape: AttnShape {
                heads,
                kv_heads,
                head_dim,
                causal,
                q_lens: q.to_vec(),
                k_lens: k.to_vec(),
            },
        }
        .to_problem()
    };
    vec![
        p(1, 16, 2, 2, 64, false, &[1, 1, 1], &[1, 37, 0]),
        p(3, 7, 3, 1, 64, true, &[2, 1, 3], &[50, 17, 2]),
        p(2, 16, 8, 1, 128, true, &[2], &[70]),
        p(4, 0, 8, 1, 64, true, &[3, 1], &[45, 0]),
        p(1, 0, 4, 2, 128, false, &[1, 1], &[130, 9]),
    ]
}

/// `flash_attn_decode_{T}`.
pub struct Decode<T>(pub PhantomData<fn() -> T>);

impl<T: Float + Element> LibraryKernel for Decode<T> {
    fn def(&self) -> &'static KernelDef {
        decode_def_of(T::SCALAR).expect("registered for f16 and bf16 only")
    }

    fn summary(&self) -> &'static str {
        "decode attention, paged KV, split-KV in one launch + LSE combine (GQA heads packed into mma rows; cp.async + ldmatrix + mma.sync)"
    }

    fn problems(&self) -> Vec<Problem> {
        decode_problems()
    }

    /// At least 7 (the fixed part of the encoding); [`LibraryKernel::validate`] checks the
    /// rest.
    fn rank(&self) -> usize {
        7
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        let d = DecodeProblem::from_problem(problem).map_err(|e| e.to_string())?;
        validate_decode(&d.shape, d.splits).map_err(|e| e.to_string())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let def = self.def();
        let d = DecodeProblem::from_problem(problem).map_err(|e| launch_error(def, e))?;
        let (q, k, v) = inputs::<T>(&d.shape);
        let bufs = if d.page_size == 0 {
            AttnBuffers::upload(device, &d.shape, &q, &k, &v)
        } else {
            let (kc, vc, table, per_seq) = paginate(&d.shape, (&k, &v), d.page_size, 5);
            AttnBuffers::upload_paged(
                device,
                &d.shape,
                &q,
                (&kc, &vc),
                &table,
                d.page_size,
                per_seq,
            )
        }
        .map_err(|e| launch_error(def, e))?;
        let ws =
            DecodeWorkspace::new(device, &d.shape, d.splits).map_err(|e| launch_error(def, e))?;
        Ok(Box::new(DecodeCase {
            def,
            shape: d.shape,
            bufs,
            ws,
        }))
    }

    /// The forward's f64 reference on the same inputs: O rounded to T, then LSE.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        DecodeProblem::from_problem(problem)
            .and_then(|d| expected::<T>(&d.attn_problem()))
            .unwrap_or_default()
    }

    /// 3 roundings to T, as the forward ([`tolerance_o`]): P rounded to T before P·V, O
    /// rounded once (the split partials and the cross-warp and combine merges stay in f32,
    /// a few f32 ulps), the reference rounded once.
    fn tolerance(&self, _problem: &Problem) -> f64 {
        tolerance_o(T::SCALAR)
    }

    /// Tile sizes and split counts change where the running max rebases P before it is
    /// rounded to T.
    fn config_tolerance(&self, _problem: &Problem) -> Tolerance {
        let t = tolerance_o(T::SCALAR);
        Tolerance { rel: t, abs: t }
    }

    /// Heads, KV heads, head dim, sequences, total keys, splits.
    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        match DecodeProblem::from_problem(problem) {
            Ok(d) => vec![
                d.shape.heads,
                d.shape.kv_heads,
                d.shape.head_dim,
                d.shape.sequences(),
                d.shape.total_k(),
                d.splits,
            ],
            Err(_) => problem.dims.clone(),
        }
    }

    fn admits(&self, config: &Config, problem: &Problem) -> bool {
        problem.dims.get(4).map(|&d| d as i64) == config.get("HEAD_DIM")
    }

    /// The bytes decode must move: K and V once (the bound), Q read, O and LSE written.
    /// Split partials (their write and the combine's read) are overhead, not counted.
    fn bytes(&self, problem: &Problem) -> Option<u64> {
        let d = DecodeProblem::from_problem(problem).ok()?;
        let s = &d.shape;
        let size = std::mem::size_of::<T>();
        let kv = 2 * s.total_k() * s.kv_heads * s.head_dim * size;
        let qo = 2 * s.total_q() * s.heads * s.head_dim * size + 4 * s.heads * s.total_q();
        Some((kv + qo) as u64)
    }

    /// The bf16 instance: one decode step of each batch size (sequences of one query token
    /// over 4096 cached keys in pages of 16, fewer past batch 128 so the batch holds at
    /// most 2^19 keys: `AttnShape::validate` keeps keys × heads × d u32-indexable), split as [`decode_splits`] chooses for an H100
    /// (132 SMs).
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != half::bf16::SCALAR || !HEAD_DIMS.contains(&model.head_dim) {
            return Vec::new();
        }
        let block_n = decode_default_config(model.head_dim)
            .get("BLOCK_N")
            .unwrap_or(32) as usize;
        tokens
            .iter()
            .map(|&batch| {
                let context = ((1usize << 19) / batch.max(1)).clamp(16, 4096);
                let shape = AttnShape {
                    heads: model.heads,
                    kv_heads: model.kv_heads,
                    head_dim: model.head_dim,
                    causal: true,
                    q_lens: vec![1; batch],
                    k_lens: vec![context; batch],
                };
                let rt = row_tiles(&shape);
                let splits = decode_splits(&shape.k_lens, model.kv_heads, rt, 132, block_n);
                DecodeProblem {
                    splits,
                    page_size: 16,
                    shape,
                }
                .to_problem()
            })
            .collect()
    }
}

struct DecodeCase<T: Element> {
    def: &'static KernelDef,
    shape: AttnShape,
    bufs: AttnBuffers<T>,
    ws: DecodeWorkspace,
}

impl<T: Float + Element> Case for DecodeCase<T> {
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let config = config_for(config, &self.shape);
        let scale = self.shape.default_scale();
        decode_launch(
            device,
            &config,
            &self.shape,
            &mut self.bufs,
            &mut self.ws,
            scale,
        )
        .map_err(|e| launch_error(self.def, e))
    }

    /// O (`[total_q, heads, d]`), then LSE (`[heads, total_q]`).
    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        let mut out = download_f32(device, &self.bufs.o)?;
        out.extend(device.download(&self.bufs.lse)?);
        Ok(out)
    }
}
