//! Safetensors weights of a Llama-family model: one `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, memory-mapped, each tensor a borrowed view over its file,
//! converted to f32/f16/bf16 host vectors on demand.
//!
//! [`expected_tensors`] is the contract with the config: every name Llama uses and its shape.
//! [`ModelWeights::validate`] checks the files against it before anything reads a value.

use super::config::ModelConfig;
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why weights could not be loaded, or a tensor could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: not a valid index file: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error(
        "{dir}: no weights found: expected model.safetensors, or model.safetensors.index.json \
         with its shards"
    )]
    NoWeights { dir: PathBuf },
    #[error(
        "{dir}: int4 weights (tensor {tensor}): handled by the int4 loader, not the f32/f16/bf16 \
         loader"
    )]
    Int4 { dir: PathBuf, tensor: String },
    #[error("missing tensor {name} (expected shape {expected:?}) in {dir}")]
    Missing {
        name: String,
        expected: Vec<usize>,
        dir: PathBuf,
    },
    #[error(
        "{file}: tensor {name} has shape {actual:?} ({dtype}); the config expects {expected:?}"
    )]
    Shape {
        file: PathBuf,
        name: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
        dtype: DType,
    },
    #[error("{file}: tensor {name} has dtype {dtype:?}; expected F32, F16 or BF16")]
    Dtype {
        file: PathBuf,
        name: String,
        dtype: String,
    },
}

/// The floating-point storage types the loader reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

/// One tensor, borrowed from its memory-mapped file (little-endian, row-major).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
    pub file: &'a Path,
}

impl TensorView<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened (exactly) or kept as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => words::<4>(self.bytes).map(f32::from_le_bytes).collect(),
            DType::F16 => self.halves().map(|h| f16::from_bits(h).to_f32()).collect(),
            DType::BF16 => self.halves().map(|h| bf16::from_bits(h).to_f32()).collect(),
        }
    }

    /// The values as f16 (f32 and bf16 round to nearest even).
    pub fn to_f16(&self) -> Vec<f16> {
        match self.dtype {
            DType::F16 => self.halves().map(f16::from_bits).collect(),
            _ => self.to_f32().into_iter().map(f16::from_f32).collect(),
        }
    }

    /// The values as bf16 (f32 and f16 round to nearest even).
    pub fn to_bf16(&self) -> Vec<bf16> {
        match self.dtype {
            DType::BF16 => self.halves().map(bf16::from_bits).collect(),
            _ => self.to_f32().into_iter().map(bf16::from_f32).collect(),
        }
    }

    fn halves(&self) -> impl Iterator<Item = u16> + '_ {
        words::<2>(self.bytes).map(u16::from_le_bytes)
    }
}

fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes
        .chunks_exact(N)
        .map(|c| c.try_into().expect("chunks_exact yields N bytes"))
}

/// Where a tensor lives: its shard, shape, dtype and byte range in the mmap.
#[derive(Debug)]
struct Entry {
    shard: usize,
    /// `None` for the integer tensors of an int4 checkpoint (see [`ModelWeights::raw`]).
    dtype: Option<DType>,
    /// The dtype as stored.
    stored: Dtype,
    shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

/// One memory-mapped safetensors file.
struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// The safetensors files of a model directory, memory-mapped, with a table of contents.
pub struct ModelWeights {
    dir: PathBuf,
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
}

impl fmt::Debug for ModelWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelWeights")
            .field("dir", &self.dir)
            .field("files", &self.shards.len())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl ModelWeights {
    /// Maps `dir/model.safetensors`, or every shard named by `dir/model.safetensors.index.json`.
    /// Int4 checkpoints (GPTQ/AWQ `qweight` tensors) are refused with [`WeightsError::Int4`].
    pub fn open(dir: &Path) -> Result<Self, WeightsError> {
        Self::open_with(dir, false)
    }

    /// [`open`](Self::open) for an int4 model directory: integer tensors (GPTQ/AWQ packs,
    /// warpforge's int4 codes) are kept, readable through [`raw`](Self::raw) only.
    pub fn open_quantized(dir: &Path) -> Result<Self, WeightsError> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, quantized: bool) -> Result<Self, WeightsError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files = if index_path.exists() {
            shard_files(&index_path)?
        } else if single.exists() {
            vec!["model.safetensors".to_string()]
        } else {
            return Err(WeightsError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut weights = ModelWeights {
            dir: dir.to_path_buf(),
            shards: Vec::new(),
            entries: BTreeMap::new(),
        };
        for file in files {
            let path = dir.join(&file);
            let shard = weights.shards.len();
            let map = map_file(&path)?;
            for (name, entry) in read_entries(&path, &map, shard, quantized)? {
                if !quantized && is_int4_tensor(&name) {
                    return Err(WeightsError::Int4 {
                        dir: dir.to_path_buf(),
                        tensor: name,
                    });
                }
                weights.entries.insert(name, entry);
            }
            weights.shards.push(Shard { path, map });
        }
        Ok(weights)
    }

    /// The storage type of the embedding table: the model's dtype as stored.
    pub fn dtype(&self) -> Option<DType> {
        self.entries
            .get("model.embed_tokens.weight")
            .and_then(|e| e.dtype)
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of all tensors in the files, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A floating-point tensor by name, if the files have it.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        let (name, entry) = self.entries.get_key_value(name)?;
        let shard = &self.shards[entry.shard];
        Some(TensorView {
            name,
            dtype: entry.dtype?,
            shape: &entry.shape,
            bytes: &shard.map[entry.range.clone()],
            file: &shard.path,
        })
    }

    /// Any tensor by name as stored (dtype, shape, little-endian bytes), integer ones
    /// included: what the int4 loader reads.
    pub fn raw(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let entry = self.entries.get(name)?;
        let bytes = &self.shards[entry.shard].map[entry.range.clone()];
        Some((entry.stored, &entry.shape, bytes))
    }

    /// A tensor by name with the shape the caller expects; a missing tensor or another shape
    /// is an error naming it, its file and both shapes.
    pub fn tensor(&self, name: &str, expected: &[usize]) -> Result<TensorView<'_>, WeightsError> {
        if let Some(entry) = self.entries.get(name).filter(|e| e.dtype.is_none()) {
            return Err(WeightsError::Dtype {
                file: self.shards[entry.shard].path.clone(),
                name: name.to_string(),
                dtype: format!("{:?}", entry.stored),
            });
        }
        let view = self.get(name).ok_or_else(|| WeightsError::Missing {
            name: name.to_string(),
            expected: expected.to_vec(),
            dir: self.dir.clone(),
        })?;
        if view.shape != expected {
            return Err(WeightsError::Shape {
                file: view.file.to_path_buf(),
                name: name.to_string(),
                actual: view.shape.to_vec(),
                expected: expected.to_vec(),
                dtype: view.dtype,
            });
        }
        Ok(view)
    }

    /// Checks that every tensor the config needs is present with its shape.
    pub fn validate(&self, config: &ModelConfig) -> Result<(), WeightsError> {
        for (name, shape) in expected_tensors(config) {
            self.tensor(&name, &shape)?;
        }
        Ok(())
    }
}

/// Every tensor a Llama-family model of this config reads, with its shape, in load order.
/// Linear weights are `[out_features, in_features]` (PyTorch's layout).
pub fn expected_tensors(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, q, kv, m) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
    let mut list = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
    )];
    for i in 0..c.num_hidden_layers {
        let p = |suffix: &str| format!("model.layers.{i}.{suffix}");
        list.push((p("input_layernorm.weight"), vec![h]));
        for (proj, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            list.push((p(&format!("self_attn.{proj}.weight")), vec![out, h]));
            if c.qkv_bias {
                list.push((p(&format!("self_attn.{proj}.bias")), vec![out]));
            }
        }
        list.push((p("self_attn.o_proj.weight"), vec![h, q]));
        if c.o_bias {
            list.push((p("self_attn.o_proj.bias"), vec![h]));
        }
        list.push((p("post_attention_layernorm.weight"), vec![h]));
        list.push((p("mlp.gate_proj.weight"), vec![m, h]));
        list.push((p("mlp.up_proj.weight"), vec![m, h]));
        list.push((p("mlp.down_proj.weight"), vec![h, m]));
    }
    list.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_word_embeddings {
        list.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    list
}

/// Tensor names that only int4 checkpoints have (GPTQ, AWQ).
fn is_int4_tensor(name: &str) -> bool {
    [".qweight", ".qzeros", ".g_idx"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// The shard file names of an index, in first-use order, each once.
fn shard_files(index_path: &Path) -> Result<Vec<String>, WeightsError> {
    let bad = |reason: String| WeightsError::Index {
        path: index_path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(index_path).map_err(|source| WeightsError::Io {
        path: index_path.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map[{tensor:?}] is not a file name")))?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(bad(format!("shard name {file:?} is not a plain file name")));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    if files.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    Ok(files)
}

fn map_file(path: &Path) -> Result<Mmap, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the map is read-only; a model file changed by another process while mapped
    // would give torn values, as it would to any reader (transformers maps the same way).
    unsafe { Mmap::map(&file) }.map_err(io)
}

/// The table of contents of one file: name → entry, with byte ranges into the whole map.
fn read_entries(
    path: &Path,
    map: &[u8],
    shard: usize,
    quantized: bool,
) -> Result<HashMap<String, Entry>, WeightsError> {
    let (header_len, metadata) =
        SafeTensors::read_metadata(map).map_err(|e| WeightsError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let data_start = 8 + header_len;
    let mut entries = HashMap::new();
    for (name, info) in metadata.tensors() {
        let dtype = match info.dtype {
            Dtype::F32 => Some(DType::F32),
            Dtype::F16 => Some(DType::F16),
            Dtype::BF16 => Some(DType::BF16),
            // Int4 packs are I32; name them as such rather than as a dtype error.
            _ if quantized || is_int4_tensor(&name) => None,
            other => {
                return Err(WeightsError::Dtype {
                    file: path.to_path_buf(),
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let (start, end) = info.data_offsets;
        entries.insert(
            name,
            Entry {
                shard,
                dtype,
                stored: info.dtype,
                shape: info.shape.clone(),
                range: data_start + start..data_start + end,
            },
        );
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(dtype: DType, bytes: &[u8]) -> TensorView<'_> {
        TensorView {
            name: "t",
            dtype,
            shape: &[2],
            bytes,
            file: Path::new("x.safetensors"),
        }
    }

    #[test]
    fn conversions_widen_exactly_and_round_to_nearest_even() {
        let f32s: Vec<u8> = [1.5f32, -0.1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let v = view(DType::F32, &f32s);
        assert_eq!(v.to_f32(), vec![1.5, -0.1]);
        assert_eq!(v.to_bf16(), vec![bf16::from_f32(1.5), bf16::from_f32(-0.1)]);
        assert_eq!(v.to_f16(), vec![f16::from_f32(1.5), f16::from_f32(-0.1)]);
        let bf: Vec<u8> = [bf16::from_f32(3.0), bf16::from_f32(-0.25)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let v = view(DType::BF16, &bf);
        assert_eq!(v.to_f32(), vec![3.0, -0.25]);
        assert_eq!(v.to_bf16()[1].to_f32(), -0.25);
        let h: Vec<u8> = [f16::from_f32(0.5), f16::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let v = view(DType::F16, &h);
        assert_eq!(v.to_f32(), vec![0.5, 65504.0]);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn int4_tensor_names() {
        assert!(is_int4_tensor("model.layers.0.mlp.up_proj.qweight"));
        assert!(is_int4_tensor("model.layers.0.mlp.up_proj.qzeros"));
        assert!(!is_int4_tensor("model.layers.0.mlp.up_proj.weight"));
    }
}
