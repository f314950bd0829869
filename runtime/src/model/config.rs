//! A Hugging Face Llama-family `config.json` (Llama, Mistral, Qwen2) as a typed
//! [`ModelConfig`], and the RoPE inverse frequencies computed exactly as transformers does.
//!
//! Both forms of the RoPE fields are read: the classic one (`rope_theta` beside an optional
//! `rope_scaling` object) and transformers 5's `rope_parameters` object (which holds
//! `rope_theta` itself). Anything the model family does not support is an error naming the
//! field and its value, never a silent default.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Why a `config.json` could not be turned into a [`ModelConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config.json: the top level must be a JSON object")]
    NotAnObject,
    #[error("config.json: missing field `{0}`")]
    Missing(&'static str),
    #[error("config.json: field `{field}` is {value}; expected {expected}")]
    Invalid {
        field: String,
        value: String,
        expected: String,
    },
    #[error(
        "config.json: model_type {0:?} is not supported; warpforge runs \"llama\", \"mistral\" \
         and \"qwen2\""
    )]
    ModelType(String),
    #[error(
        "config.json: RoPE type {rope_type:?} (field `{field}`) is not supported; supported: \
         \"default\", \"linear\", \"llama3\""
    )]
    RopeType { field: String, rope_type: String },
}

/// The model families warpforge runs; they differ only in what the config says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelType {
    Llama,
    Mistral,
    /// Biases on q/k/v (not o), whatever `attention_bias` says.
    Qwen2,
}

/// How the RoPE inverse frequencies are scaled (transformers' `rope_type`).
///
/// Conversion point: `warpforge_kernels::rope::RopeScaling` (written in parallel on another
/// branch) describes the same three forms; when both are merged, this type should convert
/// into it (or be replaced by it) — the fields map one to one.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `inv_freq[i] = theta^(-2i/d)`.
    Default,
    /// Position interpolation: every inverse frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// RoPE: the base and the scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// A token id field that may be one id or a list (`eos_token_id: [128001, 128009]`).
pub type TokenIds = Vec<u32>;

/// The typed `config.json` of a Llama-family model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub model_type: ModelType,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no GQA).
    pub num_key_value_heads: usize,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// `lm_head` shares `model.embed_tokens.weight` (no `lm_head.weight` in the files).
    pub tie_word_embeddings: bool,
    pub bos_token_ids: TokenIds,
    pub eos_token_ids: TokenIds,
    /// `torch_dtype` (or transformers 5's `dtype`) as written: "float32", "bfloat16", …
    pub dtype: Option<String>,
    /// Biases on q/k/v (Qwen2 always; Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on o_proj (Llama's `attention_bias` only; Qwen2 has none).
    pub o_bias: bool,
    /// Sliding-window attention per layer: `Some(w)` lets a query at position p see keys at
    /// positions in `(p - w, p]` (transformers' convention). Mistral: every layer when
    /// `sliding_window` is set; Qwen2: only when `use_sliding_window`, from layer
    /// `max_window_layers` on (or as `layer_types` says). The host reference honours it; an
    /// engine that cannot must refuse sequences longer than the window at load.
    pub layer_windows: Vec<Option<usize>>,
    pub rope: Rope,
    /// `quantization_config.quant_method` when the checkpoint is quantized ("gptq", "awq", …):
    /// such weights are not f32/f16/bf16 and go to the int4 loader.
    pub quant_method: Option<String>,
}

impl ModelConfig {
    /// Reads and parses `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let value: Value =
            serde_json::from_str(&text).map_err(|source| ConfigError::Json { path, source })?;
        Self::from_json(&value)
    }

    /// Parses an already decoded `config.json`.
    pub fn from_json(value: &Value) -> Result<Self, ConfigError> {
        let obj = value.as_object().ok_or(ConfigError::NotAnObject)?;
        let f = Fields(obj);
        let model_type = match f.str("model_type")?.as_deref() {
            Some("llama") => ModelType::Llama,
            Some("mistral") => ModelType::Mistral,
            Some("qwen2") => ModelType::Qwen2,
            Some(other) => return Err(ConfigError::ModelType(other.to_string())),
            None => return Err(ConfigError::Missing("model_type")),
        };
        let hidden_size = f.req_usize("hidden_size")?;
        let num_attention_heads = f.req_usize("num_attention_heads")?;
        let num_key_value_heads = f
            .usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(invalid(
                "num_key_value_heads",
                num_key_value_heads,
                &format!("a divisor of num_attention_heads ({num_attention_heads})"),
            ));
        }
        let head_dim = match f.usize("head_dim")? {
            Some(d) => d,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(invalid(
                    "hidden_size",
                    hidden_size,
                    "a multiple of num_attention_heads (or an explicit head_dim)",
                ))
            }
        };
        if head_dim % 2 != 0 {
            return Err(invalid("head_dim", head_dim, "an even number (RoPE pairs)"));
        }
        let attention_bias = f.bool("attention_bias")?.unwrap_or(false);
        if f.bool("mlp_bias")?.unwrap_or(false) {
            return Err(invalid(
                "mlp_bias",
                true,
                "false (MLP biases are not supported)",
            ));
        }
        if let Some(act) = f.str("hidden_act")? {
            if act != "silu" {
                return Err(invalid("hidden_act", format!("{act:?}"), "\"silu\""));
            }
        }
        let num_hidden_layers = f.req_usize("num_hidden_layers")?;
        let max_position_embeddings = f.req_usize("max_position_embeddings")?;
        let dtype = match f.str("dtype")? {
            Some(d) => Some(d),
            None => f.str("torch_dtype")?,
        };
        let config = ModelConfig {
            model_type,
            hidden_size,
            intermediate_size: f.req_usize("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.f64("rms_norm_eps")?.unwrap_or(1e-6),
            vocab_size: f.req_usize("vocab_size")?,
            max_position_embeddings,
            tie_word_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_ids: f.token_ids("bos_token_id")?,
            eos_token_ids: f.token_ids("eos_token_id")?,
            dtype,
            qkv_bias: attention_bias || model_type == ModelType::Qwen2,
            o_bias: attention_bias && model_type == ModelType::Llama,
            layer_windows: layer_windows(&f, model_type, num_hidden_layers)?,
            rope: parse_rope(&f)?,
            quant_method: quant_method(&f)?,
        };
        let rope_params = f
            .get("rope_parameters")
            .and_then(Value::as_object)
            .map(Fields);
        for fields in std::iter::once(&f).chain(rope_params.as_ref()) {
            if let Some(factor) = fields.f64("partial_rotary_factor")? {
                if factor != 1.0 {
                    return Err(invalid("partial_rotary_factor", factor, "1.0"));
                }
            }
        }
        Ok(config)
    }

    /// Query heads per key/value head (the GQA group size).
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Width of the q projection's output: heads × head_dim.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of the k and v projections' outputs: kv heads × head_dim.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// The smallest sliding window of any layer, `None` when every layer attends to the
    /// whole context. An engine without sliding-window attention can run the model exactly
    /// only on sequences no longer than this (a query then sees every earlier key anyway):
    /// it should refuse longer maximum lengths at load.
    pub fn sliding_window_limit(&self) -> Option<usize> {
        self.layer_windows.iter().flatten().copied().min()
    }

    /// The RoPE inverse frequencies (`head_dim / 2` of them), see [`rope_inv_freq`].
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        rope_inv_freq(&self.rope, self.head_dim)
    }
}

/// Transformers' `inv_freq` for a rotary dimension `dim`, in f64:
/// `_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters` and
/// `_compute_llama3_parameters` (their attention factor is 1 for all three). Transformers
/// evaluates the same formulas in f32; rounding this to f32 gives its buffer to within an ulp.
pub fn rope_inv_freq(rope: &Rope, dim: usize) -> Vec<f64> {
    let default: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / rope.theta.powf((2 * i) as f64 / dim as f64))
        .collect();
    match rope.scaling {
        RopeScaling::Default => default,
        RopeScaling::Linear { factor } => default.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old_len = original_max_position_embeddings as f64;
            let low_freq_wavelen = old_len / low_freq_factor;
            let high_freq_wavelen = old_len / high_freq_factor;
            default
                .iter()
                .map(|&freq| {
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    if wavelen < high_freq_wavelen {
                        freq
                    } else if wavelen > low_freq_wavelen {
                        freq / factor
                    } else {
                        let smooth = (old_len / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    }
                })
                .collect()
        }
    }
}

/// Reads RoPE from either form. `rope_parameters` wins when present (transformers 5 writes
/// only it); otherwise `rope_theta` (default 10000) and `rope_scaling` (default none).
fn parse_rope(f: &Fields) -> Result<Rope, ConfigError> {
    if let Some(params) = f.0.get("rope_parameters").filter(|v| !v.is_null()) {
        let params = params
            .as_object()
            .ok_or_else(|| invalid("rope_parameters", params, "an object"))?;
        let p = Fields(params);
        let theta = match p.f64("rope_theta")? {
            Some(theta) => theta,
            None => f.f64("rope_theta")?.unwrap_or(10000.0),
        };
        let scaling = parse_scaling(&p, "rope_parameters", f)?;
        return Ok(Rope { theta, scaling });
    }
    let theta = f.f64("rope_theta")?.unwrap_or(10000.0);
    let scaling = match f.0.get("rope_scaling").filter(|v| !v.is_null()) {
        None => RopeScaling::Default,
        Some(obj) => {
            let obj = obj
                .as_object()
                .ok_or_else(|| invalid("rope_scaling", obj, "an object or null"))?;
            parse_scaling(&Fields(obj), "rope_scaling", f)?
        }
    };
    Ok(Rope { theta, scaling })
}

/// One scaling object (`rope_scaling` or `rope_parameters`), named `field` in errors.
/// `top` is the whole config, for `original_max_position_embeddings`.
fn parse_scaling(p: &Fields, field: &str, top: &Fields) -> Result<RopeScaling, ConfigError> {
    let rope_type = match p.str("rope_type")? {
        Some(t) => t,
        None => p.str("type")?.unwrap_or_else(|| "default".to_string()),
    };
    let num = |key: &'static str| -> Result<f64, ConfigError> {
        p.f64(key)?.ok_or_else(|| ConfigError::Invalid {
            field: format!("{field}.{key}"),
            value: "missing".into(),
            expected: format!("a number (required by rope_type {rope_type:?})"),
        })
    };
    match rope_type.as_str() {
        "default" => Ok(RopeScaling::Default),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => {
            // transformers' precedence: the top-level field (Phi-3 style), the scaling
            // object's, then max_position_embeddings.
            let key = "original_max_position_embeddings";
            let original = match (top.usize(key)?, p.usize(key)?) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => top.req_usize("max_position_embeddings")?,
            };
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            if high <= low {
                return Err(invalid(
                    &format!("{field}.high_freq_factor"),
                    high,
                    &format!("greater than low_freq_factor ({low})"),
                ));
            }
            Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            })
        }
        other => Err(ConfigError::RopeType {
            field: format!("{field}.rope_type"),
            rope_type: other.to_string(),
        }),
    }
}

/// The sliding window of each layer (see [`ModelConfig::layer_windows`]).
fn layer_windows(
    f: &Fields,
    model_type: ModelType,
    layers: usize,
) -> Result<Vec<Option<usize>>, ConfigError> {
    let window = f.usize("sliding_window")?;
    let uses_window = match model_type {
        ModelType::Llama => false,
        ModelType::Mistral => window.is_some(),
        ModelType::Qwen2 => f.bool("use_sliding_window")?.unwrap_or(false),
    };
    if !uses_window {
        return Ok(vec![None; layers]);
    }
    let window = window.ok_or(ConfigError::Missing("sliding_window"))?;
    if let Some(types) = f.0.get("layer_types").filter(|v| !v.is_null()) {
        let list = types
            .as_array()
            .filter(|l| l.len() == layers)
            .ok_or_else(|| invalid("layer_types", types, "a list with one entry per layer"))?;
        return list
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(None),
                Some("sliding_attention") => Ok(Some(window)),
                _ => Err(invalid(
                    "layer_types",
                    t,
                    "\"full_attention\" or \"sliding_attention\"",
                )),
            })
            .collect();
    }
    let first_windowed = match model_type {
        ModelType::Qwen2 => f.usize("max_window_layers")?.unwrap_or(0),
        _ => 0,
    };
    Ok((0..layers)
        .map(|i| (i >= first_windowed).then_some(window))
        .collect())
}

fn quant_method(f: &Fields) -> Result<Option<String>, ConfigError> {
    match f.get("quantization_config") {
        None => Ok(None),
        Some(Value::Object(q)) => Ok(Some(
            Fields(q)
                .str("quant_method")?
                .unwrap_or_else(|| "unknown".to_string()),
        )),
        Some(other) => Err(invalid("quantization_config", other, "an object")),
    }
}

fn invalid(field: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Typed access to a JSON object's fields; a present field of the wrong type is an error
/// naming it, an absent (or null) one is `None`.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| invalid(key, v, "a non-negative integer"))
            })
            .transpose()
    }

    fn req_usize(&self, key: &'static str) -> Result<usize, ConfigError> {
        match self.usize(key)? {
            Some(0) => Err(invalid(key, 0, "a positive integer")),
            Some(n) => Ok(n),
            None => Err(ConfigError::Missing(key)),
        }
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| invalid(key, v, "a number")))
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| invalid(key, v, "true or false")))
            .transpose()
    }

    fn str(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(key, v, "a string"))
            })
            .transpose()
    }

    /// One id or a list of ids; absent is empty.
    fn token_ids(&self, key: &str) -> Result<TokenIds, ConfigError> {
        let as_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| as_id(v).ok_or_else(|| invalid(key, v, "token ids")))
                .collect(),
            Some(v) => as_id(v)
                .map(|id| vec![id])
                .ok_or_else(|| invalid(key, v, "a token id or a list of them")),
        }
    }
}
