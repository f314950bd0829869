//! GPTQ and AWQ checkpoint import: packed safetensors tensors → [`Int4Weight`].
//!
//! # Formats (per quantized linear `L`, `K` input and `N` output channels, `G` groups)
//!
//! - **GPTQ** (AutoGPTQ / GPTQModel): `L.qweight` I32 `[K/8, N]`, packed along `K`: word
//!   `(r, o)` holds input channels `8r..8r+7` of output `o`, channel `8r + j` in bits
//!   `4j..4j+3`. `L.qzeros` I32 `[G, N/8]`, packed along `N` the same way (output `8c + j`
//!   in bits `4j..4j+3` of word `(g, c)`). `L.scales` F16 `[G, N]`. `L.g_idx` I32 `[K]`,
//!   the group of each input channel (optional; `i / group` when absent). Zero points:
//!   **v1** (`checkpoint_format: "gptq"`, AutoGPTQ) stores `zero − 1`, **v2**
//!   (`"gptq_v2"`, GPTQModel) the true zero. Some files say `"gptq"` but hold v2 zeros: a
//!   symmetric v1 file stores 7 in every nibble, so a symmetric "gptq" file whose nibbles
//!   are all 8 is read as v2 (vLLM's heuristic); the format used is reported.
//! - **AWQ** (AutoAWQ, GEMM version): `L.qweight` I32 `[K, N/8]`, packed along `N` with
//!   AWQ's nibble order: nibble `j` (bits `4j..4j+3`) of word `(i, c)` holds output
//!   `8c + [0, 2, 4, 6, 1, 3, 5, 7][j]`. `L.qzeros` I32 `[G, N/8]`, packed the same way,
//!   true zeros. `L.scales` F16 `[G, N]`. Groups run along `K` (`i / group`).
//!
//! Both give `W[o, i] = (q − z)·s` with groups along input channels ([`GroupDim::Oc`]);
//! a non-trivial GPTQ `g_idx` (act-order) is kept in [`Int4Weight::g_idx`]. Scales may be
//! F16 or BF16 (both are exact in f32). An optional `L.bias` (F16, BF16 or F32 `[N]`) is
//! returned alongside.
//!
//! The quantization config comes from `config.json`'s `quantization_config`, else
//! `quantize_config.json` (AutoGPTQ), else `quant_config.json` (AutoAWQ); see
//! [`QuantizationConfig::from_json`] for the keys. Only 4-bit checkpoints are supported.
//!
//! Every mismatch is an [`ImportError`] naming the tensor, its dtype and shape, and what
//! was expected.

use super::weight::{GroupDim, Int4Error, Int4Weight};
use half::{bf16, f16};
pub use safetensors::Dtype;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::PathBuf;
use thiserror::Error;

mod checkpoint;
mod config;

pub use checkpoint::Checkpoint;
pub use config::{CheckpointFormat, QuantMethod, QuantizationConfig};

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("tensor `{tensor}` is missing (expected {expected})")]
    Missing { tensor: String, expected: String },
    #[error("tensor `{tensor}` has dtype {found:?} (shape {shape:?}), expected {expected}")]
    Dtype {
        tensor: String,
        found: Dtype,
        shape: Vec<usize>,
        expected: &'static str,
    },
    #[error("tensor `{tensor}` ({dtype:?}) has shape {found:?}, expected {expected}")]
    Shape {
        tensor: String,
        dtype: Dtype,
        found: Vec<usize>,
        expected: String,
    },
    #[error("tensor `{tensor}`: {message}")]
    Value { tensor: String, message: String },
    #[error("quantization config: {0}")]
    Config(String),
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("imported weight: {0}")]
    Weight(#[from] Int4Error),
}

/// One tensor as stored: little-endian, row-major bytes.
#[derive(Clone, Debug)]
pub struct RawTensor<'a> {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// Where the importer looks tensors up by name: a parsed safetensors buffer, several
/// shards (`[SafeTensors]`, e.g. mmapped by the runtime), or a [`Checkpoint`] directory.
pub trait TensorSource {
    fn tensor(&self, name: &str) -> Option<RawTensor<'_>>;
}

impl TensorSource for SafeTensors<'_> {
    fn tensor(&self, name: &str) -> Option<RawTensor<'_>> {
        let view = SafeTensors::tensor(self, name).ok()?;
        Some(RawTensor {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data: view.data(),
        })
    }
}

impl<T: TensorSource> TensorSource for [T] {
    fn tensor(&self, name: &str) -> Option<RawTensor<'_>> {
        self.iter().find_map(|shard| shard.tensor(name))
    }
}

/// Tensors held in memory by name (tests, or tensors built by hand).
impl TensorSource for HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    fn tensor(&self, name: &str) -> Option<RawTensor<'_>> {
        self.get(name).map(|(dtype, shape, data)| RawTensor {
            dtype: *dtype,
            shape: shape.clone(),
            data,
        })
    }
}

/// A layer imported from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedLayer {
    pub weight: Int4Weight,
    pub bias: Option<Vec<f32>>,
    /// The zero-point convention read (a declared v1 GPTQ file may be read as v2).
    pub format: CheckpointFormat,
}

/// Imports the linear layer `prefix` (e.g. `model.layers.0.mlp.down_proj`).
pub fn import_layer(
    src: &(impl TensorSource + ?Sized),
    prefix: &str,
    cfg: &QuantizationConfig,
) -> Result<ImportedLayer, ImportError> {
    let layer = Layer { src, prefix };
    let mut imported = match cfg.method {
        QuantMethod::Gptq => import_gptq(&layer, cfg)?,
        QuantMethod::Awq => import_awq(&layer, cfg)?,
    };
    imported.bias = layer.bias(imported.weight.n)?;
    imported.weight.validate()?;
    Ok(imported)
}

/// The tensors of one layer.
struct Layer<'s, S: ?Sized> {
    src: &'s S,
    prefix: &'s str,
}

impl<S: TensorSource + ?Sized> Layer<'_, S> {
    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    /// The tensor `prefix.suffix`, checked to be of `dtypes` and rank 2 (or `rank`).
    fn get(
        &self,
        suffix: &str,
        dtypes: &[Dtype],
        expected: &'static str,
        rank: usize,
    ) -> Result<RawTensor<'_>, ImportError> {
        let tensor = self.name(suffix);
        let raw = self
            .src
            .tensor(&tensor)
            .ok_or_else(|| ImportError::Missing {
                tensor: tensor.clone(),
                expected: format!("{expected}, rank {rank}"),
            })?;
        if !dtypes.contains(&raw.dtype) {
            return Err(ImportError::Dtype {
                tensor,
                found: raw.dtype,
                shape: raw.shape,
                expected,
            });
        }
        if raw.shape.len() != rank {
            return Err(ImportError::Shape {
                tensor,
                dtype: raw.dtype,
                found: raw.shape,
                expected: format!("{expected}, rank {rank}"),
            });
        }
        Ok(raw)
    }

    fn shape_error(&self, suffix: &str, raw: &RawTensor, expected: String) -> ImportError {
        ImportError::Shape {
            tensor: self.name(suffix),
            dtype: raw.dtype,
            found: raw.shape.clone(),
            expected,
        }
    }

    fn expect_shape(
        &self,
        suffix: &str,
        raw: &RawTensor,
        want: &[usize],
        what: &str,
    ) -> Result<(), ImportError> {
        if raw.shape != want {
            return Err(self.shape_error(suffix, raw, format!("{want:?} ({what})")));
        }
        Ok(())
    }

    fn bias(&self, n: usize) -> Result<Option<Vec<f32>>, ImportError> {
        if self.src.tensor(&self.name("bias")).is_none() {
            return Ok(None);
        }
        let raw = self.get(
            "bias",
            &[Dtype::F16, Dtype::BF16, Dtype::F32],
            "F16, BF16 or F32",
            1,
        )?;
        self.expect_shape("bias", &raw, &[n], "[N]")?;
        Ok(Some(floats(&raw)))
    }

    /// The scales, `[groups, n]` F16/BF16, checked against `k`'s group count.
    fn scales(&self, k: usize, n: usize, group: usize) -> Result<Vec<f32>, ImportError> {
        let raw = self.get(
            "scales",
            &[Dtype::F16, Dtype::BF16],
            "F16 (or BF16) [groups, N]",
            2,
        )?;
        let groups = k.div_ceil(group);
        self.expect_shape(
            "scales",
            &raw,
            &[groups, n],
            &format!("[⌈K/group⌉, N] for K = {k}, group {group}"),
        )?;
        Ok(floats(&raw))
    }

    /// The zero points, `[groups, n/8]` I32 packed along N, unpacked with `order`.
    fn zeros(&self, groups: usize, n: usize, order: &[usize; 8]) -> Result<Vec<u8>, ImportError> {
        let raw = self.get("qzeros", &[Dtype::I32], "I32 [groups, N/8]", 2)?;
        self.expect_shape("qzeros", &raw, &[groups, n / 8], "[groups, N/8]")?;
        let mut zeros = vec![0u8; groups * n];
        for (w, word) in words(&raw).enumerate() {
            let (g, c) = (w / (n / 8), w % (n / 8));
            for (j, &col) in order.iter().enumerate() {
                zeros[g * n + 8 * c + col] = nibble(word, j);
            }
        }
        Ok(zeros)
    }
}

const GPTQ_ORDER: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
/// AWQ: nibble `j` holds column `AWQ_ORDER[j]` of its group of eight.
const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

fn nibble(word: u32, j: usize) -> u8 {
    ((word >> (4 * j)) & 0xF) as u8
}

fn words<'a>(raw: &'a RawTensor) -> impl Iterator<Item = u32> + 'a {
    raw.data
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// F16, BF16 or F32 values as f32 (exact).
fn floats(raw: &RawTensor) -> Vec<f32> {
    match raw.dtype {
        Dtype::F16 => raw
            .data
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .data
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => raw
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// Packed tensors must have no empty dimension.
fn packed_dim(
    layer: &Layer<impl TensorSource + ?Sized>,
    suffix: &str,
    raw: &RawTensor,
    what: &str,
) -> Result<(), ImportError> {
    if raw.shape.contains(&0) {
        return Err(layer.shape_error(suffix, raw, format!("non-empty dimensions ({what})")));
    }
    Ok(())
}

fn import_gptq(
    layer: &Layer<impl TensorSource + ?Sized>,
    cfg: &QuantizationConfig,
) -> Result<ImportedLayer, ImportError> {
    let qweight = layer.get("qweight", &[Dtype::I32], "I32 [K/8, N]", 2)?;
    packed_dim(layer, "qweight", &qweight, "[K/8, N]")?;
    let (k, n) = (qweight.shape[0] * 8, qweight.shape[1]);
    if n % 8 != 0 {
        return Err(layer.shape_error(
            "qweight",
            &qweight,
            format!("N = {n} a multiple of 8 (qzeros packs 8 outputs a word)"),
        ));
    }
    let group = cfg.group_size.unwrap_or(k);
    let scales = layer.scales(k, n, group)?;
    let groups = k.div_ceil(group);
    let stored = layer.zeros(groups, n, &GPTQ_ORDER)?;
    let mut codes = vec![0u8; k * n];
    for (w, word) in words(&qweight).enumerate() {
        let (r, o) = (w / n, w % n);
        for j in 0..8 {
            codes[(8 * r + j) * n + o] = nibble(word, j);
        }
    }
    let format = detect_gptq_format(cfg, &stored);
    let zeros = match format {
        CheckpointFormat::GptqV1 => v1_zeros(layer, &stored, n)?,
        _ => stored,
    };
    let g_idx = gptq_g_idx(layer, k, group, groups)?;
    let weight = Int4Weight {
        k,
        n,
        group,
        dim: GroupDim::Oc,
        codes,
        scales,
        zeros,
        g_idx,
    };
    Ok(ImportedLayer {
        weight,
        bias: None,
        format,
    })
}

/// A declared v1 file whose symmetric zeros are all 8 holds v2 zeros (module docs).
fn detect_gptq_format(cfg: &QuantizationConfig, stored: &[u8]) -> CheckpointFormat {
    if cfg.format == CheckpointFormat::GptqV1 && cfg.sym && stored.iter().all(|&z| z == 8) {
        return CheckpointFormat::GptqV2;
    }
    cfg.format
}

fn v1_zeros(
    layer: &Layer<impl TensorSource + ?Sized>,
    stored: &[u8],
    n: usize,
) -> Result<Vec<u8>, ImportError> {
    if let Some(p) = stored.iter().position(|&z| z == 15) {
        return Err(ImportError::Value {
            tensor: layer.name("qzeros"),
            message: format!(
                "zero at index {p} (group {}, output {}) stores 15: a GPTQ v1 file stores zero − 1, so this is a true zero of 16 \
                 (the v1 packer's overflow of a true zero 0), which 4 bits cannot hold; \
                 use a gptq_v2 checkpoint (set checkpoint_format if the file already is one)",
                p / n,
                p % n
            ),
        });
    }
    Ok(stored.iter().map(|&z| z + 1).collect())
}

/// `g_idx`, or `None` when absent or equal to `i / group`.
fn gptq_g_idx(
    layer: &Layer<impl TensorSource + ?Sized>,
    k: usize,
    group: usize,
    groups: usize,
) -> Result<Option<Vec<u32>>, ImportError> {
    if layer.src.tensor(&layer.name("g_idx")).is_none() {
        return Ok(None);
    }
    let raw = layer.get("g_idx", &[Dtype::I32], "I32 [K]", 1)?;
    layer.expect_shape("g_idx", &raw, &[k], "[K]")?;
    let g_idx: Vec<i32> = words(&raw).map(|w| w as i32).collect();
    if let Some(i) = g_idx.iter().position(|&g| g < 0 || g as usize >= groups) {
        return Err(ImportError::Value {
            tensor: layer.name("g_idx"),
            message: format!(
                "g_idx[{i}] = {} is outside the {groups} groups of scales",
                g_idx[i]
            ),
        });
    }
    if g_idx
        .iter()
        .enumerate()
        .all(|(i, &g)| g as usize == i / group)
    {
        return Ok(None);
    }
    Ok(Some(g_idx.into_iter().map(|g| g as u32).collect()))
}

fn import_awq(
    layer: &Layer<impl TensorSource + ?Sized>,
    cfg: &QuantizationConfig,
) -> Result<ImportedLayer, ImportError> {
    let qweight = layer.get("qweight", &[Dtype::I32], "I32 [K, N/8]", 2)?;
    packed_dim(layer, "qweight", &qweight, "[K, N/8]")?;
    let (k, n) = (qweight.shape[0], qweight.shape[1] * 8);
    let group = cfg.group_size.unwrap_or(k);
    let scales = layer.scales(k, n, group)?;
    let zeros = layer.zeros(k.div_ceil(group), n, &AWQ_ORDER)?;
    let mut codes = vec![0u8; k * n];
    for (w, word) in words(&qweight).enumerate() {
        let (i, c) = (w / (n / 8), w % (n / 8));
        for (j, &col) in AWQ_ORDER.iter().enumerate() {
            codes[i * n + 8 * c + col] = nibble(word, j);
        }
    }
    let weight = Int4Weight {
        k,
        n,
        group,
        dim: GroupDim::Oc,
        codes,
        scales,
        zeros,
        g_idx: None,
    };
    Ok(ImportedLayer {
        weight,
        bias: None,
        format: CheckpointFormat::Awq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shards parsed by the caller (as the runtime passes mmapped files) import like the
    /// directory they came from.
    #[test]
    fn shards_as_a_slice_import_like_the_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/int4/awq");
        let ck = Checkpoint::open(dir).unwrap();
        let cfg = ck.quantization_config().unwrap();
        let files: Vec<Vec<u8>> = ["model-00001-of-00002", "model-00002-of-00002"]
            .iter()
            .map(|f| std::fs::read(format!("{dir}/{f}.safetensors")).unwrap())
            .collect();
        let shards: Vec<SafeTensors> = files
            .iter()
            .map(|b| SafeTensors::deserialize(b).unwrap())
            .collect();
        for prefix in [
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.mlp.up_proj",
        ] {
            let from_slice = import_layer(&shards[..], prefix, &cfg).unwrap();
            assert_eq!(from_slice, ck.import(prefix).unwrap());
        }
        let err = import_layer(&shards[..], "model.layers.1.mlp.up_proj", &cfg).unwrap_err();
        assert!(err
            .to_string()
            .contains("`model.layers.1.mlp.up_proj.qweight` is missing"));
    }

    #[test]
    fn nibble_orders() {
        // AWQ: word 0x76543210 holds outputs [0, 2, 4, 6, 1, 3, 5, 7] in nibbles 0..8.
        let word = 0x7654_3210u32;
        let mut cols = [0u8; 8];
        for (j, &col) in AWQ_ORDER.iter().enumerate() {
            cols[col] = nibble(word, j);
        }
        assert_eq!(cols, [0, 4, 1, 5, 2, 6, 3, 7]);
    }
}
