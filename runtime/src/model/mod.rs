//! The Llama model family on the host: `config.json` ([`config`]), safetensors weights
//! ([`weights`]), `tokenizer.json` ([`tokenizer`]) and the f32 host reference forward with
//! greedy decoding ([`reference`]), the oracle the kernel engine is checked against.
//!
//! [`ModelDir::open`] loads a Hugging Face model directory: it parses the config, maps the
//! weights, checks every tensor's presence and shape against the config, and loads the
//! tokenizer when there is one.

pub mod config;
pub mod reference;
pub mod tokenizer;
pub mod weights;

pub use config::{ConfigError, ModelConfig, ModelType, Rope, RopeScaling};
pub use reference::{HostModel, KvCache, Logits};
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
    #[error(
        "{dir}: int4 weights (quantization_config.quant_method = {method:?}): handled by the \
         int4 loader"
    )]
    Int4 { dir: PathBuf, method: String },
    #[error(
        "{dir}: quantization_config.quant_method = {method:?} is not supported; warpforge \
         loads f32, f16 and bf16 weights (and GPTQ/AWQ int4 through the int4 loader)"
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
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let config = ModelConfig::load(dir)?;
        match config.quant_method.as_deref() {
            None => {}
            Some(method @ ("gptq" | "awq")) => {
                return Err(ModelError::Int4 {
                    dir: dir.to_path_buf(),
                    method: method.to_string(),
                })
            }
            Some(method) => {
                return Err(ModelError::Quantization {
                    dir: dir.to_path_buf(),
                    method: method.to_string(),
                })
            }
        }
        let weights = ModelWeights::open(dir)?;
        weights.validate(&config)?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        Ok(ModelDir {
            path: dir.to_path_buf(),
            config,
            weights,
            tokenizer,
        })
    }
}
