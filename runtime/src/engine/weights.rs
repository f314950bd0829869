//! A Llama-family model's weights on a device, in the layouts the kernels take: q/k/v rows
//! and o columns in the padded head layout ([`HeadLayout`]), gate and up fused into one
//! `[2·intermediate, hidden]` matrix (the SwiGLU kernel's input), the cos/sin table of the
//! positions served.

use super::layout::HeadLayout;
use crate::model::int4::linear as stored_linear;
use crate::model::{
    expected_tensors, Int4Config, Int4LoadError, LinearWeight, ModelConfig, ModelWeights,
    RopeScaling, WeightsError,
};
use std::collections::HashMap;
use warpforge_dsl::backend::DeviceError;
use warpforge_dsl::prelude::{bf16, f16, Float};
use warpforge_dsl::{Buffer, Device, Element};
use warpforge_kernels::act::host::ActFloat;
use warpforge_kernels::int4::host::DeviceInt4;
use warpforge_kernels::int4::layout::{pack, Int4Float};
use warpforge_kernels::int4::Int4Weight;
use warpforge_kernels::norm::host::NormFloat;
use warpforge_kernels::rope::{self, RopeFloat};

/// The element types the model runs in: the attention kernels take f16 and bf16.
pub trait ModelFloat:
    Float + Element + ActFloat + NormFloat + RopeFloat + Int4Float + Default
{
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
    #[error(transparent)]
    Int4(#[from] Int4LoadError),
    #[error("int4 weight {name}: {message}")]
    Pack { name: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// A linear layer's weight on the device.
pub enum Weight<T: Element> {
    /// `[out, inp]` row-major (PyTorch's Linear layout), for the tensor-core GEMM.
    Dense(Buffer<T>),
    /// Packed for the int4 dequant-GEMM (GPTQ, AWQ or warpforge's own int4); boxed, it is
    /// far larger than a buffer.
    Int4(Box<DeviceInt4>),
}

/// `y = x·Wᵀ (+ b)`.
pub struct Linear<T: Element> {
    pub w: Weight<T>,
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
    /// Linear layers on the int4 GEMM, and int4 layers that run dense (dequantized once at
    /// load) because the head layout pads their rows or columns, they carry a bias, or
    /// gate and up could not be fused.
    pub int4_layers: usize,
    pub dequantized_layers: usize,
}

/// A decoder linear as stored: dense `[out, inp]` in T, or int4.
enum Stored<T> {
    Dense(Vec<T>),
    Int4(Int4Weight),
}

impl<T: ModelFloat> Stored<T> {
    /// The weight as dense `[out, inp]` T values (int4 dequantized exactly, then rounded).
    fn dense(self) -> Vec<T> {
        match self {
            Stored::Dense(v) => v,
            Stored::Int4(w) => LinearWeight::Int4(w)
                .to_f32()
                .into_iter()
                .map(T::from_f32)
                .collect(),
        }
    }
}

/// Rows of `a` (width `wa`) and of `b` (width `wb`) side by side: `[rows, wa + wb]`.
fn interleave<T: Copy>(a: &[T], b: &[T], wa: usize, wb: usize) -> Vec<T> {
    a.chunks(wa)
        .zip(b.chunks(wb))
        .flat_map(|(x, y)| x.iter().chain(y).copied())
        .collect()
}

/// `[gate; up]` as one int4 weight (output channels concatenated), when their inputs,
/// grouping and act-order agree.
fn fuse_outputs(gate: &Int4Weight, up: &Int4Weight) -> Option<Int4Weight> {
    use warpforge_kernels::int4::GroupDim;
    let same = gate.k == up.k
        && gate.group == up.group
        && gate.dim == up.dim
        && gate.g_idx == up.g_idx
        && (gate.dim == GroupDim::Oc
            || (gate.n.is_multiple_of(gate.group) && up.n.is_multiple_of(up.group)));
    if !same {
        return None;
    }
    // Scales and zeros are [k_groups, n] (Oc) or [k, n_groups] (Ic): rows of width sa and sb.
    let (sa, sb) = match gate.dim {
        GroupDim::Oc => (gate.n, up.n),
        GroupDim::Ic => (gate.n / gate.group, up.n / up.group),
    };
    Some(Int4Weight {
        k: gate.k,
        n: gate.n + up.n,
        group: gate.group,
        dim: gate.dim,
        codes: interleave(&gate.codes, &up.codes, gate.n, up.n),
        scales: interleave(&gate.scales, &up.scales, sa, sb),
        zeros: interleave(&gate.zeros, &up.zeros, sa, sb),
        g_idx: gate.g_idx.clone(),
    })
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
        (weights, quant): (&ModelWeights, Option<&Int4Config>),
        rope_rows: usize,
    ) -> Result<Self, LoadError> {
        let head = check_config(config)?;
        let shapes: HashMap<String, Vec<usize>> = expected_tensors(config).into_iter().collect();
        let host = |name: &str| -> Result<Vec<T>, LoadError> {
            Ok(T::convert(&weights.tensor(name, &shapes[name])?))
        };
        let up = |data: &[T]| device.upload(data).map_err(LoadError::from);
        let stored = |name: &str, out: usize, inp: usize| -> Result<Stored<T>, LoadError> {
            Ok(match quant {
                None => Stored::Dense(host(&format!("{name}.weight"))?),
                Some(q) => match stored_linear(weights, Some(q), name, out, inp)? {
                    LinearWeight::Dense(view) => Stored::Dense(T::convert(&view)),
                    LinearWeight::Int4(w) => Stored::Int4(w),
                },
            })
        };
        let mut counts = (0usize, 0usize);
        let mut int4 = |name: &str, w: Int4Weight| -> Result<Weight<T>, LoadError> {
            let packed = pack::<T>(&w).map_err(|e| LoadError::Pack {
                name: name.to_string(),
                message: e.to_string(),
            })?;
            counts.0 += 1;
            let q = DeviceInt4::upload(device, packed).map_err(|e| LoadError::Pack {
                name: name.to_string(),
                message: e.to_string(),
            })?;
            Ok(Weight::Int4(Box::new(q)))
        };
        let (hidden, heads, kv_heads) = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
        );
        let inter = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        let mut dequantized = 0;
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let attn = |proj: &str| format!("{p}.self_attn.{proj}");
            // q/k/v: rows per head into the padded layout; o: columns. An int4 weight stays
            // int4 when the layout is the model's and there is no bias.
            let mut projection =
                |proj: &str, n_heads: usize, bias: bool| -> Result<Linear<T>, LoadError> {
                    let name = attn(proj);
                    let out = n_heads * config.head_dim;
                    let w = match stored(&name, out, hidden)? {
                        Stored::Int4(w) if head.is_identity() && !bias => int4(&name, w)?,
                        s => {
                            dequantized += matches!(s, Stored::Int4(_)) as usize;
                            Weight::Dense(up(&head.pad_rows(&s.dense(), n_heads, hidden))?)
                        }
                    };
                    let bias = match bias {
                        true => Some(up(&head.pad_rows(
                            &host(&format!("{name}.bias"))?,
                            n_heads,
                            1,
                        ))?),
                        false => None,
                    };
                    Ok(Linear {
                        w,
                        bias,
                        out: n_heads * head.padded,
                        inp: hidden,
                    })
                };
            let q = projection("q_proj", heads, config.qkv_bias)?;
            let k = projection("k_proj", kv_heads, config.qkv_bias)?;
            let v = projection("v_proj", kv_heads, config.qkv_bias)?;
            let o_name = attn("o_proj");
            let o_w = match stored(&o_name, hidden, heads * config.head_dim)? {
                Stored::Int4(w) if head.is_identity() && !config.o_bias => int4(&o_name, w)?,
                s => {
                    dequantized += matches!(s, Stored::Int4(_)) as usize;
                    Weight::Dense(up(&head.pad_cols(&s.dense(), hidden, heads))?)
                }
            };
            let o_bias = match config.o_bias {
                true => Some(up(&host(&format!("{o_name}.bias"))?)?),
                false => None,
            };
            let gate = stored(&format!("{p}.mlp.gate_proj"), inter, hidden)?;
            let upw = stored(&format!("{p}.mlp.up_proj"), inter, hidden)?;
            let gate_up = match (gate, upw) {
                (Stored::Int4(g), Stored::Int4(u)) if fuse_outputs(&g, &u).is_some() => {
                    int4(&format!("{p}.mlp.gate_up"), fuse_outputs(&g, &u).unwrap())?
                }
                (g, u) => {
                    dequantized += matches!(g, Stored::Int4(_)) as usize
                        + matches!(u, Stored::Int4(_)) as usize;
                    let mut w = g.dense();
                    w.extend(u.dense());
                    Weight::Dense(up(&w)?)
                }
            };
            let down_name = format!("{p}.mlp.down_proj");
            let down = match stored(&down_name, hidden, inter)? {
                Stored::Int4(w) => int4(&down_name, w)?,
                s => Weight::Dense(up(&s.dense())?),
            };
            layers.push(Layer {
                input_norm: up(&host(&format!("{p}.input_layernorm.weight"))?)?,
                q,
                k,
                v,
                o: Linear {
                    w: o_w,
                    bias: o_bias,
                    out: hidden,
                    inp: heads * head.padded,
                },
                post_norm: up(&host(&format!("{p}.post_attention_layernorm.weight"))?)?,
                gate_up: Linear {
                    w: gate_up,
                    bias: None,
                    out: 2 * inter,
                    inp: hidden,
                },
                down: Linear {
                    w: down,
                    bias: None,
                    out: hidden,
                    inp: inter,
                },
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
                    w: Weight::Dense(up(&w)?),
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
            int4_layers: counts.0,
            dequantized_layers: dequantized,
        })
    }
}
