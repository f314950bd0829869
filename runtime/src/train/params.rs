//! The trainable parameters of a Llama-family model, llm.c's way: the f32 master weights,
//! the f32 gradients, the f32 moments ([`optim::State`]) and the compute copy in `T` are each
//! one allocation, laid out by one [`ParamTable`]; a tensor is a named view of each
//! ([`Params::w`], [`Params::grad_mut`], ...). So the optimizer updates every tensor in one
//! launch set and the gradients are zeroed, clipped and refreshed in one pass each. FP8
//! moments stay per tensor (COAT's groups do not cross tensors).
//!
//! The gate and up projections are one fused `[2·intermediate, hidden]` tensor (gate rows
//! first), the layout the SwiGLU kernel reads; checkpoints split them back into
//! `mlp.gate_proj` and `mlp.up_proj`.

use crate::model::{ModelConfig, ModelWeights};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::ops::Range;
use warpforge_dsl::backend::{BufferView, BufferViewMut, DeviceError};
use warpforge_dsl::{Buffer, Device};
use warpforge_kernels::act::host as act;
use warpforge_kernels::fp8::coat::host::Fp8Moments;
use warpforge_kernels::optim::host::{ParamTable, State};

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

/// One parameter tensor: where it lies in the flat buffers.
pub struct Param {
    pub role: Role,
    pub shape: Vec<usize>,
    /// Weight decay and LAMB's trust ratio apply (not to norm weights, as the reference
    /// implementations exclude biases and norms).
    pub adapt: bool,
    /// Its first element in the flat buffers (a multiple of 8: views start on 16 bytes).
    pub offset: usize,
    /// The moments in FP8 (COAT's dynamic range expansion) instead of its part of
    /// `state.m`/`state.v` (then 4-element placeholders).
    pub fp8: Option<Fp8Moments>,
}

impl Param {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its elements in the flat buffers.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Every parameter tensor, in a fixed order (the checkpoint's and the optimizer's), over
/// one allocation per part.
pub struct Params<T: TrainFloat> {
    pub tensors: Vec<Param>,
    /// The layout of the flat buffers (the optimizer's multi-tensor table).
    pub table: ParamTable,
    /// Master weights (f32), gradients (f32; LAMB overwrites them with the update
    /// direction) and the two moments, each over `table.len` elements.
    pub state: State,
    /// The weights in the compute type, refreshed from the masters after each update.
    pub compute: Buffer<T>,
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
        if let Some((role, ..)) = host.iter().find(|(_, _, v)| v.len() % 8 != 0) {
            return Err(ParamsError::Weights(format!(
                "{role:?}: tensors of a multiple of 8 elements only (views of the flat \
                 buffers start on 16 bytes)"
            )));
        }
        let lens: Vec<(usize, bool)> = host
            .iter()
            .map(|(role, _, v)| (v.len(), !is_norm(*role)))
            .collect();
        let table = ParamTable::new(&lens).map_err(|e| ParamsError::Weights(e.to_string()))?;
        let mut flat = vec![0f32; table.len.max(4)];
        let mut tensors = Vec::with_capacity(host.len());
        for ((role, shape, values), entry) in host.into_iter().zip(&table.tensors) {
            flat[entry.offset..entry.offset + values.len()].copy_from_slice(&values);
            tensors.push(Param {
                role,
                shape,
                adapt: entry.adapt,
                offset: entry.offset,
                fp8: match fp8_moments {
                    true => Some(Fp8Moments::zeros(device, values.len())?),
                    false => None,
                },
            });
        }
        let moment_len = if fp8_moments { 4 } else { flat.len() };
        let mut params = Params {
            tensors,
            state: State {
                w: device.upload(&flat)?,
                grad: device.zeros(flat.len())?,
                m: device.zeros(moment_len)?,
                v: device.zeros(moment_len)?,
            },
            compute: device.zeros(flat.len())?,
            table,
            zero4: device.zeros(4)?,
        };
        params.refresh_compute(device)?;
        Ok(params)
    }

    /// The compute copies from the masters: `T(w)`, one rounding, in one launch.
    pub fn refresh_compute(&mut self, device: &Device) -> Result<(), ParamsError> {
        let config = (T::BIAS_ADD)().space.default_config();
        let n = self.state.w.len();
        act::launch_bias_add(
            device,
            &config,
            (&self.state.w, &self.zero4),
            &mut self.compute,
            (n / 4, 4),
        )?;
        Ok(())
    }

    /// Every gradient set to zero (a step's start).
    pub fn zero_grads(&mut self, device: &Device) -> Result<(), ParamsError> {
        self.state.grad = device.zeros(self.state.w.len())?;
        Ok(())
    }

    pub fn get(&self, role: Role) -> &Param {
        self.tensors
            .iter()
            .find(|p| p.role == role)
            .unwrap_or_else(|| panic!("no parameter {role:?} (the layout lists every role)"))
    }

    /// The compute copy of `role`.
    pub fn w(&self, role: Role) -> Result<BufferView<'_, T>, DeviceError> {
        self.compute.view(self.get(role).range())
    }

    /// The f32 master weights of `role`.
    pub fn master(&self, role: Role) -> Result<BufferView<'_, f32>, DeviceError> {
        self.state.w.view(self.get(role).range())
    }

    /// The f32 gradient of `role`.
    pub fn grad(&self, role: Role) -> Result<BufferView<'_, f32>, DeviceError> {
        self.state.grad.view(self.get(role).range())
    }

    /// The f32 gradient of `role`, writable.
    pub fn grad_mut(&mut self, role: Role) -> Result<BufferViewMut<'_, f32>, DeviceError> {
        let range = self.get(role).range();
        self.state.grad.view_mut(range)
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
        let fp8: usize = self
            .tensors
            .iter()
            .filter_map(|p| p.fp8.as_ref().map(Fp8Moments::bytes))
            .sum();
        (
            b(&self.state.w),
            self.compute.len() * T::SCALAR.size_bytes(),
            b(&self.state.grad),
            b(&self.state.m) + b(&self.state.v) + fp8,
        )
    }
}
