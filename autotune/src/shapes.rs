//! Problem shapes to tune: derived from a Hugging Face `config.json` (Llama family), or
//! listed in a shapes file.

use crate::TuneError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use warpforge_kernels::fp8;

/// One problem to tune: a library kernel and its dimensions (`[m, n, k]` for gemm,
/// `[rows, cols]` for softmax, `[n]` for vector_add and sum_partials).
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
}

/// The number of dimensions each tunable library kernel's problem has: `[n]` for flat
/// tensors (per-tensor FP8, COAT's DRE and AdamW), `[rows, cols]` for matrices (1×G and
/// tile FP8 scaling, dequantization), every FP8 instance (f32, f16, bf16) alike.
pub fn rank_of(kernel: &str) -> Option<usize> {
    match kernel {
        "gemm" | "fp8_gemm_e4m3_f32" | "fp8_gemm_e4m3_bf16" => Some(3),
        _ if kernel.starts_with("gemm_tc_") => Some(3),
        "softmax" => Some(2),
        "vector_add" | "sum_partials" => Some(1),
        "coat_dre_quantize" | "coat_dre_dequantize" | "coat_adamw_step" => Some(1),
        _ => fp8::instance_of(kernel).map(|i| match i.generic {
            "fp8_amax" | "fp8_quantize_tensor" | "fp8_quantize_delayed" => 1,
            _ => 2,
        }),
    }
}

/// Whether the tuner can build a device workload for the kernel (see `workload/`): every
/// kernel with a rank has one.
pub fn has_workload(kernel: &str) -> bool {
    rank_of(kernel).is_some()
}

/// The bf16 FP8 instances (both formats) of the generic kernels `generics`, in library
/// order: a bf16 model's activations and weights. The f32 and f16 instances keep their
/// defaults unless tuned with `--shapes`.
fn fp8_instances(generics: &[&str]) -> Vec<&'static str> {
    fp8::library::entries()
        .iter()
        .filter(|k| {
            fp8::instance_of(k.name)
                .is_some_and(|i| generics.contains(&i.generic) && i.float == "bf16")
        })
        .map(|k| k.name)
        .collect()
}

/// FP8 kernels over a flat activation tensor `[tokens × width]`.
const FP8_FLAT: [&str; 3] = ["fp8_amax", "fp8_quantize_tensor", "fp8_quantize_delayed"];

/// FP8 kernels over an activation matrix `[tokens, width]` (1×128 groups).
const FP8_ACTIVATION: [&str; 3] = ["fp8_quantize_rows", "fp8_quantize_rows_t", "fp8_dequantize"];

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

    /// The problems of one layer at each batch size in `tokens`: the projections as GEMMs
    /// `[m, n, k]` (q, k/v, o, gate/up, down, lm_head) for `gemm`, `gemm_tc_nt_bf16_bf16`
    /// and `fp8_gemm_e4m3_bf16` (B is the weight, column-major), the MLP's data gradients for
    /// `gemm_tc_nn_bf16_bf16`, softmax over
    /// the vocabulary `[tokens, vocab]`, the residual add and a reduction over
    /// `tokens × hidden` (vector_add, sum_partials), and FP8 activation quantization of
    /// `[tokens, hidden]` and `[tokens, intermediate]` (per tensor, 1×128 rows, transposed,
    /// dequantization); then, once, FP8 128×128 tiles of the `[hidden, intermediate]`
    /// weights and COAT over one layer's parameters (flat). Duplicates (k and v, gate and
    /// up) appear once.
    pub fn shapes(&self, tokens: &[usize]) -> Vec<ProblemShape> {
        let (h, hd) = (self.hidden_size, self.head_dim());
        let q = self.num_attention_heads * hd;
        let kv = self.num_key_value_heads.unwrap_or(self.num_attention_heads) * hd;
        let mut out: Vec<ProblemShape> = Vec::new();
        for &m in tokens {
            let gemms = [
                ("q_proj", q, h),
                ("k_proj/v_proj", kv, h),
                ("o_proj", h, q),
                ("gate_proj/up_proj", self.intermediate_size, h),
                ("down_proj", h, self.intermediate_size),
                ("lm_head", self.vocab_size, h),
            ];
            let mut add = |s: ProblemShape| {
                if !out.iter().any(|o| o.kernel == s.kernel && o.dims == s.dims) {
                    out.push(s);
                }
            };
            for (name, n, k) in gemms {
                add(ProblemShape::new("gemm", vec![m, n, k], name));
                add(ProblemShape::new(
                    "gemm_tc_nt_bf16_bf16",
                    vec![m, n, k],
                    name,
                ));
                add(ProblemShape::new("fp8_gemm_e4m3_bf16", vec![m, n, k], name));
            }
            let inter = self.intermediate_size;
            add(ProblemShape::new(
                "gemm_tc_nn_bf16_bf16",
                vec![m, h, inter],
                "gate_proj/up_proj dX",
            ));
            add(ProblemShape::new(
                "gemm_tc_nn_bf16_bf16",
                vec![m, inter, h],
                "down_proj dX",
            ));
            for (name, cols) in [("hidden", h), ("intermediate", inter)] {
                for kernel in fp8_instances(&FP8_FLAT) {
                    add(ProblemShape::new(kernel, vec![m * cols], name));
                }
                for kernel in fp8_instances(&FP8_ACTIVATION) {
                    add(ProblemShape::new(kernel, vec![m, cols], name));
                }
            }
            add(ProblemShape::new(
                "softmax",
                vec![m, self.vocab_size],
                "logits",
            ));
            add(ProblemShape::new("vector_add", vec![m * h], "residual"));
            add(ProblemShape::new("sum_partials", vec![m * h], "reduction"));
        }
        let weights = vec![h, self.intermediate_size];
        for kernel in fp8_instances(&["fp8_quantize_blocks"]) {
            out.push(ProblemShape::new(kernel, weights.clone(), "mlp weight"));
        }
        let params = vec![self.layer_parameters()];
        for kernel in [
            "coat_dre_quantize",
            "coat_dre_dequantize",
            "coat_adamw_step",
        ] {
            out.push(ProblemShape::new(
                kernel,
                params.clone(),
                "layer parameters",
            ));
        }
        out
    }

    /// The parameters of one layer's matrices (attention and MLP projections).
    pub fn layer_parameters(&self) -> usize {
        let (h, hd) = (self.hidden_size, self.head_dim());
        let q = self.num_attention_heads * hd;
        let kv = self.num_key_value_heads.unwrap_or(self.num_attention_heads) * hd;
        2 * h * q + 2 * h * kv + 3 * h * self.intermediate_size
    }
}

/// Reads a shapes file: a JSON list of `{"kernel": "gemm", "dims": [m, n, k]}` (with an
/// optional `"name"`), each checked against the library.
pub fn load_shapes(path: &Path) -> Result<Vec<ProblemShape>, TuneError> {
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
        check_shape(s).map_err(|m| input(format!("shape {i}: {m}")))?;
    }
    Ok(shapes)
}

/// Whether a shape names a tunable kernel with the right number of positive dimensions.
pub fn check_shape(shape: &ProblemShape) -> Result<(), String> {
    let Some(rank) = rank_of(&shape.kernel) else {
        return Err(format!(
            "`{}` is not a tunable kernel (`warpforge autotune --dry-run` lists them)",
            shape.kernel
        ));
    };
    if shape.dims.len() != rank {
        return Err(format!(
            "{} takes {rank} dimension(s), got {:?}",
            shape.kernel, shape.dims
        ));
    }
    if shape.dims.contains(&0) || shape.dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(format!(
            "dimensions must be between 1 and 2^32-1, got {:?}",
            shape.dims
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_kernel_has_a_rank_a_workload_and_default_shapes() {
        let shapes = ModelConfig::llama3_8b().shapes(&DEFAULT_TOKENS);
        for k in warpforge_kernels::library() {
            assert!(rank_of(k.name).is_some(), "{} has no rank", k.name);
            assert!(has_workload(k.name), "{}", k.name);
        }
        // One instance of each generic source (the model's element type) gets shapes.
        for family in warpforge_kernels::families() {
            let mine: Vec<_> = shapes
                .iter()
                .filter(|s| family.iter().any(|k| s.kernel == k.name))
                .collect();
            assert!(!mine.is_empty(), "{} has no default shape", family[0].name);
            for s in mine {
                check_shape(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            }
        }
        let err = check_shape(&ProblemShape::new("nope", vec![4], "")).unwrap_err();
        assert!(err.contains("not a tunable kernel"), "{err}");
        assert!(check_shape(&ProblemShape::new("coat_adamw_step", vec![4096], "")).is_ok());
    }
}
