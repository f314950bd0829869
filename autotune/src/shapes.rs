//! Problem shapes to tune: derived from a Hugging Face `config.json` (Llama family), or
//! listed in a shapes file.

use crate::TuneError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use warpforge_kernels::check::Problem;
use warpforge_kernels::ModelShape;

/// One problem to tune: a library kernel and its dimensions (as its library description
/// defines them: `[m, n, k]` for gemm, `[rows, cols]` for softmax, `[n]` for vector_add).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemShape {
    pub kernel: String,
    pub dims: Vec<usize>,
    /// Where the shape comes from (`q_proj`, `lm_head`), for reports.
    #[serde(default)]
    pub name: String,
}

impl ProblemShape {
    pub fn new(kernel: &str, dims: Vec<usize>, name: &str) -> ProblemShape {
        ProblemShape {
            kernel: kernel.to_string(),
            dims,
            name: name.to_string(),
        }
    }

    /// The library's problem of this shape.
    pub fn problem(&self) -> Problem {
        Problem::new(self.name.clone(), self.dims.clone())
    }
}

/// The number of dimensions of `kernel`'s problems (its library description says), or
/// None when no library kernel has that name.
pub fn rank_of(kernel: &str) -> Option<usize> {
    warpforge_kernels::find(kernel).map(|k| k.rank())
}

/// Batch sizes in tokens (GEMM `M`, softmax rows) a model preset covers by default.
pub const DEFAULT_TOKENS: [usize; 4] = [1, 16, 128, 4096];

/// The fields of a Llama-family `config.json` that fix the kernel shapes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ModelConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention; absent means as many as the attention heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub vocab_size: usize,
    /// Absent means `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
}

impl ModelConfig {
    /// Llama 3 8B's shapes: the default when neither a model nor a shapes file is given.
    pub fn llama3_8b() -> ModelConfig {
        ModelConfig {
            hidden_size: 4096,
            intermediate_size: 14336,
            num_attention_heads: 32,
            num_key_value_heads: Some(8),
            vocab_size: 128_256,
            head_dim: None,
        }
    }

    /// Reads and checks a `config.json`.
    pub fn load(path: &Path) -> Result<ModelConfig, TuneError> {
        let input = |message: String| TuneError::Input {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| input(format!("cannot read: {e}")))?;
        let config: ModelConfig = serde_json::from_str(&text).map_err(|e| {
            input(format!(
                "not a Llama-family config.json ({e}); it needs hidden_size, \
                 intermediate_size, num_attention_heads, vocab_size"
            ))
        })?;
        config.check().map_err(input)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0"));
        }
        // `%` rather than `is_multiple_of`: the workspace's rust-version is 1.85.
        #[allow(clippy::manual_is_multiple_of)]
        let uneven = self.hidden_size % self.num_attention_heads != 0;
        if self.head_dim.is_none() && uneven {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {} (give head_dim)",
                self.hidden_size, self.num_attention_heads
            ));
        }
        match self.num_key_value_heads {
            Some(0) => Err("num_key_value_heads is 0".into()),
            _ if self.head_dim == Some(0) => Err("head_dim is 0".into()),
            _ => Ok(()),
        }
    }

    fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The shapes the kernel library sees.
    pub fn model_shape(&self) -> ModelShape {
        ModelShape {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim(),
            vocab: self.vocab_size,
        }
    }

    /// The problems each library kernel's description derives from this model at each
    /// batch size in `tokens` (the projections as GEMMs, activations, the vocabulary's
    /// softmax, one layer's parameters, ...), in library order; kernels whose description
    /// derives none keep their defaults unless given a shapes file.
    pub fn shapes(&self, tokens: &[usize]) -> Vec<ProblemShape> {
        let model = self.model_shape();
        let mut out = Vec::new();
        for k in warpforge_kernels::library() {
            for p in k.model_problems(&model, tokens) {
                out.push(ProblemShape::new(k.name(), p.dims, &p.name));
            }
        }
        out
    }

    /// The parameters of one layer's matrices (attention and MLP projections).
    pub fn layer_parameters(&self) -> usize {
        self.model_shape().layer_parameters()
    }
}

/// Reads a shapes file: a JSON list of `{"kernel": "gemm", "dims": [m, n, k]}` (with an
/// optional `"name"`), each checked against the library.
pub fn load_shapes(path: &Path) -> Result<Vec<ProblemShape>, TuneError> {
    load_shapes_checked(path, check_shape)
}

/// [`load_shapes`] with each shape checked by `check` (a program's own kernels are not in
/// the library).
pub fn load_shapes_checked(
    path: &Path,
    check: impl Fn(&ProblemShape) -> Result<(), String>,
) -> Result<Vec<ProblemShape>, TuneError> {
    let input = |message: String| TuneError::Input {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| input(format!("cannot read: {e}")))?;
    let shapes: Vec<ProblemShape> = serde_json::from_str(&text).map_err(|e| {
        input(format!(
            "not a shapes file ({e}); expected a JSON list of {{\"kernel\": ..., \"dims\": [...]}}"
        ))
    })?;
    for (i, s) in shapes.iter().enumerate() {
        check(s).map_err(|m| input(format!("shape {i}: {m}")))?;
    }
    Ok(shapes)
}

/// Whether a shape names a library kernel and is one of its problems (its description
/// validates the dims: their number, and each in 1..2^32).
pub fn check_shape(shape: &ProblemShape) -> Result<(), String> {
    match warpforge_kernels::find(&shape.kernel) {
        Some(k) => k.validate(&shape.problem()),
        None => Err(format!(
            "`{}` is not a tunable kernel (`warpforge autotune --dry-run` lists them)",
            shape.kernel
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_kernel_has_a_rank_and_each_generic_source_default_shapes() {
        let shapes = ModelConfig::llama3_8b().shapes(&DEFAULT_TOKENS);
        for k in warpforge_kernels::library() {
            assert!(rank_of(k.name()).is_some(), "{} has no rank", k.name());
        }
        // One instance of each generic source (the model's element type) gets shapes.
        for family in warpforge_kernels::families() {
            let mine: Vec<_> = shapes
                .iter()
                .filter(|s| family.iter().any(|k| s.kernel == k.name()))
                .collect();
            assert!(
                !mine.is_empty(),
                "{} has no default shape",
                family[0].name()
            );
            for s in mine {
                check_shape(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            }
        }
        let err = check_shape(&ProblemShape::new("nope", vec![4], "")).unwrap_err();
        assert!(err.contains("not a tunable kernel"), "{err}");
        assert!(check_shape(&ProblemShape::new("coat_adamw_step", vec![4096], "")).is_ok());
    }
}
