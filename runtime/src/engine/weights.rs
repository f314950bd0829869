//! A Llama-family model's weights on a device, in the layouts the kernels take: q/k/v rows
//! and o columns in the padded head layout ([`HeadLayout`]), gate and up fused into one
//! `[2·intermediate, hidden]` matrix (the SwiGLU kernel's input), the cos/sin table of the
//! positions served.

use super::layout::HeadLayout;
use crate::model::{expected_tensors, ModelConfig, ModelWeights, RopeScaling, WeightsError};
use std::collections::HashMap;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::{bf16, f16, Float};
use warpforge_dsl::{Buffer, Device, Element};
use warpforge_kernels::act::host::ActFloat;
use warpforge_kernels::norm::host::NormFloat;
use warpforge_kernels::rope::{self, RopeFloat};

/// The element types the model runs in: the attention kernels take f16 and bf16.
pub trait ModelFloat: Float + Element + ActFloat + NormFloat + RopeFloat + Default {
    /// A host tensor converted to this type (exactly when it already is one).
    fn convert(view: &crate::model::TensorView) -> Vec<Self>;
}

impl ModelFloat for f16 {
    fn convert(view: &crate::model::TensorView) -> Vec<f16> {
        view.to_f16()
    }
}

impl ModelFloat for bf16 {
    fn convert(view: &crate::model::TensorView) -> Vec<bf16> {
        view.to_bf16()
    }
}

/// Why a model cannot go onto the device.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{0}")]
    Unsupported(String),
}

/// `y = x·Wᵀ (+ b)`: `w` is `[out, inp]` row-major (PyTorch's Linear layout).
pub struct Linear<T: Element> {
    pub w: Buffer<T>,
    pub bias: Option<Buffer<T>>,
    pub out: usize,
    pub inp: usize,
}

pub struct Layer<T: Element> {
    pub input_norm: Buffer<T>,
    pub q: Linear<T>,
    pub k: Linear<T>,
    pub v: Linear<T>,
    pub o: Linear<T>,
    pub post_norm: Buffer<T>,
    /// gate rows then up rows: `[2·intermediate, hidden]`.
    pub gate_up: Linear<T>,
    pub down: Linear<T>,
}

/// Every weight of the model on one device.
pub struct DeviceWeights<T: Element> {
    pub embed: Buffer<T>,
    pub layers: Vec<Layer<T>>,
    pub norm: Buffer<T>,
    /// `[vocab_padded, hidden]`; `None` when tied to `embed` and the vocabulary needs no pad.
    pub lm_head: Option<Linear<T>>,
    /// The vocabulary rounded up to a multiple of 8 (the GEMM's 16-byte rows).
    pub vocab_padded: usize,
    pub head: HeadLayout,
    /// `[rope_rows, head.padded_rotary]` f32 cos/sin.
    pub rope_table: Buffer<f32>,
    pub rope_rows: usize,
}

/// The kernels' RoPE for a config (its scaling converted one to one).
pub fn kernel_rope(config: &ModelConfig) -> rope::Rope {
    let scaling = match config.rope.scaling {
        RopeScaling::Default => rope::RopeScaling::Default,
        RopeScaling::Linear { factor } => rope::RopeScaling::Linear { factor },
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => rope::RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: original_max_position_embeddings as u64,
        },
    };
    rope::Rope {
        theta: config.rope.theta,
        rotary_dim: config.head_dim,
        scaling,
    }
}

/// Checks what the kernels need of a config's dims.
pub fn check_config(config: &ModelConfig) -> Result<HeadLayout, LoadError> {
    let bad = |m: String| Err(LoadError::Unsupported(m));
    for (name, v) in [
        ("hidden_size", config.hidden_size),
        ("intermediate_size", config.intermediate_size),
    ] {
        if v == 0 || v % 8 != 0 {
            return bad(format!(
                "{name} = {v}: the kernels need a positive multiple of 8 (16-byte rows)"
            ));
        }
    }
    HeadLayout::new(config.head_dim, config.head_dim).map_err(LoadError::Unsupported)
}

impl<T: ModelFloat> DeviceWeights<T> {
    /// Loads, converts, pads and uploads every tensor; `rope_rows` positions get a cos/sin
    /// row (the longest sequence served).
    pub fn load(
        device: &Device,
        config: &ModelConfig,
        weights: &ModelWeights,
        rope_rows: usize,
    ) -> Result<Self, LoadError> {
        let head = check_config(config)?;
        let shapes: HashMap<String, Vec<usize>> = expected_tensors(config).into_iter().collect();
        let host = |name: &str| -> Result<Vec<T>, LoadError> {
            Ok(T::convert(&weights.tensor(name, &shapes[name])?))
        };
        let up = |data: &[T]| device.upload(data).map_err(LoadError::from);
        let (hidden, heads, kv_heads) = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
        );
        // q/k/v: rows per head into the padded layout; o: columns.
        let projection = |name: &str, heads: usize, bias: bool| -> Result<Linear<T>, LoadError> {
            let w = head.pad_rows(&host(&format!("{name}.weight"))?, heads, hidden);
            let bias = match bias {
                true => Some(up(&head.pad_rows(
                    &host(&format!("{name}.bias"))?,
                    heads,
                    1,
                ))?),
                false => None,
            };
            Ok(Linear {
                w: up(&w)?,
                bias,
                out: heads * head.padded,
                inp: hidden,
            })
        };
        let dense = |name: &str, out: usize, inp: usize| -> Result<Linear<T>, LoadError> {
            Ok(Linear {
                w: up(&host(&format!("{name}.weight"))?)?,
                bias: None,
                out,
                inp,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let attn = |proj: &str| format!("{p}.self_attn.{proj}");
            let o_w = head.pad_cols(&host(&format!("{}.weight", attn("o_proj")))?, hidden, heads);
            let o_bias = match config.o_bias {
                true => Some(up(&host(&format!("{}.bias", attn("o_proj")))?)?),
                false => None,
            };
            let mut gate_up = host(&format!("{p}.mlp.gate_proj.weight"))?;
            gate_up.extend(host(&format!("{p}.mlp.up_proj.weight"))?);
            let inter = config.intermediate_size;
            layers.push(Layer {
                input_norm: up(&host(&format!("{p}.input_layernorm.weight"))?)?,
                q: projection(&attn("q_proj"), heads, config.qkv_bias)?,
                k: projection(&attn("k_proj"), kv_heads, config.qkv_bias)?,
                v: projection(&attn("v_proj"), kv_heads, config.qkv_bias)?,
                o: Linear {
                    w: up(&o_w)?,
                    bias: o_bias,
                    out: hidden,
                    inp: heads * head.padded,
                },
                post_norm: up(&host(&format!("{p}.post_attention_layernorm.weight"))?)?,
                gate_up: Linear {
                    w: up(&gate_up)?,
                    bias: None,
                    out: 2 * inter,
                    inp: hidden,
                },
                down: dense(&format!("{p}.mlp.down_proj"), hidden, inter)?,
            });
        }
        let vocab = config.vocab_size;
        let vocab_padded = vocab.div_ceil(8) * 8;
        let embed = host("model.embed_tokens.weight")?;
        let lm_head = match (config.tie_word_embeddings, vocab_padded == vocab) {
            (true, true) => None,
            (tied, _) => {
                let mut w = match tied {
                    true => embed.clone(),
                    false => host("lm_head.weight")?,
                };
                w.resize(vocab_padded * hidden, T::default());
                Some(Linear {
                    w: up(&w)?,
                    bias: None,
                    out: vocab_padded,
                    inp: hidden,
                })
            }
        };
        let table = kernel_rope(config).table(rope_rows);
        Ok(DeviceWeights {
            embed: up(&embed)?,
            layers,
            norm: up(&host("model.norm.weight")?)?,
            lm_head,
            vocab_padded,
            head,
            rope_table: device.upload(&head.pad_table(&table, rope_rows))?,
            rope_rows,
        })
    }
}
