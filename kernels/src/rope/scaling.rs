//! RoPE frequencies from a model config, as Hugging Face transformers computes them
//! (`modeling_rope_utils.py`: `_compute_default_rope_parameters`,
//! `_compute_linear_scaling_rope_parameters`, `_compute_llama3_parameters`), and the cos/sin
//! table the kernels read.
//!
//! transformers computes `inv_freq` as an f32 tensor, every step an f32 op; [`Rope::inv_freq`]
//! repeats those steps in the same order in f32 (Python scalars taken to f32 as torch does),
//! with one difference it cannot avoid: torch's f32 `pow` (SLEEF / libm, ≤ 1 ulp) is replaced
//! by the f64 power rounded once to f32, so an entry may differ from HF's by 1 f32 ulp.

use thiserror::Error;

/// The RoPE fields of a Hugging Face `config.json`, as the runtime reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    /// `rope_theta` (10000 unless given).
    pub theta: f64,
    /// `head_dim` (else `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// `partial_rotary_factor` (1 unless given): `rotary_dim = int(head_dim · factor)`.
    pub partial_rotary_factor: f64,
    /// `rope_scaling`, when present and not null.
    pub rope_scaling: Option<RopeScalingConfig>,
}

impl RopeConfig {
    /// Plain RoPE over the whole head with base `theta`.
    pub fn new(theta: f64, head_dim: usize) -> RopeConfig {
        RopeConfig {
            theta,
            head_dim,
            partial_rotary_factor: 1.0,
            rope_scaling: None,
        }
    }
}

/// The `rope_scaling` object of a `config.json` (fields absent there are `None`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RopeScalingConfig {
    /// `rope_type`, or the older `type`.
    pub rope_type: Option<String>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<u64>,
}

/// The RoPE scalings we implement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// `theta^(-2i/d)`.
    Default,
    /// Positions divided by `factor` (applied to `inv_freq`, as HF does).
    Linear { factor: f64 },
    /// Llama 3.1: wavelengths above `original_max_position_embeddings / low_freq_factor`
    /// divided by `factor`, below `… / high_freq_factor` kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: u64,
    },
}

/// Why a RoPE config cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum RopeError {
    #[error(
        "rope_scaling type `{0}` is not supported (supported: default, linear, llama3; \
         dynamic, ntk, yarn, longrope and other types are not implemented)"
    )]
    Unsupported(String),
    #[error("rope_scaling of type `{rope_type}` needs the field `{field}`")]
    Missing {
        rope_type: &'static str,
        field: &'static str,
    },
    #[error("invalid RoPE config: {0}")]
    Invalid(String),
}

impl RopeScaling {
    /// The scaling a `rope_scaling` object asks for (`None`: the default).
    pub fn from_config(c: Option<&RopeScalingConfig>) -> Result<RopeScaling, RopeError> {
        let Some(c) = c else {
            return Ok(RopeScaling::Default);
        };
        let name = c.rope_type.as_deref().unwrap_or("default");
        let need =
            |rope_type, field, v: Option<f64>| v.ok_or(RopeError::Missing { rope_type, field });
        let scaling = match name {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear {
                factor: need("linear", "factor", c.factor)?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: need("llama3", "factor", c.factor)?,
                low_freq_factor: need("llama3", "low_freq_factor", c.low_freq_factor)?,
                high_freq_factor: need("llama3", "high_freq_factor", c.high_freq_factor)?,
                original_max_position_embeddings: c.original_max_position_embeddings.ok_or(
                    RopeError::Missing {
                        rope_type: "llama3",
                        field: "original_max_position_embeddings",
                    },
                )?,
            },
            other => return Err(RopeError::Unsupported(other.to_string())),
        };
        scaling.validate()?;
        Ok(scaling)
    }

    fn validate(&self) -> Result<(), RopeError> {
        let bad = |m: String| Err(RopeError::Invalid(m));
        match *self {
            RopeScaling::Default => Ok(()),
            RopeScaling::Linear { factor } if !(factor > 0.0 && factor.is_finite()) => {
                bad(format!("linear factor {factor} must be positive"))
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: old,
            } if !(factor > 0.0 && low > 0.0 && high > low && old > 0 && factor.is_finite()) => {
                bad(format!(
                    "llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and \
                     original_max_position_embeddings > 0 (got {factor}, {low}, {high}, {old})"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A model's RoPE: base, rotated dims and scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Dims rotated per head (the first `rotary_dim`; a positive even number ≤ head_dim;
    /// the kernels want a multiple of 16).
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
}

impl Rope {
    /// The RoPE of a model config (HF's `int(head_dim · partial_rotary_factor)` dims).
    pub fn from_config(c: &RopeConfig) -> Result<Rope, RopeError> {
        let rotary_dim = (c.head_dim as f64 * c.partial_rotary_factor) as usize;
        if !(c.theta > 0.0 && c.theta.is_finite()) {
            return Err(RopeError::Invalid(format!(
                "rope_theta {} must be positive",
                c.theta
            )));
        }
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim > c.head_dim {
            return Err(RopeError::Invalid(format!(
                "rotary dims {rotary_dim} (head_dim {} × partial_rotary_factor {}) must be a \
                 positive even number ≤ head_dim",
                c.head_dim, c.partial_rotary_factor
            )));
        }
        Ok(Rope {
            theta: c.theta,
            rotary_dim,
            scaling: RopeScaling::from_config(c.rope_scaling.as_ref())?,
        })
    }

    /// Llama 3.1's RoPE (θ = 500000; factor 8, low/high frequency factors 1 and 4,
    /// original context 8192) over `rotary_dim` dims.
    pub fn llama3_1(rotary_dim: usize) -> Rope {
        Rope {
            theta: 500000.0,
            rotary_dim,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
        }
    }

    /// `inv_freq[i]`, `i < rotary_dim / 2`, in HF's f32 steps (see the module doc).
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.rotary_dim as f32;
        let base = self.theta as f32;
        let default = (0..self.rotary_dim).step_by(2).map(|i| {
            let exponent = i as f32 / dim;
            1.0f32 / ((base as f64).powf(exponent as f64) as f32)
        });
        match self.scaling {
            RopeScaling::Default => default.collect(),
            RopeScaling::Linear { factor } => default.map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let (factor, low) = (factor as f32, low_freq_factor as f32);
                let low_wavelen = (old / low_freq_factor) as f32;
                let high_wavelen = (old / high_freq_factor) as f32;
                let span = (high_freq_factor - low_freq_factor) as f32;
                let two_pi = (2.0 * std::f64::consts::PI) as f32;
                default
                    .map(|inv| {
                        let wavelen = two_pi / inv;
                        let scaled = if wavelen > low_wavelen {
                            inv / factor
                        } else {
                            inv
                        };
                        let smooth = (old as f32 / wavelen - low) / span;
                        let smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
                        // Neither short nor long (HF's `~is_low & ~is_high`).
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            smoothed
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        }
    }

    /// The cos/sin table for positions `0..rows`: row `p` is `rotary_dim` f32s, `cos θ_i`
    /// for `i < rotary_dim/2` then `sin θ_i`, `θ_i = f32(p · inv_freq[i])`, cos and sin in
    /// f64 rounded once to f32.
    pub fn table(&self, rows: usize) -> Vec<f32> {
        let inv = self.inv_freq();
        let mut out = Vec::with_capacity(rows * self.rotary_dim);
        for p in 0..rows {
            let angles: Vec<f64> = inv.iter().map(|&f| angle(p as u32, f)).collect();
            out.extend(angles.iter().map(|a| a.cos() as f32));
            out.extend(angles.iter().map(|a| a.sin() as f32));
        }
        out
    }
}

/// `θ = f32(p · inv_freq)`: HF's f32 product of the position and the frequency, widened.
pub fn angle(position: u32, inv_freq: f32) -> f64 {
    (position as f32 * inv_freq) as f64
}
