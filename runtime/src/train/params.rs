//! The trainable parameters of a Llama-family model: for each tensor, its Hugging Face
//! name, shape and optimizer group, the f32 master weights and gradients with the
//! optimizer moments ([`optim::State`]), and the compute copy in `T` the kernels read.
//!
//! The gate and up projections are one fused `[2·intermediate, hidden]` tensor (gate rows
//! first), the layout the SwiGLU kernel reads; checkpoints split them back into
//! `mlp.gate_proj` and `mlp.up_proj`.

use crate::model::{ModelConfig, ModelWeights};
use rand::{rngs::StdRng, Rng, SeedableRng};
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::{Buffer, Device};
use warpforge_kernels::act::host as act;
use warpforge_kernels::fp8::coat::host::Fp8Moments;
use warpforge_kernels::optim::host::State;

use super::TrainFloat;

/// What a tensor is, for the step's indexing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Embed,
    FinalNorm,
    LmHead,
    InputNorm(usize),
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    PostNorm(usize),
    GateUp(usize),
    Down(usize),
}

/// One parameter tensor.
pub struct Param<T: TrainFloat> {
    pub role: Role,
    pub shape: Vec<usize>,
    /// Weight decay and LAMB's trust ratio apply (not to norm weights, as the reference
    /// implementations exclude biases and norms).
    pub adapt: bool,
    /// Master weights (f32), gradient (f32; LAMB overwrites it with the update direction)
    /// and the two moments.
    pub state: State,
    /// The weights in the compute type, refreshed from the master after each update.
    pub compute: Buffer<T>,
    /// The moments in FP8 (COAT's dynamic range expansion) instead of `state.m`/`state.v`
    /// (then 4-element placeholders).
    pub fp8: Option<Fp8Moments>,
}

impl<T: TrainFloat> Param<T> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every parameter tensor, in a fixed order (the checkpoint's and the optimizer's).
pub struct Params<T: TrainFloat> {
    pub tensors: Vec<Param<T>>,
    /// A zero bias of 4 values: the compute copies are refreshed by `bias_add` with it
    /// (`T(x + 0) = T(x)`, one rounding).
    zero4: Buffer<T>,
}

/// The tensors of `config` with their shapes (fused gate/up).
pub fn layout(config: &ModelConfig) -> Vec<(Role, Vec<usize>)> {
    let (h, q, kv, m) = (
        config.hidden_size,
        config.q_dim(),
        config.kv_dim(),
        config.intermediate_size,
    );
    let mut list = vec![(Role::Embed, vec![config.vocab_size, h])];
    for l in 0..config.num_hidden_layers {
        list.extend([
            (Role::InputNorm(l), vec![h]),
            (Role::Q(l), vec![q, h]),
            (Role::K(l), vec![kv, h]),
            (Role::V(l), vec![kv, h]),
            (Role::O(l), vec![h, q]),
            (Role::PostNorm(l), vec![h]),
            (Role::GateUp(l), vec![2 * m, h]),
            (Role::Down(l), vec![h, m]),
        ]);
    }
    list.push((Role::FinalNorm, vec![h]));
    if !config.tie_word_embeddings {
        list.push((Role::LmHead, vec![config.vocab_size, h]));
    }
    list
}

/// The Hugging Face tensor names `role` is stored under (two for the fused gate/up).
pub fn hf_names(role: Role) -> Vec<String> {
    let p = |l: usize, s: &str| format!("model.layers.{l}.{s}");
    match role {
        Role::Embed => vec!["model.embed_tokens.weight".into()],
        Role::FinalNorm => vec!["model.norm.weight".into()],
        Role::LmHead => vec!["lm_head.weight".into()],
        Role::InputNorm(l) => vec![p(l, "input_layernorm.weight")],
        Role::Q(l) => vec![p(l, "self_attn.q_proj.weight")],
        Role::K(l) => vec![p(l, "self_attn.k_proj.weight")],
        Role::V(l) => vec![p(l, "self_attn.v_proj.weight")],
        Role::O(l) => vec![p(l, "self_attn.o_proj.weight")],
        Role::PostNorm(l) => vec![p(l, "post_attention_layernorm.weight")],
        Role::GateUp(l) => vec![p(l, "mlp.gate_proj.weight"), p(l, "mlp.up_proj.weight")],
        Role::Down(l) => vec![p(l, "mlp.down_proj.weight")],
    }
}

/// A standard normal sample (Box-Muller on two uniforms in (0, 1]).
fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn is_norm(role: Role) -> bool {
    matches!(
        role,
        Role::FinalNorm | Role::InputNorm(_) | Role::PostNorm(_)
    )
}

/// Why parameters cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Kernel(#[from] warpforge_dsl::Error),
    #[error("{0}")]
    Weights(String),
}

impl<T: TrainFloat> Params<T> {
    /// Hugging Face's initialisation: linear and embedding weights N(0, 0.02²) from a
    /// generator seeded by `seed`, norm weights 1.
    pub fn init(
        device: &Device,
        config: &ModelConfig,
        seed: u64,
        fp8_moments: bool,
    ) -> Result<Self, ParamsError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let host = layout(config)
            .into_iter()
            .map(|(role, shape)| {
                let n: usize = shape.iter().product();
                let values = match is_norm(role) {
                    true => vec![1.0; n],
                    false => (0..n).map(|_| 0.02 * standard_normal(&mut rng)).collect(),
                };
                (role, shape, values)
            })
            .collect();
        Params::from_host(device, host, fp8_moments)
    }

    /// The weights of a Hugging Face model directory (any float dtype), as f32 masters.
    pub fn load(
        device: &Device,
        config: &ModelConfig,
        weights: &ModelWeights,
        fp8_moments: bool,
    ) -> Result<Self, ParamsError> {
        let mut host = vec![];
        for (role, shape) in layout(config) {
            let mut values = vec![];
            for name in hf_names(role) {
                let t = weights
                    .get(&name)
                    .ok_or_else(|| ParamsError::Weights(format!("no tensor {name}")))?;
                values.extend(t.to_f32());
            }
            let want: usize = shape.iter().product();
            if values.len() != want {
                return Err(ParamsError::Weights(format!(
                    "{:?} holds {} values; the config needs {want}",
                    hf_names(role),
                    values.len()
                )));
            }
            host.push((role, shape, values));
        }
        Params::from_host(device, host, fp8_moments)
    }

    /// Uploads f32 masters (moments zero, in f32 or FP8) and makes the compute copies.
    pub fn from_host(
        device: &Device,
        host: Vec<(Role, Vec<usize>, Vec<f32>)>,
        fp8_moments: bool,
    ) -> Result<Self, ParamsError> {
        let mut tensors = Vec::with_capacity(host.len());
        for (role, shape, values) in host {
            let n = values.len();
            let moment_len = if fp8_moments { 4 } else { n };
            tensors.push(Param {
                role,
                shape,
                adapt: !is_norm(role),
                state: State {
                    w: device.upload(&values)?,
                    grad: device.zeros(n)?,
                    m: device.zeros(moment_len)?,
                    v: device.zeros(moment_len)?,
                },
                compute: device.zeros(n)?,
                fp8: match fp8_moments {
                    true => Some(Fp8Moments::zeros(device, n)?),
                    false => None,
                },
            });
        }
        let mut params = Params {
            tensors,
            zero4: device.zeros(4)?,
        };
        params.refresh_compute(device)?;
        Ok(params)
    }

    /// The compute copies from the masters: `T(w)`, one rounding.
    pub fn refresh_compute(&mut self, device: &Device) -> Result<(), ParamsError> {
        let config = (T::BIAS_ADD)().space.default_config();
        for p in &mut self.tensors {
            let n = p.len();
            act::launch_bias_add(
                device,
                &config,
                (&p.state.w, &self.zero4),
                &mut p.compute,
                (n / 4, 4),
            )?;
        }
        Ok(())
    }

    pub fn get(&self, role: Role) -> &Param<T> {
        self.tensors
            .iter()
            .find(|p| p.role == role)
            .unwrap_or_else(|| panic!("no parameter {role:?} (the layout lists every role)"))
    }

    pub fn get_mut(&mut self, role: Role) -> &mut Param<T> {
        self.tensors
            .iter_mut()
            .find(|p| p.role == role)
            .unwrap_or_else(|| panic!("no parameter {role:?} (the layout lists every role)"))
    }

    /// The compute copy of `role`.
    pub fn w(&self, role: Role) -> &Buffer<T> {
        &self.get(role).compute
    }

    /// The LM head's weights: the embedding when tied.
    pub fn head_role(&self) -> Role {
        match self.tensors.iter().any(|p| p.role == Role::LmHead) {
            true => Role::LmHead,
            false => Role::Embed,
        }
    }

    /// Parameters in all.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(Param::len).sum()
    }

    /// Bytes of each part as allocated: (f32 masters, compute copies, gradients, moments).
    pub fn bytes(&self) -> (usize, usize, usize, usize) {
        let b = |buf: &Buffer<f32>| buf.len() * 4;
        let mut sums = (0, 0, 0, 0);
        for p in &self.tensors {
            sums.0 += b(&p.state.w);
            sums.1 += p.compute.len() * T::SCALAR.size_bytes();
            sums.2 += b(&p.state.grad);
            sums.3 += match &p.fp8 {
                Some(q) => q.bytes(),
                None => b(&p.state.m) + b(&p.state.v),
            };
        }
        sums
    }
}
