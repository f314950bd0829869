//! The attention backward as library kernels: `flash_attn_bwd_dot_{T}` (D), and the two
//! tunable kernels `flash_attn_bwd_dkdv_{T}` (output dK, dV) and `flash_attn_bwd_dq_{T}`
//! (output dQ); each case runs the D pass first (its default config), then its own kernel
//! with the candidate config.
//!
//! Problems encode an [`AttnShape`] as the forward's do, plus the window: `[window,
//! heads, kv_heads, head_dim, causal, sequences, q_lens.., k_lens..]` (window 0: none).

use super::backward_host::{
    backward_launch_configs, bwd_def_of, bwd_default_configs, validate_backward, AttnBwdBuffers,
    BwdInputs, BwdKernel,
};
use super::backward_reference::backward_reference;
use super::family::launch_error;
use super::reference::{AttnError, AttnShape};
use crate::check::{Problem, Tolerance};
use crate::family::{download_f32, register, Case, Kernel, LibraryKernel, ModelShape};
use half::{bf16, f16};
use std::marker::PhantomData;
use warpforge_dsl::prelude::Float;
use warpforge_dsl::{Config, Device, Element, Error, KernelDef};

/// D, dK/dV and dQ for f16 and bf16.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for kernel in [BwdKernel::Dot, BwdKernel::DkDv, BwdKernel::Dq] {
        out.push(register(Backward::<f16>(kernel, PhantomData)));
        out.push(register(Backward::<bf16>(kernel, PhantomData)));
    }
    out
}

/// A backward problem: its shape and sliding window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BwdProblem {
    pub shape: AttnShape,
    pub window: Option<u32>,
}

impl BwdProblem {
    pub fn to_problem(&self) -> Problem {
        let inner = self.shape.to_problem();
        let w = self.window.unwrap_or(0);
        let name = match self.window {
            Some(w) => format!("{}-window{w}", inner.name),
            None => inner.name,
        };
        let mut dims = vec![w as usize];
        dims.extend(inner.dims);
        Problem::new(name, dims)
    }

    pub fn from_problem(p: &Problem) -> Result<BwdProblem, AttnError> {
        let (&w, rest) = p
            .dims
            .split_first()
            .ok_or_else(|| AttnError::Shape(format!("problem {}: no dims", p.name)))?;
        let shape = AttnShape::from_problem(&Problem::new(p.name.clone(), rest.to_vec()))?;
        Ok(BwdProblem {
            shape,
            window: (w > 0).then_some(w as u32),
        })
    }
}

/// Check problems: ragged varlen (1, not tile multiples), causal and not, k_len < q_len
/// (fully masked rows) and > q_len, a window, GQA 1, 2 and 4, head dims 32 to 128.
pub fn backward_problems() -> Vec<Problem> {
    let p = |w: u32, h, kv, d, causal, q: &[usize], k: &[usize]| {
        BwdProblem {
            shape: AttnShape {
                heads: h,
                kv_heads: kv,
                head_dim: d,
                causal,
                q_lens: q.to_vec(),
                k_lens: k.to_vec(),
            },
            window: (w > 0).then_some(w),
        }
        .to_problem()
    };
    vec![
        p(0, 2, 1, 32, true, &[1, 19, 40], &[1, 19, 40]),
        p(0, 4, 1, 64, false, &[7, 33], &[40, 5]),
        p(9, 2, 2, 64, true, &[30, 5], &[45, 3]),
        p(0, 2, 1, 128, true, &[21], &[21]),
        p(0, 2, 2, 96, false, &[17], &[9]),
    ]
}

/// Allowed error of a gradient relative to max(1, |want|): 4 roundings to T (u = 2^-11 for
/// f16, 2^-8 for bf16). P and dS are rounded to T as MMA operands (relative u on every
/// term of dV, dK, dQ), O to T before D = rowsum(dO∘O) (u on every term of D, carried
/// into dS), the result once (u/2); f32 accumulation adds ≪ u. Measured on the test
/// shapes: ≤ 1.2u (tests/attention_backward.rs prints them).
pub fn tolerance_grad(t: warpforge_dsl::ScalarType) -> f64 {
    let u = if t == bf16::SCALAR {
        2f64.powi(-8)
    } else {
        2f64.powi(-11)
    };
    4.0 * u
}

/// One of the three backward kernels for element type T.
struct Backward<T>(BwdKernel, PhantomData<fn() -> T>);

impl<T: Float + Element> LibraryKernel for Backward<T> {
    fn def(&self) -> &'static KernelDef {
        bwd_def_of(self.0, T::SCALAR).expect("registered for f16 and bf16 only")
    }

    fn summary(&self) -> &'static str {
        match self.0 {
            BwdKernel::Dot => "flash attention backward, D = rowsum(dO∘O) (one warp a row)",
            BwdKernel::DkDv => "flash attention backward dK/dV (varlen, causal/window, GQA; K/V tile resident, Q/dO streamed by cp.async, ldmatrix + mma.sync, deterministic)",
            BwdKernel::Dq => "flash attention backward dQ (one block per query tile, K/V streamed by cp.async, ldmatrix + mma.sync, deterministic: no atomics)",
        }
    }

    fn problems(&self) -> Vec<Problem> {
        backward_problems()
    }

    fn rank(&self) -> usize {
        6
    }

    fn validate(&self, problem: &Problem) -> Result<(), String> {
        let p = BwdProblem::from_problem(problem).map_err(|e| e.to_string())?;
        validate_backward(&p.shape).map_err(|e| e.to_string())
    }

    fn case(&self, device: &Device, problem: &Problem) -> Result<Box<dyn Case>, Error> {
        let def = self.def();
        let p = BwdProblem::from_problem(problem).map_err(|e| launch_error(def, e))?;
        let scale = p.shape.default_scale();
        let x = BwdInputs::<T>::new(&p.shape, p.window, scale);
        let bufs =
            AttnBwdBuffers::upload(device, &p.shape, &x).map_err(|e| launch_error(def, e))?;
        Ok(Box::new(BwdCase {
            def,
            kernel: self.0,
            problem: p,
            bufs,
        }))
    }

    /// D in f32 (Dot); dK then dV (DkDv); dQ (Dq) — the f64 reference rounded to T.
    fn expected(&self, problem: &Problem) -> Vec<f32> {
        let Ok(p) = BwdProblem::from_problem(problem) else {
            return Vec::new();
        };
        let scale = p.shape.default_scale();
        let x = BwdInputs::<T>::new(&p.shape, p.window, scale);
        let round = |v: &[f64]| {
            v.iter()
                .map(|&x| T::from_f32(x as f32).to_f32())
                .collect::<Vec<_>>()
        };
        match self.0 {
            BwdKernel::Dot => dot_reference(&p.shape, &x),
            _ => {
                let g = backward_reference(&p.shape, p.window, (&x.q, &x.k, &x.v), &x.d_o, scale);
                match self.0 {
                    BwdKernel::DkDv => [round(&g.dk), round(&g.dv)].concat(),
                    _ => round(&g.dq),
                }
            }
        }
    }

    /// D: f32 sums of d exact products (≈ d·2^-24); gradients: [`tolerance_grad`].
    fn tolerance(&self, _problem: &Problem) -> f64 {
        match self.0 {
            BwdKernel::Dot => 1e-5,
            _ => tolerance_grad(T::SCALAR),
        }
    }

    fn config_tolerance(&self, _problem: &Problem) -> Tolerance {
        let t = self.tolerance(_problem);
        Tolerance { rel: t, abs: t }
    }

    /// Heads, KV heads, head dim, the mask as the kernels code it (0 full, 1 causal, 1 + w
    /// a window: the tuning cache keys at most 6 dims), total query rows and keys.
    fn tune_dims(&self, problem: &Problem) -> Vec<usize> {
        match BwdProblem::from_problem(problem) {
            Ok(p) => vec![
                p.shape.heads,
                p.shape.kv_heads,
                p.shape.head_dim,
                // An invalid window has no code; it cannot launch either.
                super::host::mask_code(p.shape.causal, p.window).unwrap_or(u32::MAX) as usize,
                p.shape.total_q(),
                p.shape.total_k(),
            ],
            Err(_) => problem.dims.clone(),
        }
    }

    fn admits(&self, config: &Config, problem: &Problem) -> bool {
        problem.dims.get(3).map(|&d| d as i64) == config.get("HEAD_DIM")
    }

    /// The bf16 instances: a causal training sequence of each batch size (as tokens) over
    /// the model's heads, when the backward has its head dim.
    fn model_problems(&self, model: &ModelShape, tokens: &[usize]) -> Vec<Problem> {
        if T::SCALAR != bf16::SCALAR || !super::BWD_HEAD_DIMS.contains(&model.head_dim) {
            return Vec::new();
        }
        tokens
            .iter()
            .map(|&m| {
                let shape =
                    AttnShape::square(model.heads, model.kv_heads, model.head_dim, true, &[m]);
                let p = BwdProblem {
                    shape,
                    window: None,
                };
                Problem::new("training backward", p.to_problem().dims)
            })
            .collect()
    }
}

/// D = Σ dO∘O per (head, row) in f64 from the T inputs, as f32, `[heads, total_q]`.
fn dot_reference<T: Float>(shape: &AttnShape, x: &BwdInputs<T>) -> Vec<f32> {
    let (h_n, d, total_q) = (shape.heads, shape.head_dim, shape.total_q());
    let mut out = vec![0f32; h_n * total_q];
    for row in 0..total_q {
        for h in 0..h_n {
            let at = (row * h_n + h) * d;
            let dot: f64 = (0..d)
                .map(|c| x.d_o[at + c].to_f32() as f64 * x.o[at + c].to_f32() as f64)
                .sum();
            out[h * total_q + row] = dot as f32;
        }
    }
    out
}

struct BwdCase<T: Element> {
    def: &'static KernelDef,
    kernel: BwdKernel,
    problem: BwdProblem,
    bufs: AttnBwdBuffers<T>,
}

impl<T: Float + Element> Case for BwdCase<T> {
    /// The whole backward with this kernel's candidate config and the others' defaults.
    fn launch(&mut self, device: &Device, config: &Config) -> Result<(), Error> {
        let shape = &self.problem.shape;
        let mut configs = bwd_default_configs(shape.head_dim);
        match self.kernel {
            BwdKernel::Dot => configs.dot = config.clone(),
            BwdKernel::DkDv => configs.dkdv = config.clone(),
            BwdKernel::Dq => configs.dq = config.clone(),
        }
        let scale = shape.default_scale();
        let args = self.bufs.args(self.problem.window);
        backward_launch_configs(device, &configs, shape, scale, args)
            .map_err(|e| launch_error(self.def, e))
    }

    fn output(&self, device: &Device, _config: &Config) -> Result<Vec<f32>, Error> {
        Ok(match self.kernel {
            BwdKernel::Dot => device.download(&self.bufs.scratch)?,
            BwdKernel::DkDv => {
                let mut out = download_f32(device, &self.bufs.dk)?;
                out.extend(download_f32(device, &self.bufs.dv)?);
                out
            }
            BwdKernel::Dq => download_f32(device, &self.bufs.dq)?,
        })
    }
}
