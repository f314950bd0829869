//! The Llama model family on the host: `config.json` ([`config`]), safetensors weights
//! ([`weights`]), `tokenizer.json` ([`tokenizer`]) and the f32 host reference forward with
//! greedy decoding ([`mod@reference`]), the oracle the kernel engine is checked against.
//!
//! [`ModelDir::open`] loads a Hugging Face model directory: it parses the config, maps the
//! weights, checks every tensor's presence and shape against the config, and loads the
//! tokenizer when there is one. An int4 directory (GPTQ, AWQ or warpforge's own, see
//! [`int4`]) loads too: its linear layers are read through [`int4::linear`].

pub mod config;
pub mod int4;
pub mod reference;
pub mod tokenizer;
pub mod weights;

pub use config::{ConfigError, ModelConfig, ModelType, Rope, RopeScaling};
pub use int4::{Int4Config, Int4LoadError, LinearWeight};
pub use reference::{HostModel, KvCache, LinearInput, Logits};
pub use tokenizer::{Tokenizer, TokenizerError};
pub use weights::{expected_tensors, DType, ModelWeights, TensorView, WeightsError};

use std::path::{Path, PathBuf};

/// Any failure to load or run a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Int4(#[from] Int4LoadError),
    #[error(
        "{dir}: quantization_config.quant_method = {method:?} is not supported; warpforge \
         loads f32, f16 and bf16 weights, and int4 weights of \"gptq\", \"awq\" and \
         \"warpforge-int4\" checkpoints through the int4 loader"
    )]
    Quantization { dir: PathBuf, method: String },
    #[error("token id {id} at position {position} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange {
        id: u32,
        position: usize,
        vocab: usize,
    },
    #[error("empty input: a forward pass needs at least one token")]
    EmptyInput,
}

/// A loaded Hugging Face model directory: config, mapped and validated weights, and the
/// tokenizer when the directory has `tokenizer.json`.
#[derive(Debug)]
pub struct ModelDir {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub weights: ModelWeights,
    pub tokenizer: Option<Tokenizer>,
    /// The int4 scheme of the linear layers; `None` for a float model.
    pub quant: Option<Int4Config>,
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let config = ModelConfig::load(dir)?;
        match config.quant_method.as_deref() {
            None | Some("gptq" | "awq" | int4::WARPFORGE_INT4) => {}
            Some(method) => {
                return Err(ModelError::Quantization {
                    dir: dir.to_path_buf(),
                    method: method.to_string(),
                })
            }
        }
        let quant = Int4Config::from_dir(dir)?;
        let weights = match &quant {
            None => {
                let weights = ModelWeights::open(dir)?;
                weights.validate(&config)?;
                weights
            }
            Some(quant) => {
                let weights = ModelWeights::open_quantized(dir)?;
                int4::validate(&weights, &config, quant)?;
                weights
            }
        };
        let tokenizer = Tokenizer::from_dir(dir)?;
        Ok(ModelDir {
            path: dir.to_path_buf(),
            config,
            weights,
            tokenizer,
            quant,
        })
    }
}
